//! Secrets named in labctl.yaml, read where they live at run time.

use crate::model::SecretSource;

/// Reads a secret from where the configuration says, trimmed. The error names the source
/// (variable, file, credential), never a value.
pub fn read(source: &SecretSource) -> Result<String, String> {
    let value = match source {
        SecretSource::Env(var) => std::env::var(var)
            .map_err(|_| format!("token: the environment variable {var} is not set"))?,
        SecretSource::File(path) => std::fs::read_to_string(path)
            .map_err(|e| format!("token: cannot read {}: {e}", path.display()))?,
        SecretSource::SystemdCredential(name) => {
            let dir = std::env::var("CREDENTIALS_DIRECTORY").map_err(|_| {
                format!("token: systemd credential {name}: CREDENTIALS_DIRECTORY is not set")
            })?;
            let path = std::path::Path::new(&dir).join(name);
            std::fs::read_to_string(&path)
                .map_err(|e| format!("token: cannot read {}: {e}", path.display()))?
        }
    };
    Ok(value.trim().to_string())
}
