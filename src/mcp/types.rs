//! Inputs and outputs of the MCP tools: their JSON Schemas are what clients see.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value as Json;

use super::page::{Listed, Page};

/// Which state an answer reflects.
#[derive(Debug, Clone, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Basis {
    /// The Git commit SHA of the desired state (null when it was read from a plain directory).
    pub commit: Option<String>,
    /// When the live lab was observed: the end of the run, RFC 3339 UTC.
    pub observed_at: String,
    /// The id of that reconcile run.
    pub run: i64,
}

// ---- infrastructure_summary -------------------------------------------------------------

#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SummaryInput {}

#[derive(Debug, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SummaryOutput {
    #[serde(flatten)]
    pub basis: Basis,
    /// Resources in the reconciled model.
    pub resources: u64,
    /// Per kind (Pool, Device, DhcpReservation, Route, McpServer): count by status.
    pub by_kind: BTreeMap<String, KindCount>,
    pub open_deviations: DeviationCounts,
    /// The most recent run, whatever its outcome (it may be newer than the model).
    pub last_run: Option<RunInfo>,
}

#[derive(Debug, Default, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct KindCount {
    pub total: u64,
    /// `synced`, `out-of-sync`, `unknown` → count.
    pub by_status: BTreeMap<String, u64>,
}

#[derive(Debug, Default, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeviationCounts {
    pub total: u64,
    pub critical: u64,
    pub high: u64,
    pub medium: u64,
    pub low: u64,
}

#[derive(Debug, Clone, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RunInfo {
    pub id: i64,
    /// What started it (`cli`, `schedule`, …).
    pub trigger: String,
    pub controller: String,
    /// `running`, `succeeded`, `failed` or `aborted`.
    pub outcome: String,
    /// RFC 3339 UTC.
    pub started_at: String,
    /// RFC 3339 UTC; null while running.
    pub finished_at: Option<String>,
    pub commit: Option<String>,
    /// Desired resources the run compared.
    pub resources: i64,
    pub deviations_open: i64,
    pub deviations_opened: i64,
    pub deviations_resolved: i64,
    /// What went wrong (unreachable providers, failed applies).
    pub error: Option<String>,
    /// Whether the run recorded a reconciled model.
    pub has_model: bool,
}

// ---- list_devices / get_device ----------------------------------------------------------

#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ListDevicesInput {
    /// Only devices in this pool or a pool below it: a pool name (`compute`) or path
    /// (`/homelab/compute`), case-insensitive; a trailing `*` matches pool paths (or names)
    /// starting with what precedes it (`/homelab/compute/gp*`).
    pub pool: Option<String>,
    /// Only this device type, e.g. `vm` or `lxc`.
    #[serde(rename = "type")]
    pub device_type: Option<String>,
    /// Only this status: `synced`, `out-of-sync`, `unknown` or `unobserved`.
    pub status: Option<String>,
    /// Only devices with this label (`metadata.labels`), as `key=value`, e.g. `role=inference`.
    pub label: Option<String>,
    /// Only devices with this dimension, as `key=value`, e.g. `gpu=true`: the device's own
    /// dimensions over those it inherits from its pool and the pool's ancestors.
    pub dimension: Option<String>,
    /// Which fields to return per device (default: name, type, status, deviations, ips,
    /// pool, pools, labels). Also: provider, macs, reservations, services, dimensions,
    /// desired, observed.
    pub fields: Option<Vec<String>>,
    /// At most this many devices (default 50, at most 500).
    #[schemars(range(min = 1))]
    pub limit: Option<u32>,
    /// `nextCursor` of the previous page.
    pub cursor: Option<String>,
}

