//! Statements: DDL, DML and queries against an embedded database.
//!
//! Statements arrive parsed by [`crate::parse`] (journeydb's `MERGE` column rules already taken out
//! of the token stream, parameters bound as typed values in the AST).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use arrow_array::builder::{
    BooleanBuilder, Float64Builder, Int64Builder, StringBuilder, TimestampMicrosecondBuilder,
};
use arrow_array::{Array, ArrayRef, RecordBatch, StringArray};
use arrow_schema::{DataType, Field, Schema};
use journeydb_storage::{CatalogOp, ColumnDef, Database, MergeRule, Snapshot, TableSchema};
use sqlparser::ast::{self, Statement};

use crate::error::{QueryError, Result};
use crate::exec::{output_schema, run_query};
use crate::plan::{eval_const, object_name, plan_query, PlanCtx};
use crate::settings::Settings;
use crate::types::{DType, Scalar};

/// Name prefix of CREATE TABLE AS scratch tables (`_ctas_<pid>_<n>`).
pub(crate) const CTAS_PREFIX: &str = "_ctas_";

/// Rows per append when a query's result is written into a table.
const WRITE_BATCH_ROWS: usize = 1 << 20;

/// What a statement returned.
#[derive(Debug, Clone)]
pub enum Output {
    /// Rows (SELECT, EXPLAIN).
    Rows(RecordBatch),
    /// A statement without rows, with a message (e.g. `CREATE TABLE`, `INSERT 0 5`).
    Done {
        /// Command tag, as PostgreSQL prints it.
        tag: String,
        /// Rows written, if any.
        rows: u64,
    },
}

/// What a finished statement did, for a [`StatementLog`].
#[derive(Debug, Clone)]
pub struct StatementRecord {
    /// The statement as parsed, printed back (literals kept).
    pub text: String,
    /// When it started, µs since the epoch.
    pub start_us: i64,
    /// Wall time until its result was complete (a streamed result: until it was consumed).
    pub wall_us: u64,
    /// Scans and CPU time (see [`crate::meter`]).
    pub reading: crate::meter::Reading,
    /// Rows returned to the client.
    pub rows_returned: u64,
    /// Rows written (INSERT, CREATE TABLE AS, COPY FROM; appends and loads).
    pub rows_written: u64,
    /// Arrow bytes of the batches appended or loaded (0 for SQL writes, which report rows).
    pub bytes_written: u64,
}

/// Where a session reports each statement it finished (the server's query log).
pub trait StatementLog: Send + Sync + std::fmt::Debug {
    /// Records one statement; `error` when it failed.
    fn record(&self, r: StatementRecord, error: Option<&QueryError>);
}

/// Where a session's `system.queries` and `system.costs` are read when the query log is a
/// database of its own (the server's): queries naming them run on that database's engine, which
/// [`LogSource::log_engine`] gives (it changes when the log is rebuilt).
pub trait LogSource: Send + Sync + std::fmt::Debug {
    /// The engine over the log's database now.
    fn log_engine(&self) -> Engine;
}

/// Checks, before a statement that adds data (INSERT, CREATE TABLE, ALTER TABLE, COPY .. FROM),
/// that the session's owner may still write: a tenant's disk quota.
pub trait WriteGuard: Send + Sync + std::fmt::Debug {
    /// `Err` refuses the statement.
    fn may_write(&self) -> Result<()>;
}

/// Runs SQL against an embedded database.
#[derive(Debug, Clone)]
pub struct Engine {
    db: Arc<Database>,
    now_us: Option<i64>,
    seq: Arc<AtomicU64>,
    memory_limit: Option<u64>,
    /// The rates of `system.costs`.
    cost_rates: crate::costs::CostRates,
    /// This session's settings (`SET`); see [`Engine::session`].
    settings: Arc<Mutex<Settings>>,
    /// Which files `COPY` may name.
    pub(crate) files: Arc<crate::files::FileAccess>,
    /// This session's `LOCK TABLE` locks (released when its last clone is dropped).
    locks: Arc<crate::locks::SessionLocks>,
    /// Where finished statements are reported, if anywhere.
    log: Option<Arc<dyn StatementLog>>,
    /// Where `system.queries` / `system.costs` live, if in a database of their own, and the
    /// tenant whose rows this session sees there (`None`: every tenant's).
    log_source: Option<(Arc<dyn LogSource>, Option<String>)>,
    /// On the log's own engine: the tenant `system.queries` is narrowed to.
    log_tenant: Option<String>,
    /// What runs tenant management statements (the admin's sessions only).
    admin: Option<Arc<dyn crate::admin::AdminHook>>,
    /// Refuses every statement but reads and session statements, with this reason.
    read_only: Option<Arc<str>>,
    /// Asked before each statement that adds data.
    write_guard: Option<Arc<dyn WriteGuard>>,
    /// The data contracts of the database's tables.
    pub(crate) contracts: Arc<crate::contract::Contracts>,
}

pub use crate::parse::{Extras, ParsedStatement};

fn rows_tag(tag: &str, rows: u64) -> Output {
    Output::Done {
        tag: tag.to_string(),
        rows,
    }
}

impl Engine {
    /// An engine over `db`. Scratch tables of CREATE TABLE AS left by a process that died mid-way
    /// (only one process opens a database at a time) are dropped.
    pub fn new(db: Arc<Database>) -> Engine {
        let own = format!("{CTAS_PREFIX}{}_", std::process::id());
        let stale: Vec<CatalogOp> = db
            .snapshot()
            .table_names()
            .into_iter()
            .filter(|n| n.starts_with(CTAS_PREFIX) && !n.starts_with(&own))
            .map(|name| CatalogOp::Drop {
                name,
                if_exists: true,
            })
            .collect();
        if !stale.is_empty() {
            // Best effort: a failure leaves them for the next start.
            let _ = db.commit(&stale);
        }
        Engine {
            contracts: Arc::new(crate::contract::Contracts::open(db.dir())),
            db,
            now_us: None,
            memory_limit: None,
            cost_rates: crate::costs::CostRates::default(),
            seq: Arc::new(AtomicU64::new(0)),
            settings: Arc::new(Mutex::new(Settings::default())),
            files: Arc::new(crate::files::FileAccess::default()),
            locks: Arc::new(crate::locks::SessionLocks::new_table()),
            log: None,
            log_source: None,
            log_tenant: None,
            admin: None,
            read_only: None,
            write_guard: None,
        }
    }

    /// The same session running tenant management statements with `hook`.
    pub fn with_admin(mut self, hook: Arc<dyn crate::admin::AdminHook>) -> Engine {
        self.admin = Some(hook);
        self
    }

    /// The same session refusing every statement but queries and session statements (`SET`,
    /// `SHOW`, transaction markers), with `why`.
    pub fn read_only(mut self, why: &str) -> Engine {
        self.read_only = Some(why.into());
        self
    }

    /// The same session asking `guard` before each statement that adds data.
    pub fn with_write_guard(mut self, guard: Arc<dyn WriteGuard>) -> Engine {
        self.write_guard = Some(guard);
        self
    }

    /// Asks the write guard, if any (the server also asks it before native appends and loads).
    pub fn may_write(&self) -> Result<()> {
        match &self.write_guard {
            Some(g) => g.may_write(),
            None => Ok(()),
        }
    }

