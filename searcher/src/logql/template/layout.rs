//! Go `time.Time` values for templates: civil-date arithmetic plus Go's
//! reference-time layouts ("2006-01-02T15:04:05Z07:00") for `Format` and `Parse`.
//!
//! Only what templates need is modelled: an instant (Unix seconds + nanoseconds)
//! and a fixed zone (offset and name). The server's local zone is taken to be UTC.

/// A Go `time.Time` with a fixed zone.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct GoTime {
    /// Seconds since the Unix epoch (UTC).
    pub secs: i64,
    /// Nanoseconds within the second, `0..1_000_000_000`.
    pub nsec: u32,
    /// Zone offset in seconds east of UTC.
    pub offset: i32,
    /// Zone name ("UTC", a parsed abbreviation, or "" for a nameless fixed zone).
    pub zone: String,
}

/// Go's `time.Time.String()` layout (without the monotonic clock suffix).
pub(crate) const DEFAULT_LAYOUT: &str = "2006-01-02 15:04:05.999999999 -0700 MST";

const LONG_MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];
const LONG_DAYS: [&str; 7] = [
    "Sunday",
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
];

impl GoTime {
    /// `time.Unix(secs, nsec)` in UTC; `nsec` may be out of range and is normalised.
    pub fn unix(secs: i64, nsec: i64) -> GoTime {
        let secs = secs.wrapping_add(nsec.div_euclid(1_000_000_000));
        GoTime {
            secs,
            nsec: nsec.rem_euclid(1_000_000_000) as u32,
            offset: 0,
            zone: "UTC".to_string(),
        }
    }

    /// Go's zero `time.Time{}`: 0001-01-01 00:00:00 UTC.
    pub fn zero() -> GoTime {
        GoTime::unix(days_from_civil(1, 1, 1) * 86_400, 0)
    }

    pub fn now() -> GoTime {
        match std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
            Ok(d) => GoTime::unix(d.as_secs() as i64, i64::from(d.subsec_nanos())),
            Err(e) => {
                let d = e.duration();
                GoTime::unix(-(d.as_secs() as i64), -i64::from(d.subsec_nanos()))
            }
        }
    }

    /// The same instant in UTC (what `t.In(time.Local)` gives when Local is UTC).
    pub fn in_utc(&self) -> GoTime {
        GoTime {
            offset: 0,
            zone: "UTC".to_string(),
            ..self.clone()
        }
    }

    pub fn unix_millis(&self) -> i64 {
        self.secs
            .wrapping_mul(1000)
            .wrapping_add(i64::from(self.nsec / 1_000_000))
    }

    pub fn unix_nanos(&self) -> i64 {
        self.secs
            .wrapping_mul(1_000_000_000)
            .wrapping_add(i64::from(self.nsec))
    }

    /// Go's `t.String()`.
    pub fn go_string(&self) -> String {
        format(self, DEFAULT_LAYOUT)
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (month 1..=12).
pub(crate) fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = i64::from((month + 9) % 12);
    let doy = (153 * mp + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Inverse of [`days_from_civil`]: (year, month, day).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

fn is_leap(year: i64) -> bool {
    year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)
}

fn days_in_month(month: u32, year: i64) -> u32 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Broken-down wall clock of a time in its own zone.
struct Civil {
    year: i64,
    month: u32,
    day: u32,
    yday: u32,
    weekday: usize,
    hour: u32,
    minute: u32,
    second: u32,
}

fn civil(t: &GoTime) -> Civil {
    let local = t.secs.saturating_add(i64::from(t.offset));
    let days = local.div_euclid(86_400);
    let sod = local.rem_euclid(86_400) as u32;
    let (year, month, day) = civil_from_days(days);
    Civil {
        year,
        month,
        day,
        yday: (days - days_from_civil(year, 1, 1) + 1) as u32,
        weekday: (days + 4).rem_euclid(7) as usize,
        hour: sod / 3600,
        minute: sod / 60 % 60,
        second: sod % 60,
    }
}

/// One layout element, as recognised by Go's `nextStdChunk`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Std {
    LongMonth,
    Month,
    NumMonth,
    ZeroMonth,
    LongWeekDay,
    WeekDay,
    Day,
    UnderDay,
    ZeroDay,
    UnderYearDay,
    ZeroYearDay,
    Hour,
    Hour12,
    ZeroHour12,
    Minute,
    ZeroMinute,
    Second,
    ZeroSecond,
    LongYear,
    Year,
    PM,
    Pm,
    TZ,
    /// Numeric zone: `z` is the "Z" (ISO 8601) variant, `colon` uses ':' separators,
    /// `secs` includes seconds and `short` is hours only.
    NumTZ {
        z: bool,
        colon: bool,
        secs: bool,
        short: bool,
    },
    /// Fractional seconds: `digits` digits after `sep`; `trim` for the 9s form.
    Frac {
        digits: usize,
        sep: u8,
        trim: bool,
    },
}

