//! Runtime suspensions: what an operator has told labctl to stop acting on, without a commit.

use sqlx::Row;

use super::{Store, StoreError, Suspension};

/// A reason is a sentence for the status page, not a document.
pub const MAX_SUSPEND_REASON: usize = 500;
const MAX_ACTOR: usize = 64;

impl Store {
    /// Suspends `kind` (every kind: `None`) or one resource of it (`name`), with `reason`,
    /// by `actor`. Suspending a scope again replaces its reason, actor and time.
    pub async fn suspend(
        &self,
        kind: Option<&str>,
        name: Option<&str>,
        reason: &str,
        actor: &str,
    ) -> Result<Suspension, StoreError> {
        let invalid = |what: String| Err(StoreError::InvalidSuspension(what));
        if reason.trim().is_empty() {
            return invalid("give a reason (--reason), for whoever finds it suspended".into());
        }
        if reason.chars().count() > MAX_SUSPEND_REASON {
            return invalid(format!(
                "the reason is over {MAX_SUSPEND_REASON} characters; say it shorter"
            ));
        }
        if kind.is_none() && name.is_some() {
            return invalid("a resource is suspended with its kind".into());
        }
        let actor: String = actor.chars().take(MAX_ACTOR).collect();
        let since = self.now_ms();
        sqlx::query(
            "INSERT INTO suspensions (kind, name, reason, actor, since) \
             VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (kind, name) DO UPDATE SET reason = excluded.reason, \
             actor = excluded.actor, since = excluded.since",
        )
        .bind(kind.unwrap_or(""))
        .bind(name.unwrap_or(""))
        .bind(reason.trim())
        .bind(&actor)
        .bind(since)
        .execute(&self.pool)
        .await
        .map_err(self.query_err("recording a suspension"))?;
        Ok(Suspension {
            kind: kind.map(str::to_string),
            name: name.map(str::to_string),
            reason: reason.trim().to_string(),
            actor,
            since,
        })
    }

    /// Lifts the suspension of exactly this scope; whether there was one. (Resuming a kind
    /// leaves a resource of it that was suspended on its own suspended.)
    pub async fn resume(&self, kind: Option<&str>, name: Option<&str>) -> Result<bool, StoreError> {
        let deleted = sqlx::query("DELETE FROM suspensions WHERE kind = $1 AND name = $2")
            .bind(kind.unwrap_or(""))
            .bind(name.unwrap_or(""))
            .execute(&self.pool)
            .await
            .map_err(self.query_err("lifting a suspension"))?;
        Ok(deleted.rows_affected() > 0)
    }

    /// Every suspension in force, the whole controller first, then by kind and name.
    pub async fn suspensions(&self) -> Result<Vec<Suspension>, StoreError> {
        let rows = sqlx::query(
            "SELECT kind, name, reason, actor, since FROM suspensions ORDER BY kind, name",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(self.query_err("reading suspensions"))?;
        rows.iter()
            .map(|r| {
                let kind: String = r
                    .try_get("kind")
                    .map_err(self.query_err("reading suspensions"))?;
                let name: String = r
                    .try_get("name")
                    .map_err(self.query_err("reading suspensions"))?;
                Ok(Suspension {
                    kind: (!kind.is_empty()).then_some(kind),
                    name: (!name.is_empty()).then_some(name),
                    reason: self.get(r, "reason")?,
                    actor: self.get(r, "actor")?,
                    since: self.get(r, "since")?,
                })
            })
            .collect()
    }
}
