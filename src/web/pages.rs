//! One handler per page: the question put to the store and the read model (through the same
//! functions MCP's tools answer with), then the page. Lists are paged, so a page costs the
//! same at 100 resources and at 100 000.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use maud::{html, Markup, PreEscaped};
use serde::Deserialize;

use super::render::{self, badge, change, commit, json_block, pager, resource_href, when, Nav};
use super::trend::{self, RunPoint};
use super::{ViewerExt, Web};
use crate::mcp::model::Model;
use crate::mcp::page::cursor;
use crate::mcp::tools;
use crate::mcp::types::{ListMcpServersInput, ListPoolsInput, McpServerInfo};
use crate::mcp::ToolError;
use crate::model::Kind;
use crate::readmodel::Status;
use crate::store::{deviation_key, Deviation, Outcome, ProviderRecord, Run, Severity};
use crate::time::now_ms;

/// Items on one page of a list.
const PAGE: usize = 50;
/// Life cycles a resource's timeline shows, newest first.
const HISTORY: usize = 100;
/// Pool fields a pool row shows.
const POOL_FIELDS: [&str; 8] = [
    "name",
    "path",
    "type",
    "parent",
    "capacity",
    "usage",
    "status",
    "overCapacity",
];

/// A page that could not be made: said on a page of its own, with the status it deserves.
pub struct PageError {
    status: StatusCode,
    message: String,
}

impl PageError {
    fn not_found(message: impl Into<String>) -> Self {
        PageError {
            status: StatusCode::NOT_FOUND,
            message: message.into(),
        }
    }
}

impl From<ToolError> for PageError {
    fn from(e: ToolError) -> Self {
        PageError {
            status: StatusCode::SERVICE_UNAVAILABLE,
            message: e.message,
        }
    }
}

impl From<crate::store::StoreError> for PageError {
    fn from(e: crate::store::StoreError) -> Self {
        ToolError::from(e).into()
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        let title = if self.status == StatusCode::NOT_FOUND {
            "Not found"
        } else {
            "Not available"
        };
        let body = html! {
            h1 { (title) }
            p.error { (self.message) }
            p { a href="/" { "Back to the overview" } }
        };
        (self.status, render::page(title, Nav::None, None, body)).into_response()
    }
}

type PageResult = Result<Markup, PageError>;

/// The login form; `next` is where a successful login goes.
pub fn login(csrf: &str, next: &str, error: Option<&str>, has_tokens: bool) -> Markup {
    let body = html! {
        section.login {
            h1 { "Log in" }
            p { "Give one of labctl's MCP tokens (any scope). It is exchanged once for a session cookie; the token is not kept in the browser." }
            @if let Some(e) = error { p.error role="alert" { (e) } }
            @if !has_tokens {
                p.error { "This server has no tokens to log in with: give it a tokens file (--tokens), or a trusted proxy's user header." }
            }
            form method="post" action="/login" {
                input type="hidden" name="csrf" value=(csrf);
                input type="hidden" name="next" value=(next);
                label for="token" { "Token" }
                input #token type="password" name="token" autocomplete="current-password" required autofocus;
                button type="submit" { "Log in" }
            }
        }
    };
    render::page("Log in", Nav::None, None, body)
}

/// The latest model, or a page saying there is none yet.
async fn model(web: &Web) -> Result<Arc<Model>, PageError> {
    Ok(web.server.model().await?)
}

fn basis(m: &Model, now: i64) -> Markup {
    html! {
        p.basis {
            "As of run " a href={ "/runs/" (m.run) } { (m.run) } " of commit " (commit(m.commit.as_deref()))
            ", observed " (when(m.finished_at, now)) "."
        }
    }
}

fn outcome_badge(o: Outcome) -> Markup {
    badge(o.as_str())
}

fn took(run: &Run) -> String {
    run.finished_at
        .map(|f| render::duration(f - run.started_at))
        .unwrap_or_else(|| "running".into())
}

/// Why a run ran, in words: its recorded reason, or the trigger label of older runs.
fn reason(run: &Run) -> String {
    let Some(r) = &run.reason else {
        return run.trigger.clone();
    };
    let text = |k: &str| r.get(k).and_then(|v| v.as_str());
    let mut out = text("type").unwrap_or(&run.trigger).to_string();
    for key in ["via", "by", "source", "commit", "from", "to"] {
        if let Some(v) = text(key) {
            out.push_str(&format!(", {key} {v}"));
        }
    }
    out
}

