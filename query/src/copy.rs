//! `COPY t [(cols)] FROM STDIN` in PostgreSQL's CSV and text formats: the protocol layer collects
//! the client's data, and [`Engine::copy_in`] parses every row, converts every field to its
//! column's type, and appends the whole input as one batch, so a COPY lands whole or not at all.
//! An error names the line, the column and the value.

use std::sync::Arc;

use arrow_array::RecordBatch;
use arrow_schema::{Field, Schema};
use sqlparser::ast::{self, Statement};

use crate::engine::Engine;
use crate::error::{QueryError, Result};
use crate::types::{DType, Scalar};

/// Rows one COPY may load: the storage's largest single append, so the load stays one commit.
pub const COPY_ROWS_MAX: usize = journeydb_storage::db::APPEND_ROWS_MAX;

/// The input format.
#[derive(Debug, Clone, PartialEq)]
pub enum CopyFormat {
    /// PostgreSQL's text format: one row per line, fields split by the delimiter (tab), `\N`
    /// for NULL, backslash escapes.
    Text,
    /// CSV: fields split by the delimiter (`,`), quoted with `quote`; an empty field is NULL.
    Csv {
        /// The first line names the columns and is skipped.
        header: bool,
        /// Quote character.
        quote: u8,
        /// Escape character inside quotes (the quote itself by default: `""`).
        escape: u8,
    },
}

/// A `COPY .. FROM STDIN` ready to receive data.
#[derive(Debug, Clone)]
pub struct CopyIn {
    /// The table.
    pub table: String,
    /// The columns the input's fields fill, in order (name, type).
    pub columns: Vec<(String, DType)>,
    /// The format.
    pub format: CopyFormat,
    /// Field delimiter.
    pub delimiter: u8,
    /// The text that means NULL (text format; `\N` by default).
    pub null: String,
}

/// `c` as one ASCII byte, or an error naming the COPY option.
pub(crate) fn ascii(c: char, what: &str) -> Result<u8> {
    u8::try_from(c)
        .ok()
        .filter(u8::is_ascii)
        .ok_or_else(|| QueryError::InvalidValue(format!("COPY {what} must be one ASCII character")))
}

/// The format, delimiter and NULL text of a COPY's options (new and legacy syntax).
fn copy_options(
    options: &[ast::CopyOption],
    legacy_options: &[ast::CopyLegacyOption],
) -> Result<(CopyFormat, u8, String)> {
    let mut format = CopyFormat::Text;
    let (mut header, mut quote, mut escape, mut delimiter, mut null) =
        (false, b'"', None, None, None);
    for o in options {
        match o {
            ast::CopyOption::Format(f) => match f.value.to_ascii_lowercase().as_str() {
                "csv" => {
                    format = CopyFormat::Csv {
                        header: false,
                        quote: b'"',
                        escape: b'"',
                    }
                }
                "text" => format = CopyFormat::Text,
                other => return Err(QueryError::Unsupported(format!("COPY format {other}"))),
            },
            ast::CopyOption::Header(h) => header = *h,
            ast::CopyOption::Delimiter(d) => delimiter = Some(ascii(*d, "DELIMITER")?),
            ast::CopyOption::Null(n) => null = Some(n.clone()),
            ast::CopyOption::Quote(q) => quote = ascii(*q, "QUOTE")?,
            ast::CopyOption::Escape(e) => escape = Some(ascii(*e, "ESCAPE")?),
            ast::CopyOption::Encoding(e)
                if matches!(e.to_ascii_uppercase().as_str(), "UTF8" | "UTF-8") => {}
            other => return Err(QueryError::Unsupported(format!("COPY option {other}"))),
        }
    }
    for o in legacy_options {
        match o {
            ast::CopyLegacyOption::Csv(csv) => {
                format = CopyFormat::Csv {
                    header: false,
                    quote: b'"',
                    escape: b'"',
                };
                for co in csv {
                    match co {
                        ast::CopyLegacyCsvOption::Header => header = true,
                        ast::CopyLegacyCsvOption::Quote(q) => quote = ascii(*q, "QUOTE")?,
                        ast::CopyLegacyCsvOption::Escape(e) => escape = Some(ascii(*e, "ESCAPE")?),
                        other => {
                            return Err(QueryError::Unsupported(format!("COPY option {other}")))
                        }
                    }
                }
            }
            ast::CopyLegacyOption::Header => header = true,
            ast::CopyLegacyOption::Delimiter(d) => delimiter = Some(ascii(*d, "DELIMITER")?),
            ast::CopyLegacyOption::Null(n) => null = Some(n.clone()),
            other => return Err(QueryError::Unsupported(format!("COPY option {other}"))),
        }
    }
    if let CopyFormat::Csv {
        header: h,
        quote: q,
        escape: e,
    } = &mut format
    {
        *h = header;
        *q = quote;
        *e = escape.unwrap_or(quote);
        return Ok((format, delimiter.unwrap_or(b','), null.unwrap_or_default()));
    }
    if header {
        return Err(QueryError::Unsupported(
            "HEADER in text format (use FORMAT csv)".into(),
        ));
    }
    Ok((
        format,
        delimiter.unwrap_or(b'\t'),
        null.unwrap_or_else(|| "\\N".into()),
    ))
}

