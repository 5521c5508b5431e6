//! Values of the catalog's row-at-a-time evaluator.

use std::cmp::Ordering;

/// One value. Arrays exist only for the catalog functions that build and print them.
#[derive(Debug, Clone, PartialEq)]
pub enum V {
    /// NULL.
    Null,
    /// Integers and OIDs.
    Int(i64),
    /// Floating point.
    Float(f64),
    /// Booleans.
    Bool(bool),
    /// Text.
    Str(String),
    /// An array.
    Arr(Vec<V>),
}

impl V {
    /// SQL equality-ordering with numeric promotion and text comparison of mixed text / number
    /// (catalog queries compare OIDs with quoted numbers: `c.oid = '16384'`). `None`: NULL.
    pub fn cmp_sql(&self, other: &V) -> Option<Ordering> {
        Some(match (self, other) {
            (V::Null, _) | (_, V::Null) => return None,
            (V::Int(a), V::Int(b)) => a.cmp(b),
            (V::Int(a), V::Float(b)) => (*a as f64).total_cmp(b),
            (V::Float(a), V::Int(b)) => a.total_cmp(&(*b as f64)),
            (V::Float(a), V::Float(b)) => a.total_cmp(b),
            (V::Bool(a), V::Bool(b)) => a.cmp(b),
            (V::Str(a), V::Str(b)) => a.cmp(b),
            (V::Int(a), V::Str(b)) => match b.trim().parse::<i64>() {
                Ok(b) => a.cmp(&b),
                Err(_) => a.to_string().cmp(b),
            },
            (V::Str(a), V::Int(b)) => match a.trim().parse::<i64>() {
                Ok(a) => a.cmp(b),
                Err(_) => a.cmp(&b.to_string()),
            },
            (V::Bool(a), V::Str(b)) | (V::Str(b), V::Bool(a)) => {
                let bv = matches!(b.as_str(), "t" | "true" | "on" | "1" | "yes");
                a.cmp(&bv)
            }
            (a, b) => a.text()?.cmp(&b.text()?),
        })
    }

    /// The value as PostgreSQL prints it as text; `None` for NULL.
    pub fn text(&self) -> Option<String> {
        Some(match self {
            V::Null => return None,
            V::Int(i) => i.to_string(),
            V::Float(f) => f.to_string(),
            V::Bool(b) => if *b { "t" } else { "f" }.to_string(),
            V::Str(s) => s.clone(),
            V::Arr(items) => format!(
                "{{{}}}",
                items
                    .iter()
                    .map(|i| i.text().unwrap_or_else(|| "NULL".into()))
                    .collect::<Vec<_>>()
                    .join(",")
            ),
        })
    }

    /// Three-valued truth: `None` for NULL.
    pub fn truth(&self) -> Option<bool> {
        match self {
            V::Null => None,
            V::Bool(b) => Some(*b),
            V::Int(i) => Some(*i != 0),
            V::Str(s) => Some(matches!(s.as_str(), "t" | "true" | "on" | "1" | "yes")),
            V::Float(f) => Some(*f != 0.0),
            V::Arr(a) => Some(!a.is_empty()),
        }
    }
}
