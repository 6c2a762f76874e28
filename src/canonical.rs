//! Canonical JSON — object keys sorted at every level, no whitespace — and SHA-256 hex: the
//! one form in which labctl hashes and stores JSON (content-addressed blobs, Kea's config
//! fingerprint, audit details). Stored hashes depend on this text: it never changes.
//!
//! [`Writer`] builds one body piece by piece, so that a large one (a run's model, its desired
//! state, a provider's resources) is never a whole `serde_json::Value` at once: a value is
//! several times the size of its text.

use std::io::Write;

use serde::Serialize;
use serde_json::Value;
use sha2::{Digest, Sha256};

/// The canonical text of `value`, written straight from it (no sorted copy).
pub fn canonical_json(value: &Value) -> String {
    let mut out = Vec::new();
    write_value(value, &mut out);
    String::from_utf8(out).expect("serde_json writes UTF-8")
}

/// Writes `value`'s canonical text to `out`, which must not fail (memory, a hasher, an
/// in-memory compressor).
pub fn write_value<W: Write + ?Sized>(value: &Value, out: &mut W) {
    fn put<W: Write + ?Sized>(out: &mut W, bytes: &[u8]) {
        out.write_all(bytes)
            .expect("the canonical sink does not fail");
    }
    match value {
        Value::Object(map) => {
            let mut entries: Vec<_> = map.iter().collect();
            entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
            put(out, b"{");
            for (i, (key, item)) in entries.into_iter().enumerate() {
                if i > 0 {
                    put(out, b",");
                }
                serde_json::to_writer(&mut *out, key).expect("a string serialises");
                put(out, b":");
                write_value(item, out);
            }
            put(out, b"}");
        }
        Value::Array(items) => {
            put(out, b"[");
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    put(out, b",");
                }
                write_value(item, out);
            }
            put(out, b"]");
        }
        scalar => serde_json::to_writer(&mut *out, scalar).expect("a scalar serialises"),
    }
}

/// SHA-256 of `bytes` as 64 lowercase hex digits.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

/// `bytes` as lowercase hex digits.
fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut hex, b| {
            let _ = write!(hex, "{b:02x}");
            hex
        })
}

/// A sink that only hashes: the address of a text not kept.
#[derive(Debug, Default)]
pub struct Sha256Sink(Sha256);

impl Sha256Sink {
    /// SHA-256 of everything written, as 64 lowercase hex digits.
    pub fn hex(self) -> String {
        hex(&self.0.finalize())
    }
}

