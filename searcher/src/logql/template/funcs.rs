//! The template function map: Loki's functions (its own plus the Sprig subset it
//! exposes) and Go's builtins, re-implemented with Go/Sprig semantics on gtmpl values.
//!
//! gtmpl functions are plain `fn` pointers, so per-render data (`__line__`,
//! `__timestamp__`, execution budgets) lives in a thread-local set around each render.

use std::cell::RefCell;
use std::collections::HashMap;
use std::fmt::Display;

use base64::Engine as _;
use gtmpl_value::{Func, FuncError, Value};
use regex::Regex;

use super::gofmt::{self, classify, float_value, time_to_value, truth, type_name, Go};
use super::layout::{self, GoTime};

type R = Result<Value, FuncError>;

/// Largest string a function may produce, and the most a render may print.
pub(crate) const MAX_OUTPUT: usize = 16 << 20;
/// Most `range` iterations a single render may run.
pub(crate) const MAX_RANGE_ITERATIONS: u64 = 1_000_000;
/// Compiled-regex limits (bytes) protecting against pathological patterns.
const REGEX_SIZE_LIMIT: usize = 1 << 20;
const REGEX_CACHE_ENTRIES: usize = 64;

/// Names of the helper functions the parser inserts; they are not for users.
pub(crate) const PRINT_FN: &str = "__print__";
pub(crate) const RANGE_FN: &str = "__range__";
pub(crate) const RANGE_KV_FN: &str = "__rangekv__";
pub(crate) const FLOAT_FN: &str = "__float__";

/// Every function a template can call.
pub(crate) const FUNCS: &[(&str, Func)] = &[
    // Go builtins (gtmpl's versions differ from Go's in several ways).
    ("and", and),
    ("or", or),
    ("not", not),
    ("len", len),
    ("index", index),
    ("slice", slice),
    ("print", print),
    ("println", println),
    ("printf", printf),
    ("eq", eq),
    ("ne", ne),
    ("lt", lt),
    ("le", le),
    ("gt", gt),
    ("ge", ge),
    ("html", html),
    ("js", js),
    ("urlquery", urlquery),
    // Loki: log line and timestamp.
    ("__line__", line),
    ("__timestamp__", timestamp),
    // Loki's deprecated Go-strings functions.
    ("ToLower", to_lower),
    ("ToUpper", to_upper),
    ("Replace", replace_n),
    ("Trim", trim_cutset),
    ("TrimLeft", trim_left),
    ("TrimRight", trim_right),
    ("TrimPrefix", trim_prefix_go),
    ("TrimSuffix", trim_suffix_go),
    ("TrimSpace", trim_space),
    // Regular expressions.
    ("regexReplaceAll", regex_replace_all),
    ("regexReplaceAllLiteral", regex_replace_all_literal),
    ("count", count),
    // Loki conversions.
    ("urldecode", urldecode),
    ("urlencode", urlencode),
    ("bytes", bytes),
    ("duration", duration),
    ("duration_seconds", duration),
    ("unixEpochMillis", unix_epoch_millis),
    ("unixEpochNanos", unix_epoch_nanos),
    ("toDateInZone", to_date_in_zone),
    ("unixToTime", unix_to_time),
    ("alignLeft", align_left),
    ("alignRight", align_right),
    // Sprig functions Loki exposes.
    ("b64enc", b64enc),
    ("b64dec", b64dec),
    ("lower", to_lower),
    ("upper", to_upper),
    ("title", title),
    ("trunc", trunc),
    ("substr", substr),
    ("contains", contains),
    ("hasPrefix", has_prefix),
    ("hasSuffix", has_suffix),
    ("indent", indent),
    ("nindent", nindent),
    ("replace", replace),
    ("repeat", repeat),
    ("trim", trim_space),
    ("trimAll", trim_all),
    ("trimSuffix", trim_suffix),
    ("trimPrefix", trim_prefix),
    ("int", int),
    ("float64", float64),
    ("add", add),
    ("sub", sub),
    ("mul", mul),
    ("div", div),
    ("mod", modulo),
    ("addf", addf),
    ("subf", subf),
    ("mulf", mulf),
    ("divf", divf),
    ("max", max),
    ("min", min),
    ("maxf", maxf),
    ("minf", minf),
    ("ceil", ceil),
    ("floor", floor),
    ("round", round),
    ("fromJson", from_json),
    ("date", date),
    ("toDate", to_date),
    ("now", now),
    ("unixEpoch", unix_epoch),
    ("default", default),
    // Inserted by the parser.
    (PRINT_FN, print_action),
    (RANGE_FN, range_values),
    (RANGE_KV_FN, range_pairs),
    (FLOAT_FN, float_literal),
];

// ---------------------------------------------------------------------------
// Per-render state.

struct RenderState {
    line: String,
    ts_ns: i64,
    range_left: u64,
    output_left: usize,
}

thread_local! {
    static STATE: RefCell<Option<RenderState>> = const { RefCell::new(None) };
    static REGEXES: RefCell<HashMap<String, Regex>> = RefCell::new(HashMap::new());
}

/// Restores the previous render state when a render ends, even by panic.
struct StateGuard(Option<RenderState>);

impl Drop for StateGuard {
    fn drop(&mut self) {
        let prev = self.0.take();
        let _ = STATE.try_with(|s| *s.borrow_mut() = prev);
    }
}

/// Runs `f` with `__line__` / `__timestamp__` and fresh budgets for this thread.
pub(crate) fn with_render_state<T>(line: &str, ts_ns: i64, f: impl FnOnce() -> T) -> T {
    let state = RenderState {
        line: line.to_string(),
        ts_ns,
        range_left: MAX_RANGE_ITERATIONS,
        output_left: MAX_OUTPUT,
    };
    let _guard = StateGuard(STATE.with(|s| s.borrow_mut().replace(state)));
    f()
}

fn with_state<T>(f: impl FnOnce(&mut RenderState) -> T) -> Option<T> {
    STATE.with(|s| s.borrow_mut().as_mut().map(f))
}

// ---------------------------------------------------------------------------
// Argument helpers, with Go's error wording.

fn err(msg: impl Into<String>) -> FuncError {
    FuncError::Generic(msg.into())
}

fn call_err(name: &str, msg: impl Display) -> FuncError {
    err(format!("error calling {name}: {msg}"))
}

fn arity(name: &str, a: &[Value], n: usize) -> Result<(), FuncError> {
    if a.len() == n {
        Ok(())
    } else {
        Err(err(format!(
            "wrong number of args for {name}: want {n} got {}",
            a.len()
        )))
    }
}

fn arity_min(name: &str, a: &[Value], n: usize) -> Result<(), FuncError> {
    if a.len() >= n {
        Ok(())
    } else {
        Err(err(format!(
            "wrong number of args for {name}: want at least {n} got {}",
            a.len()
        )))
    }
}

fn wrong_type(expected: &str, v: &Value) -> FuncError {
    match classify(v) {
        Go::Nil => err(format!("invalid value; expected {expected}")),
        _ => err(format!(
            "wrong type for value; expected {expected}; got {}",
            type_name(v)
        )),
    }
}

/// A `string` parameter.
fn s_arg(v: &Value) -> Result<&str, FuncError> {
    match v {
        Value::String(s) => Ok(s),
        _ => Err(wrong_type("string", v)),
    }
}

/// An `int` parameter: integers, or floats with an integral value (Go constants).
fn i_arg(v: &Value) -> Result<i64, FuncError> {
    match classify(v) {
        Go::Int(i) => Ok(i),
        Go::Uint(u) => i64::try_from(u).map_err(|_| wrong_type("int", v)),
        Go::Float(f) if f.fract() == 0.0 && f.abs() < 9.2e18 => Ok(f as i64),
        _ => Err(wrong_type("int", v)),
    }
}

