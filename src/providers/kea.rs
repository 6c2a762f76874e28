//! Kea DHCPv4 through its Control Agent: host reservations (`DhcpReservation`).
//!
//! Kea 2.2 as packaged by Debian has no `host_cmds` hook, so reservations are changed the only
//! way the stock server allows: `config-get`, edit the reservations in that JSON, `config-test`,
//! `config-set` (and `config-write` to persist). Everything else of Kea's configuration is sent
//! back exactly as Kea returned it. Kea 2.2 has no configuration hash either, so the provider
//! fingerprints what it observed and refuses to apply over a configuration that changed since.

use std::borrow::Cow;
use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use serde::de::{Deserialize, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;
use serde_json::{json, Map, Value as Json};

use super::http::{self, excerpt_bytes, BasicAuth, BodyLimit, Classify, Pinning, Reply};
use super::shape::{At, Name, RawAt, ShapeError};
use super::{
    derive_name, unique_name, ApplyReport, BoxFuture, CallPolicy, Change, Factory, Fields,
    Observation, Provider, ProviderError, Reobserved, Resource, Severities, Severity,
};
use crate::model::{DesiredState, Ipv4Cidr, Kind, MacAddress};

/// Kea's result codes (the `result` of each element of an answer).
const RESULT_OK: i64 = 0;

/// The answer the reservations are read from, as shape errors name it.
const CONFIG_GET: &str = "Kea config-get";

/// Reservation keys that hold a host identifier, in the order Kea documents them, with the
/// field name labctl shows for each. Only `hw-address` corresponds to a document field (`mac`);
/// the others appear on unmanaged reservations so they are still recognisable.
const IDENTIFIERS: [(&str, &str); 5] = [
    ("hw-address", "mac"),
    ("client-id", "clientId"),
    ("duid", "duid"),
    ("circuit-id", "circuitId"),
    ("flex-id", "flexId"),
];

settings! {
    /// A Kea DHCPv4 server, through its Control Agent (`url`); `token` is `USER:PASSWORD` for
    /// the agent's HTTP Basic authentication, when it asks for one.
    pub struct Settings {
        /// Persist applied changes with `config-write`.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        pub write_config: bool,
    }
}

/// Builds [`KeaProvider`]s.
pub struct Plugin;

impl Factory for Plugin {
    type Settings = Settings;

    const KINDS: &'static [Kind] = &[Kind::DhcpReservation];

    const SEVERITIES: Severities = &[
        (
            Kind::DhcpReservation,
            &["ip", "mac", "subnet"],
            Severity::High,
        ),
        (Kind::DhcpReservation, &["options"], Severity::Medium),
    ];

    fn expected(desired: &DesiredState) -> Vec<Resource> {
        desired
            .reservations
            .iter()
            .map(|r| {
                let spec = &r.doc.spec;
                let mut fields = Map::new();
                fields.insert("subnet".into(), json!(spec.subnet.to_string()));
                fields.insert("mac".into(), json!(spec.mac.to_string()));
                fields.insert("ip".into(), json!(spec.ip.to_string()));
                fields.insert("hostname".into(), json!(spec.hostname));
                if !spec.options.is_empty() {
                    let options: Vec<Json> = spec
                        .options
                        .iter()
                        .map(|o| json!({ "name": o.name, "data": o.data }))
                        .collect();
                    fields.insert("options".into(), Json::Array(options));
                }
                Resource {
                    kind: Kind::DhcpReservation,
                    name: r.doc.metadata.name.clone(),
                    fields: Json::Object(fields).into(),
                    key: None,
                }
            })
            .collect()
    }

    fn build(settings: &Settings) -> Result<Arc<dyn Provider>, ProviderError> {
        Ok(Arc::new(KeaProvider::new(settings)?))
    }
}

/// The Kea provider: one Control Agent, one `reqwest::Client`.
pub struct KeaProvider {
    name: String,
    url: String,
    client: reqwest::Client,
    policy: CallPolicy,
    write_config: bool,
    /// `USER:PASSWORD` for the agent's HTTP Basic authentication, when configured.
    basic_auth: Option<BasicAuth>,
}

/// A reservation's natural key in Kea: its subnet and host identifier.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct HostKey {
    subnet: Subnet,
    id_type: &'static str,
    id_value: String,
    /// The `hw-address` as read, when it is one and parses: kept so the key is not parsed
    /// twice per reservation on every run.
    mac: Option<MacAddress>,
}

/// A subnet as labctl prints it (`10.0.1.0/24`; anything unparsable as Kea wrote it), and
/// typed when it parses.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Subnet {
    text: String,
    cidr: Option<Ipv4Cidr>,
}

impl Subnet {
    fn parse(raw: &str) -> Subnet {
        let raw = raw.trim();
        match raw.parse::<Ipv4Cidr>() {
            Ok(cidr) => Subnet {
                text: cidr.to_string(),
                cidr: Some(cidr),
            },
            Err(_) => Subnet {
                text: raw.to_string(),
                cidr: None,
            },
        }
    }
}

impl HostKey {
    /// The live key of [`Resource::key`]: `SUBNET ID-TYPE VALUE`, e.g.
    /// `10.0.1.0/24 hw-address bc:24:11:00:00:01` (neither a subnet nor a Kea identifier
    /// type has a space; the value comes last, so it may).
    fn to_live_key(&self) -> String {
        [self.subnet.text.as_str(), self.id_type, &self.id_value].join(" ")
    }

    /// The subnet and MAC a desired reservation is keyed by; `None` for a key by another
    /// identifier, or one that names no valid subnet (no document could claim it).
    fn typed(&self) -> Option<(Ipv4Cidr, MacAddress)> {
        Some((self.subnet.cidr?, self.mac?))
    }

