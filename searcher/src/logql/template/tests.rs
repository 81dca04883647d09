use super::*;

/// 2023-11-14 22:13:20.123456789 UTC, a Tuesday.
const TS: i64 = 1_700_000_000_123_456_789;

fn try_render(tmpl: &str, labels: &[(&str, &str)]) -> Result<String, String> {
    Template::parse(tmpl)?.render(labels, "the log line", TS)
}

#[track_caller]
fn render(tmpl: &str, labels: &[(&str, &str)]) -> String {
    match try_render(tmpl, labels) {
        Ok(s) => s,
        Err(e) => panic!("{tmpl:?} failed: {e}"),
    }
}

#[track_caller]
fn check(tmpl: &str, want: &str) {
    assert_eq!(render(tmpl, &[]), want, "template {tmpl:?}");
}

#[track_caller]
fn render_err(tmpl: &str, labels: &[(&str, &str)]) -> String {
    let t = Template::parse(tmpl).unwrap_or_else(|e| panic!("{tmpl:?} did not parse: {e}"));
    match t.render(labels, "the log line", TS) {
        Ok(s) => panic!("{tmpl:?} rendered {s:?}, expected an error"),
        Err(e) => e,
    }
}

#[track_caller]
fn parse_err(tmpl: &str) -> String {
    match Template::parse(tmpl) {
        Ok(_) => panic!("{tmpl:?} parsed, expected an error"),
        Err(e) => e,
    }
}

const FB: &[(&str, &str)] = &[("foo", "blip"), ("bar", "blop")];

#[test]
fn plain_text_and_labels() {
    check("", "");
    check("just text, no actions", "just text, no actions");
    assert_eq!(render("{{.foo}}", FB), "blip");
    assert_eq!(render("foo{{.foo}}buzz{{  .bar  }}", FB), "fooblipbuzzblop");
    assert_eq!(render("{{ .foo }} and {{ $.bar }}", FB), "blip and blop");
    // Later entries win on duplicate names.
    assert_eq!(render("{{ .a }}", &[("a", "1"), ("a", "2")]), "2");
}

#[test]
fn missing_labels_render_empty() {
    assert_eq!(
        render("foo {{.foo}}buzz{{  .bar  }}", &[("bar", "blop")]),
        "foo buzzblop"
    );
    assert_eq!(render("{{.missing}}", FB), "");
    assert_eq!(render("[{{ $.missing }}]", FB), "[]");
    assert_eq!(
        render("{{ with .missing }}x{{ else }}none{{ end }}", FB),
        "none"
    );
    assert_eq!(
        render("{{ if .missing }}yes{{ else }}no{{ end }}", FB),
        "no"
    );
    assert_eq!(
        render("{{ if .a }}yes{{ else }}no{{ end }}", &[("a", "")]),
        "no"
    );
    assert_eq!(
        render("{{ .missing | upper }}|{{ len .missing }}", FB),
        "|0"
    );
}

#[test]
fn trim_markers_and_comments() {
    assert_eq!(render("x  {{- .foo -}}  y", FB), "xblipy");
    assert_eq!(render("x \n\t{{- .foo }} y", FB), "xblip y");
    assert_eq!(render("x {{ .foo -}} \n y", FB), "x blipy");
    check("a {{- /* a comment */ -}} b", "ab");
    check("a {{/* a\nmulti-line comment */}} b", "a  b");
    // "{{-3}}" is the number -3, not a trim marker.
    check("a {{-3}} b", "a -3 b");
    check("a {{ 3 -}}\n\n b", "a 3b");
    // Go accepts any ASCII space after the marker, and newlines inside actions.
    assert_eq!(render("x {{-\t.foo\t-}} y", FB), "xblipy");
    assert_eq!(render("{{ .foo\n  | upper }}", FB), "BLIP");
}

