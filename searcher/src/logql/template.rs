//! `line_format` / `label_format` templates with Loki's semantics: Go
//! `text/template` with `missingkey=zero` over the label map, plus Loki's
//! template functions.
//!
//! Execution is delegated to the `gtmpl` crate, a port of Go's engine. gtmpl
//! departs from Go in ways users would see (missing keys are errors, raw
//! strings process escapes, floats and maps print the Rust way, its `printf`
//! ignores flags, no recursion limits), so a port of Go's template lexer runs
//! first: it validates the text, records the labels it reads, and re-emits it
//! in a canonical form that gtmpl handles like Go, with every printed value
//! going through a Go-style printer and loops charged to per-render budgets.
//! Functions live in `funcs`, Go's `fmt` in `gofmt`, Go time layouts in
//! `layout`. Parsing and rendering are also wrapped in `catch_unwind`, since
//! gtmpl is third-party code: no input may panic.

mod funcs;
mod gofmt;
mod layout;

use std::collections::HashMap;
use std::fmt;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

use gtmpl::error::ParseError;
use gtmpl::{Context, Value};

use funcs::{FLOAT_FN, PRINT_FN, RANGE_FN, RANGE_KV_FN};

/// Deepest nesting of `if`/`with`/`range` blocks plus parentheses. gtmpl
/// recurses on both when parsing and rendering, so this bounds its stack use
/// (about 1 MiB at this depth in a debug build).
const MAX_NESTING: usize = 50;
/// Longest template text accepted.
const MAX_TEMPLATE_LEN: usize = 1 << 20;

/// A compiled `line_format` / `label_format` template.
#[derive(Clone)]
pub struct Template {
    inner: Arc<Compiled>,
}

struct Compiled {
    text: String,
    program: gtmpl::Template,
    /// Top-level field names the template references (rendered as "" when absent).
    fields: Vec<String>,
    /// It may read the label map itself (`{{ . }}`, `{{ range $k, $v := $ }}`),
    /// so any label.
    whole: bool,
    /// It only fills in labels (`{{.name}}`, with `{{-`/`-}}` trimming).
    plain: bool,
}

impl fmt::Debug for Template {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Template").field(&self.inner.text).finish()
    }
}

impl PartialEq for Template {
    fn eq(&self, other: &Self) -> bool {
        self.inner.text == other.inner.text
    }
}

impl Eq for Template {}

impl Template {
    /// Parses once per query. Err is a one-line human message (e.g. `function "nosuch" not defined`).
    pub fn parse(text: &str) -> Result<Template, String> {
        if text.len() > MAX_TEMPLATE_LEN {
            return Err(format!(
                "template: line:1: template longer than {MAX_TEMPLATE_LEN} bytes"
            ));
        }
        let front = FrontEnd::run(text)?;
        let program = compile(&front.code).map_err(|(gtmpl_line, msg)| {
            format!("template: line:{}: {msg}", front.source_line(gtmpl_line))
        })?;
        Ok(Template {
            inner: Arc::new(Compiled {
                text: text.to_string(),
                program,
                fields: front.fields,
                whole: front.whole,
                plain: fills_only_labels(text),
            }),
        })
    }

    pub fn text(&self) -> &str {
        &self.inner.text
    }

    /// The labels the template reads, or `None` if it may read any (it
    /// uses the label map itself, `.` or `$`).
    pub fn labels_read(&self) -> Option<&[String]> {
        (!self.inner.whole).then_some(&self.inner.fields[..])
    }

    /// Whether the template only fills in labels, `{{.name}}`: most do,
    /// and the caller may then fill them in without the engine.
    pub fn is_plain(&self) -> bool {
        self.inner.plain
    }

