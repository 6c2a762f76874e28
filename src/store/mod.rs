//! The state store: runs, content-addressed snapshots, deviation life cycles, pull requests and
//! the audit log, in SQLite (embedded default) or PostgreSQL.
//!
//! Every query is written once, for sqlx's Any driver: `$n` placeholders, times as unix
//! milliseconds, booleans as 0/1, JSON as text. The store takes plain records ([`RunReport`],
//! [`DeviationRecord`], …) and knows nothing of providers or MCP.

mod leader;
mod migrations;
mod query;
mod run;
mod types;
mod url;

use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sha2::{Digest, Sha256};
use sqlx::any::AnyPoolOptions;
use sqlx::AnyPool;
use sqlx::Executor;

pub use leader::LeaderGuard;
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
    #[error("invalid run report: {0}")]
    InvalidReport(String),
    #[error("run {0} is not running (finished, aborted or unknown)")]
    RunNotRunning(RunId),
    #[error("another labctl controller holds the leader lock on {target}; stop it or run without leadership")]
    LeaderBusy { target: String },
    #[error("leader lock file {}: {source}", path.display())]
    LockFile {
        path: PathBuf,
        source: std::io::Error,
    },
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
}

impl Store {
    /// Connects to `sqlite://PATH` (the file and its directory are created) or `postgres://…`.
    pub async fn connect(url: &str) -> Result<Store, StoreError> {
        sqlx::any::install_default_drivers();
        let redacted = redact(url);
        let target = url::parse(url)?;
        let connect_err = |source| StoreError::Connect {
            url: redacted.clone(),
            source,
        };
        let (backend, sqlx_url, sqlite_path) = match target {
            url::Target::Sqlite { path, url } => {
                if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                    std::fs::create_dir_all(dir).map_err(|source| StoreError::CreateDir {
                        path: dir.to_path_buf(),
                        source,
                    })?;
                }
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
        if backend == Backend::Sqlite {
            options = options.after_connect(|conn, _| {
                Box::pin(async move {
                    conn.execute("PRAGMA busy_timeout = 10000").await?;
                    conn.execute("PRAGMA foreign_keys = ON").await?;
                    Ok(())
                })
            });
        }
        let pool = options.connect(&sqlx_url).await.map_err(connect_err)?;
        if backend == Backend::Sqlite {
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

/// Unix milliseconds now.
pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Canonical JSON text: object keys sorted at every level, no whitespace.
pub fn canonical_json(value: &serde_json::Value) -> String {
    fn sorted(value: &serde_json::Value) -> serde_json::Value {
        match value {
            serde_json::Value::Object(map) => {
                let mut entries: Vec<_> = map.iter().collect();
                entries.sort_by(|a, b| a.0.cmp(b.0));
                serde_json::Value::Object(
                    entries
                        .into_iter()
                        .map(|(k, v)| (k.clone(), sorted(v)))
                        .collect(),
                )
            }
            serde_json::Value::Array(items) => {
                serde_json::Value::Array(items.iter().map(sorted).collect())
            }
            other => other.clone(),
        }
    }
    sorted(value).to_string()
}

/// The content address of a JSON value: sha256 hex of its canonical text.
pub fn content_hash(canonical: &str) -> String {
    Sha256::digest(canonical.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}
