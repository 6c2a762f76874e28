//! Pieces every page is built from: the frame (head, navigation, who is looking), times in
//! UTC with their age, values and their line diffs, links with their parts escaped, paging.

use maud::{html, Markup, DOCTYPE};
use serde_json::Value as Json;
use similar::ChangeTag;

use super::auth::Viewer;
use crate::diff::FieldChange;
use crate::time::utc;

/// Which navigation entry is the page's own.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Nav {
    Overview,
    Drift,
    Runs,
    Pools,
    Trend,
    None,
}

/// A whole page: `title`, the navigation with `nav` marked, who is looking (and the logout
/// form when there is a session to end), then `body`.
pub fn page(title: &str, nav: Nav, viewer: Option<&Viewer>, body: Markup) -> Markup {
    let entries = [
        (Nav::Overview, "/", "Overview"),
        (Nav::Drift, "/drift", "Drift"),
        (Nav::Runs, "/runs", "Runs"),
        (Nav::Pools, "/pools", "Pools"),
        (Nav::Trend, "/trend", "Trend"),
    ];
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                meta name="color-scheme" content="light dark";
                title { (title) " · labctl" }
                link rel="stylesheet" href="/static/style.css";
            }
            body {
                header.top {
                    a.brand href="/" { "labctl" }
                    @if viewer.is_some() {
                        nav aria-label="Pages" {
                            ul {
                                @for (n, href, label) in entries {
                                    li {
                                        @if n == nav {
                                            a href=(href) aria-current="page" { (label) }
                                        } @else {
                                            a href=(href) { (label) }
                                        }
                                    }
                                }
                            }
                        }
                    }
                    @if let Some(v) = viewer {
                        div.who {
                            span { (v.name) }
                            @if let Some(csrf) = &v.csrf {
                                form method="post" action="/logout" {
                                    input type="hidden" name="csrf" value=(csrf);
                                    button type="submit" { "Log out" }
                                }
                            }
                        }
                    }
                }
                main { (body) }
            }
        }
    }
}

/// `<time>` in UTC with its age beside it: `2026-12-04 20:54:14Z (3 min ago)`.
pub fn when(ms: i64, now: i64) -> Markup {
    html! {
        time datetime=(crate::time::rfc3339(ms)) title=(utc(ms)) { (utc(ms)) }
        " "
        span.age { "(" (age(now - ms)) ")" }
    }
}

/// `12 s ago`, `3 min ago`, `5 h ago`, `2 d ago`; `in the future` for a clock that is behind.
pub fn age(ms: i64) -> String {
    if ms < 0 {
        return "in the future".into();
    }
    let s = ms / 1000;
    match s {
        0..=59 => format!("{s} s ago"),
        60..=3599 => format!("{} min ago", s / 60),
        3600..=86_399 => format!("{} h ago", s / 3600),
        _ => format!("{} d ago", s / 86_400),
    }
}

/// A duration for people: `840 ms`, `2.4 s`, `3 min 5 s`.
pub fn duration(ms: i64) -> String {
    match ms {
        i64::MIN..=999 => format!("{} ms", ms.max(0)),
        1000..=59_999 => format!("{:.1} s", ms as f64 / 1000.0),
        _ => format!("{} min {} s", ms / 60_000, ms % 60_000 / 1000),
    }
}

/// A field's live and Git values: on one line when both fit, else a line diff.
pub fn change(expected: Option<&Json>, actual: Option<&Json>) -> Markup {
    match FieldChange::of(expected, actual) {
        FieldChange::OneLine { live, git } => html! {
            span.values {
                span.label { "live " } code.live { (live) }
                " → "
                span.label { "Git " } code.git { (git) }
            }
        },
        FieldChange::Lines {
            live_absent,
            git_absent,
            lines,
        } => html! {
            div.values {
                span.label { "live" @if live_absent { " (absent)" } " → Git" @if git_absent { " (absent)" } }
                pre.linediff {
                    @for (tag, line) in &lines {
                        @match tag {
                            ChangeTag::Delete => { del { "- " (line) } "\n" }
                            ChangeTag::Insert => { ins { "+ " (line) } "\n" }
                            ChangeTag::Equal => { span { "  " (line) } "\n" }
                        }
                    }
                }
            }
        },
    }
}

