//! What each tool answers, from the store's latest reconciled model and deviation tables.
//! Nothing here calls a provider.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use super::model::{count, Entry, Model};
use super::types::*;
use super::ToolError;
use crate::model::{Ipv4Cidr, ResolvedPool, RouteSpec};
use crate::store::{Deviation, Run, Severity, SnapshotInfo, Store};
use crate::time::{now_ms, rfc3339};
use crate::validate::{self, did_you_mean};
use serde_json::Value as Json;

/// The kinds a resource can have.
pub const KINDS: &[&str] = &["Pool", "Device", "DhcpReservation", "Route", "McpServer"];
const STATUSES: &[&str] = &["synced", "out-of-sync", "unknown", "unobserved"];
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
) -> Result<SummaryOutput, ToolError> {
    let mut by_kind: BTreeMap<String, KindCount> = BTreeMap::new();
    for e in &model.entries {
        let k = by_kind.entry(e.kind.clone()).or_default();
        k.total += 1;
        *k.by_status.entry(e.status.clone()).or_insert(0) += 1;
    }
    let open = store.open_deviations(None, None).await?;
    let severities = count(open.iter().map(|d| d.record.severity.as_str()));
    let sev = |s: &str| severities.get(s).copied().unwrap_or(0);
    Ok(SummaryOutput {
        basis: basis(model),
        resources: model.entries.len() as u64,
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
    if let Some(status) = &input.status {
        one_of("status", status, STATUSES)?;
    }
    let label = input
        .label
        .as_deref()
        .map(|l| key_value("label", l, "role=inference"))
        .transpose()?;
    let dimension = input
        .dimension
        .as_deref()
        .map(|d| key_value("dimension", d, "gpu=true"))
        .transpose()?;
    let pool = input
        .pool
        .as_deref()
        .map(|p| pool_filter(model, p))
        .transpose()?;
    let mut notes = Vec::new();
    let devices: Vec<&Entry> = model.of_kind("Device").collect();
    if let Some(t) = &input.device_type {
        let types: BTreeSet<&str> = devices.iter().filter_map(|d| d.field_str("type")).collect();
        if !types.iter().any(|x| x.eq_ignore_ascii_case(t)) && !types.is_empty() {
            notes.push(format!(
                "no device has type `{t}`; types in the model: {}",
                types.into_iter().collect::<Vec<_>>().join(", ")
            ));
        }
    }
    if let Some((k, _)) = &label {
        let keys: BTreeSet<&str> = devices
            .iter()
            .flat_map(|d| d.labels.keys().map(String::as_str))
            .collect();
        if !keys.iter().any(|x| x.eq_ignore_ascii_case(k)) {
            notes.push(format!(
                "no device has a label `{k}`; label keys in use: {}",
                keys.into_iter().collect::<Vec<_>>().join(", ")
            ));
        }
    }
    let matching: Vec<&Entry> = devices
        .into_iter()
        .filter(|d| {
            input.device_type.as_deref().is_none_or(|t| {
                d.field_str("type")
                    .is_some_and(|x| x.eq_ignore_ascii_case(t))
            })
        })
        .filter(|d| {
            input
                .status
                .as_deref()
                .is_none_or(|s| d.status.eq_ignore_ascii_case(s.trim()))
        })
        .filter(|d| pool.as_ref().is_none_or(|p| p.matches(model, d)))
        .filter(|d| {
            label.as_ref().is_none_or(|(k, v)| {
                d.labels
                    .iter()
                    .any(|(lk, lv)| lk.eq_ignore_ascii_case(k) && lv.eq_ignore_ascii_case(v))
            })
        })
        .filter(|d| {
            dimension.as_ref().is_none_or(|(k, v)| {
                device_dimensions(model, d)
                    .iter()
                    .any(|(dk, dv)| dk.eq_ignore_ascii_case(k) && scalar_eq(dv, v))
            })
        })
        .collect();
    let (page, total, next_cursor) = paginate(matching, input.limit, 50, input.cursor, model.run)?;
    Ok(ListDevicesOutput {
        basis: basis(model),
        devices: page
            .into_iter()
            .map(|d| project(device_info(model, d), &fields))
            .collect(),
        total,
        next_cursor,
        notes,
    })
}

pub async fn get_device(
    store: &Store,
    model: &Model,
    input: GetDeviceInput,
) -> Result<GetDeviceOutput, ToolError> {
    let query = input.device.trim();
    let device = match query.parse::<Ipv4Addr>() {
        Ok(ip) => model
            .of_kind("Device")
            .find(|d| device_ips(model, d).contains(&ip)),
        Err(_) => model.find("Device", query),
    };
    let Some(device) = device else {
        return Err(not_found(model, "Device", query));
    };
    let mut names = vec![("Device", device.name.clone())];
    for r in model.reservations_of(device) {
        names.push(("DhcpReservation", r.name.clone()));
    }
    let open = store.open_deviations(None, None).await?;
    let open_deviations = open
        .iter()
        .filter(|d| {
            names
                .iter()
                .any(|(k, n)| d.record.kind == *k && d.record.name == *n)
        })
        .map(deviation_info)
        .collect();
    Ok(GetDeviceOutput {
        basis: basis(model),
        device: device_info(model, device),
        open_deviations,
    })
}

pub fn lookup_ip(model: &Model, input: LookupIpInput) -> Result<LookupIpOutput, ToolError> {
    let ip: Ipv4Addr = input.ip.trim().parse().map_err(|_| {
        ToolError::new(format!(
            "`{}` is not an IPv4 address; write it like 10.0.1.77",
            input.ip
        ))
    })?;
    let uses = model.ip_uses();
    let mut used_by = Vec::new();
    for (entry, list) in &uses {
        let here: Vec<_> = list.iter().filter(|u| u.ip == ip).collect();
        if here.is_empty() {
            continue;
        }
        let fields: BTreeSet<String> = here.iter().map(|u| u.field.clone()).collect();
        let sides: BTreeSet<&str> = here.iter().map(|u| u.side).collect();
        used_by.push(IpUser {
            kind: entry.kind.clone(),
            name: entry.name.clone(),
            fields: fields.into_iter().collect(),
            source: if sides.len() > 1 {
                "both".into()
            } else {
                sides.into_iter().next().unwrap_or("desired").into()
            },
            status: entry.status.clone(),
        });
    }
    // A device uses the addresses of its reservations.
    for device in model.of_kind("Device") {
        if used_by
            .iter()
            .any(|u| u.kind == "Device" && u.name == device.name)
        {
            continue;
        }
        let via: Vec<&Entry> = model
            .reservations_of(device)
            .into_iter()
            .filter(|r| r.ips().contains(&ip))
            .collect();
        if !via.is_empty() {
            used_by.push(IpUser {
                kind: "Device".into(),
                name: device.name.clone(),
                fields: via
                    .iter()
                    .map(|r| format!("via DhcpReservation/{}", r.name))
                    .collect(),
                source: "desired".into(),
                status: device.status.clone(),
            });
        }
    }
    let taken: BTreeSet<Ipv4Addr> = uses
        .iter()
        .flat_map(|(_, l)| l.iter().map(|u| u.ip))
        .collect();
    let [a, b, c, d] = ip.octets();
    let mut nearby: Vec<u8> = (1..=254u8)
        .filter(|&x| x != d && !taken.contains(&Ipv4Addr::new(a, b, c, x)))
        .collect();
    nearby.sort_by_key(|&x| ((x as i32 - d as i32).abs(), x));
    nearby.truncate(5);
    nearby.sort();
    Ok(LookupIpOutput {
        basis: basis(model),
        ip: ip.to_string(),
        free: used_by.is_empty(),
        used_by,
        subnet: format!("{a}.{b}.{c}.0/24"),
        free_nearby: nearby
            .into_iter()
            .map(|x| Ipv4Addr::new(a, b, c, x).to_string())
            .collect(),
    })
}

pub async fn get_drift(
    store: &Store,
    model: &Model,
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
    let all = store.open_deviations(kind, min).await?;
    let matching: Vec<&Deviation> = all
        .iter()
        .filter(|d| cutoff.is_none_or(|c| d.opened_at >= c))
        .collect();
    let limit = input.limit.unwrap_or(50).clamp(1, 500) as usize;
    let offset = parse_cursor(input.cursor.as_deref(), model.run)?;
    let page: Vec<DeviationInfo> = matching
        .iter()
        .skip(offset)
        .take(limit)
        .map(|d| deviation_info(d))
        .collect();
    let next = offset + page.len();
    Ok(GetDriftOutput {
        basis: basis(model),
        total: matching.len() as u64,
        next_cursor: (next < matching.len()).then(|| cursor(model.run, next)),
        deviations: page,
    })
}

pub async fn explain_deviation(
    store: &Store,
    model: &Model,
    input: ExplainDeviationInput,
) -> Result<ExplainDeviationOutput, ToolError> {
    let kind = kind_name(&input.kind)?;
    let open = store.open_deviations(Some(kind), None).await?;
    // The name as recorded: from the model, else from the open deviations.
    let name = model
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
    let history = store.deviation_history(kind, &name, &field).await?;
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
    let info = deviation_info(current);
    let remediation = current
        .record
        .remediation
        .clone()
        .unwrap_or_else(|| "change Git to match the lab, or the lab to match Git".into());
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
            })
            .collect(),
        resource_status: model.find(kind, &name).map(|e| e.status.clone()),
        current: info,
    })
}