#[derive(Debug, Default, Clone, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeviceInfo {
    pub name: String,
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    pub device_type: Option<String>,
    /// `synced`, `out-of-sync` (see openDeviations), `unknown` (could not be observed) or
    /// `unobserved` (no provider covers it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    /// How many deviations the run found on the device.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deviations: Option<u64>,
    /// IPv4 addresses: its own and those of its DHCP reservations.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ips: Option<Vec<String>>,
    /// The path of the pool Git puts it in (`spec.pool`), e.g. `/homelab/compute/gpu-nodes`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pool: Option<String>,
    /// Names of the pools it is in: its `spec.pool` and the Proxmox pools listing it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pools: Option<Vec<String>>,
    /// `metadata.labels` from Git.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub labels: Option<BTreeMap<String, String>>,
    /// Services it offers, as Git declares them (name, port, protocol, health path).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub services: Option<Vec<Json>>,
    /// Effective dimensions: its own over those inherited from its pool.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dimensions: Option<BTreeMap<String, Json>>,
    /// The providers that cover it, comma-separated; absent when none does.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub macs: Option<Vec<String>>,
    /// Names of its DHCP reservations.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reservations: Option<Vec<String>>,
    /// What Git declares, in the provider's live shape.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub desired: Option<Json>,
    /// What the provider saw.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub observed: Option<Json>,
}

#[derive(Debug, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ListDevicesOutput {
    #[serde(flatten)]
    pub basis: Basis,
    /// `devices`, `total` and `nextCursor`.
    #[serde(flatten)]
    pub page: Page<DeviceInfo>,
    /// Why an answer may be emptier than expected.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

// ---- list_pools / get_pool --------------------------------------------------------------

#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ListPoolsInput {
    /// Only pools whose path starts with this, e.g. `/homelab/compute` (the pool itself and
    /// everything below it). Case-insensitive.
    pub path_prefix: Option<String>,
    /// Only pools of this type: `compute`, `storage` or `network`.
    #[serde(rename = "type")]
    pub pool_type: Option<String>,
    /// Only pools whose effective dimensions (own over inherited) match every `key=value`,
    /// e.g. `["gpu=true"]`.
    pub dimensions: Option<Vec<String>>,
    /// Which fields to return per pool (default: name, path, type, members, capacity,
    /// usage, status). Also: parent, description, proxmoxPool, labels, properties,
    /// dimensions, children, deviations, overCapacity.
    pub fields: Option<Vec<String>>,
    /// At most this many pools (default 50, at most 500).
    #[schemars(range(min = 1))]
    pub limit: Option<u32>,
    /// `nextCursor` of the previous page.
    pub cursor: Option<String>,
}

#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct FindPlacementInput {
    /// Cores the new guest needs.
    pub cores: Option<u64>,
    /// Memory the new guest needs, in MiB.
    #[serde(rename = "memoryMiB")]
    pub memory_mib: Option<u64>,
    /// Disk the new guest needs, in GiB.
    #[serde(rename = "storageGiB")]
    pub storage_gib: Option<u64>,
    /// Effective pool dimensions the guest needs, every `key=value`, e.g. `["gpu=true"]`.
    pub dimensions: Option<Vec<String>>,
    /// Only pools at or below this path, e.g. `/homelab/compute`. Case-insensitive.
    pub path_prefix: Option<String>,
    /// Pool type (default `compute`): `compute`, `storage` or `network`.
    #[serde(rename = "type")]
    pub pool_type: Option<String>,
    /// At most this many candidates (default 10, at most 100).
    #[schemars(range(min = 1))]
    pub limit: Option<u32>,
}

/// One pool a new guest could go in, or could not, and why.
#[derive(Debug, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PlacementInfo {
    pub pool: String,
    pub path: String,
    /// Every amount asked for is declared and free (and one more device fits).
    pub fits: bool,
    /// Declared capacity less what the pool's members use, before the new guest.
    pub free: Resources,
    /// One sentence per amount: what is asked, what is free, what is declared.
    pub reasons: Vec<String>,
    /// The pool's Proxmox VE pool, to put in the new Device's spec.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub proxmox_pool: Option<String>,
}