    /// Renders. `labels` lists every label visible to the template (stream and extracted labels,
    /// later entries winning on duplicate names); a referenced label that is absent renders as "".
    /// `line` is the current log line (what `__line__` returns) and `ts_ns` the entry's
    /// Unix-nanosecond timestamp (`__timestamp__`). Err is a one-line message, which the caller
    /// puts in `__error_details__` with `__error__=TemplateFormatErr`.
    pub fn render(
        &self,
        labels: &[(&str, &str)],
        line: &str,
        ts_ns: i64,
    ) -> Result<String, String> {
        let fields = &self.inner.fields;
        let mut map: HashMap<String, Value> = HashMap::with_capacity(labels.len() + fields.len());
        for (name, value) in labels {
            map.insert((*name).to_string(), Value::String((*value).to_string()));
        }
        for name in fields {
            if !map.contains_key(name) {
                map.insert(name.clone(), Value::String(String::new()));
            }
        }
        let ctx = Context::from(Value::Map(map));
        let program = &self.inner.program;
        let result = funcs::with_render_state(line, ts_ns, || {
            catch_unwind(AssertUnwindSafe(|| {
                program.render(&ctx).map_err(|e| one_line(&e.to_string()))
            }))
        });
        result.unwrap_or_else(|_| Err("template execution failed: internal error".to_string()))
    }
}

/// Whether every action of `template` is a plain `{{.name}}` (with Go's
/// `{{-`/`-}}` trimming).
fn fills_only_labels(template: &str) -> bool {
    let mut rest = template;
    while let Some(open) = rest.find("{{") {
        let Some(close) = rest[open..].find("}}") else {
            return false;
        };
        let inner =
            rest[open + 2..open + close].trim_matches(|c: char| c == '-' || c.is_whitespace());
        let plain = inner.strip_prefix('.').is_some_and(|name| {
            !name.is_empty() && name.chars().all(|c| c == '_' || c.is_ascii_alphanumeric())
        });
        if !plain {
            return false;
        }
        rest = &rest[open + close + 2..];
    }
    true
}

fn one_line(s: &str) -> String {
    s.replace(['\n', '\r'], " ")
}

/// Parses canonical template text with gtmpl and Loki's function map.
/// Err is (gtmpl's line number, bare message).
fn compile(code: &str) -> Result<gtmpl::Template, (usize, String)> {
    let parsed = catch_unwind(AssertUnwindSafe(|| {
        let mut t = gtmpl::Template::default();
        t.add_funcs(funcs::FUNCS);
        match t.parse(code) {
            Ok(()) => Ok(t),
            Err(ParseError::WithContext(ctx, msg)) => Err((ctx.line, tidy_parse_message(&msg))),
            Err(e) => Err((usize::MAX, one_line(&e.to_string()))),
        }
    }));
    parsed.unwrap_or_else(|_| Err((usize::MAX, "internal parser error".to_string())))
}

/// Words gtmpl's messages like Go's: `function "x" not defined`.
fn tidy_parse_message(msg: &str) -> String {
    match msg
        .strip_prefix("function ")
        .and_then(|m| m.strip_suffix(" not defined"))
    {
        Some(name) => format!("function {name:?} not defined"),
        None => one_line(msg),
    }
}

// ---------------------------------------------------------------------------
// Front end: Go's template lexer, producing canonical text for gtmpl.

/// A numeric or character constant.
#[derive(Debug, Clone, PartialEq)]
enum Number {
    Int(i64),
    Uint(u64),
    Float(f64),
}

/// A token inside an action, following Go's `text/template/parse` lexer.
#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Space,
    Dot,
    /// `.name` (name stored without the dot).
    Field(String),
    /// `$` or `$name`.
    Var(String),
    /// Identifiers, keywords, `true`, `false`, `nil`.
    Word(String),
    /// A string constant, already unquoted.
    Str(String),
    Num(Number),
    Pipe,
    LParen,
    RParen,
    Declare,
    Assign,
    Comma,
    /// Any other printable ASCII character (the parser rejects it).
    Char(char),
}

struct Action {
    /// Byte offset of the opening `{{`, for error line numbers.
    start: usize,
    trim_left: bool,
    trim_right: bool,
    comment: bool,
    toks: Vec<Tok>,
    /// Deepest parenthesis nesting inside the action.
    max_parens: usize,
}

enum Seg<'a> {
    /// Literal text and its byte offset in the source.
    Text(usize, &'a str),
    Action(Action),
}

/// The front end's output.
struct FrontEnd {
    /// Canonical template text for gtmpl.
    code: String,
    fields: Vec<String>,
    whole: bool,
    /// (gtmpl's line counter, source line) at each piece of `code`, to place
    /// gtmpl's parse errors. gtmpl counts one "line" per text item and per
    /// delimiter, so its numbers must be translated.
    lines: Vec<(usize, usize)>,
    /// Line of the end of the source.
    last_line: usize,
}

