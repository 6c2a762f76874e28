//! Notifications after runs: when a run leaves deviations at or above a severity open that
//! nobody was told about, or a run fails, one message per run goes to ntfy and/or a generic
//! JSON webhook. Each deviation is announced once per life cycle (the store keeps
//! `notified_at`; a reopened deviation is a new one); a failure is announced when it starts
//! or its error changes, not on every retry. Delivery runs on its own task, under a
//! deadline: a slow or failing target is logged and counted, and never holds up a run.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value as Json};
use tokio::sync::mpsc;

use super::metrics::Metrics;
use crate::store::{Deviation, Outcome, Severity, Store};

/// How long one delivery may take.
const DEADLINE: Duration = Duration::from_secs(10);
/// Deviations listed in one message; the rest are counted.
const LISTED: i64 = 20;
/// Longest value shown in a message line.
const VALUE_CHARS: usize = 60;

/// Where messages go.
#[derive(Clone)]
pub enum Target {
    /// An ntfy topic URL (`https://ntfy.example/labctl`), with an access token if the topic
    /// is protected.
    Ntfy { url: String, token: Option<String> },
    /// Any HTTP endpoint taking a JSON POST.
    Webhook { url: String },
}

impl Target {
    fn label(&self) -> &'static str {
        match self {
            Target::Ntfy { .. } => "ntfy",
            Target::Webhook { .. } => "webhook",
        }
    }

    fn url(&self) -> &str {
        match self {
            Target::Ntfy { url, .. } | Target::Webhook { url } => url,
        }
    }
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the token; the URL without its password.
        write!(
            f,
            "{} {}",
            self.label(),
            crate::redact::userinfo(self.url())
        )
    }
}

/// What to announce and where.
#[derive(Debug, Clone)]
pub struct Settings {
    pub targets: Vec<Target>,
    /// Deviations below this severity are not announced.
    pub min_severity: Severity,
}

/// What the loop tells the notifier after each run.
#[derive(Debug, Clone)]
pub struct RunEvent {
    pub run: Option<i64>,
    pub commit: Option<String>,
    pub outcome: Outcome,
    /// Why a failed run failed.
    pub error: Option<String>,
}

/// The sending half, for the run loop; does nothing without targets.
#[derive(Debug, Clone, Default)]
pub struct Notifier(Option<mpsc::Sender<RunEvent>>);

impl Notifier {
    /// Starts the delivery task. Without targets, no task and no messages.
    pub fn start(settings: Settings, store: Store, metrics: Arc<Metrics>) -> Notifier {
        if settings.targets.is_empty() {
            return Notifier(None);
        }
        let (tx, rx) = mpsc::channel(16);
        tokio::spawn(deliver(settings, store, metrics, rx));
        Notifier(Some(tx))
    }

    /// A run finished; never waits (a full queue means messages are already due).
    pub fn after_run(&self, event: RunEvent) {
        if let Some(tx) = &self.0 {
            let _ = tx.try_send(event);
        }
    }
}

async fn deliver(
    settings: Settings,
    store: Store,
    metrics: Arc<Metrics>,
    mut events: mpsc::Receiver<RunEvent>,
) {
    let client = match reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(DEADLINE)
        .build()
    {
        Ok(client) => client,
        Err(e) => {
            tracing::error!(error = %e, "notifications are off: no HTTP client");
            return;
        }
    };
    // The failure last announced: the same one again (a retry) is not news.
    let mut failing: Option<String> = None;
    while let Some(event) = events.recv().await {
        let failure = match (&event.outcome, &event.error) {
            (Outcome::Failed, error) => {
                let error = error.clone().unwrap_or_else(|| "the run failed".into());
                let news = failing.as_deref() != Some(error.as_str());
                failing = Some(error.clone());
                news.then_some(error)
            }
            _ => {
                failing = None;
                None
            }
        };
        let (deviations, more) = match unannounced(&store, settings.min_severity).await {
            Ok(found) => found,
            Err(e) => {
                tracing::warn!(error = %e, "notifications: cannot read the store; trying after the next run");
                continue;
            }
        };
        if deviations.is_empty() && failure.is_none() {
            continue;
        }
        let message = Message {
            event: &event,
            failure: failure.as_deref(),
            deviations: &deviations,
            more,
        };
        let mut delivered = false;
        for target in &settings.targets {
            let sent = send(&client, target, &message).await;
            metrics.notified(target.label(), sent.is_ok());
            match sent {
                Ok(()) => delivered = true,
                Err(e) => {
                    tracing::warn!(target = ?target, error = %e, "notification not delivered")
                }
            }
        }
        // Announced once anywhere is announced: a target that is down does not make the
        // others repeat themselves. Nothing delivered: the next run tries again.
        if delivered {
            let ids: Vec<i64> = deviations.iter().map(|d| d.id).collect();
            if let Err(e) = store.mark_notified(&ids, crate::time::now_ms()).await {
                tracing::warn!(error = %e, "notifications: cannot record what was sent; it may be sent again");
            }
        }
    }
}

