//! The command line of `journeydb`, on clap: every option typed and validated in one place, the
//! token and friends read from the environment here, `--help` on every command.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// journeydb: a columnar storage engine for customer-journey state.
#[derive(Debug, Parser)]
#[command(name = "journeydb", version, about, long_about = None, propagate_version = true)]
pub struct Cli {
    /// The command to run.
    #[command(subcommand)]
    pub command: Command,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// The main job: loads synthetic CDP data (profiles and behaviours of N customers) and runs the
    /// onboarding journey of examples/journey.toml once per simulated day, printing each run's
    /// transitions and time, then the funnel; writes an HTML funnel report. Uses an embedded
    /// database in --dir (default a temporary directory, removed unless --keep) or a server with
    /// --connect.
    Demo(DemoArgs),
    /// Runs, checks, reports or rolls back a journey.
    #[command(subcommand)]
    Journey(JourneyCommand),
    /// Serves a database (created if missing) over the native protocol (client/PROTOCOL.md) and the
    /// PostgreSQL wire protocol, on loopback by default. SIGTERM or ctrl-c stops accepting, lets
    /// running requests finish, flushes, and exits 0.
    Serve(Box<ServeArgs>),
    /// Runs SQL against an embedded database (created if missing) or a server. Statements come from
    /// -c, -f, or standard input (a prompt when it is a terminal); a script stops at its first
    /// error unless --continue-on-error.
    Sql(SqlArgs),
    /// Imports Parquet, CSV, JSON or Arrow files (names or globs) into a table in one commit: all
    /// the rows or none. Columns map by name; bad values are errors naming file, row, column and
    /// value, or with --max-errors go to a rejects file. `import events` pivots an event log. With
    /// --connect this command reads the files and streams them to the server.
    Import(Box<ImportArgs>),
    /// Exports a table or a query's result to Parquet, CSV, JSON or Arrow (written under a
    /// temporary name and renamed when complete), optionally as Hive-style hash buckets of the
    /// customer key. With --connect the result streams from the server and this command writes it.
    Export(Box<ExportArgs>),
    /// Verifies a database offline and read-only: every checksum of every segment block, the
    /// write-ahead log and the kept manifests. Exits non-zero on the first problem.
    Check(CheckArgs),
    /// The journey workload in journeydb and DuckDB on the same data, side by side, with ratios
    /// (runs the journeydb-bench binary; see BENCHMARKS.md and `journeydb-bench --help`).
    Bench(BenchArgs),
    /// Data contracts of tables: set one from a TOML file, show it, or check a table against it
    /// now (exits 1 when a rule is broken). The format is in query/src/contract.rs and README.
    #[command(subcommand)]
    Contract(ContractCommand),
    /// Tenants files for `journeydb serve --tenants`: a new file with an admin token, or the
    /// verifier of a token (tokens are kept only as SCRAM-SHA-256 verifiers).
    #[command(subcommand)]
    Tenants(TenantsCommand),
    /// Prints a shell completion script (bash, zsh, fish, elvish, powershell) to standard output.
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
}

/// `journeydb contract ..`.
#[derive(Debug, Subcommand)]
pub enum ContractCommand {
    /// Sets a table's contract (ALTER TABLE t SET CONTRACT '..'): later writes that break it are
    /// refused, publishes that break it alert.
    Set {
        /// The table.
        #[arg(long)]
        table: String,
        /// The contract (TOML).
        file: PathBuf,
        #[command(flatten)]
        #[allow(missing_docs)]
        target: Target,
    },
    /// Prints a table's contract.
    Show {
        /// The table.
        #[arg(long)]
        table: String,
        #[command(flatten)]
        #[allow(missing_docs)]
        target: Target,
    },
    /// Checks a table against its contract now (CHECK CONTRACT t): every broken rule with its
    /// rows and examples; exits 1 when there is one.
    Check {
        /// The table.
        #[arg(long)]
        table: String,
        #[command(flatten)]
        #[allow(missing_docs)]
        target: Target,
    },
}

