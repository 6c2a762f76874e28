//! Reachability: whether the services `Device`s declare answer.
//!
//! For every device with an interface IP, each `tcp`, `http` and `https` service is probed on
//! the device's first interface address: a TCP connect, and for `http`/`https` services with a
//! `health` path an HTTP `GET` of that path instead (2xx and 3xx are up; anything else, a
//! refused connection or no answer within the timeout is down). `udp` services are not probed:
//! UDP has no handshake, so silence proves nothing.
//!
//! Fields, expected and observed alike: `{"services": {"<name>": {"up": true}}}`. Only `up` is
//! compared; latency is logged (tracing, debug) and never put into the fields, so that it does
//! not show up as drift. A down service is drift on `spec.services.<name>.up`.
//!
//! The provider only observes (`can_apply` is false), and it is not declared in
//! `labctl.yaml`: it probes the lab's addresses from wherever labctl runs, which is only
//! meaningful on a host inside the lab, so whether it runs is the host's decision.

use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Map, Value as Json};
use tokio::sync::Semaphore;

use super::http;
use super::{
    BoxFuture, CallPolicy, Observation, Provider, ProviderError, Resource, Severities, Severity,
};
use crate::model::{DesiredState, Kind, Service, ServiceProtocol};

/// Probes in flight at once, over all devices.
const MAX_CONCURRENT: usize = 16;

/// Probes the declared services of devices.
pub struct ReachabilityProvider {
    name: String,
    policy: CallPolicy,
    client: reqwest::Client,
    limit: Arc<Semaphore>,
}

/// One probe to run.
struct Probe {
    device: String,
    service: String,
    addr: SocketAddr,
    /// `(scheme, path)` of the health check, when there is one.
    health: Option<(&'static str, String)>,
}

impl ReachabilityProvider {
    /// `policy.timeout` bounds each attempt; a probe is down only when `1 + policy.retries`
    /// attempts, `policy.backoff` apart (doubling), all failed, so one lost SYN is not drift.
    pub fn new(name: impl Into<String>, policy: CallPolicy) -> Result<Self, ProviderError> {
        let name = name.into();
        let builder = reqwest::Client::builder()
            // Health checks ask whether the service answers, not who it is: lab services
            // mostly have self-signed certificates, and nothing secret is sent (no credentials,
            // no cookies, a bare GET), so an impostor learns nothing from the probe.
            .danger_accept_invalid_certs(true)
            .no_proxy()
            // A redirect (to a login page, say) already shows the service answers.
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(policy.timeout)
            .timeout(policy.timeout);
        let client = http::build(builder, &ProviderError::config(&name))?;
        Ok(ReachabilityProvider {
            name,
            policy,
            client,
            limit: Arc::new(Semaphore::new(MAX_CONCURRENT)),
        })
    }

    /// Runs one probe with retries; `(up, latency of the last attempt, why down)`.
    async fn run(&self, probe: &Probe) -> (bool, Duration, Option<String>) {
        let mut attempt = 0;
        loop {
            let started = Instant::now();
            let result = match &probe.health {
                None => self.connect(probe.addr).await,
                Some((scheme, path)) => self.get(scheme, probe.addr, path).await,
            };
            let elapsed = started.elapsed();
            match result {
                Ok(()) => return (true, elapsed, None),
                Err(why) if attempt >= self.policy.retries => return (false, elapsed, Some(why)),
                Err(_) => {
                    tokio::time::sleep(self.policy.backoff * 2u32.pow(attempt)).await;
                    attempt += 1;
                }
            }
        }
    }

    async fn connect(&self, addr: SocketAddr) -> Result<(), String> {
        match tokio::time::timeout(self.policy.timeout, tokio::net::TcpStream::connect(addr)).await
        {
            Ok(Ok(_stream)) => Ok(()),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!("no connection within {:?}", self.policy.timeout)),
        }
    }

    async fn get(&self, scheme: &str, addr: SocketAddr, path: &str) -> Result<(), String> {
        let path = if path.starts_with('/') {
            path.to_string()
        } else {
            format!("/{path}")
        };
        let url = format!("{scheme}://{addr}{path}");
        let request = self.client.get(&url).send();
        let response = match tokio::time::timeout(self.policy.timeout, request).await {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => return Err(http::error_chain(&e)),
            Err(_) => return Err(format!("no answer within {:?}", self.policy.timeout)),
        };
        let status = response.status();
        if status.is_success() || status.is_redirection() {
            Ok(())
        } else {
            Err(format!("GET {url}: HTTP {status}"))
        }
    }
}

