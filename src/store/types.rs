//! Plain record types the store takes and returns. They know nothing of providers or MCP.

use serde_json::Value;

/// The deviation vocabulary is the diff's: the store records what the diff decided.
pub use crate::diff::{DeviationType, Severity};

/// Row id of a run.
pub type RunId = i64;

text_enum! {
    /// How a run ended (or that it has not).
    Outcome {
        /// Started, not finished yet.
        Running = "running",
        /// Finished without error, with every resource observed.
        Succeeded = "succeeded",
        /// Finished without error, but something could not be observed (a provider, a
        /// resource or one of its fields): its deviations are neither confirmed nor resolved.
        Partial = "partial",
        /// Finished with an error.
        Failed = "failed",
        /// Never finished: the process stopped first.
        Aborted = "aborted",
    }
}

text_enum! {
    /// Where a remediation pull request stands.
    PullRequestState {
        /// Open, waiting for review.
        Open = "open",
        /// Merged into the desired state.
        Merged = "merged",
        /// Closed without merging.
        Closed = "closed",
    }
}

text_enum! {
    /// Who did an audited action.
    ActorKind {
        /// The reconciliation controller.
        Controller = "controller",
        /// A person at the command line.
        Cli = "cli",
        /// An MCP client.
        Mcp = "mcp",
        /// A person on the status pages (logins and logouts).
        Web = "web",
    }
}

text_enum! {
    /// What a change asked of a provider.
    serde ChangeAction {
        Create = "create",
        Update = "update",
        Delete = "delete",
    }
}

text_enum! {
    /// What came of a change a run asked a provider to make.
    serde ChangeResult {
        /// Accepted, and a re-observation after the apply shows the resource as Git declares.
        Applied = "applied",
        /// Accepted, but the re-observation still shows a difference or could not be made.
        Unconfirmed = "unconfirmed",
        /// Refused, or the call failed.
        Failed = "failed",
    }
}

/// One change a run asked a provider to make, and what came of it.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ChangeRecord {
    pub provider: String,
    pub action: ChangeAction,
    pub kind: String,
    pub name: String,
    /// The live fields when the change was planned; `None` for a create.
    pub before: Option<Value>,
    /// The fields asked for; `None` for a delete.
    pub after: Option<Value>,
    pub result: ChangeResult,
    /// Why it failed or is unconfirmed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// An applied-change row.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AppliedChange {
    pub id: i64,
    pub run: RunId,
    /// Unix milliseconds (when the run recorded it).
    pub at: i64,
    #[serde(flatten)]
    pub change: ChangeRecord,
}

/// One deviation as found by one run.
#[derive(Clone, Debug, PartialEq)]
pub struct DeviationRecord {
    pub kind: String,
    pub name: String,
    /// Field path inside the object; empty for the object as a whole.
    pub field_path: String,
    pub dtype: DeviationType,
    pub severity: Severity,
    pub auto_correctable: bool,
    pub remediation: Option<String>,
    pub expected: Option<Value>,
    pub actual: Option<Value>,
}

/// A JSON body as the store keeps it: its canonical text, compressed (zlib), and its content
/// address (SHA-256 of the text), both made as the text is written (see [`Blob::writer`]): the
/// text of a large lab's model or observation never exists whole, and what is held until the
/// run is recorded, and copied into the database, is a fraction of it. No canonicalising,
/// hashing or compressing happens while the run's transaction holds the database.
///
/// A body the store already holds may be given by its address alone ([`Blob::stored`]): an
/// unchanged run need not write, or even hold, its model again.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Blob {
    /// The zlib-compressed canonical text and the text's length; `None` for an address alone.
    packed: Option<(Vec<u8>, u64)>,
    hash: String,
}

/// Where a [`Blob`] is written: the canonical text is hashed and compressed as it comes.
pub struct BlobSink {
    hasher: crate::canonical::Sha256Sink,
    packed: flate2::write::ZlibEncoder<Vec<u8>>,
    size: u64,
}

