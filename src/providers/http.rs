//! Plumbing the HTTP providers share: the client and its TLS trust, basic authentication, and
//! turning transport failures into [`ProviderError`]s. Each provider keeps its own
//! wording and choices; what differs on purpose is a parameter here.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use sha2::{Digest, Sha256};

use super::ProviderError;
pub use crate::model::parse_fingerprint;
use crate::model::{SecretSource, TlsConfig};

/// Marks the error a pin mismatch produces, to tell it from a network failure.
const FINGERPRINT_MISMATCH: &str = "does not match tls.fingerprint";

/// HTTP Basic credentials, from a `USER:PASSWORD` token.
#[derive(Clone)]
pub(crate) struct BasicAuth {
    user: String,
    password: String,
}

impl BasicAuth {
    /// The credentials in `token`, when one is configured; `api` names the provider in the
    /// error about a token without a `:` ("the Kea token must have the form USER:PASSWORD").
    pub(crate) fn from_token(
        token: Option<&SecretSource>,
        api: &str,
        config_err: &impl Fn(String) -> ProviderError,
    ) -> Result<Option<Self>, ProviderError> {
        let Some(source) = token else {
            return Ok(None);
        };
        let token = super::secret::read(source).map_err(config_err)?;
        let (user, password) = token.split_once(':').ok_or_else(|| {
            config_err(format!("the {api} token must have the form USER:PASSWORD"))
        })?;
        Ok(Some(BasicAuth {
            user: user.to_string(),
            password: password.to_string(),
        }))
    }

    /// `request` with the credentials, when there are any.
    pub(crate) fn sign(
        auth: Option<&Self>,
        request: reqwest::RequestBuilder,
    ) -> reqwest::RequestBuilder {
        match auth {
            Some(a) => request.basic_auth(&a.user, Some(&a.password)),
            None => request,
        }
    }

    /// `Authentication` when `status` (401, 403) says the credentials were refused; `whose`
    /// says whose `USER:PASSWORD` the token should be ("the agent's").
    pub(crate) fn check(
        provider: &str,
        url: &str,
        status: reqwest::StatusCode,
        whose: &str,
    ) -> Result<(), ProviderError> {
        use reqwest::StatusCode;
        if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
            return Err(ProviderError::Authentication {
                provider: provider.to_string(),
                url: url.to_string(),
                detail: format!("HTTP {status}; give {whose} USER:PASSWORD as the token"),
                source: None,
            });
        }
        Ok(())
    }
}

/// What a provider does with `tls.fingerprint`.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Pinning {
    /// Refused; the string names the API in the error ("not supported for Kea").
    Refused(&'static str),
    /// Trusts exactly the certificate with that SHA-256 (and then `tls.caFile` is refused).
    Allowed,
}

/// Builds the client from `builder` with the trust `tls` asks for: `tls.caFile` replaces the
/// public roots with the CAs in that file; `tls.fingerprint` pins one certificate where
/// `pinning` allows it. Verification is never switched off.
pub(crate) fn build_client(
    mut builder: reqwest::ClientBuilder,
    tls: Option<&TlsConfig>,
    pinning: Pinning,
    config_err: &impl Fn(String) -> ProviderError,
) -> Result<reqwest::Client, ProviderError> {
    let (ca_file, fingerprint) = tls
        .map(|t| (t.ca_file.as_ref(), t.fingerprint.as_ref()))
        .unwrap_or_default();
    match (pinning, fingerprint) {
        (Pinning::Refused(api), Some(_)) => {
            return Err(config_err(format!(
                "tls.fingerprint is not supported for {api}; give tls.caFile"
            )))
        }
        (Pinning::Allowed, Some(_)) if ca_file.is_some() => {
            return Err(config_err(
                "give either tls.caFile or tls.fingerprint, not both".into(),
            ))
        }
        (Pinning::Allowed, Some(fingerprint)) => {
            let pin = parse_fingerprint(fingerprint).ok_or_else(|| {
                config_err(format!(
                    "tls.fingerprint `{fingerprint}` is not a SHA-256 fingerprint \
                     (32 hex bytes, e.g. AA:BB:…)"
                ))
            })?;
            builder =
                builder.tls_backend_preconfigured(pinned_tls_config(pin).map_err(config_err)?);
        }
        (_, None) => {}
    }
    if let Some(ca_file) = ca_file {
        let pem = std::fs::read(ca_file).map_err(|e| {
            config_err(format!("cannot read tls.caFile {}: {e}", ca_file.display()))
        })?;
        let certs = reqwest::Certificate::from_pem_bundle(&pem)
            .map_err(|e| config_err(format!("tls.caFile {} is not PEM: {e}", ca_file.display())))?;
        if certs.is_empty() {
            return Err(config_err(format!(
                "tls.caFile {} holds no certificate",
                ca_file.display()
            )));
        }
        // Only that CA: a lab CA file means "this CA, not the public ones".
        builder = builder.tls_certs_only(certs);
    }
    build(builder, config_err)
}

