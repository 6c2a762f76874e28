//! Group commit of the audit log: every call's row is queued to one writer task, which commits
//! whatever has queued up in one transaction, so a busy server pays for one commit per batch
//! instead of one per call (the commit, not CPU, bounds throughput: BENCHMARKS.md).
//!
//! A call that changes something (a run, a pull request) is answered only once its row is
//! committed ([`AuditWriter::write`]). A read is answered as soon as its row is queued
//! ([`AuditWriter::record`]): waiting for the commit was half of a read's latency. The queue is
//! bounded (a writer that falls behind holds callers back rather than memory), and
//! [`AuditWriter::flush`] at shutdown commits what it holds; only a crash of the process can
//! lose the reads of its last moments (the rows of one batch).
//!
//! What a row keeps of a call is bounded ([`details`]), so a caller cannot grow the store by
//! more than a few KiB per call, and never holds a document a caller sent.

use std::borrow::Cow;

use serde_json::{json, Value as Json};
use tokio::sync::{mpsc, oneshot};

use crate::store::{canonical_json, content_hash, AuditEntry, RetentionPolicy, Store};

/// Largest arguments kept as they were (canonical JSON, after redaction); larger ones are
/// kept as their size, hash and first [`ARGUMENTS_PREFIX_BYTES`].
pub(crate) const MAX_ARGUMENTS_BYTES: usize = 4096;
/// How much of oversized arguments is kept.
pub(crate) const ARGUMENTS_PREFIX_BYTES: usize = 1024;
/// Longest error message kept.
pub(crate) const MAX_ERROR_BYTES: usize = 1024;
/// Longest tool name kept (an unknown tool's name is whatever the caller sent).
pub(crate) const MAX_ACTION_BYTES: usize = 128;

/// The `details` of a call's audit row: its arguments (secret-looking keys redacted, every
/// argument in `documents` reduced to its size and hash, the whole at most
/// [`MAX_ARGUMENTS_BYTES`]), the outcome, the error (at most [`MAX_ERROR_BYTES`]) and the
/// duration.
pub(crate) fn details(
    args: &Json,
    documents: &[(&str, usize)],
    outcome: &str,
    error: Option<&str>,
    ms: u128,
) -> Json {
    let mut details = json!({
        "arguments": arguments(args, documents),
        "outcome": outcome,
        "durationMs": ms as u64,
    });
    if let Some(e) = error {
        details["error"] = json!(prefix(e, MAX_ERROR_BYTES));
    }
    details
}

fn arguments(args: &Json, documents: &[(&str, usize)]) -> Json {
    let mut kept = super::redact(args);
    if let (Json::Object(kept), Json::Object(sent)) = (&mut kept, args) {
        for (name, _) in documents {
            if let Some(Json::String(text)) = sent.get(*name) {
                kept.insert(name.to_string(), json!(fingerprint(text)));
            }
        }
    }
    let text = canonical_json(&kept);
    if text.len() <= MAX_ARGUMENTS_BYTES {
        return kept;
    }
    json!({
        "truncated": true,
        "bytes": text.len(),
        "sha256": content_hash(&text),
        "prefix": prefix(&text, ARGUMENTS_PREFIX_BYTES),
    })
}

/// A text kept as what identifies it: `[<bytes> bytes, sha256 <hex>]`.
pub(crate) fn fingerprint(text: &str) -> String {
    format!("[{} bytes, sha256 {}]", text.len(), content_hash(text))
}

/// At most `max` bytes of `text`, cut at a character boundary and marked with `…`.
pub(crate) fn prefix(text: &str, max: usize) -> Cow<'_, str> {
    if text.len() <= max {
        return Cow::Borrowed(text);
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    Cow::Owned(format!("{}…", &text[..end]))
}

/// Rows committed together at most; more wait for the next commit.
const MAX_BATCH: usize = 256;
/// Rows written between two prunes of the audit log by its retention.
const PRUNE_EVERY: usize = 1024;

/// Rows queued and not yet committed at most; a caller beyond waits for room.
const MAX_QUEUED: usize = 1024;

/// A row to commit (none for a flush), and whom to tell once it is committed.
type Queued = (Option<AuditEntry>, Option<oneshot::Sender<()>>);

/// The handle callers write through; cheap to clone.
#[derive(Clone)]
pub(crate) struct AuditWriter {
    sink: Sink,
}

#[derive(Clone)]
enum Sink {
    /// The writer task's queue.
    Store(mpsc::Sender<Queued>),
    /// A store this process may only read: rows go to the log (target `labctl::audit`).
    Log,
}

impl AuditWriter {
    /// Starts the writer task on the current tokio runtime. It keeps the audit log within
    /// `retention` (days and rows) after its first commit and every [`PRUNE_EVERY`] rows, so
    /// a server that runs no reconcile does not grow the store without bound.
    pub(crate) fn start(store: Store, retention: RetentionPolicy) -> Self {
        let (queue, mut rx) = mpsc::channel::<Queued>(MAX_QUEUED);
        tokio::spawn(async move {
            let mut since_prune = PRUNE_EVERY;
            let mut batch = Vec::with_capacity(MAX_BATCH);
            while rx.recv_many(&mut batch, MAX_BATCH).await > 0 {
                let (entries, acks): (Vec<_>, Vec<_>) = batch.drain(..).unzip();
                let entries: Vec<AuditEntry> = entries.into_iter().flatten().collect();
                if entries.is_empty() {
                    // Only flushes: everything queued before them is committed.
                } else if let Err(e) = store.audit_all(&entries).await {
                    tracing::warn!(rows = entries.len(), error = %e, "cannot write the audit log");
                }
                since_prune += entries.len();
                // Before the callers are released: what they see is within the bounds.
                if since_prune >= PRUNE_EVERY {
                    since_prune = 0;
                    match store.prune_audit(retention).await {
                        Ok(0) => {}
                        Ok(n) => tracing::debug!(rows = n, "pruned the audit log"),
                        Err(e) => tracing::warn!(error = %e, "cannot prune the audit log"),
                    }
                }
                for ack in acks.into_iter().flatten() {
                    let _ = ack.send(());
                }
            }
        });
        AuditWriter {
            sink: Sink::Store(queue),
        }
    }

