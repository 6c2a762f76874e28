//! The schema migrations, embedded in the binary (forward-only).

use std::borrow::Cow;
use std::future::Future;
use std::pin::Pin;

use sqlx::error::BoxDynError;
use sqlx::migrate::{MigrateError, Migration, MigrationSource, MigrationType, Migrator};

use super::Backend;

/// (version, description, SQL) of SQLite.
const SQLITE: &[(i64, &str, &str)] = &[
    (
        1,
        "initial",
        include_str!("../../migrations/sqlite/0001_initial.sql"),
    ),
    (
        2,
        "run model",
        include_str!("../../migrations/sqlite/0002_run_model.sql"),
    ),
    (
        3,
        "pull request branch",
        include_str!("../../migrations/sqlite/0003_pull_request_branch.sql"),
    ),
    (
        4,
        "run reason and partial outcome",
        include_str!("../../migrations/sqlite/0004_run_reason_partial.sql"),
    ),
    (
        5,
        "applied changes",
        include_str!("../../migrations/sqlite/0005_applied_changes.sql"),
    ),
    (
        6,
        "deviation notified",
        include_str!("../../migrations/sqlite/0006_deviation_notified.sql"),
    ),
    (
        7,
        "suspensions",
        include_str!("../../migrations/sqlite/0007_suspensions.sql"),
    ),
    (
        8,
        "pull request fingerprint",
        include_str!("../../migrations/sqlite/0008_pull_request_fingerprint.sql"),
    ),
    (
        9,
        "blob packed",
        include_str!("../../migrations/sqlite/0009_blob_packed.sql"),
    ),
    (
        10,
        "status pages",
        include_str!("../../migrations/sqlite/0010_status_pages.sql"),
    ),
];

/// (version, description, SQL) of PostgreSQL.
const POSTGRES: &[(i64, &str, &str)] = &[
    (
        1,
        "initial",
        include_str!("../../migrations/postgres/0001_initial.sql"),
    ),
    (
        2,
        "run model",
        include_str!("../../migrations/postgres/0002_run_model.sql"),
    ),
    (
        3,
        "pull request branch",
        include_str!("../../migrations/postgres/0003_pull_request_branch.sql"),
    ),
    (
        4,
        "run reason and partial outcome",
        include_str!("../../migrations/postgres/0004_run_reason_partial.sql"),
    ),
    (
        5,
        "applied changes",
        include_str!("../../migrations/postgres/0005_applied_changes.sql"),
    ),
    (
        6,
        "deviation notified",
        include_str!("../../migrations/postgres/0006_deviation_notified.sql"),
    ),
    (
        7,
        "suspensions",
        include_str!("../../migrations/postgres/0007_suspensions.sql"),
    ),
    (
        8,
        "pull request fingerprint",
        include_str!("../../migrations/postgres/0008_pull_request_fingerprint.sql"),
    ),
    (
        9,
        "blob packed",
        include_str!("../../migrations/postgres/0009_blob_packed.sql"),
    ),
    (
        10,
        "status pages",
        include_str!("../../migrations/postgres/0010_status_pages.sql"),
    ),
];

/// Migrations compiled in, as a source for [`Migrator::new`]. (`sqlx::migrate!` needs sqlx's
/// `macros` feature, which this crate does not build.)
#[derive(Debug)]
struct Embedded(&'static [(i64, &'static str, &'static str)]);

impl MigrationSource<'static> for Embedded {
    fn resolve(
        self,
    ) -> Pin<Box<dyn Future<Output = Result<Vec<Migration>, BoxDynError>> + Send + 'static>> {
        let migrations = self
            .0
            .iter()
            .map(|&(version, description, sql)| {
                Migration::new(
                    version,
                    Cow::Borrowed(description),
                    MigrationType::Simple,
                    Cow::Borrowed(sql),
                    false,
                )
            })
            .collect();
        Box::pin(std::future::ready(Ok(migrations)))
    }
}

/// The embedded migrations of `backend`, in order.
fn embedded(backend: Backend) -> &'static [(i64, &'static str, &'static str)] {
    match backend {
        Backend::Sqlite => SQLITE,
        Backend::Postgres => POSTGRES,
    }
}

/// (version, description) of every embedded migration of `backend`, in order.
pub(crate) fn list(backend: Backend) -> Vec<(i64, &'static str)> {
    embedded(backend)
        .iter()
        .map(|&(version, description, _)| (version, description))
        .collect()
}

/// The migrator of `backend`.
pub(crate) async fn migrator(backend: Backend) -> Result<Migrator, MigrateError> {
    Migrator::new(Embedded(embedded(backend))).await
}

/// The migrator of the migrations of `backend` up to and including `version`.
pub(crate) async fn migrator_to(backend: Backend, version: i64) -> Result<Migrator, MigrateError> {
    let all = embedded(backend);
    let end = all.iter().take_while(|m| m.0 <= version).count();
    Migrator::new(Embedded(&all[..end])).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_backends_have_the_same_increasing_versions() {
        let versions = |b| list(b).into_iter().map(|m| m.0).collect::<Vec<_>>();
        let sqlite = versions(Backend::Sqlite);
        assert_eq!(sqlite, versions(Backend::Postgres));
        assert!(sqlite.windows(2).all(|w| w[0] < w[1]), "{sqlite:?}");
    }
}
