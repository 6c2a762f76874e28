//! Desired × observed → deviations and the changes that would repair them. Pure: no I/O.
//!
//! Inputs are per provider: what it expects (the desired state in its live shape) and what it
//! observed, or why it could not. Outputs are typed [`Deviation`]s with a severity, whether
//! labctl can correct them, and how; plus the [`Change`]s the `apply` policy would make.

mod render;

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;
use serde_json::Value as Json;

use crate::model::{DesiredState, Kind, Policy};
pub use crate::providers::Severity;
use crate::providers::{Change, Observation, ProviderError, Resource, Severities};

pub use render::{render_human, RenderOptions};

/// What kind of difference a deviation is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DeviationType {
    /// Declared in Git, not live.
    Missing,
    /// Live, not declared in Git.
    Unmanaged,
    /// Live and declared, but a field differs.
    Drifted,
    /// Could not be observed: nothing is concluded about it.
    Unknown,
}

impl DeviationType {
    pub const ALL: &'static [DeviationType] = &[
        DeviationType::Missing,
        DeviationType::Unmanaged,
        DeviationType::Drifted,
        DeviationType::Unknown,
    ];

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|t| t.as_str() == text)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            DeviationType::Missing => "missing",
            DeviationType::Unmanaged => "unmanaged",
            DeviationType::Drifted => "drifted",
            DeviationType::Unknown => "unknown",
        }
    }
}

impl std::fmt::Display for DeviationType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One difference between Git and the live lab.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Deviation {
    pub kind: Kind,
    pub name: String,
    /// `spec.ip` for a drifted field; empty for a whole resource.
    pub field_path: String,
    #[serde(rename = "type")]
    pub dtype: DeviationType,
    pub severity: Severity,
    pub provider: String,
    /// labctl can put it right itself (the kind's provider can apply it).
    pub auto_correctable: bool,
    /// What will happen or what to do, in a sentence.
    pub remediation: String,
    /// Observed, reported, but never applied or proposed (suspended in Git).
    pub suspended: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expected: Option<Json>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub actual: Option<Json>,
}

/// A field difference left out on purpose, and why.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Ignored {
    pub kind: Kind,
    pub name: String,
    pub field_path: String,
    pub reason: String,
}

/// Field paths to ignore and resources to suspend, as Git says.
#[derive(Debug, Clone, Default)]
pub struct Rules {
    /// Policy per kind; absent = observe.
    pub policy: BTreeMap<Kind, Policy>,
    /// (kind, name or None for the whole kind) → ignored field paths with the reason.
    pub ignore: Vec<IgnoreRule>,
    /// (kind, name or None for the whole kind) with the reason.
    pub suspend: Vec<(Kind, Option<String>, String)>,
}

#[derive(Debug, Clone)]
pub struct IgnoreRule {
    pub kind: Kind,
    pub name: Option<String>,
    /// Field paths; a path also covers everything below it (`spec.options` covers
    /// `spec.options[0].data`).
    pub fields: Vec<String>,
    pub reason: String,
}

impl Rules {
    /// The policy, ignore and suspend rules Git declares: `labctl.yaml` for kinds and named
    /// resources, `metadata.reconcile` on each document.
    pub fn from_state(state: &DesiredState) -> Rules {
        let mut rules = Rules::default();
        if let Some(config) = &state.config {
            let spec = &config.doc.spec;
            rules.policy = spec
                .policy
                .iter()
                .filter_map(|(k, p)| Kind::parse(k).map(|k| (k, *p)))
                .collect();
            for i in &spec.ignore {
                if let Some(kind) = Kind::parse(&i.kind) {
                    rules.ignore.push(IgnoreRule {
                        kind,
                        name: i.name.clone(),
                        fields: i.fields.clone(),
                        reason: i.reason.clone(),
                    });
                }
            }
            for s in &spec.suspend {
                if let Some(kind) = Kind::parse(&s.kind) {
                    rules.suspend.push((kind, s.name.clone(), s.reason.clone()));
                }
            }
        }
        for (kind, meta) in state.metadata() {
            let Some(opts) = &meta.reconcile else {
                continue;
            };
            if !opts.ignore_fields.is_empty() {
                rules.ignore.push(IgnoreRule {
                    kind,
                    name: Some(meta.name.clone()),
                    fields: opts.ignore_fields.clone(),
                    reason: opts.reason.clone(),
                });
            }
            if opts.suspend {
                rules
                    .suspend
                    .push((kind, Some(meta.name.clone()), opts.reason.clone()));
            }
        }
        rules
    }