/// `journeydb tenants ..`.
#[derive(Debug, Subcommand)]
pub enum TenantsCommand {
    /// Writes a new tenants file holding a fresh admin token's verifier, and prints that token
    /// once (the file never holds it). Refuses to overwrite a file.
    Init {
        /// The file to write.
        file: PathBuf,
    },
    /// Reads a token from standard input (one line) and prints its verifier, for a hand-written
    /// tenants file.
    HashToken,
}

/// A server to connect to, and the token it asks for.
#[derive(Debug, Args, Clone)]
pub struct Remote {
    /// A journeydb server instead of an embedded database.
    #[arg(long, value_name = "HOST:PORT")]
    pub connect: Option<String>,
    /// The server's token (also from JOURNEYDB_TOKEN; an empty value means none).
    #[arg(long, env = "JOURNEYDB_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
}

impl Remote {
    /// The token, if one was given (an empty one is none).
    pub fn token(&self) -> Option<&str> {
        self.token.as_deref().filter(|t| !t.is_empty())
    }
}

/// Options of `journeydb demo`.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Customers to generate (1 to 100000000; `_` separators allowed).
    #[arg(long, default_value = "1000000", value_parser = customers)]
    pub customers: usize,
    /// Simulated days, one journey run each (1 to 3650).
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=3650))]
    pub days: u64,
    /// Database directory (a new one); default a temporary directory.
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// Keep the temporary database directory.
    #[arg(long)]
    pub keep: bool,
    /// Where the HTML funnel report goes.
    #[arg(
        long,
        value_name = "FILE",
        default_value = "journeydb-demo-report.html"
    )]
    pub report: String,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub remote: Remote,
}

/// `journeydb journey ...`.
#[derive(Debug, Subcommand)]
pub enum JourneyCommand {
    /// Advances the journey by one run at --now: entries, expired waits, decisions, activations,
    /// exits and goals, folded into the state table with MIN; every changed row is checked in
    /// full and the rest on a Bernoulli sample; the new state, the activation log and the run's
    /// record are published in one commit only if the check passes (non-zero exit and nothing
    /// changed otherwise).
    Run(JourneyRunArgs),
    /// Checks a definition: the file (errors name the line), its tables and columns, and what it
    /// would change in the live state (positions added, positions removed and the customers who
    /// have a time there).
    Check(JourneyArgs),
    /// Prints the funnel (entered, reached and currently in each stage, steps, branches, exits,
    /// goals, median time to goal) and writes it as an SVG or HTML chart.
    Report(JourneyReportArgs),
    /// Restores the state as an earlier run published it (from the snapshots `journey run` keeps),
    /// in one commit recorded as a run; the activation log is not rolled back.
    Rollback(JourneyRollbackArgs),
    /// Compares two definitions position by position (by id): added, removed and changed
    /// positions, and renames.
    Diff(JourneyDiffArgs),
}

/// The definition and the database of a journey command.
#[derive(Debug, Args)]
pub struct JourneyArgs {
    /// The journey definition (TOML).
    #[arg(value_name = "DEF.toml")]
    pub def: String,
    /// An embedded database (which must exist).
    #[arg(
        long,
        value_name = "DIR",
        conflicts_with = "connect",
        required_unless_present = "connect"
    )]
    pub db: Option<String>,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub remote: Remote,
}

