//! JSON Schemas for every kind, generated from the Rust types so they cannot drift from what
//! labctl accepts. Editors use them through `# yaml-language-server: $schema=…`.

use serde_json::{json, Value};

use super::{
    ConfigSpec, DeviceSpec, DhcpReservationSpec, Document, Kind, McpServerSpec, PoolSpec,
    RouteSpec, API_VERSION,
};

/// The schema file name of a kind, e.g. `device.schema.json`.
pub fn file_name(kind: Kind) -> String {
    format!("{}.schema.json", kind.as_str().to_ascii_lowercase())
}

/// The JSON Schema of one kind's document, with `apiVersion` and `kind` pinned.
pub fn for_kind(kind: Kind) -> Value {
    let schema = match kind {
        Kind::Pool => schemars::schema_for!(Document<PoolSpec>),
        Kind::Device => schemars::schema_for!(Document<DeviceSpec>),
        Kind::DhcpReservation => schemars::schema_for!(Document<DhcpReservationSpec>),
        Kind::Route => schemars::schema_for!(Document<RouteSpec>),
        Kind::McpServer => schemars::schema_for!(Document<McpServerSpec>),
        Kind::Config => schemars::schema_for!(Document<ConfigSpec>),
    };
    let mut value = schema.to_value();
    value["title"] = json!(kind.as_str());
    value["$id"] = json!(format!("https://labctl.dev/schemas/v1/{}", file_name(kind)));
    value["properties"]["apiVersion"] = json!({ "const": API_VERSION });
    value["properties"]["kind"] = json!({ "const": kind.as_str() });
    value
}

/// Every schema as `(file name, pretty JSON with a trailing newline)`.
pub fn all() -> Vec<(String, String)> {
    Kind::ALL
        .into_iter()
        .map(|k| {
            let text = serde_json::to_string_pretty(&for_kind(k)).expect("schema serialises");
            (file_name(k), text + "\n")
        })
        .collect()
}
