//! Go semantics for template values: how `gtmpl` values map onto Go types, Go's
//! truthiness, and a port of the parts of Go's `fmt` that templates reach
//! (`print`, `println`, `printf` and the default `%v` used to print actions).
//!
//! gtmpl prints floats and maps the Rust way (`3000000`, `{"a": ..}`), and its
//! `printf` mishandles flags; Loki users see Go's output (`3e+06`, `map[a:1]`).

use std::collections::HashMap;

use gtmpl_value::{Number, Value};

use super::layout::GoTime;

/// Key under which a `time.Time` is stored in a `Value::Object`. Label maps and
/// JSON objects are `Value::Map`s, so `Object`s only ever carry these values.
const TIME_KEY: &str = "\u{0}time";
/// Key of a `float64` stored in a `Value::Object` (its IEEE bits).
const FLOAT_KEY: &str = "\u{0}f64";

/// A Go `float64` as a template value.
///
/// `gtmpl_value::Number` cannot hold most floats: converting an f64 turns any
/// value with a fraction below epsilon (integers, negative numbers, 1e-20) into
/// an integer. Floats are therefore objects; +0.0 is the empty object so that
/// `if` treats it as false, like Go.
pub(crate) fn float_value(f: f64) -> Value {
    if f == 0.0 && f.is_sign_positive() {
        return Value::Object(HashMap::new());
    }
    Value::Object(HashMap::from([(
        FLOAT_KEY.to_string(),
        Value::from(f.to_bits()),
    )]))
}

pub(crate) fn time_to_value(t: GoTime) -> Value {
    let fields = vec![
        Value::from(t.secs),
        Value::from(t.nsec),
        Value::from(t.offset),
        Value::from(t.zone),
    ];
    Value::Object(HashMap::from([(
        TIME_KEY.to_string(),
        Value::Array(fields),
    )]))
}

pub(crate) fn value_to_time(v: &Value) -> Option<GoTime> {
    let Value::Object(o) = v else { return None };
    let Some(Value::Array(f)) = o.get(TIME_KEY) else {
        return None;
    };
    match f.as_slice() {
        [Value::Number(s), Value::Number(n), Value::Number(off), Value::String(zone)] => {
            Some(GoTime {
                secs: s.as_i64()?,
                nsec: u32::try_from(n.as_u64()?).ok()?,
                offset: i32::try_from(off.as_i64()?).ok()?,
                zone: zone.clone(),
            })
        }
        _ => None,
    }
}

/// A template value seen as the Go value it stands for.
pub(crate) enum Go<'a> {
    /// A nil interface (missing map entry, JSON null, `nil`).
    Nil,
    Bool(bool),
    Int(i64),
    Uint(u64),
    Float(f64),
    Str(&'a str),
    Time(GoTime),
    Map(&'a HashMap<String, Value>),
    Slice(&'a [Value]),
    Func,
}

pub(crate) fn number(n: &Number) -> Go<'static> {
    if let Some(f) = n.as_f64() {
        Go::Float(f)
    } else if let Some(i) = n.as_i64() {
        Go::Int(i)
    } else {
        Go::Uint(n.as_u64().unwrap_or_default())
    }
}

pub(crate) fn classify(v: &Value) -> Go<'_> {
    match v {
        Value::NoValue | Value::Nil => Go::Nil,
        Value::Bool(b) => Go::Bool(*b),
        Value::String(s) => Go::Str(s),
        Value::Number(n) => number(n),
        Value::Array(a) => Go::Slice(a),
        Value::Map(m) => Go::Map(m),
        Value::Object(o) if o.is_empty() => Go::Float(0.0),
        Value::Object(o) => match (o.get(FLOAT_KEY), value_to_time(v)) {
            (Some(Value::Number(bits)), _) => Go::Float(f64::from_bits(bits.as_u64().unwrap_or(0))),
            (_, Some(t)) => Go::Time(t),
            _ => Go::Map(o),
        },
        Value::Function(_) => Go::Func,
    }
}