pub async fn overview(
    State(web): State<Arc<Web>>,
    axum::Extension(viewer): ViewerExt,
) -> PageResult {
    let now = now_ms();
    let store = web.server.store();
    let latest = store.latest_run().await?;
    let m = match web.server.model().await {
        Ok(m) => m,
        Err(e) => {
            let body = html! {
                h1 { "Overview" }
                p.error { (e.message) }
                @if let Some(r) = &latest { (last_run(r, now)) }
            };
            return Ok(render::page("Overview", Nav::Overview, Some(&viewer), body));
        }
    };
    let open = web.server.open_deviations().await?;
    let summary = tools::infrastructure_summary(store, &m, &open).await?;
    let prs = store.open_pull_requests().await?;
    // The latest finished run says how each provider's observation went; the snapshots say
    // when one that is down last answered.
    let providers_run = latest
        .as_ref()
        .filter(|r| r.finished_at.is_some())
        .map_or(m.run, |r| r.id);
    let providers = store.run_providers(providers_run).await?;
    let mut answered = BTreeMap::new();
    for s in store.list_snapshots(None, 200).await? {
        answered.entry(s.provider.clone()).or_insert(s);
    }
    let newer_failed = latest
        .as_ref()
        .filter(|r| r.id > m.run && r.outcome == Outcome::Failed);
    let (servers, up, troubled) = mcp_servers(&m)?;
    let statuses = [
        Status::Synced,
        Status::OutOfSync,
        Status::Unknown,
        Status::Unobserved,
    ];
    let severities = [
        ("critical", summary.open_deviations.critical),
        ("high", summary.open_deviations.high),
        ("medium", summary.open_deviations.medium),
        ("low", summary.open_deviations.low),
    ];
    let body = html! {
        h1 { "Overview" }
        section.summary aria-label="In force" {
            p.inforce {
                "In force: commit " (commit(m.commit.as_deref())) ", reconciled by run "
                a href={ "/runs/" (m.run) } { (m.run) } " " (when(m.finished_at, now)) "."
            }
            @if let Some(f) = newer_failed {
                p.error role="alert" {
                    "A newer run failed: " a href={ "/runs/" (f.id) } { "run " (f.id) }
                    " of commit " (commit(f.commit_sha.as_deref()))
                    @if let Some(e) = &f.error { ": " (e) }
                }
            }
            @if let Some(r) = &latest { (last_run(r, now)) }
        }
        section aria-labelledby="devs" {
            h2 #devs { "Open deviations: " (summary.open_deviations.total) }
            ul.counts {
                @for (sev, n) in severities {
                    li { a href={ "/drift?severity=" (sev) } { (badge(sev)) " " strong { (n) } } }
                }
            }
        }
        section aria-labelledby="kinds" {
            h2 #kinds { "Resources: " (summary.resources) }
            div.scroll {
                table {
                    thead { tr { th scope="col" { "Kind" } th scope="col" { "Total" }
                        @for s in statuses { th scope="col" { (s.as_str()) } } } }
                    tbody {
                        @for (kind, count) in &summary.by_kind {
                            tr {
                                th scope="row" { a href={ "/drift?kind=" (kind) } { (kind) } }
                                td.num { (count.total) }
                                @for s in statuses {
                                    td.num { (count.by_status.get(s.as_str()).copied().unwrap_or(0)) }
                                }
                            }
                        }
                    }
                }
            }
        }
        section aria-labelledby="providers" {
            h2 #providers { "Providers" }
            @if providers.is_empty() { p.none { "Run " (providers_run) " recorded no provider." } }
            ul.providers {
                @for p in &providers {
                    li {
                        (provider_state(p)) " " strong { (p.provider) } " "
                        @if p.asked { (render::duration(p.observe_ms)) }
                        @if let Some(e) = &p.error { " — " span.error { (e) } }
                        @if !p.answered {
                            @match answered.get(&p.provider) {
                                Some(s) => { "; last answered in run " a href={ "/runs/" (s.last_run) } { (s.last_run) } ", " (when(s.last_seen_at, now)) }
                                None => { "; has never answered" }
                            }
                        }
                    }
                }
            }
        }
        section aria-labelledby="prs" {
            h2 #prs { "Open pull requests: " (prs.len()) }
            @if !prs.is_empty() {
                ul {
                    @for pr in prs.iter().take(20) {
                        li {
                            @match &pr.url {
                                Some(u) => { a href=(u) rel="noopener" { (pr.summary()) } }
                                None => { (pr.summary()) }
                            }
                            " — " code { (pr.branch) } ", " (pr.deviation_keys.len()) " deviation(s)"
                        }
                    }
                }
            }
        }
        section aria-labelledby="mcp" {
            h2 #mcp { "MCP servers: " (up) " of " (servers) " up" }
            @if servers == 0 { p.none { "None registered in Git." } }
            @if !troubled.is_empty() {
                ul {
                    @for s in troubled {
                        li {
                            a href=(resource_href("McpServer", &s.name)) { (s.name) } " "
                            @if s.reachable == Some(false) { (badge("down")) }
                            " offers " (s.offered_tools.as_ref().map_or(0, Vec::len))
                            " of " (s.expected_tools.as_ref().map_or(0, Vec::len)) " expected tools"
                            @if let Some(missing) = s.missing_tools.as_ref().filter(|t| !t.is_empty()) {
                                "; missing: " (missing.join(", "))
                            }
                        }
                    }
                }
            }
        }
        (basis(&m, now))
    };
    Ok(render::page("Overview", Nav::Overview, Some(&viewer), body))
}

