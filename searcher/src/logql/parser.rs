//! A hand-written recursive-descent parser. Every error says what was
//! expected and where (line and column), in the words Loki uses, and no
//! input can make it panic (see the proptest below).

use regex::Regex;

use super::ip::IpPattern;
use super::pattern::Pattern;
use super::template::Template;
use super::*;
use crate::time::parse_duration;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    pub line: usize,
    pub col: usize,
    pub message: String,
}

impl std::fmt::Display for ParseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "parse error at line {}, col {}: {}",
            self.line, self.col, self.message
        )
    }
}

impl std::error::Error for ParseError {}

/// Deepest syntax tree accepted: each level of parentheses and each chained
/// binary, `and` or `or` operator counts one. The tree is walked and dropped
/// recursively, so without this bound a long `1+1+1+…` or `a="b" and …` chain
/// (parsed by a loop, but building a left-deep tree) overflows the stack.
const MAX_DEPTH: usize = 128;

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    Str(String),
    Num(f64),
    Duration(i64),
    /// A byte size, `20MB` or `1.5KiB`, in bytes.
    Bytes(f64),
    Sym(&'static str),
    Eof,
}

struct Lexer<'a> {
    src: &'a str,
    pos: usize,
}

const SYMBOLS: &[&str] = &[
    "|=", "|~", "|>", "!>", "!=", "!~", "=~", "==", ">=", "<=", "{", "}", "(", ")", "[", "]", ",",
    "=", "|", ">", "<", "+", "-", "*", "/", "%", "^",
];

impl<'a> Lexer<'a> {
    fn err(&self, at: usize, message: impl Into<String>) -> ParseError {
        let before = &self.src[..at.min(self.src.len())];
        let line = before.matches('\n').count() + 1;
        let col = before
            .rfind('\n')
            .map_or(before.chars().count(), |i| before[i + 1..].chars().count())
            + 1;
        ParseError {
            line,
            col,
            message: message.into(),
        }
    }

    /// The next token and its start offset.
    fn next(&mut self) -> Result<(Tok, usize), ParseError> {
        let b = self.src.as_bytes();
        // Whitespace, new lines included, and `#` comments to the end of
        // their line, as in Loki.
        loop {
            while self.pos < b.len() && b[self.pos].is_ascii_whitespace() {
                self.pos += 1;
            }
            if b.get(self.pos) != Some(&b'#') {
                break;
            }
            while self.pos < b.len() && b[self.pos] != b'\n' {
                self.pos += 1;
            }
        }
        let start = self.pos;
        if self.pos >= b.len() {
            return Ok((Tok::Eof, start));
        }
        let c = b[self.pos];
        if c == b'"' || c == b'`' {
            return self.string(c).map(|s| (Tok::Str(s), start));
        }
        if c.is_ascii_digit() || (c == b'.' && b.get(self.pos + 1).is_some_and(u8::is_ascii_digit))
        {
            while self.pos < b.len() && (b[self.pos].is_ascii_alphanumeric() || b[self.pos] == b'.')
            {
                self.pos += 1;
            }
            let text = &self.src[start..self.pos];
            if let Ok(n) = text.parse::<f64>() {
                return Ok((Tok::Num(n), start));
            }
            if let Some(d) = parse_duration(text) {
                return Ok((Tok::Duration(d), start));
            }
            // Go's form with fractions, `1h0.5m`, as Loki's label filters take.
            if let Some(secs) = crate::time::parse_go_duration(text) {
                return Ok((Tok::Duration((secs * 1e9) as i64), start));
            }
            return crate::time::parse_bytes(text)
                .map(|b| (Tok::Bytes(b), start))
                .ok_or_else(|| {
                    self.err(
                        start,
                        format!("syntax error: bad number or duration {text:?}"),
                    )
                });
        }
        if c.is_ascii_alphabetic() || c == b'_' {
            while self.pos < b.len()
                && (b[self.pos].is_ascii_alphanumeric()
                    || b[self.pos] == b'_'
                    || b[self.pos] == b'.')
            {
                self.pos += 1;
            }
            return Ok((Tok::Ident(self.src[start..self.pos].to_owned()), start));
        }
        for s in SYMBOLS {
            if self.src[self.pos..].starts_with(s) {
                self.pos += s.len();
                return Ok((Tok::Sym(s), start));
            }
        }
        let ch = self.src[self.pos..].chars().next().unwrap_or('?');
        Err(self.err(start, format!("syntax error: unexpected character {ch:?}")))
    }

    fn string(&mut self, quote: u8) -> Result<String, ParseError> {
        let start = self.pos;
        self.pos += 1;
        let mut out = String::new();
        let rest = &self.src[self.pos..];
        let mut chars = rest.char_indices();
        while let Some((i, ch)) = chars.next() {
            if ch as u32 == quote as u32 {
                self.pos += i + 1;
                return Ok(out);
            }
            if ch == '\\' && quote == b'"' {
                match chars.next() {
                    Some((_, 'n')) => out.push('\n'),
                    Some((_, 't')) => out.push('\t'),
                    Some((_, 'r')) => out.push('\r'),
                    Some((_, c @ ('"' | '\\' | '/'))) => out.push(c),
                    Some((_, c)) => {
                        // Unknown escapes stay as written, so regexes like "\d" work.
                        out.push('\\');
                        out.push(c);
                    }
                    None => break,
                }
            } else {
                out.push(ch);
            }
        }
        Err(self.err(start, "syntax error: unterminated string"))
    }
}

struct Parser<'a> {
    lex: Lexer<'a>,
    tok: Tok,
    at: usize,
    depth: usize,
}

/// Adds an `or` chain of line filters: one that keeps a line when any
/// alternative matches (`|=`, `|~`, `|>`), or each of them when every
/// alternative must fail to match (`!=`, `!~`, `!>`).
fn push_chain(stages: &mut Vec<Stage>, mut alternatives: Vec<Stage>, keep: bool) {
    if keep && alternatives.len() > 1 {
        stages.push(Stage::AnyOf(alternatives));
    } else {
        stages.append(&mut alternatives);
    }
}

