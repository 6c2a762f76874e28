//! Who is looking at the pages: a person who gave one of MCP's tokens once on the login form
//! and holds a session cookie, or a user a trusted reverse proxy names in a header (single
//! sign-on in front of labctl), or anyone on a loopback listener served without
//! authentication. Sessions live in memory: a restart logs everyone out, and a session id
//! is worth nothing outside this process.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::http::{header, HeaderMap, HeaderName};
use subtle::ConstantTimeEq;

use crate::mcp::http::Cidr;
use crate::mcp::{Scope, Tokens};

/// The session cookie: HttpOnly, SameSite=Strict, Path=/.
pub const SESSION_COOKIE: &str = "labctl_session";
/// The login form's CSRF cookie (double submit: the form carries the same value).
pub const CSRF_COOKIE: &str = "labctl_csrf";
/// Sessions held at once; the oldest goes when a login would exceed it.
const MAX_SESSIONS: usize = 4096;
/// Longest value taken from a proxy's user header.
const MAX_USER_CHARS: usize = 64;

/// How the pages decide who is looking.
#[derive(Debug, Clone)]
pub struct AccessOptions {
    /// The tokens a person may log in with (MCP's tokens file).
    pub tokens: Tokens,
    /// No login: every request is the anonymous reader (loopback listeners only, as MCP's
    /// `--insecure-no-auth`).
    pub open: bool,
    /// The header a single-sign-on proxy puts the user's name in (`Remote-User`), believed
    /// only from `proxies`.
    pub user_header: Option<HeaderName>,
    /// Addresses of the reverse proxies whose user header is believed.
    pub proxies: Vec<Cidr>,
    /// How long a session lasts after its login.
    pub session_ttl: Duration,
}

impl Default for AccessOptions {
    fn default() -> Self {
        AccessOptions {
            tokens: Tokens::default(),
            open: false,
            user_header: None,
            proxies: Vec::new(),
            session_ttl: Duration::from_secs(12 * 3600),
        }
    }
}

/// Who a page is shown to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Viewer {
    /// The token's name, `proxy:<user>` or `anonymous`.
    pub name: String,
    /// The session's CSRF token, for its logout form; `None` when there is no session to
    /// end (proxy or open access).
    pub csrf: Option<String>,
}

struct Session {
    name: String,
    csrf: String,
    expires: Instant,
}

/// The pages' access rules and their sessions.
pub struct Access {
    options: AccessOptions,
    sessions: Mutex<HashMap<String, Session>>,
}

impl Access {
    pub fn new(options: AccessOptions) -> Self {
        Access {
            options,
            sessions: Mutex::new(HashMap::new()),
        }
    }

    /// Who is asking, or `None` when the request must log in first. A user header is read
    /// only from a configured proxy address; from anywhere else it is ignored.
    pub fn viewer(&self, peer: IpAddr, headers: &HeaderMap) -> Option<Viewer> {
        if let Some(name) = self.proxy_user(peer, headers) {
            return Some(Viewer {
                name: format!("proxy:{name}"),
                csrf: None,
            });
        }
        if let Some(id) = cookie(headers, SESSION_COOKIE) {
            let now = Instant::now();
            let sessions = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(s) = sessions.get(id).filter(|s| s.expires > now) {
                return Some(Viewer {
                    name: s.name.clone(),
                    csrf: Some(s.csrf.clone()),
                });
            }
        }
        self.options.open.then(|| Viewer {
            name: "anonymous".into(),
            csrf: None,
        })
    }

    fn proxy_user(&self, peer: IpAddr, headers: &HeaderMap) -> Option<String> {
        let header = self.options.user_header.as_ref()?;
        if !self.trusted(peer) {
            return None;
        }
        let value = headers.get(header)?.to_str().ok()?.trim();
        let name: String = crate::text::printable(value, false)
            .chars()
            .take(MAX_USER_CHARS)
            .collect();
        (!name.is_empty()).then_some(name)
    }

    /// Opens a session for `token` when it is a known token with the read scope: the
    /// session's id (the cookie's value) and the token's name. `None` for any other token.
    pub fn login(&self, token: &str) -> Option<(String, String)> {
        let entry = self.options.tokens.verify(token.trim())?;
        if !entry.scopes.iter().any(|s| *s >= Scope::Read) {
            return None;
        }
        let id = random_hex();
        let now = Instant::now();
        let mut sessions = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
        sessions.retain(|_, s| s.expires > now);
        if sessions.len() >= MAX_SESSIONS {
            if let Some(oldest) = sessions
                .iter()
                .min_by_key(|(_, s)| s.expires)
                .map(|(k, _)| k.clone())
            {
                sessions.remove(&oldest);
            }
        }
        sessions.insert(
            id.clone(),
            Session {
                name: entry.name.clone(),
                csrf: random_hex(),
                expires: now + self.options.session_ttl,
            },
        );
        Some((id, entry.name.clone()))
    }

