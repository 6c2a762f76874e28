//! MCP resources: every desired-state document of the latest reconciled model
//! (`labctl://<Kind>/<name>`), the latest plan (`labctl://plan/latest`: the open deviations),
//! the reconcile status (`labctl://status`) and the JSON Schema of each kind (`labctl://schemas/<kind>`), with resource templates for
//! reading a document by name. Like the tools, answers come from the store, never from a
//! provider.

use std::collections::BTreeMap;

use rmcp::model::{
    ListResourceTemplatesResult, ListResourcesResult, ReadResourceResult, Resource,
    ResourceContents, ResourceTemplate,
};
use rmcp::ErrorData;
use serde_json::{json, Value as Json};

use super::model::Model;
use super::notify::Snapshot;
use super::{tools, LabServer};
use crate::model::{schema, Kind, API_VERSION};
use crate::readmodel::Entry;
use crate::validate::did_you_mean;

/// The scheme of every labctl resource.
pub const SCHEME: &str = "labctl://";
/// The URI of the latest plan.
pub const PLAN_URI: &str = "labctl://plan/latest";
/// The URI of the reconcile status: recent runs, providers, changes, suspensions.
pub const STATUS_URI: &str = "labctl://status";
/// Runs the status resource shows.
const STATUS_RUNS: u32 = 5;
/// Resources per `resources/list` page.
const PAGE: usize = 100;
const JSON: &str = "application/json";
const SCHEMA_JSON: &str = "application/schema+json";

/// The kinds of desired-state document (the Config is the host's business, not a resource).
pub(super) const DOC_KINDS: [Kind; 5] = [
    Kind::Pool,
    Kind::Device,
    Kind::DhcpReservation,
    Kind::Route,
    Kind::McpServer,
];

/// `labctl://<Kind>/<name>`.
pub fn document_uri(kind: &str, name: &str) -> String {
    format!("{SCHEME}{kind}/{name}")
}

/// `labctl://schemas/<kind>`, the kind in lower case.
pub fn schema_uri(kind: Kind) -> String {
    format!("{SCHEME}schemas/{}", kind.as_str().to_ascii_lowercase())
}

/// The templates: a document by kind and name, a schema by kind.
pub fn templates() -> ListResourceTemplatesResult {
    let mut out: Vec<ResourceTemplate> = DOC_KINDS
        .iter()
        .map(|k| {
            ResourceTemplate::new(format!("{SCHEME}{k}/{{name}}"), format!("{k} document"))
                .with_title(format!("{k} by name"))
                .with_description(format!(
                    "The {k} document named `name` (case-insensitive) as Git declares it \
                     (apiVersion, kind, metadata, spec), with its status in the latest \
                     reconciled model."
                ))
                .with_mime_type(JSON)
        })
        .collect();
    out.push(
        ResourceTemplate::new(format!("{SCHEME}schemas/{{kind}}"), "JSON Schema")
            .with_title("JSON Schema of a kind")
            .with_description(
                "The JSON Schema of one kind of document: pool, device, dhcpreservation, \
                 route, mcpserver or config.",
            )
            .with_mime_type(SCHEMA_JSON),
    );
    ListResourceTemplatesResult::with_all_items(out)
}