/// Splits `layout` into (literal prefix, element, rest) like Go's `nextStdChunk`.
fn next_std_chunk(layout: &str) -> Option<(&str, Std, &str)> {
    let b = layout.as_bytes();
    let has = |i: usize, s: &str| layout[i..].starts_with(s);
    let lower_at = |j: usize| b.get(j).is_some_and(|c| c.is_ascii_lowercase());
    for i in 0..b.len() {
        let found: Option<(Std, usize)> = match b[i] {
            b'J' if has(i, "January") => Some((Std::LongMonth, 7)),
            b'J' if has(i, "Jan") && !lower_at(i + 3) => Some((Std::Month, 3)),
            b'M' if has(i, "Monday") => Some((Std::LongWeekDay, 6)),
            b'M' if has(i, "Mon") && !lower_at(i + 3) => Some((Std::WeekDay, 3)),
            b'M' if has(i, "MST") => Some((Std::TZ, 3)),
            b'0' => match b.get(i + 1) {
                Some(b'1') => Some((Std::ZeroMonth, 2)),
                Some(b'2') => Some((Std::ZeroDay, 2)),
                Some(b'3') => Some((Std::ZeroHour12, 2)),
                Some(b'4') => Some((Std::ZeroMinute, 2)),
                Some(b'5') => Some((Std::ZeroSecond, 2)),
                Some(b'6') => Some((Std::Year, 2)),
                Some(b'0') if b.get(i + 2) == Some(&b'2') => Some((Std::ZeroYearDay, 3)),
                _ => None,
            },
            b'1' if b.get(i + 1) == Some(&b'5') => Some((Std::Hour, 2)),
            b'1' => Some((Std::NumMonth, 1)),
            b'2' if has(i, "2006") => Some((Std::LongYear, 4)),
            b'2' => Some((Std::Day, 1)),
            b'_' if has(i, "_2006") => {
                // A literal '_' followed by a long year.
                return Some((&layout[..i + 1], Std::LongYear, &layout[i + 5..]));
            }
            b'_' if has(i, "_2") => Some((Std::UnderDay, 2)),
            b'_' if has(i, "__2") => Some((Std::UnderYearDay, 3)),
            b'3' => Some((Std::Hour12, 1)),
            b'4' => Some((Std::Minute, 1)),
            b'5' => Some((Std::Second, 1)),
            b'P' if b.get(i + 1) == Some(&b'M') => Some((Std::PM, 2)),
            b'p' if b.get(i + 1) == Some(&b'm') => Some((Std::Pm, 2)),
            b'-' | b'Z' => {
                let z = b[i] == b'Z';
                let tz = |colon, secs, short| Std::NumTZ {
                    z,
                    colon,
                    secs,
                    short,
                };
                let rest = &layout[i + 1..];
                if rest.starts_with("070000") {
                    Some((tz(false, true, false), 7))
                } else if rest.starts_with("07:00:00") {
                    Some((tz(true, true, false), 9))
                } else if rest.starts_with("0700") {
                    Some((tz(false, false, false), 5))
                } else if rest.starts_with("07:00") {
                    Some((tz(true, false, false), 6))
                } else if rest.starts_with("07") {
                    Some((tz(false, false, true), 3))
                } else {
                    None
                }
            }
            sep @ (b'.' | b',') if matches!(b.get(i + 1), Some(b'0' | b'9')) => {
                let ch = b[i + 1];
                let mut j = i + 1;
                while j < b.len() && b[j] == ch {
                    j += 1;
                }
                if b.get(j).is_some_and(u8::is_ascii_digit) {
                    None
                } else {
                    Some((
                        Std::Frac {
                            digits: j - i - 1,
                            sep,
                            trim: ch == b'9',
                        },
                        j - i,
                    ))
                }
            }
            _ => None,
        };
        if let Some((std, len)) = found {
            return Some((&layout[..i], std, &layout[i + len..]));
        }
    }
    None
}

