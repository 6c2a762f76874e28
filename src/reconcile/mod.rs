//! One reconcile run: load → validate → observe → diff → apply → record.
//!
//! Deciding and doing are kept apart, as in kube-runtime: [`diff::diff`] decides (pure), and
//! the effects — observing, applying, recording — happen here around it. A run never acts on a
//! partial picture: a provider that could not be observed contributes only `unknown`
//! deviations and no changes, and its open deviations are not resolved.

#[cfg(test)]
mod again_tests;
#[cfg(test)]
mod confirm_tests;
pub mod import;
mod registry;

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::Serialize;
use serde_json::Value as Json;
use tokio::task::JoinSet;

use crate::diff::{self, DeviationType, Plan, ProviderInput, Rules};
use crate::model::{DesiredState, Kind};
use crate::providers::{
    ApplyReport, Fields, Observation, Provider, ProviderError, Reobserved, Resource,
};
use crate::readmodel::{Entry, ModelHost, ReconciledModel, Status};
use crate::source::{self, Revision, Snapshot, SourceError, SourceSpec};
use crate::store::{self, Outcome, RunReport, Store, StoreError};
use crate::validate::Diagnostic;

pub use registry::{providers_for, HostOptions};

/// The desired state of one revision, validated.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// The files the state was validated from; once let go of, their texts are read again
    /// when asked ([`Loaded::files`]).
    snapshot: Snapshot,
    /// How to read them again, once let go of.
    reread: Option<source::Reread>,
    pub state: Arc<DesiredState>,
    /// What validation found short of an error.
    pub warnings: Vec<Diagnostic>,
    /// Each provider's expected resources, made once: the daemon runs one commit again and
    /// again, and what a provider expects depends only on the state and its settings (part of
    /// the commit).
    pub expected: ExpectedCache,
}

/// Expected resources by provider name (see [`Loaded::expected`]).
#[derive(Debug, Clone, Default)]
pub struct ExpectedCache(Arc<std::sync::Mutex<BTreeMap<String, Arc<[Resource]>>>>);

impl Loaded {
    /// The desired state of `snapshot`, validated, nothing expected yet.
    pub fn new(snapshot: Snapshot, state: DesiredState, warnings: Vec<Diagnostic>) -> Self {
        Loaded {
            snapshot,
            reread: None,
            state: Arc::new(state),
            warnings,
            expected: ExpectedCache::default(),
        }
    }

    /// What `provider` expects of this state, made on first asking.
    pub fn expected(&self, provider: &dyn Provider) -> Arc<[Resource]> {
        let mut cache = self.expected.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(made) = cache.get(provider.name()) {
            return Arc::clone(made);
        }
        let made: Arc<[Resource]> = provider.expected(&self.state).into();
        cache.insert(provider.name().to_string(), Arc::clone(&made));
        made
    }

    pub fn commit(&self) -> Option<&str> {
        self.snapshot.revision.as_ref().map(|r| r.commit.as_str())
    }

    /// The revision the state was read from (`None` for a directory).
    pub fn revision(&self) -> Option<&Revision> {
        self.snapshot.revision.as_ref()
    }

    /// Where the state was read from: a path or a URL, never with credentials.
    pub fn origin(&self) -> &str {
        &self.snapshot.origin
    }

    /// Lets go of the files' texts when they can be read again from the commit they came
    /// from (`spec` below `subdir`); a directory's are kept. The validated state is all a run
    /// needs; the texts, wanted only to propose a change or place a warning, were 28 MB of a
    /// reconcile's peak at 100,000 documents one file each, held for as long as the commit is
    /// in force.
    pub fn let_go_of_files(&mut self, spec: &SourceSpec, subdir: Option<&str>) {
        if let Some(reread) = source::Reread::of(spec, subdir, &self.snapshot) {
            self.snapshot.files = Vec::new();
            self.reread = Some(reread);
        }
    }

    /// Every file of the state's revision with its text: those held, else read again from
    /// the commit (see [`Loaded::let_go_of_files`]).
    pub fn files(&self) -> Result<std::borrow::Cow<'_, Snapshot>, SourceError> {
        match &self.reread {
            None => Ok(std::borrow::Cow::Borrowed(&self.snapshot)),
            Some(reread) => reread.read().map(std::borrow::Cow::Owned),
        }
    }
}

/// What one provider's apply did.
#[derive(Debug, Serialize)]
pub struct Applied {
    pub provider: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub report: Option<ApplyReport>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<ProviderError>,
}

/// The result of a run.
#[derive(Debug, Serialize)]
pub struct RunResult {
    /// What the run decided, from the observation before it changed anything.
    pub plan: Plan,
    pub applied: Vec<Applied>,
    /// Every change asked for and what came of it, confirmed by observing again after the
    /// apply: what the store recorded.
    pub changes: Vec<store::ChangeRecord>,
    /// The run's id in the store.
    pub run_id: store::RunId,
    /// How the run ended, as recorded.
    #[serde(serialize_with = "as_text")]
    pub outcome: Outcome,
    /// Deviations open after the run, opened and resolved by it, as recorded.
    #[serde(skip)]
    pub counts: store::RunCounts,
    /// How each provider's first observation went.
    #[serde(skip)]
    pub observed: Vec<ObserveTiming>,
    /// The plan of the lab after the run's own changes (when it made any).
    #[serde(skip)]
    pub after: Option<Plan>,
    /// The latest observation of each provider: the one after the run's changes where it
    /// made any. When the run concluded something (a commit), the controller keeps them for
    /// its next run ([`Concluded::keep_observations`]), and the run it returns has none.
    #[serde(skip)]
    pub inputs: Vec<ProviderInput>,
    /// What the run concluded, for the controller to hand to the next run.
    #[serde(skip)]
    pub concluded: Option<Concluded>,
    /// Nothing had moved since the run before: its conclusions were recorded again, with no
    /// diff and no new model.
    #[serde(skip)]
    pub recorded_again: bool,
}

impl RunResult {
    /// The plan as the lab stands at the end of the run.
    pub fn latest_plan(&self) -> &Plan {
        self.after.as_ref().unwrap_or(&self.plan)
    }
}

