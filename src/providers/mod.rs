//! Providers: the live systems labctl observes (and, where the policy allows, changes).
//!
//! Each provider owns one API. It says what the desired state looks like *as that API would
//! show it* ([`Provider::expected`]), reads the live state in the same shape
//! ([`Provider::observe`]), and carries out changes ([`Provider::apply`]). The diff compares the
//! two shapes field by field and never needs to know any API. A provider knows nothing of the
//! store or of MCP.

/// Factories, the settings macro and the list macro of the providers labctl.yaml declares.
#[macro_use]
mod plugin;
/// HTTP plumbing shared by the provider modules.
pub(crate) mod http;
/// Reading the secrets labctl.yaml names.
pub(crate) mod secret;
/// Reading provider JSON by its shape, refusing what is not understood.
mod shape;
pub use secret::read as read_secret;
pub use shape::ShapeError;

// The providers labctl.yaml can declare, one per API: a new one is its module and a line in
// the list below.
pub mod caddy;
#[cfg(test)]
pub mod fixture;
pub mod kea;
pub mod proxmox;
pub mod traefik;

plugins! {
    Proxmox => proxmox,
    Kea => kea,
    Traefik => traefik,
    Caddy => caddy,
    #[cfg(test)]
    Fixture => fixture,
}

// Providers labctl adds by itself: MCP servers by their registrations, probes when the host
// allows them.
pub mod mcp;
pub mod reachability;

pub use plugin::Factory;

use std::collections::BTreeSet;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use serde::Serialize;
use serde_json::value::RawValue;
use serde_json::Value as Json;

use crate::model::{DesiredState, Kind};

/// A boxed future, so providers can sit behind `dyn Provider`.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// One resource as a provider sees it: the document it corresponds to and the fields the
/// provider can observe, as a JSON object shaped like the document's `spec` (camelCase).
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct Resource {
    pub kind: Kind,
    pub name: String,
    pub fields: Fields,
    /// The live object's key in its API (a reservation's subnet and MAC, a router's
    /// qualified name, a Caddy route's `@id`), so a change to it can say what it targets.
    /// `None` for expected resources.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
}

impl Resource {
    /// A resource without a live key: an expected one, or one whose API has no key.
    pub fn new(kind: Kind, name: impl Into<String>, fields: Json) -> Self {
        Resource {
            kind,
            name: name.into(),
            fields: Fields::new(&fields),
            key: None,
        }
    }

    /// Writes the canonical text of this resource, as `w.serialize(self)` would, with its fields
    /// copied as the text they are held in rather than read into a value and printed again.
    pub fn write_canonical<W: std::io::Write>(&self, w: &mut crate::canonical::Writer<W>) {
        w.begin_object();
        w.key("fields");
        w.canonical(self.fields.text());
        if let Some(key) = &self.key {
            w.key("key");
            w.serialize(key);
        }
        w.key("kind");
        w.serialize(&self.kind);
        w.key("name");
        w.serialize(&self.name);
        w.end();
    }

    /// The same resource, with the live key it was read under.
    pub fn with_key(mut self, key: impl Into<String>) -> Self {
        self.key = Some(key.into());
        self
    }
}

/// A resource's fields, held as their canonical JSON text (keys sorted, no whitespace) rather
/// than as a `serde_json::Value`: a run holds every resource twice (expected and observed),
/// and a reservation's fields are about 100 bytes of text against over 600 as a value. Two
/// are equal exactly when their values are, so the diff compares texts and reads the values
/// only of resources that differ.
#[derive(Clone)]
pub struct Fields(Box<RawValue>);

impl Fields {
    /// The fields of `value`, a JSON object.
    pub fn new(value: &Json) -> Self {
        let text = crate::canonical::canonical_json(value);
        Fields(RawValue::from_string(text).expect("canonical JSON is JSON"))
    }

    /// The fields as a value, read from their text.
    pub fn value(&self) -> Json {
        serde_json::from_str(self.0.get()).expect("canonical JSON reads back")
    }

    /// Field `key`'s value, `None` when it is absent.
    pub fn get(&self, key: &str) -> Option<Json> {
        match self.value() {
            Json::Object(mut map) => map.remove(key),
            _ => None,
        }
    }

    /// The canonical text.
    pub fn text(&self) -> &str {
        self.0.get()
    }
}

impl From<Json> for Fields {
    fn from(value: Json) -> Self {
        Fields::new(&value)
    }
}

