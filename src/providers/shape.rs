//! Reading a provider's JSON answer by its shape. A value of another type than the API
//! documents is a [`ShapeError`] naming where it was found ("Kea config-get:
//! Dhcp4.subnet4[2].reservations is a string, expected an array"), never skipped: skipping
//! what cannot be read turns a lying or broken answer into an empty lab, whose resources would
//! then be "missing" and rebuilt.

use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;
use serde_json::{Map, Value as Json};

use super::ProviderError;

/// A part of a provider's answer whose shape labctl does not understand.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{answer}: {path} {problem}")]
pub struct ShapeError {
    /// Which answer ("Kea config-get", "Proxmox VE /nodes").
    pub answer: String,
    /// Where in it, as a path from its root (`Dhcp4.subnet4[2].reservations`).
    pub path: String,
    /// What is wrong there ("is a string, expected an array").
    pub problem: String,
}

impl ShapeError {
    /// As the error of `provider` at `url`: the provider's resources become unknown.
    pub(crate) fn into_provider_error(self, provider: &str, url: &str) -> ProviderError {
        ProviderError::BadResponse {
            provider: provider.to_string(),
            url: url.to_string(),
            detail: self.to_string(),
            source: Some(std::sync::Arc::new(self)),
        }
    }
}

/// A value of a provider's answer and the path that leads to it.
#[derive(Debug, Clone)]
pub(crate) struct At<'a> {
    answer: &'a str,
    path: String,
    value: &'a Json,
}

impl<'a> At<'a> {
    /// The root `value` of `answer`, shown in paths as `root` (`Dhcp4`; `` for none).
    pub(crate) fn root(answer: &'a str, root: &str, value: &'a Json) -> Self {
        At {
            answer,
            path: root.to_string(),
            value,
        }
    }

    pub(crate) fn value(&self) -> &'a Json {
        self.value
    }

    /// An error at this value: `problem` says what is wrong with it.
    pub(crate) fn error(&self, problem: impl Into<String>) -> ShapeError {
        error_at(self.answer, &self.path, problem)
    }

    fn wrong(&self, expected: &str) -> ShapeError {
        self.error(format!("is {}, expected {expected}", type_name(self.value)))
    }

    /// The value as an object.
    pub(crate) fn object(&self) -> Result<&'a Map<String, Json>, ShapeError> {
        self.value
            .as_object()
            .ok_or_else(|| self.wrong("an object"))
    }

    /// Member `key` of this object, `None` when absent. This value must be an object.
    pub(crate) fn get(&self, key: &str) -> Result<Option<At<'a>>, ShapeError> {
        Ok(self.object()?.get(key).map(|value| self.child(key, value)))
    }

    /// Member `key` of this object, which must be there.
    pub(crate) fn req(&self, key: &str) -> Result<At<'a>, ShapeError> {
        self.get(key)?
            .ok_or_else(|| self.child(key, self.value).error("is missing"))
    }

    /// Member `key` as a string, `None` when absent.
    pub(crate) fn opt_str(&self, key: &str) -> Result<Option<&'a str>, ShapeError> {
        self.get(key)?.map(|v| v.str()).transpose()
    }

    /// The elements of member `key`, an array; none when it is absent.
    pub(crate) fn opt_items(&self, key: &str) -> Result<Vec<At<'a>>, ShapeError> {
        match self.get(key)? {
            Some(list) => Ok(list.items()?.collect()),
            None => Ok(Vec::new()),
        }
    }

    /// Member `key` as an array of strings; none when it is absent.
    pub(crate) fn opt_strings(&self, key: &str) -> Result<Vec<&'a str>, ShapeError> {
        self.opt_items(key)?.iter().map(At::str).collect()
    }

    /// The elements of this array.
    pub(crate) fn items(&self) -> Result<impl Iterator<Item = At<'a>> + '_, ShapeError> {
        let list = self
            .value
            .as_array()
            .ok_or_else(|| self.wrong("an array"))?;
        Ok(list.iter().enumerate().map(move |(i, value)| At {
            answer: self.answer,
            path: format!("{}[{i}]", self.path),
            value,
        }))
    }

    /// The value as a string.
    pub(crate) fn str(&self) -> Result<&'a str, ShapeError> {
        self.value.as_str().ok_or_else(|| self.wrong("a string"))
    }

    /// The value as a boolean.
    pub(crate) fn bool(&self) -> Result<bool, ShapeError> {
        self.value.as_bool().ok_or_else(|| self.wrong("a boolean"))
    }

    /// The value as an integer.
    pub(crate) fn i64(&self) -> Result<i64, ShapeError> {
        self.value.as_i64().ok_or_else(|| self.wrong("an integer"))
    }

    fn child(&self, key: &str, value: &'a Json) -> At<'a> {
        At {
            answer: self.answer,
            path: child_path(&self.path, key),
            value,
        }
    }
}