    /// The admin statement or the refusal a statement meets before it runs, if any.
    fn gate(&self, stmt: &Statement, extras: &Extras) -> Option<Result<Output>> {
        if let Some(cmd) = &extras.contract {
            return Some(match &self.read_only {
                Some(why) => Err(QueryError::Permission(why.to_string())),
                None => self.contract_command(cmd),
            });
        }
        if let Some(cmd) = &extras.admin {
            return Some(match &self.admin {
                Some(hook) => hook.run(cmd),
                None => Err(QueryError::Permission(
                    "tenant statements are the admin's: connect with the admin token of a server \
                     started with --tenants"
                        .into(),
                )),
            });
        }
        let reads = matches!(
            stmt,
            Statement::Query(_)
                | Statement::Explain { .. }
                | Statement::Set(_)
                | Statement::ShowVariable { .. }
                | Statement::ShowTables { .. }
                | Statement::ExplainTable { .. }
                | Statement::StartTransaction { .. }
                | Statement::Commit { .. }
                | Statement::Rollback { .. }
                | Statement::Savepoint { .. }
                | Statement::ReleaseSavepoint { .. }
        );
        if let (Some(why), false) = (&self.read_only, reads) {
            return Some(Err(QueryError::Permission(why.to_string())));
        }
        let adds = match stmt {
            Statement::CreateTable(_) | Statement::AlterTable(_) | Statement::Insert(_) => true,
            Statement::Copy { to, .. } => !to,
            _ => false,
        };
        if adds {
            if let Err(e) = self.may_write() {
                return Some(Err(e));
            }
        }
        None
    }

    /// The same engine reading `system.queries` and `system.costs` from `source`'s database,
    /// only `tenant`'s rows (`None`: all).
    pub fn with_log_source(mut self, source: Arc<dyn LogSource>, tenant: Option<String>) -> Engine {
        self.log_source = Some((source, tenant));
        self
    }

    /// The engine a query naming `system.queries` or `system.costs` runs on, when the log is a
    /// database of its own: its engine, with this session's clock, limits and settings.
    fn log_route(&self, stmt: &Statement) -> Option<Engine> {
        let (source, tenant) = self.log_source.as_ref()?;
        let q = match stmt {
            Statement::Query(q) => q,
            Statement::Explain { statement, .. } => match statement.as_ref() {
                Statement::Query(q) => q,
                _ => return None,
            },
            _ => return None,
        };
        let mut names_log = false;
        let _ = ast::visit_relations(q.as_ref(), |name| {
            if let Ok(parts) = object_name(name) {
                names_log |= parts == ["system", "queries"] || parts == ["system", "costs"];
            }
            std::ops::ControlFlow::<()>::Continue(())
        });
        if !names_log {
            return None;
        }
        let log = source.log_engine();
        Some(Engine {
            db: log.db,
            contracts: log.contracts,
            files: log.files,
            locks: log.locks,
            log_source: None,
            log_tenant: tenant.clone(),
            log: None,
            admin: None,
            ..self.clone()
        })
    }

    /// The same engine pricing `system.costs` with `rates`.
    pub fn with_cost_rates(mut self, rates: crate::costs::CostRates) -> Engine {
        self.cost_rates = rates;
        self
    }

    /// The same session reporting every statement it runs to `log`.
    pub fn with_log(mut self, log: Arc<dyn StatementLog>) -> Engine {
        self.log = Some(log);
        self
    }

    /// The statement log of this session, if any.
    pub fn log(&self) -> Option<&Arc<dyn StatementLog>> {
        self.log.as_ref()
    }

    /// A new session over the same database and limits, with its own settings (`SET`): the server
    /// makes one per connection.
    pub fn session(&self) -> Engine {
        Engine {
            settings: Arc::new(Mutex::new(self.settings().clone())),
            locks: Arc::new(self.locks.sibling()),
            ..self.clone()
        }
    }

