//! `COPY` to and from files: `COPY t [(cols)] FROM 'path|glob' (FORMAT .., ..)`, `COPY t TO 'path'`,
//! `COPY (query) TO 'path'`. Imports land as one bulk commit (straight to segments); exports are
//! written to a temporary name and renamed into place. Formats and conversion rules are those of
//! `journeydb-io` (`docs/IO.md`).
//!
//! Which files a statement may name is the engine's [`FileAccess`]: the embedded engine reads and
//! writes any file its user can; a server opens none unless started with `--import-dir` /
//! `--export-dir`, and then only below those directories (symbolic links resolved).

use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use journeydb_io::convert::{ConvertOptions, Converter, Target};
use journeydb_io::import::Batches;
use journeydb_io::read::ReadOptions;
use journeydb_io::write::{Partitioned, WriteOptions};
use journeydb_io::{Format, IoError};
use journeydb_storage::schema::ColumnType;
use journeydb_storage::KeyType;
use sqlparser::ast::{self, Statement};

use crate::copy::ascii;
use crate::engine::{Engine, Output};
use crate::error::{QueryError, Result};

/// Which files SQL may name.
#[derive(Debug, Clone, Default, PartialEq)]
pub enum FileAccess {
    /// Any file the process can open (the embedded engine: its user is local).
    #[default]
    Local,
    /// Only files below these directories (a relative name is taken from them); `None` refuses.
    Dirs {
        /// Where `COPY .. FROM` may read.
        import: Option<PathBuf>,
        /// Where `COPY .. TO` may write.
        export: Option<PathBuf>,
    },
}

impl FileAccess {
    /// A server's access: nothing unless directories are given.
    pub fn server(import: Option<PathBuf>, export: Option<PathBuf>) -> FileAccess {
        FileAccess::Dirs { import, export }
    }

    /// The path a statement's file name means, checked: `what` is "import" or "export".
    fn resolve(&self, name: &str, export: bool) -> Result<PathBuf> {
        let dir = match self {
            FileAccess::Local => return Ok(PathBuf::from(name)),
            FileAccess::Dirs { import, export: e } => {
                if export {
                    e
                } else {
                    import
                }
            }
        };
        let Some(dir) = dir else {
            let (flag, client) = if export {
                ("--export-dir", "journeydb export --connect")
            } else {
                (
                    "--import-dir",
                    "journeydb import --connect, or psql's \\copy",
                )
            };
            return Err(QueryError::Unsupported(format!(
                "this server opens no file a client names; start it with {flag} DIR, or move the \
                 data through the client ({client})"
            )));
        };
        let p = Path::new(name);
        if p.components().any(|c| matches!(c, Component::ParentDir)) {
            return Err(QueryError::InvalidValue(format!(
                "{name:?}: '..' is not allowed in a file name on a server"
            )));
        }
        let full = if p.is_absolute() {
            p.to_path_buf()
        } else {
            dir.join(p)
        };
        if !full.starts_with(dir) {
            return Err(QueryError::InvalidValue(format!(
                "{name:?} is outside the server's {} directory {}",
                if export { "export" } else { "import" },
                dir.display()
            )));
        }
        Ok(full)
    }

    /// Checks that files found (globs expanded, links followed) stay inside the directory.
    fn check_inside(&self, files: &[PathBuf], export: bool) -> Result<()> {
        let FileAccess::Dirs { import, export: e } = self else {
            return Ok(());
        };
        let Some(dir) = (if export { e } else { import }) else {
            return Ok(());
        };
        let root = dir.canonicalize().map_err(|e| {
            QueryError::InvalidValue(format!("the server's directory {}: {e}", dir.display()))
        })?;
        for f in files {
            let real = f
                .canonicalize()
                .map_err(|e| QueryError::InvalidValue(format!("{}: {e}", f.display())))?;
            if !real.starts_with(&root) {
                return Err(QueryError::InvalidValue(format!(
                    "{} leads outside the server's directory",
                    f.display()
                )));
            }
        }
        Ok(())
    }
}

pub(crate) fn io_err(e: IoError) -> QueryError {
    QueryError::InvalidValue(e.to_string())
}

