//! What Grafana's field and label panels ask for (Loki 3's
//! `/detected_fields` and `/detected_labels`): which fields a query's lines
//! hold, of what type, and which stream labels are worth offering as
//! filters. Pure functions over lines and label sets; the handlers fetch
//! them.

use std::collections::{BTreeMap, BTreeSet};

use crate::logql::eval::{Labels, LinePipeline};
use crate::logql::{parse, Query};

/// Labels offered even with one value, as Loki offers them.
const STATIC_LABELS: &[&str] = &["cluster", "namespace", "instance", "pod"];

/// A stream label and how many values it has.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DetectedLabel {
    pub label: String,
    pub cardinality: usize,
}

/// The labels of `series` worth filtering on, by name. As in Loki, a label
/// with a single value, or whose values are all numbers or UUIDs (ids),
/// is left out, unless it is one of the static ones (`cluster`,
/// `namespace`, `instance`, `pod`).
pub fn detect_labels(series: &[Labels]) -> Vec<DetectedLabel> {
    let mut values: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for labels in series {
        for (k, v) in labels {
            values.entry(k).or_default().insert(v);
        }
    }
    values
        .into_iter()
        .filter(|(name, vs)| {
            STATIC_LABELS.contains(name) || (vs.len() > 1 && !vs.iter().all(|v| looks_like_id(v)))
        })
        .map(|(name, vs)| DetectedLabel {
            label: name.to_owned(),
            cardinality: vs.len(),
        })
        .collect()
}

/// A number or a UUID (`8-4-4-4-12` hex digits).
fn looks_like_id(v: &str) -> bool {
    if v.parse::<f64>().is_ok() {
        return true;
    }
    let groups: Vec<&str> = v.split('-').collect();
    groups.len() == 5
        && groups
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(g, n)| g.len() == n && g.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// A field found in lines, as `/detected_fields` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DetectedField {
    pub label: String,
    /// `string`, `int`, `float`, `boolean`, `duration` or `bytes`.
    pub kind: &'static str,
    pub cardinality: usize,
    /// `json` or `logfmt`: the parsers that found it.
    pub parsers: Vec<&'static str>,
}

/// What the lines say of one field.
struct Seen {
    /// Its distinct values, up to [`MAX_VALUES`]: enough to tell few from
    /// many.
    values: BTreeSet<String>,
    kind: Option<&'static str>,
    parsers: BTreeSet<&'static str>,
}

const MAX_VALUES: usize = 10_000;

/// Every field of `lines`: a line that is a JSON object is read as
/// `| json` reads it, any other as `| logfmt` (lines it finds nothing in
/// add nothing).
fn fields_of<'a>(lines: impl IntoIterator<Item = &'a str>) -> BTreeMap<String, Seen> {
    let parser = |stage: &str| match parse(&format!("{{a=\"b\"}} | {stage}")) {
        Ok(Query::Log(q)) => Some(LinePipeline::new(&q)),
        _ => None,
    };
    let mut fields: BTreeMap<String, Seen> = BTreeMap::new();
    let (Some(json), Some(logfmt)) = (parser("json"), parser("logfmt")) else {
        return fields;
    };
    let mut extracted = Labels::new();
    for line in lines {
        let (pipeline, name) = if line.trim_start().starts_with('{') {
            (&json, "json")
        } else {
            (&logfmt, "logfmt")
        };
        if pipeline
            .eval(0, line, &Labels::new(), &mut extracted)
            .is_none()
        {
            continue;
        }
        for (k, v) in extracted.drain(..) {
            if k.starts_with("__error") {
                continue;
            }
            let kind = value_kind(&v);
            let seen = fields.entry(k).or_insert_with(|| Seen {
                values: BTreeSet::new(),
                kind: None,
                parsers: BTreeSet::new(),
            });
            seen.kind = Some(match seen.kind {
                None => kind,
                Some(k) if k == kind => k,
                Some("int" | "float") if matches!(kind, "int" | "float") => "float",
                Some(_) => "string",
            });
            seen.parsers.insert(name);
            if seen.values.len() < MAX_VALUES {
                seen.values.insert(v);
            }
        }
    }
    fields
}

/// The fields of `lines` (see [`fields_of`]), at most `limit`, by name. A
/// field's type is what all its values read as (ints and floats together
/// are floats; anything else mixed is a string), each value tried in
/// Loki's order: int, float, boolean, duration, bytes, string.
pub fn detect_fields<'a>(
    lines: impl IntoIterator<Item = &'a str>,
    limit: usize,
) -> Vec<DetectedField> {
    fields_of(lines)
        .into_iter()
        .take(limit)
        .map(|(label, seen)| DetectedField {
            label,
            kind: seen.kind.unwrap_or("string"),
            cardinality: seen.values.len(),
            parsers: seen.parsers.into_iter().collect(),
        })
        .collect()
}

