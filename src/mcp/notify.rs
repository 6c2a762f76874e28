//! What an MCP session hears without asking: `notifications/resources/updated` for the
//! resources it subscribed to (`resources/subscribe`, or a 2026-07-28 `subscriptions/listen`),
//! `notifications/resources/list_changed` when documents come or go, and log messages at the
//! level it set (`logging/setLevel`).
//!
//! The store may be written by another process (a timer's `reconcile --once`, the daemon), so
//! one [`Feed`] per server process polls it for a new run and publishes a [`Snapshot`]: a hash
//! of every resource's content. Each session compares consecutive snapshots with what it
//! follows. The feed polls only while some session follows it.

use std::collections::{BTreeMap, HashMap};
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

// Logging is deprecated by SEP-2577 for the protocol after 2025-11-25, whose clients are the
// ones in use: it is served to them until they are gone.
#[allow(deprecated)]
use rmcp::model::{
    LoggingLevel, LoggingMessageNotificationParam, ProgressNotificationParam, ProgressToken,
    SubscriptionFilter,
};
use rmcp::service::{Peer, RoleServer, SubscriptionSink};
use rmcp::ErrorData;
use serde_json::Value as Json;
use tokio::sync::{oneshot, watch};

use super::LabServer;

/// How often the feed asks the store for a new run: an agent waiting for "the next
/// reconcile" hears of it within this.
pub const POLL: Duration = Duration::from_secs(1);
/// Resources one session may subscribe to.
pub const MAX_SUBSCRIPTIONS: usize = 256;
/// The longest URI accepted for a subscription.
pub const MAX_URI_BYTES: usize = 1024;

/// Every resource's content as of one run, as hashes keyed by lower-case URI (names are
/// case-insensitive), and a hash of the list itself.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Snapshot {
    pub(super) list: u64,
    pub(super) resources: HashMap<String, u64>,
}

impl Snapshot {
    /// Adds a resource whose content is `value`.
    pub(super) fn add(&mut self, uri: &str, value: &Json) {
        self.resources
            .insert(uri.to_ascii_lowercase(), hash(&value.to_string()));
    }

    /// Fixes the list hash over the resources added so far.
    pub(super) fn seal(mut self) -> Self {
        let mut uris: Vec<&String> = self.resources.keys().collect();
        uris.sort();
        self.list = hash(&uris);
        self
    }
}

fn hash(value: &impl Hash) -> u64 {
    // Fixed keys: the same content hashes the same across the snapshots of one process.
    let mut h = std::collections::hash_map::DefaultHasher::new();
    value.hash(&mut h);
    h.finish()
}

/// The latest snapshot of the store, shared by every session of one server process.
#[derive(Debug)]
pub struct Feed {
    tx: watch::Sender<Option<Arc<Snapshot>>>,
    /// Whether a poller runs; checked with the receivers under this lock, so that a session
    /// that follows just as the last one leaves is not left without one.
    polling: Mutex<bool>,
}

impl Feed {
    pub fn new() -> Arc<Feed> {
        Arc::new(Feed {
            tx: watch::channel(None).0,
            polling: Mutex::new(false),
        })
    }

    /// A receiver of snapshots; starts polling the store of `server` if nobody does.
    fn follow(self: &Arc<Self>, server: &LabServer) -> watch::Receiver<Option<Arc<Snapshot>>> {
        let mut polling = self.polling.lock().unwrap_or_else(|e| e.into_inner());
        let rx = self.tx.subscribe();
        if !*polling {
            *polling = true;
            // A session of its own: the poller must not keep any client's session alive.
            tokio::spawn(poll(Arc::clone(self), server.for_session()));
        }
        rx
    }
}

/// Publishes a snapshot whenever the latest run changes (a new one, or the one in progress
/// finishing), until no session follows.
async fn poll(feed: Arc<Feed>, server: LabServer) {
    let mut seen = None;
    loop {
        {
            let mut polling = feed.polling.lock().unwrap_or_else(|e| e.into_inner());
            if feed.tx.receiver_count() == 0 {
                *polling = false;
                return;
            }
        }
        match server.store.latest_run_key().await {
            Ok(key) => {
                if key != seen {
                    match server.snapshot().await {
                        Ok(snapshot) => {
                            feed.tx.send_replace(Some(Arc::new(snapshot)));
                            seen = key;
                        }
                        Err(e) => tracing::debug!(error = %e.message, "cannot take a snapshot"),
                    }
                }
            }
            Err(e) => tracing::debug!(error = %e, "cannot read the latest run"),
        }
        tokio::time::sleep(POLL).await;
    }
}

/// One MCP session's interest: what it subscribed to, the log level it set, and its peer.
#[derive(Debug)]
#[allow(deprecated)]
pub struct Session {
    /// Lower-case URI → the URI as the client gave it (notifications name that one).
    subscriptions: Mutex<BTreeMap<String, String>>,
    level: Mutex<Option<LoggingLevel>>,
    peer: OnceLock<Peer<RoleServer>>,
    /// Dropped with the session: its follower stops.
    _alive: oneshot::Sender<()>,
    ended: Mutex<Option<oneshot::Receiver<()>>>,
}