/// A `float64` parameter.
fn f_arg(v: &Value) -> Result<f64, FuncError> {
    match classify(v) {
        Go::Int(i) => Ok(i as f64),
        Go::Uint(u) => Ok(u as f64),
        Go::Float(f) => Ok(f),
        _ => Err(wrong_type("float64", v)),
    }
}

/// A `time.Time` parameter.
fn t_arg(v: &Value) -> Result<GoTime, FuncError> {
    match classify(v) {
        Go::Time(t) => Ok(t),
        _ => Err(wrong_type("time.Time", v)),
    }
}

/// Checks a planned result size before allocating it.
fn ensure_size(name: &str, n: usize) -> Result<(), FuncError> {
    if n > MAX_OUTPUT {
        Err(call_err(name, format!("result exceeds {MAX_OUTPUT} bytes")))
    } else {
        Ok(())
    }
}

fn string_result(name: &str, s: String) -> R {
    ensure_size(name, s.len())?;
    Ok(Value::String(s))
}

// ---------------------------------------------------------------------------
// Go builtins.

fn and(a: &[Value]) -> R {
    arity_min("and", a, 1)?;
    Ok(a.iter()
        .find(|v| !truth(v))
        .or(a.last())
        .cloned()
        .unwrap_or(Value::NoValue))
}

fn or(a: &[Value]) -> R {
    arity_min("or", a, 1)?;
    Ok(a.iter()
        .find(|v| truth(v))
        .or(a.last())
        .cloned()
        .unwrap_or(Value::NoValue))
}

fn not(a: &[Value]) -> R {
    arity("not", a, 1)?;
    Ok(Value::Bool(!truth(&a[0])))
}

fn len(a: &[Value]) -> R {
    arity("len", a, 1)?;
    let n = match classify(&a[0]) {
        Go::Str(s) => s.len(),
        Go::Map(m) => m.len(),
        Go::Slice(s) => s.len(),
        Go::Nil => return Err(call_err("len", "len of untyped nil")),
        _ => return Err(call_err("len", format!("len of type {}", type_name(&a[0])))),
    };
    Ok(Value::from(n as i64))
}

/// An index into a slice or string of length `len`.
fn index_arg(v: &Value, len: usize) -> Result<usize, String> {
    let i = match classify(v) {
        Go::Int(i) => i,
        Go::Uint(u) => i64::try_from(u).unwrap_or(i64::MAX),
        Go::Nil => return Err("cannot index slice/array with nil".to_string()),
        _ => {
            return Err(format!(
                "cannot index slice/array with type {}",
                type_name(v)
            ))
        }
    };
    match usize::try_from(i) {
        Ok(i) if i < len => Ok(i),
        _ => Err(format!("index out of range: {i}")),
    }
}

fn index(a: &[Value]) -> R {
    arity_min("index", a, 1)?;
    let mut item = a[0].clone();
    for idx in &a[1..] {
        item = match classify(&item) {
            Go::Slice(s) => s[index_arg(idx, s.len()).map_err(|e| call_err("index", e))?].clone(),
            Go::Str(s) => {
                let i = index_arg(idx, s.len()).map_err(|e| call_err("index", e))?;
                Value::from(s.as_bytes()[i])
            }
            Go::Map(m) => match idx {
                Value::String(k) => m.get(k).cloned().unwrap_or(Value::NoValue),
                _ => {
                    let msg = format!("value has type {}; should be string", type_name(idx));
                    return Err(call_err("index", msg));
                }
            },
            Go::Nil => return Err(call_err("index", "index of untyped nil")),
            _ => {
                let msg = format!("can't index item of type {}", type_name(&item));
                return Err(call_err("index", msg));
            }
        };
    }
    Ok(item)
}

fn slice(a: &[Value]) -> R {
    arity_min("slice", a, 1)?;
    let bound = |v: &Value, len: usize| -> Result<usize, FuncError> {
        let i =
            i_arg(v).map_err(|_| call_err("slice", "cannot index slice/array with non-integer"))?;
        usize::try_from(i)
            .ok()
            .filter(|&i| i <= len)
            .ok_or_else(|| call_err("slice", format!("index out of range: {i}")))
    };
    let idx = &a[1..];
    if idx.len() > 3 {
        return Err(call_err(
            "slice",
            format!("too many slice indexes: {}", idx.len()),
        ));
    }
    match classify(&a[0]) {
        Go::Str(s) => {
            if idx.len() == 3 {
                return Err(call_err("slice", "cannot 3-index slice a string"));
            }
            let lo = idx
                .first()
                .map(|v| bound(v, s.len()))
                .transpose()?
                .unwrap_or(0);
            let hi = idx
                .get(1)
                .map(|v| bound(v, s.len()))
                .transpose()?
                .unwrap_or(s.len());
            if lo > hi {
                return Err(call_err(
                    "slice",
                    format!("invalid slice index: {lo} > {hi}"),
                ));
            }
            Ok(Value::String(
                String::from_utf8_lossy(&s.as_bytes()[lo..hi]).into_owned(),
            ))
        }
        Go::Slice(s) => {
            let lo = idx
                .first()
                .map(|v| bound(v, s.len()))
                .transpose()?
                .unwrap_or(0);
            let hi = idx
                .get(1)
                .map(|v| bound(v, s.len()))
                .transpose()?
                .unwrap_or(s.len());
            if lo > hi {
                return Err(call_err(
                    "slice",
                    format!("invalid slice index: {lo} > {hi}"),
                ));
            }
            Ok(Value::Array(s[lo..hi].to_vec()))
        }
        Go::Nil => Err(call_err("slice", "slice of untyped nil")),
        _ => Err(call_err(
            "slice",
            format!("can't slice item of type {}", type_name(&a[0])),
        )),
    }
}

fn print(a: &[Value]) -> R {
    string_result("print", gofmt::sprint(a))
}

fn println(a: &[Value]) -> R {
    string_result("println", gofmt::sprintln(a))
}

fn printf(a: &[Value]) -> R {
    arity_min("printf", a, 1)?;
    let format = s_arg(&a[0])?;
    string_result("printf", gofmt::sprintf(format, &a[1..]))
}

/// The text that `html`, `js` and `urlquery` work on: a lone string, else `fmt.Sprint`.
fn joined_args(a: &[Value]) -> String {
    match a {
        [Value::String(s)] => s.clone(),
        _ => gofmt::sprint(a),
    }
}

fn html(a: &[Value]) -> R {
    let mut out = String::new();
    for c in joined_args(a).chars() {
        match c {
            '"' => out.push_str("&#34;"),
            '\'' => out.push_str("&#39;"),
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '\0' => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
    string_result("html", out)
}

fn js(a: &[Value]) -> R {
    let mut out = String::new();
    for c in joined_args(a).chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\'' => out.push_str("\\'"),
            '"' => out.push_str("\\\""),
            '<' => out.push_str("\\u003C"),
            '>' => out.push_str("\\u003E"),
            '&' => out.push_str("\\u0026"),
            '=' => out.push_str("\\u003D"),
            c if (c as u32) < 0x20 || !gofmt::is_print(c) => {
                out.push_str(&format!("\\u{:04X}", c as u32));
            }
            c => out.push(c),
        }
    }
    string_result("js", out)
}

fn urlquery(a: &[Value]) -> R {
    string_result("urlquery", query_escape(&joined_args(a)))
}

/// Go's basic kinds for comparisons.
#[derive(PartialEq, Eq, Clone, Copy)]
enum Kind {
    Bool,
    Int,
    Float,
    Str,
    Other,
}

fn kind(v: &Value) -> Kind {
    match classify(v) {
        Go::Bool(_) => Kind::Bool,
        Go::Int(_) | Go::Uint(_) => Kind::Int,
        Go::Float(_) => Kind::Float,
        Go::Str(_) => Kind::Str,
        _ => Kind::Other,
    }
}