/// Go's type name of a value, as `%T` and error messages show it.
pub(crate) fn type_name(v: &Value) -> &'static str {
    match classify(v) {
        Go::Nil => "<nil>",
        Go::Bool(_) => "bool",
        Go::Int(_) | Go::Uint(_) => "int",
        Go::Float(_) => "float64",
        Go::Str(_) => "string",
        Go::Time(_) => "time.Time",
        Go::Map(_) => "map[string]interface {}",
        Go::Slice(_) => "[]interface {}",
        Go::Func => "func",
    }
}

/// Go template truth: false, 0, "", nil and empty collections are false.
pub(crate) fn truth(v: &Value) -> bool {
    match classify(v) {
        Go::Nil => false,
        Go::Bool(b) => b,
        Go::Int(i) => i != 0,
        Go::Uint(u) => u != 0,
        Go::Float(f) => f != 0.0,
        Go::Str(s) => !s.is_empty(),
        Go::Map(m) => !m.is_empty(),
        Go::Slice(s) => !s.is_empty(),
        Go::Time(_) | Go::Func => true,
    }
}

/// How a template action prints a value: `<no value>` for nil, else `%v`.
pub(crate) fn print_action(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::NoValue | Value::Nil => "<no value>".to_string(),
        _ => sprint(std::slice::from_ref(v)),
    }
}

/// `fmt.Sprint`: spaces between operands when neither side is a string.
pub(crate) fn sprint(args: &[Value]) -> String {
    let mut p = Printer::default();
    let mut prev_string = false;
    for (i, arg) in args.iter().enumerate() {
        let is_string = matches!(arg, Value::String(_));
        if i > 0 && !is_string && !prev_string {
            p.buf.push(' ');
        }
        p.print_arg(arg, 'v', 0);
        prev_string = is_string;
    }
    p.buf
}

/// `fmt.Sprintln`: spaces between all operands and a trailing newline.
pub(crate) fn sprintln(args: &[Value]) -> String {
    let mut p = Printer::default();
    for (i, arg) in args.iter().enumerate() {
        if i > 0 {
            p.buf.push(' ');
        }
        p.print_arg(arg, 'v', 0);
    }
    p.buf.push('\n');
    p.buf
}

