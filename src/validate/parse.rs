//! YAML text → typed documents, with every failure turned into a located diagnostic.
//!
//! Each document is read by serde_yaml as an untyped value (syntax errors, duplicate keys,
//! `apiVersion` and `kind`), and that value into the typed document for its kind (unknown
//! fields, wrong types). Only a document the value does not type is read again from its text,
//! where serde_yaml knows positions and treats plain scalars as text where text is wanted: its
//! answer, success or error, is the one that counts. A document that fails is reported and
//! left out; the others go on to the cross-document checks, so one run reports every error in
//! the repository.

use serde::Deserialize;
use serde_yaml::Value as Yaml;

use super::diagnostic::{Diagnostic, Location};
use super::spans::{self, DocAt, DocSpans, FileSpans, Pos};
use super::suggest::did_you_mean;
use crate::model::{
    ConfigDoc, DeviceDoc, DhcpReservationDoc, Kind, McpServerDoc, Metadata, PoolDoc, RouteDoc,
    API_VERSION, CONFIG_FILE,
};
use crate::source::{Limits, SourceFile};

/// A typed document of any kind. Boxed: the kinds differ a lot in size, and every parsed
/// document is kept until validation ends.
#[derive(Debug, Clone)]
pub enum AnyDoc {
    Pool(Box<PoolDoc>),
    Device(Box<DeviceDoc>),
    DhcpReservation(Box<DhcpReservationDoc>),
    Route(Box<RouteDoc>),
    McpServer(Box<McpServerDoc>),
    Config(Box<ConfigDoc>),
}

impl AnyDoc {
    pub fn kind(&self) -> Kind {
        match self {
            AnyDoc::Pool(_) => Kind::Pool,
            AnyDoc::Device(_) => Kind::Device,
            AnyDoc::DhcpReservation(_) => Kind::DhcpReservation,
            AnyDoc::Route(_) => Kind::Route,
            AnyDoc::McpServer(_) => Kind::McpServer,
            AnyDoc::Config(_) => Kind::Config,
        }
    }

    pub fn name(&self) -> &str {
        &self.metadata().name
    }

    pub fn metadata(&self) -> &Metadata {
        match self {
            AnyDoc::Pool(d) => &d.metadata,
            AnyDoc::Device(d) => &d.metadata,
            AnyDoc::DhcpReservation(d) => &d.metadata,
            AnyDoc::Route(d) => &d.metadata,
            AnyDoc::McpServer(d) => &d.metadata,
            AnyDoc::Config(d) => &d.metadata,
        }
    }
}

/// A document that parsed, with where it came from.
#[derive(Debug, Clone)]
pub struct Parsed<'t> {
    pub file: String,
    /// Where the document's content starts.
    pub start: Pos,
    at: DocAt<'t>,
    pub doc: AnyDoc,
}

impl Parsed<'_> {
    /// Positions within the document (its file is indexed at the first call).
    pub fn spans(&self) -> &DocSpans {
        self.at.spans()
    }

    /// `Kind/name`, as diagnostics name documents.
    pub fn ident(&self) -> String {
        format!("{}/{}", self.doc.kind(), self.doc.name())
    }

    /// Location of the value at `path`.
    pub fn at(&self, path: &str) -> Location {
        Location::new(&self.file, self.spans().value(path))
    }

    /// Location of the key at `path`.
    pub fn key_at(&self, path: &str) -> Location {
        Location::new(&self.file, self.spans().key(path))
    }

    /// An error about the field `path` of this document.
    pub fn error(&self, code: &'static str, path: &str, message: impl Into<String>) -> Diagnostic {
        Diagnostic::error(code, message)
            .at(self.at(path))
            .document(self.ident())
            .field(path)
    }

    /// A warning about the field `path` of this document.
    pub fn warning(
        &self,
        code: &'static str,
        path: &str,
        message: impl Into<String>,
    ) -> Diagnostic {
        Diagnostic::warning(code, message)
            .at(self.at(path))
            .document(self.ident())
            .field(path)
    }
}

