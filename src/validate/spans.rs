//! A position index over YAML documents: field path (`spec.interfaces[0].ip`, the same
//! notation serde_yaml uses in its errors) → line and column of the key and of the value.
//!
//! serde_yaml reports where a *failed* deserialisation happened, but cross-document checks run
//! on values that parsed fine and still need to point at their exact line.

use std::cell::OnceCell;
use std::rc::Rc;

use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::Marker;

/// A 1-based line and column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Pos {
    pub line: usize,
    pub column: usize,
}

/// A [`Pos`] as stored: half the size, and the index holds one per key and value of every
/// document (a file past 4 billion lines is refused long before, by the size limit).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
struct Packed {
    line: u32,
    column: u32,
}

impl From<Pos> for Packed {
    fn from(p: Pos) -> Self {
        let narrow = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
        Packed {
            line: narrow(p.line),
            column: narrow(p.column),
        }
    }
}

impl From<Packed> for Pos {
    fn from(p: Packed) -> Self {
        Pos {
            line: p.line as usize,
            column: p.column as usize,
        }
    }
}

/// One field: its path is `paths[at..at + len]` of its document.
#[derive(Debug, Clone, Copy)]
struct Field {
    at: u32,
    len: u32,
    key: Option<Packed>,
    value: Packed,
}

/// Positions within one YAML document.
///
/// Kept for every document until validation ends, so it is compact: the field paths of a
/// document share one string, and the fields are a sorted list searched by path (a map of
/// owned paths cost about ten times the document's text).
#[derive(Debug, Clone, Default)]
pub struct DocSpans {
    /// Where the document's content starts.
    pub start: Pos,
    paths: String,
    /// Sorted by path once the document is indexed; a repeated key keeps its last position.
    fields: Vec<Field>,
    /// `kind` and `metadata.name` as written, so a document that serde_yaml cannot read is
    /// still known by name.
    kind: Option<String>,
    name: Option<String>,
}

impl DocSpans {
    /// Position of the value at `path`, or of its nearest ancestor that exists (a missing
    /// optional field is reported where its parent is), or the document start.
    pub fn value(&self, path: &str) -> Pos {
        self.lookup(path)
            .map(|f| f.value.into())
            .unwrap_or(self.start)
    }

    /// Position of the key of `path` (for "unknown field" and "duplicate" errors), falling back
    /// like [`DocSpans::value`].
    pub fn key(&self, path: &str) -> Pos {
        self.lookup(path)
            .map(|f| f.key.unwrap_or(f.value).into())
            .unwrap_or(self.start)
    }

    /// The document's `kind` and `metadata.name` scalars, as written.
    pub fn identity(&self) -> (Option<&str>, Option<&str>) {
        (self.kind.as_deref(), self.name.as_deref())
    }

    /// True if `path` itself is present in the document.
    pub fn has(&self, path: &str) -> bool {
        self.find(path).is_some()
    }

    fn path_of(&self, f: &Field) -> &str {
        &self.paths[f.at as usize..(f.at + f.len) as usize]
    }

    fn find(&self, path: &str) -> Option<&Field> {
        self.fields
            .binary_search_by(|f| self.path_of(f).cmp(path))
            .ok()
            .map(|i| &self.fields[i])
    }

    fn lookup(&self, path: &str) -> Option<&Field> {
        let mut p = path;
        loop {
            if let Some(f) = self.find(p) {
                return Some(f);
            }
            let cut = p.rfind(['.', '['])?;
            p = &p[..cut];
        }
    }

    /// Adds a field while indexing; returns its index (for [`Indexer::lower_parent_start`]).
    fn push(&mut self, path: &str, key: Option<Pos>, value: Pos) -> usize {
        let narrow = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
        self.fields.push(Field {
            at: narrow(self.paths.len()),
            len: narrow(path.len()),
            key: key.map(Packed::from),
            value: value.into(),
        });
        self.paths.push_str(path);
        self.fields.len() - 1
    }

    /// Sorts the fields for lookup; of a repeated path the last occurrence stays (the
    /// repeated key is the one a duplicate-key error points at).
    fn finish(&mut self) {
        let mut fields = std::mem::take(&mut self.fields);
        fields.sort_by(|a, b| self.path_of(a).cmp(self.path_of(b)));
        let mut kept: Vec<Field> = Vec::with_capacity(fields.len());
        for f in fields {
            match kept.last_mut() {
                Some(last) if self.path_of(last) == self.path_of(&f) => *last = f,
                _ => kept.push(f),
            }
        }
        kept.shrink_to_fit();
        self.fields = kept;
        self.paths.shrink_to_fit();
    }
}