    pub fn policy(&self, kind: Kind) -> Policy {
        self.policy.get(&kind).copied().unwrap_or_default()
    }

    fn ignored(&self, kind: Kind, name: &str, path: &str) -> Option<&str> {
        self.ignore
            .iter()
            .filter(|r| r.kind == kind && r.name.as_deref().is_none_or(|n| n == name))
            .find(|r| r.fields.iter().any(|f| covers(f, path)))
            .map(|r| r.reason.as_str())
    }

    fn suspended(&self, kind: Kind, name: &str) -> bool {
        self.suspend
            .iter()
            .any(|(k, n, _)| *k == kind && n.as_deref().is_none_or(|n| n == name))
    }
}

/// `rule` covers `path` when equal or an ancestor of it.
fn covers(rule: &str, path: &str) -> bool {
    path == rule
        || path
            .strip_prefix(rule)
            .is_some_and(|rest| rest.starts_with('.') || rest.starts_with('['))
}

/// One provider's side of the comparison.
#[derive(Debug)]
pub struct ProviderInput {
    pub provider: String,
    pub expected: Vec<Resource>,
    pub observed: Result<Observation, ProviderError>,
    /// Kinds the provider can apply.
    pub can_apply: BTreeSet<Kind>,
    /// How much a drifted field matters, as the provider says.
    pub severities: Severities,
}

/// The outcome of a comparison.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Plan {
    pub deviations: Vec<Deviation>,
    /// What the `apply` policy would change, per provider.
    pub changes: BTreeMap<String, Vec<Change>>,
    pub ignored: Vec<Ignored>,
    /// Providers that could not be observed, with the reason.
    pub unobservable: BTreeMap<String, String>,
}

impl Plan {
    /// Deviations other than `unknown`: what `plan` exits 2 for.
    pub fn has_drift(&self) -> bool {
        self.deviations
            .iter()
            .any(|d| d.dtype != DeviationType::Unknown)
    }

    pub fn count(&self, dtype: DeviationType) -> usize {
        self.deviations.iter().filter(|d| d.dtype == dtype).count()
    }
}

/// Compares every provider's expected and observed resources.
pub fn diff(inputs: &[ProviderInput], rules: &Rules) -> Plan {
    let mut plan = Plan::default();
    for input in inputs {
        diff_provider(input, rules, &mut plan);
    }
    plan.deviations.sort_by(|a, b| {
        (a.kind, &a.name, &a.field_path, a.dtype).cmp(&(b.kind, &b.name, &b.field_path, b.dtype))
    });
    plan.ignored
        .sort_by(|a, b| (a.kind, &a.name, &a.field_path).cmp(&(b.kind, &b.name, &b.field_path)));
    plan
}

