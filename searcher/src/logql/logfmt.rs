//! `| logfmt`'s reading of a line, pair by pair, with the faults Loki's
//! decoder (its fork of go-logfmt) finds, so a line gives the labels it
//! gives in Loki:
//! - pairs are split by any byte up to the space (a tab too);
//! - a value holding `=` or `"` unquoted, a key holding `"` or empty, an
//!   unterminated quote, or an escape JSON has not (`\x`) is a fault: that
//!   pair gives nothing, and the reading goes on after it (stops, with
//!   `--strict`);
//! - a quoted value with escapes is unescaped as a JSON string (`\n` is a
//!   newline, `\u00e9` is `é`); a lone surrogate there becomes U+FFFD;
//! - a key with no value (`standalone`), an empty value (`a=` or `a=""`)
//!   and a value holding U+FFFD give a label only with `--keep-empty`, and
//!   then an empty one;
//! - a key becomes a label name as Loki sanitises it: a leading digit gets
//!   a `_`, and every byte but ASCII letters, digits and `_` becomes `_`.

use std::borrow::Cow;

use skidder_common::format::tokens::push_sanitized_key;

use super::eval::Labels;
use super::narrow::{Flow, Outcome};

/// One step of the decoder.
#[derive(Debug, PartialEq, Eq)]
enum Scan<'l> {
    /// A key, and its value if it has one that is not empty.
    Pair(&'l str, Option<Cow<'l, str>>),
    /// A malformed pair, now passed.
    Fault,
    /// Nothing but spaces is left.
    End,
}

struct Decoder<'l> {
    line: &'l str,
    pos: usize,
    /// A fault was found.
    failed: bool,
}

impl<'l> Decoder<'l> {
    fn next_pair(&mut self) -> Scan<'l> {
        let b = self.line.as_bytes();
        while self.pos < b.len() && b[self.pos] <= b' ' {
            self.pos += 1;
        }
        if self.pos >= b.len() {
            return Scan::End;
        }
        let start = self.pos;
        let key = loop {
            match b.get(self.pos) {
                None | Some(&(0..=b' ')) => {
                    let key = &self.line[start..self.pos];
                    return if key.contains(char::REPLACEMENT_CHARACTER) {
                        self.fault()
                    } else {
                        Scan::Pair(key, None)
                    };
                }
                Some(b'=') if self.pos == start => return self.skip_fault(),
                Some(b'=') => break &self.line[start..self.pos],
                Some(b'"') => return self.skip_fault(),
                Some(_) => self.pos += 1,
            }
        };
        if key.contains(char::REPLACEMENT_CHARACTER) {
            return self.skip_fault();
        }
        self.pos += 1;
        match b.get(self.pos) {
            None | Some(&(0..=b' ')) => Scan::Pair(key, None),
            Some(b'"') => self.quoted(key),
            Some(_) => {
                let start = self.pos;
                while let Some(&c) = b.get(self.pos).filter(|&&c| c > b' ') {
                    if c == b'=' || c == b'"' {
                        return self.skip_fault();
                    }
                    self.pos += 1;
                }
                Scan::Pair(key, Some(Cow::Borrowed(&self.line[start..self.pos])))
            }
        }
    }

    /// At the `"` opening `key`'s value.
    fn quoted(&mut self, key: &'l str) -> Scan<'l> {
        let b = self.line.as_bytes();
        let open = self.pos;
        let (mut escaped, mut escapes) = (false, false);
        for (i, &c) in b.iter().enumerate().skip(open + 1) {
            if escaped {
                escaped = false;
            } else if c == b'\\' {
                (escaped, escapes) = (true, true);
            } else if c == b'"' {
                self.pos = i + 1;
                let inner = &self.line[open + 1..i];
                let value = if escapes {
                    match unquote(inner) {
                        Some(v) => Cow::Owned(v),
                        None => return self.fault(),
                    }
                } else {
                    Cow::Borrowed(inner)
                };
                return Scan::Pair(key, Some(value).filter(|v| !v.is_empty()));
            }
        }
        self.pos = b.len();
        self.fault()
    }

    fn fault(&mut self) -> Scan<'l> {
        self.failed = true;
        Scan::Fault
    }

    /// A fault at `pos`: the pair is passed up to the next space.
    fn skip_fault(&mut self) -> Scan<'l> {
        let b = self.line.as_bytes();
        while self.pos < b.len() && b[self.pos] > b' ' {
            self.pos += 1;
        }
        self.fault()
    }
}

/// A quoted value's text unescaped as a JSON string, as Go's
/// `encoding/json` does it (which also takes `\'`); `None` for an escape
/// it refuses or a control character.
fn unquote(inner: &str) -> Option<String> {
    let mut out = String::with_capacity(inner.len());
    let mut rest = inner;
    while let Some(c) = rest.chars().next() {
        rest = &rest[c.len_utf8()..];
        if c < ' ' {
            return None;
        }
        if c != '\\' {
            out.push(c);
            continue;
        }
        let e = rest.chars().next()?;
        rest = &rest[e.len_utf8()..];
        out.push(match e {
            '"' | '\\' | '/' | '\'' => e,
            'b' => '\u{8}',
            'f' => '\u{c}',
            'n' => '\n',
            'r' => '\r',
            't' => '\t',
            'u' => {
                let high = hex4(rest)?;
                rest = &rest[4..];
                if !(0xD800..0xE000).contains(&high) {
                    char::from_u32(high)?
                } else {
                    // A surrogate pair is one character; anything else,
                    // U+FFFD, and what follows is read on its own.
                    let low = rest.strip_prefix("\\u").and_then(hex4);
                    match low.filter(|l| (0xDC00..0xE000).contains(l) && high < 0xDC00) {
                        Some(low) => {
                            rest = &rest[6..];
                            char::from_u32(0x10000 + ((high - 0xD800) << 10) + (low - 0xDC00))?
                        }
                        None => char::REPLACEMENT_CHARACTER,
                    }
                }
            }
            _ => return None,
        });
    }
    Some(out)
}

