//! What each tool answers: its arguments checked, the question put to the reconciled model
//! ([`crate::readmodel::query`]) or the store, the answer projected into the tool's output
//! type, paged, and every refusal worded so an agent can act on it. Nothing here calls a
//! provider.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use super::model::{count, Model};
use super::page::{cursor, page_limit, parse_cursor, Page};
use super::types::*;
use super::ToolError;
use crate::model::{Ipv4Cidr, Kind, ResolvedPool};
use crate::readmodel::query::{values, Amounts, DeviceFilter, PoolQuery};
use crate::readmodel::{Entry, Status};
use crate::store::{repaired_by, AppliedChange, Deviation, Run, Severity, SnapshotInfo, Store};
use crate::time::{now_ms, rfc3339};
use crate::validate::{self, did_you_mean};
use serde_json::Value as Json;

/// The kinds a tool can be asked about (every kind but Config, which is no resource).
pub(crate) const KINDS: [Kind; 5] = [
    Kind::Pool,
    Kind::Device,
    Kind::DhcpReservation,
    Kind::Route,
    Kind::McpServer,
];
const DEFAULT_FIELDS: &[&str] = &[
    "name",
    "type",
    "status",
    "deviations",
    "ips",
    "pool",
    "pools",
    "labels",
];
const ALL_FIELDS: &[&str] = &[
    "name",
    "type",
    "status",
    "deviations",
    "ips",
    "pool",
    "pools",
    "labels",
    "provider",
    "macs",
    "reservations",
    "services",
    "dimensions",
    "desired",
    "observed",
];
const DAY_MS: i64 = 86_400_000;

pub fn basis(model: &Model) -> Basis {
    Basis {
        commit: model.commit.clone(),
        observed_at: rfc3339(model.finished_at),
        run: model.run,
    }
}

pub async fn infrastructure_summary(
    store: &Store,
    model: &Model,
    open: &[Deviation],
) -> Result<SummaryOutput, ToolError> {
    let mut by_kind: BTreeMap<String, KindCount> = BTreeMap::new();
    for (kind, status, n) in model.lab.counts() {
        let k = by_kind.entry(kind.to_string()).or_default();
        k.total += n;
        *k.by_status.entry(status.to_string()).or_insert(0) += n;
    }
    let severities = count(open.iter().map(|d| d.record.severity.as_str()));
    let sev = |s: &str| severities.get(s).copied().unwrap_or(0);
    Ok(SummaryOutput {
        basis: basis(model),
        resources: model.lab.entries().len() as u64,
        by_kind,
        open_deviations: DeviationCounts {
            total: open.len() as u64,
            critical: sev("critical"),
            high: sev("high"),
            medium: sev("medium"),
            low: sev("low"),
        },
        last_run: store.latest_run().await?.as_ref().map(run_info),
    })
}

pub fn list_devices(
    model: &Model,
    input: ListDevicesInput,
) -> Result<ListDevicesOutput, ToolError> {
    let fields = choose_fields(input.fields.as_deref(), DEFAULT_FIELDS, ALL_FIELDS)?;
    let filter = DeviceFilter {
        device_type: input.device_type.clone(),
        status: input.status.as_deref().map(status).transpose()?,
        pool: input
            .pool
            .as_deref()
            .map(|p| {
                model
                    .lab
                    .pool_filter(p)
                    .ok_or_else(|| pool_not_found(model, p.trim()))
            })
            .transpose()?,
        label: input
            .label
            .as_deref()
            .map(|l| key_value("label", l, "role=inference"))
            .transpose()?,
        dimension: input
            .dimension
            .as_deref()
            .map(|d| key_value("dimension", d, "gpu=true"))
            .transpose()?,
    };
    let mut notes = Vec::new();
    let devices: Vec<&Entry> = model.lab.of_kind(Kind::Device).collect();
    if let Some(t) = &input.device_type {
        let types: BTreeSet<&str> = devices.iter().filter_map(|d| d.field_str("type")).collect();
        if !types.iter().any(|x| x.eq_ignore_ascii_case(t)) && !types.is_empty() {
            notes.push(format!(
                "no device has type `{t}`; types in the model: {}",
                types.into_iter().collect::<Vec<_>>().join(", ")
            ));
        }
    }
    if let Some((k, _)) = &filter.label {
        let keys: BTreeSet<&str> = devices
            .iter()
            .flat_map(|d| d.labels().keys().map(String::as_str))
            .collect();
        if !keys.iter().any(|x| x.eq_ignore_ascii_case(k)) {
            notes.push(format!(
                "no device has a label `{k}`; label keys in use: {}",
                keys.into_iter().collect::<Vec<_>>().join(", ")
            ));
        }
    }
    let page = Page::of(
        model.lab.devices(&filter),
        input.limit,
        50,
        input.cursor.as_deref(),
        &model.tag,
    )?
    .map(|d| device_info(model, d, Some(&fields)));
    Ok(ListDevicesOutput {
        basis: basis(model),
        page,
        notes,
    })
}

pub async fn get_device(
    store: &Store,
    model: &Model,
    open: &[Deviation],
    input: GetDeviceInput,
) -> Result<GetDeviceOutput, ToolError> {
    let query = input.device.trim();
    let Some(device) = model.lab.find_device(query) else {
        return Err(not_found(model, Kind::Device, query));
    };
    let mut names = vec![(Kind::Device, device.name.clone())];
    for r in model.lab.reservations_of(device) {
        names.push((Kind::DhcpReservation, r.name.clone()));
    }
    let open_deviations = deviation_infos(
        store,
        open.iter().filter(|d| {
            names
                .iter()
                .any(|(k, n)| d.record.kind == k.as_str() && d.record.name == *n)
        }),
    )
    .await?;
    Ok(GetDeviceOutput {
        basis: basis(model),
        device: device_info(model, device, None),
        open_deviations,
    })
}

/// Deviations as the tools answer them, each with the pull request that proposes it; the pull
/// requests are read only when there is a deviation to name them on.
async fn deviation_infos<'a>(
    store: &Store,
    deviations: impl Iterator<Item = &'a Deviation>,
) -> Result<Vec<DeviationInfo>, ToolError> {
    let deviations: Vec<&Deviation> = deviations.collect();
    if deviations.is_empty() {
        return Ok(Vec::new());
    }
    let prs = store.open_pull_requests_by_deviation().await?;
    Ok(deviations
        .into_iter()
        .map(|d| deviation_info(d, &prs))
        .collect())
}