fn as_i128(v: &Value) -> i128 {
    match classify(v) {
        Go::Int(i) => i128::from(i),
        Go::Uint(u) => i128::from(u),
        _ => 0,
    }
}

/// Go's `eq` for one pair of operands.
fn equal(x: &Value, y: &Value) -> Result<bool, String> {
    let (kx, ky) = (kind(x), kind(y));
    let nil = |v: &Value| matches!(classify(v), Go::Nil);
    if kx != ky {
        if nil(x) || nil(y) {
            return Ok(false);
        }
        return Err("incompatible types for comparison".to_string());
    }
    Ok(match (classify(x), classify(y)) {
        (Go::Bool(a), Go::Bool(b)) => a == b,
        (Go::Float(a), Go::Float(b)) => a == b,
        (Go::Str(a), Go::Str(b)) => a == b,
        _ if kx == Kind::Int => as_i128(x) == as_i128(y),
        (Go::Nil, Go::Nil) => true,
        (Go::Nil, _) | (_, Go::Nil) => false,
        (Go::Time(a), Go::Time(b)) => a == b,
        _ => return Err(format!("non-comparable type {}", type_name(x))),
    })
}

fn eq(a: &[Value]) -> R {
    arity_min("eq", a, 1)?;
    if a.len() < 2 {
        return Err(call_err("eq", "missing argument for comparison"));
    }
    for y in &a[1..] {
        if equal(&a[0], y).map_err(|e| call_err("eq", e))? {
            return Ok(Value::Bool(true));
        }
    }
    Ok(Value::Bool(false))
}

fn ne(a: &[Value]) -> R {
    arity("ne", a, 2)?;
    Ok(Value::Bool(
        !equal(&a[0], &a[1]).map_err(|e| call_err("ne", e))?,
    ))
}

/// Go's `lt`.
fn less(x: &Value, y: &Value) -> Result<bool, String> {
    let (kx, ky) = (kind(x), kind(y));
    if matches!(kx, Kind::Bool | Kind::Other) || matches!(ky, Kind::Bool | Kind::Other) {
        return Err("invalid type for comparison".to_string());
    }
    if kx != ky {
        return Err("incompatible types for comparison".to_string());
    }
    Ok(match (classify(x), classify(y)) {
        (Go::Float(a), Go::Float(b)) => a < b,
        (Go::Str(a), Go::Str(b)) => a < b,
        _ => as_i128(x) < as_i128(y),
    })
}

fn compare(name: &str, a: &[Value], f: fn(bool, bool) -> bool) -> R {
    arity(name, a, 2)?;
    let lt = less(&a[0], &a[1]).map_err(|e| call_err(name, e))?;
    let eq = !lt && equal(&a[0], &a[1]).map_err(|e| call_err(name, e))?;
    Ok(Value::Bool(f(lt, eq)))
}

fn lt(a: &[Value]) -> R {
    compare("lt", a, |lt, _| lt)
}

fn le(a: &[Value]) -> R {
    compare("le", a, |lt, eq| lt || eq)
}

fn gt(a: &[Value]) -> R {
    compare("gt", a, |lt, eq| !(lt || eq))
}

fn ge(a: &[Value]) -> R {
    compare("ge", a, |lt, _| !lt)
}

// ---------------------------------------------------------------------------
// Parser-inserted helpers.

/// Prints an action's value the Go way, charging the render's output budget.
fn print_action(a: &[Value]) -> R {
    arity(PRINT_FN, a, 1)?;
    let s = gofmt::print_action(&a[0]);
    let ok = with_state(|st| match st.output_left.checked_sub(s.len()) {
        Some(left) => {
            st.output_left = left;
            true
        }
        None => false,
    });
    if ok == Some(false) {
        return Err(err(format!("template output exceeds {MAX_OUTPUT} bytes")));
    }
    Ok(Value::String(s))
}

/// What `range` iterates over, as Go sees it: maps (by sorted key when
/// `sorted`), slices, and integers n as 0..n (Go 1.22); nil iterates nothing.
/// Charges the length to the render's iteration budget.
fn range_operand(v: &Value, sorted: bool) -> R {
    let items = match classify(v) {
        Go::Map(m) if sorted => {
            let mut entries: Vec<(&String, &Value)> = m.iter().collect();
            entries.sort_by(|x, y| x.0.cmp(y.0));
            Value::Array(entries.into_iter().map(|(_, v)| v.clone()).collect())
        }
        Go::Map(_) | Go::Slice(_) => v.clone(),
        Go::Int(n) => Value::Array(
            (0..n.clamp(0, MAX_RANGE_ITERATIONS as i64 + 1))
                .map(Value::from)
                .collect(),
        ),
        Go::Uint(n) => Value::Array(
            (0..n.min(MAX_RANGE_ITERATIONS + 1))
                .map(Value::from)
                .collect(),
        ),
        Go::Nil => Value::Array(Vec::new()),
        _ => {
            return Err(err(format!(
                "range can't iterate over {}",
                gofmt::print_action(v)
            )))
        }
    };
    let n = match &items {
        Value::Array(a) => a.len(),
        Value::Map(m) | Value::Object(m) => m.len(),
        _ => 0,
    } as u64;
    let ok = with_state(|st| match st.range_left.checked_sub(n) {
        Some(left) => {
            st.range_left = left;
            true
        }
        None => false,
    });
    if ok == Some(false) {
        return Err(err(format!(
            "range iterations exceed {MAX_RANGE_ITERATIONS}"
        )));
    }
    Ok(items)
}

/// A `range` operand without a key variable: maps become their values in key
/// order, since Go visits map entries sorted by key (gtmpl's order is random).
fn range_values(a: &[Value]) -> R {
    arity(RANGE_FN, a, 1)?;
    range_operand(&a[0], true)
}

/// A `range $k, $v := ...` operand (map order stays gtmpl's).
fn range_pairs(a: &[Value]) -> R {
    arity(RANGE_KV_FN, a, 1)?;
    range_operand(&a[0], false)
}

/// A float constant (gtmpl cannot represent most floats itself).
fn float_literal(a: &[Value]) -> R {
    arity(FLOAT_FN, a, 1)?;
    let f = parse_go_float(s_arg(&a[0])?).ok_or_else(|| err("bad float constant"))?;
    Ok(float_value(f))
}

// ---------------------------------------------------------------------------
// Line and timestamp.

fn line(a: &[Value]) -> R {
    arity("__line__", a, 0)?;
    Ok(Value::String(
        with_state(|st| st.line.clone()).unwrap_or_default(),
    ))
}

fn timestamp(a: &[Value]) -> R {
    arity("__timestamp__", a, 0)?;
    let ts = with_state(|st| st.ts_ns).unwrap_or_default();
    Ok(time_to_value(GoTime::unix(0, ts)))
}

// ---------------------------------------------------------------------------
// Strings.

/// Go's `unicode.ToUpper`/`ToLower` per character (no multi-character expansions).
fn map_case(s: &str, upper: bool) -> String {
    s.chars()
        .map(|c| {
            let mut m: Vec<char> = if upper {
                c.to_uppercase().collect()
            } else {
                c.to_lowercase().collect()
            };
            match m.len() {
                1 => m[0],
                _ if !upper && !m.is_empty() => m.swap_remove(0),
                _ => c,
            }
        })
        .collect()
}

fn to_lower(a: &[Value]) -> R {
    arity("lower", a, 1)?;
    Ok(Value::String(map_case(s_arg(&a[0])?, false)))
}

fn to_upper(a: &[Value]) -> R {
    arity("upper", a, 1)?;
    Ok(Value::String(map_case(s_arg(&a[0])?, true)))
}