impl PartialEq for Fields {
    fn eq(&self, other: &Self) -> bool {
        self.text() == other.text()
    }
}

/// The same fields as `value`: compared as canonical texts.
impl PartialEq<Json> for Fields {
    fn eq(&self, value: &Json) -> bool {
        self.text() == crate::canonical::canonical_json(value)
    }
}

impl PartialEq<Fields> for Json {
    fn eq(&self, fields: &Fields) -> bool {
        fields == self
    }
}

impl std::fmt::Debug for Fields {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.text())
    }
}

impl Serialize for Fields {
    // As the value, not as raw text: a serializer other than serde_json's (a YAML document,
    // a value) would not understand serde_json's raw-value marker.
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.value().serialize(serializer)
    }
}

impl<'de> serde::Deserialize<'de> for Fields {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Json::deserialize(deserializer).map(|v| Fields::new(&v))
    }
}

/// What a provider saw, and when.
#[derive(Debug, Clone, Serialize)]
pub struct Observation {
    pub provider: String,
    /// Unix milliseconds.
    pub observed_at: i64,
    /// Every live resource of the provider's kinds. Anything expected but absent here is
    /// missing; anything here but not expected is unmanaged.
    pub resources: Vec<Resource>,
    /// What could not be read even though the provider answered — a guest whose config call
    /// failed, the tools of a server that is down: unknown, never missing or drifted.
    pub unobservable: Vec<Unreadable>,
    /// What else the provider learned about a resource (`Kind/name` → JSON), recorded with the
    /// observation but never compared: an MCP server's name, version and full tool list.
    /// Only stable facts belong here (no latencies): observations are content-addressed.
    #[serde(skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub details: std::collections::BTreeMap<String, serde_json::Value>,
    /// Resources declared somewhere labctl does not write (`Kind/name` → where: a router of
    /// Traefik's docker provider or of another file): compared and reported, but never
    /// created, changed or removed.
    #[serde(skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub declared_elsewhere: std::collections::BTreeMap<String, String>,
    /// The version of the live state this is a picture of (Kea's configuration fingerprint,
    /// Caddy's ETag, the hash of Traefik's dynamic file): `apply` refuses to change anything
    /// when the live version is no longer this one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// The machines guests run on (a hypervisor's nodes) and their capacity: what placement
    /// questions are answered from. Never compared.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub hosts: Vec<Host>,
}

/// A machine a provider runs guests on, and what it has.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Host {
    pub name: String,
    pub online: bool,
    /// CPU threads; `None` when the API did not say.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cores: Option<u64>,
    /// Memory in MiB; `None` when the API did not say.
    #[serde(rename = "memoryMiB", default, skip_serializing_if = "Option::is_none")]
    pub memory_mib: Option<u64>,
}

impl Observation {
    /// What `provider` saw just now, every resource of it readable.
    pub fn now(provider: &str, resources: Vec<Resource>) -> Self {
        Observation {
            provider: provider.to_string(),
            observed_at: crate::time::now_ms(),
            resources,
            unobservable: Vec::new(),
            details: Default::default(),
            declared_elsewhere: Default::default(),
            version: None,
            hosts: Vec::new(),
        }
    }
}

/// A resource, or one field of it, that could not be read, and why.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Unreadable {
    pub kind: Kind,
    pub name: String,
    /// `spec.expectedTools` when only that field is unknown; `None` for the whole resource.
    pub field: Option<String>,
    pub reason: String,
}

impl Unreadable {
    /// The whole resource is unknown.
    pub fn resource(kind: Kind, name: impl Into<String>, reason: impl Into<String>) -> Self {
        Unreadable {
            kind,
            name: name.into(),
            field: None,
            reason: reason.into(),
        }
    }

    /// One field (and everything below it) is unknown; the rest was read.
    pub fn field(
        kind: Kind,
        name: impl Into<String>,
        field: impl Into<String>,
        reason: impl Into<String>,
    ) -> Self {
        Unreadable {
            kind,
            name: name.into(),
            field: Some(field.into()),
            reason: reason.into(),
        }
    }
}

