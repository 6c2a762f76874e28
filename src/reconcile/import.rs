//! `import`: adopt a live lab. Every unmanaged resource becomes a document in the repository's
//! layout (`dhcp/NAME.yaml`, `routes/NAME.yaml`, …), and the repository with the new files is
//! validated as a whole before anything is written: an import either lands complete and valid
//! or writes nothing.

use std::collections::BTreeSet;

use serde::Serialize;
use serde_json::Value as Json;

use crate::diff::{DeviationType, Plan};
use crate::model::{
    DeviceSpec, DhcpReservationSpec, Document, Kind, McpServerSpec, Metadata, PoolSpec, RouteSpec,
    API_VERSION,
};
use crate::source::{Snapshot, SourceFile};
use crate::validate::{self, Validation};

/// The folder of each kind in the repository layout.
pub fn folder(kind: Kind) -> &'static str {
    match kind {
        Kind::Pool => "pools",
        Kind::Device => "devices",
        Kind::DhcpReservation => "dhcp",
        Kind::Route => "routes",
        Kind::McpServer => "mcp",
        Kind::Config => ".",
    }
}

/// A live resource that could not be turned into a document, and why.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Skipped {
    pub kind: Kind,
    pub name: String,
    pub reason: String,
}

/// A document made from a live resource declared where labctl does not write: labctl will
/// write it as its own, and the old declaration has to go.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Adopted {
    /// The document written.
    pub path: String,
    /// Where the live resource is declared now.
    pub declared_in: String,
}

/// What an import would write.
#[derive(Debug)]
pub struct ImportPlan {
    pub files: Vec<SourceFile>,
    pub skipped: Vec<Skipped>,
    /// The documents of `files` whose live resource is declared elsewhere.
    pub adopted: Vec<Adopted>,
    /// The repository with the new files, validated together.
    pub validation: Validation,
}

/// Builds one document per unmanaged resource of `plan` and validates them together with the
/// repository they join. Pure: nothing is written.
pub fn prepare(snapshot: &Snapshot, plan: &Plan) -> ImportPlan {
    let taken: BTreeSet<&str> = snapshot.files.iter().map(|f| f.path.as_str()).collect();
    let mut files = Vec::new();
    let mut skipped = Vec::new();
    let mut adopted = Vec::new();
    for d in plan
        .deviations
        .iter()
        .filter(|d| d.dtype == DeviationType::Unmanaged)
    {
        let Some(fields) = &d.actual else { continue };
        let path = path(d.kind, &d.name);
        if taken.contains(path.as_str()) {
            skipped.push(Skipped {
                kind: d.kind,
                name: d.name.clone(),
                reason: format!("{path} already exists"),
            });
            continue;
        }
        match document(d.kind, &d.name, fields) {
            Ok(text) => {
                if let Some(declared_in) = &d.declared_in {
                    adopted.push(Adopted {
                        path: path.clone(),
                        declared_in: declared_in.clone(),
                    });
                }
                files.push(SourceFile { path, text });
            }
            Err(reason) => skipped.push(Skipped {
                kind: d.kind,
                name: d.name.clone(),
                reason,
            }),
        }
    }
    let mut all = snapshot.clone();
    all.files.extend(files.iter().cloned());
    all.files.sort_by(|a, b| a.path.cmp(&b.path));
    let validation = validate::validate(&all);
    ImportPlan {
        files,
        skipped,
        adopted,
        validation,
    }
}

/// Where the repository layout keeps the document `kind`/`name`.
pub fn path(kind: Kind, name: &str) -> String {
    format!("{}/{name}.yaml", folder(kind))
}