impl RunResult {
    /// What went wrong in the run, one line each: apply failures, changes accepted but not
    /// seen live, providers that could not be observed, and changes held back by `safety`.
    pub fn errors(&self) -> Vec<String> {
        self.applied
            .iter()
            .filter_map(|a| a.error.as_ref().map(|e| e.to_string()))
            .chain(
                self.changes
                    .iter()
                    .filter(|c| c.result == store::ChangeResult::Unconfirmed)
                    .filter_map(|c| c.error.clone()),
            )
            .chain(
                self.plan
                    .unobservable
                    .iter()
                    .map(|(p, why)| format!("provider {p} could not be observed: {why}")),
            )
            .chain(
                self.plan
                    .held
                    .iter()
                    .map(|(p, why)| format!("changes to {p} held back: {why}")),
            )
            .map(|e| crate::redact::userinfo(&e))
            .collect()
    }
}

/// How each provider's first observation went, as the run records it: `inputs` are the
/// observations (the first, or the one after the run's changes), whose errors say why a
/// provider did not answer.
fn provider_records(
    timings: &[ObserveTiming],
    inputs: &[ProviderInput],
) -> Vec<store::ProviderRecord> {
    timings
        .iter()
        .map(|t| store::ProviderRecord {
            provider: t.provider.clone(),
            asked: t.asked,
            answered: t.answered,
            observe_ms: (t.seconds * 1000.0).round() as i64,
            error: inputs
                .iter()
                .find(|i| i.provider == t.provider)
                .and_then(|i| i.observed.as_ref().err())
                .filter(|_| !t.answered)
                .map(|e| crate::redact::userinfo(&e.to_string())),
        })
        .collect()
}

fn as_text<S: serde::Serializer>(outcome: &Outcome, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(outcome.as_str())
}

/// How long one provider's observation took and whether it answered at all: for the
/// daemon's metrics, the logs and the run's record (never compared).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ObserveTiming {
    pub provider: String,
    /// The provider answered (some of its resources may still be unreadable).
    pub answered: bool,
    /// It was called (not left out for its backoff).
    pub asked: bool,
    /// It answered with its last observation, nothing live moved
    /// ([`Reobserved::Unchanged`](crate::providers::Reobserved)).
    pub unchanged: bool,
    pub seconds: f64,
}

/// Observes every provider concurrently; each observation has its own timeout and retries
/// (inside the provider), so one slow API never holds up the others' results.
pub async fn observe(
    state: &Arc<DesiredState>,
    providers: &[Arc<dyn Provider>],
) -> Vec<ProviderInput> {
    observe_timed(state, providers, &|p| p.expected(state).into(), Vec::new())
        .await
        .0
}

/// [`observe`], with what each provider expects from `expected`; a provider named in
/// `previous` is handed its last observation of this state ([`Provider::observe_again`]).
async fn observe_timed(
    state: &Arc<DesiredState>,
    providers: &[Arc<dyn Provider>],
    expected: &(dyn Fn(&dyn Provider) -> Arc<[Resource]> + Sync),
    mut previous: Vec<Observation>,
) -> (Vec<ProviderInput>, Vec<ObserveTiming>) {
    let mut set = JoinSet::new();
    for (i, p) in providers.iter().enumerate() {
        let (p, state) = (Arc::clone(p), Arc::clone(state));
        let last = previous
            .iter()
            .position(|o| o.provider == p.name())
            .map(|at| previous.swap_remove(at));
        set.spawn(async move {
            let start = std::time::Instant::now();
            let observed = match last {
                Some(last) => p.observe_again(&state, last).await,
                None => p.observe(&state).await.map(Reobserved::Fresh),
            };
            (i, observed, start.elapsed())
        });
    }
    // Those of providers no longer asked.
    drop(previous);
    let mut results: BTreeMap<usize, (Result<Reobserved, ProviderError>, f64)> = BTreeMap::new();
    while let Some(joined) = set.join_next().await {
        if let Ok((i, r, took)) = joined {
            results.insert(i, (r, took.as_secs_f64()));
        }
    }
    providers
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let (observed, seconds) = results.remove(&i).unwrap_or_else(|| {
                let panicked = ProviderError::Internal {
                    provider: p.name().to_string(),
                    detail: "the observation task panicked".into(),
                };
                (Err(panicked), 0.0)
            });
            let timing = ObserveTiming {
                provider: p.name().to_string(),
                answered: observed.is_ok(),
                asked: !matches!(observed, Err(ProviderError::Resting { .. })),
                unchanged: matches!(observed, Ok(Reobserved::Unchanged(_))),
                seconds,
            };
            let observed = observed.map(Reobserved::into_inner);
            let input = ProviderInput {
                provider: p.name().to_string(),
                expected: expected(p.as_ref()),
                observed,
                can_apply: p.kinds().into_iter().filter(|k| p.can_apply(*k)).collect(),
                severities: p.severities(),
            };
            (input, timing)
        })
        .unzip()
}

/// Load is done by the caller; this observes and diffs. Writes nothing anywhere.
/// `force`: apply beyond labctl.yaml's safety limits (once, as a person decided).
pub async fn plan(
    loaded: &Loaded,
    providers: &[Arc<dyn Provider>],
    force: bool,
) -> (Plan, Vec<ProviderInput>) {
    let rules = rules(loaded, force, &[]);
    let (inputs, _) = observe_timed(
        &loaded.state,
        providers,
        &|p| loaded.expected(p),
        Vec::new(),
    )
    .await;
    (diff::diff(&inputs, &rules), inputs)
}

/// The policy of `loaded`'s labctl.yaml, with `force` as asked this once, and the runtime
/// suspensions in force. A suspension of a kind this labctl does not know suspends
/// everything: it cannot tell what the operator meant to stop.
pub fn rules(loaded: &Loaded, force: bool, suspended: &[store::Suspension]) -> Rules {
    let mut rules = Rules::from_state(&loaded.state);
    rules.safety.force = force;
    rules.runtime_suspend = suspended
        .iter()
        .map(|s| match s.kind.as_deref().map(Kind::parse) {
            None => (None, None),
            Some(Some(kind)) => (Some(kind), s.name.clone()),
            Some(None) => {
                tracing::warn!(scope = %s.scope(), "a suspension of an unknown kind suspends everything");
                (None, None)
            }
        })
        .collect();
    rules
}