/// What the files of a repository yielded.
#[derive(Debug, Default)]
pub struct Parsing<'t> {
    pub docs: Vec<Parsed<'t>>,
    /// Documents whose kind (and maybe name) is known but which did not parse. Checks treat
    /// references to them as unconfirmable rather than wrong, so one typo does not cascade
    /// into invented errors elsewhere.
    pub failed: Vec<(Kind, Option<String>)>,
    /// Documents seen so far in every file, parsed or not (empty ones too).
    pub seen: usize,
    /// The repository holds more documents than [`Limits::documents`]: the files after the one
    /// that reached it are not read.
    pub over_total: bool,
}

impl Parsing<'_> {
    /// True when a document of `kind` failed to parse (with that name, or with no name known).
    pub fn failed(&self, kind: Kind, name: &str) -> bool {
        self.failed
            .iter()
            .any(|(k, n)| *k == kind && n.as_deref().is_none_or(|n| n == name))
    }

    pub fn any_failed(&self, kind: Kind) -> bool {
        self.failed.iter().any(|(k, _)| *k == kind)
    }
}

/// Parses every document of `file` into `out`, appending problems to `diags`, up to the
/// document limits: a file with more is an error, and its documents past the limit are not
/// read.
pub fn parse_file<'t>(
    file: &'t SourceFile,
    limits: &Limits,
    out: &mut Parsing<'t>,
    diags: &mut Vec<Diagnostic>,
) {
    let room = limits.documents.saturating_sub(out.seen);
    let max = limits.documents_per_file.min(room);
    // One more than may be parsed, to point at the first document over the limit. Indexed only
    // when a position is asked for: a diagnostic, or a start the lines alone do not give.
    let spans = FileSpans::new(&file.text, max.saturating_add(1));
    let first = out.docs.len();
    // Documents serde_yaml read, and whether it read the file to its end.
    let (mut read, mut whole) = (0, true);
    // The file's documents read again from its text, for those the value does not type: made
    // at the first such document and only advanced, so a file of them is read twice in all,
    // not once more per document. (The index of the next document it yields, and it.)
    let mut again: Option<(usize, serde_yaml::Deserializer)> = None;
    for (i, de) in serde_yaml::Deserializer::from_str(&file.text).enumerate() {
        read = i + 1;
        let at = DocAt {
            file: spans.clone(),
            index: i,
        };
        if i == max {
            whole = false;
            diags.push(too_many_documents(&file.path, at.spans(), limits, room));
            out.failed.extend(Kind::ALL.map(|k| (k, None)));
            out.over_total |= room <= limits.documents_per_file;
            break;
        }
        out.seen += 1;
        let value = match Yaml::deserialize(de) {
            Ok(v) => v,
            Err(e) => {
                let fatal = !e.to_string().contains("duplicate entry");
                let ident = match at.spans().identity() {
                    (Some(k), Some(n)) if !fatal => Some(format!("{k}/{n}")),
                    _ => None,
                };
                diags.push(yaml_error(&file.path, &e, at.spans(), ident));
                if fatal {
                    whole = false;
                    // After a syntax error serde_yaml repeats the same error for every later
                    // "document": the rest of the file cannot be read, and what it declares
                    // is unknown.
                    out.failed.extend(Kind::ALL.map(|k| (k, None)));
                    break;
                }
                if let (Some(kind), name) = at.spans().identity() {
                    let kind = Kind::parse(kind).or_else(|| likely_kind(kind));
                    out.failed
                        .extend(kind.map(|k| (k, name.map(str::to_string))));
                }
                continue;
            }
        };
        if value.is_null() {
            continue; // an empty document, e.g. only comments between `---` lines
        }
        let name = value
            .get("metadata")
            .and_then(|m| m.get("name"))
            .and_then(Yaml::as_str)
            .map(str::to_string);
        let (kind, usable) = header(&file.path, &value, &at, diags);
        let Some(kind) = kind else {
            // A misspelt kind: references to the kind it was meant to be cannot be confirmed.
            if let Some(k) = value
                .get("kind")
                .and_then(Yaml::as_str)
                .and_then(likely_kind)
            {
                out.failed.push((k, name));
            }
            continue;
        };
        if !usable {
            out.failed.push((kind, name));
            continue;
        }
        let ident = format!("{kind}/{}", name.as_deref().unwrap_or("?"));
        // The value first: the text is scanned once. Read from the text again only when the
        // value does not fit (serde_yaml then says where, and decides).
        let result = typed(kind, value).or_else(|_| {
            let (next, docs) =
                again.get_or_insert_with(|| (0, serde_yaml::Deserializer::from_str(&file.text)));
            let de = docs
                .nth(i - *next)
                .expect("the document was read once already");
            *next = i + 1;
            typed(kind, de)
        });
        match result {
            Ok(doc) => {
                let parsed = Parsed {
                    file: file.path.clone(),
                    start: Pos::default(),
                    at,
                    doc,
                };
                check_name(&parsed, diags);
                check_config_placement(&parsed, diags);
                out.docs.push(parsed);
            }
            Err(e) => {
                diags.push(yaml_error(&file.path, &e, at.spans(), Some(ident)));
                out.failed.push((kind, name));
            }
        }
    }
    // The starts read from the lines hold when they count the documents serde_yaml read and
    // give one to each that it typed.
    let quick = spans::starts(&file.text)
        .filter(|s| whole && s.len() == read)
        .filter(|s| out.docs[first..].iter().all(|p| s[p.at.index].is_some()));
    for p in &mut out.docs[first..] {
        let start = quick.as_ref().and_then(|s| s[p.at.index]);
        p.start = start.unwrap_or_else(|| p.spans().start);
    }
}