/// `builder.build()`, its failure as a `Config` error. No provider follows a redirect: a 307
/// would send the command (and its credentials) on to another host, whose answer would then be
/// taken for the provider's; a redirect is an answer like any other unexpected status.
pub(crate) fn build(
    builder: reqwest::ClientBuilder,
    config_err: &impl Fn(String) -> ProviderError,
) -> Result<reqwest::Client, ProviderError> {
    builder
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| config_err(format!("cannot build the HTTP client: {e}")))
}

/// The default of a provider's `maxBodyBytes`: Kea's config-get at 100,000 reservations is
/// about 25 MiB.
pub const DEFAULT_MAX_BODY_BYTES: u64 = 64 << 20;

/// Bodies at least this large are parsed on a blocking thread, so that the call's deadline can
/// still end the call while they are parsed.
const PARSE_INLINE_BYTES: usize = 256 << 10;

/// A whole answer: status, headers and body.
pub(crate) struct Reply {
    pub status: reqwest::StatusCode,
    pub headers: reqwest::header::HeaderMap,
    pub body: Vec<u8>,
}

/// The most of an answer a provider reads, and whose answer it is (for the error).
#[derive(Debug, Clone, Copy)]
pub(crate) struct BodyLimit<'a> {
    pub provider: &'a str,
    pub url: &'a str,
    pub max_bytes: u64,
}

impl BodyLimit<'_> {
    /// The answer is larger than the limit: `declared` is its Content-Length, when it gave one.
    fn exceeded(&self, declared: Option<u64>) -> ProviderError {
        let size = match declared {
            Some(n) => format!("declares {n} bytes"),
            None => "goes on".to_string(),
        };
        ProviderError::BadResponse {
            provider: self.provider.to_string(),
            url: crate::redact::userinfo(self.url),
            detail: format!(
                "the answer {size} beyond maxBodyBytes ({} bytes) and was not read; if it is \
                 genuine, raise `maxBodyBytes` of provider `{}` in labctl.yaml",
                self.max_bytes, self.provider
            ),
            source: None,
        }
    }
}

/// Sends `request` and reads the whole answer, at most `limit.max_bytes` of body; a failure
/// to send or to read the body goes through `on_error` (usually [`transport_error`]). The
/// caller's deadline covers it all: the body is read chunk by chunk.
pub(crate) async fn exchange(
    request: reqwest::RequestBuilder,
    limit: BodyLimit<'_>,
    on_error: impl Fn(reqwest::Error) -> ProviderError,
) -> Result<Reply, ProviderError> {
    let response = request.send().await.map_err(&on_error)?;
    let status = response.status();
    let headers = response.headers().clone();
    let body = read_body(response, limit, on_error).await?;
    Ok(Reply {
        status,
        headers,
        body,
    })
}

