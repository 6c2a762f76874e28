//! Remediation pull requests: one row per branch, updated in place.

use sqlx::any::AnyRow;
use sqlx::Row;

use super::{PullRequest, PullRequestState, Store, StoreError};

const PR_COLUMNS: &str =
    "id, branch, url, number, state, deviation_keys, fingerprint, created_at, updated_at";

/// How a pull request names a deviation it covers: `Kind/name`, then its field path if any.
pub fn deviation_key(kind: &str, name: &str, field_path: &str) -> String {
    if field_path.is_empty() {
        format!("{kind}/{name}")
    } else {
        format!("{kind}/{name} {field_path}")
    }
}

impl PullRequest {
    /// `PR #12 open`, as status and MCP answers say it.
    pub fn summary(&self) -> String {
        match self.number {
            Some(n) => format!("PR #{n} {}", self.state.as_str()),
            None => format!("pull request of {} {}", self.branch, self.state.as_str()),
        }
    }
}

impl Store {
    /// Labctl's open pull requests by the key of each deviation they cover
    /// ([`deviation_key`]).
    pub async fn open_pull_requests_by_deviation(
        &self,
    ) -> Result<std::collections::BTreeMap<String, PullRequest>, StoreError> {
        let mut out = std::collections::BTreeMap::new();
        for pr in self.open_pull_requests().await? {
            for key in &pr.deviation_keys {
                out.insert(key.clone(), pr.clone());
            }
        }
        Ok(out)
    }

    /// Records the open pull request of `branch` and returns its id. A branch is one change
    /// set: when it is already recorded, that row is updated in place (url, number, deviation
    /// keys, fingerprint) and open again; never a second row. `deviation_keys` are stored
    /// sorted, without repeats; `fingerprint` names what was proposed (the deviations and their
    /// live values).
    pub async fn record_pull_request(
        &self,
        branch: &str,
        url: Option<&str>,
        number: Option<i64>,
        deviation_keys: &[String],
        fingerprint: Option<&str>,
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
             (branch, url, number, state, deviation_keys, fingerprint, created_at, updated_at) \
             VALUES ($1, $2, $3, 'open', $4, $5, $6, $6) \
             ON CONFLICT (branch) DO UPDATE SET url = excluded.url, number = excluded.number, \
             state = 'open', deviation_keys = excluded.deviation_keys, \
             fingerprint = excluded.fingerprint, updated_at = excluded.updated_at \
             RETURNING id",
        )
        .bind(branch)
        .bind(url)
        .bind(number)
        .bind(keys)
        .bind(fingerprint)
        .bind(now)
        .fetch_one(&self.pool)
        .await
        .and_then(|row| row.try_get(0))
        .map_err(self.query_err("recording a pull request"))
    }

    /// Sets the state of pull request `id`. `forget` drops its fingerprint: labctl closed it
    /// because what it proposed resolved, so the same change may be proposed again. A pull
    /// request a person closed keeps it.
    pub async fn set_pull_request_state(
        &self,
        id: i64,
        state: PullRequestState,
        forget: bool,
    ) -> Result<(), StoreError> {
        let sql = if forget {
            "UPDATE pull_requests SET state = $1, updated_at = $2, fingerprint = NULL WHERE id = $3"
        } else {
            "UPDATE pull_requests SET state = $1, updated_at = $2 WHERE id = $3"
        };
        let updated = sqlx::query(sql)
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

    /// The pull request of `branch`, in whatever state.
    pub async fn pull_request_by_branch(
        &self,
        branch: &str,
    ) -> Result<Option<PullRequest>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {PR_COLUMNS} FROM pull_requests WHERE branch = $1"
        ))
        .bind(branch)
        .fetch_optional(&self.pool)
        .await
        .map_err(self.query_err("reading a pull request"))?;
        row.map(|r| self.pull_request(&r)).transpose()
    }

    /// How many pull requests were first recorded at or after `since_ms` (Unix ms).
    pub async fn pull_requests_created_since(&self, since_ms: i64) -> Result<i64, StoreError> {
        sqlx::query("SELECT COUNT(*) FROM pull_requests WHERE created_at >= $1")
            .bind(since_ms)
            .fetch_one(&self.pool)
            .await
            .and_then(|row| row.try_get(0))
            .map_err(self.query_err("counting recent pull requests"))
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
            fingerprint: self.get(r, "fingerprint")?,
            created_at: self.get(r, "created_at")?,
            updated_at: self.get(r, "updated_at")?,
        })
    }
}