pub fn lookup_ip(model: &Model, input: LookupIpInput) -> Result<LookupIpOutput, ToolError> {
    let ip: Ipv4Addr = input.ip.trim().parse().map_err(|_| {
        ToolError::new(format!(
            "`{}` is not an IPv4 address; write it like 10.0.1.77",
            input.ip
        ))
    })?;
    let used_by: Vec<IpUser> = model
        .lab
        .ip_users(ip)
        .into_iter()
        .map(|u| IpUser {
            kind: u.entry.kind.to_string(),
            name: u.entry.name.clone(),
            fields: u.fields,
            source: u.side.as_str().into(),
            status: u.entry.status.to_string(),
        })
        .collect();
    let [a, b, c, _] = ip.octets();
    Ok(LookupIpOutput {
        basis: basis(model),
        ip: ip.to_string(),
        free: used_by.is_empty(),
        used_by,
        subnet: format!("{a}.{b}.{c}.0/24"),
        free_nearby: model
            .lab
            .free_near(ip, 5)
            .into_iter()
            .map(|x| x.to_string())
            .collect(),
    })
}

/// The open deviations `input` selects, from `open` (all of them, worst first): filtering
/// keeps that order.
pub async fn get_drift(
    store: &Store,
    model: &Model,
    open: &[Deviation],
    input: GetDriftInput,
) -> Result<GetDriftOutput, ToolError> {
    let kind = input.kind.as_deref().map(kind_name).transpose()?;
    let min = input
        .min_severity
        .as_deref()
        .map(|s| {
            Severity::parse(&s.to_ascii_lowercase()).ok_or_else(|| {
                ToolError::new(format!(
                    "minSeverity `{s}` is not a severity; use one of low, medium, high, critical"
                ))
            })
        })
        .transpose()?;
    let since = input.since.as_deref().map(parse_age).transpose()?;
    let cutoff = since.map(|age| now_ms() - age);
    let matching: Vec<&Deviation> = open
        .iter()
        .filter(|d| kind.is_none_or(|k| d.record.kind == k.as_str()))
        .filter(|d| min.is_none_or(|m| d.record.severity >= m))
        .filter(|d| cutoff.is_none_or(|c| d.opened_at >= c))
        .collect();
    let page = Page::of(
        matching,
        input.limit,
        50,
        input.cursor.as_deref(),
        &model.tag,
    )?;
    let items = deviation_infos(store, page.items.iter().copied()).await?;
    Ok(GetDriftOutput {
        basis: basis(model),
        page: Page {
            items,
            total: page.total,
            next_cursor: page.next_cursor,
        },
    })
}

