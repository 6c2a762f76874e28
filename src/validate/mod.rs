//! YAML → model, with diagnostics that say what is wrong and where.
//!
//! [`validate`] parses every file of a snapshot, runs the checks across documents, and builds
//! the [`DesiredState`] only when there is no error: nothing downstream is ever derived from a
//! partially valid repository.

mod checks;
pub mod diagnostic;
mod parse;
pub mod spans;
mod suggest;

pub use diagnostic::{render, Diagnostic, Location, Related, Severity};
pub use suggest::did_you_mean;

use crate::model::{DesiredState, Kind, Located, Origin, CONFIG_FILE};
use crate::source::{Exceeded, Limits, Refused, Snapshot, SourceFile};
use parse::{AnyDoc, Parsed, Parsing};

/// The outcome of validating one snapshot.
#[derive(Debug)]
pub struct Validation {
    /// Sorted by file, line and column; repository-level findings first.
    pub diagnostics: Vec<Diagnostic>,
    /// Documents that parsed (whether or not they passed the checks).
    pub documents: usize,
    /// The model, present exactly when there are no errors.
    pub state: Option<DesiredState>,
}

impl Validation {
    pub fn errors(&self) -> usize {
        self.count(Severity::Error)
    }

    pub fn warnings(&self) -> usize {
        self.count(Severity::Warning)
    }

    pub fn is_valid(&self) -> bool {
        self.errors() == 0
    }

    fn count(&self, severity: Severity) -> usize {
        self.diagnostics
            .iter()
            .filter(|d| d.severity == severity)
            .count()
    }
}

/// Validates a whole repository snapshot.
pub fn validate(snapshot: &Snapshot) -> Validation {
    let mut diags = Vec::new();
    if snapshot.files.is_empty() {
        diags.push(
            Diagnostic::error(
                "no-documents",
                format!("no YAML files found in {}", snapshot.origin),
            )
            .help(
                "point labctl at the desired-state repository (or use --path for a subdirectory)",
            ),
        );
    } else if !snapshot.files.iter().any(|f| f.path == CONFIG_FILE) {
        diags.push(
            Diagnostic::warning(
                "no-config",
                format!("no {CONFIG_FILE} at the repository root"),
            )
            .help("without it no provider is observed and every kind is observe-only"),
        );
    }
    diags.extend(snapshot.refused.iter().map(refused));
    validate_files(&snapshot.files, &snapshot.limits, diags)
}

/// The error for a file left unread because of a size limit.
fn refused(r: &Refused) -> Diagnostic {
    let mib = |bytes: u64| format!("{:.1} MiB", bytes as f64 / (1u64 << 20) as f64);
    let (message, help) = match r.limit {
        Exceeded::FileBytes(limit) => (
            format!(
                "{} bytes ({}) is over the limit of {limit} bytes ({}) for one file; it was not read",
                r.bytes,
                mib(r.bytes),
                mib(limit)
            ),
            format!(
                "split it into several files; if it is meant to be this large, raise \
                 {}",
                Limits::ENV[0].0
            ),
        ),
        Exceeded::TotalBytes { limit, read } => (
            format!(
                "{} bytes ({}) after {read} bytes of other files is over the limit of {limit} \
                 bytes ({}) for the whole repository; it was not read",
                r.bytes,
                mib(r.bytes),
                mib(limit)
            ),
            format!(
                "check for generated or copied files that do not belong in the desired state; \
                 if the repository is meant to be this large, raise {}",
                Limits::ENV[1].0
            ),
        ),
    };
    let code = match r.limit {
        Exceeded::FileBytes(_) => "file-too-large",
        Exceeded::TotalBytes { .. } => "repository-too-large",
    };
    Diagnostic::error(code, message)
        .at(Location::new(&r.path, spans::Pos { line: 1, column: 1 }))
        .help(help)
}

/// Validates loose YAML text (e.g. a definition an MCP client proposes) as if it were the
/// file `name` of a repository, with the same checks as a repository.
pub fn validate_text(name: &str, text: &str) -> Validation {
    let file = SourceFile {
        path: name.to_string(),
        text: text.to_string(),
    };
    validate_files(std::slice::from_ref(&file), &Limits::default(), Vec::new())
}

fn validate_files(files: &[SourceFile], limits: &Limits, mut diags: Vec<Diagnostic>) -> Validation {
    let mut parsing = Parsing::default();
    for file in files {
        parse::parse_file(file, limits, &mut parsing, &mut diags);
        if parsing.over_total {
            break;
        }
    }
    checks::run(&parsing, &mut diags);
    let parsed = parsing.docs;
    diags.sort_by(|a, b| a.location.cmp(&b.location).then_with(|| a.code.cmp(b.code)));
    let documents = parsed.len();
    let state = diags
        .iter()
        .all(|d| d.severity != Severity::Error)
        .then(|| assemble(parsed));
    Validation {
        diagnostics: diags,
        documents,
        state,
    }
}

fn assemble(parsed: Vec<Parsed>) -> DesiredState {
    let mut state = DesiredState::default();
    // Each list made its exact size first: grown by doubling, 100,000 reservations took room
    // for 131,072 (8.5 MB more, held as long as the state).
    let mut count = [0usize; Kind::ALL.len()];
    for p in &parsed {
        count[p.doc.kind() as usize] += 1;
    }
    state.pools.reserve_exact(count[Kind::Pool as usize]);
    state.devices.reserve_exact(count[Kind::Device as usize]);
    state
        .reservations
        .reserve_exact(count[Kind::DhcpReservation as usize]);
    state.routes.reserve_exact(count[Kind::Route as usize]);
    state
        .mcp_servers
        .reserve_exact(count[Kind::McpServer as usize]);
    for p in parsed {
        let origin = Origin {
            file: p.file,
            line: p.start.line,
        };
        match p.doc {
            AnyDoc::Pool(doc) => state.pools.push(Located { doc: *doc, origin }),
            AnyDoc::Device(doc) => state.devices.push(Located { doc: *doc, origin }),
            AnyDoc::DhcpReservation(doc) => state.reservations.push(Located { doc: *doc, origin }),
            AnyDoc::Route(doc) => state.routes.push(Located { doc: *doc, origin }),
            AnyDoc::McpServer(doc) => state.mcp_servers.push(Located { doc: *doc, origin }),
            AnyDoc::Config(doc) => state.config = Some(Located { doc: *doc, origin }),
        }
    }
    state
}
