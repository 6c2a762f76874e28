//! Resource pools: a hierarchy (`/homelab/compute/gpu-nodes`) whose properties and dimensions
//! flow down to child pools and member devices unless they override them.

use std::collections::{BTreeMap, HashMap, HashSet};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{PoolDoc, Value};

/// What a pool groups.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum PoolType {
    Compute,
    Storage,
    Network,
}

/// Declared capacity of a pool, used to report usage against it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Capacity {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cores: Option<u32>,
    #[serde(default, rename = "memoryMiB", skip_serializing_if = "Option::is_none")]
    pub memory_mib: Option<u64>,
    #[serde(
        default,
        rename = "storageGiB",
        skip_serializing_if = "Option::is_none"
    )]
    pub storage_gib: Option<u64>,
    /// Maximum number of member devices.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub devices: Option<u32>,
}

/// `spec` of a `Pool`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PoolSpec {
    /// Name of the parent pool; a pool without one is a root (`/homelab`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<String>,
    #[serde(rename = "type")]
    pub pool_type: PoolType,
    /// The Proxmox VE pool id this pool maps to, when it maps to one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxmox_pool: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Settings inherited by children and members (`backup: daily`, `owner: ops`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub properties: BTreeMap<String, Value>,
    /// Queryable typed attributes inherited by children and members (`gpu: true`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub dimensions: BTreeMap<String, Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capacity: Option<Capacity>,
}

/// A pool with its place in the hierarchy resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct ResolvedPool {
    pub name: String,
    /// `/root/child/...`, built from parent names.
    pub path: String,
    pub parent: Option<String>,
    /// Own properties over inherited ones.
    pub properties: BTreeMap<String, Value>,
    /// Own dimensions over inherited ones.
    pub dimensions: BTreeMap<String, Value>,
}

/// Why a pool hierarchy cannot be resolved. Validation reports these with locations; this
/// type exists so the model never hands out a half-resolved tree.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PoolTreeError {
    #[error("pool `{pool}` names parent `{parent}`, which is not declared")]
    UnknownParent { pool: String, parent: String },
    #[error("pools form a cycle: {}", cycle.join(" -> "))]
    Cycle { cycle: Vec<String> },
    #[error("pool `{pool}` is {MAX_DEPTH} levels below its root, the deepest labctl resolves")]
    TooDeep { pool: String },
}

/// The deepest pool hierarchy labctl resolves. Deeper is a mistake, not a lab, and every
/// level costs each pool below it a longer path.
pub const MAX_DEPTH: usize = 64;

/// The resolved pool hierarchy, indexed by name and by path.
#[derive(Debug, Clone, Default)]
pub struct PoolTree {
    by_name: BTreeMap<String, ResolvedPool>,
    path_to_name: HashMap<String, String>,
}

impl PoolTree {
    /// Resolves paths and inheritance. Reports the first unknown parent, cycle or too deep
    /// pool found, in name order so the result is deterministic.
    pub fn build<'a>(pools: impl IntoIterator<Item = &'a PoolDoc>) -> Result<Self, PoolTreeError> {
        let (tree, errors) = PoolTree::build_partial(pools);
        match errors.into_iter().next() {
            Some(first) => Err(first),
            None => Ok(tree),
        }
    }

    /// Resolves every pool whose ancestry resolves, and says why the others do not: each cycle
    /// once, each unknown parent, and the first pool past [`MAX_DEPTH`] of each branch. For
    /// validation, which checks device pools against the sound part of a broken hierarchy.
    /// Linear in the number of pools: each is walked once.
    pub fn build_partial<'a>(
        pools: impl IntoIterator<Item = &'a PoolDoc>,
    ) -> (Self, Vec<PoolTreeError>) {
        let specs: BTreeMap<&str, &PoolSpec> = pools
            .into_iter()
            .map(|p| (p.metadata.name.as_str(), &p.spec))
            .collect();
        let mut tree = PoolTree::default();
        let mut errors = Vec::new();
        // Pools that cannot be resolved, and the depth of those that are (a root is 1).
        let mut unresolvable: HashSet<&str> = HashSet::new();
        let mut depth: HashMap<&str, usize> = HashMap::new();
        for &name in specs.keys() {
            // Walk up to a root or an already resolved ancestor, then resolve downwards.
            let mut chain: Vec<&str> = Vec::new();
            let mut in_chain: HashMap<&str, usize> = HashMap::new();
            let mut cursor = name;
            let broken = loop {
                if depth.contains_key(cursor) {
                    break false;
                }
                if unresolvable.contains(cursor) {
                    break true;
                }
                if let Some(&pos) = in_chain.get(cursor) {
                    let mut cycle: Vec<String> =
                        chain[pos..].iter().map(|s| s.to_string()).collect();
                    cycle.push(cursor.to_string());
                    errors.push(PoolTreeError::Cycle { cycle });
                    break true;
                }
                in_chain.insert(cursor, chain.len());
                chain.push(cursor);
                match specs[cursor].parent.as_deref() {
                    None => break false,
                    Some(parent) if specs.contains_key(parent) => cursor = parent,
                    Some(parent) => {
                        errors.push(PoolTreeError::UnknownParent {
                            pool: cursor.to_string(),
                            parent: parent.to_string(),
                        });
                        break true;
                    }
                }
            };
            if broken {
                unresolvable.extend(chain);
                continue;
            }
            for (i, &pool) in chain.iter().enumerate().rev() {
                let spec = specs[pool];
                let level = spec.parent.as_deref().map_or(0, |p| depth[p]) + 1;
                if level > MAX_DEPTH {
                    errors.push(PoolTreeError::TooDeep {
                        pool: pool.to_string(),
                    });
                    unresolvable.extend(&chain[..=i]);
                    break;
                }
                depth.insert(pool, level);
                let resolved = match spec.parent.as_deref() {
                    None => ResolvedPool {
                        name: pool.to_string(),
                        path: format!("/{pool}"),
                        parent: None,
                        properties: spec.properties.clone(),
                        dimensions: spec.dimensions.clone(),
                    },
                    Some(parent) => {
                        let up = &tree.by_name[parent];
                        ResolvedPool {
                            name: pool.to_string(),
                            path: format!("{}/{pool}", up.path),
                            parent: Some(parent.to_string()),
                            properties: overlay(&up.properties, &spec.properties),
                            dimensions: overlay(&up.dimensions, &spec.dimensions),
                        }
                    }
                };
                tree.path_to_name
                    .insert(resolved.path.clone(), pool.to_string());
                tree.by_name.insert(pool.to_string(), resolved);
            }
        }
        (tree, errors)
    }

    pub fn get(&self, name: &str) -> Option<&ResolvedPool> {
        self.by_name.get(name)
    }

    pub fn by_path(&self, path: &str) -> Option<&ResolvedPool> {
        self.path_to_name
            .get(path)
            .and_then(|n| self.by_name.get(n))
    }

    /// All resolved pools in path order.
    pub fn iter(&self) -> impl Iterator<Item = &ResolvedPool> {
        let mut all: Vec<&ResolvedPool> = self.by_name.values().collect();
        all.sort_by(|a, b| a.path.cmp(&b.path));
        all.into_iter()
    }

    /// Paths of all pools, sorted (for "did you mean" on a bad pool reference).
    pub fn paths(&self) -> Vec<&str> {
        let mut paths: Vec<&str> = self.path_to_name.keys().map(String::as_str).collect();
        paths.sort_unstable();
        paths
    }
}

