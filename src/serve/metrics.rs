//! The daemon's Prometheus metrics, named by Prometheus conventions (`labctl_` prefix, base
//! units, `_total` counters). What this process did (runs, triggers, provider observations)
//! is counted as it happens; what the store knows (open deviations, pull requests, the last
//! successful run) is read at scrape time, so a standby reports the same lab as the leader.

use std::sync::atomic::AtomicU64;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::{Registry, Unit};

use crate::reconcile::ObserveTiming;
use crate::store::{Outcome, Store};

/// The content type of OpenMetrics text, for scrapers that ask for it (Prometheus does).
pub const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// The content type of Prometheus' classic text format, for everyone else (promtool, curl).
pub const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The format a scraper asked for in its `Accept` header: OpenMetrics when it names it, else
/// the classic text format (as the Go client library decides).
pub fn negotiate(accept: Option<&str>) -> &'static str {
    match accept {
        Some(accept) if accept.contains("application/openmetrics-text") => OPENMETRICS,
        _ => PROMETHEUS_TEXT,
    }
}

/// OpenMetrics text in Prometheus' classic text format: a counter family is named with its
/// `_total` suffix there, and `# UNIT` and `# EOF` do not exist.
pub fn classic_text(openmetrics: &str) -> String {
    let mut counters = std::collections::HashSet::new();
    for line in openmetrics.lines() {
        if let Some(name) = line
            .strip_prefix("# TYPE ")
            .and_then(|rest| rest.strip_suffix(" counter"))
        {
            counters.insert(name.to_string());
        }
    }
    let mut out = String::with_capacity(openmetrics.len());
    for line in openmetrics.lines() {
        if line.starts_with("# UNIT ") || line == "# EOF" {
            continue;
        }
        let renamed = ["# HELP ", "# TYPE "].iter().find_map(|prefix| {
            let rest = line.strip_prefix(prefix)?;
            let (name, tail) = rest.split_once(' ')?;
            counters
                .contains(name)
                .then(|| format!("{prefix}{name}_total {tail}"))
        });
        out.push_str(renamed.as_deref().unwrap_or(line));
        out.push('\n');
    }
    out
}

