//! A one-pass reader for a narrowed `| json`: it checks the line's JSON
//! syntax as far as it reads and copies out only the wanted fields,
//! jumping through strings by bit masks and never building a tree or
//! tape. On the benchmark's 1.35 KB lines, of which an unwrap wants two
//! fields, most of the line is a nested object nobody asked for, and this
//! only checks its syntax.
//!
//! It reads as Loki's narrowed parser does: fields in the line's order,
//! each wanted scalar handed to a [`Sink`], which says when every field
//! the query needs is in; the reading stops there, and the rest of the
//! line is neither read nor checked (Loki's `errFoundAllLabels`).
//!
//! A wanted value is written as Loki's `| json` writes it: a string
//! unescaped, a number as the line spells it (`1.50`, `1e3`), a boolean as
//! `true` or `false`.
//!
//! It answers only where it reads exactly as serde_json would, and gives
//! up (`None`) otherwise, so the caller reads the line the slower way
//! (`narrow::read_streaming`): a control character anywhere, an escaped
//! key, a wanted string whose escapes serde_json refuses (a lone
//! surrogate), a scalar with an exponent or an escape where the query
//! looks for an object, or nesting deeper than serde_json allows. Like
//! serde_json skipping a value, it checks a number's grammar but not its
//! range.

use skidder_common::format::tokens::{push_sanitized_key, MAX_FIELD_DEPTH};

use super::eval::Labels;

/// What a flattened field name is to the query.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Wants {
    /// A scalar here is wanted.
    pub value: bool,
    /// An object here leads to a wanted field.
    pub object: bool,
}

impl Wants {
    /// What `path` is to a query that wants the fields flattened to `names`.
    pub fn of<'n>(names: impl IntoIterator<Item = &'n str>, path: &str) -> Wants {
        let mut w = Wants::default();
        let first = path.as_bytes().first();
        for name in names {
            // Most keys differ from every name at once. (An empty key's
            // path is a prefix of every name.)
            if first.is_some() && name.as_bytes().first() != first {
                continue;
            }
            if let Some(rest) = name.strip_prefix(path) {
                match rest.as_bytes().first() {
                    None => w.value = true,
                    Some(b'_') => w.object = true,
                    Some(_) => {}
                }
            }
        }
        w
    }

    pub fn any(self) -> bool {
        self.value || self.object
    }
}

/// Where a narrowed `| json` puts what it reads.
pub trait Sink {
    /// What the field flattened to `path` is to the query.
    fn wants(&self, path: &str) -> Wants;
    /// A wanted scalar, as `| json` writes it; `true` once every field the
    /// query needs is in, and the reader stops.
    fn take(&mut self, path: &str, value: String) -> bool;
    /// Whether `take` may ever say that every field is in.
    fn may_stop(&self) -> bool {
        true
    }
}

/// A sink that wants a fixed list of names, has all it needs once each is
/// in, and records what it is given: what tests and the fuzz target
/// compare two readers by.
pub struct Recorder<'n> {
    names: &'n [String],
    pub takes: Labels,
}

impl<'n> Recorder<'n> {
    pub fn new(names: &'n [String]) -> Self {
        Recorder {
            names,
            takes: Labels::new(),
        }
    }
}

impl Sink for Recorder<'_> {
    fn wants(&self, path: &str) -> Wants {
        Wants::of(self.names.iter().map(String::as_str), path)
    }

    fn take(&mut self, path: &str, value: String) -> bool {
        self.takes.push((path.to_owned(), value));
        let takes = &self.takes;
        self.names.iter().all(|n| takes.iter().any(|(k, _)| k == n))
    }
}