/// The distinct values of field `name` in `lines`, sorted, at most `limit`.
pub fn field_values<'a>(
    lines: impl IntoIterator<Item = &'a str>,
    name: &str,
    limit: usize,
) -> Vec<String> {
    fields_of(lines)
        .remove(name)
        .map(|seen| seen.values.into_iter().take(limit).collect())
        .unwrap_or_default()
}

/// What a value reads as, in the order Loki tries: Go's `ParseInt`,
/// `ParseFloat`, `ParseBool`, `time.ParseDuration`, `humanize.ParseBytes`.
fn value_kind(v: &str) -> &'static str {
    if v.parse::<i64>().is_ok() {
        "int"
    } else if v.parse::<f64>().is_ok() {
        "float"
    } else if matches!(
        v,
        "1" | "t" | "T" | "TRUE" | "true" | "True" | "0" | "f" | "F" | "FALSE" | "false" | "False"
    ) {
        "boolean"
    } else if crate::time::parse_go_duration(v).is_some() {
        "duration"
    } else if crate::time::parse_bytes(v).is_some() {
        "bytes"
    } else {
        "string"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn l(pairs: &[(&str, &str)]) -> Labels {
        pairs
            .iter()
            .map(|&(k, v)| (k.to_owned(), v.to_owned()))
            .collect()
    }

    #[test]
    fn labels_with_one_value_or_only_ids_are_left_out() {
        let series = [
            l(&[("app", "a"), ("env", "prod"), ("pod", "p1"), ("req", "17")]),
            l(&[("app", "b"), ("env", "prod"), ("pod", "p1"), ("req", "18")]),
            l(&[
                ("app", "c"),
                ("env", "prod"),
                ("pod", "p1"),
                ("run", "123e4567-e89b-12d3-a456-426614174000"),
            ]),
            l(&[
                ("app", "c"),
                ("run", "00000000-0000-0000-0000-000000000000"),
            ]),
        ];
        // app: a, b, c (3). env: one value, left out. pod: one value, but
        // static. req: numbers only. run: UUIDs only.
        assert_eq!(
            detect_labels(&series),
            [
                DetectedLabel {
                    label: "app".into(),
                    cardinality: 3
                },
                DetectedLabel {
                    label: "pod".into(),
                    cardinality: 1
                },
            ]
        );
    }

    #[test]
    fn fields_have_the_type_all_their_values_read_as() {
        let lines = [
            r#"{"level":"info","took":"250ms","n":1,"ratio":0.5,"ok":true,"size":"2KB","http":{"status":200}}"#,
            r#"{"level":"warn","took":"1s","n":2.5,"ratio":1,"ok":false,"size":"10MB","http":{"status":503}}"#,
            "level=error took=3s user=bob",
            "plain text without pairs",
        ];
        let got = detect_fields(lines, 100);
        let find = |name: &str| got.iter().find(|f| f.label == name).cloned();
        let f = |kind, cardinality, parsers: &[&'static str]| DetectedField {
            label: String::new(),
            kind,
            cardinality,
            parsers: parsers.to_vec(),
        };
        let check = |name: &str, want: DetectedField| {
            let mut have = find(name).unwrap_or_else(|| panic!("{name}: {got:?}"));
            have.label.clear();
            assert_eq!(have, want, "{name}");
        };
        // info, warn (json), error (logfmt): found by both parsers.
        check("level", f("string", 3, &["json", "logfmt"]));
        check("took", f("duration", 3, &["json", "logfmt"]));
        // 1 and 2.5: an int and a float make a float.
        check("n", f("float", 2, &["json"]));
        // 0.5 and 1: likewise.
        check("ratio", f("float", 2, &["json"]));
        check("ok", f("boolean", 2, &["json"]));
        check("size", f("bytes", 2, &["json"]));
        // Nested JSON flattens with `_`, as `| json` names it.
        check("http_status", f("int", 2, &["json"]));
        check("user", f("string", 1, &["logfmt"]));
        assert_eq!(got.len(), 8, "{got:?}");
        assert_eq!(detect_fields(lines, 2).len(), 2, "the limit");
        assert_eq!(field_values(lines, "level", 10), ["error", "info", "warn"]);
        assert_eq!(field_values(lines, "level", 1), ["error"]);
        assert!(field_values(lines, "nothing", 10).is_empty());
    }
}