/// The typed document of `kind` read through `de`.
fn typed<'de, D: serde::Deserializer<'de, Error = serde_yaml::Error>>(
    kind: Kind,
    de: D,
) -> Result<AnyDoc, serde_yaml::Error> {
    match kind {
        Kind::Pool => Box::<PoolDoc>::deserialize(de).map(AnyDoc::Pool),
        Kind::Device => Box::<DeviceDoc>::deserialize(de).map(AnyDoc::Device),
        Kind::DhcpReservation => {
            Box::<DhcpReservationDoc>::deserialize(de).map(AnyDoc::DhcpReservation)
        }
        Kind::Route => Box::<RouteDoc>::deserialize(de).map(AnyDoc::Route),
        Kind::McpServer => Box::<McpServerDoc>::deserialize(de).map(AnyDoc::McpServer),
        Kind::Config => Box::<ConfigDoc>::deserialize(de).map(AnyDoc::Config),
    }
}

/// The error for the first document of `file` over a document limit (`room` documents were
/// left of the repository's limit when the file was started).
fn too_many_documents(file: &str, at: &DocSpans, limits: &Limits, room: usize) -> Diagnostic {
    let (message, variable) = if room <= limits.documents_per_file {
        (
            format!(
                "the repository holds more than {} documents; the rest of this file and the \
                 files after it were not read",
                limits.documents
            ),
            Limits::ENV[3].0,
        )
    } else {
        (
            format!(
                "this file holds more than {} documents; the rest of it was not read",
                limits.documents_per_file
            ),
            Limits::ENV[2].0,
        )
    };
    Diagnostic::error("too-many-documents", message)
        .at(Location::new(file, at.start))
        .help(format!(
            "split the documents over several files (one per resource is the layout), or raise \
             {variable} if this many is intended"
        ))
}