/// Every scalar field of a JSON object line, read level by level into
/// serde_json lists of raw values: an independent statement of what the
/// unnarrowed `| json` gives (names flattened, strings unescaped, numbers
/// as spelled, the last in the line of equal names winning), which tests
/// and the fuzz target hold the readers to; `None` if the line is not a
/// JSON object.
pub fn reference_fields(line: &str) -> Option<std::collections::BTreeMap<String, String>> {
    use serde::de::{Deserializer, MapAccess, Visitor};
    use serde_json::value::RawValue;
    use std::collections::BTreeMap;

    /// An object's members in the line's order, each value as its text.
    struct Members<'a>(Vec<(String, &'a RawValue)>);

    impl<'de: 'a, 'a> serde::Deserialize<'de> for Members<'a> {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct InOrder<'a>(std::marker::PhantomData<&'a ()>);
            impl<'de: 'a, 'a> Visitor<'de> for InOrder<'a> {
                type Value = Members<'a>;
                fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                    f.write_str("a JSON object")
                }
                fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<Members<'a>, A::Error> {
                    let mut out = Vec::new();
                    while let Some(member) = m.next_entry::<String, &'a RawValue>()? {
                        out.push(member);
                    }
                    Ok(Members(out))
                }
            }
            d.deserialize_map(InOrder(std::marker::PhantomData))
        }
    }

    fn walk(
        object: &str,
        path: &str,
        depth: usize,
        out: &mut BTreeMap<String, String>,
    ) -> Option<()> {
        let members: Members<'_> = serde_json::from_str(object).ok()?;
        for (key, value) in members.0 {
            let mut name = path.to_owned();
            if depth > 0 || key.as_bytes().first().is_some_and(u8::is_ascii_digit) {
                name.push('_');
            }
            push_sanitized_key(&mut name, &key);
            let text = value.get();
            match text.as_bytes().first()? {
                b'{' if depth + 1 < MAX_FIELD_DEPTH => walk(text, &name, depth + 1, out)?,
                b'{' | b'[' | b'n' => {}
                b'"' => {
                    out.insert(name, serde_json::from_str(text).ok()?);
                }
                _ => {
                    out.insert(name, text.to_owned());
                }
            }
        }
        Some(())
    }
    let mut out = BTreeMap::new();
    walk(line, "", 0, &mut out)?;
    Some(out)
}

/// Whether a reader goes on through the line or has all it needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flow {
    More,
    Done,
}

/// serde_json's recursion limit is 128; stay well inside it.
const MAX_NESTING: usize = 100;
/// A number of at most this many characters and no exponent is within an
/// `f64`'s range, so serde_json takes it as a value too.
const MAX_PLAIN_NUMBER: usize = 300;

/// Hands `line`'s wanted fields to `sink` until it has all it needs;
/// `Some` if the line is a JSON object up to there (or whole), `None`
/// (with `sink` possibly half fed: the caller starts again) where this
/// reader cannot answer exactly.
pub fn read(line: &str, sink: &mut dyn Sink) -> Option<()> {
    let b = line.as_bytes();
    // Only the space is read as whitespace, and no string holds a control
    // character: both are then true of a line with none.
    if b.iter().fold(false, |seen, &c| seen | (c < 0x20)) {
        return None;
    }
    let mut scan = Scan {
        line,
        b,
        i: 0,
        marks: Marks::new(b),
    };
    scan.expect(b'{')?;
    if scan.object(&mut String::new(), 0, sink)? == Flow::Done {
        return Some(());
    }
    scan.spaces();
    (scan.i == b.len()).then_some(())
}

struct Scan<'l> {
    line: &'l str,
    b: &'l [u8],
    i: usize,
    marks: Marks<'l>,
}

impl<'l> Scan<'l> {
    fn spaces(&mut self) {
        while self.b.get(self.i) == Some(&b' ') {
            self.i += 1;
        }
    }

    fn expect(&mut self, c: u8) -> Option<()> {
        (self.b.get(self.i) == Some(&c)).then(|| self.i += 1)
    }

    /// After `{`: the object's wanted fields, flattened under `path`.
    fn object(&mut self, path: &mut String, depth: usize, sink: &mut dyn Sink) -> Option<Flow> {
        if depth >= MAX_NESTING {
            return None;
        }
        self.spaces();
        if self.expect(b'}').is_some() {
            return Some(Flow::More);
        }
        loop {
            self.expect(b'"')?;
            let (key, escaped) = self.string()?;
            if escaped {
                return None;
            }
            self.spaces();
            self.expect(b':')?;
            self.spaces();
            let restore = path.len();
            if depth > 0 || key.as_bytes().first().is_some_and(u8::is_ascii_digit) {
                path.push('_');
            }
            push_key(path, key);
            let w = sink.wants(path);
            let flow = if w.any() {
                self.wanted_value(path, depth, w, sink)?
            } else {
                self.skip_value(depth + 1)?;
                Flow::More
            };
            path.truncate(restore);
            if flow == Flow::Done {
                return Some(Flow::Done);
            }
            self.spaces();
            match self.b.get(self.i) {
                Some(b',') => {
                    self.i += 1;
                    self.spaces();
                }
                Some(b'}') => {
                    self.i += 1;
                    return Some(Flow::More);
                }
                _ => return None,
            }
        }
    }

