//! A synthetic lab of any size for the scale benchmarks (issue 13): the desired state as
//! repository files, and the live state that matches it — Kea's `subnet4` and the Proxmox VE
//! guests — with a chosen share of it drifted.
//!
//! The mix, for `reservations = R`: R DHCP reservations, of which R/10 belong to devices
//! (Proxmox VE VMs with a disk, an interface and a service, spread over a pool tree of sites
//! and groups that inherit properties); R/100 routes to device services; R/1000 MCP server
//! registrations (at least one), at a loopback port where nothing listens (labctl probes every
//! registered MCP server: nothing is sent beyond loopback). Every name, address and number
//! follows from the index, so the same arguments always give the same lab.

use serde_json::{json, Value as Json};

/// How the documents are spread over files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// One document per file (`devices/host-42.yaml`).
    PerFile,
    /// Up to [`GROUPED`] documents per file (`devices/part-0.yaml`).
    Grouped,
}

/// Documents per file in the [`Layout::Grouped`] layout.
pub const GROUPED: usize = 1000;
/// Hosts per DHCP subnet (a /22: 1,022 usable addresses).
const PER_SUBNET: usize = 1000;
/// Sites below the root pool, and groups below each site.
const SITES: usize = 4;
const GROUPS: usize = 5;
/// Proxmox VE nodes the guests are spread over.
pub const NODES: usize = 4;

/// What to generate.
#[derive(Debug, Clone, Copy)]
pub struct Spec {
    pub reservations: usize,
    pub layout: Layout,
    /// Drifted resources per thousand (of reservations and of guests), split between moved
    /// (another address, more cores), deleted (not live) and hand-added (live only).
    pub drift_permille: usize,
}

/// One Proxmox VE guest as the live side has it.
#[derive(Debug, Clone)]
pub struct Guest {
    pub vmid: u32,
    pub node: String,
    pub name: String,
    pub cores: u32,
    pub memory_mib: u32,
    pub mac: String,
}

/// A generated lab: files for the repository, the live state, and what it holds.
pub struct Lab {
    /// (path below the repository, text), `labctl.yaml` not included (it names the providers'
    /// addresses, which the caller knows).
    pub files: Vec<(String, String)>,
    /// Kea's `Dhcp4.subnet4`, with the drift applied.
    pub subnet4: Json,
    /// The live guests, with the drift applied.
    pub guests: Vec<Guest>,
    /// Proxmox VE pools: (id, vmids).
    pub pve_pools: Vec<(String, Vec<u32>)>,
    /// Documents by kind.
    pub counts: Counts,
    /// Live resources that differ from the desired state (moved + deleted + added).
    #[allow(dead_code)]
    pub drifted: usize,
}

#[derive(Debug, Clone, Copy, Default)]
pub struct Counts {
    pub pools: usize,
    pub devices: usize,
    pub reservations: usize,
    pub routes: usize,
    pub mcp_servers: usize,
}

impl Counts {
    pub fn documents(&self) -> usize {
        self.pools + self.devices + self.reservations + self.routes + self.mcp_servers
    }
}

/// The address of host `i`: subnet `i / 1000` is `10.64.0.0/22`, `10.64.4.0/22`, …; host
/// `i % 1000` is its address number `1 + i % 1000`.
pub fn ip(i: usize) -> String {
    addr(i / PER_SUBNET, 1 + i % PER_SUBNET)
}

fn subnet(k: usize) -> String {
    format!("{}/22", addr(k, 0))
}

/// Address number `host` of subnet `k`.
fn addr(k: usize, host: usize) -> String {
    let base = (64u32 << 16) + (k as u32) * 1024 + host as u32;
    format!("10.{}.{}.{}", base >> 16, (base >> 8) & 255, base & 255)
}

/// A locally administered MAC address unique to `i` (and `salt`, for hand-added hosts).
fn mac(i: usize, salt: u8) -> String {
    let b = (i as u32).to_be_bytes();
    format!(
        "02:{salt:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
        b[0], b[1], b[2], b[3]
    )
}

fn group_of(i: usize) -> (usize, usize) {
    let g = i % (SITES * GROUPS);
    (g / GROUPS, g % GROUPS)
}

/// What drift, if any, resource `i` gets: one in every `1000 / permille`, taking turns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Drift {
    None,
    Moved,
    Deleted,
    Added,
}