impl Default for Session {
    fn default() -> Self {
        let (alive, ended) = oneshot::channel();
        Session {
            subscriptions: Mutex::default(),
            level: Mutex::default(),
            peer: OnceLock::new(),
            _alive: alive,
            ended: Mutex::new(Some(ended)),
        }
    }
}

/// How much a progress message matters, as a log level.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Info,
    Warning,
    Error,
}

impl Level {
    #[allow(deprecated)]
    fn logging(self) -> LoggingLevel {
        match self {
            Level::Info => LoggingLevel::Info,
            Level::Warning => LoggingLevel::Warning,
            Level::Error => LoggingLevel::Error,
        }
    }
}

/// The call being answered, when its client asked for progress notifications.
#[derive(Debug, Clone)]
pub struct Call {
    pub peer: Peer<RoleServer>,
    pub token: ProgressToken,
}

/// One notification due to a session.
#[derive(Debug, PartialEq, Eq)]
enum Note {
    ListChanged,
    Updated(String),
}

/// What a session following `wanted` (lower-case → given URI), and the list if `list`, is
/// told when the store goes from `before` to `after`.
fn notes(
    before: &Snapshot,
    after: &Snapshot,
    wanted: &BTreeMap<String, String>,
    list: bool,
) -> Vec<Note> {
    let mut out = Vec::new();
    if list && before.list != after.list {
        out.push(Note::ListChanged);
    }
    for (key, uri) in wanted {
        if before.resources.get(key) != after.resources.get(key) {
            out.push(Note::Updated(uri.clone()));
        }
    }
    out
}

impl LabServer {
    /// `resources/subscribe`: any URI (a document may be declared later; a URI of another
    /// server is never updated), within the per-session limits.
    pub(super) fn subscribe(&self, uri: &str) -> Result<(), ErrorData> {
        if uri.len() > MAX_URI_BYTES {
            return Err(ErrorData::invalid_params(
                format!(
                    "the URI is {} bytes; at most {MAX_URI_BYTES} are accepted",
                    uri.len()
                ),
                None,
            ));
        }
        let mut subs = self.lock_subscriptions();
        if subs.len() >= MAX_SUBSCRIPTIONS && !subs.contains_key(&uri.to_ascii_lowercase()) {
            return Err(ErrorData::invalid_params(
                format!(
                    "this session already follows {MAX_SUBSCRIPTIONS} resources, the most \
                     it may; unsubscribe from one first"
                ),
                None,
            ));
        }
        subs.insert(uri.to_ascii_lowercase(), uri.to_string());
        Ok(())
    }

    /// `resources/unsubscribe`: forgetting a URI never subscribed is not an error.
    pub(super) fn unsubscribe(&self, uri: &str) {
        self.lock_subscriptions().remove(&uri.to_ascii_lowercase());
    }