/// Go's `strings.Title`: upper-cases the first letter of each word.
fn title(a: &[Value]) -> R {
    arity("title", a, 1)?;
    let is_sep = |c: char| {
        if c.is_ascii() {
            !(c.is_ascii_alphanumeric() || c == '_')
        } else if c.is_alphabetic() || c.is_numeric() {
            false
        } else {
            c.is_whitespace()
        }
    };
    let mut prev = ' ';
    let out = s_arg(&a[0])?
        .chars()
        .map(|c| {
            let mapped = if is_sep(prev) {
                map_case(&c.to_string(), true)
            } else {
                c.to_string()
            };
            prev = c;
            mapped
        })
        .collect();
    Ok(Value::String(out))
}

/// `strings.Replace(s, old, new, n)`: n < 0 replaces all.
fn replace_n(a: &[Value]) -> R {
    arity("Replace", a, 4)?;
    let (s, old, new, n) = (s_arg(&a[0])?, s_arg(&a[1])?, s_arg(&a[2])?, i_arg(&a[3])?);
    let hits = if old.is_empty() {
        s.chars().count() + 1
    } else {
        s.matches(old).count()
    };
    let hits = if n < 0 { hits } else { hits.min(n as usize) };
    ensure_size(
        "Replace",
        s.len().saturating_add(hits.saturating_mul(new.len())),
    )?;
    Ok(Value::String(s.replacen(old, new, hits)))
}

/// Sprig `replace old new src`.
fn replace(a: &[Value]) -> R {
    arity("replace", a, 3)?;
    let (old, new, s) = (s_arg(&a[0])?, s_arg(&a[1])?, s_arg(&a[2])?);
    let hits = if old.is_empty() {
        s.chars().count() + 1
    } else {
        s.matches(old).count()
    };
    ensure_size(
        "replace",
        s.len().saturating_add(hits.saturating_mul(new.len())),
    )?;
    Ok(Value::String(s.replace(old, new)))
}

fn trim_cutset(a: &[Value]) -> R {
    arity("Trim", a, 2)?;
    let (s, cut) = (s_arg(&a[0])?, s_arg(&a[1])?);
    Ok(Value::from(s.trim_matches(|c| cut.contains(c))))
}

fn trim_left(a: &[Value]) -> R {
    arity("TrimLeft", a, 2)?;
    let (s, cut) = (s_arg(&a[0])?, s_arg(&a[1])?);
    Ok(Value::from(s.trim_start_matches(|c| cut.contains(c))))
}

fn trim_right(a: &[Value]) -> R {
    arity("TrimRight", a, 2)?;
    let (s, cut) = (s_arg(&a[0])?, s_arg(&a[1])?);
    Ok(Value::from(s.trim_end_matches(|c| cut.contains(c))))
}

fn trim_prefix_go(a: &[Value]) -> R {
    arity("TrimPrefix", a, 2)?;
    let (s, p) = (s_arg(&a[0])?, s_arg(&a[1])?);
    Ok(Value::from(s.strip_prefix(p).unwrap_or(s)))
}

fn trim_suffix_go(a: &[Value]) -> R {
    arity("TrimSuffix", a, 2)?;
    let (s, p) = (s_arg(&a[0])?, s_arg(&a[1])?);
    Ok(Value::from(s.strip_suffix(p).unwrap_or(s)))
}

fn trim_space(a: &[Value]) -> R {
    arity("trim", a, 1)?;
    Ok(Value::from(s_arg(&a[0])?.trim()))
}

/// Sprig `trimAll cutset src`.
fn trim_all(a: &[Value]) -> R {
    arity("trimAll", a, 2)?;
    let (cut, s) = (s_arg(&a[0])?, s_arg(&a[1])?);
    Ok(Value::from(s.trim_matches(|c| cut.contains(c))))
}

fn trim_prefix(a: &[Value]) -> R {
    arity("trimPrefix", a, 2)?;
    let (p, s) = (s_arg(&a[0])?, s_arg(&a[1])?);
    Ok(Value::from(s.strip_prefix(p).unwrap_or(s)))
}

fn trim_suffix(a: &[Value]) -> R {
    arity("trimSuffix", a, 2)?;
    let (p, s) = (s_arg(&a[0])?, s_arg(&a[1])?);
    Ok(Value::from(s.strip_suffix(p).unwrap_or(s)))
}

fn contains(a: &[Value]) -> R {
    arity("contains", a, 2)?;
    Ok(Value::Bool(s_arg(&a[1])?.contains(s_arg(&a[0])?)))
}

fn has_prefix(a: &[Value]) -> R {
    arity("hasPrefix", a, 2)?;
    Ok(Value::Bool(s_arg(&a[1])?.starts_with(s_arg(&a[0])?)))
}

fn has_suffix(a: &[Value]) -> R {
    arity("hasSuffix", a, 2)?;
    Ok(Value::Bool(s_arg(&a[1])?.ends_with(s_arg(&a[0])?)))
}

/// `trunc n s`: the first n characters, or the last -n characters.
fn trunc(a: &[Value]) -> R {
    arity("trunc", a, 2)?;
    let (n, s) = (i_arg(&a[0])?, s_arg(&a[1])?);
    let chars: Vec<char> = s.chars().collect();
    let len = chars.len() as i64;
    let out = if n < 0 && len + n > 0 {
        chars[(len + n) as usize..].iter().collect()
    } else if n >= 0 && len > n {
        chars[..n as usize].iter().collect()
    } else {
        s.to_string()
    };
    Ok(Value::String(out))
}

/// `substr start end s`, on characters, clamped like Loki's own helper.
fn substr(a: &[Value]) -> R {
    arity("substr", a, 3)?;
    let (start, end, s) = (i_arg(&a[0])?, i_arg(&a[1])?, s_arg(&a[2])?);
    let chars: Vec<char> = s.chars().collect();
    let len = chars.len() as i64;
    let (start, end) = (start.min(len), end.min(len));
    let out: String = if start < 0 {
        if end < 0 {
            String::new()
        } else {
            chars[..end as usize].iter().collect()
        }
    } else if end < 0 {
        chars[start as usize..].iter().collect()
    } else if start > end {
        String::new()
    } else {
        chars[start as usize..end as usize].iter().collect()
    };
    Ok(Value::String(out))
}

fn indent_str(name: &str, a: &[Value]) -> Result<String, FuncError> {
    arity(name, a, 2)?;
    let (n, s) = (i_arg(&a[0])?, s_arg(&a[1])?);
    let n = usize::try_from(n).map_err(|_| call_err(name, "strings: negative Repeat count"))?;
    let lines = s.matches('\n').count() + 1;
    ensure_size(name, s.len().saturating_add(n.saturating_mul(lines)))?;
    let pad = " ".repeat(n);
    Ok(format!("{pad}{}", s.replace('\n', &format!("\n{pad}"))))
}

fn indent(a: &[Value]) -> R {
    Ok(Value::String(indent_str("indent", a)?))
}

fn nindent(a: &[Value]) -> R {
    Ok(Value::String(format!("\n{}", indent_str("nindent", a)?)))
}

fn repeat(a: &[Value]) -> R {
    arity("repeat", a, 2)?;
    let (n, s) = (i_arg(&a[0])?, s_arg(&a[1])?);
    let n = usize::try_from(n).map_err(|_| call_err("repeat", "strings: negative Repeat count"))?;
    ensure_size("repeat", s.len().saturating_mul(n))?;
    Ok(Value::String(s.repeat(n)))
}

fn align(name: &str, a: &[Value], left: bool) -> R {
    arity(name, a, 2)?;
    let (n, s) = (i_arg(&a[0])?, s_arg(&a[1])?);
    let len = s.chars().count();
    let Ok(n) = usize::try_from(n) else {
        return Ok(Value::from(s));
    };
    if n == len {
        return Ok(Value::from(s));
    }
    if n > len {
        ensure_size(name, s.len() + (n - len))?;
        let pad = " ".repeat(n - len);
        return Ok(Value::String(if left {
            format!("{s}{pad}")
        } else {
            format!("{pad}{s}")
        }));
    }
    let out = if left {
        s.chars().take(n).collect()
    } else {
        s.chars().skip(len - n).collect()
    };
    Ok(Value::String(out))
}

