//! Format-preserving edits of YAML text: set or remove one field of one document, remove a
//! whole document. serde_yaml cannot round-trip comments, key order or quoting, so an edit is
//! a text replacement at the span of the value the parser reports, and every edit is checked
//! by parsing the result: the edited document must read as the old one with exactly that
//! field changed, and every other document of the file must read as before. An edit that
//! cannot be made that way is refused with the reason, never approximated.

use serde_json::Value as Json;
use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::{Marker, TScalarStyle};

/// Why an edit was not made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EditError {
    #[error("the file does not parse as YAML: {0}")]
    Syntax(String),
    #[error("no {kind} named {name} in the file")]
    NoDocument { kind: String, name: String },
    #[error("{path}: {why}; the field is left for a person to edit")]
    Unsupported { path: String, why: String },
    /// The text edit did not read back as the intended value: a bug or a construct this
    /// editor does not understand; nothing is written.
    #[error("{path}: the edited text does not read back as intended; nothing was changed")]
    NotFaithful { path: String },
}

/// How a value node is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Style {
    Plain,
    Single,
    Double,
    /// `|` or `>`: not edited in place.
    Block,
    FlowMap,
    FlowSeq,
    BlockMap,
    BlockSeq,
    Alias,
}

impl Style {
    fn is_collection(self) -> bool {
        matches!(
            self,
            Style::FlowMap | Style::FlowSeq | Style::BlockMap | Style::BlockSeq
        )
    }
}

/// One node of a document: where its key and value are in the text (byte offsets).
#[derive(Debug, Clone)]
struct Node {
    path: String,
    /// Key start and end, for a mapping value.
    key: Option<(usize, usize)>,
    start: usize,
    /// One past the value's last byte; `None` when it could not be told (a multi-line plain
    /// scalar, a block scalar, a collection holding one of those).
    end: Option<usize>,
    style: Style,
    /// Inside a flow collection (`{…}`, `[…]`).
    in_flow: bool,
}

#[derive(Debug, Default)]
struct Doc {
    nodes: Vec<Node>,
    kind: Option<String>,
    name: Option<String>,
}

impl Doc {
    fn node(&self, path: &str) -> Option<&Node> {
        self.nodes.iter().find(|n| n.path == path)
    }

    fn children<'a>(&'a self, parent: &'a str) -> impl Iterator<Item = &'a Node> + 'a {
        self.nodes.iter().filter(move |n| {
            n.path
                .strip_prefix(parent)
                .and_then(|rest| rest.strip_prefix('.'))
                .is_some_and(|rest| !rest.contains(['.', '[']))
                && n.key.is_some()
        })
    }
}

enum Frame {
    Map {
        node: usize,
        path: String,
        key: Option<(String, usize, usize)>,
        flow: bool,
    },
    Seq {
        node: usize,
        path: String,
        index: usize,
        flow: bool,
    },
}

struct Walker<'t> {
    text: &'t str,
    /// Byte offset of each character, when the text is not ASCII (markers count characters).
    offsets: Option<Vec<usize>>,
    docs: Vec<Doc>,
    stack: Vec<Frame>,
    /// Largest end of any scalar seen, for the end of block collections.
    last_end: Vec<Option<usize>>,
}

impl<'t> Walker<'t> {
    fn new(text: &'t str) -> Self {
        let offsets = (!text.is_ascii()).then(|| text.char_indices().map(|(i, _)| i).collect());
        Walker {
            text,
            offsets,
            docs: Vec::new(),
            stack: Vec::new(),
            last_end: Vec::new(),
        }
    }

    fn byte(&self, mark: Marker) -> usize {
        match &self.offsets {
            None => mark.index(),
            Some(o) => o.get(mark.index()).copied().unwrap_or(self.text.len()),
        }
    }

    fn in_flow(&self) -> bool {
        matches!(
            self.stack.last(),
            Some(Frame::Map { flow: true, .. } | Frame::Seq { flow: true, .. })
        )
    }

