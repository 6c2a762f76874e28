//! A structural diff of two JSON documents: objects compared by key, arrays by index.

use serde::Serialize;
use serde_json::Value;

use crate::jsondiff::{differences, Notation, Options};

/// How a value changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ChangeKind {
    /// Only in the second document.
    Added,
    /// Only in the first document.
    Removed,
    /// In both, with different values (or different types).
    Changed,
}

/// One difference between two JSON documents.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct JsonChange {
    /// JSON Pointer (RFC 6901) of the value, e.g. `/reservations/3/ip`; empty for the root.
    pub path: String,
    pub kind: ChangeKind,
    /// The value in the first document (`None` when added).
    pub before: Option<Value>,
    /// The value in the second document (`None` when removed).
    pub after: Option<Value>,
}

/// The changes that turn `before` into `after`, in document order: object keys sorted, array
/// elements by index. Objects present on both sides are compared key by key and arrays index by
/// index (a shorter array's missing tail is added or removed); any other difference is one
/// change of the whole value.
pub fn json_diff(before: &Value, after: &Value) -> Vec<JsonChange> {
    let options = Options {
        notation: Notation::Pointer,
        arrays_by_index: true,
        absent_matches_empty: false,
    };
    differences(before, after, options)
        .into_iter()
        .map(|(path, before, after)| JsonChange {
            path,
            kind: match (before, after) {
                (None, _) => ChangeKind::Added,
                (_, None) => ChangeKind::Removed,
                _ => ChangeKind::Changed,
            },
            before: before.cloned(),
            after: after.cloned(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn summary(
        before: Value,
        after: Value,
    ) -> Vec<(String, ChangeKind, Option<Value>, Option<Value>)> {
        json_diff(&before, &after)
            .into_iter()
            .map(|c| (c.path, c.kind, c.before, c.after))
            .collect()
    }

    #[test]
    fn equal_documents_have_no_changes() {
        let doc = json!({"a": [1, {"b": null}], "c": "x"});
        assert!(json_diff(&doc, &doc.clone()).is_empty());
        assert!(json_diff(&json!(null), &json!(null)).is_empty());
    }

    #[test]
    fn objects_by_key_in_sorted_order() {
        assert_eq!(
            summary(
                json!({"z": 1, "a": 1, "m": {"k": true}}),
                json!({"a": 2, "b": 3, "m": {"k": true}})
            ),
            vec![
                (
                    "/a".into(),
                    ChangeKind::Changed,
                    Some(json!(1)),
                    Some(json!(2))
                ),
                ("/b".into(), ChangeKind::Added, None, Some(json!(3))),
                ("/z".into(), ChangeKind::Removed, Some(json!(1)), None),
            ]
        );
    }

    #[test]
    fn arrays_by_index_with_added_and_removed_tails() {
        let before = json!({"reservations": [
            {"ip": "10.0.1.1"}, {"ip": "10.0.1.2"}, {"ip": "10.0.1.3"}, {"ip": "10.0.1.4"}
        ]});
        let mut after = before.clone();
        after["reservations"][3]["ip"] = json!("10.0.1.40");
        assert_eq!(
            summary(before.clone(), after),
            vec![(
                "/reservations/3/ip".into(),
                ChangeKind::Changed,
                Some(json!("10.0.1.4")),
                Some(json!("10.0.1.40"))
            )]
        );
        assert_eq!(
            summary(json!([1, 2, 3]), json!([1, 5])),
            vec![
                (
                    "/1".into(),
                    ChangeKind::Changed,
                    Some(json!(2)),
                    Some(json!(5))
                ),
                ("/2".into(), ChangeKind::Removed, Some(json!(3)), None),
            ]
        );
        assert_eq!(
            summary(json!([1]), json!([1, [2], {"x": 3}])),
            vec![
                ("/1".into(), ChangeKind::Added, None, Some(json!([2]))),
                ("/2".into(), ChangeKind::Added, None, Some(json!({"x": 3}))),
            ]
        );
    }

    #[test]
    fn type_changes_replace_the_whole_value() {
        assert_eq!(
            summary(json!({"a": {"b": 1}}), json!({"a": [1]})),
            vec![(
                "/a".into(),
                ChangeKind::Changed,
                Some(json!({"b": 1})),
                Some(json!([1]))
            )]
        );
        assert_eq!(
            summary(json!(1), json!("1")),
            vec![(
                "".into(),
                ChangeKind::Changed,
                Some(json!(1)),
                Some(json!("1"))
            )]
        );
    }

    #[test]
    fn pointer_tokens_are_escaped() {
        let changes = json_diff(&json!({"a/b": {"~c": 1}}), &json!({"a/b": {"~c": 2}}));
        assert_eq!(changes[0].path, "/a~1b/~0c");
        let doc = json!({"a/b": {"~c": 2}});
        assert_eq!(doc.pointer(&changes[0].path), Some(&json!(2)));
    }

    #[test]
    fn order_is_deterministic_and_depth_first() {
        let paths: Vec<String> = json_diff(
            &json!({"b": [0, {"y": 1, "x": 1}], "a": 0}),
            &json!({"a": 1, "b": [1, {"x": 2, "y": 2}]}),
        )
        .into_iter()
        .map(|c| c.path)
        .collect();
        assert_eq!(paths, ["/a", "/b/0", "/b/1/x", "/b/1/y"]);
    }
}