/// `fmt.Sprintf` for the verbs templates use: %v %s %q %d %b %o %O %x %X %c %U
/// %e %E %f %F %g %G %t %T %%, flags `+ - # 0 space`, width, precision, `*` and `[n]`.
pub(crate) fn sprintf(format: &str, args: &[Value]) -> String {
    let mut p = Printer::default();
    let f = format.as_bytes();
    let end = f.len();
    let mut arg_num = 0usize;
    let mut reordered = false;
    let mut i = 0usize;
    while i < end {
        let mut good_arg_num = true;
        let lit_start = i;
        while i < end && f[i] != b'%' {
            i += 1;
        }
        p.buf.push_str(&format[lit_start..i]);
        if i >= end {
            break;
        }
        i += 1;
        p.flags = Flags::default();
        while i < end {
            match f[i] {
                b'#' => p.flags.sharp = true,
                b'0' => p.flags.zero = !p.flags.minus,
                b'+' => p.flags.plus = true,
                b'-' => {
                    p.flags.minus = true;
                    p.flags.zero = false;
                }
                b' ' => p.flags.space = true,
                _ => break,
            }
            i += 1;
        }
        let mut after_index;
        (arg_num, i, after_index) =
            arg_number(arg_num, f, i, args.len(), &mut reordered, &mut good_arg_num);
        if i < end && f[i] == b'*' {
            i += 1;
            let (n, ok, next) = int_from_arg(args, arg_num);
            arg_num = next;
            if ok {
                if n < 0 {
                    p.flags.minus = true;
                    p.flags.zero = false;
                }
                p.flags.wid = Some(n.unsigned_abs() as usize);
            } else {
                p.buf.push_str("%!(BADWIDTH)");
            }
            after_index = false;
        } else {
            let (n, next) = parse_num(f, i, end);
            i = next;
            p.flags.wid = n;
            if after_index && n.is_some() {
                good_arg_num = false;
            }
        }
        if i + 1 < end && f[i] == b'.' {
            i += 1;
            if after_index {
                good_arg_num = false;
            }
            (arg_num, i, after_index) =
                arg_number(arg_num, f, i, args.len(), &mut reordered, &mut good_arg_num);
            if i < end && f[i] == b'*' {
                i += 1;
                let (n, ok, next) = int_from_arg(args, arg_num);
                arg_num = next;
                p.flags.prec = (ok && n >= 0).then_some(n as usize);
                if !ok {
                    p.buf.push_str("%!(BADPREC)");
                }
                after_index = false;
            } else {
                let (n, next) = parse_num(f, i, end);
                i = next;
                p.flags.prec = Some(n.unwrap_or(0));
            }
        }
        if !after_index {
            (arg_num, i, _) =
                arg_number(arg_num, f, i, args.len(), &mut reordered, &mut good_arg_num);
        }
        let Some(verb) = format.get(i..).and_then(|s| s.chars().next()) else {
            p.buf.push_str("%!(NOVERB)");
            break;
        };
        i += verb.len_utf8();
        if verb == '%' {
            p.buf.push('%');
        } else if !good_arg_num {
            p.buf.push_str(&format!("%!{verb}(BADINDEX)"));
        } else if arg_num >= args.len() {
            p.buf.push_str(&format!("%!{verb}(MISSING)"));
        } else {
            if verb == 'v' {
                p.flags.sharp_v = p.flags.sharp;
                p.flags.sharp = false;
                p.flags.plus_v = p.flags.plus;
                p.flags.plus = false;
            }
            p.print_arg(&args[arg_num], verb, 0);
            arg_num += 1;
        }
    }
    if !reordered && arg_num < args.len() {
        p.flags = Flags::default();
        p.buf.push_str("%!(EXTRA ");
        for (k, arg) in args[arg_num..].iter().enumerate() {
            if k > 0 {
                p.buf.push_str(", ");
            }
            if matches!(classify(arg), Go::Nil) {
                p.buf.push_str("<nil>");
            } else {
                p.buf.push_str(type_name(arg));
                p.buf.push('=');
                p.print_arg(arg, 'v', 0);
            }
        }
        p.buf.push(')');
    }
    p.buf
}

/// Widths and precisions above this are rejected, as in Go.
const MAX_NUM: usize = 1_000_000;

/// Parses a decimal number at `f[i..end]`: (value, index after it).
fn parse_num(f: &[u8], mut i: usize, end: usize) -> (Option<usize>, usize) {
    let mut num: Option<usize> = None;
    while i < end && f[i].is_ascii_digit() {
        let n = num.unwrap_or(0);
        if n > MAX_NUM {
            return (None, end);
        }
        num = Some(n * 10 + usize::from(f[i] - b'0'));
        i += 1;
    }
    (num, i)
}

/// Handles an explicit `[n]` argument index at `f[i]` (Go's `argNumber`).
fn arg_number(
    arg_num: usize,
    f: &[u8],
    i: usize,
    num_args: usize,
    reordered: &mut bool,
    good: &mut bool,
) -> (usize, usize, bool) {
    if f.get(i) != Some(&b'[') {
        return (arg_num, i, false);
    }
    *reordered = true;
    let Some(close) = f[i..].iter().position(|&c| c == b']') else {
        *good = false;
        return (arg_num, i + 1, false);
    };
    let (n, next) = parse_num(f, i + 1, i + close);
    match n {
        Some(n) if next == i + close && n >= 1 && n - 1 < num_args => (n - 1, i + close + 1, true),
        Some(_) if next == i + close => {
            *good = false;
            (arg_num, i + close + 1, true)
        }
        _ => {
            *good = false;
            (arg_num, i + close + 1, false)
        }
    }
}

/// Takes an integer argument for `*` (Go's `intFromArg`).
fn int_from_arg(args: &[Value], arg_num: usize) -> (i64, bool, usize) {
    let Some(arg) = args.get(arg_num) else {
        return (0, false, arg_num);
    };
    let n = match classify(arg) {
        Go::Int(i) => Some(i),
        Go::Uint(u) => i64::try_from(u).ok(),
        _ => None,
    };
    match n {
        Some(n) if n.unsigned_abs() <= MAX_NUM as u64 => (n, true, arg_num + 1),
        _ => (0, false, arg_num + 1),
    }
}

