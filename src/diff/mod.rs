//! Desired × observed → deviations and the changes that would repair them. Pure: no I/O.
//!
//! Inputs are per provider: what it expects (the desired state in its live shape) and what it
//! observed, or why it could not. Outputs are typed [`Deviation`]s with a severity, whether
//! labctl can correct them, and how; plus the [`Change`]s the `apply` policy would make.

mod render;

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;
use serde_json::Value as Json;

use crate::jsondiff::{differences, Notation, Options};
use crate::model::{DesiredState, Kind, Policy};
pub use crate::providers::Severity;
use crate::providers::{Change, Observation, ProviderError, Resource, Severities};

pub use render::{render_human, FieldChange, RenderOptions};

text_enum! {
    /// What kind of difference a deviation is.
    serde DeviationType {
        /// Declared in Git, not live.
        Missing = "missing",
        /// Live, not declared in Git.
        Unmanaged = "unmanaged",
        /// Live and declared, but a field differs.
        Drifted = "drifted",
        /// Could not be observed: nothing is concluded about it.
        Unknown = "unknown",
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
    /// Where the live resource is declared when that is somewhere labctl does not write: it
    /// is never created, changed or removed, only reported.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub declared_in: Option<String>,
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
    /// Suspended at runtime, in the store (`labctl suspend`): (kind or None for every kind,
    /// name or None for the whole kind).
    pub runtime_suspend: Vec<(Option<Kind>, Option<String>)>,
    /// Kinds whose unmanaged resources are never deleted (`prune: false`).
    pub no_prune: BTreeSet<Kind>,
    /// Kinds under policy propose whose missing resources are proposed for removal from Git
    /// (`proposeRemovals`).
    pub propose_removals: BTreeSet<Kind>,
    pub safety: Safety,
}

/// How much of a provider's lab one run may change (labctl.yaml `safety`), and whether this
/// run was told to go beyond it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Safety {
    pub max_update_share: f64,
    pub max_delete_share: f64,
    /// Below this many existing resources a provider's changes are not limited.
    pub min_existing: usize,
    /// `--force`: this run applies beyond the limits.
    pub force: bool,
}

impl Default for Safety {
    /// octoDNS's defaults: 30 % of a provider's resources, once it has at least 10.
    fn default() -> Self {
        Safety {
            max_update_share: 0.3,
            max_delete_share: 0.3,
            min_existing: 10,
            force: false,
        }
    }
}

impl Safety {
    /// Why `changes` to a provider holding `existing` resources are too many, if they are.
    pub fn exceeded(&self, changes: &[Change], existing: usize) -> Option<String> {
        if self.force || existing < self.min_existing {
            return None;
        }
        let count = |f: fn(&Change) -> bool| changes.iter().filter(|c| f(c)).count();
        let deletes = count(|c| matches!(c, Change::Delete { .. }));
        let updates = count(|c| matches!(c, Change::Update { .. }));
        let limits = [
            ("delete", deletes, self.max_delete_share, "maxDeleteShare"),
            ("update", updates, self.max_update_share, "maxUpdateShare"),
        ];
        limits
            .into_iter()
            .find(|(_, n, share, _)| *n as f64 > share * existing as f64)
            .map(|(verb, n, share, key)| {
                format!(
                    "this run would {verb} {n} of {existing} existing resources ({:.0} %, more \
                     than the {:.0} % allowed), so nothing was applied with this provider. Review \
                     the plan; then run `labctl reconcile --once --force` once, or raise \
                     spec.safety.{key} in labctl.yaml",
                    100.0 * n as f64 / existing as f64,
                    100.0 * share
                )
            })
    }
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
            rules.no_prune = spec
                .prune
                .iter()
                .filter(|(_, prune)| !**prune)
                .filter_map(|(k, _)| Kind::parse(k))
                .collect();
            rules.propose_removals = spec
                .propose_removals
                .iter()
                .filter(|(_, yes)| **yes)
                .filter_map(|(k, _)| Kind::parse(k))
                .collect();
            if let Some(safety) = &spec.safety {
                let defaults = Safety::default();
                rules.safety = Safety {
                    max_update_share: safety.max_update_share.unwrap_or(defaults.max_update_share),
                    max_delete_share: safety.max_delete_share.unwrap_or(defaults.max_delete_share),
                    min_existing: safety
                        .min_existing
                        .map_or(defaults.min_existing, |n| n as usize),
                    force: false,
                };
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
        self.suspension(kind, name).is_some()
    }

