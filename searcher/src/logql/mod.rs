//! LogQL as Loki 3 defines it: stream selectors, line filters (with `or`,
//! patterns and `ip()`), the parsers, label filters, `line_format` and
//! `label_format`, `drop`/`keep`; range functions over lines and over
//! unwrapped values, vector aggregations, binary operators with
//! matching, `label_replace`. What is not supported is refused with an
//! error that names it, never answered wrongly. `parser` turns text into
//! this AST; [`eval`] runs a log query's pipeline on one line; `format`
//! writes a query out again for Grafana's "Format query".

pub mod eval;
mod format;
pub mod ip;
pub mod json_scan;
pub mod logfmt;
pub mod narrow;
mod parser;
pub mod pattern;
pub mod template;

pub use crate::time::parse_duration;
pub use format::format_query;
pub use narrow::label_names;
pub use parser::{parse, ParseError};
use regex::Regex;

#[derive(Debug, Clone)]
pub enum Query {
    Log(LogQuery),
    Metric(MetricExpr),
}

#[derive(Debug, Clone)]
pub struct LogQuery {
    pub matchers: Vec<Matcher>,
    pub stages: Vec<Stage>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MatchOp {
    Eq,
    Ne,
    Re,
    Nre,
}

#[derive(Debug, Clone)]
pub struct Matcher {
    pub name: String,
    pub op: MatchOp,
    pub value: String,
    /// Anchored, as Prometheus and Loki anchor label regexes.
    pub re: Option<Regex>,
}

impl Matcher {
    pub fn matches(&self, v: &str) -> bool {
        match self.op {
            MatchOp::Eq => v == self.value,
            MatchOp::Ne => v != self.value,
            MatchOp::Re => self.re.as_ref().is_some_and(|r| r.is_match(v)),
            MatchOp::Nre => !self.re.as_ref().is_some_and(|r| r.is_match(v)),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LineOp {
    Contains,
    NotContains,
    Re,
    NotRe,
}

#[derive(Debug, Clone)]
pub enum Stage {
    Line {
        op: LineOp,
        needle: String,
        /// Unanchored, for `|~` and `!~`.
        re: Option<Regex>,
    },
    Json,
    /// `| json a="servers[0].host", b`: only these fields, each at its
    /// path, as the named labels.
    JsonFields(Vec<(String, Vec<JsonPath>)>),
    /// `| logfmt`, with its parameters and flags.
    Logfmt(LogfmtParams),
    /// `| regexp "(?P<name>…)"`: each named capture becomes a label.
    Regexp(Regex),
    /// `| pattern "<ip> - <_> <status>"`: each named capture becomes a label.
    Pattern(pattern::Pattern),
    /// `|= ip("10.0.0.0/8")` (`keep`) or `!= ip("…")`: lines that hold a
    /// matching address, or those that do not.
    IpFilter {
        pattern: ip::IpPattern,
        keep: bool,
    },
    /// `|> "<_> error <_>"` (`keep`) or `!> "…"`: lines that match the
    /// pattern, or those that do not.
    PatternFilter {
        pattern: pattern::Pattern,
        keep: bool,
    },
    Labels(LabelExpr),
    /// `| line_format "{{.field | ToUpper}}"`: a Go template over the labels.
    LineFormat(template::Template),
    /// `| drop a, b="v"`: remove labels from the result (Grafana's volume
    /// queries send `| drop __error__`).
    Drop(Vec<LabelPick>),
    /// `| keep a, b=~"v.*"`: only these labels in the result.
    Keep(Vec<LabelPick>),
    /// `|= "a" or ip("10.0.0.0/8")`, `|> "<_> a" or "<_> b"`: the line
    /// passes if any of these line filters passes it.
    AnyOf(Vec<Stage>),
    /// `| label_format dst=src, dst2="{{.a}}-{{.b}}"`: renames (the
    /// source label goes) and templates, each read from the labels as
    /// they were before the stage.
    LabelFormat(Vec<(String, LabelSource)>),
    /// `| decolorize`: strip ANSI colour sequences from the line.
    Decolorize,
    /// `| unpack`: the labels Promtail's `pack` stage embedded, and its
    /// `_entry` as the line.
    Unpack,
}

/// A label `drop` or `keep` names: with every value, or only with the
/// values a matcher allows (`| drop method="GET"`).
#[derive(Debug, Clone)]
pub struct LabelPick {
    pub name: String,
    pub matcher: Option<Matcher>,
}

impl LabelPick {
    pub fn picks(&self, name: &str, value: &str) -> bool {
        self.name == name && self.matcher.as_ref().is_none_or(|m| m.matches(value))
    }
}

/// Where `label_format` takes a label's new value from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LabelSource {
    /// `dst=src`: the value of `src`, which is removed.
    Rename(String),
    /// `dst="{{.a}} {{.b}}"`: the template filled in.
    Template(template::Template),
}

/// One step of a `json` parameter's path: `a`, `[0]` or `["a b"]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JsonPath {
    Key(String),
    Index(usize),
}

/// `| logfmt --strict --keep-empty a, b="c"`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogfmtParams {
    /// (label, key) pairs to extract; empty, every pair.
    pub fields: Vec<(String, String)>,
    /// Stop at the first malformed pair and set `__error__`.
    pub strict: bool,
    /// Keep standalone keys (no `=`) as empty labels.
    pub keep_empty: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CmpOp {
    Eq,
    Ne,
    Re,
    Nre,
    Gt,
    Ge,
    Lt,
    Le,
}

#[derive(Debug, Clone)]
pub enum LabelExpr {
    And(Box<LabelExpr>, Box<LabelExpr>),
    Or(Box<LabelExpr>, Box<LabelExpr>),
    /// String comparison (`=`, `!=`, `=~`, `!~`) against a quoted value.
    Str {
        name: String,
        op: CmpOp,
        value: String,
        re: Option<Regex>,
    },
    /// `name = ip("…")` (or `!=`): whether the label is a matching address.
    Ip {
        name: String,
        pattern: ip::IpPattern,
        negate: bool,
    },
    /// Numeric comparison against an unquoted number, duration (`250ms`,
    /// compared in seconds) or byte size (`20MB`).
    Num {
        name: String,
        op: CmpOp,
        value: f64,
        unit: Unit,
    },
}

/// How a numeric label filter reads the label's value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    /// A plain number.
    Number,
    /// A Go duration (`1.5s`), in seconds.
    Duration,
    /// A byte size (`1.5KiB`), in bytes.
    Bytes,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RangeFn {
    CountOverTime,
    Rate,
    BytesOverTime,
    BytesRate,
    /// 1 at each step whose window holds no line, labelled with the
    /// selector's equality matchers; nothing where there are lines.
    AbsentOverTime,
}

/// A range function over unwrapped values (`| unwrap latency`), as Loki
/// defines each over the samples in `(t - range, t]`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum UnwrapFn {
    Sum,
    Avg,
    Min,
    Max,
    /// Population standard deviation.
    Stddev,
    /// Population variance.
    Stdvar,
    /// `quantile_over_time(φ, …)`, interpolated as Prometheus does.
    Quantile(f64),
    First,
    Last,
    /// `rate` over unwrapped values: their sum per second of the range.
    Rate,
    /// `rate_counter`: the values read as a counter (a drop is a reset),
    /// its increase per second, extrapolated as Loki does.
    RateCounter,
}

/// `| unwrap name`, `| unwrap duration(name)` (or `duration_seconds`,
/// both in seconds) or `| unwrap bytes(name)`: the label whose value a
/// range function over unwrapped values takes from each line.
#[derive(Debug, Clone)]
pub struct Unwrap {
    pub label: String,
    pub unit: Unit,
    /// Label filters after `| unwrap`, run once the value is read: a value
    /// that did not read has `__error__="SampleExtractionErr"` by then.
    pub post_filters: Vec<LabelExpr>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AggOp {
    Sum,
    Count,
    Min,
    Max,
    Avg,
    /// Population standard deviation of the members.
    Stddev,
    /// Population variance of the members.
    Stdvar,
    Topk(usize),
    Bottomk(usize),
    /// `approx_topk(k, v)`: Loki's probabilistic `topk`, for instant
    /// queries only and without grouping. Loki approximates it with a
    /// count-min sketch across shards; one process has every series, so
    /// this gives the exact `topk`, which the sketch only estimates.
    ApproxTopk(usize),
    /// `sort` and `sort_desc`: the series unchanged; an instant query's
    /// answer lists them by value.
    Sort,
    SortDesc,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grouping {
    pub without: bool,
    pub labels: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BinOp {
    Add,
    Sub,
    Mul,
    Div,
    Mod,
    Pow,
    Eq,
    Ne,
    Gt,
    Lt,
    Ge,
    Le,
    And,
    Or,
    Unless,
}

impl BinOp {
    pub fn is_comparison(self) -> bool {
        matches!(
            self,
            BinOp::Eq | BinOp::Ne | BinOp::Gt | BinOp::Lt | BinOp::Ge | BinOp::Le
        )
    }

    pub fn is_set(self) -> bool {
        matches!(self, BinOp::And | BinOp::Or | BinOp::Unless)
    }
}

/// How two vectors' series pair up, as in PromQL: by all their labels
/// (the default), only those `on`, or all but those `ignoring`; with
/// `group_left`/`group_right`, many series of one side to one of the
/// other, copying the `include` labels from the one.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VectorMatching {
    pub on: bool,
    pub labels: Vec<String>,
    pub group: Option<GroupSide>,
    pub include: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupSide {
    Left,
    Right,
}

#[derive(Debug, Clone)]
pub enum MetricExpr {
    Range {
        func: RangeFn,
        query: LogQuery,
        range_ns: i64,
        /// `offset 1h`: the windows end this much before each step.
        offset_ns: i64,
    },
    Agg {
        op: AggOp,
        grouping: Option<Grouping>,
        inner: Box<MetricExpr>,
    },
    /// A range function over the values `unwrap` takes from each line.
    /// Its series are the lines' labels without the unwrapped one, or,
    /// with `grouping`, grouped as Loki groups a range aggregation.
    Unwrapped {
        func: UnwrapFn,
        query: LogQuery,
        unwrap: Unwrap,
        range_ns: i64,
        offset_ns: i64,
        grouping: Option<Grouping>,
    },
    /// `label_replace(v, dst, replacement, src, regex)`: where `regex`
    /// (anchored) matches a series' `src` label, `dst` becomes
    /// `replacement` with `$1`, `${name}` expanded; an empty `dst` is
    /// removed.
    LabelReplace {
        inner: Box<MetricExpr>,
        dst: String,
        replacement: String,
        src: String,
        re: Regex,
    },
    /// A bare number: a scalar.
    Const(f64),
    /// `vector(1)`: a vector of one series without labels.
    Vector(f64),
    /// A binary operator between two expressions, scalars or vectors:
    /// arithmetic, comparison (with `bool`: 1 or 0 instead of a filter)
    /// and, between vectors, `and`, `or`, `unless`.
    Binary {
        op: BinOp,
        lhs: Box<MetricExpr>,
        rhs: Box<MetricExpr>,
        return_bool: bool,
        matching: VectorMatching,
    },
}

impl MetricExpr {
    /// Whether an `approx_topk` is anywhere in the expression: Loki
    /// accepts one only in an instant query.
    pub fn has_approx_topk(&self) -> bool {
        match self {
            MetricExpr::Agg { op, inner, .. } => {
                matches!(op, AggOp::ApproxTopk(_)) || inner.has_approx_topk()
            }
            MetricExpr::LabelReplace { inner, .. } => inner.has_approx_topk(),
            MetricExpr::Binary { lhs, rhs, .. } => lhs.has_approx_topk() || rhs.has_approx_topk(),
            MetricExpr::Range { .. }
            | MetricExpr::Unwrapped { .. }
            | MetricExpr::Const(_)
            | MetricExpr::Vector(_) => false,
        }
    }

    /// The log query inside, if any.
    /// Whether the expression is a scalar: a number, or arithmetic on
    /// numbers. `vector(…)` is a vector, as in Loki.
    pub fn is_scalar(&self) -> bool {
        match self {
            MetricExpr::Const(_) => true,
            MetricExpr::Binary { lhs, rhs, .. } => lhs.is_scalar() && rhs.is_scalar(),
            _ => false,
        }
    }

    pub fn log_query(&self) -> Option<&LogQuery> {
        match self {
            MetricExpr::Range { query, .. } | MetricExpr::Unwrapped { query, .. } => Some(query),
            MetricExpr::Agg { inner, .. } | MetricExpr::LabelReplace { inner, .. } => {
                inner.log_query()
            }
            MetricExpr::Const(_) | MetricExpr::Vector(_) => None,
            MetricExpr::Binary { lhs, rhs, .. } => lhs.log_query().or_else(|| rhs.log_query()),
        }
    }
}
