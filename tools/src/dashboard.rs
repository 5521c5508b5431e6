//! The live dashboard (`journeydb serve --http-listen ADDR`): a page served from the binary and the
//! JSON API it reads.
//!
//! - `GET /` — the page (`web/dashboard.html`): journeys with their funnel (per stage, step,
//!   branch, exit and goal: reached, waiting, finished, exited), the trend and records of their
//!   recent runs (with the rows each run's sampled check read), the tables and their sizes, and
//!   `system.costs`. It refreshes every 15 s.
//! - `GET /api/overview` — all of it as one JSON object; `/api/journeys`, `/api/tables` and
//!   `/api/costs` — its parts.
//!
//! Requests present the token as `Authorization: Bearer TOKEN` (the page keeps the one given in
//! its URL's `#token=..` or typed in, in the tab's session storage). The token decides the
//! tenant, as on the other ports: a tenant sees its own journeys, tables and costs; the admin
//! sees every tenant's costs. A wrong token gets 401. Journeys are found by their
//! `<state>_versions` tables, which hold each published definition.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use arrow_array::{Array, RecordBatch};
use journeydb_client::Session;
use journeydb_query::Engine;
use journeydb_server::{EmbeddedSession, Server};
use serde_json::{json, Map, Value};

const PAGE: &str = include_str!("web/dashboard.html");

/// Runs recorded in a journey's `<state>_runs` that the page shows.
const RUNS_SHOWN: usize = 30;

/// Binds the dashboard's address.
pub fn bind(addr: std::net::SocketAddr) -> Result<tiny_http::Server, String> {
    tiny_http::Server::http(addr).map_err(|e| format!("dashboard: listen on {addr}: {e}"))
}

/// Answers requests until `stop` is set (one at a time: a page load is a few small queries).
pub fn serve(http: &tiny_http::Server, server: &Server, stop: &AtomicBool) {
    while !stop.load(Ordering::SeqCst) {
        match http.recv_timeout(Duration::from_millis(200)) {
            Ok(Some(req)) => answer(req, server),
            Ok(None) => {}
            Err(e) => {
                eprintln!("journeydb: dashboard: {e}");
                std::thread::sleep(Duration::from_millis(200));
            }
        }
    }
}

fn respond(req: tiny_http::Request, status: u16, content_type: &str, body: String) {
    let mut r = tiny_http::Response::from_string(body).with_status_code(status);
    for (k, v) in [
        ("content-type", content_type),
        ("cache-control", "no-store"),
    ] {
        // Both are ASCII: from_bytes cannot refuse them.
        if let Ok(h) = tiny_http::Header::from_bytes(k, v) {
            r = r.with_header(h);
        }
    }
    let _ = req.respond(r);
}

fn answer(req: tiny_http::Request, server: &Server) {
    if *req.method() != tiny_http::Method::Get {
        return respond(
            req,
            405,
            "application/json",
            json!({"error": "GET only"}).to_string(),
        );
    }
    let path = req.url().split(['?', '#']).next().unwrap_or("").to_string();
    if path == "/" || path == "/index.html" {
        return respond(req, 200, "text/html; charset=utf-8", PAGE.to_string());
    }
    let token = req
        .headers()
        .iter()
        .find(|h| h.field.equiv("authorization"))
        .and_then(|h| h.value.as_str().strip_prefix("Bearer ").map(str::to_string));
    let peer = req
        .remote_addr()
        .map_or_else(|| "?".to_string(), |a| a.to_string());
    let Some((engine, tenant)) = server.web_session(token.as_deref(), peer) else {
        return respond(
            req,
            401,
            "application/json",
            json!({"error": "wrong or missing token (Authorization: Bearer TOKEN)"}).to_string(),
        );
    };
    let body = match path.as_str() {
        "/api/overview" => overview(&engine, &tenant),
        "/api/journeys" => Value::Array(journeys(&engine)),
        "/api/tables" => rows_or_error(&engine, TABLES_SQL),
        "/api/costs" => rows_or_error(&engine, COSTS_SQL),
        _ => {
            return respond(
                req,
                404,
                "application/json",
                json!({"error": "no such page"}).to_string(),
            )
        }
    };
    respond(req, 200, "application/json", body.to_string());
}

const TABLES_SQL: &str =
    "SELECT name, rows, segments, bytes, unflushed_rows FROM system.tables ORDER BY name";
const COSTS_SQL: &str = "SELECT tenant, day, statements, cpu_seconds, bytes_scanned, \
                         bytes_written, bytes_stored, cost FROM system.costs ORDER BY day DESC, tenant";

fn overview(engine: &Engine, tenant: &str) -> Value {
    let mut o = Map::new();
    o.insert("tenant".into(), json!(tenant));
    o.insert(
        "now".into(),
        json!(journeydb_query::types::format_timestamp(
            journeydb_query::engine::now_epoch_us()
        )),
    );
    o.insert("journeys".into(), Value::Array(journeys(engine)));
    o.insert(
        "tables".into(),
        rows(engine, TABLES_SQL).unwrap_or_else(|_| json!([])),
    );
    match rows(engine, COSTS_SQL) {
        Ok(c) => o.insert("costs".into(), c),
        Err(e) => o.insert("costs_error".into(), json!(e)),
    };
    Value::Object(o)
}

fn rows_or_error(engine: &Engine, sql: &str) -> Value {
    rows(engine, sql).unwrap_or_else(|e| json!({ "error": e }))
}

/// A query's rows as JSON objects (timestamps as text).
fn rows(engine: &Engine, sql: &str) -> Result<Value, String> {
    let b = engine.query(sql).map_err(|e| e.to_string())?;
    Ok(Value::Array(batch_rows(&b)))
}

