//! The read-only catalog relations, built from the snapshot each time a catalog query runs (they
//! are tiny): PostgreSQL's `pg_catalog` and `information_schema` views of journeydb's tables.
//!
//! Every user table is a `pg_class` row of kind `r` in schema `public`, its key column attribute 1
//! (NOT NULL) and its value columns attributes 2.. in order. Objects journeydb does not have
//! (indexes, constraints, triggers, policies, ...) are relations with no rows whose every column
//! reads as NULL, so the queries clients send about them return nothing, truthfully.

use journeydb_storage::{ColumnType, KeyType, Snapshot};

use super::value::V;
use crate::error::Result;

/// OID of schema `pg_catalog`.
pub const PG_CATALOG_OID: i64 = 11;
/// OID of schema `public`.
pub const PUBLIC_OID: i64 = 2200;
/// OID of schema `information_schema`.
pub const INFORMATION_SCHEMA_OID: i64 = 13_000;
/// OID of the one role.
pub const OWNER_OID: i64 = 10;
/// The role's name.
pub const OWNER: &str = "journeydb";
/// The database's name as clients see it.
pub const DATABASE: &str = "journeydb";
/// OID of the database.
pub const DATABASE_OID: i64 = 16_384;
/// OID of access method `heap`.
const HEAP_AM_OID: i64 = 2;

/// One relation: column names and rows. `open` relations have no rows, and any column name
/// resolves in them (to NULL).
#[derive(Debug, Clone, Default)]
pub struct Relation {
    /// Column names.
    pub cols: Vec<String>,
    /// Rows, each as long as `cols`.
    pub rows: Vec<Vec<V>>,
    /// An empty relation of objects journeydb does not have; every column reads NULL.
    pub open: bool,
}

/// PostgreSQL type facts of the types journeydb reports: (oid, name, length, category).
pub const TYPES: &[(i64, &str, i64, &str)] = &[
    (16, "bool", 1, "B"),
    (17, "bytea", -1, "U"),
    (18, "char", 1, "S"),
    (19, "name", 64, "S"),
    (20, "int8", 8, "N"),
    (21, "int2", 2, "N"),
    (23, "int4", 4, "N"),
    (24, "regproc", 4, "N"),
    (25, "text", -1, "S"),
    (26, "oid", 4, "N"),
    (114, "json", -1, "U"),
    (700, "float4", 4, "N"),
    (701, "float8", 8, "N"),
    (705, "unknown", -2, "X"),
    (1043, "varchar", -1, "S"),
    (1082, "date", 4, "D"),
    (1083, "time", 8, "D"),
    (1114, "timestamp", 8, "D"),
    (1184, "timestamptz", 8, "D"),
    (1186, "interval", 16, "T"),
    (1700, "numeric", -1, "N"),
    (2205, "regclass", 4, "N"),
    (2950, "uuid", 16, "U"),
    (3802, "jsonb", -1, "U"),
];

/// The PostgreSQL type OID of a column type.
pub fn type_oid(t: ColumnType) -> i64 {
    match t {
        ColumnType::Timestamp => 1114,
        ColumnType::Bigint => 20,
        ColumnType::Double => 701,
        ColumnType::Boolean => 16,
        ColumnType::Varchar => 1043,
    }
}

/// `format_type(oid, typmod)`: the SQL spelling of a type.
pub fn format_type(oid: i64) -> Option<&'static str> {
    Some(match oid {
        16 => "boolean",
        17 => "bytea",
        18 => "\"char\"",
        19 => "name",
        20 => "bigint",
        21 => "smallint",
        23 => "integer",
        25 => "text",
        26 => "oid",
        114 => "json",
        700 => "real",
        701 => "double precision",
        1043 => "character varying",
        1082 => "date",
        1083 => "time without time zone",
        1114 => "timestamp without time zone",
        1184 => "timestamp with time zone",
        1186 => "interval",
        1700 => "numeric",
        2205 => "regclass",
        2950 => "uuid",
        3802 => "jsonb",
        _ => return None,
    })
}

