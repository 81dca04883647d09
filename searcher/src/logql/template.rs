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
            }),
        })
    }

    pub fn text(&self) -> &str {
        &self.inner.text
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
                    collect_fields(&a.toks, &mut out.fields);
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
/// field of each chain (`.a` of `.a.b`) and fields of `$`.
fn collect_fields(toks: &[Tok], fields: &mut Vec<String>) {
    let mut prev: Option<&Tok> = None;
    for tok in toks {
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
}

#[cfg(test)]
mod tests {
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
        assert!(
            render_err("{{ range 1.5 }}x{{ end }}", &[]).contains("range can't iterate over 1.5")
        );
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
        assert!(
            render_err("{{.foo | now}}", FB).contains("wrong number of args for now: want 0 got 1")
        );
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
            render_err(r#"{{ regexReplaceAllLiteral "[" "x" "y" }}"#, &[])
                .starts_with("error calling")
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
        assert!(
            render_err("{{ mod 1 .zero }}", &[("zero", "0")]).contains("integer divide by zero")
        );
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
        check("{{ round 123.555555 3 }} {{ round 123.88571428571 5 .2 }} {{ round 123.88571428571 5 }}", "123.556 123.88572 123.88571");
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
        assert!(
            render_err(r#"{{ bytes "3 parsecs" }}"#, &[]).contains("unhandled size name: parsecs")
        );
        assert_eq!(render("{{ .foo | duration }}", &[("foo", "3ms")]), "0.003");
        assert_eq!(
            render("{{ .foo | duration_seconds }}", &[("foo", "3m10s")]),
            "190"
        );
        check(
            r#"{{ duration "1h30m" }} {{ duration "-1.5s" }} {{ duration "0" }}"#,
            "5400 -1.5 0",
        );
        assert!(render_err(r#"{{ duration "5" }}"#, &[])
            .contains(r#"time: missing unit in duration "5""#));
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
        assert!(
            render_err(r#"{{ unixEpoch "2021" }}"#, &[]).contains("expected time.Time; got string")
        );
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
        assert!(
            parse_err(r#"{{ define "x" }}y{{ end }}{{ template "x" }}"#).contains("not supported")
        );
        let deep_ifs = format!("{}x{}", "{{ if 1 }}".repeat(51), "{{ end }}".repeat(51));
        assert!(parse_err(&deep_ifs).contains("nested too deeply"));
        let deep_parens = format!("{{{{ {}1{} }}}}", "(".repeat(51), ")".repeat(51));
        assert!(parse_err(&deep_parens).contains("nested too deeply"));
    }

    #[test]
    fn render_errors_are_one_line() {
        assert!(render_err("{{ upper 5 }}", &[])
            .contains("wrong type for value; expected string; got int"));
        assert!(render_err("{{ repeat 3 }}", &[])
            .contains("wrong number of args for repeat: want 2 got 1"));
        assert!(render_err("{{ repeat -1 \"x\" }}", &[]).contains("negative Repeat count"));
        assert!(render_err("{{ trunc .n \"abc\" }}", &[("n", "1")])
            .contains("expected int; got string"));
        assert!(
            render_err(r#"{{ index (fromJson "[1]") 3 }}"#, &[]).contains("index out of range: 3")
        );
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
}
