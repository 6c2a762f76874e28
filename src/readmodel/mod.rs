//! The reconciled model: what one run knew about every resource (Git's document, what
//! providers expected and observed, the status), written by `reconcile` and read by MCP and
//! the CLI through this one type. [`query`] answers questions over it.
//!
//! The store keeps it as JSON, content-addressed: an unchanged lab must give byte-identical
//! models, so there are no timestamps here and every collection has a fixed order.

pub mod query;

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::Value as Json;

use crate::model::Kind;

/// The shape written today. Version 1 is the shape models had before they carried a version;
/// those (version absent) are read through [`ReconciledModel::from_stored`].
pub const CURRENT_VERSION: u32 = 1;

/// A stored model this build cannot read.
#[derive(Debug, thiserror::Error)]
pub enum ReadModelError {
    #[error("the reconciled model has version {found}, newer than this labctl reads ({CURRENT_VERSION}): upgrade labctl")]
    TooNew { found: u64 },
    #[error("the reconciled model is not readable: {0}")]
    Invalid(#[from] serde_json::Error),
}

/// The reconciled model of one run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReconciledModel {
    pub version: u32,
    /// Sorted by kind, then name. Stored under `resources`, the name it always had.
    #[serde(rename = "resources")]
    pub entries: Vec<Entry>,
    /// The machines guests run on, as the run's providers saw them (Proxmox VE nodes), sorted
    /// by provider and name. Absent from models written before hosts were recorded.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hosts: Vec<ModelHost>,
}

/// A machine a provider runs guests on, with the capacity it reported.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ModelHost {
    pub provider: String,
    pub name: String,
    pub online: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cores: Option<u64>,
    #[serde(rename = "memoryMiB", default, skip_serializing_if = "Option::is_none")]
    pub memory_mib: Option<u64>,
}

/// One resource of the model: in Git, live, or both.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    pub kind: Kind,
    pub name: String,
    /// `metadata.labels` of the Git document; absent for a resource only seen live.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<BTreeMap<String, String>>,
    /// The Git document's `spec`; absent for a resource only seen live.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spec: Option<Json>,
    /// The providers that cover it, in the order they were asked.
    #[serde(default)]
    pub providers: Vec<String>,
    /// What providers expected, in their API's live shape.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub desired: Option<Json>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed: Option<Json>,
    /// What providers reported about it beyond fields (an MCP server's name, tools…).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub details: Option<Json>,
    #[serde(default)]
    pub status: Status,
    /// Deviations the run found for it.
    #[serde(default)]
    pub deviations: u64,
}

/// How a resource compared in the run.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(rename_all = "kebab-case")]
pub enum Status {
    /// Live as Git says.
    Synced,
    /// At least one deviation.
    OutOfSync,
    /// A provider covering it could not be observed; nothing is concluded.
    #[default]
    Unknown,
    /// No provider covers it: Git only.
    Unobserved,
}