/// Carries out the plan's changes, provider by provider, each against the observation its
/// changes were planned from (in `inputs`): nothing is taken from an earlier call.
pub async fn apply(
    plan: &Plan,
    inputs: &[ProviderInput],
    providers: &[Arc<dyn Provider>],
) -> Vec<Applied> {
    let mut out = Vec::new();
    for (name, changes) in &plan.changes {
        let Some(p) = providers.iter().find(|p| p.name() == name) else {
            continue;
        };
        // The diff plans changes only from a successful observation.
        let Some(base) = inputs
            .iter()
            .find(|i| &i.provider == name)
            .and_then(|i| i.observed.as_ref().ok())
        else {
            continue;
        };
        let result = p.apply(base, changes).await;
        match &result {
            Ok(r) => tracing::info!(provider = %name, changes = r.applied.len(), "applied"),
            Err(e) => tracing::warn!(provider = %name, error = %e, "apply failed"),
        }
        let (report, error) = match result {
            Ok(r) => (Some(r), None),
            Err(e) => (None, Some(e)),
        };
        out.push(Applied {
            provider: name.clone(),
            report,
            error,
        });
    }
    out
}

/// What a run concluded, kept by the controller for the next one: a run of the same commit
/// names the desired state by its address instead of writing it out again, and a run that
/// also finds the same rules and every provider's observation unchanged concludes what this
/// run did, so it records that again without diffing or building the model anew.
#[derive(Debug, Clone)]
pub struct Concluded {
    commit: String,
    /// The address of the commit's desired state, which the store holds.
    desired: String,
    /// The address of each provider's observed resources, as the run recorded them.
    observed: Vec<(String, String)>,
    /// Present when the run observed every provider and planned no change.
    again: Option<Again>,
    /// Each provider's latest observation, when the controller keeps them
    /// ([`Concluded::keep_observations`]): handed back to that provider by the next run of
    /// this commit ([`Provider::observe_again`]), and taken by it. Made of the same inputs
    /// as `observed`, so each one's resources are at the address `observed` gives.
    observations: Vec<Observation>,
}

impl Concluded {
    /// Keeps what the run saw last of each provider it could observe (`RunResult::inputs`),
    /// for the next run of the same commit.
    pub fn keep_observations(&mut self, inputs: Vec<ProviderInput>) {
        self.observations = inputs.into_iter().filter_map(|i| i.observed.ok()).collect();
    }
}

#[derive(Debug, Clone)]
struct Again {
    key: RunKey,
    plan: Plan,
    /// The report as recorded, each body by its address alone.
    report: RunReport,
}

/// What a run's conclusions depend on beyond the commit: the policy as asked this once, and
/// everything each provider observed (its fingerprint; not when).
#[derive(Debug, Clone, PartialEq)]
struct RunKey {
    commit: String,
    force: bool,
    runtime_suspend: Vec<(Option<Kind>, Option<String>)>,
    observed: Vec<(String, String)>,
}

impl RunKey {
    /// `None` when a provider could not be observed (what it failed with is not comparable)
    /// or the desired state is not a commit.
    fn of(
        loaded: &Loaded,
        rules: &Rules,
        inputs: &[ProviderInput],
        snapshots: &[Option<store::ObservedSnapshot>],
    ) -> Option<RunKey> {
        let observed = inputs
            .iter()
            .zip(snapshots)
            .map(|(input, snapshot)| {
                let o = input.observed.as_ref().ok()?;
                Some((input.provider.clone(), fingerprint(o, snapshot.as_ref()?)))
            })
            .collect::<Option<_>>()?;
        Some(RunKey {
            commit: loaded.commit()?.to_string(),
            force: rules.safety.force,
            runtime_suspend: rules.runtime_suspend.clone(),
            observed,
        })
    }
}

/// Everything `o` says but when: its resources by their snapshot's address, and the rest.
fn fingerprint(o: &Observation, snapshot: &store::ObservedSnapshot) -> String {
    let mut w = crate::canonical::Writer::to(crate::canonical::Sha256Sink::default());
    w.begin_object();
    // Written only when there is any, so that fingerprints of other providers stay as they were.
    if !o.declared_elsewhere.is_empty() {
        w.key("declared_elsewhere");
        w.serialize(&o.declared_elsewhere);
    }
    w.key("details");
    w.serialize(&o.details);
    w.key("hosts");
    w.serialize(&o.hosts);
    w.key("resources");
    w.serialize(snapshot.body.hash());
    w.key("unobservable");
    w.serialize(&o.unobservable);
    w.key("version");
    w.serialize(&o.version);
    w.end();
    w.into_inner().hex()
}