impl Engine {
    /// `Some` when `stmt` is `COPY .. FROM STDIN` (with its table, columns and options checked);
    /// `None` for any other statement.
    pub fn copy_in_target(&self, stmt: &Statement) -> Result<Option<CopyIn>> {
        let Statement::Copy {
            source,
            to,
            target,
            options,
            legacy_options,
            ..
        } = stmt
        else {
            return Ok(None);
        };
        if *to || !matches!(target, ast::CopyTarget::Stdin) {
            return Err(QueryError::Unsupported(
                "COPY other than COPY .. FROM STDIN (psql's \\copy reads a client-side file this way)"
                    .into(),
            ));
        }
        let ast::CopySource::Table {
            table_name,
            columns,
        } = source
        else {
            return Err(QueryError::Unsupported("COPY (query) FROM".into()));
        };
        let table = crate::plan::object_name(table_name)?.join(".");
        let snap = self.database().snapshot();
        let t = snap
            .table(&table)
            .map_err(|_| QueryError::TableNotFound(table.clone()))?;
        let all = crate::engine::table_columns(&snap, &t);
        let columns = if columns.is_empty() {
            all.clone()
        } else {
            columns
                .iter()
                .map(|c| {
                    all.iter()
                        .find(|(n, _)| n.eq_ignore_ascii_case(&c.value))
                        .cloned()
                        .ok_or_else(|| QueryError::ColumnNotFound(format!("{table}.{}", c.value)))
                })
                .collect::<Result<Vec<_>>>()?
        };
        if !columns
            .iter()
            .any(|(n, _)| n.eq_ignore_ascii_case(&t.schema().key_name))
        {
            return Err(QueryError::Syntax(format!(
                "COPY {table} must fill the key column {}",
                t.schema().key_name
            )));
        }
        let (format, delimiter, null) = copy_options(options, legacy_options)?;
        Ok(Some(CopyIn {
            table,
            columns,
            format,
            delimiter,
            null,
        }))
    }

    /// Loads `data` (the whole COPY input) into the table as one append: every row or none.
    pub fn copy_in(&self, c: &CopyIn, data: &[u8]) -> Result<u64> {
        let rows = match c.format {
            CopyFormat::Csv {
                header,
                quote,
                escape,
            } => csv_rows(c, data, header, quote, escape)?,
            CopyFormat::Text => text_rows(c, data)?,
        };
        if rows.len() > COPY_ROWS_MAX {
            return Err(QueryError::InvalidValue(format!(
                "COPY {}: {} rows, at most {COPY_ROWS_MAX} in one COPY; split the input",
                c.table,
                rows.len()
            )));
        }
        let mut cols: Vec<Vec<Scalar>> = vec![Vec::with_capacity(rows.len()); c.columns.len()];
        for (line, fields) in &rows {
            if fields.len() != c.columns.len() {
                return Err(QueryError::InvalidValue(format!(
                    "COPY {}, line {line}: {} fields for {} columns",
                    c.table,
                    fields.len(),
                    c.columns.len()
                )));
            }
            for ((field, (name, t)), out) in fields.iter().zip(&c.columns).zip(cols.iter_mut()) {
                let v = match field {
                    None => Scalar::Null,
                    Some(s) if *t == DType::Varchar => Scalar::Str(s.clone()),
                    Some(s) => crate::plan::cast_lit(Scalar::Str(s.clone()), *t).map_err(|e| {
                        QueryError::InvalidValue(format!(
                            "COPY {}, line {line}, column {name}: {e}",
                            c.table
                        ))
                    })?,
                };
                out.push(v);
            }
        }
        let arrays = cols
            .iter()
            .zip(&c.columns)
            .map(|(vals, (_, t))| crate::engine::scalars_to_array(vals, *t))
            .collect::<Result<Vec<_>>>()?;
        let fields: Vec<Field> = c
            .columns
            .iter()
            .map(|(n, t)| Field::new(n, crate::exec::arrow_type(*t), true))
            .collect();
        let batch = RecordBatch::try_new(Arc::new(Schema::new(fields)), arrays)?;
        self.check_append(&c.table, &batch)?;
        let n = self
            .database()
            .append(&c.table, &batch)
            .map_err(QueryError::Storage)?;
        Ok(n as u64)
    }
}

