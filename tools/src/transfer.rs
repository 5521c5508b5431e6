//! `journeydb import` and `journeydb export`: files in and out of an embedded database or, with
//! `--connect`, a server (this process reads and writes the files; the server never opens them).
//! An import is one [`Session::load`]: one commit, all rows or none.

use std::collections::{HashMap, VecDeque};
use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow_array::RecordBatch;
use journeydb_client::{CellTarget, Cells, Client, ClientError, LoadItem, Session};
use journeydb_io::convert::{infer_columns, ConvertOptions, Converter, Reject, Target as IoTarget};
use journeydb_io::events::{columns_for, pivot, EventSpec};
use journeydb_io::import::{Batches, OnProgress, Progress};
use journeydb_io::read::{read_files, ReadOptions};
use journeydb_io::write::{Partitioned, Sink, WriteOptions};
use journeydb_io::Format;
use journeydb_query::Engine;
use journeydb_server::EmbeddedSession;
use journeydb_storage::schema::ColumnType;
use journeydb_storage::{Database, Options};

use crate::cli::{EventsArgs, ExportArgs, FileFormat, ImportArgs, ProgressArg, ReadArgs, Target};

/// An embedded engine or a server connection.
enum Conn {
    Embedded(Box<Engine>, EmbeddedSession),
    Remote(Client),
}

fn connect(t: &Target) -> Result<Conn, String> {
    if let Some(addr) = &t.remote.connect {
        return Client::connect(addr.as_str(), t.remote.token())
            .map(Conn::Remote)
            .map_err(|e| format!("{addr}: {e}"));
    }
    let dir =
        t.db.as_ref()
            .ok_or("give --db DIR or --connect HOST:PORT")?;
    if !dir.join("CURRENT").exists() {
        return Err(format!("{}: no database here", dir.display()));
    }
    let db =
        Database::open(dir, Options::default()).map_err(|e| format!("{}: {e}", dir.display()))?;
    let engine = Engine::new(Arc::new(db));
    let session = EmbeddedSession::new(engine.clone());
    Ok(Conn::Embedded(Box::new(engine), session))
}

impl Conn {
    fn session(&mut self) -> &mut dyn Session {
        match self {
            Conn::Embedded(_, s) => s,
            Conn::Remote(c) => c,
        }
    }
}

fn format_arg(f: FileFormat) -> Format {
    match f {
        FileFormat::Parquet => Format::Parquet,
        FileFormat::Csv => Format::Csv,
        FileFormat::Json => Format::Json,
        FileFormat::Arrow => Format::Arrow,
    }
}

fn quote_ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