    /// Why nothing is done for `kind`/`name`, if it is suspended: in Git first, since a
    /// commit outlasts a runtime suspension.
    fn suspension(&self, kind: Kind, name: &str) -> Option<Why> {
        let covers = |k: Option<Kind>, n: Option<&str>| {
            k.is_none_or(|k| k == kind) && n.is_none_or(|n| n == name)
        };
        if self
            .suspend
            .iter()
            .any(|(k, n, _)| covers(Some(*k), n.as_deref()))
        {
            Some(Why::Suspended)
        } else if self
            .runtime_suspend
            .iter()
            .any(|(k, n)| covers(*k, n.as_deref()))
        {
            Some(Why::SuspendedAtRuntime)
        } else {
            None
        }
    }
}

/// `rule` covers `path` when equal or an ancestor of it.
fn covers(rule: &str, path: &str) -> bool {
    path == rule
        || path
            .strip_prefix(rule)
            .is_some_and(|rest| rest.starts_with('.') || rest.starts_with('['))
}

/// How expected and observed fields are compared: paths as documents name fields
/// (`spec.ip`), lists as whole values, and an absent field equal to an empty one.
const FIELDS: Options = Options {
    notation: Notation::Dotted("spec"),
    arrays_by_index: false,
    absent_matches_empty: true,
};

/// One provider's side of the comparison.
#[derive(Debug)]
pub struct ProviderInput {
    pub provider: String,
    /// Shared: made once per commit and provider ([`crate::reconcile::Loaded`] keeps them).
    pub expected: std::sync::Arc<[Resource]>,
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
    /// What the `apply` policy would change, per provider: [`Decisions::apply`].
    pub changes: BTreeMap<String, Vec<Change>>,
    /// Changes to Git the `propose` policy asks for: [`Decisions::propose`].
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub proposals: Vec<Proposal>,
    pub ignored: Vec<Ignored>,
    /// Providers that could not be observed, with the reason.
    pub unobservable: BTreeMap<String, String>,
    /// Every change that would put live back in line with Git, whatever the policy, per
    /// provider (deletes, then updates, then creates): what [`decide`] chooses from.
    #[serde(skip)]
    pub repairs: BTreeMap<String, Vec<Change>>,
    /// Live resources each observed provider holds: what a run's share of changes is of.
    #[serde(skip)]
    pub existing: BTreeMap<String, usize>,
    /// Providers whose changes are held back because there are too many, with why and what
    /// to do: [`Decisions::held`].
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub held: BTreeMap<String, String>,
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
    let decisions = decide(&plan, rules);
    for (d, decision) in plan.deviations.iter_mut().zip(&decisions.each) {
        if let Some(text) = decision.remediation(d) {
            d.remediation = text;
        }
    }
    plan.changes = decisions.apply;
    plan.proposals = decisions.propose;
    plan.held = decisions.held;
    plan
}