/// Options of `journeydb journey run`.
#[derive(Debug, Args)]
pub struct JourneyRunArgs {
    #[command(flatten)]
    #[allow(missing_docs)]
    pub journey: JourneyArgs,
    /// The run's time (default: now), e.g. 2026-01-05 or 2026-01-05T09:00:00+09:00.
    #[arg(long, value_name = "TIMESTAMP", value_parser = timestamp)]
    pub now: Option<i64>,
    /// Writes the run's activations to FILE as CSV (customer_id,step,channel,at).
    #[arg(long, value_name = "FILE")]
    pub activations_csv: Option<String>,
    /// Percent of the new state the consistency check samples, in (0, 100].
    #[arg(long, default_value_t = 50.0, value_parser = percent)]
    pub check_percent: f64,
    /// Allow --now earlier than the latest time already in the state (a deliberate backfill).
    #[arg(long)]
    pub allow_backfill: bool,
    /// Compute the run and its consistency check and print the transitions and activations, but
    /// publish nothing (the state, the activation log and the run records stay as they are).
    #[arg(long)]
    pub dry_run: bool,
    /// Snapshots of the state to keep for `journey rollback` (the states the last N runs
    /// published, as tables <state>_snap_r<run>); 0 keeps none.
    #[arg(long, value_name = "N", default_value_t = 7)]
    pub keep_snapshots: usize,
    /// Publish the definition as a new version when it changes the stored newest one in more
    /// than names: customers inside stay on the version they entered with, new customers enter
    /// the new one. Without it such a run is refused and the changes are listed.
    #[arg(long)]
    pub publish: bool,
}

/// Options of `journeydb journey diff`.
#[derive(Debug, Args)]
pub struct JourneyDiffArgs {
    /// The old definition (TOML).
    #[arg(value_name = "OLD.toml")]
    pub old: String,
    /// The new definition (TOML).
    #[arg(value_name = "NEW.toml")]
    pub new: String,
}

/// Options of `journeydb journey rollback`.
#[derive(Debug, Args)]
pub struct JourneyRollbackArgs {
    #[command(flatten)]
    #[allow(missing_docs)]
    pub journey: JourneyArgs,
    /// The run whose published state becomes live again (a run id of <state>_runs).
    #[arg(long, value_name = "RUN")]
    pub to: i64,
}

/// Options of `journeydb journey report`.
#[derive(Debug, Args)]
pub struct JourneyReportArgs {
    #[command(flatten)]
    #[allow(missing_docs)]
    pub journey: JourneyArgs,
    /// Writes the funnel chart to FILE.svg or FILE.html.
    #[arg(long, value_name = "FILE")]
    pub out: Option<String>,
}

/// The type of a new database's customer keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
#[value(rename_all = "lower")]
pub enum KeyTypeArg {
    /// Text keys.
    Varchar,
    /// 64-bit integer keys.
    Bigint,
}

impl From<KeyTypeArg> for journeydb_storage::KeyType {
    fn from(k: KeyTypeArg) -> Self {
        match k {
            KeyTypeArg::Varchar => journeydb_storage::KeyType::Varchar,
            KeyTypeArg::Bigint => journeydb_storage::KeyType::Bigint,
        }
    }
}

/// How the PostgreSQL port checks the password.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PgAuthArg {
    /// SCRAM-SHA-256: the token is proved, never sent.
    #[value(alias = "scram-sha-256")]
    Scram,
    /// Cleartext password.
    #[value(alias = "cleartext")]
    Password,
}

