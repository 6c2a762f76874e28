//! The controller: the one place that runs reconciles, whoever asks (the command line, an MCP
//! client, later a watch, a schedule or a webhook).
//!
//! Shaped after kube-runtime: a [`Context`] holds what every run needs (the store, where the
//! desired state comes from, what this host allows, the clock, the desired state in force); a
//! [`Request`] says why a run is wanted; [`reconcile`] takes the leader lock, resolves the
//! commit, runs, records and applies retention, and answers with what it did and an
//! [`Action`] (when to look again); [`error_policy`] maps a failure to an [`Action`] with
//! backoff. Callers only send requests and render answers: they decide nothing.

mod backoff;
mod reason;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::diff::Plan;
use crate::propose;
use crate::providers::Provider;
use crate::reconcile::import::{self, Adopted, ImportPlan, Skipped};
use crate::reconcile::{self, HostOptions, Loaded, RunResult};
use crate::source::{self, Snapshot, SourceError, SourceFile, SourceSpec};
use crate::store::{LeaderGuard, Outcome, RetentionPolicy, Store, StoreError};
use crate::time::{Clock, SystemClock};
use crate::validate::{self, Severity, Validation};

pub use backoff::{jittered, Backoff, Failing, ProviderBackoff};
pub use reason::Reason;

/// Where the desired state comes from and what this host allows: fixed when the controller
/// starts, never chosen by whoever asks for a run.
#[derive(Debug, Clone)]
pub struct Settings {
    pub source: SourceSpec,
    /// Subdirectory of the repository holding the desired state.
    pub path: Option<String>,
    pub host: HostOptions,
    /// Recorded with each run (`user@host/pid`, see [`identity`]).
    pub controller: String,
    /// Applied after each recorded run, still holding the leader lock.
    pub retention: RetentionPolicy,
    /// Delays between retries of failed or partial runs.
    pub backoff: Backoff,
}

/// What every run needs. One per process; shared by every caller.
#[derive(Debug)]
pub struct Context {
    store: Store,
    settings: Settings,
    clock: Arc<dyn Clock>,
    /// The desired state of the last loaded commit: an unchanged commit is not validated again.
    current: Mutex<Option<Arc<Loaded>>>,
    /// Providers that failed in the runs before, each resting until its backoff is over.
    backoff: Mutex<ProviderBackoff>,
    /// What the last run concluded: the next run of the same commit that finds nothing
    /// moved records it again (see [`reconcile::Concluded`]).
    concluded: Mutex<Option<reconcile::Concluded>>,
}

impl Context {
    pub fn new(store: Store, settings: Settings) -> Self {
        Context::with_clock(store, settings, Arc::new(SystemClock))
    }

