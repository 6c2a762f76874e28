//! The reconciled model of the latest run, as the MCP tools read it: resources by kind and
//! name, and the IPv4 addresses each one uses, on the desired or the observed side.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use serde_json::Value as Json;

use crate::model::{Document, Metadata, PoolDoc, PoolSpec, PoolTree, ResolvedPool};
use crate::store::LatestModel;

/// One resource of the reconciled model (`{kind, name, labels, spec, providers, desired,
/// observed, details, status, deviations}`, as the reconcile run wrote it).
#[derive(Debug, Clone)]
pub struct Entry {
    pub kind: String,
    pub name: String,
    /// `metadata.labels` of the Git document (empty for a live-only resource).
    pub labels: BTreeMap<String, String>,
    /// The Git document's `spec`; `None` for a resource only seen live.
    pub spec: Option<Json>,
    /// The providers that cover it, comma-separated (empty when none does).
    pub provider: String,
    pub providers: Vec<String>,
    pub desired: Option<Json>,
    pub observed: Option<Json>,
    /// What providers reported about it beyond fields (an MCP server's name, tools…).
    pub details: Option<Json>,
    pub status: String,
    pub deviations: u64,
}

/// Where a resource uses an address.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct IpUse {
    pub ip: Ipv4Addr,
    /// Field path, e.g. `spec.ip` or `spec.servers[0].url`.
    pub field: String,
    /// `desired` (Git) or `observed` (live).
    pub side: &'static str,
}

/// The latest reconciled model, parsed once per run.
#[derive(Debug, Clone)]
pub struct Model {
    pub run: i64,
    pub commit: Option<String>,
    /// Unix milliseconds: when the run that built the model finished.
    pub finished_at: i64,
    /// Sorted by kind, then name.
    pub entries: Vec<Entry>,
    /// The pool hierarchy rebuilt from the Pool specs (empty when they do not resolve).
    pub pools: PoolTree,
}

impl Model {
    pub fn from_latest(latest: LatestModel) -> Model {
        let mut entries: Vec<Entry> = latest
            .model
            .get("resources")
            .and_then(Json::as_array)
            .map(|list| list.iter().filter_map(entry).collect())
            .unwrap_or_default();
        entries.sort_by(|a, b| (&a.kind, &a.name).cmp(&(&b.kind, &b.name)));
        let docs: Vec<PoolDoc> = entries
            .iter()
            .filter(|e| e.kind == "Pool")
            .filter_map(|e| {
                let spec: PoolSpec = serde_json::from_value(e.spec.clone()?).ok()?;
                Some(Document {
                    api_version: crate::model::API_VERSION.into(),
                    kind: "Pool".into(),
                    metadata: Metadata {
                        name: e.name.clone(),
                        labels: e.labels.clone(),
                        annotations: Default::default(),
                        reconcile: None,
                    },
                    spec,
                })
            })
            .collect();
        let pools = PoolTree::build(&docs).unwrap_or_default();
        Model {
            run: latest.run,
            commit: latest.commit_sha,
            finished_at: latest.finished_at,
            entries,
            pools,
        }
    }

    /// The pool a device (or pool path / name) names: `/homelab/compute` or `compute`,
    /// case-insensitive.
    pub fn resolve_pool(&self, query: &str) -> Option<&ResolvedPool> {
        let q = query.trim().trim_end_matches('/');
        if q.is_empty() {
            return None;
        }
        self.pools
            .by_path(q)
            .or_else(|| self.pools.get(q))
            .or_else(|| {
                self.pools
                    .iter()
                    .find(|p| p.path.eq_ignore_ascii_case(q) || p.name.eq_ignore_ascii_case(q))
            })
    }

    /// The path of the pool a device is in: its `spec.pool`, resolved when it names a known
    /// pool, else as written.
    pub fn pool_path_of(&self, device: &Entry) -> Option<String> {
        let written = device.spec_str("pool")?;
        Some(
            self.resolve_pool(written)
                .map(|p| p.path.clone())
                .unwrap_or_else(|| written.to_string()),
        )
    }