    /// Ends the session the request names when `csrf` is that session's token; the name it
    /// was opened for.
    pub fn logout(&self, headers: &HeaderMap, csrf: &str) -> Option<String> {
        let id = cookie(headers, SESSION_COOKIE)?;
        let mut sessions = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
        let session = sessions.get(id)?;
        if !same(&session.csrf, csrf) {
            return None;
        }
        sessions.remove(id).map(|s| s.name)
    }

    /// How long a session lasts.
    pub fn ttl(&self) -> Duration {
        self.options.session_ttl
    }

    /// Whether logging in means anything here: there are tokens to log in with.
    pub fn has_tokens(&self) -> bool {
        !self.options.tokens.is_empty()
    }

    /// Whether `peer` is a trusted reverse proxy.
    pub fn trusted(&self, peer: IpAddr) -> bool {
        self.options.proxies.iter().any(|c| c.contains(peer))
    }

    /// Whether the request came through a trusted proxy that says it was HTTPS: the
    /// session cookie is then `Secure`. A direct plain-HTTP listener cannot set it (the
    /// browser would never send the cookie back).
    pub fn secure(&self, peer: IpAddr, headers: &HeaderMap) -> bool {
        self.trusted(peer)
            && headers
                .get("x-forwarded-proto")
                .and_then(|v| v.to_str().ok())
                .is_some_and(|p| p.eq_ignore_ascii_case("https"))
    }
}

/// A `Set-Cookie` value: HttpOnly and SameSite=Strict always, `Secure` when asked;
/// `max_age` 0 removes it.
pub fn set_cookie(name: &str, value: &str, max_age: Duration, secure: bool) -> String {
    format!(
        "{name}={value}; Path=/; Max-Age={}; HttpOnly; SameSite=Strict{}",
        max_age.as_secs(),
        if secure { "; Secure" } else { "" }
    )
}

/// The value of cookie `name` in the request's `Cookie` headers.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// Equal, in time that does not depend on where they differ.
pub fn same(a: &str, b: &str) -> bool {
    a.len() == b.len() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

/// 32 bytes from the OS's random source, as 64 hex digits.
pub fn random_hex() -> String {
    let mut bytes = [0u8; 32];
    // The OS's random source does not fail on Linux once booted; a process that cannot get
    // randomness must not hand out guessable sessions.
    getrandom::fill(&mut bytes).expect("the OS random source");
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn access(proxies: &str) -> Access {
        let tokens = format!(
            "tokens: [{{name: reader, sha256: {}, scopes: [read]}}]",
            crate::mcp::sha256_hex("s3cret")
        );
        Access::new(AccessOptions {
            tokens: Tokens::parse(&tokens).unwrap(),
            user_header: Some(HeaderName::from_static("remote-user")),
            proxies: vec![proxies.parse().unwrap()],
            ..AccessOptions::default()
        })
    }

    fn with_cookie(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::COOKIE, HeaderValue::from_str(value).unwrap());
        h
    }

    #[test]
    fn a_session_is_opened_by_a_known_token_and_closed_by_its_csrf_token() {
        let a = access("10.0.0.1/32");
        let local: IpAddr = "127.0.0.1".parse().unwrap();
        assert!(a.login("wrong").is_none());
        assert!(a.viewer(local, &HeaderMap::new()).is_none());
        let (id, name) = a.login(" s3cret\n").unwrap();
        assert_eq!(name, "reader");
        let headers = with_cookie(&format!("theme=dark; {SESSION_COOKIE}={id}"));
        let viewer = a.viewer(local, &headers).unwrap();
        assert_eq!(viewer.name, "reader");
        let csrf = viewer.csrf.unwrap();
        assert!(a.logout(&headers, "not-it").is_none());
        assert!(a.viewer(local, &headers).is_some());
        assert_eq!(a.logout(&headers, &csrf).as_deref(), Some("reader"));
        assert!(a.viewer(local, &headers).is_none());
    }

    #[test]
    fn a_user_header_counts_only_from_a_trusted_proxy() {
        let a = access("10.0.0.1/32");
        let mut headers = HeaderMap::new();
        headers.insert("remote-user", HeaderValue::from_static("alice"));
        assert!(a.viewer("10.0.0.2".parse().unwrap(), &headers).is_none());
        let v = a.viewer("10.0.0.1".parse().unwrap(), &headers).unwrap();
        assert_eq!(v.name, "proxy:alice");
        assert!(v.csrf.is_none());
        headers.insert("x-forwarded-proto", HeaderValue::from_static("https"));
        assert!(a.secure("10.0.0.1".parse().unwrap(), &headers));
        assert!(!a.secure("10.0.0.2".parse().unwrap(), &headers));
    }

    #[test]
    fn cookies_are_strict_and_http_only() {
        let c = set_cookie(SESSION_COOKIE, "ab", Duration::from_secs(60), true);
        assert_eq!(
            c,
            "labctl_session=ab; Path=/; Max-Age=60; HttpOnly; SameSite=Strict; Secure"
        );
        assert_eq!(random_hex().len(), 64);
        assert_ne!(random_hex(), random_hex());
    }
}