/// The body of the started run `run`: plan, apply what the policy allows, and record
/// everything in one transaction. (Starting runs, leadership and retention are the
/// controller's.) `previous` is what the run before concluded, if the caller kept it.
///
/// Leadership is confirmed just before anything is applied: a run that lost the lock (its
/// database session ended) stops there, changes nothing and is recorded as aborted.
pub async fn execute(
    store: &Store,
    run: store::RunId,
    leader: &mut store::LeaderGuard,
    loaded: &Loaded,
    providers: &[Arc<dyn Provider>],
    force: bool,
    mut previous: Option<&mut Concluded>,
) -> Result<RunResult, StoreError> {
    // Observations of another commit say nothing of this one's names: dropped at once.
    let same_commit = previous
        .as_ref()
        .is_some_and(|p| Some(p.commit.as_str()) == loaded.commit());
    let last = previous
        .as_mut()
        .map(|p| std::mem::take(&mut p.observations))
        .filter(|_| same_commit)
        .unwrap_or_default();
    let previous = previous.as_deref();
    // Read at each run, so `labctl suspend` takes effect at the next run, with no restart.
    let suspended = match store.suspensions().await {
        Ok(s) => s,
        Err(e) => {
            // Without them it cannot know what it may touch: nothing is observed or changed.
            let message = format!("cannot read the runtime suspensions: {e}");
            return Err(fail_run(store, run, loaded, message, e).await);
        }
    };
    let rules = rules(loaded, force, &suspended);
    let (mut inputs, observed) =
        observe_timed(&loaded.state, providers, &|p| loaded.expected(p), last).await;
    let snapshots = observed_snapshots(&inputs, previous, &observed);
    let key = RunKey::of(loaded, &rules, &inputs, &snapshots);
    if let Some(again) = previous
        .and_then(|p| p.again.as_ref())
        .filter(|a| key.as_ref() == Some(&a.key))
    {
        // Nothing moved: the same conclusions, recorded again with this run's observations.
        let mut report = again.report.clone();
        report.observed = snapshots.into_iter().flatten().collect();
        report.providers = provider_records(&observed, &inputs);
        let counts = finish(store, run, loaded, report).await?;
        return Ok(RunResult {
            plan: again.plan.clone(),
            applied: Vec::new(),
            changes: Vec::new(),
            run_id: run,
            outcome: again.report.outcome,
            counts,
            observed,
            after: None,
            inputs,
            concluded: previous.cloned(),
            recorded_again: true,
        });
    }
    let plan = diff::diff(&inputs, &rules);
    if !plan.changes.is_empty() {
        if let Err(lost) = leader.confirm().await {
            tracing::error!(error = %lost, "not applying");
            let report = concluding_nothing(
                Outcome::Aborted,
                loaded.commit().map(str::to_string),
                lost.to_string(),
            );
            match store.finish_run(run, report).await {
                // The next leader may have marked it aborted already.
                Ok(_) | Err(StoreError::RunNotRunning(_)) => {}
                Err(e) => tracing::warn!(error = %e, "could not record the aborted run"),
            }
            return Err(lost);
        }
    }
    let applied = apply(&plan, &inputs, providers).await;
    // What the lab looks like now: the providers that were changed are observed again, so the
    // run records (and resolves) what is true after its own changes, and every change is
    // confirmed, or not, by what the provider shows afterwards.
    let (after, changes, snapshots) = if applied.is_empty() {
        (None, Vec::new(), snapshots)
    } else {
        drop(snapshots);
        let (after, changes) =
            reobserve(loaded, &plan, &mut inputs, &applied, providers, &rules).await;
        (Some(after), changes, observed_snapshots(&inputs, None, &[]))
    };
    // The commit's desired state by its address when the run before recorded it.
    let desired_stored = previous
        .filter(|p| Some(p.commit.as_str()) == loaded.commit())
        .map(|p| store::Blob::stored(p.desired.clone()));
    let mut report = report(
        loaded,
        after.as_ref().unwrap_or(&plan),
        &inputs,
        snapshots,
        desired_stored,
        &applied,
        &changes,
    );
    if let Some(after) = &after {
        report.repaired = repaired(&plan, after, &changes);
    }
    report.changes = changes.clone();
    report.providers = provider_records(&observed, &inputs);
    let outcome = report.outcome;
    let concluded = match (loaded.commit(), &report.desired) {
        (Some(commit), Some(desired)) => Some(Concluded {
            commit: commit.to_string(),
            desired: desired.hash().to_string(),
            observed: report
                .observed
                .iter()
                .map(|o| (o.provider.clone(), o.body.hash().to_string()))
                .collect(),
            again: key
                .filter(|_| applied.is_empty() && plan.changes.is_empty())
                .map(|key| Again {
                    key,
                    plan: plan.clone(),
                    report: RunReport {
                        outcome,
                        commit_sha: report.commit_sha.clone(),
                        desired: report.desired.as_ref().map(store::Blob::address),
                        observed: Vec::new(),
                        deviations: report.deviations.clone(),
                        repaired: Vec::new(),
                        unobservable: report.unobservable.clone(),
                        resources: report.resources,
                        error: report.error.clone(),
                        model: report.model.as_ref().map(store::Blob::address),
                        changes: Vec::new(),
                        // This run's, replaced by the run that records it again.
                        providers: Vec::new(),
                    },
                }),
            observations: Vec::new(),
        }),
        _ => None,
    };
    let counts = finish(store, run, loaded, report).await?;
    Ok(RunResult {
        plan,
        applied,
        changes,
        run_id: run,
        outcome,
        counts,
        observed,
        after,
        inputs,
        concluded,
        recorded_again: false,
    })
}

/// Records `report` as the end of `run`. A body named by its address that the store no
/// longer holds fails the run, recorded as failed and concluding nothing: the next run, with
/// nothing kept from this one, writes every body out.
async fn finish(
    store: &Store,
    run: store::RunId,
    loaded: &Loaded,
    report: RunReport,
) -> Result<store::RunCounts, StoreError> {
    match store.finish_run(run, report).await {
        Err(e @ StoreError::BlobGone { .. }) => {
            Err(fail_run(store, run, loaded, e.to_string(), e).await)
        }
        other => other,
    }
}

/// Records `run` as failed with `message`, concluding nothing, and hands back `error`.
async fn fail_run(
    store: &Store,
    run: store::RunId,
    loaded: &Loaded,
    message: String,
    error: StoreError,
) -> StoreError {
    let report = concluding_nothing(
        Outcome::Failed,
        loaded.commit().map(str::to_string),
        message,
    );
    if let Err(e) = store.finish_run(run, report).await {
        tracing::warn!(error = %e, "could not record the failed run");
    }
    error
}

/// The first pause before observing a settling provider again, and the longest.
const SETTLE_FIRST_PAUSE: std::time::Duration = std::time::Duration::from_millis(100);
const SETTLE_MAX_PAUSE: std::time::Duration = std::time::Duration::from_secs(1);