/// The YAML text of one document, typed on the way so that what is written parses. A live
/// resource with parts labctl does not model (`unrepresented`) is refused: its document would
/// lose them, and applying it would remove them live.
pub fn document(kind: Kind, name: &str, fields: &Json) -> Result<String, String> {
    if let Some(parts) = fields.get("unrepresented") {
        let parts: Vec<&str> = parts
            .as_array()
            .map(|a| a.iter().filter_map(Json::as_str).collect())
            .unwrap_or_default();
        return Err(format!(
            "the live {kind} has what labctl does not model ({}): a document would lose it, so \
             it stays unmanaged",
            parts.join(", ")
        ));
    }
    let mut fields = fields.clone();
    if let Json::Object(map) = &mut fields {
        // A route its proxy disabled is adopted as it is declared.
        for key in kind.state_fields() {
            map.remove(*key);
        }
    }
    fn typed<S: serde::de::DeserializeOwned + Serialize>(
        kind: Kind,
        name: &str,
        fields: Json,
    ) -> Result<String, String> {
        let spec: S = serde_json::from_value(fields)
            .map_err(|e| format!("the live {kind} does not make a complete document: {e}"))?;
        let doc = Document {
            api_version: API_VERSION.to_string(),
            kind: kind.as_str().to_string(),
            metadata: Metadata {
                name: name.to_string(),
                labels: Default::default(),
                annotations: [("labctl.dev/imported".to_string(), "true".to_string())].into(),
                reconcile: None,
            },
            spec,
        };
        let yaml = serde_yaml::to_string(&doc).map_err(|e| e.to_string())?;
        let schema = crate::model::schema::file_name(kind);
        Ok(format!(
            "# yaml-language-server: $schema=../../schemas/{schema}\n{yaml}"
        ))
    }
    match kind {
        Kind::Pool => typed::<PoolSpec>(kind, name, fields),
        Kind::Device => typed::<DeviceSpec>(kind, name, fields),
        Kind::DhcpReservation => typed::<DhcpReservationSpec>(kind, name, fields),
        Kind::Route => typed::<RouteSpec>(kind, name, fields),
        Kind::McpServer => typed::<McpServerSpec>(kind, name, fields),
        Kind::Config => Err("the Config is written by hand".into()),
    }
}

