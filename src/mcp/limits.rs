//! Bounds on one tool call, so a read token cannot make the server do unbounded work: every
//! argument is size-checked before anything else happens, every call has a deadline, and the
//! calls whose CPU work grows with the caller's input (`validate_definition`) run on tokio's
//! blocking pool, a bounded number at a time, never on the async workers that answer
//! everyone else.

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value as Json;
use tokio::sync::Semaphore;

use super::ToolError;

/// Largest string argument, unless a tool declares it a document: names, filters and cursors
/// are far shorter.
pub const MAX_STRING_BYTES: usize = 1024;
/// Most items in a list argument (`fields`, `dimensions`) and keys in an object argument.
pub const MAX_ITEMS: usize = 64;
/// Deepest nesting of an argument.
pub const MAX_DEPTH: usize = 8;
/// Largest desired-state text `validate_definition` takes; a whole repository is for
/// `labctl validate`.
pub const MAX_DEFINITION_BYTES: usize = 256 * 1024;

/// How long one call may take and how many CPU-heavy calls run at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// A call not answered by then gets a tool error saying so.
    pub deadline: Duration,
    /// CPU-heavy calls in flight at once; more wait for a slot (within their deadline).
    pub cpu_slots: usize,
}

impl Limits {
    /// Ten seconds; one CPU-heavy call per core but one, at most four, so the async workers
    /// keep a core for the cheap calls.
    pub fn new() -> Self {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        Limits {
            deadline: Duration::from_secs(10),
            cpu_slots: cores.saturating_sub(1).clamp(1, 4),
        }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits::new()
    }
}

/// Refuses arguments over the limits, naming the argument and the limit. `documents` lists
/// the top-level arguments that are documents, each with its own limit.
pub(crate) fn check_arguments(
    tool: &str,
    args: &Json,
    documents: &[(&str, usize)],
) -> Result<(), ToolError> {
    let Json::Object(map) = args else {
        return check(tool, args, "", 0);
    };
    if map.len() > MAX_ITEMS {
        return Err(ToolError::new(format!(
            "{tool} got {} arguments; at most {MAX_ITEMS} are taken",
            map.len()
        )));
    }
    for (name, value) in map {
        match (documents.iter().find(|(n, _)| n == name), value) {
            (Some((_, limit)), Json::String(text)) if text.len() > *limit => {
                return Err(ToolError::new(format!(
                    "argument `{name}` of {tool} is {} bytes; it takes at most {limit} bytes \
                     ({} KiB): check a whole repository with `labctl validate`, or send its \
                     documents in smaller parts",
                    text.len(),
                    limit / 1024
                )));
            }
            (Some(_), Json::String(_)) => {}
            _ => check(tool, value, name, 1)?,
        }
    }
    Ok(())
}

fn check(tool: &str, value: &Json, at: &str, depth: usize) -> Result<(), ToolError> {
    // Depth counts lists and objects: the argument itself is at depth 1.
    if depth > MAX_DEPTH && (value.is_array() || value.is_object()) {
        return Err(ToolError::new(format!(
            "argument `{at}` of {tool} is nested more than {MAX_DEPTH} levels deep"
        )));
    }
    let too_many = |n: usize| {
        ToolError::new(format!(
            "argument `{at}` of {tool} has {n} items; at most {MAX_ITEMS} are taken: ask for \
             fewer (a filter, or several calls)"
        ))
    };
    match value {
        Json::String(s) if s.len() > MAX_STRING_BYTES => Err(ToolError::new(format!(
            "argument `{at}` of {tool} is {} bytes; at most {MAX_STRING_BYTES} bytes are taken \
             (a name, a filter or a cursor)",
            s.len()
        ))),
        Json::Array(items) if items.len() > MAX_ITEMS => Err(too_many(items.len())),
        Json::Object(map) if map.len() > MAX_ITEMS => Err(too_many(map.len())),
        Json::Array(items) => items
            .iter()
            .enumerate()
            .try_for_each(|(i, v)| check(tool, v, &format!("{at}[{i}]"), depth + 1)),
        Json::Object(map) => map
            .iter()
            .try_for_each(|(k, v)| check(tool, v, &format!("{at}.{k}"), depth + 1)),
        _ => Ok(()),
    }
}

/// The slots for CPU-heavy calls and the deadline of every call.
#[derive(Debug, Clone)]
pub(crate) struct Budget {
    limits: Limits,
    slots: Arc<Semaphore>,
}

impl Budget {
    pub(crate) fn new(limits: Limits) -> Self {
        Budget {
            slots: Arc::new(Semaphore::new(limits.cpu_slots.max(1))),
            limits,
        }
    }

    /// `call` answered within the deadline, or a tool error saying it was not.
    pub(crate) async fn within<T>(
        &self,
        tool: &str,
        call: impl std::future::Future<Output = Result<T, ToolError>>,
    ) -> Result<T, ToolError> {
        tokio::time::timeout(self.limits.deadline, call)
            .await
            .unwrap_or_else(|_| Err(self.late(tool)))
    }

