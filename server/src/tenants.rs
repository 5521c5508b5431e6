//! Tenants (`journeydb serve --tenants FILE`): teams sharing one server, each with its own
//! database directory (`<db>/tenants/<name>/`), its own tokens, and quotas (requests at once,
//! query memory, disk bytes). A tenant's sessions open only its own database, so no statement of
//! either protocol can name another tenant's tables; its `system.queries` and `system.costs` show
//! only its own rows; its `COPY` files live below `<import-dir>/<name>/` and
//! `<export-dir>/<name>/`.
//!
//! The tenants file (TOML) keeps tokens only as SCRAM-SHA-256 verifiers (see [`crate::scram`]):
//!
//! ```toml
//! admin_token = "SCRAM-SHA-256$4096:..."      # the admin's token (PostgreSQL user `admin`)
//!
//! [[tenant]]
//! name = "marketing"
//! key_type = "varchar"                        # of its database (default varchar)
//! max_running = 4                             # requests at once (default: the server's)
//! query_memory_mb = 2048                      # per query (default: the server's)
//! disk_max_mb = 10240                         # its database's bytes on disk (default: none)
//!
//! [[tenant.token]]
//! name = "marketing_ci"                       # the PostgreSQL user name it logs in as
//! verifier = "SCRAM-SHA-256$4096:..."
//! ```
//!
//! The admin token manages tenants with SQL (`CREATE TENANT`, `CREATE TOKEN`, .. see
//! [`journeydb_query::admin`]); the server rewrites the file (a temporary file, synced, renamed)
//! after each change. Edit it by hand only while the server is stopped.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use arrow_array::{ArrayRef, Int64Array, RecordBatch, StringArray};
use arrow_schema::{DataType, Field, Schema};
use journeydb_query::admin::{AdminCommand, AdminHook};
use journeydb_query::types::DType;
use journeydb_query::{Database, Engine, KeyType, Options, Output, QueryError, WriteGuard};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::scram::Verifier;

/// The PostgreSQL user name of the admin token.
pub const ADMIN_USER: &str = "admin";

/// The tenants file.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantsFile {
    /// The admin token's verifier.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admin_token: Option<String>,
    /// The tenants.
    #[serde(default, rename = "tenant")]
    pub tenants: Vec<TenantSpec>,
}

/// One tenant of the file.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantSpec {
    /// Name: `[a-z][a-z0-9_]*`, at most 63 bytes.
    pub name: String,
    /// Key type of its database: `varchar` or `bigint`.
    #[serde(default = "default_key_type")]
    pub key_type: String,
    /// Requests it runs at once (default: the server's `--max-running`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_running: Option<u64>,
    /// Per-query memory bound in MiB (default and ceiling: the server's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query_memory_mb: Option<u64>,
    /// Bytes its database may take on disk, in MiB (default: no bound).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disk_max_mb: Option<u64>,
    /// Its tokens.
    #[serde(default, rename = "token")]
    pub tokens: Vec<TokenSpec>,
}

fn default_key_type() -> String {
    "varchar".into()
}

/// One token of a tenant.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenSpec {
    /// Name, unique in the file: the PostgreSQL user name the token logs in as.
    pub name: String,
    /// The token's SCRAM-SHA-256 verifier.
    pub verifier: String,
}

