//! The state store: runs, content-addressed snapshots, deviation life cycles, pull requests and
//! the audit log, in SQLite (embedded default) or PostgreSQL.
//!
//! Every query is written once, for sqlx's Any driver: `$n` placeholders, times as unix
//! milliseconds, booleans as 0/1, JSON as text. The store takes plain records ([`RunReport`],
//! [`DeviationRecord`], …) and knows nothing of providers or MCP.

mod changes;
mod json_diff;
mod leader;
mod migrations;
mod pull_requests;
mod query;
mod run;
mod snapshots;
mod suspensions;
mod types;
mod url;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use sqlx::any::AnyPoolOptions;
use sqlx::AnyPool;
use sqlx::Executor;

use crate::time::{Clock, SystemClock};

pub use changes::repaired_by;
pub use json_diff::{json_diff, ChangeKind, JsonChange};
pub use leader::LeaderGuard;
pub use pull_requests::deviation_key;
pub use suspensions::MAX_SUSPEND_REASON;
pub use types::*;
pub use url::redact;

/// Why a store operation failed. Messages never contain a password.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("unsupported database URL scheme `{scheme}` in {url}: use sqlite://PATH or postgres://USER@HOST/DB")]
    UnsupportedScheme { scheme: String, url: String },
    #[error("invalid database URL {url}: {reason}")]
    InvalidUrl { url: String, reason: String },
    #[error("cannot create the directory {} for the database: {source}", path.display())]
    CreateDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot connect to {url}: {source}")]
    Connect { url: String, source: sqlx::Error },
    #[error("cannot migrate {url}: {source}")]
    Migrate {
        url: String,
        source: sqlx::migrate::MigrateError,
    },
    #[error("database error on {url} while {doing}: {source}")]
    Query {
        url: String,
        doing: &'static str,
        source: sqlx::Error,
    },
    #[error("unexpected value in {url}: {what}")]
    Corrupt { url: String, what: String },
    #[error("cannot suspend: {0}")]
    InvalidSuspension(String),
    #[error("invalid run report: {0}")]
    InvalidReport(String),
    #[error("the run names the stored body {hash}, which the store no longer holds (retention removed it); nothing of the run was stored")]
    BlobGone { hash: String },
    #[error("no {what} with id {id}")]
    NotFound { what: &'static str, id: i64 },
    #[error("run {0} is not running (finished, aborted or unknown)")]
    RunNotRunning(RunId),
    #[error("the state store {url} has schema version {have} and this labctl needs {want}: run `labctl db migrate` (as the user that owns the store), or the labctl that wrote it")]
    SchemaBehind { url: String, have: i64, want: i64 },
    #[error("another labctl controller holds the leader lock on {target}; stop it or run without leadership")]
    LeaderBusy { target: String },
    #[error("lost the leader lock before applying: {detail}; nothing was changed, and another controller may be reconciling now")]
    LeaderLost { detail: String },
    #[error("leader lock file {}: {source}", path.display())]
    LockFile {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// How a store is opened.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Access {
    ReadWrite,
    ReadOnly,
    /// Read-only, without SQLite's shared-memory file (see [`Store::open_reader`]).
    Immutable,
}

/// SQLite's write-ahead log beside the database file.
fn wal_file(db: &std::path::Path) -> PathBuf {
    let mut name = db.as_os_str().to_owned();
    name.push("-wal");
    PathBuf::from(name)
}

/// Which database engine a store talks to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// A connection pool to the state store.
#[derive(Clone)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
    /// The URL as given (may hold a password: never print it).
    url: String,
    /// The URL with credentials redacted.
    redacted: String,
    /// The SQLite database file.
    sqlite_path: Option<PathBuf>,
    /// Stamps every row: the system clock unless a test sets one ([`Store::with_clock`]).
    clock: Arc<dyn Clock>,
}

impl Store {
    /// Connects to `sqlite://PATH` (the file and its directory are created) or `postgres://…`.
    pub async fn connect(url: &str) -> Result<Store, StoreError> {
        Store::open(url, Access::ReadWrite).await
    }