/// An open collection: its path and the index of its own field (`None` for the document).
enum Frame {
    Map {
        path: String,
        field: Option<usize>,
        key: Option<(String, Pos)>,
    },
    Seq {
        path: String,
        field: Option<usize>,
        index: usize,
    },
}

#[derive(Default)]
struct Indexer {
    docs: Vec<DocSpans>,
    stack: Vec<Frame>,
    doc_open: bool,
    /// Documents past this many are not indexed.
    max_docs: usize,
    /// Events of documents past `max_docs` are ignored.
    full: bool,
}

fn pos(mark: Marker) -> Pos {
    // yaml-rust2 counts lines from 1 and columns from 0.
    Pos {
        line: mark.line(),
        column: mark.col() + 1,
    }
}

fn join(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_string()
    } else {
        format!("{parent}.{key}")
    }
}

impl Indexer {
    /// yaml-rust2 marks a block collection's start after its first key, so a collection (and
    /// the document) is taken to start at its earliest child.
    fn lower_parent_start(&mut self, here: Pos) {
        let Some(doc) = self.docs.last_mut() else {
            return;
        };
        let (parent, field) = match self.stack.last() {
            None => {
                if doc.start == Pos::default() || here < doc.start {
                    doc.start = here;
                }
                return;
            }
            Some(Frame::Map { path, field, .. }) | Some(Frame::Seq { path, field, .. }) => {
                (path, *field)
            }
        };
        if let Some(f) = field.and_then(|i| doc.fields.get_mut(i)) {
            let here = Packed::from(here);
            if here < f.value {
                f.value = here;
            }
        }
        if parent.is_empty() && here < doc.start {
            doc.start = here;
        }
    }

    /// Handles a node (scalar, alias or collection start); returns the node's path and the
    /// index of its field if it is a value, `None` if it was a mapping key.
    fn node(&mut self, mark: Marker, scalar: Option<&str>) -> Option<(String, Option<usize>)> {
        let here = pos(mark);
        self.lower_parent_start(here);
        let (path, key_pos) = match self.stack.last_mut() {
            None => (String::new(), None),
            Some(Frame::Map { path, key, .. }) => match key.take() {
                None => {
                    // A key: complex keys are rare in documents and are indexed as `?`.
                    *key = Some((scalar.unwrap_or("?").to_string(), here));
                    return None;
                }
                Some((k, kpos)) => (join(path, &k), Some(kpos)),
            },
            Some(Frame::Seq { path, index, .. }) => {
                let p = format!("{path}[{index}]");
                *index += 1;
                (p, None)
            }
        };
        let field = self.docs.last_mut().map(|doc| {
            match (path.as_str(), scalar) {
                ("kind", Some(v)) => doc.kind = Some(v.to_string()),
                ("metadata.name", Some(v)) => doc.name = Some(v.to_string()),
                _ => {}
            }
            doc.push(&path, key_pos, here)
        });
        Some((path, field))
    }
}

impl MarkedEventReceiver for Indexer {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        if self.full && !matches!(ev, Event::DocumentStart) {
            return;
        }
        match ev {
            Event::DocumentStart => {
                self.full = self.docs.len() >= self.max_docs;
                if self.full {
                    return;
                }
                self.docs.push(DocSpans::default());
                self.doc_open = true;
                self.stack.clear();
            }
            Event::DocumentEnd => {
                self.doc_open = false;
                if let Some(doc) = self.docs.last_mut() {
                    doc.finish();
                }
            }
            Event::Scalar(value, ..) => {
                self.node(mark, Some(&value));
            }
            Event::Alias(_) => {
                self.node(mark, None);
            }
            Event::MappingStart(..) => {
                // A mapping used as a key is indexed under `?`; its content is not addressable.
                let (path, field) = self.node(mark, None).unwrap_or_else(|| ("?".into(), None));
                self.stack.push(Frame::Map {
                    path,
                    field,
                    key: None,
                });
            }
            Event::SequenceStart(..) => {
                let (path, field) = self.node(mark, None).unwrap_or_else(|| ("?".into(), None));
                self.stack.push(Frame::Seq {
                    path,
                    field,
                    index: 0,
                });
            }
            Event::MappingEnd | Event::SequenceEnd => {
                self.stack.pop();
            }
            Event::Nothing | Event::StreamStart | Event::StreamEnd => {}
        }
    }
}

