//! Scalar functions and CASE: the functions analysts reach for (`coalesce`, `nullif`, `greatest`,
//! `least`, `date_trunc`, `date_part` / `extract`, `epoch`, `lower`, `upper`, `length`, `LIKE`,
//! `ILIKE`, `abs`, `||`) with DuckDB's NULL rules and result types.
//!
//! They are evaluated row by row over the rows where they can be non-NULL: the intersection of
//! their arguments' presence for the strict ones (NULL in, NULL out), every row of the frame for
//! the others. Predicates and set operations stay bitmap work; these are the per-value leaves.

use std::borrow::Cow;

use journeydb_storage::{ColumnData, Values};
use roaring::RoaringBitmap;

use crate::error::{QueryError, Result};
use crate::types::{civil_from_days, days_from_civil, DType, Interval, Scalar, US_PER_DAY};
use crate::vector::{cmp_el, el_at, el_of, El, Vector};

/// A scalar function.
#[derive(Debug, Clone, PartialEq)]
pub enum Func {
    /// The first non-NULL argument.
    Coalesce,
    /// NULL when the two arguments are equal, else the first.
    NullIf,
    /// The largest non-NULL argument.
    Greatest,
    /// The smallest non-NULL argument.
    Least,
    /// A timestamp truncated to the start of its unit.
    DateTrunc(Unit),
    /// One field of a timestamp (or the seconds of an interval, `epoch`).
    DatePart(Field),
    /// Seconds since 1970 of a timestamp, or the seconds of an interval (DOUBLE).
    Epoch,
    /// Lower case.
    Lower,
    /// Upper case.
    Upper,
    /// Characters of a string.
    Length,
    /// `LIKE` (`ILIKE` when `ci`) with an optional escape character.
    Like {
        /// Case-insensitive.
        ci: bool,
        /// The escape character.
        escape: Option<char>,
    },
    /// Absolute value.
    Abs,
    /// String concatenation (`||`).
    Concat,
    /// `CASE WHEN c1 THEN r1 .. [ELSE e] END`: arguments are `c1, r1, c2, r2, .., [e]`.
    Case {
        /// An ELSE argument ends the list.
        has_else: bool,
    },
}

/// Units of `date_trunc`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(missing_docs)]
pub enum Unit {
    Year,
    Quarter,
    Month,
    Week,
    Day,
    Hour,
    Minute,
    Second,
}

/// Fields of `date_part` / `extract`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(missing_docs)]
pub enum Field {
    Year,
    Quarter,
    Month,
    Day,
    Hour,
    Minute,
    Second,
    Millisecond,
    Microsecond,
    Dow,
    IsoDow,
    Doy,
    Week,
    Epoch,
}

const UNITS: &str = "year, quarter, month, week, day, hour, minute, second";
const FIELDS: &str = "year, quarter, month, day, hour, minute, second, millisecond, microsecond, \
     dow, isodow, doy, week, epoch";

impl Unit {
    /// The unit named by `s` (DuckDB's spellings).
    pub fn parse(s: &str) -> Result<Unit> {
        Ok(match s.to_ascii_lowercase().as_str() {
            "year" | "years" | "y" | "yr" => Unit::Year,
            "quarter" | "quarters" => Unit::Quarter,
            "month" | "months" | "mon" => Unit::Month,
            "week" | "weeks" | "w" => Unit::Week,
            "day" | "days" | "d" => Unit::Day,
            "hour" | "hours" | "h" | "hr" => Unit::Hour,
            "minute" | "minutes" | "min" | "m" => Unit::Minute,
            "second" | "seconds" | "sec" | "s" => Unit::Second,
            other => {
                return Err(QueryError::InvalidValue(format!(
                    "date_trunc unit {other:?} ({UNITS})"
                )))
            }
        })
    }
}