impl Status {
    pub const ALL: [Status; 4] = [
        Status::Synced,
        Status::OutOfSync,
        Status::Unknown,
        Status::Unobserved,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Synced => "synced",
            Status::OutOfSync => "out-of-sync",
            Status::Unknown => "unknown",
            Status::Unobserved => "unobserved",
        }
    }

    /// Case-insensitive, surrounding spaces ignored.
    pub fn parse(text: &str) -> Option<Status> {
        let text = text.trim();
        Status::ALL
            .into_iter()
            .find(|s| s.as_str().eq_ignore_ascii_case(text))
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Entry {
    /// A resource nothing has been said about yet.
    pub fn new(kind: Kind, name: &str) -> Entry {
        Entry {
            kind,
            name: name.to_string(),
            labels: None,
            spec: None,
            providers: Vec::new(),
            desired: None,
            observed: None,
            details: None,
            status: Status::Unknown,
            deviations: 0,
        }
    }
}

impl ReconciledModel {
    /// A model of the current version, its entries put in the stored order.
    pub fn new(mut entries: Vec<Entry>) -> Self {
        entries.sort_by(|a, b| (a.kind, &a.name).cmp(&(b.kind, &b.name)));
        ReconciledModel {
            version: CURRENT_VERSION,
            entries,
            hosts: Vec::new(),
        }
    }

    /// The JSON the store keeps.
    pub fn to_json(&self) -> Json {
        // Only string-keyed maps and plain values: serialising cannot fail.
        serde_json::to_value(self).expect("a reconciled model is plain data")
    }

    /// Writes the model of `hosts` and `entries` (given in the stored order) as canonical
    /// JSON, entry by entry: the same text as [`crate::canonical::canonical_json`] of
    /// [`ReconciledModel::to_json`], without the whole model ever being one value.
    pub fn write_canonical<W: std::io::Write>(
        w: &mut crate::canonical::Writer<W>,
        hosts: &[ModelHost],
        entries: impl Iterator<Item = Entry>,
    ) {
        w.begin_object();
        if !hosts.is_empty() {
            w.key("hosts");
            w.serialize(hosts);
        }
        w.key("resources");
        w.begin_array();
        for entry in entries {
            w.serialize(&entry);
        }
        w.end();
        w.key("version");
        w.serialize(&CURRENT_VERSION);
        w.end();
    }

    /// A model as stored, of any version this build knows, upgraded to the current one.
    pub fn from_stored(mut stored: Json) -> Result<Self, ReadModelError> {
        let version = stored_version(stored.get("version"))?;
        if version == 0 {
            upgrade_unversioned(&mut stored);
        }
        Ok(serde_json::from_value::<ReconciledModel>(stored)?.settled())
    }

    /// [`ReconciledModel::from_stored`] from the stored text. A model of a version this build
    /// reads is read straight into its types, in one pass: at 100k resources a `Value` of the
    /// whole model first cost more than the model itself. Any other text (unversioned, to be
    /// upgraded; newer; broken) goes the `Value` way, which decides what it is.
    pub fn from_text(text: &str) -> Result<Self, ReadModelError> {
        match serde_json::from_str::<ReconciledModel>(text) {
            Ok(model) if (1..=CURRENT_VERSION).contains(&model.version) => Ok(model.settled()),
            _ => Self::from_stored(serde_json::from_str(text)?),
        }
    }

    /// Marked current, entries in kind and name order.
    fn settled(mut self) -> Self {
        self.version = CURRENT_VERSION;
        self.entries
            .sort_by(|a, b| (a.kind, &a.name).cmp(&(b.kind, &b.name)));
        self
    }
}

/// The version a stored model says it has: 0 when it says none; one newer than this build
/// reads is an error.
fn stored_version(version: Option<&Json>) -> Result<u64, ReadModelError> {
    let found = match version {
        None | Some(Json::Null) => 0,
        Some(v) => v.as_u64().unwrap_or(u64::MAX),
    };
    if found > u64::from(CURRENT_VERSION) {
        return Err(ReadModelError::TooNew { found });
    }
    Ok(found)
}

/// Models stored before they had a version: the shape of version 1, except that the oldest
/// named their one provider in `provider`, and readers skipped what they could not place.
fn upgrade_unversioned(stored: &mut Json) {
    let Some(map) = stored.as_object_mut() else {
        return;
    };
    map.insert("version".into(), Json::from(1));
    let resources = map
        .entry("resources")
        .or_insert_with(|| Json::Array(Vec::new()));
    let Some(list) = resources.as_array_mut() else {
        *resources = Json::Array(Vec::new());
        return;
    };
    list.retain(|r| {
        r.get("kind")
            .and_then(Json::as_str)
            .is_some_and(|k| Kind::parse(k).is_some())
            && r.get("name").and_then(Json::as_str).is_some()
    });
    for r in list.iter_mut().filter_map(Json::as_object_mut) {
        let mut providers: Vec<Json> = match r.remove("providers") {
            Some(Json::Array(list)) => list.into_iter().filter(Json::is_string).collect(),
            _ => Vec::new(),
        };
        if let Some(Json::String(one)) = r.remove("provider") {
            if !one.is_empty() && !providers.iter().any(|p| p == one.as_str()) {
                providers.push(Json::String(one));
            }
        }
        r.insert("providers".into(), Json::Array(providers));
        if r.get("labels").is_some_and(|l| !l.is_object()) {
            r.remove("labels");
        }
        if let Some(labels) = r.get_mut("labels").and_then(Json::as_object_mut) {
            labels.retain(|_, v| v.is_string());
        }
        if r.get("status")
            .and_then(Json::as_str)
            .and_then(Status::parse)
            .is_none()
        {
            r.insert("status".into(), Json::from(Status::Unknown.as_str()));
        }
        if !r.get("deviations").is_some_and(Json::is_u64) {
            r.insert("deviations".into(), Json::from(0));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// A model exactly as `reconcile` wrote it before models had a version.
    pub(crate) fn unversioned() -> Json {
        json!({"resources": [
            {"deviations": 0, "kind": "Pool", "labels": {}, "name": "homelab", "providers": [],
             "spec": {"type": "compute"}, "status": "unobserved"},
            {"deviations": 1, "desired": {"ip": "10.0.1.5"}, "kind": "DhcpReservation",
             "name": "printer", "observed": {"ip": "10.0.1.5"}, "providers": ["kea"],
             "status": "out-of-sync"},
            {"deviations": 0, "kind": "Device", "labels": {"role": "nas"}, "name": "harbor",
             "providers": ["proxmox", "kea"], "spec": {"type": "vm"}, "status": "synced"},
        ]})
    }

    #[test]
    fn an_unversioned_model_upgrades_to_the_current_version() {
        let m = ReconciledModel::from_stored(unversioned()).unwrap();
        assert_eq!(m.version, CURRENT_VERSION);
        let names: Vec<_> = m
            .entries
            .iter()
            .map(|e| (e.kind, e.name.as_str()))
            .collect();
        assert_eq!(
            names,
            [
                (Kind::Pool, "homelab"),
                (Kind::Device, "harbor"),
                (Kind::DhcpReservation, "printer")
            ]
        );
        assert_eq!(m.entries[1].providers, ["proxmox", "kea"]);
        assert_eq!(m.entries[2].status, Status::OutOfSync);
        assert_eq!(m.entries[2].labels, None);
        assert_eq!(m.entries[2].deviations, 1);
        // Upgraded, it is written as the current version writes it: the same plus `version`.
        let mut expected = unversioned();
        expected["version"] = json!(1);
        let written = m.to_json();
        assert_eq!(written["version"], 1);
        let set = |v: &Json| -> Vec<String> {
            let mut l: Vec<String> = v["resources"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r.to_string())
                .collect();
            l.sort();
            l
        };
        assert_eq!(set(&written), set(&expected));
    }

    #[test]
    fn the_model_written_entry_by_entry_is_the_whole_models_canonical_text() {
        let mut m = ReconciledModel::from_stored(unversioned()).unwrap();
        let text = |m: &ReconciledModel| {
            let mut w = crate::canonical::Writer::new();
            ReconciledModel::write_canonical(&mut w, &m.hosts, m.entries.iter().cloned());
            w.finish()
        };
        assert_eq!(text(&m), crate::canonical::canonical_json(&m.to_json()));
        m.hosts.push(ModelHost {
            provider: "pve".into(),
            name: "node-1".into(),
            online: true,
            cores: Some(8),
            memory_mib: None,
        });
        assert_eq!(text(&m), crate::canonical::canonical_json(&m.to_json()));
    }

    #[test]
    fn the_oldest_models_name_one_provider_and_may_lack_fields() {
        let m = ReconciledModel::from_stored(json!({"resources": [
            {"kind": "Route", "name": "grafana", "provider": "traefik"},
            {"kind": "Gadget", "name": "x"},
            {"name": "no-kind"},
        ]}))
        .unwrap();
        assert_eq!(m.entries.len(), 1);
        let e = &m.entries[0];
        assert_eq!(e.providers, ["traefik"]);
        assert_eq!(e.status, Status::Unknown);
        assert_eq!(e.deviations, 0);
        assert!(ReconciledModel::from_stored(json!({}))
            .unwrap()
            .entries
            .is_empty());
    }

    #[test]
    fn a_model_round_trips_and_a_newer_one_is_refused() {
        let m = ReconciledModel::from_stored(unversioned()).unwrap();
        let again = ReconciledModel::from_stored(m.to_json()).unwrap();
        assert_eq!(again, m);
        // Byte-identical for the same content, whatever order entries came in.
        let reversed = ReconciledModel::new(m.entries.iter().rev().cloned().collect());
        assert_eq!(reversed.to_json().to_string(), m.to_json().to_string());
        let err = ReconciledModel::from_stored(json!({"version": 7, "resources": []}));
        assert!(matches!(err, Err(ReadModelError::TooNew { found: 7 })));
        assert!(ReconciledModel::from_stored(json!({"version": 1, "resources": [{}]})).is_err());
    }

    /// Read from its text, a model is what it is read from its value: the current version
    /// straight into its types, an unversioned one upgraded, a newer one refused.
    #[test]
    fn a_model_read_from_its_text_is_the_one_read_from_its_value() {
        let current = ReconciledModel::from_stored(unversioned())
            .unwrap()
            .to_json();
        for stored in [
            current.clone(),
            unversioned(),
            json!({"version": null, "resources": [{"kind": "Route", "name": "a", "provider": "t"}]}),
            json!({"resources": [], "hosts": []}),
        ] {
            let text = stored.to_string();
            assert_eq!(
                ReconciledModel::from_text(&text).unwrap(),
                ReconciledModel::from_stored(stored).unwrap(),
                "{text}"
            );
        }
        // Written entries are already sorted; read, they are sorted whatever the text says.
        let mut shuffled = current.clone();
        shuffled["resources"].as_array_mut().unwrap().reverse();
        assert_eq!(
            ReconciledModel::from_text(&shuffled.to_string()).unwrap(),
            ReconciledModel::from_stored(current).unwrap()
        );
        for (text, found) in [
            (r#"{"version": 7, "resources": []}"#, 7),
            (r#"{"version": "1"}"#, u64::MAX),
        ] {
            let err = ReconciledModel::from_text(text);
            assert!(
                matches!(err, Err(ReadModelError::TooNew { found: f }) if f == found),
                "{text}"
            );
        }
        assert!(ReconciledModel::from_text(r#"{"version": 1, "resources": [{}]}"#).is_err());
        assert!(ReconciledModel::from_text("not json").is_err());
    }

    #[test]
    fn statuses_read_as_written() {
        for s in Status::ALL {
            assert_eq!(
                Status::parse(&format!(" {} ", s.as_str().to_uppercase())),
                Some(s)
            );
            assert_eq!(json!(s), json!(s.as_str()));
        }
        assert_eq!(Status::parse("in-sync"), None);
    }
}