    /// Every resource of `kind`, by name.
    pub fn of_kind<'a>(&'a self, kind: &'a str) -> impl Iterator<Item = &'a Entry> + 'a {
        self.entries.iter().filter(move |e| e.kind == kind)
    }

    /// The resource `kind`/`name`, the name compared case-insensitively.
    pub fn find(&self, kind: &str, name: &str) -> Option<&Entry> {
        let of_kind = || self.entries.iter().filter(move |e| e.kind == kind);
        of_kind()
            .find(|e| e.name == name)
            .or_else(|| of_kind().find(|e| e.name.eq_ignore_ascii_case(name)))
    }

    /// Every address every resource uses, per resource.
    pub fn ip_uses(&self) -> Vec<(&Entry, Vec<IpUse>)> {
        self.entries.iter().map(|e| (e, e.ip_uses())).collect()
    }

    /// The DHCP reservations that belong to `device`: the one of the same name, and those
    /// whose MAC is one of the device's interface MACs.
    pub fn reservations_of(&self, device: &Entry) -> Vec<&Entry> {
        let macs = device.macs();
        self.of_kind("DhcpReservation")
            .filter(|r| {
                r.name == device.name
                    || r.macs()
                        .iter()
                        .any(|m| macs.iter().any(|d| d.eq_ignore_ascii_case(m)))
            })
            .collect()
    }

    /// The pools `device` is in: the one its `spec.pool` names, and the Proxmox pools whose
    /// members (in Git or live) include the guest. Names, sorted.
    pub fn pools_of(&self, device: &Entry) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        if let Some(written) = device.spec_str("pool") {
            match self.resolve_pool(written) {
                Some(p) => out.push(p.name.clone()),
                None => out.extend(written.rsplit('/').next().map(str::to_string)),
            }
        }
        if let Some(member) = device.guest_id() {
            out.extend(
                self.of_kind("Pool")
                    .filter(|p| {
                        [&p.desired, &p.observed].into_iter().flatten().any(|f| {
                            f.get("members")
                                .and_then(Json::as_array)
                                .is_some_and(|m| m.iter().any(|v| v.as_str() == Some(&member)))
                        })
                    })
                    .map(|p| p.name.clone()),
            );
        }
        out.retain(|s| !s.is_empty());
        out.sort();
        out.dedup();
        out
    }
}

impl Entry {
    /// The Git spec, else the desired fields, else the observed ones.
    pub fn fields(&self) -> Option<&Json> {
        self.spec
            .as_ref()
            .or(self.desired.as_ref())
            .or(self.observed.as_ref())
    }

    /// A string field: the spec's first, then desired, then observed.
    pub fn field_str(&self, key: &str) -> Option<&str> {
        [&self.spec, &self.desired, &self.observed]
            .into_iter()
            .flatten()
            .find_map(|f| f.get(key).and_then(Json::as_str))
    }

    /// A string field of the Git spec only.
    pub fn spec_str(&self, key: &str) -> Option<&str> {
        self.spec.as_ref()?.get(key)?.as_str()
    }

    /// A field of the Git spec.
    pub fn spec_get(&self, key: &str) -> Option<&Json> {
        self.spec.as_ref()?.get(key).filter(|v| !v.is_null())
    }

    /// Every address this resource uses: in its Git spec and desired fields (`desired`) and
    /// in what was observed (`observed`), sorted.
    pub fn ip_uses(&self) -> Vec<IpUse> {
        let mut out = Vec::new();
        for (side, fields) in [
            ("desired", &self.spec),
            ("desired", &self.desired),
            ("observed", &self.observed),
        ] {
            if let Some(fields) = fields {
                walk(fields, &mut "spec".to_string(), side, &mut out);
            }
        }
        out.sort();
        out.dedup();
        out
    }

    /// The distinct addresses, sorted.
    pub fn ips(&self) -> Vec<Ipv4Addr> {
        let mut ips: Vec<Ipv4Addr> = self.ip_uses().into_iter().map(|u| u.ip).collect();
        ips.dedup();
        ips
    }

    /// MAC addresses: `mac` fields anywhere in the desired and observed fields, lower case.
    pub fn macs(&self) -> Vec<String> {
        fn collect(value: &Json, out: &mut Vec<String>) {
            match value {
                Json::Object(map) => {
                    for (k, v) in map {
                        match v {
                            Json::String(s) if k == "mac" => out.push(s.to_ascii_lowercase()),
                            _ => collect(v, out),
                        }
                    }
                }
                Json::Array(items) => items.iter().for_each(|v| collect(v, out)),
                _ => {}
            }
        }
        let mut out = Vec::new();
        for fields in [&self.spec, &self.desired, &self.observed]
            .into_iter()
            .flatten()
        {
            collect(fields, &mut out);
        }
        out.sort();
        out.dedup();
        out
    }

