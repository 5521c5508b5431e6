//! Per-session settings: `SET name = value`, `SHOW name`, `RESET name`.
//!
//! Drivers and BI tools set and read PostgreSQL's run-time parameters when they connect
//! (`SET extra_float_digits = 3`, `SHOW transaction_isolation`, ...). journeydb keeps what a session
//! sets and answers `SHOW` with it, or with the value journeydb really runs with. One setting changes
//! behaviour: `journeydb.now`, the time `now()` returns in this session (the journey runner binds a
//! run's `--now` this way, as a typed value, never by rewriting SQL text).

use std::collections::BTreeMap;

use crate::error::{QueryError, Result};
use crate::types::Scalar;

/// The name of the setting that fixes `now()` for a session.
pub const NOW_SETTING: &str = "journeydb.now";

/// Parameters reported to PostgreSQL clients at startup and by `SHOW`, with the values journeydb
/// runs with. A session may `SET` the informational ones; `TimeZone` is UTC only.
pub const DEFAULTS: &[(&str, &str)] = &[
    ("server_version", crate::SERVER_VERSION),
    ("server_version_num", crate::SERVER_VERSION_NUM),
    ("server_encoding", "UTF8"),
    ("client_encoding", "UTF8"),
    ("datestyle", "ISO, MDY"),
    ("intervalstyle", "postgres"),
    ("integer_datetimes", "on"),
    ("standard_conforming_strings", "on"),
    ("timezone", "UTC"),
    ("transaction_isolation", "read committed"),
    ("default_transaction_isolation", "read committed"),
    ("transaction_read_only", "off"),
    ("search_path", "public"),
    ("application_name", ""),
    ("extra_float_digits", "1"),
    ("is_superuser", "off"),
    ("max_identifier_length", "63"),
    ("session_authorization", "journeydb"),
];

/// A session's settings.
#[derive(Debug, Clone, Default)]
pub struct Settings {
    now_us: Option<i64>,
    values: BTreeMap<String, String>,
}

impl Settings {
    /// `now()` as fixed by `SET journeydb.now`, if it is.
    pub fn now_us(&self) -> Option<i64> {
        self.now_us
    }

    /// Sets `name` (case-insensitive) to `value`; `None` resets it to its default.
    pub fn set(&mut self, name: &str, value: Option<Scalar>) -> Result<()> {
        let name = name.to_ascii_lowercase();
        let Some(value) = value else {
            if name == NOW_SETTING {
                self.now_us = None;
            }
            self.values.remove(&name);
            return Ok(());
        };
        let text = text(&value)
            .ok_or_else(|| QueryError::InvalidValue(format!("{name} cannot be an interval")))?;
        match name.as_str() {
            NOW_SETTING => {
                self.now_us = Some(match value {
                    Scalar::Ts(us) => us,
                    Scalar::Str(s) => crate::types::parse_timestamp(&s)?,
                    _ => {
                        return Err(QueryError::InvalidValue(format!(
                            "{NOW_SETTING} takes a timestamp, e.g. '2026-01-31 09:00:00'"
                        )))
                    }
                })
            }
            "timezone" if !is_utc(&text) => {
                return Err(QueryError::Unsupported(format!(
                    "time zone {text:?}: journeydb stores and shows timestamps in UTC"
                )))
            }
            "client_encoding"
                if !matches!(
                    text.to_ascii_uppercase().as_str(),
                    "UTF8" | "UTF-8" | "UNICODE"
                ) =>
            {
                return Err(QueryError::Unsupported(format!(
                    "client encoding {text:?}: journeydb speaks UTF8 only"
                )))
            }
            _ => {}
        }
        self.values.insert(name, text);
        Ok(())
    }

    /// The value `SHOW name` answers, if the setting is known.
    pub fn show(&self, name: &str) -> Option<String> {
        let name = match name.to_ascii_lowercase().as_str() {
            // SQL's spellings of some parameters.
            "transaction isolation level" => "transaction_isolation".to_string(),
            "time zone" => "timezone".to_string(),
            "session authorization" => "session_authorization".to_string(),
            other => other.to_string(),
        };
        if let Some(v) = self.values.get(&name) {
            return Some(v.clone());
        }
        if name == NOW_SETTING {
            return Some(String::new());
        }
        DEFAULTS
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| (*v).to_string())
    }
}

/// A setting's value as text (`SHOW` prints it so); `None` for an interval.
pub fn text(value: &Scalar) -> Option<String> {
    Some(match value {
        Scalar::Null => String::new(),
        Scalar::Str(s) => s.clone(),
        Scalar::Int(i) => i.to_string(),
        Scalar::Float(f) => f.to_string(),
        Scalar::Bool(b) => if *b { "on" } else { "off" }.to_string(),
        Scalar::Ts(us) => crate::types::format_timestamp(*us),
        Scalar::Interval(_) => return None,
    })
}

fn is_utc(tz: &str) -> bool {
    matches!(
        tz.to_ascii_uppercase().as_str(),
        "UTC" | "ETC/UTC" | "GMT" | "Z" | "ZULU" | "UCT" | "UNIVERSAL" | "+00:00" | "0"
    )
}
