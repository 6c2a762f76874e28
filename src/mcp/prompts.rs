//! MCP prompts: the questions people ask about their lab, each a message that states the
//! question, says how to answer it well, and carries labctl's own answer — the result of the
//! tool that holds the data, called as the client (same scope, limits, deadline and audit) —
//! so that any client's model starts from facts, not from a guess. Arguments complete from the
//! latest model (`completion/complete`).

use std::collections::HashMap;

use rmcp::model::{
    ArgumentInfo, CompleteResult, CompletionInfo, GetPromptResult, ListPromptsResult, Prompt,
    PromptArgument, PromptMessage, Role,
};
use rmcp::ErrorData;
use serde_json::{json, Map, Value as Json};

use super::auth::Scope;
use super::resources::DOC_KINDS;
use super::{Client, Invoked, LabServer};
use crate::store::{Outcome, Severity};

/// One prompt: what `prompts/list` shows, the scope its tool needs, and how its message is
/// built from its arguments.
struct PromptDef {
    name: &'static str,
    title: &'static str,
    description: &'static str,
    /// (name, description, required)
    arguments: &'static [(&'static str, &'static str, bool)],
    /// The tool whose answer the message carries.
    tool: &'static str,
    scope: Scope,
}

const PROMPTS: &[PromptDef] = &[
    PromptDef {
        name: "drift_since",
        title: "What drifted since…",
        description: "What drifted between Git and the live lab within a period (`24h`, `7d`, \
                      `30m`), most severe first, with what Git declares, what is live and any \
                      pull request that proposes a fix.",
        arguments: &[
            ("since", "How far back: `30m`, `24h`, `7d`.", true),
            (
                "min_severity",
                "Only at least this severity: low, medium, high or critical.",
                false,
            ),
        ],
        tool: "get_drift",
        scope: Scope::Read,
    },
    PromptDef {
        name: "explain_deviation",
        title: "Explain a deviation and how to fix it",
        description: "One deviation explained: what Git declares, what is live, why it \
                      matters, its history, and the fix — the YAML edit in Git or the change in \
                      the lab.",
        arguments: &[
            (
                "kind",
                "Pool, Device, DhcpReservation, Route or McpServer.",
                true,
            ),
            ("name", "The resource's name.", true),
            (
                "field",
                "The field, e.g. spec.ip; omit when the resource has one deviation.",
                false,
            ),
        ],
        tool: "explain_deviation",
        scope: Scope::Read,
    },
    PromptDef {
        name: "is_ip_free",
        title: "Is this IP free?",
        description: "Whether an IPv4 address is used in Git or in the live lab, by what, and \
                      the nearest free addresses of its /24.",
        arguments: &[("ip", "An IPv4 address, e.g. 10.0.1.77.", true)],
        tool: "lookup_ip",
        scope: Scope::Read,
    },
    PromptDef {
        name: "place_new_vm",
        title: "Where should a new VM go?",
        description: "The pools and Proxmox VE nodes a new guest fits in, ranked by what is \
                      left after it, with why; then the Device document to propose.",
        arguments: &[
            ("cores", "Cores the guest needs.", false),
            ("memory_mib", "Memory the guest needs, in MiB.", false),
            ("storage_gib", "Disk the guest needs, in GiB.", false),
            (
                "dimensions",
                "Pool dimensions it needs, comma-separated: gpu=true.",
                false,
            ),
        ],
        tool: "find_placement",
        scope: Scope::Propose,
    },
    PromptDef {
        name: "last_failed_run",
        title: "Why did the last run fail?",
        description: "The most recent reconcile run that failed or could not observe \
                      everything: when, which commit, what went wrong, and what to do next.",
        arguments: &[],
        tool: "get_reconcile_status",
        scope: Scope::Read,
    },
];

/// The longest argument value taken into a prompt.
const MAX_ARGUMENT_BYTES: usize = 256;
/// Runs `last_failed_run` looks back through.
const RUNS_SEARCHED: u32 = 100;

fn find(name: &str) -> Option<&'static PromptDef> {
    PROMPTS.iter().find(|p| p.name == name)
}

/// The prompts `client` may use (a prompt's tool outside its scope hides it).
pub fn list(client: &Client) -> ListPromptsResult {
    let prompts = PROMPTS
        .iter()
        .filter(|p| client.scopes.allows(p.scope))
        .map(|p| {
            let args = p
                .arguments
                .iter()
                .map(|(name, description, required)| {
                    PromptArgument::new(*name)
                        .with_description(*description)
                        .with_required(*required)
                })
                .collect();
            Prompt::new(p.name, Some(p.description), Some(args)).with_title(p.title)
        })
        .collect();
    ListPromptsResult::with_all_items(prompts)
}

