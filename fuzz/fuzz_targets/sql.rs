//! SQL parse + plan + execute (queries only, so the database stays the same): any text is Ok or a
//! typed error, never a panic, an abort or a hang.
#![no_main]

use journeydb_query::engine::{statement_kind, StatementKind};
use journeydb_query::parse::{bind_params, param_count};
use journeydb_query::types::Scalar;
use libfuzzer_sys::fuzz_target;

#[path = "common.rs"]
mod common;

fuzz_target!(|data: &[u8]| {
    let Ok(sql) = std::str::from_utf8(data) else {
        return;
    };
    let engine = common::engine();
    let _ = journeydb_query::parse::split_statements(sql);
    let Ok(stmts) = journeydb_query::Engine::parse(sql) else {
        return;
    };
    for (mut stmt, rules) in stmts {
        let Ok(n) = param_count(&mut stmt) else {
            continue;
        };
        let _ = engine.param_types(&stmt, n);
        if bind_params(&mut stmt, &vec![Scalar::Str("x'y".into()); n]).is_err() {
            continue;
        }
        let _ = engine.describe_statement(&stmt, &rules);
        if statement_kind(&stmt) == StatementKind::Query {
            let _ = engine.execute_statement(&stmt, &rules);
        }
    }
});
