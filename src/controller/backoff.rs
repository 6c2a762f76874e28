//! Backoff: between retries of a failed run, and per provider, so that a provider that is down
//! costs the others nothing. A failing provider is not asked again until its own delay —
//! exponential, with jitter, so that several controllers and providers do not retry in step —
//! is over; runs in between observe every other provider as usual and report the resting one
//! unknown (never absent), so nothing is concluded, applied or proposed about what it covers.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

use crate::model::{DesiredState, Kind};
use crate::providers::{BoxFuture, Observation, Provider, ProviderError, Resource, Severities};
use crate::reconcile::ObserveTiming;

/// Exponential backoff between retries of one failure, separate from the providers' own
/// per-call retries (which handle a dropped connection within one run).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    pub base: Duration,
    pub max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            base: Duration::from_secs(10),
            max: Duration::from_secs(600),
        }
    }
}

impl Backoff {
    /// The delay before retry number `attempt + 1`: base, 2×base, 4×base, … up to max.
    pub fn delay(&self, attempt: u32) -> Duration {
        let factor = 2u32.saturating_pow(attempt.min(30));
        self.base.saturating_mul(factor).min(self.max)
    }
}

/// `delay` moved by up to ±`percent` %, from the clock's low bits (no need for a random
/// source: the point is only that processes started together drift apart).
pub fn jittered(delay: Duration, percent: u32) -> Duration {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let spread = delay * percent.min(100) / 100;
    let offset = (spread * 2).mul_f64(f64::from(nanos % 1000) / 1000.0);
    delay - spread + offset
}

/// A provider that failed in the runs before, and when it is asked again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Failing {
    /// Runs in a row in which it was asked and did not answer.
    pub failures: u32,
    /// Unix milliseconds from which it is asked again.
    pub retry_at_ms: i64,
    /// What its last failure said.
    pub error: String,
    /// The commit in force when it last failed: a new commit (its settings may have been
    /// fixed) asks it at once.
    #[serde(skip)]
    pub commit: Option<String>,
}

/// The failing providers of this process, by name. Kept by the controller between runs; a
/// new process asks every provider.
#[derive(Debug, Default)]
pub struct ProviderBackoff {
    failing: BTreeMap<String, Failing>,
}

impl ProviderBackoff {
    /// Whether `provider` is asked in a run at `now_ms` of `commit`: when it is not failing,
    /// its delay is over, or the commit is another than the one it failed under.
    pub fn due(&self, provider: &str, now_ms: i64, commit: Option<&str>) -> bool {
        self.failing
            .get(provider)
            .is_none_or(|f| now_ms >= f.retry_at_ms || f.commit.as_deref() != commit)
    }

    /// Records how the providers asked in a run answered (those it did not ask keep their
    /// state): an answer ends a provider's backoff, a failure doubles it, jittered by ±20 %.
    /// `errors` are the run's unobservable providers with why.
    pub fn record(
        &mut self,
        observed: &[ObserveTiming],
        errors: &BTreeMap<String, String>,
        commit: Option<&str>,
        now_ms: i64,
        backoff: &Backoff,
    ) {
        for timing in observed.iter().filter(|t| t.asked) {
            if timing.answered {
                if let Some(was) = self.failing.remove(&timing.provider) {
                    tracing::info!(provider = %timing.provider, failures = was.failures, "provider answers again");
                }
                continue;
            }
            let failures = self
                .failing
                .get(&timing.provider)
                .map_or(1, |f| f.failures.saturating_add(1));
            let delay = jittered(backoff.delay(failures - 1), 20);
            let error = errors
                .get(&timing.provider)
                .cloned()
                .unwrap_or_else(|| "it did not answer".into());
            tracing::warn!(
                provider = %timing.provider,
                failures,
                retry_in_s = delay.as_secs_f64(),
                error = %error,
                "provider failing: the others go on; it is asked again after its backoff"
            );
            self.failing.insert(
                timing.provider.clone(),
                Failing {
                    failures,
                    retry_at_ms: now_ms.saturating_add(delay.as_millis() as i64),
                    error,
                    commit: commit.map(str::to_string),
                },
            );
        }
    }

    /// Forgets providers the desired state no longer declares.
    pub fn retain(&mut self, declared: &BTreeSet<&str>) {
        self.failing
            .retain(|name, _| declared.contains(name.as_str()));
    }

    /// When the first resting provider is due again (unix milliseconds).
    pub fn next_retry_ms(&self) -> Option<i64> {
        self.failing.values().map(|f| f.retry_at_ms).min()
    }

    /// The failing providers, by name.
    pub fn failing(&self) -> &BTreeMap<String, Failing> {
        &self.failing
    }

    /// `provider` as a run at `now_ms` of `commit` asks it: itself, or in its backoff a
    /// stand-in that answers that it was not asked.
    pub fn gate(
        &self,
        provider: Arc<dyn Provider>,
        now_ms: i64,
        commit: Option<&str>,
    ) -> Arc<dyn Provider> {
        match self.failing.get(provider.name()) {
            Some(f) if !self.due(provider.name(), now_ms, commit) => Arc::new(Resting {
                error: ProviderError::Resting {
                    provider: provider.name().to_string(),
                    failures: f.failures,
                    retry_in_s: ((f.retry_at_ms - now_ms).max(0) as u64).div_ceil(1000),
                    last: f.error.clone(),
                },
                inner: provider,
            }),
            _ => provider,
        }
    }
}