    fn from_live_key(raw: &str) -> Option<HostKey> {
        let mut parts = raw.splitn(3, ' ');
        let (subnet, id_type, id_value) = (parts.next()?, parts.next()?, parts.next()?);
        let id_type = IDENTIFIERS.iter().find(|(t, _)| *t == id_type)?.0;
        Some(HostKey::new(&Subnet::parse(subnet), id_type, id_value))
    }
}

impl KeaProvider {
    pub fn new(cfg: &Settings) -> Result<Self, ProviderError> {
        let config_err = ProviderError::config(&cfg.name);
        let client = http::build_client(
            reqwest::Client::builder(),
            cfg.tls.as_ref(),
            Pinning::Refused("Kea"),
            &config_err,
        )?;
        let basic_auth = BasicAuth::from_token(cfg.token.as_ref(), "Kea", &config_err)?;
        let policy = CallPolicy::with_timeout_seconds(cfg.timeout_seconds)
            .with_max_body_bytes(cfg.max_body_bytes);
        Ok(KeaProvider {
            name: cfg.name.clone(),
            url: cfg.url.clone(),
            client,
            policy,
            write_config: cfg.write_config,
            basic_auth,
        })
    }

    /// Replaces the call policy (timeout, retries, backoff).
    pub fn with_policy(mut self, policy: CallPolicy) -> Self {
        self.policy = policy;
        self
    }

    fn rejected(&self, detail: impl Into<String>) -> ProviderError {
        ProviderError::Rejected {
            provider: self.name.clone(),
            detail: detail.into(),
        }
    }

    /// A configuration whose reservations labctl cannot fully read: nothing is known of them,
    /// and nothing may be rebuilt from it.
    fn shape_error(&self, e: ShapeError) -> ProviderError {
        e.into_provider_error(&self.name, &self.url)
    }

    fn bad_response(&self, detail: impl Into<String>) -> ProviderError {
        ProviderError::BadResponse {
            provider: self.name.clone(),
            url: self.url.clone(),
            detail: detail.into(),
            source: None,
        }
    }

    /// Sends one command to the dhcp4 service, with timeout and retries, and returns Kea's
    /// answer for it (`result`, `text`, `arguments`) whatever its result code.
    async fn command(
        &self,
        command: &str,
        arguments: Option<&Json>,
    ) -> Result<Answer, ProviderError> {
        let mut body = json!({ "command": command, "service": ["dhcp4"] });
        if let Some(arguments) = arguments {
            body["arguments"] = arguments.clone();
        }
        self.policy
            .run(&self.name, || self.post_once(command, &body))
            .await
    }

    async fn post_once(&self, command: &str, body: &Json) -> Result<Answer, ProviderError> {
        let request = self.client.post(&self.url).json(body);
        let request = BasicAuth::sign(self.basic_auth.as_ref(), request);
        let limit = BodyLimit {
            provider: &self.name,
            url: &self.url,
            max_bytes: self.policy.max_body_bytes,
        };
        let Reply {
            status,
            body: bytes,
            ..
        } = http::exchange(request, limit, |e| self.transport_error(e)).await?;
        BasicAuth::check(&self.name, &self.url, status, "the agent's")?;
        if !status.is_success() {
            return Err(self.bad_response(format!(
                "{command}: HTTP {status}: {}",
                excerpt_bytes(&bytes)
            )));
        }
        // Read where it lies: config-get's arguments are the whole configuration, 20 MB at
        // 100,000 reservations, several times that as a `Value`; each copy of its text was
        // one more of the daemon's peak.
        let name = format!("Kea {command}");
        let (body, read) = http::read_text(bytes, move |text| read_answer(&name, text))
            .await
            .map_err(|e| self.bad_response(format!("{command}: the answer is not JSON: {e}")))?;
        let (result, text, dhcp4) = read.map_err(|problem| match problem {
            Unread::Bad(detail) => self.bad_response(format!("{command}: {detail}")),
            Unread::Shape(e) => self.shape_error(e),
        })?;
        Ok(Answer {
            result,
            text,
            dhcp4: dhcp4.map(|at| Dhcp4Text { body, at }),
        })
    }

    fn transport_error(&self, e: reqwest::Error) -> ProviderError {
        let classify = Classify {
            body_is_bad_response: true,
            ..Classify::default()
        };
        http::transport_error(&self.name, &self.url, self.policy.timeout, e, classify)
    }

    /// `config-get`: the running `Dhcp4` object, as the text Kea sent.
    async fn config_get(&self) -> Result<Dhcp4Text, ProviderError> {
        let answer = self.command("config-get", None).await?;
        if answer.result != RESULT_OK {
            return Err(self.bad_response(format!(
                "config-get answered result {}: {}",
                answer.result, answer.text
            )));
        }
        answer
            .dhcp4
            .ok_or_else(|| self.bad_response("config-get returned no `Dhcp4` object"))
    }

