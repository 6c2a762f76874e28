//! Questions over the reconciled model: device lookup and filters, the pool hierarchy (chains,
//! members, inherited settings, capacity against usage), who uses an address. Pure functions
//! of the model, so every answer MCP or the CLI gives can be tested without a store.

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::Ipv4Addr;

use serde_json::Value as Json;

use super::{Entry, ModelHost, ReconciledModel, Status};
use crate::model::{
    Document, Kind, Metadata, PoolDoc, PoolSpec, PoolTree, ResolvedPool, RouteSpec,
};

/// The reconciled model ready for queries: entries sorted by kind and name, the pool
/// hierarchy resolved once, and an index for each question asked per call (by name, by
/// address, by MAC, by Proxmox pool member, counts by status), so that an answer at 100,000
/// resources looks at the few entries it names rather than at all of them.
#[derive(Debug, Clone, Default)]
pub struct Lab {
    entries: Vec<Entry>,
    pools: PoolTree,
    hosts: Vec<ModelHost>,
    index: Index,
    /// Devices by pool path (lower case): those whose pool is at or below it, and those whose
    /// pool is exactly it; positions in name order. A pool's members are looked up, not
    /// searched for among every device.
    under: HashMap<String, Vec<u32>>,
    direct: HashMap<String, Vec<u32>>,
}

/// Positions in [`Lab::entries`]. The lists under an address, a MAC or a member are ascending,
/// so in kind and name order.
#[derive(Debug, Clone, Default)]
struct Index {
    /// Every position, sorted by kind, then name folded to lower case, then position: the
    /// case-insensitive lookup finds the first match by name.
    folded: Vec<u32>,
    /// The entries that use each address (see [`Entry::ip_uses`]).
    ips: BTreeMap<Ipv4Addr, Vec<u32>>,
    /// Devices and reservations by MAC (lower case, see [`Entry::macs`]).
    device_macs: HashMap<String, Vec<u32>>,
    reservation_macs: HashMap<String, Vec<u32>>,
    /// Pool entries by the Proxmox guests (`qemu/301`) they list as members.
    members: HashMap<String, Vec<u32>>,
    /// Entries by kind and status.
    counts: BTreeMap<(Kind, Status), u64>,
    /// DHCP reservations by address, then name; those without an address last. All of them,
    /// and those of each status.
    reservations_by_address: Vec<u32>,
    reservations_by_status: BTreeMap<Status, Vec<u32>>,
}

impl Index {
    fn build(entries: &[Entry]) -> Index {
        let mut index = Index::default();
        let mut folded: Vec<u32> = (0..entries.len() as u32).collect();
        folded.sort_by(|&a, &b| {
            let (x, y) = (&entries[a as usize], &entries[b as usize]);
            x.kind
                .cmp(&y.kind)
                .then_with(|| fold_cmp(&x.name, &y.name))
                .then(a.cmp(&b))
        });
        index.folded = folded;
        for (at, entry) in entries.iter().enumerate() {
            let at = at as u32;
            *index.counts.entry((entry.kind, entry.status)).or_insert(0) += 1;
            for ip in entry.ips() {
                index.ips.entry(ip).or_default().push(at);
            }
            let macs = match entry.kind {
                Kind::Device => Some(&mut index.device_macs),
                Kind::DhcpReservation => Some(&mut index.reservation_macs),
                _ => None,
            };
            if let Some(macs) = macs {
                for mac in entry.macs() {
                    macs.entry(mac).or_default().push(at);
                }
            }
            if entry.kind == Kind::Pool {
                let listed = [&entry.desired, &entry.observed]
                    .into_iter()
                    .flatten()
                    .filter_map(|f| f.get("members").and_then(Json::as_array))
                    .flatten()
                    .filter_map(Json::as_str);
                for member in listed {
                    let pools = index.members.entry(member.to_string()).or_default();
                    if pools.last() != Some(&at) {
                        pools.push(at);
                    }
                }
            }
        }
        let mut by_address: Vec<(Option<Ipv4Addr>, u32)> = entries
            .iter()
            .enumerate()
            .filter(|(_, e)| e.kind == Kind::DhcpReservation)
            .map(|(at, e)| (e.field_str("ip").and_then(|ip| ip.parse().ok()), at as u32))
            .collect();
        // Positions are in name order: sorting by (address, position) breaks ties by name.
        by_address.sort_by_key(|&(ip, at)| (ip.is_none(), ip, at));
        index.reservations_by_address = by_address.into_iter().map(|(_, at)| at).collect();
        for &at in &index.reservations_by_address {
            let status = entries[at as usize].status;
            index
                .reservations_by_status
                .entry(status)
                .or_default()
                .push(at);
        }
        index
    }
}

/// `a` against `b` with ASCII letters folded to lower case: the order in which
/// `eq_ignore_ascii_case` finds equal names next to each other.
fn fold_cmp(a: &str, b: &str) -> Ordering {
    a.bytes()
        .map(|c| c.to_ascii_lowercase())
        .cmp(b.bytes().map(|c| c.to_ascii_lowercase()))
}

/// Where a resource uses an address.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct IpUse {
    pub ip: Ipv4Addr,
    /// Field path, e.g. `spec.ip` or `spec.servers[0].url`.
    pub field: String,
    pub side: Side,
}

/// Which side of the model a value is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Side {
    /// Git's document or what providers expected from it.
    Desired,
    /// What providers saw live.
    Observed,
    Both,
}

impl Side {
    pub fn as_str(self) -> &'static str {
        match self {
            Side::Desired => "desired",
            Side::Observed => "observed",
            Side::Both => "both",
        }
    }
}

/// A resource that uses an address, and where.
#[derive(Debug, Clone, PartialEq)]
pub struct IpUser<'a> {
    pub entry: &'a Entry,
    /// Field paths, or `via DhcpReservation/NAME` for a device using its reservation's.
    pub fields: Vec<String>,
    pub side: Side,
}

/// Cores, memory, storage and device counts: a pool's declared capacity (each optional) or
/// what its members use (all present).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Amounts {
    pub cores: Option<u64>,
    pub memory_mib: Option<u64>,
    pub storage_gib: Option<u64>,
    pub devices: Option<u64>,
}

/// A pool's capacity against what its members use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CapacityUse {
    pub capacity: Option<Amounts>,
    pub usage: Amounts,
    /// What usage exceeds (`cores`, `memoryMiB`, `storageGiB`, `devices`); `None` without a
    /// declared capacity.
    pub over: Option<Vec<&'static str>>,
}

/// Whether a pool can take a new guest of some size, and why (see [`Lab::placements`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Placement<'a> {
    pub pool: &'a ResolvedPool,
    pub fits: bool,
    /// Declared capacity less usage, before the new guest; `None` where not declared.
    pub free: Amounts,
    /// One sentence per amount asked for (and the device count, where declared).
    pub reasons: Vec<String>,
}

/// A host a new guest could run on, or why not.
#[derive(Debug, Clone, PartialEq)]
pub struct HostPlacement<'a> {
    pub host: &'a ModelHost,
    pub fits: bool,
    /// Capacity less what its guests use, before the new guest; `None` where not reported.
    pub free: Amounts,
    pub reasons: Vec<String>,
}

/// How a place ranks for a guest needing `need`, best first: fitting ones, then by most
/// memory, cores and storage left after it (an amount not known ranks last).
fn rank(fits: bool, free: &Amounts, need: &Amounts) -> impl Ord {
    use std::cmp::Reverse;
    let after =
        |free: Option<u64>, want: Option<u64>| free.map(|f| f.saturating_sub(want.unwrap_or(0)));
    (
        Reverse(fits),
        Reverse(after(free.memory_mib, need.memory_mib)),
        Reverse(after(free.cores, need.cores)),
        Reverse(after(free.storage_gib, need.storage_gib)),
    )
}

