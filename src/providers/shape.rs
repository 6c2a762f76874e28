//! Reading a provider's JSON answer by its shape. A value of another type than the API
//! documents is a [`ShapeError`] naming where it was found ("Kea config-get:
//! Dhcp4.subnet4[2].reservations is a string, expected an array"), never skipped: skipping
//! what cannot be read turns a lying or broken answer into an empty lab, whose resources would
//! then be "missing" and rebuilt.

use std::collections::BTreeMap;

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

/// A value of a large answer kept as its text. A container is split one level at a time and
/// only the values asked for become `serde_json::Value`s, one at a time: Kea's configuration
/// of 100,000 reservations is 20 MB of text and several times that as one value.
#[derive(Debug, Clone)]
pub(crate) struct RawAt<'a> {
    answer: &'a str,
    path: String,
    /// The value's text, a slice of the answer's: read where it lies, never copied.
    raw: &'a str,
}

/// The members of an object of a [`RawAt`], each still text.
pub(crate) struct RawObject<'a> {
    at: RawAt<'a>,
    members: BTreeMap<String, &'a RawValue>,
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

    /// This value split into its members; it must be an object.
    pub(crate) fn object(self) -> Result<RawObject<'a>, ShapeError> {
        if !self.is_object() {
            return Err(self.wrong("an object"));
        }
        // The whole answer was parsed once already: this cannot fail on its syntax.
        let members = serde_json::from_str(self.raw)
            .map_err(|e| error_at(self.answer, &self.path, format!("cannot be read: {e}")))?;
        Ok(RawObject { at: self, members })
    }

    /// The elements of this array.
    pub(crate) fn items(&self) -> Result<Vec<RawAt<'a>>, ShapeError> {
        if self.type_name() != "an array" {
            return Err(self.wrong("an array"));
        }
        let items: Vec<&'a RawValue> = serde_json::from_str(self.raw)
            .map_err(|e| error_at(self.answer, &self.path, format!("cannot be read: {e}")))?;
        Ok(items
            .into_iter()
            .enumerate()
            .map(|(i, raw)| RawAt {
                answer: self.answer,
                path: format!("{}[{i}]", self.path),
                raw: raw.get(),
            })
            .collect())
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

impl<'a> RawObject<'a> {
    /// Member `key`, `None` when absent.
    pub(crate) fn get(&self, key: &str) -> Option<RawAt<'a>> {
        self.members.get(key).map(|raw| RawAt {
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

    /// The elements of member `key`, an array; none when it is absent.
    pub(crate) fn opt_items(&self, key: &str) -> Result<Vec<RawAt<'a>>, ShapeError> {
        match self.get(key) {
            Some(list) => list.items(),
            None => Ok(Vec::new()),
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
}