fn is_space(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\r' | b'\n')
}

fn is_alnum(c: char) -> bool {
    c == '_' || c.is_alphanumeric()
}

/// Go's `%#U`.
fn describe(c: char) -> String {
    if gofmt::is_print(c) {
        format!("U+{:04X} '{c}'", c as u32)
    } else {
        format!("U+{:04X}", c as u32)
    }
}

fn line_of(src: &str, pos: usize) -> usize {
    1 + src.as_bytes()[..pos.min(src.len())]
        .iter()
        .filter(|&&c| c == b'\n')
        .count()
}

struct Lexer<'a> {
    src: &'a str,
    b: &'a [u8],
    /// Start of the action being lexed.
    start: usize,
}

impl<'a> Lexer<'a> {
    fn error<T>(&self, msg: impl fmt::Display) -> Result<T, String> {
        Err(format!(
            "template: line:{}: {msg}",
            line_of(self.src, self.start)
        ))
    }

    fn char_at(&self, p: usize) -> Option<char> {
        self.src.get(p..).and_then(|s| s.chars().next())
    }

    /// Go's `atRightDelim`: at a closing `}}` or ` -}}`, Some((trim marker, length)).
    fn at_right_delim(&self, p: usize) -> Option<(bool, usize)> {
        let rest = &self.src[p..];
        if rest.len() >= 4 && is_space(self.b[p]) && rest[1..].starts_with("-}}") {
            Some((true, 4))
        } else if rest.starts_with("}}") {
            Some((false, 2))
        } else {
            None
        }
    }

    /// Go's `atTerminator`: what may follow a word, field or variable.
    fn at_terminator(&self, p: usize) -> bool {
        match self.b.get(p) {
            None => true,
            Some(&c) => is_space(c) || b".,|:)(".contains(&c) || self.src[p..].starts_with("}}"),
        }
    }

    fn alnum_run(&self, mut p: usize) -> usize {
        while let Some(c) = self.char_at(p).filter(|&c| is_alnum(c)) {
            p += c.len_utf8();
        }
        p
    }

    /// gtmpl's lexer cannot start a field or variable name with a multi-byte
    /// character (it splits the character), so such names are refused.
    fn ascii_start(&self, name: &str, what: &str) -> Result<(), String> {
        match name.chars().next() {
            Some(c) if !c.is_ascii() => {
                self.error(format!("{what} names must start with an ASCII character"))
            }
            _ => Ok(()),
        }
    }

    /// Checks that a word ending at `p` is properly terminated.
    fn terminated(&self, p: usize) -> Result<(), String> {
        if self.at_terminator(p) {
            Ok(())
        } else {
            let c = self.char_at(p).unwrap_or('\u{FFFD}');
            self.error(format!("bad character {}", describe(c)))
        }
    }

