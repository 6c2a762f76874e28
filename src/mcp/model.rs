//! The reconciled model of the latest run, as the MCP tools read it: resources by kind and
//! name, and the IPv4 addresses each one uses, on the desired or the observed side.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use serde_json::Value as Json;

use crate::store::LatestModel;

/// One resource of the reconciled model (`{kind, name, provider, desired, observed, status,
/// deviations}`, as the reconcile run wrote it).
#[derive(Debug, Clone)]
pub struct Entry {
    pub kind: String,
    pub name: String,
    pub provider: String,
    pub desired: Option<Json>,
    pub observed: Option<Json>,
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
        Model {
            run: latest.run,
            commit: latest.commit_sha,
            finished_at: latest.finished_at,
            entries,
        }
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

    /// The Proxmox pools whose members include the guest `device`.
    pub fn pools_of(&self, device: &Entry) -> Vec<String> {
        let Some(member) = device.guest_id() else {
            return Vec::new();
        };
        self.of_kind("Pool")
            .filter(|p| {
                [&p.desired, &p.observed].into_iter().flatten().any(|f| {
                    f.get("members")
                        .and_then(Json::as_array)
                        .is_some_and(|m| m.iter().any(|v| v.as_str() == Some(&member)))
                })
            })
            .map(|p| p.name.clone())
            .collect()
    }
}

impl Entry {
    /// The desired fields, else the observed ones.
    pub fn fields(&self) -> Option<&Json> {
        self.desired.as_ref().or(self.observed.as_ref())
    }

    /// A string field, desired first.
    pub fn field_str(&self, key: &str) -> Option<&str> {
        [&self.desired, &self.observed]
            .into_iter()
            .flatten()
            .find_map(|f| f.get(key).and_then(Json::as_str))
    }

    /// Every address this resource uses, desired and observed, sorted.
    pub fn ip_uses(&self) -> Vec<IpUse> {
        let mut out = Vec::new();
        for (side, fields) in [("desired", &self.desired), ("observed", &self.observed)] {
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
        for fields in [&self.desired, &self.observed].into_iter().flatten() {
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
    Some(Entry {
        kind: text("kind")?,
        name: text("name")?,
        provider: text("provider").unwrap_or_default(),
        desired: present("desired"),
        observed: present("observed"),
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
