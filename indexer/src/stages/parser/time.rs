//! Event times from JSON values: RFC 3339 strings and epoch numbers in
//! any unit, exactly (f64 cannot hold 19 significant digits).

use simd_json::prelude::{TypedValue, ValueAsScalar};
use simd_json::ValueType;

use super::Value;
use crate::config::TimestampFormat;

/// Nanoseconds from a number whose unit is guessed by magnitude.
fn epoch_auto(x: f64) -> Option<i64> {
    let a = x.abs();
    let scale = if a < 1e11 {
        1e9
    } else if a < 1e14 {
        1e6
    } else if a < 1e17 {
        1e3
    } else {
        1.0
    };
    epoch_scaled(x, scale)
}

/// Whole units in integer arithmetic (f64 cannot hold 19 significant
/// digits); fractions of a second are rounded to the microsecond.
fn epoch_scaled(x: f64, ns_per_unit: f64) -> Option<i64> {
    if !x.is_finite() || (x * ns_per_unit).abs() >= 9.2e18 {
        return None;
    }
    let whole = x.trunc();
    let frac_ns = if ns_per_unit == 1e9 {
        ((x - whole) * 1e6).round() as i64 * 1_000
    } else {
        ((x - whole) * ns_per_unit).round() as i64
    };
    (whole as i64)
        .checked_mul(ns_per_unit as i64)?
        .checked_add(frac_ns)
}

pub(super) fn parse_time(v: Value<'_, '_>, fmt: &TimestampFormat) -> Option<i64> {
    let num = match v.value_type() {
        ValueType::I64 => v.as_i64().map(|i| i as f64),
        ValueType::U64 => v.as_u64().map(|u| u as f64),
        ValueType::F64 => v.as_f64(),
        ValueType::String => {
            let s = v.as_str().unwrap_or_default();
            if matches!(fmt, TimestampFormat::Auto | TimestampFormat::Rfc3339) {
                if let Ok(t) = chrono::DateTime::parse_from_rfc3339(s) {
                    return t.timestamp_nanos_opt();
                }
            }
            s.trim().parse::<f64>().ok()
        }
        _ => None,
    }?;
    // Integers beyond 2^53 lose precision as f64; take them exactly.
    if let (ValueType::I64, TimestampFormat::EpochNs) = (v.value_type(), fmt) {
        return v.as_i64();
    }
    match fmt {
        TimestampFormat::Auto => epoch_auto(num),
        TimestampFormat::Rfc3339 => None,
        TimestampFormat::EpochS => epoch_scaled(num, 1e9),
        TimestampFormat::EpochMs => epoch_scaled(num, 1e6),
        TimestampFormat::EpochUs => epoch_scaled(num, 1e3),
        TimestampFormat::EpochNs => epoch_scaled(num, 1.0),
    }
}