/// The options of a COPY to or from a file.
#[derive(Debug, Clone, Default)]
pub struct FileOptions {
    /// FORMAT (else the file name's extension).
    pub format: Option<Format>,
    /// HEADER (CSV; default true).
    pub header: Option<bool>,
    /// DELIMITER.
    pub delimiter: Option<u8>,
    /// QUOTE.
    pub quote: Option<u8>,
    /// NULL.
    pub null: Option<String>,
    /// TIMESTAMPFORMAT.
    pub timestamp_format: Option<String>,
    /// MAX_ERRORS.
    pub max_errors: u64,
    /// REJECTS 'path'.
    pub rejects: Option<String>,
    /// PARTITION_BY_HASH n.
    pub partition_by_hash: Option<u32>,
    /// IGNORE_EXTRA_COLUMNS.
    pub ignore_extra_columns: bool,
}

fn flag(v: &str, name: &str) -> Result<bool> {
    match v.to_ascii_lowercase().as_str() {
        "true" | "on" | "1" => Ok(true),
        "false" | "off" | "0" => Ok(false),
        _ => Err(QueryError::InvalidValue(format!(
            "COPY {name} {v:?}: expected true or false"
        ))),
    }
}

impl FileOptions {
    fn parse(
        options: &[ast::CopyOption],
        legacy: &[ast::CopyLegacyOption],
        extra: &[(String, String)],
    ) -> Result<FileOptions> {
        let mut o = FileOptions::default();
        for opt in options {
            match opt {
                ast::CopyOption::Format(f) => {
                    o.format = Some(Format::from_name(&f.value).map_err(io_err)?)
                }
                ast::CopyOption::Header(h) => o.header = Some(*h),
                ast::CopyOption::Delimiter(d) => o.delimiter = Some(ascii(*d, "DELIMITER")?),
                ast::CopyOption::Quote(q) => o.quote = Some(ascii(*q, "QUOTE")?),
                ast::CopyOption::Null(n) => o.null = Some(n.clone()),
                ast::CopyOption::Encoding(e)
                    if matches!(e.to_ascii_uppercase().as_str(), "UTF8" | "UTF-8") => {}
                other => {
                    return Err(QueryError::Unsupported(format!(
                        "COPY option {other} with a file"
                    )))
                }
            }
        }
        for opt in legacy {
            match opt {
                ast::CopyLegacyOption::Csv(_) => o.format = Some(Format::Csv),
                ast::CopyLegacyOption::Header => o.header = Some(true),
                ast::CopyLegacyOption::Delimiter(d) => o.delimiter = Some(ascii(*d, "DELIMITER")?),
                ast::CopyLegacyOption::Null(n) => o.null = Some(n.clone()),
                other => {
                    return Err(QueryError::Unsupported(format!(
                        "COPY option {other} with a file"
                    )))
                }
            }
        }
        for (k, v) in extra {
            let num = |what: &str| {
                v.parse::<u64>().map_err(|_| {
                    QueryError::InvalidValue(format!("COPY {what} {v:?}: expected a whole number"))
                })
            };
            match k.as_str() {
                "TIMESTAMPFORMAT" => o.timestamp_format = Some(v.clone()),
                "MAX_ERRORS" => o.max_errors = num("MAX_ERRORS")?,
                "REJECTS" => o.rejects = Some(v.clone()),
                "PARTITION_BY_HASH" => {
                    o.partition_by_hash =
                        Some(u32::try_from(num("PARTITION_BY_HASH")?).map_err(|_| {
                            QueryError::InvalidValue("PARTITION_BY_HASH is too large".into())
                        })?)
                }
                "IGNORE_EXTRA_COLUMNS" => o.ignore_extra_columns = flag(v, k)?,
                other => return Err(QueryError::Unsupported(format!("COPY option {other} here"))),
            }
        }
        Ok(o)
    }

    fn read(&self, columns: Vec<String>) -> ReadOptions {
        let d = ReadOptions::default();
        ReadOptions {
            format: self.format,
            header: self.header.unwrap_or(true),
            delimiter: self.delimiter.unwrap_or(d.delimiter),
            quote: self.quote.unwrap_or(d.quote),
            null: self.null.clone().unwrap_or_default(),
            columns,
            string_views: false,
        }
    }
}

/// The key column's stored type in a database of `kt` keys.
pub fn key_column_type(kt: KeyType) -> ColumnType {
    match kt {
        KeyType::Bigint => ColumnType::Bigint,
        KeyType::Varchar => ColumnType::Varchar,
    }
}

