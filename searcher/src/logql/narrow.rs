//! `| json` that reads only the fields a metric query uses. A line's
//! labels matter to a range function only through its grouping, its
//! unwrapped label and the filters after the parser; when the query names
//! them all (`sum by (level) (sum_over_time({…} | json | unwrap took […]))`),
//! flattening every field of every line (a string per field, most of them
//! thrown away) is what the query spends its time on.
//!
//! Loki narrows its parsers the same way (its parser hints), and this
//! reads as Loki's narrowed `| json` does:
//! - a query that needs no field from the line (`sum(count_over_time({…}
//!   | json […]))`) does not parse it at all, so no line is an error;
//! - otherwise the fields are read in the line's order and the reading
//!   stops once every wanted name is in, so a line cut or broken after
//!   them is not `JSONParserErr`; one broken before them is;
//! - of equal names (a repeated key, or `a_b` and `a: {b}`), the last
//!   scalar read wins.
//!
//! A name the line can never give (`__error__`, a field renamed
//! `x_extracted` because a stream label is called `x`) keeps the reading
//! going to the end, and the line is checked whole, as in Loki.
//!
//! A label filter on one name after the parser is checked as soon as the
//! line gives that name, and a line it fails is dropped there, unread
//! further (Loki's `ShouldContinueParsingLine`): so in
//! `sum(count_over_time({…} | json | status="500" | __error__="" […]))`
//! most lines are read only up to their `status`. The line would fail the
//! filter later anyway, so this changes no answer but Loki's own: of a
//! repeated key, any value that fails drops the line.

use std::collections::BTreeSet;

