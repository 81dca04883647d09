//! Times and durations as Loki's HTTP parameters, logcli and LogQL write
//! them, in nanoseconds since the Unix epoch. Shared by the HTTP API, the
//! LogQL parser and `skidder search`, so each accepts the same spellings.
//! "Now" is `skidder_common::format::layout::now_ns`, the one clock of
//! every crate.

fn duration_unit(u: &str) -> Option<i64> {
    Some(match u {
        "ns" => 1,
        "us" | "µs" => 1_000,
        "ms" => 1_000_000,
        "s" => 1_000_000_000,
        "m" => 60_000_000_000,
        "h" => 3_600_000_000_000,
        "d" => 86_400_000_000_000,
        "w" => 604_800_000_000_000,
        "y" => 31_536_000_000_000_000,
        _ => return None,
    })
}

/// Parses `1h30m`, `5m`, `250ms` into nanoseconds.
pub fn parse_duration(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    let mut i = 0;
    let mut total: i64 = 0;
    if b.is_empty() {
        return None;
    }
    while i < b.len() {
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        let n: i64 = s.get(start..i)?.parse().ok()?;
        let ustart = i;
        while i < b.len() && !b[i].is_ascii_digit() {
            i += 1;
        }
        let unit = duration_unit(s.get(ustart..i)?)?;
        total = total.checked_add(n.checked_mul(unit)?)?;
    }
    Some(total)
}

/// RFC 3339, or a Unix epoch: seconds (up to 10 digits or with a fraction),
/// milliseconds (13 digits) or nanoseconds.
pub fn parse_time(v: &str) -> Option<i64> {
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(v) {
        return t.timestamp_nanos_opt();
    }
    if let Ok(i) = v.parse::<i64>() {
        return Some(match v.trim_start_matches('-').len() {
            0..=10 => i.checked_mul(1_000_000_000)?,
            11..=13 => i.checked_mul(1_000_000)?,
            _ => i,
        });
    }
    let f = v
        .parse::<f64>()
        .ok()
        .filter(|f| f.is_finite() && f.abs() < 9.2e9)?;
    Some((f * 1e9).round() as i64)
}

/// `5m`, `1h30m`, or (float) seconds.
pub fn parse_step(v: &str) -> Option<i64> {
    parse_duration(v).or_else(|| {
        v.parse::<f64>()
            .ok()
            .filter(|f| f.is_finite() && *f > 0.0 && *f < 9.2e9)
            .map(|f| (f * 1e9) as i64)
    })
}