/// Checks `apiVersion` and `kind`; returns the kind if known, and whether the document can be
/// typed.
fn header(
    file: &str,
    value: &Yaml,
    doc: &DocAt,
    diags: &mut Vec<Diagnostic>,
) -> (Option<Kind>, bool) {
    let at = |path: &str| Location::new(file, doc.spans().value(path));
    let start = || Location::new(file, doc.spans().start);
    if !value.is_mapping() {
        diags.push(
            Diagnostic::error(
                "not-a-document",
                "a document must be a mapping with apiVersion, kind, metadata and spec",
            )
            .at(start()),
        );
        return (None, false);
    }
    let mut ok = true;
    match value.get("apiVersion") {
        None => {
            diags.push(
                Diagnostic::error("missing-field", "missing field `apiVersion`")
                    .at(start())
                    .field("apiVersion")
                    .help(format!(
                        "add `apiVersion: {API_VERSION}` at the top of the document"
                    )),
            );
            ok = false;
        }
        Some(v) if v.as_str() != Some(API_VERSION) => {
            diags.push(
                Diagnostic::error(
                    "api-version",
                    format!("unsupported apiVersion `{}`", scalar_text(v)),
                )
                .at(at("apiVersion"))
                .field("apiVersion")
                .help(format!("this labctl reads `{API_VERSION}`")),
            );
            ok = false;
        }
        Some(_) => {}
    }
    let kind = match value.get("kind") {
        None => {
            diags.push(
                Diagnostic::error("missing-field", "missing field `kind`")
                    .at(start())
                    .field("kind")
                    .help(kinds_help(None)),
            );
            None
        }
        Some(v) => {
            let text = scalar_text(v);
            let kind = Kind::parse(&text);
            if kind.is_none() {
                let names = Kind::ALL.map(Kind::as_str);
                diags.push(
                    Diagnostic::error("unknown-kind", format!("unknown kind `{text}`"))
                        .at(at("kind"))
                        .field("kind")
                        .help(kinds_help(did_you_mean(&text, names))),
                );
            }
            kind
        }
    };
    (kind, ok)
}

/// The kind a misspelt `kind` most likely meant.
fn likely_kind(text: &str) -> Option<Kind> {
    did_you_mean(text, Kind::ALL.map(Kind::as_str)).and_then(Kind::parse)
}

fn kinds_help(suggestion: Option<&str>) -> String {
    let all = Kind::ALL.map(Kind::as_str).join(", ");
    match suggestion {
        Some(s) => format!("did you mean `{s}`? kinds are: {all}"),
        None => format!("kinds are: {all}"),
    }
}

fn scalar_text(v: &Yaml) -> String {
    match v {
        Yaml::String(s) => s.clone(),
        other => serde_yaml::to_string(other)
            .unwrap_or_default()
            .trim()
            .to_string(),
    }
}

/// Names are used in file names, URIs (`labctl://Device/harbor`) and provider identifiers.
fn check_name(doc: &Parsed, diags: &mut Vec<Diagnostic>) {
    let name = doc.doc.name();
    let valid = !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-');
    if !valid {
        diags.push(
            doc.error("invalid-name", "metadata.name", format!("invalid name `{name}`"))
                .help("use 1 to 63 lowercase letters, digits and `-`, starting and ending with a letter or digit"),
        );
    }
}

/// The `Config` document lives in the root `labctl.yaml`, and that file holds nothing else.
fn check_config_placement(doc: &Parsed, diags: &mut Vec<Diagnostic>) {
    let in_config_file = doc.file == CONFIG_FILE;
    match (doc.doc.kind() == Kind::Config, in_config_file) {
        (true, false) => diags.push(
            doc.error(
                "config-placement",
                "kind",
                "a Config document must be in the repository's root labctl.yaml",
            )
            .help(format!("move this document to {CONFIG_FILE}")),
        ),
        (false, true) => diags.push(
            doc.error(
                "config-placement",
                "kind",
                format!("{CONFIG_FILE} may only hold the Config document"),
            )
            .help("move this document to its own file, e.g. devices/NAME.yaml"),
        ),
        _ => {}
    }
}