/// Why a provider could not observe or apply. Every variant means "nothing is known": the
/// resources of that provider become `unknown`, and nothing is applied on their behalf.
#[derive(Debug, Clone, thiserror::Error, Serialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum ProviderError {
    #[error("{provider}: cannot reach {url}: {detail}")]
    Unreachable {
        provider: String,
        url: String,
        detail: String,
        /// The transport error, for callers that walk the chain (`detail` already says it).
        #[source]
        #[serde(skip)]
        source: Option<Cause>,
    },
    #[error("{provider}: authentication failed at {url}: {detail}")]
    Authentication {
        provider: String,
        url: String,
        detail: String,
        #[source]
        #[serde(skip)]
        source: Option<Cause>,
    },
    #[error("{provider}: unexpected response from {url}: {detail}")]
    BadResponse {
        provider: String,
        url: String,
        detail: String,
        #[source]
        #[serde(skip)]
        source: Option<Cause>,
    },
    #[error("{provider}: no answer within {seconds} s")]
    Timeout { provider: String, seconds: u64 },
    #[error("{provider}: refused the change: {detail}")]
    Rejected { provider: String, detail: String },
    /// The live state is no longer the version the changes were planned against.
    #[error("{provider}: changed since it was observed: {detail}")]
    Stale { provider: String, detail: String },
    #[error("{provider}: {detail}")]
    Config {
        provider: String,
        detail: String,
        #[source]
        #[serde(skip)]
        source: Option<Cause>,
    },
    /// Not asked this run: it failed in the runs before and its backoff is not over. Says
    /// nothing new about the live system.
    #[error("{provider}: not asked this run: it failed {failures} run(s) in a row (last: {last}); asked again in {retry_in_s} s")]
    Resting {
        provider: String,
        failures: u32,
        retry_in_s: u64,
        last: String,
    },
    /// labctl itself failed (a task panicked): says nothing about the live system.
    #[error("{provider}: {detail}")]
    Internal { provider: String, detail: String },
}

/// The underlying error of a [`ProviderError`]: shared, so the error stays `Clone` (it is
/// reported for every resource of the provider).
pub type Cause = std::sync::Arc<dyn std::error::Error + Send + Sync>;

impl ProviderError {
    /// A `Config` error of `provider`, as a closure to hand to `map_err`.
    pub(crate) fn config(provider: &str) -> impl Fn(String) -> ProviderError + '_ {
        move |detail| ProviderError::Config {
            provider: provider.to_string(),
            detail,
            source: None,
        }
    }

    /// Worth retrying: the failure may pass by itself.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            ProviderError::Unreachable { .. } | ProviderError::Timeout { .. }
        )
    }
}

text_enum! {
    /// How much a deviation matters, from low to critical.
    serde Severity {
        Low = "low",
        Medium = "medium",
        High = "high",
        Critical = "critical",
    }
}

/// The severity of a drift per kind and top-level field (`spec.` omitted), as a provider says
/// for the fields it compares: addresses, identities and where traffic goes are high, sizing
/// and options medium; unlisted fields (names, descriptions, placement) are low.
pub type Severities = &'static [(Kind, &'static [&'static str], Severity)];

/// One change to make live.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "action", rename_all = "kebab-case")]
pub enum Change {
    /// Create the resource with these (expected) fields.
    Create {
        kind: Kind,
        name: String,
        fields: Json,
    },
    /// Bring the live resource to these (expected) fields.
    Update {
        kind: Kind,
        name: String,
        fields: Json,
        /// The live key of the resource, as observed ([`Resource::key`]).
        #[serde(skip_serializing_if = "Option::is_none")]
        key: Option<String>,
    },
    /// Remove the live resource.
    Delete {
        kind: Kind,
        name: String,
        /// The live key of the resource, as observed ([`Resource::key`]).
        #[serde(skip_serializing_if = "Option::is_none")]
        key: Option<String>,
    },
}

impl Change {
    pub fn kind(&self) -> Kind {
        match self {
            Change::Create { kind, .. }
            | Change::Update { kind, .. }
            | Change::Delete { kind, .. } => *kind,
        }
    }

    pub fn name(&self) -> &str {
        match self {
            Change::Create { name, .. }
            | Change::Update { name, .. }
            | Change::Delete { name, .. } => name,
        }
    }

    /// `create`, `update` or `delete`.
    pub fn action(&self) -> &'static str {
        match self {
            Change::Create { .. } => "create",
            Change::Update { .. } => "update",
            Change::Delete { .. } => "delete",
        }
    }

    /// The live key the change targets; `None` for a create (nothing live yet).
    pub fn key(&self) -> Option<&str> {
        match self {
            Change::Create { .. } => None,
            Change::Update { key, .. } | Change::Delete { key, .. } => key.as_deref(),
        }
    }
}