#[derive(Debug, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FindPlacementOutput {
    #[serde(flatten)]
    pub basis: Basis,
    /// Fitting pools first, most room left after the guest first.
    pub candidates: Vec<PlacementInfo>,
    /// How many pools matched before `limit`.
    pub considered: u64,
    /// Proxmox VE nodes by the same rule, from the capacity they reported (cores and memory)
    /// less what the guests on them use: fitting nodes first. Put the node in the Device's
    /// `spec.proxmox.node`.
    pub nodes: Vec<NodePlacementInfo>,
}

/// A node a new guest could run on, or why not.
#[derive(Debug, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NodePlacementInfo {
    /// The provider (labctl.yaml) that reported it.
    pub provider: String,
    pub node: String,
    pub online: bool,
    /// Cores and memory asked for are reported and free, and the node is online.
    pub fits: bool,
    /// Capacity less what its guests use, before the new guest.
    pub free: Resources,
    /// One sentence per amount asked for.
    pub reasons: Vec<String>,
}

/// Cores, memory, storage and device count: declared capacity, or what members use.
#[derive(Debug, Default, Clone, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Resources {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cores: Option<u64>,
    #[serde(rename = "memoryMiB", skip_serializing_if = "Option::is_none")]
    pub memory_mib: Option<u64>,
    #[serde(rename = "storageGiB", skip_serializing_if = "Option::is_none")]
    pub storage_gib: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub devices: Option<u64>,
}

#[derive(Debug, Default, Clone, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PoolInfo {
    pub name: String,
    /// `/homelab/compute/gpu-nodes`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// compute, storage or network.
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    pub pool_type: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parent: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The Proxmox VE pool it maps to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub proxmox_pool: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub labels: Option<BTreeMap<String, String>>,
    /// Effective properties: own over inherited.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub properties: Option<BTreeMap<String, Json>>,
    /// Effective dimensions: own over inherited.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dimensions: Option<BTreeMap<String, Json>>,
    /// Names of its child pools.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub children: Option<Vec<String>>,
    /// Devices whose `spec.pool` is this pool (not its children), sorted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub members: Option<Vec<String>>,
    /// Declared capacity (absent when the pool declares none).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub capacity: Option<Resources>,
    /// What its members and its child pools' members use, from their Git specs: cores,
    /// memoryMiB and storageGiB (disks) of the guests (vm, lxc; a physical host provides
    /// capacity rather than using it), and devices counting every member.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usage: Option<Resources>,
    /// Capacity entries that usage exceeds (`cores`, `memoryMiB`, `storageGiB`, `devices`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub over_capacity: Option<Vec<String>>,
    /// synced, out-of-sync, unknown, or unobserved (no provider covers it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deviations: Option<u64>,
}

#[derive(Debug, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ListPoolsOutput {
    #[serde(flatten)]
    pub basis: Basis,
    /// `pools`, `total` and `nextCursor`.
    #[serde(flatten)]
    pub page: Page<PoolInfo>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GetPoolInput {
    /// The pool's name (`gpu-nodes`) or path (`/homelab/compute/gpu-nodes`), case-insensitive.
    pub pool: String,
}

/// Where an effective property or dimension comes from.
#[derive(Debug, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Inherited {
    pub value: Json,
    /// The pool that sets it: this pool's name when it is its own.
    pub from: String,
    /// Set on an ancestor, not on this pool.
    pub inherited: bool,
}

#[derive(Debug, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GetPoolOutput {
    #[serde(flatten)]
    pub basis: Basis,
    /// name, path, type, parent, capacity, usage, members… (every field).
    pub pool: PoolInfo,
    /// Its ancestors' paths, root first.
    pub ancestors: Vec<String>,
    /// Effective properties with the pool that sets each.
    pub properties: BTreeMap<String, Inherited>,
    /// Effective dimensions with the pool that sets each.
    pub dimensions: BTreeMap<String, Inherited>,
    /// Devices in this pool and all pools below it, sorted.
    pub all_members: Vec<String>,
    /// Open deviations of the pool and of its members (direct and below), worst first.
    pub open_deviations: Vec<DeviationInfo>,
}

// ---- list_dhcp_reservations -------------------------------------------------------------