    fn lock_subscriptions(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, String>> {
        self.session
            .subscriptions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    /// `logging/setLevel`.
    #[allow(deprecated)]
    pub(super) fn set_log_level(&self, level: LoggingLevel) {
        *self.session.level.lock().unwrap_or_else(|e| e.into_inner()) = Some(level);
    }

    /// Sends a log message to this session if it asked for this level (a session that never
    /// set a level gets none).
    #[allow(deprecated)]
    pub(super) async fn log(&self, level: LoggingLevel, data: Json) {
        let wanted = *self.session.level.lock().unwrap_or_else(|e| e.into_inner());
        let Some(peer) = self.session.peer.get() else {
            return;
        };
        if wanted.is_some_and(|min| level as u8 >= min as u8) {
            let message = LoggingMessageNotificationParam::new(level, data).with_logger("labctl");
            if let Err(e) = peer.notify_logging_message(message).await {
                tracing::debug!(error = %e, "cannot send a log message to the client");
            }
        }
    }

    /// Tells the client how far a long call is: a progress notification when the call asked
    /// for them (a progress token), and a log message at `level` if the session wants it.
    #[allow(deprecated)]
    pub(super) async fn progress(&self, level: Level, step: u32, of: u32, message: String) {
        if let Some(call) = &self.call {
            let note = ProgressNotificationParam::new(call.token.clone(), f64::from(step))
                .with_total(f64::from(of))
                .with_message(message.clone());
            if let Err(e) = call.peer.notify_progress(note).await {
                tracing::debug!(error = %e, "cannot send progress to the client");
            }
        }
        self.log(level.logging(), Json::String(message)).await;
    }

    /// After `initialize`: the session follows the feed until it ends, telling the client of
    /// what it subscribed to and of the list.
    pub(super) fn start_following(&self, peer: Peer<RoleServer>) {
        let _ = self.session.peer.set(peer.clone());
        let Some(ended) = self
            .session
            .ended
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
        else {
            return;
        };
        let rx = self.feed.follow(self);
        let wanted = Wanted::Session(Arc::downgrade(&self.session));
        tokio::spawn(async move {
            let ended = async move {
                let _ = ended.await;
            };
            relay(rx, &wanted, &Sink::Session(peer), ended).await;
        });
    }

    /// A 2026-07-28 `subscriptions/listen`: the resources and list it accepted, until the
    /// client cancels it.
    pub(super) async fn listen(&self, context: rmcp::service::SubscriptionContext) {
        let accepted = context.accepted().clone();
        let uris = accepted
            .resource_subscriptions
            .iter()
            .flatten()
            .map(|uri| (uri.to_ascii_lowercase(), uri.clone()))
            .collect();
        let wanted = Wanted::Fixed(uris, accepted.resources_list_changed == Some(true));
        let sink = Sink::Listen(context.sink().clone());
        let rx = self.feed.follow(self);
        relay(rx, &wanted, &sink, context.cancelled()).await;
    }
}

/// What a follower wants to hear of.
enum Wanted {
    /// The session's subscriptions as they are at each change, and the list; nothing once
    /// the session is gone.
    Session(std::sync::Weak<Session>),
    /// The URIs (lower-case → as given) and whether the list, accepted once.
    Fixed(BTreeMap<String, String>, bool),
}

impl Wanted {
    fn now(&self) -> Option<(BTreeMap<String, String>, bool)> {
        match self {
            Wanted::Session(session) => {
                let session = session.upgrade()?;
                let subs = session
                    .subscriptions
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .clone();
                Some((subs, true))
            }
            Wanted::Fixed(uris, list) => Some((uris.clone(), *list)),
        }
    }
}

/// Where a follower's notifications go.
enum Sink {
    /// The session's peer (`resources/subscribe`).
    Session(Peer<RoleServer>),
    /// A `subscriptions/listen` stream.
    Listen(SubscriptionSink),
}

impl Sink {
    /// Sends one notification; whether it went out.
    async fn send(&self, note: Note) -> bool {
        match (self, note) {
            (Sink::Session(peer), Note::ListChanged) => {
                peer.notify_resource_list_changed().await.is_ok()
            }
            (Sink::Session(peer), Note::Updated(uri)) => peer
                .notify_resource_updated(rmcp::model::ResourceUpdatedNotificationParam::new(uri))
                .await
                .is_ok(),
            (Sink::Listen(sink), Note::ListChanged) => {
                sink.notify_resource_list_changed().await.is_ok()
            }
            (Sink::Listen(sink), Note::Updated(uri)) => {
                sink.notify_resource_updated(uri).await.is_ok()
            }
        }
    }
}

/// Tells `sink` what changed between consecutive snapshots of the feed, as `wanted` says,
/// until `stop` completes, the feed ends, the follower is gone or a send fails.
async fn relay(
    mut rx: watch::Receiver<Option<Arc<Snapshot>>>,
    wanted: &Wanted,
    sink: &Sink,
    stop: impl std::future::Future<Output = ()>,
) {
    tokio::pin!(stop);
    let mut before = rx.borrow_and_update().clone();
    loop {
        tokio::select! {
            _ = &mut stop => return,
            changed = rx.changed() => if changed.is_err() { return },
        }
        let after = rx.borrow_and_update().clone();
        if let (Some(b), Some(a)) = (&before, &after) {
            let Some((uris, list)) = wanted.now() else {
                return;
            };
            for note in notes(b, a, &uris, list) {
                if !sink.send(note).await {
                    return;
                }
            }
        }
        before = after;
    }
}

/// What a `subscriptions/listen` may follow here: the resource list and any resource, within
/// the per-session limits.
pub fn accepted_filter(requested: &SubscriptionFilter) -> SubscriptionFilter {
    let mut accepted = SubscriptionFilter::new();
    accepted.resources_list_changed = requested.resources_list_changed;
    accepted.resource_subscriptions = requested.resource_subscriptions.as_ref().map(|uris| {
        uris.iter()
            .filter(|u| u.len() <= MAX_URI_BYTES)
            .take(MAX_SUBSCRIPTIONS)
            .cloned()
            .collect()
    });
    accepted
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn sessions_hear_of_what_they_follow() {
        let mut a = Snapshot::default();
        a.add("labctl://plan/latest", &json!({"run": 1}));
        a.add("labctl://Device/harbor", &json!({"cores": 8}));
        let a = a.seal();
        let mut b = Snapshot::default();
        b.add("labctl://plan/latest", &json!({"run": 2}));
        b.add("labctl://Device/harbor", &json!({"cores": 8}));
        b.add("labctl://Device/new", &json!({}));
        let b = b.seal();
        let wanted: BTreeMap<String, String> = [
            "labctl://device/HARBOR",
            "labctl://plan/latest",
            "labctl://Device/new",
            "test://other",
        ]
        .iter()
        .map(|u| (u.to_ascii_lowercase(), u.to_string()))
        .collect();
        assert_eq!(
            notes(&a, &b, &wanted, true),
            vec![
                Note::ListChanged,
                Note::Updated("labctl://Device/new".into()),
                Note::Updated("labctl://plan/latest".into()),
            ]
        );
        // The same content again: nothing to say.
        assert!(notes(&b, &b, &wanted, true).is_empty());
        assert_eq!(notes(&a, &b, &BTreeMap::new(), false), Vec::<Note>::new());
    }
}
