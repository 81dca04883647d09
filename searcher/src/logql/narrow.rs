//! `| json` that reads only the fields a metric query uses. A line's
//! labels matter to a range function only through its grouping, its
//! unwrapped label and the filters after the parser; when the query names
//! them all (`sum by (level) (sum_over_time({…} | json | unwrap took […]))`),
//! flattening every field of every line (a string per field, most of them
//! thrown away) is what the query spends its time on. Loki narrows its
//! parsers the same way. Here the line is still read whole, so a line
//! that is not a JSON object is still `JSONParserErr`, but only the
//! wanted fields become labels; nested objects are entered only on the way
//! to one.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};

use serde_json::value::RawValue;
use serde_json::Value;
use skidder_common::format::tokens::{push_sanitized_key, MAX_FIELD_DEPTH};

use super::eval::{json_scalar, Labels};
use super::{LabelExpr, Stage};

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
        let prefix = format!("{name}_");
        self.names
            .range::<str, _>((
                std::ops::Bound::Included(prefix.as_str()),
                std::ops::Bound::Unbounded,
            ))
            .next()
            .is_some_and(|n| n.starts_with(&prefix))
    }

    /// The wanted fields of `line`, flattened as `| json` names them, in
    /// the same order. `false` if the line is not a JSON object.
    pub fn read(&self, line: &str, out: &mut Labels) -> bool {
        let mut path = String::new();
        self.walk(line, &mut path, 0, out)
    }

    fn walk(&self, text: &str, path: &mut String, depth: usize, out: &mut Labels) -> bool {
        // Keys usually borrow; one with an escape is unescaped.
        let Ok(object) = serde_json::from_str::<BTreeMap<Cow<'_, str>, &RawValue>>(text) else {
            return false;
        };
        if depth >= MAX_FIELD_DEPTH {
            return true;
        }
        for (key, raw) in object {
            let restore = path.len();
            if depth > 0 || key.as_bytes().first().is_some_and(u8::is_ascii_digit) {
                path.push('_');
            }
            push_sanitized_key(path, &key);
            let value = raw.get().trim_start();
            if value.starts_with('{') {
                if self.leads_to(path) {
                    self.walk(value, path, depth + 1, out);
                }
            } else if self.names.contains(path.as_str()) {
                if let Some(v) = serde_json::from_str::<Value>(value)
                    .ok()
                    .as_ref()
                    .and_then(json_scalar)
                {
                    out.push((path.clone(), v));
                }
            }
            path.truncate(restore);
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logql::eval::flatten_json;

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
        for line in ["not json", "[1,2]", r#"{"a":1"#, "", "42"] {
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