fn udt_name(oid: i64) -> &'static str {
    TYPES.iter().find(|t| t.0 == oid).map_or("unknown", |t| t.1)
}

/// A table's OID: stable for its name (a hash), above PostgreSQL's range of built-in objects.
pub fn table_oid(name: &str) -> i64 {
    // FNV-1a, 32 bits, folded into 16,385 .. 2^31: the same name always gets the same OID.
    let mut h: u32 = 0x811c_9dc5;
    for b in name.bytes() {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    16_385 + i64::from(h % (i32::MAX as u32 - 16_385))
}

/// A user table as the catalog sees it: (name, oid, columns as (name, type oid, not null)).
pub struct TableInfo {
    /// Name.
    pub name: String,
    /// OID.
    pub oid: i64,
    /// Columns: (name, type OID, NOT NULL).
    pub cols: Vec<(String, i64, bool)>,
    /// Rows (customers) in the table.
    pub rows: u64,
    /// Bytes of its segment files.
    pub bytes: u64,
}

/// The user tables of a snapshot.
pub fn tables(snap: &Snapshot) -> Result<Vec<TableInfo>> {
    let key_oid = match snap.key_type() {
        KeyType::Varchar => 1043,
        KeyType::Bigint => 20,
    };
    let mut out = Vec::new();
    for name in snap.table_names() {
        if crate::is_internal_table(&name) {
            continue;
        }
        let t = snap.table(&name)?;
        let schema = t.schema();
        let mut cols = vec![(schema.key_name.clone(), key_oid, true)];
        cols.extend(
            schema
                .columns
                .iter()
                .map(|c| (c.name.clone(), type_oid(c.ty), false)),
        );
        out.push(TableInfo {
            oid: table_oid(&name),
            rows: t.row_count(),
            bytes: t.storage().iter().map(|s| s.size_bytes).sum(),
            name,
            cols,
        });
    }
    Ok(out)
}

fn rel(cols: &[&str], rows: Vec<Vec<V>>) -> Relation {
    Relation {
        cols: cols.iter().map(|c| (*c).to_string()).collect(),
        rows,
        open: false,
    }
}

fn s(v: &str) -> V {
    V::Str(v.to_string())
}

/// The relation `schema.name` (schema `pg_catalog` or `information_schema`), if it is one.
// long: one arm per pg_catalog / information_schema relation: the catalog's table of contents.
pub fn relation(schema: &str, name: &str, tables: &[TableInfo]) -> Option<Relation> {
    match (schema, name) {
        ("pg_catalog", "pg_namespace") => Some(rel(
            &["oid", "nspname", "nspowner", "nspacl"],
            [
                (PG_CATALOG_OID, "pg_catalog"),
                (PUBLIC_OID, "public"),
                (INFORMATION_SCHEMA_OID, "information_schema"),
            ]
            .iter()
            .map(|(oid, n)| vec![V::Int(*oid), s(n), V::Int(OWNER_OID), V::Null])
            .collect(),
        )),
        ("pg_catalog", "pg_class") => Some(rel(
            &[
                "oid",
                "relname",
                "relnamespace",
                "reltype",
                "reloftype",
                "relowner",
                "relam",
                "relfilenode",
                "reltablespace",
                "relpages",
                "reltuples",
                "relallvisible",
                "reltoastrelid",
                "relhasindex",
                "relisshared",
                "relpersistence",
                "relkind",
                "relnatts",
                "relchecks",
                "relhasrules",
                "relhastriggers",
                "relhassubclass",
                "relrowsecurity",
                "relforcerowsecurity",
                "relispopulated",
                "relreplident",
                "relispartition",
                "relrewrite",
                "relfrozenxid",
                "relminmxid",
                "relacl",
                "reloptions",
                "relpartbound",
            ],
            tables
                .iter()
                .map(|t| {
                    vec![
                        V::Int(t.oid),
                        s(&t.name),
                        V::Int(PUBLIC_OID),
                        V::Int(0),
                        V::Int(0),
                        V::Int(OWNER_OID),
                        V::Int(HEAP_AM_OID),
                        V::Int(t.oid),
                        V::Int(0),
                        V::Int(0),
                        V::Float(t.rows as f64),
                        V::Int(0),
                        V::Int(0),
                        V::Bool(false),
                        V::Bool(false),
                        s("p"),
                        s("r"),
                        V::Int(t.cols.len() as i64),
                        V::Int(0),
                        V::Bool(false),
                        V::Bool(false),
                        V::Bool(false),
                        V::Bool(false),
                        V::Bool(false),
                        V::Bool(true),
                        s("d"),
                        V::Bool(false),
                        V::Int(0),
                        V::Int(0),
                        V::Int(0),
                        V::Null,
                        V::Null,
                        V::Null,
                    ]
                })
                .collect(),
        )),
        ("pg_catalog", "pg_attribute") => {
            let mut rows = Vec::new();
            for t in tables {
                for (i, (name, oid, not_null)) in t.cols.iter().enumerate() {
                    let len = TYPES.iter().find(|x| x.0 == *oid).map_or(-1, |x| x.2);
                    rows.push(vec![
                        V::Int(t.oid),
                        s(name),
                        V::Int(*oid),
                        V::Int(i as i64 + 1),
                        V::Bool(*not_null),
                        V::Bool(false),
                        V::Bool(false),
                        V::Int(-1),
                        V::Int(len),
                        s(""),
                        s(""),
                        V::Int(0),
                        V::Bool(true),
                        V::Int(0),
                        V::Int(0),
                        V::Int(-1),
                        V::Null,
                        V::Null,
                        V::Bool(false),
                        s(if len == -1 { "x" } else { "p" }),
                        s(""),
                        s(if len == 8 { "d" } else { "i" }),
                        V::Bool((1..=8).contains(&len)),
                    ]);
                }
            }
            Some(rel(
                &[
                    "attrelid",
                    "attname",
                    "atttypid",
                    "attnum",
                    "attnotnull",
                    "atthasdef",
                    "attisdropped",
                    "atttypmod",
                    "attlen",
                    "attidentity",
                    "attgenerated",
                    "attcollation",
                    "attislocal",
                    "attinhcount",
                    "attndims",
                    "attstattarget",
                    "attacl",
                    "attoptions",
                    "atthasmissing",
                    "attstorage",
                    "attcompression",
                    "attalign",
                    "attbyval",
                ],
                rows,
            ))
        }
        ("pg_catalog", "pg_type") => Some(rel(
            &[
                "oid",
                "typname",
                "typnamespace",
                "typowner",
                "typlen",
                "typbyval",
                "typtype",
                "typcategory",
                "typispreferred",
                "typisdefined",
                "typdelim",
                "typrelid",
                "typelem",
                "typarray",
                "typbasetype",
                "typtypmod",
                "typnotnull",
                "typcollation",
                "typndims",
                "typdefault",
            ],
            TYPES
                .iter()
                .map(|(oid, name, len, cat)| {
                    vec![
                        V::Int(*oid),
                        s(name),
                        V::Int(PG_CATALOG_OID),
                        V::Int(OWNER_OID),
                        V::Int(*len),
                        V::Bool((1..=8).contains(len)),
                        s("b"),
                        s(cat),
                        V::Bool(false),
                        V::Bool(true),
                        s(","),
                        V::Int(0),
                        V::Int(0),
                        V::Int(0),
                        V::Int(0),
                        V::Int(-1),
                        V::Bool(false),
                        V::Int(if *cat == "S" { 100 } else { 0 }),
                        V::Int(0),
                        V::Null,
                    ]
                })
                .collect(),
        )),
        ("pg_catalog", "pg_database") => Some(rel(
            &[
                "oid",
                "datname",
                "datdba",
                "encoding",
                "datcollate",
                "datctype",
                "datistemplate",
                "datallowconn",
                "datconnlimit",
                "datacl",
                "dattablespace",
                "datlocprovider",
                "daticulocale",
            ],
            vec![vec![
                V::Int(DATABASE_OID),
                s(DATABASE),
                V::Int(OWNER_OID),
                V::Int(6),
                s("C"),
                s("C"),
                V::Bool(false),
                V::Bool(true),
                V::Int(-1),
                V::Null,
                V::Int(1663),
                s("c"),
                V::Null,
            ]],
        )),
        ("pg_catalog", "pg_roles" | "pg_authid" | "pg_user") => Some(rel(
            &[
                "oid",
                "rolname",
                "rolsuper",
                "rolinherit",
                "rolcreaterole",
                "rolcreatedb",
                "rolcanlogin",
                "rolreplication",
                "rolconnlimit",
                "rolvaliduntil",
                "rolbypassrls",
                "usename",
                "usesysid",
                "usesuper",
            ],
            vec![vec![
                V::Int(OWNER_OID),
                s(OWNER),
                V::Bool(true),
                V::Bool(true),
                V::Bool(true),
                V::Bool(true),
                V::Bool(true),
                V::Bool(false),
                V::Int(-1),
                V::Null,
                V::Bool(true),
                s(OWNER),
                V::Int(OWNER_OID),
                V::Bool(true),
            ]],
        )),
        ("pg_catalog", "pg_am") => Some(rel(
            &["oid", "amname", "amtype"],
            vec![vec![V::Int(HEAP_AM_OID), s("heap"), s("t")]],
        )),
        ("pg_catalog", "pg_tablespace") => Some(rel(
            &["oid", "spcname", "spcowner"],
            vec![vec![V::Int(1663), s("pg_default"), V::Int(OWNER_OID)]],
        )),
        ("pg_catalog", "pg_settings") => Some(rel(
            &[
                "name",
                "setting",
                "unit",
                "category",
                "short_desc",
                "context",
                "vartype",
            ],
            crate::settings::DEFAULTS
                .iter()
                .map(|(k, v)| {
                    vec![
                        s(k),
                        s(v),
                        V::Null,
                        s("journeydb"),
                        s(""),
                        s("user"),
                        s("string"),
                    ]
                })
                .collect(),
        )),
        (
            "pg_catalog",
            "pg_index"
            | "pg_constraint"
            | "pg_description"
            | "pg_inherits"
            | "pg_attrdef"
            | "pg_trigger"
            | "pg_policy"
            | "pg_statistic_ext"
            | "pg_publication"
            | "pg_publication_rel"
            | "pg_publication_namespace"
            | "pg_rewrite"
            | "pg_proc"
            | "pg_collation"
            | "pg_foreign_table"
            | "pg_foreign_server"
            | "pg_partitioned_table"
            | "pg_sequence"
            | "pg_depend"
            | "pg_enum"
            | "pg_range"
            | "pg_extension"
            | "pg_event_trigger"
            | "pg_operator"
            | "pg_cast"
            | "pg_conversion"
            | "pg_language"
            | "pg_opclass"
            | "pg_shdescription"
            | "pg_seclabel"
            | "pg_matviews"
            | "pg_views"
            | "pg_stat_activity"
            | "pg_locks"
            | "pg_prepared_xacts"
            | "pg_aggregate"
            | "pg_auth_members"
            | "pg_stat_user_tables"
            | "pg_statio_user_tables"
            | "pg_indexes"
            | "pg_stats"
            | "pg_sequences"
            | "pg_subscription"
            | "pg_largeobject_metadata"
            | "pg_ts_config"
            | "pg_default_acl"
            | "pg_init_privs"
            | "pg_foreign_data_wrapper"
            | "pg_user_mapping"
            | "pg_transform"
            | "pg_amop"
            | "pg_amproc"
            | "pg_opfamily",
        ) => Some(Relation {
            open: true,
            ..Relation::default()
        }),
        ("pg_catalog", "pg_tables") => Some(rel(
            &[
                "schemaname",
                "tablename",
                "tableowner",
                "tablespace",
                "hasindexes",
                "hasrules",
                "hastriggers",
                "rowsecurity",
            ],
            tables
                .iter()
                .map(|t| {
                    vec![
                        s("public"),
                        s(&t.name),
                        s(OWNER),
                        V::Null,
                        V::Bool(false),
                        V::Bool(false),
                        V::Bool(false),
                        V::Bool(false),
                    ]
                })
                .collect(),
        )),
        ("information_schema", "schemata") => Some(rel(
            &["catalog_name", "schema_name", "schema_owner"],
            ["pg_catalog", "public", "information_schema"]
                .iter()
                .map(|n| vec![s(DATABASE), s(n), s(OWNER)])
                .collect(),
        )),
        ("information_schema", "tables") => Some(rel(
            &[
                "table_catalog",
                "table_schema",
                "table_name",
                "table_type",
                "self_referencing_column_name",
                "reference_generation",
                "user_defined_type_catalog",
                "user_defined_type_schema",
                "user_defined_type_name",
                "is_insertable_into",
                "is_typed",
                "commit_action",
            ],
            tables
                .iter()
                .map(|t| {
                    vec![
                        s(DATABASE),
                        s("public"),
                        s(&t.name),
                        s("BASE TABLE"),
                        V::Null,
                        V::Null,
                        V::Null,
                        V::Null,
                        V::Null,
                        s("YES"),
                        s("NO"),
                        V::Null,
                    ]
                })
                .collect(),
        )),
        ("information_schema", "columns") => {
            let mut rows = Vec::new();
            for t in tables {
                for (i, (name, oid, not_null)) in t.cols.iter().enumerate() {
                    let (precision, radix, dt_precision) = match oid {
                        20 => (V::Int(64), V::Int(2), V::Null),
                        701 => (V::Int(53), V::Int(2), V::Null),
                        1114 => (V::Null, V::Null, V::Int(6)),
                        _ => (V::Null, V::Null, V::Null),
                    };
                    rows.push(vec![
                        s(DATABASE),
                        s("public"),
                        s(&t.name),
                        s(name),
                        V::Int(i as i64 + 1),
                        V::Null,
                        s(if *not_null { "NO" } else { "YES" }),
                        s(format_type(*oid).unwrap_or("text")),
                        V::Null,
                        precision,
                        radix,
                        if *oid == 20 { V::Int(0) } else { V::Null },
                        dt_precision,
                        s(DATABASE),
                        s("pg_catalog"),
                        s(udt_name(*oid)),
                        s("NO"),
                        s("NEVER"),
                        s("YES"),
                    ]);
                }
            }
            Some(rel(
                &[
                    "table_catalog",
                    "table_schema",
                    "table_name",
                    "column_name",
                    "ordinal_position",
                    "column_default",
                    "is_nullable",
                    "data_type",
                    "character_maximum_length",
                    "numeric_precision",
                    "numeric_precision_radix",
                    "numeric_scale",
                    "datetime_precision",
                    "udt_catalog",
                    "udt_schema",
                    "udt_name",
                    "is_identity",
                    "is_generated",
                    "is_updatable",
                ],
                rows,
            ))
        }
        (
            "information_schema",
            "table_constraints"
            | "key_column_usage"
            | "referential_constraints"
            | "views"
            | "routines"
            | "parameters"
            | "sequences"
            | "triggers"
            | "check_constraints"
            | "constraint_column_usage"
            | "element_types"
            | "domains",
        ) => Some(Relation {
            open: true,
            ..Relation::default()
        }),
        _ => None,
    }
}

/// Whether `name` (unqualified) is a catalog relation found on the default search path
/// (`pg_catalog` is always searched first, as in PostgreSQL).
pub fn is_catalog_name(name: &str) -> bool {
    relation("pg_catalog", name, &[]).is_some()
}