fn hex4(s: &str) -> Option<u32> {
    let digits = s.get(..4)?;
    digits
        .bytes()
        .all(|b| b.is_ascii_hexdigit())
        .then(|| u32::from_str_radix(digits, 16).ok())?
}

/// Loki's label name for a logfmt key.
fn label_name(key: &str) -> String {
    let mut name = String::with_capacity(key.len() + 1);
    if key.as_bytes().first().is_some_and(u8::is_ascii_digit) {
        name.push('_');
    }
    push_sanitized_key(&mut name, key);
    name
}

/// The labels `line` gives, in its order, pushed onto `out`; `false` if
/// the decoder found a fault (with `strict`, it stops at the first).
pub fn parse(line: &str, out: &mut Labels, keep_empty: bool, strict: bool) -> bool {
    parse_watched(line, out, keep_empty, strict, &mut |_| Flow::More) != Outcome::Broken
}

/// [`parse`], telling `watch` of each label as it is pushed (with `out`
/// as it then stands), which may stop the reading there or drop the line.
pub fn parse_watched(
    line: &str,
    out: &mut Labels,
    keep_empty: bool,
    strict: bool,
    watch: &mut dyn FnMut(&Labels) -> Flow,
) -> Outcome {
    let mut d = Decoder {
        line,
        pos: 0,
        failed: false,
    };
    loop {
        match d.next_pair() {
            Scan::End => break,
            Scan::Fault if strict => break,
            Scan::Fault => {}
            Scan::Pair(key, value) => {
                let value = value.filter(|v| !v.contains(char::REPLACEMENT_CHARACTER));
                if value.is_some() || keep_empty {
                    out.push((label_name(key), value.unwrap_or_default().into_owned()));
                    match watch(out) {
                        Flow::More => {}
                        Flow::Done => break,
                        Flow::Drop => return Outcome::Dropped,
                    }
                }
            }
        }
    }
    if d.failed {
        Outcome::Broken
    } else {
        Outcome::Read
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(line: &str, keep_empty: bool, strict: bool) -> (Vec<(String, String)>, bool) {
        let mut out = Vec::new();
        let clean = parse(line, &mut out, keep_empty, strict);
        (out, clean)
    }

    fn kv(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    /// Expected values worked out from go-logfmt's decoder, which Loki's
    /// forks: its key, value and quoted-value states and their faults.
    #[test]
    fn pairs_and_faults_as_lokis_decoder_reads_them() {
        for (line, want, clean) in [
            ("a=1 b=two", &[("a", "1"), ("b", "two")][..], true),
            (
                "a=1\tb=2\n c=3",
                &[("a", "1"), ("b", "2"), ("c", "3")],
                true,
            ),
            // `=` or `"` inside an unquoted value: that pair gives nothing.
            ("a=x=y b=2", &[("b", "2")], false),
            ("a=x\"y b=2", &[("b", "2")], false),
            // An empty key, or a quote in a key.
            ("=1 b=2", &[("b", "2")], false),
            ("k\"ey=1 b=2", &[("b", "2")], false),
            // An unterminated quote ends the line.
            ("a=1 b=\"open c=3", &[("a", "1")], false),
            // Empty values and standalone keys give nothing by default.
            ("a= b=\"\" c d=4", &[("d", "4")], true),
            // Escapes as in a JSON string.
            (
                r#"m="say \"hi\"\n\ttab \u00e9 \/ \' \\" n=1"#,
                &[("m", "say \"hi\"\n\ttab é / ' \\"), ("n", "1")],
                true,
            ),
            (r#"m="\ud83d\ude00""#, &[("m", "😀")], true),
            // An escape JSON has not is a fault; a lone surrogate is U+FFFD,
            // which no label value keeps.
            (r#"m="\x" n=1"#, &[("n", "1")], false),
            (r#"m="\ud800" n=1"#, &[("n", "1")], true),
            // Names as Loki sanitises them.
            (
                "1st=a x.y=b é=c",
                &[("_1st", "a"), ("x_y", "b"), ("_", "c")],
                true,
            ),
            ("   ", &[], true),
        ] {
            let (got, ok) = labels(line, false, false);
            assert_eq!(got, kv(want), "{line}");
            assert_eq!(ok, clean, "{line}");
        }
    }

    #[test]
    fn keep_empty_and_strict() {
        assert_eq!(
            labels("a= b=\"\" c d=4", true, false).0,
            kv(&[("a", ""), ("b", ""), ("c", ""), ("d", "4")])
        );
        // Strict stops at the first fault; without it the rest is read.
        let bad = "a=1 b=x=y c=3";
        assert_eq!(labels(bad, false, true), (kv(&[("a", "1")]), false));
        assert_eq!(
            labels(bad, false, false),
            (kv(&[("a", "1"), ("c", "3")]), false)
        );
    }

    #[test]
    fn any_line_reads_without_panic() {
        let mut rng = 0x2545_f491_4f6c_dd1du64;
        let alphabet = [
            "a", "=", "\"", "\\", " ", "\t", "u", "d8", "00", "é", "\u{fffd}", "n",
        ];
        for _ in 0..20_000 {
            let mut line = String::new();
            for _ in 0..(rng % 24) {
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                line.push_str(alphabet[(rng % alphabet.len() as u64) as usize]);
            }
            for (keep, strict) in [(false, false), (true, true)] {
                labels(&line, keep, strict);
            }
        }
    }
}