    async fn observe_inner(
        &self,
        desired: &DesiredState,
        previous: Option<Observation>,
    ) -> Result<Reobserved, ProviderError> {
        let dhcp4 = self.config_get().await?;
        let fingerprint = fingerprint(dhcp4.get());
        // The same text read against the same desired state reads the same: at 100k
        // reservations, reading it again was a fifth of an unchanged run's CPU. One of
        // another configuration is dropped before this one is read.
        if let Some(previous) = previous.filter(|p| p.version.as_ref() == Some(&fingerprint)) {
            return Ok(Reobserved::Unchanged(Observation {
                observed_at: crate::time::now_ms(),
                ..previous
            }));
        }

        // Desired reservations by natural key, and every desired name: a derived name must
        // never take a desired one, or an unmanaged host would be diffed as that document.
        // Keyed by the typed subnet and MAC and borrowing the names: as texts, 100,000
        // reservations made these 27 MB of a run's peak.
        let mut wanted: HashMap<(Ipv4Cidr, MacAddress), &str> =
            HashMap::with_capacity(desired.reservations.len());
        let mut taken: BTreeSet<Cow<'_, str>> = BTreeSet::new();
        for r in &desired.reservations {
            let name = r.doc.metadata.name.as_str();
            wanted.insert((r.doc.spec.subnet, r.doc.spec.mac), name);
            taken.insert(Cow::Borrowed(name));
        }

        let live = live_reservations(dhcp4.get()).map_err(|e| self.shape_error(e))?;
        drop(dhcp4);
        // Built in one list, the unmanaged ones named after: two lists on the way (named,
        // unnamed) held about 14 MB more at 100k, by their sizes.
        let mut resources: Vec<Resource> = Vec::with_capacity(live.len());
        let mut unnamed: Vec<usize> = Vec::new();
        for (key, fields) in live {
            let name = match key.typed().and_then(|typed| wanted.get(&typed)) {
                Some(name) => name.to_string(),
                None => {
                    unnamed.push(resources.len());
                    // A host's short name is what a person would call the document.
                    let hostname = fields.get("hostname");
                    let raw = hostname
                        .as_ref()
                        .and_then(Json::as_str)
                        .map(|h| h.split('.').next().unwrap_or(h))
                        .unwrap_or(&key.id_value);
                    derive_name(raw)
                }
            };
            resources.push(Resource {
                kind: Kind::DhcpReservation,
                name,
                fields,
                key: Some(key.to_live_key()),
            });
        }
        for i in unnamed {
            let name = unique_name(&resources[i].name, &taken);
            taken.insert(Cow::Owned(name.clone()));
            resources[i].name = name;
        }
        resources.sort_by(|a, b| a.name.cmp(&b.name));
        let mut observation = Observation::now(&self.name, resources);
        // The fingerprint (SHA-256 of the text Kea sent for `Dhcp4`) is what apply checks.
        observation.version = Some(fingerprint);
        Ok(Reobserved::Fresh(observation))
    }

    async fn apply_inner(
        &self,
        base: &Observation,
        changes: &[Change],
    ) -> Result<ApplyReport, ProviderError> {
        if let Some(other) = changes.iter().find(|c| c.kind() != Kind::DhcpReservation) {
            return Err(self.rejected(format!(
                "Kea manages DhcpReservation only, not {}/{}",
                other.kind(),
                other.name()
            )));
        }
        if changes.is_empty() {
            return Ok(ApplyReport::default());
        }
        let planned = super::planned_version(&self.name, base)?.ok_or_else(|| {
            self.rejected("the observation the changes were planned against has no configuration fingerprint; observe, then apply")
        })?;
        // Re-read just before writing: config-set replaces the whole configuration, so one
        // planned against an older one would undo whatever changed since.
        let raw = self.config_get().await?;
        let live = fingerprint(raw.get());
        if live != planned {
            return Err(ProviderError::Stale {
                provider: self.name.clone(),
                detail: format!(
                    "Kea's configuration fingerprint is {live}, the changes were planned \
                     against {planned}; run again"
                ),
            });
        }
        // config-set sends back the whole configuration: one with reservations of a shape
        // labctl does not understand would be rebuilt from a part it could not read.
        live_reservations(raw.get()).map_err(|e| self.shape_error(e))?;
        let mut dhcp4: Json = serde_json::from_str(raw.get())
            .map_err(|e| self.bad_response(format!("config-get: {e}")))?;
        drop(raw);
        for change in changes {
            edit(&mut dhcp4, change).map_err(|d| self.rejected(d))?;
        }

        let arguments = json!({ "Dhcp4": dhcp4 });
        let test = self.command("config-test", Some(&arguments)).await?;
        if test.result != RESULT_OK {
            return Err(self.rejected(format!("config-test: {}", test.text)));
        }
        let set = self.command("config-set", Some(&arguments)).await?;
        if set.result != RESULT_OK {
            return Err(self.rejected(format!("config-set: {}", set.text)));
        }
        if self.write_config {
            let write = self.command("config-write", None).await?;
            if write.result != RESULT_OK {
                return Err(self.bad_response(format!(
                    "the changes are live but config-write failed, so Kea will lose them on \
                     restart: {}",
                    write.text
                )));
            }
        }
        Ok(ApplyReport {
            applied: changes.to_vec(),
        })
    }
}

impl Provider for KeaProvider {
    fn name(&self) -> &str {
        &self.name
    }

    from_factory!(Plugin);

    fn observe<'a>(
        &'a self,
        desired: &'a DesiredState,
    ) -> BoxFuture<'a, Result<Observation, ProviderError>> {
        Box::pin(async move {
            let observed = self.observe_inner(desired, None).await?;
            Ok(observed.into_inner())
        })
    }

    fn observe_again<'a>(
        &'a self,
        desired: &'a DesiredState,
        previous: Observation,
    ) -> BoxFuture<'a, Result<Reobserved, ProviderError>> {
        Box::pin(self.observe_inner(desired, Some(previous)))
    }

    fn apply<'a>(
        &'a self,
        base: &'a Observation,
        changes: &'a [Change],
    ) -> BoxFuture<'a, Result<ApplyReport, ProviderError>> {
        Box::pin(self.apply_inner(base, changes))
    }

    fn can_apply(&self, kind: Kind) -> bool {
        kind == Kind::DhcpReservation
    }
}

