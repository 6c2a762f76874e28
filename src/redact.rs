//! Secrets out of text that is printed, stored or served: the password (and user) of every
//! URL written as `scheme://user:password@host`.

/// `text` with the userinfo of every URL in it replaced by `***`
/// (`http://admin:hunter2@kea:8000/` → `http://***@kea:8000/`).
pub fn userinfo(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find("://") {
        let (head, tail) = rest.split_at(i + 3);
        out.push_str(head);
        // The authority ends at the path, the query, or where the URL ends in prose.
        let end = tail
            .find(|c: char| {
                matches!(c, '/' | '?' | '#' | '`' | '"' | '\'' | '<' | '>') || c.is_whitespace()
            })
            .unwrap_or(tail.len());
        let authority = &tail[..end];
        match authority.rfind('@') {
            Some(at) => {
                out.push_str("***");
                out.push_str(&authority[at..]);
            }
            None => out.push_str(authority),
        }
        rest = &tail[end..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_in_urls_are_replaced_wherever_they_are() {
        assert_eq!(
            userinfo("cannot reach http://admin:hunter2@kea.lab:8000/ (refused)"),
            "cannot reach http://***@kea.lab:8000/ (refused)"
        );
        assert_eq!(
            userinfo("`https://u:p@a` and `https://b/x@y` and postgres://me:pw@db/lab"),
            "`https://***@a` and `https://b/x@y` and postgres://***@db/lab"
        );
        assert_eq!(userinfo("no URL: a@b, ://"), "no URL: a@b, ://");
        assert_eq!(userinfo("http://p@ss:w@rd@host"), "http://***@host");
    }
}