/// `up`, `down`, or `resting` (not asked, after failures).
fn provider_state(p: &ProviderRecord) -> Markup {
    badge(match (p.asked, p.answered) {
        (_, true) => "up",
        (true, false) => "down",
        (false, false) => "resting",
    })
}

/// MCP servers: how many, how many answered, and at most 10 that need a look (those that
/// did not answer first, then those that answered without every expected tool, among the
/// first 500 that answered). Each count is a list's total, whatever the number of servers.
fn mcp_servers(m: &Model) -> Result<(u64, u64, Vec<McpServerInfo>), ToolError> {
    let list = |reachable: Option<bool>, limit: u32| {
        tools::list_mcp_servers(
            m,
            ListMcpServersInput {
                reachable,
                fields: Some(
                    [
                        "name",
                        "reachable",
                        "expectedTools",
                        "offeredTools",
                        "missingTools",
                    ]
                    .map(String::from)
                    .to_vec(),
                ),
                limit: Some(limit),
                ..Default::default()
            },
        )
        .map(|o| o.page)
    };
    let all = list(None, 1)?.total;
    let down = list(Some(false), 10)?;
    let up = list(Some(true), 500)?;
    let mut troubled = down.items;
    troubled.extend(
        up.items
            .into_iter()
            .filter(|s| s.missing_tools.as_ref().is_some_and(|t| !t.is_empty()))
            .take(10 - troubled.len()),
    );
    // A server no provider asked is neither: it is in the count of all only.
    Ok((all, up.total, troubled))
}

fn last_run(r: &Run, now: i64) -> Markup {
    html! {
        p.lastrun {
            "Last run: " a href={ "/runs/" (r.id) } { "run " (r.id) } " "
            (outcome_badge(r.outcome)) ", " (when(r.started_at, now))
            ", because " (reason(r)) ", took " (took(r)) "."
        }
    }
}

#[derive(Deserialize, Default)]
pub struct DriftQuery {
    kind: Option<String>,
    severity: Option<String>,
    page: Option<usize>,
}