/// A value of a large answer kept as its text. A container is read one level at a time, in one
/// pass that keeps only what is asked for: an object's named members, an array's elements one
/// at a time. Only the values read become `serde_json::Value`s, one at a time: Kea's
/// configuration of 100,000 reservations is 20 MB of text and several times that as one value,
/// and a level of millions of small values within the body's limit costs a pass, not a list.
#[derive(Debug, Clone)]
pub(crate) struct RawAt<'a> {
    answer: &'a str,
    path: String,
    /// The value's text, a slice of the answer's: read where it lies, never copied.
    raw: &'a str,
}

/// The members of an object of a [`RawAt`] that were asked for, each still text.
pub(crate) struct RawObject<'a> {
    at: RawAt<'a>,
    /// The names asked for.
    names: &'static [&'static str],
    /// The last of each name asked for that is there, as a map would keep it.
    members: Vec<(&'static str, &'a RawValue)>,
}

impl<'a> RawAt<'a> {
    /// The root `raw` of `answer` (JSON text, already parsed once whole), shown in paths as
    /// `root`.
    pub(crate) fn root(answer: &'a str, root: &str, raw: &'a str) -> Self {
        RawAt {
            answer,
            path: root.to_string(),
            raw,
        }
    }

    /// Whether this value is an object, from its first character: nothing is parsed.
    pub(crate) fn is_object(&self) -> bool {
        self.type_name() == "an object"
    }

    fn type_name(&self) -> &'static str {
        match self.raw.trim_start().as_bytes().first() {
            Some(b'{') => "an object",
            Some(b'[') => "an array",
            Some(b'"') => "a string",
            Some(b't' | b'f') => "a boolean",
            Some(b'n') => "null",
            _ => "a number",
        }
    }

    fn wrong(&self, expected: &str) -> ShapeError {
        error_at(
            self.answer,
            &self.path,
            format!("is {}, expected {expected}", self.type_name()),
        )
    }

    /// The members of this object named in `names`; it must be an object. Any other member is
    /// skipped as it is read.
    pub(crate) fn object(
        self,
        names: &'static [&'static str],
    ) -> Result<RawObject<'a>, ShapeError> {
        if !self.is_object() {
            return Err(self.wrong("an object"));
        }
        let members = self.pass(Pick(names))?;
        Ok(RawObject {
            at: self,
            names,
            members,
        })
    }

    /// Calls `f` with each element of this array in turn, which must be an array; the first
    /// error stops the pass and is returned.
    pub(crate) fn each_item(
        &self,
        f: impl FnMut(RawAt<'a>) -> Result<(), ShapeError>,
    ) -> Result<(), ShapeError> {
        if self.type_name() != "an array" {
            return Err(self.wrong("an array"));
        }
        // `f`'s error can only leave the pass as a serde error: it is kept here, and is the
        // one returned.
        let mut stopped = None;
        let passed = self.pass(Each {
            at: self,
            f,
            stopped: &mut stopped,
        });
        passed.map_err(|e| stopped.take().unwrap_or(e))
    }

    /// One pass of `visitor` over this value's text.
    fn pass<V: Visitor<'a>>(&self, visitor: V) -> Result<V::Value, ShapeError> {
        // The whole answer was parsed once already, so this is JSON: the pass fails only where
        // the visitor stops it.
        let cannot = |e: serde_json::Error| {
            error_at(self.answer, &self.path, format!("cannot be read: {e}"))
        };
        let mut de = serde_json::Deserializer::from_str(self.raw);
        let value = de.deserialize_any(visitor).map_err(cannot)?;
        de.end().map_err(cannot)?;
        Ok(value)
    }

    /// This value parsed, and read through an [`At`] at the same path.
    pub(crate) fn read<R>(
        &self,
        f: impl FnOnce(&At<'_>) -> Result<R, ShapeError>,
    ) -> Result<R, ShapeError> {
        let value: Json = serde_json::from_str(self.raw)
            .map_err(|e| error_at(self.answer, &self.path, format!("cannot be read: {e}")))?;
        f(&At {
            answer: self.answer,
            path: self.path.clone(),
            value: &value,
        })
    }
}