    /// The value at `path`, which the query wants as a scalar or as an
    /// object on the way to one.
    fn wanted_value(
        &mut self,
        path: &mut String,
        depth: usize,
        w: Wants,
        sink: &mut dyn Sink,
    ) -> Option<Flow> {
        let start = self.i;
        let text = match *self.b.get(self.i)? {
            b'{' if w.object && depth + 1 < MAX_FIELD_DEPTH => {
                // Wanted as a scalar too, the value comes from serde_json
                // to the streaming reader whole, so that a number keeps
                // its text, and is thereby checked whole before its fields
                // are read. Where the reading may stop inside, so here.
                if w.value && sink.may_stop() {
                    self.skip_value(depth + 1)?;
                    self.i = start + 1;
                    self.marks.rewind(self.i);
                } else {
                    self.i += 1;
                }
                return self.object(path, depth + 1, sink);
            }
            b'"' if w.value => {
                self.i += 1;
                let (text, escaped) = self.string()?;
                // An escaped value is rare: serde_json reads it, exactly as
                // the full reader does.
                if escaped {
                    serde_json::from_str(&self.line[start..self.i]).ok()?
                } else {
                    text.to_owned()
                }
            }
            // As the line spells it, as Loki's `| json` keeps a number.
            b'-' | b'0'..=b'9' if w.value => {
                self.number()?;
                self.line[start..self.i].to_owned()
            }
            b't' if w.value => {
                self.literal(b"true")?;
                "true".to_owned()
            }
            b'f' if w.value => {
                self.literal(b"false")?;
                "false".to_owned()
            }
            // A scalar where the query looks for an object: serde_json
            // reads it as a value rather than skipping it, so it checks a
            // number's range and a string's escapes. Leave those to it.
            b'"' if w.object => {
                self.i += 1;
                let (_, escaped) = self.string()?;
                return (!escaped).then_some(Flow::More);
            }
            b'-' | b'0'..=b'9' if w.object => {
                self.number()?;
                let text = &self.line[start..self.i];
                let plain = !text.contains(['e', 'E']) && text.len() <= MAX_PLAIN_NUMBER;
                return plain.then_some(Flow::More);
            }
            _ => {
                self.skip_value(depth + 1)?;
                return Some(Flow::More);
            }
        };
        Some(if sink.take(path, text) {
            Flow::Done
        } else {
            Flow::More
        })
    }

    /// After `"`: the string's raw text, and whether it holds escapes.
    fn string(&mut self) -> Option<(&'l str, bool)> {
        let start = self.i;
        let mut escaped = false;
        loop {
            let at = self.marks.next_from(self.i)?;
            if self.b[at] == b'"' {
                self.i = at + 1;
                return Some((&self.line[start..at], escaped));
            }
            match self.b.get(at + 1)? {
                b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => self.i = at + 2,
                // Any four hex digits, as serde_json checks an escape it
                // skips; a wanted value's are read by serde_json itself.
                b'u' => {
                    let hex = self.b.get(at + 2..at + 6)?;
                    if !hex.iter().all(u8::is_ascii_hexdigit) {
                        return None;
                    }
                    self.i = at + 6;
                }
                _ => return None,
            }
            escaped = true;
        }
    }

    /// A number, checked against JSON's grammar.
    fn number(&mut self) -> Option<()> {
        self.expect(b'-');
        match self.b.get(self.i)? {
            // `01` is no number, even where the reading stops after it.
            b'0' if self.b.get(self.i + 1).is_some_and(u8::is_ascii_digit) => return None,
            b'0' => self.i += 1,
            b'1'..=b'9' => self.digits(),
            _ => return None,
        }
        if self.expect(b'.').is_some() {
            self.some_digits()?;
        }
        if matches!(self.b.get(self.i), Some(b'e' | b'E')) {
            self.i += 1;
            if matches!(self.b.get(self.i), Some(b'+' | b'-')) {
                self.i += 1;
            }
            self.some_digits()?;
        }
        Some(())
    }