use serde::de::{DeserializeSeed, Error as _, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;
use skidder_common::format::tokens::{push_sanitized_key, MAX_FIELD_DEPTH};

use super::eval::{keeps_value, series_name, Labels};
use super::json_scan::{self, Sink, Wants};
use super::{LabelExpr, LabelSource, Stage};

/// The labels a `| json` at `stages[at]` must produce when the query
/// needs only `wanted` of the line's labels afterwards: `wanted`, plus
/// every label a later filter, template or rename reads, as Loki's hints
/// hold them. `None` (read every field) when a later stage could read any
/// label (a template that reads the label map itself). Before another
/// parser, it wants the pipeline's hints (see [`parser_hints`]), which
/// decide whether the later one runs, as every parser of Loki's pipeline
/// reads by the same hints.
pub fn json_wants(stages: &[Stage], at: usize, wanted: &BTreeSet<String>) -> Option<Wanted> {
    let checks = early_checks(&stages[at + 1..]);
    if stages[at + 1..].iter().any(is_parser) {
        let names = parser_hints(stages, wanted)?.into_iter().collect();
        return Some(Wanted { names, checks });
    }
    let mut names = wanted.clone();
    for stage in &stages[at + 1..] {
        add_names_read(stage, &mut names)?;
    }
    // Loki's hints also hold the names filters before the parser read; a
    // stream label among them is never given, so the line is read whole.
    for stage in &stages[..at] {
        if let Stage::Labels(e) = stage {
            label_names(e, &mut names);
        }
    }
    with_unsuffixed(&mut names);
    Some(Wanted { names, checks })
}

/// The filters a narrowed `| json` checks as it reads (see the module's
/// docs): those on one name, as Loki's hints take them (never an `and` or
/// an `or`), up to the first stage that could change a label (a parser, a
/// `label_format`, `drop` or `keep`).
fn early_checks(after: &[Stage]) -> Vec<LabelExpr> {
    let mut checks = Vec::new();
    for stage in after {
        match stage {
            Stage::Labels(
                e @ (LabelExpr::Str { .. } | LabelExpr::Num { .. } | LabelExpr::Ip { .. }),
            ) => {
                checks.push(e.clone());
            }
            Stage::Labels(_)
            | Stage::Line { .. }
            | Stage::AnyOf(_)
            | Stage::IpFilter { .. }
            | Stage::PatternFilter { .. }
            | Stage::LineFormat(_)
            | Stage::Decolorize => {}
            _ => break,
        }
    }
    checks
}

/// Loki's parser hints for a metric query whose answer reads only
/// `wanted` of a line's labels: those, plus every label a filter,
/// template or rename anywhere in the pipeline reads. `None` when a
/// template could read any label. In Loki a `| json` or `| logfmt` does
/// nothing when the hints hold no name, or when earlier parsers have
/// already set every one of them (its hints' `NoLabels`): so
/// `sum by (level) (count_over_time({…} | logfmt | json [5m]))` never
/// runs `json` on a logfmt line that gave `level`, and never marks it
/// `JSONParserErr`.
pub fn parser_hints(stages: &[Stage], wanted: &BTreeSet<String>) -> Option<Vec<String>> {
    let mut names = wanted.clone();
    for stage in stages {
        add_names_read(stage, &mut names)?;
    }
    with_unsuffixed(&mut names);
    Some(names.into_iter().collect())
}

fn is_parser(stage: &Stage) -> bool {
    matches!(
        stage,
        Stage::Json
            | Stage::JsonFields(_)
            | Stage::Logfmt(_)
            | Stage::Regexp(_)
            | Stage::Pattern(_)
            | Stage::Unpack
    )
}

/// Adds the labels `stage` reads to `names`; `None` if it could read any.
fn add_names_read(stage: &Stage, names: &mut BTreeSet<String>) -> Option<()> {
    match stage {
        Stage::Labels(e) => label_names(e, names),
        Stage::LineFormat(t) => names.extend(t.labels_read()?.iter().cloned()),
        Stage::LabelFormat(pairs) => {
            for (_, source) in pairs {
                match source {
                    LabelSource::Rename(from) => {
                        names.insert(from.clone());
                    }
                    LabelSource::Template(t) => names.extend(t.labels_read()?.iter().cloned()),
                }
            }
        }
        _ => {}
    }
    Some(())
}

/// A field that clashes with a stream label is renamed `x_extracted`: a
/// wanted `x_extracted` wants `x` of the line too.
fn with_unsuffixed(names: &mut BTreeSet<String>) {
    let stripped: Vec<String> = names
        .iter()
        .filter_map(|n| n.strip_suffix("_extracted").map(str::to_owned))
        .collect();
    names.extend(stripped);
}

/// Every label name a filter reads.
pub fn label_names(e: &LabelExpr, out: &mut BTreeSet<String>) {
    match e {
        LabelExpr::And(a, b) | LabelExpr::Or(a, b) => {
            label_names(a, out);
            label_names(b, out);
        }
        LabelExpr::Str { name, .. } | LabelExpr::Num { name, .. } | LabelExpr::Ip { name, .. } => {
            out.insert(name.clone());
        }
    }
}

/// The flattened field names a narrowed `| json` extracts, and the
/// filters it checks as it reads them.
#[derive(Debug, Clone)]
pub struct Wanted {
    names: BTreeSet<String>,
    /// Filters on one label each: a line that gives the label a value
    /// one of them fails is dropped there.
    checks: Vec<LabelExpr>,
}

/// What a parser reading by the hints (a narrowed `| json`, a metric
/// query's `| logfmt`) made of a line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// A JSON object as far as it had to be read.
    Read,
    /// Not a JSON object as far as it had to be read: `JSONParserErr`.
    Broken,
    /// A field failed a filter the query puts after the parser: the line
    /// is dropped.
    Dropped,
}

impl Wanted {
    /// What a field flattened to `path` is to the query: wanted itself,
    /// or an object on the way to a wanted field. The names are few, so a
    /// scan of them beats a lookup per key.
    fn wants(&self, path: &str) -> Wants {
        Wants::of(self.names.iter().map(String::as_str), path)
    }

    /// The wanted fields of `line` (a series of labels `stream`), as
    /// Loki's narrowed `| json` reads them (see the module's docs), pushed
    /// onto `out` under their flattened names.
    ///
    /// [`json_scan`] reads most lines; where it gives up,
    /// [`read_streaming`] reads the line through serde_json.
    pub fn read(&self, line: &str, stream: &Labels, out: &mut Labels) -> Outcome {
        if self.names.is_empty() {
            return Outcome::Read;
        }
        let start = out.len();
        if line.starts_with('{') {
            let mut take = Take::new(self, stream, out);
            if json_scan::read(line, &mut take).is_some() {
                return take.outcome(true);
            }
        }
        out.truncate(start);
        let mut take = Take::new(self, stream, out);
        let read = read_streaming(line, &mut take);
        take.outcome(read)
    }
}

