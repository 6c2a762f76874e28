//! Recording runs: start, then everything a run found in one transaction.

use std::collections::{HashMap, HashSet};

use serde_json::Value;
use sqlx::any::Any;
use sqlx::{Row, Transaction};

use super::{
    canonical_json, Blob, ChangeRecord, DeviationRecord, Outcome, RunCounts, RunId, RunReport,
    Store, StoreError,
};

type Tx = Transaction<'static, Any>;

/// (kind, name, field path): what makes a deviation the same deviation across runs.
type Identity = (String, String, String);

impl Store {
    /// Starts a run. A run still `running` from an earlier process is marked `aborted` first.
    pub async fn start_run(&self, trigger: &str, controller: &str) -> Result<RunId, StoreError> {
        self.start_run_because(trigger, None, controller).await
    }

    /// Starts a run, recording why it runs: `trigger` is the short label (`timer`, `mcp`,
    /// `webhook`), `reason` the full reason as JSON.
    pub async fn start_run_because(
        &self,
        trigger: &str,
        reason: Option<&Value>,
        controller: &str,
    ) -> Result<RunId, StoreError> {
        let now = self.now_ms();
        let mut tx = self
            .pool
            .begin()
            .await
            .map_err(self.query_err("starting a run"))?;
        sqlx::query(
            "UPDATE runs SET outcome = 'aborted', finished_at = $1, \
             error = COALESCE(error, 'the controller stopped before the run finished') \
             WHERE outcome = 'running'",
        )
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(self.query_err("aborting unfinished runs"))?;
        let id: i64 = sqlx::query(
            "INSERT INTO runs (trigger, controller, started_at, outcome, reason) \
             VALUES ($1, $2, $3, 'running', $4) RETURNING id",
        )
        .bind(trigger)
        .bind(controller)
        .bind(now)
        .bind(reason.map(canonical_json))
        .fetch_one(&mut *tx)
        .await
        .and_then(|row| row.try_get(0))
        .map_err(self.query_err("inserting a run"))?;
        tx.commit()
            .await
            .map_err(self.query_err("starting a run"))?;
        Ok(id)
    }

    /// Marks the runs `controller` left unfinished as aborted, saying `why`; returns how many.
    /// (A controller that stops cleanly says so at once instead of leaving it to the next
    /// start.)
    pub async fn abort_unfinished(&self, controller: &str, why: &str) -> Result<u64, StoreError> {
        let done = sqlx::query(
            "UPDATE runs SET outcome = 'aborted', finished_at = $1, error = COALESCE(error, $2) \
             WHERE outcome = 'running' AND controller = $3",
        )
        .bind(self.now_ms())
        .bind(why)
        .bind(controller)
        .execute(&self.pool)
        .await
        .map_err(self.query_err("aborting unfinished runs"))?;
        Ok(done.rows_affected())
    }