    fn some_digits(&mut self) -> Option<()> {
        let from = self.i;
        self.digits();
        (self.i > from).then_some(())
    }

    fn digits(&mut self) {
        while self.b.get(self.i).is_some_and(u8::is_ascii_digit) {
            self.i += 1;
        }
    }

    fn literal(&mut self, word: &[u8]) -> Option<()> {
        self.b[self.i..]
            .starts_with(word)
            .then(|| self.i += word.len())
    }

    /// Any value, checked but not kept.
    fn skip_value(&mut self, depth: usize) -> Option<()> {
        if depth >= MAX_NESTING {
            return None;
        }
        match *self.b.get(self.i)? {
            b'"' => {
                self.i += 1;
                self.string().map(drop)
            }
            b'{' => {
                self.i += 1;
                self.skip_items(b'}', depth, true)
            }
            b'[' => {
                self.i += 1;
                self.skip_items(b']', depth, false)
            }
            b'-' | b'0'..=b'9' => self.number(),
            b't' => self.literal(b"true"),
            b'f' => self.literal(b"false"),
            b'n' => self.literal(b"null"),
            _ => None,
        }
    }

    /// After `{` or `[`: the members up to `close`, checked.
    fn skip_items(&mut self, close: u8, depth: usize, keyed: bool) -> Option<()> {
        self.spaces();
        if self.expect(close).is_some() {
            return Some(());
        }
        loop {
            if keyed {
                self.expect(b'"')?;
                self.string()?;
                self.spaces();
                self.expect(b':')?;
                self.spaces();
            }
            self.skip_value(depth + 1)?;
            self.spaces();
            match self.b.get(self.i) {
                Some(b',') => {
                    self.i += 1;
                    self.spaces();
                }
                Some(&c) if c == close => {
                    self.i += 1;
                    return Some(());
                }
                _ => return None,
            }
        }
    }
}

/// The `"` and `\` of a line, 64 bytes at a time as a bit mask, rather
/// than a search per string: most strings are a few bytes long, and a
/// search costs more to start than to run over them.
struct Marks<'l> {
    b: &'l [u8],
    /// Start of the 64 bytes `bits` covers.
    chunk: usize,
    bits: u64,
}

impl<'l> Marks<'l> {
    fn new(b: &'l [u8]) -> Self {
        Marks {
            b,
            chunk: 0,
            bits: Self::mask(b, 0),
        }
    }

    /// Bit k set where `b[at + k]` is `"` or `\`: eight bytes at a time
    /// (SWAR), as no loop over single bytes compiles to vector code here.
    fn mask(b: &[u8], at: usize) -> u64 {
        #[cfg(target_arch = "x86_64")]
        if let Some(chunk) = b
            .get(at..at + 64)
            .and_then(|c| <&[u8; 64]>::try_from(c).ok())
        {
            return marks_sse2(chunk);
        }
        if let Some(chunk) = b.get(at..at + 64) {
            let (words, _) = chunk.as_chunks::<8>();
            return words.iter().enumerate().fold(0, |m, (w, word)| {
                m | word_marks(u64::from_le_bytes(*word)) << (8 * w)
            });
        }
        let rest = b.get(at..).unwrap_or_default();
        rest.iter()
            .enumerate()
            .fold(0, |m, (k, &c)| m | u64::from(c == b'"' || c == b'\\') << k)
    }

    /// Back to `i`, before marks already passed.
    fn rewind(&mut self, i: usize) {
        self.chunk = i & !63;
        self.bits = Self::mask(self.b, self.chunk);
    }

    /// The first mark at or after `i`.
    fn next_from(&mut self, i: usize) -> Option<usize> {
        if i >= self.chunk + 64 {
            self.chunk = i & !63;
            self.bits = Self::mask(self.b, self.chunk);
        }
        if i > self.chunk {
            self.bits &= u64::MAX << (i - self.chunk);
        }
        while self.bits == 0 {
            self.chunk += 64;
            if self.chunk >= self.b.len() {
                return None;
            }
            self.bits = Self::mask(self.b, self.chunk);
        }
        Some(self.chunk + self.bits.trailing_zeros() as usize)
    }
}