pub async fn get_reconcile_status(
    store: &Store,
    model: &Model,
    input: ReconcileStatusInput,
) -> Result<ReconcileStatusOutput, ToolError> {
    let limit = input.limit.unwrap_or(10).clamp(1, 100) as usize;
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
    Ok(ReconcileStatusOutput {
        basis: basis(model),
        runs,
        providers: providers.into_values().collect(),
    })
}

pub fn validate_definition(input: ValidateInput) -> ValidateOutput {
    let file = input
        .file
        .filter(|f| !f.trim().is_empty())
        .unwrap_or_else(|| "definition.yaml".into());
    let result = validate::validate_text(&file, &input.yaml);
    let diagnostics: Vec<DiagnosticInfo> = result
        .diagnostics
        .iter()
        .map(|d| DiagnosticInfo {
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
        })
        .collect();
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

pub fn list_pools(model: &Model, input: ListPoolsInput) -> Result<ListPoolsOutput, ToolError> {
    let fields = choose_fields(input.fields.as_deref(), POOL_DEFAULT_FIELDS, POOL_FIELDS)?;
    let pool_type = input
        .pool_type
        .as_deref()
        .map(|t| one_of("type", t, POOL_TYPES))
        .transpose()?;
    let dims: Vec<(String, String)> = input
        .dimensions
        .iter()
        .flatten()
        .map(|d| key_value("dimension", d, "gpu=true"))
        .collect::<Result<_, _>>()?;
    let prefix = input
        .path_prefix
        .as_deref()
        .map(|p| p.trim().trim_end_matches('/').to_ascii_lowercase());
    let matching: Vec<&ResolvedPool> = model
        .pools
        .iter()
        .filter(|p| {
            prefix.as_deref().is_none_or(|x| {
                let path = p.path.to_ascii_lowercase();
                x.is_empty() || path == x || path.starts_with(&format!("{x}/"))
            })
        })
        .filter(|p| {
            pool_type.is_none_or(|t| {
                model
                    .find("Pool", &p.name)
                    .and_then(|e| e.spec_str("type"))
                    .is_some_and(|x| x.eq_ignore_ascii_case(t))
            })
        })
        .filter(|p| {
            let effective = values(&p.dimensions);
            dims.iter().all(|(k, v)| {
                effective
                    .iter()
                    .any(|(dk, dv)| dk.eq_ignore_ascii_case(k) && scalar_eq(dv, v))
            })
        })
        .collect();
    let (page, total, next_cursor) = paginate(matching, input.limit, 50, input.cursor, model.run)?;
    Ok(ListPoolsOutput {
        basis: basis(model),
        pools: page
            .into_iter()
            .map(|p| project_pool(pool_info(model, p), &fields))
            .collect(),
        total,
        next_cursor,
    })
}

pub async fn get_pool(
    store: &Store,
    model: &Model,
    input: GetPoolInput,
) -> Result<GetPoolOutput, ToolError> {
    let Some(pool) = model.resolve_pool(&input.pool) else {
        return Err(pool_not_found(model, input.pool.trim()));
    };
    // Root first: the chain whose own settings make up the effective ones.
    let mut chain: Vec<&ResolvedPool> = vec![pool];
    while let Some(parent) = chain
        .last()
        .and_then(|p| p.parent.as_deref())
        .and_then(|n| model.pools.get(n))
    {
        if chain.iter().any(|c| c.name == parent.name) {
            break;
        }
        chain.push(parent);
    }
    chain.reverse();
    let sources = |key: &str| {
        let mut out: BTreeMap<String, Inherited> = BTreeMap::new();
        for p in &chain {
            let own = model
                .find("Pool", &p.name)
                .and_then(|e| e.spec_get(key))
                .and_then(Json::as_object);
            for (k, v) in own.into_iter().flatten() {
                out.insert(
                    k.clone(),
                    Inherited {
                        value: v.clone(),
                        from: p.name.clone(),
                        inherited: p.name != pool.name,
                    },
                );
            }
        }
        out
    };
    let all_members: Vec<String> = members_under(model, &pool.path)
        .iter()
        .map(|d| d.name.clone())
        .collect();
    let open = store.open_deviations(None, None).await?;
    let open_deviations = open
        .iter()
        .filter(|d| {
            (d.record.kind == "Pool" && d.record.name == pool.name)
                || (d.record.kind == "Device" && all_members.contains(&d.record.name))
        })
        .map(deviation_info)
        .collect();
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

/// Devices whose `spec.pool` is the pool at `path` or one below it, by name.
fn members_under<'a>(model: &'a Model, path: &str) -> Vec<&'a Entry> {
    let lower = path.to_ascii_lowercase();
    model
        .of_kind("Device")
        .filter(|d| {
            model.pool_path_of(d).is_some_and(|p| {
                let p = p.to_ascii_lowercase();
                p == lower || p.starts_with(&format!("{lower}/"))
            })
        })
        .collect()
}