impl Engine {
    /// Which files this engine's SQL may name.
    pub fn with_file_access(mut self, access: FileAccess) -> Engine {
        self.files = Arc::new(access);
        self
    }

    /// `COPY` with a file: import or export.
    pub(crate) fn copy_file(&self, stmt: &Statement, extra: &[(String, String)]) -> Result<Output> {
        let Statement::Copy {
            source,
            to,
            target,
            options,
            legacy_options,
            ..
        } = stmt
        else {
            return Err(QueryError::Unsupported("not a COPY".into()));
        };
        let ast::CopyTarget::File { filename } = target else {
            return Err(QueryError::Unsupported(
                "COPY .. FROM STDIN / TO STDOUT is served by the PostgreSQL protocol (psql's \\copy)"
                    .into(),
            ));
        };
        let opts = FileOptions::parse(options, legacy_options, extra)?;
        if *to {
            self.copy_to(source, filename, &opts)
        } else {
            let ast::CopySource::Table {
                table_name,
                columns,
            } = source
            else {
                return Err(QueryError::Unsupported("COPY (query) FROM".into()));
            };
            let table = crate::plan::object_name(table_name)?.join(".");
            let cols: Vec<String> = columns.iter().map(|c| c.value.clone()).collect();
            let n = self.import_files(&table, &cols, std::slice::from_ref(filename), &opts)?;
            Ok(Output::Done {
                tag: "COPY".into(),
                rows: n,
            })
        }
    }

    /// Imports files (names or globs) into `table` in one commit. Returns the rows loaded.
    pub fn import_files(
        &self,
        table: &str,
        columns: &[String],
        names: &[String],
        opts: &FileOptions,
    ) -> Result<u64> {
        let snap = self.database().snapshot();
        let t = snap
            .table(table)
            .map_err(|_| QueryError::TableNotFound(table.to_string()))?;
        let schema = t.schema().clone();
        let mut targets: Vec<(String, ColumnType)> = schema
            .columns
            .iter()
            .map(|c| (c.name.clone(), c.ty))
            .collect();
        if !columns.is_empty() {
            for c in columns {
                if !c.eq_ignore_ascii_case(&schema.key_name)
                    && !targets.iter().any(|(n, _)| n.eq_ignore_ascii_case(c))
                {
                    return Err(QueryError::ColumnNotFound(format!("{table}.{c}")));
                }
            }
            targets.retain(|(n, _)| columns.iter().any(|c| c.eq_ignore_ascii_case(n)));
        }
        let positional: Vec<String> = if columns.is_empty() {
            std::iter::once(schema.key_name.clone())
                .chain(schema.columns.iter().map(|c| c.name.clone()))
                .collect()
        } else {
            columns.to_vec()
        };
        let paths = names
            .iter()
            .map(|n| {
                self.files
                    .resolve(n, false)
                    .map(|p| p.to_string_lossy().into_owned())
            })
            .collect::<Result<Vec<_>>>()?;
        let files = journeydb_io::expand(&paths).map_err(io_err)?;
        self.files.check_inside(&files, false)?;
        let rejects = match &opts.rejects {
            Some(r) => Some(self.files.resolve(r, true)?),
            None => None,
        };
        let target = Target {
            table: table.to_string(),
            key: (schema.key_name.clone(), key_column_type(snap.key_type())),
            columns: targets,
        };
        let conv = Converter::new(
            target,
            ConvertOptions {
                timestamp_format: opts.timestamp_format.clone(),
                max_errors: opts.max_errors,
                ignore_extra_columns: opts.ignore_extra_columns,
            },
        );
        let batches = Batches::new(files, opts.read(positional), conv, rejects).map_err(io_err)?;
        let mut load = self
            .database()
            .bulk_load(table)
            .map_err(QueryError::Storage)?;
        // Files are read and converted, and their keys resolved, on a thread of their own while
        // the load folds the batches before.
        let resolver = load.resolver();
        let resolved = batches.map(move |b| {
            b.map(|b| {
                let keys = resolver.batch_ordinals(&b);
                (b, keys)
            })
        });
        journeydb_io::pipelined(resolved, 4, |it| -> Result<()> {
            for item in it {
                let (b, keys) = item.map_err(io_err)?;
                self.check_append(table, &b)?;
                load.push_resolved(&b, keys.map_err(QueryError::Storage)?)
                    .map_err(QueryError::Storage)?;
            }
            Ok(())
        })?;
        load.finish().map(|s| s.rows).map_err(QueryError::Storage)
    }

