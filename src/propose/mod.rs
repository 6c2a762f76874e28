//! Propose: changes to Git that make it say what the live lab says, one change set per
//! resource, for a person to review and merge.
//!
//! [`prepare`] turns the policy's proposals ([`crate::diff::Proposal`]) into file edits of the
//! desired-state repository: an unmanaged resource becomes a new document in the repository
//! layout (what `import` writes), a drifted field is replaced in place without disturbing the
//! rest of its file ([`yaml`]), a missing resource's document is removed where labctl.yaml's
//! `proposeRemovals` asks for it. Each change set is then checked the way a reviewer would want:
//! the repository with it validates with no error, and a plan of it against the very
//! observation it came from no longer shows what it covers (and shows nothing new about the
//! resource). A change set that fails either is refused with the reason, never proposed.
//! Pure apart from the providers' `expected` (no I/O); [`publish`] commits and pushes the
//! change sets that pass.

pub mod agent;
pub mod forge;
pub mod publish;
pub mod pulls;
pub mod yaml;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use serde::Serialize;
use serde_json::Value as Json;

use crate::diff::{self, Deviation, DeviationType, Plan, ProviderInput, Rules, Severity};
use crate::model::Kind;
use crate::providers::Provider;
use crate::reconcile::{import, Loaded};
use crate::source::{Snapshot, SourceFile};
use crate::validate;

pub use crate::source::BRANCH_PREFIX;

/// One deviation a change set puts right in Git.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Covered {
    /// Empty for a whole resource.
    pub field_path: String,
    #[serde(rename = "type")]
    pub dtype: DeviationType,
    pub severity: Severity,
    /// What Git says (absent for an unmanaged resource).
    pub in_git: Option<Json>,
    /// What the lab says (absent for a missing resource).
    pub live: Option<Json>,
}

/// A file the change set writes or deletes.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FileChange {
    pub path: String,
    /// `None`: a new file.
    #[serde(skip)]
    pub before: Option<String>,
    /// `None`: the file is deleted.
    #[serde(skip)]
    pub after: Option<String>,
}

impl FileChange {
    /// `added`, `modified` or `deleted`.
    pub fn action(&self) -> &'static str {
        match (&self.before, &self.after) {
            (None, _) => "added",
            (_, None) => "deleted",
            _ => "modified",
        }
    }

    /// The change as a unified diff (`git apply` reads it).
    pub fn patch(&self) -> String {
        let before = self.before.as_deref().unwrap_or("");
        let after = self.after.as_deref().unwrap_or("");
        let old = match self.before {
            Some(_) => format!("a/{}", self.path),
            None => "/dev/null".into(),
        };
        let new = match self.after {
            Some(_) => format!("b/{}", self.path),
            None => "/dev/null".into(),
        };
        let mut out = format!("diff --git a/{0} b/{0}\n", self.path);
        match self.action() {
            "added" => out.push_str("new file mode 100644\n"),
            "deleted" => out.push_str("deleted file mode 100644\n"),
            _ => {}
        }
        out.push_str(
            &similar::TextDiff::from_lines(before, after)
                .unified_diff()
                .context_radius(3)
                .header(&old, &new)
                .to_string(),
        );
        out
    }
}

/// The edits that bring one resource in Git in line with the lab.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ChangeSet {
    pub kind: Kind,
    pub name: String,
    pub provider: String,
    /// `labctl/drift/dhcpreservation-whisper`: the same for the same resource, so a later run
    /// finds and updates it rather than opening another.
    pub branch: String,
    pub title: String,
    pub covers: Vec<Covered>,
    pub files: Vec<FileChange>,
    /// Warnings the repository with the change validates with.
    pub warnings: Vec<String>,
}

impl ChangeSet {
    /// The commit message: the title, then one line per deviation identity.
    pub fn message(&self) -> String {
        let mut out = format!("{}\n\n", self.title);
        for c in &self.covers {
            let field = if c.field_path.is_empty() {
                String::new()
            } else {
                format!(" {}", c.field_path)
            };
            out.push_str(&format!(
                "- {}/{}{field}: {}\n",
                self.kind,
                self.name,
                c.dtype.as_str()
            ));
        }
        out.push_str(&format!(
            "\nProposed by labctl from what {} reports live.\n",
            self.provider
        ));
        out
    }

    /// Every file's change, as one patch.
    pub fn patch(&self) -> String {
        self.files.iter().map(FileChange::patch).collect()
    }
}

/// A resource whose change was not proposed, and why.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Refused {
    pub kind: Kind,
    pub name: String,
    pub reason: String,
    /// Validation errors of the repository with the change, one line each.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub diagnostics: Vec<String>,
}

/// What the proposals of one plan come to.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Proposals {
    pub change_sets: Vec<ChangeSet>,
    pub refused: Vec<Refused>,
}

/// Change sets one run prepares at most by default (each validates the whole repository).
pub const MAX_CHANGE_SETS: usize = 20;