/// [`Marks::mask`] for a full 64 bytes, 16 per step. SSE2 is part of
/// x86-64 itself, so no CPU check is needed.
#[cfg(target_arch = "x86_64")]
#[inline]
fn marks_sse2(block: &[u8; 64]) -> u64 {
    use std::arch::x86_64::*;
    let mut mask = 0u64;
    for (i, chunk) in block.chunks_exact(16).enumerate() {
        // SAFETY: SSE2 is always present on x86-64, and `chunk` is exactly
        // 16 readable bytes, which the unaligned load reads.
        let m = unsafe {
            let v = _mm_loadu_si128(chunk.as_ptr().cast());
            let quote = _mm_cmpeq_epi8(v, _mm_set1_epi8(b'"' as i8));
            let backslash = _mm_cmpeq_epi8(v, _mm_set1_epi8(b'\\' as i8));
            _mm_movemask_epi8(_mm_or_si128(quote, backslash)) as u32 as u64
        };
        mask |= m << (16 * i);
    }
    mask
}

/// Bit k set where byte k of `w` (little-endian) is `"` or `\`.
fn word_marks(w: u64) -> u64 {
    const LOW7: u64 = 0x7f7f_7f7f_7f7f_7f7f;
    // High bit of each byte set exactly where that byte of `x` is zero.
    let zero = |x: u64| !(((x & LOW7).wrapping_add(LOW7)) | x | LOW7);
    let hits = zero(w ^ 0x2222_2222_2222_2222) | zero(w ^ 0x5c5c_5c5c_5c5c_5c5c);
    // Gather the eight high bits into the low byte.
    ((hits >> 7).wrapping_mul(0x0102_0408_1020_4080)) >> 56
}