    fn settings(&self) -> std::sync::MutexGuard<'_, Settings> {
        // A poisoned lock only means a panic elsewhere while it was held; the map is still whole.
        self.settings.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The same engine with `now()` fixed to `now_us` (the journey runner's `--now`).
    pub fn with_now(mut self, now_us: i64) -> Engine {
        self.now_us = Some(now_us);
        self
    }

    /// The same engine refusing, at planning, any query whose scans would decode more than
    /// `bytes` (see [`crate::plan::Plan::memory_estimate`]), and stopping one that comes to hold
    /// more while it runs (see [`crate::budget`]): the server's per-query memory bound.
    pub fn with_memory_limit(mut self, bytes: u64) -> Engine {
        self.memory_limit = Some(bytes);
        self
    }

    /// The database.
    pub fn database(&self) -> &Arc<Database> {
        &self.db
    }

    fn now(&self) -> i64 {
        if let Some(us) = self.settings().now_us() {
            return us;
        }
        self.now_us.unwrap_or_else(now_epoch_us)
    }

    /// Parses `sql` (one or more statements) into statements with their MERGE rules.
    pub fn parse(sql: &str) -> Result<Vec<ParsedStatement>> {
        crate::parse::parse(sql)
    }

    /// Runs every statement of `sql` in order; stops at the first error.
    pub fn execute(&self, sql: &str) -> Result<Vec<Output>> {
        Self::parse(sql)?
            .into_iter()
            .map(|(s, rules)| self.execute_statement(&s, &rules))
            .collect()
    }

    /// Runs one SQL statement and returns its output.
    pub fn execute_one(&self, sql: &str) -> Result<Output> {
        let mut stmts = Self::parse(sql)?;
        if stmts.len() != 1 {
            return Err(QueryError::Syntax(format!(
                "expected one statement, found {}",
                stmts.len()
            )));
        }
        let (s, rules) = stmts.remove(0);
        self.execute_statement(&s, &rules)
    }

    /// Runs a query and returns its rows.
    pub fn query(&self, sql: &str) -> Result<RecordBatch> {
        match self.execute_one(sql)? {
            Output::Rows(b) => Ok(b),
            Output::Done { tag, .. } => {
                Err(QueryError::Unsupported(format!("{tag} returns no rows")))
            }
        }
    }

    /// The result columns (name, type) a statement will return, without running it: `None` for
    /// statements that return no rows.
    pub fn describe(&self, sql: &str) -> Result<Option<Vec<(String, DType)>>> {
        let mut stmts = Self::parse(sql)?;
        let Some((stmt, extras)) = stmts.pop() else {
            return Ok(None);
        };
        self.describe_statement(&stmt, &extras)
    }

    /// The result columns (name, type) of a parsed statement, without running it: `None` for
    /// statements that return no rows. Unbound parameters are typed as NULL.
    pub fn describe_statement(
        &self,
        stmt: &Statement,
        extras: &Extras,
    ) -> Result<Option<Vec<(String, DType)>>> {
        if let Some(cmd) = &extras.admin {
            return Ok(self.admin.as_ref().and_then(|h| h.describe(cmd)));
        }
        if let Some(cmd) = &extras.contract {
            return Ok(crate::contract::describe(cmd));
        }
        if let Some(log) = self.log_route(stmt) {
            return log.describe_statement(stmt, extras);
        }
        let snap = self.db.snapshot();
        match stmt {
            Statement::ExplainTable { table_name, .. } if extras.summarize => {
                let b = crate::summarize::summarize(&snap, &single_name(table_name)?)?;
                Ok(Some(
                    b.schema()
                        .fields()
                        .iter()
                        .map(|f| (f.name().clone(), dtype_of_arrow(f.data_type())))
                        .collect(),
                ))
            }
            Statement::Query(q) => {
                let mut q = q.clone();
                let n = crate::parse::param_count(q.as_mut())?;
                crate::parse::bind_params(q.as_mut(), &vec![Scalar::Null; n])?;
                if crate::catalog::is_catalog_query(&q) {
                    // Catalog relations are tiny: the columns come from running the query.
                    let b = self.catalog_query(&q, &snap)?;
                    return Ok(Some(
                        b.schema()
                            .fields()
                            .iter()
                            .map(|f| (f.name().clone(), dtype_of_arrow(f.data_type())))
                            .collect(),
                    ));
                }
                let plan = plan_query(&q, &self.ctx(&snap))?;
                Ok(Some(
                    plan.plan
                        .cols()
                        .into_iter()
                        .map(|c| (c.name, c.dtype))
                        .collect(),
                ))
            }
            Statement::Explain { .. } => Ok(Some(vec![("plan".to_string(), DType::Varchar)])),
            Statement::ShowTables { .. } | Statement::ExplainTable { .. } => {
                // Tiny catalog listings: the columns come from running them.
                let b = self.shell_listing(stmt, &snap)?;
                Ok(b.map(|b| {
                    b.schema()
                        .fields()
                        .iter()
                        .map(|f| (f.name().clone(), dtype_of_arrow(f.data_type())))
                        .collect()
                }))
            }
            _ => Ok(None),
        }
    }

    /// Runs a query and streams its rows as Arrow batches of at most
    /// [`crate::exec::STREAM_BATCH_ROWS`] rows (one sorted batch when the query has ORDER BY).
    pub fn query_stream(&self, sql: &str) -> Result<crate::exec::BatchStream> {
        let mut stmts = Self::parse(sql)?;
        let (Some((stmt, _)), true) = (stmts.pop(), stmts.is_empty()) else {
            return Err(QueryError::Unsupported(
                "query_stream takes one query".into(),
            ));
        };
        self.stream_statement(&stmt)
    }

    /// Streams the rows of a parsed query (see [`Engine::query_stream`]).
    pub fn stream_statement(&self, stmt: &Statement) -> Result<crate::exec::BatchStream> {
        let run =
            || crate::budget::with_limit(self.memory_limit, || self.stream_statement_within(stmt));
        let Some(log) = self.log.clone() else {
            return run();
        };
        let (start_us, t0) = (now_epoch_us(), std::time::Instant::now());
        let (out, reading) = crate::meter::measure(run);
        let mut record = StatementRecord {
            text: stmt.to_string(),
            start_us,
            wall_us: 0,
            reading,
            rows_returned: 0,
            rows_written: 0,
            bytes_written: 0,
        };
        match out {
            Err(e) => {
                record.wall_us = t0.elapsed().as_micros() as u64;
                log.record(record, Some(&e));
                Err(e)
            }
            // The stream reports when it is dropped: its rows are known only once consumed.
            Ok(stream) => Ok(stream.on_done(Box::new(move |rows, error| {
                record.wall_us = t0.elapsed().as_micros() as u64;
                record.rows_returned = rows;
                log.record(record, error);
            }))),
        }
    }

    fn stream_statement_within(&self, stmt: &Statement) -> Result<crate::exec::BatchStream> {
        if let Some(log) = self.log_route(stmt) {
            return log.stream_statement_within(stmt);
        }
        let Statement::Query(q) = stmt else {
            return Err(QueryError::Unsupported(
                "only a query can stream rows".into(),
            ));
        };
        let snap = self.db.snapshot();
        if crate::catalog::is_catalog_query(q) {
            return Ok(crate::exec::BatchStream::whole(
                self.catalog_query(q, &snap)?,
                &snap,
            ));
        }
        let plan = plan_query(q, &self.ctx(&snap))?;
        crate::exec::stream_query(&plan, &snap)
    }

    /// Runs a query over the catalog relations (or without FROM); see [`crate::catalog`].
    fn catalog_query(&self, q: &ast::Query, snap: &Snapshot) -> Result<RecordBatch> {
        let settings = self.settings().clone();
        let from_catalog = crate::catalog::run(q, snap, &|name| settings.show(name), self.now());
        // Constants the catalog evaluator has no function for (`SELECT greatest(1, 2)`,
        // `SELECT date_trunc(..)`) are the main planner's, over one row.
        let no_from = matches!(&*q.body, ast::SetExpr::Select(s) if s.from.is_empty());
        match from_catalog {
            Err(QueryError::Unsupported(why)) if no_from => plan_query(q, &self.ctx(snap))
                .and_then(|plan| run_query(&plan, snap))
                .map_err(|e| match e {
                    QueryError::Unsupported(_) => QueryError::Unsupported(why),
                    other => other,
                }),
            other => other,
        }
    }

    fn ctx<'a>(&'a self, snap: &'a Snapshot) -> PlanCtx<'a> {
        let seed = self.seq.fetch_add(1, Ordering::Relaxed) ^ (self.now() as u64).rotate_left(17);
        PlanCtx {
            snap,
            now_us: self.now(),
            sample_seed: seed,
            memory_limit: self.memory_limit,
            cost_rates: self.cost_rates,
            files: Some((self.files.as_ref(), self.db.as_ref())),
            log_tenant: self.log_tenant.as_deref(),
        }
    }

    /// Runs one parsed statement (see [`Engine::parse`]), within the per-query memory limit
    /// (see [`crate::budget`]).
    pub fn execute_statement(&self, stmt: &Statement, extras: &Extras) -> Result<Output> {
        let run = || {
            crate::budget::with_limit(self.memory_limit, || {
                self.execute_statement_within(stmt, extras)
            })
        };
        let Some(log) = &self.log else {
            return run();
        };
        let (start_us, t0) = (now_epoch_us(), std::time::Instant::now());
        let (out, reading) = crate::meter::measure(run);
        let (rows_returned, rows_written) = match &out {
            Ok(Output::Rows(b)) => (b.num_rows() as u64, 0),
            Ok(Output::Done { rows, .. }) => (0, *rows),
            Err(_) => (0, 0),
        };
        let record = StatementRecord {
            text: match (&extras.admin, &extras.contract) {
                (Some(cmd), _) => cmd.to_string(),
                (None, Some(cmd)) => cmd.to_string(),
                (None, None) => stmt.to_string(),
            },
            start_us,
            wall_us: t0.elapsed().as_micros() as u64,
            reading,
            rows_returned,
            rows_written,
            bytes_written: 0,
        };
        log.record(record, out.as_ref().err());
        out
    }

    // long: one arm per statement kind, each a call.
    fn execute_statement_within(&self, stmt: &Statement, extras: &Extras) -> Result<Output> {
        if let Some(out) = self.gate(stmt, extras) {
            return out;
        }
        if let Some(log) = self.log_route(stmt) {
            return log.execute_statement_within(stmt, extras);
        }
        let rules = extras.rules.as_slice();
        match stmt {
            Statement::Copy { .. } => self.copy_file(stmt, &extras.copy_options),
            Statement::Query(q) => {
                let snap = self.db.snapshot();
                if crate::catalog::is_catalog_query(q) {
                    return Ok(Output::Rows(self.catalog_query(q, &snap)?));
                }
                let plan = plan_query(q, &self.ctx(&snap))?;
                Ok(Output::Rows(run_query(&plan, &snap)?))
            }
            Statement::Explain {
                statement, analyze, ..
            } => {
                if *analyze {
                    return Err(QueryError::Unsupported("EXPLAIN ANALYZE".into()));
                }
                let Statement::Query(q) = statement.as_ref() else {
                    return Err(QueryError::Unsupported(
                        "EXPLAIN of a statement other than a query".into(),
                    ));
                };
                let snap = self.db.snapshot();
                let plan = plan_query(q, &self.ctx(&snap))?;
                let mut text = String::new();
                if !plan.order.is_empty() || plan.limit.is_some() {
                    text.push_str(&format!(
                        "Sort/Limit order={:?} limit={:?} offset={}\n",
                        plan.order, plan.limit, plan.offset
                    ));
                }
                let depth = usize::from(!text.is_empty());
                plan.plan.explain(&mut text, depth);
                let lines: Vec<&str> = text.lines().collect();
                let schema = Arc::new(Schema::new(vec![Field::new("plan", DataType::Utf8, false)]));
                Ok(Output::Rows(RecordBatch::try_new(
                    schema,
                    vec![Arc::new(StringArray::from(lines)) as ArrayRef],
                )?))
            }
            Statement::CreateTable(ct) => self.create_table(ct, rules),
            Statement::Drop {
                object_type,
                if_exists,
                names,
                cascade,
                ..
            } => {
                if *object_type != ast::ObjectType::Table {
                    return Err(QueryError::Unsupported(format!("DROP {object_type}")));
                }
                if *cascade {
                    return Err(QueryError::Unsupported("DROP .. CASCADE".into()));
                }
                let ops = names
                    .iter()
                    .map(|n| {
                        Ok(CatalogOp::Drop {
                            name: single_name(n)?,
                            if_exists: *if_exists,
                        })
                    })
                    .collect::<Result<Vec<_>>>()?;
                self.db.commit(&ops).map_err(map_storage)?;
                Ok(rows_tag("DROP TABLE", 0))
            }
            Statement::AlterTable(at) => {
                let from = single_name(&at.name)?;
                let mut ops = Vec::new();
                for (i, op) in at.operations.iter().enumerate() {
                    ops.push(match op {
                        ast::AlterTableOperation::AddColumn {
                            if_not_exists,
                            column_def,
                            column_position: None,
                            ..
                        } => {
                            let rule = rules.iter().find(|(c, _)| *c == i).map(|(_, r)| *r);
                            let column = added_column(column_def, rule)?;
                            let snap = self.db.snapshot();
                            let exists = snap.table(&from).is_ok_and(|t| {
                                t.schema().column(&column.name).is_some()
                                    || t.schema().key_name.eq_ignore_ascii_case(&column.name)
                            });
                            if *if_not_exists && exists {
                                continue;
                            }
                            CatalogOp::AddColumn {
                                table: from.clone(),
                                column,
                            }
                        }
                        ast::AlterTableOperation::RenameTable { table_name } => {
                            let to = match table_name {
                                ast::RenameTableNameKind::To(n)
                                | ast::RenameTableNameKind::As(n) => single_name(n)?,
                            };
                            CatalogOp::Rename {
                                from: from.clone(),
                                to,
                            }
                        }
                        ast::AlterTableOperation::SwapWith { table_name } => CatalogOp::Swap {
                            a: from.clone(),
                            b: single_name(table_name)?,
                        },
                        other => {
                            return Err(QueryError::Unsupported(format!("ALTER TABLE {other}")))
                        }
                    });
                }
                if at.if_exists && self.db.snapshot().table(&from).is_err() {
                    return Ok(rows_tag("ALTER TABLE", 0));
                }
                self.publish(&ops)?;
                Ok(rows_tag("ALTER TABLE", 0))
            }
            Statement::Insert(ins) => self.insert(ins),
            Statement::Set(set) => self.set(set),
            Statement::ShowVariable { variable } => self.show(variable),
            Statement::ExplainTable { table_name, .. } if extras.summarize => {
                let snap = self.db.snapshot();
                Ok(Output::Rows(crate::summarize::summarize(
                    &snap,
                    &single_name(table_name)?,
                )?))
            }
            Statement::ShowTables { .. } | Statement::ExplainTable { .. } => {
                let snap = self.db.snapshot();
                match self.shell_listing(stmt, &snap)? {
                    Some(b) => Ok(Output::Rows(b)),
                    None => Err(QueryError::Unsupported(format!(
                        "statement {}",
                        first_words(&stmt.to_string())
                    ))),
                }
            }
            // journeydb has no multi-statement transactions: every statement commits on its own.
            // BEGIN and COMMIT are accepted so drivers that wrap statements in them work; ROLLBACK
            // answers with its own tag so the protocol layer can warn that nothing was undone.
            // As in PostgreSQL, the end of a transaction block releases the session's locks.
            Statement::StartTransaction { .. } => Ok(rows_tag("BEGIN", 0)),
            Statement::Commit { .. } => {
                self.locks.release_all();
                Ok(rows_tag("COMMIT", 0))
            }
            Statement::Rollback {
                savepoint: Some(_), ..
            } => Ok(rows_tag("ROLLBACK TO SAVEPOINT", 0)),
            Statement::Rollback { .. } => {
                self.locks.release_all();
                Ok(rows_tag("ROLLBACK", 0))
            }
            Statement::Lock(lock) => {
                let names = lock
                    .tables
                    .iter()
                    .map(|t| single_name(&t.name))
                    .collect::<Result<Vec<_>>>()?;
                self.locks.lock(&names, lock.nowait)?;
                Ok(rows_tag("LOCK TABLE", 0))
            }
            // MySQL's atomic multi-rename: every pair in order, in one commit (`RENAME TABLE a TO
            // old, b TO a` publishes b as a with no moment where a is missing).
            Statement::RenameTable(pairs) => {
                let ops = pairs
                    .iter()
                    .map(|p| {
                        Ok(CatalogOp::Rename {
                            from: single_name(&p.old_name)?,
                            to: single_name(&p.new_name)?,
                        })
                    })
                    .collect::<Result<Vec<_>>>()?;
                self.publish(&ops)?;
                Ok(rows_tag("RENAME TABLE", 0))
            }
            // Savepoints inside such a block are accepted the same way (drivers nest with them).
            Statement::Savepoint { .. } => Ok(rows_tag("SAVEPOINT", 0)),
            Statement::ReleaseSavepoint { .. } => Ok(rows_tag("RELEASE", 0)),
            other => Err(QueryError::Unsupported(format!(
                "statement {}",
                first_words(&other.to_string())
            ))),
        }
    }

    fn set(&self, set: &ast::Set) -> Result<Output> {
        let (name, value) = match set {
            ast::Set::SingleAssignment {
                variable, values, ..
            } => {
                let name = object_name(variable)?.join(".");
                let value = match values.as_slice() {
                    [ast::Expr::Identifier(i)] if i.value.eq_ignore_ascii_case("default") => None,
                    // `SET search_path TO public` names the value as an identifier.
                    [ast::Expr::Identifier(i)] => Some(Scalar::Str(i.value.clone())),
                    [one] => Some(eval_const(one, self.now())?),
                    many => Some(Scalar::Str(
                        many.iter()
                            .map(|v| {
                                let s = eval_const(v, self.now())?;
                                crate::settings::text(&s).ok_or_else(|| {
                                    QueryError::InvalidValue(
                                        "a setting cannot be an interval".into(),
                                    )
                                })
                            })
                            .collect::<Result<Vec<_>>>()?
                            .join(", "),
                    )),
                };
                (name, value)
            }
            ast::Set::SetTimeZone { value, .. } => {
                let v = match value {
                    ast::Expr::Identifier(i) => Scalar::Str(i.value.clone()),
                    other => eval_const(other, self.now())?,
                };
                ("timezone".to_string(), Some(v))
            }
            ast::Set::SetNames { charset_name, .. } => (
                "client_encoding".to_string(),
                Some(Scalar::Str(charset_name.value.clone())),
            ),
            other => return Err(QueryError::Unsupported(format!("{other}"))),
        };
        self.settings().set(&name, value)?;
        Ok(rows_tag("SET", 0))
    }

    /// DuckDB's shell listings: `SHOW TABLES` (column `name`) and `DESCRIBE t` (`column_name`,
    /// `column_type`, `null`, `key`, `default`, `extra`; journeydb puts a column's merge rule in
    /// `extra`). `None` for other statements or forms it does not take (`SHOW TABLES IN ..`,
    /// `LIKE`, Hive's `DESCRIBE FORMATTED`).
    fn shell_listing(&self, stmt: &Statement, snap: &Snapshot) -> Result<Option<RecordBatch>> {
        let utf8 = |name: &str, nullable: bool| Field::new(name, DataType::Utf8, nullable);
        match stmt {
            Statement::ShowTables { show_options, .. } => {
                if show_options.filter_position.is_some() || show_options.show_in.is_some() {
                    return Ok(None);
                }
                let mut names: Vec<String> = snap
                    .table_names()
                    .into_iter()
                    .filter(|n| !crate::is_internal_table(n))
                    .collect();
                names.sort();
                let schema = Arc::new(Schema::new(vec![utf8("name", false)]));
                Ok(Some(RecordBatch::try_new(
                    schema,
                    vec![Arc::new(StringArray::from(names)) as ArrayRef],
                )?))
            }
            Statement::ExplainTable {
                describe_alias: ast::DescribeAlias::Describe | ast::DescribeAlias::Desc,
                hive_format: None,
                table_name,
                ..
            } => {
                let name = single_name(table_name)?;
                let t = snap.table(&name).map_err(map_storage)?;
                let sch = t.schema();
                let key_type = match snap.key_type() {
                    journeydb_storage::KeyType::Varchar => "VARCHAR",
                    journeydb_storage::KeyType::Bigint => "BIGINT",
                };
                let mut rows: Vec<[Option<String>; 6]> = vec![[
                    Some(sch.key_name.clone()),
                    Some(key_type.to_string()),
                    Some("NO".into()),
                    Some("PRI".into()),
                    None,
                    None,
                ]];
                for c in &sch.columns {
                    rows.push([
                        Some(c.name.clone()),
                        Some(c.ty.sql_name().to_string()),
                        Some("YES".into()),
                        None,
                        None,
                        Some(format!("MERGE {}", c.rule.sql_name())),
                    ]);
                }
                let names = [
                    "column_name",
                    "column_type",
                    "null",
                    "key",
                    "default",
                    "extra",
                ];
                let schema = Arc::new(Schema::new(
                    names.iter().map(|n| utf8(n, true)).collect::<Vec<_>>(),
                ));
                let cols: Vec<ArrayRef> = (0..names.len())
                    .map(|i| {
                        Arc::new(StringArray::from(
                            rows.iter()
                                .map(|r| r.get(i).cloned().flatten())
                                .collect::<Vec<_>>(),
                        )) as ArrayRef
                    })
                    .collect();
                Ok(Some(RecordBatch::try_new(schema, cols)?))
            }
            _ => Ok(None),
        }
    }

    fn show(&self, variable: &[ast::Ident]) -> Result<Output> {
        let name = variable
            .iter()
            .map(|i| i.value.clone())
            .collect::<Vec<_>>()
            .join(" ");
        let value = self.settings().show(&name).ok_or_else(|| {
            QueryError::InvalidValue(format!("unrecognized configuration parameter {name:?}"))
        })?;
        let schema = Arc::new(Schema::new(vec![Field::new(
            name.to_ascii_lowercase(),
            DataType::Utf8,
            false,
        )]));
        Ok(Output::Rows(RecordBatch::try_new(
            schema,
            vec![Arc::new(StringArray::from(vec![value])) as ArrayRef],
        )?))
    }

    fn create_table(&self, ct: &ast::CreateTable, rules: &[(usize, MergeRule)]) -> Result<Output> {
        let name = single_name(&ct.name)?;
        if ct.external {
            return Err(QueryError::Unsupported("EXTERNAL tables".into()));
        }
        if let Some(q) = &ct.query {
            if !ct.columns.is_empty() {
                return Err(QueryError::Unsupported(
                    "a column list with CREATE TABLE .. AS".into(),
                ));
            }
            let how = CreateAs {
                or_replace: ct.or_replace,
                if_not_exists: ct.if_not_exists,
                temporary: ct.temporary,
            };
            return self.create_table_as(&name, q, how);
        }
        let key_type = self.db.snapshot().key_type();
        let key_name = key_column(ct, &name)?;
        let mut columns = Vec::new();
        for (i, c) in ct.columns.iter().enumerate() {
            let cname = col_name(c);
            for o in &c.options {
                match &o.option {
                    ast::ColumnOption::PrimaryKey(_)
                    | ast::ColumnOption::Null
                    | ast::ColumnOption::NotNull => {}
                    other => return Err(QueryError::Unsupported(format!("column option {other}"))),
                }
            }
            let dtype = sql_type(&c.data_type)?;
            if cname == key_name {
                let want: DType = key_type.into();
                if dtype != want {
                    return Err(QueryError::Type(format!(
                        "the key column {cname} must be {} in this database, not {}",
                        want.name(),
                        dtype.name()
                    )));
                }
                if rules.iter().any(|(ci, _)| *ci == i) {
                    return Err(QueryError::Syntax(format!(
                        "the key column {cname} cannot have a MERGE rule"
                    )));
                }
                continue;
            }
            let ty = dtype.column_type().ok_or_else(|| {
                QueryError::Type(format!("column {cname} cannot be {}", dtype.name()))
            })?;
            let rule = rules
                .iter()
                .find(|(ci, _)| *ci == i)
                .map_or(MergeRule::Min, |(_, r)| *r);
            columns.push(ColumnDef {
                name: cname,
                ty,
                rule,
            });
        }
        let schema = TableSchema::new(key_name, columns);
        let op = if ct.temporary {
            if ct.if_not_exists && self.db.snapshot().table(&name).is_ok() {
                return Ok(rows_tag("CREATE TABLE", 0));
            }
            CatalogOp::CreateTemporary {
                name,
                schema,
                or_replace: ct.or_replace,
            }
        } else if ct.or_replace {
            CatalogOp::CreateOrReplace { name, schema }
        } else {
            CatalogOp::Create {
                name,
                schema,
                if_not_exists: ct.if_not_exists,
            }
        };
        self.db.commit(&[op]).map_err(map_storage)?;
        Ok(rows_tag("CREATE TABLE", 0))
    }

    fn create_table_as(&self, name: &str, q: &ast::Query, how: CreateAs) -> Result<Output> {
        let snap = self.db.snapshot();
        if snap.table(name).is_ok() && !how.or_replace {
            if how.if_not_exists {
                return Ok(rows_tag("CREATE TABLE", 0));
            }
            return Err(QueryError::Storage(
                journeydb_storage::StorageError::TableExists(name.to_string()),
            ));
        }
        let plan = plan_query(q, &self.ctx(&snap))?;
        let cols = plan.plan.cols();
        let keys: Vec<_> = cols.iter().filter(|c| c.is_key).collect();
        let [key] = keys.as_slice() else {
            return Err(QueryError::Unsupported(
                "CREATE TABLE AS needs a query that returns the customer key exactly once".into(),
            ));
        };
        let rel = crate::exec::execute(&plan.plan, &snap)?;
        if !rel.is_keyed() {
            return Err(QueryError::Unsupported(
                "CREATE TABLE AS over UNION ALL: GROUP BY the key to get one row per customer"
                    .into(),
            ));
        }
        let mut columns = Vec::new();
        for c in cols.iter().filter(|c| !c.is_key) {
            let ty = c.dtype.column_type().ok_or_else(|| {
                QueryError::Type(format!(
                    "column {} has type {}; CAST it",
                    c.name,
                    c.dtype.name()
                ))
            })?;
            columns.push(ColumnDef::new(c.name.clone(), ty));
        }
        let schema = TableSchema::new(key.name.clone(), columns);
        // Validate the target first: a name the final REPLACE would refuse must not leave the
        // scratch table behind.
        journeydb_storage::schema::validate_name(name).map_err(map_storage)?;
        let tmp = format!(
            "{CTAS_PREFIX}{}_{}",
            std::process::id(),
            self.seq.fetch_add(1, Ordering::Relaxed)
        );
        let staging = if how.temporary {
            CatalogOp::CreateTemporary {
                name: tmp.clone(),
                schema,
                or_replace: false,
            }
        } else {
            CatalogOp::Create {
                name: tmp.clone(),
                schema,
                if_not_exists: false,
            }
        };
        self.db.commit(&[staging]).map_err(map_storage)?;
        let mapping: Vec<usize> = cols
            .iter()
            .enumerate()
            .filter(|(_, c)| !c.is_key)
            .map(|(i, _)| i)
            .collect();
        let written = self
            .db
            .ingest(
                &tmp,
                relation_parts(rel, &mapping.into_iter().map(Some).collect::<Vec<_>>()),
            )
            .map(|s| s.rows)
            .map_err(map_storage);
        // Pre-flight: the staged rows against the target's contract, before anything is published.
        let written = written.and_then(|n| self.preflight_staged(name, &tmp).map(|()| n));
        match written {
            Ok(n) => {
                let replaced = self.publish(&[CatalogOp::Replace {
                    target: name.to_string(),
                    source: tmp.clone(),
                }]);
                if let Err(e) = replaced {
                    let _ = self.db.commit(&[CatalogOp::Drop {
                        name: tmp,
                        if_exists: true,
                    }]);
                    return Err(e);
                }
                Ok(rows_tag("CREATE TABLE", n))
            }
            Err(e) => {
                let _ = self.db.commit(&[CatalogOp::Drop {
                    name: tmp,
                    if_exists: true,
                }]);
                Err(e)
            }
        }
    }

    fn append_batch(&self, table: &str, batch: &RecordBatch) -> Result<u64> {
        self.check_append(table, batch)?;
        let mut start = 0;
        while start < batch.num_rows() {
            let len = WRITE_BATCH_ROWS.min(batch.num_rows() - start);
            self.db
                .append(table, &batch.slice(start, len))
                .map_err(map_storage)?;
            start += len;
        }
        Ok(batch.num_rows() as u64)
    }

    /// The types of a statement's parameters `$1..$n` as PostgreSQL would infer them from their
    /// context (`None`: unknown, read as text): a value of `INSERT .. VALUES` takes its target
    /// column's type, and one side of a comparison, `IN` list or `BETWEEN` the other side's when
    /// that is a column of a table the statement names; LIMIT / OFFSET take BIGINT.
    pub fn param_types(&self, stmt: &Statement, n: usize) -> Vec<Option<DType>> {
        let mut out = vec![None; n];
        let snap = self.db.snapshot();
        let key_dtype: DType = snap.key_type().into();
        let mut tables = Vec::new();
        let _ = ast::visit_relations(stmt, |name| {
            if let Ok(t) = single_name(name).and_then(|n| {
                snap.table(&n)
                    .map_err(|_| QueryError::TableNotFound(n.clone()))
            }) {
                tables.push(t);
            }
            std::ops::ControlFlow::<()>::Continue(())
        });
        let column_type = |e: &ast::Expr| type_hint(e, &tables, key_dtype);
        let placeholder = |e: &ast::Expr| match e {
            ast::Expr::Value(v) => match &v.value {
                ast::Value::Placeholder(p) => p
                    .strip_prefix('$')
                    .and_then(|d| d.parse::<usize>().ok())
                    .filter(|i| (1..=n).contains(i)),
                _ => None,
            },
            _ => None,
        };
        let mut set = |e: &ast::Expr, t: Option<DType>| {
            if let (Some(i), Some(t)) = (placeholder(e), t) {
                if let Some(slot) = out.get_mut(i - 1) {
                    slot.get_or_insert(t);
                }
            }
        };
        for (e, t) in insert_value_types(&snap, stmt) {
            set(e, t);
        }
        let _ = ast::visit_expressions(stmt, |e| {
            use ast::BinaryOperator as B;
            match e {
                ast::Expr::BinaryOp {
                    left,
                    op: B::Eq | B::NotEq | B::Lt | B::LtEq | B::Gt | B::GtEq,
                    right,
                } => {
                    set(right, column_type(left));
                    set(left, column_type(right));
                }
                ast::Expr::In {
                    expr,
                    target: ast::InTarget::List(list),
                    ..
                } => {
                    for x in list {
                        set(x, column_type(expr));
                    }
                }
                ast::Expr::Between {
                    expr, low, high, ..
                } => {
                    set(low, column_type(expr));
                    set(high, column_type(expr));
                }
                _ => {}
            }
            std::ops::ControlFlow::<()>::Continue(())
        });
        if let Statement::Query(q) = stmt {
            if let Some(ast::LimitClause::LimitOffset { limit, offset, .. }) = &q.limit_clause {
                if let Some(l) = limit {
                    set(l, Some(DType::Bigint));
                }
                if let Some(o) = offset {
                    set(&o.value, Some(DType::Bigint));
                }
            }
        }
        out
    }

    /// The rows of `INSERT .. VALUES` as a batch of the target columns' types.
    fn values_batch(&self, v: &ast::Values, targets: &[(String, DType)]) -> Result<RecordBatch> {
        let mut builders: Vec<Vec<Scalar>> = vec![Vec::new(); targets.len()];
        for row in &v.rows {
            let content = &row.content;
            if content.len() != targets.len() {
                return Err(QueryError::Syntax(format!(
                    "a VALUES row has {} values for {} columns",
                    content.len(),
                    targets.len()
                )));
            }
            for (k, e) in content.iter().enumerate() {
                let s = eval_const(e, self.now())?;
                let s = coerce(s, targets.get(k).map_or(DType::Null, |t| t.1))?;
                if let Some(b) = builders.get_mut(k) {
                    b.push(s);
                }
            }
        }
        let arrays = builders
            .into_iter()
            .zip(targets)
            .map(|(vals, (_, t))| scalars_to_array(&vals, *t))
            .collect::<Result<Vec<_>>>()?;
        let fields: Vec<Field> = targets
            .iter()
            .map(|(n, t)| Field::new(n, crate::exec::arrow_type(*t), true))
            .collect();
        Ok(RecordBatch::try_new(Arc::new(Schema::new(fields)), arrays)?)
    }

    fn insert(&self, ins: &ast::Insert) -> Result<Output> {
        let ast::TableObject::TableName(tn) = &ins.table else {
            return Err(QueryError::Unsupported(
                "INSERT INTO a table function".into(),
            ));
        };
        let name = single_name(tn)?;
        let snap = self.db.snapshot();
        let t = snap
            .table(&name)
            .map_err(|_| QueryError::TableNotFound(name.clone()))?;
        let all = table_columns(&snap, &t);
        let targets: Vec<(String, DType)> = if ins.columns.is_empty() {
            all.clone()
        } else {
            ins.columns
                .iter()
                .map(|c| {
                    let n = c.to_string().to_ascii_lowercase();
                    all.iter()
                        .find(|(a, _)| a.eq_ignore_ascii_case(&n))
                        .cloned()
                        .ok_or_else(|| QueryError::ColumnNotFound(format!("{name}.{n}")))
                })
                .collect::<Result<_>>()?
        };
        if !targets
            .iter()
            .any(|(n, _)| n.eq_ignore_ascii_case(&t.schema().key_name))
        {
            return Err(QueryError::Syntax(format!(
                "INSERT INTO {name} must give the key column {}",
                t.schema().key_name
            )));
        }
        let source = ins
            .source
            .as_ref()
            .ok_or_else(|| QueryError::Unsupported("INSERT without VALUES or a query".into()))?;
        let batch = match source.body.as_ref() {
            ast::SetExpr::Values(v) => self.values_batch(v, &targets)?,
            _ => {
                let plan = plan_query(source, &self.ctx(&snap))?;
                if let Some(n) = self.insert_by_ordinals(&name, &t, &targets, &plan, &snap)? {
                    return Ok(Output::Done {
                        tag: "INSERT".into(),
                        rows: n,
                    });
                }
                let b = run_query(&plan, &snap)?;
                if b.num_columns() != targets.len() {
                    return Err(QueryError::Syntax(format!(
                        "the query returns {} columns for {} target columns",
                        b.num_columns(),
                        targets.len()
                    )));
                }
                let mut arrays = Vec::new();
                for (a, (n, t)) in b.columns().iter().zip(&targets) {
                    let want = crate::exec::arrow_type(*t);
                    if a.data_type() == &want || a.data_type() == &DataType::Null {
                        arrays.push(if a.data_type() == &DataType::Null {
                            arrow_array::new_null_array(&want, a.len())
                        } else {
                            a.clone()
                        });
                    } else {
                        return Err(QueryError::Type(format!(
                            "column {n} is {} but the query gives {}",
                            t.name(),
                            a.data_type()
                        )));
                    }
                }
                let fields: Vec<Field> = targets
                    .iter()
                    .map(|(n, t)| Field::new(n, crate::exec::arrow_type(*t), true))
                    .collect();
                RecordBatch::try_new(Arc::new(Schema::new(fields)), arrays)?
            }
        };
        let n = self.append_batch(&name, &batch)?;
        Ok(Output::Done {
            tag: "INSERT".into(),
            rows: n,
        })
    }
}

/// How a CREATE TABLE .. AS treats an existing table, and whether the new one is temporary.
#[derive(Debug, Clone, Copy)]
struct CreateAs {
    or_replace: bool,
    if_not_exists: bool,
    temporary: bool,
}

impl Engine {
    /// INSERT .. SELECT whose key column is the database's key: writes the result's bitmaps and
    /// columns as segments (no key decoding). `None` when the shapes need the general path.
    fn insert_by_ordinals(
        &self,
        name: &str,
        t: &journeydb_storage::TableSnapshot,
        targets: &[(String, DType)],
        plan: &crate::plan::QueryPlan,
        snap: &Snapshot,
    ) -> Result<Option<u64>> {
        if !plan.order.is_empty() || plan.limit.is_some() || plan.offset > 0 {
            return Ok(None);
        }
        let cols = plan.plan.cols();
        if cols.len() != targets.len() {
            return Ok(None);
        }
        let mut mapping: Vec<Option<usize>> = vec![None; t.schema().columns.len()];
        for (i, ((tname, tty), c)) in targets.iter().zip(&cols).enumerate() {
            if tname.eq_ignore_ascii_case(&t.schema().key_name) {
                if !c.is_key {
                    return Ok(None);
                }
                continue;
            }
            if c.is_key || (c.dtype != *tty && c.dtype != DType::Null) {
                return Ok(None);
            }
            let Some((id, _)) = t.schema().column(tname) else {
                return Ok(None);
            };
            if let Some(slot) = mapping.get_mut(id.0 as usize) {
                *slot = if c.dtype == DType::Null {
                    None
                } else {
                    Some(i)
                };
            }
        }
        let rel = crate::exec::execute(&plan.plan, snap)?;
        let rows = rel.row_count();
        self.db
            .ingest(name, relation_parts(rel, &mapping))
            .map_err(map_storage)?;
        Ok(Some(rows))
    }
}

/// A relation's frames as storage partition data; `mapping[c]` is the relation column that fills
/// table column `c` (None: no values).
fn relation_parts(
    rel: crate::exec::Relation,
    mapping: &[Option<usize>],
) -> Vec<(journeydb_storage::PartitionId, journeydb_storage::PartData)> {
    let mut out = Vec::new();
    for (p, frames) in rel.parts {
        for mut f in frames {
            let columns = mapping
                .iter()
                .map(|m| m.and_then(|i| f.cols.get_mut(i).and_then(Option::take)))
                .collect();
            out.push((
                p,
                journeydb_storage::PartData {
                    rows: std::mem::take(&mut f.rows),
                    columns,
                },
            ));
        }
    }
    out
}

/// What kind of statement a parsed statement is (the shell streams queries).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatementKind {
    /// A query returning rows.
    Query,
    /// Anything else.
    Other,
}