fn align_left(a: &[Value]) -> R {
    align("alignLeft", a, true)
}

fn align_right(a: &[Value]) -> R {
    align("alignRight", a, false)
}

fn b64enc(a: &[Value]) -> R {
    arity("b64enc", a, 1)?;
    let s = base64::engine::general_purpose::STANDARD.encode(s_arg(&a[0])?);
    string_result("b64enc", s)
}

/// Sprig `b64dec`: on bad input it returns the error text instead of failing.
fn b64dec(a: &[Value]) -> R {
    arity("b64dec", a, 1)?;
    let input: Vec<u8> = s_arg(&a[0])?
        .bytes()
        .filter(|&c| c != b'\r' && c != b'\n')
        .collect();
    let out = match base64::engine::general_purpose::STANDARD.decode(&input) {
        Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
        Err(e) => {
            use base64::DecodeError::*;
            let at = match e {
                InvalidByte(at, _) | InvalidLastSymbol(at, _) => at,
                InvalidLength(len) => len - len % 4,
                InvalidPadding => 0,
            };
            format!("illegal base64 data at input byte {at}")
        }
    };
    Ok(Value::String(out))
}

/// Go's `url.QueryEscape`.
fn query_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(char::from(b))
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

fn urlencode(a: &[Value]) -> R {
    arity("urlencode", a, 1)?;
    string_result("urlencode", query_escape(s_arg(&a[0])?))
}

/// Go's `url.QueryUnescape`.
fn urldecode(a: &[Value]) -> R {
    arity("urldecode", a, 1)?;
    let s = s_arg(&a[0])?.as_bytes();
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        match s[i] {
            b'%' => {
                let hex = s
                    .get(i + 1..i + 3)
                    .and_then(|h| std::str::from_utf8(h).ok());
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(b) if hex.is_some_and(|h| h.bytes().all(|c| c.is_ascii_hexdigit())) => {
                        out.push(b);
                        i += 3;
                    }
                    _ => {
                        let bad = String::from_utf8_lossy(&s[i..(i + 3).min(s.len())]).into_owned();
                        let msg =
                            format!("invalid URL escape {}", gofmt::quote_with(&bad, '"', false));
                        return Err(call_err("urldecode", msg));
                    }
                }
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    Ok(Value::String(String::from_utf8_lossy(&out).into_owned()))
}

// ---------------------------------------------------------------------------
// Regular expressions.

/// Rewrites Go's ASCII-only Perl classes (`\d \w \s`) so Rust's Unicode-aware
/// regex engine matches what Go's does.
fn go_regex_syntax(re: &str) -> String {
    let mut out = String::with_capacity(re.len() + 8);
    let mut in_class = false;
    let mut chars = re.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                let Some(n) = chars.next() else {
                    out.push('\\');
                    break;
                };
                if n == 'Q' {
                    // \Q...\E quotes a literal.
                    let mut literal = String::new();
                    while let Some(d) = chars.next() {
                        if d == '\\' && chars.peek() == Some(&'E') {
                            chars.next();
                            break;
                        }
                        literal.push(d);
                    }
                    out.push_str(&regex::escape(&literal));
                    continue;
                }
                let class = match n {
                    'd' => Some("0-9"),
                    'w' => Some("0-9A-Za-z_"),
                    's' => Some("\\t\\n\\f\\r "),
                    _ => None,
                };
                match (class, n, in_class) {
                    (Some(cls), _, true) => out.push_str(cls),
                    (Some(cls), _, false) => out.push_str(&format!("[{cls}]")),
                    (None, 'D' | 'W' | 'S', false) => {
                        let cls = match n {
                            'D' => "0-9",
                            'W' => "0-9A-Za-z_",
                            _ => "\\t\\n\\f\\r ",
                        };
                        out.push_str(&format!("[^{cls}]"));
                    }
                    (None, 'b' | 'B', false) => out.push_str(&format!("(?-u:\\{n})")),
                    _ => {
                        out.push('\\');
                        out.push(n);
                    }
                }
            }
            '[' if !in_class => {
                in_class = true;
                out.push('[');
                // A leading ']' (after an optional '^') is a literal, not the end.
                if chars.peek() == Some(&'^') {
                    out.push('^');
                    chars.next();
                }
                if chars.peek() == Some(&']') {
                    out.push_str("\\]");
                    chars.next();
                }
            }
            '[' if in_class && chars.peek() == Some(&':') => {
                // A POSIX class like [:alpha:] inside a bracket expression.
                out.push('[');
                for d in chars.by_ref() {
                    out.push(d);
                    if d == ']' {
                        break;
                    }
                }
            }
            ']' if in_class => {
                in_class = false;
                out.push(']');
            }
            c => out.push(c),
        }
    }
    out
}

fn compile_regex(name: &str, re: &str) -> Result<Regex, FuncError> {
    if let Some(r) = REGEXES.with(|c| c.borrow().get(re).cloned()) {
        return Ok(r);
    }
    let compiled = regex::RegexBuilder::new(&go_regex_syntax(re))
        .size_limit(REGEX_SIZE_LIMIT)
        .dfa_size_limit(REGEX_SIZE_LIMIT)
        .build()
        .map_err(|e| {
            let detail = match &e {
                regex::Error::Syntax(s) => s
                    .lines()
                    .find_map(|l| l.trim().strip_prefix("error: "))
                    .unwrap_or("invalid syntax")
                    .to_string(),
                other => other.to_string(),
            };
            call_err(name, format!("error parsing regexp: {detail}: `{re}`"))
        })?;
    REGEXES.with(|c| {
        let mut cache = c.borrow_mut();
        if cache.len() >= REGEX_CACHE_ENTRIES {
            cache.clear();
        }
        cache.insert(re.to_string(), compiled.clone());
    });
    Ok(compiled)
}

/// `regexReplaceAll regex src repl`, with Go's `$1` / `${name}` expansion.
fn regex_replace_all(a: &[Value]) -> R {
    arity("regexReplaceAll", a, 3)?;
    let (re, s, repl) = (s_arg(&a[0])?, s_arg(&a[1])?, s_arg(&a[2])?);
    let re = compile_regex("regexReplaceAll", re)?;
    let mut out = String::with_capacity(s.len());
    let mut last = 0;
    for caps in re.captures_iter(s) {
        let Some(m) = caps.get(0) else { continue };
        out.push_str(&s[last..m.start()]);
        caps.expand(repl, &mut out);
        last = m.end();
        ensure_size("regexReplaceAll", out.len())?;
    }
    out.push_str(&s[last..]);
    string_result("regexReplaceAll", out)
}

fn regex_replace_all_literal(a: &[Value]) -> R {
    arity("regexReplaceAllLiteral", a, 3)?;
    let (re, s, repl) = (s_arg(&a[0])?, s_arg(&a[1])?, s_arg(&a[2])?);
    let re = compile_regex("regexReplaceAllLiteral", re)?;
    let hits = re.find_iter(s).count();
    ensure_size(
        "regexReplaceAllLiteral",
        s.len().saturating_add(hits.saturating_mul(repl.len())),
    )?;
    Ok(Value::String(
        re.replace_all(s, regex::NoExpand(repl)).into_owned(),
    ))
}

fn count(a: &[Value]) -> R {
    arity("count", a, 2)?;
    let (re, s) = (s_arg(&a[0])?, s_arg(&a[1])?);
    Ok(Value::from(
        compile_regex("count", re)?.find_iter(s).count() as i64,
    ))
}

// ---------------------------------------------------------------------------
// Numbers: Sprig converts loosely (via spf13/cast), ignoring errors.