/// Every scalar field of `line` (the unnarrowed `| json`), pushed onto
/// `out` under its flattened name, sorted by name; of equal names the last
/// in the line wins, as Loki's `Set` leaves it. `false` if the line is not
/// a JSON object; the fields read before the fault are kept, as Loki keeps
/// the labels it set before its parser failed.
pub fn read_all(line: &str, out: &mut Labels) -> bool {
    let start = out.len();
    let mut ok = line.starts_with('{') && json_scan::read(line, &mut Every(out)).is_some();
    if !ok {
        out.truncate(start);
        ok = read_streaming(line, &mut Every(out));
    }
    // Stable, so equal names stay in the line's order: keep the last.
    out[start..].sort_by(|a, b| a.0.cmp(&b.0));
    let mut read: Labels = out.drain(start..).collect();
    read.reverse();
    read.dedup_by(|later, earlier| later.0 == earlier.0);
    out.extend(read.into_iter().rev());
    ok
}

/// A sink that wants every field and never has all it needs.
struct Every<'a>(&'a mut Labels);

impl Sink for Every<'_> {
    fn wants(&self, _: &str) -> Wants {
        Wants {
            value: true,
            object: true,
        }
    }

    fn take(&mut self, path: &str, value: String) -> bool {
        self.0.push((path.to_owned(), value));
        false
    }

    fn may_stop(&self) -> bool {
        false
    }
}

/// The wanted fields of one line, as they are read, and whether all that
/// the query needs is in.
pub struct Take<'a> {
    wanted: &'a Wanted,
    stream: &'a Labels,
    out: &'a mut Labels,
    start: usize,
    /// The wanted names the line has given, as its series names them.
    given: Vec<&'a str>,
    /// A value failed one of the wanted's checks.
    dropped: bool,
}

impl<'a> Take<'a> {
    pub fn new(wanted: &'a Wanted, stream: &'a Labels, out: &'a mut Labels) -> Self {
        let start = out.len();
        Take {
            wanted,
            stream,
            out,
            start,
            given: Vec::new(),
            dropped: false,
        }
    }

    /// What the reading made of the line, given whether the reader found
    /// it an object as far as it read.
    fn outcome(&self, read: bool) -> Outcome {
        match (self.dropped, read) {
            (true, _) => Outcome::Dropped,
            (false, true) => Outcome::Read,
            (false, false) => Outcome::Broken,
        }
    }
}

/// Whether `value`, as the label the series names `name`, passes every
/// one-name filter on that name.
fn passes_checks(checks: &[LabelExpr], name: &str, value: &str) -> bool {
    checks
        .iter()
        .all(|check| !filters_name(check, name) || keeps_value(check, value))
}

/// How a metric query's `| logfmt` reads by Loki's hints: it stops once
/// the line has given every hinted name (its `AllRequiredExtracted`), and
/// drops the line at a value a one-label filter after it fails (its
/// `ShouldContinueParsingLine`), as the narrowed `| json` does.
#[derive(Debug, Clone)]
pub struct LogfmtHints {
    names: Vec<String>,
    checks: Vec<LabelExpr>,
}

impl LogfmtHints {
    /// For a `| logfmt` at `stages[at]` in a metric query that reads only
    /// `wanted`; `None` where Loki's hints would not narrow it.
    pub fn new(stages: &[Stage], at: usize, wanted: &BTreeSet<String>) -> Option<Self> {
        Some(LogfmtHints {
            names: parser_hints(stages, wanted)?,
            checks: early_checks(&stages[at + 1..]),
        })
    }