pub async fn explain_deviation(
    store: &Store,
    model: &Model,
    input: ExplainDeviationInput,
) -> Result<ExplainDeviationOutput, ToolError> {
    let kind = kind_name(&input.kind)?;
    let open = store.open_deviations(Some(kind.as_str()), None).await?;
    // The name as recorded: from the model, else from the open deviations.
    let name = model
        .lab
        .find(kind, &input.name)
        .map(|e| e.name.clone())
        .or_else(|| {
            open.iter()
                .map(|d| &d.record.name)
                .find(|n| n.eq_ignore_ascii_case(&input.name))
                .cloned()
        })
        .ok_or_else(|| not_found(model, kind, &input.name))?;
    let field = match input.field {
        Some(f) => f,
        None => {
            let fields: Vec<&str> = open
                .iter()
                .filter(|d| d.record.name == name)
                .map(|d| d.record.field_path.as_str())
                .collect();
            match fields.as_slice() {
                [] => String::new(),
                [one] => one.to_string(),
                many if many.contains(&"") => String::new(),
                many => {
                    return Err(ToolError::new(format!(
                        "{kind}/{name} has {} open deviations; name one with `field`: {}",
                        many.len(),
                        many.join(", ")
                    )))
                }
            }
        }
    };
    let history = store
        .deviation_history(kind.as_str(), &name, &field)
        .await?;
    let changes = store.resource_changes(kind.as_str(), &name).await?;
    let Some(current) = history.last() else {
        let fields: BTreeSet<&str> = open
            .iter()
            .filter(|d| d.record.name == name)
            .map(|d| d.record.field_path.as_str())
            .collect();
        let shown = if field.is_empty() {
            "as a whole".to_string()
        } else {
            format!("on field `{field}`")
        };
        let hint = if fields.is_empty() {
            format!("{kind}/{name} has no open deviations")
        } else {
            format!(
                "its open deviations are on: {}",
                fields
                    .iter()
                    .map(|f| if f.is_empty() { "(whole resource)" } else { f })
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        };
        return Err(ToolError::new(format!(
            "no deviation of {kind}/{name} {shown} was ever recorded; {hint}"
        )));
    };
    let prs = store.open_pull_requests_by_deviation().await?;
    let info = deviation_info(current, &prs);
    let remediation = current
        .record
        .remediation
        .clone()
        .unwrap_or_else(|| "change Git to match the lab, or the lab to match Git".into());
    // Where a pull request already proposes the fix, that is the next step.
    let remediation = match &info.pull_request {
        Some(pr) => format!(
            "{}: review it{}; {remediation}",
            pr.summary,
            pr.url
                .as_deref()
                .map(|u| format!(" at {u}"))
                .unwrap_or_default()
        ),
        None => remediation,
    };
    Ok(ExplainDeviationOutput {
        basis: basis(model),
        kind: kind.to_string(),
        name: name.clone(),
        field: field.clone(),
        open: current.is_open(),
        why_it_matters: why_it_matters(current),
        remediation,
        history: history
            .iter()
            .map(|d| HistoryEntry {
                opened_at: rfc3339(d.opened_at),
                opened_run: d.opened_run,
                last_seen_at: rfc3339(d.last_seen_at),
                seen_count: d.seen_count,
                resolved_at: d.resolved_at.map(rfc3339),
                resolved_run: d.resolved_run,
                resolved_commit: d.resolved_commit.clone(),
                severity: d.record.severity.to_string(),
                expected: d.record.expected.clone(),
                actual: d.record.actual.clone(),
                repaired_by: repaired_by(d, &changes).map(change_item),
            })
            .collect(),
        resource_status: model.lab.find(kind, &name).map(|e| e.status.to_string()),
        current: info,
    })
}

pub async fn get_reconcile_status(
    store: &Store,
    model: &Model,
    input: ReconcileStatusInput,
) -> Result<ReconcileStatusOutput, ToolError> {
    let limit = page_limit(input.limit, 10, 100)?;
    let now = now_ms();
    let mut runs: Vec<Run> = Vec::new();
    // Widen the window until there are enough runs (or a year of them).
    for days in [1, 7, 30, 365] {
        runs = store.runs_between(now - days * DAY_MS, now + 1).await?;
        if runs.len() >= limit {
            break;
        }
    }
    if runs.is_empty() {
        runs.extend(store.latest_run().await?);
    }
    let runs: Vec<RunInfo> = runs.iter().rev().take(limit).map(run_info).collect();
    let mut providers: BTreeMap<String, ProviderInfo> = BTreeMap::new();
    for s in store.list_snapshots(None, 200).await? {
        providers.entry(s.provider.clone()).or_insert(ProviderInfo {
            provider: s.provider,
            last_observed_at: rfc3339(s.last_seen_at),
            last_run: s.last_run,
        });
    }
    let recent_changes = store
        .recent_changes(50)
        .await?
        .iter()
        .map(change_item)
        .collect();
    let suspended = store
        .suspensions()
        .await?
        .into_iter()
        .map(|s| SuspensionInfo {
            scope: s.scope(),
            resume: s.resume_command(),
            reason: s.reason,
            by: s.actor,
            since: rfc3339(s.since),
        })
        .collect();
    Ok(ReconcileStatusOutput {
        basis: basis(model),
        runs,
        providers: providers.into_values().collect(),
        recent_changes,
        suspended,
    })
}

/// A validation finding as the tools answer it.
pub(super) fn diagnostic_info(d: &crate::validate::Diagnostic) -> DiagnosticInfo {
    DiagnosticInfo {
        severity: d.severity.to_string(),
        code: d.code.to_string(),
        message: d.message.clone(),
        location: d.location.as_ref().map(|l| l.to_string()),
        line: d.location.as_ref().map(|l| l.line as u64),
        column: d.location.as_ref().map(|l| l.column as u64),
        document: d.document.clone(),
        field: d.field.clone(),
        help: d.help.clone(),
        summary: d.summary(),
    }
}

pub fn validate_definition(input: ValidateInput) -> ValidateOutput {
    let file = input
        .file
        .filter(|f| !f.trim().is_empty())
        .unwrap_or_else(|| "definition.yaml".into());
    let result = validate::validate_text(&file, &input.yaml);
    let diagnostics: Vec<DiagnosticInfo> = result.diagnostics.iter().map(diagnostic_info).collect();
    ValidateOutput {
        valid: result.errors() == 0,
        errors: result.errors() as u64,
        warnings: result.warnings() as u64,
        documents: result.documents as u64,
        diagnostics,
    }
}

// ---- pools ------------------------------------------------------------------------------

const POOL_TYPES: &[&str] = &["compute", "storage", "network"];
const POOL_DEFAULT_FIELDS: &[&str] = &[
    "name", "path", "type", "members", "capacity", "usage", "status",
];
const POOL_FIELDS: &[&str] = &[
    "name",
    "path",
    "type",
    "members",
    "capacity",
    "usage",
    "status",
    "parent",
    "description",
    "proxmoxPool",
    "labels",
    "properties",
    "dimensions",
    "children",
    "deviations",
    "overCapacity",
];

/// The pools the `pathPrefix`, `type` and `dimensions` arguments of a tool select.
fn pool_query(
    path_prefix: Option<&str>,
    pool_type: Option<&str>,
    dimensions: Option<&[String]>,
) -> Result<PoolQuery, ToolError> {
    Ok(PoolQuery {
        path_prefix: path_prefix.map(str::to_string),
        pool_type: pool_type
            .map(|t| one_of("type", t, POOL_TYPES).map(str::to_string))
            .transpose()?,
        dimensions: dimensions
            .into_iter()
            .flatten()
            .map(|d| key_value("dimension", d, "gpu=true"))
            .collect::<Result<_, _>>()?,
    })
}

pub fn list_pools(model: &Model, input: ListPoolsInput) -> Result<ListPoolsOutput, ToolError> {
    let fields = choose_fields(input.fields.as_deref(), POOL_DEFAULT_FIELDS, POOL_FIELDS)?;
    let query = pool_query(
        input.path_prefix.as_deref(),
        input.pool_type.as_deref(),
        input.dimensions.as_deref(),
    )?;
    let page = Page::of(
        model.lab.pools_matching(&query),
        input.limit,
        50,
        input.cursor.as_deref(),
        &model.tag,
    )?
    .map(|p| project_pool(pool_info(model, p), &fields));
    Ok(ListPoolsOutput {
        basis: basis(model),
        page,
    })
}

pub fn find_placement(
    model: &Model,
    input: FindPlacementInput,
) -> Result<FindPlacementOutput, ToolError> {
    if [input.cores, input.memory_mib, input.storage_gib]
        .iter()
        .all(Option::is_none)
    {
        return Err(ToolError::new(
            "give at least one of cores, memoryMiB or storageGiB the new guest needs",
        ));
    }
    let query = pool_query(
        input.path_prefix.as_deref(),
        Some(input.pool_type.as_deref().unwrap_or("compute")),
        input.dimensions.as_deref(),
    )?;
    let need = Amounts {
        cores: input.cores,
        memory_mib: input.memory_mib,
        storage_gib: input.storage_gib,
        devices: None,
    };
    let placements = model.lab.placements(&query, &need);
    let limit = page_limit(input.limit, 10, 100)?;
    Ok(FindPlacementOutput {
        basis: basis(model),
        considered: placements.len() as u64,
        candidates: placements
            .into_iter()
            .take(limit)
            .map(|p| PlacementInfo {
                pool: p.pool.name.clone(),
                path: p.pool.path.clone(),
                fits: p.fits,
                free: resources(p.free),
                reasons: p.reasons,
                proxmox_pool: model
                    .lab
                    .find(Kind::Pool, &p.pool.name)
                    .and_then(|e| e.spec_str("proxmoxPool"))
                    .map(str::to_string),
            })
            .collect(),
        nodes: model
            .lab
            .host_placements(&need)
            .into_iter()
            .take(limit)
            .map(|p| NodePlacementInfo {
                provider: p.host.provider.clone(),
                node: p.host.name.clone(),
                online: p.host.online,
                fits: p.fits,
                free: resources(p.free),
                reasons: p.reasons,
            })
            .collect(),
    })
}

pub async fn get_pool(
    store: &Store,
    model: &Model,
    open: &[Deviation],
    input: GetPoolInput,
) -> Result<GetPoolOutput, ToolError> {
    let Some(pool) = model.lab.resolve_pool(&input.pool) else {
        return Err(pool_not_found(model, input.pool.trim()));
    };
    let chain = model.lab.pool_chain(pool);
    let sources = |key: &str| -> BTreeMap<String, Inherited> {
        model
            .lab
            .settings(pool, key)
            .into_iter()
            .map(|(k, s)| {
                let setting = Inherited {
                    value: s.value,
                    from: s.from,
                    inherited: s.inherited,
                };
                (k, setting)
            })
            .collect()
    };
    let all_members: Vec<String> = model
        .lab
        .members_under(&pool.path)
        .iter()
        .map(|d| d.name.clone())
        .collect();
    let open_deviations = deviation_infos(
        store,
        open.iter().filter(|d| {
            (d.record.kind == Kind::Pool.as_str() && d.record.name == pool.name)
                || (d.record.kind == Kind::Device.as_str() && all_members.contains(&d.record.name))
        }),
    )
    .await?;
    Ok(GetPoolOutput {
        basis: basis(model),
        ancestors: chain[..chain.len() - 1]
            .iter()
            .map(|p| p.path.clone())
            .collect(),
        properties: sources("properties"),
        dimensions: sources("dimensions"),
        all_members,
        open_deviations,
        pool: pool_info(model, pool),
    })
}

fn pool_info(model: &Model, p: &ResolvedPool) -> PoolInfo {
    let entry = model.lab.find(Kind::Pool, &p.name);
    let spec_str = |k: &str| entry.and_then(|e| e.spec_str(k)).map(str::to_string);
    let used = model.lab.capacity_use(p);
    PoolInfo {
        name: p.name.clone(),
        path: Some(p.path.clone()),
        pool_type: spec_str("type"),
        parent: p.parent.clone(),
        description: spec_str("description"),
        proxmox_pool: spec_str("proxmoxPool"),
        labels: Some(entry.map(|e| e.labels().clone()).unwrap_or_default()),
        properties: Some(values(&p.properties)),
        dimensions: Some(values(&p.dimensions)),
        children: Some(model.lab.children_of(p).map(|c| c.name.clone()).collect()),
        members: Some(
            model
                .lab
                .members_of(p)
                .iter()
                .map(|d| d.name.clone())
                .collect(),
        ),
        capacity: used.capacity.map(resources),
        usage: Some(resources(used.usage)),
        over_capacity: used
            .over
            .map(|o| o.into_iter().map(str::to_string).collect()),
        status: entry.map(|e| e.status.to_string()),
        deviations: entry.map(|e| e.deviations),
    }
}

fn resources(a: Amounts) -> Resources {
    Resources {
        cores: a.cores,
        memory_mib: a.memory_mib,
        storage_gib: a.storage_gib,
        devices: a.devices,
    }
}

/// Sets to `None` each optional field of `$value` whose JSON name `fields` does not list
/// (`field = "jsonName"`), for the `fields` argument of list tools.
macro_rules! keep_only {
    ($value:ident, $fields:expr, $($f:ident = $n:literal),* $(,)?) => {$(
        if !$fields.contains($n) {
            $value.$f = None;
        }
    )*};
}

fn project_pool(mut p: PoolInfo, fields: &BTreeSet<&str>) -> PoolInfo {
    keep_only!(
        p,
        fields,
        path = "path",
        pool_type = "type",
        members = "members",
        capacity = "capacity",
        usage = "usage",
        status = "status",
        parent = "parent",
        description = "description",
        proxmox_pool = "proxmoxPool",
        labels = "labels",
        properties = "properties",
        dimensions = "dimensions",
        children = "children",
        deviations = "deviations",
        over_capacity = "overCapacity"
    );
    p
}

// ---- DHCP reservations, routes, MCP servers ---------------------------------------------

pub fn list_dhcp_reservations(
    model: &Model,
    input: ListReservationsInput,
) -> Result<ListReservationsOutput, ToolError> {
    let fields = choose_fields(
        input.fields.as_deref(),
        RESERVATION_FIELDS,
        RESERVATION_FIELDS,
    )?;
    let wanted = input.status.as_deref().map(status).transpose()?;
    let subnet = input
        .subnet
        .as_deref()
        .map(|s| {
            s.trim().parse::<Ipv4Cidr>().map_err(|e| {
                ToolError::new(format!(
                    "subnet `{s}` is not an IPv4 subnet ({e}); write it like 10.0.1.0/24"
                ))
            })
        })
        .transpose()?;
    // Filtered as entries, in the model's order by address; only the page becomes answers.
    fn observed_ip(r: &Entry) -> Option<&str> {
        r.observed.as_ref()?.get("ip")?.as_str()
    }
    let items: Vec<&Entry> = model
        .lab
        .reservations_by_address(wanted)
        .filter(|r| {
            subnet.as_ref().is_none_or(|net| {
                let declared = r
                    .field_str("subnet")
                    .and_then(|s| s.parse::<Ipv4Cidr>().ok())
                    .is_some_and(|s| s == *net);
                let inside = [r.field_str("ip"), observed_ip(r)]
                    .into_iter()
                    .flatten()
                    .filter_map(|ip| ip.parse::<Ipv4Addr>().ok())
                    .any(|ip| net.contains(ip));
                declared || inside
            })
        })
        .collect();
    let page = Page::of(items, input.limit, 100, input.cursor.as_deref(), &model.tag)?.map(|r| {
        let ip = r.field_str("ip").map(str::to_string);
        let info = ReservationInfo {
            name: r.name.clone(),
            subnet: r.field_str("subnet").map(str::to_string),
            observed_ip: observed_ip(r)
                .filter(|o| Some(*o) != ip.as_deref())
                .map(str::to_string),
            ip,
            mac: r.field_str("mac").map(str::to_string),
            hostname: r.field_str("hostname").map(str::to_string),
            in_git: Some(r.in_git()),
            device: model.lab.device_of_reservation(r).map(|d| d.name.clone()),
            status: Some(r.status.to_string()),
            deviations: Some(r.deviations),
        };
        project_reservation(info, &fields)
    });
    Ok(ListReservationsOutput {
        basis: basis(model),
        page,
    })
}

pub fn list_routes(model: &Model, input: ListRoutesInput) -> Result<ListRoutesOutput, ToolError> {
    let fields = choose_fields(input.fields.as_deref(), ROUTE_FIELDS, ROUTE_FIELDS)?;
    let wanted_status = input.status.as_deref().map(status).transpose()?;
    let wanted = input.host.as_deref().map(|h| h.trim().to_ascii_lowercase());
    let mut items: Vec<RouteInfo> = model
        .lab
        .of_kind(Kind::Route)
        .filter(|r| wanted_status.is_none_or(|s| r.status == s))
        .map(route_info)
        .filter(|r| {
            wanted.as_deref().is_none_or(|w| {
                r.host
                    .as_deref()
                    .is_some_and(|h| h.to_ascii_lowercase().contains(w))
            })
        })
        .collect();
    items.sort_by(|a, b| {
        (a.host.is_none(), &a.host, &a.name).cmp(&(b.host.is_none(), &b.host, &b.name))
    });
    let page = Page::of(items, input.limit, 100, input.cursor.as_deref(), &model.tag)?
        .map(|r| project_route(r, &fields));
    Ok(ListRoutesOutput {
        basis: basis(model),
        page,
    })
}

const RESERVATION_FIELDS: &[&str] = &[
    "name",
    "subnet",
    "ip",
    "mac",
    "hostname",
    "observedIp",
    "inGit",
    "device",
    "status",
    "deviations",
];
const ROUTE_FIELDS: &[&str] = &[
    "name",
    "host",
    "pathPrefix",
    "rule",
    "backendUrls",
    "backendService",
    "entryPoints",
    "middlewares",
    "certResolver",
    "inGit",
    "providers",
    "status",
    "deviations",
];

fn project_reservation(mut r: ReservationInfo, fields: &BTreeSet<&str>) -> ReservationInfo {
    keep_only!(
        r,
        fields,
        subnet = "subnet",
        ip = "ip",
        mac = "mac",
        hostname = "hostname",
        observed_ip = "observedIp",
        in_git = "inGit",
        device = "device",
        status = "status",
        deviations = "deviations"
    );
    r
}

fn project_route(mut r: RouteInfo, fields: &BTreeSet<&str>) -> RouteInfo {
    keep_only!(
        r,
        fields,
        host = "host",
        path_prefix = "pathPrefix",
        rule = "rule",
        backend_urls = "backendUrls",
        backend_service = "backendService",
        entry_points = "entryPoints",
        middlewares = "middlewares",
        cert_resolver = "certResolver",
        in_git = "inGit",
        providers = "providers",
        status = "status",
        deviations = "deviations"
    );
    r
}

fn route_info(r: &Entry) -> RouteInfo {
    let fields = r.fields().cloned().unwrap_or(Json::Null);
    let strings = |v: Option<&Json>| -> Vec<String> {
        v.and_then(Json::as_array)
            .into_iter()
            .flatten()
            .filter_map(Json::as_str)
            .map(str::to_string)
            .collect()
    };
    let rule = r.field_str("rule").map(str::to_string);
    let host = r.route_host();
    let backend = fields.get("backend");
    let service = backend.and_then(|b| b.get("service")).and_then(|s| {
        Some(format!(
            "{}/{}",
            s.get("device")?.as_str()?,
            s.get("service")?.as_str()?
        ))
    });
    RouteInfo {
        name: r.name.clone(),
        host,
        path_prefix: r.field_str("pathPrefix").map(str::to_string),
        rule,
        backend_urls: Some(strings(backend.and_then(|b| b.get("urls")))),
        backend_service: service,
        entry_points: Some(strings(fields.get("entryPoints"))),
        middlewares: Some(strings(fields.get("middlewares"))),
        cert_resolver: fields
            .get("tls")
            .and_then(|t| t.get("certResolver"))
            .and_then(Json::as_str)
            .map(str::to_string),
        in_git: Some(r.in_git()),
        providers: Some(r.providers.clone()),
        status: Some(r.status.to_string()),
        deviations: Some(r.deviations),
    }
}

const MCP_DEFAULT_FIELDS: &[&str] = &[
    "name",
    "transport",
    "endpoint",
    "status",
    "reachable",
    "expectedTools",
    "missingTools",
];
const MCP_FIELDS: &[&str] = &[
    "name",
    "transport",
    "endpoint",
    "status",
    "reachable",
    "expectedTools",
    "missingTools",
    "device",
    "serverName",
    "serverVersion",
    "protocolVersion",
    "offeredTools",
    "deviations",
];

pub fn list_mcp_servers(
    model: &Model,
    input: ListMcpServersInput,
) -> Result<ListMcpServersOutput, ToolError> {
    let fields = choose_fields(input.fields.as_deref(), MCP_DEFAULT_FIELDS, MCP_FIELDS)?;
    let wanted = input.status.as_deref().map(status).transpose()?;
    let items: Vec<McpServerInfo> = model
        .lab
        .of_kind(Kind::McpServer)
        .filter(|s| wanted.is_none_or(|x| s.status == x))
        .map(mcp_server_info)
        .filter(|s| input.reachable.is_none_or(|r| s.reachable == Some(r)))
        .collect();
    let page = Page::of(items, input.limit, 50, input.cursor.as_deref(), &model.tag)?
        .map(|s| project_mcp(s, &fields));
    Ok(ListMcpServersOutput {
        basis: basis(model),
        page,
    })
}

fn mcp_server_info(s: &Entry) -> McpServerInfo {
    let detail = |k: &str| {
        s.details
            .as_ref()
            .and_then(|d| d.get(k))
            .and_then(Json::as_str)
            .map(str::to_string)
    };
    let tools = s.mcp_tools();
    McpServerInfo {
        name: s.name.clone(),
        transport: s.field_str("transport").map(str::to_string),
        endpoint: s
            .spec_str("url")
            .or_else(|| s.spec_str("command"))
            .map(str::to_string),
        device: s.spec_str("device").map(str::to_string),
        status: Some(s.status.to_string()),
        deviations: Some(s.deviations),
        reachable: tools.reachable,
        expected_tools: tools.expected,
        offered_tools: tools.offered,
        missing_tools: tools.missing,
        server_name: detail("serverName"),
        server_version: detail("serverVersion"),
        protocol_version: detail("protocolVersion"),
    }
}

fn project_mcp(mut s: McpServerInfo, fields: &BTreeSet<&str>) -> McpServerInfo {
    keep_only!(
        s,
        fields,
        transport = "transport",
        endpoint = "endpoint",
        status = "status",
        reachable = "reachable",
        expected_tools = "expectedTools",
        missing_tools = "missingTools",
        device = "device",
        server_name = "serverName",
        server_version = "serverVersion",
        protocol_version = "protocolVersion",
        offered_tools = "offeredTools",
        deviations = "deviations"
    );
    s
}

// ---- snapshots --------------------------------------------------------------------------

pub async fn list_snapshots(
    store: &Store,
    model: &Model,
    input: ListSnapshotsInput,
) -> Result<ListSnapshotsOutput, ToolError> {
    let limit = page_limit(input.limit, 20, 200)?;
    let offset = parse_cursor(input.cursor.as_deref(), &model.tag)?;
    let provider = input
        .provider
        .as_deref()
        .map(str::trim)
        .filter(|p| !p.is_empty());
    let want = (offset + limit + 1).min(100_000) as u32;
    let mut all = store.list_snapshots(provider, want).await?;
    if all.is_empty() {
        if let Some(p) = provider {
            let known: BTreeSet<String> = store
                .list_snapshots(None, 1000)
                .await?
                .into_iter()
                .map(|s| s.provider)
                .collect();
            if let Some(k) = known.iter().find(|k| k.eq_ignore_ascii_case(p)) {
                all = store.list_snapshots(Some(k), want).await?;
            } else {
                let hint = did_you_mean(p, known.iter().map(String::as_str))
                    .map(|s| format!(" Did you mean `{s}`?"))
                    .unwrap_or_default();
                return Err(ToolError::new(format!(
                    "no snapshots of provider `{p}`.{hint} Providers with snapshots: {}",
                    known.into_iter().collect::<Vec<_>>().join(", ")
                )));
            }
        }
    }
    let more = all.len() > offset + limit;
    let snapshots: Vec<SnapshotItem> = all
        .iter()
        .skip(offset)
        .take(limit)
        .map(snapshot_item)
        .collect();
    Ok(ListSnapshotsOutput {
        basis: basis(model),
        next_cursor: more.then(|| cursor(&model.tag, offset + snapshots.len())),
        snapshots,
    })
}

pub async fn diff_snapshots(
    store: &Store,
    model: &Model,
    input: DiffSnapshotsInput,
) -> Result<DiffSnapshotsOutput, ToolError> {
    let recent = store.list_snapshots(None, 1000).await?;
    let find = |id: i64| {
        recent.iter().find(|s| s.id == id).ok_or_else(|| {
            let ids: Vec<String> = recent
                .iter()
                .take(10)
                .map(|s| format!("{} ({})", s.id, s.provider))
                .collect();
            ToolError::new(format!(
                "no observed snapshot {id}; recent ones: {}. Use list_snapshots",
                if ids.is_empty() {
                    "none".to_string()
                } else {
                    ids.join(", ")
                }
            ))
        })
    };
    let latest_of = |provider: &str| recent.iter().find(|s| s.provider == provider);
    let (from, to) = match (input.from, input.to, input.provider.as_deref()) {
        (Some(a), Some(b), _) => (find(a)?, find(b)?),
        (Some(a), None, _) => {
            let from = find(a)?;
            (from, latest_of(&from.provider).unwrap_or(from))
        }
        (None, to, Some(p)) => {
            let p = p.trim();
            let mine: Vec<&SnapshotInfo> = recent
                .iter()
                .filter(|s| s.provider.eq_ignore_ascii_case(p))
                .collect();
            if mine.is_empty() {
                let known: BTreeSet<&str> = recent.iter().map(|s| s.provider.as_str()).collect();
                let hint = did_you_mean(p, known.iter().copied())
                    .map(|s| format!(" Did you mean `{s}`?"))
                    .unwrap_or_default();
                return Err(ToolError::new(format!(
                    "no snapshots of provider `{p}`.{hint} Providers with snapshots: {}",
                    known.into_iter().collect::<Vec<_>>().join(", ")
                )));
            }
            let to = match to {
                Some(b) => find(b)?,
                None => mine[0],
            };
            let from = mine.iter().find(|s| s.id < to.id).copied().ok_or_else(|| {
                ToolError::new(format!(
                    "provider `{}` has only one snapshot up to {}: nothing it observed has \
                     changed since; there is nothing to compare",
                    to.provider, to.id
                ))
            })?;
            (from, to)
        }
        (None, _, None) => {
            return Err(ToolError::new(
                "name what to compare: `from` (and optionally `to`) snapshot ids from \
                 list_snapshots, or a `provider` to compare its two latest snapshots",
            ))
        }
    };
    if from.provider != to.provider {
        return Err(ToolError::new(format!(
            "snapshot {} is of provider `{}` but {} is of `{}`: compare snapshots of one provider",
            from.id, from.provider, to.id, to.provider
        )));
    }
    let changes = store.diff_snapshots(from.id, to.id).await?;
    let bodies = (
        store.snapshot(from.id).await?.unwrap_or_default(),
        store.snapshot(to.id).await?.unwrap_or_default(),
    );
    let prefix = input
        .path_prefix
        .as_deref()
        .map(|p| p.trim().trim_end_matches('/').to_string())
        .filter(|p| !p.is_empty());
    let matching: Vec<ChangeInfo> = changes
        .into_iter()
        .filter(|c| {
            prefix
                .as_deref()
                .is_none_or(|p| c.path == p || c.path.starts_with(&format!("{p}/")))
        })
        .map(|c| ChangeInfo {
            resource: resource_at(&c.path, &bodies.1).or_else(|| resource_at(&c.path, &bodies.0)),
            path: c.path,
            kind: match c.kind {
                crate::store::ChangeKind::Added => "added",
                crate::store::ChangeKind::Removed => "removed",
                crate::store::ChangeKind::Changed => "changed",
            }
            .to_string(),
            before: c.before,
            after: c.after,
        })
        .collect();
    let page = Page::of(
        matching,
        input.limit,
        100,
        input.cursor.as_deref(),
        &model.tag,
    )?;
    Ok(DiffSnapshotsOutput {
        basis: basis(model),
        from: snapshot_item(from),
        to: snapshot_item(to),
        page,
    })
}

/// `Kind/name` of the resource a `/resources/N/...` pointer is inside, in `body`.
fn resource_at(path: &str, body: &Json) -> Option<String> {
    let index: usize = path
        .strip_prefix("/resources/")?
        .split('/')
        .next()?
        .parse()
        .ok()?;
    let r = body.get("resources")?.get(index)?;
    Some(format!(
        "{}/{}",
        r.get("kind")?.as_str()?,
        r.get("name")?.as_str()?
    ))
}

fn snapshot_item(s: &SnapshotInfo) -> SnapshotItem {
    SnapshotItem {
        id: s.id,
        provider: s.provider.clone(),
        size: s.size,
        hash: s.blob_hash.clone(),
        first_run: s.first_run,
        last_run: s.last_run,
        first_seen_at: rfc3339(s.first_seen_at),
        last_seen_at: rfc3339(s.last_seen_at),
    }
}

// ---- helpers ----------------------------------------------------------------------------

/// A device as the tools answer it, with the fields in `fields` (every one when `None`):
/// each is worked out only when it is wanted, since pages of fifty devices are asked for often.
fn device_info(model: &Model, d: &Entry, fields: Option<&BTreeSet<&str>>) -> DeviceInfo {
    let lab = &model.lab;
    let want = |f: &str| fields.is_none_or(|s| s.contains(f));
    DeviceInfo {
        name: d.name.clone(),
        device_type: want("type")
            .then(|| d.field_str("type").map(str::to_string))
            .flatten(),
        status: want("status").then(|| d.status.to_string()),
        deviations: want("deviations").then_some(d.deviations),
        ips: want("ips").then(|| {
            lab.device_ips(d)
                .into_iter()
                .map(|ip| ip.to_string())
                .collect()
        }),
        pool: want("pool").then(|| lab.pool_path_of(d)).flatten(),
        pools: want("pools").then(|| lab.pools_of(d)),
        labels: want("labels").then(|| d.labels().clone()),
        services: want("services").then(|| {
            d.spec_get("services")
                .and_then(|s| s.as_array())
                .cloned()
                .unwrap_or_default()
        }),
        dimensions: want("dimensions").then(|| lab.device_dimensions(d)),
        provider: (want("provider") && !d.providers.is_empty()).then(|| d.providers.join(", ")),
        macs: want("macs").then(|| d.macs()),
        reservations: want("reservations").then(|| {
            lab.reservations_of(d)
                .into_iter()
                .map(|r| r.name.clone())
                .collect()
        }),
        desired: want("desired").then(|| d.desired.clone()).flatten(),
        observed: want("observed").then(|| d.observed.clone()).flatten(),
    }
}

fn choose_fields(
    fields: Option<&[String]>,
    default: &[&'static str],
    all: &[&'static str],
) -> Result<BTreeSet<&'static str>, ToolError> {
    let Some(fields) = fields.filter(|f| !f.is_empty()) else {
        return Ok(default.iter().copied().collect());
    };
    let mut out = BTreeSet::from(["name"]);
    for f in fields {
        out.insert(one_of("fields", f, all)?);
    }
    Ok(out)
}

/// `key=value` (spaces trimmed), or an error showing the form.
fn key_value(what: &str, text: &str, example: &str) -> Result<(String, String), ToolError> {
    text.split_once('=')
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .filter(|(k, _)| !k.is_empty())
        .ok_or_else(|| {
            ToolError::new(format!(
                "{what} filter `{text}`: write it as key=value, e.g. {example}"
            ))
        })
}

/// A status filter as written, or an error naming the statuses.
fn status(text: &str) -> Result<Status, ToolError> {
    let names = Status::ALL.map(Status::as_str);
    let name = one_of("status", text, &names)?;
    Ok(Status::parse(name).unwrap_or_default())
}

fn pool_not_found(model: &Model, query: &str) -> ToolError {
    let pools = model.lab.pools();
    let paths = pools.paths();
    let names: Vec<&str> = pools.iter().map(|p| p.name.as_str()).collect();
    let hint = did_you_mean(query, paths.iter().copied())
        .or_else(|| {
            let last = query
                .trim_end_matches('/')
                .rsplit('/')
                .next()
                .unwrap_or(query);
            did_you_mean(last, names.iter().copied())
                .and_then(|n| pools.get(n).map(|p| p.path.as_str()))
        })
        .map(|s| format!(" Did you mean `{s}`?"))
        .unwrap_or_default();
    let known = if paths.is_empty() {
        "none".to_string()
    } else {
        paths.join(", ")
    };
    ToolError::new(format!(
        "no pool `{query}` in the reconciled model (run {}).{hint} Pools: {known}",
        model.run
    ))
}

/// `value` if it is one of `allowed` (case-insensitive), else an error naming them.
fn one_of<'a>(what: &str, value: &str, allowed: &[&'a str]) -> Result<&'a str, ToolError> {
    allowed
        .iter()
        .find(|a| a.eq_ignore_ascii_case(value.trim()))
        .copied()
        .ok_or_else(|| {
            let hint = did_you_mean(value, allowed.iter().copied())
                .map(|s| format!(" Did you mean `{s}`?"))
                .unwrap_or_default();
            ToolError::new(format!(
                "{what} `{value}` is not allowed.{hint} Allowed: {}",
                allowed.join(", ")
            ))
        })
}