#[derive(Default, Clone, Copy)]
struct Flags {
    plus: bool,
    minus: bool,
    sharp: bool,
    space: bool,
    zero: bool,
    plus_v: bool,
    sharp_v: bool,
    wid: Option<usize>,
    prec: Option<usize>,
}

#[derive(Default)]
struct Printer {
    buf: String,
    flags: Flags,
}

impl Printer {
    /// Pads `s` to the width with spaces (or zeros when the zero flag is set).
    fn pad(&mut self, s: &str) {
        let width = self.flags.wid.unwrap_or(0);
        let len = s.chars().count();
        if len >= width {
            self.buf.push_str(s);
            return;
        }
        let fill = if self.flags.zero { '0' } else { ' ' };
        let padding: String = std::iter::repeat_n(fill, width - len).collect();
        if self.flags.minus {
            self.buf.push_str(s);
            self.buf.push_str(&padding);
        } else {
            self.buf.push_str(&padding);
            self.buf.push_str(s);
        }
    }

    /// Pads text that is not a number: Go ignores the zero flag for strings.
    fn pad_text(&mut self, s: &str) {
        let zero = std::mem::take(&mut self.flags.zero);
        self.pad(s);
        self.flags.zero = zero;
    }

    fn bad_verb(&mut self, arg: &Value, verb: char, depth: usize) {
        self.buf.push_str("%!");
        self.buf.push(verb);
        self.buf.push('(');
        if matches!(classify(arg), Go::Nil) {
            self.buf.push_str("<nil>");
        } else {
            self.buf.push_str(type_name(arg));
            self.buf.push('=');
            self.print_arg(arg, 'v', depth);
        }
        self.buf.push(')');
    }

    fn print_arg(&mut self, arg: &Value, verb: char, depth: usize) {
        if verb == 'T' {
            self.pad_text(type_name(arg));
            return;
        }
        match classify(arg) {
            Go::Nil if depth > 0 => self.buf.push_str("<nil>"),
            Go::Nil if verb == 'v' => self.pad_text("<nil>"),
            Go::Nil => self.bad_verb(arg, verb, depth),
            Go::Bool(b) => match verb {
                't' | 'v' => self.pad(if b { "true" } else { "false" }),
                _ => self.bad_verb(arg, verb, depth),
            },
            Go::Int(i) => self.fmt_integer(i.unsigned_abs(), i < 0, arg, verb, depth),
            Go::Uint(u) => self.fmt_integer(u, false, arg, verb, depth),
            Go::Float(x) => match verb {
                'v' => self.fmt_float(x, 'g', None),
                'g' | 'G' => self.fmt_float(x, verb, None),
                'e' | 'E' | 'f' | 'F' => self.fmt_float(x, verb, Some(6)),
                _ => self.bad_verb(arg, verb, depth),
            },
            Go::Str(s) => self.fmt_string(s, arg, verb, depth),
            Go::Time(t) => match verb {
                'v' | 's' | 'q' | 'x' | 'X' => self.fmt_string(&t.go_string(), arg, verb, depth),
                _ => self.bad_verb(arg, verb, depth),
            },
            Go::Map(m) => {
                self.buf.push_str(if self.flags.sharp_v {
                    "map[string]interface {}{"
                } else {
                    "map["
                });
                let mut keys: Vec<&String> = m.keys().collect();
                keys.sort();
                for (i, k) in keys.into_iter().enumerate() {
                    if i > 0 {
                        self.buf
                            .push_str(if self.flags.sharp_v { ", " } else { " " });
                    }
                    self.fmt_string(k, &Value::String(k.clone()), verb, depth + 1);
                    self.buf.push(':');
                    if let Some(v) = m.get(k) {
                        self.print_arg(v, verb, depth + 1);
                    }
                }
                self.buf.push(if self.flags.sharp_v { '}' } else { ']' });
            }
            Go::Slice(items) => {
                self.buf.push_str(if self.flags.sharp_v {
                    "[]interface {}{"
                } else {
                    "["
                });
                for (i, v) in items.iter().enumerate() {
                    if i > 0 {
                        self.buf
                            .push_str(if self.flags.sharp_v { ", " } else { " " });
                    }
                    self.print_arg(v, verb, depth + 1);
                }
                self.buf.push(if self.flags.sharp_v { '}' } else { ']' });
            }
            Go::Func => self.bad_verb(arg, verb, depth),
        }
    }