/// The range functions over unwrapped values (`rate` is both kinds).
fn is_unwrap_fn(s: &str) -> Option<UnwrapFn> {
    Some(match s {
        "sum_over_time" => UnwrapFn::Sum,
        "avg_over_time" => UnwrapFn::Avg,
        "min_over_time" => UnwrapFn::Min,
        "max_over_time" => UnwrapFn::Max,
        "stddev_over_time" => UnwrapFn::Stddev,
        "stdvar_over_time" => UnwrapFn::Stdvar,
        "quantile_over_time" => UnwrapFn::Quantile(0.0),
        "first_over_time" => UnwrapFn::First,
        "last_over_time" => UnwrapFn::Last,
        "rate_counter" => UnwrapFn::RateCounter,
        _ => return None,
    })
}

fn is_range_fn(s: &str) -> Option<RangeFn> {
    Some(match s {
        "count_over_time" => RangeFn::CountOverTime,
        "rate" => RangeFn::Rate,
        "bytes_over_time" => RangeFn::BytesOverTime,
        "bytes_rate" => RangeFn::BytesRate,
        "absent_over_time" => RangeFn::AbsentOverTime,
        _ => return None,
    })
}

impl<'a> Parser<'a> {
    fn bump(&mut self) -> Result<(), ParseError> {
        let (t, at) = self.lex.next()?;
        self.tok = t;
        self.at = at;
        Ok(())
    }

    fn err<T>(&self, message: impl Into<String>) -> Result<T, ParseError> {
        Err(self.lex.err(self.at, message))
    }

    fn unexpected<T>(&self, wanted: &str) -> Result<T, ParseError> {
        let found = match &self.tok {
            Tok::Ident(s) => format!("identifier {s:?}"),
            Tok::Str(s) => format!("string {s:?}"),
            Tok::Num(n) => format!("number {n}"),
            Tok::Duration(_) => "duration".to_owned(),
            Tok::Bytes(_) => "byte size".to_owned(),
            Tok::Sym(s) => format!("{s:?}"),
            Tok::Eof => "end of query".to_owned(),
        };
        self.err(format!(
            "syntax error: unexpected {found}, expecting {wanted}"
        ))
    }

    fn eat(&mut self, sym: &'static str) -> Result<bool, ParseError> {
        if self.tok == Tok::Sym(sym) {
            self.bump()?;
            return Ok(true);
        }
        Ok(false)
    }

    fn expect(&mut self, sym: &'static str) -> Result<(), ParseError> {
        if !self.eat(sym)? {
            return self.unexpected(&format!("{sym:?}"));
        }
        Ok(())
    }

    fn ident(&mut self, what: &str) -> Result<String, ParseError> {
        match &self.tok {
            Tok::Ident(s) => {
                let s = s.clone();
                self.bump()?;
                Ok(s)
            }
            _ => self.unexpected(what),
        }
    }

    fn string(&mut self) -> Result<String, ParseError> {
        match &self.tok {
            Tok::Str(s) => {
                let s = s.clone();
                self.bump()?;
                Ok(s)
            }
            _ => self.unexpected("a quoted string"),
        }
    }

    /// `ip("…")`, at its name.
    fn ip_call(&mut self) -> Result<IpPattern, ParseError> {
        self.bump()?;
        self.expect("(")?;
        let at = self.at;
        let text = self.string()?;
        self.expect(")")?;
        IpPattern::parse(&text).map_err(|e| self.lex.err(at, e))
    }

    /// A `line_format` or `label_format` template, compiled once; errors
    /// point at `at`, where its string started.
    fn template(&self, text: &str, at: usize) -> Result<Template, ParseError> {
        Template::parse(text).map_err(|e| self.lex.err(at, format!("invalid template: {e}")))
    }

    /// Compiles a regex; errors point at `at`, where its string started.
    fn regex(&self, pattern: &str, anchored: bool, at: usize) -> Result<Regex, ParseError> {
        let p = if anchored {
            format!("^(?:{pattern})$")
        } else {
            pattern.to_owned()
        };
        regex::RegexBuilder::new(&p)
            .size_limit(1 << 20)
            .build()
            .map_err(|e| {
                let why = e.to_string();
                let why = why
                    .lines()
                    .last()
                    .unwrap_or("")
                    .trim_start_matches("error: ");
                self.lex
                    .err(at, format!("invalid regex {pattern:?}: {why}"))
            })
    }

    /// A line filter `op "a" or "b" …`, as Loki reads it: a positive one
    /// keeps a line that matches any alternative, a negative one a line
    /// that matches none. A positive chain becomes one unanchored regex
    /// (literals escaped); it then names no word that every match has, so
    /// it prunes nothing, which keeps pruning exact. A negative chain is
    /// one filter per alternative.
    fn line_filters(
        &self,
        op: LineOp,
        alternatives: Vec<(usize, String)>,
        stages: &mut Vec<Stage>,
    ) -> Result<(), ParseError> {
        let is_re = matches!(op, LineOp::Re | LineOp::NotRe);
        let mut patterns = Vec::with_capacity(alternatives.len());
        for (at, needle) in &alternatives {
            // Each alternative checked alone, so an error points at it.
            let re = if is_re {
                Some(self.regex(needle, false, *at)?)
            } else {
                None
            };
            patterns.push(if is_re {
                format!("(?:{needle})")
            } else {
                regex::escape(needle)
            });
            if alternatives.len() == 1 || matches!(op, LineOp::NotContains | LineOp::NotRe) {
                stages.push(Stage::Line {
                    op,
                    needle: needle.clone(),
                    re,
                });
            }
        }
        if alternatives.len() > 1 && matches!(op, LineOp::Contains | LineOp::Re) {
            let needle = patterns.join("|");
            let re = Some(self.regex(&needle, false, alternatives[0].0)?);
            stages.push(Stage::Line {
                op: LineOp::Re,
                needle,
                re,
            });
        }
        Ok(())
    }