    fn lex_segments(src: &'a str) -> Result<Vec<Seg<'a>>, String> {
        let mut lexer = Lexer {
            src,
            b: src.as_bytes(),
            start: 0,
        };
        let mut segs = Vec::new();
        let mut pos = 0;
        while let Some(off) = src[pos..].find("{{") {
            let start = pos + off;
            segs.push(Seg::Text(pos, &src[pos..start]));
            lexer.start = start;
            let (action, next) = lexer.lex_action()?;
            segs.push(Seg::Action(action));
            pos = next;
        }
        segs.push(Seg::Text(pos, &src[pos..]));
        Ok(segs)
    }

    fn lex_action(&self) -> Result<(Action, usize), String> {
        let start = self.start;
        let mut p = start + 2;
        let trim_left =
            self.b.get(p) == Some(&b'-') && self.b.get(p + 1).is_some_and(|&c| is_space(c));
        if trim_left {
            p += 2;
        }
        let mut action = Action {
            start,
            trim_left,
            trim_right: false,
            comment: false,
            toks: Vec::new(),
            max_parens: 0,
        };
        if self.src[p..].starts_with("/*") {
            let Some(close) = self.src[p + 2..].find("*/") else {
                return self.error("unclosed comment");
            };
            p += 2 + close + 2;
            let Some((trim, len)) = self.at_right_delim(p) else {
                return self.error("comment ends before closing delimiter");
            };
            action.comment = true;
            action.trim_right = trim;
            return Ok((action, p + len));
        }
        let mut depth = 0usize;
        loop {
            if let Some((trim, len)) = self.at_right_delim(p) {
                if depth > 0 {
                    return self.error("unclosed left paren");
                }
                action.trim_right = trim;
                return Ok((action, p + len));
            }
            let Some(c) = self.char_at(p) else {
                return self.error("unclosed action");
            };
            let (tok, next) = match c {
                ' ' | '\t' | '\r' | '\n' => {
                    let mut q = p;
                    while q < self.b.len() && is_space(self.b[q]) {
                        q += 1;
                    }
                    // Leave the space of a " -}}" to the delimiter.
                    if self.src[q..].starts_with("-}}") {
                        q -= 1;
                    }
                    if q == p {
                        continue;
                    }
                    (Tok::Space, q)
                }
                '"' => self.lex_quote(p)?,
                '`' => {
                    let Some(len) = self.src[p + 1..].find('`') else {
                        return self.error("unterminated raw quoted string");
                    };
                    let raw = self.src[p + 1..p + 1 + len].replace('\r', "");
                    (Tok::Str(raw), p + len + 2)
                }
                '\'' => self.lex_char(p)?,
                '$' => {
                    let q = self.alnum_run(p + 1);
                    self.terminated(q)?;
                    self.ascii_start(&self.src[p + 1..q], "variable")?;
                    (Tok::Var(self.src[p..q].to_string()), q)
                }
                '(' => {
                    depth += 1;
                    if depth > MAX_NESTING {
                        return self.error("parentheses nested too deeply");
                    }
                    action.max_parens = action.max_parens.max(depth);
                    (Tok::LParen, p + 1)
                }
                ')' => {
                    if depth == 0 {
                        return self.error("unexpected right paren");
                    }
                    depth -= 1;
                    (Tok::RParen, p + 1)
                }
                ':' if self.b.get(p + 1) == Some(&b'=') => (Tok::Declare, p + 2),
                ':' => return self.error("expected :="),
                '=' => (Tok::Assign, p + 1),
                '|' => (Tok::Pipe, p + 1),
                ',' => (Tok::Comma, p + 1),
                '.' if self.b.get(p + 1).is_some_and(u8::is_ascii_digit) => self.lex_number(p)?,
                '.' => {
                    let q = self.alnum_run(p + 1);
                    self.terminated(q)?;
                    self.ascii_start(&self.src[p + 1..q], "field")?;
                    if q == p + 1 {
                        (Tok::Dot, q)
                    } else {
                        (Tok::Field(self.src[p + 1..q].to_string()), q)
                    }
                }
                '+' | '-' | '0'..='9' => self.lex_number(p)?,
                c if is_alnum(c) => {
                    let q = self.alnum_run(p);
                    self.terminated(q)?;
                    let word = &self.src[p..q];
                    if !c.is_ascii() {
                        // Every function and keyword is ASCII.
                        return self.error(format!("function {word:?} not defined"));
                    }
                    (Tok::Word(word.to_string()), q)
                }
                c if c.is_ascii() && !c.is_ascii_control() => (Tok::Char(c), p + 1),
                c => {
                    return self.error(format!("unrecognized character in action: {}", describe(c)))
                }
            };
            action.toks.push(tok);
            p = next;
        }
    }

    fn lex_quote(&self, p: usize) -> Result<(Tok, usize), String> {
        let mut q = p + 1;
        loop {
            match self.b.get(q) {
                None | Some(b'\n') => return self.error("unterminated quoted string"),
                Some(b'\\') if self.b.get(q + 1).is_some_and(|&c| c != b'\n') => q += 2,
                Some(b'"') => break,
                Some(_) => q += 1,
            }
        }
        match unquote(&self.src[p + 1..q], '"') {
            Some(s) => Ok((Tok::Str(s), q + 1)),
            None => self.error("invalid syntax"),
        }
    }

    fn lex_char(&self, p: usize) -> Result<(Tok, usize), String> {
        let mut q = p + 1;
        loop {
            match self.b.get(q) {
                None | Some(b'\n') => return self.error("unterminated character constant"),
                Some(b'\\') if self.b.get(q + 1).is_some_and(|&c| c != b'\n') => q += 2,
                Some(b'\'') => break,
                Some(_) => q += 1,
            }
        }
        let text = &self.src[p..=q];
        let mut chars = unquote_runes(&self.src[p + 1..q], '\'')
            .unwrap_or_default()
            .into_iter();
        match (chars.next(), chars.next()) {
            (Some(c), None) => Ok((Tok::Num(Number::Int(i64::from(u32::from(c)))), q + 1)),
            _ => self.error(format!("malformed character constant: {text}")),
        }
    }

    /// Go's `scanNumber`, then the parser's number conversion.
    fn lex_number(&self, p: usize) -> Result<(Tok, usize), String> {
        let b = self.b;
        let mut q = p;
        let accept = |q: &mut usize, set: &[u8]| -> bool {
            if b.get(*q).is_some_and(|c| set.contains(c)) {
                *q += 1;
                true
            } else {
                false
            }
        };
        let accept_run = |q: &mut usize, set: &[u8]| while accept(q, set) {};
        const DECIMAL: &[u8] = b"0123456789_";
        const HEX: &[u8] = b"0123456789abcdefABCDEF_";
        accept(&mut q, b"+-");
        let mut digits = DECIMAL;
        if accept(&mut q, b"0") {
            if accept(&mut q, b"xX") {
                digits = HEX;
            } else if accept(&mut q, b"oO") {
                digits = b"01234567_";
            } else if accept(&mut q, b"bB") {
                digits = b"01_";
            }
        }
        accept_run(&mut q, digits);
        if accept(&mut q, b".") {
            accept_run(&mut q, digits);
        }
        if digits == DECIMAL && accept(&mut q, b"eE") {
            accept(&mut q, b"+-");
            accept_run(&mut q, DECIMAL);
        }
        if digits == HEX && accept(&mut q, b"pP") {
            accept(&mut q, b"+-");
            accept_run(&mut q, DECIMAL);
        }
        accept(&mut q, b"i");
        if let Some(c) = self.char_at(q).filter(|&c| is_alnum(c)) {
            let text = &self.src[p..q + c.len_utf8()];
            return self.error(format!("bad number syntax: {text:?}"));
        }
        let text = &self.src[p..q];
        match number_value(text) {
            Some(n) => Ok((Tok::Num(n), q)),
            None => self.error(format!("illegal number syntax: {text:?}")),
        }
    }
}

/// The value of a Go number constant, as `text/template` evaluates it.
fn number_value(text: &str) -> Option<Number> {
    if text.ends_with('i') {
        return None; // complex constants are not supported
    }
    if let Some(i) = funcs::parse_go_int(text) {
        return Some(Number::Int(i));
    }
    if let Some(u) = funcs::parse_go_uint(text) {
        return Some(Number::Uint(u));
    }
    if !text.contains(['.', 'e', 'E', 'p', 'P']) {
        return None;
    }
    funcs::parse_go_float(text).map(Number::Float)
}

/// Go's `strconv.Unquote` of a quoted body, as runes (None: invalid syntax).
fn unquote_runes(body: &str, quote: char) -> Option<Vec<char>> {
    let bytes = unquote_bytes(body, quote)?;
    Some(String::from_utf8_lossy(&bytes).chars().collect())
}

fn unquote(body: &str, quote: char) -> Option<String> {
    Some(String::from_utf8_lossy(&unquote_bytes(body, quote)?).into_owned())
}

/// Decodes Go escapes; `\x` and octal escapes may produce arbitrary bytes.
fn unquote_bytes(body: &str, quote: char) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(body.len());
    let mut chars = body.chars();
    let hex = |chars: &mut std::str::Chars<'_>, n: usize| -> Option<u32> {
        let digits: String = chars.by_ref().take(n).collect();
        (digits.len() == n).then_some(())?;
        u32::from_str_radix(&digits, 16)
            .ok()
            .filter(|_| digits.bytes().all(|c| c.is_ascii_hexdigit()))
    };
    let mut buf = [0u8; 4];
    while let Some(c) = chars.next() {
        if c == quote {
            return None;
        }
        if c != '\\' {
            out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            continue;
        }
        let e = chars.next()?;
        let decoded: char = match e {
            'a' => '\u{7}',
            'b' => '\u{8}',
            'f' => '\u{c}',
            'n' => '\n',
            'r' => '\r',
            't' => '\t',
            'v' => '\u{b}',
            '\\' => '\\',
            '\'' | '"' if e == quote => e,
            'x' => {
                let v = hex(&mut chars, 2)?;
                if quote == '\'' {
                    char::from_u32(v)?
                } else {
                    out.push(u8::try_from(v).ok()?);
                    continue;
                }
            }
            '0'..='7' => {
                let rest: String = chars.by_ref().take(2).collect();
                let digits = format!("{e}{rest}");
                let v = u32::from_str_radix(&digits, 8)
                    .ok()
                    .filter(|_| digits.len() == 3)?;
                let v = u8::try_from(v).ok()?;
                if quote == '\'' {
                    char::from(v)
                } else {
                    out.push(v);
                    continue;
                }
            }
            'u' => char::from_u32(hex(&mut chars, 4)?)?,
            'U' => char::from_u32(hex(&mut chars, 8)?)?,
            _ => return None,
        };
        out.extend_from_slice(decoded.encode_utf8(&mut buf).as_bytes());
    }
    Some(out)
}

