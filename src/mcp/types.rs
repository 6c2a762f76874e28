//! Inputs and outputs of the MCP tools: their JSON Schemas are what clients see.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value as Json;

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
    /// Only devices in this pool: a pool name (`gpu-nodes`) or a path whose last segment is
    /// the pool name (`/homelab/compute/gpu-nodes`); a trailing `/` or `*` matches pools
    /// whose name starts with what precedes it.
    pub pool: Option<String>,
    /// Only this device type, e.g. `vm` or `lxc`.
    #[serde(rename = "type")]
    pub device_type: Option<String>,
    /// Only this status: `synced`, `out-of-sync` or `unknown`.
    pub status: Option<String>,
    /// Only devices with this label, as `key=value`.
    pub label: Option<String>,
    /// Which fields to return per device (default: name, type, status, deviations, ips,
    /// pools). Also: provider, macs, reservations, desired, observed.
    pub fields: Option<Vec<String>>,
    /// At most this many devices (default 50, at most 500).
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
    /// `synced`, `out-of-sync` (see openDeviations) or `unknown` (could not be observed).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    /// How many deviations the run found on the device.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deviations: Option<u64>,
    /// IPv4 addresses: its own and those of its DHCP reservations.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ips: Option<Vec<String>>,
    /// Proxmox pools it is a member of.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pools: Option<Vec<String>>,
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
    /// Sorted by name.
    pub devices: Vec<DeviceInfo>,
    /// Devices matching the filters, over all pages.
    pub total: u64,
    /// Pass as `cursor` for the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
    /// Why an answer may be emptier than expected.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
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
}

#[derive(Debug, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GetDriftOutput {
    #[serde(flatten)]
    pub basis: Basis,
    /// Worst first, then by kind, name and field.
    pub deviations: Vec<DeviationInfo>,
    pub total: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
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
}

// ---- get_reconcile_status ---------------------------------------------------------------

#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ReconcileStatusInput {
    /// How many recent runs (default 10, at most 100).
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
