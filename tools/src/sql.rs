//! `journeydb sql`: the SQL shell over an embedded database.

use std::io::{BufRead, IsTerminal, Read, Write};
use std::sync::Arc;

use journeydb_query::{format, Engine, Output};
use journeydb_storage::{Database, KeyType, Options};

use journeydb_tools::cli::{OutputFormat as Format, SqlArgs as Args};

fn print_output(o: &Output, f: Format, out: &mut impl Write) -> std::io::Result<()> {
    match o {
        Output::Rows(b) => match f {
            Format::Table => write!(out, "{}", format::table(b)),
            Format::Csv => write!(out, "{}", format::csv(b)),
            Format::Json => write!(out, "{}", format::json(b)),
        },
        Output::Done { tag, rows } => match f {
            Format::Table => writeln!(
                out,
                "{tag}{}",
                if *rows > 0 {
                    format!(" {rows}")
                } else {
                    String::new()
                }
            ),
            _ => Ok(()),
        },
    }
}

/// Runs a script; returns the number of failed statements.
fn run_script(
    engine: &Engine,
    sql: &str,
    format: Format,
    keep_going: bool,
) -> Result<usize, String> {
    let stmts = match Engine::parse(sql) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(1);
        }
    };
    let stdout = std::io::stdout();
    let mut failed = 0;
    for (s, rules) in stmts {
        // Large results in CSV or JSON are printed batch by batch as they are produced.
        if format != Format::Table
            && journeydb_query::engine::statement_kind(&s)
                == journeydb_query::engine::StatementKind::Query
        {
            match engine.query_stream(&s.to_string()) {
                Ok(stream) => {
                    let mut first = true;
                    let mut out = stdout.lock();
                    for b in stream {
                        match b {
                            Ok(b) => {
                                let text = streamed_text(format, &b, &mut first);
                                out.write_all(text.as_bytes()).map_err(|e| e.to_string())?;
                            }
                            Err(e) => {
                                eprintln!("error: {e}");
                                failed += 1;
                                break;
                            }
                        }
                    }
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    failed += 1;
                }
            }
            if failed > 0 && !keep_going {
                return Ok(failed);
            }
            continue;
        }
        match engine.execute_statement(&s, &rules) {
            Ok(o) => print_output(&o, format, &mut stdout.lock()).map_err(|e| e.to_string())?,
            Err(e) => {
                eprintln!("error: {e}");
                failed += 1;
                if !keep_going {
                    return Ok(failed);
                }
            }
        }
    }
    Ok(failed)
}

/// Runs a script against a server, statement by statement; returns the number of failed statements.
fn run_remote(client: &mut journeydb_client::Client, sql: &str, a: &Args) -> Result<usize, String> {
    let stmts = match journeydb_query::parse::split_statements(sql) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(1);
        }
    };
    let mut failed = 0;
    let stdout = std::io::stdout();
    for s in stmts {
        let mut first = true;
        let mut batches = Vec::new();
        let r = client.run_streaming(&s, |b| {
            if a.format == Format::Table {
                batches.push(b);
            } else {
                let text = streamed_text(a.format, &b, &mut first);
                let _ = stdout.lock().write_all(text.as_bytes());
            }
        });
        match r {
            Ok((tag, rows)) => {
                let mut out = stdout.lock();
                if a.format == Format::Table {
                    if tag == "SELECT" {
                        let schema = batches.first().map(|b| b.schema());
                        if let Some(schema) = schema {
                            let all = arrow_select_concat(&schema, &batches)?;
                            write!(out, "{}", format::table(&all)).map_err(|e| e.to_string())?;
                        } else {
                            writeln!(out, "(0 rows)").map_err(|e| e.to_string())?;
                        }
                    } else {
                        writeln!(
                            out,
                            "{tag}{}",
                            if rows > 0 {
                                format!(" {rows}")
                            } else {
                                String::new()
                            }
                        )
                        .map_err(|e| e.to_string())?;
                    }
                }
            }
            Err(e) => {
                eprintln!("error: {e}");
                failed += 1;
                if matches!(
                    e,
                    journeydb_client::ClientError::Io(_)
                        | journeydb_client::ClientError::Protocol(_)
                ) {
                    return Ok(failed);
                }
                if !a.continue_on_error {
                    return Ok(failed);
                }
            }
        }
    }
    Ok(failed)
}

fn arrow_select_concat(
    schema: &arrow_schema::SchemaRef,
    batches: &[arrow_array::RecordBatch],
) -> Result<arrow_array::RecordBatch, String> {
    let columns = (0..schema.fields().len())
        .map(|i| {
            let arrays: Vec<&dyn arrow_array::Array> = batches
                .iter()
                .filter_map(|b| b.columns().get(i).map(|c| c.as_ref()))
                .collect();
            arrow_select::concat::concat(&arrays).map_err(|e| e.to_string())
        })
        .collect::<Result<Vec<_>, String>>()?;
    arrow_array::RecordBatch::try_new(schema.clone(), columns).map_err(|e| e.to_string())
}