    /// Opens the store to read only, as `status` and `drift` do: nothing is created, migrated
    /// or written, so a reader works on a state directory it may not write (the controller's,
    /// owned by another user). `None` when nothing has been recorded there yet.
    pub async fn open_reader(url: &str) -> Result<Option<Store>, StoreError> {
        if let url::Target::Sqlite { path, .. } = url::parse(url)? {
            if !path.exists() {
                return Ok(None);
            }
        }
        let open = async |access| {
            let store = Store::open(url, access).await?;
            let version = store.schema_version().await?;
            Ok::<_, StoreError>((store, version))
        };
        let (store, version) = match open(Access::ReadOnly).await {
            Ok(opened) => opened,
            // A WAL database in a directory the reader cannot write: SQLite cannot create the
            // shared-memory file, so read the file as it is — safe only while no writer has
            // uncommitted pages in a -wal file, which is then there to see.
            Err(first) => match url::parse(url)? {
                url::Target::Sqlite { path, .. } if !wal_file(&path).exists() => {
                    open(Access::Immutable).await.map_err(|_| first)?
                }
                _ => return Err(first),
            },
        };
        let latest = migrations::list(store.backend).last().map_or(0, |m| m.0);
        match version {
            None => Ok(None),
            Some(v) if v < latest => Err(StoreError::SchemaBehind {
                url: store.redacted.clone(),
                have: v,
                want: latest,
            }),
            Some(_) => Ok(Some(store)),
        }
    }

    /// The newest migration applied, `None` for a database labctl never migrated.
    async fn schema_version(&self) -> Result<Option<i64>, StoreError> {
        let table = match self.backend {
            Backend::Sqlite => {
                "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = '_sqlx_migrations'"
            }
            Backend::Postgres => {
                "SELECT COUNT(*) FROM information_schema.tables WHERE table_name = '_sqlx_migrations'"
            }
        };
        let exists: i64 = sqlx::query_scalar(table)
            .fetch_one(&self.pool)
            .await
            .map_err(self.query_err("reading the schema version"))?;
        if exists == 0 {
            return Ok(None);
        }
        sqlx::query_scalar("SELECT MAX(version) FROM _sqlx_migrations WHERE success")
            .fetch_one(&self.pool)
            .await
            .map_err(self.query_err("reading the schema version"))
    }