fn diff_provider(input: &ProviderInput, rules: &Rules, plan: &mut Plan) {
    let provider = &input.provider;
    let observation = match &input.observed {
        Ok(o) => o,
        Err(e) => {
            plan.unobservable.insert(provider.clone(), e.to_string());
            for r in &input.expected {
                plan.deviations
                    .push(unknown(provider, r.kind, &r.name, rules, &e.to_string()));
            }
            return;
        }
    };
    // Whole resources that could not be read, with why; and single fields that could not.
    let unreadable: BTreeMap<(Kind, &str), &str> = observation
        .unobservable
        .iter()
        .filter(|u| u.field.is_none())
        .map(|u| ((u.kind, u.name.as_str()), u.reason.as_str()))
        .collect();
    let unreadable_fields = |kind: Kind, name: &str| -> Vec<(&str, &str)> {
        observation
            .unobservable
            .iter()
            .filter(|u| u.kind == kind && u.name == name)
            .filter_map(|u| u.field.as_deref().map(|f| (f, u.reason.as_str())))
            .collect()
    };
    let live: BTreeMap<(Kind, &str), &Resource> = observation
        .resources
        .iter()
        .map(|r| ((r.kind, r.name.as_str()), r))
        .collect();
    let wanted: BTreeMap<(Kind, &str), &Resource> = input
        .expected
        .iter()
        .map(|r| ((r.kind, r.name.as_str()), r))
        .collect();
    let mut changes = Vec::new();

    for (&(kind, name), expected) in &wanted {
        if let Some(why) = unreadable.get(&(kind, name)) {
            plan.deviations
                .push(unknown(provider, kind, name, rules, why));
            continue;
        }
        let can_apply = input.can_apply.contains(&kind);
        let apply =
            rules.policy(kind) == Policy::Apply && can_apply && !rules.suspended(kind, name);
        match live.get(&(kind, name)) {
            None => {
                plan.deviations.push(whole(
                    provider,
                    kind,
                    name,
                    DeviationType::Missing,
                    rules,
                    can_apply,
                    Some(&expected.fields),
                    None,
                ));
                if apply {
                    changes.push(Change::Create {
                        kind,
                        name: name.to_string(),
                        fields: expected.fields.clone(),
                    });
                }
            }
            Some(actual) => {
                let mut diffs = Vec::new();
                compare("spec", &expected.fields, &actual.fields, &mut diffs);
                // Fields that could not be read are unknown: not compared, and the resource
                // is not changed on the strength of the rest.
                let unknown_fields = unreadable_fields(kind, name);
                for (field, why) in &unknown_fields {
                    let mut d = unknown(provider, kind, name, rules, why);
                    d.field_path = field.to_string();
                    plan.deviations.push(d);
                }
                diffs.retain(|(path, _, _)| !unknown_fields.iter().any(|(f, _)| covers(f, path)));
                let partial = !unknown_fields.is_empty();
                // An update writes the expected fields, except ignored ones, which keep
                // their live value (another system owns them).
                let mut target = expected.fields.clone();
                let mut drifted = false;
                for (path, exp, act) in diffs {
                    if let Some(reason) = rules.ignored(kind, name, &path) {
                        set_path(&mut target, &path, act.cloned());
                        plan.ignored.push(Ignored {
                            kind,
                            name: name.to_string(),
                            field_path: path,
                            reason: reason.to_string(),
                        });
                        continue;
                    }
                    drifted = true;
                    let severity = drift_severity(input.severities, kind, &path);
                    plan.deviations.push(Deviation {
                        kind,
                        name: name.to_string(),
                        dtype: DeviationType::Drifted,
                        severity,
                        provider: provider.clone(),
                        auto_correctable: can_apply,
                        remediation: remediation(
                            kind,
                            DeviationType::Drifted,
                            rules,
                            can_apply,
                            name,
                        ),
                        suspended: rules.suspended(kind, name),
                        expected: exp.cloned(),
                        actual: act.cloned(),
                        field_path: path,
                    });
                }
                if drifted && apply && !partial {
                    changes.push(Change::Update {
                        kind,
                        name: name.to_string(),
                        fields: target,
                        key: actual.key.clone(),
                    });
                }
            }
        }
    }
    for (&(kind, name), actual) in &live {
        if wanted.contains_key(&(kind, name)) {
            continue;
        }
        let can_apply = input.can_apply.contains(&kind);
        plan.deviations.push(whole(
            provider,
            kind,
            name,
            DeviationType::Unmanaged,
            rules,
            can_apply,
            None,
            Some(&actual.fields),
        ));
        if rules.policy(kind) == Policy::Apply && can_apply && !rules.suspended(kind, name) {
            changes.push(Change::Delete {
                kind,
                name: name.to_string(),
                key: actual.key.clone(),
            });
        }
    }
    if !changes.is_empty() {
        // Deletes first, then updates, then creates: an address or host freed by one change
        // is free before another claims it.
        changes.sort_by_key(|c| match c {
            Change::Delete { .. } => 0,
            Change::Update { .. } => 1,
            Change::Create { .. } => 2,
        });
        plan.changes.insert(provider.clone(), changes);
    }
}

fn unknown(provider: &str, kind: Kind, name: &str, rules: &Rules, why: &str) -> Deviation {
    Deviation {
        kind,
        name: name.to_string(),
        field_path: String::new(),
        dtype: DeviationType::Unknown,
        severity: Severity::Medium,
        provider: provider.to_string(),
        auto_correctable: false,
        remediation: format!(
            "nothing is concluded or changed until it can be observed again ({why})"
        ),
        suspended: rules.suspended(kind, name),
        expected: None,
        actual: None,
    }
}

#[allow(clippy::too_many_arguments)]
fn whole(
    provider: &str,
    kind: Kind,
    name: &str,
    dtype: DeviationType,
    rules: &Rules,
    can_apply: bool,
    expected: Option<&Json>,
    actual: Option<&Json>,
) -> Deviation {
    Deviation {
        kind,
        name: name.to_string(),
        field_path: String::new(),
        dtype,
        severity: whole_severity(kind, dtype),
        provider: provider.to_string(),
        auto_correctable: can_apply,
        remediation: remediation(kind, dtype, rules, can_apply, name),
        suspended: rules.suspended(kind, name),
        expected: expected.cloned(),
        actual: actual.cloned(),
    }
}