    fn enter(&mut self) -> Result<(), ParseError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return self.err("query nested too deeply");
        }
        Ok(())
    }

    fn query(&mut self) -> Result<Query, ParseError> {
        let q = if self.tok == Tok::Sym("{") {
            let (q, unwrap) = self.log_query()?;
            if unwrap.is_some() {
                return self.err(
                    "unwrap belongs in a range function over its values, like sum_over_time({app=\"x\"} | unwrap bytes [5m])",
                );
            }
            Query::Log(q)
        } else {
            Query::Metric(self.metric_expr()?)
        };
        if self.tok != Tok::Eof {
            return self.unexpected("end of query");
        }
        Ok(q)
    }

    /// A stream selector and its pipeline; the pipeline's `| unwrap`,
    /// which only label filters may follow, is returned beside it.
    fn log_query(&mut self) -> Result<(LogQuery, Option<Unwrap>), ParseError> {
        let open = self.at;
        self.expect("{")?;
        let mut matchers = Vec::new();
        loop {
            let name = self.ident("a label name")?;
            matchers.push(self.matcher(name)?);
            if !self.eat(",")? {
                break;
            }
        }
        self.expect("}")?;
        if matchers.iter().all(|m| m.matches("")) {
            return Err(self.lex.err(open, "queries require at least one matcher that does not match the empty string, like {app=\"x\"}"));
        }
        let mut stages = Vec::new();
        let mut unwrap: Option<Unwrap> = None;
        self.pipeline(&mut stages, &mut unwrap)?;
        Ok((LogQuery { matchers, stages }, unwrap))
    }

    /// `= "v"`, `!= "v"`, `=~ "re"` or `!~ "re"` after label `name`.
    fn matcher(&mut self, name: String) -> Result<Matcher, ParseError> {
        let op = match &self.tok {
            Tok::Sym("=") => MatchOp::Eq,
            Tok::Sym("!=") => MatchOp::Ne,
            Tok::Sym("=~") => MatchOp::Re,
            Tok::Sym("!~") => MatchOp::Nre,
            _ => return self.unexpected("=, !=, =~ or !~"),
        };
        self.bump()?;
        let at = self.at;
        let value = self.string()?;
        let re = match op {
            MatchOp::Re | MatchOp::Nre => Some(self.regex(&value, true, at)?),
            _ => None,
        };
        Ok(Matcher {
            name,
            op,
            value,
            re,
        })
    }

    /// `or` between line filter alternatives, eaten if there.
    fn eat_or(&mut self) -> Result<bool, ParseError> {
        if matches!(&self.tok, Tok::Ident(s) if s == "or") {
            self.bump()?;
            return Ok(true);
        }
        Ok(false)
    }

    /// The stages after a selector, up to what cannot continue them (a
    /// range, a parenthesis, the end). Also after `{…}[5m]`, where Loki
    /// allows the pipeline to follow the range.
    fn pipeline(
        &mut self,
        stages: &mut Vec<Stage>,
        unwrap: &mut Option<Unwrap>,
    ) -> Result<(), ParseError> {
        loop {
            let line_op = match &self.tok {
                Tok::Sym("|=") => Some(LineOp::Contains),
                Tok::Sym("!=") => Some(LineOp::NotContains),
                Tok::Sym("|~") => Some(LineOp::Re),
                Tok::Sym("!~") => Some(LineOp::NotRe),
                _ => None,
            };
            let pattern_filter = match &self.tok {
                Tok::Sym("|>") => Some(true),
                Tok::Sym("!>") => Some(false),
                _ => None,
            };
            if (line_op.is_some() || pattern_filter.is_some()) && unwrap.is_some() {
                return self.err("syntax error: only label filters may follow unwrap");
            }
            if let Some(keep) = pattern_filter {
                self.bump()?;
                let mut alternatives = Vec::new();
                loop {
                    let at = self.at;
                    let text = self.string()?;
                    let pattern = Pattern::parse_filter(&text).map_err(|e| self.lex.err(at, e))?;
                    alternatives.push(Stage::PatternFilter { pattern, keep });
                    if !self.eat_or()? {
                        break;
                    }
                }
                push_chain(stages, alternatives, keep);
                continue;
            }
            if let Some(op) = line_op {
                self.bump()?;
                // `ip("…")` and strings may be mixed in an `or` chain.
                let keep = matches!(op, LineOp::Contains | LineOp::Re);
                let (mut texts, mut ips) = (Vec::new(), Vec::new());
                loop {
                    if matches!(&self.tok, Tok::Ident(s) if s == "ip") {
                        let pattern = self.ip_call()?;
                        ips.push(Stage::IpFilter { pattern, keep });
                    } else {
                        texts.push((self.at, self.string()?));
                    }
                    if !self.eat_or()? {
                        break;
                    }
                }
                if ips.is_empty() {
                    self.line_filters(op, texts, stages)?;
                } else {
                    if !texts.is_empty() {
                        self.line_filters(op, texts, &mut ips)?;
                    }
                    push_chain(stages, ips, keep);
                }
                continue;
            }
            if !self.eat("|")? {
                break;
            }
            let filter = match &self.tok {
                Tok::Ident(s) => !matches!(
                    s.as_str(),
                    "json"
                        | "logfmt"
                        | "regexp"
                        | "drop"
                        | "keep"
                        | "decolorize"
                        | "unpack"
                        | "label_format"
                        | "line_format"
                        | "unwrap"
                ),
                t => *t == Tok::Sym("("),
            };
            if unwrap.is_some() && !filter {
                return self.err("syntax error: only label filters may follow unwrap");
            }
            match &self.tok {
                Tok::Ident(s) if s == "unwrap" => {
                    self.bump()?;
                    *unwrap = Some(self.unwrap()?);
                }
                Tok::Ident(s) if s == "json" => {
                    self.bump()?;
                    let params = self.parser_params()?;
                    if params.is_empty() {
                        stages.push(Stage::Json);
                    } else {
                        let mut fields = Vec::with_capacity(params.len());
                        for (label, at, expr) in params {
                            let path = json_path(&expr).ok_or_else(|| {
                                self.lex
                                    .err(at, format!("invalid JSON expression {expr:?}"))
                            })?;
                            fields.push((label, path));
                        }
                        stages.push(Stage::JsonFields(fields));
                    }
                }
                Tok::Ident(s) if s == "logfmt" => {
                    self.bump()?;
                    let mut p = LogfmtParams::default();
                    while self.tok == Tok::Sym("-") {
                        self.bump()?;
                        self.expect("-")?;
                        match self.ident("a flag, --strict or --keep-empty")?.as_str() {
                            "strict" => p.strict = true,
                            "keep" => {
                                self.expect("-")?;
                                if self.ident("--keep-empty")? != "empty" {
                                    return self.err("syntax error: logfmt's flags are --strict and --keep-empty");
                                }
                                p.keep_empty = true;
                            }
                            _ => {
                                return self.err(
                                    "syntax error: logfmt's flags are --strict and --keep-empty",
                                )
                            }
                        }
                    }
                    p.fields = self
                        .parser_params()?
                        .into_iter()
                        .map(|(label, _, key)| (label, key))
                        .collect();
                    stages.push(Stage::Logfmt(p));
                }
                Tok::Ident(s) if s == "pattern" => {
                    self.bump()?;
                    let at = self.at;
                    let text = self.string()?;
                    let pattern = Pattern::parse(&text).map_err(|e| self.lex.err(at, e))?;
                    if !pattern.has_named_capture() {
                        return Err(self.lex.err(
                            at,
                            "pattern needs at least one named capture, like <status>",
                        ));
                    }
                    stages.push(Stage::Pattern(pattern));
                }
                Tok::Ident(s) if s == "regexp" => {
                    self.bump()?;
                    let at = self.at;
                    let pattern = self.string()?;
                    let re = self.regex(&pattern, false, at)?;
                    if re.capture_names().flatten().next().is_none() {
                        return Err(self.lex.err(
                            at,
                            "regexp needs at least one named capture, like (?P<status>\\d+)",
                        ));
                    }
                    // As Loki: every capture's name must be a label name.
                    if let Some(bad) = re.capture_names().flatten().find(|n| {
                        n.as_bytes().first().is_some_and(u8::is_ascii_digit)
                            || !n.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
                    }) {
                        return Err(self
                            .lex
                            .err(at, format!("invalid extracted label name '{bad}'")));
                    }
                    stages.push(Stage::Regexp(re));
                }
                Tok::Ident(s) if s == "drop" || s == "keep" => {
                    let keep = s == "keep";
                    self.bump()?;
                    let mut names = Vec::new();
                    loop {
                        let name = self.ident("a label name")?;
                        // `method="GET"`: only where the value matches.
                        let matcher = match &self.tok {
                            Tok::Sym("=" | "!=" | "=~" | "!~") => Some(self.matcher(name.clone())?),
                            _ => None,
                        };
                        names.push(LabelPick { name, matcher });
                        if !self.eat(",")? {
                            break;
                        }
                    }
                    stages.push(if keep {
                        Stage::Keep(names)
                    } else {
                        Stage::Drop(names)
                    });
                }
                Tok::Ident(s) if s == "decolorize" => {
                    self.bump()?;
                    stages.push(Stage::Decolorize);
                }
                Tok::Ident(s) if s == "label_format" => {
                    self.bump()?;
                    let mut pairs = Vec::new();
                    loop {
                        let dst = self.ident("a label name")?;
                        self.expect("=")?;
                        let source = match self.tok.clone() {
                            Tok::Str(t) => {
                                let template = self.template(&t, self.at)?;
                                self.bump()?;
                                LabelSource::Template(template)
                            }
                            _ => LabelSource::Rename(self.ident("a label name or a template")?),
                        };
                        if pairs.iter().any(|(d, _)| *d == dst) {
                            return self.err(format!("label_format sets {dst} twice"));
                        }
                        pairs.push((dst, source));
                        if !self.eat(",")? {
                            break;
                        }
                    }
                    stages.push(Stage::LabelFormat(pairs));
                }
                Tok::Ident(s) if s == "unpack" => {
                    self.bump()?;
                    stages.push(Stage::Unpack);
                }
                Tok::Ident(s) if s == "line_format" => {
                    self.bump()?;
                    let at = self.at;
                    let text = self.string()?;
                    stages.push(Stage::LineFormat(self.template(&text, at)?));
                }
                Tok::Ident(_) | Tok::Sym("(") => {
                    // Loki's newest parser, not in its documentation: named,
                    // not a puzzling error about a label filter.
                    let xml = matches!(&self.tok, Tok::Ident(s) if s == "xml");
                    let filter = match self.label_or() {
                        Err(_) if xml => return self.err(
                            "the xml parser is not supported; use json, logfmt, regexp or pattern",
                        ),
                        r => r?,
                    };
                    match unwrap.as_mut() {
                        // Loki runs these on the unwrapped sample, so
                        // `| __error__=""` drops a value that did not read.
                        Some(u) => u.post_filters.push(filter),
                        None => stages.push(Stage::Labels(filter)),
                    }
                }
                _ => return self.unexpected("json, logfmt, regexp, line_format or a label filter"),
            }
        }
        Ok(())
    }

    /// A parser's parameters, `a, b="expr", …`: (label, where the
    /// expression is, expression), a bare name being its own expression.
    /// None unless a label name follows the parser.
    fn parser_params(&mut self) -> Result<Vec<(String, usize, String)>, ParseError> {
        let mut out = Vec::new();
        while let Tok::Ident(label) = self.tok.clone() {
            let at = self.at;
            self.bump()?;
            let (at, expr) = if self.eat("=")? {
                (self.at, self.string()?)
            } else {
                (at, label.clone())
            };
            out.push((label, at, expr));
            if !self.eat(",")? {
                break;
            }
        }
        Ok(out)
    }

    /// After `| unwrap`: `name`, `duration(name)`, `duration_seconds(name)`
    /// or `bytes(name)`.
    fn unwrap(&mut self) -> Result<Unwrap, ParseError> {
        let name = self.ident("a label name")?;
        let unit = match name.as_str() {
            "duration" | "duration_seconds" => Unit::Duration,
            "bytes" => Unit::Bytes,
            _ => Unit::Number,
        };
        if unit == Unit::Number || self.tok != Tok::Sym("(") {
            return Ok(Unwrap {
                label: name,
                unit: Unit::Number,
                post_filters: Vec::new(),
            });
        }
        self.bump()?;
        let label = self.ident("a label name")?;
        self.expect(")")?;
        Ok(Unwrap {
            label,
            unit,
            post_filters: Vec::new(),
        })
    }

    fn label_or(&mut self) -> Result<LabelExpr, ParseError> {
        let depth = self.depth;
        let mut lhs = self.label_and()?;
        while matches!(&self.tok, Tok::Ident(s) if s == "or") {
            self.bump()?;
            self.enter()?;
            let rhs = self.label_and()?;
            lhs = LabelExpr::Or(Box::new(lhs), Box::new(rhs));
        }
        self.depth = depth;
        Ok(lhs)
    }

    fn label_and(&mut self) -> Result<LabelExpr, ParseError> {
        let depth = self.depth;
        let mut lhs = self.label_primary()?;
        loop {
            let and = matches!(&self.tok, Tok::Ident(s) if s == "and") || self.tok == Tok::Sym(",");
            // Loki also reads two filters side by side as `and`:
            // `| a="x" b!="y"`.
            let side_by_side =
                matches!(&self.tok, Tok::Ident(s) if s != "or") || self.tok == Tok::Sym("(");
            if !and && !side_by_side {
                self.depth = depth;
                return Ok(lhs);
            }
            if and {
                self.bump()?;
            }
            self.enter()?;
            let rhs = self.label_primary()?;
            lhs = LabelExpr::And(Box::new(lhs), Box::new(rhs));
        }
    }

    fn label_primary(&mut self) -> Result<LabelExpr, ParseError> {
        if self.eat("(")? {
            self.enter()?;
            let e = self.label_or()?;
            self.expect(")")?;
            self.depth -= 1;
            return Ok(e);
        }
        let name = self.ident("a label name")?;
        let op = match &self.tok {
            Tok::Sym("=") | Tok::Sym("==") => CmpOp::Eq,
            Tok::Sym("!=") => CmpOp::Ne,
            Tok::Sym("=~") => CmpOp::Re,
            Tok::Sym("!~") => CmpOp::Nre,
            Tok::Sym(">") => CmpOp::Gt,
            Tok::Sym(">=") => CmpOp::Ge,
            Tok::Sym("<") => CmpOp::Lt,
            Tok::Sym("<=") => CmpOp::Le,
            _ => return self.unexpected("a comparison operator"),
        };
        self.bump()?;
        match self.tok.clone() {
            Tok::Str(value) => {
                if matches!(op, CmpOp::Gt | CmpOp::Ge | CmpOp::Lt | CmpOp::Le) {
                    return self
                        .err("syntax error: >, >=, < and <= compare numbers; drop the quotes");
                }
                let at = self.at;
                self.bump()?;
                let re = match op {
                    CmpOp::Re | CmpOp::Nre => Some(self.regex(&value, true, at)?),
                    _ => None,
                };
                Ok(LabelExpr::Str {
                    name,
                    op,
                    value,
                    re,
                })
            }
            tok => {
                // A sign: `counter > -1`, `took > -1s`.
                let negative = tok == Tok::Sym("-");
                let tok = if negative {
                    self.bump()?;
                    match self.tok.clone() {
                        t @ (Tok::Num(_) | Tok::Duration(_) | Tok::Bytes(_)) => t,
                        _ => return self.unexpected("a number, a duration or a byte size"),
                    }
                } else {
                    tok
                };
                let (value, unit) = match tok {
                    Tok::Num(n) => (n, Unit::Number),
                    Tok::Duration(ns) => (ns as f64 / 1e9, Unit::Duration),
                    Tok::Bytes(b) => (b, Unit::Bytes),
                    Tok::Ident(ip) if ip == "ip" => {
                        let negate = match op {
                            CmpOp::Eq => false,
                            CmpOp::Ne => true,
                            _ => return self.err("ip() label filters take = or !="),
                        };
                        let pattern = self.ip_call()?;
                        return Ok(LabelExpr::Ip {
                            name,
                            pattern,
                            negate,
                        });
                    }
                    _ => {
                        return self
                            .unexpected("a quoted string, a number, a duration or a byte size")
                    }
                };
                if matches!(op, CmpOp::Re | CmpOp::Nre) {
                    return self.err("syntax error: =~ and !~ need a quoted regex");
                }
                self.bump()?;
                Ok(LabelExpr::Num {
                    name,
                    op,
                    value: if negative { -value } else { value },
                    unit,
                })
            }
        }
    }

    fn metric_expr(&mut self) -> Result<MetricExpr, ParseError> {
        self.binary_expr(1)
    }

    /// The binary operator at the current token and its precedence, as in
    /// PromQL: `or` 1, `and` `unless` 2, comparisons 3, `+ -` 4,
    /// `* / %` 5, `^` 6 (right-associative).
    fn binary_op(&self) -> Option<(BinOp, u8)> {
        Some(match &self.tok {
            Tok::Ident(s) if s == "or" => (BinOp::Or, 1),
            Tok::Ident(s) if s == "and" => (BinOp::And, 2),
            Tok::Ident(s) if s == "unless" => (BinOp::Unless, 2),
            Tok::Sym("==") => (BinOp::Eq, 3),
            Tok::Sym("!=") => (BinOp::Ne, 3),
            Tok::Sym(">") => (BinOp::Gt, 3),
            Tok::Sym("<") => (BinOp::Lt, 3),
            Tok::Sym(">=") => (BinOp::Ge, 3),
            Tok::Sym("<=") => (BinOp::Le, 3),
            Tok::Sym("+") => (BinOp::Add, 4),
            Tok::Sym("-") => (BinOp::Sub, 4),
            Tok::Sym("*") => (BinOp::Mul, 5),
            Tok::Sym("/") => (BinOp::Div, 5),
            Tok::Sym("%") => (BinOp::Mod, 5),
            Tok::Sym("^") => (BinOp::Pow, 6),
            _ => return None,
        })
    }

    /// Operators of precedence `min` or more, by precedence climbing.
    fn binary_expr(&mut self, min: u8) -> Result<MetricExpr, ParseError> {
        let depth = self.depth;
        let mut lhs = self.metric_term()?;
        while let Some((op, prec)) = self.binary_op().filter(|(_, p)| *p >= min) {
            let at = self.at;
            self.bump()?;
            self.enter()?;
            let mut return_bool = matches!(&self.tok, Tok::Ident(s) if s == "bool");
            if return_bool {
                if !op.is_comparison() {
                    return self.err("bool modifier can only be used on comparison operators");
                }
                self.bump()?;
            }
            let matching = self.vector_matching(op)?;
            let rhs = self.binary_expr(if op == BinOp::Pow { prec } else { prec + 1 })?;
            let scalars = (lhs.is_scalar(), rhs.is_scalar());
            if op.is_set() && (scalars.0 || scalars.1) {
                return Err(self.lex.err(
                    at,
                    "set operators (and, or, unless) need a vector on both sides",
                ));
            }
            // Loki folds a comparison of two numbers to 1 or 0, with or
            // without `bool`.
            if op.is_comparison() && scalars == (true, true) {
                return_bool = true;
            }
            if (scalars.0 || scalars.1) && matching != VectorMatching::default() {
                return Err(self.lex.err(
                    at,
                    "on, ignoring and group modifiers need a vector on both sides",
                ));
            }
            lhs = MetricExpr::Binary {
                op,
                lhs: Box::new(lhs),
                rhs: Box::new(rhs),
                return_bool,
                matching,
            };
        }
        self.depth = depth;
        Ok(lhs)
    }

    /// `on(…)` or `ignoring(…)`, then `group_left(…)` or `group_right(…)`.
    fn vector_matching(&mut self, op: BinOp) -> Result<VectorMatching, ParseError> {
        let mut m = VectorMatching::default();
        let on = match &self.tok {
            Tok::Ident(s) if s == "on" => Some(true),
            Tok::Ident(s) if s == "ignoring" => Some(false),
            _ => None,
        };
        let Some(on) = on else {
            return Ok(m);
        };
        self.bump()?;
        m.on = on;
        m.labels = self.label_list()?;
        let group = match &self.tok {
            Tok::Ident(s) if s == "group_left" => Some(GroupSide::Left),
            Tok::Ident(s) if s == "group_right" => Some(GroupSide::Right),
            _ => None,
        };
        if let Some(side) = group {
            if op.is_set() {
                return self.err("no grouping allowed for and, or, unless");
            }
            self.bump()?;
            m.group = Some(side);
            if self.tok == Tok::Sym("(") {
                m.include = self.label_list()?;
            }
        }
        Ok(m)
    }

    /// `(a, b, …)`, possibly empty.
    fn label_list(&mut self) -> Result<Vec<String>, ParseError> {
        self.expect("(")?;
        let mut labels = Vec::new();
        if !self.eat(")")? {
            loop {
                labels.push(self.ident("a label name")?);
                if !self.eat(",")? {
                    break;
                }
            }
            self.expect(")")?;
        }
        Ok(labels)
    }

    fn grouping(&mut self) -> Result<Option<Grouping>, ParseError> {
        let without = match &self.tok {
            Tok::Ident(s) if s.eq_ignore_ascii_case("by") => false,
            Tok::Ident(s) if s.eq_ignore_ascii_case("without") => true,
            _ => return Ok(None),
        };
        self.bump()?;
        let labels = self.label_list()?;
        Ok(Some(Grouping { without, labels }))
    }

    /// `name(…{…} … [range])`, the function's name already read: a range
    /// function over lines (`count_over_time`, `rate`, the byte ones) or
    /// over unwrapped values (`sum_over_time`, …, `quantile_over_time(φ,
    /// …)`, and `rate` with unwrap), then the latter's `by`/`without`.
    fn range_function(&mut self, name: &str) -> Result<MetricExpr, ParseError> {
        self.expect("(")?;
        let mut quantile = None;
        if name == "quantile_over_time" {
            let Tok::Num(q) = self.tok else {
                return self.unexpected("the quantile, a number like 0.99");
            };
            self.bump()?;
            self.expect(",")?;
            quantile = Some(q);
        }
        // Loki also takes `({app="x"} |= "y")[5m]`.
        let parenthesized = self.eat("(")?;
        if self.tok != Tok::Sym("{") {
            return self.unexpected("a log query like {app=\"x\"}");
        }
        let (mut query, mut unwrap) = self.log_query()?;
        if parenthesized {
            self.expect(")")?;
        }
        self.expect("[")?;
        let range_ns = match self.tok {
            Tok::Duration(d) if d > 0 => d,
            Tok::Num(n) if n > 0.0 => (n * 1e9) as i64,
            _ => return self.unexpected("a range like 5m"),
        };
        self.bump()?;
        self.expect("]")?;
        let offset_ns = self.offset()?;
        // ... and the pipeline after the range: `{app="x"}[5m] |= "y"`.
        if query.stages.is_empty() && unwrap.is_none() {
            self.pipeline(&mut query.stages, &mut unwrap)?;
        }
        self.expect(")")?;
        let grouping = self.grouping()?;
        let lines = is_range_fn(name);
        let values = match (is_unwrap_fn(name), lines) {
            (Some(UnwrapFn::Quantile(_)), _) => Some(UnwrapFn::Quantile(quantile.unwrap_or(0.0))),
            (Some(f), _) => Some(f),
            (None, Some(RangeFn::Rate)) if unwrap.is_some() => Some(UnwrapFn::Rate),
            (None, _) => None,
        };
        // Loki groups inside a range function only where the function
        // keeps one value of many (or a statistic of them); it refuses
        // `sum_over_time(…) by (x)`, unwrapped `rate` and `rate_counter`,
        // and `absent_over_time` with an unwrap, rather than summing
        // per group.
        let groups = matches!(
            values,
            Some(
                UnwrapFn::Avg
                    | UnwrapFn::Stddev
                    | UnwrapFn::Stdvar
                    | UnwrapFn::Quantile(_)
                    | UnwrapFn::Min
                    | UnwrapFn::Max
                    | UnwrapFn::First
                    | UnwrapFn::Last
            )
        );
        if grouping.is_some() && unwrap.is_some() && !groups {
            return self.err(format!("grouping not allowed for {name} aggregation"));
        }
        match (values, lines, unwrap) {
            (Some(func), _, Some(unwrap)) => Ok(MetricExpr::Unwrapped {
                func,
                query,
                unwrap,
                range_ns,
                offset_ns,
                grouping,
            }),
            (Some(_), _, None) => self.err(format!(
                "{name} takes the values of a label: add | unwrap <label> before the range"
            )),
            // Lines, not values, decide absence: the filters after unwrap
            // still choose the lines.
            (None, Some(RangeFn::AbsentOverTime), Some(unwrap)) => {
                query
                    .stages
                    .extend(unwrap.post_filters.into_iter().map(Stage::Labels));
                Ok(MetricExpr::Range {
                    func: RangeFn::AbsentOverTime,
                    query,
                    range_ns,
                    offset_ns,
                })
            }
            (None, Some(_), Some(_)) => self.err(format!(
                "{name} counts lines and takes no unwrap; sum_over_time adds unwrapped values"
            )),
            (None, Some(_), None) if grouping.is_some() => self.err(format!(
                "{name} takes no by/without; group with an aggregation, like sum by (x) ({name}(…))"
            )),
            (None, Some(func), None) => Ok(MetricExpr::Range {
                func,
                query,
                range_ns,
                offset_ns,
            }),
            (None, None, _) => self.err(format!("syntax error: unknown function {name:?}")),
        }
    }

    /// `offset 1h` (or `offset -5m`) after a range, or 0.
    fn offset(&mut self) -> Result<i64, ParseError> {
        if !matches!(&self.tok, Tok::Ident(s) if s == "offset") {
            return Ok(0);
        }
        self.bump()?;
        let sign = if self.eat("-")? { -1 } else { 1 };
        let Tok::Duration(d) = self.tok else {
            return self.unexpected("an offset like 1h");
        };
        self.bump()?;
        Ok(sign * d)
    }

    /// `label_replace(v, "dst", "replacement", "src", "regex")`, its name
    /// already read.
    fn label_replace(&mut self) -> Result<MetricExpr, ParseError> {
        self.expect("(")?;
        let inner = self.metric_expr()?;
        if inner.is_scalar() {
            return self
                .err("label_replace needs a vector, like label_replace(rate({app=\"x\"}[5m]), …)");
        }
        let mut args = Vec::with_capacity(4);
        for _ in 0..4 {
            self.expect(",")?;
            args.push((self.at, self.string()?));
        }
        self.expect(")")?;
        let (dst_at, dst) = args[0].clone();
        let valid = dst
            .chars()
            .enumerate()
            .all(|(i, c)| c == '_' || c.is_ascii_alphabetic() || (i > 0 && c.is_ascii_digit()));
        if dst.is_empty() || !valid {
            return Err(self
                .lex
                .err(dst_at, format!("invalid destination label name {dst:?}")));
        }
        let re = self.regex(&args[3].1, true, args[3].0)?;
        Ok(MetricExpr::LabelReplace {
            inner: Box::new(inner),
            dst,
            replacement: args[1].1.clone(),
            src: args[2].1.clone(),
            re,
        })
    }

    fn metric_term(&mut self) -> Result<MetricExpr, ParseError> {
        self.enter()?;
        let e = self.metric_term_inner();
        self.depth -= 1;
        e
    }

    fn metric_term_inner(&mut self) -> Result<MetricExpr, ParseError> {
        match self.tok.clone() {
            Tok::Num(n) => {
                self.bump()?;
                Ok(MetricExpr::Const(n))
            }
            // A signed number literal, `-1` or `+2`, as in Loki's grammar.
            Tok::Sym(sign @ ("-" | "+")) => {
                self.bump()?;
                let Tok::Num(n) = self.tok else {
                    return self.unexpected("a number after the sign");
                };
                self.bump()?;
                Ok(MetricExpr::Const(if sign == "-" { -n } else { n }))
            }
            Tok::Sym("(") => {
                self.bump()?;
                let e = self.metric_expr()?;
                self.expect(")")?;
                Ok(e)
            }
            Tok::Ident(name) => {
                self.bump()?;
                // Loki's function names are case-insensitive: `SUM(...)`.
                let name = name.to_ascii_lowercase();
                if name == "vector" {
                    self.expect("(")?;
                    let Tok::Num(n) = self.tok else {
                        return self.unexpected("a number");
                    };
                    self.bump()?;
                    self.expect(")")?;
                    return Ok(MetricExpr::Vector(n));
                }
                if is_range_fn(&name).is_some() || is_unwrap_fn(&name).is_some() {
                    return self.range_function(&name);
                }
                if name == "label_replace" {
                    return self.label_replace();
                }
                let op = match name.as_str() {
                    "sum" => AggOp::Sum,
                    "count" => AggOp::Count,
                    "min" => AggOp::Min,
                    "max" => AggOp::Max,
                    "avg" => AggOp::Avg,
                    "stddev" => AggOp::Stddev,
                    "stdvar" => AggOp::Stdvar,
                    "topk" => AggOp::Topk(0),
                    "bottomk" => AggOp::Bottomk(0),
                    "approx_topk" => AggOp::ApproxTopk(0),
                    "sort" => AggOp::Sort,
                    "sort_desc" => AggOp::SortDesc,
                    "variants" => {
                        return self.err("variants(…) of (…) is not supported; run each query on its own")
                    }
                    _ => {
                        return self.err(format!(
                            "syntax error: unknown function {name:?}; supported: sum, count, min, max, avg, stddev, stdvar, topk, bottomk, approx_topk, sort, sort_desc, \
                             count_over_time, rate, bytes_over_time, bytes_rate, sum_over_time, avg_over_time, \
                             min_over_time, max_over_time, stddev_over_time, stdvar_over_time, \
                             quantile_over_time, first_over_time, last_over_time, rate_counter, \
                             absent_over_time, label_replace, vector"
                        ))
                    }
                };
                let mut grouping = self.grouping()?;
                self.expect("(")?;
                let op = if let AggOp::Topk(_) | AggOp::Bottomk(_) | AggOp::ApproxTopk(_) = op {
                    let Tok::Num(k) = self.tok else {
                        return self.unexpected(&format!("{name}'s k, a number"));
                    };
                    if !(k >= 1.0 && k.fract() == 0.0 && k <= 10_000.0) {
                        return self.err(format!("{name} needs a whole k between 1 and 10000"));
                    }
                    self.bump()?;
                    self.expect(",")?;
                    match op {
                        AggOp::Topk(_) => AggOp::Topk(k as usize),
                        AggOp::Bottomk(_) => AggOp::Bottomk(k as usize),
                        _ => AggOp::ApproxTopk(k as usize),
                    }
                } else {
                    op
                };
                let inner = self.metric_expr()?;
                self.expect(")")?;
                if grouping.is_none() {
                    grouping = self.grouping()?;
                }
                if matches!(op, AggOp::Sort | AggOp::SortDesc) && grouping.is_some() {
                    return self.err(format!("{name} takes no by/without"));
                }
                if matches!(op, AggOp::ApproxTopk(_)) && grouping.is_some() {
                    return self.err(
                        "approx_topk takes no by/without: group inside it, as in approx_topk(k, sum by (x) (...))",
                    );
                }
                if inner.is_scalar() {
                    return self
                        .err("aggregations need a vector inside, like sum(rate({app=\"x\"}[5m]))");
                }
                Ok(MetricExpr::Agg {
                    op,
                    grouping,
                    inner: Box::new(inner),
                })
            }
            _ => self.unexpected("a log query {...} or a metric expression"),
        }
    }
}