/// Options of `journeydb serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// The database directory (created if missing).
    #[arg(long, value_name = "DIR")]
    pub db: PathBuf,
    /// Native protocol address.
    #[arg(long, default_value = "127.0.0.1:5433")]
    pub listen: SocketAddr,
    /// PostgreSQL protocol address, or `off`.
    #[arg(long, default_value = "127.0.0.1:5434", value_parser = pg_listen, value_name = "ADDR|off")]
    pub pg_listen: PgListen,
    /// The token clients must present (also from JOURNEYDB_TOKEN; an empty value means none).
    #[arg(long, env = "JOURNEYDB_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Most connections at once.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u64).range(1..))]
    pub max_connections: u64,
    /// Most requests executing at once (default 2 × CPUs); the others wait for a slot.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub max_running: Option<u64>,
    /// Worker threads shared by every query, ingest, load and append of the process (default:
    /// one per CPU); a query's partitions, a load's segments and a batch's key lookups queue on
    /// them, so no more run at once whatever the number of requests.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=1024))]
    pub threads: Option<u64>,
    /// Refuse a query that would decode, or comes to hold while it runs, more than this many MiB
    /// (0: no bound).
    #[arg(long, default_value_t = 8192)]
    pub query_memory_mb: u64,
    /// Largest native protocol frame, in bytes (4096 to 4294967295).
    #[arg(long, value_parser = clap::value_parser!(u64).range(4096..=u32::MAX as u64))]
    pub frame_max_bytes: Option<u64>,
    /// Closes a connection idle this many seconds.
    #[arg(long, default_value_t = 300, value_parser = clap::value_parser!(u64).range(1..))]
    pub idle_timeout_s: u64,
    /// A request must arrive, and its response be read, within this many seconds.
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..))]
    pub io_timeout_s: u64,
    /// Most connections authenticating at once (5 s each); a burst of new connections may reach
    /// 4 times this before they are closed at once (64 clients starting together must all get in).
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u64).range(1..))]
    pub max_pending: u64,
    /// How the PostgreSQL port checks the token.
    #[arg(long, value_enum, default_value = "scram")]
    pub pg_auth: PgAuthArg,
    /// TLS certificate chain (PEM): the native port speaks only TLS, the PostgreSQL port accepts
    /// sslmode=require.
    #[arg(long, value_name = "FILE.pem", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// TLS private key (PEM).
    #[arg(long, value_name = "FILE.pem", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Key type of a new database.
    #[arg(long, value_enum, default_value = "varchar", ignore_case = true)]
    pub key_type: KeyTypeArg,
    /// Serve tenants (a TOML file: `journeydb tenants init FILE` makes one): each tenant gets its
    /// own database in DIR/tenants/NAME/, its tokens and quotas; the admin token manages them
    /// with SQL (CREATE TENANT, CREATE TOKEN ..). --token is then not used.
    #[arg(long, value_name = "FILE", conflicts_with = "token")]
    pub tenants: Option<PathBuf>,
    /// Serve the live dashboard (journeys' funnels and runs, tables, costs) and its JSON API on
    /// this address; it asks for the same tokens as the other ports.
    #[arg(long, value_name = "ADDR")]
    pub http_listen: Option<SocketAddr>,
    /// Days the query log (`SELECT .. FROM system.queries`: every statement, who ran it, its
    /// times, scans and result) keeps; 0 turns the log off.
    #[arg(long, default_value_t = 7, value_parser = clap::value_parser!(u32).range(0..=36500))]
    pub query_log_days: u32,
    /// `system.costs`: price of a CPU-second (cost = CPU-seconds × this + GB scanned ×
    /// --cost-gb-scanned + GB written × --cost-gb-written).
    #[arg(long, default_value_t = 0.05 / 3600.0, value_parser = rate)]
    pub cost_cpu_second: f64,
    /// `system.costs`: price of a GB (10^9 bytes) scanned.
    #[arg(long, default_value_t = 0.005, value_parser = rate)]
    pub cost_gb_scanned: f64,
    /// `system.costs`: price of a GB appended or loaded.
    #[arg(long, default_value_t = 0.01, value_parser = rate)]
    pub cost_gb_written: f64,
    /// `system.costs`: price of a GB stored for a day (the day's average of the tenant's
    /// database size, sampled hourly).
    #[arg(long, default_value_t = 0.023 / 30.0, value_parser = rate)]
    pub cost_gb_stored_day: f64,
    /// Acknowledged rows held in memory (and in the WAL) before the background thread writes
    /// them to segments.
    #[arg(long, default_value_t = 2_000_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub flush_rows: u64,
    /// A directory whose files `COPY t FROM 'file'` may read (default: none; clients then stream
    /// their files with `journeydb import` or psql's \copy).
    #[arg(long, value_name = "DIR")]
    pub import_dir: Option<PathBuf>,
    /// A directory `COPY .. TO 'file'` may write into (default: none; `journeydb export` writes on
    /// the client).
    #[arg(long, value_name = "DIR")]
    pub export_dir: Option<PathBuf>,
}

/// The PostgreSQL listen address, or none.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PgListen(pub Option<SocketAddr>);

/// How `journeydb sql` prints results.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    /// An aligned table.
    Table,
    /// CSV with a header.
    Csv,
    /// JSON lines.
    Json,
}