    fn fmt_string(&mut self, s: &str, arg: &Value, verb: char, depth: usize) {
        match verb {
            'v' if self.flags.sharp_v => self.fmt_q(s),
            'v' | 's' => {
                let s = self.truncate(s);
                self.pad_text(&s);
            }
            'q' => self.fmt_q(s),
            'x' | 'X' => self.fmt_sx(s.as_bytes(), verb == 'X'),
            _ => self.bad_verb(arg, verb, depth),
        }
    }

    fn truncate(&self, s: &str) -> String {
        match self.flags.prec {
            Some(p) => s.chars().take(p).collect(),
            None => s.to_string(),
        }
    }

    fn fmt_q(&mut self, s: &str) {
        let s = self.truncate(s);
        if self.flags.sharp && can_backquote(&s) {
            self.pad_text(&format!("`{s}`"));
        } else {
            let q = quote_with(&s, '"', self.flags.plus);
            self.pad_text(&q);
        }
    }

    fn fmt_sx(&mut self, b: &[u8], upper: bool) {
        let digits: &[u8; 16] = if upper {
            b"0123456789ABCDEF"
        } else {
            b"0123456789abcdef"
        };
        let x = if upper { 'X' } else { 'x' };
        let len = self.flags.prec.map_or(b.len(), |p| p.min(b.len()));
        let mut out = String::with_capacity(len * 3 + 2);
        for (i, c) in b[..len].iter().enumerate() {
            if self.flags.sharp && (i == 0 || self.flags.space) {
                if i > 0 {
                    out.push(' ');
                }
                out.push('0');
                out.push(x);
            } else if self.flags.space && i > 0 {
                out.push(' ');
            }
            out.push(char::from(digits[usize::from(c >> 4)]));
            out.push(char::from(digits[usize::from(c & 15)]));
        }
        self.pad_text(&out);
    }

    fn fmt_integer(&mut self, u: u64, negative: bool, arg: &Value, verb: char, depth: usize) {
        let (base, upper) = match verb {
            'v' | 'd' => (10, false),
            'b' => (2, false),
            'o' | 'O' => (8, false),
            'x' => (16, false),
            'X' => (16, true),
            'c' => {
                let c = u32::try_from(u)
                    .ok()
                    .and_then(char::from_u32)
                    .unwrap_or('\u{FFFD}');
                self.pad_text(&c.to_string());
                return;
            }
            'q' => {
                let c = u32::try_from(u)
                    .ok()
                    .and_then(char::from_u32)
                    .unwrap_or('\u{FFFD}');
                let q = quote_with(&c.to_string(), '\'', self.flags.plus);
                self.pad_text(&q);
                return;
            }
            'U' => {
                let digits = self.flags.prec.unwrap_or(0).max(4);
                let mut s = format!("U+{u:0digits$X}");
                let printable = u32::try_from(u)
                    .ok()
                    .and_then(char::from_u32)
                    .filter(|&c| is_print(c));
                if let (true, Some(c)) = (self.flags.sharp, printable) {
                    s.push_str(&format!(" '{c}'"));
                }
                self.pad_text(&s);
                return;
            }
            _ => return self.bad_verb(arg, verb, depth),
        };
        let mut digits = match base {
            2 => format!("{u:b}"),
            8 => format!("{u:o}"),
            16 if upper => format!("{u:X}"),
            16 => format!("{u:x}"),
            _ => u.to_string(),
        };
        let f = self.flags;
        let mut min_digits = 0;
        if let Some(p) = f.prec {
            if p == 0 && u == 0 {
                let zero = std::mem::take(&mut self.flags.zero);
                self.pad("");
                self.flags.zero = zero;
                return;
            }
            min_digits = p;
        } else if f.zero && !f.minus && f.wid.is_some() {
            min_digits = f.wid.unwrap_or(0);
            if negative || f.plus || f.space {
                min_digits = min_digits.saturating_sub(1);
            }
        }
        let mut prefix = String::new();
        if f.sharp {
            match base {
                2 => prefix.push_str("0b"),
                8 if !digits.starts_with('0') => digits.insert(0, '0'),
                16 => prefix.push_str(if upper { "0X" } else { "0x" }),
                _ => {}
            }
        }
        if verb == 'O' {
            prefix.insert_str(0, "0o");
        }
        let zeros = min_digits.saturating_sub(digits.len() + prefix.len());
        let mut s = String::with_capacity(zeros + digits.len() + 4);
        if negative {
            s.push('-');
        } else if f.plus {
            s.push('+');
        } else if f.space {
            s.push(' ');
        }
        s.push_str(&prefix);
        s.extend(std::iter::repeat_n('0', zeros));
        s.push_str(&digits);
        let zero = std::mem::take(&mut self.flags.zero);
        self.pad(&s);
        self.flags.zero = zero;
    }