/// The arguments as strings, each known to the prompt and within size; the required ones
/// present.
fn arguments(
    def: &PromptDef,
    given: Option<Map<String, Json>>,
) -> Result<HashMap<&'static str, String>, ErrorData> {
    let mut out = HashMap::new();
    for (key, value) in given.unwrap_or_default() {
        let Some((name, _, _)) = def.arguments.iter().find(|(n, _, _)| *n == key) else {
            let names: Vec<&str> = def.arguments.iter().map(|(n, _, _)| *n).collect();
            return Err(ErrorData::invalid_params(
                format!(
                    "prompt `{}` has no argument `{}`; its arguments: {}",
                    def.name,
                    super::audit::prefix(&key, 64),
                    if names.is_empty() {
                        "none".into()
                    } else {
                        names.join(", ")
                    }
                ),
                None,
            ));
        };
        let text = match value {
            Json::String(s) => s,
            Json::Number(n) => n.to_string(),
            Json::Bool(b) => b.to_string(),
            _ => {
                return Err(ErrorData::invalid_params(
                    format!("prompt argument `{name}` must be a string"),
                    None,
                ))
            }
        };
        if text.len() > MAX_ARGUMENT_BYTES {
            return Err(ErrorData::invalid_params(
                format!(
                    "prompt argument `{name}` is {} bytes; at most {MAX_ARGUMENT_BYTES}",
                    text.len()
                ),
                None,
            ));
        }
        let text = text.trim().to_string();
        if !text.is_empty() {
            out.insert(*name, text);
        }
    }
    if let Some((name, _, _)) = def
        .arguments
        .iter()
        .find(|(n, _, required)| *required && !out.contains_key(n))
    {
        return Err(ErrorData::invalid_params(
            format!("prompt `{}` needs the argument `{name}`", def.name),
            None,
        ));
    }
    Ok(out)
}

/// A number argument, or why not.
fn number(args: &HashMap<&str, String>, name: &str) -> Result<Option<u64>, ErrorData> {
    args.get(name)
        .map(|v| {
            v.parse::<u64>().map_err(|_| {
                ErrorData::invalid_params(
                    format!("prompt argument `{name}` must be a whole number, not `{v}`"),
                    None,
                )
            })
        })
        .transpose()
}

/// The tool arguments and the question of one prompt.
fn question(
    def: &PromptDef,
    args: &HashMap<&'static str, String>,
) -> Result<(Json, String), ErrorData> {
    let get = |name: &str| args.get(name).cloned();
    Ok(match def.name {
        "drift_since" => {
            let since = get("since").unwrap_or_default();
            let mut call = json!({ "since": since });
            if let Some(s) = get("min_severity") {
                call["minSeverity"] = json!(s);
            }
            let text = format!(
                "What drifted in my lab in the last {since}? Below is labctl's answer (get_drift: \
                 deviations opened within {since}, from the latest reconcile run). Group them by \
                 severity, most severe first. For each, say what Git declares and what is live, \
                 and whether a pull request already proposes the fix. If there are none, say \
                 so and say when the lab was last observed (observedAt)."
            );
            (call, text)
        }
        "explain_deviation" => {
            let (kind, name) = (
                get("kind").unwrap_or_default(),
                get("name").unwrap_or_default(),
            );
            let mut call = json!({ "kind": kind, "name": name });
            let field = get("field");
            if let Some(f) = &field {
                call["field"] = json!(f);
            }
            let what = match &field {
                Some(f) => format!("{kind} {name} ({f})"),
                None => format!("{kind} {name}"),
            };
            let text = format!(
                "Explain the deviation of {what} in my lab and how to fix it. Below is labctl's \
                 record of it (explain_deviation). Say what Git declares and what is live, why \
                 it matters, and how long it has been open. Then give the fix: if Git is right, \
                 what to change in the lab; if the lab is right, the YAML edit to the document \
                 in Git. Mention the pull request if labctl opened one, and the ignore rule if \
                 the difference is intended."
            );
            (call, text)
        }
        "is_ip_free" => {
            let ip = get("ip").unwrap_or_default();
            let text = format!(
                "Is {ip} free in my lab, and what is near it? Below is labctl's answer \
                 (lookup_ip, from Git and the latest observation of the lab). If it is taken, \
                 say by what. Suggest the nearest free addresses, and remind me that a \
                 DhcpReservation document in Git is how to claim one."
            );
            (json!({ "ip": ip }), text)
        }
        "place_new_vm" => {
            let mut call = json!({});
            let mut wants = Vec::new();
            if let Some(c) = number(args, "cores")? {
                call["cores"] = json!(c);
                wants.push(format!("{c} cores"));
            }
            if let Some(m) = number(args, "memory_mib")? {
                call["memoryMiB"] = json!(m);
                wants.push(format!("{m} MiB of memory"));
            }
            if let Some(g) = number(args, "storage_gib")? {
                call["storageGiB"] = json!(g);
                wants.push(format!("{g} GiB of disk"));
            }
            if let Some(d) = get("dimensions") {
                let dims: Vec<&str> = d
                    .split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .collect();
                wants.push(format!("pools with {}", dims.join(", ")));
                call["dimensions"] = json!(dims);
            }
            let wants = if wants.is_empty() {
                "no particular resources".to_string()
            } else {
                wants.join(", ")
            };
            let text = format!(
                "Where should a new VM with {wants} go in my lab? Below are labctl's candidates \
                 (find_placement: pools ranked by what their declared capacity leaves after the \
                 guest, and Proxmox VE nodes by what they report free). Recommend one pool and \
                 node and say why; say what would not fit and why. Then offer to write the \
                 Device document and propose it with propose_change."
            );
            (call, text)
        }
        "last_failed_run" => (
            json!({ "limit": RUNS_SEARCHED }),
            "Why did the last reconcile run of my lab fail? Below is labctl's record of it \
             (the most recent run that failed or could not observe everything, from \
             get_reconcile_status). Say when it ran, which commit, what went wrong (invalid \
             YAML, unreachable providers, failed applies), what it left unknown, and what to do \
             next. If no run failed, say so."
                .to_string(),
        ),
        other => unreachable!("prompt `{other}` has no question"),
    })
}