/// One element of a Control Agent answer.
struct Answer {
    result: i64,
    text: String,
    /// `arguments.Dhcp4`, config-get's answer. Only `Dhcp4` is kept: newer Kea versions add
    /// a `hash` beside it, which is output only.
    dhcp4: Option<Dhcp4Text>,
}

/// The text of a `Dhcp4` object, where it lies in the body Kea sent.
struct Dhcp4Text {
    body: String,
    at: std::ops::Range<usize>,
}

impl Dhcp4Text {
    fn get(&self) -> &str {
        &self.body[self.at.clone()]
    }
}

/// Why an answer could not be read.
enum Unread {
    Bad(String),
    Shape(ShapeError),
}

/// The first element of the agent's answer `text`, named `answer` in errors: its `result`, its
/// `text`, and where `arguments.Dhcp4` is in `text` when that is an object.
fn read_answer(
    answer: &str,
    text: &str,
) -> Result<(i64, String, Option<std::ops::Range<usize>>), Unread> {
    let not_json = |e: serde_json::Error| Unread::Bad(format!("the answer is not JSON: {e}"));
    // The agent answers with one element per service; a non-array means it refused the
    // request itself (e.g. `{"result": 400, "text": "Bad Request"}`).
    let not_answers = || {
        let got = excerpt_bytes(text.as_bytes());
        Unread::Bad(format!("expected a JSON array of answers, got {got}"))
    };
    let first = match serde_json::from_str(text).map_err(not_json)? {
        Element::Array(Answers {
            first: Some(Element::Object(first)),
        }) => first,
        _ => return Err(not_answers()),
    };
    // Each small: read through `At`, whose errors name the path.
    let result = first
        .result
        .and_then(|r| {
            RawAt::root(answer, "[0].result", r.get())
                .read(|at| at.i64())
                .ok()
        })
        .ok_or_else(|| Unread::Bad("the answer has no integer `result`".into()))?;
    let said = first
        .text
        .map(|t| RawAt::root(answer, "[0].text", t.get()).read(|at| at.str().map(str::to_string)))
        .transpose()
        .map_err(Unread::Shape)?
        .unwrap_or_default();
    let dhcp4 = match first.arguments {
        Some(Element::Object(Arguments { dhcp4: Some(dhcp4) }))
            if RawAt::root(answer, "", dhcp4.get()).is_object() =>
        {
            // Borrowed, so a slice of `text`: its place is where it starts.
            let raw = dhcp4.get();
            let start = (raw.as_ptr() as usize).wrapping_sub(text.as_ptr() as usize);
            let at = start..start.saturating_add(raw.len());
            match text.get(at.clone()) {
                Some(found) if std::ptr::eq(found, raw) => Some(at),
                _ => {
                    return Err(Unread::Bad(
                        "`arguments.Dhcp4` was not read in place".into(),
                    ))
                }
            }
        }
        _ => None,
    };
    Ok((result, said, dhcp4))
}

/// An agent's answer read in one pass that keeps only what is read of it, borrowed from the
/// text: the first element's `result`, `text` and `arguments.Dhcp4`. Everything else is
/// skipped as it is read, so an answer of millions of elements or members costs a pass over
/// it, not memory.
#[derive(Default)]
struct Answers<'a> {
    first: Option<Element<FirstAnswer<'a>>>,
}

#[derive(Default)]
struct FirstAnswer<'a> {
    result: Option<&'a RawValue>,
    text: Option<&'a RawValue>,
    arguments: Option<Element<Arguments<'a>>>,
}

#[derive(Default)]
struct Arguments<'a> {
    dhcp4: Option<&'a RawValue>,
}

/// A value read in one pass as `T` reads an object or an array of it; any other, skipped.
enum Element<T> {
    Object(T),
    Array(T),
    Other,
}

/// What a one-pass read keeps of an object's members or an array's elements; by default,
/// nothing.
trait OnePass<'de>: Default {
    fn member<A: MapAccess<'de>>(&mut self, key: &str, map: &mut A) -> Result<(), A::Error> {
        let _ = key;
        map.next_value::<IgnoredAny>().map(drop)
    }

    fn elements<A: SeqAccess<'de>>(&mut self, seq: &mut A) -> Result<(), A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(())
    }
}

impl<'de> OnePass<'de> for Answers<'de> {
    fn elements<A: SeqAccess<'de>>(&mut self, seq: &mut A) -> Result<(), A::Error> {
        self.first = seq.next_element()?;
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(())
    }
}

impl<'de> OnePass<'de> for FirstAnswer<'de> {
    fn member<A: MapAccess<'de>>(&mut self, key: &str, map: &mut A) -> Result<(), A::Error> {
        // The last of a key given twice wins, as when read into a map.
        match key {
            "result" => self.result = Some(map.next_value()?),
            "text" => self.text = Some(map.next_value()?),
            "arguments" => self.arguments = Some(map.next_value()?),
            _ => drop(map.next_value::<IgnoredAny>()?),
        }
        Ok(())
    }
}

impl<'de> OnePass<'de> for Arguments<'de> {
    fn member<A: MapAccess<'de>>(&mut self, key: &str, map: &mut A) -> Result<(), A::Error> {
        match key {
            "Dhcp4" => self.dhcp4 = Some(map.next_value()?),
            _ => drop(map.next_value::<IgnoredAny>()?),
        }
        Ok(())
    }
}

/// The member names a [`OnePass`] of an answer reads; any other is read as `""`.
const READ: &[&str] = &["result", "text", "arguments", "Dhcp4"];