pub async fn drift(
    State(web): State<Arc<Web>>,
    axum::Extension(viewer): ViewerExt,
    Query(q): Query<DriftQuery>,
) -> PageResult {
    let now = now_ms();
    let m = model(&web).await?;
    let open = web.server.open_deviations().await?;
    let kind = q
        .kind
        .as_deref()
        .filter(|k| !k.is_empty())
        .and_then(Kind::parse);
    let min = q
        .severity
        .as_deref()
        .filter(|s| !s.is_empty())
        .and_then(Severity::parse);
    let matching: Vec<&Deviation> = open
        .iter()
        .filter(|d| kind.is_none_or(|k| d.record.kind == k.as_str()))
        .filter(|d| min.is_none_or(|s| d.record.severity >= s))
        .collect();
    let page = q
        .page
        .unwrap_or(1)
        .clamp(1, matching.len().div_ceil(PAGE).max(1));
    let shown: Vec<&Deviation> = matching
        .iter()
        .skip((page - 1) * PAGE)
        .take(PAGE)
        .copied()
        .collect();
    let prs = if shown.is_empty() {
        Default::default()
    } else {
        web.server.store().open_pull_requests_by_deviation().await?
    };
    let link = |p: usize| {
        let mut href = format!("/drift?page={p}");
        if let Some(k) = kind {
            href.push_str(&format!("&kind={}", k.as_str()));
        }
        if let Some(s) = min {
            href.push_str(&format!("&severity={}", s.as_str()));
        }
        href
    };
    let prev = (page > 1).then(|| link(page - 1));
    let next = (page * PAGE < matching.len()).then(|| link(page + 1));
    let kinds = tools::KINDS;
    let body = html! {
        h1 { "Drift" }
        form.filters method="get" action="/drift" {
            label { "Kind "
                select name="kind" {
                    option value="" { "any" }
                    @for k in kinds { option value=(k.as_str()) selected[kind == Some(k)] { (k.as_str()) } }
                }
            }
            label { "At least "
                select name="severity" {
                    option value="" { "any severity" }
                    @for s in ["low", "medium", "high", "critical"] {
                        option value=(s) selected[min.map(|m| m.as_str()) == Some(s)] { (s) }
                    }
                }
            }
            button type="submit" { "Filter" }
        }
        p.count { (matching.len()) " open deviation(s), worst first"
            @if matching.len() > PAGE { "; page " (page) " of " (matching.len().div_ceil(PAGE)) } "." }
        @if shown.is_empty() { p.none { "Nothing has drifted: the live lab matches Git." } }
        ol.deviations start=((page - 1) * PAGE + 1) {
            @for d in &shown {
                @let r = &d.record;
                li.deviation {
                    div.head {
                        (badge(r.severity.as_str())) " "
                        a.resource href=(resource_href(&r.kind, &r.name)) { (r.kind) "/" (r.name) }
                        " " span.dtype { (r.dtype.as_str()) }
                        @if !r.field_path.is_empty() { " " code.field { (r.field_path) } }
                    }
                    (change(r.expected.as_ref(), r.actual.as_ref()))
                    p.meta {
                        "First seen " (when(d.opened_at, now)) ", seen by " (d.seen_count) " run(s). "
                        a href={ (resource_href(&r.kind, &r.name)) "#history" } { "History" }
                    }
                    @if let Some(rem) = &r.remediation { p.remediation { (rem) } }
                    @if let Some(pr) = prs.get(&deviation_key(&r.kind, &r.name, &r.field_path)) {
                        p.pr { "Proposed in "
                            @match &pr.url { Some(u) => { a href=(u) rel="noopener" { (pr.summary()) } } None => { (pr.summary()) } }
                        }
                    }
                }
            }
        }
        (pager(prev, next))
        (basis(&m, now))
    };
    Ok(render::page("Drift", Nav::Drift, Some(&viewer), body))
}

