//! Remediation pull requests: one row per branch, updated in place.

use sqlx::any::AnyRow;
use sqlx::Row;

use super::{PullRequest, PullRequestState, Store, StoreError};

const PR_COLUMNS: &str = "id, branch, url, number, state, deviation_keys, created_at, updated_at";

impl Store {
    /// Records the pull request of `branch` and returns its id. A branch is one change set: when
    /// it is already recorded, that row is updated in place (url, number, deviation keys) and
    /// open again; never a second row. `deviation_keys` are stored sorted, without repeats.
    pub async fn record_pull_request(
        &self,
        branch: &str,
        url: Option<&str>,
        number: Option<i64>,
        deviation_keys: &[String],
    ) -> Result<i64, StoreError> {
        if branch.is_empty() {
            return Err(StoreError::InvalidReport(
                "a pull request needs its branch".into(),
            ));
        }
        let mut keys = deviation_keys.to_vec();
        keys.sort();
        keys.dedup();
        let keys = serde_json::Value::from(keys).to_string();
        let now = self.now_ms();
        sqlx::query(
            "INSERT INTO pull_requests \
             (branch, url, number, state, deviation_keys, created_at, updated_at) \
             VALUES ($1, $2, $3, 'open', $4, $5, $5) \
             ON CONFLICT (branch) DO UPDATE SET url = excluded.url, number = excluded.number, \
             state = 'open', deviation_keys = excluded.deviation_keys, \
             updated_at = excluded.updated_at \
             RETURNING id",
        )
        .bind(branch)
        .bind(url)
        .bind(number)
        .bind(keys)
        .bind(now)
        .fetch_one(&self.pool)
        .await
        .and_then(|row| row.try_get(0))
        .map_err(self.query_err("recording a pull request"))
    }

    /// Sets the state of pull request `id`.
    pub async fn set_pull_request_state(
        &self,
        id: i64,
        state: PullRequestState,
    ) -> Result<(), StoreError> {
        let updated =
            sqlx::query("UPDATE pull_requests SET state = $1, updated_at = $2 WHERE id = $3")
                .bind(state.as_str())
                .bind(self.now_ms())
                .bind(id)
                .execute(&self.pool)
                .await
                .map_err(self.query_err("setting a pull request's state"))?;
        if updated.rows_affected() == 0 {
            return Err(StoreError::NotFound {
                what: "pull request",
                id,
            });
        }
        Ok(())
    }

    /// Every open pull request, oldest first.
    pub async fn open_pull_requests(&self) -> Result<Vec<PullRequest>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {PR_COLUMNS} FROM pull_requests WHERE state = 'open' ORDER BY id"
        ))
        .fetch_all(&self.pool)
        .await
        .map_err(self.query_err("reading open pull requests"))?;
        rows.iter().map(|r| self.pull_request(r)).collect()
    }

    fn pull_request(&self, r: &AnyRow) -> Result<PullRequest, StoreError> {
        let state: String = self.get(r, "state")?;
        let keys: String = self.get(r, "deviation_keys")?;
        let keys = serde_json::from_str(&keys)
            .map_err(|e| self.corrupt(format!("deviation keys of a pull request: {e}")))?;
        Ok(PullRequest {
            id: self.get(r, "id")?,
            branch: self.get(r, "branch")?,
            url: self.get(r, "url")?,
            number: self.get(r, "number")?,
            state: PullRequestState::parse(&state)
                .ok_or_else(|| self.corrupt(format!("pull request state `{state}`")))?,
            deviation_keys: keys,
            created_at: self.get(r, "created_at")?,
            updated_at: self.get(r, "updated_at")?,
        })
    }
}