fn push_int(out: &mut String, v: i64, width: usize) {
    if v < 0 {
        out.push('-');
    }
    let digits = v.unsigned_abs().to_string();
    for _ in digits.len()..width {
        out.push('0');
    }
    out.push_str(&digits);
}

/// Go's `t.Format(layout)`.
pub(crate) fn format(t: &GoTime, layout: &str) -> String {
    let c = civil(t);
    let mut out = String::with_capacity(layout.len() + 16);
    let mut rest = layout;
    while let Some((prefix, std, suffix)) = next_std_chunk(rest) {
        out.push_str(prefix);
        rest = suffix;
        match std {
            Std::Year => push_int(&mut out, c.year.abs() % 100, 2),
            Std::LongYear => push_int(&mut out, c.year, 4),
            Std::Month => out.push_str(&LONG_MONTHS[c.month as usize - 1][..3]),
            Std::LongMonth => out.push_str(LONG_MONTHS[c.month as usize - 1]),
            Std::NumMonth => push_int(&mut out, c.month.into(), 0),
            Std::ZeroMonth => push_int(&mut out, c.month.into(), 2),
            Std::WeekDay => out.push_str(&LONG_DAYS[c.weekday][..3]),
            Std::LongWeekDay => out.push_str(LONG_DAYS[c.weekday]),
            Std::Day => push_int(&mut out, c.day.into(), 0),
            Std::UnderDay => {
                if c.day < 10 {
                    out.push(' ');
                }
                push_int(&mut out, c.day.into(), 0);
            }
            Std::ZeroDay => push_int(&mut out, c.day.into(), 2),
            Std::UnderYearDay => {
                let s = c.yday.to_string();
                for _ in s.len()..3 {
                    out.push(' ');
                }
                out.push_str(&s);
            }
            Std::ZeroYearDay => push_int(&mut out, c.yday.into(), 3),
            Std::Hour => push_int(&mut out, c.hour.into(), 2),
            Std::Hour12 | Std::ZeroHour12 => {
                let h = match c.hour % 12 {
                    0 => 12,
                    h => h,
                };
                push_int(&mut out, h.into(), if std == Std::Hour12 { 0 } else { 2 });
            }
            Std::Minute => push_int(&mut out, c.minute.into(), 0),
            Std::ZeroMinute => push_int(&mut out, c.minute.into(), 2),
            Std::Second => push_int(&mut out, c.second.into(), 0),
            Std::ZeroSecond => push_int(&mut out, c.second.into(), 2),
            Std::PM => out.push_str(if c.hour >= 12 { "PM" } else { "AM" }),
            Std::Pm => out.push_str(if c.hour >= 12 { "pm" } else { "am" }),
            Std::NumTZ {
                z,
                colon,
                secs,
                short,
            } => {
                if z && t.offset == 0 {
                    out.push('Z');
                    continue;
                }
                let abs = t.offset.unsigned_abs();
                out.push(if t.offset < 0 { '-' } else { '+' });
                push_int(&mut out, i64::from(abs / 3600), 2);
                if colon {
                    out.push(':');
                }
                if !short {
                    push_int(&mut out, i64::from(abs / 60 % 60), 2);
                }
                if secs {
                    if colon {
                        out.push(':');
                    }
                    push_int(&mut out, i64::from(abs % 60), 2);
                }
            }
            Std::TZ => {
                if t.zone.is_empty() {
                    let abs = t.offset.unsigned_abs() / 60;
                    out.push(if t.offset < 0 { '-' } else { '+' });
                    push_int(&mut out, i64::from(abs / 60), 2);
                    push_int(&mut out, i64::from(abs % 60), 2);
                } else {
                    out.push_str(&t.zone);
                }
            }
            Std::Frac { digits, sep, trim } => {
                if trim && (digits == 0 || t.nsec == 0) {
                    continue;
                }
                let mut frac = format!("{:09}", t.nsec);
                frac.truncate(digits.min(9));
                if trim {
                    let kept = frac.trim_end_matches('0').len();
                    frac.truncate(kept);
                    if frac.is_empty() {
                        continue;
                    }
                }
                out.push(char::from(sep));
                out.push_str(&frac);
            }
        }
    }
    out.push_str(rest);
    out
}