/// Observes again every provider in `applied`, replacing its observation in `inputs`, and
/// diffs anew; a provider whose accepted changes do not show yet is observed again until they
/// do or its [`Provider::settle`] time has passed. Returns the new plan and a record of every
/// change asked for: `before` from the observation it was planned against, the result from
/// the provider's answer and the new observation.
async fn reobserve(
    loaded: &Loaded,
    plan: &Plan,
    inputs: &mut [ProviderInput],
    applied: &[Applied],
    providers: &[Arc<dyn Provider>],
    rules: &Rules,
) -> (Plan, Vec<store::ChangeRecord>) {
    let mut records = Vec::new();
    for a in applied {
        let base = inputs
            .iter()
            .find(|i| i.provider == a.provider)
            .and_then(|i| i.observed.as_ref().ok());
        for change in plan.changes.get(&a.provider).into_iter().flatten() {
            records.push(change_record(&a.provider, change, base, a));
        }
    }
    let mut again: Vec<Arc<dyn Provider>> = providers
        .iter()
        .filter(|p| applied.iter().any(|a| a.provider == p.name()))
        .cloned()
        .collect();
    // A provider whose live system loads changes on its own schedule is given its settle
    // time: observed again, with backoff, while changes it accepted do not show yet.
    let start = std::time::Instant::now();
    let mut pause = SETTLE_FIRST_PAUSE;
    let after = loop {
        let (fresh, _) =
            observe_timed(&loaded.state, &again, &|p| loaded.expected(p), Vec::new()).await;
        for fresh in fresh {
            if let Some(input) = inputs.iter_mut().find(|i| i.provider == fresh.provider) {
                input.observed = fresh.observed;
            }
        }
        let after = diff::diff(inputs, rules);
        let residue = Residue::new(&after);
        let elapsed = start.elapsed();
        again.retain(|p| {
            elapsed < p.settle()
                && records.iter().any(|r| {
                    r.provider == p.name()
                        && r.result == store::ChangeResult::Applied
                        && residue.pending(r)
                })
        });
        let Some(left) = again.iter().map(|p| p.settle() - elapsed).max() else {
            break after;
        };
        tracing::debug!(
            providers = ?again.iter().map(|p| p.name()).collect::<Vec<_>>(),
            "changes do not show yet; observing again"
        );
        tokio::time::sleep(pause.min(left)).await;
        pause = (pause * 2).min(SETTLE_MAX_PAUSE);
    };
    let residue = Residue::new(&after);
    for r in records
        .iter_mut()
        .filter(|r| r.result == store::ChangeResult::Applied)
    {
        if let Some(why) = residue.unconfirmed(r) {
            r.result = store::ChangeResult::Unconfirmed;
            r.error = Some(why);
        }
    }
    (after, records)
}

/// What the plan made after an apply still finds, indexed by resource: what tells whether
/// the run's changes took.
struct Residue<'a> {
    after: &'a Plan,
    /// Resources that could not be read.
    unreadable: std::collections::HashSet<(&'a str, &'a str)>,
    /// (provider, kind, name) the plan would change again.
    differs: std::collections::HashSet<(&'a str, &'a str, &'a str)>,
}

impl<'a> Residue<'a> {
    fn new(after: &'a Plan) -> Self {
        Residue {
            after,
            unreadable: after
                .deviations
                .iter()
                .filter(|d| d.dtype == DeviationType::Unknown)
                .map(|d| (d.kind.as_str(), d.name.as_str()))
                .collect(),
            differs: after
                .repairs
                .iter()
                .flat_map(|(p, changes)| {
                    changes
                        .iter()
                        .map(move |c| (p.as_str(), c.kind().as_str(), c.name()))
                })
                .collect(),
        }
    }

    /// Whether `change`'s resource does not show as Git has it yet: it differs, or the
    /// provider cannot read it yet.
    fn pending(&self, change: &store::ChangeRecord) -> bool {
        self.still_differs(change)
            || self
                .unreadable
                .contains(&(change.kind.as_str(), change.name.as_str()))
    }

    /// Whether the provider accepted `change` but still shows its resource unlike Git.
    fn still_differs(&self, change: &store::ChangeRecord) -> bool {
        self.differs.contains(&(
            change.provider.as_str(),
            change.kind.as_str(),
            change.name.as_str(),
        ))
    }

    /// Why the observation after the apply does not confirm `change`, if it does not: the
    /// provider could not be observed again, the resource could not be read, or it still
    /// differs.
    fn unconfirmed(&self, change: &store::ChangeRecord) -> Option<String> {
        let provider = &change.provider;
        let (kind, name) = (&change.kind, &change.name);
        if let Some(why) = self.after.unobservable.get(provider) {
            Some(crate::redact::userinfo(&format!(
                "{provider} could not be observed after the apply: {why}"
            )))
        } else if self.unreadable.contains(&(kind.as_str(), name.as_str())) {
            Some(format!(
                "{provider} did not show {kind}/{name} readably after the apply"
            ))
        } else if self.still_differs(change) {
            Some(format!(
                "{provider} accepted the change, but after the apply {kind}/{name} still \
                 differs from Git"
            ))
        } else {
            None
        }
    }
}

/// The record of `change`, as `applied` (the provider's answer) tells it; `base` is the
/// observation the change was planned against.
fn change_record(
    provider: &str,
    change: &crate::providers::Change,
    base: Option<&Observation>,
    applied: &Applied,
) -> store::ChangeRecord {
    use crate::providers::Change;
    let (action, after) = match change {
        Change::Create { fields, .. } => (store::ChangeAction::Create, Some(fields.clone())),
        Change::Update { fields, .. } => (store::ChangeAction::Update, Some(fields.clone())),
        Change::Delete { .. } => (store::ChangeAction::Delete, None),
    };
    let before = match change {
        Change::Create { .. } => None,
        _ => base.and_then(|o| {
            o.resources
                .iter()
                .find(|r| {
                    r.kind == change.kind()
                        && r.name == change.name()
                        && (change.key().is_none() || r.key.as_deref() == change.key())
                })
                .map(|r| r.fields.value())
        }),
    };
    let (result, error) = match (&applied.report, &applied.error) {
        (_, Some(e)) => (
            store::ChangeResult::Failed,
            Some(crate::redact::userinfo(&e.to_string())),
        ),
        (Some(r), None) if r.applied.contains(change) => (store::ChangeResult::Applied, None),
        _ => (
            store::ChangeResult::Failed,
            Some(format!("{provider} did not make this change")),
        ),
    };
    store::ChangeRecord {
        provider: provider.to_string(),
        action,
        kind: change.kind().as_str().to_string(),
        name: change.name().to_string(),
        before,
        after,
        result,
        error,
    }
}