/// Every resource, in a fixed order: the plan, the schemas, then the documents by kind and
/// name.
fn all_resources(model: Option<&Model>) -> Vec<Resource> {
    let mut out = vec![Resource::new(PLAN_URI, "plan/latest")
        .with_title("Latest plan")
        .with_description(
            "The open deviations between Git and the live lab, as a plan: counts by severity \
             and kind, and each deviation with expected and actual values and its remediation.",
        )
        .with_mime_type(JSON)];
    out.push(
        Resource::new(STATUS_URI, "status")
            .with_title("Reconcile status")
            .with_description(
                "The latest reconcile runs (outcome, commit, counts, errors), when each \
                 provider was last observed, recent changes and suspensions. Subscribe to \
                 hear of every run.",
            )
            .with_mime_type(JSON),
    );
    out.extend(Kind::ALL.into_iter().map(|k| {
        Resource::new(
            schema_uri(k),
            format!("schemas/{}", k.as_str().to_ascii_lowercase()),
        )
        .with_title(format!("{k} JSON Schema"))
        .with_description(format!(
            "The JSON Schema of a {k} document, as `labctl validate` enforces it."
        ))
        .with_mime_type(SCHEMA_JSON)
    }));
    if let Some(model) = model {
        for kind in DOC_KINDS {
            for e in model.lab.of_kind(kind).filter(|e| e.in_git()) {
                out.push(
                    Resource::new(
                        document_uri(e.kind.as_str(), &e.name),
                        format!("{}/{}", e.kind, e.name),
                    )
                    .with_title(format!("{} {}", e.kind, e.name))
                    .with_description(format!(
                        "The {} document `{}` from Git, with its status ({}).",
                        e.kind, e.name, e.status
                    ))
                    .with_mime_type(JSON),
                );
            }
        }
    }
    out
}

/// One page of `all` from the cursor `{run}:{offset}` (none: the first page).
fn page(
    all: Vec<Resource>,
    cursor: Option<&str>,
    tag: &str,
) -> Result<ListResourcesResult, ErrorData> {
    let offset = super::page::parse_cursor(cursor, tag)
        .map_err(|e| ErrorData::invalid_params(e.message, None))?;
    let total = all.len();
    let items: Vec<Resource> = all.into_iter().skip(offset).take(PAGE).collect();
    let next = offset + items.len();
    let mut result = ListResourcesResult::with_all_items(items);
    result.next_cursor = (next < total).then(|| super::page::cursor(tag, next));
    Ok(result)
}

impl LabServer {
    /// One page of `resources/list`. Cursors name the model's content, so a page of another
    /// model is refused rather than skipping or repeating documents.
    pub(super) async fn resource_page(
        &self,
        cursor: Option<String>,
    ) -> Result<ListResourcesResult, ErrorData> {
        let model = self.model().await.ok();
        let tag = model.as_ref().map_or_else(String::new, |m| m.tag.clone());
        page(all_resources(model.as_deref()), cursor.as_deref(), &tag)
    }