/// The kind of a parsed statement.
pub fn statement_kind(s: &Statement) -> StatementKind {
    if matches!(s, Statement::Query(_)) {
        StatementKind::Query
    } else {
        StatementKind::Other
    }
}

fn first_words(s: &str) -> String {
    s.split_whitespace().take(3).collect::<Vec<_>>().join(" ")
}

pub(crate) fn map_storage(e: journeydb_storage::StorageError) -> QueryError {
    match e {
        journeydb_storage::StorageError::TableNotFound(t) => QueryError::TableNotFound(t),
        e => QueryError::Storage(e),
    }
}

fn single_name(n: &ast::ObjectName) -> Result<String> {
    match object_name(n)?.as_slice() {
        [one] => Ok(one.clone()),
        _ => Err(QueryError::Unsupported(format!("qualified table name {n}"))),
    }
}

fn sql_type(t: &ast::DataType) -> Result<DType> {
    use ast::DataType as T;
    Ok(match t {
        T::Timestamp(_, tz)
            if !matches!(tz, ast::TimezoneInfo::WithTimeZone | ast::TimezoneInfo::Tz) =>
        {
            DType::Timestamp
        }
        T::BigInt(_) | T::Int8(_) | T::Int64 => DType::Bigint,
        T::Double(_) | T::DoublePrecision | T::Float8 => DType::Double,
        T::Boolean | T::Bool => DType::Boolean,
        T::Varchar(_) | T::Text | T::String(_) | T::CharacterVarying(_) => DType::Varchar,
        other => {
            return Err(QueryError::Unsupported(format!(
                "column type {other} (use TIMESTAMP, BIGINT, DOUBLE, BOOLEAN or VARCHAR)"
            )))
        }
    })
}

