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

use crate::model::{DesiredState, Located, Origin, CONFIG_FILE};
use crate::source::{Snapshot, SourceFile};
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
    validate_files(&snapshot.files, diags)
}

/// Validates loose YAML text (e.g. a definition an MCP client proposes) as if it were the
/// file `name` of a repository, with the same checks as a repository.
pub fn validate_text(name: &str, text: &str) -> Validation {
    let file = SourceFile {
        path: name.to_string(),
        text: text.to_string(),
    };
    validate_files(std::slice::from_ref(&file), Vec::new())
}

fn validate_files(files: &[SourceFile], mut diags: Vec<Diagnostic>) -> Validation {
    let mut parsing = Parsing::default();
    for file in files {
        parse::parse_file(file, &mut parsing, &mut diags);
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
    for p in parsed {
        let origin = Origin {
            file: p.file,
            line: p.spans.start.line,
        };
        match p.doc {
            AnyDoc::Pool(doc) => state.pools.push(Located { doc, origin }),
            AnyDoc::Device(doc) => state.devices.push(Located { doc, origin }),
            AnyDoc::DhcpReservation(doc) => state.reservations.push(Located { doc, origin }),
            AnyDoc::Route(doc) => state.routes.push(Located { doc, origin }),
            AnyDoc::McpServer(doc) => state.mcp_servers.push(Located { doc, origin }),
            AnyDoc::Config(doc) => state.config = Some(Located { doc, origin }),
        }
    }
    state
}
