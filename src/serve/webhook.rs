//! Push webhooks: which forge sent one, and whether its signature is the shared secret's.
//! Pure: bytes and headers in, a verdict out. Every comparison is constant-time.

use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

/// The forges labctl takes push webhooks from, each at `/hooks/<name>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Forge {
    /// `X-Hub-Signature-256: sha256=<hex>`, event in `X-GitHub-Event`.
    GitHub,
    /// `X-Gitea-Signature: <hex>`, event in `X-Gitea-Event`.
    Gitea,
    /// `X-Forgejo-Signature: <hex>` (Forgejo also sends Gitea's), event in `X-Forgejo-Event`.
    Forgejo,
    /// Anything that can send `Authorization: Bearer <secret>` (a CI job, a script).
    Generic,
}

impl Forge {
    pub fn from_path(name: &str) -> Option<Forge> {
        match name {
            "github" => Some(Forge::GitHub),
            "gitea" => Some(Forge::Gitea),
            "forgejo" => Some(Forge::Forgejo),
            "generic" => Some(Forge::Generic),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Forge::GitHub => "github",
            Forge::Gitea => "gitea",
            Forge::Forgejo => "forgejo",
            Forge::Generic => "generic",
        }
    }
}

/// What a webhook asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Signed by the secret and a push (or the generic endpoint): reconcile.
    Push,
    /// Signed, but an event that changes no branch (`ping`, an issue comment): answer 200 and
    /// do nothing.
    Ignored(String),
    /// Missing or wrong signature: 401, and nothing is done.
    Unauthorized(&'static str),
}

/// Checks a webhook from `forge` with `body` and `header` (a lookup by lower-case name)
/// against `secret`.
pub fn verify(
    forge: Forge,
    secret: &[u8],
    header: impl Fn(&str) -> Option<String>,
    body: &[u8],
) -> Verdict {
    let signed = match forge {
        Forge::Generic => {
            let Some(auth) = header("authorization") else {
                return Verdict::Unauthorized("no Authorization header");
            };
            let Some(given) = crate::text::bearer(&auth) else {
                return Verdict::Unauthorized("Authorization is not a Bearer token");
            };
            // Compared as MACs of equal length, so neither the length nor a prefix leaks.
            let mac = |value: &[u8]| hmac_sha256(b"labctl generic webhook", value);
            bool::from(mac(given.trim().as_bytes()).ct_eq(&mac(secret)))
        }
        _ => {
            let (name, prefix) = match forge {
                Forge::GitHub => ("x-hub-signature-256", "sha256="),
                Forge::Gitea => ("x-gitea-signature", ""),
                _ => ("x-forgejo-signature", ""),
            };
            let Some(value) = header(name) else {
                return Verdict::Unauthorized("no signature header");
            };
            let Some(hex) = value.trim().strip_prefix(prefix) else {
                return Verdict::Unauthorized("the signature is not sha256=<hex>");
            };
            let Some(given) = from_hex(hex) else {
                return Verdict::Unauthorized("the signature is not hexadecimal");
            };
            bool::from(hmac_sha256(secret, body).as_slice().ct_eq(&given))
        }
    };
    if !signed {
        return Verdict::Unauthorized("the signature does not match the shared secret");
    }
    let event = match forge {
        Forge::GitHub => header("x-github-event"),
        Forge::Gitea => header("x-gitea-event"),
        Forge::Forgejo => header("x-forgejo-event").or_else(|| header("x-gitea-event")),
        Forge::Generic => None,
    };
    match event.as_deref() {
        None if forge == Forge::Generic => Verdict::Push,
        Some("push") => Verdict::Push,
        Some(other) => Verdict::Ignored(other.to_string()),
        None => Verdict::Ignored("(no event header)".into()),
    }
}

fn hmac_sha256(key: &[u8], data: &[u8]) -> [u8; 32] {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes a key of any length");
    mac.update(data);
    mac.finalize().into_bytes().into()
}