/// The position index of one file, built the first time a position in it is asked for. A
/// document that passes every check needs none (its start comes from [`starts`]), and the index
/// is a second full scan of the text: it was a quarter of validation's time and the largest
/// thing validation held.
#[derive(Debug)]
pub struct FileSpans<'t> {
    text: &'t str,
    max_docs: usize,
    docs: OnceCell<Vec<DocSpans>>,
}

impl<'t> FileSpans<'t> {
    /// The index of the first `max_docs` documents of `text`, not built yet.
    pub fn new(text: &'t str, max_docs: usize) -> Rc<Self> {
        Rc::new(FileSpans {
            text,
            max_docs,
            docs: OnceCell::new(),
        })
    }

    /// The positions in document `i` (none, for a document past the index).
    pub fn doc(&self, i: usize) -> &DocSpans {
        self.docs
            .get_or_init(|| index(self.text, self.max_docs))
            .get(i)
            .unwrap_or(&NO_SPANS)
    }
}

/// One document of a file whose index is built on demand.
#[derive(Debug, Clone)]
pub struct DocAt<'t> {
    pub file: Rc<FileSpans<'t>>,
    pub index: usize,
}

impl DocAt<'_> {
    /// The document's positions; the first call on a file indexes the whole file.
    pub fn spans(&self) -> &DocSpans {
        self.file.doc(self.index)
    }
}

static NO_SPANS: DocSpans = DocSpans {
    start: Pos { line: 0, column: 0 },
    paths: String::new(),
    fields: Vec::new(),
    kind: None,
    name: None,
};

/// Where each document of `text` starts, read from its lines alone: one entry per document,
/// `None` for an empty one. This answers only for the plain shape that labctl writes and
/// documents: documents separated by bare `---` lines (a comment may follow), each starting
/// with a plain key in the first column, lines ending in LF or CRLF. Anything else (a
/// directive, `...`, content on a `---` line, a document that starts indented or with a quote,
/// flow or sequence, other line breaks, a byte-order mark) gives `None`, and the caller asks
/// the full index. The caller also checks that the documents counted here are the ones the
/// YAML parser read.
pub fn starts(text: &str) -> Option<Vec<Option<Pos>>> {
    const BREAKS: [char; 3] = ['\u{85}', '\u{2028}', '\u{2029}'];
    let marker = |line: &str, m: &str| {
        line.starts_with(m) && matches!(line.as_bytes().get(3), None | Some(b' ' | b'\t'))
    };
    let mut docs: Vec<Option<Pos>> = Vec::new();
    for (n, line) in text.split('\n').enumerate() {
        let line = line.strip_suffix('\r').unwrap_or(line);
        let odd = !line.is_ascii() && (line.starts_with('\u{feff}') || line.contains(BREAKS));
        if odd || line.contains('\r') {
            return None;
        }
        if marker(line, "---") {
            let rest = line[3..].trim_start_matches([' ', '\t']);
            if !(rest.is_empty() || rest.starts_with('#')) {
                return None;
            }
            docs.push(None);
            continue;
        }
        if marker(line, "...") || line.starts_with('%') {
            return None;
        }
        let content = line.trim_start_matches([' ', '\t']);
        if content.is_empty() || content.starts_with('#') {
            continue;
        }
        if docs.is_empty() {
            docs.push(None);
        }
        let start = docs.last_mut().expect("a document is open");
        if start.is_none() {
            if !line.as_bytes()[0].is_ascii_alphanumeric() {
                return None;
            }
            *start = Some(Pos {
                line: n + 1,
                column: 1,
            });
        }
    }
    Some(docs)
}