    /// What to do after the line set label `name` (as the series names
    /// it) to `value`; `set` says whether a label is set so far, this one
    /// included.
    pub fn after(&self, name: &str, value: &str, set: &dyn Fn(&str) -> bool) -> Flow {
        if !passes_checks(&self.checks, name, value) {
            return Flow::Drop;
        }
        let all_in = !self.names.is_empty() && self.names.iter().all(|n| set(n));
        if all_in {
            Flow::Done
        } else {
            Flow::More
        }
    }
}

/// Whether a parser reads on after a label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    More,
    /// Every hinted name is in: the rest of the line is not read.
    Done,
    /// A filter fails the value: the line is dropped.
    Drop,
}

/// Whether a one-name filter reads `name`.
fn filters_name(check: &LabelExpr, name: &str) -> bool {
    match check {
        LabelExpr::Str { name: n, .. }
        | LabelExpr::Num { name: n, .. }
        | LabelExpr::Ip { name: n, .. } => n == name,
        LabelExpr::And(..) | LabelExpr::Or(..) => false,
    }
}

impl Sink for Take<'_> {
    fn wants(&self, path: &str) -> Wants {
        self.wanted.wants(path)
    }

    fn take(&mut self, path: &str, value: String) -> bool {
        // As the series will name it: a stream label keeps its name, so
        // the field is `path_extracted`.
        let renamed = self.stream.iter().any(|(k, _)| k == path);
        if !self.wanted.checks.is_empty() {
            let name = series_name(path, self.stream);
            if !passes_checks(&self.wanted.checks, &name, &value) {
                self.dropped = true;
                return true;
            }
        }
        if let Some(slot) = self.out[self.start..].iter_mut().find(|(k, _)| k == path) {
            slot.1 = value;
            return false;
        }
        self.out.push((path.to_owned(), value));
        let named = self.wanted.names.iter().find(|n| {
            if renamed {
                n.strip_suffix("_extracted") == Some(path)
            } else {
                n.as_str() == path
            }
        });
        if let Some(n) = named {
            if !self.given.contains(&n.as_str()) {
                self.given.push(n);
            }
        }
        self.given.len() == self.wanted.names.len()
    }
}

/// [`json_scan::read`]'s reading, done by serde_json's parser without
/// building the line's tree, for every line: each wanted scalar goes to
/// `sink` in the line's order, as `| json` writes it, until `sink` has all
/// it needs. `true` if the line is a JSON object as far as it was read.
pub fn read_streaming(line: &str, sink: &mut dyn Sink) -> bool {
    let mut de = serde_json::Deserializer::from_str(line);
    let mut walk = Walk {
        sink,
        path: String::new(),
        done: false,
    };
    let read = serde::Deserializer::deserialize_map(
        &mut de,
        Object {
            walk: &mut walk,
            depth: 0,
        },
    );
    match read {
        Ok(()) => de.end().is_ok(),
        // Stopped on purpose, or the line is broken before that.
        Err(_) => walk.done,
    }
}

struct Walk<'s> {
    sink: &'s mut dyn Sink,
    path: String,
    done: bool,
}

/// The error that stops serde_json once the sink has all it needs.
const ALL_READ: &str = "every wanted field is read";

/// An object's members, flattened under the walk's path.
struct Object<'w, 's> {
    walk: &'w mut Walk<'s>,
    depth: usize,
}

impl<'de> Visitor<'de> for Object<'_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        loop {
            let walk = &mut *self.walk;
            let restore = walk.path.len();
            let key = Key {
                path: &mut walk.path,
                depth: self.depth,
            };
            if map.next_key_seed(key)?.is_none() {
                break;
            }
            let wants = walk.sink.wants(&walk.path);
            if wants.any() {
                map.next_value_seed(Member {
                    walk: &mut *walk,
                    depth: self.depth,
                    wants,
                })?;
            } else {
                map.next_value::<IgnoredAny>()?;
            }
            walk.path.truncate(restore);
            if walk.done {
                return Err(A::Error::custom(ALL_READ));
            }
        }
        Ok(())
    }
}

/// A member's key, flattened onto the path as `| json` names it, without
/// a copy of its own.
struct Key<'p> {
    path: &'p mut String,
    depth: usize,
}

