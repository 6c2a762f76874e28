//! The one structural differ of two JSON values, for the drift diff (`spec.ip`, arrays as
//! whole values) and for snapshot diffs (JSON Pointers, arrays by index). Pure.

use serde_json::Value;

/// Sets the dotted path `a.b.c` inside `root` to `value` (making the objects on the way),
/// or removes it for `None`.
pub fn set_path(root: &mut Value, path: &str, value: Option<Value>) {
    let mut parts: Vec<&str> = path.split('.').collect();
    let Some(last) = parts.pop() else { return };
    let mut cursor = root;
    for p in parts {
        if !cursor.get(p).is_some_and(Value::is_object) {
            if value.is_none() {
                return;
            }
            cursor[p] = Value::Object(Default::default());
        }
        cursor = &mut cursor[p];
    }
    if let Value::Object(map) = cursor {
        match value {
            Some(v) => {
                map.insert(last.to_string(), v);
            }
            None => {
                map.remove(last);
            }
        }
    }
}

/// How paths are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Notation {
    /// RFC 6901 JSON Pointer from the root (`/reservations/3/ip`; the root is empty).
    Pointer,
    /// Dotted from a named root, as document fields are named (`spec.options[0].data`).
    Dotted(&'static str),
}

/// How two values are compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Options {
    pub notation: Notation,
    /// Compare arrays element by element (a shorter array's tail is added or removed), rather
    /// than as one value.
    pub arrays_by_index: bool,
    /// A key absent on one side and null, `[]` or `{}` on the other is no difference: to a
    /// person they say the same.
    pub absent_matches_empty: bool,
}

/// One difference: where, and the value on each side (`None` where absent).
pub type Difference<'a> = (String, Option<&'a Value>, Option<&'a Value>);

/// Every difference between `before` and `after`, depth first in document order: object keys
/// sorted, array elements by index. Objects on both sides are compared key by key; any other
/// difference is one difference of the whole value.
pub fn differences<'a>(
    before: &'a Value,
    after: &'a Value,
    options: Options,
) -> Vec<Difference<'a>> {
    let mut path = match options.notation {
        Notation::Pointer => String::new(),
        Notation::Dotted(root) => root.to_string(),
    };
    let mut out = Vec::new();
    walk(&mut path, before, after, options, &mut out);
    out
}

fn walk<'a>(
    path: &mut String,
    before: &'a Value,
    after: &'a Value,
    options: Options,
    out: &mut Vec<Difference<'a>>,
) {
    match (before, after) {
        (Value::Object(a), Value::Object(b)) => {
            let mut keys: Vec<&String> = a.keys().chain(b.keys()).collect();
            keys.sort_unstable();
            keys.dedup();
            for key in keys {
                let len = path.len();
                push_key(path, key, options.notation);
                sides(path, a.get(key.as_str()), b.get(key.as_str()), options, out);
                path.truncate(len);
            }
        }
        (Value::Array(a), Value::Array(b)) if options.arrays_by_index && a != b => {
            for i in 0..a.len().max(b.len()) {
                let len = path.len();
                push_index(path, i, options.notation);
                sides(path, a.get(i), b.get(i), options, out);
                path.truncate(len);
            }
        }
        (a, b) if a == b => {}
        (a, b) => out.push((path.clone(), Some(a), Some(b))),
    }
}

fn sides<'a>(
    path: &mut String,
    before: Option<&'a Value>,
    after: Option<&'a Value>,
    options: Options,
    out: &mut Vec<Difference<'a>>,
) {
    match (before, after) {
        (Some(x), Some(y)) => walk(path, x, y, options, out),
        (None, None) => {}
        (x, y) if options.absent_matches_empty && is_empty(x) && is_empty(y) => {}
        (x, y) => out.push((path.clone(), x, y)),
    }
}

/// Absent, null, an empty list and an empty object.
fn is_empty(v: Option<&Value>) -> bool {
    match v {
        None | Some(Value::Null) => true,
        Some(Value::Array(a)) => a.is_empty(),
        Some(Value::Object(o)) => o.is_empty(),
        _ => false,
    }
}

fn push_key(path: &mut String, key: &str, notation: Notation) {
    match notation {
        // RFC 6901: `~` → `~0`, `/` → `~1`.
        Notation::Pointer => {
            path.push('/');
            path.push_str(&key.replace('~', "~0").replace('/', "~1"));
        }
        Notation::Dotted(_) => {
            path.push('.');
            path.push_str(key);
        }
    }
}

fn push_index(path: &mut String, i: usize, notation: Notation) {
    use std::fmt::Write;
    let _ = match notation {
        Notation::Pointer => write!(path, "/{i}"),
        Notation::Dotted(_) => write!(path, "[{i}]"),
    };
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const DRIFT: Options = Options {
        notation: Notation::Dotted("spec"),
        arrays_by_index: false,
        absent_matches_empty: true,
    };

    fn paths(before: Value, after: Value, options: Options) -> Vec<String> {
        differences(&before, &after, options)
            .into_iter()
            .map(|d| d.0)
            .collect()
    }

    #[test]
    fn dotted_paths_compare_arrays_whole_and_absent_as_empty() {
        let expected = json!({"ip": "10.0.1.5", "options": [{"data": "1"}], "tags": [], "x": null});
        let live = json!({"ip": "10.0.1.9", "options": [{"data": "2"}]});
        let diffs = differences(&expected, &live, DRIFT);
        assert_eq!(
            diffs,
            vec![
                (
                    "spec.ip".into(),
                    Some(&json!("10.0.1.5")),
                    Some(&json!("10.0.1.9"))
                ),
                (
                    "spec.options".into(),
                    Some(&json!([{"data": "1"}])),
                    Some(&json!([{"data": "2"}]))
                ),
            ]
        );
        // Present on both sides, null against []: a difference.
        assert_eq!(
            paths(json!({"a": null}), json!({"a": []}), DRIFT),
            ["spec.a"]
        );
    }

    #[test]
    fn dotted_paths_by_index_name_elements() {
        let options = Options {
            arrays_by_index: true,
            ..DRIFT
        };
        assert_eq!(
            paths(
                json!({"o": [{"d": 1}, 2]}),
                json!({"o": [{"d": 3}]}),
                options
            ),
            ["spec.o[0].d", "spec.o[1]"]
        );
    }
}