/// `key` sanitised onto `path`, as `| json` names fields; most keys need
/// no change and are copied whole.
fn push_key(path: &mut String, key: &str) {
    if key.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'_') {
        path.push_str(key);
    } else {
        push_sanitized_key(path, key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logql::narrow::read_streaming;

    /// Where the scanner answers, the streaming reader (serde_json's
    /// parser) answers too, and gives the sink the same fields in the same
    /// order. Returns whether the scanner answered.
    fn agrees(line: &str, names: &[String]) -> bool {
        let mut fast = Recorder::new(names);
        if read(line, &mut fast).is_none() {
            return false;
        }
        let mut slow = Recorder::new(names);
        assert!(
            read_streaming(line, &mut slow),
            "answered a line serde_json refuses: {line}"
        );
        assert_eq!(fast.takes, slow.takes, "{line} {names:?}");
        true
    }

    /// On a whole object that never gives every name (so it is read to
    /// the end), the last value of each wanted field is the full reader's.
    fn as_full_reader(line: &str, names: &[String]) {
        let mut never = names.to_vec();
        never.push("__never__".to_owned());
        let mut got = Recorder::new(&never);
        if read(line, &mut got).is_none() {
            return;
        }
        let last: std::collections::BTreeMap<_, _> = got.takes.into_iter().collect();
        let full: std::collections::BTreeMap<_, _> = reference_fields(line)
            .unwrap()
            .into_iter()
            .filter(|(k, _)| names.contains(k))
            .collect();
        assert_eq!(last, full, "{line} {names:?}");
    }

    /// The unnarrowed reader takes a line exactly when serde_json does,
    /// and gives what the reference gives.
    fn all_agree(line: &str) {
        let mut all = Labels::new();
        let ok = crate::logql::narrow::read_all(line, &mut all);
        let reference = reference_fields(line);
        assert_eq!(ok, reference.is_some(), "{line}");
        if let Some(want) = reference {
            assert_eq!(all, want.into_iter().collect::<Labels>(), "{line}");
        }
    }

    fn names(n: &[&str]) -> Vec<String> {
        n.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn reads_the_wanted_fields_as_the_full_reader_does() {
        let all = names(&[
            "level",
            "net_dst_port",
            "net_src_ip",
            "n",
            "ok",
            "x",
            "a_b",
            "_1st",
            "list",
            "deep_er_est",
            "net",
            "s",
            "t",
        ]);
        let answered = [
            r#"{"level":"info","net":{"dst_port":443,"src":{"ip":"10.0.0.1"}},"ok":true,"x":null}"#,
            r#"{"net_dst_port":"top","net":{"dst_port":80}}"#,
            r#"{"1st":"d","list":[1,{"a":[]},"x"],"deep":{"er":{"est":"z"}}}"#,
            r#"{ "level" : "w\"a\\r\/n\tx" , "net" : "not an object" }  "#,
            r#"{"n":1,"n":2,"level":"x","level":{"a":1}}"#,
            r#"{"n":2,"n":null,"net":{"dst_port":1},"net":7}"#,
            r#"{"n":18446744073709551615,"x":-9223372036854775808,"a":{"b":2},"a_b":0}"#,
            r#"{"s":"ünï😀","t":false,"other":-1.5,"more":[true,false,null,0,-0.25]}"#,
            r#"{}"#,
            r#"{"n":1.50,"x":-0,"ok":1e3,"a_b":2.5E-3,"level":"\u0077\u00E9"}"#,
            r#"{"n":18446744073709551616,"x":1e400,"z":"\ud800 is skipped"}"#,
        ];
        for line in answered {
            assert!(agrees(line, &all), "gave up on {line}");
            assert!(agrees(line, &names(&["net_dst_port"])), "{line}");
            assert!(agrees(line, &[]), "{line}");
            // Of equal keys the last scalar wins, as Loki sets them;
            // serde_json's map keeps the last value of any kind.
            // So does the later of two fields flattened to one name.
            if !line.contains(r#""n":"#) && !line.contains("net_dst_port") {
                as_full_reader(line, &all);
            }
        }
        // It stops once every wanted field is in: the rest is not read.
        let mut level = Recorder::new(&all[..1]);
        assert!(read(r#"{"level":"info","msg":"cut sho"#, &mut level).is_some());
        assert_eq!(level.takes, [("level".to_owned(), "info".to_owned())]);
        assert!(agrees(r#"{"n":1,"n":2,"x":3} trailing"#, &names(&["n"])));
        // Where it stops, the value it stopped on is still a whole token.
        assert!(read(r#"{"n":00}"#, &mut Recorder::new(&names(&["n"]))).is_none());
        assert!(agrees(r#"{"n":0x"#, &names(&["n"])));
        // Not when one is still missing.
        assert!(read(
            r#"{"level":"info","msg":"cut sho"#,
            &mut Recorder::new(&all)
        )
        .is_none());
    }

    #[test]
    fn gives_up_where_it_cannot_read_exactly() {
        let all = names(&["a", "k"]);
        for line in [
            r#"{"a":"\ud800"}"#,
            r#"{"a":"\u00e"}"#,
            r#"{"b":"\u00eg"}"#,
            r#"{"k\"ey":1}"#,
            r#"{"b":1e}"#,
            r#"{"b":1E+}"#,
            r#"{"b":-}"#,
            "{\"a\":\"tab\there\"}",
            "{\"a\":1}\n",
            r#"{"a":1"#,
            r#"{"a":1} x"#,
            r#"{"a":01}"#,
            r#"{"a":1.}"#,
            r#"{"a":tru}"#,
            r#"{"a":[1,]}"#,
            r#"{"a":1,}"#,
            r#"{"a" 1}"#,
            r#"{'a':1}"#,
        ] {
            assert!(read(line, &mut Recorder::new(&all)).is_none(), "{line}");
        }
        let deep = format!("{}1{}", r#"{"a":"#.repeat(120), "}".repeat(120));
        assert!(read(&deep, &mut Recorder::new(&all)).is_none());
        let long = format!(r#"{{"a":{}}}"#, "9".repeat(400));
        assert!(agrees(&long, &all));
        // A scalar where an object is looked for (`a` on the way to
        // `a_x`) is a value to serde_json, which checks its range and
        // escapes: those are left to it, and 1e400 is then an error there.
        let inside = names(&["a_x"]);
        for line in [r#"{"a":1e3}"#, r#"{"a":"\u0041"}"#, &long] {
            assert!(read(line, &mut Recorder::new(&inside)).is_none(), "{line}");
        }
        assert!(!read_streaming(
            r#"{"a":1e400}"#,
            &mut Recorder::new(&inside)
        ));
        assert!(read_streaming(
            r#"{"a":1e300}"#,
            &mut Recorder::new(&inside)
        ));
        assert!(agrees(r#"{"a":-1.5,"b":"\u0041","a":{"x":"y"}}"#, &inside));
    }

    /// The bit masks find exactly the `"` and `\\` bytes, from any start,
    /// next to bytes that differ from them by one bit (the SWAR's edge).
    #[test]
    fn wants_follow_the_flattened_names() {
        let names = ["level", "net_dst_port", "_x"];
        let of = |path| Wants::of(names, path);
        assert_eq!(
            of("level"),
            Wants {
                value: true,
                object: false
            }
        );
        assert_eq!(
            of("net"),
            Wants {
                value: false,
                object: true
            }
        );
        assert_eq!(
            of("net_dst"),
            Wants {
                value: false,
                object: true
            }
        );
        assert!(!of("ne").any() && !of("msg").any() && !of("levels").any());
        // An empty key at the top flattens its members to `_x`.
        assert_eq!(
            of(""),
            Wants {
                value: false,
                object: true
            }
        );
    }

    #[test]
    fn marks_are_every_quote_and_backslash() {
        let alphabet = [
            b'"', b'\\', 0xa2, 0xdc, 0x21, 0x23, 0x5b, 0x5d, 0x02, 0x7f, 0, b'a',
        ];
        let mut seed = 7u64;
        for len in [0, 1, 7, 8, 9, 63, 64, 65, 127, 128, 200] {
            let line: Vec<u8> = (0..len)
                .map(|_| {
                    seed = seed
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    alphabet[(seed >> 33) as usize % alphabet.len()]
                })
                .collect();
            let want: Vec<usize> = (0..len)
                .filter(|&i| line[i] == b'"' || line[i] == b'\\')
                .collect();
            for from in 0..=len {
                let first = want.iter().copied().find(|&p| p >= from);
                assert_eq!(Marks::new(&line).next_from(from), first, "{len} {from}");
            }
            let mut marks = Marks::new(&line);
            let (mut got, mut i) = (Vec::new(), 0);
            while let Some(p) = marks.next_from(i) {
                got.push(p);
                i = p + 1 + p % 3;
            }
            let mut walked = Vec::new();
            let mut i = 0;
            while let Some(p) = want.iter().copied().find(|&p| p >= i) {
                walked.push(p);
                i = p + 1 + p % 3;
            }
            assert_eq!(got, walked, "{len}");
            // Back from the end to any earlier start, as a wanted object
            // is read again after it was checked.
            for back in 0..=len {
                marks.next_from(len);
                marks.rewind(back);
                let first = want.iter().copied().find(|&p| p >= back);
                assert_eq!(marks.next_from(back), first, "{len} {back}");
            }
        }
    }

    /// Real JSON log lines, whole and mutated byte by byte: whatever the
    /// scanner answers, the streaming reader agrees with.
    #[test]
    fn real_lines_and_their_mutations_agree_with_the_full_reader() {
        let dir = skidder_common::testing::shared_data_dir();
        let mut lines = Vec::new();
        for file in [
            "zeek/dns.json",
            "zeek/ssl.json",
            "zeek/x509.json",
            "zeek/smtp.json",
            "zeek/weird.json",
            "suricata/first-org-conf-2015.ndjson",
            "elastic/nginxplus_status.ndjson",
        ] {
            let text = std::fs::read_to_string(dir.join(file)).unwrap();
            lines.extend(text.lines().take(40).map(str::to_owned));
        }
        let (mut answered, mut objects) = (0, 0);
        for line in &lines {
            let Some(full) = reference_fields(line) else {
                continue;
            };
            objects += 1;
            // Every field, and the last one.
            let every: Vec<String> = full.keys().cloned().collect();
            let one = every.iter().rev().take(1).cloned().collect::<Vec<_>>();
            if agrees(line, &every) {
                answered += 1;
            }
            as_full_reader(line, &every);
            agrees(line, &one);
            if objects % 8 != 1 {
                continue;
            }
            for i in (0..line.len()).step_by(17) {
                for with in ["\"", "\\", "{", "}", "]", ",", ":", "0", "-", "."] {
                    let mut m = line.as_bytes().to_vec();
                    m[i] = with.as_bytes()[0];
                    if let Ok(m) = String::from_utf8(m) {
                        all_agree(&m);
                        agrees(&m, &every);
                        agrees(&m, &one);
                    }
                }
                if line.is_char_boundary(i) {
                    agrees(&line[..i], &every);
                    all_agree(&line[..i]);
                }
            }
        }
        assert!(
            objects > 100 && answered * 10 >= objects * 9,
            "answered {answered} of {objects} real lines"
        );
    }
}