/// The shell over a server: every -c / -f script (or standard input) through the native client.
fn run_connected(a: &Args, addr: &str) -> Result<(), String> {
    let mut client = match &a.tls_ca {
        Some(ca) => journeydb_client::Client::connect_tls(addr, a.remote.token(), &a.tls_name, ca),
        None => journeydb_client::Client::connect(addr, a.remote.token()),
    }
    .map_err(|e| format!("connect {addr}: {e}"))?;
    let mut scripts: Vec<String> = a.commands.clone();
    for f in &a.files {
        scripts.push(std::fs::read_to_string(f).map_err(|e| format!("{f}: {e}"))?);
    }
    if scripts.is_empty() {
        let mut sql = String::new();
        std::io::stdin()
            .lock()
            .read_to_string(&mut sql)
            .map_err(|e| e.to_string())?;
        scripts.push(sql);
    }
    let mut failed = 0;
    for s in &scripts {
        if failed > 0 && !a.continue_on_error {
            break;
        }
        failed += run_remote(&mut client, s, a)?;
    }
    if failed > 0 {
        return Err(format!(
            "{failed} statement{} failed",
            if failed == 1 { "" } else { "s" }
        ));
    }
    Ok(())
}

/// Runs the shell.
pub fn run(a: &Args) -> Result<(), String> {
    if let Some(addr) = &a.remote.connect {
        return run_connected(a, addr);
    }
    let opts = Options::default();
    let path =
        a.db.as_deref()
            .ok_or("sql: give --db DIR or --connect HOST:PORT")?;
    let db = if path.join("CURRENT").exists() {
        Database::open(path, opts)
    } else {
        // A directory that holds anything but a database is refused by `create`; an empty or
        // missing one becomes a new database, said out loud so a mistyped path is noticed.
        let db = Database::create(path, KeyType::from(a.key_type), opts);
        if db.is_ok() {
            eprintln!(
                "created a new database in {} ({} keys)",
                path.display(),
                format!("{:?}", a.key_type).to_lowercase()
            );
        }
        db
    }
    .map_err(|e| e.to_string())?;
    let engine = Engine::new(Arc::new(db));
    let mut failed = 0;
    if a.commands.is_empty() && a.files.is_empty() {
        let stdin = std::io::stdin();
        if stdin.is_terminal() {
            // Interactive: a statement runs when a line ends with ';'.
            let mut buf = String::new();
            let mut out = std::io::stdout();
            loop {
                let _ = write!(
                    out,
                    "{}",
                    if buf.is_empty() {
                        "journeydb> "
                    } else {
                        "       ..> "
                    }
                );
                let _ = out.flush();
                let mut line = String::new();
                if stdin
                    .lock()
                    .read_line(&mut line)
                    .map_err(|e| e.to_string())?
                    == 0
                {
                    break;
                }
                buf.push_str(&line);
                if line.trim_end().ends_with(';') {
                    run_script(&engine, &buf, a.format, true)?;
                    buf.clear();
                }
            }
            if !buf.trim().is_empty() {
                run_script(&engine, &buf, a.format, a.continue_on_error)?;
            }
            return Ok(());
        }
        let mut sql = String::new();
        stdin
            .lock()
            .read_to_string(&mut sql)
            .map_err(|e| e.to_string())?;
        failed += run_script(&engine, &sql, a.format, a.continue_on_error)?;
    }
    for c in &a.commands {
        if failed > 0 && !a.continue_on_error {
            break;
        }
        failed += run_script(&engine, c, a.format, a.continue_on_error)?;
    }
    for f in &a.files {
        if failed > 0 && !a.continue_on_error {
            break;
        }
        let sql = std::fs::read_to_string(f).map_err(|e| format!("{f}: {e}"))?;
        failed += run_script(&engine, &sql, a.format, a.continue_on_error)?;
    }
    if failed > 0 {
        return Err(format!(
            "{failed} statement{} failed",
            if failed == 1 { "" } else { "s" }
        ));
    }
    Ok(())
}

/// One streamed batch as CSV or JSON lines; CSV prints its header only for the first batch.
fn streamed_text(fmt: Format, b: &arrow_array::RecordBatch, first: &mut bool) -> String {
    let text = if fmt == Format::Csv {
        format::csv(b)
    } else {
        format::json(b)
    };
    let text = if fmt == Format::Csv && !*first {
        text.split_once('\n')
            .map(|(_, r)| r.to_string())
            .unwrap_or_default()
    } else {
        text
    };
    *first = false;
    text
}
