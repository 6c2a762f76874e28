//! What each tool answers, from the store's latest reconciled model and deviation tables.
//! Nothing here calls a provider.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use super::model::{count, Entry, Model};
use super::types::*;
use super::ToolError;
use crate::store::{Deviation, Run, Severity, Store};
use crate::validate::{self, did_you_mean};

/// The kinds a resource can have.
pub const KINDS: &[&str] = &["Pool", "Device", "DhcpReservation", "Route", "McpServer"];
const STATUSES: &[&str] = &["synced", "out-of-sync", "unknown"];
const DEFAULT_FIELDS: &[&str] = &["name", "type", "status", "deviations", "ips", "pools"];
const ALL_FIELDS: &[&str] = &[
    "name",
    "type",
    "status",
    "deviations",
    "ips",
    "pools",
    "provider",
    "macs",
    "reservations",
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
    let fields = choose_fields(input.fields.as_deref())?;
    if let Some(status) = &input.status {
        one_of("status", status, STATUSES)?;
    }
    let label = input
        .label
        .as_deref()
        .map(|l| {
            l.split_once('=')
                .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
                .filter(|(k, _)| !k.is_empty())
                .ok_or_else(|| {
                    ToolError::new(format!(
                        "label filter `{l}`: write it as key=value, e.g. role=platform"
                    ))
                })
        })
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
    if label.is_some() && !devices.iter().any(|d| labels_of(d).is_some()) {
        notes.push(
            "no device in the reconciled model carries labels, so a label filter matches nothing"
                .into(),
        );
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
                .is_none_or(|s| d.status.eq_ignore_ascii_case(s))
        })
        .filter(|d| {
            input
                .pool
                .as_deref()
                .is_none_or(|p| model.pools_of(d).iter().any(|name| pool_matches(p, name)))
        })
        .filter(|d| {
            label.as_ref().is_none_or(|(k, v)| {
                labels_of(d)
                    .and_then(|l| l.get(k))
                    .and_then(|x| x.as_str())
                    .is_some_and(|x| x == v)
            })
        })
        .collect();
    let limit = input.limit.unwrap_or(50).clamp(1, 500) as usize;
    let offset = parse_cursor(input.cursor.as_deref(), model.run)?;
    let total = matching.len();
    let page: Vec<DeviceInfo> = matching
        .iter()
        .skip(offset)
        .take(limit)
        .map(|d| project(device_info(model, d), &fields))
        .collect();
    let next = offset + page.len();
    Ok(ListDevicesOutput {
        basis: basis(model),
        devices: page,
        total: total as u64,
        next_cursor: (next < total).then(|| cursor(model.run, next)),
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
        pools: Some(model.pools_of(d)),
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
    if !keep("pools") {
        d.pools = None;
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

fn choose_fields(fields: Option<&[String]>) -> Result<BTreeSet<&'static str>, ToolError> {
    let Some(fields) = fields.filter(|f| !f.is_empty()) else {
        return Ok(DEFAULT_FIELDS.iter().copied().collect());
    };
    let mut out = BTreeSet::from(["name"]);
    for f in fields {
        out.insert(one_of("fields", f, ALL_FIELDS)?);
    }
    Ok(out)
}

fn labels_of(d: &Entry) -> Option<&serde_json::Map<String, serde_json::Value>> {
    [&d.desired, &d.observed]
        .into_iter()
        .flatten()
        .find_map(|f| f.get("labels").and_then(|l| l.as_object()))
}

fn pool_matches(filter: &str, pool: &str) -> bool {
    let filter = filter.trim();
    if let Some(prefix) = filter
        .strip_suffix('*')
        .or_else(|| filter.strip_suffix('/'))
    {
        let last = prefix.rsplit('/').next().unwrap_or(prefix);
        return pool
            .to_ascii_lowercase()
            .starts_with(&last.to_ascii_lowercase());
    }
    let last = filter.rsplit('/').next().unwrap_or(filter);
    last.eq_ignore_ascii_case(pool)
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

fn not_found(model: &Model, kind: &str, query: &str) -> ToolError {
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

fn deviation_info(d: &Deviation) -> DeviationInfo {
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

/// `30m`, `24h`, `7d` → milliseconds.
fn parse_age(text: &str) -> Result<i64, ToolError> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let bad = || ToolError::new(format!("since `{text}` is not an age like 30m, 24h or 7d"));
    let n: i64 = number.parse().map_err(|_| bad())?;
    let unit_ms = match unit {
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => DAY_MS,
        "w" => 7 * DAY_MS,
        _ => return Err(bad()),
    };
    Ok(n.saturating_mul(unit_ms))
}

pub(super) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// `2026-11-21T23:31:05.123Z` from unix milliseconds.
pub fn rfc3339(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let millis = ms.rem_euclid(1000);
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{millis:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_ages_and_cursors() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(1_795_822_265_123), "2026-11-27T23:31:05.123Z");
        assert_eq!(parse_age("24h").unwrap(), 86_400_000);
        assert!(parse_age("yesterday").is_err());
        assert_eq!(parse_cursor(Some(&cursor(7, 50)), 7).unwrap(), 50);
        assert!(parse_cursor(Some(&cursor(6, 50)), 7).is_err());
        assert!(parse_cursor(Some("zzz"), 7).is_err());
        assert!(pool_matches("/homelab/compute/gpu-nodes", "gpu-nodes"));
        assert!(pool_matches("GPU", "gpu"));
        assert!(pool_matches("/homelab/compute/gp*", "gpu"));
        assert!(!pool_matches("compute", "gpu"));
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