    /// The end of a scalar starting at `start`.
    fn scalar_end(&self, start: usize, value: &str, style: TScalarStyle) -> Option<usize> {
        let rest = &self.text[start..];
        match style {
            TScalarStyle::Plain => rest.starts_with(value).then_some(start + value.len()),
            TScalarStyle::SingleQuoted => {
                let b = rest.as_bytes();
                let mut i = 1;
                while i < b.len() {
                    if b[i] == b'\'' {
                        if b.get(i + 1) == Some(&b'\'') {
                            i += 2;
                            continue;
                        }
                        return Some(start + i + 1);
                    }
                    i += 1;
                }
                None
            }
            TScalarStyle::DoubleQuoted => {
                let b = rest.as_bytes();
                let mut i = 1;
                while i < b.len() {
                    match b[i] {
                        b'\\' => i += 2,
                        b'"' => return Some(start + i + 1),
                        _ => i += 1,
                    }
                }
                None
            }
            _ => None,
        }
    }

    /// Registers a node; `None` when it is a mapping key (then it is remembered as the key).
    fn node(
        &mut self,
        start: usize,
        end: Option<usize>,
        style: Style,
        scalar: Option<&str>,
    ) -> Option<usize> {
        let in_flow = self.in_flow();
        let (path, key) = match self.stack.last_mut() {
            None => (String::new(), None),
            Some(Frame::Map { path, key, .. }) => match key.take() {
                None => {
                    *key = Some((
                        scalar.unwrap_or("?").to_string(),
                        start,
                        end.unwrap_or(start),
                    ));
                    return None;
                }
                Some((k, ks, ke)) => (
                    if path.is_empty() {
                        k
                    } else {
                        format!("{path}.{k}")
                    },
                    Some((ks, ke)),
                ),
            },
            Some(Frame::Seq { path, index, .. }) => {
                let p = format!("{path}[{index}]");
                *index += 1;
                (p, None)
            }
        };
        let doc = self.docs.last_mut()?;
        match (path.as_str(), scalar) {
            ("kind", Some(v)) => doc.kind = Some(v.to_string()),
            ("metadata.name", Some(v)) => doc.name = Some(v.to_string()),
            _ => {}
        }
        doc.nodes.push(Node {
            path,
            key,
            start,
            end,
            style,
            in_flow,
        });
        Some(doc.nodes.len() - 1)
    }

    fn note_end(&mut self, end: Option<usize>) {
        for e in &mut self.last_end {
            *e = match (*e, end) {
                (Some(a), Some(b)) => Some(a.max(b)),
                _ => None,
            };
        }
    }

    fn open(&mut self, mark: Marker, map: bool) {
        let start = self.byte(mark);
        let flow = matches!(self.text.as_bytes().get(start), Some(b'{' | b'['));
        let style = match (map, flow) {
            (true, true) => Style::FlowMap,
            (true, false) => Style::BlockMap,
            (false, true) => Style::FlowSeq,
            (false, false) => Style::BlockSeq,
        };
        let node = self.node(start, None, style, None).unwrap_or(usize::MAX);
        let path = self
            .docs
            .last()
            .and_then(|d| d.nodes.get(node))
            .map_or_else(|| "?".to_string(), |n| n.path.clone());
        self.stack.push(if map {
            Frame::Map {
                node,
                path,
                key: None,
                flow,
            }
        } else {
            Frame::Seq {
                node,
                path,
                index: 0,
                flow,
            }
        });
        self.last_end.push(Some(start));
    }

    fn close(&mut self, mark: Marker) {
        let at = self.byte(mark);
        let Some(frame) = self.stack.pop() else {
            return;
        };
        let inner = self.last_end.pop().flatten();
        let (node, flow) = match frame {
            Frame::Map { node, flow, .. } | Frame::Seq { node, flow, .. } => (node, flow),
        };
        let end = if flow {
            matches!(self.text.as_bytes().get(at), Some(b'}' | b']')).then_some(at + 1)
        } else {
            inner
        };
        if let Some(n) = self.docs.last_mut().and_then(|d| d.nodes.get_mut(node)) {
            n.end = end;
        }
        self.note_end(end);
    }
}

