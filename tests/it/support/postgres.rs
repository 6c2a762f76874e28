//! A fresh database on the machine's PostgreSQL (127.0.0.1:5432, user postgres, trust auth),
//! one per test so tests run in parallel. Unreachable PostgreSQL skips a test, unless CI=true,
//! where it fails.

use std::sync::atomic::{AtomicU64, Ordering};

use sqlx::{Connection, Executor};

/// The admin URL; override with LABCTL_TEST_POSTGRES (a URL ending in the admin database).
pub fn admin_url() -> String {
    std::env::var("LABCTL_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

/// A database created for one test; call [`TempDatabase::drop_database`] at the end.
pub struct TempDatabase {
    pub url: String,
    name: String,
}

/// An admin connection to the PostgreSQL server, or `None` (the test is skipped) when it is
/// unreachable outside CI.
pub async fn admin() -> Option<sqlx::AnyConnection> {
    sqlx::any::install_default_drivers();
    let admin = admin_url();
    match sqlx::AnyConnection::connect(&admin).await {
        Ok(c) => Some(c),
        Err(e) => {
            super::absent(&format!("PostgreSQL at {admin} is unreachable: {e}"));
            None
        }
    }
}

impl TempDatabase {
    pub async fn create() -> Option<TempDatabase> {
        let admin = admin_url();
        let mut conn = self::admin().await?;
        static SEQ: AtomicU64 = AtomicU64::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        let name = format!(
            "labctl_t_{}_{nanos}_{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        );
        conn.execute(format!("CREATE DATABASE {name}").as_str())
            .await
            .unwrap();
        let _ = conn.close().await;
        let server = admin
            .rsplit_once('/')
            .map_or(admin.as_str(), |(s, _)| s)
            .to_string();
        Some(TempDatabase {
            url: format!("{server}/{name}"),
            name,
        })
    }

    pub async fn drop_database(self) {
        if let Ok(mut conn) = sqlx::AnyConnection::connect(&admin_url()).await {
            let _ = conn
                .execute(format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name).as_str())
                .await;
            let _ = conn.close().await;
        }
    }
}