impl std::io::Write for BlobSink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.hasher.write_all(buf)?;
        self.size += buf.len() as u64;
        self.packed.write_all(buf)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Blob {
    /// A writer whose text becomes a blob ([`Blob::from_writer`]).
    pub fn writer() -> crate::canonical::Writer<BlobSink> {
        crate::canonical::Writer::to(BlobSink {
            hasher: Default::default(),
            // Fast: a run's bodies are compressed on every run; JSON shrinks several times
            // even so.
            packed: flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::fast()),
            size: 0,
        })
    }

    /// The blob of what `w` wrote.
    pub fn from_writer(w: crate::canonical::Writer<BlobSink>) -> Self {
        let sink = w.into_inner();
        let mut packed = sink
            .packed
            .finish()
            .expect("compressing into memory does not fail");
        packed.shrink_to_fit();
        Blob {
            packed: Some((packed, sink.size)),
            hash: sink.hasher.hex(),
        }
    }

    pub fn of(value: &Value) -> Self {
        let mut w = Blob::writer();
        w.value(value);
        Blob::from_writer(w)
    }

    /// A body the store holds under `hash`. Recording a run that names one the store no
    /// longer holds (retention removed it) fails with [`super::StoreError::BlobGone`],
    /// storing nothing.
    pub fn stored(hash: impl Into<String>) -> Self {
        Blob {
            packed: None,
            hash: hash.into(),
        }
    }

    /// The same body by its address alone.
    pub fn address(&self) -> Blob {
        Blob::stored(self.hash.clone())
    }

    /// Length of the canonical text; `None` for a body given by its address alone.
    pub fn size(&self) -> Option<u64> {
        self.packed.as_ref().map(|(_, size)| *size)
    }

    /// The content address: sha256 hex of the canonical text.
    pub fn hash(&self) -> &str {
        &self.hash
    }

    /// The compressed text and its length (if any), and the address, taken apart.
    pub fn into_parts(self) -> (Option<(Vec<u8>, u64)>, String) {
        (self.packed, self.hash)
    }
}

/// The text of a stored blob: `packed` inflated, refused when it is not `size` bytes of UTF-8
/// (never more is inflated).
pub fn unpack(packed: &[u8], size: u64) -> Result<String, String> {
    use std::io::Read;
    let mut text = Vec::with_capacity(usize::try_from(size).unwrap_or(0).min(1 << 30));
    flate2::read::ZlibDecoder::new(packed)
        .take(size.saturating_add(1))
        .read_to_end(&mut text)
        .map_err(|e| format!("a stored body does not inflate: {e}"))?;
    if text.len() as u64 != size {
        return Err(format!(
            "a stored body inflates to {} bytes, not the {size} recorded",
            text.len()
        ));
    }
    String::from_utf8(text).map_err(|e| format!("a stored body is not UTF-8: {e}"))
}

impl From<Value> for Blob {
    fn from(value: Value) -> Self {
        Blob::of(&value)
    }
}

/// What one provider reported in one run.
#[derive(Clone, Debug, PartialEq)]
pub struct ObservedSnapshot {
    pub provider: String,
    pub body: Blob,
    /// Unix milliseconds.
    pub observed_at: i64,
}

/// Objects a run could not read: their open deviations are neither confirmed nor resolved.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Unobservable {
    pub kind: String,
    /// `None`: every object of the kind.
    pub name: Option<String>,
}

impl Unobservable {
    /// Every object of `kind`.
    pub fn kind(kind: impl Into<String>) -> Self {
        Unobservable {
            kind: kind.into(),
            name: None,
        }
    }

    /// One object.
    pub fn object(kind: impl Into<String>, name: impl Into<String>) -> Self {
        Unobservable {
            kind: kind.into(),
            name: Some(name.into()),
        }
    }

    /// Whether this covers `kind`/`name`.
    pub fn covers(&self, kind: &str, name: &str) -> bool {
        self.kind == kind && self.name.as_deref().is_none_or(|n| n == name)
    }
}

