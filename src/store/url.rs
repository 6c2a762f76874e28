//! Database URLs: which backend, where the SQLite file is, and how to print one safely.

use std::path::PathBuf;

use super::StoreError;

/// Which database a URL names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Target {
    /// A database file, and the URL sqlx gets (creating the file if missing).
    Sqlite {
        path: PathBuf,
        url: String,
    },
    Postgres {
        url: String,
    },
}

/// Parses `sqlite://PATH[?params]`, `sqlite:PATH` or `postgres[ql]://…`.
pub(crate) fn parse(url: &str) -> Result<Target, StoreError> {
    let Some((scheme, rest)) = url.split_once(':') else {
        return Err(StoreError::InvalidUrl {
            url: redact(url),
            reason: "no scheme; use sqlite://PATH or postgres://HOST/DB".into(),
        });
    };
    match scheme.to_ascii_lowercase().as_str() {
        "sqlite" => {
            let rest = rest.strip_prefix("//").unwrap_or(rest);
            let (path, params) = match rest.split_once('?') {
                Some((path, params)) => (path, Some(params)),
                None => (rest, None),
            };
            if path.is_empty() || path == ":memory:" {
                return Err(StoreError::InvalidUrl {
                    url: redact(url),
                    reason: "the state store needs a database file: sqlite://PATH".into(),
                });
            }
            let mut params: Vec<&str> = params
                .into_iter()
                .flat_map(|p| p.split('&'))
                .filter(|p| !p.is_empty())
                .collect();
            if !params.iter().any(|p| p.starts_with("mode=")) {
                params.push("mode=rwc");
            }
            let encoded = path
                .replace('%', "%25")
                .replace('?', "%3F")
                .replace('#', "%23");
            Ok(Target::Sqlite {
                path: PathBuf::from(path),
                url: format!("sqlite://{encoded}?{}", params.join("&")),
            })
        }
        "postgres" | "postgresql" => Ok(Target::Postgres {
            url: url.to_string(),
        }),
        other => Err(StoreError::UnsupportedScheme {
            scheme: other.to_string(),
            url: redact(url),
        }),
    }
}

/// The URL with its user info and any `password=` parameter replaced by `***`.
pub fn redact(url: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let mut out = match base.split_once("://") {
        Some((scheme, rest)) => {
            let authority_end = rest.find('/').unwrap_or(rest.len());
            let (authority, path) = rest.split_at(authority_end);
            match authority.rfind('@') {
                Some(at) => format!("{scheme}://***@{}{path}", &authority[at + 1..]),
                None => base.to_string(),
            }
        }
        None => base.to_string(),
    };
    if let Some(query) = query {
        let params: Vec<String> = query
            .split('&')
            .map(|p| match p.split_once('=') {
                Some((k, _)) if k.eq_ignore_ascii_case("password") => format!("{k}=***"),
                _ => p.to_string(),
            })
            .collect();
        out.push('?');
        out.push_str(&params.join("&"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_user_info_and_password_parameter() {
        assert_eq!(
            redact("postgres://u:secret@db:5432/lab?sslmode=require&password=x"),
            "postgres://***@db:5432/lab?sslmode=require&password=***"
        );
        assert_eq!(redact("postgres://db/lab"), "postgres://db/lab");
        assert_eq!(redact("sqlite:///var/lib/x.db"), "sqlite:///var/lib/x.db");
    }

    #[test]
    fn sqlite_urls_create_the_file() {
        let Target::Sqlite { path, url } = parse("sqlite:///tmp/a b/x.db").unwrap() else {
            panic!()
        };
        assert_eq!(path, PathBuf::from("/tmp/a b/x.db"));
        assert_eq!(url, "sqlite:///tmp/a b/x.db?mode=rwc");
        let Target::Sqlite { path, url } = parse("sqlite://state/x.db?mode=rw").unwrap() else {
            panic!()
        };
        assert_eq!(path, PathBuf::from("state/x.db"));
        assert_eq!(url, "sqlite://state/x.db?mode=rw");
    }

    #[test]
    fn other_schemes_are_named() {
        let err = parse("mysql://root:pw@h/db").unwrap_err().to_string();
        assert!(err.contains("`mysql`"), "{err}");
        assert!(!err.contains("pw"), "{err}");
    }
}