/// True for a tenant or token name: `[a-z][a-z0-9_]*`, at most 63 bytes.
pub fn valid_name(n: &str) -> bool {
    n.len() <= 63
        && n.bytes().next().is_some_and(|b| b.is_ascii_lowercase())
        && n.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

impl TenantsFile {
    /// Reads and checks the file at `path`.
    pub fn load(path: &Path) -> Result<TenantsFile, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("tenants file {}: {e}", path.display()))?;
        let file: TenantsFile =
            toml::from_str(&text).map_err(|e| format!("tenants file {}: {e}", path.display()))?;
        file.check()
            .map_err(|e| format!("tenants file {}: {e}", path.display()))?;
        Ok(file)
    }

    /// Names valid and unique, verifiers readable, key types known.
    pub fn check(&self) -> Result<(), String> {
        if let Some(v) = &self.admin_token {
            Verifier::parse(v).map_err(|e| format!("admin_token: {e}"))?;
        }
        let mut tenants = std::collections::HashSet::new();
        let mut tokens = std::collections::HashSet::new();
        for t in &self.tenants {
            if !valid_name(&t.name) {
                return Err(format!(
                    "tenant name {:?}: use [a-z][a-z0-9_]*, at most 63 bytes",
                    t.name
                ));
            }
            if !tenants.insert(t.name.as_str()) {
                return Err(format!("tenant {} appears twice", t.name));
            }
            key_type(&t.key_type).map_err(|e| format!("tenant {}: {e}", t.name))?;
            if t.max_running == Some(0) {
                return Err(format!("tenant {}: max_running must be at least 1", t.name));
            }
            for k in &t.tokens {
                if !valid_name(&k.name) || k.name == ADMIN_USER {
                    return Err(format!(
                        "token name {:?}: use [a-z][a-z0-9_]*, not `admin`",
                        k.name
                    ));
                }
                if !tokens.insert(k.name.as_str()) {
                    return Err(format!("token {} appears twice", k.name));
                }
                Verifier::parse(&k.verifier).map_err(|e| format!("token {}: {e}", k.name))?;
            }
        }
        Ok(())
    }

    /// Writes the file to `path`: a temporary file, synced, renamed over it, the directory
    /// synced.
    pub fn save(&self, path: &Path) -> Result<(), String> {
        use std::io::Write;
        let text = toml::to_string(self).map_err(|e| e.to_string())?;
        let tmp = path.with_extension("toml.tmp");
        let write = || -> std::io::Result<()> {
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(
                b"# journeydb tenants file: rewritten by the server after each tenant statement.\n",
            )?;
            f.write_all(text.as_bytes())?;
            f.sync_all()?;
            std::fs::rename(&tmp, path)?;
            let dir = match path.parent() {
                Some(d) if !d.as_os_str().is_empty() => d,
                _ => Path::new("."),
            };
            std::fs::File::open(dir)?.sync_all()
        };
        write().map_err(|e| format!("writing {}: {e}", path.display()))
    }
}

fn key_type(s: &str) -> Result<KeyType, String> {
    match s.to_ascii_lowercase().as_str() {
        "varchar" => Ok(KeyType::Varchar),
        "bigint" => Ok(KeyType::Bigint),
        other => Err(format!("key_type {other:?}: use varchar or bigint")),
    }
}

/// A fresh random token (`jdb_` and 43 base64url characters: 256 bits).
pub fn new_token() -> Result<String, String> {
    use base64::Engine as _;
    let mut b = [0u8; 32];
    getrandom::fill(&mut b).map_err(|e| format!("no random source: {e}"))?;
    Ok(format!(
        "jdb_{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
    ))
}

/// A tenant's disk quota, shared by its sessions (their [`WriteGuard`]).
#[derive(Debug)]
pub struct DiskQuota {
    tenant: String,
    max: Option<u64>,
    /// Bytes its directory held when last measured.
    used: AtomicU64,
}

impl WriteGuard for DiskQuota {
    fn may_write(&self) -> journeydb_query::Result<()> {
        let used = self.used.load(Ordering::Relaxed);
        match self.max {
            Some(max) if used >= max => Err(QueryError::QuotaExceeded(format!(
                "tenant {} holds {} MiB on disk, its quota is {} MiB; drop tables or ask the \
                 admin to raise disk_max_mb",
                self.tenant,
                used >> 20,
                max >> 20
            ))),
            _ => Ok(()),
        }
    }
}

/// An open tenant.
pub struct Tenant {
    /// Its name.
    pub name: String,
    /// The engine over its database, with its limits.
    pub engine: Engine,
    /// Its requests at once.
    pub slots: crate::Slots,
    /// Its disk quota.
    pub quota: Arc<DiskQuota>,
    dir: PathBuf,
}

impl std::fmt::Debug for Tenant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Tenant({})", self.name)
    }
}

/// Who a connection authenticated as.
#[derive(Debug, Clone)]
pub enum Principal {
    /// A server without tenants: its one database.
    Default,
    /// A tenant, through one of its tokens (the token's name).
    Tenant(Arc<Tenant>, String),
    /// The admin token.
    Admin,
}

struct State {
    file: TenantsFile,
    admin: Option<Verifier>,
    /// Token name -> (tenant, verifier).
    tokens: HashMap<String, (String, Verifier)>,
    open: BTreeMap<String, Arc<Tenant>>,
}