#[test]
fn conditionals() {
    let t = "{{ if eq .a \"1\" }}one{{ else if eq .a \"2\" }}two{{ else }}other{{ end }}";
    assert_eq!(render(t, &[("a", "1")]), "one");
    assert_eq!(render(t, &[("a", "2")]), "two");
    assert_eq!(render(t, &[("a", "3")]), "other");
    assert_eq!(render(t, &[]), "other");
    assert_eq!(render("{{ with .foo }}<{{ . }}>{{ end }}", FB), "<blip>");
    assert_eq!(render("{{ with $x := .foo }}{{ $x }}{{ end }}", FB), "blip");
    // From Loki's docs.
    check(
        r#"{{ if and (contains "he" "hello") (contains "llo" "hello") }} yes {{end}}"#,
        " yes ",
    );
    check(
        r#"{{ if or (contains "he" "hello") (contains "xyz" "hello") }} yes {{end}}"#,
        " yes ",
    );
    let doc = r#"{{ if contains .err "ErrTimeout" }} timeout {{else if contains "he" "hello"}} yes {{else}} no {{end}}"#;
    assert_eq!(render(doc, &[("err", "xx")]), " yes ");
    assert_eq!(render(doc, &[("err", "Err")]), " timeout ");
    assert_eq!(
        render(
            r#"{{ if eq "ErrTimeout" .err }} timeout {{end}}"#,
            &[("err", "ErrTimeout")]
        ),
        " timeout "
    );
    check(r#"{{ if eq "hello" "hello" }} yes {{end}}"#, " yes ");
    // Sprig order: this asks whether "Timeout" ends with .err.
    assert_eq!(
        render(
            r#"{{ if hasSuffix .err "Timeout" }} timeout {{end}}"#,
            &[("err", "ErrTimeout")]
        ),
        ""
    );
    assert_eq!(
        render(
            r#"{{ if hasSuffix .err "Timeout" }} timeout {{end}}"#,
            &[("err", "out")]
        ),
        " timeout "
    );
    check(r#"{{ if hasPrefix "he" "hello" }} yes {{end}}"#, " yes ");
}

#[test]
fn index_len_and_slice() {
    check(
        r#"{{ index (fromJson "[10,20]") 1 }} {{ index "abc" 1 }} {{ index (fromJson "{\"a\":{\"b\":\"x\"}}") "a" "b" }}"#,
        "20 98 x",
    );
    check(
        r#"{{ slice "hello" 1 3 }} {{ slice (fromJson "[1,2,3]") 1 }} {{ slice "hello" }}"#,
        "el [2 3] hello",
    );
    check(
        r#"{{ len "héllo" }} {{ len (fromJson "[1,2]") }} {{ len (fromJson "{\"a\":1}") }}"#,
        "6 2 1",
    );
    assert_eq!(render(r#"{{ index . "foo" }}"#, FB), "blip");
    assert!(render_err(r#"{{ slice "abc" 2 1 }}"#, &[]).contains("invalid slice index: 2 > 1"));
    assert!(render_err("{{ len 3 }}", &[]).contains("len of type int"));
}

#[test]
fn comparisons_and_logic() {
    assert_eq!(
        render(
            r#"{{ eq .foo "blip" }} {{ ne .foo "blip" }} {{ eq .foo "x" "y" "blip" }}"#,
            FB
        ),
        "true false true"
    );
    check(
        r#"{{ lt 1 2 }} {{ le 2 2 }} {{ gt "b" "a" }} {{ ge 1.5 2.5 }} {{ eq 3 3 }}"#,
        "true true true false true",
    );
    // and/or return one of their operands, like Go's.
    check(
        r#"{{ and 1 "x" }}|{{ and 0 "x" }}|{{ or "" "y" }}|{{ or "" 0 }}|{{ not "" }}"#,
        "x|0|y|0|true",
    );
    // Strings and numbers do not compare, as in Go.
    let e = render_err(r#"{{ eq .status 200 }}"#, &[("status", "200")]);
    assert!(e.contains("incompatible types for comparison"), "{e}");
    assert!(render_err("{{ lt true false }}", &[]).contains("invalid type for comparison"));
}

#[test]
fn variables_and_range() {
    assert_eq!(
        render("{{ $x := .foo }}{{ $x }}-{{ $.bar }}", FB),
        "blip-blop"
    );
    // Ranging over a map visits keys in order, like Go.
    assert_eq!(
        render("{{ range . }}{{ . }},{{ end }}", &[("b", "2"), ("a", "1")]),
        "1,2,"
    );
    let q = [("queries", r#"[{"query":"sum(x)"},{"query":"rate(y)"}]"#)];
    assert_eq!(
        render(
            "{{ range $q := fromJson .queries }} {{ $q.query }} {{ end }}",
            &q
        ),
        " sum(x)  rate(y) "
    );
    assert_eq!(
        render(
            "{{ range $i, $q := fromJson .queries }}{{ $i }}:{{ .query }};{{ end }}",
            &q
        ),
        "0:sum(x);1:rate(y);"
    );
    assert_eq!(
        render(
            "{{ range fromJson .a }}x{{ else }}empty{{ end }}",
            &[("a", "[]")]
        ),
        "empty"
    );
    // Go 1.22 ranges over integers; nil ranges over nothing; floats are an error.
    check(
        "{{ range 3 }}{{ . }}{{ end }}|{{ range fromJson \"null\" }}x{{ else }}none{{ end }}",
        "012|none",
    );
    assert!(render_err("{{ range 1.5 }}x{{ end }}", &[]).contains("range can't iterate over 1.5"));
}

#[test]
fn pipelines_pass_the_value_last() {
    assert_eq!(
        render(
            r#"{{ .path | replace " " "_" | trunc 5 | upper }}"#,
            &[("path", "a b c d e")]
        ),
        "A_B_C"
    );
    assert_eq!(render("{{ add .a 1 }}", &[("a", "2")]), "3");
    // Loki's "mathint" example: ((1+1) - 3 → 3-2=1) * 10 → 20 / 10.
    let l = [("foo", "1"), ("bar", "3"), ("baz", "10"), ("bazz", "20")];
    assert_eq!(
        render("{{ add .foo 1 | sub .bar | mul .baz | div .bazz}}", &l),
        "2"
    );
    assert!(render_err("{{.foo | now}}", FB).contains("wrong number of args for now: want 0 got 1"));
    assert!(render_err("{{.foo Replace \"foo\"}}", FB).contains("foo"));
}

#[test]
fn deprecated_go_string_functions() {
    check(
        r#"{{ToUpper "This is a string" | ToLower}}"#,
        "this is a string",
    );
    assert_eq!(
        render(
            "{{.request_method | ToUpper}}",
            &[("request_method", "get")]
        ),
        "GET"
    );
    assert_eq!(
        render(r#"foo{{.foo}}buzz{{ Replace .bar "blop" "bar" -1 }}"#, FB),
        "fooblipbuzzbar"
    );
    check(
        r#"{{ Replace "oink oink oink" "k" "ky" 2 }}|{{ Replace "oink oink oink" "oink" "moo" -1 }}"#,
        "oinky oinky oink|moo moo moo",
    );
    check(
        r#"{{ Trim "¡¡¡Hello, Gophers!!!" "!¡" }}"#,
        "Hello, Gophers",
    );
    check(
        r#"{{ TrimLeft "¡¡¡Hello, Gophers!!!" "!¡" }}"#,
        "Hello, Gophers!!!",
    );
    check(
        r#"{{ TrimRight "¡¡¡Hello, Gophers!!!" "!¡" }}"#,
        "¡¡¡Hello, Gophers",
    );
    check(
        r#"{{ TrimPrefix "¡¡¡Hello, Gophers!!!" "¡¡¡Hello, " }}"#,
        "Gophers!!!",
    );
    check(
        r#"{{ TrimSuffix "¡¡¡Hello, Gophers!!!" ", Gophers!!!" }}"#,
        "¡¡¡Hello",
    );
    check(
        "{{ TrimSpace \"\\t Hello, Gophers \\n\\t\\r\\n\" }}",
        "Hello, Gophers",
    );
}

#[test]
fn sprig_string_functions() {
    check(
        r#"{{ lower "HELLO" }} {{ upper "hello" }} {{ title "hello world" }}"#,
        "hello HELLO Hello World",
    );
    assert_eq!(render("{{.foo | title }}", FB), "Blip");
    check(
        r#"{{ trunc 5 "hello world" }}|{{ trunc -5 "hello world" }}|{{ trunc 20 "hi" }}"#,
        "hello|world|hi",
    );
    check(
        r#"{{ substr 0 5 "hello world" }}|{{ substr 6 11 "hello world" }}"#,
        "hello|world",
    );
    assert_eq!(
        render(
            "{{.foo | substr 1 3 }} {{ .bar | trunc 1 }} {{ .bar | trunc 3 }}",
            FB
        ),
        "li b blo"
    );
    check(r#"{{ "foo\n bar" | indent 4 }}"#, "    foo\n     bar");
    check(r#"{{ "foo" | nindent 2 }}"#, "\n  foo");
    check(
        r#"{{ replace "hello" "world" "hello world" }}"#,
        "world world",
    );
    assert_eq!(
        render(
            r#"{{ .cluster | replace "-cluster" "" }}"#,
            &[("cluster", "eu-cluster")]
        ),
        "eu"
    );
    check(r#"{{ repeat 3 "hello" }}"#, "hellohellohello");
    check(
        r#"{{ trim "   hello    " }}|{{ trimAll "$" "$5.00" }}|{{ trimPrefix "-" "-hello" }}|{{ trimSuffix "-" "hello-" }}"#,
        "hello|5.00|hello|hello",
    );
    let l = [("foo", "  blip "), ("bar", "blop")];
    assert_eq!(
        render(
            r#"{{.foo | trim }} {{ .bar | trimAll "op" }} {{ .bar | trimPrefix "b" }} {{ .bar | trimSuffix "p" }}"#,
            &l
        ),
        "blip bl lop blo"
    );
    check(
        r#"{{ contains "ll" "hello" }} {{ hasPrefix "he" "hello" }} {{ hasSuffix "lo" "hello" }} {{ contains "x" "hello" }}"#,
        "true true true false",
    );
    check(
        r#"{{ alignLeft 5 "hello world" }}|{{ alignLeft 5 "hi" }}|{{ alignRight 5 "hello world" }}|{{ alignRight 5 "hi" }}"#,
        "hello|hi   |world|   hi",
    );
    assert_eq!(
        render(
            "{{ alignLeft 4 .foo }} {{ alignRight 4 .foo }}",
            &[("foo", "hello")]
        ),
        "hell ello"
    );
    check(
        r#"{{ default "-" "" }} {{ default "-" "foo" }} {{ default "-" 0 }}"#,
        "- foo -",
    );
    let l = [("foo", "blip"), ("bar", "")];
    assert_eq!(
        render(
            r#"{{.foo | default "-" }}{{.bar | default "-"}}{{.unknown | default "-"}}"#,
            &l
        ),
        "blip--"
    );
}

#[test]
fn encodings() {
    let plain = "i'm a string, encode me!";
    let encoded = "aSdtIGEgc3RyaW5nLCBlbmNvZGUgbWUh";
    assert_eq!(render("{{ .foo | b64enc }}", &[("foo", plain)]), encoded);
    assert_eq!(render("{{ b64dec .foo }}", &[("foo", encoded)]), plain);
    // Sprig returns the decoding error as the result.
    check(r#"{{ b64dec "a" }}"#, "illegal base64 data at input byte 0");
    let url = r#"/loki/api/v1/query?query=sum(count_over_time({stream_filter="some_stream",environment="prod", host=~"someec2.*"}"#;
    let esc = "%2Floki%2Fapi%2Fv1%2Fquery%3Fquery%3Dsum%28count_over_time%28%7Bstream_filter%3D%22some_stream%22%2Cenvironment%3D%22prod%22%2C+host%3D~%22someec2.%2A%22%7D";
    assert_eq!(
        render(
            "{{.foo | urlencode }} {{ urlencode .foo }}",
            &[("foo", url)]
        ),
        format!("{esc} {esc}")
    );
    assert_eq!(render("{{.foo | urldecode }}", &[("foo", esc)]), url);
    assert!(render_err(r#"{{ urldecode "%zz" }}"#, &[]).contains(r#"invalid URL escape "%zz""#));
    check(
        r#"{{ html "<a href='x'>&</a>" }}|{{ urlquery "a b&c" }}|{{ js "it's <b>" }}"#,
        "&lt;a href=&#39;x&#39;&gt;&amp;&lt;/a&gt;|a+b%26c|it\\'s \\u003Cb\\u003E",
    );
}

#[test]
fn regular_expressions() {
    let l = [("foo", "BLIp")];
    assert_eq!(
        render(r#"{{ regexReplaceAll "(p)" .foo "t" }}"#, &l),
        "BLIt"
    );
    assert_eq!(
        render(r#"{{ regexReplaceAllLiteral "(p)" .foo "${1}" }}"#, &l),
        "BLI${1}"
    );
    assert_eq!(
        render(
            r#"{{ regexReplaceAll "(a*)bc" .some_label "${1}a" }}"#,
            &[("some_label", "aaabc")]
        ),
        "aaaa"
    );
    // Go's Expand: $1x names group "1x" (empty here); ${1}x is group 1 then x.
    check(
        r#"{{ regexReplaceAll "(b)" "abc" "$1x" }}|{{ regexReplaceAll "(b)" "abc" "${1}x" }}|{{ regexReplaceAll "(?P<l>b)" "abc" "<$l>" }}"#,
        "ac|abxc|a<b>c",
    );
    assert_eq!(
        render(
            r#"{{ regexReplaceAllLiteral "(ts=)" .timestamp "timestamp=" }}"#,
            &[("timestamp", "ts=1")]
        ),
        "timestamp=1"
    );
    // Raw strings keep backslashes; \d and \w are ASCII-only as in Go.
    assert_eq!(
        render(r#"{{ regexReplaceAll `\d+` .x "N" }}"#, &[("x", "a12b3٣")]),
        "aNbN٣"
    );
    check(
        r#"{{ count "a|b" "abab" }} {{ count "o" "foo" }} {{ count "notmatching.*" "x" }}"#,
        "4 2 0",
    );
    assert_eq!(
        render(r#"{{.foo | count "a|b|c" }}"#, &[("foo", "abc abc abc")]),
        "9"
    );
    assert_eq!(render(r#"{{ __line__ | count "log" }}"#, &[]), "1");
    let e = render_err(r#"{{ regexReplaceAll "a|b|\\q" "input" "r" }}"#, &[]);
    assert!(
        e.starts_with("error calling regexReplaceAll: error parsing regexp"),
        "{e}"
    );
    assert!(render_err(r#"{{ count "(" "x" }}"#, &[]).starts_with("error calling count"));
    assert!(
        render_err(r#"{{ regexReplaceAllLiteral "[" "x" "y" }}"#, &[]).starts_with("error calling")
    );
    check(
        r#"{{ regexReplaceAll `\Qa.b\E` "a.b axb" "_" }}|{{ regexReplaceAll `[]a]` "]a-" "_" }}"#,
        "_ axb|__-",
    );
}

#[test]
fn integer_math() {
    check(
        "{{ add 3 2 5 }} {{ sub 5 2 }} {{ mul 5 2 3 }} {{ div 10 2 }} {{ mod 10 3 }}",
        "10 3 30 5 1",
    );
    check(
        "{{ max 1 2 3 }} {{ min 1 2 3 }} {{ div 7 -2 }} {{ mod -7 2 }}",
        "3 1 -3 -1",
    );
    let l = [("foo", "5"), ("bar", "10"), ("baz", "15")];
    assert_eq!(
        render(
            "min is {{ min .foo .bar .baz }} and max is {{ max .foo .bar .baz }}",
            &l
        ),
        "min is 5 and max is 15"
    );
    assert_eq!(render("{{div .status 100 }}", &[("status", "200")]), "2");
    assert_eq!(
        render("mod is {{ mod .foo 3 }}", &[("foo", "20")]),
        "mod is 2"
    );
    // Strings convert like spf13/cast: base prefixes, "x.0", garbage is 0.
    check(
        r#"{{ "3" | int }} {{ add "0x10" "010" "1_000" }} {{ add "12.0" 1 }} {{ add "abc" 1 }} {{ int 3.9 }}"#,
        "3 1024 13 1 3",
    );
    check("{{ div 9223372036854775807 -1 }}", "-9223372036854775807");
    assert_eq!(
        render_err("{{ div 1 0 }}", &[]),
        "error calling div: runtime error: integer divide by zero"
    );
    assert!(render_err("{{ mod 1 .zero }}", &[("zero", "0")]).contains("integer divide by zero"));
}

#[test]
fn float_math() {
    check(
        r#"{{ "3.5" | float64 }} {{ addf 3.5 2 5 }} {{ subf 5.5 2 1.5 }} {{ mulf 5.5 2 2.5 }} {{ divf 10 2 4 }}"#,
        "3.5 10.5 2 27.5 1.25",
    );
    check(
        "{{ maxf 1 2.5 3 }} {{ minf 1 2.5 3 }} {{ ceil 123.001 }} {{ floor 123.9999 }}",
        "3 1 124 123",
    );
    check(
        "{{ round 123.555555 3 }} {{ round 123.88571428571 5 .2 }} {{ round 123.88571428571 5 }}",
        "123.556 123.88572 123.88571",
    );
    // Decimal arithmetic, as Sprig's shopspring/decimal gives.
    check(
        "{{ addf 0.1 0.2 }} {{ mulf 0.1 3 }} {{ subf 0.3 0.1 }} {{ divf 1 3 }}",
        "0.3 0.3 0.2 0.3333333333333333",
    );
    let l = [
        ("foo", "1.5"),
        ("bar", "5"),
        ("baz", "10.5"),
        ("bazz", "20.2"),
    ];
    assert_eq!(
        render(
            "{{ addf .foo 1.5 | subf .bar 1.5 | mulf .baz | divf .bazz }}",
            &l
        ),
        "3.8476190476190477"
    );
    let l = [
        ("foo", "1.5"),
        ("bar", "3.5"),
        ("baz", "10.5"),
        ("bazz", "20.4"),
    ];
    assert_eq!(
        render(
            "{{ round (addf .foo 1.5 | subf .bar | mulf .baz | divf .bazz) 5 .2}}",
            &l
        ),
        "3.88572"
    );
    let l = [("foo", "5.3"), ("bar", "10.5"), ("baz", "15.2")];
    assert_eq!(
        render(
            "minf is {{ minf .foo .bar .baz }} and maxf is {{maxf .foo .bar .baz}}",
            &l
        ),
        "minf is 5.3 and maxf is 15.2"
    );
    assert_eq!(
        render(
            "ceil is {{ ceil .foo }} and floor is {{floor .foo }}",
            &[("foo", "5.3")]
        ),
        "ceil is 6 and floor is 5"
    );
    check(r#"{{ "2.5" | float64 | int | add 10}}"#, "12");
    // Go's %v for float64: shortest digits, exponent from 1e21 / below 1e-4.
    check(
        r#"{{ mulf 1e10 1e11 }} {{ float64 "100000" }} {{ float64 "1234567" }} {{ float64 "0.00001" }} {{ 2.0 }} {{ -1.5 }}"#,
        "1e+21 100000 1.234567e+06 1e-05 2 -1.5",
    );
    check(
        "{{ if floor 0.5 }}t{{ else }}f{{ end }} {{ if 0.5 }}t{{ end }}",
        "f t",
    );
    assert_eq!(
        render_err("{{ divf 1 0 }}", &[]),
        "error calling divf: decimal division by 0"
    );
}

#[test]
fn conversions() {
    assert_eq!(render("{{ .foo | bytes }}", &[("foo", "3 kB")]), "3000");
    assert_eq!(render("{{ .foo | bytes }}", &[("foo", "3MB")]), "3e+06");
    check(
        r#"{{ bytes "1 KiB" }} {{ bytes "1.5kib" }} {{ bytes "42" }}"#,
        "1024 1536 42",
    );
    assert!(render_err(r#"{{ bytes "3 parsecs" }}"#, &[]).contains("unhandled size name: parsecs"));
    assert_eq!(render("{{ .foo | duration }}", &[("foo", "3ms")]), "0.003");
    assert_eq!(
        render("{{ .foo | duration_seconds }}", &[("foo", "3m10s")]),
        "190"
    );
    check(
        r#"{{ duration "1h30m" }} {{ duration "-1.5s" }} {{ duration "0" }}"#,
        "5400 -1.5 0",
    );
    assert!(
        render_err(r#"{{ duration "5" }}"#, &[]).contains(r#"time: missing unit in duration "5""#)
    );
    assert!(render_err(r#"{{ duration "5d" }}"#, &[])
        .contains(r#"time: unknown unit "d" in duration "5d""#));
    check(r#"{{fromJson "{\"foo\": 55}"}}"#, "map[foo:55]");
    check(
        r#"{{ (fromJson "{\"a\": {\"b\": [1, \"x\", null, true]}}").a.b }}"#,
        "[1 x <nil> true]",
    );
    check(r#"{{ fromJson "not json" }}"#, "<no value>");
}

#[test]
fn line_and_timestamp() {
    assert_eq!(
        render("{{ __line__ }} bar {{ .bar }}", &[("bar", "2")]),
        "the log line bar 2"
    );
    check("{{ __line__ | upper }}", "THE LOG LINE");
    check(
        "{{ __timestamp__ }}",
        "2023-11-14 22:13:20.123456789 +0000 UTC",
    );
    check("{{ __timestamp__ | unixEpoch }} {{ unixEpochMillis __timestamp__ }} {{ unixEpochNanos __timestamp__ }}", "1700000000 1700000000123 1700000000123456789");
    let t = Template::parse(
        "{{ __timestamp__ | date \"2006-01-02\" }} {{ __timestamp__ | unixEpoch }}",
    )
    .unwrap();
    assert_eq!(
        t.render(&[], "", 1_656_353_124_120_000_000).unwrap(),
        "2022-06-27 1656353124"
    );
    assert_eq!(t.render(&[], "", 0).unwrap(), "1970-01-01 0");
    assert_eq!(t.render(&[], "", -1).unwrap(), "1969-12-31 -1");
}

#[test]
fn date_layouts() {
    let cases = [
        ("2006-01-02T15:04:05Z07:00", "2023-11-14T22:13:20Z"),
        (
            "2006-01-02T15:04:05.00Z-07:00",
            "2023-11-14T22:13:20.12Z+00:00",
        ),
        ("Mon Jan _2 15:04:05 2006", "Tue Nov 14 22:13:20 2023"),
        (
            "Monday, 02-Jan-06 15:04:05 MST",
            "Tuesday, 14-Nov-23 22:13:20 UTC",
        ),
        ("January 2, 2006 3:04PM", "November 14, 2023 10:13PM"),
        ("Jan _2 15:04:05.000", "Nov 14 22:13:20.123"),
        (
            "15:04:05.000000|15:04:05.999999999|05,000",
            "22:13:20.123456|22:13:20.123456789|20,123",
        ),
        ("1/2/06 3:4:5 pm", "11/14/23 10:13:20 pm"),
        (
            "002 __2 -0700 -07:00 -07 Z0700",
            "318 318 +0000 +00:00 +00 Z",
        ),
        ("no layout here", "no layout here"),
    ];
    for (layout, want) in cases {
        let t = format!("{{{{ date {} __timestamp__ }}}}", gtmpl_quote(layout));
        check(&t, want);
    }
    check(
        r#"{{ date "2006-01-02" (toDate "2006-01-02" "2021-11-02") }}"#,
        "2021-11-02",
    );
    check(r#"{{ date "2006" 0 }}"#, "1970");
    // Sprig's date treats anything but a time or an integer as "now".
    assert_eq!(
        render(r#"{{ date "2006" .x }}"#, &[("x", "1999")]),
        render(r#"{{ date "2006" now }}"#, &[])
    );
    check(
        r#"{{ toDate "2006-01-02" "2021-11-02" }}"#,
        "2021-11-02 00:00:00 +0000 UTC",
    );
    check(
        r#"{{ toDate "2006-01-02 15:04 -0700" "2021-11-02 10:30 +0200" }}"#,
        "2021-11-02 10:30:00 +0200 +0200",
    );
    check(
        r#"{{ toDate "2006-01-02 15:04 -0700" "2021-11-02 10:30 +0200" | date "15:04" }}"#,
        "08:30",
    );
    check(
        r#"{{ toDate "Jan 2 2006 3:04:05PM MST" "feb 29 2024 1:02:03AM PST" }}"#,
        "2024-02-29 01:02:03 +0000 PST",
    );
    // "PM" in a layout only matches upper-case AM/PM.
    check(r#"{{ toDate "3PM" "3pm" | unixEpoch }}"#, "-62135596800");
    check(
        r#"{{ toDate "2006-01-02 15:04:05" "2021-11-02 10:30:00.25" }}"#,
        "2021-11-02 10:30:00.25 +0000 UTC",
    );
    // Unparsable input gives Go's zero time.
    check(
        r#"{{ toDate "2006-01-02" "2021-02-30" }}"#,
        "0001-01-01 00:00:00 +0000 UTC",
    );
    check(
        r#"{{ toDate "2006-01-02" "nope" | unixEpoch }}"#,
        "-62135596800",
    );
    check(
        r#"{{ sub (unixEpoch (toDate "2006-01-02" "2021-11-02")) (unixEpoch (toDate "2006-01-02" "2021-11-01")) }}"#,
        "86400",
    );
    let l = [("foo", "2023-03-10T01:32:40.340485723Z")];
    let t = r#"{{ .foo | toDateInZone "2006-01-02T15:04:05.999999999Z" "UTC" | unixEpochMillis }} {{ .foo | toDateInZone "2006-01-02T15:04:05.999999999Z" "UTC" | unixEpochNanos }}"#;
    assert_eq!(render(t, &l), "1678411960340 1678411960340485723");
    check("{{ div (unixEpoch now) (unixEpoch now) }}", "1");
    assert_eq!(
        render(
            r#"from="{{date "2006-01-02" (unixToTime .from)}}""#,
            &[("from", "1679577215")]
        ),
        r#"from="2023-03-23""#
    );
    check(
        r#"{{ unixToTime "19503" }}"#,
        "2023-05-26 00:00:00 +0000 UTC",
    );
    check(
        r#"{{ unixToTime "1257894000000" }}"#,
        "2009-11-10 23:00:00 +0000 UTC",
    );
    check(
        r#"{{ unixToTime "1673798889902000" }}"#,
        "2023-01-15 16:08:09.902 +0000 UTC",
    );
    check(
        r#"{{ unixToTime "1000000000000000000" }}"#,
        "2001-09-09 01:46:40 +0000 UTC",
    );
    assert!(render_err(r#"{{ unixToTime "abc" }}"#, &[]).contains("unable to parse time 'abc'"));
    assert!(render_err(r#"{{ unixToTime "464" }}"#, &[]).contains("unable to parse time '464'"));
    assert!(render_err(r#"{{ unixEpoch "2021" }}"#, &[]).contains("expected time.Time; got string"));
}

#[test]
fn printf_verbs() {
    assert_eq!(
        render(
            r#"{{ printf "The IP address was %s" .remote_addr }}"#,
            &[("remote_addr", "129.168.1.1")]
        ),
        "The IP address was 129.168.1.1"
    );
    let l = [
        ("request_uri", "/a/509965767/alternative-to-my-mtg.html"),
        ("request_method", "GET"),
    ];
    assert_eq!(
        render(
            r#"{{ printf "%-40.40s" .request_uri}} {{printf "%-5.5s" .request_method}}"#,
            &l
        ),
        "/a/509965767/alternative-to-my-mtg.html  GET  "
    );
    check(
        r#"{{ printf "%d|%5d|%-5d|%05d|%+d|% d|%.3d" 42 42 42 42 42 42 7 }}"#,
        "42|   42|42   |00042|+42| 42|007",
    );
    check(
        r#"{{ printf "%x|%X|%#x|%o|%#o|%b|%O|%x" 255 255 255 8 8 5 8 -255 }}"#,
        "ff|FF|0xff|10|010|101|0o10|-ff",
    );
    check(
        r#"{{ printf "%c|%q|%U|%#U" 65 65 0x1F600 65 }}"#,
        "A|'A'|U+1F600|U+0041 'A'",
    );
    check(
        r#"{{ printf "%s|%v|%5s|%-5s|%.2s|%8v|" "go" "go" "go" "go" "golang" "abc" }}"#,
        "go|go|   go|go   |go|     abc|",
    );
    check(
        r#"{{ printf "%q|%+q|%#q|%q" "go\"x" "héllo" "hi" "a\tb\n" }}"#,
        r#""go\"x"|"h\u00e9llo"|`hi`|"a\tb\n""#,
    );
    check(
        r#"{{ printf "%x|% x|%#x|%X|%.3x" "hi" "hi" "hi" "é" "hello" }}"#,
        "6869|68 69|0x6869|C3A9|68656c",
    );
    check(
        r#"{{ printf "%t|%v|%5t|" true false true }}"#,
        "true|false| true|",
    );
    check(
        r#"{{ printf "%e|%E|%.2e|%g|%G|%.3g" 1234.5678 1234.5678 1234.5678 1234.5678 0.000012 1234.5678 }}"#,
        "1.234568e+03|1.234568E+03|1.23e+03|1234.5678|1.2E-05|1.23e+03",
    );
    check(
        r#"{{ printf "%f|%.2f|%10.3f|%-10.3f|%05.1f|%+.1f|%08.3f|% .2f" 1234.5678 1234.5678 1234.5678 1234.5678 3.14159 3.14159 -3.14159 2.5 }}"#,
        "1234.567800|1234.57|  1234.568|1234.568  |003.1|+3.1|-003.142| 2.50",
    );
    check(
        r#"{{ printf "%.0f %.0f %.1f %v %v %v" 2.5 3.5 0.25 1e21 1e20 0.000001 }}"#,
        "2 4 0.2 1e+21 1e+20 1e-06",
    );
    check(r#"{{ printf "%5.1f%%" 99.44 }}"#, " 99.4%");
    check(
        r#"{{ printf "%[2]d %[1]d" 1 2 }}|{{ printf "%*d|%-*d|%.*f" 5 42 4 7 2 3.14159 }}"#,
        "2 1|   42|7   |3.14",
    );
    // After an explicit index, later verbs continue with the following arguments.
    check(r#"{{ printf "%[2]d %d" 1 2 3 }}"#, "2 3");
    check(
        r#"{{ printf "%T %T %T %T %T %T" 1 2.5 "s" true (fromJson "[1]") __timestamp__ }}"#,
        "int float64 string bool []interface {} time.Time",
    );
    check(
        r#"{{ printf "%v|%s" (fromJson "{\"b\":1,\"a\":[true,null]}") __timestamp__ }}"#,
        "map[a:[true <nil>] b:1]|2023-11-14 22:13:20.123456789 +0000 UTC",
    );
    // Go's error notation for mismatches.
    check(
        r#"{{ printf "%d|%s|%d|%z" "x" 5 2.5 1 }}"#,
        "%!d(string=x)|%!s(int=5)|%!d(float64=2.5)|%!z(int=1)",
    );
    check(
        r#"{{ printf "%d %d" 1 }}|{{ printf "%d" 1 2 }}|{{ printf "%" }}|{{ printf "%!" }}"#,
        "1 %!d(MISSING)|1%!(EXTRA int=2)|%!(NOVERB)|%!!(MISSING)",
    );
    check(
        r#"{{ printf "%d" .missing }}|{{ printf "%99999999d" 1 }}"#,
        "%!d(string=)|%!(NOVERB)%!(EXTRA int=1)",
    );
    check(
        r#"{{ print 1 2 "a" 3 "b" "c" 1.5 }}|{{ println "a" 1 }}"#,
        "1 2a3bc1.5|a 1\n",
    );
}

#[test]
fn constants() {
    check("{{ 'a' }} {{ 0x1F }} {{ 0o17 }} {{ 017 }} {{ 0b101 }} {{ 1_000 }} {{ -3 }} {{ 1e3 }} {{ .5 }}", "97 31 15 15 5 1000 -3 1000 0.5");
    check(
        r#"{{ "tab\there" }}|{{ `raw\t` }}|{{ "\u00e9\x41\101" }}|{{ true }}"#,
        "tab\there|raw\\t|éAA|true",
    );
}

#[test]
fn parse_errors() {
    let e = parse_err("{{ nosuch 1 }}");
    assert!(e.contains(r#"function "nosuch" not defined"#), "{e}");
    assert!(parse_err("line one\n{{ .a }}\n{{ nosuch }}").starts_with("template: line:3:"));
    assert!(parse_err("{{ .foo ").contains("unclosed action"));
    assert!(parse_err(r#"{{ "abc }}"#).contains("unterminated quoted string"));
    assert!(parse_err("{{ `abc }}").contains("unterminated raw quoted string"));
    assert!(parse_err("{{ 3abc }}").contains("bad number syntax"));
    assert!(parse_err("{{ (1 }}").contains("unclosed left paren"));
    assert!(parse_err("{{ 1) }}").contains("unexpected right paren"));
    assert!(parse_err("{{ .a→ }}").contains("bad character U+2192"));
    assert!(parse_err("{{ \"\\q\" }}").contains("invalid syntax"));
    assert!(parse_err("{{/* unclosed }}").contains("unclosed comment"));
    assert!(parse_err("{{ if .a }}x").starts_with("template: line:1:"));
    assert!(parse_err("{{ end }}").starts_with("template: line:1:"));
    assert!(parse_err(r#"{{ define "x" }}y{{ end }}{{ template "x" }}"#).contains("not supported"));
    let deep_ifs = format!("{}x{}", "{{ if 1 }}".repeat(51), "{{ end }}".repeat(51));
    assert!(parse_err(&deep_ifs).contains("nested too deeply"));
    let deep_parens = format!("{{{{ {}1{} }}}}", "(".repeat(51), ")".repeat(51));
    assert!(parse_err(&deep_parens).contains("nested too deeply"));
}

#[test]
fn render_errors_are_one_line() {
    assert!(
        render_err("{{ upper 5 }}", &[]).contains("wrong type for value; expected string; got int")
    );
    assert!(
        render_err("{{ repeat 3 }}", &[]).contains("wrong number of args for repeat: want 2 got 1")
    );
    assert!(render_err("{{ repeat -1 \"x\" }}", &[]).contains("negative Repeat count"));
    assert!(
        render_err("{{ trunc .n \"abc\" }}", &[("n", "1")]).contains("expected int; got string")
    );
    assert!(render_err(r#"{{ index (fromJson "[1]") 3 }}"#, &[]).contains("index out of range: 3"));
    assert!(render_err("{{ .foo.bar }}", FB).lines().count() == 1);
}

#[test]
fn nesting_within_limits_works() {
    // At the limit, on a test thread's 2 MiB stack in a debug build.
    let parens = format!("{{{{ {}add 1 2{} }}}}", "(".repeat(50), ")".repeat(50));
    check(&parens, "3");
    let ifs = format!("{}x{}", "{{ if 1 }}".repeat(50), "{{ end }}".repeat(50));
    check(&ifs, "x");
    let mixed = format!(
        "{}{{{{ {}add 1 2{} }}}}{}",
        "{{ range fromJson \"[1]\" }}".repeat(25),
        "(".repeat(25),
        ")".repeat(25),
        "{{ end }}".repeat(25)
    );
    check(&mixed, "3");
    let too_deep = format!(
        "{}{{{{ (((1))) }}}}{}",
        "{{ if 1 }}".repeat(48),
        "{{ end }}".repeat(48)
    );
    assert!(parse_err(&too_deep).contains("nested too deeply"));
}

#[test]
fn budgets_stop_runaway_templates() {
    let arr = format!("[{}0]", "0,".repeat(199));
    let l = [("arr", arr.as_str())];
    let t = "{{ range fromJson .arr }}{{ range fromJson $.arr }}{{ range fromJson $.arr }}x{{ end }}{{ end }}{{ end }}";
    assert!(render_err(t, &l).contains("range iterations exceed"));
    assert_eq!(render("{{ range fromJson .arr }}x{{ end }}", &l).len(), 200);
    assert!(render_err(r#"{{ repeat 100000000 "xy" }}"#, &[]).contains("exceeds"));
    assert!(render_err(
        r#"{{ $s := repeat 10000000 "x" }}{{ range fromJson .arr }}{{ $s }}{{ end }}"#,
        &l
    )
    .contains("output exceeds"));
}

#[test]
fn template_value_semantics() {
    let a = Template::parse("{{ .foo }}").unwrap();
    let b = Template::parse("{{ .foo }}").unwrap();
    assert_eq!(a, b.clone());
    assert_ne!(a, Template::parse("{{ .bar }}").unwrap());
    assert_eq!(a.text(), "{{ .foo }}");
    assert_eq!(format!("{a:?}"), r#"Template("{{ .foo }}")"#);
    fn shareable<T: Send + Sync>(_: &T) {}
    shareable(&a);
    // Renders are independent across threads.
    let handles: Vec<_> = (0..4)
        .map(|i| {
            let t = a.clone();
            std::thread::spawn(move || t.render(&[("foo", &i.to_string())], "", 0))
        })
        .collect();
    for (i, h) in handles.into_iter().enumerate() {
        assert_eq!(h.join().unwrap(), Ok(i.to_string()));
    }
}

/// A small deterministic xorshift generator for the fuzz loops.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[(self.next() % items.len() as u64) as usize]
    }
}

const PIECES: &[&str] = &[
    "{{",
    "}}",
    "{{-",
    "-}}",
    " ",
    "\n",
    "\t",
    ".",
    ".foo",
    ".bar",
    ".x.y",
    "$",
    "$x",
    ":=",
    "=",
    "|",
    "(",
    ")",
    ",",
    "\"",
    "\"s\"",
    "`",
    "'",
    "'a'",
    "\\",
    "/*",
    "*/",
    "1",
    "-2",
    "3.5",
    "0x",
    "1e",
    "1e400",
    "_",
    "if",
    "else",
    "end",
    "range",
    "with",
    "define",
    "template",
    "block",
    "nil",
    "true",
    "é",
    "→",
    "\u{0}",
    "printf",
    "\"%d %s %5.2f %\"",
    "\"%*d\"",
    "\"%[3]v\"",
    "add",
    "div",
    "divf",
    "mod",
    "repeat",
    "regexReplaceAll",
    "\"(\"",
    "\"a*\"",
    "toDate",
    "date",
    "\"2006-01-02 Mon MST .000 Z07:00\"",
    "__timestamp__",
    "__line__",
    "fromJson",
    "\"[1,{}]\"",
    "index",
    "slice",
    "len",
    "eq",
    "lt",
    "and",
    "not",
    "trunc",
    "substr",
    "-1",
    "substr",
    "alignLeft",
    "indent",
    "unixToTime",
    "\"1234567890\"",
    "bytes",
    "duration",
    "\"9999999999h\"",
    "round",
    "b64dec",
    "urldecode",
    "\"%\"",
    "count",
    "default",
    "print",
    "html",
    "js",
    "title",
    "9223372036854775807",
];

#[test]
fn random_garbage_never_panics() {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let values = [
        "",
        "0",
        "-1",
        "3.5",
        "abc",
        "{\"a\":[1,2]}",
        "[1,2,3]",
        "é→\u{0}",
        "%zz",
        "1e400",
        "2006-01-02",
    ];
    for _ in 0..3000 {
        let n = 1 + rng.next() % 12;
        let mut text = String::new();
        for _ in 0..n {
            text.push_str(rng.pick(PIECES));
        }
        let labels = [
            ("foo", rng.pick(&values)),
            ("bar", rng.pick(&values)),
            ("x", rng.pick(&values)),
        ];
        let (line, ts) = (rng.pick(&values), rng.next() as i64);
        let outcome = catch_unwind(|| match Template::parse(&text) {
            Ok(t) => t.render(&labels, line, ts).err(),
            Err(e) => Some(e),
        });
        let message = outcome.unwrap_or_else(|_| panic!("panicked on {text:?}"));
        if let Some(m) = message {
            assert!(!m.contains("internal"), "internal failure on {text:?}: {m}");
            assert!(!m.contains('\n'), "multi-line error on {text:?}: {m}");
        }
    }
}

/// Tokens for building syntactically plausible actions.
const TOKENS: &[&str] = &[
    ".foo",
    ".bar",
    ".x",
    ".",
    "$",
    "$.foo",
    "$x",
    "$x :=",
    "$i, $v :=",
    "|",
    "|",
    "(",
    ")",
    "(",
    ")",
    "if",
    "else",
    "else if",
    "end",
    "range",
    "with",
    "nil",
    "true",
    "1",
    "-2",
    "3.5",
    "0",
    "1e300",
    "'x'",
    "\"s\"",
    "`r\\d`",
    "\"%d %v %s %q %x %5.2f %-3s %*d %[2]v %!\"",
    "printf",
    "print",
    "add",
    "div",
    "mod",
    "divf",
    "maxf",
    "round",
    "int",
    "float64",
    "len",
    "index",
    "slice",
    "eq",
    "lt",
    "and",
    "or",
    "not",
    "upper",
    "trunc",
    "substr",
    "replace",
    "repeat",
    "indent",
    "default",
    "regexReplaceAll",
    "count",
    "fromJson",
    "\"[1,2,{\\\"a\\\":null}]\"",
    "date",
    "toDate",
    "now",
    "unixEpoch",
    "unixToTime",
    "__timestamp__",
    "__line__",
    "bytes",
    "duration",
    "b64dec",
    "urldecode",
    "alignLeft",
    "html",
    "js",
    "Replace",
];

#[test]
fn random_actions_never_panic() {
    let mut rng = Rng(7);
    let values = [
        "",
        "0",
        "-1",
        "3.5",
        "abc",
        "{\"a\":[1,2]}",
        "[1,2,3]",
        "é→\u{0}",
        "%zz",
        "1679577215",
    ];
    for _ in 0..3000 {
        let mut text = String::new();
        for _ in 0..1 + rng.next() % 4 {
            text.push_str(rng.pick(&["", "x", " ", "\n"]));
            text.push_str(rng.pick(&["{{ ", "{{- ", "{{"]));
            for _ in 0..1 + rng.next() % 6 {
                text.push_str(rng.pick(TOKENS));
                text.push(' ');
            }
            text.push_str(rng.pick(&["}}", "-}}", " }}"]));
        }
        let labels = [
            ("foo", rng.pick(&values)),
            ("bar", rng.pick(&values)),
            ("x", rng.pick(&values)),
        ];
        let ts = rng.next() as i64;
        let outcome = catch_unwind(|| match Template::parse(&text) {
            Ok(t) => t.render(&labels, "line", ts).err(),
            Err(e) => Some(e),
        });
        let message = outcome.unwrap_or_else(|_| panic!("panicked on {text:?}"));
        if let Some(m) = message {
            assert!(
                !m.contains("internal") && !m.contains('\n'),
                "bad error on {text:?}: {m}"
            );
        }
    }
}

#[test]
fn valid_templates_with_random_arguments_never_panic() {
    let mut rng = Rng(42);
    let funcs = [
        "trunc",
        "substr",
        "alignLeft",
        "alignRight",
        "indent",
        "repeat",
        "round",
        "date",
        "toDate",
        "printf",
        "index",
        "slice",
        "add",
        "sub",
        "mul",
        "div",
        "mod",
        "addf",
        "subf",
        "mulf",
        "divf",
        "maxf",
        "minf",
        "unixToTime",
        "bytes",
        "duration",
        "b64dec",
        "urldecode",
        "regexReplaceAll",
        "count",
        "Replace",
        "eq",
        "lt",
        "le",
        "len",
        "default",
        "fromJson",
        "title",
        "upper",
    ];
    let args = [
        "0",
        "-1",
        "2",
        "7",
        "-9223372036854775808",
        "9223372036854775807",
        "1e300",
        "-0.5",
        "\"\"",
        "\"é→x\"",
        "\"%-*.*[2]d%q%x\"",
        "\"(a*)\"",
        "\"2006\"",
        ".foo",
        ".bar",
        "__timestamp__",
        "(fromJson \"[1,2]\")",
        "(fromJson \"{\\\"a\\\":1}\")",
        "true",
        "now",
    ];
    for _ in 0..3000 {
        let argc = rng.next() % 4;
        let mut text = format!("{{{{ {}", rng.pick(&funcs));
        for _ in 0..argc {
            text.push(' ');
            text.push_str(rng.pick(&args));
        }
        text.push_str(" }}");
        let labels = [("foo", rng.pick(&args)), ("bar", "12")];
        let t = Template::parse(&text).unwrap_or_else(|e| panic!("{text:?}: {e}"));
        let ts = rng.next() as i64;
        let outcome = catch_unwind(|| t.render(&labels, "line", ts));
        match outcome {
            Ok(Err(m)) => assert!(!m.contains("internal"), "internal failure on {text:?}: {m}"),
            Ok(Ok(_)) => {}
            Err(_) => panic!("panicked on {text:?}"),
        }
    }
}