/// Turns a serde_yaml error into a diagnostic with the field path, location and a suggestion.
fn yaml_error(
    file: &str,
    e: &serde_yaml::Error,
    spans: &DocSpans,
    ident: Option<String>,
) -> Diagnostic {
    let full = e.to_string();
    // serde_yaml appends " at line L column C" (sometimes followed by more context).
    let text = match full.find(" at line ") {
        Some(i) if e.location().is_some() => {
            let rest = &full[i + " at line ".len()..];
            let tail = rest.split_once(", ").map(|(_, t)| t);
            match tail {
                Some(t) => format!("{}, {t}", &full[..i]),
                None => full[..i].to_string(),
            }
        }
        _ => full.clone(),
    };
    let (path, message) = split_path(&text);
    let mut location = e
        .location()
        .map(|l| {
            Location::new(
                file,
                Pos {
                    line: l.line(),
                    column: l.column(),
                },
            )
        })
        .unwrap_or_else(|| Location::new(file, spans.start));
    let mut field = path.map(str::to_string);
    let mut help = None;
    let mut message = message.to_string();
    let mut code = "invalid-value";
    if let Some(rest) = message.strip_prefix("unknown field `") {
        code = "unknown-field";
        let (name, expected) = rest.split_once('`').unwrap_or((rest, ""));
        let allowed = backticked(expected);
        let at = Pos {
            line: location.line,
            column: location.column,
        };
        let entry = path.and_then(|p| entry_with_key(spans, p, name, at));
        if let Some(entry) = &entry {
            location = Location::new(file, spans.key(&join(Some(entry), name)));
        }
        let path = entry.as_deref().or(path);
        let within = path.unwrap_or("the document");
        let name = name.to_string();
        help = Some(
            match did_you_mean(&name, allowed.iter().map(String::as_str)) {
                Some(s) => format!("did you mean `{s}`? allowed here: {}", allowed.join(", ")),
                None if allowed.is_empty() => format!("{within} takes no fields"),
                None => format!("allowed here: {}", allowed.join(", ")),
            },
        );
        message = format!("unknown field `{name}` in {within}");
        field = Some(join(path, &name));
    } else if let Some(rest) = message.strip_prefix("unknown variant `") {
        code = "unknown-value";
        let (name, expected) = rest.split_once('`').unwrap_or((rest, ""));
        let allowed = backticked(expected);
        help = Some(
            match did_you_mean(name, allowed.iter().map(String::as_str)) {
                Some(s) => format!("did you mean `{s}`? allowed values: {}", allowed.join(", ")),
                None => format!("allowed values: {}", allowed.join(", ")),
            },
        );
        message = format!("unknown value `{name}`");
    } else if let Some(rest) = message.strip_prefix("missing field `") {
        code = "missing-field";
        let name = rest.trim_end_matches('`');
        // serde_yaml points at the end of the mapping; the mapping's own key is more useful.
        location = Location::new(file, path.map_or(spans.start, |p| spans.key(p)));
        field = Some(join(path, name));
    } else if message.contains("duplicate entry with key") || message.starts_with("duplicate field")
    {
        code = "duplicate-key";
        let key = message
            .split(['"', '`'])
            .nth(1)
            .unwrap_or_default()
            .to_string();
        message = format!("duplicate key `{key}`");
        let dup = join(path, &key);
        // The span index keeps the last occurrence of a key: the repeated one.
        location = Location::new(file, spans.key(&dup));
        field = Some(dup);
        help =
            Some("a key may appear once in a mapping; remove or merge the repeated entry".into());
    } else if e.location().is_some() && path.is_none() && ident.is_none() {
        code = "yaml-syntax";
    }
    message = friendly_types(&message);
    let mut d = Diagnostic::error(code, message).at(location);
    d.document = ident;
    d.field = field;
    d.help = help;
    d
}