impl Field {
    /// The field named by `s` (DuckDB's spellings).
    pub fn parse(s: &str) -> Result<Field> {
        Ok(match s.to_ascii_lowercase().as_str() {
            "year" | "years" | "y" | "yr" => Field::Year,
            "quarter" | "quarters" => Field::Quarter,
            "month" | "months" | "mon" => Field::Month,
            "day" | "days" | "d" => Field::Day,
            "hour" | "hours" | "h" | "hr" => Field::Hour,
            "minute" | "minutes" | "min" | "m" => Field::Minute,
            "second" | "seconds" | "sec" | "s" => Field::Second,
            "millisecond" | "milliseconds" | "ms" => Field::Millisecond,
            "microsecond" | "microseconds" | "us" => Field::Microsecond,
            "dow" | "dayofweek" => Field::Dow,
            "isodow" => Field::IsoDow,
            "doy" | "dayofyear" => Field::Doy,
            "week" | "weeks" | "w" | "weekofyear" => Field::Week,
            "epoch" => Field::Epoch,
            other => {
                return Err(QueryError::InvalidValue(format!(
                    "date part {other:?} ({FIELDS})"
                )))
            }
        })
    }
}

impl Func {
    /// SQL name (EXPLAIN).
    pub fn name(&self) -> &'static str {
        match self {
            Func::Coalesce => "coalesce",
            Func::NullIf => "nullif",
            Func::Greatest => "greatest",
            Func::Least => "least",
            Func::DateTrunc(_) => "date_trunc",
            Func::DatePart(_) => "date_part",
            Func::Epoch => "epoch",
            Func::Lower => "lower",
            Func::Upper => "upper",
            Func::Length => "length",
            Func::Like { ci: false, .. } => "like",
            Func::Like { ci: true, .. } => "ilike",
            Func::Abs => "abs",
            Func::Concat => "concat",
            Func::Case { .. } => "case",
        }
    }

    /// NULL in any argument makes the result NULL.
    fn strict(&self) -> bool {
        !matches!(
            self,
            Func::Coalesce | Func::NullIf | Func::Greatest | Func::Least | Func::Case { .. }
        )
    }
}

/// An argument read row by row in ordinal order.
enum Arg<'v> {
    Const(Option<El<'v>>),
    Col {
        values: &'v Values,
        it: roaring::bitmap::Iter<'v>,
        next: Option<u32>,
        idx: usize,
    },
}

impl<'v> Arg<'v> {
    fn new(v: &'v Vector<'_>) -> Result<Arg<'v>> {
        Ok(match v {
            Vector::Const(s) => Arg::Const(el_of(s)),
            Vector::Col(c, _) => {
                let mut it = c.presence.iter();
                let next = it.next();
                Arg::Col {
                    values: &c.values,
                    it,
                    next,
                    idx: 0,
                }
            }
            Vector::Bool { .. } => {
                return Err(QueryError::Internal("unnormalized argument".into()))
            }
        })
    }

    /// The value at ordinal `o`; ordinals must be asked in ascending order.
    fn at(&mut self, o: u32) -> Option<El<'v>> {
        match self {
            Arg::Const(e) => *e,
            Arg::Col {
                values,
                it,
                next,
                idx,
            } => {
                while next.is_some_and(|n| n < o) {
                    *next = it.next();
                    *idx += 1;
                }
                if *next == Some(o) {
                    el_at(values, *idx)
                } else {
                    None
                }
            }
        }
    }
}

/// Builds a column from the non-NULL results of ascending ordinals.
struct Out {
    presence: Vec<u32>,
    values: Values,
    dtype: DType,
}

impl Out {
    fn new(dtype: DType) -> Out {
        let values = match dtype {
            DType::Double => Values::Float(Vec::new()),
            DType::Boolean => Values::Bool(Vec::new()),
            DType::Varchar => Values::Str(Vec::new()),
            _ => Values::Int(Vec::new()),
        };
        Out {
            presence: Vec::new(),
            values,
            dtype,
        }
    }