/// One amount asked for: what, wanted, free, capacity.
type Asked<'a> = (&'a str, Option<u64>, Option<u64>, Option<u64>);

/// Whether what is asked fits, one reason per amount wanted. `of` names the capacity
/// (`declared`); `unknown` says why an amount without one is not known to be free.
fn fit(asked: &[Asked<'_>], of: &str, unknown: &str) -> (bool, Vec<String>) {
    let mut fits = true;
    let mut reasons = Vec::new();
    for &(what, want, left, capacity) in asked {
        let Some(want) = want else { continue };
        match (left, capacity) {
            (Some(left), Some(capacity)) if left >= want => {
                reasons.push(format!("{what}: {want} of {left} free ({capacity} {of})"))
            }
            (Some(left), Some(capacity)) => {
                fits = false;
                reasons.push(format!(
                    "{what}: needs {want}, only {left} of {capacity} free"
                ));
            }
            _ => {
                fits = false;
                reasons.push(format!("{what}: {unknown}, so it is not known to be free"));
            }
        }
    }
    (fits, reasons)
}

/// A setting of a pool and the pool in its chain that sets it.
#[derive(Debug, Clone, PartialEq)]
pub struct Setting {
    pub value: Json,
    pub from: String,
    /// Set by an ancestor rather than the pool itself.
    pub inherited: bool,
}

/// Which devices a pool filter selects: those in a pool or below it, or those whose pool path
/// (or pool name) starts with a prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PoolFilter {
    Under(String),
    Prefix(String),
}

/// Devices wanted: every condition given must hold; text compares case-insensitively.
#[derive(Debug, Clone, Default)]
pub struct DeviceFilter {
    pub device_type: Option<String>,
    pub status: Option<Status>,
    pub pool: Option<PoolFilter>,
    /// `key=value` of `metadata.labels`.
    pub label: Option<(String, String)>,
    /// `key=value` of the effective dimensions.
    pub dimension: Option<(String, String)>,
}

/// Pools wanted: every condition given must hold.
#[derive(Debug, Clone, Default)]
pub struct PoolQuery {
    /// A path; the pool at it and those below it.
    pub path_prefix: Option<String>,
    pub pool_type: Option<String>,
    /// `key=value` pairs, all of which the effective dimensions must have.
    pub dimensions: Vec<(String, String)>,
}

static NO_LABELS: BTreeMap<String, String> = BTreeMap::new();

impl Lab {
    pub fn new(model: ReconciledModel) -> Lab {
        let mut entries = model.entries;
        entries.sort_by(|a, b| (a.kind, &a.name).cmp(&(b.kind, &b.name)));
        let docs: Vec<PoolDoc> = entries
            .iter()
            .filter(|e| e.kind == Kind::Pool)
            .filter_map(|e| {
                let spec: PoolSpec = serde_json::from_value(e.spec.clone()?).ok()?;
                Some(Document {
                    api_version: crate::model::API_VERSION.into(),
                    kind: Kind::Pool.as_str().into(),
                    metadata: Metadata {
                        name: e.name.clone(),
                        labels: e.labels().clone(),
                        annotations: Default::default(),
                        reconcile: None,
                    },
                    spec,
                })
            })
            .collect();
        // A hierarchy that does not resolve was refused by validation; an old model may hold
        // one, and then there are no pools to ask about rather than a wrong tree.
        let pools = PoolTree::build(&docs).unwrap_or_default();
        let index = Index::build(&entries);
        let mut lab = Lab {
            entries,
            pools,
            hosts: model.hosts,
            index,
            under: HashMap::new(),
            direct: HashMap::new(),
        };
        lab.index_members();
        lab
    }

    /// Fills [`Lab::under`] and [`Lab::direct`]: each device under its pool's path and every
    /// path above it (`/a/b/c` is under `/a`, `/a/b` and `/a/b/c`).
    fn index_members(&mut self) {
        let start = self.entries.partition_point(|e| e.kind < Kind::Device);
        let mut under: HashMap<String, Vec<u32>> = HashMap::new();
        let mut direct: HashMap<String, Vec<u32>> = HashMap::new();
        for (at, d) in self.kind_slice(Kind::Device).iter().enumerate() {
            let Some(path) = self.pool_path_of(d) else {
                continue;
            };
            let path = path.to_ascii_lowercase();
            let at = (start + at) as u32;
            for (i, _) in path.match_indices('/').filter(|(i, _)| *i > 0) {
                under.entry(path[..i].to_string()).or_default().push(at);
            }
            under.entry(path.clone()).or_default().push(at);
            direct.entry(path).or_default().push(at);
        }
        self.under = under;
        self.direct = direct;
    }

    /// Every resource, by kind and name.
    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// The pool hierarchy resolved from the Pool documents.
    pub fn pools(&self) -> &PoolTree {
        &self.pools
    }