/// Rows of CSV input with their line numbers; an empty field is NULL (as is the NULL string).
fn csv_rows(
    c: &CopyIn,
    data: &[u8],
    header: bool,
    quote: u8,
    escape: u8,
) -> Result<Vec<(u64, Vec<Option<String>>)>> {
    let mut b = csv::ReaderBuilder::new();
    b.has_headers(header)
        .delimiter(c.delimiter)
        .quote(quote)
        .flexible(true);
    if escape == quote {
        b.double_quote(true);
    } else {
        b.double_quote(false).escape(Some(escape));
    }
    let mut rows = Vec::new();
    for rec in b.from_reader(data).records() {
        let rec = rec.map_err(|e| {
            let line = e.position().map_or(0, |p| p.line());
            QueryError::InvalidValue(format!("COPY {}, line {line}: {e}", c.table))
        })?;
        let line = rec.position().map_or(0, |p| p.line());
        let fields = rec
            .iter()
            .map(|f| (!f.is_empty() && f != c.null).then(|| f.to_string()))
            .collect();
        rows.push((line, fields));
    }
    Ok(rows)
}

/// Rows of PostgreSQL text-format input with their line numbers (`\.` alone ends the data).
fn text_rows(c: &CopyIn, data: &[u8]) -> Result<Vec<(u64, Vec<Option<String>>)>> {
    let text = std::str::from_utf8(data).map_err(|e| {
        QueryError::InvalidValue(format!("COPY {}: input is not UTF-8: {e}", c.table))
    })?;
    let delim = char::from(c.delimiter);
    let mut rows = Vec::new();
    for (i, line) in text.split('\n').enumerate() {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line == "\\." {
            break;
        }
        if line.is_empty() && i + 1 == text.split('\n').count() {
            continue;
        }
        let mut fields = Vec::new();
        for raw in line.split(delim) {
            if raw == c.null {
                fields.push(None);
                continue;
            }
            fields.push(Some(unescape(raw).map_err(|m| {
                QueryError::InvalidValue(format!("COPY {}, line {}: {m}", c.table, i + 1))
            })?));
        }
        rows.push((i as u64 + 1, fields));
    }
    Ok(rows)
}

/// Text format's backslash escapes: `\b \f \n \r \t \v \\`, octal `\NNN` and hex `\xHH`.
fn unescape(s: &str) -> std::result::Result<String, String> {
    if !s.contains('\\') {
        return Ok(s.to_string());
    }
    let mut out = String::with_capacity(s.len());
    let mut it = s.chars().peekable();
    while let Some(ch) = it.next() {
        if ch != '\\' {
            out.push(ch);
            continue;
        }
        match it.next() {
            Some('b') => out.push('\u{8}'),
            Some('f') => out.push('\u{c}'),
            Some('n') => out.push('\n'),
            Some('r') => out.push('\r'),
            Some('t') => out.push('\t'),
            Some('v') => out.push('\u{b}'),
            Some('x') => {
                let mut v = 0u32;
                let mut n = 0;
                while n < 2 {
                    match it.peek().and_then(|c| c.to_digit(16)) {
                        Some(d) => {
                            v = v * 16 + d;
                            it.next();
                            n += 1;
                        }
                        None => break,
                    }
                }
                out.push(char::from_u32(v).ok_or("bad \\x escape")?);
            }
            Some(d @ '0'..='7') => {
                let mut v = d.to_digit(8).unwrap_or(0);
                for _ in 0..2 {
                    match it.peek().and_then(|c| c.to_digit(8)) {
                        Some(x) => {
                            v = v * 8 + x;
                            it.next();
                        }
                        None => break,
                    }
                }
                out.push(char::from_u32(v).ok_or("bad octal escape")?);
            }
            Some(other) => out.push(other),
            None => return Err("a line ends with a lone backslash".into()),
        }
    }
    Ok(out)
}