/// The entry of the sequence at `path` that holds the unknown key `name`, when serde_yaml's
/// path stops at the sequence: inside an internally tagged enum (a provider entry, whose
/// `kind` picks its type) the entry is read whole first, and the index is lost. Among entries
/// with that key, the one on the line serde_yaml points at.
fn entry_with_key(spans: &DocSpans, path: &str, name: &str, at: Pos) -> Option<String> {
    if spans.has(&join(Some(path), name)) {
        return None;
    }
    let entries: Vec<String> = (0..)
        .map(|i| format!("{path}[{i}]"))
        .take_while(|e| spans.has(e))
        .filter(|e| spans.has(&join(Some(e), name)))
        .collect();
    entries
        .iter()
        .find(|e| spans.value(e).line == at.line)
        .or(entries.first())
        .cloned()
}

/// Splits serde_yaml's `path: message` prefix off, when there is one.
fn split_path(text: &str) -> (Option<&str>, &str) {
    if let Some((head, rest)) = text.split_once(": ") {
        let is_path = !head.is_empty()
            && head
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '[' | ']' | '_' | '-'));
        if is_path {
            return (Some(head), rest);
        }
    }
    (None, text)
}

fn join(path: Option<&str>, field: &str) -> String {
    match path {
        Some(p) => format!("{p}.{field}"),
        None => field.to_string(),
    }
}

fn backticked(s: &str) -> Vec<String> {
    s.split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_string)
        .collect()
}