pub async fn resource(
    State(web): State<Arc<Web>>,
    axum::Extension(viewer): ViewerExt,
    Path((kind, name)): Path<(String, String)>,
) -> PageResult {
    let now = now_ms();
    let Some(k) = Kind::parse(&kind) else {
        return Err(PageError::not_found(format!(
            "`{kind}` is not a kind of resource"
        )));
    };
    let m = model(&web).await?;
    let store = web.server.store();
    let entry = m.lab.find(k, &name);
    let name = entry.map_or(name.clone(), |e| e.name.clone());
    let history = store.resource_history(k.as_str(), &name).await?;
    if entry.is_none() && history.is_empty() {
        return Err(PageError::not_found(format!(
            "{}/{name} is neither in the latest model nor in the deviation history",
            k.as_str()
        )));
    }
    let changes = store.resource_changes(k.as_str(), &name).await?;
    let title = format!("{}/{name}", k.as_str());
    let body = html! {
        h1 { (title) }
        @match entry {
            Some(e) => {
                p { "Status " (badge(e.status.as_str())) ", " (e.deviations) " deviation(s)"
                    @if !e.providers.is_empty() { "; observed by " (e.providers.join(", ")) } "." }
                div.sidebyside {
                    section { h2 { "Desired (Git)" } (json_block(e.desired.as_ref().or(e.spec.as_ref()))) }
                    section { h2 { "Observed (live)" } (json_block(e.observed.as_ref())) }
                }
            }
            None => { p.none { "Not in the latest model (removed from Git and from the lab)." } }
        }
        section aria-labelledby="history" {
            h2 #history { "Deviation history" }
            @if history.is_empty() { p.none { "Never deviated." } }
            ol.timeline reversed {
                @for d in history.iter().rev().take(HISTORY) {
                    li class={ @if d.is_open() { "open" } @else { "resolved" } } {
                        div.head {
                            (badge(d.record.severity.as_str())) " " span.dtype { (d.record.dtype.as_str()) }
                            @if !d.record.field_path.is_empty() { " " code.field { (d.record.field_path) } }
                            @if d.is_open() { " " (badge("open")) }
                        }
                        (change(d.record.expected.as_ref(), d.record.actual.as_ref()))
                        p.meta {
                            "Opened " (when(d.opened_at, now)) " by " a href={ "/runs/" (d.opened_run) } { "run " (d.opened_run) }
                            @if let (Some(at), Some(run)) = (d.resolved_at, d.resolved_run) {
                                "; resolved " (when(at, now)) " by " a href={ "/runs/" (run) } { "run " (run) }
                            }
                            "; seen " (d.seen_count) " time(s)."
                        }
                    }
                }
            }
        }
        @if history.len() > HISTORY { p.none { "… and " (history.len() - HISTORY) " older." } }
        @if !changes.is_empty() {
            section aria-labelledby="changes" {
                h2 #changes { "Changes labctl made" }
                (changes_table(&changes[changes.len().saturating_sub(HISTORY)..], now))
                @if changes.len() > HISTORY { p.none { "The latest " (HISTORY) " of " (changes.len()) "." } }
            }
        }
        (basis(&m, now))
    };
    Ok(render::page(&title, Nav::None, Some(&viewer), body))
}

fn changes_table(changes: &[crate::store::AppliedChange], now: i64) -> Markup {
    html! {
        div.scroll {
            table {
                thead { tr { th { "Run" } th { "When" } th { "Provider" } th { "Action" } th { "Resource" } th { "Result" } } }
                tbody {
                    @for c in changes {
                        tr {
                            td { a href={ "/runs/" (c.run) } { (c.run) } }
                            td { (when(c.at, now)) }
                            td { (c.change.provider) }
                            td { (c.change.action.as_str()) }
                            td { a href=(resource_href(&c.change.kind, &c.change.name)) { (c.change.kind) "/" (c.change.name) } }
                            td { (badge(c.change.result.as_str()))
                                @if let Some(e) = &c.change.error { " " span.error { (e) } } }
                        }
                    }
                }
            }
        }
    }
}

#[derive(Deserialize, Default)]
pub struct RunsQuery {
    before: Option<i64>,
}

pub async fn runs(
    State(web): State<Arc<Web>>,
    axum::Extension(viewer): ViewerExt,
    Query(q): Query<RunsQuery>,
) -> PageResult {
    let now = now_ms();
    let mut runs = web
        .server
        .store()
        .runs_before(q.before, PAGE as u32 + 1)
        .await?;
    let next = (runs.len() > PAGE).then(|| {
        runs.truncate(PAGE);
        format!("/runs?before={}", runs[PAGE - 1].id)
    });
    let prev = q.before.map(|_| "/runs".to_string());
    let body = html! {
        h1 { "Runs" }
        @if runs.is_empty() { p.none { "No run recorded yet." } }
        div.scroll {
            table.runs {
                thead { tr { th { "Run" } th { "Started" } th { "Why" } th { "Outcome" } th { "Took" } th { "Commit" } th.num { "Resources" } th.num { "Open" } th.num { "Opened" } th.num { "Resolved" } } }
                tbody {
                    @for r in &runs {
                        tr {
                            td { a href={ "/runs/" (r.id) } { (r.id) } }
                            td { (when(r.started_at, now)) }
                            td { (reason(r)) }
                            td { (outcome_badge(r.outcome)) }
                            td { (took(r)) }
                            td { (commit(r.commit_sha.as_deref())) }
                            td.num { (r.resources) }
                            td.num { (r.counts.deviations_open) }
                            td.num { (r.counts.deviations_opened) }
                            td.num { (r.counts.deviations_resolved) }
                        }
                    }
                }
            }
        }
        (pager(prev, next))
    };
    Ok(render::page("Runs", Nav::Runs, Some(&viewer), body))
}

