//! Evaluates a log query's pipeline on one line: line filters, `| json`,
//! `| logfmt`, label filters and `| line_format`, with Loki's semantics.
//!
//! Field filters before any parser read the line's JSON fields, as if
//! `| json` had run, without adding them to the result's labels. A JSON
//! value's words are in its block's bloom filter either way: a number as
//! the line spells it, which is how `| json` writes it, is words of the
//! raw line, and the indexer adds the words of every value the line spells
//! otherwise (`common::format::tokens`). That is what makes pruning on a
//! field filter exact.

use std::borrow::Cow;
use std::collections::HashMap;

use memchr::memmem;
use serde_json::value::RawValue;
use serde_json::Value;
use skidder_common::format::tokens::push_sanitized_key;

use crate::logql::template::Template;
use crate::logql::{
    CmpOp, JsonPath, LabelExpr, LabelPick, LabelSource, LineOp, LogQuery, LogfmtParams, Stage,
    Unit, Unwrap,
};

pub type Labels = Vec<(String, String)>;

/// A compiled pipeline.
pub struct LinePipeline {
    stages: Vec<Compiled>,
    /// Labels `| drop` removes from results.
    drops: Vec<LabelPick>,
    /// Each `| keep`'s labels: a result keeps a label every one names.
    keeps: Vec<Vec<LabelPick>>,
    /// A metric query's parser hints (`narrow::parser_hints`): a `| json`
    /// or `| logfmt` is skipped when earlier stages have set all of them.
    hints: Option<Vec<String>>,
}

enum Compiled {
    Contains(memmem::Finder<'static>),
    NotContains(memmem::Finder<'static>),
    Re(regex::Regex, bool),
    Json,
    /// `| json` reading only the fields the query uses (see `narrow`).
    JsonWanted(crate::logql::narrow::Wanted),
    JsonFields(Vec<(String, Vec<JsonPath>)>),
    /// `| logfmt`, and in a metric query without parameters, Loki's hints.
    Logfmt(LogfmtParams, Option<crate::logql::narrow::LogfmtHints>),
    Regexp(regex::Regex),
    Pattern(crate::logql::pattern::Pattern),
    PatternFilter(crate::logql::pattern::Pattern, bool),
    IpFilter(crate::logql::ip::IpPattern, bool),
    /// A label filter, and the literals a line must hold for it to pass
    /// when the fields come from the line itself (see [`Literal`]).
    Labels(LabelExpr, Vec<Literal>),
    LineFormat(Template),
    LabelFormat(Vec<(String, LabelSource)>),
    Decolorize,
    Unpack,
    Drop,
    /// Line filters of which one must pass.
    AnyOf(Vec<Compiled>),
}

impl Compiled {
    /// Whether a line filter passes `line` (an `or` chain's alternative);
    /// other stages never stand in a chain.
    fn passes(&self, line: &str) -> bool {
        match self {
            Compiled::Contains(f) => f.find(line.as_bytes()).is_some(),
            Compiled::NotContains(f) => f.find(line.as_bytes()).is_none(),
            Compiled::Re(re, want) => re.is_match(line) == *want,
            Compiled::PatternFilter(p, keep) => p.test(line) == *keep,
            Compiled::IpFilter(p, keep) => p.in_line(line) == *keep,
            Compiled::AnyOf(alternatives) => alternatives.iter().any(|a| a.passes(line)),
            _ => false,
        }
    }
}

/// A value a field filter requires, `name="value"` in a chain of `and`s:
/// a line whose JSON fields give `name` that value holds the value as it
/// is, unless the line escapes characters. So a line without it, without
/// an escape that could spell part of it, and with no stream label `name`,
/// fails the filter without being parsed. Only `\uXXXX` can spell a
/// character other than `"`, `\`, `/` or a control character, so for a
/// value without those, a line's `\"` or `\n` does not force a parse.
/// A number's value is its text in the line, so it is no exception.
struct Literal {
    name: String,
    finder: memmem::Finder<'static>,
    /// The value holds a character JSON may write as a short escape.
    short_escapable: bool,
}

impl Literal {
    fn collect(e: &LabelExpr, out: &mut Vec<Literal>) {
        match e {
            LabelExpr::And(a, b) => {
                Literal::collect(a, out);
                Literal::collect(b, out);
            }
            LabelExpr::Str {
                name,
                op: CmpOp::Eq,
                value,
                ..
            } if !value.is_empty() => out.push(Literal {
                name: name.clone(),
                finder: memmem::Finder::new(value.as_bytes()).into_owned(),
                short_escapable: value
                    .bytes()
                    .any(|b| matches!(b, b'"' | b'\\' | b'/' | ..=0x1f)),
            }),
            _ => {}
        }
    }

    /// Whether the line can pass the filter, as far as this literal says.
    fn may_pass(&self, line: &[u8], stream: &Labels) -> bool {
        let mut escapes = memchr::memchr_iter(b'\\', line);
        let escaped = if self.short_escapable {
            escapes.next().is_some()
        } else {
            escapes.any(|i| line.get(i + 1) == Some(&b'u'))
        };
        self.finder.find(line).is_some() || escaped || stream.iter().any(|(k, _)| *k == self.name)
    }
}

fn parse_json_fields(line: &str, out: &mut Labels) -> bool {
    super::narrow::read_all(line, out)
}

/// `| json label="path"`: the value at each path of a JSON object line,
/// or `None` if the line is not one. A value is its text as Loki's
/// expression parser gives it: a string unescaped, a number, a boolean, an
/// object or an array as the line spells it; nothing for `null` or a path
/// that leads nowhere.
/// `| json a="x.y", b`: each label from its path; a path the line lacks
/// (or a null) gives an empty label, unless the stream has a label by
/// that name, as Loki's expression parser sets every one.
fn json_fields(line: &str, paths: &[(String, Vec<JsonPath>)], stream: &Labels) -> Option<Labels> {
    let root: &RawValue = serde_json::from_str(line).ok()?;
    if !root.get().starts_with('{') {
        return None;
    }
    Some(
        paths
            .iter()
            .filter_map(|(label, path)| match json_at(root, path) {
                Some(v) => Some((label.clone(), v)),
                None if stream.iter().any(|(k, _)| k == label) => None,
                None => Some((label.clone(), String::new())),
            })
            .collect(),
    )
}

fn json_at(mut at: &RawValue, path: &[JsonPath]) -> Option<String> {
    for step in path {
        at = match step {
            // Of equal keys the last wins, as in every reader of `| json`.
            JsonPath::Key(k) => serde_json::from_str::<HashMap<String, &RawValue>>(at.get())
                .ok()?
                .remove(k)?,
            JsonPath::Index(i) => *serde_json::from_str::<Vec<&RawValue>>(at.get())
                .ok()?
                .get(*i)?,
        };
    }
    let text = at.get();
    match text.as_bytes().first()? {
        b'"' => serde_json::from_str(text).ok(),
        b'n' => Some(String::new()),
        _ => Some(text.to_owned()),
    }
}

/// What a series calls a label a parser set: `name`, or `name_extracted`
/// where the stream has a label `name`.
pub(crate) fn series_name<'a>(name: &'a str, stream: &Labels) -> Cow<'a, str> {
    if stream.iter().any(|(k, _)| k == name) {
        Cow::Owned(format!("{name}_extracted"))
    } else {
        Cow::Borrowed(name)
    }
}

/// Whether a series calls the label a parser set as `label` `name` (see
/// [`series_name`]), without building the name: a check per hinted name
/// and pair.
fn is_series_name(name: &str, label: &str, stream: &Labels) -> bool {
    let in_stream = || stream.iter().any(|(k, _)| k == label);
    if name == label {
        !in_stream()
    } else {
        name.strip_suffix("_extracted") == Some(label) && in_stream()
    }
}

