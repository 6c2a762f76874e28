//! A test-only provider for an existing kind, written the way a new one would be: this file
//! plus its line in the `plugins!` list. Its "live system" is the `devices` of its settings.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::json;

use super::{
    BoxFuture, Factory, Observation, Provider, ProviderError, Resource, Severities, Severity,
};
use crate::model::{DesiredState, DeviceType, Kind};

settings! {
    /// An inventory that reports device types.
    pub struct Settings {
        /// The live devices: name → type.
        #[serde(default)]
        pub devices: BTreeMap<String, DeviceType>,
    }
}

/// Builds [`FixtureProvider`]s.
pub struct Plugin;

impl Factory for Plugin {
    type Settings = Settings;

    const KINDS: &'static [Kind] = &[Kind::Device];

    const SEVERITIES: Severities = &[(Kind::Device, &["type"], Severity::High)];

    fn expected(desired: &DesiredState) -> Vec<Resource> {
        desired
            .devices
            .iter()
            .map(|d| {
                let fields = json!({ "type": d.doc.spec.device_type });
                Resource::new(Kind::Device, d.doc.metadata.name.clone(), fields)
            })
            .collect()
    }

    fn build(settings: &Settings) -> Result<Arc<dyn Provider>, ProviderError> {
        // Like a real API's credential: one that is not there stops only this provider.
        if let Some(token) = &settings.token {
            super::secret::read(token).map_err(ProviderError::config(&settings.name))?;
        }
        Ok(Arc::new(FixtureProvider(settings.clone())))
    }
}

/// Observes the devices of its settings; changes nothing (the default `apply`).
pub struct FixtureProvider(Settings);

impl Provider for FixtureProvider {
    fn name(&self) -> &str {
        &self.0.name
    }

    from_factory!(Plugin);

    fn observe<'a>(
        &'a self,
        _: &'a DesiredState,
    ) -> BoxFuture<'a, Result<Observation, ProviderError>> {
        let resources = self
            .0
            .devices
            .iter()
            .map(|(name, t)| Resource::new(Kind::Device, name.clone(), json!({ "type": t })))
            .collect();
        Box::pin(std::future::ready(Ok(Observation::now(
            &self.0.name,
            resources,
        ))))
    }
}