    async fn open(url: &str, access: Access) -> Result<Store, StoreError> {
        sqlx::any::install_default_drivers();
        let redacted = redact(url);
        let target = url::parse(url)?;
        let connect_err = |source| StoreError::Connect {
            url: redacted.clone(),
            source,
        };
        let (backend, sqlx_url, sqlite_path) = match target {
            url::Target::Sqlite { path, url } => {
                if access == Access::ReadWrite {
                    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                        std::fs::create_dir_all(dir).map_err(|source| StoreError::CreateDir {
                            path: dir.to_path_buf(),
                            source,
                        })?;
                    }
                }
                let url = match access {
                    Access::ReadWrite => url,
                    Access::ReadOnly => url.replace("mode=rwc", "mode=ro"),
                    Access::Immutable => url.replace("mode=rwc", "mode=ro&immutable=1"),
                };
                (Backend::Sqlite, url, Some(path))
            }
            url::Target::Postgres { url } => (Backend::Postgres, url, None),
        };
        let mut options = AnyPoolOptions::new()
            .acquire_timeout(Duration::from_secs(10))
            .max_connections(match backend {
                Backend::Sqlite => 4,
                Backend::Postgres => 8,
            });
        let read_only = access != Access::ReadWrite;
        options = match backend {
            Backend::Sqlite => options.after_connect(|conn, _| {
                Box::pin(async move {
                    conn.execute("PRAGMA busy_timeout = 10000").await?;
                    conn.execute("PRAGMA foreign_keys = ON").await?;
                    conn.execute("PRAGMA synchronous = NORMAL").await?;
                    Ok(())
                })
            }),
            // The server refuses any write on a reader's sessions.
            Backend::Postgres if read_only => options.after_connect(|conn, _| {
                Box::pin(async move {
                    conn.execute("SET default_transaction_read_only = on")
                        .await?;
                    Ok(())
                })
            }),
            Backend::Postgres => options,
        };
        let pool = options.connect(&sqlx_url).await.map_err(connect_err)?;
        if backend == Backend::Sqlite && !read_only {
            pool.execute("PRAGMA journal_mode = WAL")
                .await
                .map_err(connect_err)?;
        }
        Ok(Store {
            pool,
            backend,
            url: url.to_string(),
            redacted,
            sqlite_path,
            clock: Arc::new(SystemClock),
        })
    }

    /// The backend and the URL without credentials, e.g. `PostgreSQL postgres://***@db/lab`.
    pub fn describe(&self) -> String {
        let name = match self.backend {
            Backend::Sqlite => "SQLite",
            Backend::Postgres => "PostgreSQL",
        };
        format!("{name} {}", self.redacted)
    }

    /// Which engine this store talks to.
    /// The store's URL with any password redacted: safe to print.
    pub fn redacted_url(&self) -> &str {
        &self.redacted
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Applies every pending migration of this backend; a no-op when up to date.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        let err = |source| StoreError::Migrate {
            url: self.redacted.clone(),
            source,
        };
        let migrator = migrations::migrator(self.backend).await.map_err(err)?;
        migrator.run(&self.pool).await.map_err(err)
    }

    /// (version, description) of every migration embedded for this backend, in order.
    pub fn migrations(&self) -> Vec<(i64, &'static str)> {
        migrations::list(self.backend)
    }

    /// Applies the pending migrations up to and including `version` (0: none). For testing
    /// upgrades from older schemas; [`Store::migrate`] applies them all.
    pub async fn migrate_to(&self, version: i64) -> Result<(), StoreError> {
        let err = |source| StoreError::Migrate {
            url: self.redacted.clone(),
            source,
        };
        let migrator = migrations::migrator_to(self.backend, version)
            .await
            .map_err(err)?;
        migrator.run(&self.pool).await.map_err(err)
    }

    /// The schema as sorted lines (tables with their columns, indexes, constraints and foreign
    /// keys): equal listings mean equal schemas, whatever path of migrations led there.
    pub async fn schema(&self) -> Result<Vec<String>, StoreError> {
        let queries: &[&str] = match self.backend {
            Backend::Sqlite => &[
                "SELECT 'column ' || m.name || '.' || p.name || ' ' || p.type || \
                 ' notnull=' || p.\"notnull\" || ' default=' || COALESCE(p.dflt_value, '-') || \
                 ' pk=' || p.pk \
                 FROM sqlite_master m JOIN pragma_table_info(m.name) p WHERE m.type = 'table'",
                "SELECT 'fk ' || m.name || '.' || f.\"from\" || ' -> ' || f.\"table\" || '.' || \
                 COALESCE(f.\"to\", '-') \
                 FROM sqlite_master m JOIN pragma_foreign_key_list(m.name) f \
                 WHERE m.type = 'table'",
                "SELECT type || ' ' || tbl_name || '.' || name || ' ' || COALESCE(sql, '-') \
                 FROM sqlite_master WHERE type <> 'table'",
            ],
            Backend::Postgres => &[
                "SELECT 'column ' || table_name::text || '.' || column_name::text || ' ' || \
                 data_type::text || ' nullable=' || is_nullable::text || ' default=' || \
                 COALESCE(column_default::text, '-') || ' identity=' || is_identity::text \
                 FROM information_schema.columns WHERE table_schema = current_schema()",
                "SELECT 'index ' || tablename::text || '.' || indexname::text || ' ' || indexdef \
                 FROM pg_indexes WHERE schemaname = current_schema()",
                "SELECT 'constraint ' || conrelid::regclass::text || '.' || conname::text || ' ' || \
                 pg_get_constraintdef(oid) \
                 FROM pg_constraint WHERE connamespace = current_schema()::regnamespace",
            ],
        };
        let mut lines = Vec::new();
        for sql in queries {
            let rows = sqlx::query(sql)
                .fetch_all(&self.pool)
                .await
                .map_err(self.query_err("listing the schema"))?;
            for row in rows {
                lines.push(
                    sqlx::Row::try_get::<String, _>(&row, 0)
                        .map_err(self.query_err("listing the schema"))?,
                );
            }
        }
        lines.sort();
        Ok(lines)
    }

    /// Closes every pooled connection.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    fn query_err(&self, doing: &'static str) -> impl Fn(sqlx::Error) -> StoreError + '_ {
        move |source| StoreError::Query {
            url: self.redacted.clone(),
            doing,
            source,
        }
    }

    fn corrupt(&self, what: String) -> StoreError {
        StoreError::Corrupt {
            url: self.redacted.clone(),
            what,
        }
    }
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("backend", &self.backend)
            .field("url", &self.redacted)
            .finish_non_exhaustive()
    }
}

impl Store {
    /// The same store, stamping rows with `clock`: tests move time instead of sleeping.
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Now, by the store's clock (unix milliseconds).
    pub fn now_ms(&self) -> i64 {
        self.clock.now_ms()
    }
}

pub use crate::canonical::canonical_json;

/// The content address of a JSON value: sha256 hex of its canonical text.
pub fn content_hash(canonical: &str) -> String {
    crate::canonical::sha256_hex(canonical.as_bytes())
}