/// The branch of the change set for `kind`/`name`: only characters a Git ref and every
/// forge take, the same for the same resource.
pub fn branch_name(kind: Kind, name: &str) -> String {
    let mut slug: String = name
        .chars()
        .map(|c| match c {
            'a'..='z' | '0'..='9' | '-' | '_' => c,
            'A'..='Z' => c.to_ascii_lowercase(),
            _ => '-',
        })
        .collect();
    slug.truncate(100);
    format!(
        "{BRANCH_PREFIX}drift/{}-{}",
        kind.as_str().to_ascii_lowercase(),
        slug.trim_matches('-')
    )
}

/// Builds, validates and checks one change set per resource the plan proposes a change for,
/// for at most `max` resources (each costs a validation of the whole repository; the rest are
/// listed as refused, in order, and come up again in a later run). `inputs` are the
/// observations `plan` came from; `providers` give what each expects of a desired state.
/// Nothing is written.
pub fn prepare(
    loaded: &Loaded,
    plan: &Plan,
    inputs: &[ProviderInput],
    providers: &[Arc<dyn Provider>],
    rules: &Rules,
    max: usize,
) -> Proposals {
    let wanted: BTreeSet<(Kind, &str, &str)> = plan
        .proposals
        .iter()
        .map(|p| (p.kind, p.name.as_str(), p.field_path.as_str()))
        .collect();
    let mut by_resource: BTreeMap<(Kind, &str), Vec<&Deviation>> = BTreeMap::new();
    for d in &plan.deviations {
        if wanted.contains(&(d.kind, d.name.as_str(), d.field_path.as_str())) {
            by_resource
                .entry((d.kind, d.name.as_str()))
                .or_default()
                .push(d);
        }
    }
    let mut out = Proposals::default();
    // Read once for every change set, and only when there is one: a let-go commit's files
    // are read again from Git, and the daemon prepares after every run with a pull request
    // open.
    let held = if by_resource.is_empty() {
        None
    } else {
        match loaded.files() {
            Ok(held) => Some(held),
            Err(e) => {
                tracing::warn!(error = %e, "the commit's files could not be read again; nothing is proposed");
                None
            }
        }
    };
    for (i, ((kind, name), deviations)) in by_resource.into_iter().enumerate() {
        let Some(held) = held.as_deref() else {
            out.refused.push(Refused {
                kind,
                name: name.to_string(),
                reason: "the commit's files could not be read again".into(),
                diagnostics: Vec::new(),
            });
            continue;
        };
        if i >= max {
            out.refused.push(Refused {
                kind,
                name: name.to_string(),
                reason: format!("over the limit of {max} change sets per run"),
                diagnostics: Vec::new(),
            });
            continue;
        }
        match change_set(
            loaded,
            held,
            plan,
            inputs,
            providers,
            rules,
            kind,
            name,
            &deviations,
        ) {
            Ok(set) => out.change_sets.push(set),
            Err((reason, diagnostics)) => out.refused.push(Refused {
                kind,
                name: name.to_string(),
                reason,
                diagnostics,
            }),
        }
    }
    out
}

type Refusal = (String, Vec<String>);

/// The repository as a branch with `files` would hold it.
fn with_files(snapshot: &Snapshot, files: &[FileChange]) -> Snapshot {
    let mut snapshot = snapshot.clone();
    for f in files {
        snapshot.files.retain(|s| s.path != f.path);
        if let Some(text) = &f.after {
            snapshot.files.push(SourceFile {
                path: f.path.clone(),
                text: text.clone(),
            });
        }
    }
    snapshot.files.sort_by(|a, b| a.path.cmp(&b.path));
    snapshot
}