/// How tenants' engines are made: the server's limits and directories.
#[derive(Debug, Clone)]
pub struct Base {
    /// The server's per-query memory bound.
    pub query_memory_max: Option<u64>,
    /// The server's requests at once.
    pub max_running: usize,
    /// `system.costs` rates.
    pub cost_rates: journeydb_query::costs::CostRates,
    /// Import and export directories (each tenant gets `<dir>/<name>/`).
    pub import_dir: Option<PathBuf>,
    /// See `import_dir`.
    pub export_dir: Option<PathBuf>,
    /// Options of the tenants' databases.
    pub options: Options,
}

/// The registry of tenants.
pub struct Tenants {
    path: PathBuf,
    data_dir: PathBuf,
    base: Base,
    state: RwLock<State>,
    /// Serializes tenant statements (each rewrites the file).
    edit: Mutex<()>,
    /// SHA-256 of native tokens already verified -> token name (`admin` for the admin): one
    /// PBKDF2 per token and server run, not one per connection. Cleared on every change.
    known: Mutex<HashMap<[u8; 32], String>>,
    log: Option<Arc<crate::querylog::QueryLog>>,
    /// The admin's engine: an empty database of its own, read-only, with the tenant statements.
    admin_db: Arc<Database>,
}

impl std::fmt::Debug for Tenants {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Tenants({})", self.path.display())
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Tenants {
    /// Opens every tenant of the file at `path`, their databases below `root/tenants/` (created
    /// where missing); the admin's sessions run on `admin_db` (which holds no tables).
    pub fn open(
        path: &Path,
        root: &Path,
        base: Base,
        log: Option<Arc<crate::querylog::QueryLog>>,
        admin_db: Arc<Database>,
    ) -> Result<Tenants, String> {
        let file = TenantsFile::load(path)?;
        let data_dir = root.join("tenants");
        std::fs::create_dir_all(&data_dir)
            .map_err(|e| format!("tenants directory {}: {e}", data_dir.display()))?;
        let t = Tenants {
            path: path.to_path_buf(),
            data_dir,
            base,
            state: RwLock::new(State {
                file: TenantsFile::default(),
                admin: None,
                tokens: HashMap::new(),
                open: BTreeMap::new(),
            }),
            edit: Mutex::new(()),
            known: Mutex::new(HashMap::new()),
            log,
            admin_db,
        };
        t.install(file, None)?;
        Ok(t)
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Makes `file` the registry's: opens tenants new to it, reopens `changed` (new limits),
    /// closes the ones it no longer has.
    fn install(&self, file: TenantsFile, changed: Option<&str>) -> Result<(), String> {
        let old = self.read().open.clone();
        let mut open = BTreeMap::new();
        for spec in &file.tenants {
            let t = match old.get(&spec.name) {
                Some(t) if changed != Some(spec.name.as_str()) => t.clone(),
                Some(t) => Arc::new(self.tenant(spec, Some(t.engine.database().clone()))?),
                None => Arc::new(self.tenant(spec, None)?),
            };
            open.insert(spec.name.clone(), t);
        }
        let admin = file
            .admin_token
            .as_deref()
            .map(Verifier::parse)
            .transpose()?;
        let mut tokens = HashMap::new();
        for spec in &file.tenants {
            for k in &spec.tokens {
                tokens.insert(
                    k.name.clone(),
                    (spec.name.clone(), Verifier::parse(&k.verifier)?),
                );
            }
        }
        *self.state.write().unwrap_or_else(|p| p.into_inner()) = State {
            file,
            admin,
            tokens,
            open,
        };
        lock(&self.known).clear();
        Ok(())
    }

    /// Opens (or creates) one tenant's database, or reuses `db`, with its limits.
    fn tenant(&self, spec: &TenantSpec, db: Option<Arc<Database>>) -> Result<Tenant, String> {
        let dir = self.data_dir.join(&spec.name);
        let db = match db {
            Some(db) => db,
            None => Arc::new(
                if dir.join("CURRENT").exists() {
                    Database::open(&dir, self.base.options.clone())
                } else {
                    Database::create(&dir, key_type(&spec.key_type)?, self.base.options.clone())
                }
                .map_err(|e| format!("tenant {}: {e}", spec.name))?,
            ),
        };
        let memory = match (self.base.query_memory_max, spec.query_memory_mb) {
            (Some(s), Some(t)) => Some(s.min(t << 20)),
            (s, t) => s.or(t.map(|t| t << 20)),
        };
        let sub = |d: &Option<PathBuf>| -> Result<Option<PathBuf>, String> {
            d.as_ref()
                .map(|d| {
                    let own = d.join(&spec.name);
                    std::fs::create_dir_all(&own)
                        .and_then(|()| own.canonicalize())
                        .map_err(|e| format!("tenant {}: {}: {e}", spec.name, own.display()))
                })
                .transpose()
        };
        let quota = Arc::new(DiskQuota {
            tenant: spec.name.clone(),
            max: spec.disk_max_mb.map(|m| m << 20),
            used: AtomicU64::new(dir_bytes(&dir)),
        });
        let mut engine = Engine::new(db)
            .with_cost_rates(self.base.cost_rates)
            .with_file_access(journeydb_query::files::FileAccess::server(
                sub(&self.base.import_dir)?,
                sub(&self.base.export_dir)?,
            ))
            .with_write_guard(quota.clone());
        if let Some(bytes) = memory {
            engine = engine.with_memory_limit(bytes);
        }
        if let Some(log) = &self.log {
            engine = engine.with_log_source(log.clone(), Some(spec.name.clone()));
        }
        let running = spec
            .max_running
            .map_or(self.base.max_running, |n| n as usize);
        Ok(Tenant {
            name: spec.name.clone(),
            engine,
            slots: crate::Slots::new(running),
            quota,
            dir,
        })
    }

    /// The engine of an admin session.
    pub fn admin_engine(self: &Arc<Self>) -> Engine {
        let mut e = Engine::new(self.admin_db.clone())
            .with_cost_rates(self.base.cost_rates)
            .read_only(
                "the admin token manages tenants (CREATE/ALTER/DROP TENANT, CREATE/DROP TOKEN, \
                 SHOW TENANTS) and reads system.queries and system.costs; connect with a \
                 tenant's token to work with tables",
            )
            .with_admin(self.clone());
        if let Some(log) = &self.log {
            e = e.with_log_source(log.clone(), None);
        }
        e
    }

    /// Who `token` (presented whole, over the native protocol) belongs to.
    pub fn check_token(&self, token: &str) -> Option<Principal> {
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let cached = lock(&self.known).get(&digest).cloned();
        if let Some(name) = cached {
            return self.principal(&name);
        }
        let name = {
            let state = self.read();
            if state.admin.as_ref().is_some_and(|v| v.matches(token)) {
                Some(ADMIN_USER.to_string())
            } else {
                state
                    .tokens
                    .iter()
                    .find(|(_, (_, v))| v.matches(token))
                    .map(|(n, _)| n.clone())
            }
        }?;
        lock(&self.known).insert(digest, name.clone());
        self.principal(&name)
    }

    /// The principal of token (user) `name`, if it exists.
    pub fn principal(&self, name: &str) -> Option<Principal> {
        let state = self.read();
        if name == ADMIN_USER {
            return state.admin.as_ref().map(|_| Principal::Admin);
        }
        let (tenant, _) = state.tokens.get(name)?;
        let t = state.open.get(tenant)?;
        Some(Principal::Tenant(t.clone(), name.to_string()))
    }

    /// The verifier a PostgreSQL client logging in as `user` must prove, and who it then is; for
    /// an unknown user, a verifier of a random token (so the exchange fails like a wrong token).
    pub fn verifier_for(&self, user: &str) -> (Option<Verifier>, Option<Principal>) {
        let state = self.read();
        let v = if user == ADMIN_USER {
            state.admin.clone()
        } else {
            state.tokens.get(user).map(|(_, v)| v.clone())
        };
        drop(state);
        match v {
            Some(v) => (Some(v), self.principal(user)),
            None => (new_token().ok().and_then(|t| Verifier::new(&t).ok()), None),
        }
    }

    /// Each tenant's bytes on disk, as last measured.
    pub fn sizes(&self) -> Vec<(String, u64)> {
        self.read()
            .open
            .values()
            .map(|t| (t.name.clone(), t.quota.used.load(Ordering::Relaxed)))
            .collect()
    }

    /// Measures each tenant's directory (for the disk quotas).
    pub fn measure(&self) {
        let open: Vec<Arc<Tenant>> = self.read().open.values().cloned().collect();
        for t in open {
            t.quota.used.store(dir_bytes(&t.dir), Ordering::Relaxed);
        }
    }

    fn change(
        &self,
        f: impl FnOnce(&mut TenantsFile) -> Result<(), QueryError>,
        changed: Option<&str>,
    ) -> Result<(), QueryError> {
        let mut file = self.read().file.clone();
        f(&mut file)?;
        file.check().map_err(QueryError::InvalidValue)?;
        // The tenant's database first, so a file naming it always has one.
        self.install(file.clone(), changed)
            .map_err(QueryError::Internal)?;
        file.save(&self.path).map_err(QueryError::Internal)
    }

    fn show(&self) -> Result<Output, QueryError> {
        let state = self.read();
        let specs = &state.file.tenants;
        let s = |f: &dyn Fn(&TenantSpec) -> Option<String>| -> ArrayRef {
            Arc::new(StringArray::from(specs.iter().map(f).collect::<Vec<_>>()))
        };
        let i = |f: &dyn Fn(&TenantSpec) -> Option<i64>| -> ArrayRef {
            Arc::new(Int64Array::from(specs.iter().map(f).collect::<Vec<_>>()))
        };
        let used = |t: &TenantSpec| {
            state
                .open
                .get(&t.name)
                .map(|t| t.quota.used.load(Ordering::Relaxed) as i64)
        };
        let cols: Vec<ArrayRef> = vec![
            s(&|t| Some(t.name.clone())),
            s(&|t| Some(t.key_type.clone())),
            s(&|t| {
                Some(
                    t.tokens
                        .iter()
                        .map(|k| k.name.as_str())
                        .collect::<Vec<_>>()
                        .join(","),
                )
            }),
            i(&|t| t.max_running.map(|n| n as i64)),
            i(&|t| t.query_memory_mb.map(|n| n as i64)),
            i(&|t| t.disk_max_mb.map(|n| n as i64)),
            i(&used),
        ];
        Ok(Output::Rows(RecordBatch::try_new(show_schema(), cols)?))
    }
}

fn show_schema() -> Arc<Schema> {
    let s = |n: &str| Field::new(n, DataType::Utf8, true);
    let i = |n: &str| Field::new(n, DataType::Int64, true);
    Arc::new(Schema::new(vec![
        s("name"),
        s("key_type"),
        s("tokens"),
        i("max_running"),
        i("query_memory_mb"),
        i("disk_max_mb"),
        i("disk_bytes"),
    ]))
}

/// Bytes of the files below `dir` (what it takes on disk, near enough for a quota).
pub(crate) fn dir_bytes(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_bytes(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

/// Applies `options` (name, value) to `spec`.
fn set_options(
    spec: &mut TenantSpec,
    options: &[(String, String)],
    create: bool,
) -> Result<(), QueryError> {
    for (k, v) in options {
        let n = || -> Result<Option<u64>, QueryError> {
            let n: u64 = v.parse().map_err(|_| {
                QueryError::InvalidValue(format!("{k} = {v}: expected a whole number"))
            })?;
            // 0 means "the default" (no bound of its own).
            Ok((n > 0).then_some(n))
        };
        match k.as_str() {
            "key_type" if create => {
                key_type(v).map_err(QueryError::InvalidValue)?;
                spec.key_type = v.to_ascii_lowercase();
            }
            "key_type" => {
                return Err(QueryError::Unsupported(
                    "changing a tenant's key type (its database keeps its keys)".into(),
                ))
            }
            "max_running" => spec.max_running = n()?,
            "query_memory_mb" => spec.query_memory_mb = n()?,
            "disk_max_mb" => spec.disk_max_mb = n()?,
            other => {
                return Err(QueryError::InvalidValue(format!(
                    "tenant option {other}: use key_type, max_running, query_memory_mb or \
                     disk_max_mb"
                )))
            }
        }
    }
    Ok(())
}

impl AdminHook for Tenants {
    // long: one arm per tenant statement.
    fn run(&self, cmd: &AdminCommand) -> journeydb_query::Result<Output> {
        let _edit = lock(&self.edit);
        let done = |tag: &str| Output::Done {
            tag: tag.into(),
            rows: 0,
        };
        let find = |f: &mut TenantsFile, name: &str| -> Result<usize, QueryError> {
            f.tenants
                .iter()
                .position(|t| t.name == name)
                .ok_or_else(|| QueryError::InvalidValue(format!("no tenant {name}")))
        };
        match cmd {
            AdminCommand::CreateTenant { name, options } => {
                if !valid_name(name) {
                    return Err(QueryError::InvalidValue(format!(
                        "tenant name {name:?}: use [a-z][a-z0-9_]*, at most 63 bytes"
                    )));
                }
                self.change(
                    |f| {
                        if f.tenants.iter().any(|t| &t.name == name) {
                            return Err(QueryError::InvalidValue(format!("tenant {name} exists")));
                        }
                        let mut spec = TenantSpec {
                            name: name.clone(),
                            key_type: default_key_type(),
                            max_running: None,
                            query_memory_mb: None,
                            disk_max_mb: None,
                            tokens: Vec::new(),
                        };
                        set_options(&mut spec, options, true)?;
                        f.tenants.push(spec);
                        Ok(())
                    },
                    None,
                )?;
                Ok(done("CREATE TENANT"))
            }
            AdminCommand::AlterTenant { name, options } => {
                self.change(
                    |f| {
                        let i = find(f, name)?;
                        match f.tenants.get_mut(i) {
                            Some(spec) => set_options(spec, options, false),
                            None => Ok(()),
                        }
                    },
                    Some(name),
                )?;
                Ok(done("ALTER TENANT"))
            }
            AdminCommand::DropTenant { name } => {
                self.change(
                    |f| {
                        let i = find(f, name)?;
                        f.tenants.remove(i);
                        Ok(())
                    },
                    None,
                )?;
                Ok(done("DROP TENANT"))
            }
            AdminCommand::CreateToken { name, tenant } => {
                let token = new_token().map_err(QueryError::Internal)?;
                let verifier = Verifier::new(&token).map_err(QueryError::Internal)?;
                self.change(
                    |f| {
                        if f.tenants
                            .iter()
                            .any(|t| t.tokens.iter().any(|k| &k.name == name))
                        {
                            return Err(QueryError::InvalidValue(format!("token {name} exists")));
                        }
                        let i = find(f, tenant)?;
                        if let Some(t) = f.tenants.get_mut(i) {
                            t.tokens.push(TokenSpec {
                                name: name.clone(),
                                verifier: verifier.to_string(),
                            });
                        }
                        Ok(())
                    },
                    None,
                )?;
                let schema = Arc::new(Schema::new(vec![
                    Field::new("name", DataType::Utf8, false),
                    Field::new("tenant", DataType::Utf8, false),
                    Field::new("token", DataType::Utf8, false),
                ]));
                Ok(Output::Rows(RecordBatch::try_new(
                    schema,
                    vec![
                        Arc::new(StringArray::from(vec![name.clone()])),
                        Arc::new(StringArray::from(vec![tenant.clone()])),
                        Arc::new(StringArray::from(vec![token])),
                    ],
                )?))
            }
            AdminCommand::DropToken { name } => {
                self.change(
                    |f| {
                        let before: usize = f.tenants.iter().map(|t| t.tokens.len()).sum();
                        for t in &mut f.tenants {
                            t.tokens.retain(|k| &k.name != name);
                        }
                        let after: usize = f.tenants.iter().map(|t| t.tokens.len()).sum();
                        if before == after {
                            return Err(QueryError::InvalidValue(format!("no token {name}")));
                        }
                        Ok(())
                    },
                    None,
                )?;
                Ok(done("DROP TOKEN"))
            }
            AdminCommand::ShowTenants => self.show(),
        }
    }

    fn describe(&self, cmd: &AdminCommand) -> Option<Vec<(String, DType)>> {
        match cmd {
            AdminCommand::ShowTenants => Some(
                show_schema()
                    .fields()
                    .iter()
                    .map(|f| {
                        let t = if f.data_type() == &DataType::Int64 {
                            DType::Bigint
                        } else {
                            DType::Varchar
                        };
                        (f.name().clone(), t)
                    })
                    .collect(),
            ),
            AdminCommand::CreateToken { .. } => Some(
                ["name", "tenant", "token"]
                    .iter()
                    .map(|n| (n.to_string(), DType::Varchar))
                    .collect(),
            ),
            _ => None,
        }
    }
}
