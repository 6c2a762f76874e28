//! Reading the store, the audit log and retention.

use sqlx::any::AnyRow;
use sqlx::Row;

use super::{
    ActorKind, AuditEntry, AuditRecord, Backend, Deviation, DeviationRecord, DeviationType,
    LatestModel, Outcome, PruneReport, RetentionPolicy, Run, RunCounts, Severity, Store,
    StoreError, StoreStats,
};

const RUN_COLUMNS: &str = "id, trigger, controller, started_at, finished_at, commit_sha, outcome, \
     resources, deviations_open, deviations_opened, deviations_resolved, error, model_blob, reason";

/// Deviations worst first, then by resource and field.
const WORST_FIRST: &str = " ORDER BY CASE severity WHEN 'critical' THEN 0 WHEN 'high' THEN 1 \
     WHEN 'medium' THEN 2 ELSE 3 END, kind, name, field_path";

/// ` AND severity IN (…)`: the severities at least `min`. Our own constants, not input, so
/// they are safe to inline.
fn severity_at_least(min: Severity) -> String {
    let allowed: Vec<String> = Severity::ALL
        .iter()
        .filter(|s| **s >= min)
        .map(|s| format!("'{s}'"))
        .collect();
    format!(" AND severity IN ({})", allowed.join(", "))
}

const DEVIATION_COLUMNS: &str = "id, kind, name, field_path, dtype, severity, auto_correctable, \
     remediation, expected, actual, opened_at, opened_run, last_seen_at, last_seen_run, \
     seen_count, resolved_at, resolved_run, resolved_commit";

const DAY_MS: i64 = 24 * 60 * 60 * 1000;

impl Store {
    /// Appends one entry to the audit log and returns its id.
    pub async fn audit(&self, entry: &AuditEntry) -> Result<i64, StoreError> {
        audit_insert(entry, self.now_ms())
            .fetch_one(&self.pool)
            .await
            .and_then(|row| row.try_get(0))
            .map_err(self.query_err("appending to the audit log"))
    }

    /// Appends entries in one transaction (group commit): all are stored or none.
    pub async fn audit_all(&self, entries: &[AuditEntry]) -> Result<(), StoreError> {
        let err = self.query_err("appending to the audit log");
        let mut tx = self.pool.begin().await.map_err(&err)?;
        let at = self.now_ms();
        for entry in entries {
            audit_insert(entry, at)
                .execute(&mut *tx)
                .await
                .map_err(&err)?;
        }
        tx.commit().await.map_err(&err)
    }

    /// Whether this connection may append to the audit log, found by trying (nothing is
    /// written): SQLite opens a file this user cannot write read-only without saying so, and
    /// a PostgreSQL role may lack the right.
    pub async fn check_writable(&self) -> Result<(), StoreError> {
        let err = self.query_err("checking that the audit log can be written");
        let mut tx = self.pool.begin().await.map_err(&err)?;
        sqlx::query(
            "INSERT INTO audit_log (at, actor_kind, actor, action, details) \
             SELECT 0, 'mcp', '', '', '{}' WHERE 1 = 0",
        )
        .execute(&mut *tx)
        .await
        .map_err(&err)?;
        tx.rollback().await.map_err(&err)
    }