fn coerce(s: Scalar, to: DType) -> Result<Scalar> {
    Ok(match (s, to) {
        (Scalar::Null, _) => Scalar::Null,
        // A quoted literal (or a parameter of unknown type) takes the column's type, as an
        // untyped literal does in PostgreSQL and DuckDB: '5' into a BIGINT is 5.
        (
            Scalar::Str(v),
            t @ (DType::Timestamp | DType::Bigint | DType::Double | DType::Boolean),
        ) => crate::plan::cast_lit(Scalar::Str(v), t)?,
        (Scalar::Int(v), DType::Double) => Scalar::Float(v as f64),
        (s, t) if s.dtype() == t => s,
        (s, t) => {
            return Err(QueryError::Type(format!(
                "cannot store a {} value in a {} column",
                s.dtype().name(),
                t.name()
            )))
        }
    })
}

pub(crate) fn scalars_to_array(vals: &[Scalar], t: DType) -> Result<ArrayRef> {
    let bad = || QueryError::Internal("value of the wrong type after coercion".into());
    Ok(match t {
        DType::Timestamp => {
            let mut b = TimestampMicrosecondBuilder::new();
            for v in vals {
                match v {
                    Scalar::Ts(x) => b.append_value(*x),
                    Scalar::Null => b.append_null(),
                    _ => return Err(bad()),
                }
            }
            Arc::new(b.finish())
        }
        DType::Bigint => {
            let mut b = Int64Builder::new();
            for v in vals {
                match v {
                    Scalar::Int(x) => b.append_value(*x),
                    Scalar::Null => b.append_null(),
                    _ => return Err(bad()),
                }
            }
            Arc::new(b.finish())
        }
        DType::Double => {
            let mut b = Float64Builder::new();
            for v in vals {
                match v {
                    Scalar::Float(x) => b.append_value(*x),
                    Scalar::Null => b.append_null(),
                    _ => return Err(bad()),
                }
            }
            Arc::new(b.finish())
        }
        DType::Boolean => {
            let mut b = BooleanBuilder::new();
            for v in vals {
                match v {
                    Scalar::Bool(x) => b.append_value(*x),
                    Scalar::Null => b.append_null(),
                    _ => return Err(bad()),
                }
            }
            Arc::new(b.finish())
        }
        DType::Varchar => {
            let mut b = StringBuilder::new();
            for v in vals {
                match v {
                    Scalar::Str(x) => b.append_value(x),
                    Scalar::Null => b.append_null(),
                    _ => return Err(bad()),
                }
            }
            Arc::new(b.finish())
        }
        DType::Interval | DType::Null => {
            return Err(QueryError::Type(
                "a column cannot hold INTERVAL values".into(),
            ))
        }
    })
}

