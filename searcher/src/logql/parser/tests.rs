//! The parser's tests: what Grafana and users send parses, errors say
//! what and where, and no input makes it panic.

use super::*;
use proptest::prelude::*;

fn ok(q: &str) -> Query {
    parse(q).unwrap_or_else(|e| panic!("{q}: {e}"))
}

/// Each query is refused with a message that says the given words.
fn refused(cases: &[(&str, &str)]) {
    for (q, says) in cases {
        let e = parse(q).expect_err(q);
        assert!(e.message.contains(says), "{q}: {e}");
    }
}

#[test]
fn parses_what_grafana_and_users_send() {
    for q in [
        r#"{app="checkout"}"#,
        r#"{__app__="checkout", level!="debug", pod=~"api-.*", ns!~"kube.*"}"#,
        r#"{app="a"} |= "error" != "timeout" |~ "5\\d\\d" !~ `(?i)health`"#,
        r#"{app="a"} | json | status >= 500 and method="GET" or (path=~"/api/.*", latency_ms < 10.5)"#,
        r#"{app="a"} | trace_id="abc123""#,
        r#"{app="a"} | logfmt | line_format "{{.msg}}""#,
        r#"sum by (level, detected_level) (count_over_time({app="a"} |= "x" [1m]))"#,
        r#"sum by (level, detected_level) (count_over_time({app="a"} | drop __error__ [1m]))"#,
        r#"sum(rate({app="a"}[5m])) by (pod)"#,
        r#"topk(3, sum by (app) (bytes_over_time({app=~".+"}[1h])))"#,
        r#"approx_topk(3, sum by (app) (bytes_over_time({app=~".+"}[1h])))"#,
        r#"avg without (pod) (bytes_rate({app="a"}[30s]))"#,
        "vector(1)+vector(1)",
        r#"sum(rate({app="a"}[1h30m])) * 60"#,
    ] {
        ok(q);
    }
}