fn kind_name(kind: &str) -> Result<Kind, ToolError> {
    let names = KINDS.map(Kind::as_str);
    let name = one_of("kind", kind, &names)?;
    Ok(KINDS[names.iter().position(|n| *n == name).unwrap_or(0)])
}

pub(super) fn not_found(model: &Model, kind: Kind, query: &str) -> ToolError {
    let names: Vec<&str> = model.lab.of_kind(kind).map(|e| e.name.as_str()).collect();
    let mut close: Vec<&str> = Vec::new();
    if let Some(best) = did_you_mean(query, names.iter().copied()) {
        close.push(best);
    }
    let lower = query.to_ascii_lowercase();
    for n in &names {
        let l = n.to_ascii_lowercase();
        if !lower.is_empty() && (l.contains(&lower) || lower.contains(&l)) && !close.contains(n) {
            close.push(n);
        }
    }
    close.truncate(5);
    let commit = model
        .commit
        .as_deref()
        .map(|c| format!("commit {}", &c[..c.len().min(12)]))
        .unwrap_or_else(|| "a plain directory".into());
    let mut msg = format!(
        "no {kind} `{query}` in the reconciled model (run {}, {commit})",
        model.run
    );
    if !close.is_empty() {
        msg.push_str(&format!(
            ". Did you mean {}?",
            close
                .iter()
                .map(|c| format!("`{c}`"))
                .collect::<Vec<_>>()
                .join(" or ")
        ));
    } else if names.is_empty() {
        msg.push_str(&format!(". The model has no {kind} at all"));
    } else {
        let shown: Vec<&str> = names.iter().take(10).copied().collect();
        msg.push_str(&format!(
            ". Known {kind} names: {}{}",
            shown.join(", "),
            if names.len() > shown.len() {
                ", …"
            } else {
                ""
            }
        ));
    }
    ToolError::new(msg)
}