/// How long a scrape may wait for the store before it reports the store down.
const STORE_DEADLINE: Duration = Duration::from_secs(5);

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabel {
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TriggerLabel {
    trigger: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ProviderLabel {
    provider: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct NotificationLabels {
    target: String,
    result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DeviationLabels {
    kind: String,
    severity: String,
}

type Histograms<L> = Family<L, Histogram, fn() -> Histogram>;

/// Every metric the daemon exports.
pub struct Metrics {
    registry: Registry,
    runs: Family<OutcomeLabel, Counter>,
    run_duration: Histograms<OutcomeLabel>,
    triggers: Family<TriggerLabel, Counter>,
    retry_backoff: Gauge<f64, AtomicU64>,
    provider_up: Family<ProviderLabel, Gauge>,
    provider_observe: Histograms<ProviderLabel>,
    provider_failures: Family<ProviderLabel, Gauge>,
    provider_backoff: Family<ProviderLabel, Gauge<f64, AtomicU64>>,
    deviations_open: Family<DeviationLabels, Gauge>,
    /// Every kind and severity ever exported, so those with nothing open show 0.
    deviation_series: std::sync::Mutex<std::collections::HashSet<DeviationLabels>>,
    pull_requests_open: Gauge,
    suspensions: Gauge,
    last_success: Gauge<f64, AtomicU64>,
    store_up: Gauge,
    leader: Gauge,
    notifications: Family<NotificationLabels, Counter>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

/// Runs take from tens of milliseconds (nothing changed) to minutes (a slow provider).
fn run_buckets() -> Histogram {
    Histogram::new(exponential_buckets(0.01, 2.0, 16))
}

/// One provider call: milliseconds to its deadline.
fn observe_buckets() -> Histogram {
    Histogram::new(exponential_buckets(0.001, 2.0, 16))
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("labctl");
        let runs = Family::default();
        registry.register("runs", "Reconcile runs finished, by outcome", runs.clone());
        let run_duration: Histograms<OutcomeLabel> = Family::new_with_constructor(run_buckets);
        registry.register_with_unit(
            "run_duration",
            "How long a run took, from the request to its record, by outcome",
            Unit::Seconds,
            run_duration.clone(),
        );
        let triggers = Family::default();
        registry.register(
            "triggers",
            "Requests for a run, by what asked (several may be answered by one run)",
            triggers.clone(),
        );
        let retry_backoff = Gauge::default();
        registry.register_with_unit(
            "retry_backoff",
            "Delay before the next retry of a failed run; 0 when none is pending",
            Unit::Seconds,
            retry_backoff.clone(),
        );
        let provider_up = Family::default();
        registry.register(
            "provider_up",
            "Whether the provider answered in this process's last run (1) or not (0)",
            provider_up.clone(),
        );
        let provider_observe: Histograms<ProviderLabel> =
            Family::new_with_constructor(observe_buckets);
        registry.register_with_unit(
            "provider_observe_duration",
            "How long observing a provider took, including its retries",
            Unit::Seconds,
            provider_observe.clone(),
        );
        let provider_failures = Family::default();
        registry.register(
            "provider_consecutive_failures",
            "Runs in a row in which the provider was asked and did not answer; 0 once it answers",
            provider_failures.clone(),
        );
        let provider_backoff = Family::default();
        registry.register_with_unit(
            "provider_backoff",
            "How long until a failing provider is asked again (the runs between leave it out); 0 when it is not failing",
            Unit::Seconds,
            provider_backoff.clone(),
        );
        let deviations_open = Family::default();
        registry.register(
            "deviations_open",
            "Open deviations in the store, by kind and severity",
            deviations_open.clone(),
        );
        let pull_requests_open = Gauge::default();
        registry.register(
            "pull_requests_open",
            "Remediation pull requests labctl opened that are still open",
            pull_requests_open.clone(),
        );
        let suspensions = Gauge::default();
        registry.register(
            "suspensions",
            "Runtime suspensions in force (labctl suspend): what they cover is observed, not changed",
            suspensions.clone(),
        );
        let last_success = Gauge::default();
        registry.register_with_unit(
            "last_successful_run_timestamp",
            "When the last run that succeeded finished (Unix time); 0 if none has",
            Unit::Seconds,
            last_success.clone(),
        );
        let store_up = Gauge::default();
        registry.register(
            "store_up",
            "Whether the state store answered this scrape (1) or not (0)",
            store_up.clone(),
        );
        let leader = Gauge::default();
        registry.register(
            "leader",
            "Whether this process holds the leader lock and reconciles (1) or is a standby (0)",
            leader.clone(),
        );
        let notifications = Family::default();
        registry.register(
            "notifications",
            "Notification messages by target (ntfy, webhook) and result (sent, failed)",
            notifications.clone(),
        );
        Metrics {
            notifications,
            leader,
            registry,
            runs,
            run_duration,
            triggers,
            retry_backoff,
            provider_up,
            provider_observe,
            provider_failures,
            provider_backoff,
            deviations_open,
            deviation_series: Default::default(),
            pull_requests_open,
            suspensions,
            last_success,
            store_up,
        }
    }
}

impl Metrics {
    /// A request for a run arrived from `trigger` (a reason's label).
    pub fn triggered(&self, trigger: &str) {
        self.triggers
            .get_or_create(&TriggerLabel {
                trigger: trigger.to_string(),
            })
            .inc();
    }

    /// A run finished with `outcome` after `took`; `observed` is how its providers answered.
    pub fn ran(&self, outcome: Outcome, took: Duration, observed: &[ObserveTiming]) {
        let label = OutcomeLabel {
            outcome: outcome.as_str().to_string(),
        };
        self.runs.get_or_create(&label).inc();
        self.run_duration
            .get_or_create(&label)
            .observe(took.as_secs_f64());
        for timing in observed {
            let label = ProviderLabel {
                provider: timing.provider.clone(),
            };
            self.provider_up
                .get_or_create(&label)
                .set(i64::from(timing.answered));
            // A provider left out for its backoff took no time: it was not called.
            if timing.asked {
                self.provider_observe
                    .get_or_create(&label)
                    .observe(timing.seconds);
            }
        }
    }

    /// The providers of a run and which of them are failing, at `now_ms`.
    pub fn backoff(
        &self,
        observed: &[ObserveTiming],
        failing: &std::collections::BTreeMap<String, crate::controller::Failing>,
        now_ms: i64,
    ) {
        for timing in observed {
            let label = ProviderLabel {
                provider: timing.provider.clone(),
            };
            let f = failing.get(&timing.provider);
            self.provider_failures
                .get_or_create(&label)
                .set(f.map_or(0, |f| i64::from(f.failures)));
            self.provider_backoff
                .get_or_create(&label)
                .set(f.map_or(0.0, |f| (f.retry_at_ms - now_ms).max(0) as f64 / 1000.0));
        }
    }

    /// A message to `target` was delivered (`sent`) or not.
    pub fn notified(&self, target: &str, sent: bool) {
        let result = if sent { "sent" } else { "failed" };
        self.notifications
            .get_or_create(&NotificationLabels {
                target: target.to_string(),
                result: result.to_string(),
            })
            .inc();
    }

    /// This process became the leader (`true`) or a standby.
    pub fn leader(&self, leading: bool) {
        self.leader.set(i64::from(leading));
    }

    /// The next retry is due after `delay` (`None`: no retry pending).
    pub fn retry_in(&self, delay: Option<Duration>) {
        self.retry_backoff
            .set(delay.map_or(0.0, |d| d.as_secs_f64()));
    }

    /// The metrics as OpenMetrics text, after reading what the store knows now (see
    /// [`classic_text`] for the other format).
    pub async fn encode(&self, store: &Store) -> String {
        let up = tokio::time::timeout(STORE_DEADLINE, self.read_store(store)).await;
        let ok = matches!(up, Ok(Ok(())));
        if let Ok(Err(e)) = &up {
            tracing::warn!(error = %e, "metrics: cannot read the store");
        }
        self.store_up.set(i64::from(ok));
        let mut text = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.registry);
        text
    }

    async fn read_store(&self, store: &Store) -> Result<(), crate::store::StoreError> {
        let open = store.open_deviations(None, None).await?;
        let prs = store.open_pull_requests().await?;
        let last = store.last_finished(Outcome::Succeeded).await?;
        let suspensions = store.suspensions().await?;
        // Series of kinds and severities with nothing open any more go to 0, not away, so a
        // rate or an alert over them sees the drop.
        let mut counts: std::collections::HashMap<DeviationLabels, i64> = Default::default();
        for d in &open {
            let labels = DeviationLabels {
                kind: d.record.kind.clone(),
                severity: d.record.severity.to_string(),
            };
            *counts.entry(labels).or_default() += 1;
        }
        let mut seen = self
            .deviation_series
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        for labels in seen.iter() {
            counts.entry(labels.clone()).or_insert(0);
        }
        for (labels, n) in counts {
            self.deviations_open.get_or_create(&labels).set(n);
            seen.insert(labels);
        }
        self.pull_requests_open.set(prs.len() as i64);
        self.suspensions.set(suspensions.len() as i64);
        self.last_success
            .set(last.map_or(0.0, |ms| ms as f64 / 1000.0));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classic_text_names_counters_with_total_and_drops_what_it_lacks() {
        let om = "# HELP labctl_runs Runs.\n# TYPE labctl_runs counter\n\
                  labctl_runs_total{outcome=\"succeeded\"} 3\n\
                  # HELP labctl_run_duration_seconds Time.\n# TYPE labctl_run_duration_seconds histogram\n\
                  # UNIT labctl_run_duration_seconds seconds\n\
                  labctl_run_duration_seconds_count 1\n# EOF\n";
        assert_eq!(
            classic_text(om),
            "# HELP labctl_runs_total Runs.\n# TYPE labctl_runs_total counter\n\
             labctl_runs_total{outcome=\"succeeded\"} 3\n\
             # HELP labctl_run_duration_seconds Time.\n# TYPE labctl_run_duration_seconds histogram\n\
             labctl_run_duration_seconds_count 1\n"
        );
    }

    #[test]
    fn prometheus_gets_openmetrics_and_everyone_else_the_classic_format() {
        let prometheus =
            "application/openmetrics-text;version=1.0.0;q=0.5,text/plain;version=0.0.4;q=0.4";
        assert_eq!(negotiate(Some(prometheus)), OPENMETRICS);
        assert_eq!(negotiate(Some("*/*")), PROMETHEUS_TEXT);
        assert_eq!(negotiate(None), PROMETHEUS_TEXT);
    }
}