/// The body of `response`, refused as soon as it is known to be larger than the limit: from
/// its Content-Length before reading anything, else once the bytes read pass it.
pub(crate) async fn read_body(
    mut response: reqwest::Response,
    limit: BodyLimit<'_>,
    on_error: impl Fn(reqwest::Error) -> ProviderError,
) -> Result<Vec<u8>, ProviderError> {
    let declared = response.content_length();
    if declared.is_some_and(|n| n > limit.max_bytes) {
        return Err(limit.exceeded(declared));
    }
    let max = usize::try_from(limit.max_bytes).unwrap_or(usize::MAX);
    let mut body = Vec::with_capacity(declared.map_or(0, |n| n as usize).min(max));
    while let Some(chunk) = response.chunk().await.map_err(&on_error)? {
        if body.len().saturating_add(chunk.len()) > max {
            return Err(limit.exceeded(None));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// The first `n` bytes of the body of `response` (fewer if it ends or breaks off), for an
/// error message: the rest is never read.
pub(crate) async fn read_prefix(mut response: reqwest::Response, n: usize) -> Vec<u8> {
    let mut out = Vec::new();
    while out.len() < n {
        match response.chunk().await {
            Ok(Some(chunk)) => out.extend_from_slice(&chunk[..chunk.len().min(n - out.len())]),
            _ => break,
        }
    }
    out
}

/// `body` parsed as JSON, with the bytes back. A large body is parsed on a blocking thread,
/// so the deadline around the call can end the call while it is parsed; and as the parse
/// cannot be interrupted from outside, it reads through [`Interruptible`], which stops it at
/// its next read once the call has been dropped (timed out), freeing what it had built.
/// For an answer too large to hold as one `Value`, see [`read_text`].
pub(crate) async fn parse_json<T>(body: Vec<u8>) -> (Vec<u8>, Result<T, String>)
where
    T: serde::de::DeserializeOwned + Send + 'static,
{
    if body.len() < PARSE_INLINE_BYTES {
        let parsed = serde_json::from_slice(&body).map_err(|e| e.to_string());
        return (body, parsed);
    }
    let stop = Arc::new(AtomicBool::new(false));
    let _stop_when_dropped = StopOnDrop(Arc::clone(&stop));
    let parse = tokio::task::spawn_blocking(move || {
        let reader = Interruptible {
            rest: &body,
            stop: &stop,
        };
        let reader = std::io::BufReader::with_capacity(64 << 10, reader);
        let parsed = serde_json::from_reader(reader).map_err(|e| e.to_string());
        (body, parsed)
    });
    match parse.await {
        Ok(done) => done,
        // Only a panic in the parser: its bytes are gone with it.
        Err(e) => (Vec::new(), Err(format!("the JSON parser failed: {e}"))),
    }
}

/// `body` as text, and what `read` finds in it, with a large body read on a blocking thread.
/// For an answer read where it lies (Kea's configuration, 20 MB at 100,000 reservations):
/// `read` keeps slices' positions, not copies. Unlike [`parse_json`] it is not interrupted
/// when the call ends first, so `read` must build nothing that must be freed early and cost
/// no more than a pass over the body, which the limit has bounded (Kea's reads the answer in
/// one pass that keeps three slices). A body that is not UTF-8 is not JSON.
pub(crate) async fn read_text<R>(
    body: Vec<u8>,
    read: impl FnOnce(&str) -> R + Send + 'static,
) -> Result<(String, R), String>
where
    R: Send + 'static,
{
    let inline = body.len() < PARSE_INLINE_BYTES;
    let run = move || {
        let text = String::from_utf8(body).map_err(|e| e.utf8_error().to_string())?;
        let found = read(&text);
        Ok((text, found))
    };
    if inline {
        return run();
    }
    tokio::task::spawn_blocking(run)
        .await
        .unwrap_or_else(|e| Err(format!("reading the answer failed: {e}")))
}

/// Sets its flag when dropped: the future awaiting a parse is gone.
struct StopOnDrop(Arc<AtomicBool>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// Reads `rest`, failing once `stop` is set.
struct Interruptible<'a> {
    rest: &'a [u8],
    stop: &'a AtomicBool,
}

impl std::io::Read for Interruptible<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.stop.load(Ordering::Relaxed) {
            return Err(std::io::Error::other("the call ended before parsing did"));
        }
        let n = buf.len().min(self.rest.len());
        buf[..n].copy_from_slice(&self.rest[..n]);
        self.rest = &self.rest[n..];
        Ok(n)
    }
}

/// How [`transport_error`] classifies a failure that is not a timeout.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Classify {
    /// A certificate failure is `Authentication` (the server is not the one configured, and
    /// retrying will not help) instead of `Unreachable`.
    pub certificate_is_authentication: bool,
    /// An answer that broke off or could not be decoded is `BadResponse` instead of
    /// `Unreachable` (which is retried).
    pub body_is_bad_response: bool,
}

/// A `Timeout` of `provider` after `timeout` (reported as at least 1 s).
pub(crate) fn timeout_error(provider: &str, timeout: Duration) -> ProviderError {
    ProviderError::Timeout {
        provider: provider.to_string(),
        seconds: timeout.as_secs().max(1),
    }
}