/// A provider in its backoff: covers what it covers (so all of it is unknown, never missing)
/// and answers, without a call, that it was not asked.
struct Resting {
    inner: Arc<dyn Provider>,
    error: ProviderError,
}

impl Provider for Resting {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn kinds(&self) -> BTreeSet<Kind> {
        self.inner.kinds()
    }

    fn expected(&self, desired: &DesiredState) -> Vec<Resource> {
        self.inner.expected(desired)
    }

    fn observe<'a>(
        &'a self,
        _: &'a DesiredState,
    ) -> BoxFuture<'a, Result<Observation, ProviderError>> {
        Box::pin(std::future::ready(Err(self.error.clone())))
    }

    fn severities(&self) -> Severities {
        self.inner.severities()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn timing(provider: &str, answered: bool) -> ObserveTiming {
        ObserveTiming {
            provider: provider.into(),
            answered,
            asked: true,
            unchanged: false,
            seconds: 0.01,
        }
    }

    #[test]
    fn backoff_doubles_up_to_its_cap() {
        let b = Backoff {
            base: Duration::from_secs(10),
            max: Duration::from_secs(60),
        };
        let delays: Vec<u64> = (0..5).map(|a| b.delay(a).as_secs()).collect();
        assert_eq!(delays, [10, 20, 40, 60, 60]);
        assert_eq!(b.delay(u32::MAX), Duration::from_secs(60));
    }

    #[test]
    fn jitter_stays_within_its_share() {
        for _ in 0..100 {
            let d = jittered(Duration::from_secs(100), 20);
            assert!(
                d >= Duration::from_secs(80) && d <= Duration::from_secs(120),
                "{d:?}"
            );
        }
    }

    #[test]
    fn a_failing_provider_rests_for_a_growing_delay_and_an_answer_ends_it() {
        let b = Backoff {
            base: Duration::from_secs(10),
            max: Duration::from_secs(600),
        };
        let errors = BTreeMap::from([("kea".to_string(), "kea: refused".to_string())]);
        let mut p = ProviderBackoff::default();
        let now = 1_000_000;
        p.record(
            &[timing("kea", false), timing("caddy", true)],
            &errors,
            Some("c1"),
            now,
            &b,
        );
        let first = p.failing()["kea"].clone();
        assert_eq!(first.failures, 1);
        assert_eq!(first.error, "kea: refused");
        // 10 s ± 20 %.
        assert!((now + 8_000..=now + 12_000).contains(&first.retry_at_ms));
        assert!(!p.due("kea", now + 7_999, Some("c1")));
        assert!(p.due("caddy", now, Some("c1")));
        // A new commit may have fixed its settings: asked at once.
        assert!(p.due("kea", now + 1, Some("c2")));
        assert_eq!(p.next_retry_ms(), Some(first.retry_at_ms));

        // Not asked (still resting): its state stays as it was.
        let mut rested = timing("kea", false);
        rested.asked = false;
        p.record(&[rested], &errors, Some("c1"), now + 1_000, &b);
        assert_eq!(p.failing()["kea"], first);

        p.record(
            &[timing("kea", false)],
            &errors,
            Some("c1"),
            now + 12_000,
            &b,
        );
        let second = &p.failing()["kea"];
        assert_eq!(second.failures, 2);
        assert!((now + 12_000 + 16_000..=now + 12_000 + 24_000).contains(&second.retry_at_ms));

        p.record(
            &[timing("kea", true)],
            &errors,
            Some("c1"),
            now + 40_000,
            &b,
        );
        assert!(p.failing().is_empty());
        assert_eq!(p.next_retry_ms(), None);
    }

    #[test]
    fn a_resting_provider_is_not_called_and_covers_what_it_covers() {
        use crate::providers::{fixture, Factory};
        let mut p = ProviderBackoff::default();
        let b = Backoff::default();
        let errors = BTreeMap::from([("inv".to_string(), "inv: down".to_string())]);
        p.record(&[timing("inv", false)], &errors, None, 0, &b);
        let settings: fixture::Settings = serde_json::from_value(serde_json::json!(
            {"name": "inv", "url": "http://127.0.0.1:1", "devices": {"nas": "vm"}}
        ))
        .unwrap();
        let real = fixture::Plugin::build(&settings).unwrap();
        let gated = p.gate(Arc::clone(&real), 1, None);
        let desired = DesiredState::default();
        let answer = futures::executor::block_on(gated.observe(&desired));
        let Err(e @ ProviderError::Resting { failures: 1, .. }) = answer else {
            panic!("{answer:?}");
        };
        assert!(e.to_string().contains("inv: down"), "{e}");
        assert_eq!(gated.kinds(), real.kinds());
        // Once its delay is over it is itself again.
        let later = p.gate(Arc::clone(&real), 700_000, None);
        assert!(futures::executor::block_on(later.observe(&desired)).is_ok());
    }
}
