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

/// A duration as Go's `time.ParseDuration` reads it, in seconds: what a
/// log line holds (`1.5s`, `250ms`, `1h2m3.5s`, `-2s`, `0`) and what
/// LogQL's duration label filters compare (`| latency > 250ms`).
pub fn parse_go_duration(s: &str) -> Option<f64> {
    let (sign, mut rest) = match s.as_bytes().first()? {
        b'-' => (-1.0, &s[1..]),
        b'+' => (1.0, &s[1..]),
        _ => (1.0, s),
    };
    if rest == "0" {
        return Some(0.0);
    }
    if rest.is_empty() {
        return None;
    }
    let mut total = 0.0;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit() && c != '.')
            .unwrap_or(rest.len());
        let number = &rest[..digits];
        if number.is_empty() || number == "." || number.matches('.').count() > 1 {
            return None;
        }
        let value: f64 = number.parse().ok()?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let unit = match &rest[..unit_len] {
            "ns" => 1e-9,
            "us" | "µs" | "μs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return None,
        };
        rest = &rest[unit_len..];
        total += value * unit;
    }
    Some(sign * total)
}

/// A byte size as Loki reads one (go-humanize's `ParseBytes`): `20MB`,
/// `1.5 KiB`, `100b`, `2048`; decimal units are powers of 1000 and `i`
/// units of 1024, in any case.
pub fn parse_bytes(s: &str) -> Option<f64> {
    let s = s.trim();
    if let Ok(n) = s.parse::<f64>() {
        return n.is_finite().then_some(n);
    }
    s.parse::<bytesize::ByteSize>()
        .ok()
        .map(|b| b.as_u64() as f64)
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

/// A nanosecond time as RFC 3339 in UTC, with the fraction `format` says
/// (`Millis` for API times, `Nanos` where every digit counts).
pub fn rfc3339(ns: i64, format: chrono::SecondsFormat) -> String {
    chrono::DateTime::from_timestamp(
        ns.div_euclid(1_000_000_000),
        ns.rem_euclid(1_000_000_000) as u32,
    )
    .map(|t| t.to_rfc3339_opts(format, true))
    .unwrap_or_default()
}

#[cfg(test)]
mod go_tests {
    use super::*;

    #[test]
    fn go_durations_parse_as_go_does() {
        for (text, want) in [
            ("0", 0.0),
            ("1.5s", 1.5),
            ("250ms", 0.25),
            ("1h2m3.5s", 3723.5),
            ("-2s", -2.0),
            ("+3m", 180.0),
            (".5s", 0.5),
            ("1.s", 1.0),
            ("3us", 3e-6),
            ("3µs", 3e-6),
            ("100ns", 1e-7),
        ] {
            let got = parse_go_duration(text).unwrap_or_else(|| panic!("{text}"));
            assert!((got - want).abs() < 1e-12, "{text}: {got}");
        }
        for bad in ["", "1", "s", "1d", "1.2.3s", ".s", "-", "1s2", "abc", "1 s"] {
            assert_eq!(parse_go_duration(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn byte_sizes_parse_as_humanize_does() {
        for (text, want) in [
            ("2048", 2048.0),
            ("100b", 100.0),
            ("20MB", 20e6),
            ("20mb", 20e6),
            ("1.5KiB", 1536.0),
            ("1 GiB", 1073741824.0),
            ("3kb", 3000.0),
        ] {
            assert_eq!(parse_bytes(text), Some(want), "{text}");
        }
        for bad in ["", "MB", "20 parsecs", "NaN"] {
            assert_eq!(parse_bytes(bad), None, "{bad:?}");
        }
    }
}