impl<'de> DeserializeSeed<'de> for Key<'_> {
    type Value = ();

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for Key<'_> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a key")
    }

    fn visit_str<E: serde::de::Error>(self, key: &str) -> Result<(), E> {
        if self.depth > 0 || key.as_bytes().first().is_some_and(u8::is_ascii_digit) {
            self.path.push('_');
        }
        push_sanitized_key(self.path, key);
        Ok(())
    }
}

/// The value of a member the query wants, or wants something inside.
struct Member<'w, 's> {
    walk: &'w mut Walk<'s>,
    depth: usize,
    wants: Wants,
}

impl Member<'_, '_> {
    fn take(self, text: String) {
        if self.wants.value && self.walk.sink.take(&self.walk.path, text) {
            self.walk.done = true;
        }
    }
}

impl<'de> DeserializeSeed<'de> for Member<'_, '_> {
    type Value = ();

    /// A wanted value whole, as the line spells it: `| json` keeps a
    /// number's text (`1.50` stays `1.50`, as Loki's parser leaves it),
    /// which serde_json's visitors would hand over as an `f64`. An object
    /// on the way to a wanted field as well is then read from that text.
    /// A value only on the way to one is read member by member.
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        if !self.wants.value {
            return d.deserialize_any(self);
        }
        let raw = <&'de RawValue>::deserialize(d)?;
        let text = raw.get();
        match text.as_bytes().first() {
            Some(b'{') if self.wants.object && self.depth + 1 < MAX_FIELD_DEPTH => {
                let mut de = serde_json::Deserializer::from_str(text);
                let object = Object {
                    walk: self.walk,
                    depth: self.depth + 1,
                };
                // A stop inside (`ALL_READ`) stops the outer reading too.
                serde::Deserializer::deserialize_map(&mut de, object).map_err(D::Error::custom)
            }
            Some(b'"') => {
                let s: String = serde_json::from_str(text).map_err(D::Error::custom)?;
                self.take(s);
                Ok(())
            }
            Some(b'-' | b'0'..=b'9' | b't' | b'f') => {
                self.take(text.to_owned());
                Ok(())
            }
            _ => Ok(()),
        }
    }
}