    fn fmt_float(&mut self, v: f64, verb: char, default_prec: Option<usize>) {
        let prec = self.flags.prec.or(default_prec);
        let fmt = match verb {
            'e' | 'E' | 'g' | 'G' => verb,
            _ => 'f',
        };
        let mut num = format_float(v, fmt, prec);
        if !num.starts_with(['-', '+']) {
            num.insert(0, '+');
        }
        if self.flags.space && num.starts_with('+') && !self.flags.plus {
            num.replace_range(..1, " ");
        }
        if num[1..].starts_with(['I', 'N']) {
            if num[1..].starts_with('N') && !self.flags.space && !self.flags.plus {
                num.remove(0);
            }
            let zero = std::mem::take(&mut self.flags.zero);
            self.pad(&num);
            self.flags.zero = zero;
            return;
        }
        if self.flags.plus || !num.starts_with('+') {
            let width = self.flags.wid.unwrap_or(0);
            if self.flags.zero && width > num.len() {
                self.buf.push_str(&num[..1]);
                self.buf.extend(std::iter::repeat_n('0', width - num.len()));
                self.buf.push_str(&num[1..]);
                return;
            }
            self.pad(&num);
            return;
        }
        self.pad(&num[1..]);
    }
}

/// Decimal digits of `a >= 0` and the decimal point position: `a = 0.d1d2.. × 10^dp`.
/// `sig` asks for that many significant digits (rounded half to even), else shortest.
/// Trailing zeros are dropped, as in Go's decimal type.
fn decimal_digits(a: f64, sig: Option<usize>) -> (Vec<u8>, i64) {
    if a == 0.0 {
        return (Vec::new(), 0);
    }
    let s = match sig {
        Some(n) => format!("{:.*e}", n.max(1) - 1, a),
        None => format!("{a:e}"),
    };
    let (mant, exp) = s.split_once('e').unwrap_or((&s, "0"));
    let mut digits: Vec<u8> = mant.bytes().filter(u8::is_ascii_digit).collect();
    while digits.len() > 1 && digits.last() == Some(&b'0') {
        digits.pop();
    }
    (digits, exp.parse::<i64>().unwrap_or(0) + 1)
}