/// Reads one or two digits (exactly two when `fixed`), like Go's `getnum`.
fn getnum(v: &[u8], fixed: bool) -> Option<(i64, &[u8])> {
    let d0 = *v.first().filter(|c| c.is_ascii_digit())?;
    match v.get(1) {
        Some(d1) if d1.is_ascii_digit() => {
            Some((i64::from(d0 - b'0') * 10 + i64::from(d1 - b'0'), &v[2..]))
        }
        _ if fixed => None,
        _ => Some((i64::from(d0 - b'0'), &v[1..])),
    }
}

/// Reads one to three digits, like Go's `getnum3`.
fn getnum3(v: &[u8], fixed: bool) -> Option<(i64, &[u8])> {
    let n = v.iter().take(3).take_while(|c| c.is_ascii_digit()).count();
    if n == 0 || (fixed && n != 3) {
        return None;
    }
    let num = v[..n]
        .iter()
        .fold(0i64, |acc, d| acc * 10 + i64::from(d - b'0'));
    Some((num, &v[n..]))
}

/// Case-insensitive prefix lookup of a month or day name.
fn lookup<'a>(names: &[&str], short: bool, v: &'a [u8]) -> Option<(usize, &'a [u8])> {
    names.iter().enumerate().find_map(|(i, name)| {
        let name = if short {
            &name.as_bytes()[..3]
        } else {
            name.as_bytes()
        };
        (v.len() >= name.len() && v[..name.len()].eq_ignore_ascii_case(name))
            .then(|| (i, &v[name.len()..]))
    })
}

/// Go's `skip`: matches a literal layout prefix; a space matches one or more spaces.
fn skip<'a>(mut v: &'a [u8], prefix: &str) -> Option<&'a [u8]> {
    let mut p = prefix.as_bytes();
    while let Some(&c) = p.first() {
        if c == b' ' {
            if v.first().is_some_and(|&x| x != b' ') {
                return None;
            }
            p = trim_spaces(p);
            v = trim_spaces(v);
            continue;
        }
        if v.first() != Some(&c) {
            return None;
        }
        p = &p[1..];
        v = &v[1..];
    }
    Some(v)
}

fn trim_spaces(v: &[u8]) -> &[u8] {
    let n = v.iter().take_while(|&&c| c == b' ').count();
    &v[n..]
}

/// Length of a time-zone abbreviation at the start of `v` (Go's `parseTimeZone`).
fn parse_zone_name(v: &[u8]) -> Option<usize> {
    if v.len() < 3 {
        return None;
    }
    if v.len() >= 4 && (&v[..4] == b"ChST" || &v[..4] == b"MeST") {
        return Some(4);
    }
    if &v[..3] == b"GMT" {
        return Some(3 + signed_offset_len(&v[3..]));
    }
    if v[0] == b'+' || v[0] == b'-' {
        return Some(signed_offset_len(v)).filter(|&n| n > 0);
    }
    let upper = v
        .iter()
        .take(6)
        .take_while(|c| c.is_ascii_uppercase())
        .count();
    match upper {
        3 => Some(3),
        4 if v[3] == b'T' || &v[..4] == b"WITA" => Some(4),
        5 if v[4] == b'T' => Some(5),
        _ => None,
    }
}

/// Length of "+h" / "-hh" (hours 0..=23) at the start of `v`, or 0.
fn signed_offset_len(v: &[u8]) -> usize {
    if !matches!(v.first(), Some(b'+' | b'-')) {
        return 0;
    }
    let n = v[1..].iter().take_while(|c| c.is_ascii_digit()).count();
    let digits = &v[1..1 + n];
    match std::str::from_utf8(digits)
        .ok()
        .and_then(|s| s.parse::<u32>().ok())
    {
        Some(h) if n > 0 && h <= 23 => 1 + n,
        _ => 0,
    }
}