    /// A context whose store stamps rows with `clock` (tests move time instead of sleeping).
    pub fn with_clock(store: Store, settings: Settings, clock: Arc<dyn Clock>) -> Self {
        Context {
            store: store.with_clock(Arc::clone(&clock)),
            settings,
            clock,
            current: Mutex::new(None),
            backoff: Mutex::new(ProviderBackoff::default()),
            concluded: Mutex::new(None),
        }
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    pub fn clock(&self) -> &dyn Clock {
        self.clock.as_ref()
    }

    /// The desired state of the last run's commit, if a run has loaded one.
    pub fn current(&self) -> Option<Arc<Loaded>> {
        self.current
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Reads the repository and validates it. Blocking work (Git, maybe a fetch) runs off the
    /// async workers. The same commit as last time reuses the validated state.
    pub async fn load(&self) -> Result<Arc<Loaded>, Error> {
        let (spec, path) = (self.settings.source.clone(), self.settings.path.clone());
        let current = self.current();
        let known = current
            .as_ref()
            .and_then(|c| c.revision())
            .map(|r| r.commit.clone());
        let fetched = tokio::task::spawn_blocking(move || {
            source::load_unless(&spec, path.as_deref(), known.as_deref())
        })
        .await
        .map_err(|_| Error::Task("reading the repository"))??;
        let snapshot = match (fetched, current) {
            // The commit in force: neither read nor validated again.
            (source::Fetched::Unchanged(_), Some(current)) => return Ok(current),
            (source::Fetched::Fresh(snapshot), _) => snapshot,
            (source::Fetched::Unchanged(revision), None) => {
                return Err(Error::Source(SourceError::Git(format!(
                    "commit {} was reported unchanged although none is in force",
                    revision.commit
                ))))
            }
        };
        let mut loaded = tokio::task::spawn_blocking(move || validated(snapshot))
            .await
            .map_err(|_| Error::Task("validating the repository"))??;
        loaded.let_go_of_files(&self.settings.source, self.settings.path.as_deref());
        let loaded = Arc::new(loaded);
        if loaded.commit().is_some() {
            *self.current.lock().unwrap_or_else(|e| e.into_inner()) = Some(Arc::clone(&loaded));
        }
        Ok(loaded)
    }

    /// The providers for `loaded`: those its `labctl.yaml` declares and those this host
    /// enables.
    pub fn providers(&self, loaded: &Loaded) -> Vec<Arc<dyn Provider>> {
        providers(loaded, self.settings.host)
    }

    /// The providers failing in this process's runs, with their backoff.
    pub fn failing(&self) -> BTreeMap<String, Failing> {
        self.backoff().failing().clone()
    }

    fn backoff(&self) -> std::sync::MutexGuard<'_, ProviderBackoff> {
        self.backoff.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The propose step after a run: the change sets policy `propose` asks for, pushed and
    /// opened as pull requests, and earlier pull requests settled. Skipped when there is
    /// nothing to propose and no pull request open, or the desired state is not a Git commit.
    async fn publish(
        &self,
        loaded: &Loaded,
        run: &RunResult,
        providers: &[Arc<dyn Provider>],
    ) -> Option<propose::pulls::Report> {
        let plan = run.latest_plan();
        let SourceSpec::Git(location) = &self.settings.source else {
            return None;
        };
        loaded.commit()?;
        if plan.proposals.is_empty() {
            match self.store.open_pull_requests().await {
                Ok(open) if open.is_empty() => return None,
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "open pull requests not read; nothing is proposed");
                    return None;
                }
            }
        }
        let rules = reconcile::rules(loaded, false, &[]);
        let proposals = propose::prepare(
            loaded,
            plan,
            &run.inputs,
            providers,
            &rules,
            propose::MAX_CHANGE_SETS,
        );
        let target = propose::pulls::Target {
            location: Some(location),
            subdir: self.settings.path.as_deref(),
            rev: location.options().rev.as_deref(),
            store: Some(&self.store),
            dry_run: false,
        };
        let report = propose::pulls::publish(&target, loaded, plan, &proposals).await;
        for e in &report.errors {
            tracing::warn!(error = %e, "propose step");
        }
        Some(report)
    }

    /// The providers a run for `reason` asks: each, or in its backoff a stand-in that says it
    /// was not asked. A person asking asks every provider.
    fn asked(&self, loaded: &Loaded, reason: &Reason) -> Vec<Arc<dyn Provider>> {
        let providers = self.providers(loaded);
        if matches!(reason, Reason::Manual { .. }) {
            return providers;
        }
        let backoff = self.backoff();
        let now = self.clock.now_ms();
        providers
            .into_iter()
            .map(|p| backoff.gate(p, now, loaded.commit()))
            .collect()
    }

    /// Notes how the providers a run asked answered, and answers when to run again.
    fn after_run(&self, loaded: &Loaded, run: &RunResult, attempt: u32) -> Action {
        let mut backoff = self.backoff();
        let declared: BTreeSet<&str> = run.observed.iter().map(|t| t.provider.as_str()).collect();
        backoff.retain(&declared);
        let now = self.clock.now_ms();
        backoff.record(
            &run.observed,
            &run.plan.unobservable,
            loaded.commit(),
            now,
            &self.settings.backoff,
        );
        match (backoff.next_retry_ms(), run.outcome) {
            // The failing providers are retried on their own schedule.
            (Some(at), _) => Action::requeue(Duration::from_millis((at - now).max(0) as u64)),
            (None, Outcome::Failed | Outcome::Partial) => {
                Action::requeue(self.settings.backoff.delay(attempt))
            }
            _ => Action::await_change(),
        }
    }
}

