//! Providers as plug-ins. A provider that `labctl.yaml` can declare is one module with a
//! `Settings` type (declared with [`settings!`]) and a `Plugin` implementing [`Factory`], plus
//! its `mod` line and one line in the [`plugins!`] list in `providers/mod.rs`: that line is
//! the `kind` of its entries in `labctl.yaml` and the
//! [`ProviderConfig`](super::ProviderConfig) variant, so nothing else names the provider.

use std::sync::Arc;

use super::{Provider, ProviderError, Resource, Severities};
use crate::model::{DesiredState, Kind};

/// How one kind of provider is made: what it serves, what it expects, how it is built.
pub trait Factory {
    /// Its entry in `labctl.yaml`, without `kind`.
    type Settings;

    /// The kinds of documents it observes.
    const KINDS: &'static [Kind];

    /// How much a drift of each field it compares matters ([`Provider::severities`]).
    const SEVERITIES: Severities;

    /// The desired state as the provider shows it live ([`Provider::expected`]). A provider
    /// that could not be built covers exactly these resources, as unknown.
    fn expected(desired: &DesiredState) -> Vec<Resource>;

    /// Builds the provider from its entry.
    fn build(settings: &Self::Settings) -> Result<Arc<dyn Provider>, ProviderError>;
}

/// Declares a provider's `Settings`: the fields every provider entry has (`name`, `url`,
/// `token`, `tls`, `timeoutSeconds`, `maxBodyBytes`), then its own. Written out rather than flattened: serde
/// cannot refuse unknown fields through `flatten`, and a misspelt field must be an error.
macro_rules! settings {
    ($(#[$meta:meta])* pub struct Settings { $($(#[$fmeta:meta])* pub $field:ident: $ty:ty,)* }) => {
        $(#[$meta])*
        #[derive(
            Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize, schemars::JsonSchema,
        )]
        #[serde(deny_unknown_fields, rename_all = "camelCase")]
        pub struct Settings {
            /// Unique name, used in plans and logs.
            pub name: String,
            /// The API's base URL.
            pub url: String,
            /// The API's credential, when it needs one.
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub token: Option<$crate::model::SecretSource>,
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub tls: Option<$crate::model::TlsConfig>,
            /// Per-request timeout in seconds (default 10), covering the connection, the
            /// whole answer and reading it.
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub timeout_seconds: Option<u32>,
            /// Largest answer read from the API, in bytes (default 67108864, 64 MiB); a larger
            /// one is refused unread and the provider's resources are unknown.
            #[serde(default, skip_serializing_if = "Option::is_none")]
            #[schemars(range(min = 1))]
            pub max_body_bytes: Option<u64>,
            $($(#[$fmeta])* pub $field: $ty,)*
        }
    };
}

/// The list of providers `labctl.yaml` can declare: `Variant => module`, the variant's
/// kebab-case name being the entry's `kind`. Generates
/// [`ProviderConfig`](super::ProviderConfig) with its dispatch to each [`Factory`]. (The
/// modules are declared beside it, not by the macro: rustfmt does not see into macros.)
macro_rules! plugins {
    ($($(#[cfg($cfg:meta)])? $variant:ident => $module:ident,)*) => {
        /// One provider entry of `labctl.yaml`: `kind` picks the provider, the other fields are
        /// its settings.
        #[derive(
            Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize, schemars::JsonSchema,
        )]
        #[serde(tag = "kind", rename_all = "kebab-case")]
        pub enum ProviderConfig {
            $($(#[cfg($cfg)])? $variant($module::Settings),)*
        }

        impl ProviderConfig {
            /// The entry's `name`.
            pub fn name(&self) -> &str {
                match self {
                    $($(#[cfg($cfg)])? Self::$variant(s) => &s.name,)*
                }
            }

            /// The entry's `url`.
            pub fn url(&self) -> &str {
                match self {
                    $($(#[cfg($cfg)])? Self::$variant(s) => &s.url,)*
                }
            }

            /// The entry's `tls` settings.
            pub fn tls(&self) -> Option<&$crate::model::TlsConfig> {
                match self {
                    $($(#[cfg($cfg)])? Self::$variant(s) => s.tls.as_ref(),)*
                }
            }

            /// The kinds of documents the provider observes.
            pub fn kinds(&self) -> &'static [$crate::model::Kind] {
                match self {
                    $($(#[cfg($cfg)])? Self::$variant(_) => {
                        <$module::Plugin as $crate::providers::Factory>::KINDS
                    })*
                }
            }

            /// What the provider expects from `desired` ([`Factory::expected`]).
            pub fn expected(&self, desired: &$crate::model::DesiredState) -> Vec<Resource> {
                match self {
                    $($(#[cfg($cfg)])? Self::$variant(_) => {
                        <$module::Plugin as $crate::providers::Factory>::expected(desired)
                    })*
                }
            }

            /// Builds the provider ([`Factory::build`]).
            pub fn build(&self) -> Result<std::sync::Arc<dyn Provider>, ProviderError> {
                match self {
                    $($(#[cfg($cfg)])? Self::$variant(s) => {
                        <$module::Plugin as $crate::providers::Factory>::build(s)
                    })*
                }
            }
        }
    };
}

/// The [`Provider`] methods a plug-in's provider takes from its [`Factory`] (`kinds`,
/// `severities`, `expected`), written inside its `impl Provider`: the provider and the
/// stand-in for one that could not be built then say the same.
macro_rules! from_factory {
    ($plugin:ty) => {
        fn kinds(&self) -> std::collections::BTreeSet<$crate::model::Kind> {
            <$plugin as $crate::providers::Factory>::KINDS
                .iter()
                .copied()
                .collect()
        }

        fn severities(&self) -> $crate::providers::Severities {
            <$plugin as $crate::providers::Factory>::SEVERITIES
        }

        fn expected(
            &self,
            desired: &$crate::model::DesiredState,
        ) -> Vec<$crate::providers::Resource> {
            <$plugin as $crate::providers::Factory>::expected(desired)
        }
    };
}
