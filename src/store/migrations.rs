//! The schema migrations, embedded in the binary (forward-only).

use std::borrow::Cow;
use std::future::Future;
use std::pin::Pin;

use sqlx::error::BoxDynError;
use sqlx::migrate::{MigrateError, Migration, MigrationSource, MigrationType, Migrator};

use super::Backend;

/// (version, description, SQL) of SQLite.
const SQLITE: &[(i64, &str, &str)] = &[(
    1,
    "initial",
    include_str!("../../migrations/sqlite/0001_initial.sql"),
)];

/// (version, description, SQL) of PostgreSQL.
const POSTGRES: &[(i64, &str, &str)] = &[(
    1,
    "initial",
    include_str!("../../migrations/postgres/0001_initial.sql"),
)];

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

/// The migrator of `backend`.
pub(crate) async fn migrator(backend: Backend) -> Result<Migrator, MigrateError> {
    Migrator::new(Embedded(match backend {
        Backend::Sqlite => SQLITE,
        Backend::Postgres => POSTGRES,
    }))
    .await
}
