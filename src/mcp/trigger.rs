//! `trigger_reconcile`: asks the controller for one run, exactly as `labctl reconcile --once`
//! does — load, validate, observe, diff, apply what the policy allows, record — never waiting
//! for another controller's run.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::notify::Level::{Error, Info, Warning};
use super::{LabServer, ToolError};
use crate::controller::{self, Context, Reason, Request};
use crate::diff::DeviationType;
use crate::store::ChangeResult;

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TriggerInput {}

/// What one triggered run did.
#[derive(Debug, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TriggerOutput {
    /// succeeded, partial (something could not be observed) or failed (an apply failed).
    pub outcome: String,
    /// The run's id in the store (see get_reconcile_status).
    pub run_id: i64,
    /// The commit reconciled; absent for a plain directory.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub commit: Option<String>,
    pub counts: TriggerCounts,
    /// Apply failures, changes not seen live, providers that could not be observed, and
    /// changes held back by safety limits.
    pub errors: Vec<String>,
}

#[derive(Debug, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TriggerCounts {
    pub missing: usize,
    pub unmanaged: usize,
    pub drifted: usize,
    pub unknown: usize,
    /// Changes the policy allowed that were applied and then seen live when observed again.
    pub applied: usize,
    /// Deviations open after the run, opened and resolved by it.
    pub deviations_open: i64,
    pub deviations_opened: i64,
    pub deviations_resolved: i64,
}

/// Where `trigger_reconcile` gets its runs: a controller it runs itself (`labctl mcp
/// --repo`), or the daemon it lives in (`labctl serve`), which holds the leader lock and
/// answers the request with its next run.
#[derive(Clone, Debug)]
pub enum Runner {
    Controller(std::sync::Arc<Context>),
    Daemon(crate::serve::Triggers),
}

/// Runs one reconcile for the MCP client `by`. Run by a controller of its own, another
/// controller holding the leader lock is a tool error at once; asked of the daemon, the
/// answer is the daemon's next run (which may answer other requests too). The client hears
/// of the run's start and end as progress and log messages (see [`LabServer::progress`]).
pub async fn trigger(
    server: &LabServer,
    runner: &Runner,
    by: &str,
) -> Result<TriggerOutput, ToolError> {
    let reason = Reason::manual("mcp", by);
    let answer = match runner {
        Runner::Controller(ctx) => {
            let request = Request {
                reason,
                wait: false,
                force: false,
            };
            server
                .progress(
                    Info,
                    0,
                    2,
                    "reconcile started: loading, observing, diffing".into(),
                )
                .await;
            settle(&controller::reconcile(ctx, &request).await)
        }
        Runner::Daemon(triggers) => {
            let asked = triggers
                .ask(reason)
                .map_err(|busy| ToolError::new(busy.to_string()))?;
            server
                .progress(
                    Info,
                    0,
                    2,
                    "reconcile requested of the daemon: it runs next".into(),
                )
                .await;
            let answer = asked.await.map_err(|_| {
                ToolError::new("the daemon stopped before the run finished; nothing is known of it")
            })?;
            settle(&answer)
        }
    };
    // Whatever the outcome, a run may have been recorded: the caller's next question sees it.
    server.look_again();
    match answer {
        Ok(out) => {
            let level = if out.outcome == crate::store::Outcome::Succeeded.as_str() {
                Info
            } else {
                Warning
            };
            let message = format!(
                "run {} {}: {} drifted, {} missing, {} unknown, {} applied",
                out.run_id,
                out.outcome,
                out.counts.drifted,
                out.counts.missing,
                out.counts.unknown,
                out.counts.applied
            );
            server.progress(level, 2, 2, message).await;
            Ok(out)
        }
        Err(refused) => {
            server
                .progress(
                    Error,
                    2,
                    2,
                    format!("reconcile not done: {}", refused.message),
                )
                .await;
            Err(refused)
        }
    }
}

/// A run's result as the tool answers it.
fn settle(
    result: &Result<controller::Reconciled, controller::Error>,
) -> Result<TriggerOutput, ToolError> {
    match result {
        Ok(done) => Ok(output(done)),
        Err(e) => Err(refusal(e)),
    }
}

/// Why a run was refused or failed, as the tool says it.
fn refusal(e: &controller::Error) -> ToolError {
    match e {
        e if e.is_leader_busy() => ToolError::new(
            "another controller is reconciling (it holds the leader lock); nothing was \
             started. Try again when it has finished, or read get_reconcile_status",
        ),
        controller::Error::Invalid(invalid) => ToolError::new(format!(
            "the desired state is invalid ({} errors); nothing was observed or changed. \
             Run `labctl validate` on the repository. First: {}",
            invalid.validation.errors(),
            invalid.first_errors(5).join("; ")
        )),
        e => ToolError::new(e.to_string()),
    }
}

/// What one run did, as the tool answers.
fn output(done: &controller::Reconciled) -> TriggerOutput {
    let run = &done.run;
    let errors = run.errors();
    TriggerOutput {
        outcome: run.outcome.as_str().to_string(),
        run_id: run.run_id,
        commit: done.loaded.commit().map(str::to_string),
        counts: TriggerCounts {
            missing: run.plan.count(DeviationType::Missing),
            unmanaged: run.plan.count(DeviationType::Unmanaged),
            drifted: run.plan.count(DeviationType::Drifted),
            unknown: run.plan.count(DeviationType::Unknown),
            // Confirmed by observing again after the apply.
            applied: run
                .changes
                .iter()
                .filter(|c| c.result == ChangeResult::Applied)
                .count(),
            deviations_open: run.counts.deviations_open,
            deviations_opened: run.counts.deviations_opened,
            deviations_resolved: run.counts.deviations_resolved,
        },
        errors,
    }
}

/// The tool as `tools/list` shows it to an admin token.
pub fn tool() -> rmcp::model::Tool {
    use rmcp::handler::server::tool::{schema_for_input, schema_for_output};
    use rmcp::model::{Tool, ToolAnnotations};
    let title = "Reconcile now";
    Tool::new(
        "trigger_reconcile",
        "Run one reconcile now, exactly as `labctl reconcile --once` on this server's \
         repository: read Git, observe every provider, record the drift, and apply what the \
         repository's policy allows. Returns the outcome, the run id, the commit and counts. \
         Served by `labctl serve`, the daemon's next run answers (requests that arrive \
         together share one run); otherwise it fails at once if another controller is \
         reconciling. Takes no arguments.",
        schema_for_input::<TriggerInput>().expect("an object"),
    )
    .with_title(title)
    .with_raw_output_schema(schema_for_output::<TriggerOutput>())
    .with_annotations(
        ToolAnnotations::with_title(title)
            .read_only(false)
            .destructive(true)
            .idempotent(false)
            .open_world(true),
    )
}