/// The services of a device that can be probed, with the address they are probed on.
fn probes_of(device: &str, ip: IpAddr, services: &[Service]) -> Vec<Probe> {
    services
        .iter()
        .filter_map(|s| {
            let scheme = match s.protocol {
                ServiceProtocol::Udp => return None,
                ServiceProtocol::Tcp => None,
                ServiceProtocol::Http => Some("http"),
                ServiceProtocol::Https => Some("https"),
            };
            Some(Probe {
                device: device.to_string(),
                service: s.name.clone(),
                addr: SocketAddr::new(ip, s.port),
                health: scheme.zip(s.health.clone()),
            })
        })
        .collect()
}

/// Every probe of the desired state, per device, in document order.
fn all_probes(desired: &DesiredState) -> Vec<(String, Vec<Probe>)> {
    desired
        .devices
        .iter()
        .filter_map(|d| {
            let name = &d.doc.metadata.name;
            let ip = d.doc.spec.ips().next()?;
            let probes = probes_of(name, IpAddr::V4(ip), &d.doc.spec.services);
            (!probes.is_empty()).then(|| (name.clone(), probes))
        })
        .collect()
}

fn fields(services: impl IntoIterator<Item = (String, bool)>) -> Json {
    let map: Map<String, Json> = services
        .into_iter()
        .map(|(name, up)| (name, json!({ "up": up })))
        .collect();
    json!({ "services": map })
}

impl Provider for ReachabilityProvider {
    fn name(&self) -> &str {
        &self.name
    }

    fn kinds(&self) -> BTreeSet<Kind> {
        BTreeSet::from([Kind::Device])
    }

    fn expected(&self, desired: &DesiredState) -> Vec<Resource> {
        all_probes(desired)
            .into_iter()
            .map(|(device, probes)| Resource {
                kind: Kind::Device,
                name: device,
                fields: fields(probes.into_iter().map(|p| (p.service, true))).into(),
                key: None,
            })
            .collect()
    }

    fn observe<'a>(
        &'a self,
        desired: &'a DesiredState,
    ) -> BoxFuture<'a, Result<Observation, ProviderError>> {
        Box::pin(async move {
            let devices = all_probes(desired);
            let tasks = devices.iter().map(|(device, probes)| async move {
                let results = futures_join(probes.iter().map(|probe| async move {
                    // The semaphore is never closed, so acquiring only waits.
                    let _permit = self.limit.acquire().await.ok();
                    let (up, latency, why) = self.run(probe).await;
                    tracing::debug!(
                        provider = %self.name,
                        device = %probe.device,
                        service = %probe.service,
                        addr = %probe.addr,
                        up,
                        latency_ms = latency.as_secs_f64() * 1000.0,
                        reason = why.as_deref().unwrap_or(""),
                        "probe"
                    );
                    (probe.service.clone(), up)
                }))
                .await;
                Resource {
                    kind: Kind::Device,
                    name: device.clone(),
                    fields: fields(results).into(),
                    key: None,
                }
            });
            let resources = futures_join(tasks).await;
            Ok(Observation::now(&self.name, resources))
        })
    }

    fn severities(&self) -> Severities {
        &[(Kind::Device, &["services"], Severity::Medium)]
    }

    fn read_only_reason(&self) -> &str {
        "reachability is observed only; start or fix the service on the device"
    }
}

/// Runs the futures concurrently on this task and returns their outputs in order (the crate
/// has no `futures` dependency; a `JoinSet` would need `'static` borrows).
async fn futures_join<F, T>(futures: impl IntoIterator<Item = F>) -> Vec<T>
where
    F: std::future::Future<Output = T>,
{
    let mut pending: Vec<std::pin::Pin<Box<F>>> = futures.into_iter().map(Box::pin).collect();
    let mut out: Vec<Option<T>> = pending.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut done = true;
        for (i, f) in pending.iter_mut().enumerate() {
            if out[i].is_none() {
                match f.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => out[i] = Some(v),
                    std::task::Poll::Pending => done = false,
                }
            }
        }
        if done {
            std::task::Poll::Ready(())
        } else {
            std::task::Poll::Pending
        }
    })
    .await;
    out.into_iter().flatten().collect()
}