    /// `work` on the blocking pool once a slot is free. A caller that gives up (its deadline
    /// passed) does not stop work already started: it runs to its end on its blocking thread
    /// and keeps its slot until then, so the CPU work in flight stays bounded whatever
    /// callers do.
    pub(crate) async fn cpu<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> Result<T, ToolError> + Send + 'static,
    ) -> Result<T, ToolError> {
        let permit = Arc::clone(&self.slots)
            .acquire_owned()
            .await
            .map_err(|_| ToolError::new("the server is shutting down"))?;
        tokio::task::spawn_blocking(move || {
            let _slot = permit;
            work()
        })
        .await
        .map_err(|e| ToolError::new(format!("the call failed: {e}")))?
    }

    fn late(&self, tool: &str) -> ToolError {
        let busy = if self.slots.available_permits() == 0 {
            format!(
                " All {} slots for CPU-heavy calls (validate_definition) were busy.",
                self.limits.cpu_slots.max(1)
            )
        } else {
            String::new()
        };
        ToolError::new(format!(
            "{tool} did not finish within {} s, the deadline of one tool call (`labctl mcp \
             --tool-deadline`); no answer was given.{busy} Ask a narrower question (a filter, a \
             smaller page or definition) or retry when the server is less busy",
            self.limits.deadline.as_secs_f64()
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn arguments_over_a_limit_are_named() {
        let docs = [("yaml", MAX_DEFINITION_BYTES)];
        let ok = json!({"yaml": "x".repeat(MAX_DEFINITION_BYTES), "file": "a.yaml"});
        check_arguments("validate_definition", &ok, &docs).unwrap();
        let big = json!({"yaml": "x".repeat(MAX_DEFINITION_BYTES + 1)});
        let e = check_arguments("validate_definition", &big, &docs)
            .unwrap_err()
            .message;
        assert!(e.contains("`yaml`") && e.contains("262144"), "{e}");
        // Not a document anywhere else, nor in another tool.
        let e = check_arguments("get_device", &big, &[])
            .unwrap_err()
            .message;
        assert!(e.contains("`yaml`") && e.contains("1024 bytes"), "{e}");
        let e = check_arguments(
            "validate_definition",
            &json!({"file": "x".repeat(1025)}),
            &docs,
        )
        .unwrap_err()
        .message;
        assert!(e.contains("`file`"), "{e}");
        let many = json!({"fields": vec!["name"; MAX_ITEMS + 1]});
        let e = check_arguments("list_devices", &many, &[])
            .unwrap_err()
            .message;
        assert!(e.contains("`fields`") && e.contains("65 items"), "{e}");
        let deep_string = json!({"a": [{"b": "y".repeat(MAX_STRING_BYTES + 1)}]});
        let e = check_arguments("t", &deep_string, &[]).unwrap_err().message;
        assert!(e.contains("`a[0].b`"), "{e}");
        let mut deep = json!(1);
        for _ in 0..MAX_DEPTH {
            deep = json!([deep]);
        }
        check_arguments("t", &json!({ "d": deep }), &[]).unwrap();
        let e = check_arguments("t", &json!({ "d": [deep] }), &[])
            .unwrap_err()
            .message;
        assert!(e.contains("nested more than 8"), "{e}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_call_past_its_deadline_is_answered_and_its_slot_stays_taken() {
        let budget = Budget::new(Limits {
            deadline: Duration::from_millis(50),
            cpu_slots: 1,
        });
        let (release, wait) = std::sync::mpsc::channel::<()>();
        let (done_tx, done) = tokio::sync::oneshot::channel();
        let e = budget
            .within(
                "validate_definition",
                budget.cpu(move || {
                    wait.recv().unwrap();
                    let _ = done_tx.send(());
                    Ok(())
                }),
            )
            .await
            .unwrap_err()
            .message;
        assert!(
            e.contains("validate_definition did not finish within 0.05 s")
                && e.contains("All 1 slots"),
            "{e}"
        );
        // The work still holds the only slot: the next call times out waiting for it.
        let e = budget
            .within("validate_definition", budget.cpu(|| Ok(())))
            .await
            .unwrap_err()
            .message;
        assert!(e.contains("All 1 slots"), "{e}");
        release.send(()).unwrap();
        done.await.unwrap();
        // The slot is given back once the work ended (on its blocking thread, soon after).
        let answered = loop {
            if let Ok(v) = budget.within("t", budget.cpu(|| Ok(7))).await {
                break v;
            }
        };
        assert_eq!(answered, 7);
        // Work that does not hold a slot gets the plain message.
        let e = budget
            .within("get_drift", std::future::pending::<Result<(), ToolError>>())
            .await
            .unwrap_err()
            .message;
        assert!(!e.contains("slots"), "{e}");
    }
}