/// Go's base-0 integer syntax: sign, 0x/0o/0b/0 prefixes, underscores between
/// digits. Returns (negative, magnitude).
fn parse_go_integer(s: &str) -> Option<(bool, u64)> {
    let (neg, body) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    let lower = body.to_ascii_lowercase();
    let (radix, digits) = if let Some(d) = lower.strip_prefix("0x") {
        (16, d)
    } else if let Some(d) = lower.strip_prefix("0o") {
        (8, d)
    } else if let Some(d) = lower.strip_prefix("0b") {
        (2, d)
    } else if lower.len() > 1 && lower.starts_with('0') {
        (8, &lower[1..])
    } else {
        (10, lower.as_str())
    };
    if digits.contains('_') {
        let prefixed = radix != 10;
        let ok = !digits.ends_with('_')
            && !digits.contains("__")
            && (prefixed || !digits.starts_with('_'));
        if !ok {
            return None;
        }
    }
    let digits: String = digits.chars().filter(|&c| c != '_').collect();
    if digits.is_empty() || digits.starts_with(['+', '-']) {
        return None;
    }
    Some((neg, u64::from_str_radix(&digits, radix).ok()?))
}

/// Go's `strconv.ParseInt(s, 0, 64)`.
pub(crate) fn parse_go_int(s: &str) -> Option<i64> {
    let (neg, u) = parse_go_integer(s)?;
    if neg {
        (u <= 1 << 63).then(|| (u as i64).wrapping_neg())
    } else {
        i64::try_from(u).ok()
    }
}

/// Go's `strconv.ParseUint(s, 0, 64)` (no sign allowed).
pub(crate) fn parse_go_uint(s: &str) -> Option<u64> {
    if s.starts_with(['+', '-']) {
        return None;
    }
    parse_go_integer(s).map(|(_, u)| u)
}

/// Go's `strconv.ParseFloat(s, 64)`, including hex floats; None on error or overflow.
pub(crate) fn parse_go_float(s: &str) -> Option<f64> {
    let (neg, body) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    let lower = body.to_ascii_lowercase();
    if matches!(lower.as_str(), "inf" | "infinity") {
        return Some(if neg {
            f64::NEG_INFINITY
        } else {
            f64::INFINITY
        });
    }
    if lower == "nan" {
        return Some(f64::NAN);
    }
    let clean: String = if lower.contains('_') {
        if lower.starts_with('_') || lower.ends_with('_') || lower.contains("__") {
            return None;
        }
        lower.chars().filter(|&c| c != '_').collect()
    } else {
        lower
    };
    let v = if let Some(hex) = clean.strip_prefix("0x") {
        parse_hex_float(hex)?
    } else {
        if !clean
            .bytes()
            .all(|c| c.is_ascii_digit() || matches!(c, b'.' | b'e' | b'+' | b'-'))
        {
            return None;
        }
        clean.parse::<f64>().ok()?
    };
    if v.is_infinite() {
        return None;
    }
    Some(if neg { -v } else { v })
}

/// "1.8p3" (after "0x"): hex mantissa with a mandatory binary exponent.
fn parse_hex_float(s: &str) -> Option<f64> {
    let (mant, exp) = s.split_once('p')?;
    let exp: i32 = exp.parse().ok()?;
    let (int, frac) = mant.split_once('.').unwrap_or((mant, ""));
    if int.is_empty() && frac.is_empty() {
        return None;
    }
    let mut v = 0f64;
    for c in int.chars() {
        v = v * 16.0 + f64::from(c.to_digit(16)?);
    }
    let mut scale = 1.0 / 16.0;
    for c in frac.chars() {
        v += f64::from(c.to_digit(16)?) * scale;
        scale /= 16.0;
    }
    Some(v * 2f64.powi(exp))
}

/// cast.ToInt64: numbers convert, strings parse (with "12.0" → 12), else 0.
fn to_int64(v: &Value) -> i64 {
    match classify(v) {
        Go::Int(i) => i,
        Go::Uint(u) => u as i64,
        Go::Float(f) => f as i64,
        Go::Bool(b) => i64::from(b),
        Go::Str(s) => parse_go_int(trim_zero_decimal(s)).unwrap_or(0),
        _ => 0,
    }
}

/// cast's `trimZeroDecimal`: "12.000" → "12".
fn trim_zero_decimal(s: &str) -> &str {
    let mut found_zero = false;
    for (i, c) in s.bytes().enumerate().rev() {
        match c {
            b'.' if found_zero => return &s[..i],
            b'.' => return s,
            b'0' => found_zero = true,
            _ => return s,
        }
    }
    s
}

/// cast.ToFloat64.
fn to_float64(v: &Value) -> f64 {
    match classify(v) {
        Go::Int(i) => i as f64,
        Go::Uint(u) => u as f64,
        Go::Float(f) => f,
        Go::Bool(b) => f64::from(u8::from(b)),
        Go::Str(s) => parse_go_float(s).unwrap_or(0.0),
        _ => 0.0,
    }
}

fn int(a: &[Value]) -> R {
    arity("int", a, 1)?;
    Ok(Value::from(to_int64(&a[0])))
}

fn float64(a: &[Value]) -> R {
    arity("float64", a, 1)?;
    Ok(float_value(to_float64(&a[0])))
}

fn add(a: &[Value]) -> R {
    Ok(Value::from(
        a.iter().fold(0i64, |acc, v| acc.wrapping_add(to_int64(v))),
    ))
}

fn sub(a: &[Value]) -> R {
    arity("sub", a, 2)?;
    Ok(Value::from(to_int64(&a[0]).wrapping_sub(to_int64(&a[1]))))
}

fn mul(a: &[Value]) -> R {
    arity_min("mul", a, 1)?;
    Ok(Value::from(
        a[1..]
            .iter()
            .fold(to_int64(&a[0]), |acc, v| acc.wrapping_mul(to_int64(v))),
    ))
}

fn div(a: &[Value]) -> R {
    arity("div", a, 2)?;
    let (x, y) = (to_int64(&a[0]), to_int64(&a[1]));
    if y == 0 {
        return Err(call_err("div", "runtime error: integer divide by zero"));
    }
    Ok(Value::from(x.wrapping_div(y)))
}

fn modulo(a: &[Value]) -> R {
    arity("mod", a, 2)?;
    let (x, y) = (to_int64(&a[0]), to_int64(&a[1]));
    if y == 0 {
        return Err(call_err("mod", "runtime error: integer divide by zero"));
    }
    Ok(Value::from(x.wrapping_rem(y)))
}

fn max(a: &[Value]) -> R {
    arity_min("max", a, 1)?;
    Ok(Value::from(a.iter().map(to_int64).max().unwrap_or(0)))
}

fn min(a: &[Value]) -> R {
    arity_min("min", a, 1)?;
    Ok(Value::from(a.iter().map(to_int64).min().unwrap_or(0)))
}

/// Go's `math.Max` / `math.Min` (NaN wins, and ±0 are ordered).
fn fold_float(a: &[Value], pick_max: bool) -> f64 {
    let mut acc = to_float64(&a[0]);
    for v in &a[1..] {
        let x = to_float64(v);
        acc = if acc.is_nan() || x.is_nan() {
            f64::NAN
        } else if acc == x {
            if pick_max == acc.is_sign_negative() {
                x
            } else {
                acc
            }
        } else if (x > acc) == pick_max {
            x
        } else {
            acc
        };
    }
    acc
}

fn maxf(a: &[Value]) -> R {
    arity_min("maxf", a, 1)?;
    Ok(float_value(fold_float(a, true)))
}

fn minf(a: &[Value]) -> R {
    arity_min("minf", a, 1)?;
    Ok(float_value(fold_float(a, false)))
}

fn ceil(a: &[Value]) -> R {
    arity("ceil", a, 1)?;
    Ok(float_value(to_float64(&a[0]).ceil()))
}