    fn push(&mut self, o: u32, s: Scalar) -> Result<()> {
        let ok = match (&mut self.values, s) {
            (_, Scalar::Null) => return Ok(()),
            (Values::Int(v), Scalar::Int(x) | Scalar::Ts(x)) => {
                v.push(x);
                true
            }
            (Values::Int(v), Scalar::Interval(iv)) if iv.months == 0 => {
                v.push(iv.micros);
                true
            }
            (Values::Float(v), Scalar::Float(x)) => {
                v.push(x);
                true
            }
            (Values::Float(v), Scalar::Int(x)) => {
                v.push(x as f64);
                true
            }
            (Values::Bool(v), Scalar::Bool(x)) => {
                v.push(x);
                true
            }
            (Values::Str(v), Scalar::Str(x)) => {
                v.push(x);
                true
            }
            _ => false,
        };
        if !ok {
            return Err(QueryError::Internal(format!(
                "a function produced a value that is not {}",
                self.dtype.name()
            )));
        }
        self.presence.push(o);
        Ok(())
    }

    fn finish<'a>(self) -> Vector<'a> {
        Vector::Col(
            Cow::Owned(ColumnData {
                presence: RoaringBitmap::from_sorted_iter(self.presence).unwrap_or_default(),
                values: self.values,
            }),
            self.dtype,
        )
    }
}

/// A value of type `t` from an element.
pub(crate) fn scalar_of(e: El<'_>, t: DType) -> Scalar {
    match (e, t) {
        (El::I(v), DType::Timestamp) => Scalar::Ts(v),
        (El::I(v), DType::Interval) => Scalar::Interval(Interval {
            months: 0,
            micros: v,
        }),
        (El::I(v), DType::Double) => Scalar::Float(v as f64),
        (El::I(v), _) => Scalar::Int(v),
        (El::F(v), _) => Scalar::Float(v),
        (El::B(v), _) => Scalar::Bool(v),
        (El::S(v), _) => Scalar::Str(v.to_string()),
    }
}

/// Evaluates `f` over `rows`; `arg_types` are the planned types of the arguments, `out` the
/// result's.
pub fn eval_func<'a>(
    f: &Func,
    args: Vec<Vector<'_>>,
    arg_types: &[DType],
    out: DType,
    rows: &RoaringBitmap,
) -> Result<Vector<'a>> {
    // Predicates become BOOLEAN columns, so every argument reads as values.
    let args = args
        .into_iter()
        .map(|a| match a {
            b @ Vector::Bool { .. } => Ok(Vector::Col(
                Cow::Owned(b.into_column(rows)?),
                DType::Boolean,
            )),
            v => Ok(v),
        })
        .collect::<Result<Vec<_>>>()?;
    let strict = f.strict();
    if strict
        && args
            .iter()
            .any(|a| matches!(a, Vector::Const(Scalar::Null)))
    {
        return Ok(Vector::Const(Scalar::Null));
    }
    let mut kernel = kernel(f, arg_types, out)?;
    if args.iter().all(|a| matches!(a, Vector::Const(_))) {
        let els: Vec<Option<El<'_>>> = args
            .iter()
            .map(|a| match a {
                Vector::Const(s) => el_of(s),
                _ => None,
            })
            .collect();
        return Ok(Vector::Const(kernel(&els)?));
    }
    let domain = if strict {
        let mut d = rows.clone();
        for a in &args {
            if let Vector::Col(c, _) = a {
                d &= &c.presence;
            }
        }
        d
    } else {
        rows.clone()
    };
    let mut cursors = args.iter().map(Arg::new).collect::<Result<Vec<_>>>()?;
    let mut out_col = Out::new(out);
    let mut els: Vec<Option<El<'_>>> = Vec::with_capacity(cursors.len());
    for o in domain.iter() {
        els.clear();
        els.extend(cursors.iter_mut().map(|c| c.at(o)));
        out_col.push(o, kernel(&els)?)?;
    }
    Ok(out_col.finish())
}

type Kernel<'f> = Box<dyn FnMut(&[Option<El<'_>>]) -> Result<Scalar> + 'f>;

fn type_error(f: &Func, what: &str) -> QueryError {
    QueryError::Type(format!("{} needs {what}", f.name()))
}