/// Validates `snapshot`; the state only when there is no error.
pub fn validated(snapshot: Snapshot) -> Result<Loaded, Error> {
    let mut validation = validate::validate(&snapshot);
    // Taken, not copied: a second desired state would double what a run holds.
    match validation.state.take() {
        Some(state) => Ok(Loaded::new(snapshot, state, validation.diagnostics)),
        None => Err(Error::Invalid(Box::new(Invalid {
            snapshot,
            validation,
        }))),
    }
}

/// The providers for `loaded` under `host`'s permissions.
pub fn providers(loaded: &Loaded, host: HostOptions) -> Vec<Arc<dyn Provider>> {
    reconcile::providers_for(loaded.state.config.as_ref().map(|c| &c.doc.spec), host)
}

/// A request for one run.
#[derive(Debug, Clone)]
pub struct Request {
    pub reason: Reason,
    /// Wait for another controller's run to finish (else fail at once with
    /// [`StoreError::LeaderBusy`]).
    pub wait: bool,
    /// Apply beyond labctl.yaml's safety limits, this once (a person decided).
    pub force: bool,
}

/// What to do after a run, as kube-runtime's `Action`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Action {
    requeue_after: Option<Duration>,
}

impl Action {
    /// Run again after `delay`, even if nothing changes.
    pub fn requeue(delay: Duration) -> Self {
        Action {
            requeue_after: Some(delay),
        }
    }

    /// Run again only when something changes (a commit, a schedule, a request).
    pub fn await_change() -> Self {
        Action {
            requeue_after: None,
        }
    }

    pub fn requeue_after(&self) -> Option<Duration> {
        self.requeue_after
    }
}

/// What a run did: the desired state it reconciled, the run's result, and when to look again.
#[derive(Debug)]
pub struct Reconciled {
    pub loaded: Arc<Loaded>,
    pub run: RunResult,
    pub action: Action,
    /// What the propose step did: branches pushed, pull requests opened, updated or settled
    /// (`None` when there was nothing to propose or settle).
    pub published: Option<propose::pulls::Report>,
}

/// Why a run could not be carried out. Every variant means nothing was changed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot read the repository: {0}")]
    Source(#[from] SourceError),
    #[error("{0}")]
    Invalid(Box<Invalid>),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0} failed unexpectedly (the task panicked); nothing was changed")]
    Task(&'static str),
}

impl Error {
    /// Another controller holds the leader lock.
    pub fn is_leader_busy(&self) -> bool {
        matches!(self, Error::Store(StoreError::LeaderBusy { .. }))
    }
}

/// A desired state that did not validate, with every diagnostic.
#[derive(Debug)]
pub struct Invalid {
    pub snapshot: Snapshot,
    pub validation: Validation,
}

impl Invalid {
    /// The first `n` errors, one line each (`Kind/name: message`).
    pub fn first_errors(&self, n: usize) -> Vec<String> {
        self.validation
            .diagnostics
            .iter()
            .filter(|d| d.severity == Severity::Error)
            .take(n)
            .map(|d| match &d.document {
                Some(doc) => format!("{doc}: {}", d.message),
                None => d.message.clone(),
            })
            .collect()
    }
}

impl std::fmt::Display for Invalid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} is invalid ({} errors); nothing was observed or changed",
            describe(&self.snapshot),
            self.validation.errors()
        )
    }
}

/// `origin at 0123456789ab`, or the origin alone for a directory.
pub fn describe(snapshot: &Snapshot) -> String {
    match &snapshot.revision {
        Some(r) => format!(
            "{} at {}",
            snapshot.origin,
            &r.commit[..r.commit.len().min(12)]
        ),
        None => snapshot.origin.clone(),
    }
}