impl MarkedEventReceiver for Walker<'_> {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        match ev {
            Event::DocumentStart => {
                self.docs.push(Doc::default());
                self.stack.clear();
                self.last_end.clear();
            }
            Event::Scalar(value, style, ..) => {
                let start = self.byte(mark);
                let end = self.scalar_end(start, &value, style);
                let s = match style {
                    TScalarStyle::Plain => Style::Plain,
                    TScalarStyle::SingleQuoted => Style::Single,
                    TScalarStyle::DoubleQuoted => Style::Double,
                    _ => Style::Block,
                };
                self.node(start, end, s, Some(&value));
                self.note_end(end);
            }
            Event::Alias(_) => {
                self.node(self.byte(mark), None, Style::Alias, None);
                self.note_end(None);
            }
            Event::MappingStart(..) => self.open(mark, true),
            Event::SequenceStart(..) => self.open(mark, false),
            Event::MappingEnd | Event::SequenceEnd => self.close(mark),
            _ => {}
        }
    }
}

fn walk(text: &str) -> Result<Vec<Doc>, EditError> {
    let mut walker = Walker::new(text);
    Parser::new_from_str(text)
        .load(&mut walker, true)
        .map_err(|e| EditError::Syntax(e.to_string()))?;
    Ok(walker.docs)
}

/// Every document of `text` as JSON, in order.
fn documents(text: &str) -> Result<Vec<Json>, EditError> {
    use serde::Deserialize;
    serde_yaml::Deserializer::from_str(text)
        .map(|d| Json::deserialize(d).map_err(|e| EditError::Syntax(e.to_string())))
        .collect()
}

fn find<'d>(docs: &'d [Doc], kind: &str, name: &str) -> Result<(usize, &'d Doc), EditError> {
    docs.iter()
        .enumerate()
        .find(|(_, d)| d.kind.as_deref() == Some(kind) && d.name.as_deref() == Some(name))
        .ok_or_else(|| EditError::NoDocument {
            kind: kind.into(),
            name: name.into(),
        })
}

/// Sets the field `path` (`spec.ip`, dotted through mappings) of the document `kind`/`name`
/// in `text` to `value`, or removes it for `None`.
pub fn set_field(
    text: &str,
    kind: &str,
    name: &str,
    path: &str,
    value: Option<&Json>,
) -> Result<String, EditError> {
    let docs = walk(text)?;
    let (at, doc) = find(&docs, kind, name)?;
    let unsupported = |why: &str| EditError::Unsupported {
        path: path.into(),
        why: why.into(),
    };
    let edited = match (doc.node(path), value) {
        (Some(node), Some(v)) => replace(text, node, v).ok_or_else(|| {
            unsupported("its value is written in a form this editor does not change in place (a block or multi-line scalar, an alias)")
        })?,
        (Some(node), None) => remove(text, doc, node)
            .ok_or_else(|| unsupported("its extent in the text could not be told"))?,
        (None, Some(v)) => insert(text, doc, path, v)
            .ok_or_else(|| unsupported("the mapping it belongs in could not be extended in place"))?,
        (None, None) => return Ok(text.to_string()),
    };
    // Read back: the document with exactly this change, every other document as it was.
    let mut expected = documents(text)?;
    let Some(target) = expected.get_mut(at) else {
        return Err(EditError::NotFaithful { path: path.into() });
    };
    crate::jsondiff::set_path(target, path, value.cloned());
    if documents(&edited).ok().as_ref() != Some(&expected) {
        return Err(EditError::NotFaithful { path: path.into() });
    }
    Ok(edited)
}

/// Removes the document `kind`/`name` from `text`; `None` when nothing but comments and
/// blank lines would be left (the file is to be deleted).
pub fn remove_document(text: &str, kind: &str, name: &str) -> Result<Option<String>, EditError> {
    swap_document(text, kind, name, None)
}

/// Replaces the document `kind`/`name` of `text` with `new` (one YAML document, its own
/// comments kept); the file's other documents stay byte for byte.
pub fn replace_document(
    text: &str,
    kind: &str,
    name: &str,
    new: &str,
) -> Result<String, EditError> {
    swap_document(text, kind, name, Some(new)).map(Option::unwrap_or_default)
}

