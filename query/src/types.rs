//! SQL value types, scalars, and timestamp / interval text.

use journeydb_storage::{ColumnType, KeyType};

use crate::error::{QueryError, Result};

/// The type of an expression.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DType {
    /// µs since the epoch.
    Timestamp,
    /// i64.
    Bigint,
    /// f64.
    Double,
    /// bool.
    Boolean,
    /// UTF-8.
    Varchar,
    /// Months and µs (literals and arithmetic only).
    Interval,
    /// The type of a bare NULL literal.
    Null,
}

impl DType {
    /// The storage type of a column of this type, if it can be stored.
    pub fn column_type(self) -> Option<ColumnType> {
        Some(match self {
            DType::Timestamp => ColumnType::Timestamp,
            DType::Bigint => ColumnType::Bigint,
            DType::Double => ColumnType::Double,
            DType::Boolean => ColumnType::Boolean,
            DType::Varchar => ColumnType::Varchar,
            DType::Interval | DType::Null => return None,
        })
    }

    /// The SQL name.
    pub fn name(self) -> &'static str {
        match self {
            DType::Timestamp => "TIMESTAMP",
            DType::Bigint => "BIGINT",
            DType::Double => "DOUBLE",
            DType::Boolean => "BOOLEAN",
            DType::Varchar => "VARCHAR",
            DType::Interval => "INTERVAL",
            DType::Null => "NULL",
        }
    }
}

impl From<ColumnType> for DType {
    fn from(t: ColumnType) -> Self {
        match t {
            ColumnType::Timestamp => DType::Timestamp,
            ColumnType::Bigint => DType::Bigint,
            ColumnType::Double => DType::Double,
            ColumnType::Boolean => DType::Boolean,
            ColumnType::Varchar => DType::Varchar,
        }
    }
}

impl From<KeyType> for DType {
    fn from(t: KeyType) -> Self {
        match t {
            KeyType::Varchar => DType::Varchar,
            KeyType::Bigint => DType::Bigint,
        }
    }
}

/// A calendar interval: months (calendar-aware) plus µs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Interval {
    /// Whole months.
    pub months: i64,
    /// Days, hours, minutes, seconds as µs.
    pub micros: i64,
}

/// One value.
#[derive(Debug, Clone, PartialEq)]
pub enum Scalar {
    /// NULL.
    Null,
    /// TIMESTAMP.
    Ts(i64),
    /// BIGINT.
    Int(i64),
    /// DOUBLE.
    Float(f64),
    /// BOOLEAN.
    Bool(bool),
    /// VARCHAR.
    Str(String),
    /// INTERVAL.
    Interval(Interval),
}

impl Scalar {
    /// The type of the value.
    pub fn dtype(&self) -> DType {
        match self {
            Scalar::Null => DType::Null,
            Scalar::Ts(_) => DType::Timestamp,
            Scalar::Int(_) => DType::Bigint,
            Scalar::Float(_) => DType::Double,
            Scalar::Bool(_) => DType::Boolean,
            Scalar::Str(_) => DType::Varchar,
            Scalar::Interval(_) => DType::Interval,
        }
    }
}

use journeydb_storage::text::days_in_month;
pub use journeydb_storage::text::{civil_from_days, days_from_civil, format_timestamp, US_PER_DAY};

/// Parses `YYYY-MM-DD[ |T]HH:MM[:SS[.ffffff]][zone]` (or a date alone) as µs since the epoch
/// (UTC); a zone (`Z`, `+09:00`, `-0530`) converts the time to UTC.
pub fn parse_timestamp(s: &str) -> Result<i64> {
    journeydb_storage::text::parse_timestamp(s).map_err(QueryError::InvalidValue)
}

/// Parses an interval text such as `3 days`, `1 day 2 hours`, `90 minutes`, `1 month`, `2 weeks`.
pub fn parse_interval(s: &str) -> Result<Interval> {
    let bad = |why: &str| QueryError::InvalidValue(format!("interval {s:?}: {why}"));
    let mut iv = Interval {
        months: 0,
        micros: 0,
    };
    let words: Vec<&str> = s.split_whitespace().collect();
    if words.is_empty() || !words.len().is_multiple_of(2) {
        return Err(bad("expected pairs of a number and a unit"));
    }
    for pair in words.chunks(2) {
        let (Some(n), Some(unit)) = (pair.first(), pair.get(1)) else {
            return Err(bad("missing unit"));
        };
        let n: i64 = n.parse().map_err(|_| bad("not a whole number"))?;
        let unit = unit.to_ascii_lowercase();
        let (months, micros): (i64, i64) = match unit.as_str() {
            "year" | "years" | "y" => (12, 0),
            "month" | "months" | "mon" | "mons" => (1, 0),
            "week" | "weeks" | "w" => (0, 7 * US_PER_DAY),
            "day" | "days" | "d" => (0, US_PER_DAY),
            "hour" | "hours" | "h" => (0, 3_600_000_000),
            "minute" | "minutes" | "min" | "mins" | "m" => (0, 60_000_000),
            "second" | "seconds" | "sec" | "secs" | "s" => (0, 1_000_000),
            "millisecond" | "milliseconds" | "ms" => (0, 1000),
            "microsecond" | "microseconds" | "us" => (0, 1),
            _ => return Err(bad("unknown unit")),
        };
        iv.months = n
            .checked_mul(months)
            .and_then(|x| x.checked_add(iv.months))
            .ok_or_else(|| bad("overflow"))?;
        iv.micros = n
            .checked_mul(micros)
            .and_then(|x| x.checked_add(iv.micros))
            .ok_or_else(|| bad("overflow"))?;
    }
    Ok(iv)
}