/// The version `base` was observed at, after checking that `base` is `provider`'s own
/// observation: changes planned against another provider's picture are refused.
pub(crate) fn planned_version<'a>(
    provider: &str,
    base: &'a Observation,
) -> Result<Option<&'a str>, ProviderError> {
    if base.provider != provider {
        return Err(ProviderError::Rejected {
            provider: provider.to_string(),
            detail: format!(
                "the changes were planned against an observation of `{}`, not of `{provider}`",
                base.provider
            ),
        });
    }
    Ok(base.version.as_deref())
}

/// What an apply did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ApplyReport {
    pub applied: Vec<Change>,
}

/// What [`Provider::observe_again`] answered with.
#[derive(Debug, Clone)]
pub enum Reobserved {
    /// Nothing live moved: the observation handed in, its resources as they were, stamped
    /// now. The caller may take what it computed of them before (their address) as still
    /// true.
    Unchanged(Observation),
    /// Read afresh.
    Fresh(Observation),
}

impl Reobserved {
    /// The observation, however it was made.
    pub fn into_inner(self) -> Observation {
        match self {
            Reobserved::Unchanged(o) | Reobserved::Fresh(o) => o,
        }
    }
}

/// A live system behind one API.
pub trait Provider: Send + Sync {
    /// The provider's name from labctl.yaml.
    fn name(&self) -> &str;

    /// The kinds this provider observes.
    fn kinds(&self) -> BTreeSet<Kind>;

    /// The desired state as this provider would show it live: only the fields it can observe,
    /// in exactly the shape [`Provider::observe`] returns.
    fn expected(&self, desired: &DesiredState) -> Vec<Resource>;

    /// Reads the live state. Matches live objects to desired names by the API's natural key
    /// (a reservation's MAC, a route's host and path); live objects without a desired
    /// counterpart get a name derived from the live object.
    fn observe<'a>(
        &'a self,
        desired: &'a DesiredState,
    ) -> BoxFuture<'a, Result<Observation, ProviderError>>;

    /// [`Provider::observe`], handed what this provider observed last of the same desired
    /// state (the same commit, so the same settings): a provider that can tell cheaply and
    /// for certain that nothing live moved (Kea: the very text of its configuration) answers
    /// with `previous`, observed now, instead of reading everything again. The caller keeps
    /// it between runs; the provider still keeps nothing. By default it observes afresh,
    /// `previous` dropped first.
    fn observe_again<'a>(
        &'a self,
        desired: &'a DesiredState,
        previous: Observation,
    ) -> BoxFuture<'a, Result<Reobserved, ProviderError>> {
        drop(previous);
        Box::pin(async move { self.observe(desired).await.map(Reobserved::Fresh) })
    }

    /// Carries out `changes`, planned against `base` (this provider's observation), atomically
    /// where the API allows it: all or none. Needs nothing from an earlier call: the version
    /// is `base`'s and each change names its live key. Refuses with
    /// [`ProviderError::Stale`] when the live state is no longer `base`'s version.
    ///
    /// An observe-only provider keeps this default: no changes is fine, any change is refused
    /// with [`Provider::read_only_reason`].
    fn apply<'a>(
        &'a self,
        base: &'a Observation,
        changes: &'a [Change],
    ) -> BoxFuture<'a, Result<ApplyReport, ProviderError>> {
        let _ = base;
        let result = if changes.is_empty() {
            Ok(ApplyReport::default())
        } else {
            Err(ProviderError::Rejected {
                provider: self.name().to_string(),
                detail: self.read_only_reason().to_string(),
            })
        };
        Box::pin(std::future::ready(result))
    }

    /// Whether [`Provider::apply`] is implemented for `kind`.
    fn can_apply(&self, kind: Kind) -> bool {
        let _ = kind;
        false
    }

    /// How much a drift of each field it compares matters.
    fn severities(&self) -> Severities;

    /// How long the live system may take to show what [`Provider::apply`] wrote (a server
    /// that reloads its configuration on its own schedule): after an apply, observing again is
    /// retried until the changes show or this has passed. Zero: they show at once.
    fn settle(&self) -> Duration {
        Duration::ZERO
    }

    /// Why the default [`Provider::apply`] refuses changes, and where to make them instead.
    fn read_only_reason(&self) -> &str {
        "this provider observes only; make the change where the resource lives"
    }
}

