//! Reading back the changes runs asked providers to make.

use sqlx::any::AnyRow;

use super::{
    AppliedChange, ChangeAction, ChangeRecord, ChangeResult, Deviation, ProviderRecord, RunId,
    Store, StoreError,
};

/// The confirmed change that resolved `deviation`, among its resource's `changes`: one the
/// run that resolved it made and saw take.
pub fn repaired_by<'a>(
    deviation: &Deviation,
    changes: &'a [AppliedChange],
) -> Option<&'a AppliedChange> {
    let run = deviation.resolved_run?;
    changes.iter().find(|c| {
        c.run == run
            && c.change.result == ChangeResult::Applied
            && c.change.kind == deviation.record.kind
            && c.change.name == deviation.record.name
    })
}

const CHANGE_COLUMNS: &str = "id, run_id, provider, action, kind, name, before_value, \
     after_value, result, error, applied_at";

impl Store {
    /// How each provider's observation went in run `run`, by provider name.
    pub async fn run_providers(&self, run: RunId) -> Result<Vec<ProviderRecord>, StoreError> {
        let rows = sqlx::query(
            "SELECT provider, asked, answered, observe_ms, error FROM run_providers \
             WHERE run_id = $1 ORDER BY provider",
        )
        .bind(run)
        .fetch_all(&self.pool)
        .await
        .map_err(self.query_err("reading a run's providers"))?;
        rows.iter()
            .map(|r| {
                Ok(ProviderRecord {
                    provider: self.get(r, "provider")?,
                    asked: self.get::<i64>(r, "asked")? != 0,
                    answered: self.get::<i64>(r, "answered")? != 0,
                    observe_ms: self.get(r, "observe_ms")?,
                    error: self.get(r, "error")?,
                })
            })
            .collect()
    }

    /// The changes run `run` asked for, in the order it made them.
    pub async fn run_changes(&self, run: RunId) -> Result<Vec<AppliedChange>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {CHANGE_COLUMNS} FROM applied_changes WHERE run_id = $1 ORDER BY id"
        ))
        .bind(run)
        .fetch_all(&self.pool)
        .await
        .map_err(self.query_err("reading a run's changes"))?;
        rows.iter().map(|r| self.applied_change(r)).collect()
    }

    /// Every change asked of one resource, oldest first.
    pub async fn resource_changes(
        &self,
        kind: &str,
        name: &str,
    ) -> Result<Vec<AppliedChange>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {CHANGE_COLUMNS} FROM applied_changes WHERE kind = $1 AND name = $2 \
             ORDER BY id"
        ))
        .bind(kind)
        .bind(name)
        .fetch_all(&self.pool)
        .await
        .map_err(self.query_err("reading a resource's changes"))?;
        rows.iter().map(|r| self.applied_change(r)).collect()
    }

    /// The `limit` most recent changes of any run, newest first.
    pub async fn recent_changes(&self, limit: u32) -> Result<Vec<AppliedChange>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {CHANGE_COLUMNS} FROM applied_changes ORDER BY id DESC LIMIT $1"
        ))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(self.query_err("reading recent changes"))?;
        rows.iter().map(|r| self.applied_change(r)).collect()
    }

    fn applied_change(&self, r: &AnyRow) -> Result<AppliedChange, StoreError> {
        let action: String = self.get(r, "action")?;
        let result: String = self.get(r, "result")?;
        let value = |column: &str| -> Result<Option<serde_json::Value>, StoreError> {
            let text: Option<String> = self.get(r, column)?;
            text.map(|t| self.json(&t)).transpose()
        };
        Ok(AppliedChange {
            id: self.get(r, "id")?,
            run: self.get(r, "run_id")?,
            at: self.get(r, "applied_at")?,
            change: ChangeRecord {
                provider: self.get(r, "provider")?,
                action: ChangeAction::parse(&action)
                    .ok_or_else(|| self.corrupt(format!("change action `{action}`")))?,
                kind: self.get(r, "kind")?,
                name: self.get(r, "name")?,
                before: value("before_value")?,
                after: value("after_value")?,
                result: ChangeResult::parse(&result)
                    .ok_or_else(|| self.corrupt(format!("change result `{result}`")))?,
                error: self.get(r, "error")?,
            },
        })
    }
}