/// Indexes the first `max_docs` documents of `text`. On a syntax error, returns the documents
/// indexed so far: the syntax error itself is reported from serde_yaml's parse, which is
/// authoritative.
pub fn index(text: &str, max_docs: usize) -> Vec<DocSpans> {
    let mut indexer = Indexer {
        max_docs,
        ..Indexer::default()
    };
    let mut parser = Parser::new_from_str(text);
    let _ = parser.load(&mut indexer, true);
    // A document cut short by a syntax error has no end event.
    if indexer.doc_open {
        if let Some(doc) = indexer.docs.last_mut() {
            doc.finish();
        }
    }
    indexer.docs
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "\
apiVersion: labctl.dev/v1
kind: Device
metadata:
  name: harbor
spec:
  interfaces:
    - name: net0
      ip: 10.0.1.202
    - name: net1
      ip: 10.0.2.202
---
kind: Pool
spec: {parent: homelab, type: compute}
";

    #[test]
    fn indexes_nested_paths_in_every_document() {
        let docs = index(TEXT, usize::MAX);
        assert_eq!(docs.len(), 2);
        assert_eq!(docs[0].value("metadata.name"), Pos { line: 4, column: 9 });
        assert_eq!(docs[0].key("metadata.name"), Pos { line: 4, column: 3 });
        assert_eq!(
            docs[0].value("spec.interfaces[1].ip"),
            Pos {
                line: 10,
                column: 11
            }
        );
        assert_eq!(
            docs[1].value("spec.parent"),
            Pos {
                line: 13,
                column: 16
            }
        );
        assert_eq!(
            docs[1].start,
            Pos {
                line: 12,
                column: 1
            }
        );
    }

    /// The line scan either declines or names the starts the full index finds, document for
    /// document: on edge cases, and on every YAML file of the example repository and the tests.
    #[test]
    fn starts_from_lines_agree_with_the_index_or_decline() {
        let edge = [
            "# c\napiVersion: x\nkind: Pool\n",
            "---\nkind: Pool\n---\n# only a comment\n---\nkind: Device\n",
            "kind: Pool\n---\n",
            "kind: Pool\r\n---\r\n\r\nkind: Device\r\n",
            "--- # first\n\n  # indented comment\nkind: Pool\n",
            "kind: Pool\ndesc: |\n  ---\n  text\n---\nkind: Device\n",
            "kind: Pool\nnote: >-\n  a\n\n--- \nkind: Device\n",
            "---\n---\nkind: Pool\n",
            "--- {kind: Pool}\n",
            "%YAML 1.2\n---\nkind: Pool\n",
            "kind: Pool\n...\n---\nkind: Device\n",
            "  kind: Pool\n  spec: {}\n",
            "\"kind\": Pool\n",
            "kind: Pool\rkind: Device\n",
            "\u{feff}kind: Pool\n",
            "kind: Pool\u{2028}kind: Device\n",
            "- a\n- b\n",
        ];
        let mut texts: Vec<String> = edge.iter().map(|s| s.to_string()).collect();
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let mut dirs = vec![root.join("repo-layout"), root.join("tests")];
        while let Some(dir) = dirs.pop() {
            for entry in std::fs::read_dir(&dir).unwrap().flatten() {
                let path = entry.path();
                if path.is_dir() {
                    dirs.push(path);
                } else if path.extension().is_some_and(|e| e == "yaml" || e == "yml") {
                    texts.push(std::fs::read_to_string(&path).unwrap());
                }
            }
        }
        assert!(texts.len() > 30, "the repository's YAML files were found");
        let mut answered = 0;
        for text in &texts {
            let Some(quick) = starts(text) else { continue };
            answered += 1;
            let full = index(text, usize::MAX);
            assert_eq!(quick.len(), full.len(), "{text:?}");
            for (q, f) in quick.iter().zip(&full) {
                if let Some(q) = q {
                    assert_eq!(*q, f.start, "{text:?}");
                }
            }
        }
        // The plain shapes are answered from their lines; the rest is declined.
        assert!(answered > texts.len() / 2, "{answered} of {}", texts.len());
        for declined in &edge[8..] {
            assert_eq!(starts(declined), None, "{declined:?}");
        }
        assert_eq!(starts(TEXT).unwrap().len(), 2);
    }

    #[test]
    fn missing_path_falls_back_to_nearest_ancestor() {
        let docs = index(TEXT, usize::MAX);
        assert_eq!(
            docs[0].value("spec.interfaces[0].mac"),
            docs[0].value("spec.interfaces[0]")
        );
        assert_eq!(
            docs[0].value("spec.interfaces[0]"),
            Pos { line: 7, column: 7 }
        );
        assert!(!docs[0].has("spec.pool"));
    }
}