    /// `qemu/202` or `lxc/105`: how a Proxmox pool lists this guest.
    pub fn guest_id(&self) -> Option<String> {
        let fields = self.fields()?;
        let vmid = fields.get("proxmox")?.get("vmid")?.as_u64()?;
        let prefix = match fields.get("type").and_then(Json::as_str) {
            Some("lxc") => "lxc",
            _ => "qemu",
        };
        Some(format!("{prefix}/{vmid}"))
    }
}

fn entry(value: &Json) -> Option<Entry> {
    let text = |key: &str| value.get(key).and_then(Json::as_str).map(str::to_string);
    let present = |key: &str| value.get(key).filter(|v| !v.is_null()).cloned();
    let mut providers: Vec<String> = value
        .get("providers")
        .and_then(Json::as_array)
        .map(|l| {
            l.iter()
                .filter_map(Json::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    // Models written before `providers` named one `provider`.
    providers.extend(text("provider").filter(|p| !p.is_empty()));
    providers.dedup();
    let labels = value
        .get("labels")
        .and_then(Json::as_object)
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
                .collect()
        })
        .unwrap_or_default();
    Some(Entry {
        kind: text("kind")?,
        name: text("name")?,
        labels,
        spec: present("spec"),
        provider: providers.join(", "),
        providers,
        desired: present("desired"),
        observed: present("observed"),
        details: present("details"),
        status: text("status").unwrap_or_else(|| "unknown".into()),
        deviations: value.get("deviations").and_then(Json::as_u64).unwrap_or(0),
    })
}

/// Collects the IPv4 addresses in string values under `path`. Subnets (`10.0.1.0/24`) are not
/// uses of an address.
fn walk(value: &Json, path: &mut String, side: &'static str, out: &mut Vec<IpUse>) {
    match value {
        Json::Object(map) => {
            for (k, v) in map {
                let len = path.len();
                path.push('.');
                path.push_str(k);
                walk(v, path, side, out);
                path.truncate(len);
            }
        }
        Json::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                let len = path.len();
                path.push_str(&format!("[{i}]"));
                walk(v, path, side, out);
                path.truncate(len);
            }
        }
        Json::String(s) => {
            for ip in addresses_in(s) {
                out.push(IpUse {
                    ip,
                    field: path.clone(),
                    side,
                });
            }
        }
        _ => {}
    }
}

/// The IPv4 addresses written in `text` (`10.0.1.5`, `http://10.0.1.5:8080/x`), without
/// those followed by a prefix length (`10.0.1.0/24`).
pub fn addresses_in(text: &str) -> Vec<Ipv4Addr> {
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if !bytes[i].is_ascii_digit() || (i > 0 && (bytes[i - 1].is_ascii_alphanumeric())) {
            i += 1;
            continue;
        }
        let start = i;
        while i < bytes.len() && (bytes[i].is_ascii_digit() || bytes[i] == b'.') {
            i += 1;
        }
        let token = text[start..i].trim_end_matches('.');
        let cidr = bytes.get(start + token.len()) == Some(&b'/');
        let glued = bytes
            .get(i)
            .is_some_and(|b| b.is_ascii_alphabetic() || *b == b'_');
        if let Ok(ip) = token.parse::<Ipv4Addr>() {
            if !cidr && !glued {
                out.push(ip);
            }
        }
    }
    out
}

/// Counts per key, sorted: a small helper for summaries.
pub fn count<'a>(items: impl IntoIterator<Item = &'a str>) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    for item in items {
        *out.entry(item.to_string()).or_insert(0) += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_found_in_urls_but_not_subnets() {
        let ip = |s: &str| s.parse::<Ipv4Addr>().unwrap();
        assert_eq!(addresses_in("10.0.1.5"), vec![ip("10.0.1.5")]);
        assert_eq!(
            addresses_in("http://10.0.1.201:3000/x and 10.0.2.7."),
            vec![ip("10.0.1.201"), ip("10.0.2.7")]
        );
        assert!(addresses_in("10.0.1.0/24").is_empty());
        assert!(addresses_in("v1.2.3.4").is_empty());
        assert!(addresses_in("1.2.3").is_empty());
    }
}