/// Options of `journeydb sql`.
#[derive(Debug, Args)]
pub struct SqlArgs {
    /// An embedded database (created if missing).
    #[arg(
        long,
        value_name = "DIR",
        conflicts_with = "connect",
        required_unless_present = "connect"
    )]
    pub db: Option<PathBuf>,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub remote: Remote,
    /// With --connect: TLS, trusting this PEM file's certificates.
    #[arg(long, value_name = "CA.pem", requires = "connect")]
    pub tls_ca: Option<PathBuf>,
    /// The name the server's certificate must carry.
    #[arg(long, default_value = "localhost", requires = "tls_ca")]
    pub tls_name: String,
    /// A statement (or several, separated by `;`); repeatable.
    #[arg(short = 'c', long = "command", value_name = "SQL")]
    pub commands: Vec<String>,
    /// A file of statements; repeatable.
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    pub files: Vec<String>,
    /// How results print.
    #[arg(long, value_enum, default_value = "table")]
    pub format: OutputFormat,
    /// Keeps running a script after a failed statement (the exit status is still non-zero).
    #[arg(long)]
    pub continue_on_error: bool,
    /// Key type of a new database.
    #[arg(long, value_enum, default_value = "varchar", ignore_case = true)]
    pub key_type: KeyTypeArg,
}

/// Where an import or export runs: an embedded database or a server.
#[derive(Debug, Args, Clone)]
pub struct Target {
    /// An embedded database (which must exist).
    #[arg(
        long,
        value_name = "DIR",
        conflicts_with = "connect",
        required_unless_present = "connect"
    )]
    pub db: Option<PathBuf>,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub remote: Remote,
}

/// How files are read.
#[derive(Debug, Args, Clone)]
pub struct ReadArgs {
    /// The format (default: each file's extension).
    #[arg(long, value_enum)]
    pub format: Option<FileFormat>,
    /// CSV: the first line is data, not column names (columns are then the table's, in order).
    #[arg(long)]
    pub no_header: bool,
    /// CSV: the field delimiter.
    #[arg(long, default_value = ",", value_parser = one_char)]
    pub delimiter: u8,
    /// CSV: unquoted text that means NULL (an unquoted empty field always does).
    #[arg(long, default_value = "")]
    pub null: String,
    /// A strftime pattern for text timestamps, e.g. '%d/%m/%Y %H:%M' (default ISO 8601).
    #[arg(long, value_name = "PATTERN")]
    pub timestamp_format: Option<String>,
    /// Rows that may be rejected before the import fails (default 0: the first bad row fails it).
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub max_errors: u64,
    /// Where rejected rows go, with their reason (CSV; default TABLE.rejects.csv with --max-errors).
    #[arg(long, value_name = "FILE")]
    pub rejects: Option<PathBuf>,
    /// Files, or glob patterns such as 'exports/*.parquet'.
    #[arg(value_name = "FILE", required = true)]
    pub files: Vec<String>,
    /// Progress: auto (a bar on a terminal, plain lines otherwise), bar, lines or none.
    #[arg(long, value_enum, default_value = "auto")]
    pub progress: ProgressArg,
}

/// Options of `journeydb import`.
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct ImportArgs {
    /// `events`: pivot an event log.
    #[command(subcommand)]
    pub events: Option<ImportCommand>,
    /// The table.
    #[arg(long, required = true)]
    pub table: Option<String>,
    /// Create the table from the first file's columns, with this column as the customer key (the
    /// other columns MERGE MIN).
    #[arg(long, value_name = "KEY")]
    pub create_key: Option<String>,
    /// Skip the file's columns that the table lacks (default: refuse the import).
    #[arg(long)]
    pub ignore_extra_columns: bool,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub read: ReadArgs,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub target: Target,
}

/// `journeydb import events ...`.
#[derive(Debug, Subcommand)]
pub enum ImportCommand {
    /// Pivots an event log (one row per event) into one row per customer: a MIN TIMESTAMP column per
    /// event value (its first occurrence) and, if asked, a SUM BIGINT `<event>_count`; columns
    /// for new event values are added in the same commit.
    Events(EventsArgs),
}

