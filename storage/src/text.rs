//! Timestamp text: the one parser and formatter of timestamps as text, shared by SQL literals and
//! casts, `COPY`, file import and export (microseconds since the Unix epoch, UTC, proleptic
//! Gregorian calendar).

/// Microseconds per day.
pub const US_PER_DAY: i64 = 86_400_000_000;

/// Days since 1970-01-01 of a civil date (proleptic Gregorian).
pub fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Civil date of days since 1970-01-01.
pub fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// Days in month `m` of year `y`.
pub fn days_in_month(y: i64, m: i64) -> i64 {
    let (ny, nm) = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
    days_from_civil(ny, nm, 1) - days_from_civil(y, m, 1)
}

/// Splits a time of day from its zone offset: (`HH:MM[:SS[.f]]`, offset in µs east of UTC).
/// `None` for a malformed offset.
fn split_offset(time: &str) -> Option<(&str, i64)> {
    let time = time.trim();
    if let Some(t) = time.strip_suffix('Z').or_else(|| time.strip_suffix('z')) {
        return Some((t.trim_end(), 0));
    }
    let Some(at) = time.rfind(['+', '-']) else {
        return Some((time, 0));
    };
    let (clock, zone) = time.split_at(at);
    let sign = if zone.starts_with('-') { -1 } else { 1 };
    let digits: String = zone.get(1..)?.chars().filter(|c| *c != ':').collect();
    if digits.is_empty() || digits.len() > 6 || !digits.chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        match digits.get(r) {
            Some("") | None => Some(0),
            Some(d) => d.parse().ok(),
        }
    };
    let (h, m, sec) = match digits.len() {
        1 | 2 => (num(0..digits.len())?, 0, 0),
        3 | 4 => (
            num(0..digits.len() - 2)?,
            num(digits.len() - 2..digits.len())?,
            0,
        ),
        _ => (num(0..2)?, num(2..4)?, num(4..digits.len())?),
    };
    if h > 15 || m > 59 || sec > 59 {
        return None;
    }
    Some((
        clock.trim_end(),
        sign * ((h * 60 + m) * 60 + sec) * 1_000_000,
    ))
}

/// Parses `YYYY-MM-DD[ |T]HH:MM[:SS[.ffffff]][zone]` (or a date alone) as µs since the epoch
/// (UTC); a zone (`Z`, `+09:00`, `-0530`) converts the time to UTC.
pub fn parse_timestamp(s: &str) -> Result<i64, String> {
    let bad = || format!("{s:?} is not a timestamp (expected YYYY-MM-DD[ HH:MM:SS[.ffffff]])");
    let t = s.trim();
    let (date, time) = match t.find([' ', 'T']) {
        Some(i) => (
            t.get(..i).ok_or_else(bad)?,
            Some(t.get(i + 1..).ok_or_else(bad)?.trim()),
        ),
        None => (t, None),
    };
    let mut dp = date.splitn(3, '-');
    let y: i64 = dp.next().and_then(|v| v.parse().ok()).ok_or_else(bad)?;
    let m: i64 = dp.next().and_then(|v| v.parse().ok()).ok_or_else(bad)?;
    let d: i64 = dp.next().and_then(|v| v.parse().ok()).ok_or_else(bad)?;
    if !(1..=12).contains(&m)
        || d < 1
        || d > days_in_month(y, m)
        || !(-290_000..=290_000).contains(&y)
    {
        return Err(bad());
    }
    let mut us = days_from_civil(y, m, d) * US_PER_DAY;
    if let Some(time) = time {
        // A zone suffix (`Z`, `+09:00`, `-0530`, `+00`) converts the local time to UTC.
        let (time, offset_us) = split_offset(time).ok_or_else(bad)?;
        us -= offset_us;
        let mut tp = time.splitn(3, ':');
        let h: i64 = tp.next().and_then(|v| v.parse().ok()).ok_or_else(bad)?;
        let mi: i64 = tp.next().and_then(|v| v.parse().ok()).ok_or_else(bad)?;
        let (sec, frac) = match tp.next() {
            None => (0, 0),
            Some(sv) => {
                let (whole, frac) = sv.split_once('.').unwrap_or((sv, ""));
                let sec: i64 = whole.parse().map_err(|_| bad())?;
                if frac.len() > 6 || !frac.chars().all(|c| c.is_ascii_digit()) {
                    return Err(bad());
                }
                let f: i64 = if frac.is_empty() {
                    0
                } else {
                    format!("{frac:0<6}").parse().map_err(|_| bad())?
                };
                (sec, f)
            }
        };
        if !(0..24).contains(&h) || !(0..60).contains(&mi) || !(0..60).contains(&sec) {
            return Err(bad());
        }
        us += ((h * 60 + mi) * 60 + sec) * 1_000_000 + frac;
    }
    Ok(us)
}

/// Formats µs since the epoch as `YYYY-MM-DD HH:MM:SS[.ffffff]` (DuckDB's text form).
pub fn format_timestamp(us: i64) -> String {
    let days = us.div_euclid(US_PER_DAY);
    let rem = us.rem_euclid(US_PER_DAY);
    let (y, m, d) = civil_from_days(days);
    let secs = rem / 1_000_000;
    let frac = rem % 1_000_000;
    let base = format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    );
    if frac == 0 {
        base
    } else {
        format!("{base}.{frac:06}")
    }
}