#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ListReservationsInput {
    /// Only reservations in this subnet (`10.0.1.0/24`): declared in it, or with an address
    /// inside it.
    pub subnet: Option<String>,
    /// Only this status: synced, out-of-sync, unknown or unobserved.
    pub status: Option<String>,
    /// Which fields to return per reservation (default: all): subnet, ip, mac, hostname,
    /// observedIp, inGit, device, status, deviations.
    pub fields: Option<Vec<String>>,
    /// At most this many reservations (default 100, at most 500).
    #[schemars(range(min = 1))]
    pub limit: Option<u32>,
    /// `nextCursor` of the previous page.
    pub cursor: Option<String>,
}

#[derive(Debug, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReservationInfo {
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subnet: Option<String>,
    /// The address Git declares (live address for a reservation that is only live).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ip: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mac: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    /// The address seen live when it differs from Git's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub observed_ip: Option<String>,
    /// In Git (false: only live, unmanaged).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub in_git: Option<bool>,
    /// The device it belongs to (same name or same MAC).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub device: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deviations: Option<u64>,
}

#[derive(Debug, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ListReservationsOutput {
    #[serde(flatten)]
    pub basis: Basis,
    /// `reservations`, `total` and `nextCursor`.
    #[serde(flatten)]
    pub page: Page<ReservationInfo>,
}

// ---- list_routes ------------------------------------------------------------------------

#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ListRoutesInput {
    /// Only routes whose host contains this, case-insensitive (`grafana`, `lab.example`).
    pub host: Option<String>,
    /// Only this status: synced, out-of-sync, unknown or unobserved.
    pub status: Option<String>,
    /// Which fields to return per route (default: all): host, pathPrefix, rule, backendUrls,
    /// backendService, entryPoints, middlewares, certResolver, inGit, providers, status,
    /// deviations.
    pub fields: Option<Vec<String>>,
    /// At most this many routes (default 100, at most 500).
    #[schemars(range(min = 1))]
    pub limit: Option<u32>,
    /// `nextCursor` of the previous page.
    pub cursor: Option<String>,
}

#[derive(Debug, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RouteInfo {
    pub name: String,
    /// The host it answers for (from `host`, or the `Host(...)` of its rule).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path_prefix: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    /// Backend URLs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backend_urls: Option<Vec<String>>,
    /// `device/service` when the backend names a device's service.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backend_service: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub entry_points: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub middlewares: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cert_resolver: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub in_git: Option<bool>,
    /// Providers that serve it (traefik, caddy); empty when none covers it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub providers: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deviations: Option<u64>,
}

#[derive(Debug, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ListRoutesOutput {
    #[serde(flatten)]
    pub basis: Basis,
    /// `routes`, `total` and `nextCursor`.
    #[serde(flatten)]
    pub page: Page<RouteInfo>,
}

// ---- list_mcp_servers -------------------------------------------------------------------

#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ListMcpServersInput {
    /// Only this status: synced, out-of-sync, unknown or unobserved.
    pub status: Option<String>,
    /// Only servers that answered (true) or did not (false) at the last observation.
    pub reachable: Option<bool>,
    /// Which fields to return per server (default: name, transport, endpoint, status,
    /// reachable, expectedTools, missingTools). Also: device, serverName, serverVersion,
    /// protocolVersion, offeredTools, deviations.
    pub fields: Option<Vec<String>>,
    /// At most this many servers (default 50, at most 500).
    #[schemars(range(min = 1))]
    pub limit: Option<u32>,
    /// `nextCursor` of the previous page.
    pub cursor: Option<String>,
}

#[derive(Debug, Default, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct McpServerInfo {
    pub name: String,
    /// streamable-http, sse or stdio.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub transport: Option<String>,
    /// The URL, or the command for stdio.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub device: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deviations: Option<u64>,
    /// Whether it answered at the last observation (absent: not observed).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reachable: Option<bool>,
    /// The tools Git expects it to offer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expected_tools: Option<Vec<String>>,
    /// Every tool it offered (when it answered).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub offered_tools: Option<Vec<String>>,
    /// Expected tools it did not offer (only known when it answered).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub missing_tools: Option<Vec<String>>,
    /// What it calls itself.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server_version: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub protocol_version: Option<String>,
}