/// The document `kind`/`name` of `text` taken out, or replaced by `new`.
fn swap_document(
    text: &str,
    kind: &str,
    name: &str,
    new: Option<&str>,
) -> Result<Option<String>, EditError> {
    let docs = walk(text)?;
    let (at, _) = find(&docs, kind, name)?;
    let unsupported = |why: &str| EditError::Unsupported {
        path: format!("{kind}/{name}"),
        why: why.into(),
    };
    if text.lines().any(|l| l.starts_with("...")) {
        return Err(unsupported("the file uses `...` document end markers"));
    }
    // Chunks between `---` lines; a chunk with no document content (comments only) is not a
    // document of its own.
    let mut chunks: Vec<(usize, usize)> = Vec::new();
    let mut begin = 0;
    let mut offset = 0;
    for line in text.split_inclusive('\n') {
        let marker =
            line.starts_with("---") && line[3..].chars().next().is_none_or(char::is_whitespace);
        if marker && offset > 0 {
            chunks.push((begin, offset));
            begin = offset;
        }
        offset += line.len();
    }
    chunks.push((begin, text.len()));
    let has_content = |s: &str| {
        s.lines().any(|l| {
            let t = l.strip_prefix("---").unwrap_or(l).trim();
            !t.is_empty() && !t.starts_with('#')
        })
    };
    let content: Vec<(usize, usize)> = chunks
        .into_iter()
        .filter(|(b, e)| has_content(&text[*b..*e]))
        .collect();
    if content.len() != docs.len() {
        return Err(unsupported(
            "its documents could not be told apart line by line",
        ));
    }
    let (b, e) = content[at];
    let mut expected = documents(text)?;
    let replacement = match new {
        None => {
            expected.remove(at);
            String::new()
        }
        Some(new) => {
            let parsed = documents(new)?;
            let [doc] = parsed.as_slice() else {
                return Err(unsupported("the replacement is not exactly one document"));
            };
            if doc["kind"] != kind || doc["metadata"]["name"] != name {
                return Err(unsupported("the replacement is another resource"));
            }
            expected[at] = doc.clone();
            let body = new.trim_start_matches("---\n").trim_end();
            let marker = if text[b..e].starts_with("---") {
                "---\n"
            } else {
                ""
            };
            format!("{marker}{body}\n")
        }
    };
    let edited = format!("{}{replacement}{}", &text[..b], &text[e..]);
    if !has_content(&edited) {
        return Ok(None);
    }
    // The first document may have lost its leading `---` to the one removed: harmless.
    if documents(&edited).ok().as_ref() != Some(&expected) {
        return Err(EditError::NotFaithful {
            path: format!("{kind}/{name}"),
        });
    }
    Ok(Some(edited))
}

fn line_start(text: &str, at: usize) -> usize {
    text[..at].rfind('\n').map_or(0, |i| i + 1)
}

fn indent_of(text: &str, at: usize) -> &str {
    let start = line_start(text, at);
    let line = &text[start..];
    &line[..line.len() - line.trim_start_matches(' ').len()]
}

/// After the `:` that follows a key ending at `key_end`.
fn after_colon(text: &str, key_end: usize) -> Option<usize> {
    let rest = &text[key_end..];
    let colon = rest.find(':')?;
    rest[..colon]
        .chars()
        .all(char::is_whitespace)
        .then_some(key_end + colon + 1)
}

fn replace(text: &str, node: &Node, value: &Json) -> Option<String> {
    let end = node.end?;
    let (from, new) = match node.style {
        Style::Plain | Style::Single | Style::Double if !value.is_object() && !value.is_array() => {
            (node.start, scalar(value, node.style, node.in_flow))
        }
        Style::FlowMap | Style::FlowSeq => (node.start, flow(value)),
        _ if node.in_flow => (node.start, flow(value)),
        Style::Plain | Style::Single | Style::Double | Style::BlockMap | Style::BlockSeq => {
            let (_, key_end) = node.key?;
            let colon = after_colon(text, key_end)?;
            let indent = if node.style.is_collection() {
                indent_of(text, node.start).to_string()
            } else {
                format!("{}  ", indent_of(text, key_end))
            };
            (colon, block_value(value, &indent))
        }
        Style::Block | Style::Alias => return None,
    };
    Some(format!("{}{}{}", &text[..from], new, &text[end..]))
}