fn quote_lit(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// A table's key and value columns as the catalog lists them (the key is the first), or `None`.
fn table_columns(s: &mut dyn Session, table: &str) -> Result<Option<IoTarget>, String> {
    let reply = s
        .run(&format!(
            "SELECT column_name, data_type FROM information_schema.columns WHERE table_name = {} \
             ORDER BY ordinal_position",
            quote_lit(table)
        ))
        .map_err(|e| e.to_string())?;
    let mut cols = Vec::new();
    for b in &reply.batches {
        let text = |c: usize, r: usize| {
            journeydb_query::format::cell_text(b.column(c).as_ref(), r).unwrap_or_default()
        };
        for (n, t) in (0..b.num_rows()).map(|r| (text(0, r), text(1, r))) {
            let ty = match t.as_str() {
                "character varying" | "text" => ColumnType::Varchar,
                "bigint" => ColumnType::Bigint,
                "double precision" => ColumnType::Double,
                "boolean" => ColumnType::Boolean,
                t if t.starts_with("timestamp") => ColumnType::Timestamp,
                other => return Err(format!("column {n} of {table} has type {other}")),
            };
            cols.push((n, ty));
        }
    }
    let mut it = cols.into_iter();
    let Some(key) = it.next() else {
        return Ok(None);
    };
    Ok(Some(IoTarget {
        table: table.to_string(),
        key,
        columns: it.collect(),
    }))
}

fn read_options(r: &ReadArgs, columns: Vec<String>) -> ReadOptions {
    ReadOptions {
        format: r.format.map(format_arg),
        header: !r.no_header,
        delimiter: r.delimiter,
        quote: b'"',
        null: r.null.clone(),
        columns,
        string_views: false,
    }
}

fn convert_options(r: &ReadArgs, ignore_extra_columns: bool) -> ConvertOptions {
    ConvertOptions {
        timestamp_format: r.timestamp_format.clone(),
        max_errors: r.max_errors,
        ignore_extra_columns,
    }
}

fn rejects_path(r: &ReadArgs, table: &str) -> Option<PathBuf> {
    r.rejects
        .clone()
        .or_else(|| (r.max_errors > 0).then(|| PathBuf::from(format!("{table}.rejects.csv"))))
}

/// Prints progress: a bar on a terminal, a line every 5 s otherwise.
fn progress_printer(mode: ProgressArg, what: String) -> Option<OnProgress> {
    let bar = match mode {
        ProgressArg::None => return None,
        ProgressArg::Bar => true,
        ProgressArg::Lines => false,
        ProgressArg::Auto => std::io::stderr().is_terminal(),
    };
    if bar {
        let pb = indicatif::ProgressBar::new(0);
        pb.set_style(
            indicatif::ProgressStyle::with_template(
                "{prefix} [{bar:30}] {bytes}/{total_bytes} {msg} ETA {eta}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
            .progress_chars("=> "),
        );
        pb.set_prefix(what);
        return Some(Box::new(move |p: &Progress| {
            pb.set_length(p.bytes);
            pb.set_position(p.bytes_read);
            pb.set_message(format!("{} rows, {:.0} rows/s", p.rows, rate(p)));
            if p.files_done == p.files && p.files > 0 {
                pb.finish_and_clear();
            }
        }));
    }
    let mut last = Instant::now();
    Some(Box::new(move |p: &Progress| {
        if last.elapsed() >= Duration::from_secs(5) {
            last = Instant::now();
            eprintln!(
                "{what}: {} rows, {:.1}/{:.1} MB, {:.0} rows/s, file {}/{}",
                p.rows,
                p.bytes_read as f64 / 1e6,
                p.bytes as f64 / 1e6,
                rate(p),
                (p.files_done + 1).min(p.files),
                p.files
            );
        }
    }))
}

fn rate(p: &Progress) -> f64 {
    p.rows as f64 / p.elapsed.as_secs_f64().max(1e-9)
}

fn input_err(e: journeydb_io::IoError) -> ClientError {
    ClientError::Input(e.to_string())
}

/// `journeydb import`.
pub fn import(a: &ImportArgs) -> Result<(), String> {
    if let Some(crate::cli::ImportCommand::Events(e)) = &a.events {
        return import_events(e);
    }
    let table = a.table.clone().ok_or("import: give --table")?;
    let files = journeydb_io::expand(&a.read.files).map_err(|e| e.to_string())?;
    let mut conn = connect(&a.target)?;
    let s = conn.session();
    let target = match (table_columns(s, &table)?, &a.create_key) {
        (Some(t), _) => t,
        (None, Some(key)) => create_from_file(s, &table, key, &files, &a.read)?,
        (None, None) => {
            return Err(format!(
                "no table {table}; create it first, or give --create-key COLUMN to create it from \
                 the file's columns"
            ))
        }
    };
    let positional = std::iter::once(target.key.0.clone())
        .chain(target.columns.iter().map(|(n, _)| n.clone()))
        .collect();
    let rejects = rejects_path(&a.read, &table);
    let conv = Converter::new(target, convert_options(&a.read, a.ignore_extra_columns));
    let nfiles = files.len();
    let mut batches = Batches::new(
        files,
        read_options(&a.read, positional),
        conv,
        rejects.clone(),
    )
    .map_err(|e| e.to_string())?;
    if let Some(p) = progress_printer(a.read.progress, format!("import {table}")) {
        batches = batches.on_progress(p);
    }
    let started = Instant::now();
    let mut stats = Progress::default();
    // Files are read and converted on a thread of their own while the load takes them.
    let items = batches
        .by_ref()
        .map(|r| r.map(LoadItem::Rows).map_err(input_err));
    let rows =
        journeydb_io::pipelined(items, 4, |it| s.load(&table, it)).map_err(|e| e.to_string())?;
    stats.clone_from(batches.progress());
    report(&table, rows, nfiles, &stats, started, rejects.as_ref());
    Ok(())
}

fn report(
    table: &str,
    rows: u64,
    files: usize,
    p: &Progress,
    started: Instant,
    rejects: Option<&PathBuf>,
) {
    let secs = started.elapsed().as_secs_f64();
    eprintln!(
        "imported {rows} rows into {table} from {files} file{} ({:.1} MB) in {secs:.2} s ({:.0} rows/s){}",
        if files == 1 { "" } else { "s" },
        p.bytes as f64 / 1e6,
        p.rows as f64 / secs.max(1e-9),
        match (p.rejected, rejects) {
            (0, _) => String::new(),
            (n, Some(f)) => format!("; {n} rows rejected, listed in {}", f.display()),
            (n, None) => format!("; {n} rows rejected"),
        }
    );
}

/// Creates `table` from the first batch of the first file: `key` is the customer key, every other
/// column MERGE MIN.
fn create_from_file(
    s: &mut dyn Session,
    table: &str,
    key: &str,
    files: &[PathBuf],
    r: &ReadArgs,
) -> Result<IoTarget, String> {
    let first = read_files(
        files.iter().take(1).cloned().collect(),
        read_options(r, Vec::new()),
    )
    .next()
    .ok_or_else(|| "the first file has no rows to take the columns from".to_string())?
    .map_err(|e| e.to_string())?;
    let cols = infer_columns(&first.batch).map_err(|e| e.to_string())?;
    let Some((kname, kty)) = cols
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(key))
        .cloned()
    else {
        return Err(format!(
            "{}: no column {key} for the key",
            first.file.display()
        ));
    };
    let kty = match kty {
        ColumnType::Bigint => ColumnType::Bigint,
        _ => ColumnType::Varchar,
    };
    let mut defs = vec![format!(
        "{} {} PRIMARY KEY",
        quote_ident(&kname),
        kty.sql_name()
    )];
    let rest: Vec<(String, ColumnType)> = cols.into_iter().filter(|(n, _)| *n != kname).collect();
    for (n, t) in &rest {
        defs.push(format!("{} {} MERGE MIN", quote_ident(n), t.sql_name()));
    }
    s.run(&format!(
        "CREATE TABLE {} ({})",
        quote_ident(table),
        defs.join(", ")
    ))
    .map_err(|e| e.to_string())?;
    eprintln!(
        "created table {table} ({} columns, key {kname})",
        rest.len() + 1
    );
    Ok(IoTarget {
        table: table.to_string(),
        key: (kname, kty),
        columns: rest,
    })
}

/// The load items of an event import: added columns and pivoted rows.
struct EventItems<I> {
    pieces: I,
    spec: EventSpec,
    opts: ConvertOptions,
    known: HashMap<String, ColumnType>,
    queue: VecDeque<LoadItem>,
    rejected: u64,
    rejects: Vec<Reject>,
    progress: Progress,
    on_progress: Option<OnProgress>,
    started: Instant,
    failed: bool,
}

impl<I: Iterator<Item = journeydb_io::Result<journeydb_io::read::Piece>>> EventItems<I> {
    fn step(&mut self) -> Result<bool, ClientError> {
        let Some(piece) = self.pieces.next().transpose().map_err(input_err)? else {
            return Ok(false);
        };
        let p = pivot(&piece, &self.spec, &self.opts, &mut self.rejected).map_err(input_err)?;
        self.rejects.extend(p.rejects);
        for (name, ty, rule) in columns_for(&p.events, self.spec.count) {
            match self.known.get(&name) {
                Some(t) if *t == ty => {}
                Some(t) => {
                    return Err(ClientError::Input(format!(
                        "event column {name} exists with type {}, not {}",
                        t.sql_name(),
                        ty.sql_name()
                    )))
                }
                None => {
                    self.known.insert(name.clone(), ty);
                    self.queue.push_back(LoadItem::AddColumn {
                        name,
                        ty: ty.sql_name().into(),
                        rule: rule.into(),
                    });
                }
            }
        }
        self.progress.rows += piece.batch.num_rows() as u64;
        self.progress.rejected = self.rejected;
        self.progress.bytes_read = piece.bytes_read;
        self.progress.elapsed = self.started.elapsed();
        if let Some(f) = &mut self.on_progress {
            f(&self.progress);
        }
        let targets = p
            .events
            .iter()
            .map(|e| {
                let mut t = vec![CellTarget {
                    column: e.clone(),
                    timestamp: true,
                    constant: None,
                }];
                if self.spec.count {
                    t.push(CellTarget {
                        column: format!("{e}_count"),
                        timestamp: false,
                        constant: Some(1),
                    });
                }
                t
            })
            .collect();
        self.queue.push_back(LoadItem::Cells(Cells {
            key: self.spec.table_key.clone(),
            keys: p.keys,
            kinds: p.kinds,
            values: p.times,
            targets,
        }));
        Ok(true)
    }
}

impl<I: Iterator<Item = journeydb_io::Result<journeydb_io::read::Piece>>> Iterator
    for EventItems<I>
{
    type Item = Result<LoadItem, ClientError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(item) = self.queue.pop_front() {
                return Some(Ok(item));
            }
            if self.failed {
                return None;
            }
            match self.step() {
                Ok(true) => {}
                Ok(false) => return None,
                Err(e) => {
                    self.failed = true;
                    return Some(Err(e));
                }
            }
        }
    }
}