/// A `json` parameter's expression, as Loki writes them: `a.b`, `a[0]`,
/// `a["key with spaces"]`, in any chain.
fn json_path(expr: &str) -> Option<Vec<JsonPath>> {
    let b = expr.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    let ident = |i: &mut usize| {
        let start = *i;
        while *i < b.len() && (b[*i].is_ascii_alphanumeric() || b[*i] == b'_') {
            *i += 1;
        }
        (start < *i).then(|| expr[start..*i].to_owned())
    };
    out.push(JsonPath::Key(ident(&mut i)?));
    while i < b.len() {
        match b[i] {
            b'.' => {
                i += 1;
                out.push(JsonPath::Key(ident(&mut i)?));
            }
            b'[' if b.get(i + 1) == Some(&b'"') => {
                let end = i + 2 + expr[i + 2..].find("\"]")?;
                out.push(JsonPath::Key(expr[i + 2..end].to_owned()));
                i = end + 2;
            }
            b'[' => {
                let end = i + 1 + expr[i + 1..].find(']')?;
                out.push(JsonPath::Index(expr[i + 1..end].parse().ok()?));
                i = end + 1;
            }
            _ => return None,
        }
    }
    Some(out)
}

/// Parses a LogQL query.
/// What [`tokens`] yields: a token's kind and its text as written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum TokenKind {
    Ident,
    /// A quoted or backtick string.
    Str,
    /// A number, a duration or a byte size.
    Number,
    /// An operator or bracket.
    Sym,
}

/// The tokens of `src`, comments and white space left out, each with the
/// text it was written as (a string with its quotes).
pub(super) fn tokens(src: &str) -> Result<Vec<(TokenKind, &str)>, ParseError> {
    let mut lex = Lexer { src, pos: 0 };
    let mut out = Vec::new();
    loop {
        let (tok, at) = lex.next()?;
        let kind = match tok {
            Tok::Eof => return Ok(out),
            Tok::Ident(_) => TokenKind::Ident,
            Tok::Str(_) => TokenKind::Str,
            Tok::Num(_) | Tok::Duration(_) | Tok::Bytes(_) => TokenKind::Number,
            Tok::Sym(_) => TokenKind::Sym,
        };
        out.push((kind, &src[at..lex.pos]));
    }
}

pub fn parse(src: &str) -> Result<Query, ParseError> {
    let mut p = Parser {
        lex: Lexer { src, pos: 0 },
        tok: Tok::Eof,
        at: 0,
        depth: 0,
    };
    p.bump()?;
    if p.tok == Tok::Eof {
        return p.err("syntax error: empty query");
    }
    p.query()
}

#[cfg(test)]
mod tests;