fn remove(text: &str, doc: &Doc, node: &Node) -> Option<String> {
    let (key_start, _) = node.key?;
    let end = node.end?;
    if node.in_flow {
        // `a: 1, b: 2` → drop `b: 2` with the comma before it, or `a: 1, ` with the one after.
        let after = &text[end..];
        let trimmed = after.trim_start();
        if let Some(rest) = trimmed.strip_prefix(',') {
            let skip = after.len() - rest.trim_start().len();
            return Some(format!("{}{}", &text[..key_start], &text[end + skip..]));
        }
        let before = text[..key_start].trim_end();
        let comma = before.strip_suffix(',')?;
        return Some(format!("{}{}", comma, &text[end..]));
    }
    let line = line_start(text, key_start);
    if !text[line..key_start].trim().is_empty() {
        return None;
    }
    // A block mapping left with no key would read as null, not as an empty mapping.
    let parent = node.path.rsplit_once('.').map_or("", |(p, _)| p);
    if doc.children(parent).count() == 1 {
        return None;
    }
    let stop = text[end..].find('\n').map_or(text.len(), |i| end + i + 1);
    Some(format!("{}{}", &text[..line], &text[stop..]))
}

fn insert(text: &str, doc: &Doc, path: &str, value: &Json) -> Option<String> {
    // The nearest mapping that exists, and what goes into it.
    let mut parent = path;
    let mut nested = value.clone();
    let mut key;
    loop {
        let (p, k) = parent.rsplit_once('.').unwrap_or(("", parent));
        key = k.to_string();
        parent = p;
        if parent.is_empty() || doc.node(parent).is_some() {
            break;
        }
        nested = serde_json::json!({ key.clone(): nested });
    }
    let node = if parent.is_empty() {
        doc.nodes.first()?
    } else {
        doc.node(parent)?
    };
    let end = node.end?;
    let key_text = scalar(&Json::String(key), Style::Plain, true);
    match node.style {
        Style::FlowMap => {
            let close = end - 1;
            let inner = text[node.start + 1..close].trim();
            let sep = if inner.is_empty() { "" } else { ", " };
            let body = text[..close].trim_end();
            Some(format!(
                "{body}{sep}{key_text}: {}{}",
                flow(&nested),
                &text[close..]
            ))
        }
        Style::BlockMap => {
            let first = doc.children(&node.path).next()?;
            let indent = indent_of(text, first.key?.0).to_string();
            let stop = text[end..].find('\n').map_or(text.len(), |i| end + i + 1);
            let newline = if stop == text.len() && !text.ends_with('\n') {
                "\n"
            } else {
                ""
            };
            let line = if nested.is_object() || nested.is_array() {
                format!(
                    "{indent}{key_text}:{}\n",
                    block_value(&nested, &format!("{indent}  "))
                )
            } else {
                format!(
                    "{indent}{key_text}: {}\n",
                    scalar(&nested, Style::Plain, false)
                )
            };
            Some(format!("{}{newline}{line}{}", &text[..stop], &text[stop..]))
        }
        _ => None,
    }
}

/// A collection (or scalar) as the value after `key:`, block style, lines at `indent`.
fn block_value(value: &Json, indent: &str) -> String {
    match value {
        Json::Array(a) if a.is_empty() => " []".into(),
        Json::Object(o) if o.is_empty() => " {}".into(),
        Json::Array(_) | Json::Object(_) => {
            let yaml = serde_yaml::to_string(value).unwrap_or_default();
            yaml.lines().map(|l| format!("\n{indent}{l}")).collect()
        }
        _ => format!(" {}", scalar(value, Style::Plain, false)),
    }
}