fn batch_rows(b: &RecordBatch) -> Vec<Value> {
    use arrow_array::{Float64Array, Int64Array};
    let schema = b.schema();
    (0..b.num_rows())
        .map(|i| {
            let mut row = Map::new();
            for (f, col) in schema.fields().iter().zip(b.columns()) {
                let v = if col.is_null(i) {
                    Value::Null
                } else if let Some(a) = col.as_any().downcast_ref::<Int64Array>() {
                    json!(a.value(i))
                } else if let Some(a) = col.as_any().downcast_ref::<Float64Array>() {
                    json!(a.value(i))
                } else {
                    json!(journeydb_journey::value::cell_text(col.as_ref(), i))
                };
                row.insert(f.name().clone(), v);
            }
            Value::Object(row)
        })
        .collect()
}

/// Every journey of the database: the newest definition in each `<state>_versions` table, its
/// funnel and its recent runs.
fn journeys(engine: &Engine) -> Vec<Value> {
    let names = engine.database().snapshot().table_names();
    let mut out = Vec::new();
    for versions in names.iter().filter(|n| n.ends_with("_versions")) {
        let state = versions.trim_end_matches("_versions");
        if !names.iter().any(|n| n == state) {
            continue;
        }
        out.push(journey(engine, state, versions));
    }
    out
}

fn journey(engine: &Engine, state: &str, versions: &str) -> Value {
    let mut j = Map::new();
    j.insert("state_table".into(), json!(state));
    j.insert("name".into(), json!(state));
    let newest = engine.query(&format!(
        "SELECT version_id, definition FROM {versions} ORDER BY version_id DESC LIMIT 1"
    ));
    let def = match newest {
        Ok(b) if b.num_rows() == 1 => {
            let id = journeydb_journey::value::cell_text(b.column(0).as_ref(), 0);
            j.insert(
                "version".into(),
                json!(id.and_then(|v| v.parse::<i64>().ok())),
            );
            journeydb_journey::value::cell_text(b.column(1).as_ref(), 0)
        }
        Ok(_) => None,
        Err(e) => {
            j.insert("error".into(), json!(e.to_string()));
            return Value::Object(j);
        }
    };
    let parsed = def
        .ok_or_else(|| "no definition stored".to_string())
        .and_then(|d| journeydb_journey::def::parse(&d).map_err(|e| e.to_string()));
    let def = match parsed {
        Ok(d) => d,
        Err(e) => {
            j.insert("error".into(), json!(e));
            return Value::Object(j);
        }
    };
    j.insert("name".into(), json!(def.name));
    let mut session = EmbeddedSession::new(engine.clone());
    match journeydb_journey::report::funnel(&mut session as &mut dyn Session, &def) {
        Ok(f) => {
            let lines: Vec<Value> = f
                .lines
                .iter()
                .map(|l| {
                    json!({
                        "depth": l.depth, "label": l.label, "column": l.column,
                        "reached": l.reached, "waiting": l.waiting, "finished": l.finished,
                        "exited": l.exited,
                    })
                })
                .collect();
            j.insert(
                "funnel".into(),
                json!({
                    "lines": lines,
                    "median_to_goal": f.median_to_goal_s.map(journeydb_journey::report::human_duration),
                }),
            );
        }
        Err(e) => {
            j.insert("error".into(), json!(e.to_string()));
        }
    }
    j.insert("history".into(), history(engine, state, &def));
    let runs = rows(
        engine,
        &format!(
            "SELECT run_id, run_at, passes, entered, transitions, activations, checked_rows, \
             duration_ms, rolled_back_to FROM {state}_runs ORDER BY run_id DESC LIMIT {RUNS_SHOWN}"
        ),
    );
    j.insert("runs".into(), runs.unwrap_or_else(|_| json!([])));
    Value::Object(j)
}

/// The funnel over time: customers who reached each stage (and the journey's goal) in each kept
/// snapshot of the state (`<state>_snap_r<run>`, the state as run `run` published it), oldest
/// first, then now.
fn history(engine: &Engine, state: &str, def: &journeydb_journey::def::Journey) -> Value {
    let mut labels: Vec<String> = def.stages.iter().map(|s| s.name.clone()).collect();
    let mut cols: Vec<String> = (0..def.stages.len()).map(|i| def.stage_col(i)).collect();
    if def.goal.is_some() {
        labels.push("journey goal".into());
        cols.push(journeydb_journey::def::GOAL_COL.into());
    }
    let prefix = format!("{state}_snap_r");
    let mut snaps: Vec<(i64, String)> = engine
        .database()
        .snapshot()
        .table_names()
        .into_iter()
        .filter_map(|n| {
            let run = n.strip_prefix(&prefix)?.parse().ok()?;
            Some((run, n))
        })
        .collect();
    snaps.sort_unstable();
    let mut points: Vec<Value> = Vec::new();
    let counts: Vec<String> = cols.iter().map(|c| format!("count({c})")).collect();
    let tables = snaps
        .into_iter()
        .map(|(run, t)| (json!(run), t))
        .chain(std::iter::once((json!("now"), state.to_string())));
    for (run, table) in tables {
        // A snapshot from before a new stage was published lacks its column: left out.
        let Ok(b) = engine.query(&format!("SELECT {} FROM {table}", counts.join(", "))) else {
            continue;
        };
        let reached: Vec<Value> = b
            .columns()
            .iter()
            .map(|c| {
                json!(journeydb_journey::value::cell_text(c.as_ref(), 0)
                    .and_then(|v| v.parse::<i64>().ok()))
            })
            .collect();
        points.push(json!({ "run": run, "reached": reached }));
    }
    json!({ "labels": labels, "points": points })
}