/// serde names Rust types; users think in YAML.
fn friendly_types(message: &str) -> String {
    [
        ("expected u8", "expected a whole number from 0 to 255"),
        ("expected u16", "expected a whole number from 0 to 65535"),
        (
            "expected u32",
            "expected a whole number from 0 to 4294967295",
        ),
        ("expected u64", "expected a non-negative whole number"),
        ("expected i64", "expected a whole number"),
        ("expected a boolean", "expected true or false"),
    ]
    .iter()
    .fold(message.to_string(), |m, (from, to)| m.replace(from, to))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> (Vec<Parsed<'static>>, Vec<String>) {
        // The documents borrow their file for positions; a test's few bytes may stay.
        let file = Box::leak(Box::new(SourceFile {
            path: "devices/x.yaml".into(),
            text: text.into(),
        }));
        let mut out = Parsing::default();
        let mut diags = Vec::new();
        parse_file(file, &Limits::default(), &mut out, &mut diags);
        (out.docs, diags.iter().map(Diagnostic::summary).collect())
    }

    const HEAD: &str = "apiVersion: labctl.dev/v1\nkind: Device\nmetadata:\n  name: harbor\n";

    #[test]
    fn multi_document_file_yields_each_document() {
        let text = format!("{HEAD}spec:\n  type: vm\n  proxmox: {{node: pve-01, vmid: 202}}\n---\n# a comment only\n---\n{HEAD}spec:\n  type: physical\n");
        let (docs, diags) = parse(&text);
        assert_eq!(diags, Vec::<String>::new());
        assert_eq!(docs.len(), 2);
        assert_eq!(docs[1].start.line, 11);
    }

    #[test]
    fn each_document_the_value_does_not_type_is_placed_in_its_own_text() {
        let bad = |cores: &str| format!("{HEAD}spec:\n  type: vm\n  cores: {cores}\n");
        let good = format!("{HEAD}spec:\n  type: iot\n");
        let text = [bad("four"), good.clone(), bad("five"), bad("six"), good].join("---\n");
        let (docs, diags) = parse(&text);
        assert_eq!(docs.len(), 2);
        let at: Vec<&str> = diags
            .iter()
            .map(|d| d.split(": ").next().unwrap())
            .collect();
        assert_eq!(
            at,
            [
                "devices/x.yaml:7:10",
                "devices/x.yaml:22:10",
                "devices/x.yaml:30:10"
            ]
        );
        assert!(diags[2].contains("\"six\""), "{diags:?}");
    }

    #[test]
    fn unknown_field_suggests_the_close_name() {
        let (docs, diags) = parse(&format!("{HEAD}spec:\n  type: vm\n  memoryMb: 4096\n"));
        assert!(docs.is_empty());
        assert_eq!(
            diags,
            vec!["devices/x.yaml:7:3: error[unknown-field]: unknown field `memoryMb` in spec [Device/harbor spec.memoryMb]"]
        );
    }

    #[test]
    fn an_unknown_field_of_a_provider_entry_names_the_entry() {
        // Each provider's settings are their own type, picked by `kind`.
        let text = "apiVersion: labctl.dev/v1\nkind: Config\nmetadata: {name: lab}\nspec:\n  providers:\n    - {name: pve, kind: proxmox, url: \"https://10.0.1.10:8006\"}\n    - name: edge\n      kind: caddy\n      url: http://127.0.0.1:2019\n      writeConfig: true\n";
        let (_, diags) = parse(text);
        let unknown: Vec<&String> = diags
            .iter()
            .filter(|d| d.contains("unknown-field"))
            .collect();
        assert_eq!(
            unknown,
            ["devices/x.yaml:10:7: error[unknown-field]: unknown field `writeConfig` in spec.providers[1] [Config/lab spec.providers[1].writeConfig]"]
        );
    }

    #[test]
    fn wrong_type_names_the_field_and_yaml_type() {
        let (_, diags) = parse(&format!("{HEAD}spec:\n  type: vm\n  cores: four\n"));
        assert_eq!(
            diags,
            vec!["devices/x.yaml:7:10: error[invalid-value]: invalid type: string \"four\", expected a whole number from 0 to 4294967295 [Device/harbor spec.cores]"]
        );
    }

    #[test]
    fn duplicate_keys_are_errors_and_later_documents_still_parse() {
        let text =
            format!("{HEAD}  name: again\nspec:\n  type: iot\n---\n{HEAD}spec:\n  type: iot\n");
        let (docs, diags) = parse(&text);
        assert_eq!(docs.len(), 1);
        assert_eq!(
            diags,
            vec!["devices/x.yaml:5:3: error[duplicate-key]: duplicate key `name` [Device/again metadata.name]"]
        );
    }

    #[test]
    fn unknown_variant_and_kind_get_suggestions() {
        let (_, diags) = parse(&format!("{HEAD}spec:\n  type: vmm\n"));
        assert_eq!(diags.len(), 1);
        assert!(
            diags[0].starts_with("devices/x.yaml:6:9: error[unknown-value]: unknown value `vmm`"),
            "{diags:?}"
        );
        let file = SourceFile {
            path: "x.yaml".into(),
            text: "apiVersion: labctl.dev/v1\nkind: Devcie\nmetadata: {name: a}\nspec: {}\n".into(),
        };
        let (mut out, mut d) = (Parsing::default(), Vec::new());
        parse_file(&file, &Limits::default(), &mut out, &mut d);
        assert_eq!(
            d[0].help.as_deref().unwrap().split('?').next(),
            Some("did you mean `Device`")
        );
        assert_eq!(
            d[0].summary(),
            "x.yaml:2:7: error[unknown-kind]: unknown kind `Devcie` [kind]"
        );
    }

    #[test]
    fn syntax_error_stops_the_file_with_one_error() {
        let (docs, diags) = parse(&format!(
            "{HEAD}spec:\n  type: [vm\n---\n{HEAD}spec: {{type: iot}}\n"
        ));
        assert!(docs.is_empty());
        assert_eq!(diags.len(), 1, "{diags:?}");
        assert!(diags[0].contains("error[yaml-syntax]"), "{diags:?}");
    }

    #[test]
    fn missing_field_points_at_the_parent_key() {
        let (_, diags) = parse(&format!("{HEAD}spec:\n  cores: 2\n"));
        assert_eq!(
            diags,
            vec!["devices/x.yaml:5:1: error[missing-field]: missing field `type` [Device/harbor spec.type]"]
        );
    }

    #[test]
    fn wrong_api_version_is_reported() {
        let (_, diags) =
            parse("apiVersion: v1\nkind: Device\nmetadata: {name: a}\nspec: {type: iot}\n");
        assert_eq!(
            diags,
            vec![
                "devices/x.yaml:1:13: error[api-version]: unsupported apiVersion `v1` [apiVersion]"
            ]
        );
    }
}