fn pool_info(model: &Model, p: &ResolvedPool) -> PoolInfo {
    let entry = model.find("Pool", &p.name);
    let spec_str = |k: &str| entry.and_then(|e| e.spec_str(k)).map(str::to_string);
    let members: Vec<String> = model
        .of_kind("Device")
        .filter(|d| {
            model
                .pool_path_of(d)
                .is_some_and(|x| x.eq_ignore_ascii_case(&p.path))
        })
        .map(|d| d.name.clone())
        .collect();
    let mut usage = Resources {
        cores: Some(0),
        memory_mib: Some(0),
        storage_gib: Some(0),
        devices: Some(0),
    };
    for d in members_under(model, &p.path) {
        usage.devices = usage.devices.map(|c| c + 1);
        // Hosts (physical devices) provide capacity rather than use it: only guests count.
        let guest = matches!(d.spec_str("type"), Some("vm" | "lxc"));
        if !guest {
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
    let capacity = entry.and_then(|e| e.spec_get("capacity")).map(|c| {
        let num = |k: &str| c.get(k).and_then(Json::as_u64);
        Resources {
            cores: num("cores"),
            memory_mib: num("memoryMiB"),
            storage_gib: num("storageGiB"),
            devices: num("devices"),
        }
    });
    let over_capacity = capacity.as_ref().map(|cap| {
        [
            ("cores", cap.cores, usage.cores),
            ("memoryMiB", cap.memory_mib, usage.memory_mib),
            ("storageGiB", cap.storage_gib, usage.storage_gib),
            ("devices", cap.devices, usage.devices),
        ]
        .into_iter()
        .filter(|(_, c, u)| matches!((c, u), (Some(c), Some(u)) if u > c))
        .map(|(k, _, _)| k.to_string())
        .collect()
    });
    PoolInfo {
        name: p.name.clone(),
        path: Some(p.path.clone()),
        pool_type: spec_str("type"),
        parent: p.parent.clone(),
        description: spec_str("description"),
        proxmox_pool: spec_str("proxmoxPool"),
        labels: Some(entry.map(|e| e.labels.clone()).unwrap_or_default()),
        properties: Some(values(&p.properties)),
        dimensions: Some(values(&p.dimensions)),
        children: Some(
            model
                .pools
                .iter()
                .filter(|c| c.parent.as_deref() == Some(p.name.as_str()))
                .map(|c| c.name.clone())
                .collect(),
        ),
        members: Some(members),
        capacity,
        usage: Some(usage),
        over_capacity,
        status: entry.map(|e| e.status.clone()),
        deviations: entry.map(|e| e.deviations),
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
    if let Some(status) = &input.status {
        one_of("status", status, STATUSES)?;
    }
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
    let devices: Vec<&Entry> = model.of_kind("Device").collect();
    let mut items: Vec<ReservationInfo> = model
        .of_kind("DhcpReservation")
        .filter(|r| {
            input
                .status
                .as_deref()
                .is_none_or(|s| r.status.eq_ignore_ascii_case(s.trim()))
        })
        .map(|r| {
            let observed_ip = r
                .observed
                .as_ref()
                .and_then(|o| o.get("ip"))
                .and_then(Json::as_str)
                .map(str::to_string);
            let ip = r.field_str("ip").map(str::to_string);
            ReservationInfo {
                name: r.name.clone(),
                subnet: r.field_str("subnet").map(str::to_string),
                observed_ip: observed_ip.filter(|o| Some(o) != ip.as_ref()),
                ip,
                mac: r.field_str("mac").map(str::to_string),
                hostname: r.field_str("hostname").map(str::to_string),
                in_git: Some(r.spec.is_some()),
                device: devices
                    .iter()
                    .find(|d| model.reservations_of(d).iter().any(|x| x.name == r.name))
                    .map(|d| d.name.clone()),
                status: Some(r.status.clone()),
                deviations: Some(r.deviations),
            }
        })
        .filter(|r| {
            subnet.as_ref().is_none_or(|net| {
                let declared = r
                    .subnet
                    .as_deref()
                    .and_then(|s| s.parse::<Ipv4Cidr>().ok())
                    .is_some_and(|s| s == *net);
                let inside = [&r.ip, &r.observed_ip]
                    .into_iter()
                    .flatten()
                    .filter_map(|ip| ip.parse::<Ipv4Addr>().ok())
                    .any(|ip| net.contains(ip));
                declared || inside
            })
        })
        .collect();
    items.sort_by_key(|r| {
        (
            r.ip.as_deref()
                .and_then(|ip| ip.parse::<Ipv4Addr>().ok())
                .is_none(),
            r.ip.as_deref().and_then(|ip| ip.parse::<Ipv4Addr>().ok()),
            r.name.clone(),
        )
    });
    let (page, total, next_cursor) = paginate(items, input.limit, 100, input.cursor, model.run)?;
    Ok(ListReservationsOutput {
        basis: basis(model),
        reservations: page
            .into_iter()
            .map(|r| project_reservation(r, &fields))
            .collect(),
        total,
        next_cursor,
    })
}

pub fn list_routes(model: &Model, input: ListRoutesInput) -> Result<ListRoutesOutput, ToolError> {
    let fields = choose_fields(input.fields.as_deref(), ROUTE_FIELDS, ROUTE_FIELDS)?;
    if let Some(status) = &input.status {
        one_of("status", status, STATUSES)?;
    }
    let wanted = input.host.as_deref().map(|h| h.trim().to_ascii_lowercase());
    let mut items: Vec<RouteInfo> = model
        .of_kind("Route")
        .filter(|r| {
            input
                .status
                .as_deref()
                .is_none_or(|s| r.status.eq_ignore_ascii_case(s.trim()))
        })
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
    let (page, total, next_cursor) = paginate(items, input.limit, 100, input.cursor, model.run)?;
    Ok(ListRoutesOutput {
        basis: basis(model),
        routes: page
            .into_iter()
            .map(|r| project_route(r, &fields))
            .collect(),
        total,
        next_cursor,
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
    let spec: Option<RouteSpec> = r.spec.clone().and_then(|s| serde_json::from_value(s).ok());
    let strings = |v: Option<&Json>| -> Vec<String> {
        v.and_then(Json::as_array)
            .into_iter()
            .flatten()
            .filter_map(Json::as_str)
            .map(str::to_string)
            .collect()
    };
    let rule = r.field_str("rule").map(str::to_string);
    let host = r
        .field_str("host")
        .map(str::to_string)
        .or_else(|| spec.as_ref().and_then(|s| s.match_key()).map(|(h, _)| h))
        .or_else(|| {
            let rule = rule.as_deref()?;
            let start = rule.find("Host(`")? + 6;
            let len = rule[start..].find('`')?;
            Some(rule[start..start + len].to_string())
        });
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
        in_git: Some(r.spec.is_some()),
        providers: Some(r.providers.clone()),
        status: Some(r.status.clone()),
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
    if let Some(status) = &input.status {
        one_of("status", status, STATUSES)?;
    }
    let items: Vec<McpServerInfo> = model
        .of_kind("McpServer")
        .filter(|s| {
            input
                .status
                .as_deref()
                .is_none_or(|x| s.status.eq_ignore_ascii_case(x.trim()))
        })
        .map(mcp_server_info)
        .filter(|s| input.reachable.is_none_or(|r| s.reachable == Some(r)))
        .collect();
    let (page, total, next_cursor) = paginate(items, input.limit, 50, input.cursor, model.run)?;
    Ok(ListMcpServersOutput {
        basis: basis(model),
        servers: page.into_iter().map(|s| project_mcp(s, &fields)).collect(),
        total,
        next_cursor,
    })
}

fn mcp_server_info(s: &Entry) -> McpServerInfo {
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
    let detail = |k: &str| {
        s.details
            .as_ref()
            .and_then(|d| d.get(k))
            .and_then(Json::as_str)
            .map(str::to_string)
    };
    let reachable = s
        .observed
        .as_ref()
        .and_then(|o| o.get("reachable"))
        .and_then(Json::as_bool);
    let expected = strings(s.spec_get("expectedTools"))
        .or_else(|| strings(s.desired.as_ref().and_then(|d| d.get("expectedTools"))));
    let offered = strings(s.details.as_ref().and_then(|d| d.get("tools")));
    // What it offered of the expected ones: all its tools, else the observed subset.
    let offered_expected = offered.clone().or_else(|| {
        (reachable == Some(true))
            .then(|| strings(s.observed.as_ref().and_then(|o| o.get("expectedTools"))))
            .flatten()
    });
    let missing = match (&expected, &offered_expected) {
        (Some(e), Some(o)) if reachable == Some(true) => {
            Some(e.iter().filter(|t| !o.contains(t)).cloned().collect())
        }
        _ => None,
    };
    McpServerInfo {
        name: s.name.clone(),
        transport: s.field_str("transport").map(str::to_string),
        endpoint: s
            .spec_str("url")
            .or_else(|| s.spec_str("command"))
            .map(str::to_string),
        device: s.spec_str("device").map(str::to_string),
        status: Some(s.status.clone()),
        deviations: Some(s.deviations),
        reachable,
        expected_tools: expected,
        offered_tools: offered,
        missing_tools: missing,
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
    let limit = input.limit.unwrap_or(20).clamp(1, 200) as usize;
    let offset = parse_cursor(input.cursor.as_deref(), model.run)?;
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
        next_cursor: more.then(|| cursor(model.run, offset + snapshots.len())),
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
    let (page, total, next_cursor) = paginate(matching, input.limit, 100, input.cursor, model.run)?;
    Ok(DiffSnapshotsOutput {
        basis: basis(model),
        from: snapshot_item(from),
        to: snapshot_item(to),
        changes: page,
        total,
        next_cursor,
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

fn device_ips(model: &Model, device: &Entry) -> Vec<Ipv4Addr> {
    let mut ips = device.ips();
    for r in model.reservations_of(device) {
        ips.extend(r.ips());
    }
    ips.sort();
    ips.dedup();
    ips
}

fn device_info(model: &Model, d: &Entry) -> DeviceInfo {
    DeviceInfo {
        name: d.name.clone(),
        device_type: d.field_str("type").map(str::to_string),
        status: Some(d.status.clone()),
        deviations: Some(d.deviations),
        ips: Some(
            device_ips(model, d)
                .into_iter()
                .map(|ip| ip.to_string())
                .collect(),
        ),
        pool: model.pool_path_of(d),
        pools: Some(model.pools_of(d)),
        labels: Some(d.labels.clone()),
        services: Some(
            d.spec_get("services")
                .and_then(|s| s.as_array())
                .cloned()
                .unwrap_or_default(),
        ),
        dimensions: Some(device_dimensions(model, d)),
        provider: Some(d.provider.clone()),
        macs: Some(d.macs()),
        reservations: Some(
            model
                .reservations_of(d)
                .into_iter()
                .map(|r| r.name.clone())
                .collect(),
        ),
        desired: d.desired.clone(),
        observed: d.observed.clone(),
    }
}

fn project(mut d: DeviceInfo, fields: &BTreeSet<&str>) -> DeviceInfo {
    let keep = |f: &str| fields.contains(f);
    if !keep("type") {
        d.device_type = None;
    }
    if !keep("status") {
        d.status = None;
    }
    if !keep("deviations") {
        d.deviations = None;
    }
    if !keep("ips") {
        d.ips = None;
    }
    if !keep("pool") {
        d.pool = None;
    }
    if !keep("pools") {
        d.pools = None;
    }
    if !keep("labels") {
        d.labels = None;
    }
    if !keep("services") {
        d.services = None;
    }
    if !keep("dimensions") {
        d.dimensions = None;
    }
    if !keep("provider") {
        d.provider = None;
    }
    if !keep("macs") {
        d.macs = None;
    }
    if !keep("reservations") {
        d.reservations = None;
    }
    if !keep("desired") {
        d.desired = None;
    }
    if !keep("observed") {
        d.observed = None;
    }
    d
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

/// A scalar JSON value equal to `text` as written (`true`, `24`, `basement-rack`),
/// case-insensitive.
fn scalar_eq(value: &Json, text: &str) -> bool {
    match value {
        Json::String(s) => s.eq_ignore_ascii_case(text),
        other => other.to_string().eq_ignore_ascii_case(text),
    }
}

/// A device's effective dimensions: its own over those of its pool (and the pool's
/// ancestors).
fn device_dimensions(model: &Model, d: &Entry) -> BTreeMap<String, Json> {
    let mut out: BTreeMap<String, Json> = d
        .spec_str("pool")
        .and_then(|p| model.resolve_pool(p))
        .map(|p| values(&p.dimensions))
        .unwrap_or_default();
    if let Some(own) = d.spec_get("dimensions").and_then(Json::as_object) {
        out.extend(own.iter().map(|(k, v)| (k.clone(), v.clone())));
    }
    out
}

fn values(map: &BTreeMap<String, crate::model::Value>) -> BTreeMap<String, Json> {
    map.iter()
        .map(|(k, v)| (k.clone(), serde_json::to_value(v).unwrap_or_default()))
        .collect()
}

/// A pool filter: a known pool (by name or path) selects devices in it or below it; a
/// trailing `*` selects devices whose pool path (or name) starts with what precedes it.
enum PoolFilter {
    Under(String),
    Prefix(String),
}

impl PoolFilter {
    fn matches(&self, model: &Model, d: &Entry) -> bool {
        let paths: Vec<String> = model
            .pool_path_of(d)
            .into_iter()
            .chain(
                model
                    .pools_of(d)
                    .iter()
                    .filter_map(|n| model.pools.get(n).map(|p| p.path.clone())),
            )
            .map(|p| p.to_ascii_lowercase())
            .collect();
        match self {
            PoolFilter::Under(path) => {
                let path = path.to_ascii_lowercase();
                paths
                    .iter()
                    .any(|p| *p == path || p.starts_with(&format!("{path}/")))
            }
            PoolFilter::Prefix(prefix) => {
                let prefix = prefix.to_ascii_lowercase();
                paths.iter().any(|p| {
                    p.starts_with(&prefix)
                        || p.rsplit('/').next().is_some_and(|n| n.starts_with(&prefix))
                })
            }
        }
    }
}

fn pool_filter(model: &Model, filter: &str) -> Result<PoolFilter, ToolError> {
    let f = filter.trim();
    if let Some(prefix) = f.strip_suffix('*') {
        return Ok(PoolFilter::Prefix(prefix.to_string()));
    }
    match model.resolve_pool(f) {
        Some(p) => Ok(PoolFilter::Under(p.path.clone())),
        None => Err(pool_not_found(model, f)),
    }
}

fn pool_not_found(model: &Model, query: &str) -> ToolError {
    let paths = model.pools.paths();
    let names: Vec<&str> = model.pools.iter().map(|p| p.name.as_str()).collect();
    let hint = did_you_mean(query, paths.iter().copied())
        .or_else(|| {
            let last = query
                .trim_end_matches('/')
                .rsplit('/')
                .next()
                .unwrap_or(query);
            did_you_mean(last, names.iter().copied())
                .and_then(|n| model.pools.get(n).map(|p| p.path.as_str()))
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

/// One page of `items` and the cursor of the next; the cursor names the model's run.
fn paginate<T>(
    items: Vec<T>,
    limit: Option<u32>,
    default: u32,
    cursor_in: Option<String>,
    run: i64,
) -> Result<(Vec<T>, u64, Option<String>), ToolError> {
    let max = 500.max(default);
    let limit = limit.unwrap_or(default).clamp(1, max) as usize;
    let offset = parse_cursor(cursor_in.as_deref(), run)?;
    let total = items.len();
    let page: Vec<T> = items.into_iter().skip(offset).take(limit).collect();
    let next = offset + page.len();
    Ok((
        page,
        total as u64,
        (next < total).then(|| cursor(run, next)),
    ))
}

/// `value` if it is one of `allowed` (case-insensitive), else an error naming them.
fn one_of(what: &str, value: &str, allowed: &[&'static str]) -> Result<&'static str, ToolError> {
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

fn kind_name(kind: &str) -> Result<&'static str, ToolError> {
    one_of("kind", kind, KINDS)
}

pub(super) fn not_found(model: &Model, kind: &str, query: &str) -> ToolError {
    let names: Vec<&str> = model.of_kind(kind).map(|e| e.name.as_str()).collect();
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

pub(super) fn deviation_info(d: &Deviation) -> DeviationInfo {
    let r = &d.record;
    DeviationInfo {
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

/// Cursors name the run they page through: a page of another model would skip or repeat.
fn cursor(run: i64, offset: usize) -> String {
    format!("r{run}o{offset}")
}

fn parse_cursor(cursor: Option<&str>, run: i64) -> Result<usize, ToolError> {
    let Some(c) = cursor.filter(|c| !c.is_empty()) else {
        return Ok(0);
    };
    let parsed = c
        .strip_prefix('r')
        .and_then(|rest| rest.split_once('o'))
        .and_then(|(r, o)| Some((r.parse::<i64>().ok()?, o.parse::<usize>().ok()?)));
    match parsed {
        Some((r, o)) if r == run => Ok(o),
        Some((r, _)) => Err(ToolError::new(format!(
            "the cursor belongs to run {r}, but the model is now that of run {run}; \
             list again without a cursor"
        ))),
        None => Err(ToolError::new(format!(
            "`{c}` is not a cursor; pass the nextCursor of the previous page"
        ))),
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
        assert_eq!(parse_cursor(Some(&cursor(7, 50)), 7).unwrap(), 50);
        assert!(parse_cursor(Some(&cursor(6, 50)), 7).is_err());
        assert!(parse_cursor(Some("zzz"), 7).is_err());
        assert!(scalar_eq(&serde_json::json!(true), "TRUE"));
        assert!(scalar_eq(&serde_json::json!(24), "24"));
        assert!(key_value("label", "role", "a=b").is_err());
    }

    #[test]
    fn bad_filters_name_the_allowed_values() {
        let e = one_of("status", "in-sync", STATUSES).unwrap_err();
        assert!(
            e.message.contains("synced, out-of-sync, unknown"),
            "{}",
            e.message
        );
        assert_eq!(kind_name("dhcpreservation").unwrap(), "DhcpReservation");
        let e = kind_name("Devices").unwrap_err();
        assert!(
            e.message.contains("Did you mean `Device`?"),
            "{}",
            e.message
        );
    }
}
