//! Group commit of the audit log: every call's row is queued to one writer task, which commits
//! whatever has queued up in one transaction and then releases each caller. A call still
//! answers only after its own row is committed, but a busy server pays for one commit per
//! batch instead of one per call (the commit, not CPU, bounds throughput: BENCHMARKS.md).

use tokio::sync::{mpsc, oneshot};

use crate::store::{AuditEntry, Store};

/// Rows committed together at most; more wait for the next commit.
const MAX_BATCH: usize = 256;

type Queued = (AuditEntry, oneshot::Sender<()>);

/// The handle callers write through; cheap to clone.
#[derive(Clone)]
pub(crate) struct AuditWriter {
    queue: mpsc::UnboundedSender<Queued>,
}

impl AuditWriter {
    /// Starts the writer task on the current tokio runtime.
    pub(crate) fn start(store: Store) -> Self {
        let (queue, mut rx) = mpsc::unbounded_channel::<Queued>();
        tokio::spawn(async move {
            while let Some(first) = rx.recv().await {
                let mut entries = vec![first.0];
                let mut acks = vec![first.1];
                while entries.len() < MAX_BATCH {
                    let Ok((entry, ack)) = rx.try_recv() else {
                        break;
                    };
                    entries.push(entry);
                    acks.push(ack);
                }
                if let Err(e) = store.audit_all(&entries).await {
                    tracing::warn!(rows = entries.len(), error = %e, "cannot write the audit log");
                }
                for ack in acks {
                    let _ = ack.send(());
                }
            }
        });
        AuditWriter { queue }
    }

    /// Queues `entry` and waits until the batch holding it is committed.
    pub(crate) async fn write(&self, entry: AuditEntry) {
        let (ack, committed) = oneshot::channel();
        if self.queue.send((entry, ack)).is_ok() {
            let _ = committed.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::ActorKind;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn every_caller_is_released_after_its_row_is_committed() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::connect(&format!("sqlite://{}", dir.path().join("a.db").display()))
            .await
            .unwrap();
        store.migrate().await.unwrap();
        let writer = AuditWriter::start(store.clone());
        let mut calls = tokio::task::JoinSet::new();
        for i in 0..300 {
            let writer = writer.clone();
            let store = store.clone();
            calls.spawn(async move {
                let action = format!("call-{i}");
                writer
                    .write(AuditEntry {
                        actor_kind: ActorKind::Mcp,
                        actor: "test".into(),
                        action: action.clone(),
                        target: None,
                        details: serde_json::json!({}),
                    })
                    .await;
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
}