/// A JSON value laid out for reading (`—` for none).
pub fn json_block(v: Option<&Json>) -> Markup {
    match v {
        None | Some(Json::Null) => html! { p.none { "—" } },
        Some(v) => html! { pre.json { (serde_json::to_string_pretty(v).unwrap_or_default()) } },
    }
}

/// The link to a resource's page.
pub fn resource_href(kind: &str, name: &str) -> String {
    format!("/resources/{}/{}", path_segment(kind), path_segment(name))
}

/// `s` as one URL path segment: every byte but the unreserved ones percent-encoded.
pub fn path_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `s` as a query parameter's value (the same escaping as a path segment).
pub fn query_value(s: &str) -> String {
    path_segment(s)
}

/// A status or severity as a badge whose class names it.
pub fn badge(text: &str) -> Markup {
    html! { span class={ "badge " (text) } { (text) } }
}

/// A short commit (12 digits) with the full one on hover.
pub fn commit(sha: Option<&str>) -> Markup {
    match sha {
        Some(s) => html! { code title=(s) { (s.chars().take(12).collect::<String>()) } },
        None => html! { span.none { "a directory" } },
    }
}

/// `used of capacity` as a bar, with the numbers beside it; over capacity is marked.
pub fn bar(label: &str, used: Option<u64>, capacity: Option<u64>, unit: &str) -> Markup {
    let used = used.unwrap_or(0);
    html! {
        div.bar {
            span.label { (label) }
            @match capacity {
                Some(cap) => {
                    meter min="0" max=(cap.max(1)) high=(cap.max(1) * 9 / 10) optimum="0" value=(used.min(cap.max(1))) {
                        (used) " of " (cap)
                    }
                    span class={ "amount" @if used > cap { " over" } } { (used) " / " (cap) " " (unit) }
                }
                None => { span.amount { (used) " " (unit) " (no capacity declared)" } }
            }
        }
    }
}

/// Paging links: previous and next, each only when there is such a page.
pub fn pager(prev: Option<String>, next: Option<String>) -> Markup {
    html! {
        @if prev.is_some() || next.is_some() {
            nav.pager aria-label="Pages of this list" {
                @if let Some(p) = prev { a rel="prev" href=(p) { "← Previous" } }
                @if let Some(n) = next { a rel="next" href=(n) { "Next →" } }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_durations_and_escapes_read_as_people_write_them() {
        assert_eq!(age(12_000), "12 s ago");
        assert_eq!(age(180_000), "3 min ago");
        assert_eq!(age(5 * 3_600_000), "5 h ago");
        assert_eq!(age(2 * 86_400_000), "2 d ago");
        assert_eq!(age(-5), "in the future");
        assert_eq!(duration(840), "840 ms");
        assert_eq!(duration(2_400), "2.4 s");
        assert_eq!(duration(185_000), "3 min 5 s");
        assert_eq!(
            resource_href("DhcpReservation", "a b/c?"),
            "/resources/DhcpReservation/a%20b%2Fc%3F"
        );
    }

    #[test]
    fn values_are_escaped_and_long_ones_diffed_by_line() {
        let short = change(Some(&Json::from("10.0.1.7")), Some(&Json::from("<b>"))).into_string();
        assert!(short.contains("&quot;&lt;b&gt;&quot;"), "{short}");
        let e = Json::from("a\nb\nc");
        let a = Json::from("a\nB\nc");
        let long = change(Some(&e), Some(&a)).into_string();
        assert!(
            long.contains("<del>- B</del>") && long.contains("<ins>+ b</ins>"),
            "{long}"
        );
    }
}