/// A string constant in the escape subset gtmpl understands.
fn gtmpl_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[derive(PartialEq, Eq)]
enum Block {
    If,
    With,
    Range,
}

impl FrontEnd {
    fn run(src: &str) -> Result<FrontEnd, String> {
        let segs = Lexer::lex_segments(src)?;
        let mut out = FrontEnd {
            code: String::with_capacity(src.len() + 64),
            fields: Vec::new(),
            whole: false,
            lines: Vec::new(),
            last_line: line_of(src, src.len()),
        };
        let mut items = 0usize;
        let mut blocks: Vec<Block> = Vec::new();
        for (i, seg) in segs.iter().enumerate() {
            match seg {
                Seg::Text(start, text) => {
                    let mut text: &str = text;
                    if i > 0 && matches!(&segs[i - 1], Seg::Action(a) if a.trim_right) {
                        text = text.trim_start_matches([' ', '\t', '\r', '\n']);
                    }
                    if matches!(segs.get(i + 1), Some(Seg::Action(a)) if a.trim_left) {
                        text = text.trim_end_matches([' ', '\t', '\r', '\n']);
                    }
                    if text.is_empty() {
                        continue;
                    }
                    let line = line_of(src, *start);
                    if blocks.contains(&Block::Range) {
                        // Text inside a loop is printed through the budgeted printer.
                        out.lines.extend([(items + 1, line), (items + 2, line)]);
                        items += 2;
                        out.code
                            .push_str(&format!("{{{{ {} | {PRINT_FN} }}}}", gtmpl_quote(text)));
                    } else {
                        out.lines.push((items + 1, line));
                        items += 1;
                        out.code.push_str(text);
                    }
                }
                Seg::Action(a) if a.comment => {}
                Seg::Action(a) => {
                    out.whole |= collect_fields(&a.toks, &mut out.fields);
                    let line = line_of(src, a.start);
                    out.lines.extend([(items + 1, line), (items + 2, line)]);
                    items += 2;
                    let action = Self::action(a, &mut blocks)
                        .map_err(|msg| format!("template: line:{line}: {msg}"))?;
                    out.code.push_str(&action);
                }
            }
        }
        Ok(out)
    }