/// A value in flow style: `{a: 1, b: [x, y]}`.
fn flow(value: &Json) -> String {
    match value {
        Json::Array(a) => {
            let items: Vec<String> = a.iter().map(flow).collect();
            format!("[{}]", items.join(", "))
        }
        Json::Object(o) => {
            let items: Vec<String> = o
                .iter()
                .map(|(k, v)| {
                    format!(
                        "{}: {}",
                        scalar(&Json::String(k.clone()), Style::Plain, true),
                        flow(v)
                    )
                })
                .collect();
            format!("{{{}}}", items.join(", "))
        }
        _ => scalar(value, Style::Plain, true),
    }
}

/// A scalar in the style the old value had, where that style can hold it; double-quoted
/// otherwise.
fn scalar(value: &Json, style: Style, in_flow: bool) -> String {
    let Json::String(s) = value else {
        return value.to_string();
    };
    let double = || serde_json::to_string(s).unwrap_or_default();
    match style {
        Style::Single if !s.contains(['\n', '\r']) => format!("'{}'", s.replace('\'', "''")),
        Style::Double => double(),
        _ if plain_safe(s, in_flow) => s.clone(),
        _ => double(),
    }
}

/// True when `s` written plain reads back as the same string.
fn plain_safe(s: &str, in_flow: bool) -> bool {
    let Some(first) = s.chars().next() else {
        return false;
    };
    if s.trim() != s
        || s.contains(['\n', '\r', '\t'])
        || s.contains(": ")
        || s.contains(" #")
        || s.ends_with(':')
        || "-?:,[]{}#&*!|>'\"%@`".contains(first)
        || (in_flow && s.contains([',', '[', ']', '{', '}']))
    {
        return false;
    }
    matches!(serde_yaml::from_str::<serde_yaml::Value>(s), Ok(serde_yaml::Value::String(v)) if v == s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const FILE: &str = "\
# yaml-language-server: $schema=../../schemas/dhcpreservation.schema.json
apiVersion: labctl.dev/v1
kind: DhcpReservation
metadata:
  name: whisper   # the speech box
spec:
  subnet: 10.0.1.0/24
  mac: 'aa:bb:cc:dd:ee:01'   # sticker on the case
  ip: 10.0.1.77
  hostname: \"whisper\"
  options:
    - {name: domain-name-servers, data: 10.0.1.1}
---
apiVersion: labctl.dev/v1
kind: DhcpReservation
metadata: {name: printer}
spec: {subnet: 10.0.1.0/24, mac: 'aa:bb:cc:dd:ee:02', ip: 10.0.1.90, hostname: printer}
";

    #[test]
    fn a_scalar_is_replaced_in_its_own_style_and_nothing_else_moves() {
        let out = set_field(
            FILE,
            "DhcpReservation",
            "whisper",
            "spec.ip",
            Some(&json!("10.0.1.78")),
        )
        .unwrap();
        assert_eq!(out, FILE.replace("ip: 10.0.1.77", "ip: 10.0.1.78"));
        let out = set_field(
            FILE,
            "DhcpReservation",
            "whisper",
            "spec.mac",
            Some(&json!("aa:bb:cc:dd:ee:09")),
        )
        .unwrap();
        assert_eq!(
            out,
            FILE.replace("'aa:bb:cc:dd:ee:01'", "'aa:bb:cc:dd:ee:09'")
        );
        let out = set_field(
            FILE,
            "DhcpReservation",
            "whisper",
            "spec.hostname",
            Some(&json!("a \"quoted\" name")),
        )
        .unwrap();
        assert_eq!(out, FILE.replace("\"whisper\"", r#""a \"quoted\" name""#));
        let out = set_field(
            FILE,
            "DhcpReservation",
            "printer",
            "spec.ip",
            Some(&json!("10.0.1.91")),
        )
        .unwrap();
        assert_eq!(out, FILE.replace("ip: 10.0.1.90", "ip: 10.0.1.91"));
    }

    #[test]
    fn a_value_that_would_read_as_another_type_is_quoted() {
        let out = set_field(
            FILE,
            "DhcpReservation",
            "whisper",
            "spec.ip",
            Some(&json!("true")),
        )
        .unwrap();
        assert_eq!(out, FILE.replace("ip: 10.0.1.77", "ip: \"true\""));
    }

    #[test]
    fn a_list_is_rewritten_in_its_own_style() {
        let opts = json!([{"name": "domain-name-servers", "data": "10.0.1.2"}, {"name": "ntp-servers", "data": "10.0.1.3"}]);
        let out = set_field(
            FILE,
            "DhcpReservation",
            "whisper",
            "spec.options",
            Some(&opts),
        )
        .unwrap();
        assert!(out.contains("  options:\n    - data: 10.0.1.2\n      name: domain-name-servers\n    - data: 10.0.1.3\n      name: ntp-servers\n---\n"), "{out}");
        assert!(out.starts_with(&FILE[..FILE.find("  options:").unwrap()]));
    }

    #[test]
    fn fields_are_added_and_removed_in_block_and_flow_mappings() {
        let out = set_field(FILE, "DhcpReservation", "whisper", "spec.options", None).unwrap();
        assert_eq!(
            out,
            FILE.replace(
                "  options:\n    - {name: domain-name-servers, data: 10.0.1.1}\n",
                ""
            )
        );
        let out = set_field(
            FILE,
            "DhcpReservation",
            "printer",
            "spec.options",
            Some(&json!([{"name": "a", "data": "b"}])),
        )
        .unwrap();
        assert!(
            out.ends_with("hostname: printer, options: [{data: b, name: a}]}\n"),
            "{out}"
        );
        let out = set_field(FILE, "DhcpReservation", "printer", "spec.hostname", None).unwrap();
        assert!(out.ends_with("ip: 10.0.1.90}\n"), "{out}");
        let out = set_field(
            FILE,
            "DhcpReservation",
            "whisper",
            "metadata.labels.site",
            Some(&json!("attic")),
        )
        .unwrap();
        assert!(
            out.contains("  name: whisper   # the speech box\n  labels:\n    site: attic\nspec:"),
            "{out}"
        );
    }

    #[test]
    fn a_document_is_removed_with_its_separator() {
        let out = remove_document(FILE, "DhcpReservation", "printer")
            .unwrap()
            .unwrap();
        assert_eq!(out, &FILE[..FILE.find("---").unwrap()]);
        let out = remove_document(FILE, "DhcpReservation", "whisper")
            .unwrap()
            .unwrap();
        assert_eq!(documents(&out).unwrap().len(), 1);
        assert!(out.contains("name: printer"));
        let single = &FILE[..FILE.find("---").unwrap()];
        assert_eq!(
            remove_document(single, "DhcpReservation", "whisper").unwrap(),
            None
        );
    }

    #[test]
    fn a_document_is_replaced_in_place() {
        let new = "kind: DhcpReservation\nmetadata: {name: printer}\nspec: {ip: 10.0.1.98}\n";
        let out = replace_document(FILE, "DhcpReservation", "printer", new).unwrap();
        let split = FILE.find("---").unwrap();
        assert_eq!(out, format!("{}---\n{new}", &FILE[..split]));
        let out = replace_document(FILE, "DhcpReservation", "whisper", new);
        assert!(matches!(out, Err(EditError::Unsupported { .. })), "{out:?}");
        assert!(matches!(
            replace_document(FILE, "DhcpReservation", "printer", "a: 1\n---\nb: 2\n"),
            Err(EditError::Unsupported { .. })
        ));
    }

    #[test]
    fn what_cannot_be_edited_faithfully_is_refused() {
        let text =
            "kind: Device\nmetadata: {name: a}\nspec:\n  note: |\n    two\n    lines\n  x: 1\n";
        assert!(matches!(
            set_field(text, "Device", "a", "spec.note", Some(&json!("one"))),
            Err(EditError::Unsupported { .. })
        ));
        assert!(matches!(
            set_field(text, "Device", "b", "spec.x", Some(&json!(2))),
            Err(EditError::NoDocument { .. })
        ));
        let out = set_field(text, "Device", "a", "spec.x", Some(&json!(2))).unwrap();
        assert_eq!(out, text.replace("x: 1", "x: 2"));
    }
}
