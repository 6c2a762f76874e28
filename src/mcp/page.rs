//! Pages of list answers. A cursor names the run whose model it pages through: a page of
//! another run's model would skip or repeat items.

use std::borrow::Cow;

use schemars::{JsonSchema, Schema, SchemaGenerator};
use serde::ser::{SerializeMap, Serializer};
use serde::Serialize;
use serde_json::{json, Map, Value as Json};

use super::ToolError;

/// What the items of a page are called in an answer, and in which order they come.
pub trait Listed {
    /// The answer's field that holds the page (`devices`, `pools`…).
    const FIELD: &'static str;
    /// That field's description in the output schema: the order.
    const ORDER: &'static str;
}

/// One page of a list, its size before paging, and the cursor of the next page. Flattened
/// into an answer it is `{FIELD: [...], total, nextCursor?}`, the one shape of every list.
#[derive(Debug, Clone, PartialEq)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub total: u64,
    pub next_cursor: Option<String>,
}

impl<T> Page<T> {
    /// The page of `items` at `cursor` (none: the first), of `limit` items (`default` when not
    /// given; at most 500, or `default` when that is larger).
    pub fn of(
        items: Vec<T>,
        limit: Option<u32>,
        default: u32,
        cursor: Option<&str>,
        tag: &str,
    ) -> Result<Page<T>, ToolError> {
        let limit = page_limit(limit, default, 500.max(default))?;
        let offset = parse_cursor(cursor, tag)?;
        let total = items.len();
        let items: Vec<T> = items.into_iter().skip(offset).take(limit).collect();
        let next = offset + items.len();
        Ok(Page {
            items,
            total: total as u64,
            next_cursor: (next < total).then(|| self::cursor(tag, next)),
        })
    }

    /// The same page with each item changed by `f`.
    pub fn map<U>(self, f: impl FnMut(T) -> U) -> Page<U> {
        Page {
            items: self.items.into_iter().map(f).collect(),
            total: self.total,
            next_cursor: self.next_cursor,
        }
    }
}

/// How many items to answer with: `given` (at least 1; 0 is refused, not read as 1), else
/// `default`; at most `max`.
pub fn page_limit(given: Option<u32>, default: u32, max: u32) -> Result<usize, ToolError> {
    match given {
        Some(0) => Err(ToolError::new(
            "`limit` must be at least 1 (omit it for the default)",
        )),
        Some(n) => Ok(n.min(max) as usize),
        None => Ok(default.min(max) as usize),
    }
}

impl<T: Listed + Serialize> Serialize for Page<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry(T::FIELD, &self.items)?;
        map.serialize_entry("total", &self.total)?;
        if let Some(next) = &self.next_cursor {
            map.serialize_entry("nextCursor", next)?;
        }
        map.end()
    }
}

impl<T: Listed + JsonSchema> JsonSchema for Page<T> {
    fn inline_schema() -> bool {
        true
    }

    fn schema_name() -> Cow<'static, str> {
        format!("PageOf{}", T::schema_name()).into()
    }

    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        let described = |mut schema: Schema, text: &str| {
            schema.insert("description".into(), text.into());
            Json::from(schema)
        };
        let mut properties = Map::new();
        properties.insert(
            T::FIELD.into(),
            described(generator.subschema_for::<Vec<T>>(), T::ORDER),
        );
        properties.insert(
            "total".into(),
            described(
                generator.subschema_for::<u64>(),
                "Items matching the filters, over all pages.",
            ),
        );
        properties.insert(
            "nextCursor".into(),
            described(
                generator.subschema_for::<Option<String>>(),
                "Pass as `cursor` for the next page; absent on the last page.",
            ),
        );
        Schema::try_from(json!({
            "type": "object",
            "properties": properties,
            "required": [T::FIELD, "total"],
        }))
        .expect("an object is a schema")
    }
}

/// The cursor of the page starting at `offset` of a listing of the model tagged `tag`.
pub fn cursor(tag: &str, offset: usize) -> String {
    format!("m{tag}o{offset}")
}

/// The offset a cursor names (0 without one), or why it cannot be used: a cursor of another
/// model (the lab or Git changed since) would skip or repeat items.
pub fn parse_cursor(cursor: Option<&str>, tag: &str) -> Result<usize, ToolError> {
    let Some(c) = cursor.filter(|c| !c.is_empty()) else {
        return Ok(0);
    };
    let parsed = c
        .strip_prefix('m')
        .and_then(|rest| rest.rsplit_once('o'))
        .and_then(|(t, o)| Some((t, o.parse::<usize>().ok()?)));
    match parsed {
        Some((t, o)) if t == tag => Ok(o),
        Some(_) => Err(ToolError::new(
            "the cursor belongs to an earlier reconciled model (the lab or Git has changed \
             since); list again without a cursor",
        )),
        None => Err(ToolError::new(format!(
            "`{c}` is not a cursor; pass the nextCursor of the previous page"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    impl Listed for u8 {
        const FIELD: &'static str = "numbers";
        const ORDER: &'static str = "Ascending.";
    }

    #[test]
    fn a_page_is_written_and_described_under_its_items_name() {
        let page = Page::of(vec![1u8, 2, 3], Some(2), 50, None, "a7").unwrap();
        assert_eq!(
            serde_json::to_value(&page).unwrap(),
            json!({"numbers": [1, 2], "total": 3, "nextCursor": "ma7o2"})
        );
        let last = Page::of(vec![1u8], None, 50, None, "a7").unwrap();
        assert_eq!(
            serde_json::to_value(&last).unwrap(),
            json!({"numbers": [1], "total": 1})
        );
        let schema = Json::from(schemars::schema_for!(Page<u8>));
        assert_eq!(schema["required"], json!(["numbers", "total"]));
        assert_eq!(schema["properties"]["numbers"]["type"], "array");
        assert_eq!(schema["properties"]["numbers"]["description"], "Ascending.");
    }

    #[test]
    fn pages_follow_their_cursors_within_one_model() {
        let first = Page::of((1..=5).collect(), Some(2), 50, None, "a1").unwrap();
        assert_eq!(first.items, [1, 2]);
        assert_eq!(first.total, 5);
        let next = first.next_cursor.clone().unwrap();
        let second = Page::of((1..=5).collect(), Some(2), 50, Some(&next), "a1").unwrap();
        assert_eq!(second.map(|x| x * 10).items, [30, 40]);
        let last = Page::of((1..=5).collect(), Some(9), 50, Some(&cursor("a1", 4)), "a1").unwrap();
        assert_eq!((last.items, last.next_cursor), (vec![5], None));
        assert!(Page::of(vec![1], None, 50, Some(&next), "b2").is_err());
        assert!(parse_cursor(Some("zzz"), "a1").is_err());
        assert_eq!(parse_cursor(Some(""), "a1").unwrap(), 0);
        assert!(Page::of(vec![1], Some(0), 50, None, "a1").is_err());
    }
}