    /// Records everything `run` found and finishes it, atomically: on any error nothing of the
    /// report is stored and the run stays `running`.
    pub async fn finish_run(
        &self,
        run: RunId,
        mut report: RunReport,
    ) -> Result<RunCounts, StoreError> {
        if report.outcome == Outcome::Running {
            return Err(StoreError::InvalidReport(
                "a finished run cannot have the outcome `running`".into(),
            ));
        }
        if report.desired.is_some() && report.commit_sha.is_none() {
            return Err(StoreError::InvalidReport(
                "a desired-state snapshot needs its commit SHA".into(),
            ));
        }
        let resources = i64::try_from(report.resources)
            .map_err(|_| StoreError::InvalidReport("resource count out of range".into()))?;
        let now = self.now_ms();
        let mut tx = self
            .pool
            .begin()
            .await
            .map_err(self.query_err("finishing a run"))?;

        // A write first: takes SQLite's write lock at once (waiting out busy_timeout instead of
        // failing on a read-to-write upgrade) and locks the run row on PostgreSQL.
        let claimed = sqlx::query(
            "UPDATE runs SET outcome = 'running' WHERE id = $1 AND outcome = 'running'",
        )
        .bind(run)
        .execute(&mut *tx)
        .await
        .map_err(self.query_err("claiming the run"))?;
        if claimed.rows_affected() != 1 {
            return Err(StoreError::RunNotRunning(run));
        }

        // Each body is handed to the database and dropped as it is stored: a large lab's
        // bodies need not all be alive, and copied, at once.
        if let (Some(body), Some(commit)) = (report.desired.take(), &report.commit_sha) {
            let hash = self.put_blob(&mut tx, body, now).await?;
            sqlx::query(
                "INSERT INTO desired_snapshots (commit_sha, blob_hash, first_seen_at) \
                 VALUES ($1, $2, $3) ON CONFLICT (commit_sha) DO NOTHING",
            )
            .bind(commit)
            .bind(hash)
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(self.query_err("storing the desired snapshot"))?;
        }

        for snapshot in std::mem::take(&mut report.observed) {
            let hash = self.put_blob(&mut tx, snapshot.body, now).await?;
            let latest = sqlx::query(
                "SELECT id, blob_hash FROM observed_snapshots WHERE provider = $1 \
                 ORDER BY id DESC LIMIT 1",
            )
            .bind(&snapshot.provider)
            .fetch_optional(&mut *tx)
            .await
            .and_then(|row| {
                row.map(|r| {
                    Ok::<_, sqlx::Error>((r.try_get::<i64, _>(0)?, r.try_get::<String, _>(1)?))
                })
                .transpose()
            })
            .map_err(self.query_err("reading the latest observed snapshot"))?;
            match latest {
                Some((id, latest_hash)) if latest_hash == hash => {
                    sqlx::query(
                        "UPDATE observed_snapshots SET last_run = $1, last_seen_at = $2 \
                         WHERE id = $3",
                    )
                    .bind(run)
                    .bind(snapshot.observed_at)
                    .bind(id)
                    .execute(&mut *tx)
                    .await
                    .map_err(self.query_err("extending an observed snapshot"))?;
                }
                _ => {
                    sqlx::query(
                        "INSERT INTO observed_snapshots \
                         (provider, blob_hash, first_run, last_run, first_seen_at, last_seen_at) \
                         VALUES ($1, $2, $3, $3, $4, $4)",
                    )
                    .bind(&snapshot.provider)
                    .bind(&hash)
                    .bind(run)
                    .bind(snapshot.observed_at)
                    .execute(&mut *tx)
                    .await
                    .map_err(self.query_err("storing an observed snapshot"))?;
                }
            }
        }

        let counts = self.record_deviations(&mut tx, run, now, &report).await?;
        self.record_changes(&mut tx, run, now, &report.changes)
            .await?;
        for p in &report.providers {
            sqlx::query(
                "INSERT INTO run_providers (run_id, provider, asked, answered, observe_ms, error) \
                 VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(run)
            .bind(&p.provider)
            .bind(i64::from(p.asked))
            .bind(i64::from(p.answered))
            .bind(p.observe_ms.max(0))
            .bind(p.error.as_deref())
            .execute(&mut *tx)
            .await
            .map_err(self.query_err("recording a provider's observation"))?;
        }

        let model_hash = match report.model.take() {
            Some(model) => Some(self.put_blob(&mut tx, model, now).await?),
            None => None,
        };

        let updated = sqlx::query(
            "UPDATE runs SET finished_at = $1, outcome = $2, commit_sha = $3, resources = $4, \
             deviations_open = $5, deviations_opened = $6, deviations_resolved = $7, error = $8, \
             model_blob = $9 WHERE id = $10 AND outcome = 'running'",
        )
        .bind(now)
        .bind(report.outcome.as_str())
        .bind(report.commit_sha.as_deref())
        .bind(resources)
        .bind(counts.deviations_open)
        .bind(counts.deviations_opened)
        .bind(counts.deviations_resolved)
        .bind(report.error.as_deref())
        .bind(model_hash)
        .bind(run)
        .execute(&mut *tx)
        .await
        .map_err(self.query_err("finishing the run"))?;
        if updated.rows_affected() != 1 {
            return Err(StoreError::RunNotRunning(run));
        }
        tx.commit()
            .await
            .map_err(self.query_err("committing the run"))?;
        Ok(counts)
    }

    /// Stores `body` under its content address (once) and returns the address. A body already
    /// stored is not sent to the database again. The compressed text is moved into the query, not
    /// copied.
    async fn put_blob(&self, tx: &mut Tx, body: Blob, now: i64) -> Result<String, StoreError> {
        let stored = sqlx::query("SELECT 1 FROM blobs WHERE hash = $1")
            .bind(body.hash())
            .fetch_optional(&mut **tx)
            .await
            .map_err(self.query_err("looking a blob up"))?;
        let (packed, hash) = body.into_parts();
        if stored.is_some() {
            return Ok(hash);
        }
        let Some((packed, size)) = packed else {
            return Err(StoreError::BlobGone { hash });
        };
        let size = i64::try_from(size)
            .map_err(|_| StoreError::InvalidReport("a body too large to record".into()))?;
        sqlx::query(
            "INSERT INTO blobs (hash, body, packed, size, created_at) VALUES ($1, '', $2, $3, $4) \
             ON CONFLICT (hash) DO NOTHING",
        )
        .bind(&hash)
        .bind(packed)
        .bind(size)
        .bind(now)
        .execute(&mut **tx)
        .await
        .map_err(self.query_err("storing a blob"))?;
        Ok(hash)
    }

    /// Records the changes the run asked for, in the run's transaction: a run that is not
    /// recorded leaves no changes either.
    async fn record_changes(
        &self,
        tx: &mut Tx,
        run: RunId,
        now: i64,
        changes: &[ChangeRecord],
    ) -> Result<(), StoreError> {
        for c in changes {
            sqlx::query(
                "INSERT INTO applied_changes (run_id, provider, action, kind, name, \
                 before_value, after_value, result, error, applied_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
            )
            .bind(run)
            .bind(&c.provider)
            .bind(c.action.as_str())
            .bind(&c.kind)
            .bind(&c.name)
            .bind(c.before.as_ref().map(canonical_json))
            .bind(c.after.as_ref().map(canonical_json))
            .bind(c.result.as_str())
            .bind(c.error.as_deref())
            .bind(now)
            .execute(&mut **tx)
            .await
            .map_err(self.query_err("recording an applied change"))?;
        }
        Ok(())
    }

    /// Inserts a deviation first seen by `run`; `resolved` (with the commit, if any) when the
    /// run also resolved it.
    async fn insert_deviation(
        &self,
        tx: &mut Tx,
        run: RunId,
        now: i64,
        d: &DeviationRecord,
        resolved: Option<Option<&str>>,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO deviations (kind, name, field_path, dtype, severity, \
             auto_correctable, remediation, expected, actual, opened_at, opened_run, \
             last_seen_at, last_seen_run, seen_count, resolved_at, resolved_run, \
             resolved_commit) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $10, $11, 1, $12, $13, $14)",
        )
        .bind(&d.kind)
        .bind(&d.name)
        .bind(&d.field_path)
        .bind(d.dtype.as_str())
        .bind(d.severity.as_str())
        .bind(i64::from(d.auto_correctable))
        .bind(d.remediation.as_deref())
        .bind(d.expected.as_ref().map(canonical_json))
        .bind(d.actual.as_ref().map(canonical_json))
        .bind(now)
        .bind(run)
        .bind(resolved.map(|_| now))
        .bind(resolved.map(|_| run))
        .bind(resolved.flatten())
        .execute(&mut **tx)
        .await
        .map_err(self.query_err("recording a deviation"))?;
        Ok(())
    }

    /// Opens new deviations, refreshes present ones and resolves absent, observable ones.
    async fn record_deviations(
        &self,
        tx: &mut Tx,
        run: RunId,
        now: i64,
        report: &RunReport,
    ) -> Result<RunCounts, StoreError> {
        let open: HashMap<Identity, i64> = sqlx::query(
            "SELECT id, kind, name, field_path FROM deviations WHERE resolved_at IS NULL",
        )
        .fetch_all(&mut **tx)
        .await
        .and_then(|rows| {
            rows.iter()
                .map(|r| Ok(((r.try_get(1)?, r.try_get(2)?, r.try_get(3)?), r.try_get(0)?)))
                .collect()
        })
        .map_err(self.query_err("reading open deviations"))?;

        // The last report of an identity wins.
        let mut present: HashMap<Identity, &DeviationRecord> = HashMap::new();
        let mut order = Vec::new();
        for d in &report.deviations {
            let key = (d.kind.clone(), d.name.clone(), d.field_path.clone());
            if present.insert(key.clone(), d).is_none() {
                order.push(key);
            }
        }

        let mut counts = RunCounts::default();
        for key in &order {
            let d = present[key];
            let expected = d.expected.as_ref().map(canonical_json);
            let actual = d.actual.as_ref().map(canonical_json);
            let auto = i64::from(d.auto_correctable);
            if let Some(&id) = open.get(key) {
                sqlx::query(
                    "UPDATE deviations SET dtype = $1, severity = $2, auto_correctable = $3, \
                     remediation = $4, expected = $5, actual = $6, last_seen_at = $7, \
                     last_seen_run = $8, seen_count = seen_count + 1 WHERE id = $9",
                )
                .bind(d.dtype.as_str())
                .bind(d.severity.as_str())
                .bind(auto)
                .bind(d.remediation.as_deref())
                .bind(expected)
                .bind(actual)
                .bind(now)
                .bind(run)
                .bind(id)
                .execute(&mut **tx)
                .await
                .map_err(self.query_err("updating a deviation"))?;
            } else {
                self.insert_deviation(tx, run, now, d, None).await?;
                counts.deviations_opened += 1;
            }
        }

        let present: HashSet<&Identity> = present.keys().collect();
        let mut kept = 0;
        for (key, &id) in &open {
            if present.contains(key) {
                continue;
            }
            if report.unobservable.iter().any(|u| u.covers(&key.0, &key.1)) {
                kept += 1;
                continue;
            }
            sqlx::query(
                "UPDATE deviations SET resolved_at = $1, resolved_run = $2, resolved_commit = $3 \
                 WHERE id = $4",
            )
            .bind(now)
            .bind(run)
            .bind(report.commit_sha.as_deref())
            .bind(id)
            .execute(&mut **tx)
            .await
            .map_err(self.query_err("resolving a deviation"))?;
            counts.deviations_resolved += 1;
        }
        // Found and repaired within this run: a life cycle that opened and closed here.
        for d in &report.repaired {
            let key = (d.kind.clone(), d.name.clone(), d.field_path.clone());
            if open.contains_key(&key) || present.contains(&key) {
                continue;
            }
            self.insert_deviation(tx, run, now, d, Some(report.commit_sha.as_deref()))
                .await?;
            counts.deviations_opened += 1;
            counts.deviations_resolved += 1;
        }
        counts.deviations_open = order.len() as i64 + kept;
        Ok(counts)
    }
}
