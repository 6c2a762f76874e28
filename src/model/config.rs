//! The repository-level `labctl.yaml`: which providers hold the live lab, where their
//! credentials come from, and what labctl may do per kind.

use std::collections::BTreeMap;
use std::path::PathBuf;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Where a secret is read at run time. The repository names the source, never the value.
/// Written as a one-key mapping: `{env: VAR}`, `{file: PATH}` or `{systemdCredential: NAME}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "RawSecretSource", into = "RawSecretSource")]
pub enum SecretSource {
    /// An environment variable of the labctl process.
    Env(String),
    /// A file on the management host (e.g. `/etc/labctl/pve.token`), read whole, trimmed.
    File(PathBuf),
    /// A systemd credential (`LoadCredential=`), read from `$CREDENTIALS_DIRECTORY/NAME`.
    SystemdCredential(String),
}

/// The YAML shape of [`SecretSource`]; serde_yaml only reads enums from `!Tag` syntax, which
/// nobody writes by hand.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawSecretSource {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    env: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    file: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    systemd_credential: Option<String>,
}

impl TryFrom<RawSecretSource> for SecretSource {
    type Error = String;

    fn try_from(raw: RawSecretSource) -> Result<Self, String> {
        match (raw.env, raw.file, raw.systemd_credential) {
            (Some(v), None, None) => Ok(SecretSource::Env(v)),
            (None, Some(f), None) => Ok(SecretSource::File(f)),
            (None, None, Some(c)) => Ok(SecretSource::SystemdCredential(c)),
            _ => Err("give exactly one of `env`, `file` or `systemdCredential`".into()),
        }
    }
}

impl From<SecretSource> for RawSecretSource {
    fn from(s: SecretSource) -> Self {
        let mut raw = RawSecretSource::default();
        match s {
            SecretSource::Env(v) => raw.env = Some(v),
            SecretSource::File(f) => raw.file = Some(f),
            SecretSource::SystemdCredential(c) => raw.systemd_credential = Some(c),
        }
        raw
    }
}

impl JsonSchema for SecretSource {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "SecretSource".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        let one = |key: &str, desc: &str| {
            serde_json::json!({
                "type": "object",
                "properties": { key: { "type": "string", "description": desc } },
                "required": [key],
                "additionalProperties": false
            })
        };
        schemars::json_schema!({
            "description": "Where a secret is read at run time; never the secret itself.",
            "oneOf": [
                one("env", "An environment variable of the labctl process."),
                one("file", "A file on the management host, read whole and trimmed."),
                one("systemdCredential", "A systemd credential, read from $CREDENTIALS_DIRECTORY/NAME.")
            ]
        })
    }
}

/// TLS settings for a provider's HTTPS API. Self-signed lab certificates are the norm: pin
/// a CA file or the certificate's SHA-256 fingerprint rather than turning verification off.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct TlsConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
    /// SHA-256 fingerprint of the server certificate, `AA:BB:…`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fingerprint: Option<String>,
}

/// A SHA-256 certificate fingerprint as 32 bytes: 64 hex digits in any case, optionally
/// separated by `:`, `-` or spaces (`AA:BB:…` as Proxmox VE and `openssl x509 -fingerprint`
/// show it). `None` for anything else. Validation and the TLS client read it the same way.
pub fn parse_fingerprint(raw: &str) -> Option<[u8; 32]> {
    let digits: Vec<u8> = raw
        .trim()
        .bytes()
        .filter(|b| !matches!(b, b':' | b'-' | b' '))
        .collect();
    // `from_str_radix` alone would take a sign (`+f`) as part of a byte.
    if digits.len() != 64 || !digits.iter().all(u8::is_ascii_hexdigit) {
        return None;
    }
    let nibble = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
    let mut out = [0u8; 32];
    for (byte, pair) in out.iter_mut().zip(digits.chunks_exact(2)) {
        *byte = nibble(pair[0])? << 4 | nibble(pair[1])?;
    }
    Some(out)
}

/// One provider entry: each provider's settings are declared in its own module
/// (`providers::kea::Settings`, …), and `kind` picks among them.
pub use crate::providers::ProviderConfig;

/// What labctl may do about a kind's deviations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Policy {
    /// Report only.
    #[default]
    Observe,
    /// Put the live state back to what Git says.
    Apply,
    /// Open a pull request that brings Git in line with the live state.
    Propose,
}