impl<'de, T: OnePass<'de>> Deserialize<'de> for Element<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visit<T>(std::marker::PhantomData<T>);
        impl<'de, T: OnePass<'de>> Visitor<'de> for Visit<T> {
            type Value = Element<T>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Element<T>, A::Error> {
                let mut out = T::default();
                while let Some(key) = map.next_key_seed(Name(READ))? {
                    out.member(key.unwrap_or(""), &mut map)?;
                }
                Ok(Element::Object(out))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Element<T>, A::Error> {
                let mut out = T::default();
                out.elements(&mut seq)?;
                Ok(Element::Array(out))
            }
            fn visit_bool<E>(self, _: bool) -> Result<Element<T>, E> {
                Ok(Element::Other)
            }
            fn visit_i64<E>(self, _: i64) -> Result<Element<T>, E> {
                Ok(Element::Other)
            }
            fn visit_u64<E>(self, _: u64) -> Result<Element<T>, E> {
                Ok(Element::Other)
            }
            fn visit_f64<E>(self, _: f64) -> Result<Element<T>, E> {
                Ok(Element::Other)
            }
            fn visit_str<E>(self, _: &str) -> Result<Element<T>, E> {
                Ok(Element::Other)
            }
            fn visit_unit<E>(self) -> Result<Element<T>, E> {
                Ok(Element::Other)
            }
        }
        d.deserialize_any(Visit(std::marker::PhantomData))
    }
}

/// Every reservation of a `Dhcp4` config (top-level subnets, then those inside shared
/// networks) with its natural key, in the shape of [`Provider::expected`]. Any part of that
/// path of another shape than Kea's is an error, never skipped: a skipped subnet's
/// reservations would be missing, and config-set would rebuild them. Read from the text, one
/// reservation a `Value` at a time.
fn live_reservations(dhcp4: &str) -> Result<Vec<(HostKey, Fields)>, ShapeError> {
    let root = RawAt::root(CONFIG_GET, "Dhcp4", dhcp4).object(&["subnet4", "shared-networks"])?;
    let mut out = Vec::new();
    let mut subnet = |subnet: RawAt| {
        let subnet = subnet.object(&["subnet", "reservations"])?;
        let prefix = subnet
            .req("subnet")?
            .read(|at| at.str().map(Subnet::parse))?;
        subnet.each_in("reservations", |live| {
            out.push(live.read(|at| normalise(&prefix, at))?);
            Ok(())
        })
    };
    root.each_in("subnet4", &mut subnet)?;
    root.each_in("shared-networks", |net| {
        net.object(&["subnet4"])?.each_in("subnet4", &mut subnet)
    })?;
    Ok(out)
}

fn subnets_mut(dhcp4: &mut Json) -> Vec<&mut Json> {
    let mut out: Vec<&mut Json> = Vec::new();
    let Some(obj) = dhcp4.as_object_mut() else {
        return out;
    };
    for (key, value) in obj.iter_mut() {
        match key.as_str() {
            "subnet4" => out.extend(value.as_array_mut().into_iter().flatten()),
            "shared-networks" => {
                for net in value.as_array_mut().into_iter().flatten() {
                    if let Some(list) = net.get_mut("subnet4").and_then(Json::as_array_mut) {
                        out.extend(list.iter_mut());
                    }
                }
            }
            _ => {}
        }
    }
    out
}

/// `10.0.1.0/24` as labctl prints it; anything unparsable is kept as Kea wrote it.
fn canonical_subnet(raw: &str) -> String {
    Subnet::parse(raw).text
}

fn subnet_of(subnet: &Json) -> Option<String> {
    subnet
        .get("subnet")
        .and_then(Json::as_str)
        .map(canonical_subnet)
}

impl HostKey {
    /// The key of a reservation in `subnet` whose identifier `id_type` is `raw`; a MAC
    /// address as labctl prints it.
    fn new(subnet: &Subnet, id_type: &'static str, raw: &str) -> HostKey {
        let mac = if id_type == "hw-address" {
            raw.parse::<MacAddress>().ok()
        } else {
            None
        };
        let id_value = match mac {
            Some(mac) => mac.to_string(),
            None if id_type == "hw-address" => raw.to_ascii_lowercase(),
            None => raw.to_string(),
        };
        HostKey {
            subnet: subnet.clone(),
            id_type,
            id_value,
            mac,
        }
    }
}

/// A live reservation's natural key, or `None` when it has no identifier labctl knows (only
/// after [`live_reservations`] accepted the configuration).
fn host_key(subnet: &Subnet, reservation: &Json) -> Option<HostKey> {
    IDENTIFIERS.iter().find_map(|(id_type, _)| {
        let raw = reservation.get(*id_type)?.as_str()?;
        Some(HostKey::new(subnet, id_type, raw))
    })
}

/// A live reservation's natural key: its first identifier. Every identifier it has must be a
/// string, and it must have one (Kea refuses a reservation without).
fn read_host_key(subnet: &Subnet, reservation: &At) -> Result<HostKey, ShapeError> {
    let mut key = None;
    for (id_type, _) in IDENTIFIERS {
        if let Some(raw) = reservation.opt_str(id_type)? {
            key = key.or_else(|| Some(HostKey::new(subnet, id_type, raw)));
        }
    }
    key.ok_or_else(|| {
        reservation
            .error("has no host identifier (hw-address, client-id, duid, circuit-id or flex-id)")
    })
}

