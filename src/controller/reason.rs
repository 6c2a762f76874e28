//! Why a run runs, as kube-runtime's `ReconcileReason`: recorded with every run.

use serde::{Deserialize, Serialize};

/// Why a reconcile was requested. The store keeps [`Reason::label`] as the run's trigger and
/// the whole reason as JSON beside it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum Reason {
    /// The tracked branch moved to another commit (a watch or a poll saw it).
    CommitChanged {
        /// The commit reconciled before, if any.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        from: Option<String>,
        to: String,
    },
    /// A schedule fired: the providers are observed again even when Git did not change, so
    /// live drift is found.
    Schedule { schedule: String },
    /// A verified push webhook, from `source` (`github`, `gitea`, `generic`).
    Webhook { source: String },
    /// Someone asked: `via` is how (`cli`, `timer`, `mcp`, or what `--trigger` says), `by`
    /// who (`user@host/pid`, an MCP client and its token's name).
    Manual { via: String, by: String },
    /// Trying again after a run that failed or could not see everything; `attempt` counts from
    /// 1.
    Retry { attempt: u32 },
}

impl Reason {
    /// A person or a script asked, through `via`.
    pub fn manual(via: impl Into<String>, by: impl Into<String>) -> Self {
        Reason::Manual {
            via: via.into(),
            by: by.into(),
        }
    }

    /// The short label stored as the run's trigger: `commit`, `schedule`, `webhook`, `retry`,
    /// or for a manual run the way it was asked (`cli`, `timer`, `mcp`).
    pub fn label(&self) -> &str {
        match self {
            Reason::CommitChanged { .. } => "commit",
            Reason::Schedule { .. } => "schedule",
            Reason::Webhook { .. } => "webhook",
            Reason::Manual { via, .. } => via,
            Reason::Retry { .. } => "retry",
        }
    }

    /// How many times in a row this run has been retried (0 for a first try).
    pub fn attempt(&self) -> u32 {
        match self {
            Reason::Retry { attempt } => *attempt,
            _ => 0,
        }
    }
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Reason::CommitChanged {
                from: Some(from),
                to,
            } => {
                write!(f, "commit changed from {} to {}", short(from), short(to))
            }
            Reason::CommitChanged { from: None, to } => write!(f, "commit {}", short(to)),
            Reason::Schedule { schedule } => write!(f, "schedule {schedule}"),
            Reason::Webhook { source } => write!(f, "webhook from {source}"),
            Reason::Manual { via, by } => write!(f, "{via}, asked by {by}"),
            Reason::Retry { attempt } => write!(f, "retry {attempt}"),
        }
    }
}

fn short(sha: &str) -> &str {
    &sha[..sha.len().min(12)]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_round_trip_as_json_with_their_labels() {
        let reasons = [
            Reason::CommitChanged {
                from: Some("a".repeat(40)),
                to: "b".repeat(40),
            },
            Reason::Schedule {
                schedule: "0 */5 * * * *".into(),
            },
            Reason::Webhook {
                source: "github".into(),
            },
            Reason::manual("timer", "labctl@mgmt/42"),
            Reason::Retry { attempt: 3 },
        ];
        let labels: Vec<&str> = reasons.iter().map(Reason::label).collect();
        assert_eq!(labels, ["commit", "schedule", "webhook", "timer", "retry"]);
        for r in &reasons {
            let json = serde_json::to_value(r).unwrap();
            assert_eq!(&serde_json::from_value::<Reason>(json).unwrap(), r);
        }
        assert_eq!(
            serde_json::to_value(&reasons[3]).unwrap(),
            serde_json::json!({"type": "manual", "via": "timer", "by": "labctl@mgmt/42"})
        );
        assert_eq!(reasons[4].attempt(), 3);
        assert_eq!(reasons[0].attempt(), 0);
        assert_eq!(
            reasons[0].to_string(),
            "commit changed from aaaaaaaaaaaa to bbbbbbbbbbbb"
        );
    }
}