/// A reqwest failure talking to `url` as a [`ProviderError`]: a timeout is `Timeout`,
/// anything else `Unreachable` unless `classify` says otherwise.
pub(crate) fn transport_error(
    provider: &str,
    url: &str,
    timeout: Duration,
    e: reqwest::Error,
    classify: Classify,
) -> ProviderError {
    if e.is_timeout() {
        return timeout_error(provider, timeout);
    }
    let chain = error_chain(&e);
    let bad_body = e.is_decode() || e.is_body();
    let source: Option<super::Cause> = Some(Arc::new(e));
    let (provider, url) = (provider.to_string(), url.to_string());
    if classify.certificate_is_authentication
        && (chain.contains(FINGERPRINT_MISMATCH) || chain.contains("certificate"))
    {
        ProviderError::Authentication {
            provider,
            url,
            detail: format!("TLS: {chain}"),
            source,
        }
    } else if classify.body_is_bad_response && bad_body {
        ProviderError::BadResponse {
            provider,
            url,
            detail: chain,
            source,
        }
    } else {
        // Refused, reset or DNS: the server could not be talked to at all.
        ProviderError::Unreachable {
            provider,
            url,
            detail: chain,
            source,
        }
    }
}

/// The error and its causes on one line (reqwest's own message is only the outermost).
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

/// The start of `body`, as text, for an error message: only its first bytes are looked at.
pub(crate) fn excerpt_bytes(body: &[u8]) -> String {
    excerpt(&String::from_utf8_lossy(&body[..body.len().min(1024)]))
}

/// `text` trimmed, cut to 200 characters (marked with `…`) for an error message.
pub(crate) fn excerpt(text: &str) -> String {
    let text = text.trim();
    if text.chars().count() > 200 {
        format!("{}…", text.chars().take(200).collect::<String>())
    } else {
        text.to_string()
    }
}

fn format_fingerprint(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// A rustls client configuration that accepts exactly the certificate with SHA-256 `pin`.
fn pinned_tls_config(pin: [u8; 32]) -> Result<rustls::ClientConfig, String> {
    let provider = rustls::crypto::CryptoProvider::get_default()
        .cloned()
        .unwrap_or_else(|| Arc::new(rustls::crypto::aws_lc_rs::default_provider()));
    let verifier = PinnedCertificate {
        pin,
        algorithms: provider.signature_verification_algorithms,
    };
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth();
    Ok(config)
}

/// Accepts the server certificate whose SHA-256 (over its DER encoding) is `pin`, and nothing
/// else. Chain, names and dates are not consulted: the pin names the exact certificate, as an
/// SSH host key does. The handshake signature is still verified, so the server must hold the
/// certificate's private key.
#[derive(Debug)]
struct PinnedCertificate {
    pin: [u8; 32],
    algorithms: rustls::crypto::WebPkiSupportedAlgorithms,
}

impl rustls::client::danger::ServerCertVerifier for PinnedCertificate {
    fn verify_server_cert(
        &self,
        end_entity: &rustls::pki_types::CertificateDer<'_>,
        _intermediates: &[rustls::pki_types::CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        let actual = Sha256::digest(end_entity.as_ref());
        if actual.as_slice() == self.pin {
            Ok(rustls::client::danger::ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::General(format!(
                "the server certificate (SHA-256 {}) {FINGERPRINT_MISMATCH} {}",
                format_fingerprint(&actual),
                format_fingerprint(&self.pin)
            )))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_large_body_is_parsed_off_the_runtime_and_a_dropped_parse_stops() {
        let mut body = b"[".to_vec();
        body.extend(std::iter::repeat_n(&b"1,"[..], 400_000).flatten());
        body.extend_from_slice(b"2]");
        assert!(body.len() > PARSE_INLINE_BYTES);
        let (back, parsed) = parse_json::<serde_json::Value>(body.clone()).await;
        assert_eq!(back, body);
        let parsed = parsed.unwrap();
        assert_eq!(parsed.as_array().unwrap().len(), 400_001);
        let (_, cut) = parse_json::<serde_json::Value>(body[..body.len() - 2].to_vec()).await;
        let cut = cut.unwrap_err();
        assert!(cut.contains("EOF while parsing"), "{cut}");

        // What the parse thread sees once the awaiting call is gone.
        let stop = Arc::new(AtomicBool::new(false));
        drop(StopOnDrop(Arc::clone(&stop)));
        let reader = Interruptible {
            rest: &body,
            stop: &stop,
        };
        let e = serde_json::from_reader::<_, serde_json::Value>(reader).unwrap_err();
        assert!(
            e.to_string().contains("the call ended before parsing did"),
            "{e}"
        );
    }
}