/// A live reservation in the shape of [`Provider::expected`]: Kea's defaults
/// (`boot-file-name`, `client-classes`, `next-server`, `server-hostname`) and the option
/// attributes labctl does not model (`code`, `space`, `csv-format`, `always-send`) are dropped.
fn normalise(subnet: &Subnet, live: &At) -> Result<(HostKey, Fields), ShapeError> {
    let key = read_host_key(subnet, live)?;
    let mut fields = Map::new();
    fields.insert("subnet".into(), json!(subnet.text));
    let shown = IDENTIFIERS
        .iter()
        .find(|(t, _)| *t == key.id_type)
        .map(|(_, f)| *f)
        .unwrap_or("mac");
    fields.insert(shown.into(), json!(key.id_value));
    if let Some(ip) = live.opt_str("ip-address")? {
        if !ip.is_empty() {
            fields.insert("ip".into(), json!(ip));
        }
    }
    if let Some(hostname) = live.opt_str("hostname")? {
        if !hostname.is_empty() {
            fields.insert("hostname".into(), json!(hostname));
        }
    }
    let mut options: Vec<Json> = Vec::new();
    for o in live.opt_items("option-data")? {
        let name = match (o.opt_str("name")?, o.get("code")?) {
            (Some(name), _) => name.to_string(),
            (None, Some(code)) => code.i64()?.to_string(),
            (None, None) => return Err(o.error("has neither `name` nor `code`")),
        };
        let data = o.opt_str("data")?.unwrap_or_default();
        options.push(json!({ "name": name, "data": data }));
    }
    if !options.is_empty() {
        fields.insert("options".into(), Json::Array(options));
    }
    Ok((key, Json::Object(fields).into()))
}

/// The reservation a change targets: its live key as observed, else (an update planned
/// without one) the subnet and MAC in its fields.
fn change_key(change: &Change, fields: Option<&Json>) -> Option<HostKey> {
    if let Some(raw) = change.key() {
        return HostKey::from_live_key(raw);
    }
    let fields = fields?;
    let subnet = Subnet::parse(fields.get("subnet")?.as_str()?);
    let key = HostKey::new(&subnet, "hw-address", fields.get("mac")?.as_str()?);
    // A MAC that does not parse is no key labctl could have planned with.
    key.mac.is_some().then_some(key)
}

/// Position of the reservation with `key`: (subnet index in [`subnets_mut`] order, index).
fn locate(dhcp4: &mut Json, key: &HostKey) -> Option<(usize, usize)> {
    subnets_mut(dhcp4)
        .into_iter()
        .enumerate()
        .find_map(|(si, subnet)| {
            if subnet_of(subnet).as_deref() != Some(key.subnet.text.as_str()) {
                return None;
            }
            let list = subnet.get("reservations")?.as_array()?;
            let ri = list
                .iter()
                .position(|r| host_key(&key.subnet, r).as_ref() == Some(key))?;
            Some((si, ri))
        })
}

/// The reservation fields labctl manages, in Kea's names, from expected `fields`.
fn kea_fields(name: &str, fields: &Json) -> Result<Map<String, Json>, String> {
    let text = |key: &str| {
        fields
            .get(key)
            .and_then(Json::as_str)
            .ok_or_else(|| format!("DhcpReservation/{name}: field `{key}` is missing"))
    };
    let mut out = Map::new();
    out.insert("hw-address".into(), json!(text("mac")?));
    out.insert("ip-address".into(), json!(text("ip")?));
    out.insert("hostname".into(), json!(text("hostname")?));
    let options: Vec<Json> = fields
        .get("options")
        .and_then(Json::as_array)
        .into_iter()
        .flatten()
        .map(|o| json!({ "name": o.get("name"), "data": o.get("data") }))
        .collect();
    out.insert("option-data".into(), Json::Array(options));
    Ok(out)
}

/// Applies one change to the reservations of `dhcp4`, touching nothing else.
fn edit(dhcp4: &mut Json, change: &Change) -> Result<(), String> {
    match change {
        Change::Delete { name, .. } => {
            let key = change_key(change, None).ok_or_else(|| {
                format!(
                    "DhcpReservation/{name}: the change names no live reservation (subnet and \
                     host identifier) to delete"
                )
            })?;
            let (si, ri) = locate(dhcp4, &key).ok_or_else(|| {
                format!(
                    "DhcpReservation/{name} ({}) is no longer in Kea",
                    key.id_value
                )
            })?;
            reservations_mut(subnets_mut(dhcp4).swap_remove(si)).remove(ri);
            Ok(())
        }
        Change::Create { name, fields, .. } => {
            let reservation = kea_fields(name, fields)?;
            insert(dhcp4, name, fields, Json::Object(reservation), None)
        }
        Change::Update { name, fields, .. } => {
            let managed = kea_fields(name, fields)?;
            let key = change_key(change, Some(fields)).ok_or_else(|| {
                format!("DhcpReservation/{name}: no subnet and MAC to find it in Kea by")
            })?;
            let (si, ri) = locate(dhcp4, &key)
                .ok_or_else(|| format!("DhcpReservation/{name} is not in Kea to update"))?;
            let list = reservations_mut(subnets_mut(dhcp4).swap_remove(si));
            // Keep what labctl does not model (client classes, boot file, …) and replace the
            // rest; the old identifier goes too, in case the MAC changed.
            let mut reservation = list.remove(ri);
            if let Some(obj) = reservation.as_object_mut() {
                for (id_type, _) in IDENTIFIERS {
                    obj.remove(id_type);
                }
                obj.extend(managed);
            }
            insert(dhcp4, name, fields, reservation, Some((si, ri)))
        }
    }
}