    /// The source line for one of gtmpl's line numbers.
    fn source_line(&self, gtmpl_line: usize) -> usize {
        match self.lines.iter().rev().find(|(g, _)| *g <= gtmpl_line) {
            Some(&(_, line)) => line,
            None => self.last_line,
        }
    }

    /// The canonical text of one action (Err: a bare message).
    fn action(a: &Action, blocks: &mut Vec<Block>) -> Result<String, String> {
        if blocks.len() + a.max_parens > MAX_NESTING {
            return Err("expressions nested too deeply".to_string());
        }
        let toks: Vec<&Tok> = a.toks.iter().filter(|t| **t != Tok::Space).collect();
        let keyword = match toks.first() {
            Some(Tok::Word(w)) => w.as_str(),
            _ => "",
        };
        let declares = matches!(
            toks.as_slice(),
            [Tok::Var(_), Tok::Declare | Tok::Assign, ..]
                | [
                    Tok::Var(_),
                    Tok::Comma,
                    Tok::Var(_),
                    Tok::Declare | Tok::Assign,
                    ..
                ]
        );
        let suffix = match keyword {
            "if" | "with" | "range" => {
                if blocks.len() + a.max_parens >= MAX_NESTING {
                    return Err("control structures nested too deeply".to_string());
                }
                blocks.push(match keyword {
                    "if" => Block::If,
                    "with" => Block::With,
                    _ => Block::Range,
                });
                match (keyword, &toks[1..]) {
                    (
                        "range",
                        [Tok::Var(_), Tok::Comma, Tok::Var(_), Tok::Declare | Tok::Assign, ..],
                    ) => {
                        format!(" | {RANGE_KV_FN}")
                    }
                    ("range", _) => format!(" | {RANGE_FN}"),
                    _ => String::new(),
                }
            }
            "end" => {
                blocks.pop();
                String::new()
            }
            "define" | "template" | "block" => {
                return Err(format!("{{{{{keyword}}}}} is not supported"))
            }
            "else" | "break" | "continue" => String::new(),
            _ if declares || toks.is_empty() => String::new(),
            _ => format!(" | {PRINT_FN}"),
        };
        Ok(format!("{{{{ {}{suffix} }}}}", canonical(&a.toks)))
    }
}