/// Limits for talking to a provider: a per-call timeout (connecting, the answer's headers
/// and body, and parsing it), bounded retries with backoff, and the largest answer read.
#[derive(Debug, Clone, Copy)]
pub struct CallPolicy {
    pub timeout: Duration,
    pub retries: u32,
    pub backoff: Duration,
    /// Largest answer body read, in bytes: a larger one is refused, unread.
    pub max_body_bytes: u64,
}

impl Default for CallPolicy {
    fn default() -> Self {
        CallPolicy {
            timeout: Duration::from_secs(10),
            retries: 2,
            backoff: Duration::from_millis(200),
            max_body_bytes: http::DEFAULT_MAX_BODY_BYTES,
        }
    }
}

impl CallPolicy {
    /// The default policy with `timeoutSeconds` from labctl.yaml (at least 1; default 10) as
    /// the timeout.
    pub fn with_timeout_seconds(timeout_seconds: Option<u32>) -> Self {
        CallPolicy {
            timeout: Duration::from_secs(timeout_seconds.unwrap_or(10).max(1).into()),
            ..CallPolicy::default()
        }
    }

    /// The same policy with `maxBodyBytes` from labctl.yaml (default 64 MiB) as the limit.
    pub fn with_max_body_bytes(self, max_body_bytes: Option<u64>) -> Self {
        CallPolicy {
            max_body_bytes: max_body_bytes.unwrap_or(http::DEFAULT_MAX_BODY_BYTES),
            ..self
        }
    }

    /// Runs `call` with the timeout, retrying transient failures with exponential backoff.
    pub async fn run<T, F, Fut>(&self, provider: &str, mut call: F) -> Result<T, ProviderError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, ProviderError>>,
    {
        let mut attempt = 0;
        loop {
            let result = match tokio::time::timeout(self.timeout, call()).await {
                Ok(r) => r,
                Err(_) => Err(http::timeout_error(provider, self.timeout)),
            };
            match result {
                Err(e) if e.is_transient() && attempt < self.retries => {
                    tokio::time::sleep(self.backoff * 2u32.pow(attempt)).await;
                    attempt += 1;
                }
                other => return other,
            }
        }
    }
}

/// A name usable as `metadata.name` derived from a live identifier (`Grafana.Lab` →
/// `grafana-lab`), for unmanaged resources.
pub fn derive_name(raw: &str) -> String {
    let mut out = String::new();
    for c in raw.chars() {
        let c = c.to_ascii_lowercase();
        if c.is_ascii_alphanumeric() {
            out.push(c);
        } else if !out.ends_with('-') && !out.is_empty() {
            out.push('-');
        }
    }
    let trimmed = out.trim_end_matches('-');
    let mut name: String = trimmed.chars().take(63).collect();
    while name.ends_with('-') {
        name.pop();
    }
    if name.is_empty() {
        "unnamed".into()
    } else {
        name
    }
}