/// Puts `reservation` into the subnet named in `fields`: back at `at` when it is still that
/// subnet (an update in place), else appended.
fn insert(
    dhcp4: &mut Json,
    name: &str,
    fields: &Json,
    reservation: Json,
    at: Option<(usize, usize)>,
) -> Result<(), String> {
    let wanted = fields
        .get("subnet")
        .and_then(Json::as_str)
        .map(canonical_subnet)
        .ok_or_else(|| format!("DhcpReservation/{name}: field `subnet` is missing"))?;
    let mut all = subnets_mut(dhcp4);
    let si = all
        .iter()
        .position(|s| subnet_of(s).as_deref() == Some(wanted.as_str()))
        .ok_or_else(|| {
            format!("DhcpReservation/{name}: Kea has no subnet {wanted} to put it in")
        })?;
    let list = reservations_mut(all.swap_remove(si));
    match at {
        Some((old_si, ri)) if old_si == si => list.insert(ri.min(list.len()), reservation),
        _ => list.push(reservation),
    }
    Ok(())
}

/// A subnet's `reservations` array, created when the subnet has none. [`live_reservations`]
/// has refused any other shape, so an existing one is an array.
fn reservations_mut(subnet: &mut Json) -> &mut Vec<Json> {
    if subnet.get("reservations").is_none() {
        subnet["reservations"] = Json::Array(Vec::new());
    }
    subnet["reservations"]
        .as_array_mut()
        .expect("live_reservations accepted only an array")
}