#[allow(clippy::too_many_arguments)]
fn change_set(
    loaded: &Loaded,
    held: &Snapshot,
    plan: &Plan,
    inputs: &[ProviderInput],
    providers: &[Arc<dyn Provider>],
    rules: &Rules,
    kind: Kind,
    name: &str,
    deviations: &[&Deviation],
) -> Result<ChangeSet, Refusal> {
    let plain = |s: String| (s, Vec::new());
    let provider = deviations[0].provider.clone();
    // Git takes the lab's word only for a resource the lab showed whole.
    if plan
        .deviations
        .iter()
        .any(|d| d.kind == kind && d.name == name && d.dtype == DeviationType::Unknown)
    {
        return Err(plain(
            "part of it could not be read live; nothing is proposed from a partial picture".into(),
        ));
    }
    let files = edits(loaded, held, kind, name, deviations).map_err(plain)?;

    let validation = validate::validate(&with_files(held, &files));
    let Some(state) = validation.state else {
        return Err((
            "the repository with this change does not validate".into(),
            validation
                .diagnostics
                .iter()
                .filter(|d| d.severity == validate::Severity::Error)
                .map(|d| d.summary())
                .collect(),
        ));
    };

    // A plan of it against the same observation: what it covers is gone, nothing new appears.
    let (Some(input), Some(p)) = (
        inputs.iter().find(|i| i.provider == provider),
        providers.iter().find(|p| p.name() == provider),
    ) else {
        return Err(plain(format!("provider {provider} is not in this run")));
    };
    let Ok(observed) = &input.observed else {
        return Err(plain(format!("provider {provider} was not observed")));
    };
    let again = diff::diff(
        &[ProviderInput {
            provider: provider.clone(),
            expected: p.expected(&state).into(),
            observed: Ok(observed.clone()),
            can_apply: input.can_apply.clone(),
            severities: input.severities,
        }],
        rules,
    );
    let before: BTreeSet<(&str, DeviationType)> = plan
        .deviations
        .iter()
        .filter(|d| d.kind == kind && d.name == name && d.provider == provider)
        .map(|d| (d.field_path.as_str(), d.dtype))
        .collect();
    let covered: BTreeSet<(&str, DeviationType)> = deviations
        .iter()
        .map(|d| (d.field_path.as_str(), d.dtype))
        .collect();
    let left: Vec<String> = again
        .deviations
        .iter()
        .filter(|d| d.kind == kind && d.name == name)
        .filter(|d| {
            let key = (d.field_path.as_str(), d.dtype);
            covered.contains(&key) || !before.contains(&key)
        })
        .map(|d| {
            format!("{} {}", d.field_path, d.dtype.as_str())
                .trim()
                .to_string()
        })
        .collect();
    if !left.is_empty() {
        return Err(plain(format!(
            "a plan of the repository with this change still shows {} (the provider's field \
             does not map onto the document as written)",
            left.join(", ")
        )));
    }

    let field = |d: &Deviation| {
        if d.field_path.is_empty() {
            String::new()
        } else {
            format!(" {}", d.field_path)
        }
    };
    let title = match deviations[0].dtype {
        DeviationType::Unmanaged => format!("labctl: add {kind} {name}, found in {provider}"),
        DeviationType::Missing => format!("labctl: remove {kind} {name}, gone from {provider}"),
        _ if deviations.len() == 1 => format!(
            "labctl: accept live{} of {kind} {name} from {provider}",
            field(deviations[0])
        ),
        _ => format!(
            "labctl: accept {} live fields of {kind} {name} from {provider}",
            deviations.len()
        ),
    };
    Ok(ChangeSet {
        kind,
        name: name.to_string(),
        provider,
        branch: branch_name(kind, name),
        title,
        covers: deviations
            .iter()
            .map(|d| Covered {
                field_path: d.field_path.clone(),
                dtype: d.dtype,
                severity: d.severity,
                in_git: d.expected.clone(),
                live: d.actual.clone(),
            })
            .collect(),
        files,
        warnings: validation
            .diagnostics
            .iter()
            .filter(|d| d.severity == validate::Severity::Warning)
            .map(|d| d.summary())
            .collect(),
    })
}

/// The file edits for one resource's deviations (all of one type: a resource is either
/// unmanaged, missing or drifted).
fn edits(
    loaded: &Loaded,
    held: &Snapshot,
    kind: Kind,
    name: &str,
    deviations: &[&Deviation],
) -> Result<Vec<FileChange>, String> {
    let text_of = |path: &str| held.text(path).map(str::to_string);
    let origin = || {
        loaded
            .state
            .origin(kind, name)
            .map(|o| o.file.clone())
            .ok_or_else(|| format!("{kind} {name} is not declared in Git"))
    };
    match deviations[0].dtype {
        DeviationType::Unmanaged => {
            let fields = deviations[0]
                .actual
                .as_ref()
                .ok_or("the live resource's fields were not read")?;
            let path = import::path(kind, name);
            if text_of(&path).is_some() {
                return Err(format!("{path} already exists"));
            }
            Ok(vec![FileChange {
                after: Some(import::document(kind, name, fields)?),
                path,
                before: None,
            }])
        }
        DeviationType::Missing => {
            let path = origin()?;
            let before = text_of(&path).ok_or_else(|| format!("{path} is not in the snapshot"))?;
            let after = yaml::remove_document(&before, kind.as_str(), name)
                .map_err(|e| format!("{path}: {e}"))?;
            Ok(vec![FileChange {
                path,
                before: Some(before),
                after,
            }])
        }
        DeviationType::Drifted => {
            let path = origin()?;
            let before = text_of(&path).ok_or_else(|| format!("{path} is not in the snapshot"))?;
            let mut after = before.clone();
            for d in deviations {
                after = yaml::set_field(
                    &after,
                    kind.as_str(),
                    name,
                    &d.field_path,
                    d.actual.as_ref(),
                )
                .map_err(|e| format!("{path}: {e}"))?;
            }
            Ok(vec![FileChange {
                path,
                before: Some(before),
                after: Some(after),
            }])
        }
        DeviationType::Unknown => Err("it could not be observed".into()),
    }
}