#[derive(Debug, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ListMcpServersOutput {
    #[serde(flatten)]
    pub basis: Basis,
    /// `servers`, `total` and `nextCursor`.
    #[serde(flatten)]
    pub page: Page<McpServerInfo>,
}

// ---- list_snapshots / diff_snapshots ----------------------------------------------------

#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ListSnapshotsInput {
    /// Only this provider's snapshots (`kea`, `pve`, `mcp`…).
    pub provider: Option<String>,
    /// At most this many snapshots (default 20, at most 200).
    #[schemars(range(min = 1))]
    pub limit: Option<u32>,
    /// `nextCursor` of the previous page.
    pub cursor: Option<String>,
}

#[derive(Debug, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SnapshotItem {
    /// Pass to diff_snapshots as from/to.
    pub id: i64,
    pub provider: String,
    /// Bytes of its JSON body.
    pub size: i64,
    /// Content hash: two snapshots with the same hash are identical.
    pub hash: String,
    /// The runs it was seen in: from firstRun to lastRun, unchanged.
    pub first_run: i64,
    pub last_run: i64,
    /// RFC 3339 UTC.
    pub first_seen_at: String,
    pub last_seen_at: String,
}

#[derive(Debug, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ListSnapshotsOutput {
    #[serde(flatten)]
    pub basis: Basis,
    /// Newest first.
    pub snapshots: Vec<SnapshotItem>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DiffSnapshotsInput {
    /// The older snapshot's id (from list_snapshots). Omit, with `provider`, to compare that
    /// provider's two latest snapshots.
    pub from: Option<i64>,
    /// The newer snapshot's id; default: the latest snapshot of `from`'s provider.
    pub to: Option<i64>,
    /// With no `from`: the provider whose two latest snapshots to compare.
    pub provider: Option<String>,
    /// Only changes at or below this JSON Pointer, e.g. `/resources/3`.
    pub path_prefix: Option<String>,
    /// At most this many changes (default 100, at most 1000).
    #[schemars(range(min = 1))]
    pub limit: Option<u32>,
    /// `nextCursor` of the previous page.
    pub cursor: Option<String>,
}

#[derive(Debug, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ChangeInfo {
    /// JSON Pointer (RFC 6901) of the value, e.g. `/resources/3/fields/ip`.
    pub path: String,
    /// added, removed or changed.
    pub kind: String,
    /// The resource it belongs to, `Kind/name`, when the path is inside one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resource: Option<String>,
    pub before: Option<Json>,
    pub after: Option<Json>,
}

#[derive(Debug, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DiffSnapshotsOutput {
    #[serde(flatten)]
    pub basis: Basis,
    pub from: SnapshotItem,
    pub to: SnapshotItem,
    /// `changes`, `total` and `nextCursor`.
    #[serde(flatten)]
    pub page: Page<ChangeInfo>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GetDeviceInput {
    /// The device's name (case-insensitive) or one of its IPv4 addresses.
    pub device: String,
}

#[derive(Debug, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GetDeviceOutput {
    #[serde(flatten)]
    pub basis: Basis,
    pub device: DeviceInfo,
    /// Its open deviations, and those of its DHCP reservations, worst first.
    pub open_deviations: Vec<DeviationInfo>,
}

// ---- lookup_ip --------------------------------------------------------------------------

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LookupIpInput {
    /// An IPv4 address, e.g. `10.0.1.77`.
    pub ip: String,
}

#[derive(Debug, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LookupIpOutput {
    #[serde(flatten)]
    pub basis: Basis,
    pub ip: String,
    /// True when nothing in Git or in the live lab uses the address.
    pub free: bool,
    /// What uses it: reservations, devices, route backends, MCP servers.
    pub used_by: Vec<IpUser>,
    /// The /24 around the address.
    pub subnet: String,
    /// Unused addresses of that /24 nearest to the address (not the network or broadcast
    /// address).
    pub free_nearby: Vec<String>,
}