fn first<'e>(els: &[Option<El<'e>>]) -> Option<El<'e>> {
    els.first().copied().flatten()
}

/// The per-row function of `f`.
// long: one arm per scalar function; each arm is a short closure.
fn kernel<'f>(f: &'f Func, arg_types: &'f [DType], out: DType) -> Result<Kernel<'f>> {
    Ok(match f {
        Func::Coalesce => Box::new(move |els| {
            Ok(els
                .iter()
                .flatten()
                .next()
                .map_or(Scalar::Null, |e| scalar_of(*e, out)))
        }),
        Func::NullIf => Box::new(move |els| {
            let (a, b) = (first(els), els.get(1).copied().flatten());
            Ok(match (a, b) {
                (None, _) => Scalar::Null,
                (Some(x), Some(y)) if cmp_el(x, y) == Some(std::cmp::Ordering::Equal) => {
                    Scalar::Null
                }
                (Some(x), _) => scalar_of(x, out),
            })
        }),
        Func::Greatest | Func::Least => {
            let want = if matches!(f, Func::Greatest) {
                std::cmp::Ordering::Greater
            } else {
                std::cmp::Ordering::Less
            };
            Box::new(move |els| {
                let mut best: Option<El<'_>> = None;
                for e in els.iter().flatten() {
                    best = match best {
                        Some(b) if cmp_el(*e, b) != Some(want) => Some(b),
                        _ => Some(*e),
                    };
                }
                Ok(best.map_or(Scalar::Null, |e| scalar_of(e, out)))
            })
        }
        Func::DateTrunc(unit) => {
            let unit = *unit;
            Box::new(move |els| match first(els) {
                Some(El::I(t)) => Ok(Scalar::Ts(date_trunc(unit, t))),
                _ => Err(type_error(f, "a TIMESTAMP")),
            })
        }
        Func::DatePart(field) => {
            let field = *field;
            let interval = arg_types.first() == Some(&DType::Interval);
            Box::new(move |els| match first(els) {
                Some(El::I(t)) if field == Field::Epoch => Ok(Scalar::Float(t as f64 / 1e6)),
                Some(El::I(_)) if interval => Err(QueryError::Unsupported(format!(
                    "date part {field:?} of an INTERVAL (only epoch)"
                ))),
                Some(El::I(t)) => Ok(Scalar::Int(date_part(field, t))),
                _ => Err(type_error(f, "a TIMESTAMP")),
            })
        }
        Func::Epoch => Box::new(move |els| match first(els) {
            Some(El::I(t)) => Ok(Scalar::Float(t as f64 / 1e6)),
            _ => Err(type_error(f, "a TIMESTAMP or an INTERVAL")),
        }),
        Func::Lower | Func::Upper | Func::Length => Box::new(move |els| match first(els) {
            Some(El::S(s)) => Ok(match f {
                Func::Lower => Scalar::Str(s.to_lowercase()),
                Func::Upper => Scalar::Str(s.to_uppercase()),
                _ => Scalar::Int(s.chars().count() as i64),
            }),
            _ => Err(type_error(f, "a VARCHAR")),
        }),
        Func::Like { ci, escape } => {
            let (ci, escape) = (*ci, *escape);
            // The pattern is usually a constant: compiled once, then reused while it repeats.
            let mut cache: Option<(String, Vec<Tok>)> = None;
            Box::new(
                move |els| match (first(els), els.get(1).copied().flatten()) {
                    (Some(El::S(s)), Some(El::S(p))) => {
                        if cache.as_ref().is_none_or(|(q, _)| q != p) {
                            cache = Some((p.to_string(), compile_like(p, ci, escape)?));
                        }
                        let toks = cache.as_ref().map(|(_, t)| t.as_slice()).unwrap_or(&[]);
                        let text: Vec<char> = if ci {
                            s.to_lowercase().chars().collect()
                        } else {
                            s.chars().collect()
                        };
                        Ok(Scalar::Bool(like_match(&text, toks)))
                    }
                    _ => Err(type_error(f, "VARCHAR operands")),
                },
            )
        }
        Func::Abs => Box::new(move |els| match first(els) {
            Some(El::I(v)) => v
                .checked_abs()
                .map(Scalar::Int)
                .ok_or_else(|| QueryError::InvalidValue("integer overflow in abs".into())),
            Some(El::F(v)) => Ok(Scalar::Float(v.abs())),
            _ => Err(type_error(f, "a number")),
        }),
        Func::Concat => Box::new(move |els| {
            let mut s = String::new();
            for e in els.iter().flatten() {
                match e {
                    El::S(x) => s.push_str(x),
                    _ => return Err(type_error(f, "VARCHAR operands")),
                }
            }
            Ok(Scalar::Str(s))
        }),
        Func::Case { has_else } => {
            let has_else = *has_else;
            Box::new(move |els| {
                let pairs = if has_else {
                    els.len().saturating_sub(1)
                } else {
                    els.len()
                };
                for i in (0..pairs).step_by(2) {
                    if let Some(Some(El::B(true))) = els.get(i) {
                        return Ok(els
                            .get(i + 1)
                            .copied()
                            .flatten()
                            .map_or(Scalar::Null, |e| scalar_of(e, out)));
                    }
                }
                Ok(match (has_else, els.last()) {
                    (true, Some(Some(e))) => scalar_of(*e, out),
                    _ => Scalar::Null,
                })
            })
        }
    })
}