    fn copy_to(
        &self,
        source: &ast::CopySource,
        filename: &str,
        opts: &FileOptions,
    ) -> Result<Output> {
        let query = match source {
            ast::CopySource::Query(q) => q.clone(),
            ast::CopySource::Table {
                table_name,
                columns,
            } => {
                if !columns.is_empty() {
                    return Err(QueryError::Unsupported(
                        "COPY t (columns) TO: use COPY (SELECT columns FROM t) TO".into(),
                    ));
                }
                select_star(table_name)?
            }
        };
        let path = self.files.resolve(filename, true)?;
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            self.files.check_inside(&[parent.to_path_buf()], true)?;
        }
        let format = opts
            .format
            .or_else(|| opts.partition_by_hash.map(|_| Format::Parquet))
            .or_else(|| Format::from_path(&path))
            .ok_or_else(|| {
                QueryError::InvalidValue(format!(
                    "{filename}: cannot tell the format from the name; give FORMAT parquet | csv | json | arrow"
                ))
            })?;
        let wopts = WriteOptions {
            format,
            header: opts.header.unwrap_or(true),
            delimiter: opts.delimiter.unwrap_or(b','),
        };
        let stream = self.stream_statement(&Statement::Query(query))?;
        let schema = stream.schema();
        let mut rows = 0u64;
        let mut w: Box<dyn journeydb_io::write::Sink> = match opts.partition_by_hash {
            Some(n) => Box::new(Partitioned::create(&path, n, schema, &wopts).map_err(io_err)?),
            None => journeydb_io::write::create(&path, schema, &wopts).map_err(io_err)?,
        };
        // The query's batches come from a thread of their own while the file is written.
        journeydb_io::pipelined(stream, 4, |it| -> Result<()> {
            for b in it {
                let b = b?;
                rows += b.num_rows() as u64;
                w.write(&b).map_err(io_err)?;
            }
            Ok(())
        })?;
        w.finish().map_err(io_err)?;
        Ok(Output::Done {
            tag: "COPY".into(),
            rows,
        })
    }
}

/// `SELECT * FROM <name>` as a parsed query (built from the AST, never from text).
fn select_star(name: &ast::ObjectName) -> Result<Box<ast::Query>> {
    let mut stmts = crate::parse::parse("SELECT * FROM t")?;
    let Some((Statement::Query(mut q), _)) = stmts.pop() else {
        return Err(QueryError::Unsupported("internal: SELECT *".into()));
    };
    if let ast::SetExpr::Select(s) = q.body.as_mut() {
        if let Some(ast::TableFactor::Table { name: n, .. }) =
            s.from.first_mut().map(|f| &mut f.relation)
        {
            *n = name.clone();
            return Ok(q);
        }
    }
    Err(QueryError::Unsupported("internal: SELECT *".into()))
}

/// The file table functions and their formats.
pub fn table_function_format(name: &str) -> Option<Format> {
    Some(match name.to_ascii_lowercase().as_str() {
        "read_parquet" | "parquet_scan" => Format::Parquet,
        "read_csv" | "read_csv_auto" => Format::Csv,
        "read_json" | "read_json_auto" | "read_ndjson" | "read_ndjson_auto" => Format::Json,
        "read_arrow" | "read_ipc" => Format::Arrow,
        _ => return None,
    })
}

/// Named arguments of a table function (lower-case name, value).
type NamedArgs = Vec<(String, ast::Expr)>;

