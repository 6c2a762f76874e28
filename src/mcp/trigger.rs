//! `trigger_reconcile`: one reconcile run exactly as `labctl reconcile --once` does it —
//! load, validate, observe, diff, apply what the policy allows, record — under the store's
//! leader lock, never waiting for it.

use std::sync::Arc;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::ToolError;
use crate::diff::DeviationType;
use crate::reconcile::{self, HostOptions, Loaded};
use crate::source::{self, SourceSpec};
use crate::store::{RetentionPolicy, Store, StoreError};

/// Where the desired state comes from and what this host allows: fixed when the server
/// starts (`labctl mcp --repo`), never chosen by the caller.
#[derive(Debug, Clone)]
pub struct Reconciler {
    pub spec: SourceSpec,
    /// Subdirectory of the repository holding the desired state.
    pub path: Option<String>,
    pub host: HostOptions,
    /// Recorded with each run, as `reconcile --once` records `user@host/pid`.
    pub controller: String,
    /// Applied after each run, still holding the lock, as `reconcile --once` applies it.
    pub retention: RetentionPolicy,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TriggerInput {}

/// What one triggered run did.
#[derive(Debug, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TriggerOutput {
    /// succeeded or failed (an apply failed).
    pub outcome: String,
    /// The run's id in the store (see get_reconcile_status).
    pub run_id: i64,
    /// The commit reconciled; absent for a plain directory.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub commit: Option<String>,
    pub counts: TriggerCounts,
    /// Providers that could not be observed, and apply failures.
    pub errors: Vec<String>,
}

#[derive(Debug, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TriggerCounts {
    pub missing: usize,
    pub unmanaged: usize,
    pub drifted: usize,
    pub unknown: usize,
    /// Changes the policy allowed and that were applied.
    pub applied: usize,
    /// Deviations open after the run, opened and resolved by it.
    pub deviations_open: i64,
    pub deviations_opened: i64,
    pub deviations_resolved: i64,
}

/// Loads and validates the desired state, without printing: the library half of the CLI's
/// `load_valid`.
pub fn load_valid(spec: &SourceSpec, path: Option<&str>) -> Result<Loaded, ToolError> {
    let snapshot = source::load(spec, path)
        .map_err(|e| ToolError::new(format!("cannot read the repository: {e}")))?;
    let result = crate::validate::validate(&snapshot);
    let Some(state) = result.state.clone() else {
        let first: Vec<String> = result
            .diagnostics
            .iter()
            .filter(|d| d.severity == crate::validate::Severity::Error)
            .take(5)
            .map(|d| match &d.document {
                Some(doc) => format!("{doc}: {}", d.message),
                None => d.message.clone(),
            })
            .collect();
        return Err(ToolError::new(format!(
            "the desired state is invalid ({} errors); nothing was observed or changed. \
             Run `labctl validate` on the repository. First: {}",
            result.errors(),
            first.join("; ")
        )));
    };
    Ok(Loaded {
        snapshot,
        state: Arc::new(state),
    })
}

/// Runs one reconcile; another controller holding the leader lock is a tool error at once.
pub async fn trigger(
    store: &Store,
    reconciler: &Reconciler,
    trigger: &str,
) -> Result<TriggerOutput, ToolError> {
    let leader = match store.leader(false).await {
        Ok(l) => l,
        Err(StoreError::LeaderBusy { .. }) => {
            return Err(ToolError::new(
                "another controller is reconciling (it holds the leader lock); nothing was \
                 started. Try again when it has finished, or read get_reconcile_status",
            ))
        }
        Err(e) => return Err(e.into()),
    };
    let result = run(store, reconciler, trigger).await;
    if let Err(e) = leader.release().await {
        tracing::warn!(error = %e, "could not release the leader lock explicitly");
    }
    result
}

async fn run(
    store: &Store,
    reconciler: &Reconciler,
    trigger: &str,
) -> Result<TriggerOutput, ToolError> {
    // Reading a Git repository is blocking work (and may fetch): off the async workers.
    let (spec, path) = (reconciler.spec.clone(), reconciler.path.clone());
    let loaded = tokio::task::spawn_blocking(move || load_valid(&spec, path.as_deref()))
        .await
        .map_err(|_| ToolError::new("loading the repository failed unexpectedly"))??;
    let providers = reconcile::providers_for(
        loaded.state.config.as_ref().map(|c| &c.doc.spec),
        reconciler.host,
    );
    let run =
        reconcile::run_once(store, &loaded, &providers, trigger, &reconciler.controller).await?;
    match store.prune(reconciler.retention).await {
        Ok(report) => tracing::debug!(?report, "retention applied"),
        Err(e) => tracing::warn!(error = %e, "retention could not be applied; the run is recorded"),
    }
    // Still the leader: the latest run is this one.
    let recorded = store.latest_run().await?.filter(|r| r.id == run.run_id);
    let counts = recorded.as_ref().map(|r| r.counts);
    let errors = run
        .applied
        .iter()
        .filter_map(|a| a.error.as_ref().map(|e| e.to_string()))
        .chain(
            run.plan
                .unobservable
                .iter()
                .map(|(p, why)| format!("provider {p} could not be observed: {why}")),
        )
        .collect();
    Ok(TriggerOutput {
        outcome: recorded
            .as_ref()
            .map(|r| r.outcome.as_str().to_string())
            .unwrap_or_else(|| {
                if run.apply_failed() {
                    "failed"
                } else {
                    "succeeded"
                }
                .to_string()
            }),
        run_id: run.run_id,
        commit: loaded.commit().map(str::to_string),
        counts: TriggerCounts {
            missing: run.plan.count(DeviationType::Missing),
            unmanaged: run.plan.count(DeviationType::Unmanaged),
            drifted: run.plan.count(DeviationType::Drifted),
            unknown: run.plan.count(DeviationType::Unknown),
            applied: run
                .applied
                .iter()
                .filter_map(|a| a.report.as_ref().map(|r| r.applied.len()))
                .sum(),
            deviations_open: counts.as_ref().map_or(0, |c| c.deviations_open),
            deviations_opened: counts.as_ref().map_or(0, |c| c.deviations_opened),
            deviations_resolved: counts.as_ref().map_or(0, |c| c.deviations_resolved),
        },
        errors,
    })
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
         Fails at once if another controller is reconciling. Takes no arguments.",
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