/// Go's `strconv.FormatFloat(v, fmt, prec, 64)` for 'e', 'E', 'f', 'g', 'G'
/// (`prec` None is the shortest representation).
pub(crate) fn format_float(v: f64, fmt: char, prec: Option<usize>) -> String {
    if v.is_nan() {
        return "NaN".to_string();
    }
    if v.is_infinite() {
        return if v > 0.0 { "+Inf" } else { "-Inf" }.to_string();
    }
    let neg = v.is_sign_negative();
    let a = v.abs();
    let mut out = String::new();
    if neg {
        out.push('-');
    }
    match fmt {
        'f' => match prec {
            Some(p) => out.push_str(&format!("{a:.p$}")),
            None => {
                let (d, dp) = decimal_digits(a, None);
                let p = (d.len() as i64 - dp).max(0) as usize;
                fmt_f(&mut out, &d, dp, p);
            }
        },
        'e' | 'E' => {
            let (d, dp) = decimal_digits(a, prec.map(|p| p + 1));
            let p = prec.unwrap_or(d.len().saturating_sub(1));
            fmt_e(&mut out, &d, dp, p, fmt);
        }
        _ => {
            let shortest = prec.is_none();
            let sig = prec.map(|p| p.max(1));
            let (d, dp) = decimal_digits(a, sig);
            let nd = d.len() as i64;
            let mut p = sig.map_or(nd, |s| s as i64);
            let mut eprec = p;
            if eprec > nd && nd >= dp {
                eprec = nd;
            }
            if shortest {
                eprec = 6;
            }
            let exp = dp - 1;
            if exp < -4 || exp >= eprec {
                p = p.min(nd);
                let e = if fmt == 'G' { 'E' } else { 'e' };
                fmt_e(&mut out, &d, dp, (p - 1).max(0) as usize, e);
            } else {
                if p > dp {
                    p = nd;
                }
                fmt_f(&mut out, &d, dp, (p - dp).max(0) as usize);
            }
        }
    }
    out
}

/// Go's `fmtE`: d.ddddde±dd.
fn fmt_e(out: &mut String, d: &[u8], dp: i64, prec: usize, e: char) {
    out.push(char::from(*d.first().unwrap_or(&b'0')));
    if prec > 0 {
        out.push('.');
        for i in 1..=prec {
            out.push(char::from(*d.get(i).unwrap_or(&b'0')));
        }
    }
    out.push(e);
    let exp = if d.is_empty() { 0 } else { dp - 1 };
    out.push(if exp < 0 { '-' } else { '+' });
    out.push_str(&format!("{:02}", exp.unsigned_abs()));
}

/// Go's `fmtF`: ddd.dddd.
fn fmt_f(out: &mut String, d: &[u8], dp: i64, prec: usize) {
    if dp > 0 {
        for i in 0..dp as usize {
            out.push(char::from(*d.get(i).unwrap_or(&b'0')));
        }
    } else {
        out.push('0');
    }
    if prec > 0 {
        out.push('.');
        for i in 1..=prec as i64 {
            let j = dp + i - 1;
            let c = if j >= 0 {
                d.get(j as usize).copied().unwrap_or(b'0')
            } else {
                b'0'
            };
            out.push(char::from(c));
        }
    }
}

/// An approximation of Go's `unicode.IsPrint`.
pub(crate) fn is_print(c: char) -> bool {
    if c == ' ' {
        return true;
    }
    if c.is_control() || c.is_whitespace() {
        return false;
    }
    !matches!(u32::from(c),
        0xAD | 0x600..=0x605 | 0x61C | 0x6DD | 0x70F | 0x180E | 0x200B..=0x200F
        | 0x2028..=0x202E | 0x2060..=0x206F | 0xFEFF | 0xFFF9..=0xFFFB | 0xFFFE | 0xFFFF
        | 0xE000..=0xF8FF | 0xF0000..=0x10FFFF)
}

/// Go's `strconv.Quote` (or `QuoteToASCII` when `ascii`), with the given quote.
pub(crate) fn quote_with(s: &str, q: char, ascii: bool) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push(q);
    for c in s.chars() {
        if c == q || c == '\\' {
            out.push('\\');
            out.push(c);
            continue;
        }
        if (c.is_ascii() || !ascii) && is_print(c) {
            out.push(c);
            continue;
        }
        match c {
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{b}' => out.push_str("\\v"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                out.push_str(&format!("\\x{:02x}", c as u32))
            }
            c if (c as u32) < 0x10000 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push_str(&format!("\\U{:08x}", c as u32)),
        }
    }
    out.push(q);
    out
}

fn can_backquote(s: &str) -> bool {
    s.chars()
        .all(|c| c != '`' && c != '\u{FEFF}' && (c == '\t' || !c.is_control()))
}
