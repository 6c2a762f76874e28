//! A plan for people, in the shape Terraform users know: `+` missing (will be created),
//! `-` unmanaged, `~` drifted per field, `?` unknown.

use std::fmt::Write;

use serde_json::Value as Json;
use similar::{ChangeTag, TextDiff};

use super::{DeviationType, Plan};

#[derive(Debug, Clone, Copy, Default)]
pub struct RenderOptions {
    /// ANSI colour (only for a terminal).
    pub color: bool,
}

struct Paint {
    on: bool,
}

impl Paint {
    fn wrap(&self, code: &str, text: &str) -> String {
        if self.on {
            format!("\x1b[{code}m{text}\x1b[0m")
        } else {
            text.to_string()
        }
    }
    fn green(&self, t: &str) -> String {
        self.wrap("32", t)
    }
    fn red(&self, t: &str) -> String {
        self.wrap("31", t)
    }
    fn yellow(&self, t: &str) -> String {
        self.wrap("33", t)
    }
    fn dim(&self, t: &str) -> String {
        self.wrap("2", t)
    }
}

/// Renders `plan` as text.
pub fn render_human(plan: &Plan, opts: RenderOptions) -> String {
    let p = Paint { on: opts.color };
    let mut out = String::new();
    let mut current: Option<(String, String)> = None;
    for d in &plan.deviations {
        let resource = format!("{}/{}", d.kind, d.name);
        let tags = format!(
            "({}, {}{})",
            d.dtype.as_str(),
            d.severity.as_str(),
            if d.suspended { ", suspended" } else { "" }
        );
        match d.dtype {
            DeviationType::Missing => {
                let _ = writeln!(
                    out,
                    "{} {resource} is in Git but not live {}",
                    p.green("  +"),
                    p.dim(&tags)
                );
                let _ = writeln!(out, "      {}", p.dim(&d.remediation));
            }
            DeviationType::Unmanaged => {
                let _ = writeln!(
                    out,
                    "{} {resource} is live but not in Git {}",
                    p.red("  -"),
                    p.dim(&tags)
                );
                let _ = writeln!(out, "      {}", p.dim(&d.remediation));
            }
            // Listed once per provider below, with the reason.
            DeviationType::Unknown if plan.unobservable.contains_key(&d.provider) => continue,
            DeviationType::Unknown => {
                let what = if d.field_path.is_empty() {
                    resource.clone()
                } else {
                    format!("{resource} {}", d.field_path)
                };
                let _ = writeln!(out, "  ? {what} is unknown {}", p.dim(&tags));
                let _ = writeln!(out, "      {}", p.dim(&d.remediation));
            }
            DeviationType::Drifted => {
                let key = (resource.clone(), d.provider.clone());
                if current.as_ref() != Some(&key) {
                    let _ = writeln!(
                        out,
                        "{} {resource} has drifted {}",
                        p.yellow("  ~"),
                        p.dim(&format!("({})", d.remediation))
                    );
                    current = Some(key);
                }
                let _ = write!(out, "      {} {}: ", p.yellow("~"), d.field_path);
                field_change(&mut out, d.expected.as_ref(), d.actual.as_ref(), &p);
                let _ = writeln!(out, " {}", p.dim(&format!("({})", d.severity.as_str())));
                continue;
            }
        }
        current = None;
    }
    for i in &plan.ignored {
        let _ = writeln!(
            out,
            "  {} {}/{} {}: {}",
            p.dim("ignored"),
            i.kind,
            i.name,
            i.field_path,
            i.reason
        );
    }
    for (provider, why) in &plan.unobservable {
        let names: Vec<String> = plan
            .deviations
            .iter()
            .filter(|d| d.dtype == DeviationType::Unknown && &d.provider == provider)
            .map(|d| format!("{}/{}", d.kind, d.name))
            .collect();
        let _ = writeln!(out, "  ? provider {provider} could not be observed: {why}");
        if !names.is_empty() {
            let _ = writeln!(
                out,
                "      unknown, nothing concluded or changed: {}",
                names.join(", ")
            );
        }
    }
    for (provider, why) in &plan.held {
        let _ = writeln!(out, "  ! changes to {provider} held back: {why}");
    }
    let changes: usize = plan.changes.values().map(Vec::len).sum();
    let _ = writeln!(
        out,
        "\nPlan: {} missing, {} unmanaged, {} drifted, {} unknown; {changes} change(s) under policy apply.",
        plan.count(DeviationType::Missing),
        plan.count(DeviationType::Unmanaged),
        plan.deviations.iter().filter(|d| d.dtype == DeviationType::Drifted).map(|d| (d.kind, &d.name)).collect::<std::collections::BTreeSet<_>>().len(),
        plan.count(DeviationType::Unknown),
    );
    if plan.deviations.is_empty() {
        out = "No drift: the live lab matches Git.\n".to_string() + &out;
    }
    out
}

