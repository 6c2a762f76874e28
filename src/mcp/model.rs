//! The latest reconciled model as the MCP tools see it: the run that recorded it, and the
//! model ready for queries (see [`crate::readmodel::query`]).

use std::collections::BTreeMap;

use crate::readmodel::query::Lab;
use crate::readmodel::{ReadModelError, ReconciledModel};
use crate::store::LatestModel;

/// The latest reconciled model, read once per run.
#[derive(Debug, Clone)]
pub struct Model {
    pub run: i64,
    /// What the model holds, as a short hash: list cursors name it, so a run that changed
    /// nothing leaves them valid, and any change to the model makes them stale.
    pub tag: String,
    pub commit: Option<String>,
    /// Unix milliseconds: when the run that built the model finished.
    pub finished_at: i64,
    pub lab: Lab,
}

impl Model {
    /// Reads a stored model of any version this build knows.
    pub fn from_latest(latest: LatestModel) -> Result<Model, ReadModelError> {
        Ok(Model {
            run: latest.run,
            // The store names a body by the hash of its canonical text: the same model, the
            // same tag.
            tag: latest.hash.chars().take(12).collect(),
            commit: latest.commit_sha,
            finished_at: latest.finished_at,
            lab: Lab::new(ReconciledModel::from_text(&latest.text)?),
        })
    }
}

/// Counts per key, sorted: a small helper for summaries.
pub fn count<'a>(items: impl IntoIterator<Item = &'a str>) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    for item in items {
        *out.entry(item.to_string()).or_insert(0) += 1;
    }
    out
}
