//! Diagnostics: what is wrong, where (file:line:column, document, field), and what to do.

use std::fmt;

use codespan_reporting::diagnostic::{Diagnostic as CsDiagnostic, Label};
use codespan_reporting::files::SimpleFiles;
use codespan_reporting::term::{self, termcolor::WriteColor};
use serde::Serialize;

use super::spans::Pos;
use crate::source::Snapshot;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
        })
    }
}

/// A file position, 1-based.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Location {
    pub file: String,
    pub line: usize,
    pub column: usize,
}

impl Location {
    pub fn new(file: &str, pos: Pos) -> Self {
        Location {
            file: file.to_string(),
            line: pos.line,
            column: pos.column,
        }
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.file, self.line, self.column)
    }
}

/// A second place that explains a diagnostic (e.g. the first claim of a duplicate IP).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Related {
    pub location: Location,
    pub message: String,
}

/// One finding about the desired state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Diagnostic {
    pub severity: Severity,
    /// Stable, kebab-case identifier (`duplicate-ip`), for tooling and docs.
    pub code: &'static str,
    pub message: String,
    /// `None` only for findings about the repository as a whole (e.g. no documents at all).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub location: Option<Location>,
    /// `Kind/name` of the document, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub document: Option<String>,
    /// Field path within the document (`spec.interfaces[0].ip`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// What to do about it, including "did you mean" suggestions.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub help: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub related: Vec<Related>,
}

impl Diagnostic {
    pub fn new(severity: Severity, code: &'static str, message: impl Into<String>) -> Self {
        Diagnostic {
            severity,
            code,
            message: message.into(),
            location: None,
            document: None,
            field: None,
            help: None,
            related: Vec::new(),
        }
    }

    pub fn error(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(Severity::Error, code, message)
    }

    pub fn warning(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(Severity::Warning, code, message)
    }

    pub fn at(mut self, location: Location) -> Self {
        self.location = Some(location);
        self
    }

    pub fn document(mut self, document: impl Into<String>) -> Self {
        self.document = Some(document.into());
        self
    }

    pub fn field(mut self, field: impl Into<String>) -> Self {
        self.field = Some(field.into());
        self
    }

    pub fn help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }

    pub fn related(mut self, location: Location, message: impl Into<String>) -> Self {
        self.related.push(Related {
            location,
            message: message.into(),
        });
        self
    }

    /// One line, grep- and editor-friendly:
    /// `file:line:col: error[code]: message [Kind/name spec.field]`.
    pub fn summary(&self) -> String {
        let mut out = String::new();
        if let Some(loc) = &self.location {
            out.push_str(&format!("{loc}: "));
        }
        out.push_str(&format!(
            "{}[{}]: {}",
            self.severity, self.code, self.message
        ));
        match (&self.document, &self.field) {
            (Some(d), Some(f)) => out.push_str(&format!(" [{d} {f}]")),
            (Some(d), None) => out.push_str(&format!(" [{d}]")),
            (None, Some(f)) => out.push_str(&format!(" [{f}]")),
            (None, None) => {}
        }
        out
    }
}

