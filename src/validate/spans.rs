//! A position index over YAML documents: field path (`spec.interfaces[0].ip`, the same
//! notation serde_yaml uses in its errors) → line and column of the key and of the value.
//!
//! serde_yaml reports where a *failed* deserialisation happened, but cross-document checks run
//! on values that parsed fine and still need to point at their exact line.

use std::collections::HashMap;

use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::Marker;

/// A 1-based line and column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Pos {
    pub line: usize,
    pub column: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FieldPos {
    key: Option<Pos>,
    value: Pos,
}

/// Positions within one YAML document.
#[derive(Debug, Clone, Default)]
pub struct DocSpans {
    /// Where the document's content starts.
    pub start: Pos,
    fields: HashMap<String, FieldPos>,
    /// `kind` and `metadata.name` as written, so a document that serde_yaml cannot read is
    /// still known by name.
    kind: Option<String>,
    name: Option<String>,
}

impl DocSpans {
    /// Position of the value at `path`, or of its nearest ancestor that exists (a missing
    /// optional field is reported where its parent is), or the document start.
    pub fn value(&self, path: &str) -> Pos {
        self.lookup(path).map(|f| f.value).unwrap_or(self.start)
    }

    /// Position of the key of `path` (for "unknown field" and "duplicate" errors), falling back
    /// like [`DocSpans::value`].
    pub fn key(&self, path: &str) -> Pos {
        self.lookup(path)
            .map(|f| f.key.unwrap_or(f.value))
            .unwrap_or(self.start)
    }

    /// The document's `kind` and `metadata.name` scalars, as written.
    pub fn identity(&self) -> (Option<&str>, Option<&str>) {
        (self.kind.as_deref(), self.name.as_deref())
    }

    /// True if `path` itself is present in the document.
    pub fn has(&self, path: &str) -> bool {
        self.fields.contains_key(path)
    }

    fn lookup(&self, path: &str) -> Option<&FieldPos> {
        let mut p = path;
        loop {
            if let Some(f) = self.fields.get(p) {
                return Some(f);
            }
            let cut = p.rfind(['.', '['])?;
            p = &p[..cut];
        }
    }
}

enum Frame {
    Map {
        path: String,
        key: Option<(String, Pos)>,
    },
    Seq {
        path: String,
        index: usize,
    },
}

#[derive(Default)]
struct Indexer {
    docs: Vec<DocSpans>,
    stack: Vec<Frame>,
    doc_open: bool,
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
        let parent = match self.stack.last() {
            None => {
                if doc.start == Pos::default() || here < doc.start {
                    doc.start = here;
                }
                return;
            }
            Some(Frame::Map { path, .. }) | Some(Frame::Seq { path, .. }) => path,
        };
        if let Some(field) = doc.fields.get_mut(parent) {
            if here < field.value {
                field.value = here;
            }
        }
        if parent.is_empty() && here < doc.start {
            doc.start = here;
        }
    }

    /// Handles a node (scalar, alias or collection start); returns the node's path if it is a
    /// value, `None` if it was a mapping key.
    fn node(&mut self, mark: Marker, scalar: Option<&str>) -> Option<String> {
        let here = pos(mark);
        self.lower_parent_start(here);
        let (path, key_pos) = match self.stack.last_mut() {
            None => (String::new(), None),
            Some(Frame::Map { path, key }) => match key.take() {
                None => {
                    // A key: complex keys are rare in documents and are indexed as `?`.
                    *key = Some((scalar.unwrap_or("?").to_string(), here));
                    return None;
                }
                Some((k, kpos)) => (join(path, &k), Some(kpos)),
            },
            Some(Frame::Seq { path, index }) => {
                let p = format!("{path}[{index}]");
                *index += 1;
                (p, None)
            }
        };
        if let Some(doc) = self.docs.last_mut() {
            match (path.as_str(), scalar) {
                ("kind", Some(v)) => doc.kind = Some(v.to_string()),
                ("metadata.name", Some(v)) => doc.name = Some(v.to_string()),
                _ => {}
            }
            doc.fields.insert(
                path.clone(),
                FieldPos {
                    key: key_pos,
                    value: here,
                },
            );
        }
        Some(path)
    }
}

impl MarkedEventReceiver for Indexer {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        match ev {
            Event::DocumentStart => {
                self.docs.push(DocSpans::default());
                self.doc_open = true;
                self.stack.clear();
            }
            Event::DocumentEnd => self.doc_open = false,
            Event::Scalar(value, ..) => {
                self.node(mark, Some(&value));
            }
            Event::Alias(_) => {
                self.node(mark, None);
            }
            Event::MappingStart(..) => {
                // A mapping used as a key is indexed under `?`; its content is not addressable.
                let path = self.node(mark, None).unwrap_or_else(|| "?".into());
                self.stack.push(Frame::Map { path, key: None });
            }
            Event::SequenceStart(..) => {
                let path = self.node(mark, None).unwrap_or_else(|| "?".into());
                self.stack.push(Frame::Seq { path, index: 0 });
            }
            Event::MappingEnd | Event::SequenceEnd => {
                self.stack.pop();
            }
            Event::Nothing | Event::StreamStart | Event::StreamEnd => {}
        }
    }
}

/// Indexes every document of `text`. On a syntax error, returns the documents indexed so far:
/// the syntax error itself is reported from serde_yaml's parse, which is authoritative.
pub fn index(text: &str) -> Vec<DocSpans> {
    let mut indexer = Indexer::default();
    let mut parser = Parser::new_from_str(text);
    let _ = parser.load(&mut indexer, true);
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
        let docs = index(TEXT);
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

    #[test]
    fn missing_path_falls_back_to_nearest_ancestor() {
        let docs = index(TEXT);
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