/// A table's columns as SQL sees them: the key first, then the value columns, with their types.
pub(crate) fn table_columns(
    snap: &Snapshot,
    t: &journeydb_storage::TableSnapshot,
) -> Vec<(String, DType)> {
    let key: DType = snap.key_type().into();
    std::iter::once((t.schema().key_name.clone(), key))
        .chain(
            t.schema()
                .columns
                .iter()
                .map(|c| (c.name.clone(), c.ty.into())),
        )
        .collect()
}

fn dtype_of_arrow(t: &DataType) -> DType {
    match t {
        DataType::Int64 => DType::Bigint,
        DataType::Float64 => DType::Double,
        DataType::Boolean => DType::Boolean,
        DataType::Timestamp(..) => DType::Timestamp,
        _ => DType::Varchar,
    }
}

#[allow(dead_code)]
fn schema_of(cols: &[crate::plan::RelCol]) -> Arc<Schema> {
    output_schema(cols)
}

/// Each value of an `INSERT .. VALUES` with its target column's type.
fn insert_value_types<'s>(
    snap: &journeydb_storage::Snapshot,
    stmt: &'s Statement,
) -> Vec<(&'s ast::Expr, Option<DType>)> {
    let mut out = Vec::new();
    if let Statement::Insert(ins) = stmt {
        if let (ast::TableObject::TableName(tn), Some(src)) = (&ins.table, &ins.source) {
            if let (Ok(t), ast::SetExpr::Values(v)) = (
                single_name(tn).and_then(|n| {
                    snap.table(&n)
                        .map_err(|_| QueryError::TableNotFound(n.clone()))
                }),
                src.body.as_ref(),
            ) {
                let all = table_columns(snap, &t);
                let targets: Vec<Option<DType>> = if ins.columns.is_empty() {
                    all.iter().map(|(_, t)| Some(*t)).collect()
                } else {
                    ins.columns
                        .iter()
                        .map(|c| {
                            let c = c.to_string();
                            all.iter()
                                .find(|(a, _)| a.eq_ignore_ascii_case(&c))
                                .map(|(_, t)| *t)
                        })
                        .collect()
                };
                for row in &v.rows {
                    for (e, t) in row.content.iter().zip(&targets) {
                        out.push((e, *t));
                    }
                }
            }
        }
    }
    out
}

