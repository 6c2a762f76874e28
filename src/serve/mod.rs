//! `labctl serve`: the controller as a long-running process. Triggers (a watch of the local
//! repository, a poll of a remote, a cron schedule, push webhooks, a person) send a
//! [`Reason`]; one loop runs one reconcile at a time through [`controller::reconcile`],
//! coalescing what arrived meanwhile into one follow-up run, and requeues failures with the
//! controller's backoff. Nothing here decides about the lab: that is the controller's.

pub mod http;
pub mod metrics;
pub mod notify;
pub mod triggers;
pub mod webhook;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;

use crate::controller::{self, Context, Reason, Request};
use crate::store::{LeaderGuard, Outcome};

/// How many triggers may wait while a run is going; more are dropped, since they would
/// coalesce into the same follow-up run anyway.
const QUEUE: usize = 64;

/// What a run that answered a request did, for a caller that waits for it (MCP's
/// `trigger_reconcile`); shared by every request the run answered.
pub type Answer = Arc<Result<controller::Reconciled, controller::Error>>;

/// One request for a run: why, and where to send the answer if someone waits.
#[derive(Debug)]
struct Ask {
    reason: Reason,
    reply: Option<oneshot::Sender<Answer>>,
}

/// Sends triggers to the loop. Cloned into every trigger source.
#[derive(Clone, Debug)]
pub struct Triggers(mpsc::Sender<Ask>);

/// The daemon cannot take a request now.
#[derive(Debug, thiserror::Error)]
#[error("the daemon has {QUEUE} requests waiting already; try again when its run has finished")]
pub struct Busy;

impl Triggers {
    /// Asks for a run because of `reason`. Never waits: a full queue already holds a run.
    pub fn send(&self, reason: Reason) {
        let ask = Ask {
            reason,
            reply: None,
        };
        if let Err(mpsc::error::TrySendError::Full(ask)) = self.0.try_send(ask) {
            tracing::debug!(reason = %ask.reason, "trigger coalesced: runs are already queued");
        }
    }

    /// Asks for a run and for its answer: the receiver gets what the run that answers this
    /// request did (dropped, if the daemon stops first).
    pub fn ask(&self, reason: Reason) -> Result<oneshot::Receiver<Answer>, Busy> {
        let (tx, rx) = oneshot::channel();
        let ask = Ask {
            reason,
            reply: Some(tx),
        };
        self.0.try_send(ask).map_err(|_| Busy)?;
        Ok(rx)
    }
}

/// The receiving end, for [`run`].
pub struct Queue(mpsc::Receiver<Ask>);

/// A trigger channel.
pub fn queue() -> (Triggers, Queue) {
    let (tx, rx) = mpsc::channel(QUEUE);
    (Triggers(tx), Queue(rx))
}

/// What the daemon last did: for `/readyz`, systemd's STATUS and the triggers (which compare
/// commits against the last one reconciled).
#[derive(Debug, Default)]
pub struct State {
    inner: Mutex<Progress>,
}

/// See [`State`].
#[derive(Debug, Default, Clone)]
pub struct Progress {
    /// Runs this process finished (whatever their outcome).
    pub runs: u64,
    pub last_outcome: Option<Outcome>,
    /// Unix milliseconds of the last run that succeeded.
    pub last_success_ms: Option<i64>,
    pub open_deviations: i64,
    /// The last commit a run of this process loaded.
    pub commit: Option<String>,
    /// When the next retry is due, if one is.
    pub retry_in: Option<Duration>,
    /// Providers that did not answer and wait for their backoff.
    pub failing: Vec<String>,
    /// This process holds the leader lock (else it is a standby).
    pub leader: bool,
}