/// `t` truncated to the start of its `unit` (weeks start on Monday, as ISO and DuckDB).
pub fn date_trunc(unit: Unit, t: i64) -> i64 {
    let days = t.div_euclid(US_PER_DAY);
    let (y, m, _) = civil_from_days(days);
    let floor = |step: i64| t - t.rem_euclid(step);
    match unit {
        Unit::Year => days_from_civil(y, 1, 1) * US_PER_DAY,
        Unit::Quarter => days_from_civil(y, (m - 1) / 3 * 3 + 1, 1) * US_PER_DAY,
        Unit::Month => days_from_civil(y, m, 1) * US_PER_DAY,
        // 1970-01-01 was a Thursday: day 0 is 3 days after a Monday.
        Unit::Week => (days - (days + 3).rem_euclid(7)) * US_PER_DAY,
        Unit::Day => days * US_PER_DAY,
        Unit::Hour => floor(3_600_000_000),
        Unit::Minute => floor(60_000_000),
        Unit::Second => floor(1_000_000),
    }
}

/// One field of `t` (DuckDB's numbering: `dow` 0 = Sunday, `isodow` 1 = Monday, ISO weeks).
pub fn date_part(field: Field, t: i64) -> i64 {
    let days = t.div_euclid(US_PER_DAY);
    let tod = t.rem_euclid(US_PER_DAY);
    let (y, m, d) = civil_from_days(days);
    let isodow = (days + 3).rem_euclid(7) + 1;
    match field {
        Field::Year => y,
        Field::Quarter => (m - 1) / 3 + 1,
        Field::Month => m,
        Field::Day => d,
        Field::Hour => tod / 3_600_000_000,
        Field::Minute => tod / 60_000_000 % 60,
        Field::Second => tod / 1_000_000 % 60,
        Field::Millisecond => tod / 1000 % 60_000,
        Field::Microsecond => tod % 60_000_000,
        Field::Dow => isodow % 7,
        Field::IsoDow => isodow,
        Field::Doy => days - days_from_civil(y, 1, 1) + 1,
        Field::Week => {
            // The ISO week's year is the year of its Thursday.
            let thursday = days - isodow + 4;
            let (ty, _, _) = civil_from_days(thursday);
            (thursday - days_from_civil(ty, 1, 1)) / 7 + 1
        }
        Field::Epoch => t / 1_000_000,
    }
}

/// A LIKE pattern element.
#[derive(Debug, Clone, PartialEq)]
enum Tok {
    /// `%`: any run of characters.
    Any,
    /// `_`: one character.
    One,
    /// A literal character.
    Lit(char),
}