/// The arguments of a file table function: file names (a string or a list of strings) and named
/// options (`key`, `header`, `delim`/`sep`, `nullstr`, `timestampformat`), written `name => value`
/// or `name = value`.
fn function_args(args: &[ast::FunctionArg]) -> Result<(Vec<String>, NamedArgs)> {
    let mut names = Vec::new();
    let mut named = Vec::new();
    let text = |e: &ast::Expr| -> Result<String> {
        match e {
            ast::Expr::Value(v) => match &v.value {
                ast::Value::SingleQuotedString(s) => Ok(s.clone()),
                other => Err(QueryError::InvalidValue(format!(
                    "expected a file name, got {other}"
                ))),
            },
            other => Err(QueryError::InvalidValue(format!(
                "expected a file name, got {other}"
            ))),
        }
    };
    for a in args {
        match a {
            ast::FunctionArg::Unnamed(ast::FunctionArgExpr::Expr(e)) => match e {
                ast::Expr::BinaryOp {
                    left,
                    op: ast::BinaryOperator::Eq,
                    right,
                } if matches!(left.as_ref(), ast::Expr::Identifier(_)) => {
                    if let ast::Expr::Identifier(i) = left.as_ref() {
                        named.push((i.value.to_ascii_lowercase(), (**right).clone()));
                    }
                }
                ast::Expr::Array(arr) => {
                    for e in &arr.elem {
                        names.push(text(e)?);
                    }
                }
                e => names.push(text(e)?),
            },
            ast::FunctionArg::Named {
                name,
                arg: ast::FunctionArgExpr::Expr(e),
                ..
            } => {
                named.push((name.value.to_ascii_lowercase(), e.clone()));
            }
            ast::FunctionArg::ExprNamed {
                name: ast::Expr::Identifier(name),
                arg: ast::FunctionArgExpr::Expr(e),
                ..
            } => {
                named.push((name.value.to_ascii_lowercase(), e.clone()));
            }
            other => return Err(QueryError::Unsupported(format!("argument {other}"))),
        }
    }
    if names.is_empty() {
        return Err(QueryError::Syntax(
            "name a file: read_parquet('file.parquet')".into(),
        ));
    }
    Ok((names, named))
}

fn option_text(e: &ast::Expr, name: &str) -> Result<String> {
    match e {
        ast::Expr::Value(v) => match &v.value {
            ast::Value::SingleQuotedString(s) => Ok(s.clone()),
            ast::Value::Boolean(b) => Ok(b.to_string()),
            ast::Value::Number(n, _) => Ok(n.clone()),
            other => Err(QueryError::InvalidValue(format!("option {name}: {other}"))),
        },
        ast::Expr::Identifier(i) => Ok(i.value.clone()),
        other => Err(QueryError::InvalidValue(format!("option {name}: {other}"))),
    }
}