/// labctl's open pull requests by the deviations they cover.
pub(super) type PullRequests = std::collections::BTreeMap<String, crate::store::PullRequest>;

pub(super) fn deviation_info(d: &Deviation, prs: &PullRequests) -> DeviationInfo {
    let r = &d.record;
    let key = crate::store::deviation_key(&r.kind, &r.name, &r.field_path);
    let pull_request = prs
        .get(&key)
        .filter(|_| d.is_open())
        .map(|pr| PullRequestRef {
            number: pr.number,
            url: pr.url.clone(),
            branch: pr.branch.clone(),
            summary: pr.summary(),
        });
    DeviationInfo {
        pull_request,
        kind: r.kind.clone(),
        name: r.name.clone(),
        field: r.field_path.clone(),
        dtype: r.dtype.to_string(),
        severity: r.severity.to_string(),
        expected: r.expected.clone(),
        actual: r.actual.clone(),
        auto_correctable: r.auto_correctable,
        remediation: r.remediation.clone(),
        opened_at: rfc3339(d.opened_at),
        last_seen_at: rfc3339(d.last_seen_at),
        seen_count: d.seen_count,
    }
}

fn why_it_matters(d: &Deviation) -> String {
    use crate::store::DeviationType as T;
    let r = &d.record;
    let what = format!("{}/{}", r.kind, r.name);
    let base = match r.dtype {
        T::Missing => format!("{what} is declared in Git but absent from the lab, so whatever depends on it does not work"),
        T::Unmanaged => format!("{what} exists in the lab but not in Git: nobody reviews it, and it may take an address or name Git gives to something else"),
        T::Drifted => format!(
            "{what} differs from Git on `{}`: the lab no longer behaves as reviewed, and the next apply may change it back",
            r.field_path
        ),
        T::Unknown => format!("{what} could not be observed, so nothing is known about it"),
    };
    let severity = match r.severity {
        Severity::Critical => "Critical: it breaks a lot, now.",
        Severity::High => "High: it breaks something.",
        Severity::Medium => "Medium: worth fixing.",
        Severity::Low => "Low: cosmetic.",
    };
    let age = (d.last_seen_at - d.opened_at).max(0) / 60_000;
    format!(
        "{base}. {severity} Seen by {} run(s) over {age} minute(s).",
        d.seen_count
    )
}