/// One run: take the leader lock, resolve and validate the commit, observe, diff, apply what
/// the policy allows, record, apply retention, release the lock.
pub async fn reconcile(ctx: &Context, request: &Request) -> Result<Reconciled, Error> {
    let mut leader = ctx.store.leader(request.wait).await?;
    let result = reconcile_as_leader(ctx, request, &mut leader).await;
    if let Err(e) = leader.release().await {
        // Closing the connection releases the lock as well; say so and go on.
        tracing::warn!(error = %e, "could not release the leader lock explicitly");
    }
    result
}

/// One run under leadership the caller already holds (a daemon keeps it between runs):
/// resolve and validate the commit, observe, diff, apply, record, apply retention. The lock
/// is confirmed again just before anything is applied.
pub async fn reconcile_as_leader(
    ctx: &Context,
    request: &Request,
    leader: &mut LeaderGuard,
) -> Result<Reconciled, Error> {
    // The commit is resolved only now that this controller holds the lock: a run that waited
    // for another must reconcile what Git says now, not what it said before the wait.
    let loaded = match ctx.load().await {
        Ok(loaded) => loaded,
        Err(e @ (Error::Invalid(_) | Error::Source(_))) => {
            record_refused(ctx, request, &e).await?;
            return Err(e);
        }
        Err(e) => return Err(e),
    };
    let providers = ctx.asked(&loaded, &request.reason);
    let run_id = start_run(ctx, request).await?;
    tracing::info!(run = run_id, reason = %request.reason, commit = ?loaded.commit(), "reconciling");
    // Taken: a run that fails leaves nothing for the next one to rely on.
    let mut previous = ctx
        .concluded
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .take();
    let mut run = reconcile::execute(
        &ctx.store,
        run_id,
        leader,
        &loaded,
        &providers,
        request.force,
        previous.as_mut(),
    )
    .await?;
    drop(previous);
    let mut concluded = run.concluded.take();
    match ctx.store.prune(ctx.settings.retention).await {
        Ok(report) => tracing::debug!(?report, "retention applied"),
        Err(e) => tracing::warn!(error = %e, "retention could not be applied; the run is recorded"),
    }
    let action = ctx.after_run(&loaded, &run, request.reason.attempt());
    // Still the leader: two controllers never open the same pull request.
    let published = ctx.publish(&loaded, &run, &providers).await;
    if let Some(concluded) = &mut concluded {
        // Nothing after this needs them: they are handed back to the providers next run.
        concluded.keep_observations(std::mem::take(&mut run.inputs));
    }
    *ctx.concluded.lock().unwrap_or_else(|e| e.into_inner()) = concluded;
    Ok(Reconciled {
        loaded,
        run,
        action,
        published,
    })
}

/// Records a run that stopped before observing anything because Git could not be read or the
/// commit is invalid: so `status`, MCP and a dashboard learn that changes are being refused.
/// It concludes nothing about the lab: every open deviation stays open.
async fn record_refused(ctx: &Context, request: &Request, error: &Error) -> Result<(), Error> {
    let (commit, text) = match error {
        Error::Invalid(invalid) => (
            invalid.snapshot.revision.as_ref().map(|r| r.commit.clone()),
            format!("{invalid}. First: {}", invalid.first_errors(5).join("; ")),
        ),
        other => (None, other.to_string()),
    };
    let run = start_run(ctx, request).await?;
    // Diagnostics quote the files: a URL with a password in Git must not reach the store.
    let report =
        reconcile::concluding_nothing(Outcome::Failed, commit, crate::redact::userinfo(&text));
    ctx.store.finish_run(run, report).await?;
    Ok(())
}

/// Starts the run row, with the request's reason.
async fn start_run(ctx: &Context, request: &Request) -> Result<crate::store::RunId, Error> {
    let reason = serde_json::to_value(&request.reason).ok();
    Ok(ctx
        .store
        .start_run_because(
            request.reason.label(),
            reason.as_ref(),
            &ctx.settings.controller,
        )
        .await?)
}

