//! `propose_change`: an assistant's change to the desired state, made the GitOps way — a
//! branch and a pull request a person merges. Nothing in the lab changes and no provider is
//! asked: the plan is made against the latest run's stored observation.

use std::sync::Arc;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value as Json;

use super::types::DiagnosticInfo;
use super::ToolError;
use crate::controller::{self, Context};
use crate::model::Kind;
use crate::propose::agent::{self, AgentError, Change, FieldEdit, Proposed};
use crate::source::SourceSpec;

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ProposeChangeInput {
    /// YAML of one or more resource documents (Pool, Device, DhcpReservation, Route,
    /// McpServer), separated by `---`: a new resource gets a file of its own in the
    /// repository's layout; one Git declares already has its document replaced. Give this or
    /// `edits`.
    pub documents: Option<String>,
    /// Field edits of resources Git declares: each sets one field to a value.
    pub edits: Option<Vec<FieldEditInput>>,
    /// Why the change is wanted; it goes into the commit message and the pull request.
    pub reason: String,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct FieldEditInput {
    /// `Kind/name`, e.g. `DhcpReservation/whisper`.
    pub resource: String,
    /// Field path, e.g. `spec.ip`.
    pub field: String,
    /// The new value (any JSON value).
    pub value: Json,
}

#[derive(Debug, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProposeChangeOutput {
    /// Whether the repository with the change validates. When false, `diagnostics` say why
    /// and nothing was written anywhere.
    pub valid: bool,
    /// Validation errors: file:line:column, the document, the field and what to do.
    pub diagnostics: Vec<DiagnosticInfo>,
    /// The branch, commit, pull request and plan of a valid proposal.
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub proposed: Option<Proposed>,
}

/// Makes the proposal against the repository `ctx` tracks, for `by`.
pub async fn propose_change(
    ctx: &Arc<Context>,
    input: ProposeChangeInput,
    by: &str,
) -> Result<ProposeChangeOutput, ToolError> {
    if input.reason.trim().is_empty() {
        return Err(ToolError::new(
            "give a `reason`: a person reads it before merging",
        ));
    }
    let change = match (input.documents, input.edits) {
        (Some(d), None) => Change::Documents(d),
        (None, Some(edits)) => Change::Edits(
            edits
                .into_iter()
                .map(|e| {
                    let (kind, name) = e.resource.split_once('/').ok_or_else(|| {
                        ToolError::new(format!("`{}` is not Kind/name", e.resource))
                    })?;
                    let kind = Kind::parse(kind).ok_or_else(|| {
                        ToolError::new(format!(
                            "`{kind}` is not a kind: Pool, Device, DhcpReservation, Route or \
                             McpServer"
                        ))
                    })?;
                    Ok(FieldEdit {
                        kind,
                        name: name.to_string(),
                        field: e.field,
                        value: e.value,
                    })
                })
                .collect::<Result<_, ToolError>>()?,
        ),
        _ => return Err(ToolError::new("give exactly one of `documents` or `edits`")),
    };
    let SourceSpec::Git(location) = &ctx.settings().source else {
        return Err(ToolError::new(
            "the desired state is read from a plain directory: there is no Git repository to \
             propose a branch to",
        ));
    };
    let loaded = ctx
        .load()
        .await
        .map_err(|e| ToolError::new(e.to_string()))?;
    let providers = controller::providers(&loaded, ctx.settings().host);
    let target = agent::Target {
        location,
        subdir: ctx.settings().path.as_deref(),
        rev: location.options().rev.as_deref(),
    };
    match agent::propose(
        ctx.store(),
        &loaded,
        &providers,
        &target,
        &change,
        &input.reason,
        by,
    )
    .await
    {
        Ok(proposed) => Ok(ProposeChangeOutput {
            valid: true,
            diagnostics: Vec::new(),
            proposed: Some(proposed),
        }),
        Err(AgentError::Invalid(diagnostics)) => Ok(ProposeChangeOutput {
            valid: false,
            diagnostics: diagnostics
                .iter()
                .map(super::tools::diagnostic_info)
                .collect(),
            proposed: None,
        }),
        Err(e) => Err(ToolError::new(e.to_string())),
    }
}
