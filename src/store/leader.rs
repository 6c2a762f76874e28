//! One controller at a time: a PostgreSQL advisory lock or an exclusive lock on a file beside
//! the SQLite database.

use std::fs::{File, OpenOptions, TryLockError};
use std::path::PathBuf;
use std::time::Duration;

use sqlx::AnyConnection;
use sqlx::{Connection, Row};

use super::{Backend, Store, StoreError};

/// Advisory lock key of the leader lock ("labctl" + 1).
const LEADER_KEY: i64 = 0x6c61_6263_746c_0001;
/// How often a waiting candidate tries again.
const POLL: Duration = Duration::from_millis(500);

/// Leadership, held until [`LeaderGuard::release`] or drop (or the process dies).
pub struct LeaderGuard {
    held: Held,
}

impl std::fmt::Debug for LeaderGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let how = match self.held {
            Held::Postgres(_) => "advisory lock",
            Held::File(_) => "lock file",
        };
        f.debug_struct("LeaderGuard").field("held", &how).finish()
    }
}

enum Held {
    /// The session holding the advisory lock.
    Postgres(AnyConnection),
    /// The locked file.
    File(File),
}

impl Store {
    /// Takes the leader lock. With `wait`, tries every 500 ms until it is free; without,
    /// fails at once with [`StoreError::LeaderBusy`].
    pub async fn leader(&self, wait: bool) -> Result<LeaderGuard, StoreError> {
        match self.backend {
            Backend::Postgres => self.leader_postgres(wait).await,
            Backend::Sqlite => self.leader_file(wait).await,
        }
    }

    async fn leader_postgres(&self, wait: bool) -> Result<LeaderGuard, StoreError> {
        let mut conn =
            AnyConnection::connect(&self.url)
                .await
                .map_err(|source| StoreError::Connect {
                    url: self.redacted.clone(),
                    source,
                })?;
        loop {
            let got: bool = sqlx::query("SELECT pg_try_advisory_lock($1)")
                .bind(LEADER_KEY)
                .fetch_one(&mut conn)
                .await
                .and_then(|row| row.try_get(0))
                .map_err(self.query_err("taking the leader lock"))?;
            if got {
                return Ok(LeaderGuard {
                    held: Held::Postgres(conn),
                });
            }
            if !wait {
                let _ = conn.close().await;
                return Err(StoreError::LeaderBusy {
                    target: self.redacted.clone(),
                });
            }
            tokio::time::sleep(POLL).await;
        }
    }

    async fn leader_file(&self, wait: bool) -> Result<LeaderGuard, StoreError> {
        let db = self.sqlite_path.clone().unwrap_or_default();
        let mut path = db.into_os_string();
        path.push(".lock");
        let path = PathBuf::from(path);
        let err = |source| StoreError::LockFile {
            path: path.clone(),
            source,
        };
        let file = OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(false)
            .open(&path)
            .map_err(err)?;
        loop {
            match file.try_lock() {
                Ok(()) => {
                    return Ok(LeaderGuard {
                        held: Held::File(file),
                    })
                }
                Err(TryLockError::WouldBlock) if wait => tokio::time::sleep(POLL).await,
                Err(TryLockError::WouldBlock) => {
                    return Err(StoreError::LeaderBusy {
                        target: path.display().to_string(),
                    })
                }
                Err(TryLockError::Error(e)) => return Err(err(e)),
            }
        }
    }
}

impl LeaderGuard {
    /// Confirms leadership is still held, just before acting on it. A PostgreSQL advisory lock
    /// lives as long as its session: when the server restarts or the session is cut, the lock
    /// is gone, and another controller may already hold it. A file lock cannot be lost while
    /// the process lives.
    pub async fn confirm(&mut self) -> Result<(), StoreError> {
        let Held::Postgres(conn) = &mut self.held else {
            return Ok(());
        };
        let held: Result<i64, sqlx::Error> = sqlx::query_scalar(
            "SELECT COUNT(*) FROM pg_locks WHERE locktype = 'advisory' AND granted \
             AND pid = pg_backend_pid() \
             AND ((classid::bigint << 32) | objid::bigint) = $1",
        )
        .bind(LEADER_KEY)
        .fetch_one(&mut *conn)
        .await;
        match held {
            Ok(1) => Ok(()),
            Ok(_) => Err(StoreError::LeaderLost {
                detail: "the session no longer holds the advisory lock".into(),
            }),
            Err(e) => Err(StoreError::LeaderLost {
                detail: format!("the session holding the lock is gone ({e})"),
            }),
        }
    }

    /// Gives leadership up.
    pub async fn release(self) -> Result<(), StoreError> {
        match self.held {
            Held::Postgres(mut conn) => {
                // Closing the session releases the lock even if the unlock fails.
                let _ = sqlx::query("SELECT pg_advisory_unlock($1)")
                    .bind(LEADER_KEY)
                    .execute(&mut conn)
                    .await;
                let _ = conn.close().await;
                Ok(())
            }
            Held::File(file) => {
                let _ = file.unlock();
                Ok(())
            }
        }
    }
}