/// Reads a file table function's files whole into a relation: the key column (the `key` option, else
/// the first column) mapped to ordinals (new keys are registered in the dictionary), the other
/// columns typed from the first batch (`docs/IO.md`). A key with several rows (an event log) gets one
/// frame per occurrence, as UNION ALL does, so GROUP BY the key folds them.
// long: options, files, conversion, then the rows laid out into frames, in order.
pub(crate) fn file_relation(
    access: &FileAccess,
    db: &journeydb_storage::Database,
    func: &str,
    args: &[ast::FunctionArg],
) -> Result<(crate::exec::Relation, String)> {
    use crate::exec::{Frame, Relation};
    use crate::plan::RelCol;
    use journeydb_storage::schema::PartitionId;
    let format = table_function_format(func)
        .ok_or_else(|| QueryError::Unsupported(format!("table function {func}")))?;
    let (names, named) = function_args(args)?;
    let mut read = ReadOptions {
        format: Some(format),
        ..ReadOptions::default()
    };
    let mut key = None;
    let mut conv_opts = ConvertOptions::default();
    for (k, v) in &named {
        let t = option_text(v, k)?;
        match k.as_str() {
            "key" => key = Some(t),
            "header" => read.header = flag(&t, "header")?,
            "delim" | "sep" | "delimiter" => {
                read.delimiter = ascii(t.chars().next().unwrap_or(','), "delimiter")?
            }
            "nullstr" | "null" => read.null = t,
            "timestampformat" => conv_opts.timestamp_format = Some(t),
            other => return Err(QueryError::Unsupported(format!("{func} option {other}"))),
        }
    }
    let paths = names
        .iter()
        .map(|n| {
            access
                .resolve(n, false)
                .map(|p| p.to_string_lossy().into_owned())
        })
        .collect::<Result<Vec<_>>>()?;
    let files = journeydb_io::expand(&paths).map_err(io_err)?;
    access.check_inside(&files, false)?;
    let label = format!("{func}({})", names.join(", "));
    let mut pieces = journeydb_io::read::read_files(files, read).peekable();
    let first = match pieces.peek() {
        Some(Ok(p)) => p.batch.clone(),
        Some(Err(_)) => {
            return Err(pieces
                .next()
                .and_then(|r| r.err())
                .map(io_err)
                .unwrap_or_else(|| QueryError::Internal("file read".into())))
        }
        None => return Err(QueryError::InvalidValue(format!("{label}: no rows"))),
    };
    let mut cols = journeydb_io::convert::infer_columns(&first).map_err(io_err)?;
    let key_at = match &key {
        Some(k) => cols
            .iter()
            .position(|(n, _)| n.eq_ignore_ascii_case(k))
            .ok_or_else(|| QueryError::ColumnNotFound(format!("{label}.{k}")))?,
        None => 0,
    };
    if cols.is_empty() {
        return Err(QueryError::InvalidValue(format!("{label}: no columns")));
    }
    let (key_name, _) = cols.remove(key_at);
    let snap = db.snapshot();
    let key_type = key_column_type(snap.key_type());
    let mut conv = Converter::new(
        Target {
            table: label.clone(),
            key: (key_name.clone(), key_type),
            columns: cols.clone(),
        },
        conv_opts,
    );
    let mut batches = Vec::new();
    for p in pieces {
        let (b, _) = conv.convert(&p.map_err(io_err)?).map_err(io_err)?;
        batches.push(b);
    }
    let schema = batches
        .first()
        .map(|b| b.schema())
        .ok_or_else(|| QueryError::InvalidValue(format!("{label}: no rows")))?;
    let all = arrow_select::concat::concat_batches(&schema, &batches)?;
    drop(batches);
    let ordinals = db
        .register_keys(all.column(0).as_ref())
        .map_err(QueryError::Storage)?;
    // Each row's frame: its partition, and how many rows of its key came before it.
    let prows = snap.partition_rows();
    let mut seen: std::collections::HashMap<u32, u32> = std::collections::HashMap::new();
    let mut groups: std::collections::BTreeMap<(u32, u32), Vec<(u32, usize)>> =
        std::collections::BTreeMap::new();
    for (r, &o) in ordinals.iter().enumerate() {
        let layer = seen.entry(o).or_insert(0);
        groups.entry((o / prows, *layer)).or_default().push((o, r));
        *layer += 1;
    }
    // Column types in the batch's order (the key first).
    let all_cols: Vec<(String, ColumnType)> = all
        .schema()
        .fields()
        .iter()
        .skip(1)
        .map(|f| {
            let ty = cols
                .iter()
                .find(|(n, _)| n == f.name())
                .map_or(ColumnType::Varchar, |(_, t)| *t);
            (f.name().clone(), ty)
        })
        .collect();
    let mut parts: std::collections::BTreeMap<PartitionId, Vec<Frame>> =
        std::collections::BTreeMap::new();
    for ((p, _), mut rows) in groups {
        rows.sort_unstable();
        let ords: Vec<u32> = rows.iter().map(|(o, _)| *o).collect();
        let idx: Vec<usize> = rows.iter().map(|(_, r)| *r).collect();
        let mut fcols = vec![None];
        for (i, (name, ty)) in all_cols.iter().enumerate() {
            let (valid, values) =
                journeydb_storage::values::from_arrow(all.column(i + 1).as_ref(), *ty, &idx)
                    .ok_or_else(|| QueryError::Internal(format!("{label}: column {name}")))?;
            let present = ords
                .iter()
                .zip(&valid)
                .filter(|(_, v)| **v)
                .map(|(o, _)| *o);
            fcols.push(Some(journeydb_storage::ColumnData {
                presence: roaring::RoaringBitmap::from_sorted_iter(present).unwrap_or_default(),
                values,
            }));
        }
        parts.entry(PartitionId(p)).or_default().push(Frame::new(
            roaring::RoaringBitmap::from_sorted_iter(ords).unwrap_or_default(),
            fcols,
        ));
    }
    let mut rel_cols = vec![RelCol {
        name: key_name,
        dtype: snap.key_type().into(),
        is_key: true,
    }];
    rel_cols.extend(all_cols.iter().map(|(n, t)| RelCol {
        name: n.clone(),
        dtype: (*t).into(),
        is_key: false,
    }));
    Ok((
        Relation {
            cols: rel_cols,
            parts,
        },
        label,
    ))
}