fn floor(a: &[Value]) -> R {
    arity("floor", a, 1)?;
    Ok(float_value(to_float64(&a[0]).floor()))
}

/// Sprig `round value places [roundOn]`: rounds up when the fraction is >= roundOn.
fn round(a: &[Value]) -> R {
    arity_min("round", a, 2)?;
    let places = i_arg(&a[1])?;
    let round_on = match a.get(2) {
        Some(v) => f_arg(v)?,
        None => 0.5,
    };
    let pow = 10f64.powf(places as f64);
    let digit = pow * to_float64(&a[0]);
    let rounded = if digit.fract() >= round_on {
        digit.ceil()
    } else {
        digit.floor()
    };
    Ok(float_value(rounded / pow))
}

/// An exact decimal `m × 10^-scale`, standing in for shopspring/decimal in
/// Sprig's `addf`/`subf`/`mulf`/`divf` (so `addf 0.1 0.2` is 0.3, as in Loki).
#[derive(Clone, Copy)]
struct Dec {
    m: i128,
    scale: u32,
}

/// Division precision of shopspring/decimal (`DivisionPrecision`).
const DIV_PRECISION: u32 = 16;

impl Dec {
    /// `decimal.NewFromFloat`: the shortest decimal that round-trips. None if too large.
    fn from_f64(f: f64) -> Option<Dec> {
        if f == 0.0 {
            return Some(Dec { m: 0, scale: 0 });
        }
        let s = format!("{f:e}");
        let (mant, exp) = s.split_once('e')?;
        let neg = mant.starts_with('-');
        let digits: String = mant.chars().filter(char::is_ascii_digit).collect();
        let mut m: i128 = digits.parse().ok()?;
        if neg {
            m = -m;
        }
        let k = exp.parse::<i64>().ok()? - (digits.len() as i64 - 1);
        if k >= 0 {
            let p = 10i128.checked_pow(u32::try_from(k).ok()?)?;
            Some(Dec {
                m: m.checked_mul(p)?,
                scale: 0,
            })
        } else {
            Some(Dec {
                m,
                scale: u32::try_from(-k).ok()?,
            })
        }
    }

    fn to_f64(self) -> f64 {
        format!("{}e-{}", self.m, self.scale)
            .parse()
            .unwrap_or(f64::NAN)
    }

    fn rescale(self, scale: u32) -> Option<i128> {
        self.m
            .checked_mul(10i128.checked_pow(scale.checked_sub(self.scale)?)?)
    }

    fn add(self, o: Dec) -> Option<Dec> {
        let scale = self.scale.max(o.scale);
        Some(Dec {
            m: self.rescale(scale)?.checked_add(o.rescale(scale)?)?,
            scale,
        })
    }

    fn sub(self, o: Dec) -> Option<Dec> {
        self.add(Dec {
            m: o.m.checked_neg()?,
            scale: o.scale,
        })
    }

    fn mul(self, o: Dec) -> Option<Dec> {
        Some(Dec {
            m: self.m.checked_mul(o.m)?,
            scale: self.scale.checked_add(o.scale)?,
        })
    }

    /// `DivRound(o, 16)`: rounded half away from zero at 16 decimal places.
    fn div(self, o: Dec) -> Option<Dec> {
        let e = i64::from(o.scale) + i64::from(DIV_PRECISION) - i64::from(self.scale);
        let (num, den) = if e >= 0 {
            (
                self.m
                    .checked_mul(10i128.checked_pow(u32::try_from(e).ok()?)?)?,
                o.m,
            )
        } else {
            (
                self.m,
                o.m.checked_mul(10i128.checked_pow(u32::try_from(-e).ok()?)?)?,
            )
        };
        let (q, r) = (num.checked_div(den)?, num.checked_rem(den)?);
        let round_away = r.unsigned_abs().checked_mul(2)? >= den.unsigned_abs();
        let q = if round_away {
            q.checked_add(num.signum() * den.signum())?
        } else {
            q
        };
        Some(Dec {
            m: q,
            scale: DIV_PRECISION,
        })
    }
}

#[derive(Clone, Copy)]
enum DecOp {
    Add,
    Sub,
    Mul,
    Div,
}

/// Sprig's `execDecimalOp`: folds with exact decimals, falling back to f64
/// arithmetic once a value leaves the range of the exact representation.
fn decimal_fold(name: &str, first: f64, rest: &[Value], op: DecOp) -> R {
    let bad = |f: f64| {
        let shown = gofmt::format_float(f, 'g', None);
        call_err(name, format!("Cannot create a Decimal from {shown}"))
    };
    if !first.is_finite() {
        return Err(bad(first));
    }
    let float_op = |x: f64, y: f64| match op {
        DecOp::Add => x + y,
        DecOp::Sub => x - y,
        DecOp::Mul => x * y,
        DecOp::Div => x / y,
    };
    // Ok: exact so far; Err: fell back to floating point.
    let mut acc: Result<Dec, f64> = Dec::from_f64(first).ok_or(first);
    for v in rest {
        let x = to_float64(v);
        if !x.is_finite() {
            return Err(bad(x));
        }
        if matches!(op, DecOp::Div) && x == 0.0 {
            return Err(call_err(name, "decimal division by 0"));
        }
        acc = match acc {
            Ok(d) => {
                let exact = Dec::from_f64(x).and_then(|dx| match op {
                    DecOp::Add => d.add(dx),
                    DecOp::Sub => d.sub(dx),
                    DecOp::Mul => d.mul(dx),
                    DecOp::Div => d.div(dx),
                });
                exact.ok_or_else(|| float_op(d.to_f64(), x))
            }
            Err(f) => Err(float_op(f, x)),
        };
    }
    Ok(float_value(acc.map_or_else(|f| f, Dec::to_f64)))
}

fn addf(a: &[Value]) -> R {
    decimal_fold("addf", 0.0, a, DecOp::Add)
}

fn subf(a: &[Value]) -> R {
    arity_min("subf", a, 1)?;
    decimal_fold("subf", to_float64(&a[0]), &a[1..], DecOp::Sub)
}

fn mulf(a: &[Value]) -> R {
    arity_min("mulf", a, 1)?;
    decimal_fold("mulf", to_float64(&a[0]), &a[1..], DecOp::Mul)
}

fn divf(a: &[Value]) -> R {
    arity_min("divf", a, 1)?;
    decimal_fold("divf", to_float64(&a[0]), &a[1..], DecOp::Div)
}

/// Loki `bytes`: go-humanize's `ParseBytes` ("3 kB" → 3000, "1 KiB" → 1024).
fn bytes(a: &[Value]) -> R {
    arity("bytes", a, 1)?;
    let s = s_arg(&a[0])?;
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == ','))
        .unwrap_or(s.len());
    let num: String = s[..split].chars().filter(|&c| c != ',').collect();
    let f: f64 = num.parse().map_err(|_| {
        let q = gofmt::quote_with(&num, '"', false);
        call_err(
            "bytes",
            format!("strconv.ParseFloat: parsing {q}: invalid syntax"),
        )
    })?;
    let unit = s[split..].trim().to_lowercase();
    let mult: f64 = match unit.as_str() {
        "" | "b" => 1.0,
        "k" | "kb" => 1e3,
        "ki" | "kib" => 1024.0,
        "m" | "mb" => 1e6,
        "mi" | "mib" => 1024f64.powi(2),
        "g" | "gb" => 1e9,
        "gi" | "gib" => 1024f64.powi(3),
        "t" | "tb" => 1e12,
        "ti" | "tib" => 1024f64.powi(4),
        "p" | "pb" => 1e15,
        "pi" | "pib" => 1024f64.powi(5),
        "e" | "eb" => 1e18,
        "ei" | "eib" => 1024f64.powi(6),
        _ => return Err(call_err("bytes", format!("unhandled size name: {unit}"))),
    };
    let total = f * mult;
    if total >= u64::MAX as f64 {
        return Err(call_err("bytes", format!("too large: {s}")));
    }
    Ok(float_value((total as u64) as f64))
}