/// `label_format`'s rename removes its source: an extracted entry with
/// this name (a NUL, then the label's name, which no label name has)
/// hides the label from later stages and from the result.
fn removed(name: &str) -> String {
    format!("\0{name}")
}

/// What the extracted labels say of `name`: its last value (`label_format`
/// may set one several times), `Some(None)` if it was removed, `None` if
/// they say nothing.
fn extracted_value<'a>(name: &str, extracted: &'a Labels) -> Option<Option<&'a str>> {
    for (k, v) in extracted.iter().rev() {
        if k == name {
            return Some(Some(v.as_str()));
        }
        if k.strip_prefix('\0') == Some(name) {
            return Some(None);
        }
    }
    None
}

/// A label's value: what the extracted labels say, else the stream's.
fn lookup<'a>(name: &str, extracted: &'a Labels, stream: &'a Labels) -> Option<&'a str> {
    extracted_value(name, extracted).unwrap_or_else(|| {
        stream
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    })
}

/// `line` without ANSI escape sequences (colours, cursor moves): ESC `[`,
/// parameters and one final letter; or ESC and one character.
fn strip_ansi(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '\x1b' {
            out.push(c);
            continue;
        }
        if chars.peek() == Some(&'[') {
            chars.next();
            // Parameters and intermediates, then the final byte.
            for c in chars.by_ref() {
                if ('@'..='~').contains(&c) {
                    break;
                }
            }
        } else {
            chars.next();
        }
    }
    out
}

/// Appends a parser's fields to `extracted`; a name a stream label has
/// gets the suffix `_extracted`, as in Loki.
fn push_extracted(fields: Labels, stream: &Labels, extracted: &mut Labels) {
    for (k, v) in fields {
        let k = if stream.iter().any(|(s, _)| *s == k) {
            format!("{k}_extracted")
        } else {
            k
        };
        extracted.push((k, v));
    }
}

/// A label's value as a number, read as `unit` says: a plain number, a
/// Go duration (in seconds) or a byte size.
pub fn convert(unit: Unit, v: &str) -> Option<f64> {
    let v = v.trim();
    match unit {
        Unit::Number => v.parse::<f64>().ok(),
        Unit::Duration => crate::time::parse_go_duration(v),
        Unit::Bytes => crate::time::parse_bytes(v),
    }
}

/// Why `v` does not read as `unit`, in the words of the Go function Loki
/// calls.
fn conversion_error(unit: Unit, v: &str) -> String {
    match unit {
        Unit::Duration => format!("time: invalid duration {v:?}"),
        Unit::Number | Unit::Bytes => format!("strconv.ParseFloat: parsing {v:?}: invalid syntax"),
    }
}

fn cmp_num(a: f64, op: CmpOp, b: f64) -> bool {
    match op {
        CmpOp::Eq => a == b,
        CmpOp::Ne => a != b,
        CmpOp::Gt => a > b,
        CmpOp::Ge => a >= b,
        CmpOp::Lt => a < b,
        CmpOp::Le => a <= b,
        CmpOp::Re | CmpOp::Nre => false,
    }
}

/// Whether a filter on one label keeps a line that gives the label
/// `value` (a value that does not read as a number keeps it, as below).
pub(crate) fn keeps_value(filter: &LabelExpr, value: &str) -> bool {
    eval_labels(filter, &|_| Some(value.to_owned()), &mut None)
}

/// Whether a label filter keeps the line. A numeric comparison on a value
/// that does not read as its unit keeps the line, as Loki does, and
/// leaves why in `error` (the line then gets `__error__="LabelFilterErr"`);
/// a missing label fails it.
fn eval_labels(
    e: &LabelExpr,
    get: &dyn Fn(&str) -> Option<String>,
    error: &mut Option<String>,
) -> bool {
    match e {
        LabelExpr::And(a, b) => eval_labels(a, get, error) && eval_labels(b, get, error),
        LabelExpr::Or(a, b) => eval_labels(a, get, error) || eval_labels(b, get, error),
        LabelExpr::Str {
            name,
            op,
            value,
            re,
        } => {
            let v = get(name).unwrap_or_default();
            match op {
                CmpOp::Eq => v == *value,
                CmpOp::Ne => v != *value,
                CmpOp::Re => re.as_ref().is_some_and(|r| r.is_match(&v)),
                CmpOp::Nre => !re.as_ref().is_some_and(|r| r.is_match(&v)),
                _ => false,
            }
        }
        LabelExpr::Ip {
            name,
            pattern,
            negate,
        } => get(name).is_some_and(|v| pattern.matches_text(&v)) != *negate,
        LabelExpr::Num {
            name,
            op,
            value,
            unit,
        } => {
            let Some(v) = get(name) else {
                return false;
            };
            match convert(*unit, &v) {
                Some(x) => cmp_num(x, *op, *value),
                None => {
                    error.get_or_insert_with(|| conversion_error(*unit, &v));
                    true
                }
            }
        }
    }
}

/// A template filled in for one line: by [`fill_plain`] when it only
/// fills in labels, else by the Go template engine over every label the
/// line has.
fn render(
    t: &Template,
    ts: i64,
    line: &str,
    extracted: &Labels,
    stream: &Labels,
) -> Result<String, String> {
    if t.is_plain() {
        return Ok(fill_plain(t.text(), extracted, stream));
    }
    let labels: Vec<(&str, &str)> = visible(stream, extracted).into_iter().collect();
    t.render(&labels, line, ts)
}

/// A line's labels by name: the stream's, then the extracted ones in
/// order, a later value (from `label_format`) replacing an earlier one and
/// a removal marker removing.
fn visible<'a>(
    stream: &'a Labels,
    extracted: &'a Labels,
) -> std::collections::BTreeMap<&'a str, &'a str> {
    let mut all: std::collections::BTreeMap<&str, &str> = stream
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    for (k, v) in extracted {
        match k.strip_prefix('\0') {
            Some(gone) => {
                all.remove(gone);
            }
            None => {
                all.insert(k, v);
            }
        }
    }
    all
}

/// Replaces `{{.name}}` (spaces allowed) with label values.
fn fill_plain(template: &str, extracted: &Labels, stream: &Labels) -> String {
    let mut out = String::new();
    let mut rest = template;
    while let Some(open) = rest.find("{{") {
        out.push_str(&rest[..open]);
        let Some(close) = rest[open..].find("}}") else {
            out.push_str(&rest[open..]);
            return out;
        };
        let raw = &rest[open + 2..open + close];
        // Go's `{{-` and `-}}` trim the whitespace before and after.
        if raw.starts_with("- ") {
            out.truncate(out.trim_end().len());
        }
        let inner = raw.trim_matches(|c: char| c == '-' || c.is_whitespace());
        if let Some(name) = inner.strip_prefix('.') {
            out.push_str(lookup(name, extracted, stream).unwrap_or(""));
        }
        rest = &rest[open + close + 2..];
        if raw.ends_with(" -") {
            rest = rest.trim_start();
        }
    }
    out.push_str(rest);
    out
}

impl LinePipeline {
    pub fn new(q: &LogQuery) -> Self {
        Self::build(q, None)
    }

    /// A pipeline for a metric query whose answer reads only the labels
    /// `wanted` (its grouping, its unwrapped label): `| json` then reads
    /// only those fields and the ones later filters read, where it can
    /// (see `narrow`). Answers as [`LinePipeline::new`]'s do.
    pub fn wanting(q: &LogQuery, wanted: &std::collections::BTreeSet<String>) -> Self {
        Self::build(q, Some(wanted))
    }