/// Everything one run found, recorded at once by [`Store::finish_run`](super::Store::finish_run).
#[derive(Clone, Debug, PartialEq)]
pub struct RunReport {
    /// Must not be [`Outcome::Running`].
    pub outcome: Outcome,
    /// The commit the desired state was read from.
    pub commit_sha: Option<String>,
    /// The desired state of `commit_sha` (needs `commit_sha`).
    pub desired: Option<Blob>,
    pub observed: Vec<ObservedSnapshot>,
    /// Every deviation present now; open ones absent here are resolved.
    pub deviations: Vec<DeviationRecord>,
    /// Deviations the run found and repaired itself, confirmed by observing again after its
    /// apply: recorded as opened (unless open already) and resolved, both by this run.
    pub repaired: Vec<DeviationRecord>,
    pub unobservable: Vec<Unobservable>,
    /// Number of desired resources.
    pub resources: u64,
    pub error: Option<String>,
    /// The reconciled model of the run (per resource: kind, name, desired, observed, status).
    /// Opaque to the store; stored content-addressed, so an unchanged model costs no space.
    pub model: Option<Blob>,
    /// The changes the run asked providers to make, and what came of each.
    pub changes: Vec<ChangeRecord>,
    /// How each provider's first observation went.
    pub providers: Vec<ProviderRecord>,
}

/// How one provider's observation went in one run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProviderRecord {
    pub provider: String,
    /// It was called (not left out while resting after failures).
    pub asked: bool,
    /// It answered (some of its resources may still have been unreadable).
    pub answered: bool,
    /// How long the observation took.
    pub observe_ms: i64,
    /// Why it did not answer, redacted.
    pub error: Option<String>,
}

impl RunReport {
    /// An empty report with the given outcome.
    pub fn new(outcome: Outcome) -> Self {
        RunReport {
            outcome,
            commit_sha: None,
            desired: None,
            observed: Vec::new(),
            deviations: Vec::new(),
            repaired: Vec::new(),
            unobservable: Vec::new(),
            resources: 0,
            error: None,
            model: None,
            changes: Vec::new(),
            providers: Vec::new(),
        }
    }
}

/// Counts written to the run row by [`Store::finish_run`](super::Store::finish_run).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RunCounts {
    pub deviations_open: i64,
    pub deviations_opened: i64,
    pub deviations_resolved: i64,
}

/// A run row.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Run {
    pub id: RunId,
    pub trigger: String,
    pub controller: String,
    pub started_at: i64,
    pub finished_at: Option<i64>,
    pub commit_sha: Option<String>,
    pub outcome: Outcome,
    pub resources: i64,
    pub counts: RunCounts,
    pub error: Option<String>,
    /// Content address of the run's reconciled model, if it recorded one.
    pub model_hash: Option<String>,
    /// Why the run ran, as the controller recorded it (JSON); `None` for runs recorded before
    /// reasons were, or started by a caller that gave only a trigger label.
    pub reason: Option<Value>,
}

/// The reconciled model of the latest finished run (succeeded or partial) that recorded one.
#[derive(Clone, Debug, PartialEq)]
pub struct LatestModel {
    pub run: RunId,
    pub commit_sha: Option<String>,
    /// Unix milliseconds.
    pub finished_at: i64,
    /// The model's canonical JSON text, as stored (read it with
    /// `ReconciledModel::from_text`), and its content address.
    pub text: String,
    pub hash: String,
}

impl LatestModel {
    /// The model's text as a JSON value, for a look at it as data.
    pub fn json(&self) -> Result<Value, serde_json::Error> {
        serde_json::from_str(&self.text)
    }
}

/// An observed-snapshot row: one provider's unchanged observations over consecutive runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SnapshotInfo {
    pub id: i64,
    pub provider: String,
    pub blob_hash: String,
    /// Bytes of the canonical JSON body.
    pub size: i64,
    pub first_run: RunId,
    pub last_run: RunId,
    /// Unix milliseconds.
    pub first_seen_at: i64,
    pub last_seen_at: i64,
}