    /// The latest `limit` audit entries, newest first.
    pub async fn recent_audit(&self, limit: u32) -> Result<Vec<AuditRecord>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, at, actor_kind, actor, action, target, details FROM audit_log \
             ORDER BY id DESC LIMIT $1",
        )
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(self.query_err("reading the audit log"))?;
        rows.iter()
            .map(|r| {
                let kind: String = self.get(r, "actor_kind")?;
                let details: String = self.get(r, "details")?;
                Ok(AuditRecord {
                    id: self.get(r, "id")?,
                    at: self.get(r, "at")?,
                    entry: AuditEntry {
                        actor_kind: ActorKind::parse(&kind)
                            .ok_or_else(|| self.corrupt(format!("actor kind `{kind}`")))?,
                        actor: self.get(r, "actor")?,
                        action: self.get(r, "action")?,
                        target: self.get(r, "target")?,
                        details: self.json(&details)?,
                    },
                })
            })
            .collect()
    }

    /// Open deviations, optionally of one kind and at least some severity; worst first.
    pub async fn open_deviations(
        &self,
        kind: Option<&str>,
        min_severity: Option<Severity>,
    ) -> Result<Vec<Deviation>, StoreError> {
        let mut sql =
            format!("SELECT {DEVIATION_COLUMNS} FROM deviations WHERE resolved_at IS NULL");
        if kind.is_some() {
            sql.push_str(" AND kind = $1");
        }
        if let Some(min) = min_severity {
            sql.push_str(&severity_at_least(min));
        }
        sql.push_str(WORST_FIRST);
        let mut query = sqlx::query(&sql);
        if let Some(kind) = kind {
            query = query.bind(kind);
        }
        let rows = query
            .fetch_all(&self.pool)
            .await
            .map_err(self.query_err("reading open deviations"))?;
        rows.iter().map(|r| self.deviation(r)).collect()
    }

    /// Open deviations of at least `min` severity not yet announced to the notification
    /// targets, worst first, at most `limit`.
    pub async fn unnotified_deviations(
        &self,
        min: Severity,
        limit: i64,
    ) -> Result<Vec<Deviation>, StoreError> {
        let sql = format!(
            "SELECT {DEVIATION_COLUMNS} FROM deviations WHERE resolved_at IS NULL \
             AND notified_at IS NULL{}{WORST_FIRST} LIMIT $1",
            severity_at_least(min)
        );
        let rows = sqlx::query(&sql)
            .bind(limit)
            .fetch_all(&self.pool)
            .await
            .map_err(self.query_err("reading deviations to notify"))?;
        rows.iter().map(|r| self.deviation(r)).collect()
    }

    /// Records that the deviations `ids` were announced at `at` (Unix milliseconds).
    pub async fn mark_notified(&self, ids: &[i64], at: i64) -> Result<(), StoreError> {
        let mut tx = self
            .pool
            .begin()
            .await
            .map_err(self.query_err("marking deviations notified"))?;
        for id in ids {
            sqlx::query("UPDATE deviations SET notified_at = $1 WHERE id = $2")
                .bind(at)
                .bind(id)
                .execute(&mut *tx)
                .await
                .map_err(self.query_err("marking deviations notified"))?;
        }
        tx.commit()
            .await
            .map_err(self.query_err("marking deviations notified"))
    }

    /// Every life cycle of one deviation, oldest first.
    pub async fn deviation_history(
        &self,
        kind: &str,
        name: &str,
        field_path: &str,
    ) -> Result<Vec<Deviation>, StoreError> {
        self.history(kind, name, Some(field_path)).await
    }

    /// Every deviation ever recorded of one resource, whatever the field, oldest first.
    pub async fn resource_history(
        &self,
        kind: &str,
        name: &str,
    ) -> Result<Vec<Deviation>, StoreError> {
        self.history(kind, name, None).await
    }

    async fn history(
        &self,
        kind: &str,
        name: &str,
        field_path: Option<&str>,
    ) -> Result<Vec<Deviation>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {DEVIATION_COLUMNS} FROM deviations \
             WHERE kind = $1 AND name = $2 AND field_path = COALESCE($3, field_path) ORDER BY id"
        ))
        .bind(kind)
        .bind(name)
        .bind(field_path)
        .fetch_all(&self.pool)
        .await
        .map_err(self.query_err("reading deviation history"))?;
        rows.iter().map(|r| self.deviation(r)).collect()
    }

    /// Runs started in `[from_ms, to_ms)`, oldest first.
    pub async fn runs_between(&self, from_ms: i64, to_ms: i64) -> Result<Vec<Run>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {RUN_COLUMNS} FROM runs WHERE started_at >= $1 AND started_at < $2 ORDER BY id"
        ))
        .bind(from_ms)
        .bind(to_ms)
        .fetch_all(&self.pool)
        .await
        .map_err(self.query_err("reading runs"))?;
        rows.iter().map(|r| self.run(r)).collect()
    }

    /// At most `limit` runs older than run `before` (or the newest), newest first: one page
    /// of the run list, named by where it starts, so a link to it stays valid as runs come.
    pub async fn runs_before(
        &self,
        before: Option<i64>,
        limit: u32,
    ) -> Result<Vec<Run>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {RUN_COLUMNS} FROM runs WHERE id < $1 ORDER BY id DESC LIMIT $2"
        ))
        .bind(before.unwrap_or(i64::MAX))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(self.query_err("reading runs"))?;
        rows.iter().map(|r| self.run(r)).collect()
    }

    /// Every run started since `from_ms`, oldest first, as (started, finished, open
    /// deviations after it): what a trend over time needs, and no more.
    pub async fn run_points(
        &self,
        from_ms: i64,
    ) -> Result<Vec<(i64, Option<i64>, i64)>, StoreError> {
        let rows = sqlx::query(
            "SELECT started_at, finished_at, deviations_open FROM runs \
             WHERE started_at >= $1 ORDER BY id",
        )
        .bind(from_ms)
        .fetch_all(&self.pool)
        .await
        .map_err(self.query_err("reading runs"))?;
        rows.iter()
            .map(|r| {
                Ok((
                    self.get(r, "started_at")?,
                    self.get(r, "finished_at")?,
                    self.get(r, "deviations_open")?,
                ))
            })
            .collect()
    }

    /// Run `id`, if the store still has it.
    pub async fn run_by_id(&self, id: i64) -> Result<Option<Run>, StoreError> {
        let row = sqlx::query(&format!("SELECT {RUN_COLUMNS} FROM runs WHERE id = $1"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(self.query_err("reading a run"))?;
        row.as_ref().map(|r| self.run(r)).transpose()
    }

    /// The deviations run `id` opened or resolved, in the order they were recorded.
    pub async fn run_deviations(&self, id: i64) -> Result<Vec<Deviation>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {DEVIATION_COLUMNS} FROM deviations \
             WHERE opened_run = $1 OR resolved_run = $1 ORDER BY id"
        ))
        .bind(id)
        .fetch_all(&self.pool)
        .await
        .map_err(self.query_err("reading a run's deviations"))?;
        rows.iter().map(|r| self.deviation(r)).collect()
    }

    /// The most recently started run.
    pub async fn latest_run(&self) -> Result<Option<Run>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {RUN_COLUMNS} FROM runs ORDER BY id DESC LIMIT 1"
        ))
        .fetch_optional(&self.pool)
        .await
        .map_err(self.query_err("reading the latest run"))?;
        row.map(|r| self.run(&r)).transpose()
    }

    /// The latest run's id and when it finished (`None` while it runs): what a reader caching
    /// anything derived from runs checks before each answer, so one small row.
    pub async fn latest_run_key(&self) -> Result<Option<(i64, Option<i64>)>, StoreError> {
        let row = sqlx::query("SELECT id, finished_at FROM runs ORDER BY id DESC LIMIT 1")
            .fetch_optional(&self.pool)
            .await
            .map_err(self.query_err("reading the latest run"))?;
        row.map(|r| Ok((self.get(&r, "id")?, self.get(&r, "finished_at")?)))
            .transpose()
    }

    /// The reconciled model of the most recent finished run (succeeded or partial) that
    /// recorded one: a partial run's model says which resources are unknown.
    pub async fn latest_model(&self) -> Result<Option<LatestModel>, StoreError> {
        let row = sqlx::query(
            "SELECT r.id, r.commit_sha, r.finished_at, b.hash, b.body, b.packed, b.size FROM runs r \
             JOIN blobs b ON b.hash = r.model_blob \
             WHERE r.outcome IN ('succeeded', 'partial') ORDER BY r.id DESC LIMIT 1",
        )
        .fetch_optional(&self.pool)
        .await
        .map_err(self.query_err("reading the latest model"))?;
        row.map(|r| {
            Ok(LatestModel {
                run: self.get(&r, "id")?,
                commit_sha: self.get(&r, "commit_sha")?,
                finished_at: self.get(&r, "finished_at")?,
                text: self.body(&r)?,
                hash: self.get(&r, "hash")?,
            })
        })
        .transpose()
    }

    /// When the most recent run with `outcome` finished (Unix milliseconds), if any did.
    pub async fn last_finished(&self, outcome: Outcome) -> Result<Option<i64>, StoreError> {
        let row = sqlx::query(
            "SELECT finished_at FROM runs WHERE outcome = $1 AND finished_at IS NOT NULL \
             ORDER BY id DESC LIMIT 1",
        )
        .bind(outcome.as_str())
        .fetch_optional(&self.pool)
        .await
        .map_err(self.query_err("reading the last finished run"))?;
        row.map(|r| self.get(&r, "finished_at")).transpose()
    }

    /// Row counts per table and the database size in bytes.
    pub async fn stats(&self) -> Result<StoreStats, StoreError> {
        let size_sql = match self.backend {
            Backend::Postgres => "pg_database_size(current_database())",
            Backend::Sqlite => {
                "(SELECT page_count * page_size FROM pragma_page_count(), pragma_page_size())"
            }
        };
        let sql = format!(
            "SELECT (SELECT COUNT(*) FROM runs), (SELECT COUNT(*) FROM blobs), \
             (SELECT COUNT(*) FROM desired_snapshots), (SELECT COUNT(*) FROM observed_snapshots), \
             (SELECT COUNT(*) FROM deviations), \
             (SELECT COUNT(*) FROM deviations WHERE resolved_at IS NULL), \
             (SELECT COUNT(*) FROM pull_requests), (SELECT COUNT(*) FROM audit_log), {size_sql}, \
             (SELECT COUNT(*) FROM applied_changes)"
        );
        let row = sqlx::query(&sql)
            .fetch_one(&self.pool)
            .await
            .map_err(self.query_err("counting rows"))?;
        let n = |i: usize| -> Result<i64, StoreError> {
            row.try_get::<i64, _>(i)
                .map_err(self.query_err("counting rows"))
        };
        Ok(StoreStats {
            runs: n(0)?,
            blobs: n(1)?,
            desired_snapshots: n(2)?,
            observed_snapshots: n(3)?,
            deviations: n(4)?,
            open_deviations: n(5)?,
            pull_requests: n(6)?,
            audit_log: n(7)?,
            database_bytes: n(8)?,
            applied_changes: n(9)?,
        })
    }

    /// Deletes history older than `policy`: finished runs (never the latest, nor the one holding
    /// the latest model), observed
    /// snapshots (never a provider's latest), desired snapshots no run refers to, resolved
    /// deviations, then unreferenced blobs; and old audit entries. Open deviations stay.
    pub async fn prune(&self, policy: RetentionPolicy) -> Result<PruneReport, StoreError> {
        let now = self.now_ms();
        let runs_cutoff = now - i64::from(policy.keep_runs_days) * DAY_MS;
        let mut tx = self.pool.begin().await.map_err(self.query_err("pruning"))?;
        let statements: [(&str, i64, &'static str); 7] = [
            (
                "DELETE FROM runs WHERE outcome <> 'running' AND finished_at < $1 \
                 AND id <> (SELECT MAX(id) FROM runs) \
                 AND id <> COALESCE((SELECT MAX(id) FROM runs \
                     WHERE model_blob IS NOT NULL AND outcome IN ('succeeded', 'partial')), 0)",
                runs_cutoff,
                "pruning runs",
            ),
            (
                // A change is kept as long as its run.
                "DELETE FROM applied_changes WHERE applied_at < $1 \
                 AND NOT EXISTS (SELECT 1 FROM runs r WHERE r.id = applied_changes.run_id)",
                runs_cutoff,
                "pruning applied changes",
            ),
            (
                // Kept as long as its run, too.
                "DELETE FROM run_providers WHERE run_id < $1 \
                 AND NOT EXISTS (SELECT 1 FROM runs r WHERE r.id = run_providers.run_id)",
                i64::MAX,
                "pruning run providers",
            ),
            (
                "DELETE FROM observed_snapshots WHERE last_seen_at < $1 \
                 AND id NOT IN (SELECT MAX(id) FROM observed_snapshots GROUP BY provider)",
                runs_cutoff,
                "pruning observed snapshots",
            ),
            (
                "DELETE FROM desired_snapshots WHERE first_seen_at < $1 AND commit_sha NOT IN \
                 (SELECT commit_sha FROM runs WHERE commit_sha IS NOT NULL)",
                runs_cutoff,
                "pruning desired snapshots",
            ),
            (
                "DELETE FROM deviations WHERE resolved_at IS NOT NULL AND resolved_at < $1",
                runs_cutoff,
                "pruning resolved deviations",
            ),
            (
                "DELETE FROM blobs WHERE created_at < $1 \
                 AND NOT EXISTS (SELECT 1 FROM observed_snapshots o WHERE o.blob_hash = blobs.hash) \
                 AND NOT EXISTS (SELECT 1 FROM desired_snapshots d WHERE d.blob_hash = blobs.hash) \
                 AND NOT EXISTS (SELECT 1 FROM runs r WHERE r.model_blob = blobs.hash)",
                now + 1,
                "pruning blobs",
            ),
        ];
        let mut deleted = [0u64; 8];
        for (i, (sql, cutoff, doing)) in statements.into_iter().enumerate() {
            deleted[i] = sqlx::query(sql)
                .bind(cutoff)
                .execute(&mut *tx)
                .await
                .map_err(self.query_err(doing))?
                .rows_affected();
        }
        deleted[7] = self.prune_audit_in(&mut tx, policy, now).await?;
        tx.commit().await.map_err(self.query_err("pruning"))?;
        Ok(PruneReport {
            runs: deleted[0],
            applied_changes: deleted[1],
            observed_snapshots: deleted[3],
            desired_snapshots: deleted[4],
            deviations: deleted[5],
            blobs: deleted[6],
            audit_log: deleted[7],
        })
    }

    /// Deletes audit entries older than `policy.keep_audit_days` and all but the newest
    /// `policy.keep_audit_rows`; the number deleted. What [`Store::prune`] does to the audit
    /// log, for a writer of audit rows that runs no reconcile (`labctl mcp`).
    pub async fn prune_audit(&self, policy: RetentionPolicy) -> Result<u64, StoreError> {
        let mut tx = self
            .pool
            .begin()
            .await
            .map_err(self.query_err("pruning the audit log"))?;
        let deleted = self.prune_audit_in(&mut tx, policy, self.now_ms()).await?;
        tx.commit()
            .await
            .map_err(self.query_err("pruning the audit log"))?;
        Ok(deleted)
    }

    async fn prune_audit_in(
        &self,
        tx: &mut sqlx::Transaction<'_, sqlx::Any>,
        policy: RetentionPolicy,
        now: i64,
    ) -> Result<u64, StoreError> {
        let err = self.query_err("pruning the audit log");
        let old = sqlx::query("DELETE FROM audit_log WHERE at < $1")
            .bind(now - i64::from(policy.keep_audit_days) * DAY_MS)
            .execute(&mut **tx)
            .await
            .map_err(&err)?
            .rows_affected();
        // Walks the newest ids down the primary key: as cheap as the rows kept, not the table.
        let surplus = sqlx::query(
            "DELETE FROM audit_log WHERE id < COALESCE(\
               (SELECT MIN(id) FROM (SELECT id FROM audit_log ORDER BY id DESC LIMIT $1) kept), \
               (SELECT MAX(id) + 1 FROM audit_log))",
        )
        .bind(i64::try_from(policy.keep_audit_rows).unwrap_or(i64::MAX))
        .execute(&mut **tx)
        .await
        .map_err(&err)?
        .rows_affected();
        Ok(old + surplus)
    }

    pub(super) fn get<'r, T>(&self, row: &'r AnyRow, column: &str) -> Result<T, StoreError>
    where
        T: sqlx::Decode<'r, sqlx::Any> + sqlx::Type<sqlx::Any>,
    {
        row.try_get(column)
            .map_err(|e| self.corrupt(format!("column `{column}`: {e}")))
    }

    /// The text of the blob in `row` (columns `body`, `packed`, `size`): compressed or, as
    /// written before bodies were, plain.
    pub(super) fn body(&self, row: &AnyRow) -> Result<String, StoreError> {
        let packed: Option<Vec<u8>> = self.get(row, "packed")?;
        match packed {
            None => self.get(row, "body"),
            Some(packed) => {
                let size: i64 = self.get(row, "size")?;
                super::types::unpack(&packed, u64::try_from(size).unwrap_or(0))
                    .map_err(|e| self.corrupt(e))
            }
        }
    }

    pub(super) fn json(&self, text: &str) -> Result<serde_json::Value, StoreError> {
        serde_json::from_str(text).map_err(|e| self.corrupt(format!("stored JSON: {e}")))
    }

    fn run(&self, r: &AnyRow) -> Result<Run, StoreError> {
        let outcome: String = self.get(r, "outcome")?;
        let reason: Option<String> = self.get(r, "reason")?;
        Ok(Run {
            id: self.get(r, "id")?,
            trigger: self.get(r, "trigger")?,
            controller: self.get(r, "controller")?,
            started_at: self.get(r, "started_at")?,
            finished_at: self.get(r, "finished_at")?,
            commit_sha: self.get(r, "commit_sha")?,
            outcome: Outcome::parse(&outcome)
                .ok_or_else(|| self.corrupt(format!("run outcome `{outcome}`")))?,
            resources: self.get(r, "resources")?,
            counts: RunCounts {
                deviations_open: self.get(r, "deviations_open")?,
                deviations_opened: self.get(r, "deviations_opened")?,
                deviations_resolved: self.get(r, "deviations_resolved")?,
            },
            error: self.get(r, "error")?,
            model_hash: self.get(r, "model_blob")?,
            reason: reason.as_deref().map(|text| self.json(text)).transpose()?,
        })
    }

    fn deviation(&self, r: &AnyRow) -> Result<Deviation, StoreError> {
        let dtype: String = self.get(r, "dtype")?;
        let severity: String = self.get(r, "severity")?;
        let expected: Option<String> = self.get(r, "expected")?;
        let actual: Option<String> = self.get(r, "actual")?;
        let auto: i64 = self.get(r, "auto_correctable")?;
        Ok(Deviation {
            id: self.get(r, "id")?,
            record: DeviationRecord {
                kind: self.get(r, "kind")?,
                name: self.get(r, "name")?,
                field_path: self.get(r, "field_path")?,
                dtype: DeviationType::parse(&dtype)
                    .ok_or_else(|| self.corrupt(format!("deviation type `{dtype}`")))?,
                severity: Severity::parse(&severity)
                    .ok_or_else(|| self.corrupt(format!("severity `{severity}`")))?,
                auto_correctable: auto != 0,
                remediation: self.get(r, "remediation")?,
                expected: expected.map(|t| self.json(&t)).transpose()?,
                actual: actual.map(|t| self.json(&t)).transpose()?,
            },
            opened_at: self.get(r, "opened_at")?,
            opened_run: self.get(r, "opened_run")?,
            last_seen_at: self.get(r, "last_seen_at")?,
            last_seen_run: self.get(r, "last_seen_run")?,
            seen_count: self.get(r, "seen_count")?,
            resolved_at: self.get(r, "resolved_at")?,
            resolved_run: self.get(r, "resolved_run")?,
            resolved_commit: self.get(r, "resolved_commit")?,
        })
    }
}

/// The INSERT of one audit row, stamped `at`.
fn audit_insert(
    entry: &AuditEntry,
    at: i64,
) -> sqlx::query::Query<'_, sqlx::Any, sqlx::any::AnyArguments<'_>> {
    sqlx::query(
        "INSERT INTO audit_log (at, actor_kind, actor, action, target, details) \
         VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
    )
    .bind(at)
    .bind(entry.actor_kind.as_str())
    .bind(&entry.actor)
    .bind(&entry.action)
    .bind(entry.target.as_deref())
    .bind(super::canonical_json(&entry.details))
}