fn drift(i: usize, permille: usize) -> Drift {
    if permille == 0 {
        return Drift::None;
    }
    let every = (1000 / permille).max(1);
    if i % every != every / 2 {
        return Drift::None;
    }
    match (i / every) % 3 {
        0 => Drift::Moved,
        1 => Drift::Deleted,
        _ => Drift::Added,
    }
}

/// Builds the lab of `spec`.
pub fn generate(spec: Spec) -> Lab {
    assert!(
        spec.drift_permille <= 20,
        "at most 20 per thousand drift (spare addresses)"
    );
    let reservations = spec.reservations;
    let devices = reservations / 10;
    let routes = reservations / 100;
    let mcp_servers = (reservations / 1000).max(1);
    let mut files = Files::new(spec.layout);

    // Pools: the root, its sites, their groups; groups map to Proxmox VE pools.
    let mut pools = String::from(
        "apiVersion: labctl.dev/v1\nkind: Pool\nmetadata:\n  name: lab\nspec:\n  type: compute\n  properties: {owner: ops, backup: weekly}\n  dimensions: {site: none, gpu: false}\n",
    );
    let mut pve_pools = Vec::new();
    for s in 0..SITES {
        pools.push_str(&format!(
            "---\napiVersion: labctl.dev/v1\nkind: Pool\nmetadata:\n  name: site-{s}\nspec:\n  parent: lab\n  type: compute\n  properties: {{backup: daily}}\n  dimensions: {{site: rack-{s}}}\n"
        ));
        for g in 0..GROUPS {
            pools.push_str(&format!(
                "---\napiVersion: labctl.dev/v1\nkind: Pool\nmetadata:\n  name: s{s}-g{g}\nspec:\n  parent: site-{s}\n  type: compute\n  proxmoxPool: s{s}-g{g}\n"
            ));
            pve_pools.push((format!("s{s}-g{g}"), Vec::new()));
        }
    }
    files.whole("pools/lab.yaml", pools);

    let mut kea: Vec<Vec<Json>> = vec![Vec::new(); reservations.div_ceil(PER_SUBNET)];
    let mut guests = Vec::new();
    let mut drifted = 0;
    for i in 0..reservations {
        let name = format!("host-{i}");
        let (mac, ip) = (mac(i, 0), ip(i));
        let net = subnet(i / PER_SUBNET);
        files.push(
            "dhcp",
            &name,
            format!(
                "apiVersion: labctl.dev/v1\nkind: DhcpReservation\nmetadata:\n  name: {name}\nspec:\n  subnet: {net}\n  mac: \"{mac}\"\n  ip: {ip}\n  hostname: {name}.lab.example\n"
            ),
        );
        let live = &mut kea[i / PER_SUBNET];
        let host = |mac: &str, ip: &str, name: &str| json!({"hw-address": mac, "ip-address": ip, "hostname": format!("{name}.lab.example")});
        match drift(i, spec.drift_permille) {
            Drift::None => live.push(host(&mac, &ip, &name)),
            Drift::Moved => {
                // The address of a host that does not exist in the lab: unique, in the subnet.
                let moved = spare_ip(i, spec.drift_permille);
                live.push(host(&mac, &moved, &name));
                drifted += 1;
            }
            Drift::Deleted => drifted += 1,
            Drift::Added => {
                live.push(host(&mac, &ip, &name));
                let extra = spare_ip(i, spec.drift_permille);
                live.push(host(&mac_extra(i), &extra, &format!("manual-{i}")));
                drifted += 1;
            }
        }

        if i < devices {
            let (s, g) = group_of(i);
            let vmid = 1000 + i as u32;
            let node = format!("pve-{:02}", 1 + i % NODES);
            let (cores, memory) = (2 + (i % 4) as u32 * 2, 2048 * (1 + (i % 8) as u32));
            files.push(
                "devices",
                &name,
                format!(
                    "apiVersion: labctl.dev/v1\nkind: Device\nmetadata:\n  name: {name}\n  labels: {{role: service}}\nspec:\n  type: vm\n  pool: /lab/site-{s}/s{s}-g{g}\n  description: Generated guest {i}\n  proxmox: {{node: {node}, vmid: {vmid}}}\n  cores: {cores}\n  memoryMiB: {memory}\n  interfaces:\n    - {{name: net0, mac: \"{mac}\", ip: {ip}, bridge: vmbr0}}\n  services:\n    - {{name: web, port: 8080, protocol: http, health: /health}}\n"
                ),
            );
            let guest = Guest {
                vmid,
                node,
                name: name.clone(),
                cores,
                memory_mib: memory,
                mac: mac.to_uppercase(),
            };
            let pool = &mut pve_pools[s * GROUPS + g].1;
            let d = drift(i + 7, spec.drift_permille);
            if d != Drift::None {
                drifted += 1;
            }
            if d != Drift::Deleted {
                let mut live = guest;
                if d == Drift::Moved {
                    live.cores += 2;
                }
                pool.push(vmid);
                guests.push(live);
            }
            if d == Drift::Added {
                let id = 500_000 + i as u32;
                pool.push(id);
                guests.push(Guest {
                    vmid: id,
                    node: format!("pve-{:02}", 1 + i % NODES),
                    name: format!("manual-{i}"),
                    cores: 1,
                    memory_mib: 1024,
                    mac: mac_extra(i).to_uppercase(),
                });
            }
        }
        if i < routes {
            files.push(
                "routes",
                &name,
                format!(
                    "apiVersion: labctl.dev/v1\nkind: Route\nmetadata:\n  name: {name}\nspec:\n  entryPoints: [websecure]\n  host: {name}.apps.lab.example\n  backend:\n    service: {{device: {name}, service: web}}\n  tls: {{certResolver: letsencrypt}}\n"
                ),
            );
        }
        if i < mcp_servers {
            files.push(
                "mcp",
                &format!("mcp-{i}"),
                format!(
                    "apiVersion: labctl.dev/v1\nkind: McpServer\nmetadata:\n  name: mcp-{i}\nspec:\n  transport: streamable-http\n  url: http://127.0.0.1:1/mcp-{i}\n  device: host-{i}\n"
                ),
            );
        }
    }
    let subnet4: Vec<Json> = kea
        .into_iter()
        .enumerate()
        .map(|(k, reservations)| {
            json!({"id": k + 1, "subnet": subnet(k), "reservations": reservations})
        })
        .collect();
    Lab {
        files: files.finish(),
        subnet4: Json::Array(subnet4),
        guests,
        pve_pools,
        counts: Counts {
            pools: 1 + SITES + SITES * GROUPS,
            devices,
            reservations,
            routes,
            mcp_servers,
        },
        drifted,
    }
}