    /// `resources/read` of one labctl URI.
    pub(super) async fn read_uri(&self, uri: &str) -> Result<ReadResourceResult, ErrorData> {
        let Some(rest) = uri.strip_prefix(SCHEME) else {
            return Err(ErrorData::resource_not_found(
                format!(
                    "`{uri}` is not a labctl resource: URIs are labctl://<Kind>/<name>, \
                     {PLAN_URI} or labctl://schemas/<kind>"
                ),
                None,
            ));
        };
        let (first, second) = rest.split_once('/').unwrap_or((rest, ""));
        let second = percent_decode(second);
        let text = |value: &Json, mime: &str| {
            let text = serde_json::to_string_pretty(value).unwrap_or_default();
            Ok(ReadResourceResult::new(vec![ResourceContents::text(
                text, uri,
            )
            .with_mime_type(mime)]))
        };
        if first.eq_ignore_ascii_case("plan") {
            if !second.eq_ignore_ascii_case("latest") {
                return Err(ErrorData::resource_not_found(
                    format!("no plan `{second}`: the plan is {PLAN_URI}"),
                    None,
                ));
            }
            return text(&self.plan().await?, JSON);
        }
        if first.eq_ignore_ascii_case("status") && second.is_empty() {
            return text(&self.status().await?, JSON);
        }
        if first.eq_ignore_ascii_case("schemas") {
            let wanted = second.trim_end_matches(".schema.json");
            let Some(kind) = Kind::ALL
                .into_iter()
                .find(|k| k.as_str().eq_ignore_ascii_case(wanted))
            else {
                let names: Vec<String> = Kind::ALL
                    .iter()
                    .map(|k| k.as_str().to_ascii_lowercase())
                    .collect();
                let hint = did_you_mean(
                    &wanted.to_ascii_lowercase(),
                    names.iter().map(String::as_str),
                )
                .map(|s| format!(" Did you mean `{}`?", format_args!("{SCHEME}schemas/{s}")))
                .unwrap_or_default();
                return Err(ErrorData::resource_not_found(
                    format!("no schema `{wanted}`.{hint} Kinds: {}", names.join(", ")),
                    None,
                ));
            };
            return text(&schema::for_kind(kind), SCHEMA_JSON);
        }
        let Some(kind) = DOC_KINDS
            .into_iter()
            .find(|k| k.as_str().eq_ignore_ascii_case(first))
        else {
            let names: Vec<&str> = DOC_KINDS.iter().map(|k| k.as_str()).collect();
            let hint = did_you_mean(first, names.iter().copied())
                .map(|s| format!(" Did you mean `{SCHEME}{s}/{second}`?"))
                .unwrap_or_default();
            return Err(ErrorData::resource_not_found(
                format!(
                    "no resource kind `{first}`.{hint} Kinds: {}, plus plan and schemas",
                    names.join(", ")
                ),
                None,
            ));
        };
        let model = self.model_or_not_found().await?;
        let entry = model.lab.find(kind, &second).filter(|e| e.in_git());
        let Some(entry) = entry else {
            let miss = tools::not_found(&model, kind, &second);
            return Err(ErrorData::resource_not_found(miss.message, None));
        };
        text(&document(&model, entry), JSON)
    }

    /// The status resource.
    async fn status(&self) -> Result<Json, ErrorData> {
        let model = self.model_or_not_found().await?;
        let input = super::types::ReconcileStatusInput {
            limit: Some(STATUS_RUNS),
        };
        let status = tools::get_reconcile_status(&self.store, &model, input)
            .await
            .map_err(|e| ErrorData::internal_error(e.message, None))?;
        Ok(serde_json::to_value(status).unwrap_or_default())
    }

    /// The latest model, or why there is none as a resource error.
    async fn model_or_not_found(&self) -> Result<std::sync::Arc<Model>, ErrorData> {
        self.model()
            .await
            .map_err(|e| ErrorData::resource_not_found(e.message, None))
    }

    /// Every resource's content now, for change notifications: a document without the run
    /// it was read in (a run that changed nothing in it leaves it as it was); the plan and the
    /// status as they read.
    pub(super) async fn snapshot(&self) -> Result<Snapshot, ErrorData> {
        let mut snapshot = Snapshot::default();
        for kind in Kind::ALL {
            snapshot.add(&schema_uri(kind), &Json::Null);
        }
        let Ok(model) = self.model().await else {
            snapshot.add(PLAN_URI, &Json::Null);
            snapshot.add(STATUS_URI, &Json::Null);
            return Ok(snapshot.seal());
        };
        snapshot.add(PLAN_URI, &self.plan().await?);
        snapshot.add(STATUS_URI, &self.status().await?);
        for kind in DOC_KINDS {
            for e in model.lab.of_kind(kind).filter(|e| e.in_git()) {
                let mut doc = document(&model, e);
                if let Some(status) = doc["status"].as_object_mut() {
                    for basis in ["run", "observedAt", "commit"] {
                        status.remove(basis);
                    }
                }
                snapshot.add(&document_uri(e.kind.as_str(), &e.name), &doc);
            }
        }
        Ok(snapshot.seal())
    }