#[derive(Debug, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct IpUser {
    pub kind: String,
    pub name: String,
    /// Field paths that hold the address.
    pub fields: Vec<String>,
    /// `desired` (Git), `observed` (live) or `both`.
    pub source: String,
    /// The resource's status.
    pub status: String,
}

// ---- get_drift / explain_deviation ------------------------------------------------------

#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GetDriftInput {
    /// Only this kind: Pool, Device, DhcpReservation, Route or McpServer.
    pub kind: Option<String>,
    /// Only at least this severity: low, medium, high or critical.
    pub min_severity: Option<String>,
    /// Only deviations opened within this long ago: `30m`, `24h`, `7d`.
    pub since: Option<String>,
    /// At most this many deviations (default 50, at most 500).
    #[schemars(range(min = 1))]
    pub limit: Option<u32>,
    /// `nextCursor` of the previous page.
    pub cursor: Option<String>,
}

#[derive(Debug, Clone, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeviationInfo {
    pub kind: String,
    pub name: String,
    /// Field path (`spec.ip`); empty for the resource as a whole.
    pub field: String,
    /// `missing` (in Git, not live), `unmanaged` (live, not in Git), `drifted` (a field
    /// differs).
    #[serde(rename = "type")]
    pub dtype: String,
    /// low, medium, high or critical.
    pub severity: String,
    /// The value Git declares.
    pub expected: Option<Json>,
    /// The live value.
    pub actual: Option<Json>,
    /// labctl can correct it itself (when the kind's policy is `apply`).
    pub auto_correctable: bool,
    pub remediation: Option<String>,
    /// RFC 3339 UTC.
    pub opened_at: String,
    pub last_seen_at: String,
    /// Runs that saw it.
    pub seen_count: i64,
    /// labctl's open pull request that proposes accepting it into Git, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pull_request: Option<PullRequestRef>,
}

/// A pull request labctl opened.
#[derive(Debug, Clone, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PullRequestRef {
    /// Its number on the forge.
    pub number: Option<i64>,
    /// The page to review it on.
    pub url: Option<String>,
    /// The branch it proposes (`labctl/drift/…`).
    pub branch: String,
    /// `PR #12 open`.
    pub summary: String,
}

#[derive(Debug, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GetDriftOutput {
    #[serde(flatten)]
    pub basis: Basis,
    /// `deviations`, `total` and `nextCursor`.
    #[serde(flatten)]
    pub page: Page<DeviationInfo>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ExplainDeviationInput {
    /// Pool, Device, DhcpReservation, Route or McpServer.
    pub kind: String,
    /// The resource's name (case-insensitive).
    pub name: String,
    /// The field path, e.g. `spec.ip`; omit for the resource as a whole or when it has one
    /// open deviation.
    pub field: Option<String>,
}

#[derive(Debug, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ExplainDeviationOutput {
    #[serde(flatten)]
    pub basis: Basis,
    pub kind: String,
    pub name: String,
    pub field: String,
    /// Whether it is open now.
    pub open: bool,
    /// The latest life cycle.
    pub current: DeviationInfo,
    /// Why it matters, in a sentence.
    pub why_it_matters: String,
    /// What to do about it.
    pub remediation: String,
    /// Every life cycle, oldest first.
    pub history: Vec<HistoryEntry>,
    /// The resource's status in the model (absent when it is no longer in the model).
    pub resource_status: Option<String>,
}

#[derive(Debug, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HistoryEntry {
    pub opened_at: String,
    pub opened_run: i64,
    pub last_seen_at: String,
    pub seen_count: i64,
    /// Null while open.
    pub resolved_at: Option<String>,
    pub resolved_run: Option<i64>,
    /// The commit that was live when it went away.
    pub resolved_commit: Option<String>,
    pub severity: String,
    pub expected: Option<Json>,
    pub actual: Option<Json>,
    /// The change labctl made that resolved it, when a run of labctl repaired it itself.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub repaired_by: Option<ChangeItem>,
}