/// A runtime suspension (`labctl suspend`): labctl observes and records what it covers, and
/// applies and proposes nothing for it, until `labctl resume`.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Suspension {
    /// `None`: the whole controller.
    pub kind: Option<String>,
    /// `None`: every resource of the kind.
    pub name: Option<String>,
    pub reason: String,
    /// Who suspended it: the OS user of `labctl suspend`.
    pub actor: String,
    /// When, in ms since the epoch.
    pub since: i64,
}

impl Suspension {
    /// `everything`, `DhcpReservation` or `DhcpReservation/whisper`.
    pub fn scope(&self) -> String {
        match (&self.kind, &self.name) {
            (None, _) => "everything".into(),
            (Some(k), None) => k.clone(),
            (Some(k), Some(n)) => format!("{k}/{n}"),
        }
    }

    /// The command that lifts it: `labctl resume DhcpReservation whisper`.
    pub fn resume_command(&self) -> String {
        [self.kind.as_deref(), self.name.as_deref()]
            .into_iter()
            .flatten()
            .fold("labctl resume".to_string(), |cmd, part| cmd + " " + part)
    }
}

/// A remediation pull request: one per branch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PullRequest {
    pub id: i64,
    pub branch: String,
    pub url: Option<String>,
    pub number: Option<i64>,
    pub state: PullRequestState,
    /// The deviations it fixes, sorted, without repeats.
    pub deviation_keys: Vec<String>,
    /// What it proposed (deviations and live values); `None` once labctl closed it as resolved.
    pub fingerprint: Option<String>,
    /// Unix milliseconds.
    pub created_at: i64,
    pub updated_at: i64,
}

/// A deviation row: one life cycle of one (kind, name, field path).
#[derive(Clone, Debug, PartialEq)]
pub struct Deviation {
    pub id: i64,
    pub record: DeviationRecord,
    pub opened_at: i64,
    pub opened_run: RunId,
    pub last_seen_at: i64,
    pub last_seen_run: RunId,
    pub seen_count: i64,
    pub resolved_at: Option<i64>,
    pub resolved_run: Option<RunId>,
    pub resolved_commit: Option<String>,
}

impl Deviation {
    /// Still open.
    pub fn is_open(&self) -> bool {
        self.resolved_at.is_none()
    }
}

/// One audit entry to append.
#[derive(Clone, Debug, PartialEq)]
pub struct AuditEntry {
    pub actor_kind: ActorKind,
    pub actor: String,
    pub action: String,
    pub target: Option<String>,
    pub details: Value,
}

/// An audit row.
#[derive(Clone, Debug, PartialEq)]
pub struct AuditRecord {
    pub id: i64,
    /// Unix milliseconds.
    pub at: i64,
    pub entry: AuditEntry,
}

/// Row counts per table and the database size.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StoreStats {
    pub runs: i64,
    pub applied_changes: i64,
    pub blobs: i64,
    pub desired_snapshots: i64,
    pub observed_snapshots: i64,
    pub deviations: i64,
    pub open_deviations: i64,
    pub pull_requests: i64,
    pub audit_log: i64,
    pub database_bytes: i64,
}

/// How long history is kept.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetentionPolicy {
    /// Finished runs, observed snapshots, desired snapshots and resolved deviations.
    pub keep_runs_days: u32,
    pub keep_audit_days: u32,
    /// The newest audit entries kept whatever their age: callers decide how fast the log
    /// grows, so days alone do not bound it.
    pub keep_audit_rows: u64,
}

impl RetentionPolicy {
    /// A month of runs; a year of audit entries, at most the newest 500 000 (an MCP row
    /// holds at most about 5 KiB, a typical one a few hundred bytes).
    pub const DEFAULT: RetentionPolicy = RetentionPolicy {
        keep_runs_days: 30,
        keep_audit_days: 365,
        keep_audit_rows: 500_000,
    };
}

impl Default for RetentionPolicy {
    fn default() -> Self {
        RetentionPolicy::DEFAULT
    }
}

/// Rows deleted by [`Store::prune`](super::Store::prune).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PruneReport {
    pub runs: u64,
    pub applied_changes: u64,
    pub observed_snapshots: u64,
    pub desired_snapshots: u64,
    pub deviations: u64,
    pub blobs: u64,
    pub audit_log: u64,
}