/// The members of an object named in `.0`, the last of each name kept.
struct Pick<'n>(&'n [&'static str]);

impl<'a> Visitor<'a> for Pick<'_> {
    type Value = Vec<(&'static str, &'a RawValue)>;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("an object")
    }

    fn visit_map<A: MapAccess<'a>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut kept: Self::Value = Vec::new();
        while let Some(name) = map.next_key_seed(Name(self.0))? {
            let Some(name) = name else {
                map.next_value::<IgnoredAny>()?;
                continue;
            };
            let value = map.next_value()?;
            match kept.iter_mut().find(|(n, _)| *n == name) {
                Some(slot) => slot.1 = value,
                None => kept.push((name, value)),
            }
        }
        Ok(kept)
    }
}

/// A member's name as one of `.0`, or `None`, read without keeping it: an escaped name is
/// compared as it reads.
pub(crate) struct Name<'n>(pub(crate) &'n [&'static str]);

impl<'a> DeserializeSeed<'a> for Name<'_> {
    type Value = Option<&'static str>;

    fn deserialize<D: Deserializer<'a>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_str(self)
    }
}

impl Visitor<'_> for Name<'_> {
    type Value = Option<&'static str>;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a member name")
    }

    fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
        Ok(self.0.iter().copied().find(|n| *n == v))
    }
}

/// Each element of an array, as a [`RawAt`] at its place, handed to `f` as it is read.
struct Each<'s, 'a, F> {
    at: &'s RawAt<'a>,
    f: F,
    stopped: &'s mut Option<ShapeError>,
}

impl<'a, F: FnMut(RawAt<'a>) -> Result<(), ShapeError>> Visitor<'a> for Each<'_, 'a, F> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("an array")
    }

    fn visit_seq<A: SeqAccess<'a>>(mut self, mut seq: A) -> Result<(), A::Error> {
        let mut i = 0usize;
        while let Some(raw) = seq.next_element::<&'a RawValue>()? {
            let item = RawAt {
                answer: self.at.answer,
                path: format!("{}[{i}]", self.at.path),
                raw: raw.get(),
            };
            if let Err(e) = (self.f)(item) {
                *self.stopped = Some(e);
                return Err(serde::de::Error::custom("stopped"));
            }
            i += 1;
        }
        Ok(())
    }
}

impl<'a> RawObject<'a> {
    /// Member `key`, `None` when absent. `key` must be one the object was read for.
    pub(crate) fn get(&self, key: &str) -> Option<RawAt<'a>> {
        debug_assert!(
            self.names.contains(&key),
            "{key} was not asked of {}",
            self.at.path
        );
        let (_, raw) = self.members.iter().find(|(n, _)| *n == key)?;
        Some(RawAt {
            answer: self.at.answer,
            path: child_path(&self.at.path, key),
            raw: raw.get(),
        })
    }

    /// Member `key`, which must be there.
    pub(crate) fn req(&self, key: &str) -> Result<RawAt<'a>, ShapeError> {
        self.get(key).ok_or_else(|| {
            error_at(
                self.at.answer,
                &child_path(&self.at.path, key),
                "is missing",
            )
        })
    }

    /// Calls `f` with each element of member `key`, an array; with none when it is absent.
    pub(crate) fn each_in(
        &self,
        key: &str,
        f: impl FnMut(RawAt<'a>) -> Result<(), ShapeError>,
    ) -> Result<(), ShapeError> {
        match self.get(key) {
            Some(list) => list.each_item(f),
            None => Ok(()),
        }
    }
}

fn error_at(answer: &str, path: &str, problem: impl Into<String>) -> ShapeError {
    ShapeError {
        answer: answer.to_string(),
        path: if path.is_empty() {
            "the answer".to_string()
        } else {
            path.to_string()
        },
        problem: problem.into(),
    }
}

/// `path.key`, or `path["key"]` for a key that is not a plain word.
fn child_path(path: &str, key: &str) -> String {
    let plain = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '@'));
    match (path.is_empty(), plain) {
        (true, true) => key.to_string(),
        (false, true) => format!("{path}.{key}"),
        (_, false) => format!("{path}[{}]", Json::String(key.to_string())),
    }
}