/// The HMAC-SHA256 signature GitHub sends for `body`: `sha256=<hex>`.
pub fn github_signature(secret: &[u8], body: &[u8]) -> String {
    let hex: String = hmac_sha256(secret, body)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("sha256={hex}")
}

fn from_hex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) || !text.is_ascii() {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |name| {
            pairs
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        }
    }

    // GitHub's documented example: secret "It's a Secret to Everybody", payload
    // "Hello, World!" → sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17
    // (docs.github.com, "Validating webhook deliveries").
    const GITHUB_SECRET: &[u8] = b"It's a Secret to Everybody";
    const GITHUB_SIGNATURE: &str =
        "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";

    #[test]
    fn github_signatures_match_the_documented_example() {
        assert_eq!(
            github_signature(GITHUB_SECRET, b"Hello, World!"),
            GITHUB_SIGNATURE
        );
        let h = [
            ("x-hub-signature-256", GITHUB_SIGNATURE),
            ("x-github-event", "push"),
        ];
        assert_eq!(
            verify(Forge::GitHub, GITHUB_SECRET, headers(&h), b"Hello, World!"),
            Verdict::Push
        );
        let ping = [
            ("x-hub-signature-256", GITHUB_SIGNATURE),
            ("x-github-event", "ping"),
        ];
        assert_eq!(
            verify(
                Forge::GitHub,
                GITHUB_SECRET,
                headers(&ping),
                b"Hello, World!"
            ),
            Verdict::Ignored("ping".into())
        );
    }

    #[test]
    fn a_wrong_missing_or_malformed_signature_is_refused() {
        let body = b"Hello, World!";
        let wrong = [
            ("x-hub-signature-256", GITHUB_SIGNATURE),
            ("x-github-event", "push"),
        ];
        assert!(matches!(
            verify(Forge::GitHub, b"another secret", headers(&wrong), body),
            Verdict::Unauthorized(_)
        ));
        assert!(matches!(
            verify(
                Forge::GitHub,
                GITHUB_SECRET,
                headers(&wrong),
                b"Hello, World?"
            ),
            Verdict::Unauthorized(_)
        ));
        assert!(matches!(
            verify(Forge::GitHub, GITHUB_SECRET, headers(&[]), body),
            Verdict::Unauthorized("no signature header")
        ));
        let bare = [("x-hub-signature-256", &GITHUB_SIGNATURE[7..])];
        assert!(matches!(
            verify(Forge::GitHub, GITHUB_SECRET, headers(&bare), body),
            Verdict::Unauthorized(_)
        ));
        let gitea = [("x-gitea-signature", "zz"), ("x-gitea-event", "push")];
        assert!(matches!(
            verify(Forge::Gitea, GITHUB_SECRET, headers(&gitea), body),
            Verdict::Unauthorized(_)
        ));
    }

    #[test]
    fn gitea_and_forgejo_sign_with_bare_hex_and_generic_takes_a_bearer_secret() {
        let body = br#"{"ref":"refs/heads/main"}"#;
        let sig = github_signature(b"s3cret", body)[7..].to_string();
        let gitea = [
            ("x-gitea-signature", sig.as_str()),
            ("x-gitea-event", "push"),
        ];
        assert_eq!(
            verify(Forge::Gitea, b"s3cret", headers(&gitea), body),
            Verdict::Push
        );
        let forgejo = [
            ("x-forgejo-signature", sig.as_str()),
            ("x-forgejo-event", "push"),
        ];
        assert_eq!(
            verify(Forge::Forgejo, b"s3cret", headers(&forgejo), body),
            Verdict::Push
        );
        let good = [("authorization", "Bearer s3cret")];
        assert_eq!(
            verify(Forge::Generic, b"s3cret", headers(&good), b""),
            Verdict::Push
        );
        for bad in ["Bearer s3cre", "Bearer s3cret2", "Basic s3cret"] {
            let h = [("authorization", bad)];
            assert!(matches!(
                verify(Forge::Generic, b"s3cret", headers(&h), b""),
                Verdict::Unauthorized(_)
            ));
        }
    }
}