/// The report of a run that stopped before it could conclude anything about the lab: every
/// kind unobservable, so every open deviation stays open.
pub fn concluding_nothing(outcome: Outcome, commit: Option<String>, error: String) -> RunReport {
    let mut report = RunReport::new(outcome);
    report.commit_sha = commit;
    report.error = Some(error);
    report.unobservable = Kind::ALL
        .iter()
        .map(|k| store::Unobservable::kind(k.as_str()))
        .collect();
    report
}

/// Each provider's resources as the store keeps them (sorted by kind and name), in the order
/// of `inputs`; `None` for a provider that could not be observed. Written resource by
/// resource, never the whole list as one value. A provider whose resources hash as they did
/// in the run before (`previous`) is named by that address: it is not compressed again; one
/// whose `timings` say it returned the observation handed back is not even hashed.
fn observed_snapshots(
    inputs: &[ProviderInput],
    previous: Option<&Concluded>,
    timings: &[ObserveTiming],
) -> Vec<Option<store::ObservedSnapshot>> {
    fn sorted(o: &Observation) -> Vec<&Resource> {
        let mut resources: Vec<&Resource> = o.resources.iter().collect();
        resources.sort_by(|a, b| (a.kind, &a.name).cmp(&(b.kind, &b.name)));
        resources
    }
    fn write<W: std::io::Write>(w: &mut crate::canonical::Writer<W>, resources: &[&Resource]) {
        w.begin_object();
        w.key("resources");
        w.begin_array();
        for r in resources {
            r.write_canonical(w);
        }
        w.end();
        w.end();
    }
    fn address(resources: &[&Resource]) -> String {
        let mut w = crate::canonical::Writer::to(crate::canonical::Sha256Sink::default());
        write(&mut w, resources);
        w.into_inner().hex()
    }
    inputs
        .iter()
        .map(|input| {
            let o = input.observed.as_ref().ok()?;
            let before = previous
                .and_then(|p| p.observed.iter().find(|(name, _)| *name == input.provider))
                .map(|(_, hash)| hash);
            // Handed back and returned unchanged: what the run before recorded of these very
            // resources (it kept them with this address) is still their address. At 100k
            // reservations that is about 21 MB of canonical JSON not written out to be hashed.
            let handed_back = timings
                .iter()
                .any(|t| t.provider == input.provider && t.unchanged);
            let body = match before.filter(|_| handed_back) {
                Some(hash) => {
                    debug_assert_eq!(&address(&sorted(o)), hash, "{}", input.provider);
                    store::Blob::stored(hash.clone())
                }
                None => {
                    let resources = sorted(o);
                    match before.filter(|before| address(&resources) == **before) {
                        Some(hash) => store::Blob::stored(hash.clone()),
                        None => {
                            let mut w = store::Blob::writer();
                            write(&mut w, &resources);
                            store::Blob::from_writer(w)
                        }
                    }
                }
            };
            Some(store::ObservedSnapshot {
                provider: input.provider.clone(),
                body,
                observed_at: o.observed_at,
            })
        })
        .collect()
}

/// What the store keeps of a run: `snapshots` from [`observed_snapshots`] of `inputs`, and
/// the desired state by its address (`desired_stored`) when the store holds it.
fn report(
    loaded: &Loaded,
    plan: &Plan,
    inputs: &[ProviderInput],
    snapshots: Vec<Option<store::ObservedSnapshot>>,
    desired_stored: Option<store::Blob>,
    applied: &[Applied],
    changes: &[store::ChangeRecord],
) -> RunReport {
    // A change the provider accepted but does not show is a failed apply too.
    let residue = Residue::new(plan);
    let not_taken: Vec<&store::ChangeRecord> = changes
        .iter()
        .filter(|c| c.result == store::ChangeResult::Unconfirmed && residue.still_differs(c))
        .collect();
    let failures: Vec<String> = applied
        .iter()
        .filter_map(|a| a.error.as_ref().map(|e| e.to_string()))
        .chain(not_taken.iter().filter_map(|c| c.error.clone()))
        .chain(plan.unobservable.values().cloned())
        .chain(plan.held.iter().map(|(p, why)| format!("{p}: {why}")))
        .collect();
    // Held changes leave the lab out of line with what the policy asks: a person must look.
    let outcome = if applied.iter().any(|a| a.error.is_some())
        || !not_taken.is_empty()
        || !plan.held.is_empty()
    {
        Outcome::Failed
    } else if !plan.unobservable.is_empty() || plan.count(DeviationType::Unknown) > 0 {
        // Finished, but not everything was seen: not a success a gate may trust.
        Outcome::Partial
    } else {
        Outcome::Succeeded
    };
    let mut report = RunReport::new(outcome);
    report.commit_sha = loaded.commit().map(str::to_string);
    // Desired snapshots are keyed by commit: a plain directory has none to key them by.
    // Each body is made canonical text as soon as it is built, and its value dropped: the
    // values of a large lab are several times their text.
    report.desired = loaded.commit().map(|_| {
        desired_stored.unwrap_or_else(|| {
            let mut w = store::Blob::writer();
            loaded.state.write_canonical(&mut w);
            store::Blob::from_writer(w)
        })
    });
    // A provider URL may carry a password (`http://user:pass@kea`); never into the store.
    report.error = (!failures.is_empty()).then(|| crate::redact::userinfo(&failures.join("; ")));
    report.resources = inputs.iter().map(|i| i.expected.len() as u64).sum();
    report.observed = snapshots.into_iter().flatten().collect();
    for input in inputs {
        match &input.observed {
            Ok(o) => {
                // A resource with any unreadable part keeps its open deviations open.
                for u in &o.unobservable {
                    report
                        .unobservable
                        .push(store::Unobservable::object(u.kind.as_str(), u.name.clone()));
                }
            }
            Err(_) => {
                let kinds: std::collections::BTreeSet<Kind> =
                    input.expected.iter().map(|r| r.kind).collect();
                for k in kinds {
                    report
                        .unobservable
                        .push(store::Unobservable::kind(k.as_str()));
                }
            }
        }
    }
    report.deviations = plan
        .deviations
        .iter()
        .filter(|d| d.dtype != DeviationType::Unknown)
        .map(deviation_record)
        .collect();
    report.model = Some(ModelParts::new(&loaded.state, inputs, plan).blob());
    report
}