/// Renders diagnostics like a compiler: the header, the offending line with a caret, related
/// places, and help. Colour is decided by the writer.
pub fn render(
    diagnostics: &[Diagnostic],
    snapshot: &Snapshot,
    out: &mut dyn WriteColor,
) -> std::io::Result<()> {
    let mut files = SimpleFiles::new();
    // The texts are borrowed: a copy of every file per rendering doubled validate's memory.
    let ids: Vec<(String, usize)> = snapshot
        .files
        .iter()
        .map(|f| (f.path.clone(), files.add(f.path.clone(), f.text.as_str())))
        .collect();
    let find = |file: &str| ids.iter().find(|(p, _)| p == file).map(|(_, id)| *id);
    let config = term::Config::default();
    for d in diagnostics {
        let mut cs = match d.severity {
            Severity::Error => CsDiagnostic::error(),
            Severity::Warning => CsDiagnostic::warning(),
        }
        .with_code(d.code)
        .with_message(&d.message);
        let mut labels = Vec::new();
        let mut notes = Vec::new();
        let context = match (&d.document, &d.field) {
            (Some(doc), Some(field)) => format!("{doc}, field {field}"),
            (Some(doc), None) => doc.clone(),
            (None, Some(field)) => format!("field {field}"),
            (None, None) => String::new(),
        };
        match &d.location {
            Some(loc) => match find(&loc.file) {
                Some(id) => {
                    let text = &snapshot
                        .files
                        .iter()
                        .find(|f| f.path == loc.file)
                        .unwrap()
                        .text;
                    labels.push(Label::primary(id, token_range(text, loc)).with_message(&context));
                }
                None => notes.push(format!("at {loc} {context}")),
            },
            None if !context.is_empty() => notes.push(context),
            None => {}
        }
        for r in &d.related {
            match find(&r.location.file) {
                Some(id) => {
                    let text = &snapshot
                        .files
                        .iter()
                        .find(|f| f.path == r.location.file)
                        .unwrap()
                        .text;
                    labels.push(
                        Label::secondary(id, token_range(text, &r.location))
                            .with_message(&r.message),
                    );
                }
                None => notes.push(format!("{}: {}", r.location, r.message)),
            }
        }
        if let Some(help) = &d.help {
            notes.push(format!("help: {help}"));
        }
        cs = cs.with_labels(labels).with_notes(notes);
        term::emit(out, &config, &files, &cs).map_err(std::io::Error::other)?;
    }
    Ok(())
}

/// Byte range of the token at `loc`: from the column to the end of the value on that line
/// (trailing comment and whitespace excluded), at least one character.
fn token_range(text: &str, loc: &Location) -> std::ops::Range<usize> {
    let line_start: usize = text
        .split_inclusive('\n')
        .take(loc.line.saturating_sub(1))
        .map(str::len)
        .sum();
    let line = text[line_start..].split('\n').next().unwrap_or("");
    let col_byte = line
        .char_indices()
        .nth(loc.column.saturating_sub(1))
        .map(|(i, _)| i)
        .unwrap_or(line.len());
    let rest = &line[col_byte..];
    let rest = match rest.find(" #") {
        Some(i) => &rest[..i],
        None => rest,
    };
    // Inside a flow collection (`{a: 1, b: 2}`) the value ends at the next separator.
    let in_flow = line[..col_byte].contains(['{', '[']);
    let rest = match rest.find([',', '}', ']']) {
        Some(i) if in_flow && i > 0 => &rest[..i],
        _ => rest,
    };
    let len = rest.trim_end().len().max(1);
    let start = line_start + col_byte;
    start..(start + len).min(text.len().max(start))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_names_place_document_and_field() {
        let d = Diagnostic::error("duplicate-ip", "IP 10.0.1.5 is claimed twice")
            .at(Location {
                file: "dhcp/a.yaml".into(),
                line: 9,
                column: 7,
            })
            .document("DhcpReservation/a")
            .field("spec.ip");
        assert_eq!(
            d.summary(),
            "dhcp/a.yaml:9:7: error[duplicate-ip]: IP 10.0.1.5 is claimed twice [DhcpReservation/a spec.ip]"
        );
    }

    #[test]
    fn token_range_stops_at_a_flow_separator() {
        let text = "backend: {service: {device: pm-api, service: api}}\n";
        let loc = Location {
            file: "f".into(),
            line: 1,
            column: 29,
        };
        assert_eq!(&text[token_range(text, &loc)], "pm-api");
    }

    #[test]
    fn token_range_stops_before_comment() {
        let text = "a: 1\nip: 10.0.1.5  # web\n";
        let loc = Location {
            file: "f".into(),
            line: 2,
            column: 5,
        };
        assert_eq!(&text[token_range(text, &loc)], "10.0.1.5");
    }
}