/// "a string", "an array", … for an error message.
pub(crate) fn type_name(value: &Json) -> &'static str {
    match value {
        Json::Null => "null",
        Json::Bool(_) => "a boolean",
        Json::Number(_) => "a number",
        Json::String(_) => "a string",
        Json::Array(_) => "an array",
        Json::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn errors_name_the_path_what_was_found_and_what_was_expected() {
        let v = json!({ "subnet4": [{ "id": 1 }, { "reservations": "none", "odd key": 1 }] });
        let root = At::root("Kea config-get", "Dhcp4", &v);
        let subnets: Vec<At> = root.req("subnet4").unwrap().items().unwrap().collect();
        let e = subnets[1]
            .req("reservations")
            .unwrap()
            .items()
            .err()
            .unwrap();
        assert_eq!(
            e.to_string(),
            "Kea config-get: Dhcp4.subnet4[1].reservations is a string, expected an array"
        );
        let e = subnets[0].req("subnet").unwrap_err();
        assert_eq!(
            e.to_string(),
            "Kea config-get: Dhcp4.subnet4[0].subnet is missing"
        );
        let e = subnets[1]
            .get("odd key")
            .unwrap()
            .unwrap()
            .str()
            .unwrap_err();
        assert_eq!(e.path, r#"Dhcp4.subnet4[1]["odd key"]"#);
        assert_eq!(e.problem, "is a number, expected a string");
        let e = At::root("Traefik routers", "", &json!(null))
            .items()
            .err()
            .unwrap();
        assert_eq!(
            e.to_string(),
            "Traefik routers: the answer is null, expected an array"
        );
        assert_eq!(root.opt_items("shared-networks").unwrap().len(), 0);
        assert_eq!(subnets[0].opt_str("subnet").unwrap(), None);
    }

    /// The paths of the elements of `list` of `text`'s root, each read as it comes.
    fn element_paths(text: &str) -> Result<Vec<String>, ShapeError> {
        let root = RawAt::root("Kea config-get", "Dhcp4", text).object(&["list"])?;
        let mut seen = Vec::new();
        root.each_in("list", |item| {
            seen.push(format!("{} {}", item.path, item.raw));
            Ok(())
        })?;
        Ok(seen)
    }

    #[test]
    fn a_raw_object_keeps_the_members_asked_for_and_the_last_of_each() {
        // `\u006c` is `l`: a name written with an escape is the name it reads as.
        let text = r#"{"other": [1, 2, {"list": 0}], "list": [0], "\u006cist": [1, {"a": 2}]}"#;
        assert_eq!(
            element_paths(text).unwrap(),
            ["Dhcp4.list[0] 1", r#"Dhcp4.list[1] {"a": 2}"#]
        );
        let root = RawAt::root("Kea config-get", "Dhcp4", text);
        let picked = root.object(&["list", "absent"]).unwrap();
        assert_eq!(picked.members.len(), 1, "only the names asked for are kept");
        assert!(picked.get("absent").is_none());
        assert_eq!(
            picked.req("absent").err().unwrap().to_string(),
            "Kea config-get: Dhcp4.absent is missing"
        );
        assert_eq!(
            element_paths(r#"{"other": 1}"#).unwrap(),
            Vec::<String>::new()
        );
    }

    #[test]
    fn a_raw_level_of_another_type_is_an_error_at_its_path() {
        let e = element_paths(r#"{"list": {"0": 1}}"#).unwrap_err();
        assert_eq!(
            e.to_string(),
            "Kea config-get: Dhcp4.list is an object, expected an array"
        );
        let e = RawAt::root("Kea config-get", "Dhcp4", "[1]")
            .object(&["list"])
            .err()
            .unwrap();
        assert_eq!(e.problem, "is an array, expected an object");
    }

    #[test]
    fn the_first_error_of_an_element_stops_the_pass_and_is_the_one_returned() {
        let text = r#"{"list": [{"ip": "10.0.0.1"}, {"ip": 7}, {"ip": true}]}"#;
        let root = RawAt::root("Kea config-get", "Dhcp4", text)
            .object(&["list"])
            .unwrap();
        let mut read = Vec::new();
        let e = root
            .each_in("list", |item| {
                read.push(item.read(|at| at.req("ip")?.str().map(str::to_string))?);
                Ok(())
            })
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "Kea config-get: Dhcp4.list[1].ip is a number, expected a string"
        );
        assert_eq!(read, ["10.0.0.1"], "the pass stopped at the error");
    }
}
