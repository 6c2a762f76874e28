//! Checks across documents: names, addresses, references, the pool hierarchy, routes and MCP
//! registrations. Each check reports at the exact field and points at the other party.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::Ipv4Addr;

use super::diagnostic::{Diagnostic, Related};
use super::parse::{AnyDoc, Parsed, Parsing};
use super::suggest::did_you_mean;
use crate::model::{parse_fingerprint, TlsConfig};
use crate::model::{
    ConfigDoc, DeviceDoc, DhcpReservationDoc, Kind, MacAddress, McpServerDoc, McpTransport,
    PoolDoc, PoolTree, PoolTreeError, RouteDoc, ServiceProtocol,
};

/// Documents of one repository, split by kind, each with its parse record.
struct Docs<'a> {
    parsing: &'a Parsing<'a>,
    pools: Vec<(&'a Parsed<'a>, &'a PoolDoc)>,
    devices: Vec<(&'a Parsed<'a>, &'a DeviceDoc)>,
    reservations: Vec<(&'a Parsed<'a>, &'a DhcpReservationDoc)>,
    routes: Vec<(&'a Parsed<'a>, &'a RouteDoc)>,
    mcp: Vec<(&'a Parsed<'a>, &'a McpServerDoc)>,
    config: Vec<(&'a Parsed<'a>, &'a ConfigDoc)>,
}

impl<'a> Docs<'a> {
    fn split(parsing: &'a Parsing) -> Self {
        let mut d = Docs {
            parsing,
            pools: vec![],
            devices: vec![],
            reservations: vec![],
            routes: vec![],
            mcp: vec![],
            config: vec![],
        };
        for p in &parsing.docs {
            match &p.doc {
                AnyDoc::Pool(x) => d.pools.push((p, &**x)),
                AnyDoc::Device(x) => d.devices.push((p, &**x)),
                AnyDoc::DhcpReservation(x) => d.reservations.push((p, &**x)),
                AnyDoc::Route(x) => d.routes.push((p, &**x)),
                AnyDoc::McpServer(x) => d.mcp.push((p, &**x)),
                AnyDoc::Config(x) => d.config.push((p, &**x)),
            }
        }
        d
    }
}

/// Runs every cross-document check.
pub fn run(parsing: &Parsing, diags: &mut Vec<Diagnostic>) {
    let docs = Docs::split(parsing);
    duplicate_names(&parsing.docs, diags);
    reconcile_options(&parsing.docs, diags);
    pools(&docs, diags);
    devices(&docs, diags);
    reservations(&docs, diags);
    address_claims(&docs, diags);
    routes(&docs, diags);
    mcp_servers(&docs, diags);
    config(&docs, diags);
}

/// Ignore paths name fields of the document's `spec`.
fn field_paths(p: &Parsed, at: &str, fields: &[String], diags: &mut Vec<Diagnostic>) {
    for (i, f) in fields.iter().enumerate() {
        if !f.starts_with("spec.") || f.len() <= "spec.".len() {
            diags.push(
                p.error(
                    "invalid-value",
                    &format!("{at}[{i}]"),
                    format!("`{f}` is not a field path under spec"),
                )
                .help("write it like spec.hostname or spec.interfaces"),
            );
        }
    }
}

fn reconcile_options(parsed: &[Parsed], diags: &mut Vec<Diagnostic>) {
    for p in parsed {
        if let Some(opts) = &p.doc.metadata().reconcile {
            field_paths(
                p,
                "metadata.reconcile.ignoreFields",
                &opts.ignore_fields,
                diags,
            );
            if opts.reason.trim().is_empty() {
                diags.push(p.error(
                    "missing-field",
                    "metadata.reconcile.reason",
                    "say why in `reason`: the plan shows it",
                ));
            }
        }
    }
}

fn duplicate_names(parsed: &[Parsed], diags: &mut Vec<Diagnostic>) {
    let mut seen: HashMap<(Kind, &str), &Parsed> = HashMap::new();
    for p in parsed {
        match seen.get(&(p.doc.kind(), p.doc.name())) {
            Some(first) => diags.push(
                p.error(
                    "duplicate-name",
                    "metadata.name",
                    format!("{} `{}` is declared twice", p.doc.kind(), p.doc.name()),
                )
                .related(first.at("metadata.name"), "first declared here")
                .help("names must be unique per kind; rename or remove one of them"),
            ),
            None => {
                seen.insert((p.doc.kind(), p.doc.name()), p);
            }
        }
    }
}

fn pools(docs: &Docs, diags: &mut Vec<Diagnostic>) {
    let names: HashSet<&str> = docs
        .pools
        .iter()
        .map(|(_, d)| d.metadata.name.as_str())
        .collect();
    for (p, pool) in &docs.pools {
        if let Some(parent) = &pool.spec.parent {
            if !names.contains(parent.as_str()) && !docs.parsing.failed(Kind::Pool, parent) {
                let mut d = p.error(
                    "unknown-pool",
                    "spec.parent",
                    format!("parent pool `{parent}` is not declared"),
                );
                d.help = Some(match did_you_mean(parent, names.iter().copied()) {
                    Some(s) => format!("did you mean `{s}`?"),
                    None => {
                        "declare a Pool with that name, or remove `parent` to make this a root pool"
                            .into()
                    }
                });
                diags.push(d);
            }
        }
    }
    // Cycles and depth, from the model's own resolution (each pool walked once). A cycle is
    // reported once, at its member declared first.
    let position: HashMap<&str, usize> = docs
        .pools
        .iter()
        .enumerate()
        .map(|(i, (_, d))| (d.metadata.name.as_str(), i))
        .collect();
    let (_, errors) = PoolTree::build_partial(docs.pools.iter().map(|(_, d)| *d));
    for error in errors {
        match &error {
            PoolTreeError::Cycle { cycle } => {
                let mut cycle = cycle[..cycle.len() - 1].to_vec();
                let first = (0..cycle.len())
                    .min_by_key(|&i| position[cycle[i].as_str()])
                    .unwrap_or(0);
                cycle.rotate_left(first);
                cycle.push(cycle[0].clone());
                let (p, _) = docs.pools[position[cycle[0].as_str()]];
                let mut d = p.error(
                    "pool-cycle",
                    "spec.parent",
                    format!("pools form a cycle: {}", cycle.join(" -> ")),
                );
                for member in &cycle[1..cycle.len() - 1] {
                    let (mp, _) = docs.pools[position[member.as_str()]];
                    d = d.related(
                        mp.at("spec.parent"),
                        format!("`{member}` continues the cycle here"),
                    );
                }
                diags.push(
                    d.help("one pool in the cycle must be a root (no parent) or point elsewhere"),
                );
            }
            PoolTreeError::TooDeep { pool } => {
                let (p, _) = docs.pools[position[pool.as_str()]];
                diags.push(
                    p.error("pool-depth", "spec.parent", error.to_string())
                        .help(
                            "a pool hierarchy is a handful of levels: attach this pool higher up",
                        ),
                );
            }
            // Reported above, with the document's own parse state taken into account.
            PoolTreeError::UnknownParent { .. } => {}
        }
    }
}

fn devices(docs: &Docs, diags: &mut Vec<Diagnostic>) {
    // Pool paths are checked against the sound part of the hierarchy: a path into a pool that
    // is declared but cannot be resolved (a cycle, an unknown parent) is not reported on top of
    // that error, and every other device is still checked.
    let (tree, _) = PoolTree::build_partial(docs.pools.iter().map(|(_, d)| *d));
    let declared: HashSet<&str> = docs
        .pools
        .iter()
        .map(|(_, d)| d.metadata.name.as_str())
        .collect();
    let mut vmids: HashMap<u32, &Parsed> = HashMap::new();
    for (p, dev) in &docs.devices {
        let spec = &dev.spec;
        if let Some(pool) = &spec.pool {
            let name = pool.rsplit('/').next().unwrap_or(pool);
            let unresolved = declared.contains(name) && tree.get(name).is_none();
            if tree.by_path(pool).is_none() && !unresolved && !docs.parsing.any_failed(Kind::Pool) {
                let mut d = p.error(
                    "unknown-pool",
                    "spec.pool",
                    format!("pool `{pool}` is not declared"),
                );
                let paths = tree.paths();
                let by_name = tree
                    .get(pool.trim_start_matches('/'))
                    .map(|p| p.path.as_str());
                d.help = Some(
                    match by_name.or_else(|| did_you_mean(pool, paths.iter().copied())) {
                        Some(s) if by_name.is_some() => {
                            format!("`pool` takes the pool's path: did you mean `{s}`?")
                        }
                        Some(s) => format!("did you mean `{s}`?"),
                        None if paths.is_empty() => "declare the pool with a Pool document".into(),
                        None => format!("pool paths are: {}", paths.join(", ")),
                    },
                );
                diags.push(d);
            }
        }
        match (&spec.proxmox, spec.device_type.is_guest()) {
            (None, true) => diags.push(
                p.error(
                    "missing-field",
                    "spec.proxmox",
                    "a vm or lxc device needs `proxmox` (node and vmid)",
                )
                .help("add `proxmox: {node: pve-01, vmid: 200}`"),
            ),
            (Some(_), false) => diags.push(
                p.error(
                    "invalid-value",
                    "spec.proxmox",
                    "only vm and lxc devices live on Proxmox",
                )
                .help("remove `proxmox`, or set `type: vm` or `type: lxc`"),
            ),
            (Some(guest), true) => match vmids.get(&guest.vmid) {
                Some(first) => diags.push(
                    p.error(
                        "duplicate-vmid",
                        "spec.proxmox.vmid",
                        format!("vmid {} is used twice", guest.vmid),
                    )
                    .related(
                        first.at("spec.proxmox.vmid"),
                        format!("also used by {}", first.ident()),
                    ),
                ),
                None => {
                    vmids.insert(guest.vmid, p);
                }
            },
            (None, false) => {}
        }
        unique_within(
            p,
            "spec.interfaces",
            spec.interfaces.iter().map(|i| i.name.as_str()),
            "interface",
            diags,
        );
        unique_within(
            p,
            "spec.services",
            spec.services.iter().map(|s| s.name.as_str()),
            "service",
            diags,
        );
        for (i, svc) in spec.services.iter().enumerate() {
            if let Some(health) = &svc.health {
                let path = format!("spec.services[{i}].health");
                if !matches!(svc.protocol, ServiceProtocol::Http | ServiceProtocol::Https) {
                    diags.push(p.error(
                        "invalid-value",
                        &path,
                        "a health endpoint needs an http or https service",
                    ));
                } else if !health.starts_with('/') {
                    diags.push(
                        p.error(
                            "invalid-value",
                            &path,
                            format!("health endpoint `{health}` is not a path"),
                        )
                        .help(format!("write it as a path, e.g. `/{health}`")),
                    );
                }
            }
        }
    }
}

fn unique_within<'a>(
    p: &Parsed,
    list: &str,
    names: impl Iterator<Item = &'a str>,
    what: &str,
    diags: &mut Vec<Diagnostic>,
) {
    let mut seen: HashMap<&str, usize> = HashMap::new();
    for (i, name) in names.enumerate() {
        if let Some(first) = seen.insert(name, i) {
            diags.push(
                p.error(
                    "duplicate-name",
                    &format!("{list}[{i}].name"),
                    format!("{what} `{name}` is declared twice"),
                )
                .related(
                    p.at(&format!("{list}[{first}].name")),
                    "first declared here",
                ),
            );
            seen.insert(name, first);
        }
    }
}

fn reservations(docs: &Docs, diags: &mut Vec<Diagnostic>) {
    for (p, r) in &docs.reservations {
        let s = &r.spec;
        if !s.subnet.contains(s.ip) {
            diags.push(
                p.error(
                    "ip-outside-subnet",
                    "spec.ip",
                    format!("IP {} is outside subnet {}", s.ip, s.subnet),
                )
                .related(p.at("spec.subnet"), "subnet declared here"),
            );
        } else if s.subnet.prefix() < 31
            && (s.ip == s.subnet.network() || s.ip == s.subnet.broadcast())
        {
            let which = if s.ip == s.subnet.network() {
                "network"
            } else {
                "broadcast"
            };
            diags.push(p.error(
                "ip-outside-subnet",
                "spec.ip",
                format!("IP {} is the {which} address of subnet {}", s.ip, s.subnet),
            ));
        }
    }
}

/// Who claims an address: a reservation, or a device's interface.
struct Claim<'a> {
    parsed: &'a Parsed<'a>,
    field: String,
    ip: Option<Ipv4Addr>,
    mac: Option<MacAddress>,
    /// Host name, for matching an interface without a MAC to its reservation.
    host: &'a str,
    reservation: bool,
}

impl Claim<'_> {
    /// A reservation and an interface describe the same host when their MACs agree (or, for
    /// an interface without a MAC, the reservation's hostname names the device).
    fn same_host(&self, other: &Claim) -> bool {
        self.reservation != other.reservation
            && match (self.mac, other.mac) {
                (Some(a), Some(b)) => a == b,
                _ => self.short_host() == other.short_host(),
            }
    }

    fn short_host(&self) -> String {
        let h = self.host;
        h.split('.').next().unwrap_or(h).to_ascii_lowercase()
    }

    /// [`Claim::same_host`] as keys: what this claim is, for [`conflicts`].
    fn offers_host(&self) -> Vec<Match> {
        let me = self.reservation;
        let mut keys = vec![Match::Host(me, self.short_host())];
        keys.push(match self.mac {
            Some(mac) => Match::Mac(me, mac),
            None => Match::HostWithoutMac(me, self.short_host()),
        });
        keys
    }

    /// [`Claim::same_host`] as keys: what the other side of the same host would offer.
    fn wants_host(&self) -> Vec<Match> {
        let other = !self.reservation;
        match self.mac {
            Some(mac) => vec![
                Match::Mac(other, mac),
                Match::HostWithoutMac(other, self.short_host()),
            ],
            None => vec![Match::Host(other, self.short_host())],
        }
    }

    /// Among claims of one MAC: the same host when a reservation and an interface agree on the
    /// IP (or one of them has none).
    fn offers_ip(&self) -> Vec<Match> {
        let me = self.reservation;
        vec![
            Match::AnyIp(me),
            self.ip.map_or(Match::NoIp(me), |ip| Match::Ip(me, ip)),
        ]
    }

    fn wants_ip(&self) -> Vec<Match> {
        let other = !self.reservation;
        match self.ip {
            Some(ip) => vec![Match::Ip(other, ip), Match::NoIp(other)],
            None => vec![Match::AnyIp(other)],
        }
    }

    fn describe(&self) -> String {
        if self.reservation {
            self.parsed.ident()
        } else {
            format!("{} ({})", self.parsed.ident(), self.field)
        }
    }
}

/// What makes two claims of one address compatible (the same host): a claim *offers* keys
/// and *wants* keys, and two claims are compatible when one wants a key the other offers.
#[derive(Clone, PartialEq, Eq, Hash)]
enum Match {
    /// A reservation (true) or an interface (false) with this MAC.
    Mac(bool, MacAddress),
    /// … without a MAC, for a host of this short name.
    HostWithoutMac(bool, String),
    /// … with or without a MAC, for a host of this short name.
    Host(bool, String),
    /// … with this IP.
    Ip(bool, Ipv4Addr),
    /// … without an IP.
    NoIp(bool),
    /// … whatever its IP.
    AnyIp(bool),
}

/// Splits claims of one address into hosts: a claim joins the first cluster holding a claim it
/// is compatible with. The largest cluster (a device with its own reservation) owns the
/// address; every other cluster is a conflict, reported once at its first claim. Keys are
/// indexed, so 20,000 claims of one address cost 20,000 lookups, not 200 million comparisons.
fn conflicts<'c, 'a>(
    group: &[&'c Claim<'a>],
    offers: impl Fn(&Claim<'a>) -> Vec<Match>,
    wants: impl Fn(&Claim<'a>) -> Vec<Match>,
) -> Vec<(&'c Claim<'a>, &'c Claim<'a>)> {
    let mut clusters: Vec<Vec<&'c Claim<'a>>> = Vec::new();
    // The first cluster holding a claim that offers each key.
    let mut first: HashMap<Match, usize> = HashMap::new();
    for &c in group {
        let index = wants(c)
            .iter()
            .filter_map(|k| first.get(k).copied())
            .min()
            .unwrap_or_else(|| {
                clusters.push(Vec::new());
                clusters.len() - 1
            });
        clusters[index].push(c);
        for key in offers(c) {
            let at = first.entry(key).or_insert(index);
            *at = (*at).min(index);
        }
    }
    let owner = (0..clusters.len())
        .max_by_key(|&i| (clusters[i].len(), std::cmp::Reverse(i)))
        .unwrap_or(0);
    clusters
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != owner)
        .map(|(_, cl)| (cl[0], clusters[owner][0]))
        .collect()
}

fn address_claims(docs: &Docs, diags: &mut Vec<Diagnostic>) {
    let mut claims: Vec<Claim> = Vec::new();
    for (p, r) in &docs.reservations {
        claims.push(Claim {
            parsed: p,
            field: "spec".into(),
            ip: Some(r.spec.ip),
            mac: Some(r.spec.mac),
            host: &r.spec.hostname,
            reservation: true,
        });
    }
    for (p, d) in &docs.devices {
        for (i, nic) in d.spec.interfaces.iter().enumerate() {
            claims.push(Claim {
                parsed: p,
                field: format!("spec.interfaces[{i}]"),
                ip: nic.ip,
                mac: nic.mac,
                host: &d.metadata.name,
                reservation: false,
            });
        }
    }
    let mut by_ip: BTreeMap<Ipv4Addr, Vec<&Claim>> = BTreeMap::new();
    let mut by_mac: BTreeMap<MacAddress, Vec<&Claim>> = BTreeMap::new();
    for c in &claims {
        if let Some(ip) = c.ip {
            by_ip.entry(ip).or_default().push(c);
        }
        if let Some(mac) = c.mac {
            by_mac.entry(mac).or_default().push(c);
        }
    }
    for (ip, group) in &by_ip {
        for (c, owner) in conflicts(group, Claim::offers_host, Claim::wants_host) {
            diags.push(
                c.parsed
                    .error("duplicate-ip", &format!("{}.ip", c.field), format!("IP {ip} is claimed twice"))
                    .related(owner.parsed.at(&format!("{}.ip", owner.field)), format!("also claimed by {}", owner.describe()))
                    .help("each address belongs to one host; a device's interface and its DHCP reservation must agree on the MAC"),
            );
        }
    }
    for (mac, group) in &by_mac {
        // Same MAC, same host: one reservation and one interface whose IPs agree.
        for (c, owner) in conflicts(group, Claim::offers_ip, Claim::wants_ip) {
            let mut d = c
                .parsed
                .error(
                    "duplicate-mac",
                    &format!("{}.mac", c.field),
                    format!("MAC {mac} is claimed twice"),
                )
                .related(
                    owner.parsed.at(&format!("{}.mac", owner.field)),
                    format!("also claimed by {}", owner.describe()),
                );
            if c.same_host(owner) {
                let ip = |x: &Claim| x.ip.map(|i| i.to_string()).unwrap_or_default();
                d.code = "address-mismatch";
                d.field = Some(format!("{}.ip", c.field));
                d.location = Some(c.parsed.at(&format!("{}.ip", c.field)));
                d.related[0] = Related {
                    location: owner.parsed.at(&format!("{}.ip", owner.field)),
                    message: format!("{} gives IP {}", owner.describe(), ip(owner)),
                };
                d.message = format!(
                    "MAC {mac} has IP {} here but {} in {}",
                    ip(c),
                    ip(owner),
                    owner.parsed.ident()
                );
                d.help = Some(
                    "a device's interface and its DHCP reservation must agree on the IP".into(),
                );
            }
            diags.push(d);
        }
    }
}

/// Why `router` cannot name a router declared outside labctl, if it cannot.
fn router_problem(router: &str) -> Option<String> {
    let Some((name, provider)) = router.rsplit_once('@') else {
        return Some(format!(
            "router `{router}` names no provider: write `NAME@PROVIDER`"
        ));
    };
    if name.is_empty() || provider.is_empty() {
        return Some(format!("router `{router}` is not `NAME@PROVIDER`"));
    }
    if provider == "internal" {
        return Some(format!("router `{router}` is Traefik's own"));
    }
    if provider == "file" && name.starts_with("labctl-") {
        return Some(format!(
            "router `{router}` is one labctl writes itself; drop `router:` to manage it"
        ));
    }
    None
}

fn routes(docs: &Docs, diags: &mut Vec<Diagnostic>) {
    let devices: HashMap<&str, &DeviceDoc> = docs
        .devices
        .iter()
        .map(|(_, d)| (d.metadata.name.as_str(), *d))
        .collect();
    let mut keys: HashMap<(String, String), &Parsed> = HashMap::new();
    let mut described: HashMap<&str, &Parsed> = HashMap::new();
    for (p, r) in &docs.routes {
        let s = &r.spec;
        if let Some(router) = &s.router {
            if let Some(why) = router_problem(router) {
                diags.push(
                    p.error("invalid-value", "spec.router", why).help(
                        "name a router as Traefik's API does: `whoami@docker`, `grafana@file`",
                    ),
                );
            } else if let Some(first) = described.insert(router, p) {
                diags.push(
                    p.error(
                        "duplicate-route",
                        "spec.router",
                        format!("another route already describes router `{router}`"),
                    )
                    .related(
                        first.at("spec.router"),
                        format!("{} describes it first", first.ident()),
                    ),
                );
            }
        }
        match (&s.host, &s.rule) {
            (None, None) => diags.push(
                p.error(
                    "missing-field",
                    "spec.host",
                    "a route needs `host` or `rule`",
                )
                .help("add `host: name.lab.example` (and optionally `pathPrefix`)"),
            ),
            (Some(_), Some(_)) => diags.push(
                p.error(
                    "conflicting-fields",
                    "spec.rule",
                    "give `host` or `rule`, not both",
                )
                .related(p.at("spec.host"), "host given here"),
            ),
            _ => {}
        }
        if s.rule.is_some() && s.path_prefix.is_some() {
            diags.push(p.error(
                "conflicting-fields",
                "spec.pathPrefix",
                "`pathPrefix` goes with `host`; put it in the rule instead",
            ));
        }
        if let Some(prefix) = &s.path_prefix {
            if !prefix.starts_with('/') {
                diags.push(p.error(
                    "invalid-value",
                    "spec.pathPrefix",
                    format!("path prefix `{prefix}` must start with `/`"),
                ));
            }
        }
        match (s.backend.urls.is_empty(), &s.backend.service) {
            (true, None) => diags.push(
                p.error("missing-field", "spec.backend", "a backend needs `urls` or `service`")
                    .help("add `service: {device: NAME, service: NAME}` or `urls: [http://10.0.1.5:3000]`"),
            ),
            (false, Some(_)) => diags.push(p.error(
                "conflicting-fields",
                "spec.backend.service",
                "give backend `urls` or `service`, not both",
            )),
            _ => {}
        }
        for (i, url) in s.backend.urls.iter().enumerate() {
            if !(url.starts_with("http://") || url.starts_with("https://"))
                || url.split("://").nth(1).is_none_or(str::is_empty)
            {
                diags.push(
                    p.error(
                        "invalid-value",
                        &format!("spec.backend.urls[{i}]"),
                        format!("`{url}` is not an http(s) URL"),
                    )
                    .help("write it like http://10.0.1.205:3000"),
                );
            }
        }
        if let Some(svc) = &s.backend.service {
            match devices.get(svc.device.as_str()) {
                None if docs.parsing.failed(Kind::Device, &svc.device) => {}
                None => {
                    let mut d = p.error(
                        "unknown-device",
                        "spec.backend.service.device",
                        format!("device `{}` is not declared", svc.device),
                    );
                    if let Some(s) = did_you_mean(&svc.device, devices.keys().copied()) {
                        d = d.help(format!("did you mean `{s}`?"));
                    }
                    diags.push(d);
                }
                Some(dev) if !dev.spec.services.iter().any(|x| x.name == svc.service) => {
                    let names: Vec<&str> =
                        dev.spec.services.iter().map(|x| x.name.as_str()).collect();
                    let help = match did_you_mean(&svc.service, names.iter().copied()) {
                        Some(s) => format!("did you mean `{s}`?"),
                        None if names.is_empty() => {
                            format!("device `{}` declares no services", svc.device)
                        }
                        None => format!("services of `{}`: {}", svc.device, names.join(", ")),
                    };
                    diags.push(
                        p.error(
                            "unknown-service",
                            "spec.backend.service.service",
                            format!("device `{}` has no service `{}`", svc.device, svc.service),
                        )
                        .help(help),
                    );
                }
                Some(_) => {}
            }
        }
        let key = s.match_key().or_else(|| {
            s.rule.as_ref().map(|r| {
                (
                    r.split_whitespace().collect::<Vec<_>>().join(" "),
                    String::new(),
                )
            })
        });
        if let Some(key) = key {
            let field = if s.host.is_some() {
                "spec.host"
            } else {
                "spec.rule"
            };
            match keys.get(&key) {
                Some(first) => diags.push(
                    p.error(
                        "duplicate-route",
                        field,
                        if key.1.is_empty() {
                            "another route has the same rule".to_string()
                        } else {
                            format!(
                                "another route already matches host `{}` with path `{}`",
                                key.0, key.1
                            )
                        },
                    )
                    .related(
                        first.at(if first.spans().has("spec.host") {
                            "spec.host"
                        } else {
                            "spec.rule"
                        }),
                        format!("{} matches it first", first.ident()),
                    ),
                ),
                None => {
                    keys.insert(key, p);
                }
            }
        }
    }
}

fn mcp_servers(docs: &Docs, diags: &mut Vec<Diagnostic>) {
    let credentials: Vec<&str> = docs
        .config
        .iter()
        .flat_map(|(_, c)| c.spec.credentials.keys().map(String::as_str))
        .collect();
    let device_names: Vec<&str> = docs
        .devices
        .iter()
        .map(|(_, d)| d.metadata.name.as_str())
        .collect();
    let mut known_hosts: HashSet<String> = HashSet::new();
    for (_, d) in &docs.devices {
        known_hosts.insert(d.metadata.name.to_ascii_lowercase());
        known_hosts.extend(d.spec.ips().map(|ip| ip.to_string()));
    }
    for (_, r) in &docs.reservations {
        known_hosts.insert(r.spec.hostname.to_ascii_lowercase());
        if let Some(short) = r.spec.hostname.split('.').next() {
            known_hosts.insert(short.to_ascii_lowercase());
        }
    }
    for (p, m) in &docs.mcp {
        let s = &m.spec;
        let http = matches!(
            s.transport,
            McpTransport::StreamableHttp | McpTransport::Sse
        );
        if http {
            match &s.url {
                None => diags.push(p.error("missing-field", "spec.url", "an HTTP MCP server needs `url`")),
                Some(url) => match url_host(url) {
                    None => diags.push(
                        p.error("invalid-value", "spec.url", format!("`{url}` is not an http(s) URL"))
                            .help("write it like http://10.0.1.202:8080/mcp"),
                    ),
                    Some(host) if s.device.is_none() && !known_hosts.contains(&host.to_ascii_lowercase()) => diags.push(
                        p.warning("unknown-host", "spec.url", format!("host `{host}` matches no declared device"))
                            .help("declare the device that runs this server, or name it with `device:`"),
                    ),
                    Some(_) => {}
                },
            }
            if s.command.is_some() {
                diags.push(p.error(
                    "conflicting-fields",
                    "spec.command",
                    "`command` is for the stdio transport; this server uses HTTP",
                ));
            }
        } else {
            if s.command.is_none() {
                diags.push(p.error(
                    "missing-field",
                    "spec.command",
                    "a stdio MCP server needs `command`",
                ));
            }
            if s.url.is_some() {
                diags.push(p.error(
                    "conflicting-fields",
                    "spec.url",
                    "`url` is for HTTP transports; a stdio server takes `command`",
                ));
            }
        }
        if let Some(device) = &s.device {
            if !device_names.contains(&device.as_str())
                && !docs.parsing.failed(Kind::Device, device)
            {
                let mut d = p.error(
                    "unknown-device",
                    "spec.device",
                    format!("device `{device}` is not declared"),
                );
                if let Some(sug) = did_you_mean(device, device_names.iter().copied()) {
                    d = d.help(format!("did you mean `{sug}`?"));
                }
                diags.push(d);
            }
        }
        if let Some(auth) = &s.auth {
            if !credentials.contains(&auth.credential.as_str())
                && !docs.parsing.any_failed(Kind::Config)
            {
                let help = match did_you_mean(&auth.credential, credentials.iter().copied()) {
                    Some(sug) => format!("did you mean `{sug}`?"),
                    None => format!("declare it under `credentials:` in labctl.yaml, e.g. `{}: {{source: {{env: VAR}}}}`", auth.credential),
                };
                diags.push(
                    p.error(
                        "unknown-credential",
                        "spec.auth.credential",
                        format!(
                            "credential `{}` is not declared in labctl.yaml",
                            auth.credential
                        ),
                    )
                    .help(help),
                );
            }
        }
    }
}

/// The host of an http(s) URL, without port or brackets.
fn url_host(url: &str) -> Option<&str> {
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))?;
    let authority = rest.split(['/', '?', '#']).next()?;
    let authority = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host = if let Some(v6) = authority.strip_prefix('[') {
        v6.split(']').next()?
    } else {
        authority.split(':').next()?
    };
    (!host.is_empty()).then_some(host)
}

fn config(docs: &Docs, diags: &mut Vec<Diagnostic>) {
    // A Config outside labctl.yaml is reported where it is (config-placement); only the ones
    // inside can be one too many.
    let in_root = docs
        .config
        .iter()
        .filter(|(p, _)| p.file == crate::model::CONFIG_FILE);
    for (p, _) in in_root.skip(1) {
        diags.push(p.error(
            "duplicate-name",
            "kind",
            "labctl.yaml holds more than one Config document",
        ));
    }
    let kinds = [
        Kind::Pool,
        Kind::Device,
        Kind::DhcpReservation,
        Kind::Route,
        Kind::McpServer,
    ]
    .map(Kind::as_str);
    let declared: HashSet<(&str, &str)> = docs
        .parsing
        .docs
        .iter()
        .map(|d| (d.doc.kind().as_str(), d.doc.name()))
        .collect();
    for (p, c) in &docs.config {
        let targets = c
            .spec
            .ignore
            .iter()
            .enumerate()
            .map(|(i, r)| (format!("spec.ignore[{i}]"), &r.kind, &r.name))
            .chain(
                c.spec
                    .suspend
                    .iter()
                    .enumerate()
                    .map(|(i, r)| (format!("spec.suspend[{i}]"), &r.kind, &r.name)),
            );
        for (at, kind, name) in targets {
            if !kinds.contains(&kind.as_str()) {
                let help = match did_you_mean(kind, kinds) {
                    Some(s) => format!("did you mean `{s}`?"),
                    None => format!("kinds: {}", kinds.join(", ")),
                };
                diags.push(
                    p.error(
                        "unknown-kind",
                        &format!("{at}.kind"),
                        format!("unknown kind `{kind}`"),
                    )
                    .help(help),
                );
            } else if let Some(name) = name {
                let known = declared.contains(&(kind.as_str(), name.as_str()));
                let failed = Kind::parse(kind).is_some_and(|k| docs.parsing.failed(k, name));
                if !known && !failed {
                    diags.push(p.error(
                        "unknown-resource",
                        &format!("{at}.name"),
                        format!("{kind} `{name}` is not declared"),
                    ));
                }
            }
        }
        for (i, rule) in c.spec.ignore.iter().enumerate() {
            field_paths(p, &format!("spec.ignore[{i}].fields"), &rule.fields, diags);
        }
    }
    for (p, c) in &docs.config {
        unique_within(
            p,
            "spec.providers",
            c.spec.providers.iter().map(|x| x.name()),
            "provider",
            diags,
        );
        for (i, prov) in c.spec.providers.iter().enumerate() {
            let url = prov.url();
            let field = format!("spec.providers[{i}].url");
            if url_host(url).is_none() {
                diags.push(p.error(
                    "invalid-value",
                    &field,
                    format!("`{}` is not an http(s) URL", crate::redact::userinfo(url)),
                ));
            } else if crate::redact::userinfo(url) != url {
                // Redacted in every message labctl writes, but still in Git for anyone to read.
                diags.push(
                    p.warning(
                        "secret-in-url",
                        &field,
                        format!(
                            "the URL of provider `{}` holds a user and password",
                            prov.name()
                        ),
                    )
                    .help("name a credential (`token:` or `auth:`) instead; labctl.yaml is in Git"),
                );
            }
            tls_settings(p, i, prov.tls(), diags);
        }
        let kinds = [
            Kind::Pool,
            Kind::Device,
            Kind::DhcpReservation,
            Kind::Route,
            Kind::McpServer,
        ]
        .map(Kind::as_str);
        let per_kind = c
            .spec
            .policy
            .keys()
            .map(|k| ("policy", k))
            .chain(c.spec.prune.keys().map(|k| ("prune", k)))
            .chain(
                c.spec
                    .propose_removals
                    .keys()
                    .map(|k| ("proposeRemovals", k)),
            );
        for (setting, key) in per_kind {
            if !kinds.contains(&key.as_str()) {
                let help = match did_you_mean(key, kinds) {
                    Some(s) => format!(
                        "did you mean `{s}`? kinds with a {setting}: {}",
                        kinds.join(", ")
                    ),
                    None => format!("kinds with a {setting}: {}", kinds.join(", ")),
                };
                diags.push(
                    Diagnostic::error(
                        "unknown-kind",
                        format!("{setting} for unknown kind `{key}`"),
                    )
                    .at(p.key_at(&format!("spec.{setting}.{key}")))
                    .document(p.ident())
                    .field(format!("spec.{setting}.{key}"))
                    .help(help),
                );
            }
        }
        if let Some(safety) = &c.spec.safety {
            let shares = [
                ("maxUpdateShare", safety.max_update_share),
                ("maxDeleteShare", safety.max_delete_share),
            ];
            for (key, share) in shares {
                if share.is_some_and(|s| !(0.0..=1.0).contains(&s)) {
                    diags.push(
                        p.error(
                            "invalid-value",
                            &format!("spec.safety.{key}"),
                            format!("`{key}` is a share of a provider's resources, from 0 to 1"),
                        )
                        .help("0.3 lets one run change at most 30 % of a provider's resources"),
                    );
                }
            }
        }
        if let Some(forge) = c.spec.propose.as_ref().and_then(|p| p.forge.as_ref()) {
            if forge.owner_and_name().is_none() {
                diags.push(
                    p.error(
                        "invalid-value",
                        "spec.propose.forge.repository",
                        format!(
                            "forge repository `{}` is not `owner/name`",
                            forge.repository
                        ),
                    )
                    .help("the repository as the forge's URL names it, e.g. `lab/state`"),
                );
            }
            if forge.api_url().is_none() {
                diags.push(
                    p.error(
                        "missing-field",
                        "spec.propose.forge",
                        "a Gitea or Forgejo forge needs `url`".to_string(),
                    )
                    .help("its API base, e.g. `url: https://git.lab.example/api/v1`"),
                );
            }
        }
        if let Some(author) = c.spec.propose.as_ref().and_then(|p| p.author.as_ref()) {
            // Git writes `name <email>` into every commit: these would break or forge it.
            let bad = |v: &str| v.trim().is_empty() || v.contains(['<', '>', '\n', '\r', '\0']);
            for (key, value) in [("name", &author.name), ("email", &author.email)] {
                if bad(value) {
                    diags.push(
                        p.error(
                            "invalid-value",
                            &format!("spec.propose.author.{key}"),
                            format!("author {key} `{value}` cannot go into a Git commit"),
                        )
                        .help("give a non-empty value without `<`, `>` or line breaks"),
                    );
                }
            }
        }
    }
}

/// What of a provider's `tls` can be judged without connecting: the fingerprint's form, and
/// that only one way of trusting the server is given (the client refuses both at run time).
fn tls_settings(p: &Parsed, i: usize, tls: Option<&TlsConfig>, diags: &mut Vec<Diagnostic>) {
    let Some(tls) = tls else { return };
    let Some(fingerprint) = &tls.fingerprint else {
        return;
    };
    let field = format!("spec.providers[{i}].tls.fingerprint");
    if parse_fingerprint(fingerprint).is_none() {
        diags.push(
            p.error(
                "invalid-value",
                &field,
                format!("tls.fingerprint `{fingerprint}` is not a SHA-256 fingerprint"),
            )
            .help(
                "give the certificate's SHA-256 as 32 hex bytes, e.g. `AA:BB:…` (Proxmox VE: \
                 Node → System → Certificates; or `openssl x509 -noout -fingerprint -sha256`)",
            ),
        );
    }
    if tls.ca_file.is_some() {
        diags.push(
            p.error(
                "conflicting-fields",
                &field,
                "give either tls.caFile or tls.fingerprint, not both",
            )
            .help("a pinned fingerprint trusts exactly one certificate; a CA file trusts what it signed"),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::{Snapshot, SourceFile};
    use crate::validate::validate_text;

    const H: &str = "apiVersion: labctl.dev/v1\n";

    /// Validates one multi-document file and returns the one-line summaries.
    fn check(docs: &[&str]) -> Vec<String> {
        let text: Vec<String> = docs.iter().map(|d| format!("{H}{d}")).collect();
        validate_text("lab.yaml", &text.join("---\n"))
            .diagnostics
            .iter()
            .map(Diagnostic::summary)
            .collect()
    }

    fn reservation(name: &str, mac: &str, ip: &str) -> String {
        format!("kind: DhcpReservation\nmetadata: {{name: {name}}}\nspec:\n  subnet: 10.0.1.0/24\n  mac: {mac}\n  ip: {ip}\n  hostname: {name}\n")
    }

    fn device(name: &str, mac: &str, ip: &str) -> String {
        format!("kind: Device\nmetadata: {{name: {name}}}\nspec:\n  type: physical\n  interfaces:\n    - name: eth0\n      mac: {mac}\n      ip: {ip}\n")
    }

    #[test]
    fn prune_kinds_and_safety_shares_are_checked() {
        let found = check(&[
            "kind: Config\nmetadata: {name: lab}\nspec:\n  prune: {DhcpReservaton: false}\n  safety: {maxDeleteShare: 30}\n",
        ]);
        // (The first finding is that this test's Config is not in labctl.yaml.)
        assert_eq!(found.len(), 3, "{found:#?}");
        assert!(
            found[1].ends_with(
                "error[unknown-kind]: prune for unknown kind `DhcpReservaton` \
                 [Config/lab spec.prune.DhcpReservaton]"
            ),
            "{found:#?}"
        );
        assert!(
            found[2].contains("error[invalid-value]: `maxDeleteShare` is a share"),
            "{found:#?}"
        );
    }

    #[test]
    fn an_author_that_would_break_a_commit_is_refused() {
        let found = check(&[
            "kind: Config\nmetadata: {name: lab}\nspec:\n  propose:\n    author: {name: labctl, email: 'a> b'}\n",
        ]);
        assert_eq!(found.len(), 2, "{found:#?}");
        assert!(
            found[1].contains(
                "error[invalid-value]: author email `a> b` cannot go into a Git commit \
                 [Config/lab spec.propose.author.email]"
            ),
            "{found:#?}"
        );
    }

    #[test]
    fn a_forge_needs_owner_and_name_and_gitea_its_url() {
        let found = check(&[
            "kind: Config\nmetadata: {name: lab}\nspec:\n  propose:\n    forge: {kind: gitea, repository: state, token: {env: T}}\n",
        ]);
        assert_eq!(found.len(), 3, "{found:#?}");
        // (Sorted by position: the mapping's start, then the repository's value.)
        assert!(
            found[1].contains("a Gitea or Forgejo forge needs `url`"),
            "{found:#?}"
        );
        assert!(
            found[2].contains("forge repository `state` is not `owner/name`"),
            "{found:#?}"
        );
    }

    #[test]
    fn device_and_its_own_reservation_agree() {
        assert!(check(&[
            &device("nas", "aa:00:00:00:00:01", "10.0.1.40"),
            &reservation("nas", "aa:00:00:00:00:01", "10.0.1.40")
        ])
        .is_empty());
    }

    #[test]
    fn duplicate_names_point_at_the_first() {
        let r = reservation("nas", "aa:00:00:00:00:01", "10.0.1.40");
        let r2 = reservation("nas", "aa:00:00:00:00:02", "10.0.1.41");
        let d = validate_text("lab.yaml", &format!("{H}{r}---\n{H}{r2}"));
        assert_eq!(d.diagnostics[0].summary(), "lab.yaml:12:18: error[duplicate-name]: DhcpReservation `nas` is declared twice [DhcpReservation/nas metadata.name]");
        assert_eq!(d.diagnostics[0].related[0].location.line, 3);
    }

    #[test]
    fn same_ip_on_two_hosts() {
        assert_eq!(
            check(&[&reservation("a", "aa:00:00:00:00:01", "10.0.1.40"), &reservation("b", "aa:00:00:00:00:02", "10.0.1.40")]),
            ["lab.yaml:16:7: error[duplicate-ip]: IP 10.0.1.40 is claimed twice [DhcpReservation/b spec.ip]"]
        );
    }

    #[test]
    fn device_ip_reserved_for_another_mac() {
        assert_eq!(
            check(&[&device("a", "aa:00:00:00:00:01", "10.0.1.40"), &reservation("b", "aa:00:00:00:00:02", "10.0.1.40")]),
            ["lab.yaml:9:11: error[duplicate-ip]: IP 10.0.1.40 is claimed twice [Device/a spec.interfaces[0].ip]"]
        );
    }

    #[test]
    fn same_mac_with_two_ips() {
        assert_eq!(
            check(&[&reservation("a", "aa:00:00:00:00:01", "10.0.1.40"), &device("a", "aa:00:00:00:00:01", "10.0.1.41")]),
            ["lab.yaml:18:11: error[address-mismatch]: MAC aa:00:00:00:00:01 has IP 10.0.1.41 here but 10.0.1.40 in DhcpReservation/a [Device/a spec.interfaces[0].ip]"]
        );
        assert_eq!(
            check(&[&reservation("a", "aa:00:00:00:00:01", "10.0.1.40"), &reservation("b", "aa:00:00:00:00:01", "10.0.1.41")]),
            ["lab.yaml:15:8: error[duplicate-mac]: MAC aa:00:00:00:00:01 is claimed twice [DhcpReservation/b spec.mac]"]
        );
    }

    #[test]
    fn reservation_outside_or_at_the_edge_of_its_subnet() {
        assert_eq!(
            check(&[&reservation("a", "aa:00:00:00:00:01", "10.0.2.40")]),
            ["lab.yaml:7:7: error[ip-outside-subnet]: IP 10.0.2.40 is outside subnet 10.0.1.0/24 [DhcpReservation/a spec.ip]"]
        );
        assert_eq!(
            check(&[&reservation("a", "aa:00:00:00:00:01", "10.0.1.255")]),
            ["lab.yaml:7:7: error[ip-outside-subnet]: IP 10.0.1.255 is the broadcast address of subnet 10.0.1.0/24 [DhcpReservation/a spec.ip]"]
        );
    }

    #[test]
    fn pools_unknown_parent_cycle_and_unknown_device_pool() {
        let pool = |n: &str, p: &str| {
            format!("kind: Pool\nmetadata: {{name: {n}}}\nspec:\n  type: compute\n  parent: {p}\n")
        };
        assert_eq!(
            check(&[&pool("compute", "homelb"), "kind: Pool\nmetadata: {name: homelab}\nspec: {type: compute}\n"]),
            ["lab.yaml:6:11: error[unknown-pool]: parent pool `homelb` is not declared [Pool/compute spec.parent]"]
        );
        assert_eq!(
            check(&[&pool("a", "b"), &pool("b", "c"), &pool("c", "a")]),
            ["lab.yaml:6:11: error[pool-cycle]: pools form a cycle: a -> b -> c -> a [Pool/a spec.parent]"]
        );
        let dev =
            "kind: Device\nmetadata: {name: x}\nspec: {type: physical, pool: /homelab/compte}\n";
        let out = validate_text(
            "lab.yaml",
            &format!(
                "{H}{}---\n{H}{}---\n{H}{dev}",
                pool("compute", "homelab"),
                "kind: Pool\nmetadata: {name: homelab}\nspec: {type: compute}\n"
            ),
        );
        assert_eq!(out.diagnostics[0].summary(), "lab.yaml:16:30: error[unknown-pool]: pool `/homelab/compte` is not declared [Device/x spec.pool]");
        assert_eq!(
            out.diagnostics[0].help.as_deref(),
            Some("did you mean `/homelab/compute`?")
        );
    }

    #[test]
    fn a_pool_cycle_does_not_hide_other_pool_errors() {
        let pool = |n: &str, p: &str| {
            format!("kind: Pool\nmetadata: {{name: {n}}}\nspec:\n  type: compute\n  parent: {p}\n")
        };
        let device = |n: &str, path: &str| {
            format!(
                "kind: Device\nmetadata: {{name: {n}}}\nspec: {{type: physical, pool: {path}}}\n"
            )
        };
        let found = check(&[
            &pool("a", "b"),
            &pool("b", "a"),
            "kind: Pool\nmetadata: {name: lab}\nspec: {type: compute}\n",
            // Into the cycle: not reported on top of it.
            &device("x", "/b/a"),
            // A typo elsewhere: reported although the hierarchy has a cycle.
            &device("y", "/lb"),
            &device("z", "/lab"),
        ]);
        assert_eq!(found.len(), 2, "{found:#?}");
        assert!(
            found[0].contains("error[pool-cycle]: pools form a cycle: a -> b -> a"),
            "{found:#?}"
        );
        assert!(
            found[1]
                .contains("error[unknown-pool]: pool `/lb` is not declared [Device/y spec.pool]"),
            "{found:#?}"
        );
    }

    #[test]
    fn a_pool_chain_deeper_than_the_limit_is_one_error() {
        let n = 10_000;
        let mut docs =
            vec!["kind: Pool\nmetadata: {name: p0}\nspec: {type: compute}\n".to_string()];
        docs.extend((1..n).map(|i| {
            format!(
                "kind: Pool\nmetadata: {{name: p{i}}}\nspec: {{type: compute, parent: p{}}}\n",
                i - 1
            )
        }));
        let refs: Vec<&str> = docs.iter().map(String::as_str).collect();
        let found = check(&refs);
        assert_eq!(found.len(), 1, "{:#?}", &found[..found.len().min(3)]);
        assert!(
            found[0].contains(&format!(
                "error[pool-depth]: pool `p{}` is 64 levels below its root",
                crate::model::MAX_POOL_DEPTH
            )),
            "{found:#?}"
        );
    }

    #[test]
    fn many_claims_of_one_address_are_each_reported_once() {
        // Over the documents one file may hold: one file per reservation, as a repository has.
        let n = 20_000;
        let files: Vec<SourceFile> = (0..n)
            .map(|i| SourceFile {
                path: format!("dhcp/h{i}.yaml"),
                text: format!(
                    "{H}{}",
                    reservation(
                        &format!("h{i}"),
                        &format!("aa:00:00:00:{:02x}:{:02x}", i / 256, i % 256),
                        "10.0.1.40",
                    )
                ),
            })
            .collect();
        let found: Vec<String> = crate::validate::validate(&Snapshot::of("test", files))
            .diagnostics
            .iter()
            .filter(|d| d.code != "no-config")
            .map(Diagnostic::summary)
            .collect();
        assert_eq!(found.len(), n - 1);
        assert!(found
            .iter()
            .all(|f| f.contains("error[duplicate-ip]: IP 10.0.1.40 is claimed twice")));
        // A device and its own reservation still share the address without a conflict.
        assert!(check(&[
            &device("nas", "aa:00:00:00:00:01", "10.0.1.40"),
            &reservation("nas", "aa:00:00:00:00:01", "10.0.1.40"),
            &device("nas2", "aa:00:00:00:00:02", "10.0.1.41"),
            &reservation("nas2", "aa:00:00:00:00:02", "10.0.1.41"),
        ])
        .is_empty());
    }

    #[test]
    fn guests_need_proxmox_and_unique_vmids() {
        let vm = |n: &str, id: u32| {
            format!("kind: Device\nmetadata: {{name: {n}}}\nspec:\n  type: vm\n  proxmox: {{node: pve-01, vmid: {id}}}\n")
        };
        assert_eq!(
            check(&[&vm("a", 200), &vm("b", 200), "kind: Device\nmetadata: {name: c}\nspec: {type: lxc}\n"]),
            [
                "lab.yaml:13:33: error[duplicate-vmid]: vmid 200 is used twice [Device/b spec.proxmox.vmid]",
                "lab.yaml:18:7: error[missing-field]: a vm or lxc device needs `proxmox` (node and vmid) [Device/c spec.proxmox]",
            ]
        );
    }

    #[test]
    fn a_described_router_is_named_with_its_provider_once() {
        let route = |n: &str, router: &str| {
            format!("kind: Route\nmetadata: {{name: {n}}}\nspec:\n  rule: Host(`{n}.lab`)\n  router: {router}\n  backend: {{urls: [\"http://10.0.1.5:80\"]}}\n")
        };
        let found = check(&[
            &route("a", "whoami@docker"),
            &route("b", "whoami@docker"),
            &route("c", "whoami"),
            &route("d", "labctl-x@file"),
        ]);
        let codes: Vec<&str> = found
            .iter()
            .filter_map(|f| f.split_once("error[")?.1.split_once(']'))
            .map(|(code, _)| code)
            .collect();
        assert_eq!(
            codes,
            ["duplicate-route", "invalid-value", "invalid-value"],
            "{found:#?}"
        );
        assert!(
            found[0].contains(
                "another route already describes router `whoami@docker` [Route/b spec.router]"
            ),
            "{found:#?}"
        );
        assert!(found[1].contains("names no provider"), "{found:#?}");
        assert!(
            found[2].contains("drop `router:` to manage it"),
            "{found:#?}"
        );
    }

    #[test]
    fn route_backends_and_duplicate_hosts() {
        let dev = "kind: Device\nmetadata: {name: grafana}\nspec:\n  type: lxc\n  proxmox: {node: pve-01, vmid: 220}\n  services: [{name: web, port: 3000, protocol: http}]\n";
        let route = |n: &str, backend: &str| {
            format!("kind: Route\nmetadata: {{name: {n}}}\nspec:\n  host: grafana.lab.example\n  backend: {{service: {backend}}}\n")
        };
        assert_eq!(
            check(&[dev, &route("a", "{device: grafana, service: web}"), &route("b", "{device: grafna, service: web}"), &route("c", "{device: grafana, service: api}")]),
            [
                "lab.yaml:20:9: error[duplicate-route]: another route already matches host `grafana.lab.example` with path `/` [Route/b spec.host]",
                "lab.yaml:21:31: error[unknown-device]: device `grafna` is not declared [Route/b spec.backend.service.device]",
                "lab.yaml:27:9: error[duplicate-route]: another route already matches host `grafana.lab.example` with path `/` [Route/c spec.host]",
                "lab.yaml:28:49: error[unknown-service]: device `grafana` has no service `api` [Route/c spec.backend.service.service]",
            ]
        );
    }

    #[test]
    fn mcp_server_host_credential_and_transport() {
        let mcp = "kind: McpServer\nmetadata: {name: infra}\nspec:\n  transport: sse\n  url: http://10.0.1.99:8080/sse\n  auth: {credential: harbor}\n";
        assert_eq!(
            check(&[mcp, "kind: McpServer\nmetadata: {name: s}\nspec: {transport: stdio}\n"]),
            [
                "lab.yaml:6:8: warning[unknown-host]: host `10.0.1.99` matches no declared device [McpServer/infra spec.url]",
                "lab.yaml:7:22: error[unknown-credential]: credential `harbor` is not declared in labctl.yaml [McpServer/infra spec.auth.credential]",
                "lab.yaml:12:7: error[missing-field]: a stdio MCP server needs `command` [McpServer/s spec.command]",
            ]
        );
    }

    #[test]
    fn a_failed_document_does_not_cascade() {
        // The device has a typo, so the route's reference to it cannot be confirmed: one
        // error, not two.
        let dev = "kind: Device\nmetadata: {name: grafana}\nspec: {type: lxc, cors: 2}\n";
        let route = "kind: Route\nmetadata: {name: a}\nspec:\n  host: g.lab\n  backend: {service: {device: grafana, service: web}}\n";
        let out = check(&[dev, route]);
        assert_eq!(out.len(), 1, "{out:?}");
        assert!(out[0].contains("unknown-field"), "{out:?}");
    }

    #[test]
    fn url_host_handles_ports_userinfo_and_v6() {
        assert_eq!(url_host("http://10.0.1.202:8080/sse"), Some("10.0.1.202"));
        assert_eq!(url_host("https://user@harbor.lab/mcp"), Some("harbor.lab"));
        assert_eq!(url_host("http://[::1]:80/"), Some("::1"));
        assert_eq!(url_host("ftp://x"), None);
        assert_eq!(url_host("http://"), None);
    }
}