/// From `get_reconcile_status`, the most recent run that did not succeed, with the providers.
fn last_failed(status: Json) -> Json {
    let failed = status["runs"]
        .as_array()
        .and_then(|runs| {
            runs.iter().find(|r| {
                ![Outcome::Succeeded, Outcome::Running]
                    .iter()
                    .any(|o| r["outcome"] == o.as_str())
            })
        })
        .cloned();
    match failed {
        Some(run) => json!({
            "run": run,
            "providers": status["providers"],
            "suspended": status["suspended"],
        }),
        None => json!({
            "run": null,
            "note": format!("none of the last {RUNS_SEARCHED} runs failed"),
        }),
    }
}

impl LabServer {
    /// `prompts/get`: the question, and labctl's answer to it as JSON.
    pub(super) async fn prompt(
        &self,
        client: &Client,
        name: &str,
        given: Option<Map<String, Json>>,
    ) -> Result<GetPromptResult, ErrorData> {
        let def = find(name)
            .filter(|p| client.scopes.allows(p.scope))
            .ok_or_else(|| {
                let names: Vec<&str> = PROMPTS
                    .iter()
                    .filter(|p| client.scopes.allows(p.scope))
                    .map(|p| p.name)
                    .collect();
                ErrorData::invalid_params(
                    format!(
                        "no prompt `{}`; prompts: {}",
                        super::audit::prefix(name, 64),
                        names.join(", ")
                    ),
                    None,
                )
            })?;
        let args = arguments(def, given)?;
        let (call, text) = question(def, &args)?;
        let answer = match self.invoke(client, def.tool, call).await {
            Ok(value) if def.name == "last_failed_run" => last_failed(value),
            Ok(value) => value,
            // No model yet, an unknown name: the client's model should say so.
            Err(Invoked::Failed(e)) => json!({ "error": e.message }),
            Err(Invoked::Unknown(message)) => return Err(ErrorData::internal_error(message, None)),
        };
        let answer = serde_json::to_string_pretty(&answer).unwrap_or_default();
        let message = format!("{text}\n\n```json\n{answer}\n```");
        Ok(
            GetPromptResult::new(vec![PromptMessage::new_text(Role::User, message)])
                .with_description(def.description),
        )
    }

    /// `completion/complete` of a prompt argument: kinds, severities, periods, and the names
    /// of resources with open deviations (of the kind given, if one is).
    pub(super) async fn complete_prompt(
        &self,
        client: &Client,
        prompt: &str,
        argument: &ArgumentInfo,
        context: Option<&HashMap<String, String>>,
    ) -> CompleteResult {
        let known = find(prompt).filter(|p| client.scopes.allows(p.scope));
        let prefix = argument.value.to_ascii_lowercase();
        let candidates: Vec<String> = match (known.map(|p| p.name), argument.name.as_str()) {
            (Some(_), "kind") => DOC_KINDS.map(|k| k.as_str().to_string()).to_vec(),
            (Some(_), "min_severity") => Severity::ALL.map(|s| s.as_str().to_string()).to_vec(),
            (Some(_), "since") => ["1h", "24h", "7d", "30d"].map(String::from).to_vec(),
            (Some("explain_deviation"), "name") => {
                let kind = context.and_then(|c| c.get("kind")).map(String::as_str);
                let open = self
                    .store
                    .open_deviations(None, None)
                    .await
                    .unwrap_or_default();
                let mut names: Vec<String> = open
                    .into_iter()
                    .filter(|d| kind.is_none_or(|k| d.record.kind.eq_ignore_ascii_case(k)))
                    .map(|d| d.record.name)
                    .collect();
                names.sort();
                names.dedup();
                names
            }
            _ => Vec::new(),
        };
        let matching: Vec<String> = candidates
            .into_iter()
            .filter(|c| c.to_ascii_lowercase().starts_with(&prefix))
            .collect();
        completion(matching)
    }