/// The column of `ALTER TABLE .. ADD COLUMN name TYPE [MERGE rule]` (default rule MIN).
fn added_column(c: &ast::ColumnDef, rule: Option<MergeRule>) -> Result<ColumnDef> {
    let name = col_name(c);
    if let Some(o) = c
        .options
        .iter()
        .find(|o| !matches!(o.option, ast::ColumnOption::Null))
    {
        return Err(QueryError::Unsupported(format!(
            "column option {} in ADD COLUMN (added columns are nullable and have no default)",
            o.option
        )));
    }
    let dtype = sql_type(&c.data_type)?;
    let ty = dtype
        .column_type()
        .ok_or_else(|| QueryError::Type(format!("column {name} cannot be {}", dtype.name())))?;
    Ok(ColumnDef {
        name,
        ty,
        rule: rule.unwrap_or(MergeRule::Min),
    })
}

/// A column definition's name: as written when quoted, lowercased otherwise.
fn col_name(c: &ast::ColumnDef) -> String {
    if c.name.quote_style.is_some() {
        c.name.value.clone()
    } else {
        c.name.value.to_ascii_lowercase()
    }
}

/// The customer key column of a CREATE TABLE: the one PRIMARY KEY column (as a column option or a
/// table constraint), which must be defined.
fn key_column(ct: &ast::CreateTable, name: &str) -> Result<String> {
    let mut key_name = None;
    for c in &ct.constraints {
        match c {
            ast::TableConstraint::PrimaryKey(pk) => match pk.columns.as_slice() {
                [one] => key_name = Some(one.column.expr.to_string().to_ascii_lowercase()),
                _ => {
                    return Err(QueryError::Unsupported(
                        "a PRIMARY KEY of several columns".into(),
                    ))
                }
            },
            other => return Err(QueryError::Unsupported(format!("table constraint {other}"))),
        }
    }
    let pk_cols: Vec<String> = ct
        .columns
        .iter()
        .filter(|c| {
            c.options
                .iter()
                .any(|o| matches!(o.option, ast::ColumnOption::PrimaryKey(_)))
        })
        .map(col_name)
        .chain(key_name.take())
        .collect();
    let key_name = match pk_cols.as_slice() {
        [] => {
            return Err(QueryError::Syntax(format!(
                "table {name} needs a PRIMARY KEY column (the customer key)"
            )))
        }
        [one] => one.clone(),
        [a, rest @ ..] if rest.iter().all(|r| r == a) => a.clone(),
        _ => {
            return Err(QueryError::Unsupported(
                "several PRIMARY KEY columns (the key is one customer column)".into(),
            ))
        }
    };
    if !ct.columns.iter().any(|c| col_name(c) == key_name) {
        return Err(QueryError::ColumnNotFound(format!(
            "PRIMARY KEY column {key_name}"
        )));
    }
    Ok(key_name)
}