    /// Every resource of `kind`, by name.
    pub fn of_kind(&self, kind: Kind) -> impl Iterator<Item = &Entry> + '_ {
        self.kind_slice(kind).iter()
    }

    /// The entries of `kind`: one run of the sorted entries.
    fn kind_slice(&self, kind: Kind) -> &[Entry] {
        let start = self.entries.partition_point(|e| e.kind < kind);
        let end = start + self.entries[start..].partition_point(|e| e.kind == kind);
        &self.entries[start..end]
    }

    /// The DHCP reservations by address (`spec.ip`, else as desired or observed), then by
    /// name; those without an address last. Only those of `status`, when given.
    pub fn reservations_by_address(
        &self,
        status: Option<Status>,
    ) -> impl Iterator<Item = &Entry> + '_ {
        let order = match status {
            None => &self.index.reservations_by_address[..],
            Some(s) => self
                .index
                .reservations_by_status
                .get(&s)
                .map_or(&[][..], |v| &v[..]),
        };
        order.iter().map(|&at| &self.entries[at as usize])
    }

    /// How many resources of each kind have each status.
    pub fn counts(&self) -> impl Iterator<Item = (Kind, Status, u64)> + '_ {
        self.index.counts.iter().map(|(&(k, s), &n)| (k, s, n))
    }

    /// The resource `kind`/`name`, the exact name first, else compared case-insensitively.
    pub fn find(&self, kind: Kind, name: &str) -> Option<&Entry> {
        let of_kind = self.kind_slice(kind);
        let exact = of_kind.partition_point(|e| e.name.as_str() < name);
        if let Some(e) = of_kind.get(exact).filter(|e| e.name == name) {
            return Some(e);
        }
        let folded = &self.index.folded;
        let at = folded.partition_point(|&i| {
            let e = &self.entries[i as usize];
            e.kind
                .cmp(&kind)
                .then_with(|| fold_cmp(&e.name, name))
                .is_lt()
        });
        folded
            .get(at)
            .map(|&i| &self.entries[i as usize])
            .filter(|e| e.kind == kind && e.name.eq_ignore_ascii_case(name))
    }

    /// A device by name (case-insensitive) or by one of its addresses: of the devices that use
    /// the address themselves or through a reservation, the first by name.
    pub fn find_device(&self, query: &str) -> Option<&Entry> {
        let query = query.trim();
        match query.parse::<Ipv4Addr>() {
            Ok(ip) => self.devices_using(ip).into_iter().next(),
            Err(_) => self.find(Kind::Device, query),
        }
    }

    /// Positions of the entries that use `ip` (see [`Entry::ip_uses`]).
    fn users_of(&self, ip: Ipv4Addr) -> &[u32] {
        self.index.ips.get(&ip).map(Vec::as_slice).unwrap_or(&[])
    }

    /// The devices whose [`Lab::device_ips`] hold `ip`, by name.
    fn devices_using(&self, ip: Ipv4Addr) -> Vec<&Entry> {
        let mut out: BTreeSet<u32> = BTreeSet::new();
        for &at in self.users_of(ip) {
            let entry = &self.entries[at as usize];
            match entry.kind {
                Kind::Device => {
                    out.insert(at);
                }
                Kind::DhcpReservation => out.extend(self.owners_of(entry)),
                _ => {}
            }
        }
        out.into_iter()
            .map(|at| &self.entries[at as usize])
            .collect()
    }

    /// Positions of the devices `reservation` belongs to (see [`Lab::reservations_of`]),
    /// ascending.
    fn owners_of(&self, reservation: &Entry) -> BTreeSet<u32> {
        self.named_and_by_mac(Kind::Device, reservation, &self.index.device_macs)
    }

    /// Positions of the entries of `kind` named like `entry`, and of those in `macs` under one
    /// of `entry`'s MACs, ascending.
    fn named_and_by_mac(
        &self,
        kind: Kind,
        entry: &Entry,
        macs: &HashMap<String, Vec<u32>>,
    ) -> BTreeSet<u32> {
        let start = self
            .entries
            .partition_point(|e| (e.kind, e.name.as_str()) < (kind, entry.name.as_str()));
        let named = self.entries[start..]
            .iter()
            .take_while(|e| e.kind == kind && e.name == entry.name)
            .count();
        let mut out: BTreeSet<u32> = (start as u32..(start + named) as u32).collect();
        for mac in entry.macs() {
            out.extend(macs.get(&mac).into_iter().flatten().copied());
        }
        out
    }

    /// The devices `filter` selects, by name.
    pub fn devices(&self, filter: &DeviceFilter) -> Vec<&Entry> {
        self.of_kind(Kind::Device)
            .filter(|d| {
                filter.device_type.as_deref().is_none_or(|t| {
                    d.field_str("type")
                        .is_some_and(|x| x.eq_ignore_ascii_case(t))
                })
            })
            .filter(|d| filter.status.is_none_or(|s| d.status == s))
            .filter(|d| filter.pool.as_ref().is_none_or(|p| self.in_pool(d, p)))
            .filter(|d| {
                filter.label.as_ref().is_none_or(|(k, v)| {
                    d.labels()
                        .iter()
                        .any(|(lk, lv)| lk.eq_ignore_ascii_case(k) && lv.eq_ignore_ascii_case(v))
                })
            })
            .filter(|d| {
                filter.dimension.as_ref().is_none_or(|(k, v)| {
                    self.device_dimensions(d)
                        .iter()
                        .any(|(dk, dv)| dk.eq_ignore_ascii_case(k) && scalar_eq(dv, v))
                })
            })
            .collect()
    }

    /// The pool a name or path names: `/homelab/compute` or `compute`, case-insensitive.
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

    /// A pool filter as written: `prefix*`, or a known pool; `None` when it names none.
    pub fn pool_filter(&self, text: &str) -> Option<PoolFilter> {
        let text = text.trim();
        if let Some(prefix) = text.strip_suffix('*') {
            return Some(PoolFilter::Prefix(prefix.to_string()));
        }
        self.resolve_pool(text)
            .map(|p| PoolFilter::Under(p.path.clone()))
    }

    /// Whether `device` is selected by `filter`, by its own pool or a Proxmox pool it is in.
    pub fn in_pool(&self, device: &Entry, filter: &PoolFilter) -> bool {
        let paths: Vec<String> = self
            .pool_path_of(device)
            .into_iter()
            .chain(
                self.pools_of(device)
                    .iter()
                    .filter_map(|n| self.pools.get(n).map(|p| p.path.clone())),
            )
            .map(|p| p.to_ascii_lowercase())
            .collect();
        match filter {
            PoolFilter::Under(path) => paths.iter().any(|p| is_under(p, path)),
            PoolFilter::Prefix(prefix) => {
                let prefix = prefix.to_ascii_lowercase();
                paths.iter().any(|p| {
                    p.starts_with(&prefix)
                        || p.rsplit('/').next().is_some_and(|n| n.starts_with(&prefix))
                })
            }
        }
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
            let pools = self.index.members.get(&member).into_iter().flatten();
            out.extend(pools.map(|&at| self.entries[at as usize].name.clone()));
        }
        out.retain(|s| !s.is_empty());
        out.sort();
        out.dedup();
        out
    }

    /// The pools `query` selects, in path order.
    pub fn pools_matching(&self, query: &PoolQuery) -> Vec<&ResolvedPool> {
        let prefix = query
            .path_prefix
            .as_deref()
            .map(|p| p.trim().trim_end_matches('/').to_ascii_lowercase());
        self.pools
            .iter()
            .filter(|p| {
                prefix
                    .as_deref()
                    .is_none_or(|x| x.is_empty() || is_under(&p.path.to_ascii_lowercase(), x))
            })
            .filter(|p| {
                query.pool_type.as_deref().is_none_or(|t| {
                    self.find(Kind::Pool, &p.name)
                        .and_then(|e| e.spec_str("type"))
                        .is_some_and(|x| x.eq_ignore_ascii_case(t))
                })
            })
            .filter(|p| {
                let effective = values(&p.dimensions);
                query.dimensions.iter().all(|(k, v)| {
                    effective
                        .iter()
                        .any(|(dk, dv)| dk.eq_ignore_ascii_case(k) && scalar_eq(dv, v))
                })
            })
            .collect()
    }

    /// `pool` and its ancestors, root first: the chain whose own settings make up the
    /// effective ones. A cycle (only in a hand-made model) ends the walk.
    pub fn pool_chain<'a>(&'a self, pool: &'a ResolvedPool) -> Vec<&'a ResolvedPool> {
        let mut chain: Vec<&ResolvedPool> = vec![pool];
        while let Some(parent) = chain
            .last()
            .and_then(|p| p.parent.as_deref())
            .and_then(|n| self.pools.get(n))
        {
            if chain.iter().any(|c| c.name == parent.name) {
                break;
            }
            chain.push(parent);
        }
        chain.reverse();
        chain
    }

    /// The effective `properties` or `dimensions` (`key`) of `pool`, each with the pool of
    /// its chain that sets it (the nearest wins).
    pub fn settings(&self, pool: &ResolvedPool, key: &str) -> BTreeMap<String, Setting> {
        let mut out = BTreeMap::new();
        for p in self.pool_chain(pool) {
            let own = self
                .find(Kind::Pool, &p.name)
                .and_then(|e| e.spec_get(key))
                .and_then(Json::as_object);
            for (k, v) in own.into_iter().flatten() {
                out.insert(
                    k.clone(),
                    Setting {
                        value: v.clone(),
                        from: p.name.clone(),
                        inherited: p.name != pool.name,
                    },
                );
            }
        }
        out
    }

    /// The pools whose parent is `pool`, in path order.
    pub fn children_of<'a>(
        &'a self,
        pool: &'a ResolvedPool,
    ) -> impl Iterator<Item = &'a ResolvedPool> {
        self.pools
            .iter()
            .filter(move |c| c.parent.as_deref() == Some(pool.name.as_str()))
    }

    /// Devices whose pool is `pool` itself, by name.
    pub fn members_of(&self, pool: &ResolvedPool) -> Vec<&Entry> {
        self.at(&self.direct, &pool.path)
    }

    /// The devices `map` lists under `path` (any case).
    fn at(&self, map: &HashMap<String, Vec<u32>>, path: &str) -> Vec<&Entry> {
        map.get(&path.to_ascii_lowercase())
            .map(|v| v.iter().map(|&at| &self.entries[at as usize]).collect())
            .unwrap_or_default()
    }

    /// Devices whose pool is the one at `path` or one below it, by name.
    pub fn members_under(&self, path: &str) -> Vec<&Entry> {
        self.at(&self.under, path)
    }

    /// `pool`'s declared capacity against the guests among its members and those of the pools
    /// below it. Hosts (physical devices) provide capacity rather than use it: only `vm` and
    /// `lxc` guests add cores, memory and disks; every member counts as a device.
    pub fn capacity_use(&self, pool: &ResolvedPool) -> CapacityUse {
        let mut usage = Amounts {
            cores: Some(0),
            memory_mib: Some(0),
            storage_gib: Some(0),
            devices: Some(0),
        };
        for d in self.members_under(&pool.path) {
            usage.devices = usage.devices.map(|c| c + 1);
            if !matches!(d.spec_str("type"), Some("vm" | "lxc")) {
                continue;
            }
            let num = |k: &str| d.spec_get(k).and_then(Json::as_u64).unwrap_or(0);
            let disks: u64 = d
                .spec_get("disks")
                .and_then(Json::as_array)
                .into_iter()
                .flatten()
                .filter_map(|disk| disk.get("sizeGiB").and_then(Json::as_u64))
                .sum();
            usage.cores = usage.cores.map(|c| c + num("cores"));
            usage.memory_mib = usage.memory_mib.map(|c| c + num("memoryMiB"));
            usage.storage_gib = usage.storage_gib.map(|c| c + disks);
        }
        let capacity = self
            .find(Kind::Pool, &pool.name)
            .and_then(|e| e.spec_get("capacity"))
            .map(|c| {
                let num = |k: &str| c.get(k).and_then(Json::as_u64);
                Amounts {
                    cores: num("cores"),
                    memory_mib: num("memoryMiB"),
                    storage_gib: num("storageGiB"),
                    devices: num("devices"),
                }
            });
        let over = capacity.as_ref().map(|cap| {
            [
                ("cores", cap.cores, usage.cores),
                ("memoryMiB", cap.memory_mib, usage.memory_mib),
                ("storageGiB", cap.storage_gib, usage.storage_gib),
                ("devices", cap.devices, usage.devices),
            ]
            .into_iter()
            .filter(|(_, c, u)| matches!((c, u), (Some(c), Some(u)) if u > c))
            .map(|(k, _, _)| k)
            .collect()
        });
        CapacityUse {
            capacity,
            usage,
            over,
        }
    }

    /// Where a new guest needing `need` (cores, memory, storage; `devices` is ignored: it
    /// is one) could go among the pools `query` selects: each pool's declared capacity less
    /// what its members use. A pool fits when every amount asked for is declared and free,
    /// and one more device stays within a declared device count; an amount not declared is
    /// not known to be free, so the pool does not fit and says so. Fitting pools first, then
    /// by most free memory, cores and storage left after the guest, then by path.
    pub fn placements(&self, query: &PoolQuery, need: &Amounts) -> Vec<Placement<'_>> {
        let mut out: Vec<Placement<'_>> = self
            .pools_matching(query)
            .into_iter()
            .map(|pool| {
                let used = self.capacity_use(pool);
                let cap = used.capacity.clone().unwrap_or_default();
                let minus =
                    |c: Option<u64>, u: Option<u64>| c.map(|c| c.saturating_sub(u.unwrap_or(0)));
                let free = Amounts {
                    cores: minus(cap.cores, used.usage.cores),
                    memory_mib: minus(cap.memory_mib, used.usage.memory_mib),
                    storage_gib: minus(cap.storage_gib, used.usage.storage_gib),
                    devices: minus(cap.devices, used.usage.devices),
                };
                let (fits, reasons) = fit(
                    &[
                        ("cores", need.cores, free.cores, cap.cores),
                        (
                            "memoryMiB",
                            need.memory_mib,
                            free.memory_mib,
                            cap.memory_mib,
                        ),
                        (
                            "storageGiB",
                            need.storage_gib,
                            free.storage_gib,
                            cap.storage_gib,
                        ),
                        ("devices", cap.devices.map(|_| 1), free.devices, cap.devices),
                    ],
                    "declared",
                    "the pool declares no capacity for it",
                );
                Placement {
                    pool,
                    fits,
                    free,
                    reasons,
                }
            })
            .collect();
        out.sort_by(|a, b| {
            rank(a.fits, &a.free, need)
                .cmp(&rank(b.fits, &b.free, need))
                .then_with(|| a.pool.path.cmp(&b.pool.path))
        });
        out
    }

    /// Where a guest needing `need` (cores and memory; storage lives on Proxmox VE storages,
    /// not nodes) could run among the hosts the providers reported: each host's capacity less
    /// what the guests on it use (observed, else declared). An offline host, or one whose
    /// capacity the provider did not report, does not fit. Fitting hosts first, then by most
    /// memory and cores left, then by provider and name.
    pub fn host_placements(&self, need: &Amounts) -> Vec<HostPlacement<'_>> {
        let mut out: Vec<HostPlacement<'_>> = self
            .hosts
            .iter()
            .map(|host| {
                let (mut cores, mut memory) = (0u64, 0u64);
                for d in self.entries.iter().filter(|e| e.kind == Kind::Device) {
                    if !d.providers.contains(&host.provider) {
                        continue;
                    }
                    let side = |k: &str| {
                        let at = |v: &Option<Json>| v.as_ref().and_then(|v| v.get(k)).cloned();
                        at(&d.observed).or_else(|| at(&d.spec))
                    };
                    let node = side("proxmox").and_then(|p| p.get("node").cloned());
                    if node.as_ref().and_then(Json::as_str) != Some(host.name.as_str()) {
                        continue;
                    }
                    let num = |k: &str| side(k).as_ref().and_then(Json::as_u64).unwrap_or(0);
                    cores += num("cores");
                    memory += num("memoryMiB");
                }
                let free = Amounts {
                    cores: host.cores.map(|c| c.saturating_sub(cores)),
                    memory_mib: host.memory_mib.map(|m| m.saturating_sub(memory)),
                    storage_gib: None,
                    devices: None,
                };
                let (mut fits, mut reasons) = fit(
                    &[
                        ("cores", need.cores, free.cores, host.cores),
                        (
                            "memoryMiB",
                            need.memory_mib,
                            free.memory_mib,
                            host.memory_mib,
                        ),
                    ],
                    "on the node",
                    "the provider did not report this node's capacity",
                );
                if !host.online {
                    fits = false;
                    reasons.insert(0, "the node is not online".into());
                }
                HostPlacement {
                    host,
                    fits,
                    free,
                    reasons,
                }
            })
            .collect();
        out.sort_by(|a, b| {
            rank(a.fits, &a.free, need)
                .cmp(&rank(b.fits, &b.free, need))
                .then_with(|| {
                    (&a.host.provider, &a.host.name).cmp(&(&b.host.provider, &b.host.name))
                })
        });
        out
    }

    /// A device's effective dimensions: its own over those of its pool (and the pool's
    /// ancestors).
    pub fn device_dimensions(&self, device: &Entry) -> BTreeMap<String, Json> {
        let mut out: BTreeMap<String, Json> = device
            .spec_str("pool")
            .and_then(|p| self.resolve_pool(p))
            .map(|p| values(&p.dimensions))
            .unwrap_or_default();
        if let Some(own) = device.spec_get("dimensions").and_then(Json::as_object) {
            out.extend(own.iter().map(|(k, v)| (k.clone(), v.clone())));
        }
        out
    }

    /// The DHCP reservations that belong to `device`: the one of the same name, and those
    /// whose MAC is one of the device's interface MACs.
    pub fn reservations_of(&self, device: &Entry) -> Vec<&Entry> {
        self.named_and_by_mac(Kind::DhcpReservation, device, &self.index.reservation_macs)
            .into_iter()
            .map(|at| &self.entries[at as usize])
            .collect()
    }

    /// The device a reservation belongs to (the first by name).
    pub fn device_of_reservation(&self, reservation: &Entry) -> Option<&Entry> {
        let first = self.owners_of(reservation).into_iter().next()?;
        Some(&self.entries[first as usize])
    }

    /// A device's addresses and those of its reservations, sorted.
    pub fn device_ips(&self, device: &Entry) -> Vec<Ipv4Addr> {
        let mut ips = device.ips();
        for r in self.reservations_of(device) {
            ips.extend(r.ips());
        }
        ips.sort();
        ips.dedup();
        ips
    }

    /// Every resource that uses `ip`: where it is written, and devices through their
    /// reservations.
    pub fn ip_users(&self, ip: Ipv4Addr) -> Vec<IpUser<'_>> {
        let mut out: Vec<IpUser> = Vec::new();
        for &at in self.users_of(ip) {
            let entry = &self.entries[at as usize];
            let here: Vec<IpUse> = entry.ip_uses().into_iter().filter(|u| u.ip == ip).collect();
            if here.is_empty() {
                continue;
            }
            let fields: BTreeSet<String> = here.iter().map(|u| u.field.clone()).collect();
            let sides: BTreeSet<Side> = here.iter().map(|u| u.side).collect();
            out.push(IpUser {
                entry,
                fields: fields.into_iter().collect(),
                side: match sides.len() {
                    1 => sides.into_iter().next().unwrap_or(Side::Desired),
                    _ => Side::Both,
                },
            });
        }
        for device in self.devices_using(ip) {
            if out.iter().any(|u| std::ptr::eq(u.entry, device)) {
                continue;
            }
            let via: Vec<String> = self
                .reservations_of(device)
                .into_iter()
                .filter(|r| r.ips().contains(&ip))
                .map(|r| format!("via DhcpReservation/{}", r.name))
                .collect();
            if !via.is_empty() {
                out.push(IpUser {
                    entry: device,
                    fields: via,
                    side: Side::Desired,
                });
            }
        }
        out
    }

    /// Up to `n` addresses of `ip`'s /24 that nothing uses, nearest to it first, then sorted.
    pub fn free_near(&self, ip: Ipv4Addr, n: usize) -> Vec<Ipv4Addr> {
        let taken = &self.index.ips;
        let [a, b, c, d] = ip.octets();
        let mut nearby: Vec<u8> = (1..=254u8)
            .filter(|&x| x != d && !taken.contains_key(&Ipv4Addr::new(a, b, c, x)))
            .collect();
        nearby.sort_by_key(|&x| ((x as i32 - d as i32).abs(), x));
        nearby.truncate(n);
        nearby.sort();
        nearby
            .into_iter()
            .map(|x| Ipv4Addr::new(a, b, c, x))
            .collect()
    }
}