/// A change a run asked a provider to make, and what came of it.
#[derive(Debug, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ChangeItem {
    pub run: i64,
    /// RFC 3339 UTC.
    pub at: String,
    pub provider: String,
    /// create, update or delete.
    pub action: String,
    pub kind: String,
    pub name: String,
    /// The live fields before; null for a create.
    pub before: Option<Json>,
    /// The fields asked for; null for a delete.
    pub after: Option<Json>,
    /// `applied` (confirmed by observing again), `unconfirmed` (accepted, but the lab does
    /// not show it) or `failed`.
    pub result: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

// ---- get_reconcile_status ---------------------------------------------------------------

#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ReconcileStatusInput {
    /// How many recent runs (default 10, at most 100).
    #[schemars(range(min = 1))]
    pub limit: Option<u32>,
}

#[derive(Debug, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReconcileStatusOutput {
    #[serde(flatten)]
    pub basis: Basis,
    /// Newest first.
    pub runs: Vec<RunInfo>,
    /// Per provider: when it last answered an observation.
    pub providers: Vec<ProviderInfo>,
    /// The most recent changes labctl asked providers to make (at most 50), newest first.
    pub recent_changes: Vec<ChangeItem>,
    /// Runtime suspensions in force (`labctl suspend`): runs observe and record what they
    /// cover, and change nothing of it. Empty when labctl acts normally.
    pub suspended: Vec<SuspensionInfo>,
}

#[derive(Debug, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SuspensionInfo {
    /// `everything`, a kind, or `Kind/name`.
    pub scope: String,
    pub reason: String,
    /// Who suspended it (`user NAME`).
    pub by: String,
    /// RFC 3339 UTC.
    pub since: String,
    /// The command that lifts it.
    pub resume: String,
}

#[derive(Debug, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProviderInfo {
    pub provider: String,
    /// RFC 3339 UTC of its latest observation.
    pub last_observed_at: String,
    /// The latest run that observed it.
    pub last_run: i64,
}

// ---- validate_definition ----------------------------------------------------------------

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ValidateInput {
    /// One or more YAML documents (separated by `---`), as they would be written in the
    /// repository.
    pub yaml: String,
    /// The file name to report positions against (default `definition.yaml`).
    pub file: Option<String>,
}

#[derive(Debug, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ValidateOutput {
    /// No errors (warnings allowed).
    pub valid: bool,
    pub errors: u64,
    pub warnings: u64,
    /// Documents that parsed.
    pub documents: u64,
    pub diagnostics: Vec<DiagnosticInfo>,
}

#[derive(Debug, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DiagnosticInfo {
    /// error or warning.
    pub severity: String,
    /// Stable identifier, e.g. `duplicate-ip`.
    pub code: String,
    pub message: String,
    /// `file:line:column`.
    pub location: Option<String>,
    pub line: Option<u64>,
    pub column: Option<u64>,
    /// `Kind/name`.
    pub document: Option<String>,
    /// Field path.
    pub field: Option<String>,
    /// What to do, including "did you mean".
    pub help: Option<String>,
    /// The one-line form `file:line:col: error[code]: message [Kind/name field]`.
    pub summary: String,
}

// ---- what each list is called -----------------------------------------------------------

/// `Item => "field", "order"`: the name and order of a list of `Item` in an answer.
macro_rules! listed {
    ($($item:ty => $field:literal, $order:literal;)*) => {$(
        impl Listed for $item {
            const FIELD: &'static str = $field;
            const ORDER: &'static str = $order;
        }
    )*};
}

listed! {
    DeviceInfo => "devices", "Sorted by name.";
    PoolInfo => "pools", "Sorted by path.";
    ReservationInfo => "reservations", "Sorted by address, then name.";
    RouteInfo => "routes", "Sorted by host, then name.";
    McpServerInfo => "servers", "Sorted by name.";
    ChangeInfo => "changes", "In document order.";
    DeviationInfo => "deviations", "Worst first, then by kind, name and field.";
}