/// An address of host `i`'s subnet beyond the lab's own hosts, unique to `i` among the
/// drifted hosts: at most 20 per thousand drift, so at most 20 per subnet, in 1,001–1,020.
fn spare_ip(i: usize, permille: usize) -> String {
    let every = (1000 / permille).max(1);
    addr(i / PER_SUBNET, PER_SUBNET + 1 + (i % PER_SUBNET) / every)
}

fn mac_extra(i: usize) -> String {
    mac(i, 0xee)
}

/// Files being written in a layout.
struct Files {
    layout: Layout,
    done: Vec<(String, String)>,
    /// Per directory: the open part's text, its documents, and the parts written.
    open: Vec<(&'static str, String, usize, usize)>,
}

impl Files {
    fn new(layout: Layout) -> Self {
        Files {
            layout,
            done: Vec::new(),
            open: Vec::new(),
        }
    }

    fn whole(&mut self, path: &str, text: String) {
        self.done.push((path.to_string(), text));
    }

    fn push(&mut self, dir: &'static str, name: &str, doc: String) {
        if self.layout == Layout::PerFile {
            self.done.push((format!("{dir}/{name}.yaml"), doc));
            return;
        }
        let at = match self.open.iter().position(|o| o.0 == dir) {
            Some(at) => at,
            None => {
                self.open.push((dir, String::new(), 0, 0));
                self.open.len() - 1
            }
        };
        let open = &mut self.open[at];
        if open.2 > 0 {
            open.1.push_str("---\n");
        }
        open.1.push_str(&doc);
        open.2 += 1;
        if open.2 == GROUPED {
            let text = std::mem::take(&mut open.1);
            self.done
                .push((format!("{dir}/part-{}.yaml", open.3), text));
            open.2 = 0;
            open.3 += 1;
        }
    }

    fn finish(mut self) -> Vec<(String, String)> {
        for (dir, text, docs, part) in std::mem::take(&mut self.open) {
            if docs > 0 {
                self.done.push((format!("{dir}/part-{part}.yaml"), text));
            }
        }
        self.done
    }
}