/// `own` wins over `inherited`.
pub fn overlay(
    inherited: &BTreeMap<String, Value>,
    own: &BTreeMap<String, Value>,
) -> BTreeMap<String, Value> {
    let mut out = inherited.clone();
    out.extend(own.iter().map(|(k, v)| (k.clone(), v.clone())));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Document, Metadata};

    fn pool(name: &str, parent: Option<&str>, dims: &[(&str, Value)]) -> PoolDoc {
        Document {
            api_version: crate::model::API_VERSION.into(),
            kind: "Pool".into(),
            metadata: Metadata {
                name: name.into(),
                labels: Default::default(),
                annotations: Default::default(),
                reconcile: None,
            },
            spec: PoolSpec {
                parent: parent.map(Into::into),
                pool_type: PoolType::Compute,
                proxmox_pool: None,
                description: None,
                properties: Default::default(),
                dimensions: dims
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.clone()))
                    .collect(),
                capacity: None,
            },
        }
    }

    #[test]
    fn paths_and_inheritance_with_override() {
        let pools = [
            pool("gpu-nodes", Some("compute"), &[("gpu", Value::Bool(true))]),
            pool(
                "homelab",
                None,
                &[
                    ("backup", Value::String("daily".into())),
                    ("gpu", Value::Bool(false)),
                ],
            ),
            pool("compute", Some("homelab"), &[]),
        ];
        let tree = PoolTree::build(&pools).unwrap();
        let gpu = tree.by_path("/homelab/compute/gpu-nodes").unwrap();
        assert_eq!(gpu.name, "gpu-nodes");
        assert_eq!(gpu.dimensions["gpu"], Value::Bool(true));
        assert_eq!(gpu.dimensions["backup"], Value::String("daily".into()));
        assert_eq!(
            tree.get("compute").unwrap().dimensions["gpu"],
            Value::Bool(false)
        );
        assert_eq!(
            tree.paths(),
            vec!["/homelab", "/homelab/compute", "/homelab/compute/gpu-nodes"]
        );
    }

    #[test]
    fn cycle_is_reported_with_its_members() {
        let pools = [
            pool("a", Some("b"), &[]),
            pool("b", Some("c"), &[]),
            pool("c", Some("a"), &[]),
        ];
        assert_eq!(
            PoolTree::build(&pools).unwrap_err(),
            PoolTreeError::Cycle {
                cycle: vec!["a".into(), "b".into(), "c".into(), "a".into()]
            }
        );
    }

    #[test]
    fn unknown_parent_is_reported() {
        let pools = [pool("a", Some("nope"), &[])];
        assert_eq!(
            PoolTree::build(&pools).unwrap_err(),
            PoolTreeError::UnknownParent {
                pool: "a".into(),
                parent: "nope".into()
            }
        );
    }
}