    /// The open deviations as a plan summary.
    async fn plan(&self) -> Result<Json, ErrorData> {
        let model = self.model_or_not_found().await?;
        let open = self
            .store
            .open_deviations(None, None)
            .await
            .map_err(|e| ErrorData::internal_error(super::ToolError::from(e).message, None))?;
        let mut by_severity: BTreeMap<String, u64> = BTreeMap::new();
        let mut by_kind: BTreeMap<String, u64> = BTreeMap::new();
        let mut by_type: BTreeMap<String, u64> = BTreeMap::new();
        for d in &open {
            *by_severity
                .entry(d.record.severity.to_string())
                .or_default() += 1;
            *by_kind.entry(d.record.kind.clone()).or_default() += 1;
            *by_type.entry(d.record.dtype.to_string()).or_default() += 1;
        }
        let auto = open.iter().filter(|d| d.record.auto_correctable).count();
        let prs = self
            .store
            .open_pull_requests_by_deviation()
            .await
            .map_err(|e| ErrorData::internal_error(super::ToolError::from(e).message, None))?;
        let b = tools::basis(&model);
        Ok(json!({
            "commit": b.commit,
            "observedAt": b.observed_at,
            "run": b.run,
            "summary": {
                "open": open.len(),
                "bySeverity": by_severity,
                "byKind": by_kind,
                "byType": by_type,
                "autoCorrectable": auto,
                "needsAttention": open.len() - auto,
            },
            "deviations": open.iter().map(|d| tools::deviation_info(d, &prs)).collect::<Vec<_>>(),
        }))
    }
}

/// A document as Git declares it (from the model's spec and labels), with its status.
fn document(model: &Model, e: &Entry) -> Json {
    let mut metadata = json!({ "name": e.name });
    if !e.labels().is_empty() {
        metadata["labels"] = json!(e.labels());
    }
    let b = tools::basis(model);
    let mut spec = e.spec.clone().unwrap_or(Json::Null);
    // An MCP server's environment may carry a value that should have been a credential.
    if let Some(env) = spec.get_mut("env") {
        *env = super::redact(env);
    }
    json!({
        "apiVersion": API_VERSION,
        "kind": e.kind,
        "metadata": metadata,
        "spec": spec,
        "status": {
            "state": e.status,
            "deviations": e.deviations,
            "providers": e.providers,
            "commit": b.commit,
            "observedAt": b.observed_at,
            "run": b.run,
        },
    })
}

/// `%XX` escapes decoded (a client may escape a name it puts in a URI).
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hex = |b: u8| (b as char).to_digit(16);
            if let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uris_and_templates() {
        assert_eq!(document_uri("Device", "harbor"), "labctl://Device/harbor");
        assert_eq!(
            schema_uri(Kind::DhcpReservation),
            "labctl://schemas/dhcpreservation"
        );
        assert_eq!(percent_decode("a%2Db"), "a-b");
        assert_eq!(percent_decode("ab%"), "ab%");
        let t = templates().resource_templates;
        assert!(t.iter().any(|t| t.uri_template == "labctl://Device/{name}"));
        // The plan, the status and one schema per kind, without a model.
        assert_eq!(all_resources(None).len(), 2 + Kind::ALL.len());
        // Pages of PAGE, in order, the last without a cursor; another model's cursor is refused.
        let many: Vec<Resource> = (0..PAGE * 2 + 5)
            .map(|i| Resource::new(format!("labctl://Device/d{i:03}"), format!("d{i:03}")))
            .collect();
        let first = page(many.clone(), None, "m7").unwrap();
        assert_eq!(first.resources.len(), PAGE);
        let cursor = first.next_cursor.clone().unwrap();
        let second = page(many.clone(), Some(&cursor), "m7").unwrap();
        assert_eq!(second.resources[0].name, format!("d{PAGE:03}"));
        let third = page(many.clone(), second.next_cursor.as_deref(), "m7").unwrap();
        assert_eq!(third.resources.len(), 5);
        assert!(third.next_cursor.is_none());
        assert!(page(many.clone(), Some(&cursor), "m8").is_err());
        assert!(page(many, Some("zzz"), "m7").is_err());
    }
}