fn run_info(r: &Run) -> RunInfo {
    RunInfo {
        id: r.id,
        trigger: r.trigger.clone(),
        controller: r.controller.clone(),
        outcome: r.outcome.to_string(),
        started_at: rfc3339(r.started_at),
        finished_at: r.finished_at.map(rfc3339),
        commit: r.commit_sha.clone(),
        resources: r.resources,
        deviations_open: r.counts.deviations_open,
        deviations_opened: r.counts.deviations_opened,
        deviations_resolved: r.counts.deviations_resolved,
        error: r.error.clone(),
        has_model: r.model_hash.is_some(),
    }
}

fn change_item(c: &AppliedChange) -> ChangeItem {
    ChangeItem {
        run: c.run,
        at: rfc3339(c.at),
        provider: c.change.provider.clone(),
        action: c.change.action.to_string(),
        kind: c.change.kind.clone(),
        name: c.change.name.clone(),
        before: c.change.before.clone(),
        after: c.change.after.clone(),
        result: c.change.result.to_string(),
        error: c.change.error.clone(),
    }
}

/// `30m`, `24h`, `7d` → milliseconds, as an error an agent can act on.
fn parse_age(text: &str) -> Result<i64, ToolError> {
    crate::time::parse_age(text).map_err(|e| ToolError::new(format!("since: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_ages_and_cursors() {
        assert_eq!(parse_age("24h").unwrap(), 86_400_000);
        assert!(parse_age("yesterday").is_err());
        assert!(parse_cursor(Some(&cursor("a6", 50)), "a7").is_err());
        assert!(key_value("label", "role", "a=b").is_err());
    }

    #[test]
    fn bad_filters_name_the_allowed_values() {
        let e = status("in-sync").unwrap_err();
        assert!(
            e.message.contains("synced, out-of-sync, unknown"),
            "{}",
            e.message
        );
        assert_eq!(status(" Out-Of-Sync").unwrap(), Status::OutOfSync);
        assert_eq!(kind_name("dhcpreservation").unwrap(), Kind::DhcpReservation);
        let e = kind_name("Devices").unwrap_err();
        assert!(
            e.message.contains("Did you mean `Device`?"),
            "{}",
            e.message
        );
    }
}