/// Writes every file or none: all are first written to hidden temporary files beside their
/// targets, then linked into place (a link never replaces a file that appeared meanwhile).
pub fn write_all_new(root: &std::path::Path, files: &[SourceFile]) -> Result<(), String> {
    use std::io::Write;
    let mut staged: Vec<(std::path::PathBuf, std::path::PathBuf)> = Vec::new();
    let cleanup = |staged: &[(std::path::PathBuf, std::path::PathBuf)]| {
        for (tmp, _) in staged {
            let _ = std::fs::remove_file(tmp);
        }
    };
    for f in files {
        let target = root.join(&f.path);
        let dir = target.parent().unwrap_or(root);
        let tmp = dir.join(format!(
            ".{}.labctl-import",
            target.file_name().unwrap_or_default().to_string_lossy()
        ));
        let written = std::fs::create_dir_all(dir)
            .and_then(|_| {
                std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .open(&tmp)
            })
            .and_then(|mut out| {
                out.write_all(f.text.as_bytes())
                    .and_then(|_| out.sync_all())
            });
        if let Err(e) = written {
            cleanup(&staged);
            return Err(format!("cannot write {}: {e}", tmp.display()));
        }
        staged.push((tmp, target));
    }
    for (i, (tmp, target)) in staged.iter().enumerate() {
        if let Err(e) = std::fs::hard_link(tmp, target) {
            for (_, done) in &staged[..i] {
                let _ = std::fs::remove_file(done);
            }
            cleanup(&staged);
            return Err(format!("cannot create {}: {e}", target.display()));
        }
    }
    cleanup(&staged);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diff::{Deviation, Severity};
    use serde_json::json;

    fn unmanaged(kind: Kind, name: &str, actual: Json) -> Deviation {
        Deviation {
            kind,
            name: name.into(),
            field_path: String::new(),
            dtype: DeviationType::Unmanaged,
            severity: Severity::Medium,
            provider: "kea".into(),
            auto_correctable: true,
            remediation: String::new(),
            suspended: false,
            expected: None,
            actual: Some(actual),
            declared_in: None,
        }
    }

    fn snapshot() -> Snapshot {
        Snapshot::of(
            "lab",
            vec![SourceFile {
                path: "labctl.yaml".into(),
                text: "apiVersion: labctl.dev/v1\nkind: Config\nmetadata: {name: lab}\nspec: {}\n"
                    .into(),
            }],
        )
    }

    #[test]
    fn unmanaged_reservations_become_valid_documents() {
        let plan = Plan {
            deviations: vec![
                unmanaged(
                    Kind::DhcpReservation,
                    "printer",
                    json!({"subnet": "10.0.1.0/24", "mac": "aa:bb:cc:00:00:01", "ip": "10.0.1.90", "hostname": "printer"}),
                ),
                unmanaged(
                    Kind::DhcpReservation,
                    "nameless",
                    json!({"subnet": "10.0.1.0/24", "mac": "aa:bb:cc:00:00:02", "ip": "10.0.1.91"}),
                ),
            ],
            ..Default::default()
        };
        let out = prepare(&snapshot(), &plan);
        assert!(
            out.validation.is_valid(),
            "{:?}",
            out.validation.diagnostics
        );
        assert_eq!(out.files.len(), 1);
        assert_eq!(out.files[0].path, "dhcp/printer.yaml");
        assert!(out.files[0].text.starts_with("# yaml-language-server: $schema=../../schemas/dhcpreservation.schema.json\napiVersion: labctl.dev/v1\nkind: DhcpReservation\n"));
        assert_eq!(out.skipped.len(), 1);
        assert!(
            out.skipped[0].reason.contains("missing field `hostname`"),
            "{:?}",
            out.skipped
        );
    }

    #[test]
    fn a_route_is_written_as_declared_and_one_with_unmodelled_parts_is_skipped() {
        let mut disabled = unmanaged(
            Kind::Route,
            "alpha-file",
            json!({"rule": "Host(`a.lab`)", "backend": {"urls": ["http://127.0.0.1:1"]},
                   "tls": {"options": "default"}, "router": "alpha@file",
                   "status": "disabled", "errors": ["middleware \"x@file\" does not exist"]}),
        );
        disabled.declared_in = Some("another file".into());
        let plan = Plan {
            deviations: vec![
                disabled,
                unmanaged(
                    Kind::Route,
                    "syntax-file",
                    json!({"rule": "Host(`s.lab`)", "backend": {"urls": ["http://127.0.0.1:2"]},
                           "unrepresented": ["ruleSyntax"]}),
                ),
            ],
            ..Default::default()
        };
        let out = prepare(&snapshot(), &plan);
        assert!(
            out.validation.is_valid(),
            "{:?}",
            out.validation.diagnostics
        );
        assert_eq!(out.files.len(), 1);
        let text = &out.files[0].text;
        // Traefik's state of the router and its default TLS options are not configuration.
        assert!(text.contains("  tls: {}\n  router: alpha@file\n"), "{text}");
        assert!(
            !text.contains("status") && !text.contains("errors"),
            "{text}"
        );
        assert_eq!(
            out.adopted,
            [Adopted {
                path: "routes/alpha-file.yaml".into(),
                declared_in: "another file".into()
            }]
        );
        assert_eq!(out.skipped.len(), 1);
        assert!(
            out.skipped[0]
                .reason
                .contains("does not model (ruleSyntax)"),
            "{:?}",
            out.skipped
        );
    }

    #[test]
    fn an_import_that_would_make_the_repository_invalid_is_reported_before_writing() {
        // Two live reservations claim one IP: importing both would make the repo invalid.
        let plan = Plan {
            deviations: vec![
                unmanaged(
                    Kind::DhcpReservation,
                    "a",
                    json!({"subnet": "10.0.1.0/24", "mac": "aa:bb:cc:00:00:01", "ip": "10.0.1.90", "hostname": "a"}),
                ),
                unmanaged(
                    Kind::DhcpReservation,
                    "b",
                    json!({"subnet": "10.0.1.0/24", "mac": "aa:bb:cc:00:00:02", "ip": "10.0.1.90", "hostname": "b"}),
                ),
            ],
            ..Default::default()
        };
        let out = prepare(&snapshot(), &plan);
        assert!(!out.validation.is_valid());
        assert_eq!(out.validation.diagnostics[0].code, "duplicate-ip");
    }
}