/// Go's `time.ParseDuration`, in nanoseconds.
pub(crate) fn parse_duration(orig: &str) -> Result<i64, String> {
    let quoted = gofmt::quote_with(orig, '"', false);
    let invalid = || format!("time: invalid duration {quoted}");
    let (neg, mut s) = match orig.as_bytes().first() {
        Some(b'-') => (true, &orig[1..]),
        Some(b'+') => (false, &orig[1..]),
        _ => (false, orig),
    };
    if s == "0" {
        return Ok(0);
    }
    if s.is_empty() {
        return Err(invalid());
    }
    const LIMIT: u64 = 1 << 63;
    let mut total: u64 = 0;
    while !s.is_empty() {
        if !(s.starts_with('.') || s.as_bytes()[0].is_ascii_digit()) {
            return Err(invalid());
        }
        let int_len = s.bytes().take_while(u8::is_ascii_digit).count();
        let mut v: u64 = 0;
        for d in s[..int_len].bytes() {
            v = v
                .checked_mul(10)
                .and_then(|v| v.checked_add(u64::from(d - b'0')))
                .filter(|&v| v <= LIMIT)
                .ok_or_else(invalid)?;
        }
        s = &s[int_len..];
        let (mut frac, mut scale, mut has_frac) = (0u64, 1f64, false);
        if let Some(rest) = s.strip_prefix('.') {
            let n = rest.bytes().take_while(u8::is_ascii_digit).count();
            has_frac = n > 0;
            let mut overflow = false;
            for d in rest[..n].bytes() {
                if overflow || frac > (LIMIT - 1) / 10 {
                    overflow = true;
                    continue;
                }
                frac = frac * 10 + u64::from(d - b'0');
                scale *= 10.0;
            }
            s = &rest[n..];
        }
        if int_len == 0 && !has_frac {
            return Err(invalid());
        }
        let unit_len = s
            .find(|c: char| c == '.' || c.is_ascii_digit())
            .unwrap_or(s.len());
        if unit_len == 0 {
            return Err(format!("time: missing unit in duration {quoted}"));
        }
        let unit = match &s[..unit_len] {
            "ns" => 1u64,
            "us" | "µs" | "μs" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            u => {
                let uq = gofmt::quote_with(u, '"', false);
                return Err(format!("time: unknown unit {uq} in duration {quoted}"));
            }
        };
        s = &s[unit_len..];
        if v > LIMIT / unit {
            return Err(invalid());
        }
        v *= unit;
        if frac > 0 {
            v += (frac as f64 * (unit as f64 / scale)) as u64;
            if v > LIMIT {
                return Err(invalid());
            }
        }
        total = total
            .checked_add(v)
            .filter(|&t| t <= LIMIT)
            .ok_or_else(invalid)?;
    }
    if neg {
        return Ok((total as i64).wrapping_neg());
    }
    i64::try_from(total).map_err(|_| invalid())
}

/// Loki `duration` / `duration_seconds`: a Go duration string in seconds.
fn duration(a: &[Value]) -> R {
    arity("duration", a, 1)?;
    let ns = parse_duration(s_arg(&a[0])?).map_err(|e| call_err("duration", e))?;
    let secs = (ns / 1_000_000_000) as f64 + (ns % 1_000_000_000) as f64 / 1e9;
    Ok(float_value(secs))
}

// ---------------------------------------------------------------------------
// Dates. The server's local zone is UTC.

fn now(a: &[Value]) -> R {
    arity("now", a, 0)?;
    Ok(time_to_value(GoTime::now()))
}

/// Sprig `date layout t`: times, or Unix seconds as ints; anything else means now.
fn date(a: &[Value]) -> R {
    arity("date", a, 2)?;
    let layout = s_arg(&a[0])?;
    let t = match classify(&a[1]) {
        Go::Time(t) => t,
        Go::Int(secs) => GoTime::unix(secs, 0),
        _ => GoTime::now(),
    };
    string_result("date", layout::format(&t.in_utc(), layout))
}

fn to_date(a: &[Value]) -> R {
    arity("toDate", a, 2)?;
    let (layout, s) = (s_arg(&a[0])?, s_arg(&a[1])?);
    Ok(time_to_value(
        layout::parse(layout, s).unwrap_or_else(GoTime::zero),
    ))
}

/// Only UTC and Local (= UTC here) are known; other zones also fall back to UTC.
fn to_date_in_zone(a: &[Value]) -> R {
    arity("toDateInZone", a, 3)?;
    let (layout, _zone, s) = (s_arg(&a[0])?, s_arg(&a[1])?, s_arg(&a[2])?);
    Ok(time_to_value(
        layout::parse(layout, s).unwrap_or_else(GoTime::zero),
    ))
}

fn unix_epoch(a: &[Value]) -> R {
    arity("unixEpoch", a, 1)?;
    Ok(Value::String(t_arg(&a[0])?.secs.to_string()))
}

fn unix_epoch_millis(a: &[Value]) -> R {
    arity("unixEpochMillis", a, 1)?;
    Ok(Value::String(t_arg(&a[0])?.unix_millis().to_string()))
}

fn unix_epoch_nanos(a: &[Value]) -> R {
    arity("unixEpochNanos", a, 1)?;
    Ok(Value::String(t_arg(&a[0])?.unix_nanos().to_string()))
}

/// Loki `unixToTime`: the epoch's unit is chosen by its length in digits.
fn unix_to_time(a: &[Value]) -> R {
    arity("unixToTime", a, 1)?;
    let epoch = s_arg(&a[0])?;
    let fail = |detail: &str| {
        call_err(
            "unixToTime",
            format!("unable to parse time '{epoch}': {detail}"),
        )
    };
    let q = gofmt::quote_with(epoch, '"', false);
    let i: i64 = epoch
        .parse()
        .map_err(|_| fail(&format!("strconv.ParseInt: parsing {q}: invalid syntax")))?;
    let t = match epoch.len() {
        5 => GoTime::unix(i.wrapping_mul(86_400), 0),
        10 => GoTime::unix(i, 0),
        13 => GoTime::unix(0, i.wrapping_mul(1_000_000)),
        16 => GoTime::unix(0, i.wrapping_mul(1_000)),
        19 => GoTime::unix(0, i),
        _ => return Err(fail("%!w(<nil>)")),
    };
    Ok(time_to_value(t))
}

// ---------------------------------------------------------------------------
// Other Sprig functions.

fn from_json(a: &[Value]) -> R {
    arity("fromJson", a, 1)?;
    Ok(
        match serde_json::from_str::<serde_json::Value>(s_arg(&a[0])?) {
            Ok(v) => json_to_value(v),
            Err(_) => Value::Nil,
        },
    )
}

fn json_to_value(v: serde_json::Value) -> Value {
    match v {
        serde_json::Value::Null => Value::Nil,
        serde_json::Value::Bool(b) => Value::Bool(b),
        serde_json::Value::Number(n) => float_value(n.as_f64().unwrap_or(f64::NAN)),
        serde_json::Value::String(s) => Value::String(s),
        serde_json::Value::Array(items) => {
            Value::Array(items.into_iter().map(json_to_value).collect())
        }
        serde_json::Value::Object(o) => {
            Value::Map(o.into_iter().map(|(k, v)| (k, json_to_value(v))).collect())
        }
    }
}

/// Sprig `default d given`: `given` unless it is empty (zero, "", nil, empty).
fn default(a: &[Value]) -> R {
    arity_min("default", a, 1)?;
    Ok(match a.get(1) {
        Some(given) if truth(given) => given.clone(),
        _ => a[0].clone(),
    })
}