/// `spec` of the `Config` document in `labctl.yaml`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ConfigSpec {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub providers: Vec<ProviderConfig>,
    /// Policy per kind (`Pool`, `Device`, `DhcpReservation`, `Route`, `McpServer`); unlisted
    /// kinds are observed only.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub policy: BTreeMap<String, Policy>,
    /// Named credentials that documents refer to (e.g. an `McpServer`'s `auth.credential`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub credentials: BTreeMap<String, Credential>,
    /// Field differences to leave alone, for a whole kind or one resource.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ignore: Vec<IgnoreSpec>,
    /// Kinds or resources that are observed and reported but never changed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub suspend: Vec<SuspendSpec>,
    /// Per kind, `false` keeps labctl from deleting live resources Git does not declare, even
    /// under policy apply (`DhcpReservation: false`); unlisted kinds are pruned.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub prune: BTreeMap<String, bool>,
    /// Per kind under policy propose, `true` lets labctl propose removing the document of a
    /// resource the lab no longer has (`Device: true`); by default that is reported only.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub propose_removals: BTreeMap<String, bool>,
    /// How much of a provider's lab one run may change before it applies nothing and asks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub safety: Option<SafetySpec>,
    /// How labctl's proposals reach Git: the author of its commits, the forge pull requests
    /// are opened on, their labels, reviewers and limits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub propose: Option<ProposeSpec>,
}

/// How labctl's proposals (policy `propose`) reach Git.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ProposeSpec {
    /// Author and committer of labctl's commits; default `labctl <labctl@localhost>`. labctl
    /// updates only branches whose last commit has this committer and its trailer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub author: Option<AuthorSpec>,
    /// Where pull requests are opened; without it branches are pushed and nothing more.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forge: Option<ForgeSpec>,
    /// Labels every pull request gets.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub labels: Vec<String>,
    /// Users asked to review every pull request.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reviewers: Vec<String>,
    /// At most this many of labctl's pull requests open at once; default 10.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_open: Option<u32>,
    /// At most this many new pull requests per hour; default 5.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_per_hour: Option<u32>,
}

impl ProposeSpec {
    /// The author when none is configured.
    pub const DEFAULT_AUTHOR: (&'static str, &'static str) = ("labctl", "labctl@localhost");

    /// The configured author's name and email, or [`ProposeSpec::DEFAULT_AUTHOR`].
    pub fn author(spec: Option<&ProposeSpec>) -> (&str, &str) {
        spec.and_then(|p| p.author.as_ref())
            .map_or(Self::DEFAULT_AUTHOR, |a| {
                (a.name.as_str(), a.email.as_str())
            })
    }
}

/// Which API a forge speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ForgeKind {
    /// GitHub or GitHub Enterprise Server.
    Github,
    /// Gitea or Forgejo (the same REST API under `/api/v1`).
    Gitea,
}

/// `spec.propose.forge` of labctl.yaml: where pull requests are opened.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ForgeSpec {
    pub kind: ForgeKind,
    /// The API's base URL: `https://api.github.com` (the default for GitHub),
    /// `https://github.example.com/api/v3` for GitHub Enterprise, `https://git.lab/api/v1`
    /// for Gitea and Forgejo (required there).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// `owner/name` of the desired-state repository on the forge.
    pub repository: String,
    /// The API token: a source, never the value.
    pub token: SecretSource,
    /// The branch pull requests merge into; default: the revision labctl tracks when it is a
    /// branch name, else the repository's default branch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base: Option<String>,
    /// Seconds one API call may take; default 30.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_seconds: Option<u64>,
}

impl ForgeSpec {
    /// The API base URL, the default where the forge has one.
    pub fn api_url(&self) -> Option<&str> {
        match (self.kind, self.url.as_deref()) {
            (_, Some(url)) => Some(url.trim_end_matches('/')),
            (ForgeKind::Github, None) => Some("https://api.github.com"),
            (ForgeKind::Gitea, None) => None,
        }
    }

    /// `(owner, name)` of `repository`, if it has that form.
    pub fn owner_and_name(&self) -> Option<(&str, &str)> {
        let (owner, name) = self.repository.split_once('/')?;
        let plain = |s: &str| {
            !s.is_empty()
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        };
        (plain(owner) && plain(name)).then_some((owner, name))
    }
}

/// A Git identity.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct AuthorSpec {
    pub name: String,
    pub email: String,
}

/// Limits on one run's changes per provider, as octoDNS's: a plan that would update or delete
/// more than a share of a provider's existing resources applies nothing with that provider
/// (`reconcile --once --force` overrides once).
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SafetySpec {
    /// Largest share (0–1) of existing resources one run may update; default 0.3.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_update_share: Option<f64>,
    /// Largest share (0–1) of existing resources one run may delete; default 0.3.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_delete_share: Option<f64>,
    /// The shares apply from this many existing resources on; default 10.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_existing: Option<u32>,
}

/// Ignore field paths of a kind (or of one resource of it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct IgnoreSpec {
    pub kind: String,
    /// One resource; absent = every resource of the kind.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Field paths such as `spec.hostname`; a path covers everything below it.
    pub fields: Vec<String>,
    pub reason: String,
}

/// Suspend a kind (or one resource of it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SuspendSpec {
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub reason: String,
}

/// A named credential: where its secret comes from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Credential {
    pub source: SecretSource,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}