/// A value on the way to a wanted field: an object is read member by
/// member, anything else is checked and passed over.
impl<'de> Visitor<'de> for Member<'_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        if self.wants.object && self.depth + 1 < MAX_FIELD_DEPTH {
            return Object {
                walk: self.walk,
                depth: self.depth + 1,
            }
            .visit_map(map);
        }
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(())
    }

    fn visit_str<E: serde::de::Error>(self, _: &str) -> Result<(), E> {
        Ok(())
    }

    fn visit_bool<E: serde::de::Error>(self, _: bool) -> Result<(), E> {
        Ok(())
    }

    fn visit_i64<E: serde::de::Error>(self, _: i64) -> Result<(), E> {
        Ok(())
    }

    fn visit_u64<E: serde::de::Error>(self, _: u64) -> Result<(), E> {
        Ok(())
    }

    fn visit_f64<E: serde::de::Error>(self, _: f64) -> Result<(), E> {
        Ok(())
    }

    fn visit_unit<E: serde::de::Error>(self) -> Result<(), E> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logql::json_scan::reference_fields;

    fn wanted(names: &[&str]) -> Wanted {
        Wanted {
            names: names.iter().map(|n| (*n).to_owned()).collect(),
            checks: Vec::new(),
        }
    }

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    /// On whole objects, the full reader's fields of those wanted, the
    /// last scalar of equal keys winning, whichever reader reads the line.
    #[test]
    fn reads_what_the_full_reader_reads_of_the_wanted_fields() {
        let lines = [
            r#"{"level":"info","net":{"dst_port":443,"src":{"ip":"10.0.0.1"}},"n":1e3,"ok":true,"x":null,"a b":"s"}"#,
            r#"{"esc\"aped":"v","1st":"d","list":[1,2],"deep":{"er":{"est":"z"}}}"#,
            r#"{"level":"\u0077arn","net":"not an object"}"#,
            r#"{"n":18446744073709551615,"x":-0,"ok":1.0,"a_b":0.1,"c":{"b":2}}"#,
            r#"{"n":-9223372036854775808,"x":1e-7,"ok":123456789012345678901234567890}"#,
        ];
        let all = [
            "level",
            "net_dst_port",
            "net_src_ip",
            "n",
            "ok",
            "x",
            "a_b",
            "esc_aped",
            "_1st",
            "list",
            "deep_er_est",
            "net",
        ];
        for line in lines {
            let full = reference_fields(line).unwrap();
            let mut all_read = Labels::new();
            assert!(read_all(line, &mut all_read), "{line}");
            assert_eq!(
                all_read,
                full.clone().into_iter().collect::<Labels>(),
                "{line}"
            );
            for pick in [&all[..], &["net_dst_port"], &["deep_er_est", "level"]] {
                let w = wanted(pick);
                let mut got = Labels::new();
                assert_eq!(
                    w.read(line, &Labels::new(), &mut got),
                    Outcome::Read,
                    "{line}"
                );
                got.sort();
                let mut want: Labels = full
                    .iter()
                    .filter(|(k, _)| pick.contains(&k.as_str()))
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect();
                want.sort();
                assert_eq!(got, want, "{line} {pick:?}");
            }
        }
        let mut got = Labels::new();
        let dup = r#"{"n":1,"n":2,"level":"x","level":{"a":1}}"#;
        assert_eq!(
            wanted(&["n", "level"]).read(dup, &Labels::new(), &mut got),
            Outcome::Read
        );
        assert_eq!(got, labels(&[("n", "2"), ("level", "x")]));
        let mut got = Labels::new();
        assert!(read_all(dup, &mut got));
        // Loki sets `level` from the scalar, and `level_a` from the object
        // after it, which does not unset `level`.
        assert_eq!(got, labels(&[("level", "x"), ("level_a", "1"), ("n", "2")]));
        // Two fields flattened to one name: the later in the line wins, as
        // Loki sets them, unless the reading stopped at the first.
        let clash = r#"{"net_dst_port":"top","net":{"dst_port":80}}"#;
        for (pick, want) in [
            (&["net_dst_port", "x"][..], "80"),
            (&["net_dst_port"], "top"),
        ] {
            let mut got = Labels::new();
            assert_eq!(
                wanted(pick).read(clash, &Labels::new(), &mut got),
                Outcome::Read
            );
            assert_eq!(got, labels(&[("net_dst_port", want)]), "{pick:?}");
        }
        let mut got = Labels::new();
        assert!(read_all(clash, &mut got));
        assert_eq!(got, labels(&[("net_dst_port", "80")]));
    }

    /// Loki's `| json` writes a number as the line spells it (its
    /// `readValue` returns a number's bytes), so `1.50` is not `1.5`, and
    /// a filter or a grouping sees the text the application logged.
    /// Every reader, narrowed or not, fast or slow, writes the same.
    #[test]
    fn a_number_is_written_as_the_line_spells_it() {
        let spelled = [
            ("a", "1.50"),
            ("b", "1e3"),
            ("c", "-0"),
            ("d", "12345678901234567890123"),
            ("e", "2.5E-3"),
            ("f", "1e400"),
            ("g", "true"),
            ("h_i", "0.10"),
        ];
        let line = r#"{"a":1.50,"b":1e3,"c":-0,"d":12345678901234567890123,"e":2.5E-3,"f":1e400,"g":true,"h":{"i":0.10}}"#;
        // The same line with an escape in a string no field names, which
        // json_scan reads, and with a tab for a space, which only serde_json
        // reads.
        let escaped = line.replace(r#""g":true"#, r#""g":true,"s":"\u00e9\u0026""#);
        let tabbed = line.replace(r#""g":true"#, "\"g\":true,\t\"s\":\"x\"");
        for line in [line, escaped.as_str(), tabbed.as_str()] {
            let mut got = Labels::new();
            assert!(read_all(line, &mut got), "{line}");
            got.retain(|(k, _)| k != "s");
            assert_eq!(got, labels(&spelled), "{line}");
            let mut got = Labels::new();
            assert_eq!(
                wanted(&["a", "h_i", "zz"]).read(line, &Labels::new(), &mut got),
                Outcome::Read
            );
            assert_eq!(got, labels(&[("a", "1.50"), ("h_i", "0.10")]), "{line}");
            let mut slow = Labels::new();
            assert!(read_streaming(line, &mut Every(&mut slow)));
            slow.retain(|(k, _)| k != "s");
            assert_eq!(slow, labels(&spelled), "{line}");
        }
        for (line, fast) in [(line, true), (&escaped, true), (&tabbed, false)] {
            let scanned = json_scan::read(line, &mut Every(&mut Labels::new()));
            assert_eq!(scanned.is_some(), fast, "{line}");
        }
        let mut got = Labels::new();
        assert!(read_all(&escaped, &mut got));
        assert!(got.contains(&("s".to_owned(), "é&".to_owned())), "{got:?}");
    }

    /// As Loki's narrowed parser: no wanted field, no reading at all; the
    /// reading stops once every wanted field is in.
    #[test]
    fn reads_only_as_far_as_the_query_needs() {
        let none = wanted(&[]);
        for line in ["not json", "[1,2]", r#"{"a":1"#, ""] {
            let mut got = Labels::new();
            assert_eq!(
                none.read(line, &Labels::new(), &mut got),
                Outcome::Read,
                "{line}"
            );
            assert!(got.is_empty());
        }
        let cut = r#"{"level":"warn","n":7,"msg":"the shipper cut th"#;
        for (pick, want) in [
            (&["level"][..], &[("level", "warn")][..]),
            (&["n", "level"], &[("level", "warn"), ("n", "7")]),
        ] {
            let mut got = Labels::new();
            assert_eq!(
                wanted(pick).read(cut, &Labels::new(), &mut got),
                Outcome::Read,
                "{pick:?}"
            );
            assert_eq!(got, labels(want), "{pick:?}");
        }
        // Broken before a wanted field is in: an error, as in Loki.
        for pick in [&["msg"][..], &["level", "other"], &["level", "__error__"]] {
            assert_eq!(
                wanted(pick).read(cut, &Labels::new(), &mut Labels::new()),
                Outcome::Broken,
                "{pick:?}"
            );
        }
        // A field named as a stream label becomes `level_extracted`, so a
        // query that wants the stream's `level` reads the line whole.
        let stream = labels(&[("level", "info")]);
        assert_eq!(
            wanted(&["level"]).read(cut, &stream, &mut Labels::new()),
            Outcome::Broken
        );
        let mut got = Labels::new();
        assert_eq!(
            wanted(&["level_extracted", "level"]).read(r#"{"level":"warn"}"#, &stream, &mut got),
            Outcome::Read
        );
        assert_eq!(got, labels(&[("level", "warn")]));
    }

    #[test]
    fn a_line_that_is_not_an_object_is_an_error() {
        for line in [
            "not json",
            "[1,2]",
            r#"{"b":1"#,
            "",
            "42",
            r#"{"a":"\ud800"}"#,
            r#"{"a":1.}"#,
            r#"{"a":1e+}"#,
            r#"{"a":-}"#,
            r#"{"a":.5}"#,
            // A value serde_json refuses, though a later one replaces it.
            r#"{"a":"\udf7d","a":"x"}"#,
        ] {
            assert_eq!(
                wanted(&["a"]).read(line, &Labels::new(), &mut Labels::new()),
                Outcome::Broken,
                "{line}"
            );
            assert!(!read_all(line, &mut Labels::new()), "{line}");
        }
    }

    #[test]
    fn later_templates_or_parsers_need_every_field() {
        let Ok(crate::logql::Query::Log(q)) = crate::logql::parse(
            r#"{a="b"} | json | status >= 500 or level_extracted="x" |= "y" | drop z"#,
        ) else {
            panic!()
        };
        let w = json_wants(&q.stages, 0, &["app".to_owned()].into()).unwrap();
        assert_eq!(
            w.names.iter().map(String::as_str).collect::<Vec<_>>(),
            ["app", "level", "level_extracted", "status"]
        );
        // Templates and renames add the labels they read, as Loki's hints
        // do; a template that reads the label map itself needs every
        // field. Before a second parser, the pipeline's hints are wanted.
        let names = |q: &str| {
            let Ok(crate::logql::Query::Log(q)) = crate::logql::parse(q) else {
                panic!("{q}")
            };
            json_wants(&q.stages, 0, &["app".to_owned()].into())
                .map(|w| w.names.into_iter().collect::<Vec<_>>())
        };
        assert_eq!(
            names(r#"{a="b"} | json | line_format "{{.x}} {{ $.y | ToUpper }}""#).unwrap(),
            ["app", "x", "y"]
        );
        assert_eq!(
            names(r#"{a="b"} | json | label_format s=level, t="{{.u}}" | t="v""#).unwrap(),
            ["app", "level", "t", "u"]
        );
        for q in [
            r#"{a="b"} | json | line_format "{{ . }}""#,
            r#"{a="b"} | json | line_format "{{ range $k, $v := $ }}{{ $k }}{{ end }}""#,
            r#"{a="b"} | json | label_format x="{{ printf \"%v\" . }}""#,
            r#"{a="b"} | json | logfmt | line_format "{{ . }}""#,
        ] {
            assert_eq!(names(q), None, "{q}");
        }
        // Before another parser: the hints of the whole pipeline.
        assert_eq!(
            names(r#"{a="b"} | line_format "{{.y}}" | json | line_format "{{.msg}}" | logfmt | level="e""#)
                .unwrap(),
            ["app", "level", "msg", "y"]
        );
        // A filter before the parser is wanted too; an `or` of line
        // filters after it reads no label.
        let Ok(crate::logql::Query::Log(q)) =
            crate::logql::parse(r#"{a="b"} | pod="p" | json |= "x" or "y""#)
        else {
            panic!()
        };
        let w = json_wants(&q.stages, 1, &BTreeSet::new()).unwrap();
        assert_eq!(
            w.names.iter().map(String::as_str).collect::<Vec<_>>(),
            ["pod"]
        );
    }

    /// The filters checked as the line is read: those on one label, up to
    /// the first stage that could change a label.
    #[test]
    fn early_checks_stop_where_a_label_could_change() {
        let checked = |q: &str| -> Vec<String> {
            let Ok(crate::logql::Query::Log(q)) = crate::logql::parse(q) else {
                panic!("{q}")
            };
            let w = json_wants(&q.stages, 0, &BTreeSet::new()).unwrap();
            let mut names = BTreeSet::new();
            for c in &w.checks {
                label_names(c, &mut names);
            }
            names.into_iter().collect()
        };
        assert_eq!(
            checked(r#"{a="b"} | json |= "x" | s="1" | line_format "{{.s}}" | n > 2"#),
            ["n", "s"]
        );
        assert!(checked(r#"{a="b"} | json | s="1" or s="2""#).is_empty());
        assert!(checked(r#"{a="b"} | json | s="1", n > 2"#).is_empty());
        assert_eq!(
            checked(r#"{a="b"} | json | s="1" | label_format n=s | n > 2"#),
            ["s"]
        );
        assert!(checked(r#"{a="b"} | json | drop s | s="1""#).is_empty());
        // A line gives the value: dropped at the first field that fails,
        // however the rest of the line reads.
        let Ok(crate::logql::Query::Log(q)) = crate::logql::parse(r#"{a="b"} | json | s="1""#)
        else {
            panic!()
        };
        let w = json_wants(&q.stages, 0, &["x".to_owned()].into()).unwrap();
        for (line, want) in [
            (r#"{"s":"2","x":"cut"#, Outcome::Dropped),
            (r#"{"s":"1","x":"cut"#, Outcome::Broken),
            (r#"{"s":"1","x":"y"}"#, Outcome::Read),
            (r#"{"x":"y"}"#, Outcome::Read),
        ] {
            assert_eq!(
                w.read(line, &Labels::new(), &mut Labels::new()),
                want,
                "{line}"
            );
        }
        // A stream label `s` makes the field `s_extracted`: not the filter's.
        let stream = labels(&[("s", "9")]);
        let line = r#"{"s":"2","x":"y"}"#;
        assert_eq!(w.read(line, &stream, &mut Labels::new()), Outcome::Read);
    }
}