/// What to do after `error` on retry number `attempt` (0 for a first try): an invalid
/// desired state waits for a new commit (trying the same one again cannot help); anything
/// else is retried with backoff.
pub fn error_policy(error: &Error, attempt: u32, backoff: &Backoff) -> Action {
    match error {
        Error::Invalid(_) => Action::await_change(),
        Error::Source(_) | Error::Store(_) | Error::Task(_) => {
            Action::requeue(backoff.delay(attempt))
        }
    }
}

/// Observes and diffs `loaded` against the live lab. Writes nothing anywhere.
pub async fn plan(loaded: &Loaded, host: HostOptions) -> Plan {
    let providers = providers(loaded, host);
    reconcile::plan(loaded, &providers, false).await.0
}

/// Why an import wrote nothing.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// Some providers could not be observed: an import from a partial picture would look
    /// complete and not be.
    #[error("{} provider(s) could not be observed; nothing was imported", .0.len())]
    Unobservable(Vec<(String, String)>),
    /// The new documents would not validate together with the repository.
    #[error("the imported documents would not validate with the repository; nothing was written")]
    Invalid(Box<ImportPlan>),
    #[error("{0}; nothing was written")]
    Write(String),
    /// The commit's files, let go of after validation, could not be read again.
    #[error("the commit's files could not be read again: {0}; nothing was written")]
    Reread(SourceError),
}

/// What an import wrote (or, on a dry run, would write).
#[derive(Debug)]
pub struct Imported {
    pub files: Vec<SourceFile>,
    pub skipped: Vec<Skipped>,
    /// Files whose live resource is declared where labctl does not write.
    pub adopted: Vec<Adopted>,
}

/// Adopts a live lab: one document per unmanaged resource, validated with the repository,
/// then written under `root` all or nothing (`None`: a dry run, nothing written).
pub async fn import(
    loaded: &Loaded,
    host: HostOptions,
    root: Option<&Path>,
) -> Result<Imported, ImportError> {
    let plan = plan(loaded, host).await;
    if !plan.unobservable.is_empty() {
        return Err(ImportError::Unobservable(
            plan.unobservable.into_iter().collect(),
        ));
    }
    let held = loaded.files().map_err(ImportError::Reread)?;
    let staged = import::prepare(&held, &plan);
    drop(held);
    if !staged.validation.is_valid() {
        return Err(ImportError::Invalid(Box::new(staged)));
    }
    if let Some(root) = root {
        import::write_all_new(root, &staged.files).map_err(ImportError::Write)?;
    }
    Ok(Imported {
        files: staged.files,
        skipped: staged.skipped,
        adopted: staged.adopted,
    })
}

/// What `propose` would put on branches: one change set per resource whose deviations the
/// policy proposes to accept into Git, each validated and planned clean. A provider that could
/// not be observed proposes nothing (its resources are unknown). Returns the plan they came
/// from with them.
pub async fn propose(loaded: &Loaded, host: HostOptions, max: usize) -> (Plan, propose::Proposals) {
    let providers = providers(loaded, host);
    let (plan, inputs) = reconcile::plan(loaded, &providers, false).await;
    let rules = reconcile::rules(loaded, false, &[]);
    let proposals = propose::prepare(loaded, &plan, &inputs, &providers, &rules, max);
    (plan, proposals)
}

/// `user@host/pid`, recorded with each run so a shared database shows who reconciled.
pub fn identity() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "unknown-host".into());
    let user = std::env::var("USER").unwrap_or_else(|_| "labctl".into());
    format!("{user}@{host}/{}", std::process::id())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_invalid_commit_waits_for_a_new_one_and_io_is_retried() {
        let b = Backoff::default();
        let snapshot = Snapshot::of("lab", vec![]);
        let invalid = validated(snapshot).unwrap_err();
        assert!(matches!(invalid, Error::Invalid(_)));
        assert_eq!(error_policy(&invalid, 3, &b), Action::await_change());
        let io = Error::Source(SourceError::Git("fetch failed".into()));
        assert_eq!(error_policy(&io, 0, &b), Action::requeue(b.base));
        assert_eq!(error_policy(&io, 2, &b), Action::requeue(b.base * 4));
    }
}