impl Entry {
    /// `metadata.labels` (none for a resource only seen live).
    pub fn labels(&self) -> &BTreeMap<String, String> {
        self.labels.as_ref().unwrap_or(&NO_LABELS)
    }

    /// Whether Git declares it.
    pub fn in_git(&self) -> bool {
        self.spec.is_some()
    }

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

    /// A field of the Git spec (`None` when null).
    pub fn spec_get(&self, key: &str) -> Option<&Json> {
        self.spec.as_ref()?.get(key).filter(|v| !v.is_null())
    }

    /// Every address this resource uses: in its Git spec and desired fields (desired) and in
    /// what was observed (observed), sorted.
    pub fn ip_uses(&self) -> Vec<IpUse> {
        let mut out = Vec::new();
        for (side, fields) in [
            (Side::Desired, &self.spec),
            (Side::Desired, &self.desired),
            (Side::Observed, &self.observed),
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

/// What an MCP server's entry says of its tools.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct McpTools {
    /// Whether it answered when observed; `None` when not observed.
    pub reachable: Option<bool>,
    /// The tools Git expects, sorted.
    pub expected: Option<Vec<String>>,
    /// All the tools it offered, sorted, when the provider reported them.
    pub offered: Option<Vec<String>>,
    /// The expected tools it did not offer; only known for a server that answered.
    pub missing: Option<Vec<String>>,
}

impl Entry {
    /// The host a route matches: its `host` field, else the host of its spec's match, else
    /// the first ``Host(`…`)`` of its raw rule.
    pub fn route_host(&self) -> Option<String> {
        let spec: Option<RouteSpec> = self
            .spec
            .clone()
            .and_then(|s| serde_json::from_value(s).ok());
        self.field_str("host")
            .map(str::to_string)
            .or_else(|| spec.as_ref().and_then(|s| s.match_key()).map(|(h, _)| h))
            .or_else(|| {
                let rule = self.field_str("rule")?;
                let start = rule.find("Host(`")? + 6;
                let len = rule[start..].find('`')?;
                Some(rule[start..start + len].to_string())
            })
    }

    /// An MCP server's expected tools against those it offered.
    pub fn mcp_tools(&self) -> McpTools {
        let strings = |v: Option<&Json>| -> Option<Vec<String>> {
            v.and_then(Json::as_array).map(|l| {
                let mut out: Vec<String> = l
                    .iter()
                    .filter_map(Json::as_str)
                    .map(str::to_string)
                    .collect();
                out.sort();
                out
            })
        };
        let reachable = self
            .observed
            .as_ref()
            .and_then(|o| o.get("reachable"))
            .and_then(Json::as_bool);
        let expected = strings(self.spec_get("expectedTools"))
            .or_else(|| strings(self.desired.as_ref().and_then(|d| d.get("expectedTools"))));
        let offered = strings(self.details.as_ref().and_then(|d| d.get("tools")));
        // What it offered of the expected ones: all its tools, else the observed subset.
        let offered_expected = offered.clone().or_else(|| {
            (reachable == Some(true))
                .then(|| strings(self.observed.as_ref().and_then(|o| o.get("expectedTools"))))
                .flatten()
        });
        let missing = match (&expected, &offered_expected) {
            (Some(e), Some(o)) if reachable == Some(true) => {
                Some(e.iter().filter(|t| !o.contains(t)).cloned().collect())
            }
            _ => None,
        };
        McpTools {
            reachable,
            expected,
            offered,
            missing,
        }
    }
}

/// `path` is `base` or below it (both lower case).
fn is_under(path: &str, base: &str) -> bool {
    path == base
        || path
            .strip_prefix(base)
            .is_some_and(|rest| rest.starts_with('/'))
}

/// A scalar JSON value equal to `text` as written (`true`, `24`, `basement-rack`),
/// case-insensitive.
pub fn scalar_eq(value: &Json, text: &str) -> bool {
    match value {
        Json::String(s) => s.eq_ignore_ascii_case(text),
        other => other.to_string().eq_ignore_ascii_case(text),
    }
}

/// Pool properties or dimensions as JSON values.
pub fn values(map: &BTreeMap<String, crate::model::Value>) -> BTreeMap<String, Json> {
    map.iter()
        .map(|(k, v)| (k.clone(), serde_json::to_value(v).unwrap_or_default()))
        .collect()
}

/// Collects the IPv4 addresses in string values under `path`. Subnets (`10.0.1.0/24`) are not
/// uses of an address.
fn walk(value: &Json, path: &mut String, side: Side, out: &mut Vec<IpUse>) {
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ip(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }

    /// Two-level pools, a guest and a host below them, a reservation by MAC, a live-only
    /// reservation.
    fn lab() -> Lab {
        let model = ReconciledModel::from_stored(json!({"version": 1, "resources": [
            {"kind": "Pool", "name": "homelab", "labels": {}, "providers": [],
             "spec": {"type": "compute", "dimensions": {"site": "basement"},
                      "properties": {"backup": "daily"},
                      "capacity": {"cores": 4, "devices": 5}},
             "status": "unobserved", "deviations": 0},
            {"kind": "Pool", "name": "gpu", "labels": {}, "providers": ["proxmox"],
             "spec": {"type": "compute", "parent": "homelab", "dimensions": {"gpu": true},
                      "properties": {"backup": "weekly"}},
             "observed": {"members": ["qemu/301"]},
             "status": "synced", "deviations": 0},
            {"kind": "Device", "name": "whisper", "labels": {"role": "inference"},
             "providers": ["proxmox"],
             "spec": {"type": "vm", "pool": "gpu", "cores": 6, "memoryMiB": 8192,
                      "disks": [{"sizeGiB": 40}, {"sizeGiB": 10}],
                      "interfaces": [{"mac": "AA:BB:CC:00:00:01"}],
                      "proxmox": {"vmid": 301}, "dimensions": {"vram_gb": 24}},
             "status": "synced", "deviations": 0},
            {"kind": "Device", "name": "pve1", "labels": {}, "providers": [],
             "spec": {"type": "physical", "pool": "/homelab", "cores": 32, "ip": "10.0.1.2"},
             "status": "unobserved", "deviations": 0},
            {"kind": "DhcpReservation", "name": "whisper-nic", "labels": {},
             "providers": ["kea"],
             "spec": {"subnet": "10.0.1.0/24", "ip": "10.0.1.30", "mac": "aa:bb:cc:00:00:01"},
             "observed": {"ip": "10.0.1.31", "mac": "aa:bb:cc:00:00:01"},
             "status": "out-of-sync", "deviations": 1},
            {"kind": "DhcpReservation", "name": "printer", "providers": ["kea"],
             "observed": {"ip": "10.0.1.40", "mac": "aa:bb:cc:00:00:09"},
             "status": "out-of-sync", "deviations": 1},
        ]}))
        .unwrap();
        Lab::new(model)
    }

    /// The indexes answer what a look at every entry answers: on a lab where names differ only
    /// in case, reservations share a device's name or MAC (in either case), several devices
    /// share a MAC, addresses are used on both sides and by several kinds, and Proxmox pools
    /// list guests as members.
    #[test]
    fn indexed_answers_equal_those_of_a_full_scan() {
        let mut resources = Vec::new();
        let mac = |i: usize| format!("AA:bb:cc:00:00:{:02X}", i % 13);
        for i in 0..60usize {
            let name = if i % 7 == 0 {
                format!("Dev-{i}")
            } else {
                format!("dev-{i}")
            };
            resources.push(json!({"kind": "Device", "name": name, "providers": ["pve"],
                "spec": {"type": "vm", "ip": format!("10.0.1.{}", i % 40),
                         "interfaces": [{"mac": mac(i)}], "proxmox": {"vmid": 100 + i}},
                "status": if i % 3 == 0 { "out-of-sync" } else { "synced" }, "deviations": 0}));
        }
        resources.push(json!({"kind": "Device", "name": "DEV-1", "status": "unknown"}));
        resources.push(json!({"kind": "DhcpReservation", "name": "a-no-ip", "status": "unknown"}));
        resources.push(json!({"kind": "DhcpReservation", "name": "b-not-an-ip",
            "spec": {"ip": "dynamic"}, "status": "unknown"}));
        for i in 0..90usize {
            let name = if i % 5 == 0 {
                format!("dev-{i}")
            } else {
                format!("res-{i}")
            };
            resources.push(json!({"kind": "DhcpReservation", "name": name, "providers": ["kea"],
                "spec": {"ip": format!("10.0.1.{}", (i * 3) % 97), "mac": mac(i * 2).to_lowercase()},
                "observed": {"ip": format!("10.0.1.{}", (i * 5) % 89), "hw-address": mac(i)},
                "status": "synced", "deviations": 0}));
        }
        for (i, members) in [["qemu/101", "qemu/102"], ["qemu/102", "lxc/7"]]
            .iter()
            .enumerate()
        {
            resources.push(
                json!({"kind": "Pool", "name": format!("pool-{i}"), "providers": ["pve"],
                "observed": {"members": members}, "desired": {"members": [members[0]]},
                "status": "synced", "deviations": 0}),
            );
        }
        resources.push(json!({"kind": "Route", "name": "web",
            "spec": {"servers": [{"url": "http://10.0.1.5:8080/"}]}, "status": "synced"}));
        let lab = Lab::new(
            ReconciledModel::from_stored(json!({"version": 1, "resources": resources})).unwrap(),
        );
        let all = lab.entries();
        let scan = |kind: Kind| all.iter().filter(move |e| e.kind == kind);
        let owns = |d: &Entry, r: &Entry| {
            r.name == d.name || r.macs().iter().any(|m| d.macs().contains(m))
        };
        for e in all {
            let first = scan(e.kind)
                .find(|x| x.name.eq_ignore_ascii_case(&e.name))
                .unwrap();
            let lower = e.name.to_lowercase();
            // `Dev-1`: neither `DEV-1` nor `dev-1` as written.
            let capital = lower[..1].to_uppercase() + &lower[1..];
            for query in [e.name.to_uppercase(), capital] {
                let exact = scan(e.kind).find(|x| x.name == query);
                let found = lab.find(e.kind, &query).unwrap();
                assert!(std::ptr::eq(found, exact.unwrap_or(first)), "{query}");
            }
            assert!(std::ptr::eq(
                lab.find(e.kind, &e.name).unwrap(),
                scan(e.kind).find(|x| x.name == e.name).unwrap()
            ));
        }
        assert!(lab.find(Kind::Route, "dev-1").is_none());
        for d in scan(Kind::Device) {
            let want: Vec<&str> = scan(Kind::DhcpReservation)
                .filter(|r| owns(d, r))
                .map(|r| r.name.as_str())
                .collect();
            let got: Vec<&str> = lab
                .reservations_of(d)
                .iter()
                .map(|r| r.name.as_str())
                .collect();
            assert_eq!(got, want, "{}", d.name);
            let pools: Vec<String> = scan(Kind::Pool)
                .filter(|p| {
                    d.guest_id().is_some_and(|g| {
                        [&p.desired, &p.observed].into_iter().flatten().any(|f| {
                            f["members"]
                                .as_array()
                                .is_some_and(|m| m.iter().any(|v| v.as_str() == Some(&g)))
                        })
                    })
                })
                .map(|p| p.name.clone())
                .collect();
            assert_eq!(lab.pools_of(d), pools, "{}", d.name);
        }
        for r in scan(Kind::DhcpReservation) {
            let want = scan(Kind::Device).find(|d| owns(d, r)).map(|d| &d.name);
            assert_eq!(
                lab.device_of_reservation(r).map(|d| &d.name),
                want,
                "{}",
                r.name
            );
        }
        let mut by_address: Vec<&Entry> = scan(Kind::DhcpReservation).collect();
        by_address.sort_by_key(|r| {
            let ip = r.field_str("ip").and_then(|s| s.parse::<Ipv4Addr>().ok());
            (ip.is_none(), ip, r.name.clone())
        });
        let names = |v: Vec<&Entry>| v.into_iter().map(|e| e.name.clone()).collect::<Vec<_>>();
        assert_eq!(
            names(lab.reservations_by_address(None).collect()),
            names(by_address)
        );
        for status in Status::ALL {
            let want: Vec<&Entry> = lab
                .reservations_by_address(None)
                .filter(|r| r.status == status)
                .collect();
            assert_eq!(
                names(lab.reservations_by_address(Some(status)).collect()),
                names(want)
            );
        }
        let mut counted = 0;
        for (kind, status, n) in lab.counts() {
            assert_eq!(
                n as usize,
                scan(kind).filter(|e| e.status == status).count()
            );
            counted += n as usize;
        }
        assert_eq!(counted, all.len());
        let taken: BTreeSet<Ipv4Addr> = all.iter().flat_map(|e| e.ips()).collect();
        for last in 0..=255u8 {
            let ip = Ipv4Addr::new(10, 0, 1, last);
            let users: Vec<&str> = all
                .iter()
                .filter(|e| e.ips().contains(&ip))
                .map(|e| e.name.as_str())
                .collect();
            let via: Vec<&str> = scan(Kind::Device)
                .filter(|d| !d.ips().contains(&ip))
                .filter(|d| {
                    scan(Kind::DhcpReservation).any(|r| owns(d, r) && r.ips().contains(&ip))
                })
                .map(|d| d.name.as_str())
                .collect();
            let got: Vec<&str> = lab
                .ip_users(ip)
                .iter()
                .map(|u| u.entry.name.as_str())
                .collect();
            assert_eq!(got, [users, via].concat(), "{ip}");
            let device = scan(Kind::Device).find(|d| lab.device_ips(d).contains(&ip));
            assert_eq!(
                lab.find_device(&ip.to_string()).map(|d| &d.name),
                device.map(|d| &d.name),
                "{ip}"
            );
            let mut free: Vec<u8> = (1..=254u8)
                .filter(|&x| x != last && !taken.contains(&Ipv4Addr::new(10, 0, 1, x)))
                .collect();
            free.sort_by_key(|&x| ((x as i32 - last as i32).abs(), x));
            free.truncate(5);
            free.sort();
            let free: Vec<Ipv4Addr> = free
                .into_iter()
                .map(|x| Ipv4Addr::new(10, 0, 1, x))
                .collect();
            assert_eq!(lab.free_near(ip, 5), free, "{ip}");
        }
    }

    #[test]
    fn nodes_rank_by_what_their_guests_leave_and_unknowns_do_not_fit() {
        let guest = |name: &str, observed: Json, spec: Option<Json>| {
            json!({"kind": "Device", "name": name, "labels": {}, "providers": ["pve"],
                   "spec": spec, "observed": observed, "status": "synced", "deviations": 0})
        };
        let model = ReconciledModel::from_stored(json!({"version": 1, "resources": [
            // Observed wins over declared; a guest Git declares only counts where it is meant.
            guest("a", json!({"proxmox": {"node": "n1"}, "cores": 8, "memoryMiB": 32768}),
                  Some(json!({"proxmox": {"node": "n1"}, "cores": 2, "memoryMiB": 1024}))),
            guest("b", Json::Null,
                  Some(json!({"proxmox": {"node": "n2"}, "cores": 4, "memoryMiB": 8192}))),
        ], "hosts": [
            {"provider": "pve", "name": "n1", "online": true, "cores": 16, "memoryMiB": 65536},
            {"provider": "pve", "name": "n2", "online": true, "cores": 16, "memoryMiB": 65536},
            {"provider": "pve", "name": "n3", "online": false, "cores": 64, "memoryMiB": 524288},
            {"provider": "pve", "name": "n4", "online": true},
        ]}))
        .unwrap();
        let lab = Lab::new(model);
        let need = Amounts {
            cores: Some(4),
            memory_mib: Some(16384),
            ..Amounts::default()
        };
        let ranked: Vec<(&str, bool, Option<u64>)> = lab
            .host_placements(&need)
            .iter()
            .map(|p| (p.host.name.as_str(), p.fits, p.free.memory_mib))
            .collect();
        assert_eq!(
            ranked,
            [
                ("n2", true, Some(57344)),
                ("n1", true, Some(32768)),
                ("n3", false, Some(524288)),
                ("n4", false, None)
            ]
        );
        let placements = lab.host_placements(&need);
        assert_eq!(placements[2].reasons[0], "the node is not online");
        assert_eq!(
            placements[3].reasons[0],
            "cores: the provider did not report this node's capacity, so it is not known to be free"
        );
    }

    #[test]
    fn placements_rank_what_fits_and_say_why_the_rest_does_not() {
        let pool = |name: &str, parent: Option<&str>, spec: Json| {
            let mut spec = spec;
            spec["type"] = json!("compute");
            if let Some(p) = parent {
                spec["parent"] = json!(p);
            }
            json!({"kind": "Pool", "name": name, "labels": {}, "providers": [], "spec": spec,
                   "status": "unobserved", "deviations": 0})
        };
        let vm = |name: &str, pool: &str, cores: u64, memory: u64| {
            json!({"kind": "Device", "name": name, "labels": {}, "providers": [],
                   "spec": {"type": "vm", "pool": pool, "cores": cores, "memoryMiB": memory},
                   "status": "synced", "deviations": 0})
        };
        let model = ReconciledModel::from_stored(json!({"version": 1, "resources": [
            pool("lab", None, json!({"capacity": {"cores": 64, "memoryMiB": 262144}})),
            pool("gpu", Some("lab"), json!({"dimensions": {"gpu": true},
                "capacity": {"cores": 16, "memoryMiB": 65536, "devices": 2}})),
            pool("small", Some("lab"), json!({"capacity": {"cores": 8, "memoryMiB": 8192}})),
            pool("open", Some("lab"), json!({})),
            vm("whisper", "gpu", 12, 49152),
            vm("box", "small", 2, 4096),
        ]}))
        .unwrap();
        let lab = Lab::new(model);
        let need = Amounts {
            cores: Some(4),
            memory_mib: Some(16384),
            ..Amounts::default()
        };
        let all = lab.placements(&PoolQuery::default(), &need);
        let shown: Vec<(&str, bool)> = all.iter().map(|p| (p.pool.name.as_str(), p.fits)).collect();
        // lab: 50 cores and 200 GiB left after the guest; gpu: 0 cores, 0 MiB left; of those
        // that do not fit, a pool with declared capacity before one that declares none.
        assert_eq!(
            shown,
            vec![
                ("lab", true),
                ("gpu", true),
                ("small", false),
                ("open", false)
            ]
        );
        assert_eq!(
            all[1].reasons,
            vec![
                "cores: 4 of 4 free (16 declared)",
                "memoryMiB: 16384 of 16384 free (65536 declared)",
                "devices: 1 of 1 free (2 declared)",
            ]
        );
        assert_eq!(
            all[2].reasons[1],
            "memoryMiB: needs 16384, only 4096 of 8192 free"
        );
        assert!(
            all[3].reasons[0].contains("declares no capacity"),
            "{:?}",
            all[3]
        );
        // Dimensions narrow the pools: only gpu (whisper's pool) has gpu=true.
        let gpu = lab.placements(
            &PoolQuery {
                dimensions: vec![("gpu".into(), "true".into())],
                ..PoolQuery::default()
            },
            &need,
        );
        assert_eq!(gpu.len(), 1);
        assert_eq!(gpu[0].pool.name, "gpu");
    }

    #[test]
    fn addresses_are_found_in_urls_but_not_subnets() {
        assert_eq!(addresses_in("10.0.1.5"), vec![ip("10.0.1.5")]);
        assert_eq!(
            addresses_in("http://10.0.1.201:3000/x and 10.0.2.7."),
            vec![ip("10.0.1.201"), ip("10.0.2.7")]
        );
        assert!(addresses_in("10.0.1.0/24").is_empty());
        assert!(addresses_in("v1.2.3.4").is_empty());
        assert!(addresses_in("1.2.3").is_empty());
    }

    #[test]
    fn devices_are_found_by_name_or_by_their_reservations_address() {
        let lab = lab();
        assert_eq!(lab.find_device("WHISPER").unwrap().name, "whisper");
        assert_eq!(lab.find_device("10.0.1.31").unwrap().name, "whisper");
        assert_eq!(lab.find_device(" 10.0.1.2 ").unwrap().name, "pve1");
        assert!(lab.find_device("10.0.1.40").is_none());
        let whisper = lab.find(Kind::Device, "whisper").unwrap();
        let names = |l: Vec<&Entry>| l.iter().map(|e| e.name.clone()).collect::<Vec<_>>();
        assert_eq!(names(lab.reservations_of(whisper)), ["whisper-nic"]);
        let nic = lab.find(Kind::DhcpReservation, "whisper-nic").unwrap();
        assert_eq!(lab.device_of_reservation(nic).unwrap().name, "whisper");
    }

    #[test]
    fn device_filters_combine_pools_labels_and_inherited_dimensions() {
        let lab = lab();
        let names = |f: DeviceFilter| {
            lab.devices(&f)
                .iter()
                .map(|e| e.name.clone())
                .collect::<Vec<_>>()
        };
        let under = |p: &str| lab.pool_filter(p);
        assert_eq!(
            names(DeviceFilter {
                pool: under("homelab"),
                ..Default::default()
            }),
            ["pve1", "whisper"]
        );
        assert_eq!(
            names(DeviceFilter {
                pool: under("/homelab/GPU"),
                ..Default::default()
            }),
            ["whisper"]
        );
        assert_eq!(
            names(DeviceFilter {
                pool: under("/home*"),
                ..Default::default()
            }),
            ["pve1", "whisper"]
        );
        assert!(lab.pool_filter("nowhere").is_none());
        let dim = |k: &str, v: &str| Some((k.to_string(), v.to_string()));
        assert_eq!(
            names(DeviceFilter {
                dimension: dim("site", "BASEMENT"),
                ..Default::default()
            }),
            ["pve1", "whisper"]
        );
        assert_eq!(
            names(DeviceFilter {
                dimension: dim("vram_gb", "24"),
                ..Default::default()
            }),
            ["whisper"]
        );
        assert_eq!(
            names(DeviceFilter {
                label: dim("Role", "inference"),
                ..Default::default()
            }),
            ["whisper"]
        );
        assert_eq!(
            names(DeviceFilter {
                status: Some(Status::Unobserved),
                device_type: Some("PHYSICAL".into()),
                ..Default::default()
            }),
            ["pve1"]
        );
        let whisper = lab.find(Kind::Device, "whisper").unwrap();
        assert_eq!(lab.pools_of(whisper), ["gpu"]);
        assert_eq!(lab.pool_path_of(whisper).as_deref(), Some("/homelab/gpu"));
    }

    #[test]
    fn pool_chains_settle_inherited_settings_and_capacity() {
        let lab = lab();
        let gpu = lab.resolve_pool("/HOMELAB/gpu/").unwrap();
        let chain: Vec<&str> = lab
            .pool_chain(gpu)
            .iter()
            .map(|p| p.name.as_str())
            .collect();
        assert_eq!(chain, ["homelab", "gpu"]);
        let props = lab.settings(gpu, "properties");
        assert_eq!(props["backup"].value, json!("weekly"));
        assert!(!props["backup"].inherited);
        let dims = lab.settings(gpu, "dimensions");
        assert_eq!(dims["site"].from, "homelab");
        assert!(dims["site"].inherited);
        let root = lab.resolve_pool("homelab").unwrap();
        let children: Vec<&str> = lab.children_of(root).map(|p| p.name.as_str()).collect();
        assert_eq!(children, ["gpu"]);
        assert_eq!(lab.members_of(root).len(), 1);
        assert_eq!(lab.members_under("/homelab").len(), 2);
        // The host counts as a device but adds no cores: only the guest does.
        let used = lab.capacity_use(root);
        assert_eq!(used.usage.cores, Some(6));
        assert_eq!(used.usage.memory_mib, Some(8192));
        assert_eq!(used.usage.storage_gib, Some(50));
        assert_eq!(used.usage.devices, Some(2));
        assert_eq!(used.over, Some(vec!["cores"]));
        assert_eq!(lab.capacity_use(gpu).over, None);
        let wanted = |q: PoolQuery| {
            lab.pools_matching(&q)
                .iter()
                .map(|p| p.name.clone())
                .collect::<Vec<_>>()
        };
        assert_eq!(
            wanted(PoolQuery {
                dimensions: vec![("gpu".into(), "TRUE".into())],
                ..Default::default()
            }),
            ["gpu"]
        );
        assert_eq!(
            wanted(PoolQuery {
                path_prefix: Some("/homelab/".into()),
                ..Default::default()
            }),
            ["homelab", "gpu"]
        );
        assert!(wanted(PoolQuery {
            path_prefix: Some("/home".into()),
            ..Default::default()
        })
        .is_empty());
    }

    #[test]
    fn routes_have_a_host_and_mcp_servers_miss_what_they_did_not_offer() {
        let entry = |v: Json| serde_json::from_value::<Entry>(v).unwrap();
        let route = |spec: Json| entry(json!({"kind": "Route", "name": "r", "spec": spec}));
        let backend = json!({"urls": ["http://10.0.1.5:3000"]});
        assert_eq!(
            route(json!({"host": "A.lab", "backend": backend}))
                .route_host()
                .as_deref(),
            Some("A.lab")
        );
        let raw = route(json!({"rule": "Host(`b.lab`) && PathPrefix(`/x`)", "backend": backend}));
        assert_eq!(raw.route_host().as_deref(), Some("b.lab"));
        let live = entry(json!({"kind": "Route", "name": "r",
            "observed": {"rule": "PathPrefix(`/x`) || Host(`c.lab`)"}}));
        assert_eq!(live.route_host().as_deref(), Some("c.lab"));

        let server = |observed: Json, details: Json| {
            entry(json!({"kind": "McpServer", "name": "m",
                "spec": {"expectedTools": ["b", "a", "c"]},
                "observed": observed, "details": details}))
            .mcp_tools()
        };
        let answered = server(json!({"reachable": true}), json!({"tools": ["c", "a"]}));
        assert_eq!(answered.expected.unwrap(), ["a", "b", "c"]);
        assert_eq!(answered.offered.unwrap(), ["a", "c"]);
        assert_eq!(answered.missing.unwrap(), ["b"]);
        // Without the full list, the observed subset of the expected ones stands in.
        let subset = server(
            json!({"reachable": true, "expectedTools": ["a"]}),
            json!({}),
        );
        assert_eq!(subset.missing.unwrap(), ["b", "c"]);
        let silent = server(json!({"reachable": false}), json!({"tools": ["a"]}));
        assert_eq!((silent.reachable, silent.missing), (Some(false), None));
    }

    #[test]
    fn ip_users_include_devices_through_their_reservations() {
        let lab = lab();
        let users = lab.ip_users(ip("10.0.1.31"));
        let found: Vec<(&str, Side, Vec<String>)> = users
            .iter()
            .map(|u| (u.entry.name.as_str(), u.side, u.fields.clone()))
            .collect();
        assert_eq!(
            found,
            [
                ("whisper-nic", Side::Observed, vec!["spec.ip".to_string()]),
                (
                    "whisper",
                    Side::Desired,
                    vec!["via DhcpReservation/whisper-nic".to_string()]
                ),
            ]
        );
        assert!(lab.ip_users(ip("10.0.1.0")).is_empty());
        assert_eq!(
            lab.free_near(ip("10.0.1.31"), 3),
            [ip("10.0.1.29"), ip("10.0.1.32"), ip("10.0.1.33")]
        );
    }
}