impl Write for Sha256Sink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.update(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Canonical JSON written piece by piece into `W` (by default memory; the store's blobs
/// hash and compress it as it comes, so a large body never exists as text either): objects
/// and arrays opened and closed by the caller, each item serialised (through a `Value` of that
/// item only) as it comes. The caller gives an object's keys in sorted order, which is
/// checked.
#[derive(Debug, Default)]
pub struct Writer<W: Write = Vec<u8>> {
    out: W,
    /// Per open object or array: items written so far, and an object's last key.
    open: Vec<(usize, Option<String>)>,
    after_key: bool,
}

impl Writer {
    pub fn new() -> Writer {
        Writer::default()
    }

    /// The text written; every object and array must be closed.
    pub fn finish(self) -> String {
        String::from_utf8(self.into_inner()).expect("serde_json writes UTF-8")
    }
}

impl<W: Write> Writer<W> {
    /// A writer into `out`, which must not fail.
    pub fn to(out: W) -> Writer<W> {
        Writer {
            out,
            open: Vec::new(),
            after_key: false,
        }
    }

    /// The sink, once every object and array is closed.
    pub fn into_inner(self) -> W {
        assert!(self.open.is_empty(), "every begin has its end");
        self.out
    }

    fn put(&mut self, bytes: &[u8]) {
        self.out
            .write_all(bytes)
            .expect("the canonical sink does not fail");
    }

    /// Before a value: a comma after an earlier array item; nothing after a key.
    fn separate(&mut self) {
        if std::mem::take(&mut self.after_key) {
            return;
        }
        self.next_item();
    }

    /// Counts one more item of the open object or array, with a comma after an earlier one.
    fn next_item(&mut self) {
        if let Some((items, _)) = self.open.last_mut() {
            let first = *items == 0;
            *items += 1;
            if !first {
                self.put(b",");
            }
        }
    }

    pub fn begin_object(&mut self) {
        self.separate();
        self.put(b"{");
        self.open.push((0, Some(String::new())));
    }

    pub fn begin_array(&mut self) {
        self.separate();
        self.put(b"[");
        self.open.push((0, None));
    }

    /// Closes the innermost object or array.
    pub fn end(&mut self) {
        let (_, key) = self.open.pop().expect("end() matches a begin");
        self.put(if key.is_some() { b"}" } else { b"]" });
    }

    /// The next key of the open object: after every key given before it.
    pub fn key(&mut self, key: &str) {
        let (items, last) = self.open.last_mut().expect("key() inside an object");
        let last = last.as_mut().expect("key() inside an object, not an array");
        assert!(
            *items == 0 || last.as_str() < key,
            "canonical keys in order: {key:?} after {last:?}"
        );
        key.clone_into(last);
        self.next_item();
        serde_json::to_writer(&mut self.out, key).expect("a string serialises");
        self.put(b":");
        self.after_key = true;
    }

    pub fn value(&mut self, value: &Value) {
        self.separate();
        write_value(value, &mut self.out);
    }

    /// A value whose text is canonical already (made by [`canonical_json`]): written as it is.
    pub fn canonical(&mut self, text: &str) {
        self.separate();
        self.put(text.as_bytes());
    }

    /// One item as `serde_json` would make it a value (only plain data, string-keyed maps).
    pub fn serialize<T: Serialize + ?Sized>(&mut self, item: &T) {
        let value = serde_json::to_value(item).expect("plain data serialises to JSON");
        self.value(&value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// The first implementation: a sorted copy, printed. Stored hashes depend on this text.
    fn reference(value: &Value) -> String {
        fn sorted(value: &Value) -> Value {
            match value {
                Value::Object(map) => {
                    let mut entries: Vec<_> = map.iter().collect();
                    entries.sort_by(|a, b| a.0.cmp(b.0));
                    Value::Object(
                        entries
                            .into_iter()
                            .map(|(k, v)| (k.clone(), sorted(v)))
                            .collect(),
                    )
                }
                Value::Array(items) => Value::Array(items.iter().map(sorted).collect()),
                other => other.clone(),
            }
        }
        sorted(value).to_string()
    }

    #[test]
    fn canonical_json_is_unchanged() {
        let doc = json!({
            "z": [1, -2.5, 1e300, null, true, false, "é\"\\\n\u{1}"],
            "a": {"y\"": {}, "x": [], "b": [{"d": 1, "c": 2}]},
            "": "",
            "Z": 18446744073709551615u64,
        });
        for value in [
            doc.clone(),
            json!([doc]),
            json!("x"),
            json!(null),
            json!({}),
        ] {
            assert_eq!(canonical_json(&value), reference(&value));
        }
        assert_eq!(
            canonical_json(&json!({"b": 1, "a": [{"d": 1, "c": 2}]})),
            r#"{"a":[{"c":2,"d":1}],"b":1}"#
        );
    }

    #[test]
    fn the_writer_writes_what_the_whole_value_would_give() {
        let items = [json!({"b": [1, {}], "a": null}), json!([]), json!("x\"")];
        let mut w = Writer::new();
        w.begin_object();
        w.key("");
        w.begin_array();
        w.end();
        w.key("a");
        w.begin_array();
        for item in &items {
            w.serialize(item);
        }
        w.begin_object();
        w.end();
        w.end();
        w.key("b");
        w.begin_object();
        w.key("c");
        w.value(&json!(1));
        w.end();
        w.key("z");
        w.serialize(&Some(2));
        w.end();
        let whole = json!({"z": 2, "b": {"c": 1}, "a": [items[0], items[1], items[2], {}], "": []});
        assert_eq!(w.finish(), canonical_json(&whole));
    }

    #[test]
    #[should_panic(expected = "canonical keys in order")]
    fn keys_out_of_order_are_refused() {
        let mut w = Writer::new();
        w.begin_object();
        w.key("b");
        w.key("a");
    }

    #[test]
    fn a_value_hashes_as_its_canonical_text() {
        let value = json!({"b": [1, {"d": null, "c": "é"}], "a": 2.5});
        let mut sink = Sha256Sink::default();
        write_value(&value, &mut sink);
        assert_eq!(sink.hex(), sha256_hex(canonical_json(&value).as_bytes()));
    }

    #[test]
    fn sha256_of_nothing() {
        assert_eq!(
            sha256_hex(b""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }
}