/// SHA-256 of `Dhcp4` as Kea wrote it. Kea prints its configuration the same way every time
/// (its maps are `std::map`s, printed in key order), so the same configuration gives the
/// same text; hashing the text rather than a canonical form of its value spares parsing the
/// whole configuration on every observation. Were Kea ever to print the same configuration
/// otherwise, an apply would be refused as stale and the run repeated: never a wrong write.
fn fingerprint(dhcp4: &str) -> String {
    crate::canonical::sha256_hex(dhcp4.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(value: &Json) -> String {
        value.to_string()
    }

    fn live(mac: &str, ip: &str, hostname: &str) -> Json {
        json!({
            "boot-file-name": "", "client-classes": [], "hostname": hostname,
            "hw-address": mac, "ip-address": ip, "next-server": "0.0.0.0",
            "option-data": [], "server-hostname": ""
        })
    }

    #[test]
    fn kea_defaults_are_dropped_and_options_reduced() {
        let mut r = live("BC:24:11:00:00:01", "10.0.1.10", "nas");
        r["option-data"] = json!([{ "always-send": false, "code": 6, "csv-format": true,
            "data": "10.0.1.1", "name": "domain-name-servers", "space": "dhcp4" }]);
        let read = |r: &Json| {
            normalise(&Subnet::parse("10.0.1.0/24"), &At::root(CONFIG_GET, "r", r)).unwrap()
        };
        let (key, fields) = read(&r);
        assert_eq!(key.id_value, "bc:24:11:00:00:01");
        assert_eq!(
            fields,
            json!({ "subnet": "10.0.1.0/24", "mac": "bc:24:11:00:00:01", "ip": "10.0.1.10",
                    "hostname": "nas",
                    "options": [{ "name": "domain-name-servers", "data": "10.0.1.1" }] })
        );
        let (_, fields) = read(&live("bc:24:11:00:00:02", "", ""));
        assert_eq!(
            fields,
            json!({ "subnet": "10.0.1.0/24", "mac": "bc:24:11:00:00:02" })
        );
    }

    #[test]
    fn a_reservation_path_of_another_shape_is_an_error_naming_it() {
        let ok = live("bc:24:11:00:00:01", "10.0.1.10", "nas");
        let cases = [
            (
                json!({ "subnet4": {} }),
                "Dhcp4.subnet4 is an object, expected an array",
            ),
            (
                json!({ "subnet4": [{ "subnet": "10.0.1.0/24", "reservations": "none" }] }),
                "Dhcp4.subnet4[0].reservations is a string, expected an array",
            ),
            (
                json!({ "subnet4": [{ "subnet": "10.0.1.0/24", "reservations": [ok, 7] }] }),
                "Dhcp4.subnet4[0].reservations[1] is a number, expected an object",
            ),
            (
                json!({ "subnet4": [{ "subnet": "10.0.1.0/24",
                                      "reservations": [{ "hw-address": 1 }] }] }),
                "reservations[0].hw-address is a number, expected a string",
            ),
            (
                json!({ "subnet4": [{ "subnet": "10.0.1.0/24",
                                      "reservations": [{ "ip-address": "10.0.1.9" }] }] }),
                "reservations[0] has no host identifier",
            ),
            (
                json!({ "subnet4": [{ "subnet": 10, "reservations": [ok] }] }),
                "Dhcp4.subnet4[0].subnet is a number, expected a string",
            ),
            (
                json!({ "subnet4": [], "shared-networks": [{ "subnet4": "x" }] }),
                "Dhcp4.shared-networks[0].subnet4 is a string, expected an array",
            ),
            (
                json!({ "subnet4": [{ "subnet": "10.0.1.0/24", "reservations": [
                    { "hw-address": "bc:24:11:00:00:02", "option-data": [{ "data": "x" }] }] }] }),
                "option-data[0] has neither `name` nor `code`",
            ),
        ];
        for (dhcp4, says) in cases {
            let err = live_reservations(&raw(&dhcp4)).unwrap_err().to_string();
            assert!(err.starts_with("Kea config-get: "), "{err}");
            assert!(err.contains(says), "{dhcp4}: {err}");
        }
        // Absent lists are empty; Kea leaves them out.
        assert_eq!(live_reservations(&raw(&json!({}))).unwrap(), []);
        let err = live_reservations(&raw(&json!([]))).unwrap_err();
        assert_eq!(
            err.to_string(),
            "Kea config-get: Dhcp4 is an array, expected an object"
        );
        let one = json!({ "shared-networks": [{ "subnet4": [{ "subnet": "10.0.1.0/24",
            "reservations": [live("bc:24:11:00:00:01", "10.0.1.10", "nas")] }] }] });
        assert_eq!(live_reservations(&raw(&one)).unwrap().len(), 1);
    }

    #[test]
    fn derived_names_avoid_taken_ones() {
        let taken: BTreeSet<String> = ["nas".into(), "nas-2".into()].into();
        assert_eq!(unique_name("nas", &taken), "nas-3");
        assert_eq!(unique_name("printer", &taken), "printer");
        let long = "a".repeat(63);
        let taken: BTreeSet<String> = [long.clone()].into();
        assert_eq!(unique_name(&long, &taken).len(), 63);
    }

    #[test]
    fn an_answer_is_read_where_it_lies_and_only_its_first_element() {
        let dhcp4 = r#"{ "subnet4": [], "x": "{\"Dhcp4\": 1}" }"#;
        let text = format!(
            r#"[ {{ "result": 0, "text": "ok", "arguments": {{ "hash": "h", "Dhcp4": {dhcp4} }} }},
                {{ "result": 1 }} ]"#
        );
        let (result, said, at) = read_answer(CONFIG_GET, &text).ok().unwrap();
        assert_eq!((result, said.as_str()), (0, "ok"));
        assert_eq!(&text[at.unwrap()], dhcp4);

        let read = |text: &str| match read_answer(CONFIG_GET, text) {
            Ok((result, said, at)) => Ok((result, said, at.map(|at| text[at].to_string()))),
            Err(Unread::Bad(e)) => Err(e),
            Err(Unread::Shape(e)) => Err(e.to_string()),
        };
        // Refused by the agent itself, or of another shape: errors that say what came.
        for broken in ["<html>not json</html>", r#"{"result": 400,"#, "[1] 2"] {
            let e = read(broken).unwrap_err();
            assert!(e.starts_with("the answer is not JSON: "), "{broken}: {e}");
        }
        assert_eq!(
            read(r#"{"result": 400, "text": "Bad Request"}"#).unwrap_err(),
            r#"expected a JSON array of answers, got {"result": 400, "text": "Bad Request"}"#
        );
        assert_eq!(
            read(r#"[{"result": "0"}]"#).unwrap_err(),
            "the answer has no integer `result`"
        );
        for none in ["[]", "[7, {\"result\": 0}]", "\"ok\""] {
            let e = read(none).unwrap_err();
            assert!(
                e.starts_with("expected a JSON array of answers"),
                "{none}: {e}"
            );
        }
        // A name written with escapes is the name; the last of a name given twice wins, as
        // in a map.
        assert_eq!(
            read(r#"[{"res\u0075lt": 1, "text": "a", "text": "b", "x": [1, {"result": 2}]}]"#),
            Ok((1, "b".to_string(), None))
        );
        assert_eq!(
            read(r#"[{"result": 0, "text": 7}]"#).unwrap_err(),
            "Kea config-get: [0].text is a number, expected a string"
        );
        // A `Dhcp4` that is no object, or arguments that are none, are not a configuration.
        for odd in [r#"{"Dhcp4": []}"#, r#"[{"Dhcp4": {}}]"#, "null"] {
            let text = format!(r#"[{{"result": 0, "arguments": {odd}}}]"#);
            assert_eq!(read(&text), Ok((0, String::new(), None)), "{odd}");
        }
    }

    #[test]
    fn the_fingerprint_is_of_the_text_kea_sent() {
        let a = r#"{"a":1,"b":{"c":[1,{"d":2,"e":3}]}}"#;
        assert_eq!(fingerprint(a), crate::canonical::sha256_hex(a.as_bytes()));
        assert_ne!(
            fingerprint(a),
            fingerprint(r#"{"a":2,"b":{"c":[1,{"d":2,"e":3}]}}"#)
        );
    }

    #[test]
    fn an_update_keeps_what_labctl_does_not_model() {
        let mut r = live("bc:24:11:00:00:01", "10.0.1.10", "nas");
        r["client-classes"] = json!(["lab"]);
        let mut dhcp4 = json!({ "subnet4": [{ "id": 1, "subnet": "10.0.1.0/24",
            "reservations": [live("bc:24:11:00:00:09", "10.0.1.9", "x"), r] }],
            "valid-lifetime": 4000 });
        let change = Change::Update {
            kind: Kind::DhcpReservation,
            name: "nas".into(),
            fields: json!({ "subnet": "10.0.1.0/24", "mac": "bc:24:11:00:00:01",
                            "ip": "10.0.1.20", "hostname": "nas" }),
            key: None,
        };
        edit(&mut dhcp4, &change).unwrap();
        let updated = &dhcp4["subnet4"][0]["reservations"][1];
        assert_eq!(updated["ip-address"], "10.0.1.20");
        assert_eq!(updated["client-classes"], json!(["lab"]));
        assert_eq!(dhcp4["valid-lifetime"], 4000);
        let create = Change::Create {
            kind: Kind::DhcpReservation,
            name: "far".into(),
            fields: json!({ "subnet": "10.9.0.0/24", "mac": "bc:24:11:00:00:03",
                            "ip": "10.9.0.2", "hostname": "far" }),
        };
        let err = edit(&mut dhcp4, &create).unwrap_err();
        assert!(err.contains("no subnet 10.9.0.0/24"), "{err}");
    }
}