/// How a field's live and Git values are shown to a person: the plan's text and the status
/// pages' drift say it the same way.
pub enum FieldChange {
    /// Both fit on a line: `live X → Git Y` (an absent side reads `(absent)`).
    OneLine { live: String, git: String },
    /// A line diff from live to Git; each side says whether it is absent rather than showing
    /// as an empty side of the diff.
    Lines {
        live_absent: bool,
        git_absent: bool,
        /// Lines without their line break: deleted (live only), inserted (Git only), equal.
        lines: Vec<(ChangeTag, String)>,
    },
}

impl FieldChange {
    pub fn of(expected: Option<&Json>, actual: Option<&Json>) -> FieldChange {
        if let (Some(git), Some(live)) = (one_line(expected), one_line(actual)) {
            return FieldChange::OneLine { live, git };
        }
        let (e, a) = (multiline(expected), multiline(actual));
        let lines = TextDiff::from_lines(&a, &e)
            .iter_all_changes()
            .map(|c| (c.tag(), c.value().trim_end_matches('\n').to_string()))
            .collect();
        FieldChange::Lines {
            live_absent: is_absent(actual),
            git_absent: is_absent(expected),
            lines,
        }
    }
}

/// `live X → Git Y` on one line when both fit, or a line diff for long or multi-line values.
fn field_change(out: &mut String, expected: Option<&Json>, actual: Option<&Json>, p: &Paint) {
    let (live_absent, git_absent, lines) = match FieldChange::of(expected, actual) {
        FieldChange::OneLine { live, git } => {
            let _ = write!(out, "live {} → Git {}", p.red(&live), p.green(&git));
            return;
        }
        FieldChange::Lines {
            live_absent,
            git_absent,
            lines,
        } => (live_absent, git_absent, lines),
    };
    let absent = |a: bool| if a { " (absent)" } else { "" };
    let _ = writeln!(
        out,
        "live{} → Git{}",
        absent(live_absent),
        absent(git_absent)
    );
    for (tag, line) in lines {
        let _ = match tag {
            ChangeTag::Delete => writeln!(out, "          {}", p.red(&format!("- {line}"))),
            ChangeTag::Insert => writeln!(out, "          {}", p.green(&format!("+ {line}"))),
            ChangeTag::Equal => writeln!(out, "            {line}"),
        };
    }
    out.pop();
}

/// Longest value shown on the line of its field.
const ONE_LINE: usize = 80;

fn is_absent(v: Option<&Json>) -> bool {
    matches!(v, None | Some(Json::Null))
}

/// `v` as it reads on one line, unless it is too long or holds a line break.
fn one_line(v: Option<&Json>) -> Option<String> {
    let text = match v {
        None | Some(Json::Null) => return Some("(absent)".to_string()),
        Some(Json::String(s)) if s.contains('\n') => return None,
        Some(Json::String(s)) => format!("{s:?}"),
        Some(other) => other.to_string(),
    };
    (text.chars().count() <= ONE_LINE).then_some(text)
}

fn multiline(v: Option<&Json>) -> String {
    match v {
        None | Some(Json::Null) => String::new(),
        Some(Json::String(s)) => s.clone(),
        Some(other @ (Json::Object(_) | Json::Array(_))) => {
            serde_json::to_string_pretty(other).unwrap_or_default()
        }
        Some(other) => other.to_string(),
    }
}