/// Re-emits action tokens in the syntax subset gtmpl parses faithfully.
fn canonical(toks: &[Tok]) -> String {
    let start = toks
        .iter()
        .position(|t| *t != Tok::Space)
        .unwrap_or(toks.len());
    let end = toks
        .iter()
        .rposition(|t| *t != Tok::Space)
        .map_or(start, |e| e + 1);
    let mut out = String::new();
    let mut after_pipe = false;
    for tok in &toks[start..end] {
        match tok {
            Tok::Space => out.push(' '),
            Tok::Dot => out.push('.'),
            Tok::Field(name) => {
                out.push('.');
                out.push_str(name);
            }
            Tok::Var(v) | Tok::Word(v) => out.push_str(v),
            Tok::Str(s) => out.push_str(&gtmpl_quote(s)),
            Tok::Num(Number::Int(i)) => out.push_str(&i.to_string()),
            Tok::Num(Number::Uint(u)) => out.push_str(&u.to_string()),
            // gtmpl cannot represent most floats; build them with a function call,
            // except where they start a pipeline stage (an error in Go anyway).
            Tok::Num(Number::Float(f)) if !after_pipe => {
                out.push_str(&format!("({FLOAT_FN} \"{f:e}\")"));
            }
            Tok::Num(Number::Float(f)) => out.push_str(&format!("{f:e}")),
            Tok::Pipe => out.push('|'),
            Tok::LParen => out.push('('),
            Tok::RParen => out.push(')'),
            Tok::Declare => out.push_str(":="),
            Tok::Assign => out.push('='),
            Tok::Comma => out.push(','),
            Tok::Char(c) => out.push(*c),
        }
        if *tok != Tok::Space {
            after_pipe = *tok == Tok::Pipe;
        }
    }
    out
}

/// Collects label names the template reads from the top-level map: the first
/// field of each chain (`.a` of `.a.b`) and fields of `$`. `true` if it
/// may read the map itself: a bare `.` or `$` (inside `range` or `with`
/// a `.` is something else, which this does not tell apart).
fn collect_fields(toks: &[Tok], fields: &mut Vec<String>) -> bool {
    let mut whole = false;
    let mut prev: Option<&Tok> = None;
    for (i, tok) in toks.iter().enumerate() {
        let next_is_field = matches!(toks.get(i + 1), Some(Tok::Field(_)));
        match tok {
            Tok::Dot => whole = true,
            Tok::Var(v) if v == "$" && !next_is_field => whole = true,
            _ => {}
        }
        if let Tok::Field(name) = tok {
            let chained = match prev {
                Some(Tok::Var(v)) => v != "$",
                Some(Tok::Field(_) | Tok::RParen | Tok::Word(_) | Tok::Dot) => true,
                _ => false,
            };
            if !chained && !fields.contains(name) {
                fields.push(name.clone());
            }
        }
        prev = Some(tok);
    }
    whole
}

#[cfg(test)]
mod tests;