impl State {
    pub fn progress(&self) -> Progress {
        self.inner.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn update(&self, f: impl FnOnce(&mut Progress)) {
        f(&mut self.inner.lock().unwrap_or_else(|e| e.into_inner()));
    }

    /// Whether `commit` is the one this process's last run loaded: a trigger for it is no news.
    pub fn reconciled(&self, commit: &str) -> bool {
        self.progress().commit.as_deref() == Some(commit)
    }

    /// One line for systemd's STATUS and the logs.
    pub fn status_line(&self) -> String {
        let p = self.progress();
        if !p.leader {
            return "standby: another controller holds the leader lock".into();
        }
        match p.last_outcome {
            None => "waiting for the first run".into(),
            Some(outcome) => format!(
                "{} run(s); last {outcome}{}; {} open deviation(s){}{}",
                p.runs,
                p.commit
                    .as_deref()
                    .map(|c| format!(" at {}", &c[..c.len().min(12)]))
                    .unwrap_or_default(),
                p.open_deviations,
                if p.failing.is_empty() {
                    String::new()
                } else {
                    format!("; failing: {}", p.failing.join(", "))
                },
                p.retry_in
                    .map(|d| format!("; retry in {} s", d.as_secs()))
                    .unwrap_or_default()
            ),
        }
    }
}

/// How long a run may go on after a shutdown was asked for before it is abandoned (its
/// lock released by dropping the session, its row marked aborted), and where the loop counts
/// what it does.
#[derive(Debug, Clone)]
pub struct Options {
    pub grace: Duration,
    pub metrics: Arc<metrics::Metrics>,
    pub notifier: notify::Notifier,
}

/// How often an idle leader checks that it still holds the lock (a PostgreSQL restart ends
/// the session that held it).
const CONFIRM_EVERY: Duration = Duration::from_secs(10);
/// How long to wait before trying again when the store cannot be reached for the lock.
const LOCK_RETRY: Duration = Duration::from_secs(5);

/// Runs reconciles one at a time as triggers arrive, until `shutdown` turns true (or every
/// trigger source is gone). The process first becomes the leader — it holds the store's
/// leader lock from then on, so other `serve` processes on the same store wait as standbys
/// and take over when it dies — and confirms the lock before every run and while idle. A run
/// in progress at shutdown may finish within `options.grace`; past it, it is abandoned and
/// recorded as aborted.
pub async fn run(
    ctx: Arc<Context>,
    mut queue: Queue,
    state: Arc<State>,
    mut shutdown: watch::Receiver<bool>,
    options: Options,
) {
    let mut retry: Option<(Instant, u32)> = None;
    let mut leader: Option<LeaderGuard> = None;
    // A request taken from the queue that still needs a run (leadership was lost first).
    let mut pending: Option<(Reason, Vec<oneshot::Sender<Answer>>)> = None;
    loop {
        let Some(guard) = leader.as_mut() else {
            match lead(&ctx, &state, &options, &mut shutdown).await {
                Some(guard) => leader = Some(guard),
                None => break,
            }
            continue;
        };
        let (first, mut replies) = match pending.take() {
            Some(pending) => pending,
            None => tokio::select! {
                biased;
                _ = shutdown.wait_for(|stop| *stop) => break,
                Some(ask) = queue.0.recv() => {
                    options.metrics.triggered(ask.reason.label());
                    (ask.reason, ask.reply.into_iter().collect())
                }
                _ = sleep_until(retry.map(|r| r.0)) => {
                    (Reason::Retry { attempt: retry.map_or(1, |r| r.1) }, Vec::new())
                }
                _ = tokio::time::sleep(CONFIRM_EVERY) => {
                    if let Err(e) = guard.confirm().await {
                        lost(&state, &options, &e);
                        leader = None;
                    }
                    continue;
                }
                else => break,
            },
        };
        // Whatever else arrived while waiting is answered by the same run.
        let mut reason = first;
        let mut coalesced = 0;
        while let Ok(next) = queue.0.try_recv() {
            options.metrics.triggered(next.reason.label());
            reason = stronger(reason, next.reason);
            replies.extend(next.reply);
            coalesced += 1;
        }
        if coalesced > 0 {
            tracing::debug!(coalesced, %reason, "triggers coalesced into one run");
        }
        // A ref moved to a commit this process has reconciled already (a watch event from
        // the first run's own start, or a branch moved back and forth): nothing new to read.
        if let Reason::CommitChanged { to, .. } = &reason {
            if replies.is_empty() && state.reconciled(to) {
                tracing::debug!(commit = %to, "commit already reconciled: no run");
                continue;
            }
        }
        if let Err(e) = guard.confirm().await {
            lost(&state, &options, &e);
            leader = None;
            pending = Some((reason, replies));
            continue;
        }
        let request = Request {
            reason: reason.clone(),
            wait: true,
            force: false,
        };
        let span = tracing::info_span!("run", reason = %reason);
        let started = Instant::now();
        // Boxed so that, abandoned at shutdown, it can be dropped before the run is recorded
        // as aborted (still under the lock, so no other leader has begun meanwhile).
        let mut reconcile = Box::pin(tracing::Instrument::instrument(
            controller::reconcile_as_leader(&ctx, &request, guard),
            span,
        ));
        // At shutdown the run may finish within the grace period; past it, it is abandoned.
        let mut stopping = false;
        let result = tokio::select! {
            result = &mut reconcile => Some(result),
            _ = shutdown.wait_for(|stop| *stop) => {
                tracing::info!(grace_s = options.grace.as_secs(), "shutting down: letting the run finish");
                stopping = true;
                tokio::time::timeout(options.grace, &mut reconcile).await.ok()
            }
        };
        let Some(result) = result else {
            drop(reconcile);
            abandon(&ctx).await;
            break;
        };
        let answer = Arc::new(result);
        let action = record(&ctx, &state, &options.metrics, &request, started, &answer);
        options.notifier.after_run(notify_event(&answer));
        for reply in replies {
            // A caller that stopped waiting is no one's concern.
            let _ = reply.send(Arc::clone(&answer));
        }
        if stopping {
            break;
        }
        retry = action.requeue_after().map(|delay| {
            state.update(|p| p.retry_in = Some(delay));
            (Instant::now() + delay, request.reason.attempt() + 1)
        });
        options.metrics.retry_in(action.requeue_after());
        notify_status(&state);
    }
    if let Some(guard) = leader {
        if let Err(e) = guard.release().await {
            tracing::warn!(error = %e, "could not release the leader lock explicitly; it goes with the session");
        }
    }
}

/// What the notifier needs of a finished run.
fn notify_event(answer: &Answer) -> notify::RunEvent {
    match answer.as_ref() {
        Ok(done) => notify::RunEvent {
            run: Some(done.run.run_id),
            commit: done.loaded.commit().map(str::to_string),
            outcome: done.run.outcome,
            error: (done.run.outcome == Outcome::Failed).then(|| {
                let errors = done.run.errors();
                if errors.is_empty() {
                    "the run failed".into()
                } else {
                    errors.join("; ")
                }
            }),
        },
        Err(e) => notify::RunEvent {
            run: None,
            commit: None,
            outcome: Outcome::Failed,
            error: Some(crate::redact::userinfo(&e.to_string())),
        },
    }
}

/// Waits until this process holds the leader lock; `None` when shut down first.
async fn lead(
    ctx: &Context,
    state: &State,
    options: &Options,
    shutdown: &mut watch::Receiver<bool>,
) -> Option<LeaderGuard> {
    state.update(|p| p.leader = false);
    options.metrics.leader(false);
    notify_status(state);
    loop {
        tracing::info!("waiting for the leader lock (another controller may be reconciling)");
        let taken = tokio::select! {
            biased;
            _ = shutdown.wait_for(|stop| *stop) => return None,
            taken = ctx.store().leader(true) => taken,
        };
        match taken {
            Ok(guard) => {
                tracing::info!("leading: this process reconciles");
                state.update(|p| p.leader = true);
                options.metrics.leader(true);
                notify_status(state);
                return Some(guard);
            }
            Err(e) => {
                tracing::warn!(error = %e, retry_s = LOCK_RETRY.as_secs(), "cannot take the leader lock");
                tokio::select! {
                    _ = shutdown.wait_for(|stop| *stop) => return None,
                    _ = tokio::time::sleep(LOCK_RETRY) => {}
                }
            }
        }
    }
}

fn lost(state: &State, options: &Options, e: &crate::store::StoreError) {
    tracing::error!(error = %e, "the leader lock was lost; running nothing until it is held again");
    state.update(|p| p.leader = false);
    options.metrics.leader(false);
}

/// The providers whose observation came back unchanged, comma-separated.
fn unchanged(observed: &[crate::reconcile::ObserveTiming]) -> String {
    let names: Vec<&str> = observed
        .iter()
        .filter(|t| t.unchanged)
        .map(|t| t.provider.as_str())
        .collect();
    names.join(",")
}

/// Notes what a run did and answers when to run again.
fn record(
    ctx: &Context,
    state: &State,
    metrics: &metrics::Metrics,
    request: &Request,
    started: Instant,
    result: &Result<controller::Reconciled, controller::Error>,
) -> controller::Action {
    match result {
        Ok(done) => {
            let outcome = done.run.outcome;
            let failing = ctx.failing();
            metrics.ran(outcome, started.elapsed(), &done.run.observed);
            metrics.backoff(&done.run.observed, &failing, ctx.clock().now_ms());
            tracing::info!(
                run = done.run.run_id,
                %outcome,
                open = done.run.counts.deviations_open,
                // Nothing had moved since the run before: its conclusions were recorded again.
                recorded_again = done.run.recorded_again,
                // The providers that answered with their last observation (nothing live moved).
                unchanged = %unchanged(&done.run.observed),
                "run finished"
            );
            state.update(|p| {
                p.runs += 1;
                p.last_outcome = Some(outcome);
                p.open_deviations = done.run.counts.deviations_open;
                p.commit = done.loaded.commit().map(str::to_string);
                p.retry_in = None;
                p.failing = failing.keys().cloned().collect();
                if outcome == Outcome::Succeeded {
                    p.last_success_ms = Some(crate::time::now_ms());
                }
            });
            done.action
        }
        Err(e) => {
            tracing::warn!(error = %e, "run failed");
            metrics.ran(Outcome::Failed, started.elapsed(), &[]);
            state.update(|p| {
                p.runs += 1;
                p.last_outcome = Some(Outcome::Failed);
                p.retry_in = None;
                if let controller::Error::Invalid(invalid) = &e {
                    p.commit = invalid.snapshot.revision.as_ref().map(|r| r.commit.clone());
                }
            });
            controller::error_policy(e, request.reason.attempt(), &ctx.settings().backoff)
        }
    }
}

/// After a run was abandoned at shutdown: its session (and the leader lock) went with the
/// dropped future; its row is marked aborted now rather than at the next start.
async fn abandon(ctx: &Context) {
    let why = "the controller shut down before the run finished";
    match ctx
        .store()
        .abort_unfinished(&ctx.settings().controller, why)
        .await
    {
        Ok(n) => tracing::warn!(runs = n, "run abandoned at shutdown, recorded as aborted"),
        Err(e) => {
            tracing::warn!(error = %e, "could not record the abandoned run; the next start will")
        }
    }
}

/// Of two reasons for one run, the one that says more: a person or a webhook over a commit
/// seen, over a schedule, over a retry.
fn stronger(a: Reason, b: Reason) -> Reason {
    fn rank(r: &Reason) -> u8 {
        match r {
            Reason::Manual { .. } => 4,
            Reason::Webhook { .. } => 3,
            Reason::CommitChanged { .. } => 2,
            Reason::Schedule { .. } => 1,
            Reason::Retry { .. } => 0,
        }
    }
    if rank(&b) > rank(&a) {
        b
    } else {
        a
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Tells systemd (under `Type=notify`) what the daemon is doing; nothing without systemd.
pub fn notify_status(state: &State) {
    let line = state.status_line();
    let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Status(&line)]);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stronger_reason_names_the_coalesced_run() {
        let commit = Reason::CommitChanged {
            from: None,
            to: "abc".into(),
        };
        let schedule = Reason::Schedule {
            schedule: "*/5 * * * *".into(),
        };
        let manual = Reason::manual("cli", "alice");
        assert_eq!(stronger(schedule.clone(), commit.clone()), commit);
        assert_eq!(stronger(commit.clone(), schedule.clone()), commit);
        assert_eq!(stronger(commit, manual.clone()), manual);
        assert_eq!(
            stronger(Reason::Retry { attempt: 3 }, schedule.clone()),
            schedule
        );
    }
}
