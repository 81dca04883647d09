//! `/loki/api/v1/format_query`: a query written out again in Loki's
//! spacing, for Grafana's "Format query" button and its query builder.
//! It works on tokens rather than on the syntax tree, so nothing the user
//! wrote (a backtick string, `5m` rather than `300s`) is rewritten: only
//! the space between tokens changes, and comments and line breaks go. The
//! query must parse first, and the formatted text parses to the same tree
//! (see the tests).

use super::parser::{parse, tokens, ParseError, TokenKind};

/// Functions and keywords followed by their own parentheses, with a space:
/// `sum by (app) (…)`, `… / on (app) group_left (pod) …`.
const SPACED_BEFORE_PAREN: &[&str] = &[
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "and",
    "or",
    "unless",
    "bool",
];

const LINE_FILTERS: &[&str] = &["|=", "!=", "|~", "!~", "|>", "!>"];

/// Where a token stands: in a stream selector's braces, in the pipeline
/// after one, or in the metric expression around them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Place {
    Selector,
    Pipeline,
    Metric,
}

/// The query on one line, spaced as Loki prints it:
/// `sum by (level) (rate({app="a"} |= "x" | json | level="error" [5m])) > 0.5`.
pub fn format_query(src: &str) -> Result<String, ParseError> {
    parse(src)?;
    let toks = tokens(src)?;
    let mut out = String::with_capacity(src.len());
    let mut place = Place::Metric;
    // Parentheses open now, and how many were open where the pipeline began.
    let mut depth = 0usize;
    let mut pipeline_depth = 0usize;
    for (i, &(kind, text)) in toks.iter().enumerate() {
        let prev = i.checked_sub(1).map(|j| toks[j]);
        let before_prev = i.checked_sub(2).map(|j| toks[j]);
        let sym = |t: Option<(TokenKind, &str)>, s: &[&str]| {
            t.is_some_and(|(k, x)| k == TokenKind::Sym && s.contains(&x))
        };
        let this = Some((kind, text));
        // Leaving the pipeline: its range, or the parenthesis around it.
        if place == Place::Pipeline
            && (sym(this, &["["]) || (sym(this, &[")"]) && depth <= pipeline_depth))
        {
            place = Place::Metric;
        }
        let space = match prev {
            None => false,
            Some(p) => spaced(place, p, before_prev, (kind, text)),
        };
        if space {
            out.push(' ');
        }
        out.push_str(text);
        match (kind, text) {
            (TokenKind::Sym, "{") => place = Place::Selector,
            (TokenKind::Sym, "}") => {
                place = Place::Pipeline;
                pipeline_depth = depth;
            }
            (TokenKind::Sym, "(") => depth += 1,
            (TokenKind::Sym, ")") => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    // Only spacing may change: should two tokens ever run together into
    // another (no known case), the query is given back as written.
    if tokens(&out).ok().as_ref() != Some(&toks) {
        return Ok(src.trim().to_owned());
    }
    Ok(out)
}

/// Whether a space goes between `prev` and `cur`.
fn spaced(
    place: Place,
    prev: (TokenKind, &str),
    before_prev: Option<(TokenKind, &str)>,
    cur: (TokenKind, &str),
) -> bool {
    use TokenKind::*;
    let is = |t: (TokenKind, &str), s: &str| t.0 == Sym && t.1 == s;
    if matches!(cur, (Sym, ")" | "]" | "}" | ",")) || matches!(prev, (Sym, "(" | "[" | "{")) {
        return false;
    }
    if is(prev, ",") {
        return true;
    }
    match place {
        // `{app="a", env!~"dev.*"}`
        Place::Selector => false,
        Place::Pipeline => {
            // `--strict`, `--keep-empty`: a flag is one word.
            if is(prev, "-") || (is(cur, "-") && prev == (Ident, "keep")) {
                return false;
            }
            // A label filter or a parser parameter binds tight to its
            // label: `status>=500`, `host="h"`. A line filter does not.
            let label_op = |t: (TokenKind, &str)| {
                t.0 == Sym && ["=", "!=", "=~", "!~", "==", ">", ">=", "<", "<="].contains(&t.1)
            };
            if label_op(cur) && prev.0 == Ident {
                return false;
            }
            if label_op(prev) && before_prev.is_some_and(|b| b.0 == Ident) {
                return false;
            }
            // `ip("…")`, `duration(took)`, `bytes(size)`.
            if is(cur, "(") && prev.0 == Ident && !SPACED_BEFORE_PAREN.contains(&prev.1) {
                return false;
            }
            !(cur.0 == Sym
                && !LINE_FILTERS.contains(&cur.1)
                && cur.1 != "|"
                && cur.1 != "("
                && cur.1 != "-")
        }
        Place::Metric => {
            // A function's parenthesis: `rate(`, `vector(`, `topk(`.
            if is(cur, "(") && prev.0 == Ident && !SPACED_BEFORE_PAREN.contains(&prev.1) {
                return false;
            }
            // `[5m]` follows its selector or pipeline directly.
            if is(cur, "[") {
                return false;
            }
            // A sign: `-1`, `* -2`.
            let operand_before =
                |t: (TokenKind, &str)| t.0 != Sym || matches!(t.1, ")" | "]" | "}");
            if is(prev, "-") && !before_prev.is_some_and(operand_before) {
                return false;
            }
            true
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spaces_as_loki_prints_a_query() {
        for (src, want) in [
            (
                r#"{app="foo",env!~"dev.*"}|="x"!=`y`|json|level="error""#,
                r#"{app="foo", env!~"dev.*"} |= "x" != `y` | json | level="error""#,
            ),
            (
                "sum by(level)(rate({app=\"foo\"}[5m]))>0.5",
                r#"sum by (level) (rate({app="foo"}[5m])) > 0.5"#,
            ),
            (
                "# errors per app\nsum by (app) (\n  count_over_time({app=~\"a|b\"} |~ \"err\" # only errors\n  [1m])\n)",
                r#"sum by (app) (count_over_time({app=~"a|b"} |~ "err"[1m]))"#,
            ),
            (
                r#"{app="a"}|logfmt --strict   --keep-empty a,b="c"|status >= 500 or(duration>250ms and size<1KB)"#,
                r#"{app="a"} | logfmt --strict --keep-empty a, b="c" | status>=500 or (duration>250ms and size<1KB)"#,
            ),
            (
                r#"quantile_over_time(0.99,{app="a"}|json|unwrap duration(took)|__error__=""[5m]offset 1h)by(route)"#,
                r#"quantile_over_time(0.99, {app="a"} | json | unwrap duration(took) | __error__=""[5m] offset 1h) by (route)"#,
            ),
            (
                r#"{app="a"}|=ip("10.0.0.0/8")|logfmt|addr!=ip("::1")|line_format "{{.msg}}""#,
                r#"{app="a"} |= ip("10.0.0.0/8") | logfmt | addr!=ip("::1") | line_format "{{.msg}}""#,
            ),
            (
                "sum by(app)(rate({a=\"b\"}[1m]))/on(app)group_left(pod)sum by(app,pod)(rate({a=\"b\"}[1m]))*-2",
                r#"sum by (app) (rate({a="b"}[1m])) / on (app) group_left (pod) sum by (app, pod) (rate({a="b"}[1m])) * -2"#,
            ),
        ] {
            assert_eq!(format_query(src).unwrap(), want, "{src}");
        }
    }

    /// Formatting changes spacing only: the result parses to the same tree,
    /// and formatting it again changes nothing.
    #[test]
    fn formatting_keeps_the_meaning_and_is_stable() {
        for src in [
            r#"{app="a"} |= "x" or "y" |> "<_> err <_>" !> "<_> ok" | pattern "<ip> <_>" | ip="1.2.3.4""#,
            r#"{app="a"} | json h="servers[0].host", ua="headers[\"User-Agent\"]" | label_format x=h, y="{{.ua}}""#,
            r#"{app="a"} | regexp "(?P<m>\\w+)" | drop m, __error__ | keep a, b | decolorize | unpack"#,
            r#"sum by (a) (rate({app="a"}[1m])) > bool 0.5 unless count_over_time({app="b"}[1m])"#,
            r#"topk(3, sum without (pod) (bytes_rate({app="a"}[5m] offset 10m)))"#,
            r#"label_replace(rate({app="a"}[1m]), "dst", "$1", "src", "(.*)")"#,
            r#"absent_over_time({app="a"} |= "done" [1h]) or count_over_time({app="b"}[1h])"#,
            r#"rate_counter({app="a"} | logfmt | unwrap bytes(size) | size > 1MB [5m])"#,
            "vector(2) ^ vector(3) ^ vector(2) - - 1",
        ] {
            let once = format_query(src).unwrap();
            assert_eq!(
                format!("{:?}", parse(&once).unwrap()),
                format!("{:?}", parse(src).unwrap()),
                "{src} -> {once}"
            );
            assert_eq!(format_query(&once).unwrap(), once, "{src}");
        }
    }

    #[test]
    fn a_bad_query_is_refused_with_the_parse_error() {
        let e = format_query(r#"{app="a"} |"#).unwrap_err();
        assert!(e.to_string().starts_with("parse error at line 1"), "{e}");
    }
}
