//! Who may do what over HTTP: bearer tokens kept as SHA-256 hashes, their scopes, and the
//! scope each tool needs. stdio is trusted as the local user and holds every scope.

use std::path::{Path, PathBuf};

use serde::Deserialize;

/// What a token may do. Ordered: `admin` implies `propose`, which implies `read`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// Ask about the lab.
    Read,
    /// Propose changes as pull requests: `find_placement`, `propose_change`.
    Propose,
    /// Change what the controller does: trigger a reconcile.
    Admin,
}

/// The scopes a caller holds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Scopes(Vec<Scope>);

impl Scopes {
    pub fn new(scopes: impl IntoIterator<Item = Scope>) -> Self {
        Scopes(scopes.into_iter().collect())
    }

    /// Every scope: the local user on stdio.
    pub fn all() -> Self {
        Scopes(vec![Scope::Admin])
    }

    /// No scope at all: what an HTTP request without a verified token would hold.
    pub fn none() -> Self {
        Scopes(Vec::new())
    }

    /// Whether these scopes include `needed` (a higher scope implies the lower ones).
    pub fn allows(&self, needed: Scope) -> bool {
        self.0.iter().any(|s| *s >= needed)
    }
}

/// Who an HTTP request is once its token is verified (a static token, an OAuth access
/// token, or no token under `--insecure-no-auth`), and what it may do.
#[derive(Debug, Clone, PartialEq)]
pub struct Caller {
    /// The token's name, `oauth:<user>` or `anonymous`: rate limits, sessions and the audit
    /// log are per caller.
    pub name: String,
    pub scopes: Vec<Scope>,
}

impl From<&TokenEntry> for Caller {
    fn from(entry: &TokenEntry) -> Self {
        Caller {
            name: entry.name.clone(),
            scopes: entry.scopes.clone(),
        }
    }
}

/// One entry of the tokens file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenEntry {
    /// Shown in the audit log as `http:<name>@<client address>`.
    pub name: String,
    /// SHA-256 of the token, 64 hex digits (`labctl mcp hash-token`).
    pub sha256: String,
    pub scopes: Vec<Scope>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TokensFile {
    tokens: Vec<TokenEntry>,
}

/// The tokens an HTTP server accepts.
#[derive(Debug, Clone, Default)]
pub struct Tokens {
    entries: Vec<([u8; 32], TokenEntry)>,
}

/// Why a tokens file was refused.
#[derive(Debug, thiserror::Error)]
pub enum TokensError {
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: {source}", path.display())]
    InFile {
        path: PathBuf,
        source: Box<TokensError>,
    },
    #[error(transparent)]
    Yaml(#[from] serde_yaml::Error),
    #[error("token `{0}`: sha256 must be 64 hex digits (labctl mcp hash-token prints it)")]
    BadHash(String),
    #[error("token `{0}`: no scopes (read, propose, admin)")]
    NoScopes(String),
    #[error("token `{0}` is listed twice")]
    Duplicate(String),
}

impl Tokens {
    /// Reads a YAML tokens file: `tokens: [{name, sha256, scopes: [read|propose|admin]}]`.
    pub fn load(path: &Path) -> Result<Tokens, TokensError> {
        let text = std::fs::read_to_string(path).map_err(|source| TokensError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Tokens::parse(&text).map_err(|e| TokensError::InFile {
            path: path.to_path_buf(),
            source: Box::new(e),
        })
    }

    pub fn parse(text: &str) -> Result<Tokens, TokensError> {
        let file: TokensFile = serde_yaml::from_str(text)?;
        let mut entries = Vec::new();
        for t in file.tokens {
            let Some(hash) = parse_hex32(&t.sha256) else {
                return Err(TokensError::BadHash(t.name));
            };
            if t.scopes.is_empty() {
                return Err(TokensError::NoScopes(t.name));
            }
            if entries
                .iter()
                .any(|(_, e): &(_, TokenEntry)| e.name == t.name)
            {
                return Err(TokensError::Duplicate(t.name));
            }
            entries.push((hash, t));
        }
        Ok(Tokens { entries })
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The entry whose hash is the token's. Every entry is compared, in constant time, so
    /// neither the timing nor the position of a match says anything about the others.
    pub fn verify(&self, token: &str) -> Option<&TokenEntry> {
        let hash = sha256(token.as_bytes());
        let mut found = None;
        for (h, entry) in &self.entries {
            if constant_time_eq(h, &hash) && found.is_none() {
                found = Some(entry);
            }
        }
        found
    }
}

/// SHA-256 as 64 lowercase hex digits, for `labctl mcp hash-token`.
pub fn sha256_hex(token: &str) -> String {
    crate::canonical::sha256_hex(token.as_bytes())
}

fn sha256(bytes: &[u8]) -> [u8; 32] {
    use sha2::{Digest, Sha256};
    Sha256::digest(bytes).into()
}

fn parse_hex32(hex: &str) -> Option<[u8; 32]> {
    let hex = hex.trim();
    if hex.len() != 64 || !hex.is_ascii() {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}

/// Equal without an early exit: the time taken does not depend on where the bytes differ.
fn constant_time_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    // Keep the optimiser from turning the fold back into a comparison that exits early.
    std::hint::black_box(diff) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_are_ordered_and_tokens_verify_by_hash() {
        assert!(Scopes::new([Scope::Admin]).allows(Scope::Read));
        assert!(Scopes::new([Scope::Propose]).allows(Scope::Read));
        assert!(!Scopes::new([Scope::Read]).allows(Scope::Admin));
        assert!(!Scopes::none().allows(Scope::Read));
        let text = format!(
            "tokens:\n  - {{name: bot, sha256: {}, scopes: [read]}}\n  - {{name: ops, sha256: \"{}\", scopes: [admin]}}\n",
            sha256_hex("r3ad"),
            sha256_hex("adm1n").to_uppercase()
        );
        let tokens = Tokens::parse(&text).unwrap();
        assert_eq!(tokens.verify("r3ad").unwrap().name, "bot");
        assert_eq!(tokens.verify("adm1n").unwrap().name, "ops");
        assert!(tokens.verify("nope").is_none());
        assert!(Tokens::parse("tokens: [{name: x, sha256: abc, scopes: [read]}]").is_err());
        assert!(Tokens::parse("tokens: [{name: x, sha256: abc, scopes: [root]}]").is_err());
    }

    #[test]
    fn a_refused_tokens_file_says_which_file_and_which_token() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.yaml");
        let e = Tokens::load(&missing).unwrap_err();
        assert!(matches!(e, TokensError::Read { .. }));
        assert!(e
            .to_string()
            .starts_with(&format!("cannot read {}: ", missing.display())));
        let path = dir.path().join("tokens.yaml");
        let hash = sha256_hex("t");
        let twice = format!("tokens: [{{name: a, sha256: {hash}, scopes: [read]}}, {{name: a, sha256: {hash}, scopes: [read]}}]");
        std::fs::write(&path, twice).unwrap();
        let e = Tokens::load(&path).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!("{}: token `a` is listed twice", path.display())
        );
        std::fs::write(
            &path,
            format!("tokens: [{{name: b, sha256: {hash}, scopes: []}}]"),
        )
        .unwrap();
        let e = Tokens::load(&path).unwrap_err().to_string();
        assert!(
            e.ends_with("token `b`: no scopes (read, propose, admin)"),
            "{e}"
        );
    }
}