/// The deviations to announce (at most [`LISTED`]) and how many more there are.
async fn unannounced(
    store: &Store,
    min: Severity,
) -> Result<(Vec<Deviation>, usize), crate::store::StoreError> {
    let mut found = store.unnotified_deviations(min, LISTED + 1000).await?;
    let more = found.len().saturating_sub(LISTED as usize);
    found.truncate(LISTED as usize);
    Ok((found, more))
}

struct Message<'a> {
    event: &'a RunEvent,
    failure: Option<&'a str>,
    deviations: &'a [Deviation],
    more: usize,
}

impl Message<'_> {
    fn title(&self) -> String {
        let n = self.deviations.len() + self.more;
        match (self.failure, n) {
            (Some(_), 0) => "labctl: a run failed".into(),
            (Some(_), n) => format!("labctl: a run failed; {n} new deviation(s)"),
            (None, n) => format!("labctl: {n} new deviation(s)"),
        }
    }

    fn worst(&self) -> Option<Severity> {
        self.deviations.iter().map(|d| d.record.severity).max()
    }

    /// The plain-text body: the failure, then a line per deviation with the command that
    /// shows its history.
    fn text(&self) -> String {
        let mut lines = Vec::new();
        if let Some(failure) = self.failure {
            lines.push(format!("Run failed: {}", shorten(failure, 300)));
        }
        for d in self.deviations {
            let r = &d.record;
            let at = if r.field_path.is_empty() {
                String::new()
            } else {
                format!(" {}", r.field_path)
            };
            let values = match (&r.expected, &r.actual) {
                (Some(e), Some(a)) => format!(": Git {} / live {}", value(e), value(a)),
                _ => String::new(),
            };
            lines.push(format!(
                "{}/{}{at} {} ({}){values} — labctl drift --history {}",
                r.kind,
                r.name,
                r.dtype,
                r.severity,
                history(d)
            ));
        }
        if self.more > 0 {
            lines.push(format!("… and {} more: labctl drift", self.more));
        }
        if let Some(commit) = &self.event.commit {
            lines.push(format!("commit {}", &commit[..commit.len().min(12)]));
        }
        lines.join("\n")
    }

    fn json(&self) -> Json {
        let deviations: Vec<Json> = self
            .deviations
            .iter()
            .map(|d| {
                let r = &d.record;
                json!({
                    "kind": r.kind,
                    "name": r.name,
                    "field": r.field_path,
                    "type": r.dtype.to_string(),
                    "severity": r.severity.to_string(),
                    "expected": r.expected,
                    "actual": r.actual,
                    "openedAt": crate::time::rfc3339(d.opened_at),
                    "history": format!("labctl drift --history {}", history(d)),
                })
            })
            .collect();
        json!({
            "source": "labctl",
            "title": self.title(),
            "run": self.event.run,
            "commit": self.event.commit,
            "outcome": self.event.outcome.as_str(),
            "error": self.failure,
            "deviations": deviations,
            "moreDeviations": self.more,
        })
    }
}

/// `Kind/name` or `Kind/name:field`, as `labctl drift --history` takes it.
fn history(d: &Deviation) -> String {
    let r = &d.record;
    if r.field_path.is_empty() {
        format!("{}/{}", r.kind, r.name)
    } else {
        format!("{}/{}:{}", r.kind, r.name, r.field_path)
    }
}