/// Options of `journeydb import events`.
#[derive(Debug, Args)]
pub struct EventsArgs {
    /// The table (created with just the key column if missing).
    #[arg(long)]
    pub table: String,
    /// The log's customer key column.
    #[arg(long, default_value = "customer_id")]
    pub key: String,
    /// The log's event name column.
    #[arg(long, default_value = "event")]
    pub event: String,
    /// The log's event time column.
    #[arg(long, default_value = "time")]
    pub time: String,
    /// Also count events per customer (`<event>_count`).
    #[arg(long)]
    pub count: bool,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub read: ReadArgs,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub target: Target,
}

/// Options of `journeydb export`.
#[derive(Debug, Args)]
pub struct ExportArgs {
    /// The table to export.
    #[arg(long, conflicts_with = "query", required_unless_present = "query")]
    pub table: Option<String>,
    /// A query whose result to export.
    #[arg(long, value_name = "SQL")]
    pub query: Option<String>,
    /// The file (or, with --partition-by-hash, the new directory).
    #[arg(long, value_name = "PATH")]
    pub out: PathBuf,
    /// The format (default: the file's extension; parquet for a bucket directory).
    #[arg(long, value_enum)]
    pub format: Option<FileFormat>,
    /// Writes N Hive-style buckets `bucket=NN/part-00000.EXT` by a hash of the key (the first
    /// column; see docs/IO.md).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub partition_by_hash: Option<u32>,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub target: Target,
}

/// A file format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum FileFormat {
    /// Apache Parquet.
    Parquet,
    /// Comma-separated values.
    Csv,
    /// Newline-delimited JSON.
    Json,
    /// Arrow IPC.
    Arrow,
}

/// How progress shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ProgressArg {
    /// A bar on a terminal, plain lines otherwise.
    Auto,
    /// A bar.
    Bar,
    /// A line every few seconds.
    Lines,
    /// Nothing.
    None,
}

fn one_char(s: &str) -> Result<u8, String> {
    match s.as_bytes() {
        [b] if b.is_ascii() => Ok(*b),
        _ => Err("one ASCII character".into()),
    }
}

/// Options of `journeydb check`.
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// The database directory.
    #[arg(long, value_name = "DIR")]
    pub db: PathBuf,
}

/// Options of `journeydb bench`, passed on to journeydb-bench.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// journeydb-bench's options: [--customers 10000000] [--int-keys] [--runs 5] [--json]
    /// [--dir DIR] [--python python3].
    #[arg(
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "OPTIONS"
    )]
    pub args: Vec<String>,
}

fn customers(s: &str) -> Result<usize, String> {
    let n: usize = s
        .replace('_', "")
        .parse()
        .map_err(|_| format!("{s:?} is not a number"))?;
    if (1..=100_000_000).contains(&n) {
        Ok(n)
    } else {
        Err("use 1 to 100000000".into())
    }
}

fn percent(s: &str) -> Result<f64, String> {
    s.parse::<f64>()
        .ok()
        .filter(|p| *p > 0.0 && *p <= 100.0)
        .ok_or_else(|| format!("{s:?}: use a number in (0, 100]"))
}

fn timestamp(s: &str) -> Result<i64, String> {
    journeydb_query::types::parse_timestamp(s).map_err(|e| e.to_string())
}

fn pg_listen(s: &str) -> Result<PgListen, String> {
    if s.eq_ignore_ascii_case("off") {
        return Ok(PgListen(None));
    }
    s.parse::<SocketAddr>()
        .map(|a| PgListen(Some(a)))
        .map_err(|e| format!("{s:?}: {e} (use HOST:PORT or off)"))
}

/// A price: a finite number, zero or more.
fn rate(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() && v >= 0.0 => Ok(v),
        _ => Err(format!("{s:?} is not a price (a number, zero or more)")),
    }
}
