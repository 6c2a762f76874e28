//! `labctl serve`: the controller as a long-running process. Triggers (a watch of the local
//! repository, a poll of a remote, a cron schedule, push webhooks, a person) send a
//! [`Reason`]; one loop runs one reconcile at a time through [`controller::reconcile`],
//! coalescing what arrived meanwhile into one follow-up run, and requeues failures with the
//! controller's backoff. Nothing here decides about the lab: that is the controller's.

pub mod http;
pub mod triggers;
pub mod webhook;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use crate::controller::{self, Context, Reason, Request};
use crate::store::Outcome;

/// How many triggers may wait while a run is going; more are dropped, since they would
/// coalesce into the same follow-up run anyway.
const QUEUE: usize = 64;

/// Sends triggers to the loop. Cloned into every trigger source.
#[derive(Clone, Debug)]
pub struct Triggers(mpsc::Sender<Reason>);

impl Triggers {
    /// Asks for a run because of `reason`. Never waits: a full queue already holds a run.
    pub fn send(&self, reason: Reason) {
        if let Err(mpsc::error::TrySendError::Full(reason)) = self.0.try_send(reason) {
            tracing::debug!(%reason, "trigger coalesced: runs are already queued");
        }
    }
}

/// The receiving end, for [`run`].
pub struct Queue(mpsc::Receiver<Reason>);

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
}

impl State {
    pub fn progress(&self) -> Progress {
        self.inner.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn update(&self, f: impl FnOnce(&mut Progress)) {
        f(&mut self.inner.lock().unwrap_or_else(|e| e.into_inner()));
    }

    /// One line for systemd's STATUS and the logs.
    pub fn status_line(&self) -> String {
        let p = self.progress();
        match p.last_outcome {
            None => "waiting for the first run".into(),
            Some(outcome) => format!(
                "{} run(s); last {outcome}{}; {} open deviation(s){}",
                p.runs,
                p.commit
                    .as_deref()
                    .map(|c| format!(" at {}", &c[..c.len().min(12)]))
                    .unwrap_or_default(),
                p.open_deviations,
                p.retry_in
                    .map(|d| format!("; retry in {} s", d.as_secs()))
                    .unwrap_or_default()
            ),
        }
    }
}

/// How long a run may go on after a shutdown was asked for before it is abandoned (its
/// lock released by dropping the session, its row marked aborted).
#[derive(Debug, Clone, Copy)]
pub struct Options {
    pub grace: Duration,
}

/// Runs reconciles one at a time as triggers arrive, until `shutdown` turns true (or every
/// trigger source is gone). A run in progress at shutdown may finish within `options.grace`;
/// past it, it is abandoned and recorded as aborted.
pub async fn run(
    ctx: Arc<Context>,
    mut queue: Queue,
    state: Arc<State>,
    mut shutdown: watch::Receiver<bool>,
    options: Options,
) {
    let mut retry: Option<(Instant, u32)> = None;
    loop {
        let first = tokio::select! {
            biased;
            _ = shutdown.wait_for(|stop| *stop) => break,
            Some(reason) = queue.0.recv() => reason,
            _ = sleep_until(retry.map(|r| r.0)) => Reason::Retry { attempt: retry.map_or(1, |r| r.1) },
            else => break,
        };
        // Whatever else arrived while waiting is answered by the same run.
        let mut reason = first;
        let mut coalesced = 0;
        while let Ok(next) = queue.0.try_recv() {
            reason = stronger(reason, next);
            coalesced += 1;
        }
        if coalesced > 0 {
            tracing::debug!(coalesced, %reason, "triggers coalesced into one run");
        }
        let request = Request {
            reason: reason.clone(),
            wait: true,
            force: false,
        };
        let span = tracing::info_span!("run", reason = %reason);
        // Boxed so that, abandoned at shutdown, it can be dropped (its session and the lock
        // with it) before the run is recorded as aborted.
        let mut reconcile = Box::pin(tracing::Instrument::instrument(
            controller::reconcile(&ctx, &request),
            span,
        ));
        let result = tokio::select! {
            result = &mut reconcile => result,
            _ = shutdown.wait_for(|stop| *stop) => {
                tracing::info!(grace_s = options.grace.as_secs(), "shutting down: letting the run finish");
                match tokio::time::timeout(options.grace, &mut reconcile).await {
                    Ok(result) => { record(&state, &request, result); }
                    Err(_) => {
                        drop(reconcile);
                        abandon(&ctx).await;
                    }
                }
                break;
            }
        };
        let action = record(&state, &request, result);
        retry = action.requeue_after().map(|delay| {
            state.update(|p| p.retry_in = Some(delay));
            (Instant::now() + delay, request.reason.attempt() + 1)
        });
        notify_status(&state);
    }
}

/// Notes what a run did and answers when to run again.
fn record(
    state: &State,
    request: &Request,
    result: Result<controller::Reconciled, controller::Error>,
) -> controller::Action {
    let backoff = controller::Backoff::default();
    match result {
        Ok(done) => {
            let outcome = done.run.outcome;
            tracing::info!(
                run = done.run.run_id,
                %outcome,
                open = done.run.counts.deviations_open,
                "run finished"
            );
            state.update(|p| {
                p.runs += 1;
                p.last_outcome = Some(outcome);
                p.open_deviations = done.run.counts.deviations_open;
                p.commit = done.loaded.commit().map(str::to_string);
                p.retry_in = None;
                if outcome == Outcome::Succeeded {
                    p.last_success_ms = Some(crate::time::now_ms());
                }
            });
            done.action
        }
        Err(e) => {
            tracing::warn!(error = %e, "run failed");
            state.update(|p| {
                p.runs += 1;
                p.last_outcome = Some(Outcome::Failed);
                p.retry_in = None;
                if let controller::Error::Invalid(invalid) = &e {
                    p.commit = invalid.snapshot.revision.as_ref().map(|r| r.commit.clone());
                }
            });
            controller::error_policy(&e, request.reason.attempt(), &backoff)
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