/// The type of an expression a parameter is compared with, when it is evident without planning:
/// a column of a named table, or an aggregate or function whose type follows from its name and
/// argument (`count(*) >= $1` in HAVING is BIGINT, `sum(n) > $1` is `n`'s type).
#[recursive::recursive]
fn type_hint(
    e: &ast::Expr,
    tables: &[journeydb_storage::TableSnapshot],
    key_dtype: DType,
) -> Option<DType> {
    match e {
        ast::Expr::Identifier(_) | ast::Expr::CompoundIdentifier(_) => {
            let name = match e {
                ast::Expr::Identifier(i) => i.value.to_ascii_lowercase(),
                ast::Expr::CompoundIdentifier(p) => p.last()?.value.to_ascii_lowercase(),
                _ => return None,
            };
            tables.iter().find_map(|t| {
                let s = t.schema();
                if s.key_name.eq_ignore_ascii_case(&name) {
                    return Some(key_dtype);
                }
                s.columns
                    .iter()
                    .find(|c| c.name.eq_ignore_ascii_case(&name))
                    .map(|c| c.ty.into())
            })
        }
        ast::Expr::Nested(x) => type_hint(x, tables, key_dtype),
        ast::Expr::Extract { .. } => Some(DType::Bigint),
        ast::Expr::Function(f) => {
            let first = match &f.args {
                ast::FunctionArguments::List(l) => l.args.iter().find_map(|a| match a {
                    ast::FunctionArg::Unnamed(ast::FunctionArgExpr::Expr(x)) => Some(x),
                    _ => None,
                }),
                _ => None,
            };
            match f.name.to_string().to_ascii_lowercase().as_str() {
                "count" | "length" | "date_part" => Some(DType::Bigint),
                "avg" | "mean" | "epoch" => Some(DType::Double),
                "date_trunc" => Some(DType::Timestamp),
                "lower" | "upper" => Some(DType::Varchar),
                "sum" | "min" | "max" | "coalesce" | "greatest" | "least" => {
                    type_hint(first?, tables, key_dtype)
                }
                _ => None,
            }
        }
        _ => None,
    }
}

/// Microseconds since the Unix epoch, now (the wall clock, not `now()` of a session).
pub fn now_epoch_us() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as i64)
}