pub async fn run(
    State(web): State<Arc<Web>>,
    axum::Extension(viewer): ViewerExt,
    Path(id): Path<i64>,
) -> PageResult {
    let now = now_ms();
    let store = web.server.store();
    let Some(r) = store.run_by_id(id).await? else {
        return Err(PageError::not_found(format!(
            "run {id} is not in the store (retention may have removed it)"
        )));
    };
    let changes = store.run_changes(id).await?;
    let providers = store.run_providers(id).await?;
    let deviations = store.run_deviations(id).await?;
    let (opened, resolved): (Vec<&Deviation>, Vec<&Deviation>) =
        deviations.iter().partition(|d| d.opened_run == id);
    let title = format!("Run {id}");
    let body = html! {
        h1 { (title) " " (outcome_badge(r.outcome)) }
        dl.facts {
            dt { "Why" } dd { (reason(&r)) }
            dt { "Started" } dd { (when(r.started_at, now)) }
            dt { "Took" } dd { (took(&r)) }
            dt { "Commit" } dd { (commit(r.commit_sha.as_deref())) }
            dt { "Controller" } dd { (r.controller) }
            dt { "Resources" } dd { (r.resources) }
            dt { "Deviations" } dd { (r.counts.deviations_open) " open after it, " (r.counts.deviations_opened) " opened, " (r.counts.deviations_resolved) " resolved" }
        }
        @if let Some(e) = &r.error { p.error { (e) } }
        @if let Some(reason) = &r.reason {
            details { summary { "Reason as recorded" } (json_block(Some(reason))) }
        }
        section aria-labelledby="providers" {
            h2 #providers { "Providers" }
            @if providers.is_empty() { p.none { "None recorded (the run observed nothing, or it predates these records)." } }
            @else {
                div.scroll {
                    table {
                        thead { tr { th { "Provider" } th { "State" } th.num { "Observe" } th { "Error" } } }
                        tbody {
                            @for p in &providers {
                                tr {
                                    td { (p.provider) }
                                    td { (provider_state(p)) }
                                    td.num { @if p.asked { (render::duration(p.observe_ms)) } @else { "—" } }
                                    td { @if let Some(e) = &p.error { span.error { (e) } } }
                                }
                            }
                        }
                    }
                }
            }
        }
        section aria-labelledby="plan" {
            h2 #plan { "Changes it made" }
            @if changes.is_empty() { p.none { "None." } } @else { (changes_table(&changes, now)) }
        }
        section aria-labelledby="opened" {
            h2 #opened { "Deviations it opened: " (opened.len()) }
            (deviation_list(&opened))
        }
        section aria-labelledby="resolved" {
            h2 #resolved { "Deviations it resolved: " (resolved.len()) }
            (deviation_list(&resolved))
        }
        p { a href={ "/runs?before=" (id + 1) } { "Runs up to this one" } }
    };
    Ok(render::page(&title, Nav::Runs, Some(&viewer), body))
}

fn deviation_list(list: &[&Deviation]) -> Markup {
    html! {
        @if !list.is_empty() {
            ul.deviations {
                @for d in list.iter().take(200) {
                    @let r = &d.record;
                    li {
                        (badge(r.severity.as_str())) " "
                        a href=(resource_href(&r.kind, &r.name)) { (r.kind) "/" (r.name) }
                        " " span.dtype { (r.dtype.as_str()) }
                        @if !r.field_path.is_empty() { " " code.field { (r.field_path) } }
                    }
                }
            }
            @if list.len() > 200 { p.none { "… and " (list.len() - 200) " more." } }
        }
    }
}