    /// Rows written to the log instead of a store.
    pub(crate) fn to_log() -> Self {
        AuditWriter { sink: Sink::Log }
    }

    /// Queues `entry` and waits until the batch holding it is committed.
    pub(crate) async fn write(&self, entry: AuditEntry) {
        self.queue(Some(entry), true).await
    }

    /// Queues `entry` without waiting for its commit (only for room in the queue).
    pub(crate) async fn record(&self, entry: AuditEntry) {
        self.queue(Some(entry), false).await
    }

    /// Waits until every row queued so far is committed.
    pub(crate) async fn flush(&self) {
        self.queue(None, true).await
    }

    async fn queue(&self, entry: Option<AuditEntry>, wait: bool) {
        match (&self.sink, entry) {
            (Sink::Store(queue), entry) => {
                let (ack, committed) = oneshot::channel();
                let ack = wait.then_some(ack);
                // A closed queue means the runtime is going away: nothing left to wait for.
                if queue.send((entry, ack)).await.is_ok() && wait {
                    let _ = committed.await;
                }
            }
            (Sink::Log, None) => {}
            (Sink::Log, Some(entry)) => tracing::info!(
                target: "labctl::audit",
                actor_kind = entry.actor_kind.as_str(),
                actor = %entry.actor,
                action = %entry.action,
                details = %canonical_json(&entry.details),
                "tool call"
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::ActorKind;

    #[test]
    fn documents_are_kept_as_a_fingerprint_and_arguments_are_capped() {
        let docs = [("yaml", 1 << 20)];
        let yaml = "kind: Device\nspec:\n  token: ghp_s3cr3t\n";
        let d = details(
            &json!({"yaml": yaml, "file": "a.yaml"}),
            &docs,
            "ok",
            None,
            3,
        );
        assert_eq!(d["arguments"]["yaml"], json!(fingerprint(yaml)));
        assert_eq!(d["arguments"]["file"], "a.yaml");
        assert!(!d.to_string().contains("s3cr3t"), "{d}");
        // Many short strings: each under the redaction's length, together far over the cap.
        let many: serde_json::Map<String, Json> = (0..64)
            .map(|i| (format!("k{i}"), json!(vec!["v".repeat(200); 60])))
            .collect();
        let args = Json::Object(many);
        let d = details(&args, &[], "error", Some(&"é".repeat(2000)), 1);
        let kept = canonical_json(&d);
        assert!(
            kept.len() < MAX_ARGUMENTS_BYTES + MAX_ERROR_BYTES + 512,
            "{}",
            kept.len()
        );
        let a = &d["arguments"];
        let full = canonical_json(&crate::mcp::redact(&args));
        assert_eq!(a["truncated"], true);
        assert_eq!(a["bytes"], full.len());
        assert_eq!(a["sha256"], content_hash(&full));
        assert!(full.starts_with(a["prefix"].as_str().unwrap().trim_end_matches('…')));
        assert!(d["error"].as_str().unwrap().ends_with('…'));
        assert_eq!(prefix("abc", 3), "abc");
        assert_eq!(prefix("éé", 3), "é…");
    }

    async fn writer_on_a_new_store(dir: &std::path::Path) -> (Store, AuditWriter) {
        let store = Store::connect(&format!("sqlite://{}", dir.join("a.db").display()))
            .await
            .unwrap();
        store.migrate().await.unwrap();
        let writer = AuditWriter::start(store.clone(), RetentionPolicy::DEFAULT);
        (store, writer)
    }

    fn entry(action: String) -> AuditEntry {
        AuditEntry {
            actor_kind: ActorKind::Mcp,
            actor: "test".into(),
            action,
            target: None,
            details: serde_json::json!({}),
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn every_caller_is_released_after_its_row_is_committed() {
        let dir = tempfile::tempdir().unwrap();
        let (store, writer) = writer_on_a_new_store(dir.path()).await;
        let mut calls = tokio::task::JoinSet::new();
        for i in 0..300 {
            let writer = writer.clone();
            let store = store.clone();
            calls.spawn(async move {
                let action = format!("call-{i}");
                writer.write(entry(action.clone())).await;
                // Released only once committed: the row is already there.
                let rows = store.recent_audit(1000).await.unwrap();
                assert!(
                    rows.iter().any(|r| r.entry.action == action),
                    "{action} not committed"
                );
            });
        }
        while let Some(done) = calls.join_next().await {
            done.unwrap();
        }
        assert_eq!(store.recent_audit(1000).await.unwrap().len(), 300);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn recorded_rows_are_all_committed_by_a_flush() {
        let dir = tempfile::tempdir().unwrap();
        let (store, writer) = writer_on_a_new_store(dir.path()).await;
        // More than the queue holds: the later callers wait for room, none is dropped.
        let rows = MAX_QUEUED * 3;
        for i in 0..rows {
            writer.record(entry(format!("read-{i}"))).await;
        }
        writer.flush().await;
        let kept = store.recent_audit(rows as u32 + 1).await.unwrap();
        assert_eq!(kept.len(), rows);
        assert_eq!(kept[0].entry.action, format!("read-{}", rows - 1));
    }
}