    fn build(q: &LogQuery, wanted: Option<&std::collections::BTreeSet<String>>) -> Self {
        let stages = q
            .stages
            .iter()
            .enumerate()
            .map(|(at, s)| match s {
                Stage::Line { op, needle, re } => match op {
                    LineOp::Contains => {
                        Compiled::Contains(memmem::Finder::new(needle.as_bytes()).into_owned())
                    }
                    LineOp::NotContains => {
                        Compiled::NotContains(memmem::Finder::new(needle.as_bytes()).into_owned())
                    }
                    LineOp::Re => Compiled::Re(
                        re.clone()
                            .unwrap_or_else(|| regex::Regex::new("").expect("empty regex")),
                        true,
                    ),
                    LineOp::NotRe => Compiled::Re(
                        re.clone()
                            .unwrap_or_else(|| regex::Regex::new("").expect("empty regex")),
                        false,
                    ),
                },
                Stage::Json => wanted
                    .and_then(|w| crate::logql::narrow::json_wants(&q.stages, at, w))
                    .map_or(Compiled::Json, Compiled::JsonWanted),
                Stage::JsonFields(f) => Compiled::JsonFields(f.clone()),
                // Keys as the parser names the fields it reads, once.
                Stage::Logfmt(p) => Compiled::Logfmt(
                    LogfmtParams {
                        fields: p
                            .fields
                            .iter()
                            .map(|(label, key)| {
                                let mut name = String::new();
                                push_sanitized_key(&mut name, key);
                                (label.clone(), name)
                            })
                            .collect(),
                        ..p.clone()
                    },
                    wanted
                        .filter(|_| p.fields.is_empty())
                        .and_then(|w| crate::logql::narrow::LogfmtHints::new(&q.stages, at, w)),
                ),
                Stage::Regexp(re) => Compiled::Regexp(re.clone()),
                Stage::Pattern(p) => Compiled::Pattern(p.clone()),
                Stage::PatternFilter { pattern, keep } => {
                    Compiled::PatternFilter(pattern.clone(), *keep)
                }
                Stage::IpFilter { pattern, keep } => Compiled::IpFilter(pattern.clone(), *keep),
                Stage::Labels(e) => {
                    let mut literals = Vec::new();
                    Literal::collect(e, &mut literals);
                    Compiled::Labels(e.clone(), literals)
                }
                Stage::LineFormat(t) => Compiled::LineFormat(t.clone()),
                Stage::Drop(_) | Stage::Keep(_) => Compiled::Drop,
                Stage::Decolorize => Compiled::Decolorize,
                Stage::LabelFormat(pairs) => Compiled::LabelFormat(pairs.clone()),
                Stage::Unpack => Compiled::Unpack,
                Stage::AnyOf(alternatives) => {
                    let q = LogQuery {
                        matchers: Vec::new(),
                        stages: alternatives.clone(),
                    };
                    Compiled::AnyOf(Self::build(&q, None).stages)
                }
            })
            .collect();
        let drops = q
            .stages
            .iter()
            .flat_map(|s| match s {
                Stage::Drop(names) => names.clone(),
                _ => Vec::new(),
            })
            .collect();
        // Several `keep`s keep what each of them keeps.
        let keeps = q
            .stages
            .iter()
            .filter_map(|s| match s {
                Stage::Keep(names) => Some(names.clone()),
                _ => None,
            })
            .collect();
        // A parser may be skipped (see `narrow::parser_hints`).
        let parsers = q
            .stages
            .iter()
            .filter(|s| matches!(s, Stage::Json | Stage::Logfmt(_)))
            .count();
        let hints = wanted
            .filter(|_| parsers > 0)
            .and_then(|w| crate::logql::narrow::parser_hints(&q.stages, w));
        LinePipeline {
            stages,
            drops,
            keeps,
            hints,
        }
    }

    /// The value `unwrap` takes from a matched line (its label, extracted
    /// or of the stream, converted), then the filters after unwrap; `None`
    /// if they drop the line. As in Loki, a missing or unreadable value is
    /// 0 with `__error__="SampleExtractionErr"` and the reason, for a filter
    /// like `| __error__=""` to drop. Labels the stage adds go to `added`
    /// (usually none), so `extracted` need not be copied.
    pub fn unwrapped(
        &self,
        unwrap: &Unwrap,
        stream: &Labels,
        extracted: &Labels,
        added: &mut Labels,
    ) -> Option<f64> {
        let raw = lookup(&unwrap.label, extracted, stream).unwrap_or("");
        let value = match convert(unwrap.unit, raw) {
            Some(v) => v,
            None => {
                let details = conversion_error(unwrap.unit, raw);
                added.push(("__error__".into(), "SampleExtractionErr".into()));
                added.push(("__error_details__".into(), details));
                0.0
            }
        };
        for filter in &unwrap.post_filters {
            let now: &Labels = added;
            let get = |name: &str| match extracted_value(name, now) {
                Some(v) => v.map(str::to_owned),
                None => lookup(name, extracted, stream).map(str::to_owned),
            };
            let mut error = None;
            if !eval_labels(filter, &get, &mut error) {
                return None;
            }
            if let Some(details) = error {
                added.push(("__error__".into(), "LabelFilterErr".into()));
                added.push(("__error_details__".into(), details));
            }
        }
        Some(value)
    }

    /// What [`LinePipeline::result_labels`] then a `by (names)` grouping
    /// give a line, without building the labels the grouping drops: a
    /// metric query's hot path. `names` sorted; the pairs come in that
    /// order, as a sorted label set's.
    pub fn grouped(&self, stream: &Labels, extracted: &Labels, names: &[String]) -> Labels {
        names
            .iter()
            .filter_map(|name| {
                let v = lookup(name, extracted, stream)?;
                self.shows(name, v).then(|| (name.clone(), v.to_owned()))
            })
            .collect()
    }

    /// Whether a line's result labels carry `__error__`, as
    /// [`LinePipeline::result_labels`] would give them.
    pub fn has_error(&self, stream: &Labels, extracted: &Labels) -> bool {
        lookup("__error__", extracted, stream).is_some_and(|v| self.shows("__error__", v))
    }

    /// Whether `drop` and `keep` leave label `name` with value `v`.
    fn shows(&self, name: &str, v: &str) -> bool {
        !self.drops.iter().any(|d| d.picks(name, v))
            && (matches!(name, "__error__" | "__error_details__")
                || self
                    .keeps
                    .iter()
                    .all(|keep| keep.iter().any(|x| x.picks(name, v))))
    }

    /// The result labels of a line: stream labels plus extracted ones,
    /// sorted, without dropped labels. Extracted labels never shadow stream
    /// labels (collisions were renamed `_extracted`).
    pub fn result_labels(
        &self,
        stream: &std::sync::Arc<Labels>,
        extracted: &Labels,
    ) -> std::sync::Arc<Labels> {
        if extracted.is_empty() && self.drops.is_empty() && self.keeps.is_empty() {
            return stream.clone();
        }
        let l: Labels = visible(stream, extracted)
            .into_iter()
            // `keep` never drops the error labels, as in Loki.
            .filter(|(k, v)| self.shows(k, v))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        std::sync::Arc::new(l)
    }