fn compile_like(p: &str, ci: bool, escape: Option<char>) -> Result<Vec<Tok>> {
    let p = if ci { p.to_lowercase() } else { p.to_string() };
    let mut out = Vec::new();
    let mut chars = p.chars();
    while let Some(c) = chars.next() {
        if Some(c) == escape {
            match chars.next() {
                Some(n) => out.push(Tok::Lit(n)),
                None => {
                    return Err(QueryError::InvalidValue(
                        "LIKE pattern ends with its escape character".into(),
                    ))
                }
            }
            continue;
        }
        out.push(match c {
            '%' => Tok::Any,
            '_' => Tok::One,
            c => Tok::Lit(c),
        });
    }
    Ok(out)
}

/// Wildcard matching with backtracking to the last `%` only: linear in practice, never
/// exponential.
fn like_match(s: &[char], p: &[Tok]) -> bool {
    let (mut i, mut j) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while i < s.len() {
        match p.get(j) {
            Some(Tok::Any) => {
                star = Some((j, i));
                j += 1;
            }
            Some(Tok::One) => {
                i += 1;
                j += 1;
            }
            Some(Tok::Lit(c)) if s.get(i) == Some(c) => {
                i += 1;
                j += 1;
            }
            _ => match star {
                Some((sj, si)) => {
                    j = sj + 1;
                    i = si + 1;
                    star = Some((sj, si + 1));
                }
                None => return false,
            },
        }
    }
    p.get(j..)
        .is_some_and(|rest| rest.iter().all(|t| *t == Tok::Any))
}

/// The text of an interval of `micros` as DuckDB prints one from timestamp arithmetic
/// (`2 days 05:00:00`, `-1 day -12:00:00`, `00:00:01.5`).
pub fn interval_text(micros: i64) -> String {
    let days = micros / US_PER_DAY;
    let rest = micros % US_PER_DAY;
    let mut out = String::new();
    if days != 0 {
        out.push_str(&format!(
            "{days} day{}",
            if days.abs() == 1 { "" } else { "s" }
        ));
    }
    if rest != 0 || days == 0 {
        if !out.is_empty() {
            out.push(' ');
        }
        if rest < 0 {
            out.push('-');
        }
        let r = rest.unsigned_abs();
        let (h, m, s, f) = (
            r / 3_600_000_000,
            r / 60_000_000 % 60,
            r / 1_000_000 % 60,
            r % 1_000_000,
        );
        out.push_str(&format!("{h:02}:{m:02}:{s:02}"));
        if f != 0 {
            let frac = format!("{f:06}");
            out.push('.');
            out.push_str(frac.trim_end_matches('0'));
        }
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn like_patterns() {
        let m = |s: &str, p: &str| {
            like_match(
                &s.chars().collect::<Vec<_>>(),
                &compile_like(p, false, Some('\\')).unwrap(),
            )
        };
        assert!(m("abc", "a_c"));
        assert!(m("abc", "%"));
        assert!(m("", "%"));
        assert!(!m("", "_"));
        assert!(m("mississippi", "%iss%ppi"));
        assert!(!m("abc", "ab"));
        assert!(m("a%c", "a\\%c"));
        assert!(!m("abc", "a\\%c"));
    }

    #[test]
    fn calendar_fields() {
        let t = crate::types::parse_timestamp("2024-01-07 13:45:30.25").unwrap();
        assert_eq!(date_part(Field::Dow, t), 0); // a Sunday
        assert_eq!(date_part(Field::IsoDow, t), 7);
        assert_eq!(date_part(Field::Week, t), 1);
        assert_eq!(date_part(Field::Millisecond, t), 30_250);
        let w = date_trunc(Unit::Week, t);
        assert_eq!(crate::types::format_timestamp(w), "2024-01-01 00:00:00");
        assert_eq!(interval_text(-36 * 3_600_000_000), "-1 day -12:00:00");
        assert_eq!(interval_text(1_500_000), "00:00:01.5");
        assert_eq!(interval_text(2 * US_PER_DAY), "2 days");
    }
}