/// Parses ".123" / ",123" of total length `n` (separator included) into nanoseconds.
fn parse_nanos(v: &[u8], n: usize) -> Option<u32> {
    if !matches!(v.first(), Some(b'.' | b',')) || n < 2 || v.len() < n {
        return None;
    }
    let digits = &v[1..n.min(10)];
    if !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let mut ns = digits
        .iter()
        .fold(0u32, |acc, d| acc * 10 + u32::from(d - b'0'));
    for _ in digits.len()..9 {
        ns *= 10;
    }
    Some(ns)
}

/// Go's `time.Parse(layout, value)` with the local zone being UTC; `None` on any error.
pub(crate) fn parse(layout: &str, value: &str) -> Option<GoTime> {
    let mut v = value.as_bytes();
    let mut rest = layout;
    let (mut year, mut month, mut day, mut yday) = (0i64, -1i64, -1i64, -1i64);
    let (mut hour, mut min, mut sec, mut nsec) = (0i64, 0i64, 0i64, 0u32);
    let (mut pm, mut am) = (false, false);
    let mut utc = false;
    let mut zone_offset: Option<i64> = None;
    let mut zone_name = String::new();

    loop {
        let Some((prefix, std, suffix)) = next_std_chunk(rest) else {
            v = skip(v, rest)?;
            break;
        };
        v = skip(v, prefix)?;
        rest = suffix;
        match std {
            Std::Year => {
                let (n, r) = getnum(v, true)?;
                year = if n >= 69 { n + 1900 } else { n + 2000 };
                v = r;
            }
            Std::LongYear => {
                if v.len() < 4 || !v[..4].iter().all(u8::is_ascii_digit) {
                    return None;
                }
                year = v[..4]
                    .iter()
                    .fold(0, |acc, d| acc * 10 + i64::from(d - b'0'));
                v = &v[4..];
            }
            Std::Month | Std::LongMonth => {
                let (i, r) = lookup(&LONG_MONTHS, std == Std::Month, v)?;
                month = i as i64 + 1;
                v = r;
            }
            Std::NumMonth | Std::ZeroMonth => {
                let (n, r) = getnum(v, std == Std::ZeroMonth)?;
                if !(1..=12).contains(&n) {
                    return None;
                }
                month = n;
                v = r;
            }
            Std::WeekDay | Std::LongWeekDay => {
                v = lookup(&LONG_DAYS, std == Std::WeekDay, v)?.1;
            }
            Std::Day | Std::UnderDay | Std::ZeroDay => {
                if std == Std::UnderDay && v.first() == Some(&b' ') {
                    v = &v[1..];
                }
                let (n, r) = getnum(v, std == Std::ZeroDay)?;
                day = n;
                v = r;
            }
            Std::UnderYearDay | Std::ZeroYearDay => {
                for _ in 0..2 {
                    if std == Std::UnderYearDay && v.first() == Some(&b' ') {
                        v = &v[1..];
                    }
                }
                let (n, r) = getnum3(v, std == Std::ZeroYearDay)?;
                if !(1..=366).contains(&n) {
                    return None;
                }
                yday = n;
                v = r;
            }
            Std::Hour => {
                let (n, r) = getnum(v, false)?;
                if n > 23 {
                    return None;
                }
                hour = n;
                v = r;
            }
            Std::Hour12 | Std::ZeroHour12 => {
                let (n, r) = getnum(v, std == Std::ZeroHour12)?;
                if n > 12 {
                    return None;
                }
                hour = n;
                v = r;
            }
            Std::Minute | Std::ZeroMinute => {
                let (n, r) = getnum(v, std == Std::ZeroMinute)?;
                if n > 59 {
                    return None;
                }
                min = n;
                v = r;
            }
            Std::Second | Std::ZeroSecond => {
                let (n, r) = getnum(v, std == Std::ZeroSecond)?;
                if n > 59 {
                    return None;
                }
                sec = n;
                v = r;
                // A fractional second in the value but not in the layout is accepted.
                let frac_next = matches!(next_std_chunk(rest), Some((_, Std::Frac { .. }, _)));
                if v.len() >= 2
                    && matches!(v[0], b'.' | b',')
                    && v[1].is_ascii_digit()
                    && !frac_next
                {
                    let n = 1 + v[1..].iter().take_while(|c| c.is_ascii_digit()).count();
                    nsec = parse_nanos(v, n)?;
                    v = &v[n..];
                }
            }
            Std::PM | Std::Pm => {
                let p = v.get(..2)?;
                let (am_s, pm_s): (&[u8], &[u8]) = if std == Std::PM {
                    (b"AM", b"PM")
                } else {
                    (b"am", b"pm")
                };
                if p == pm_s {
                    pm = true;
                } else if p == am_s {
                    am = true;
                } else {
                    return None;
                }
                v = &v[2..];
            }
            Std::NumTZ {
                z,
                colon,
                secs,
                short,
            } => {
                if z && v.first() == Some(&b'Z') {
                    v = &v[1..];
                    utc = true;
                    continue;
                }
                let (h, m, s, len): (&[u8], &[u8], &[u8], usize) = if colon && !secs {
                    let p = v.get(..6).filter(|p| p[3] == b':')?;
                    (&p[1..3], &p[4..6], b"00", 6)
                } else if short {
                    let p = v.get(..3)?;
                    (&p[1..3], b"00", b"00", 3)
                } else if colon {
                    let p = v.get(..9).filter(|p| p[3] == b':' && p[6] == b':')?;
                    (&p[1..3], &p[4..6], &p[7..9], 9)
                } else if secs {
                    let p = v.get(..7)?;
                    (&p[1..3], &p[3..5], &p[5..7], 7)
                } else {
                    let p = v.get(..5)?;
                    (&p[1..3], &p[3..5], b"00", 5)
                };
                let (hh, mm, ss) = (getnum(h, true)?.0, getnum(m, true)?.0, getnum(s, true)?.0);
                if hh > 24 || mm > 60 || ss > 60 {
                    return None;
                }
                let off = (hh * 60 + mm) * 60 + ss;
                zone_offset = Some(match v[0] {
                    b'+' => off,
                    b'-' => -off,
                    _ => return None,
                });
                v = &v[len..];
            }
            Std::TZ => {
                if v.starts_with(b"UTC") {
                    utc = true;
                    v = &v[3..];
                    continue;
                }
                let n = parse_zone_name(v)?;
                zone_name = String::from_utf8_lossy(&v[..n]).into_owned();
                v = &v[n..];
            }
            Std::Frac { digits, trim, .. } => {
                if trim {
                    if v.len() < 2 || !matches!(v[0], b'.' | b',') || !v[1].is_ascii_digit() {
                        continue;
                    }
                    let n = 1 + v[1..].iter().take_while(|c| c.is_ascii_digit()).count();
                    nsec = parse_nanos(v, n)?;
                    v = &v[n..];
                } else {
                    nsec = parse_nanos(v, 1 + digits)?;
                    v = &v[1 + digits..];
                }
            }
        }
    }
    if !v.is_empty() {
        return None;
    }
    if pm && hour < 12 {
        hour += 12;
    } else if am && hour == 12 {
        hour = 0;
    }
    if yday >= 0 {
        let leap = i64::from(is_leap(year));
        if yday > 365 + leap {
            return None;
        }
        let (mut m, mut rem) = (1u32, yday);
        while rem > i64::from(days_in_month(m, year)) {
            rem -= i64::from(days_in_month(m, year));
            m += 1;
        }
        if (month >= 0 && month != i64::from(m)) || (day >= 0 && day != rem) {
            return None;
        }
        month = i64::from(m);
        day = rem;
    } else {
        if month < 0 {
            month = 1;
        }
        if day < 0 {
            day = 1;
        }
    }
    let month = month as u32;
    if day < 1 || day > i64::from(days_in_month(month, year)) {
        return None;
    }
    let wall = days_from_civil(year, month, day as u32) * 86_400 + hour * 3600 + min * 60 + sec;
    let mut t = GoTime::unix(wall, i64::from(nsec));
    if utc {
        return Some(t);
    }
    if let Some(off) = zone_offset {
        t.secs -= off;
        if off != 0 || !(zone_name.is_empty() || zone_name == "UTC") {
            t.offset = off as i32;
            t.zone = zone_name;
        }
        return Some(t);
    }
    if !zone_name.is_empty() && zone_name != "UTC" {
        // An unknown abbreviation: a fake zone with that name, offset from "GMT+h" only.
        let off = zone_name
            .strip_prefix("GMT")
            .filter(|s| !s.is_empty())
            .and_then(|s| s.parse::<i32>().ok())
            .unwrap_or(0);
        t.offset = off * 3600;
        t.zone = zone_name;
    }
    Some(t)
}