fn deviation_record(d: &diff::Deviation) -> store::DeviationRecord {
    store::DeviationRecord {
        kind: d.kind.as_str().to_string(),
        name: d.name.clone(),
        field_path: d.field_path.clone(),
        dtype: d.dtype,
        severity: d.severity,
        auto_correctable: d.auto_correctable,
        remediation: Some(d.remediation.clone()),
        expected: d.expected.clone(),
        actual: d.actual.clone(),
    }
}

/// The deviations `before` found that are gone in `after` because one of the run's own
/// changes, confirmed, repaired their resource.
fn repaired(
    before: &Plan,
    after: &Plan,
    changes: &[store::ChangeRecord],
) -> Vec<store::DeviationRecord> {
    use std::collections::HashSet;
    let still: HashSet<(Kind, &str, &str)> = after
        .deviations
        .iter()
        .map(|d| (d.kind, d.name.as_str(), d.field_path.as_str()))
        .collect();
    let confirmed: HashSet<(&str, &str)> = changes
        .iter()
        .filter(|c| c.result == store::ChangeResult::Applied)
        .map(|c| (c.kind.as_str(), c.name.as_str()))
        .collect();
    before
        .deviations
        .iter()
        .filter(|d| d.dtype != DeviationType::Unknown)
        .filter(|d| !still.contains(&(d.kind, d.name.as_str(), d.field_path.as_str())))
        .filter(|d| confirmed.contains(&(d.kind.as_str(), d.name.as_str())))
        .map(deviation_record)
        .collect()
}

/// The reconciled model: every resource of Git (its spec and labels) and every live one, with
/// what each provider expected and observed, the stable details providers reported, and a
/// status in Argo CD's words: synced, out-of-sync, unknown, or unobserved (no provider covers
/// it).
///
/// Held as references into the desired state and the observations, in two lists sorted by
/// resource (not a map of a record per resource: at 100k resources that index was 36 MB of
/// the run's peak); each [`Entry`] is built only as it is written, by walking both lists
/// together, so the model is never a second copy of everything the run saw.
struct ModelParts<'a> {
    /// Every document of Git, sorted by kind and name.
    docs: Vec<(
        ResourceKey<'a>,
        &'a crate::model::Metadata,
        crate::model::SpecRef<'a>,
    )>,
    /// What each provider expected (`observed: false`) and observed, sorted by kind and name,
    /// and for one resource in the order asked.
    seen: Vec<(ResourceKey<'a>, Seen<'a>)>,
    /// Deviations per resource (how many, whether any is unknown): gathered once, not a
    /// scan of them per resource.
    deviations: BTreeMap<ResourceKey<'a>, (u64, bool)>,
    inputs: &'a [ProviderInput],
    hosts: Vec<ModelHost>,
}

type ResourceKey<'a> = (Kind, &'a str);

struct Seen<'a> {
    /// Which of the inputs.
    input: u32,
    observed: bool,
    fields: &'a Fields,
}

impl<'a> ModelParts<'a> {
    fn new(state: &'a DesiredState, inputs: &'a [ProviderInput], plan: &'a Plan) -> Self {
        let mut docs: Vec<_> = state
            .documents()
            .map(|(kind, meta, spec)| ((kind, meta.name.as_str()), meta, spec))
            .collect();
        // Unstable is enough: a valid state names each document of a kind once. (A stable
        // sort takes a scratch list of its own.)
        docs.sort_unstable_by_key(|d| d.0);
        let mut seen = Vec::with_capacity(
            inputs
                .iter()
                .map(|i| i.expected.len() + i.observed.as_ref().map_or(0, |o| o.resources.len()))
                .sum(),
        );
        for (index, input) in inputs.iter().enumerate() {
            let expected = input.expected.iter().map(|r| (r, false));
            let observed = input
                .observed
                .iter()
                .flat_map(|o| o.resources.iter().map(|r| (r, true)));
            for (r, observed) in expected.chain(observed) {
                let seen_as = Seen {
                    input: index as u32,
                    observed,
                    fields: &r.fields,
                };
                seen.push(((r.kind, r.name.as_str()), seen_as));
            }
        }
        // In the order a stable sort gives (one resource's providers in the order asked, what
        // each expected before what it observed, one list's resources in its order: their
        // addresses rise along it) without the scratch list a stable sort takes: 8 MB at the
        // peak of a 100k run.
        seen.sort_unstable_by_key(|(key, s)| {
            (
                *key,
                s.input,
                s.observed,
                std::ptr::from_ref(s.fields) as usize,
            )
        });
        let mut deviations: BTreeMap<ResourceKey, (u64, bool)> = BTreeMap::new();
        for d in &plan.deviations {
            let (count, unknown) = deviations.entry((d.kind, d.name.as_str())).or_default();
            *count += 1;
            *unknown |= d.dtype == DeviationType::Unknown;
        }
        let mut hosts: Vec<ModelHost> = inputs
            .iter()
            .filter_map(|i| Some((&i.provider, i.observed.as_ref().ok()?)))
            .flat_map(|(provider, o)| {
                o.hosts.iter().map(move |h| ModelHost {
                    provider: provider.clone(),
                    name: h.name.clone(),
                    online: h.online,
                    cores: h.cores,
                    memory_mib: h.memory_mib,
                })
            })
            .collect();
        hosts.sort();
        ModelParts {
            docs,
            seen,
            deviations,
            inputs,
            hosts,
        }
    }