/// `base`, or `base-2`, `base-3`, … : the first not in `taken`, at most 63 characters.
pub(crate) fn unique_name<S: std::borrow::Borrow<str> + Ord>(
    base: &str,
    taken: &BTreeSet<S>,
) -> String {
    if !taken.contains(base) {
        return base.to_string();
    }
    (2..)
        .map(|n| {
            let suffix = format!("-{n}");
            let stem: String = base.chars().take(63 - suffix.len()).collect();
            format!("{}{suffix}", stem.trim_end_matches('-'))
        })
        .find(|candidate| !taken.contains(candidate.as_str()))
        .expect("an unbounded range always yields a free name")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    #[test]
    fn fields_compare_and_print_as_their_values() {
        let a = Fields::new(
            &serde_json::json!({"mac": "bc:24:11:00:00:01", "ip": "10.0.1.9", "n": 1.5}),
        );
        let b: Fields =
            serde_json::from_str(r#"{ "n": 1.5, "ip": "10.0.1.9", "mac": "bc:24:11:00:00:01" }"#)
                .unwrap();
        assert_eq!(a, b);
        assert_eq!(
            a.text(),
            r#"{"ip":"10.0.1.9","mac":"bc:24:11:00:00:01","n":1.5}"#
        );
        assert_eq!(
            a,
            serde_json::json!({"n": 1.5, "ip": "10.0.1.9", "mac": "bc:24:11:00:00:01"})
        );
        assert_ne!(a, Fields::new(&serde_json::json!({"ip": "10.0.1.9"})));
        assert_eq!(a.get("n"), Some(serde_json::json!(1.5)));
        assert_eq!(a.get("hostname"), None);
        assert_eq!(serde_json::to_value(&a).unwrap(), a.value());

        // Written straight from the text, a resource reads as it would serialised.
        let plain = Resource::new(Kind::DhcpReservation, "nas \"1\"", a.value());
        for r in [
            plain.clone(),
            plain.with_key("10.0.1.0/24 hw-address bc:24:11:00:00:01"),
        ] {
            let mut w = crate::canonical::Writer::new();
            r.write_canonical(&mut w);
            let by_value = crate::canonical::canonical_json(&serde_json::to_value(&r).unwrap());
            assert_eq!(w.finish(), by_value);
        }
    }

    #[test]
    fn derived_names_are_valid_document_names() {
        assert_eq!(derive_name("Grafana.Lab.example"), "grafana-lab-example");
        assert_eq!(derive_name("--x__y--"), "x-y");
        assert_eq!(derive_name("???"), "unnamed");
        assert_eq!(derive_name(&"a".repeat(100)).len(), 63);
    }

    #[tokio::test]
    async fn transient_failures_are_retried_then_reported() {
        let calls = AtomicU32::new(0);
        let policy = CallPolicy {
            timeout: Duration::from_secs(1),
            retries: 2,
            backoff: Duration::from_millis(1),
            ..CallPolicy::default()
        };
        let result: Result<(), _> = policy
            .run("kea", || {
                calls.fetch_add(1, Ordering::SeqCst);
                async {
                    Err(ProviderError::Unreachable {
                        provider: "kea".into(),
                        url: "http://127.0.0.1:1".into(),
                        detail: "refused".into(),
                        source: None,
                    })
                }
            })
            .await;
        assert!(matches!(result, Err(ProviderError::Unreachable { .. })));
        assert_eq!(calls.load(Ordering::SeqCst), 3);
        // A non-transient failure is not retried.
        let calls = AtomicU32::new(0);
        let _: Result<(), _> = policy
            .run("kea", || {
                calls.fetch_add(1, Ordering::SeqCst);
                async {
                    Err(ProviderError::Rejected {
                        provider: "kea".into(),
                        detail: "bad".into(),
                    })
                }
            })
            .await;
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_transport_error_keeps_its_cause_but_not_in_its_json() {
        // Nothing listens on port 1 of loopback: the connection is refused.
        let refused = reqwest::Client::new()
            .get("http://127.0.0.1:1/")
            .send()
            .await
            .unwrap_err();
        let e = http::transport_error(
            "kea",
            "http://127.0.0.1:1/",
            Duration::from_secs(1),
            refused,
            http::Classify::default(),
        );
        assert!(matches!(e, ProviderError::Unreachable { .. }), "{e:?}");
        let cause = std::error::Error::source(&e).expect("the reqwest error is kept");
        assert!(
            cause.to_string().contains("error sending request"),
            "{cause}"
        );
        assert!(cause.source().is_some(), "and its own causes");
        let json = serde_json::to_value(&e).unwrap();
        let keys: Vec<&String> = json.as_object().unwrap().keys().collect();
        assert_eq!(keys, ["detail", "provider", "type", "url"]);
        assert!(e
            .to_string()
            .starts_with("kea: cannot reach http://127.0.0.1:1/: "));
    }

    #[test]
    fn an_excerpt_looks_only_at_the_start_of_a_body() {
        let text = http::excerpt_bytes(&[b'x'; 5 << 20]);
        assert!(text.ends_with('…') && text.chars().count() == 201, "{text}");
        assert_eq!(http::excerpt_bytes(b" [1] "), "[1]");
    }

    #[tokio::test]
    async fn a_slow_call_times_out() {
        let policy = CallPolicy {
            timeout: Duration::from_millis(20),
            retries: 0,
            backoff: Duration::from_millis(1),
            ..CallPolicy::default()
        };
        let result: Result<(), _> = policy
            .run("pve", || async {
                tokio::time::sleep(Duration::from_secs(5)).await;
                Ok(())
            })
            .await;
        assert!(matches!(result, Err(ProviderError::Timeout { .. })));
    }
}