/// `journeydb import events`.
pub fn import_events(a: &EventsArgs) -> Result<(), String> {
    let files = journeydb_io::expand(&a.read.files).map_err(|e| e.to_string())?;
    let mut conn = connect(&a.target)?;
    let s = conn.session();
    let target = match table_columns(s, &a.table)? {
        Some(t) => t,
        None => {
            let first = read_files(
                vec![files.first().cloned().unwrap_or_default()],
                read_options(&a.read, Vec::new()),
            )
            .next()
            .ok_or("the first file has no rows")?
            .map_err(|e| e.to_string())?;
            let cols = infer_columns(&first.batch).map_err(|e| e.to_string())?;
            let kty = match cols.iter().find(|(n, _)| n.eq_ignore_ascii_case(&a.key)) {
                Some((_, ColumnType::Bigint)) => ColumnType::Bigint,
                Some(_) => ColumnType::Varchar,
                None => return Err(format!("{}: no column {}", first.file.display(), a.key)),
            };
            s.run(&format!(
                "CREATE TABLE {} ({} {} PRIMARY KEY)",
                quote_ident(&a.table),
                quote_ident(&a.key),
                kty.sql_name()
            ))
            .map_err(|e| e.to_string())?;
            IoTarget {
                table: a.table.clone(),
                key: (a.key.clone(), kty),
                columns: Vec::new(),
            }
        }
    };
    let bytes: u64 = files
        .iter()
        .map(|f| std::fs::metadata(f).map(|m| m.len()).unwrap_or(0))
        .sum();
    let nfiles = files.len();
    let started = Instant::now();
    let mut items = EventItems {
        // Three stages: decoding (this thread), pivoting, loading.
        pieces: journeydb_io::prefetch(
            read_files(
                files,
                ReadOptions {
                    string_views: true,
                    ..read_options(&a.read, Vec::new())
                },
            ),
            4,
        ),
        spec: EventSpec {
            key: a.key.clone(),
            table_key: target.key.0.clone(),
            key_type: target.key.1,
            event: a.event.clone(),
            time: a.time.clone(),
            count: a.count,
        },
        opts: convert_options(&a.read, false),
        known: target.columns.iter().cloned().collect(),
        queue: VecDeque::new(),
        rejected: 0,
        rejects: Vec::new(),
        progress: Progress {
            files: nfiles,
            bytes,
            ..Progress::default()
        },
        on_progress: progress_printer(a.read.progress, format!("import events {}", a.table)),
        started,
        failed: false,
    };
    let rows = journeydb_io::pipelined(items.by_ref(), 4, |it| s.load(&a.table, it))
        .map_err(|e| e.to_string())?;
    let rejects = rejects_path(&a.read, &a.table);
    if let Some(path) = &rejects {
        let mut text = String::from("at,column,reason\n");
        for r in &items.rejects {
            let q = |s: &str| format!("\"{}\"", s.replace('"', "\"\""));
            text.push_str(&format!("{},{},{}\n", q(&r.at), q(&r.column), q(&r.reason)));
        }
        std::fs::write(path, text).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    let mut p = items.progress.clone();
    p.rejected = items.rejected;
    eprintln!("{} events folded into {rows} customer rows", p.rows);
    report(&a.table, rows, nfiles, &p, started, rejects.as_ref());
    Ok(())
}

/// `journeydb export`.
pub fn export(a: &ExportArgs) -> Result<(), String> {
    let sql = match (&a.query, &a.table) {
        (Some(q), _) => q.clone(),
        (None, Some(t)) => format!("SELECT * FROM {}", quote_ident(t)),
        (None, None) => return Err("export: give --table or --query".into()),
    };
    let format = match a.format {
        Some(f) => format_arg(f),
        None if a.partition_by_hash.is_some() => Format::Parquet,
        None => Format::from_path(&a.out).ok_or_else(|| {
            format!(
                "{}: cannot tell the format from the name; give --format",
                a.out.display()
            )
        })?,
    };
    let opts = WriteOptions::new(format);
    let started = Instant::now();
    // Created at the first batch, which brings the schema.
    let mut out: Option<Box<dyn Sink>> = None;
    let mut rows = 0u64;
    let mut write = |b: &RecordBatch, out: &mut Option<Box<dyn Sink>>| -> Result<(), String> {
        let w = match out {
            Some(w) => w,
            None => out.insert(match a.partition_by_hash {
                Some(n) => Box::new(
                    Partitioned::create(&a.out, n, b.schema(), &opts).map_err(|e| e.to_string())?,
                ),
                None => journeydb_io::write::create(&a.out, b.schema(), &opts)
                    .map_err(|e| e.to_string())?,
            }),
        };
        rows += b.num_rows() as u64;
        w.write(b).map_err(|e| e.to_string())
    };
    match connect(&a.target)? {
        Conn::Embedded(engine, _) => {
            let stream = engine.query_stream(&sql).map_err(|e| e.to_string())?;
            journeydb_io::pipelined(stream, 4, |it| -> Result<(), String> {
                for b in it {
                    write(&b.map_err(|e| e.to_string())?, &mut out)?;
                }
                Ok(())
            })?;
        }
        Conn::Remote(mut client) => {
            let mut failed = None;
            client
                .run_streaming(&sql, |b| {
                    if failed.is_none() {
                        failed = write(&b, &mut out).err();
                    }
                })
                .map_err(|e| e.to_string())?;
            if let Some(e) = failed {
                return Err(e);
            }
        }
    }
    let bytes = out
        .ok_or("the query returned no result to export")?
        .finish()
        .map_err(|e| e.to_string())?;
    let secs = started.elapsed().as_secs_f64();
    eprintln!(
        "exported {rows} rows to {} ({:.1} MB {}) in {secs:.2} s ({:.0} rows/s)",
        a.out.display(),
        bytes as f64 / 1e6,
        format.name(),
        rows as f64 / secs.max(1e-9)
    );
    Ok(())
}

/// `journeydb contract ..`: the contract statements, run on a database or a server.
pub fn contract(c: &crate::cli::ContractCommand) -> Result<(), String> {
    use crate::cli::ContractCommand as C;
    let quote = |s: &str| format!("\"{}\"", s.replace('"', "\"\""));
    let (sql, target) = match c {
        C::Set {
            table,
            file,
            target,
        } => {
            let text =
                std::fs::read_to_string(file).map_err(|e| format!("{}: {e}", file.display()))?;
            (
                format!(
                    "ALTER TABLE {} SET CONTRACT '{}'",
                    quote(table),
                    text.replace('\'', "''")
                ),
                target,
            )
        }
        C::Show { table, target } => (format!("SHOW CONTRACT {}", quote(table)), target),
        C::Check { table, target } => (format!("CHECK CONTRACT {}", quote(table)), target),
    };
    let mut conn = connect(target)?;
    let reply = conn.session().run(&sql).map_err(|e| e.to_string())?;
    let rows: usize = reply.batches.iter().map(|b| b.num_rows()).sum();
    match c {
        C::Set { table, .. } => {
            println!("contract of {table} set");
            Ok(())
        }
        C::Show { table, .. } => {
            let text = reply
                .batches
                .iter()
                .find_map(|b| {
                    b.column(1)
                        .as_any()
                        .downcast_ref::<arrow_array::StringArray>()
                        .filter(|a| {
                            !arrow_array::Array::is_empty(*a) && !arrow_array::Array::is_null(*a, 0)
                        })
                        .map(|a| a.value(0).to_string())
                })
                .ok_or_else(|| format!("{table} has no contract"))?;
            print!("{text}");
            Ok(())
        }
        C::Check { table, .. } => {
            if rows == 0 {
                println!("{table}: the contract holds");
                return Ok(());
            }
            for b in &reply.batches {
                let col = |i: usize| b.column(i).clone();
                let (rule, n, ex) = (col(0), col(1), col(2));
                let rule = rule.as_any().downcast_ref::<arrow_array::StringArray>();
                let n = n.as_any().downcast_ref::<arrow_array::Int64Array>();
                let ex = ex.as_any().downcast_ref::<arrow_array::StringArray>();
                if let (Some(rule), Some(n), Some(ex)) = (rule, n, ex) {
                    for i in 0..b.num_rows() {
                        println!(
                            "broken: {} ({} rows{}{})",
                            rule.value(i),
                            n.value(i),
                            if ex.value(i).is_empty() {
                                ""
                            } else {
                                ", e.g. "
                            },
                            ex.value(i)
                        );
                    }
                }
            }
            Err(format!("{table}: {rows} contract rules broken"))
        }
    }
}
