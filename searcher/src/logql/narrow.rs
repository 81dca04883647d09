//! `| json` that reads only the fields a metric query uses. A line's
//! labels matter to a range function only through its grouping, its
//! unwrapped label and the filters after the parser; when the query names
//! them all (`sum by (level) (sum_over_time({…} | json | unwrap took […]))`),
//! flattening every field of every line (a string per field, most of them
//! thrown away) is what the query spends its time on. Loki narrows its
//! parsers the same way. Here the line is still read whole (by
//! [`json_scan`], or simd-json, or `| json`'s own reader, each deciding the
//! lines the one before cannot read exactly), so a line that is not a JSON
//! object is still `JSONParserErr`, but only the wanted fields become
//! labels; nested objects are entered only on the way to one.

use std::collections::BTreeSet;

use serde_json::Value;
use simd_json::prelude::{TypedValue, ValueAsScalar};
use simd_json::ValueType;
use skidder_common::format::tokens::{push_sanitized_key, MAX_FIELD_DEPTH};

use super::eval::{flatten_json, Labels};
use super::json_scan::{self, Wants};
use super::{LabelExpr, Stage};

type TapeValue<'t, 'i> = simd_json::value::tape::Value<'t, 'i>;

/// The labels a `| json` at `stages[at]` must produce when the query
/// needs only `wanted` of the line's labels afterwards: `wanted`, plus
/// every label a later filter reads. `None` (read every field) when a
/// later stage could read any label: a template, a rename, another parser.
pub fn json_wants(stages: &[Stage], at: usize, wanted: &BTreeSet<String>) -> Option<Wanted> {
    let mut names = wanted.clone();
    for stage in &stages[at + 1..] {
        match stage {
            Stage::Labels(e) => label_names(e, &mut names),
            Stage::Line { .. }
            | Stage::IpFilter { .. }
            | Stage::PatternFilter { .. }
            | Stage::Drop(_)
            | Stage::Keep(_)
            | Stage::Decolorize => {}
            _ => return None,
        }
    }
    // A field that clashes with a stream label is renamed `x_extracted`.
    let stripped: Vec<String> = names
        .iter()
        .filter_map(|n| n.strip_suffix("_extracted").map(str::to_owned))
        .collect();
    names.extend(stripped);
    Some(Wanted { names })
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

/// The flattened field names a narrowed `| json` extracts.
#[derive(Debug, Clone)]
pub struct Wanted {
    names: BTreeSet<String>,
}

impl Wanted {
    /// Whether a field flattened to `name` is wanted, or an object there
    /// leads to one (`net` for `net_dst_port`).
    fn leads_to(&self, name: &str) -> bool {
        // The names that start with `name` sort together from `name` on.
        self.names
            .range::<str, _>((std::ops::Bound::Included(name), std::ops::Bound::Unbounded))
            .take_while(|n| n.starts_with(name))
            .any(|n| n.as_bytes().get(name.len()) == Some(&b'_'))
    }

    /// What a field flattened to `path` is to the query: wanted itself,
    /// or an object on the way to a wanted field. The names are few, so a
    /// scan of them beats a lookup per key.
    fn wants(&self, path: &str) -> Wants {
        Wants::of(self.names.iter().map(String::as_str), path)
    }

    /// The wanted fields of `line`, flattened as `| json` names them, in
    /// the same order. `false` if the line is not a JSON object.
    ///
    /// [`json_scan`] reads most lines, checking them but copying only the
    /// wanted fields. Where it gives up, simd-json reads the line, several times faster than serde_json; a
    /// line it refuses, or whose reading could differ (see
    /// [`Wanted::read_fast`]), goes to `| json`'s own reader, so a line is
    /// an error exactly when `| json` says it is, and its fields are
    /// the same.
    pub fn read(&self, line: &str, out: &mut Labels) -> bool {
        let start = out.len();
        if line.starts_with('{') {
            if json_scan::read(line, &|path| self.wants(path), out).is_some() {
                return true;
            }
            out.truncate(start);
            if self.read_fast(line, out) {
                return true;
            }
        }
        out.truncate(start);
        match serde_json::from_str::<Value>(line) {
            Ok(v @ Value::Object(_)) => {
                flatten_json(&v, out);
                let mut i = start;
                while i < out.len() {
                    if self.names.contains(&out[i].0) {
                        i += 1;
                    } else {
                        out.remove(i);
                    }
                }
                true
            }
            _ => false,
        }
    }

    fn read_fast(&self, line: &str, out: &mut Labels) -> bool {
        /// The line's copy (simd-json parses in place), simd-json's
        /// buffers and its tape, kept across lines.
        struct Scratch {
            bytes: Vec<u8>,
            buffers: simd_json::Buffers,
            tape: Option<simd_json::Tape<'static>>,
        }
        thread_local! {
            static SCRATCH: std::cell::RefCell<Scratch> = std::cell::RefCell::new(Scratch {
                bytes: Vec::new(),
                buffers: simd_json::Buffers::default(),
                tape: None,
            });
        }
        SCRATCH.with(|cell| {
            let Ok(mut guard) = cell.try_borrow_mut() else {
                return false;
            };
            let Scratch {
                bytes,
                buffers,
                tape: kept,
            } = &mut *guard;
            bytes.clear();
            bytes.extend_from_slice(line.as_bytes());
            bytes.resize(line.len() + simd_json::INPUT_PADDING, 0);
            let mut tape = kept.take().unwrap_or_else(simd_json::Tape::null).reset();
            let read = simd_json::fill_tape_padded(bytes, line.len(), buffers, &mut tape).is_ok()
                && {
                    // serde_json refuses a number out of f64's range;
                    // simd-json reads it as infinite.
                    let out_of_range = tape.0.iter().any(|n| {
                        matches!(n, simd_json::tape::Node::Static(simd_json::StaticNode::F64(f)) if !f.is_finite())
                    });
                    let root = tape.as_value();
                    !out_of_range
                        && root.value_type() == ValueType::Object
                        && self.walk_fast(root, &mut String::new(), 0, out)
                };
            *kept = Some(tape.reset());
            read
        })
    }

    /// [`Wanted::walk`] over simd-json's tape: keys in sorted order, the
    /// last of duplicates winning, as serde_json's map gives them. `false`
    /// if a wanted value is a zero, which the tape cannot tell from `-0`
    /// (serde_json writes that `-0`): the slow path reads the line then.
    fn walk_fast(
        &self,
        v: TapeValue<'_, '_>,
        path: &mut String,
        depth: usize,
        out: &mut Labels,
    ) -> bool {
        let Some(object) = v.as_object() else {
            return true;
        };
        if depth >= MAX_FIELD_DEPTH {
            return true;
        }
        let mut entries: Vec<(&str, TapeValue<'_, '_>)> = object.iter().collect();
        // Stable: of equal keys the last stays last; keep only it.
        entries.sort_by(|a, b| a.0.cmp(b.0));
        for (i, (key, value)) in entries.iter().enumerate() {
            if entries.get(i + 1).is_some_and(|next| next.0 == *key) {
                continue;
            }
            let restore = path.len();
            if depth > 0 || key.as_bytes().first().is_some_and(u8::is_ascii_digit) {
                path.push('_');
            }
            push_sanitized_key(path, key);
            match value.value_type() {
                ValueType::Object
                    if self.leads_to(path) && !self.walk_fast(*value, path, depth + 1, out) =>
                {
                    return false;
                }
                ValueType::Object => {}
                kind if self.names.contains(path.as_str()) => {
                    if kind == ValueType::I64 && value.as_i64() == Some(0) {
                        return false;
                    }
                    let text = match kind {
                        ValueType::String => value.as_str().map(str::to_owned),
                        ValueType::I64 => value.as_i64().map(|n| n.to_string()),
                        ValueType::U64 => value.as_u64().map(|n| n.to_string()),
                        ValueType::F64 => value.as_f64().map(|n| n.to_string()),
                        ValueType::Bool => value.as_bool().map(|b| b.to_string()),
                        _ => None,
                    };
                    if let Some(text) = text {
                        out.push((path.clone(), text));
                    }
                }
                _ => {}
            }
            path.truncate(restore);
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wanted(names: &[&str]) -> Wanted {
        Wanted {
            names: names.iter().map(|n| (*n).to_owned()).collect(),
        }
    }

    /// Exactly the full reader's fields, of those wanted.
    #[test]
    fn reads_what_the_full_reader_reads_of_the_wanted_fields() {
        let lines = [
            r#"{"level":"info","net":{"dst_port":443,"src":{"ip":"10.0.0.1"}},"n":1e3,"ok":true,"x":null,"a b":"s"}"#,
            r#"{"net_dst_port":"top","net":{"dst_port":80}}"#,
            r#"{"esc\"aped":"v","1st":"d","list":[1,2],"deep":{"er":{"est":"z"}}}"#,
            r#"{"level":"\u0077arn","net":"not an object"}"#,
            r#"{"n":1,"n":2,"level":"x","level":{"a":1}}"#,
            r#"{"n":18446744073709551615,"x":-0,"ok":1.0,"a_b":0.1,"a":{"b":2}}"#,
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
            let mut full = Labels::new();
            flatten_json(&serde_json::from_str(line).unwrap(), &mut full);
            // Where simd-json reads the line, it must read what serde_json does.
            let w = wanted(&all);
            let mut fast = Labels::new();
            if w.read_fast(line, &mut fast) {
                let mut want = full.clone();
                want.retain(|(k, _)| all.contains(&k.as_str()));
                assert_eq!(fast, want, "{line}");
            }
            for pick in [&all[..], &["net_dst_port"], &["deep_er_est", "level"], &[]] {
                let w = wanted(pick);
                let mut got = Labels::new();
                assert!(w.read(line, &mut got), "{line}");
                let want: Labels = full
                    .iter()
                    .filter(|(k, _)| pick.contains(&k.as_str()))
                    .cloned()
                    .collect();
                assert_eq!(got, want, "{line} {pick:?}");
            }
        }
    }

    #[test]
    fn a_line_that_is_not_an_object_is_an_error() {
        for line in [
            "not json",
            "[1,2]",
            r#"{"a":1"#,
            "",
            "42",
            r#"{"a":1e400}"#,
            r#"{"a":"\ud800"}"#,
        ] {
            assert!(!wanted(&["a"]).read(line, &mut Labels::new()), "{line}");
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
        let Ok(crate::logql::Query::Log(q)) =
            crate::logql::parse(r#"{a="b"} | json | line_format "{{.x}}""#)
        else {
            panic!()
        };
        assert!(json_wants(&q.stages, 0, &BTreeSet::new()).is_none());
    }
}