fn diff_provider(input: &ProviderInput, rules: &Rules, plan: &mut Plan) {
    let provider = &input.provider;
    let observation = match &input.observed {
        Ok(o) => o,
        Err(e) => {
            plan.unobservable.insert(provider.clone(), e.to_string());
            for r in input.expected.iter() {
                plan.deviations
                    .push(unknown(provider, r.kind, &r.name, rules, &e.to_string()));
            }
            return;
        }
    };
    plan.existing
        .insert(provider.clone(), observation.resources.len());
    // Whole resources that could not be read, with why; and single fields that could not.
    let unreadable: BTreeMap<(Kind, &str), &str> = observation
        .unobservable
        .iter()
        .filter(|u| u.field.is_none())
        .map(|u| ((u.kind, u.name.as_str()), u.reason.as_str()))
        .collect();
    // Grouped once: a provider may report many unreadable fields, each resource asks.
    let mut fields_unread: BTreeMap<(Kind, &str), Vec<(&str, &str)>> = BTreeMap::new();
    for u in &observation.unobservable {
        if let Some(field) = u.field.as_deref() {
            fields_unread
                .entry((u.kind, u.name.as_str()))
                .or_default()
                .push((field, u.reason.as_str()));
        }
    }
    let unreadable_fields = |kind: Kind, name: &str| -> Vec<(&str, &str)> {
        fields_unread
            .get(&(kind, name))
            .cloned()
            .unwrap_or_default()
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
    let mut repairs = Vec::new();
    // Where a resource is declared when labctl does not write there, and whether its
    // provider can change it: never what is declared elsewhere.
    let standing = |kind: Kind, name: &str| -> (Option<&String>, bool) {
        let declared_in = if observation.declared_elsewhere.is_empty() {
            None
        } else {
            observation
                .declared_elsewhere
                .get(&format!("{kind}/{name}"))
        };
        (
            declared_in,
            input.can_apply.contains(&kind) && declared_in.is_none(),
        )
    };

    for (&(kind, name), expected) in &wanted {
        if let Some(why) = unreadable.get(&(kind, name)) {
            plan.deviations
                .push(unknown(provider, kind, name, rules, why));
            continue;
        }
        let (declared_in, can_apply) = standing(kind, name);
        match live.get(&(kind, name)) {
            None => {
                plan.deviations.push(whole(
                    provider,
                    (kind, name),
                    DeviationType::Missing,
                    rules,
                    can_apply,
                    declared_in,
                    Some(&expected.fields.value()),
                    None,
                ));
                if can_apply {
                    repairs.push(Change::Create {
                        kind,
                        name: name.to_string(),
                        fields: expected.fields.value(),
                    });
                }
            }
            Some(actual) => {
                // Equal texts are equal values: a resource that has not drifted is read no
                // further than that.
                let values = (expected.fields != actual.fields)
                    .then(|| (expected.fields.value(), actual.fields.value()));
                let mut diffs = match &values {
                    Some((exp, act)) => differences(exp, act, FIELDS),
                    None => Vec::new(),
                };
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
                let mut target: Option<Json> = None;
                let mut drifted = false;
                for (path, exp, act) in diffs {
                    if let Some(reason) = rules.ignored(kind, name, &path) {
                        // `target` is the resource's fields: the path less its `spec.`.
                        let field = path.split_once('.').map_or("", |(_, f)| f);
                        let target = target.get_or_insert_with(|| expected.fields.value());
                        crate::jsondiff::set_path(target, field, act.cloned());
                        plan.ignored.push(Ignored {
                            kind,
                            name: name.to_string(),
                            field_path: path,
                            reason: reason.to_string(),
                        });
                        continue;
                    }
                    // Only a difference in configuration is put right by writing it.
                    let state = is_state_field(kind, &path);
                    drifted |= !state;
                    let severity = drift_severity(input.severities, kind, &path);
                    plan.deviations.push(Deviation {
                        kind,
                        name: name.to_string(),
                        dtype: DeviationType::Drifted,
                        severity,
                        provider: provider.clone(),
                        auto_correctable: can_apply && !state,
                        remediation: String::new(),
                        suspended: rules.suspended(kind, name),
                        expected: exp.cloned(),
                        actual: act.cloned(),
                        field_path: path,
                        declared_in: declared_in.cloned(),
                    });
                }
                if drifted && can_apply && !partial {
                    repairs.push(Change::Update {
                        kind,
                        name: name.to_string(),
                        fields: target.unwrap_or_else(|| expected.fields.value()),
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
        // Live, but not readable enough to conclude anything: never removed on that picture.
        if let Some(why) = unreadable.get(&(kind, name)) {
            plan.deviations
                .push(unknown(provider, kind, name, rules, why));
            continue;
        }
        let (declared_in, can_apply) = standing(kind, name);
        plan.deviations.push(whole(
            provider,
            (kind, name),
            DeviationType::Unmanaged,
            rules,
            can_apply,
            declared_in,
            None,
            Some(&actual.fields.value()),
        ));
        if can_apply {
            repairs.push(Change::Delete {
                kind,
                name: name.to_string(),
                key: actual.key.clone(),
            });
        }
    }
    if !repairs.is_empty() {
        // Deletes first, then updates, then creates: an address or host freed by one change
        // is free before another claims it.
        repairs.sort_by_key(|c| match c {
            Change::Delete { .. } => 0,
            Change::Update { .. } => 1,
            Change::Create { .. } => 2,
        });
        plan.repairs.insert(provider.clone(), repairs);
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
        declared_in: None,
    }
}

#[allow(clippy::too_many_arguments)]
fn whole(
    provider: &str,
    (kind, name): (Kind, &str),
    dtype: DeviationType,
    rules: &Rules,
    can_apply: bool,
    declared_in: Option<&String>,
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
        remediation: String::new(),
        suspended: rules.suspended(kind, name),
        expected: expected.cloned(),
        actual: actual.cloned(),
        declared_in: declared_in.cloned(),
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

/// Whether the field at `path` (`spec.status`) is one the live object reports of its
/// condition ([`Kind::state_fields`]).
fn is_state_field(kind: Kind, path: &str) -> bool {
    kind.state_fields().contains(&top_field(path))
}

/// The top-level field of `path`: `spec.backend.urls[0]` → `backend`.
fn top_field(path: &str) -> &str {
    let field = path.strip_prefix("spec.").unwrap_or(path);
    field.split(['.', '[']).next().unwrap_or(field)
}

/// Severity of a drifted field: what the provider that compared it says for its top-level
/// field ([`crate::providers::Provider::severities`]); low where it says nothing.
pub fn drift_severity(severities: Severities, kind: Kind, path: &str) -> Severity {
    let top = top_field(path);
    severities
        .iter()
        .find(|(k, fields, _)| *k == kind && fields.contains(&top))
        .map_or(Severity::Low, |(_, _, severity)| *severity)
}

/// What the policy makes of one deviation. Decided in one place ([`Decision::of`]); the
/// changes applied, the proposals and every remediation text follow from it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "decision", content = "why", rename_all = "kebab-case")]
pub enum Decision {
    /// labctl puts the live system back in line with Git (policy apply).
    Apply,
    /// A change to Git is proposed for review (policy propose).
    Propose,
    /// Reported only.
    Report(Why),
}

/// Why a deviation is only reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Why {
    /// It could not be observed: nothing is concluded about it.
    Unknown,
    /// Suspended in Git.
    Suspended,
    /// Suspended at runtime (`labctl suspend`), in the store.
    SuspendedAtRuntime,
    /// Policy observe; `can_apply` says whether policy apply would let labctl repair it.
    Observe { can_apply: bool },
    /// Policy apply, but its provider cannot change this kind.
    CannotApply,
    /// Policy apply, but part of the resource could not be read: it is not changed on the
    /// strength of the rest.
    Incomplete,
    /// Policy propose, but removing a document from Git is not proposed.
    RemovalNotProposed,
    /// Policy apply, but pruning is off for the kind (`prune: false`).
    PruneDisabled,
    /// Policy apply, but the run would change more of its provider than `safety` allows.
    Held,
    /// Declared where labctl does not write ([`Deviation::declared_in`]): only a person can
    /// change it there.
    DeclaredElsewhere,
    /// A field the live object reports of its condition ([`Kind::state_fields`]): writing
    /// the configuration again cannot change it.
    LiveState,
}

/// One change to Git that the `propose` policy asks for: make Git say what live says.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Proposal {
    pub kind: Kind,
    pub name: String,
    /// The drifted field; empty for a whole (unmanaged) resource.
    pub field_path: String,
    #[serde(rename = "type")]
    pub dtype: DeviationType,
    pub provider: String,
    /// The live value Git should take: the field's, or the whole resource's fields.
    pub value: Option<Json>,
}

/// A deviation that is only reported, and why.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Reported {
    pub kind: Kind,
    pub name: String,
    pub field_path: String,
    pub why: Why,
}

/// What the policy decided for a whole plan: the input of apply and of pull requests.
#[derive(Debug, Clone, Default)]
pub struct Decisions {
    /// Changes to make live, per provider, in the order to make them.
    pub apply: BTreeMap<String, Vec<Change>>,
    /// Changes to propose to Git.
    pub propose: Vec<Proposal>,
    /// Deviations only reported.
    pub report: Vec<Reported>,
    /// The decision for each of the plan's deviations, in the plan's order.
    pub each: Vec<Decision>,
    /// Providers whose changes are all held back (too many for `safety`), and why.
    pub held: BTreeMap<String, String>,
}

impl Decision {
    /// The policy's decision for `d`. `repairable`: the plan holds a change that would put it
    /// right (its provider can apply the kind and read all of it).
    pub fn of(d: &Deviation, rules: &Rules, repairable: bool) -> Decision {
        if d.dtype == DeviationType::Unknown {
            return Decision::Report(Why::Unknown);
        }
        if let Some(why) = rules.suspension(d.kind, &d.name) {
            return Decision::Report(why);
        }
        if d.dtype == DeviationType::Drifted && is_state_field(d.kind, &d.field_path) {
            return Decision::Report(Why::LiveState);
        }
        let policy = rules.policy(d.kind);
        if d.declared_in.is_some() && policy != Policy::Propose {
            return Decision::Report(Why::DeclaredElsewhere);
        }
        match policy {
            Policy::Apply
                if d.dtype == DeviationType::Unmanaged && rules.no_prune.contains(&d.kind) =>
            {
                Decision::Report(Why::PruneDisabled)
            }
            Policy::Apply if repairable => Decision::Apply,
            Policy::Apply if d.auto_correctable => Decision::Report(Why::Incomplete),
            Policy::Apply => Decision::Report(Why::CannotApply),
            Policy::Propose
                if d.dtype == DeviationType::Missing
                    && !rules.propose_removals.contains(&d.kind) =>
            {
                Decision::Report(Why::RemovalNotProposed)
            }
            Policy::Propose => Decision::Propose,
            Policy::Observe => Decision::Report(Why::Observe {
                can_apply: d.auto_correctable,
            }),
        }
    }

    /// What will happen or what to do about `d`, in a sentence; `None` for an unknown
    /// deviation, whose text (with the reason it could not be read) comes from the observation.
    pub fn remediation(&self, d: &Deviation) -> Option<String> {
        let (kind, dtype) = (d.kind, d.dtype);
        let verb = match dtype {
            DeviationType::Missing => "create it",
            DeviationType::Unmanaged => "remove it",
            DeviationType::Drifted => "restore the field",
            DeviationType::Unknown => return None,
        };
        Some(match self {
            Decision::Apply => format!("reconcile will {verb} (policy apply)"),
            Decision::Propose => {
                match dtype {
                    DeviationType::Unmanaged => "policy propose: labctl proposes adding it to Git",
                    DeviationType::Missing => {
                        "policy propose: labctl proposes removing it from Git"
                    }
                    _ => {
                        "policy propose: labctl proposes setting the field in Git to the live value"
                    }
                }
                .to_string()
                    + " (`labctl propose --dry-run` shows the change)"
            }
            Decision::Report(why) => match why {
                Why::Unknown => return None,
                Why::Suspended => "suspended in Git: reported only".into(),
                Why::SuspendedAtRuntime => "suspended at runtime: reported only (`labctl \
                                            status` lists who suspended what and why; \
                                            `labctl resume` lifts it)"
                    .into(),
                Why::Observe { can_apply: true } => {
                    format!(
                        "set policy apply for {kind} to let labctl {verb}, or change Git to match"
                    )
                }
                Why::Observe { can_apply: false } | Why::CannotApply => {
                    "change the live system or Git by hand; labctl cannot apply this kind".into()
                }
                Why::Incomplete => format!(
                    "not changed while part of it cannot be read; reconcile will {verb} once it can"
                ),
                Why::PruneDisabled => format!(
                    "pruning is off for {kind} (prune: false in labctl.yaml): remove it by hand, \
                     or add it to Git"
                ),
                Why::Held => format!(
                    "held: reconcile would {verb}, but this run changes more than labctl.yaml's \
                     safety allows (see the plan)"
                ),
                Why::LiveState => "the live system reports this of the resource itself, and \
                                   writing it again would not change it: put right what the live \
                                   value says, in Git or live"
                    .into(),
                Why::DeclaredElsewhere => {
                    let place = d.declared_in.as_deref().unwrap_or("another configuration");
                    let what = match dtype {
                        DeviationType::Missing => "declare it there again, or remove it from Git",
                        DeviationType::Unmanaged => {
                            "remove it there, or describe it in Git (`labctl import`)"
                        }
                        _ => "change it there, or change Git to match",
                    };
                    format!("declared in {place}, which labctl does not write: {what}")
                }
                Why::RemovalNotProposed => {
                    "policy propose does not propose removals unless labctl.yaml's \
                     proposeRemovals allows them: restore it live, or remove it from Git"
                        .into()
                }
            },
        })
    }
}

/// The policy's decisions for `plan`. Pure: the same plan and rules give the same decisions.
pub fn decide(plan: &Plan, rules: &Rules) -> Decisions {
    // (provider, kind, name) of every resource a change can repair; then of those the policy
    // applies to. Sets, not scans: a plan may hold 100k deviations.
    let repairable: BTreeSet<(&str, Kind, &str)> = plan
        .repairs
        .iter()
        .flat_map(|(p, changes)| {
            changes
                .iter()
                .map(move |c| (p.as_str(), c.kind(), c.name()))
        })
        .collect();
    let mut applied: BTreeSet<(&str, Kind, &str)> = BTreeSet::new();
    let mut decisions = Decisions::default();
    for d in &plan.deviations {
        let key = (d.provider.as_str(), d.kind, d.name.as_str());
        let decision = Decision::of(d, rules, repairable.contains(&key));
        match &decision {
            Decision::Apply => {
                applied.insert(key);
            }
            Decision::Propose => decisions.propose.push(Proposal {
                kind: d.kind,
                name: d.name.clone(),
                field_path: d.field_path.clone(),
                dtype: d.dtype,
                provider: d.provider.clone(),
                value: d.actual.clone(),
            }),
            Decision::Report(why) => decisions.report.push(Reported {
                kind: d.kind,
                name: d.name.clone(),
                field_path: d.field_path.clone(),
                why: *why,
            }),
        }
        decisions.each.push(decision);
    }
    // One change can repair several deviations (every drifted field of one resource).
    for (provider, changes) in &plan.repairs {
        let chosen: Vec<Change> = changes
            .iter()
            .filter(|c| applied.contains(&(provider.as_str(), c.kind(), c.name())))
            .cloned()
            .collect();
        if chosen.is_empty() {
            continue;
        }
        let existing = plan.existing.get(provider).copied().unwrap_or(0);
        match rules.safety.exceeded(&chosen, existing) {
            None => {
                decisions.apply.insert(provider.clone(), chosen);
            }
            Some(why) => {
                decisions.held.insert(provider.clone(), why);
            }
        }
    }
    // What was held is reported, not applied.
    for (d, decision) in plan.deviations.iter().zip(decisions.each.iter_mut()) {
        if *decision == Decision::Apply && decisions.held.contains_key(&d.provider) {
            *decision = Decision::Report(Why::Held);
            decisions.report.push(Reported {
                kind: d.kind,
                name: d.name.clone(),
                field_path: d.field_path.clone(),
                why: Why::Held,
            });
        }
    }
    decisions
}

#[cfg(test)]
mod tests;