fn value(v: &Json) -> String {
    let text = match v {
        Json::String(s) => s.clone(),
        other => other.to_string(),
    };
    shorten(&text, VALUE_CHARS)
}

fn shorten(text: &str, max: usize) -> String {
    let text = crate::text::printable(text, false);
    if text.chars().count() <= max {
        return text.into_owned();
    }
    let cut: String = text.chars().take(max).collect();
    format!("{cut}…")
}

/// ntfy's priorities: 5 (max) for critical, 4 (high) for high or a failure, 3 otherwise.
fn ntfy_priority(message: &Message) -> &'static str {
    match message.worst() {
        Some(Severity::Critical) => "5",
        Some(Severity::High) => "4",
        _ if message.failure.is_some() => "4",
        _ => "3",
    }
}

async fn send(
    client: &reqwest::Client,
    target: &Target,
    message: &Message<'_>,
) -> Result<(), String> {
    let request = match target {
        // ntfy's publish API: the body is the message, headers carry title, priority, tags.
        Target::Ntfy { url, token } => {
            let mut request = client
                .post(url)
                .header("Title", message.title())
                .header("Priority", ntfy_priority(message))
                .header(
                    "Tags",
                    if message.failure.is_some() {
                        "x"
                    } else {
                        "warning"
                    },
                )
                .body(message.text());
            if let Some(token) = token {
                request = request.bearer_auth(token);
            }
            request
        }
        Target::Webhook { url } => client.post(url).json(&message.json()),
    };
    let response = request.send().await.map_err(|e| {
        // reqwest's error names the URL; a password in it is not repeated.
        crate::redact::userinfo(&e.to_string())
    })?;
    let status = response.status();
    if status.is_success() {
        Ok(())
    } else {
        Err(format!(
            "{} answered {status}",
            crate::redact::userinfo(target.url())
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{DeviationRecord, DeviationType};

    fn deviation(field: &str, severity: Severity, expected: Json, actual: Json) -> Deviation {
        Deviation {
            id: 1,
            record: DeviationRecord {
                kind: "DhcpReservation".into(),
                name: "whisper".into(),
                field_path: field.into(),
                dtype: DeviationType::Drifted,
                severity,
                auto_correctable: true,
                remediation: None,
                expected: Some(expected),
                actual: Some(actual),
            },
            opened_at: 0,
            opened_run: 1,
            last_seen_at: 0,
            last_seen_run: 1,
            seen_count: 1,
            resolved_at: None,
            resolved_run: None,
            resolved_commit: None,
        }
    }

    #[test]
    fn a_message_names_each_deviation_with_its_history_command_and_escapes_what_it_quotes() {
        let long = "x".repeat(500);
        let deviations = [
            deviation(
                "spec.ip",
                Severity::High,
                json!("10.0.1.202"),
                json!("10.0.1.201"),
            ),
            deviation(
                "spec.hostname",
                Severity::Critical,
                json!("a\u{1b}[31mb"),
                json!(long),
            ),
        ];
        let event = RunEvent {
            run: Some(7),
            commit: Some("0123456789abcdef".into()),
            outcome: Outcome::Succeeded,
            error: None,
        };
        let message = Message {
            event: &event,
            failure: None,
            deviations: &deviations,
            more: 3,
        };
        let text = message.text();
        assert!(text.contains("DhcpReservation/whisper spec.ip drifted (high): Git 10.0.1.202 / live 10.0.1.201 — labctl drift --history DhcpReservation/whisper:spec.ip"), "{text}");
        assert!(!text.contains('\u{1b}'), "{text}");
        assert!(!text.contains(&long), "{text}");
        assert!(text.contains("… and 3 more"), "{text}");
        assert!(text.ends_with("commit 0123456789ab"), "{text}");
        assert_eq!(message.title(), "labctl: 5 new deviation(s)");
        assert_eq!(ntfy_priority(&message), "5");
        let body = message.json();
        assert_eq!(
            body["deviations"][0]["history"],
            "labctl drift --history DhcpReservation/whisper:spec.ip"
        );
        assert_eq!(body["moreDeviations"], 3);
    }
}
