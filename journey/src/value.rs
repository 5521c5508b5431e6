//! Result cells as text and timestamps as SQL literals: the few conversions the runner needs between
//! Arrow results and SQL text.

use arrow_array::{
    Array, BooleanArray, Float64Array, Int64Array, LargeStringArray, StringArray, StringViewArray,
    TimestampMicrosecondArray,
};
use arrow_schema::DataType;

/// `YYYY-MM-DD HH:MM:SS[.ffffff]` (UTC) of a timestamp in microseconds since 1970.
pub fn timestamp_text(us: i64) -> String {
    match chrono::DateTime::from_timestamp_micros(us) {
        Some(t) if us % 1_000_000 == 0 => t.format("%Y-%m-%d %H:%M:%S").to_string(),
        Some(t) => t.format("%Y-%m-%d %H:%M:%S%.6f").to_string(),
        None => us.to_string(),
    }
}

/// `TIMESTAMP '...'` of `us`.
pub fn ts_literal(us: i64) -> String {
    format!("TIMESTAMP '{}'", timestamp_text(us))
}

/// The text of row `i` of `a`, or `None` for NULL (and for types a journey never reads).
pub fn cell_text(a: &dyn Array, i: usize) -> Option<String> {
    if i >= a.len() || a.is_null(i) {
        return None;
    }
    let any = a.as_any();
    Some(match a.data_type() {
        DataType::Timestamp(_, _) => {
            timestamp_text(any.downcast_ref::<TimestampMicrosecondArray>()?.value(i))
        }
        DataType::Int64 => any.downcast_ref::<Int64Array>()?.value(i).to_string(),
        DataType::Float64 => any.downcast_ref::<Float64Array>()?.value(i).to_string(),
        DataType::Boolean => any.downcast_ref::<BooleanArray>()?.value(i).to_string(),
        DataType::Utf8 => any.downcast_ref::<StringArray>()?.value(i).to_string(),
        DataType::LargeUtf8 => any.downcast_ref::<LargeStringArray>()?.value(i).to_string(),
        DataType::Utf8View => any.downcast_ref::<StringViewArray>()?.value(i).to_string(),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_print_like_the_engine() {
        assert_eq!(timestamp_text(0), "1970-01-01 00:00:00");
        assert_eq!(timestamp_text(-1), "1969-12-31 23:59:59.999999");
        assert_eq!(
            ts_literal(1_767_225_600_000_001),
            "TIMESTAMP '2026-01-01 00:00:00.000001'"
        );
    }
}
