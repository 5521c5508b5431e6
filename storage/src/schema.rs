//! Column types, merge rules, table schemas and the newtype ids of the catalog.

use crate::error::{Result, StorageError};

/// The type of the customer key, fixed when a database is created.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeyType {
    /// UTF-8 strings (e.g. 16-char hex ids).
    Varchar,
    /// 64-bit signed integers.
    Bigint,
}

/// The type of a (nullable) value column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ColumnType {
    /// Microseconds since the Unix epoch, as i64.
    Timestamp,
    /// 64-bit signed integer.
    Bigint,
    /// 64-bit IEEE float.
    Double,
    /// true / false.
    Boolean,
    /// UTF-8 string.
    Varchar,
}

/// How rows appended for the same key fold into one value.
///
/// Every rule ignores NULLs: a NULL appended later never erases a value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum MergeRule {
    /// The smallest value (the rule of journey state).
    #[default]
    Min,
    /// The largest value.
    Max,
    /// The sum (DOUBLE follows IEEE; a BIGINT append or load whose sums would overflow is refused).
    Sum,
    /// The value of the latest append that set one.
    Last,
}

/// A column's stable position in its table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ColumnId(pub u32);

/// A table's stable identity; a rename or swap keeps it, a replace makes a new one. Never reused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TableId(pub u64);

/// A segment file's identity. Never reused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SegmentId(pub u64);

/// A partition: ordinals `[id * partition_rows, (id + 1) * partition_rows)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PartitionId(pub u32);

/// A committed catalog version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ManifestVersion(pub u64);

/// One value column of a table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ColumnDef {
    /// Column name, unique in its table.
    pub name: String,
    /// Value type.
    pub ty: ColumnType,
    /// Merge rule for rows of the same key.
    pub rule: MergeRule,
}

impl ColumnDef {
    /// A column with the default MIN rule.
    pub fn new(name: impl Into<String>, ty: ColumnType) -> Self {
        ColumnDef {
            name: name.into(),
            ty,
            rule: MergeRule::Min,
        }
    }

    /// The same column with another merge rule.
    pub fn with_rule(mut self, rule: MergeRule) -> Self {
        self.rule = rule;
        self
    }
}

/// A table definition: the key column's name and the value columns in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableSchema {
    /// Name of the key column (e.g. `customer_id`).
    pub key_name: String,
    /// The value columns; a column's index is its [`ColumnId`].
    pub columns: Vec<ColumnDef>,
}

/// Longest table or column name accepted.
pub const NAME_LEN_MAX: usize = 128;
/// Most value columns in one table.
pub const COLUMNS_MAX: usize = 4096;

impl TableSchema {
    /// A schema; call [`TableSchema::validate`] (done by every commit) to check it.
    pub fn new(key_name: impl Into<String>, columns: Vec<ColumnDef>) -> Self {
        TableSchema {
            key_name: key_name.into(),
            columns,
        }
    }

    /// The column called `name` (ASCII case-insensitive), with its id.
    pub fn column(&self, name: &str) -> Option<(ColumnId, &ColumnDef)> {
        self.columns
            .iter()
            .enumerate()
            .find(|(_, c)| c.name.eq_ignore_ascii_case(name))
            .map(|(i, c)| (ColumnId(i as u32), c))
    }

    /// Checks names, duplicates and rule/type combinations.
    pub fn validate(&self) -> Result<()> {
        validate_name(&self.key_name)?;
        if self.columns.len() > COLUMNS_MAX {
            return Err(StorageError::InvalidSchema(format!(
                "{} columns; at most {COLUMNS_MAX} are allowed",
                self.columns.len()
            )));
        }
        let mut seen = std::collections::HashSet::new();
        seen.insert(self.key_name.to_ascii_lowercase());
        for c in &self.columns {
            validate_name(&c.name)?;
            if !seen.insert(c.name.to_ascii_lowercase()) {
                return Err(StorageError::InvalidSchema(format!(
                    "duplicate column name {:?}",
                    c.name
                )));
            }
            if c.rule == MergeRule::Sum && !matches!(c.ty, ColumnType::Bigint | ColumnType::Double)
            {
                return Err(StorageError::InvalidSchema(format!(
                    "column {:?}: MERGE SUM needs BIGINT or DOUBLE, not {:?}",
                    c.name, c.ty
                )));
            }
        }
        Ok(())
    }
}

/// Accepts `[A-Za-z_][A-Za-z0-9_]*` up to [`NAME_LEN_MAX`] bytes: a name can never leave the database
/// directory or collide with a file of ours, whatever it is used for later.
pub fn validate_name(name: &str) -> Result<()> {
    let bad = |reason| {
        Err(StorageError::InvalidName {
            name: name.to_string(),
            reason,
        })
    };
    if name.is_empty() {
        return bad("empty");
    }
    if name.len() > NAME_LEN_MAX {
        return bad("longer than 128 bytes");
    }
    let mut chars = name.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
    if !first_ok {
        return bad("must start with a letter or '_'");
    }
    if !chars.all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return bad("only letters, digits and '_' are allowed");
    }
    Ok(())
}

