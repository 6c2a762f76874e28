//! labctl: a GitOps reconciliation controller for a homelab.
//!
//! The flow is Git → [`source`] → [`validate`] (into the [`model`]) → observe → diff → record →
//! remediate / answer MCP. See ARCHITECTURE.md for which module owns each step.

#[macro_use]
mod text_enum;

pub mod canonical;
pub mod controller;
pub mod diff;
pub mod jsondiff;
pub mod mcp;
pub mod model;
pub mod propose;
pub mod providers;
pub mod readmodel;
pub mod reconcile;
pub mod redact;
pub mod serve;
pub mod source;
pub mod store;
pub mod text;
pub mod time;
pub mod validate;
pub mod web;