/// `ts + sign * interval`, months first with the day clamped to the month's end (DuckDB semantics).
pub fn add_interval(ts: i64, iv: Interval, sign: i64) -> Result<i64> {
    let overflow = || QueryError::InvalidValue("timestamp out of range".into());
    let mut t = ts;
    if iv.months != 0 {
        let days = t.div_euclid(US_PER_DAY);
        let tod = t.rem_euclid(US_PER_DAY);
        let (y, m, d) = civil_from_days(days);
        // Checked: an interval of i64::MAX months must be an error, not a wrap or a panic, and
        // the calendar functions stay within the years parse_timestamp accepts.
        let total = y
            .checked_mul(12)
            .and_then(|v| v.checked_add(m - 1))
            .and_then(|v| v.checked_add(sign.checked_mul(iv.months)?))
            .filter(|t| (-3_600_000..=3_600_000).contains(t))
            .ok_or_else(overflow)?;
        let (ny, nm) = (total.div_euclid(12), total.rem_euclid(12) + 1);
        let nd = d.min(days_in_month(ny, nm));
        t = days_from_civil(ny, nm, nd)
            .checked_mul(US_PER_DAY)
            .and_then(|x| x.checked_add(tod))
            .ok_or_else(overflow)?;
    }
    t.checked_add(sign.checked_mul(iv.micros).ok_or_else(overflow)?)
        .ok_or_else(overflow)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_round_trip() {
        for s in [
            "1970-01-01 00:00:00",
            "2026-02-28 23:59:59",
            "2000-02-29 12:00:00.000001",
            "1969-12-31 23:59:59",
        ] {
            assert_eq!(format_timestamp(parse_timestamp(s).unwrap()), s);
        }
        assert_eq!(
            parse_timestamp("2026-01-01").unwrap(),
            1_767_225_600_000_000
        );
        assert_eq!(
            parse_timestamp("2026-01-01T00:00:00Z").unwrap(),
            1_767_225_600_000_000
        );
        // Zone offsets convert to UTC.
        let utc = parse_timestamp("2026-01-01 00:00:00").unwrap();
        for (s, delta_h) in [
            ("2026-01-01 09:00:00+09:00", 0),
            ("2026-01-01 09:00:00+09", 0),
            ("2025-12-31 19:00:00-0500", 0),
            ("2026-01-01 00:00:00+00:00", 0),
            ("2026-01-01T01:00:00.000000+01:00", 0),
            ("2026-01-01 00:00:00-01", 1),
        ] {
            assert_eq!(
                parse_timestamp(s).unwrap(),
                utc + delta_h * 3_600_000_000,
                "{s}"
            );
        }
        for bad in [
            "2026-02-30",
            "2026-13-01",
            "x",
            "2026-01-01 25:00:00",
            "2026-01-01 10:00:00.1234567",
            "2026-01-01 10:00:00+99:00",
            "2026-01-01 10:00:00+ab",
        ] {
            assert!(parse_timestamp(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn interval_overflow_is_an_error() {
        let t = parse_timestamp("2026-01-31").unwrap();
        for iv in [
            "9223372036854775807 months",
            "768614336404 years",
            "300001 years",
        ] {
            let iv = parse_interval(iv).unwrap();
            assert!(add_interval(t, iv, 1).is_err(), "{iv:?}");
            assert!(add_interval(t, iv, -1).is_err(), "{iv:?}");
        }
        assert!(add_interval(i64::MAX, parse_interval("1 us").unwrap(), 1).is_err());
    }

    #[test]
    fn intervals_follow_the_calendar() {
        let jan31 = parse_timestamp("2026-01-31 10:00:00").unwrap();
        let iv = parse_interval("1 month").unwrap();
        assert_eq!(
            format_timestamp(add_interval(jan31, iv, 1).unwrap()),
            "2026-02-28 10:00:00"
        );
        let iv = parse_interval("3 days 2 hours").unwrap();
        assert_eq!(
            format_timestamp(add_interval(jan31, iv, -1).unwrap()),
            "2026-01-28 08:00:00"
        );
        assert!(parse_interval("3 fortnights").is_err());
        assert!(parse_interval("days").is_err());
    }
}