impl ColumnType {
    pub(crate) fn tag(self) -> u8 {
        match self {
            ColumnType::Timestamp => 1,
            ColumnType::Bigint => 2,
            ColumnType::Double => 3,
            ColumnType::Boolean => 4,
            ColumnType::Varchar => 5,
        }
    }

    pub(crate) fn from_tag(tag: u8) -> Option<Self> {
        Some(match tag {
            1 => ColumnType::Timestamp,
            2 => ColumnType::Bigint,
            3 => ColumnType::Double,
            4 => ColumnType::Boolean,
            5 => ColumnType::Varchar,
            _ => return None,
        })
    }

    /// The SQL name of the type.
    pub fn sql_name(self) -> &'static str {
        match self {
            ColumnType::Timestamp => "TIMESTAMP",
            ColumnType::Bigint => "BIGINT",
            ColumnType::Double => "DOUBLE",
            ColumnType::Boolean => "BOOLEAN",
            ColumnType::Varchar => "VARCHAR",
        }
    }

    /// The type a SQL name (as [`ColumnType::sql_name`] writes it) names.
    pub fn from_sql_name(name: &str) -> Option<Self> {
        Some(match name.to_ascii_uppercase().as_str() {
            "TIMESTAMP" => ColumnType::Timestamp,
            "BIGINT" => ColumnType::Bigint,
            "DOUBLE" => ColumnType::Double,
            "BOOLEAN" => ColumnType::Boolean,
            "VARCHAR" => ColumnType::Varchar,
            _ => return None,
        })
    }
}

impl MergeRule {
    /// The SQL name (`MIN`, `MAX`, `SUM`, `LAST`).
    pub fn sql_name(self) -> &'static str {
        match self {
            MergeRule::Min => "MIN",
            MergeRule::Max => "MAX",
            MergeRule::Sum => "SUM",
            MergeRule::Last => "LAST",
        }
    }

    /// The rule a SQL name names.
    pub fn from_sql_name(name: &str) -> Option<Self> {
        Some(match name.to_ascii_uppercase().as_str() {
            "MIN" => MergeRule::Min,
            "MAX" => MergeRule::Max,
            "SUM" => MergeRule::Sum,
            "LAST" => MergeRule::Last,
            _ => return None,
        })
    }

    pub(crate) fn tag(self) -> u8 {
        match self {
            MergeRule::Min => 1,
            MergeRule::Max => 2,
            MergeRule::Sum => 3,
            MergeRule::Last => 4,
        }
    }

    pub(crate) fn from_tag(tag: u8) -> Option<Self> {
        Some(match tag {
            1 => MergeRule::Min,
            2 => MergeRule::Max,
            3 => MergeRule::Sum,
            4 => MergeRule::Last,
            _ => return None,
        })
    }
}

impl KeyType {
    pub(crate) fn tag(self) -> u8 {
        match self {
            KeyType::Varchar => 1,
            KeyType::Bigint => 2,
        }
    }

    pub(crate) fn from_tag(tag: u8) -> Option<Self> {
        match tag {
            1 => Some(KeyType::Varchar),
            2 => Some(KeyType::Bigint),
            _ => None,
        }
    }
}

#[cfg(test)]
#[allow(clippy::indexing_slicing, clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn names_that_could_escape_are_refused() {
        for bad in [
            "",
            "a/b",
            "..",
            "../x",
            "a.b",
            "1abc",
            "a b",
            "é",
            &"x".repeat(129),
        ] {
            assert!(validate_name(bad).is_err(), "{bad:?} accepted");
        }
        for good in ["a", "_x", "stage1_step_2", &"x".repeat(128)] {
            assert!(validate_name(good).is_ok(), "{good:?} refused");
        }
    }

    #[test]
    fn duplicate_and_bad_rules_are_refused() {
        let dup = TableSchema::new(
            "id",
            vec![
                ColumnDef::new("a", ColumnType::Timestamp),
                ColumnDef::new("A", ColumnType::Bigint),
            ],
        );
        assert!(matches!(
            dup.validate(),
            Err(StorageError::InvalidSchema(_))
        ));
        let key_dup = TableSchema::new("id", vec![ColumnDef::new("ID", ColumnType::Timestamp)]);
        assert!(key_dup.validate().is_err());
        let sum_ts = TableSchema::new(
            "id",
            vec![ColumnDef::new("a", ColumnType::Timestamp).with_rule(MergeRule::Sum)],
        );
        assert!(sum_ts.validate().is_err());
    }
}