pub async fn trend(State(web): State<Arc<Web>>, axum::Extension(viewer): ViewerExt) -> PageResult {
    let now = now_ms();
    let points: Vec<RunPoint> = web
        .server
        .store()
        .run_points(now - trend::DAYS * 86_400_000)
        .await?
        .into_iter()
        .map(|(started_at, finished_at, deviations_open)| RunPoint {
            started_at,
            finished_at,
            deviations_open,
        })
        .collect();
    let hours = trend::hourly(&points, now);
    let open: Vec<(i64, Option<f64>)> = hours
        .iter()
        .map(|(t, v)| (*t, v.map(|(open, _)| open as f64)))
        .collect();
    let took: Vec<(i64, Option<f64>)> = hours
        .iter()
        .map(|(t, v)| (*t, v.map(|(_, ms)| ms as f64 / 1000.0)))
        .collect();
    let finished: Vec<&RunPoint> = points.iter().filter(|p| p.finished_at.is_some()).collect();
    let mut durations: Vec<i64> = finished
        .iter()
        .filter_map(|p| p.finished_at.map(|f| f - p.started_at))
        .collect();
    durations.sort_unstable();
    let body = html! {
        h1 { "Trend" }
        p.count {
            (points.len()) " run(s) in the last " (trend::DAYS) " days"
            @if let Some(median) = durations.get(durations.len() / 2) {
                "; median run " (render::duration(*median)) ", slowest " (render::duration(*durations.last().unwrap_or(median)))
            }
            @if let Some(last) = finished.last() { "; " (last.deviations_open) " deviation(s) open now" }
            "."
        }
        figure.chart {
            (PreEscaped(trend::chart("Open deviations", "open", &open, now)))
            figcaption { "Open deviations after the last run of each hour." }
        }
        figure.chart {
            (PreEscaped(trend::chart("Run duration", "seconds", &took, now)))
            figcaption { "The slowest run of each hour, in seconds." }
        }
    };
    Ok(render::page("Trend", Nav::Trend, Some(&viewer), body))
}

#[derive(Deserialize, Default)]
pub struct PoolsQuery {
    page: Option<usize>,
}

pub async fn pools(
    State(web): State<Arc<Web>>,
    axum::Extension(viewer): ViewerExt,
    Query(q): Query<PoolsQuery>,
) -> PageResult {
    let now = now_ms();
    let m = model(&web).await?;
    let page = q
        .page
        .unwrap_or(1)
        .clamp(1, m.lab.pools().iter().count().div_ceil(PAGE).max(1));
    let list = tools::list_pools(
        &m,
        ListPoolsInput {
            fields: Some(POOL_FIELDS.map(String::from).to_vec()),
            limit: Some(PAGE as u32),
            cursor: (page > 1).then(|| cursor(&m.tag, (page - 1) * PAGE)),
            ..Default::default()
        },
    )?;
    let total = list.page.total as usize;
    let prev = (page > 1).then(|| format!("/pools?page={}", page - 1));
    let next = list
        .page
        .next_cursor
        .as_ref()
        .map(|_| format!("/pools?page={}", page + 1));
    let body = html! {
        h1 { "Pools" }
        p.count { (total) " pool(s), as a tree by path" @if total > PAGE { "; page " (page) " of " (total.div_ceil(PAGE)) } "." }
        ul.pooltree {
            @for p in &list.page.items {
                @let path = p.path.clone().unwrap_or_default();
                @let depth = path.matches('/').count().saturating_sub(1).min(12);
                @let resolved = m.lab.resolve_pool(&path);
                @let dims = resolved.map(|r| m.lab.settings(r, "dimensions")).unwrap_or_default();
                @let cap = p.capacity.clone().unwrap_or_default();
                @let used = p.usage.clone().unwrap_or_default();
                li class={ "pool depth-" (depth) } {
                    div.head {
                        a href=(resource_href("Pool", &p.name)) { strong { (p.name) } }
                        " " code { (path) }
                        @if let Some(t) = &p.pool_type { " " span.dtype { (t) } }
                        @if let Some(s) = &p.status { " " (badge(s)) }
                    }
                    div.bars {
                        (render::bar("cores", used.cores, cap.cores, "cores"))
                        (render::bar("memory", used.memory_mib, cap.memory_mib, "MiB"))
                        (render::bar("devices", used.devices, cap.devices, "devices"))
                    }
                    @if !dims.is_empty() {
                        ul.dims {
                            @for (k, s) in &dims {
                                li { code { (k) "=" (s.value) }
                                    @if s.inherited { " " span.from { "from " (s.from) } } }
                            }
                        }
                    }
                }
            }
        }
        (pager(prev, next))
        (basis(&m, now))
    };
    Ok(render::page("Pools", Nav::Pools, Some(&viewer), body))
}