#[test]
fn errors_say_what_and_where() {
    let cases = [
        (r#"{app="a""#, 1, 9, "expecting \"}\""),
        (r#"{app="a"} |= error"#, 1, 14, "expecting a quoted string"),
        (r#"{app=~"(["}"#, 1, 7, "invalid regex"),
        ("{app=\"a\"}\n | status > \"5\"", 2, 13, "drop the quotes"),
        (r#"{app=""}"#, 1, 1, "at least one matcher"),
        (
            r#"sum(count_over_time({app="a"}))"#,
            1,
            30,
            "expecting \"[\"",
        ),
        (r#"frobnicate({app="a"}[1m])"#, 1, 11, "unknown function"),
        ("", 1, 1, "empty query"),
        (r#"{app="a"} | json | x="#, 1, 22, "end of query"),
        (
            r#"approx_topk by (app) (2, rate({app="a"}[1m]))"#,
            1,
            46,
            "approx_topk takes no by/without",
        ),
        (
            r#"approx_topk(0, rate({app="a"}[1m]))"#,
            1,
            13,
            "whole k between 1 and 10000",
        ),
    ];
    for (q, line, col, want) in cases {
        let e = parse(q).expect_err(q);
        assert!(e.message.contains(want), "{q}: {e}");
        assert_eq!((e.line, e.col), (line, col), "{q}: {e}");
    }
}

#[test]
fn regexes_are_anchored_for_labels_only() {
    let Query::Log(q) = ok(r#"{app=~"check"} |~ "out""#) else {
        panic!()
    };
    assert!(!q.matchers[0].matches("checkout"));
    assert!(q.matchers[0].matches("check"));
    let Stage::Line { re: Some(re), .. } = &q.stages[0] else {
        panic!()
    };
    assert!(re.is_match("checkout"));
}

#[test]
fn deep_nesting_is_refused_not_overflowed() {
    let q = format!("{}vector(1){}", "(".repeat(10_000), ")".repeat(10_000));
    assert!(parse(&q).is_err());
    let q = format!(
        r#"{{a="b"}} | {}x="y"{}"#,
        "(".repeat(10_000),
        ")".repeat(10_000)
    );
    assert!(parse(&q).is_err());
}

/// Found while writing the `logql_parse` fuzz target: chains like
/// `1+1+…` or `x="y" and x="y" and …` parse in a loop but build a
/// left-deep tree, which overflowed the stack when dropped or walked.
#[test]
fn long_operator_chains_are_refused_not_overflowed() {
    for q in [
        include_str!("../../../tests/regressions/long-binary-chain.logql"),
        include_str!("../../../tests/regressions/long-label-filter-chain.logql"),
    ] {
        // A small stack, so that the old thousands-deep tree overflows here
        // and not only on the searcher's worker threads.
        let refused = std::thread::Builder::new()
            .stack_size(256 * 1024)
            .spawn(move || parse(q).is_err())
            .unwrap()
            .join()
            .unwrap();
        assert!(refused, "{}...", &q[..40]);
    }
    // Chains of reasonable length still parse.
    ok(&format!("{}1", "1+".repeat(100)));
    ok(&format!(
        r#"{{a="b"}} | {}x="y""#,
        r#"x="y" or "#.repeat(100)
    ));
}

proptest! {
    #[test]
    fn no_input_panics(s in "\\PC{0,80}") {
        let _ = parse(&s);
    }

    #[test]
    fn no_near_miss_panics(s in r#"[{}()\[\]|=!~"`a-z0-9 ,.<>+*/-]{0,60}"#) {
        let _ = parse(&s);
    }
}

#[test]
fn comments_and_new_lines_are_whitespace() {
    let one = format!(
        "{:?}",
        ok(r#"sum by (level) (count_over_time({app="a"} |= "x" [5m]))"#)
    );
    let many = format!(
        "{:?}",
        ok("# errors per level\nsum by (level) (  # grouped\n  count_over_time(\n    {app=\"a\"}  # the app\n    |= \"x\" [5m]\n  )\n)\n# done")
    );
    assert_eq!(one, many);
    // A `#` inside a string is not a comment.
    let Query::Log(q) = ok(r##"{app="a"} |= "#42" # not this"##) else {
        panic!()
    };
    assert!(matches!(&q.stages[..], [Stage::Line { needle, .. }] if needle == "#42"));
    // An error after a comment still points at its line and column.
    let e = parse("# c\n{app=\"a\"} |= error").unwrap_err();
    assert_eq!((e.line, e.col), (2, 14), "{e}");
}

#[test]
fn or_in_line_filters_reads_as_loki_does() {
    // A positive chain: one regex, literals escaped.
    let Query::Log(q) = ok(r#"{app="a"} |= "a.b" or `c|d` or "e""#) else {
        panic!()
    };
    let [Stage::Line {
        op: LineOp::Re,
        re: Some(re),
        ..
    }] = &q.stages[..]
    else {
        panic!("{:?}", q.stages)
    };
    assert!(re.is_match("x a.b y") && re.is_match("c|d") && re.is_match("e"));
    assert!(!re.is_match("axb") && !re.is_match("c") && !re.is_match("d"));
    // A negative chain: one filter each.
    let Query::Log(q) = ok(r#"{app="a"} != "a" or "b" |~ "x" or "y+" !~ "p" or "q""#) else {
        panic!()
    };
    let ops: Vec<LineOp> = q
        .stages
        .iter()
        .map(|s| match s {
            Stage::Line { op, .. } => *op,
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(
        ops,
        [
            LineOp::NotContains,
            LineOp::NotContains,
            LineOp::Re,
            LineOp::NotRe,
            LineOp::NotRe
        ]
    );
    // A bad regex alternative is named where it is.
    let e = parse(r#"{app="a"} |~ "x" or "(""#).unwrap_err();
    assert_eq!((e.line, e.col), (1, 21), "{e}");
    assert!(parse(r#"{app="a"} |= "x" or"#).is_err());
}

#[test]
fn duration_and_byte_size_label_filters() {
    let Query::Log(q) = ok(r#"{app="a"} | logfmt | latency >= 250ms and size > 1.5KiB or n < 3"#)
    else {
        panic!()
    };
    let Stage::Labels(e) = &q.stages[1] else {
        panic!("{:?}", q.stages)
    };
    let text = format!("{e:?}");
    assert!(text.contains("value: 0.25, unit: Duration"), "{text}");
    assert!(text.contains("value: 1536.0, unit: Bytes"), "{text}");
    assert!(text.contains("value: 3.0, unit: Number"), "{text}");
    let e = parse(r#"{app="a"} | size > 20parsecs"#).unwrap_err();
    assert!(e.message.contains("bad number or duration"), "{e}");
    let e = parse(r#"{app="a"} | size =~ 20MB"#).unwrap_err();
    assert!(e.message.contains("quoted regex"), "{e}");
}

#[test]
fn unwrap_and_the_range_functions_over_values() {
    for q in [
        r#"sum_over_time({app="a"} | json | unwrap latency_ms [5m])"#,
        r#"quantile_over_time(0.99, {app="a"} | logfmt | unwrap duration(took) | __error__="" [5m]) by (route)"#,
        r#"avg_over_time({app="a"} | unwrap bytes(size) [1m]) without (pod)"#,
        r#"max_over_time({app="a"} | unwrap duration_seconds(t) [1m])"#,
        r#"rate({app="a"} | unwrap n [1m])"#,
        r#"sum by (x) (stddev_over_time({app="a"} | json | unwrap n [1m]))"#,
        r#"stddev by (app) (rate({app="a"}[1m]))"#,
        r#"stdvar(rate({app="a"}[1m]))"#,
        r#"bottomk(2, sum by (app) (rate({app="a"}[1m])))"#,
        r#"sort_desc(sum by (app) (rate({app="a"} | unpack [1m])))"#,
    ] {
        let Query::Metric(m) = ok(q) else {
            panic!("{q}")
        };
        assert!(m.log_query().is_some(), "{q}");
    }
    let Query::Metric(MetricExpr::Unwrapped {
        func,
        unwrap,
        grouping,
        ..
    }) = ok(r#"quantile_over_time(0.9, {app="a"} | unwrap duration(took) [5m]) by (route)"#)
    else {
        panic!()
    };
    assert_eq!(func, UnwrapFn::Quantile(0.9));
    assert_eq!(
        (
            unwrap.label.as_str(),
            unwrap.unit,
            unwrap.post_filters.len()
        ),
        ("took", Unit::Duration, 0)
    );
    // Label filters after unwrap run on the sample, not in the pipeline.
    let Query::Metric(MetricExpr::Unwrapped { query, unwrap, .. }) =
        ok(r#"sum_over_time({app="a"} | logfmt | unwrap n | __error__="" [5m])"#)
    else {
        panic!()
    };
    assert_eq!(query.stages.len(), 1, "{query:?}");
    assert_eq!(unwrap.post_filters.len(), 1);
    assert_eq!(grouping.unwrap().labels, ["route"]);
    // `rate` without unwrap still counts lines.
    assert!(matches!(
        ok(r#"rate({app="a"}[1m])"#),
        Query::Metric(MetricExpr::Range {
            func: RangeFn::Rate,
            ..
        })
    ));
    refused(&[
        (r#"sum_over_time({app="a"}[5m])"#, "add | unwrap"),
        (
            r#"count_over_time({app="a"} | unwrap n [5m])"#,
            "takes no unwrap",
        ),
        (
            r#"count_over_time({app="a"}[5m]) by (x)"#,
            "takes no by/without",
        ),
        (r#"{app="a"} | unwrap n"#, "range function"),
        (
            r#"sum_over_time({app="a"} | unwrap n | json [5m])"#,
            "only label filters may follow unwrap",
        ),
        (
            r#"sum_over_time({app="a"} | unwrap n |= "x" [5m])"#,
            "only label filters may follow unwrap",
        ),
        (
            r#"quantile_over_time({app="a"} | unwrap n [5m])"#,
            "the quantile",
        ),
        (
            r#"rate_counter({app="a"} [5m])"#,
            "rate_counter takes the values of a label",
        ),
        // Loki's own test: only functions that keep one value or a
        // statistic group; a sum would be a different query.
        (
            r#"sum_over_time({namespace="tns"} |= "level=error" | json |foo>=5,bar<25ms| unwrap latency [5m]) by (foo)"#,
            "grouping not allowed for sum_over_time aggregation",
        ),
        (
            r#"rate({app="a"} | unwrap n [5m]) without (x)"#,
            "grouping not allowed for rate aggregation",
        ),
        (
            r#"rate_counter({app="a"} | unwrap n [5m]) by (x)"#,
            "grouping not allowed for rate_counter aggregation",
        ),
        (
            r#"absent_over_time({app="a"} | unwrap n [5m]) by (x)"#,
            "grouping not allowed for absent_over_time aggregation",
        ),
    ]);
    for f in ["avg", "min", "max", "stddev", "stdvar", "first", "last"] {
        ok(&format!(
            r#"{f}_over_time({{app="a"}} | unwrap n [5m]) by (x)"#
        ));
    }
}

#[test]
fn regexp_needs_a_valid_expression_with_a_named_capture() {
    ok(r#"{app="a"} | regexp "(?P<method>\\w+) (?P<path>\\S+)" | method="GET""#);
    let e = parse(r#"{app="a"} | regexp "(\\w+)""#).unwrap_err();
    assert!(e.message.contains("named capture"), "{e}");
    assert_eq!((e.line, e.col), (1, 20), "{e}");
    let e = parse(r#"{app="a"} | regexp "(?P<x>[""#).unwrap_err();
    assert!(e.message.contains("invalid regex"), "{e}");
    // Loki refuses a capture whose name is no label name (`1st` the regex
    // engine already refuses).
    assert!(parse(r#"{app="a"} | regexp "(?P<1st>\\w+)""#).is_err());
    for bad in ["a.b", "a[0]"] {
        let e = parse(&format!(r#"{{app="a"}} | regexp "(?P<{bad}>\\w+)""#)).unwrap_err();
        assert!(
            e.message
                .contains(&format!("invalid extracted label name '{bad}'")),
            "{e}"
        );
    }
}

#[test]
fn offset_follows_the_range() {
    for (q, want) in [
        (
            r#"count_over_time({app="a"}[5m] offset 1h)"#,
            3_600_000_000_000i64,
        ),
        (r#"rate({app="a"}[5m] offset -5m)"#, -300_000_000_000),
        (r#"rate({app="a"}[5m])"#, 0),
    ] {
        let Query::Metric(MetricExpr::Range { offset_ns, .. }) = ok(q) else {
            panic!("{q}")
        };
        assert_eq!(offset_ns, want, "{q}");
    }
    let Query::Metric(MetricExpr::Unwrapped { offset_ns, .. }) =
        ok(r#"sum_over_time({app="a"} | unwrap n [5m] offset 2m)"#)
    else {
        panic!()
    };
    assert_eq!(offset_ns, 120_000_000_000);
    assert!(parse(r#"rate({app="a"}[5m] offset)"#).is_err());
}

#[test]
fn binary_operators_between_vectors_with_promql_precedence() {
    for q in [
        r#"sum(rate({app="a"} |= "error" [5m])) / sum(rate({app="a"}[5m])) > 0.05"#,
        r#"sum by (app) (rate({app="a"}[5m])) / on(app) group_left(team) sum by (app, team) (rate({app="b"}[5m]))"#,
        r#"rate({app="a"}[5m]) > bool 1"#,
        r#"rate({app="a"}[5m]) and rate({app="b"}[5m]) or rate({app="c"}[5m]) unless ignoring(pod) rate({app="d"}[5m])"#,
        r#"count_over_time({app="a"}[5m]) % 7 ^ 2"#,
    ] {
        ok(q);
    }
    // 1 + 2 * 3 is 1 + (2 * 3); 2 ^ 3 ^ 2 is 2 ^ (3 ^ 2); a or b and c is a or (b and c).
    let shape = |q: &str| format!("{:?}", ok(q));
    assert!(shape("vector(1) + vector(2) * vector(3)").starts_with("Metric(Binary { op: Add"));
    // Signed literals, as Loki's grammar allows: `- -1` is minus minus one.
    assert!(
        shape("vector(1) - -1").contains("rhs: Const(-1.0)"),
        "{}",
        shape("vector(1) - -1")
    );
    assert!(shape("2 * +3").contains("rhs: Const(3.0)"));
    let Query::Metric(MetricExpr::Binary { op, rhs, .. }) = ok("vector(2) ^ vector(3) ^ vector(2)")
    else {
        panic!()
    };
    assert_eq!(op, BinOp::Pow);
    assert!(matches!(*rhs, MetricExpr::Binary { op: BinOp::Pow, .. }));
    let Query::Metric(MetricExpr::Binary { op, .. }) =
        ok(r#"rate({app="a"}[1m]) or rate({app="b"}[1m]) and rate({app="c"}[1m])"#)
    else {
        panic!()
    };
    assert_eq!(op, BinOp::Or);
    refused(&[
        (r#"rate({app="a"}[1m]) and 1"#, "vector on both sides"),
        (
            r#"rate({app="a"}[1m]) + bool rate({app="b"}[1m])"#,
            "comparison operators",
        ),
        (r#"rate({app="a"}[1m]) + on(x) 1"#, "vector on both sides"),
        (
            r#"rate({app="a"}[1m]) and on(x) group_left rate({app="b"}[1m])"#,
            "no grouping",
        ),
    ]);
}

#[test]
fn label_replace_and_absent_over_time() {
    ok(r#"label_replace(rate({app="a"}[1m]), "svc", "$1", "pod", "(.*)-[a-z0-9]+")"#);
    ok(r#"absent_over_time({app="a"} |= "x" [5m])"#);
    refused(&[
        (
            r#"label_replace(rate({app="a"}[1m]), "1x", "b", "c", "d")"#,
            "invalid destination label",
        ),
        (
            r#"label_replace(rate({app="a"}[1m]), "a", "b", "c", "(")"#,
            "invalid regex",
        ),
        (
            r#"label_replace(rate({app="a"}[1m]), "a", "b", "c")"#,
            "expecting \",\"",
        ),
    ]);
}

#[test]
fn parser_parameters_and_flags() {
    let Query::Log(q) = ok(
        r#"{app="a"} | json h="servers[0].host", ua="headers[\"User-Agent\"]", status | logfmt --strict --keep-empty a, b="c""#,
    ) else {
        panic!()
    };
    let [Stage::JsonFields(fields), Stage::Logfmt(p)] = &q.stages[..] else {
        panic!("{:?}", q.stages)
    };
    use JsonPath::{Index, Key};
    assert_eq!(
        fields,
        &vec![
            (
                "h".to_owned(),
                vec![Key("servers".into()), Index(0), Key("host".into())]
            ),
            (
                "ua".to_owned(),
                vec![Key("headers".into()), Key("User-Agent".into())]
            ),
            ("status".to_owned(), vec![Key("status".into())]),
        ]
    );
    assert!(p.strict && p.keep_empty);
    assert_eq!(
        p.fields,
        [
            ("a".to_owned(), "a".to_owned()),
            ("b".to_owned(), "c".to_owned())
        ]
    );
    refused(&[
        (r#"{app="a"} | json x="a..b""#, "invalid JSON expression"),
        (r#"{app="a"} | json x="a[z]""#, "invalid JSON expression"),
        (r#"{app="a"} | logfmt --loose"#, "--strict and --keep-empty"),
    ]);
}

#[test]
fn pattern_parser_and_pattern_line_filters() {
    let Query::Log(q) = ok(
        r#"{app="a"} |> "<_> error <_>" !> "<_> retry <_>" | pattern "<ip> <_> <status>" | status >= 500"#,
    ) else {
        panic!()
    };
    assert!(matches!(
        &q.stages[..],
        [
            Stage::PatternFilter { keep: true, .. },
            Stage::PatternFilter { keep: false, .. },
            Stage::Pattern(_),
            Stage::Labels(_)
        ]
    ));
    refused(&[
        (r#"{app="a"} | pattern "<_><x>""#, "consecutive"),
        (r#"{app="a"} | pattern "<_> x""#, "named capture"),
    ]);
}

#[test]
fn label_format_pairs() {
    let Query::Log(q) = ok(r#"{app="a"} | label_format dst=src, t="{{.a}}-{{.b}}""#) else {
        panic!()
    };
    let [Stage::LabelFormat(pairs)] = &q.stages[..] else {
        panic!("{:?}", q.stages)
    };
    assert_eq!(
        pairs,
        &vec![
            ("dst".to_owned(), LabelSource::Rename("src".into())),
            (
                "t".to_owned(),
                LabelSource::Template(
                    crate::logql::template::Template::parse("{{.a}}-{{.b}}").unwrap()
                )
            ),
        ]
    );
    let e = parse(r#"{app="a"} | label_format a=b, a=c"#).unwrap_err();
    assert!(e.message.contains("twice"), "{e}");
}

/// What is not supported is refused by name, never answered wrongly.
#[test]
fn unsupported_constructs_are_named() {
    refused(&[
        (
            r#"{app="a"} | logfmt | addr > ip("10.0.0.1")"#,
            "take = or !=",
        ),
        (r#"{app="a"} |= ip("10.0.0.0/99")"#, "invalid ip() pattern"),
        (
            r#"{app="a"} | line_format "{{ NoSuch .msg }}""#,
            "invalid template: ",
        ),
        (
            r#"{app="a"} | line_format "{{if .x}}y""#,
            "invalid template: ",
        ),
        (
            r#"{app="a"} | label_format x="{{ .a | nosuch }}""#,
            "invalid template: ",
        ),
        (r#"{app="a"} | line_format "{{.msg""#, "invalid template: "),
        (r#"{app="a"} | xml"#, "the xml parser is not supported"),
        (
            r#"{app="a"} | xml | level="x""#,
            "the xml parser is not supported",
        ),
        (
            r#"variants(count_over_time({app="a"}[1m]), bytes_over_time({app="a"}[1m])) of ({app="a"}[1m])"#,
            "variants(…) of (…) is not supported",
        ),
    ]);
    // A label named xml is still a label.
    ok(r#"{app="a"} | logfmt | xml="yes""#);
    ok(r#"{app="a"} |= ip("10.0.0.0/8") | logfmt | addr != ip("::1")"#);
    // Plain fills, with Go's whitespace trimming, and Loki's functions parse.
    ok(r#"{app="a"} | line_format "{{.level}} {{- .msg -}} {{ .pod }}""#);
    ok(
        r#"{app="a"} | line_format "{{ if eq .level \"error\" }}{{ .msg | ToUpper }}{{ else }}{{ __line__ }}{{ end }}""#,
    );
    ok(
        r#"{app="a"} | label_format x="{{ .a | lower | trunc 3 }}", t=`{{ __timestamp__ | date "15:04" }}`"#,
    );
}

/// Forms Loki's own parser tests accept, which read as their plainer
/// equivalents here.
#[test]
fn lokis_other_spellings_read_as_the_plain_ones() {
    let same = |a: &str, b: &str| {
        assert_eq!(format!("{:?}", ok(a)), format!("{:?}", ok(b)), "{a} vs {b}");
    };
    // The range before the pipeline, or around a parenthesised query.
    same(
        r#"count_over_time({a="b"}[5m] |= "x" | json)"#,
        r#"count_over_time({a="b"} |= "x" | json [5m])"#,
    );
    same(
        r#"count_over_time(({a="b"} |= "x")[5m])"#,
        r#"count_over_time({a="b"} |= "x" [5m])"#,
    );
    // Case-insensitive function names and grouping keywords.
    same(
        r#"SUM BY (a) (Count_Over_Time({a="b"}[5m]))"#,
        r#"sum by (a) (count_over_time({a="b"}[5m]))"#,
    );
    // Filters side by side mean `and`; signed numbers; Go durations.
    same(r#"{a="b"} | x="1" y!="2""#, r#"{a="b"} | x="1" and y!="2""#);
    same(r#"{a="b"} | n > -1"#, r#"{a="b"} | n > -1.0"#);
    same(r#"{a="b"} | d > 1h0.5m"#, r#"{a="b"} | d > 3630s"#);
    // `|~ ip(…)` is `|= ip(…)`.
    same(
        r#"{a="b"} |~ ip("10.0.0.0/8")"#,
        r#"{a="b"} |= ip("10.0.0.0/8")"#,
    );
    // `vector()` is a vector: set operators and aggregations take it.
    for q in [
        r#"sum(count_over_time({a="b"}[5m])) or vector(0)"#,
        "sum(vector(0))",
        r#"label_replace(vector(1), "a", "b", "c", "d")"#,
        "vector(1) > vector(2)",
        "1 > 2",
        r#"{a="b"} | drop x, y="v", z=~"w.*" | keep a, b!="c""#,
        r#"{a="b"} |= ip("10.0.0.1") or "x" != ip("::1") or "y""#,
        r#"{a="b"} |> "<_> a" or "literal" !> """#,
    ] {
        ok(q);
    }
    // `1 > 2` folds to 0 as with `bool`.
    same("1 > 2", "1 > bool 2");
}