    /// `completion/complete` of a resource template's `{name}`: the documents of its kind.
    pub(super) async fn complete_resource(
        &self,
        client: &Client,
        template: &str,
        argument: &ArgumentInfo,
    ) -> CompleteResult {
        let kind = template
            .strip_prefix(super::resources::SCHEME)
            .and_then(|rest| rest.strip_suffix("/{name}"))
            .and_then(|k| DOC_KINDS.into_iter().find(|x| x.as_str() == k));
        let (Some(kind), "name", true) = (
            kind,
            argument.name.as_str(),
            client.scopes.allows(Scope::Read),
        ) else {
            return completion(Vec::new());
        };
        let Ok(model) = self.model().await else {
            return completion(Vec::new());
        };
        let prefix = argument.value.to_ascii_lowercase();
        let names = model
            .lab
            .of_kind(kind)
            .filter(|e| e.in_git() && e.name.to_ascii_lowercase().starts_with(&prefix))
            .map(|e| e.name.clone())
            .collect();
        completion(names)
    }
}

/// At most the protocol's 100 values, with the total.
fn completion(matching: Vec<String>) -> CompleteResult {
    let total = matching.len();
    let values: Vec<String> = matching
        .into_iter()
        .take(CompletionInfo::MAX_VALUES)
        .collect();
    let mut info = CompletionInfo::new(values).unwrap_or_default();
    info.total = u32::try_from(total).ok();
    info.has_more = Some(total > CompletionInfo::MAX_VALUES);
    CompleteResult::new(info)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments_are_checked_before_any_tool_runs() {
        let def = find("drift_since").unwrap();
        let missing = arguments(def, None).unwrap_err();
        assert!(
            missing.message.contains("needs the argument `since`"),
            "{missing:?}"
        );
        let unknown = arguments(
            def,
            Some(json!({"sinse": "1d"}).as_object().cloned().unwrap()),
        )
        .unwrap_err();
        assert!(
            unknown.message.contains("no argument `sinse`"),
            "{unknown:?}"
        );
        let huge = "x".repeat(MAX_ARGUMENT_BYTES + 1);
        let long = arguments(
            def,
            Some(json!({"since": huge}).as_object().cloned().unwrap()),
        )
        .unwrap_err();
        assert!(!long.message.contains(&huge));
        let ok = arguments(
            def,
            Some(json!({"since": " 24h "}).as_object().cloned().unwrap()),
        )
        .unwrap();
        let (call, text) = question(def, &ok).unwrap();
        assert_eq!(call, json!({"since": "24h"}));
        assert!(text.contains("last 24h"));
        let place = find("place_new_vm").unwrap();
        let args = arguments(
            place,
            Some(
                json!({"cores": 4, "memory_mib": "8192", "dimensions": "gpu=true, ssd=true"})
                    .as_object()
                    .cloned()
                    .unwrap(),
            ),
        )
        .unwrap();
        let (call, _) = question(place, &args).unwrap();
        assert_eq!(
            call,
            json!({"cores": 4, "memoryMiB": 8192, "dimensions": ["gpu=true", "ssd=true"]})
        );
        let bad = arguments(
            place,
            Some(json!({"cores": "four"}).as_object().cloned().unwrap()),
        )
        .unwrap();
        assert!(question(place, &bad).is_err());
        // Every prompt's tool exists.
        let tools = super::super::tool_table(true, true);
        for p in PROMPTS {
            assert!(tools.iter().any(|t| t.tool.name == p.tool), "{}", p.name);
        }
    }

    #[test]
    fn the_last_failed_run_is_picked() {
        let status = json!({"runs": [
            {"id": 9, "outcome": "running"},
            {"id": 8, "outcome": "succeeded"},
            {"id": 7, "outcome": "partial"},
            {"id": 6, "outcome": "failed"}
        ], "providers": [], "suspended": []});
        assert_eq!(last_failed(status)["run"]["id"], 7);
        assert!(last_failed(json!({"runs": []}))["run"].is_null());
    }
}