    /// The entries in the stored order (kind, then name), each built as it is asked for.
    fn entries(&self) -> impl Iterator<Item = Entry> + '_ {
        let mut docs = self.docs.iter().peekable();
        let mut seen = self.seen.iter().peekable();
        std::iter::from_fn(move || {
            let key = match (docs.peek(), seen.peek()) {
                (Some(d), Some(s)) => d.0.min(s.0),
                (Some(d), None) => d.0,
                (None, Some(s)) => s.0,
                (None, None) => return None,
            };
            let (kind, name) = key;
            let mut e = Entry::new(kind, name);
            // The last of one name wins, as validation allows only one.
            if let Some((_, meta, spec)) =
                std::iter::from_fn(|| docs.next_if(|d| d.0 == key)).last()
            {
                e.labels = Some(meta.labels.clone());
                e.spec = Some(serde_json::to_value(spec).unwrap_or_default());
            }
            while let Some((_, s)) = seen.next_if(|s| s.0 == key) {
                let input = &self.inputs[s.input as usize];
                if !e.providers.contains(&input.provider) {
                    e.providers.push(input.provider.clone());
                }
                if s.observed {
                    merge(&mut e.observed, s.fields.value());
                    let details = input.observed.as_ref().ok().map(|o| &o.details);
                    if let Some(details) = details.filter(|d| !d.is_empty()) {
                        if let Some(more) = details.get(&format!("{kind}/{name}")) {
                            merge(&mut e.details, more.clone());
                        }
                    }
                } else {
                    merge(&mut e.desired, s.fields.value());
                }
            }
            let (deviations, unknown) = self.deviations.get(&key).copied().unwrap_or_default();
            e.status = if e.providers.is_empty() {
                Status::Unobserved
            } else if unknown {
                Status::Unknown
            } else if deviations == 0 {
                Status::Synced
            } else {
                Status::OutOfSync
            };
            e.deviations = deviations;
            Some(e)
        })
    }

    /// The model as the store keeps it. No timestamps in it: the model is content-addressed,
    /// so an unchanged lab must give byte-identical models (when it was seen is on the run
    /// row).
    fn blob(&self) -> store::Blob {
        let mut w = store::Blob::writer();
        ReconciledModel::write_canonical(&mut w, &self.hosts, self.entries());
        store::Blob::from_writer(w)
    }
}

/// Merges `value` into `target`: objects key by key (two providers see different fields of
/// one resource), anything else replaces.
fn merge(target: &mut Option<Json>, value: Json) {
    match (target.as_mut(), value) {
        (Some(Json::Object(existing)), Json::Object(more)) => existing.extend(more),
        (_, value) => *target = Some(value),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::{Observation, Resource};
    use serde_json::json;

    /// The model as one value, checked to be what the store is given.
    fn model(state: &DesiredState, inputs: &[ProviderInput], plan: &Plan) -> ReconciledModel {
        let parts = ModelParts::new(state, inputs, plan);
        let m = ReconciledModel {
            hosts: parts.hosts.clone(),
            ..ReconciledModel::new(parts.entries().collect())
        };
        assert_eq!(parts.blob(), store::Blob::of(&m.to_json()));
        m
    }

    fn input(provider: &str, expected: Json, observed: Json) -> ProviderInput {
        let res = |fields: Json| Resource::new(Kind::Device, "nas", fields);
        ProviderInput {
            provider: provider.into(),
            expected: vec![res(expected)].into(),
            observed: Ok(Observation {
                provider: provider.into(),
                observed_at: 0,
                resources: vec![res(observed)],
                unobservable: vec![],
                details: Default::default(),
                declared_elsewhere: Default::default(),
                version: None,
                hosts: Vec::new(),
            }),
            can_apply: Default::default(),
            severities: &[],
        }
    }

    #[test]
    fn providers_fields_merge_and_uncovered_documents_are_unobserved() {
        let text = "apiVersion: labctl.dev/v1\nkind: Device\nmetadata: {name: nas, labels: {role: storage}}\nspec: {type: physical, interfaces: [{name: eth0, ip: 10.0.1.40}]}\n---\napiVersion: labctl.dev/v1\nkind: Device\nmetadata: {name: scope}\nspec: {type: scpi}\n";
        let state = crate::validate::validate_text("lab.yaml", text)
            .state
            .unwrap();
        let inputs = [
            input("pve", json!({"cores": 4}), json!({"cores": 4})),
            input(
                "reachability",
                json!({"services": {"smb": {"up": true}}}),
                json!({"services": {"smb": {"up": true}}}),
            ),
        ];
        let plan = diff::diff(&inputs, &Rules::default());
        let m = model(&state, &inputs, &plan).to_json();
        let nas = &m["resources"][0];
        assert_eq!(nas["name"], "nas");
        assert_eq!(nas["labels"]["role"], "storage");
        assert_eq!(nas["spec"]["interfaces"][0]["ip"], "10.0.1.40");
        assert_eq!(
            nas["desired"],
            json!({"cores": 4, "services": {"smb": {"up": true}}})
        );
        assert_eq!(nas["providers"], json!(["pve", "reachability"]));
        assert_eq!(nas["status"], "synced");
        assert_eq!(m["resources"][1]["name"], "scope");
        assert_eq!(m["resources"][1]["status"], "unobserved");
        // The shape models had before they carried a version, plus the version: readers of
        // either find the same keys.
        let keys = |v: &Json| v.as_object().unwrap().keys().cloned().collect::<Vec<_>>();
        assert_eq!(keys(&m), ["resources", "version"]);
        assert_eq!(m["version"], 1);
        let git_and_live = "desired deviations kind labels name observed providers spec status";
        assert_eq!(keys(nas).join(" "), git_and_live);
        let git_only = "deviations kind labels name providers spec status";
        assert_eq!(keys(&m["resources"][1]).join(" "), git_only);
    }

    #[test]
    fn a_live_only_resource_has_no_labels_or_spec() {
        let state = crate::validate::validate_text("lab.yaml", "")
            .state
            .unwrap();
        let inputs = [input("pve", json!({"cores": 4}), json!({"cores": 2}))];
        let plan = diff::diff(&inputs, &Rules::default());
        let m = model(&state, &inputs, &plan);
        let nas = &m.entries[0];
        assert_eq!((nas.labels.as_ref(), nas.spec.as_ref()), (None, None));
        assert_eq!(nas.status, Status::OutOfSync);
        assert_eq!(nas.deviations, 1);
        let keys: Vec<String> = m.to_json()["resources"][0]
            .as_object()
            .unwrap()
            .keys()
            .cloned()
            .collect();
        assert_eq!(
            keys.join(" "),
            "desired deviations kind name observed providers status"
        );
    }
}