    /// Runs the pipeline. `None` if the line is filtered out; otherwise the
    /// (possibly reformatted) line, with extracted labels appended to
    /// `extracted` (cleared first).
    pub fn eval<'a>(
        &self,
        ts: i64,
        line: &'a str,
        stream: &Labels,
        extracted: &mut Labels,
    ) -> Option<Cow<'a, str>> {
        extracted.clear();
        let mut line: Cow<'a, str> = Cow::Borrowed(line);
        let mut parsed = false;
        // After label_format a filter's value may come from a renamed
        // label rather than the line: no shortcut on the line's bytes.
        let mut relabelled = false;
        let mut implicit: Option<Labels> = None;
        for stage in &self.stages {
            if let Some(hints) = &self.hints {
                let parser = matches!(
                    stage,
                    Compiled::Json | Compiled::JsonWanted(_) | Compiled::Logfmt(..)
                );
                if parser && hints.iter().all(|h| extracted.iter().any(|(n, _)| n == h)) {
                    // As Loki's parsers do when their hints say `NoLabels`.
                    parsed = true;
                    continue;
                }
            }
            match stage {
                Compiled::Contains(f) => f.find(line.as_bytes())?,
                Compiled::NotContains(f) => {
                    if f.find(line.as_bytes()).is_some() {
                        return None;
                    }
                    0
                }
                Compiled::Re(re, want) => {
                    if re.is_match(&line) != *want {
                        return None;
                    }
                    0
                }
                Compiled::Json => {
                    parsed = true;
                    let mut fields = Vec::new();
                    if !parse_json_fields(&line, &mut fields) {
                        extracted.push(("__error__".into(), "JSONParserErr".into()));
                    }
                    push_extracted(fields, stream, extracted);
                    0
                }
                Compiled::JsonWanted(wanted) => {
                    use crate::logql::narrow::Outcome;
                    parsed = true;
                    let mut fields = Vec::new();
                    match wanted.read(&line, stream, &mut fields) {
                        Outcome::Read => {}
                        Outcome::Broken => {
                            extracted.push(("__error__".into(), "JSONParserErr".into()))
                        }
                        Outcome::Dropped => return None,
                    }
                    push_extracted(fields, stream, extracted);
                    0
                }
                Compiled::JsonFields(paths) => {
                    parsed = true;
                    match json_fields(&line, paths, stream) {
                        Some(fields) => push_extracted(fields, stream, extracted),
                        None => extracted.push(("__error__".into(), "JSONParserErr".into())),
                    }
                    0
                }
                Compiled::Logfmt(params, hints) => {
                    use crate::logql::narrow::{Flow, Outcome};
                    parsed = true;
                    let mut fields = Vec::new();
                    // With parameters, an empty value counts, and a key the
                    // line lacks gives an empty label unless the stream has
                    // one by that name, as Loki's expression parser sets them.
                    let picking = !params.fields.is_empty();
                    let ext: &Labels = extracted;
                    let mut watch = |out: &Labels| -> Flow {
                        let (Some(hints), Some((name, value))) = (hints, out.last()) else {
                            return Flow::More;
                        };
                        let series = series_name(name, stream);
                        let set = |n: &str| {
                            ext.iter().any(|(k, _)| k == n)
                                || out.iter().any(|(k, _)| is_series_name(n, k, stream))
                        };
                        hints.after(&series, value, &set)
                    };
                    let outcome = crate::logql::logfmt::parse_watched(
                        &line,
                        &mut fields,
                        params.keep_empty || picking,
                        params.strict,
                        &mut watch,
                    );
                    if outcome == Outcome::Dropped {
                        return None;
                    }
                    let clean = outcome == Outcome::Read;
                    if picking {
                        fields = params
                            .fields
                            .iter()
                            .filter_map(|(label, key)| {
                                match fields.iter().rev().find(|(k, _)| k == key) {
                                    Some((_, v)) => Some((label.clone(), v.clone())),
                                    None if stream.iter().any(|(k, _)| k == label) => None,
                                    None => Some((label.clone(), String::new())),
                                }
                            })
                            .collect();
                    }
                    push_extracted(fields, stream, extracted);
                    if params.strict && !clean {
                        extracted.push(("__error__".into(), "LogfmtParserErr".into()));
                    }
                    0
                }
                Compiled::Pattern(p) => {
                    parsed = true;
                    let fields = p
                        .captures(&line)
                        .unwrap_or_default()
                        .into_iter()
                        .map(|(k, v)| (k.to_owned(), v.to_owned()))
                        .collect();
                    push_extracted(fields, stream, extracted);
                    0
                }
                Compiled::PatternFilter(p, keep) => {
                    if p.test(&line) != *keep {
                        return None;
                    }
                    0
                }
                Compiled::IpFilter(p, keep) => {
                    if p.in_line(&line) != *keep {
                        return None;
                    }
                    0
                }
                Compiled::AnyOf(alternatives) => {
                    if !alternatives.iter().any(|a| a.passes(&line)) {
                        return None;
                    }
                    0
                }
                Compiled::Regexp(re) => {
                    parsed = true;
                    // A line the expression does not match gets no labels;
                    // a group that took no part in a match gets an empty
                    // one, as Loki sets every named group of a match.
                    if let Some(caps) = re.captures(&line) {
                        let fields = re
                            .capture_names()
                            .flatten()
                            .map(|n| {
                                let v = caps.name(n).map_or("", |m| m.as_str());
                                (n.to_owned(), v.to_owned())
                            })
                            .collect();
                        push_extracted(fields, stream, extracted);
                    }
                    0
                }
                Compiled::Labels(e, literals) => {
                    if !parsed
                        && !relabelled
                        && implicit.is_none()
                        && !literals.iter().all(|l| l.may_pass(line.as_bytes(), stream))
                    {
                        return None;
                    }
                    if !parsed && implicit.is_none() {
                        let mut fields = Vec::new();
                        parse_json_fields(&line, &mut fields);
                        implicit = Some(fields);
                    }
                    let ext: &Labels = extracted;
                    let imp = implicit.as_ref();
                    let get = |name: &str| -> Option<String> {
                        if let Some(set) = extracted_value(name, ext) {
                            return set.map(str::to_owned);
                        }
                        stream
                            .iter()
                            .chain(imp.into_iter().flatten())
                            .find(|(k, _)| k == name)
                            .map(|(_, v)| v.clone())
                    };
                    let mut error = None;
                    if !eval_labels(e, &get, &mut error) {
                        return None;
                    }
                    if let Some(details) = error {
                        extracted.push(("__error__".into(), "LabelFilterErr".into()));
                        extracted.push(("__error_details__".into(), details));
                    }
                    0
                }
                Compiled::LineFormat(t) => {
                    // A template that fails keeps the line, marked, as in Loki.
                    match render(t, ts, &line, extracted, stream) {
                        Ok(formatted) => line = Cow::Owned(formatted),
                        Err(details) => {
                            extracted.push(("__error__".into(), "TemplateFormatErr".into()));
                            extracted.push(("__error_details__".into(), details));
                        }
                    }
                    0
                }
                Compiled::Drop => 0,
                Compiled::LabelFormat(pairs) => {
                    relabelled = true;
                    // Every value from the labels before the stage.
                    let mut set = Vec::with_capacity(pairs.len());
                    for (dst, source) in pairs {
                        match source {
                            LabelSource::Rename(src) => {
                                let value = lookup(src, extracted, stream).map(str::to_owned);
                                if src != dst {
                                    set.push((removed(src), String::new()));
                                }
                                if let Some(v) = value {
                                    set.push((dst.clone(), v));
                                }
                            }
                            LabelSource::Template(t) => {
                                match render(t, ts, &line, extracted, stream) {
                                    Ok(v) => set.push((dst.clone(), v)),
                                    Err(details) => {
                                        set.push(("__error__".into(), "TemplateFormatErr".into()));
                                        set.push(("__error_details__".into(), details));
                                    }
                                }
                            }
                        }
                    }
                    extracted.extend(set);
                    0
                }
                Compiled::Unpack => {
                    parsed = true;
                    match serde_json::from_str::<Value>(&line) {
                        Ok(Value::Object(o)) => {
                            let mut fields = Vec::new();
                            let mut entry = None;
                            for (k, v) in o {
                                let Value::String(v) = v else { continue };
                                if k == "_entry" {
                                    entry = Some(v);
                                } else {
                                    let mut name = String::new();
                                    push_sanitized_key(&mut name, &k);
                                    fields.push((name, v));
                                }
                            }
                            // As Loki's: a line with no `_entry` was not
                            // packed, and gives no labels either.
                            if let Some(e) = entry {
                                push_extracted(fields, stream, extracted);
                                line = Cow::Owned(e);
                            }
                        }
                        _ => extracted.push(("__error__".into(), "JSONParserErr".into())),
                    }
                    0
                }
                Compiled::Decolorize => {
                    if line.contains('\x1b') {
                        line = Cow::Owned(strip_ansi(&line));
                    }
                    0
                }
            };
        }
        Some(line)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logql::{parse, Query};

    fn run(q: &str, line: &str) -> Option<(String, Labels)> {
        let Query::Log(lq) = parse(q).unwrap() else {
            panic!()
        };
        let p = LinePipeline::new(&lq);
        let stream = vec![("level".to_owned(), "info".to_owned())];
        let mut ext = Vec::new();
        p.eval(0, line, &stream, &mut ext)
            .map(|l| (l.into_owned(), ext))
    }

    const LINE: &str = r#"{"level":"info","msg":"GET /cart","http":{"status":503,"path":"/cart"},"trace_id":"abc"}"#;

    /// `run` for a metric query whose answer reads only `wanted`.
    fn run_wanting(q: &str, wanted: &[&str], line: &str) -> Option<Labels> {
        let Query::Log(lq) = parse(q).unwrap() else {
            panic!()
        };
        let wanted = wanted.iter().map(|w| w.to_string()).collect();
        let p = LinePipeline::wanting(&lq, &wanted);
        let mut ext = Vec::new();
        p.eval(0, line, &Vec::new(), &mut ext).map(|_| ext)
    }

    fn label<'a>(ext: &'a Labels, name: &str) -> Option<&'a str> {
        ext.iter()
            .rev()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// Loki's parsers do nothing when its hints hold no name, or when
    /// earlier parsers set every hinted one (`NoLabels`). So over mixed
    /// lines `sum by (level) (count_over_time({…} | logfmt | json [5m]))`
    /// takes `level` from whichever parser reads the line, and no line is
    /// an error. A log query has no hints: every parser runs.
    #[test]
    fn a_metric_querys_later_parser_is_skipped_once_the_hinted_labels_are_in() {
        let q = r#"{a="b"} | logfmt | json"#;
        // logfmt gives level: json is skipped, so no JSONParserErr.
        let ext = run_wanting(q, &["level"], "level=warn msg=x").unwrap();
        assert_eq!(label(&ext, "level"), Some("warn"));
        assert_eq!(label(&ext, "__error__"), None, "{ext:?}");
        // logfmt gives no level from a JSON line: json runs and does.
        let ext = run_wanting(q, &["level"], r#"{"level":"error"}"#).unwrap();
        assert_eq!(label(&ext, "level"), Some("error"));
        assert_eq!(label(&ext, "__error__"), None, "{ext:?}");
        // A log query runs json on the logfmt line, and it fails.
        let (_, ext) = run(q, "level=warn msg=x").unwrap();
        assert_eq!(label(&ext, "__error__"), Some("JSONParserErr"));
        // json before another parser reads by the same hints: it stops at
        // `level`, so a line cut after it is no error, and logfmt is
        // skipped.
        let q = r#"{a="b"} | json | logfmt"#;
        let ext = run_wanting(q, &["level"], r#"{"level":"warn","msg":"cut"#).unwrap();
        assert_eq!(label(&ext, "level"), Some("warn"));
        assert_eq!(label(&ext, "__error__"), None, "{ext:?}");
        let (_, ext) = run(q, r#"{"level":"warn","msg":"cut"#).unwrap();
        assert_eq!(label(&ext, "__error__"), Some("JSONParserErr"));
        // A filter on __error__ is a hint no parser sets: json runs.
        let q = r#"{a="b"} | logfmt | json | __error__="""#;
        assert!(run_wanting(q, &["level"], "level=warn msg=x").is_none());
        // No hinted name at all: neither parser runs, even a strict one.
        let q = r#"{a="b"} | logfmt --strict"#;
        let ext = run_wanting(q, &[], r#"a="unterminated"#).unwrap();
        assert_eq!(label(&ext, "__error__"), None, "{ext:?}");
        let (_, ext) = run(q, r#"a="unterminated"#).unwrap();
        assert_eq!(label(&ext, "__error__"), Some("LogfmtParserErr"));
    }

    /// Loki's `ShouldContinueParsingLine`: a metric query's `| json`
    /// checks a filter on one label as the line gives it, and drops the
    /// line there. Where a key repeats, a first value that fails drops the
    /// line though a later one would pass; read whole, the last wins.
    #[test]
    fn a_metric_querys_json_drops_a_line_at_the_first_field_a_filter_fails() {
        let dup = r#"{"status":"200","status":"500"}"#;
        let q = r#"{a="b"} | json | status="500" | __error__="""#;
        assert!(run_wanting(q, &[], dup).is_none());
        let (_, ext) = run(q, dup).expect("a log query reads the line whole");
        assert_eq!(label(&ext, "status"), Some("500"));
        // Where the reading goes on (`__error__` is never given), a later
        // value that fails drops the line too; values that pass keep it.
        let q = r#"{a="b"} | json | status=~"5.." | __error__="""#;
        assert!(run_wanting(q, &[], r#"{"status":"500","status":"200"}"#).is_none());
        let ext = run_wanting(q, &[], r#"{"status":"500","status":"503"}"#).unwrap();
        assert_eq!(label(&ext, "status"), Some("503"));
        // A line cut after the failing field is dropped, not an error; one
        // cut after a passing field is still an error.
        let q = r#"{a="b"} | json | status!="500""#;
        assert!(run_wanting(q, &["level"], r#"{"status":"500","level":"x"#).is_none());
        let ext = run_wanting(q, &["level"], r#"{"status":"404","level":"x"#).unwrap();
        assert_eq!(label(&ext, "__error__"), Some("JSONParserErr"));
        // A number that is no number keeps the line, as the filter would.
        let q = r#"{a="b"} | json | status >= 500"#;
        let ext = run_wanting(q, &[], r#"{"status":"n/a"}"#).unwrap();
        assert_eq!(label(&ext, "__error__"), Some("LabelFilterErr"));
        // After label_format the label may be another's: no early check.
        let q = r#"{a="b"} | json | label_format status="{{.code}}" | status="500""#;
        let ext = run_wanting(q, &[], r#"{"status":"200","code":"500"}"#).unwrap();
        assert_eq!(label(&ext, "status"), Some("500"));
    }

    /// A metric query's `| logfmt` reads by Loki's hints: it stops once
    /// every hinted name is in (so a strict parse of a line broken after
    /// them is no error, and a repeated key's first value stands), and
    /// drops a line at the first value a one-label filter after it fails.
    #[test]
    fn a_metric_querys_logfmt_reads_only_as_far_as_its_hints() {
        let q = r#"{a="b"} | logfmt --strict"#;
        let cut = r#"level=warn msg="open"#;
        let ext = run_wanting(q, &["level"], cut).unwrap();
        assert_eq!(label(&ext, "level"), Some("warn"));
        assert_eq!(label(&ext, "__error__"), None, "{ext:?}");
        let (_, ext) = run(q, cut).unwrap();
        assert_eq!(label(&ext, "__error__"), Some("LogfmtParserErr"));
        // Broken before the hinted name is in: an error, as in Loki.
        let ext = run_wanting(q, &["level"], r#"msg="open level=warn"#).unwrap();
        assert_eq!(label(&ext, "__error__"), Some("LogfmtParserErr"));
        let q = r#"{a="b"} | logfmt"#;
        let ext = run_wanting(q, &["sev"], "sev=info sev=error").unwrap();
        assert_eq!(label(&ext, "sev"), Some("info"));
        let (_, ext) = run(q, "sev=info sev=error").unwrap();
        assert_eq!(label(&ext, "sev"), Some("error"));
        // A filter after the parser drops the line at the first value it
        // fails; `__error__` keeps the reading going.
        let q = r#"{a="b"} | logfmt | status="500" | __error__="""#;
        assert!(run_wanting(q, &[], "status=200 status=500").is_none());
        assert!(run(q, "status=200 status=500").is_some());
        assert!(run_wanting(q, &[], "status=500 x=1").is_some());
    }

    #[test]
    fn line_filters_are_case_sensitive_substrings_and_regexes() {
        assert!(run(r#"{a="b"} |= "GET /cart""#, LINE).is_some());
        assert!(run(r#"{a="b"} |= "get /cart""#, LINE).is_none());
        assert!(run(r#"{a="b"} != "cart""#, LINE).is_none());
        assert!(run(r#"{a="b"} |~ "st.tus\":5\\d\\d""#, LINE).is_some());
        assert!(run(r#"{a="b"} !~ "(?i)GET""#, LINE).is_none());
    }

    /// Duration and byte-size filters read the label as Go and Loki do;
    /// a missing label fails the comparison (an unreadable one keeps the
    /// line with `__error__`: see the next test).
    #[test]
    fn duration_and_byte_size_filters_compare_what_the_labels_say() {
        let kept = |filter: &str, line: &str| {
            run(&format!(r#"{{a="b"}} | logfmt | {filter}"#), line).is_some()
        };
        assert!(kept("took > 250ms", "took=1.5s"));
        assert!(!kept("took > 250ms", "took=249ms"));
        assert!(kept("took <= 1m", "took=59.9s"));
        assert!(kept("took == 1h", "took=60m"));
        assert!(!kept("took > 1ms", "other=2s"));
        assert!(kept("size > 20MB", "size=21MB"));
        assert!(
            kept("size > 20MB", "size=20MiB"),
            "20 MiB is 20,971,520 bytes"
        );
        assert!(!kept("size > 1KiB", "size=1000"));
        assert!(kept("size >= 1KB", "size=1000"));
    }

    /// As Loki: a numeric filter on a value that does not read as its
    /// unit keeps the line, marked `__error__="LabelFilterErr"` with the
    /// reason; `| __error__=""` then drops it.
    #[test]
    fn an_unreadable_number_keeps_the_line_with_an_error() {
        let err = |q: &str, line: &str| -> Option<(String, String)> {
            let (_, ext) = run(q, line)?;
            let get = |k: &str| {
                ext.iter()
                    .rev()
                    .find(|(n, _)| n == k)
                    .map(|(_, v)| v.clone())
            };
            Some((get("__error__")?, get("__error_details__")?))
        };
        assert_eq!(
            err(r#"{a="b"} | logfmt | took > 1ms"#, "took=fast"),
            Some((
                "LabelFilterErr".into(),
                r#"time: invalid duration "fast""#.into()
            ))
        );
        assert_eq!(
            err(r#"{a="b"} | logfmt | n >= 5"#, "n=five"),
            Some((
                "LabelFilterErr".into(),
                r#"strconv.ParseFloat: parsing "five": invalid syntax"#.into()
            ))
        );
        assert!(run(r#"{a="b"} | logfmt | n >= 5 | __error__="""#, "n=five").is_none());
        assert!(
            run(r#"{a="b"} | logfmt | n >= 5"#, "m=5").is_none(),
            "missing fails"
        );
        assert!(run(r#"{a="b"} | logfmt | n >= 5"#, "n=4").is_none());
    }

    #[test]
    fn ip_filters_on_lines_and_labels() {
        let line = "client=10.1.2.3:5123 GET /cart";
        assert!(run(r#"{a="b"} |= ip("10.0.0.0/8")"#, line).is_some());
        assert!(run(r#"{a="b"} != ip("10.0.0.0/8")"#, line).is_none());
        assert!(run(r#"{a="b"} |= ip("192.168.0.0/16")"#, line).is_none());
        let kv = "addr=192.168.4.7 user=x";
        assert!(run(
            r#"{a="b"} | logfmt | addr = ip("192.168.4.5-192.168.4.20")"#,
            kv
        )
        .is_some());
        assert!(run(
            r#"{a="b"} | logfmt | addr != ip("192.168.4.5-192.168.4.20")"#,
            kv
        )
        .is_none());
        assert!(
            run(r#"{a="b"} | logfmt | user = ip("0.0.0.0/0")"#, kv).is_none(),
            "not an address"
        );
    }

    /// `regexp`: named captures become labels (renamed `_extracted` where
    /// a stream label has the name); a line it does not match gets none.
    #[test]
    fn regexp_extracts_named_captures() {
        let line = "10.0.0.1 GET /cart 503 info";
        let (_, ext) = run(
            r#"{a="b"} | regexp "^(?P<ip>\\S+) (?P<method>\\w+) \\S+ (?P<status>\\d+) (?P<level>\\w+)" | status >= 500"#,
            line,
        )
        .unwrap();
        let want: Labels = [
            ("ip", "10.0.0.1"),
            ("method", "GET"),
            ("status", "503"),
            ("level_extracted", "info"),
        ]
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
        assert_eq!(ext, want);
        // The first match counts: " 503 ", not the "10" of the address.
        let status = r#"{a="b"} | regexp " (?P<status>\\d{3}) " | status < 500"#;
        assert!(run(status, line).is_none());
        assert!(run(r#"{a="b"} | regexp "(?P<n>\\d+)" | n == 10"#, line).is_some());
        let (_, ext) = run(r#"{a="b"} | regexp "^(?P<x>nope)""#, line).unwrap();
        assert!(ext.is_empty(), "no match, no labels: {ext:?}");
        // A group that took no part in the match is set empty, as Loki
        // sets every named group of Go's FindSubmatch.
        let (_, ext) = run(r#"{a="b"} | regexp "(?P<m>GET)(?P<q>\\?\\S+)?""#, line).unwrap();
        assert_eq!(
            ext,
            [
                ("m".to_owned(), "GET".to_owned()),
                ("q".to_owned(), String::new())
            ]
        );
    }

    #[test]
    fn json_with_parameters_extracts_only_those_paths() {
        let line = r#"{"servers":[{"host":"a"},{"host":"b"}],"request":{"headers":{"User-Agent":"curl"}},"n":3,"ok":true,"none":null}"#;
        let q = r#"{a="b"} | json h="servers[1].host", ua="request.headers[\"User-Agent\"]", n, ok, first="servers[0]", none, missing="x.y""#;
        let (_, ext) = run(q, line).unwrap();
        let want: Labels = [
            ("h", "b"),
            ("ua", "curl"),
            ("n", "3"),
            ("ok", "true"),
            ("first", r#"{"host":"a"}"#),
            // A null or a path the line lacks gives an empty label, as
            // Loki's expression parser sets every one.
            ("none", ""),
            ("missing", ""),
        ]
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
        assert_eq!(ext, want);
        let (_, ext) = run(r#"{a="b"} | json n"#, "not json").unwrap();
        assert_eq!(ext, [("__error__".to_owned(), "JSONParserErr".to_owned())]);
    }

    #[test]
    fn logfmt_parameters_and_flags() {
        let line = r#"host=h1 level=warn standalone msg="a b""#;
        let keys = |q: &str, line: &str| -> Vec<(String, String)> { run(q, line).unwrap().1 };
        let kv = |pairs: &[(&str, &str)]| -> Labels {
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect()
        };
        // Standalone keys only with --keep-empty, as in Loki.
        assert_eq!(
            keys(r#"{a="b"} | logfmt"#, line),
            kv(&[("host", "h1"), ("level_extracted", "warn"), ("msg", "a b")])
        );
        assert_eq!(
            keys(r#"{a="b"} | logfmt --keep-empty"#, line),
            kv(&[
                ("host", "h1"),
                ("level_extracted", "warn"),
                ("standalone", ""),
                ("msg", "a b")
            ])
        );
        // Parameters pick and rename; a key the line lacks gives an empty
        // label, as Loki's expression parser sets every one.
        assert_eq!(
            keys(r#"{a="b"} | logfmt server="host", msg, gone"#, line),
            kv(&[("server", "h1"), ("msg", "a b"), ("gone", "")])
        );
        // --strict stops at a malformed pair and marks the line; without
        // it the rest is read. A malformed pair (an empty key, an
        // unterminated quote) gives nothing, as in Loki's decoder.
        let bad = r#"a=1 =2 c=3 b="open"#;
        assert_eq!(
            keys(r#"{a="b"} | logfmt"#, bad),
            kv(&[("a", "1"), ("c", "3")])
        );
        assert_eq!(
            keys(r#"{a="b"} | logfmt --strict"#, bad),
            kv(&[("a", "1"), ("__error__", "LogfmtParserErr")])
        );
    }

    /// Go templates with Loki's functions, over every label the line has
    /// (the stream's `level` too). Expected values from Loki's docs: `trunc`
    /// keeps characters, `default` fills an empty value, `__line__` is the
    /// line as it reaches the stage, `__timestamp__` its time (here 0: the
    /// Unix epoch).
    #[test]
    fn line_and_label_format_run_go_templates() {
        let line = "method=GET path=/cart status=503 took=1.5s";
        let (out, _) = run(
            r#"{a="b"} | logfmt | line_format `{{ if ge (int .status) 500 }}{{ .method | ToLower }} {{ .path | trunc 3 }}{{ else }}ok{{ end }} {{ .user | default "anon" }} {{ __timestamp__ | date "2006-01-02" }} [{{ .level }}]`"#,
            line,
        )
        .unwrap();
        assert_eq!(out, "get /ca anon 1970-01-01 [info]");
        let (out, _) = run(r#"{a="b"} | line_format "{{ __line__ | len }}""#, line).unwrap();
        assert_eq!(out, "42", "len of the 42-byte line");
        let (_, ext) = run(
            r#"{a="b"} | logfmt | label_format route=`{{ regexReplaceAll "/(\\w+)" .path "${1}" }}`, secs=`{{ .took | duration }}`"#,
            line,
        )
        .unwrap();
        assert!(ext.contains(&("route".into(), "cart".into())), "{ext:?}");
        assert!(ext.contains(&("secs".into(), "1.5".into())), "{ext:?}");
        // A template that fails keeps the line as it was, marked.
        let (out, ext) = run(r#"{a="b"} | logfmt | line_format "{{ div 1 0 }}""#, line).unwrap();
        assert_eq!(out, line);
        assert!(
            ext.contains(&("__error__".into(), "TemplateFormatErr".into())),
            "{ext:?}"
        );
        assert!(
            ext.iter()
                .any(|(k, v)| k == "__error_details__" && !v.is_empty()),
            "{ext:?}"
        );
        // ... which `| __error__=""` drops.
        let q = r#"{a="b"} | logfmt | line_format "{{ div 1 0 }}" | __error__="""#;
        assert!(run(q, line).is_none());
    }

    /// `drop` and `keep` with matchers act only where the value matches;
    /// an `or` chain mixing `ip()` and text keeps a line either matches.
    #[test]
    fn drop_and_keep_with_matchers_and_mixed_or_chains() {
        let labels = |q: &str, line: &str| -> Vec<String> {
            let Query::Log(lq) = parse(q).unwrap() else {
                panic!()
            };
            let p = LinePipeline::new(&lq);
            let stream = std::sync::Arc::new(vec![("level".to_owned(), "info".to_owned())]);
            let mut ext = Vec::new();
            p.eval(0, line, &stream, &mut ext).unwrap();
            p.result_labels(&stream, &ext)
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect()
        };
        let line = "method=GET path=/cart status=503";
        assert_eq!(
            labels(
                r#"{a="b"} | logfmt | drop method="GET", path=~"/x.*", level"#,
                line
            ),
            ["path=/cart", "status=503"]
        );
        assert_eq!(
            labels(r#"{a="b"} | logfmt | drop method="POST""#, line),
            ["level=info", "method=GET", "path=/cart", "status=503"]
        );
        assert_eq!(
            labels(
                r#"{a="b"} | logfmt | keep method!="GET", status, level=~"i.*""#,
                line
            ),
            ["level=info", "status=503"]
        );
        let q = r#"{a="b"} |= ip("10.0.0.0/8") or "503""#;
        assert!(run(q, "from 10.1.2.3 200").is_some());
        assert!(run(q, "from 192.168.0.1 503").is_some());
        assert!(run(q, "from 192.168.0.1 200").is_none());
        let q = r#"{a="b"} != ip("10.0.0.0/8") or "503""#;
        assert!(run(q, "from 192.168.0.1 200").is_some());
        assert!(run(q, "from 10.1.2.3 200").is_none());
        assert!(run(q, "from 192.168.0.1 503").is_none());
        let q = r#"{a="b"} |> "<_> GET <_>" or "exactly this""#;
        assert!(run(q, "x GET y").is_some());
        assert!(run(q, "exactly this").is_some());
        assert!(run(q, "exactly this and more").is_none());
    }

    #[test]
    fn the_pattern_parser_and_pattern_filters() {
        let line = "10.0.0.1 GET /cart 503";
        let (_, ext) = run(
            r#"{a="b"} | pattern "<ip> <method> <_> <status>" | status >= 500"#,
            line,
        )
        .unwrap();
        let want: Labels = [("ip", "10.0.0.1"), ("method", "GET"), ("status", "503")]
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        assert_eq!(ext, want);
        assert!(run(r#"{a="b"} |> "<_> GET <_>""#, line).is_some());
        assert!(run(r#"{a="b"} |> "<_> POST <_>""#, line).is_none());
        assert!(run(r#"{a="b"} !> "<_> GET <_>""#, line).is_none());
        assert!(run(r#"{a="b"} !> "<_> POST <_>""#, line).is_some());
    }

    #[test]
    fn unpack_reads_promtails_packed_lines() {
        let packed = r#"{"_entry":"GET /cart 503","container":"api","level":"warn","n":1}"#;
        let (line, ext) = run(r#"{a="b"} | unpack | container="api""#, packed).unwrap();
        assert_eq!(line, "GET /cart 503");
        let want: Labels = [("container", "api"), ("level_extracted", "warn")]
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        assert_eq!(
            ext, want,
            "strings only; a stream label's name gets _extracted"
        );
        let (_, ext) = run(r#"{a="b"} | unpack"#, "plain").unwrap();
        assert_eq!(ext, [("__error__".to_owned(), "JSONParserErr".to_owned())]);
        // An object with no `_entry` was not packed: the line stays, and no
        // label is set, as Loki's unpack flushes its labels only for a
        // packed entry.
        let plain = r#"{"container":"api","msg":"x"}"#;
        let (line, ext) = run(r#"{a="b"} | unpack"#, plain).unwrap();
        assert_eq!((line.as_str(), ext.len()), (plain, 0), "{ext:?}");
    }

    /// `label_format`: a rename moves the value and removes the source,
    /// even a stream label; a template fills in from the labels before
    /// the stage; the result and later filters see the new labels.
    #[test]
    fn label_format_renames_and_templates() {
        let q = r#"{a="b"} | json | label_format sev=level, where="{{.http_path}} ({{.level}})", trace_id="{{.trace_id}}!" | sev="info""#;
        let Query::Log(lq) = parse(q).unwrap() else {
            panic!()
        };
        let p = LinePipeline::new(&lq);
        let stream = std::sync::Arc::new(vec![("level".to_owned(), "info".to_owned())]);
        let mut ext = Vec::new();
        p.eval(0, LINE, &stream, &mut ext).unwrap();
        let labels = p.result_labels(&stream, &ext);
        let get = |k: &str| labels.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        assert_eq!(get("sev"), Some("info"));
        assert_eq!(get("level"), None, "renamed away");
        assert_eq!(
            get("where"),
            Some("/cart (info)"),
            "from the labels before the stage"
        );
        assert_eq!(
            get("trace_id"),
            Some("abc!"),
            "a template may replace a label"
        );
        assert!(run(r#"{a="b"} | label_format sev=level | level="info""#, LINE).is_none());
        assert!(run(r#"{a="b"} | label_format sev=level | sev="info""#, LINE).is_some());
        // The value is the stream label's, not in the line: still found.
        let plain = "GET /cart 503";
        assert!(run(r#"{a="b"} | label_format sev=level | sev="info""#, plain).is_some());
    }

    #[test]
    fn line_format_trims_as_go_templates_do() {
        let (line, _) = run(
            r#"{a="b"} | json | line_format "{{.level}}  {{- .msg -}}  !""#,
            LINE,
        )
        .unwrap();
        assert_eq!(line, "infoGET /cart!");
    }

    #[test]
    fn keep_and_decolorize() {
        let Query::Log(lq) = parse(r#"{a="b"} | json | keep level, trace_id"#).unwrap() else {
            panic!()
        };
        let p = LinePipeline::new(&lq);
        let stream = std::sync::Arc::new(vec![
            ("a".to_owned(), "b".to_owned()),
            ("level".to_owned(), "info".to_owned()),
        ]);
        let mut ext = Vec::new();
        p.eval(0, LINE, &stream, &mut ext).unwrap();
        let labels = p.result_labels(&stream, &ext);
        let kept: Vec<&str> = labels.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(kept, ["level", "trace_id"]);
        let coloured = "\x1b[31mERROR\x1b[0m disk \x1b[1;33mfull\x1b[0m";
        let (line, _) = run(r#"{a="b"} | decolorize |= "ERROR disk full""#, coloured).unwrap();
        assert_eq!(line, "ERROR disk full");
        assert!(run(r#"{a="b"} |= "ERROR disk full""#, coloured).is_none());
    }

    /// Loki 3's `or` in line filters: a positive filter keeps a line that
    /// has any alternative, a negative one a line that has none.
    #[test]
    fn or_in_line_filters_keeps_any_for_positive_and_none_for_negative() {
        let kept = |q: &str| run(&format!(r#"{{a="b"}} {q}"#), LINE).is_some();
        assert!(kept(r#"|= "nope" or "GET /cart""#));
        assert!(kept(r#"|= "GET /cart" or "nope""#));
        assert!(!kept(r#"|= "nope" or "never""#));
        assert!(!kept(r#"|= "GET.*" or "nope""#), "literals, not regexes");
        assert!(kept(r#"|~ "nope" or "st.tus""#));
        assert!(kept(r#"!= "nope" or "never""#));
        assert!(!kept(r#"!= "nope" or "cart""#));
        assert!(!kept(r#"!~ "nope" or "c.rt""#));
        assert!(kept(r#"!~ "nope" or "never""#));
    }

    #[test]
    fn json_extracts_flattened_fields_and_renames_collisions() {
        let (_, ext) = run(
            r#"{a="b"} | json | http_status >= 500 and trace_id="abc""#,
            LINE,
        )
        .unwrap();
        assert!(ext.contains(&("http_status".into(), "503".into())));
        assert!(ext.contains(&("level_extracted".into(), "info".into())));
        assert!(run(r#"{a="b"} | json | http_status < 500"#, LINE).is_none());
    }

    #[test]
    fn field_filters_work_without_a_parser_and_add_no_labels() {
        let (_, ext) = run(r#"{a="b"} | trace_id="abc""#, LINE).unwrap();
        assert!(ext.is_empty());
        assert!(run(r#"{a="b"} | trace_id="abd""#, LINE).is_none());
        assert!(run(r#"{a="b"} | level="info""#, "plain text").is_some());
    }

    #[test]
    fn field_filters_skip_lines_without_the_value_but_never_a_match() {
        // The value is absent: dropped before any parsing.
        assert!(run(r#"{a="b"} | trace_id="abd" and http_path="/cart""#, LINE).is_none());
        // The value is elsewhere in the line, not in the field: parsed, fails.
        assert!(run(r#"{a="b"} | trace_id="/cart""#, LINE).is_none());
        // Escaped in the JSON: the literal is not in the line, yet it matches.
        let escaped = r#"{"trace_id":"\u0061bc","note":"x\"y"}"#;
        assert!(run(r#"{a="b"} | trace_id="abc""#, escaped).is_some());
        // Short escapes spell only `"`, `\`, `/` and control characters.
        assert!(run(r#"{a="b"} | p="a/b""#, r#"{"p":"a\/b"}"#).is_some());
        assert!(run(r#"{a="b"} | p="a/c""#, r#"{"p":"a\/b"}"#).is_none());
        let quoted = r#"{"trace_id":"abc","note":"x\"y\n\u0041"}"#;
        assert!(run(r#"{a="b"} | trace_id="abc""#, quoted).is_some());
        assert!(run(r#"{a="b"} | trace_id="abd""#, quoted).is_none());
        assert!(run(r#"{a="b"} | note="x\"y\nA""#, quoted).is_some());
        // A number is its text as the line spells it, as in Loki: `1e3`
        // is not the string "1000", though it is the number 1000.
        assert!(run(r#"{a="b"} | n="1000""#, r#"{"n":1e3}"#).is_none());
        assert!(run(r#"{a="b"} | n="1e3""#, r#"{"n":1e3}"#).is_some());
        assert!(run(r#"{a="b"} | n=1000"#, r#"{"n":1e3}"#).is_some());
        assert!(run(r#"{a="b"} | n="1.50""#, r#"{"n":1.50}"#).is_some());
        assert!(run(r#"{a="b"} | n="1.5""#, r#"{"n":1.50}"#).is_none());
        // A stream label needs nothing from the line.
        assert!(run(r#"{a="b"} | level="info" and trace_id="abc""#, LINE).is_some());
        // `or` requires neither side.
        assert!(run(r#"{a="b"} | trace_id="zzz" or http_status=503"#, LINE).is_some());
    }

    #[test]
    fn logfmt_and_line_format() {
        let (line, _) = run(
            r#"{a="b"} | logfmt | status=200 | line_format "{{.method}} {{ .path }}""#,
            r#"method=GET path="/a b" status=200"#,
        )
        .unwrap();
        assert_eq!(line, "GET /a b");
    }
}