/// Severity of a missing or unmanaged resource.
///
/// Missing things break what depends on them (a host without its reservation gets a random
/// address; a service without its route is unreachable): high. Unmanaged reservations and
/// routes can collide with or expose what Git declares: medium. An unmanaged guest or pool is
/// someone's experiment: low.
pub fn whole_severity(kind: Kind, dtype: DeviationType) -> Severity {
    match (dtype, kind) {
        (DeviationType::Missing, Kind::Pool) => Severity::Medium,
        (DeviationType::Missing, _) => Severity::High,
        (DeviationType::Unmanaged, Kind::DhcpReservation | Kind::Route) => Severity::Medium,
        (DeviationType::Unmanaged, _) => Severity::Low,
        (DeviationType::Unknown, _) => Severity::Medium,
        (DeviationType::Drifted, _) => Severity::Medium,
    }
}

/// Severity of a drifted field: what the provider that compared it says for its top-level
/// field ([`crate::providers::Provider::severities`]); low where it says nothing.
pub fn drift_severity(severities: Severities, kind: Kind, path: &str) -> Severity {
    let field = path.strip_prefix("spec.").unwrap_or(path);
    let top = field.split(['.', '[']).next().unwrap_or(field);
    severities
        .iter()
        .find(|(k, fields, _)| *k == kind && fields.contains(&top))
        .map_or(Severity::Low, |(_, _, severity)| *severity)
}

fn remediation(
    kind: Kind,
    dtype: DeviationType,
    rules: &Rules,
    can_apply: bool,
    name: &str,
) -> String {
    if rules.suspended(kind, name) {
        return "suspended in Git: reported only".into();
    }
    let verb = match dtype {
        DeviationType::Missing => "create it",
        DeviationType::Unmanaged => "remove it",
        DeviationType::Drifted => "restore the field",
        DeviationType::Unknown => "nothing",
    };
    match rules.policy(kind) {
        Policy::Apply if can_apply => format!("reconcile will {verb} (policy apply)"),
        Policy::Propose => match dtype {
            DeviationType::Unmanaged => "a pull request will add it to Git (policy propose)".into(),
            _ => "a pull request will bring Git in line (policy propose)".into(),
        },
        _ if can_apply => {
            format!("set policy apply for {kind} to let labctl {verb}, or change Git to match")
        }
        _ => "change the live system or Git by hand; labctl cannot apply this kind".into(),
    }
}

/// Collects `(path, expected, actual)` for every differing field. Objects are compared key by
/// key; anything else (scalars, arrays) as a whole. A key absent on one side is `None`.
fn compare<'a>(
    path: &str,
    expected: &'a Json,
    actual: &'a Json,
    out: &mut Vec<(String, Option<&'a Json>, Option<&'a Json>)>,
) {
    match (expected, actual) {
        (Json::Object(e), Json::Object(a)) => {
            let keys: BTreeSet<&String> = e.keys().chain(a.keys()).collect();
            for k in keys {
                let sub = format!("{path}.{k}");
                match (e.get(k), a.get(k)) {
                    (Some(x), Some(y)) => compare(&sub, x, y, out),
                    (x, y) if is_empty(x) && is_empty(y) => {}
                    (x, y) => out.push((sub, x, y)),
                }
            }
        }
        (e, a) if e == a => {}
        (e, a) => out.push((path.to_string(), Some(e), Some(a))),
    }
}

/// Absent, null, an empty list and an empty object mean the same to a person.
fn is_empty(v: Option<&Json>) -> bool {
    match v {
        None | Some(Json::Null) => true,
        Some(Json::Array(a)) => a.is_empty(),
        Some(Json::Object(o)) => o.is_empty(),
        _ => false,
    }
}

/// Sets `spec.a.b` inside `root` (whose top is `spec`) to `value`, removing it for `None`.
fn set_path(root: &mut Json, path: &str, value: Option<Json>) {
    let mut parts: Vec<&str> = path.split('.').skip(1).collect();
    let Some(last) = parts.pop() else { return };
    let mut cursor = root;
    for p in parts {
        if !cursor.get(p).is_some_and(Json::is_object) {
            cursor[p] = Json::Object(Default::default());
        }
        cursor = &mut cursor[p];
    }
    if let Json::Object(map) = cursor {
        match value {
            Some(v) => {
                map.insert(last.to_string(), v);
            }
            None => {
                map.remove(last);
            }
        }
    }
}

#[cfg(test)]
mod tests;
