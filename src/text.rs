//! Text from files, providers and clients, made safe to print on a terminal: control
//! characters and bidirectional overrides are shown escaped, never sent raw. A file name with
//! a newline cannot forge a diagnostic line, an ESC from a provider's answer cannot move the
//! cursor or set the title, and U+202E cannot reverse what a person reads.

use std::borrow::Cow;

/// Characters a terminal acts on rather than shows, `\n` and `\t` aside: C0 and C1 controls,
/// DEL, and the invisible bidirectional marks and overrides.
fn acts(c: char) -> bool {
    (c.is_control() && c != '\n' && c != '\t')
        || matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// `text` with every character a terminal would act on written as `\u{..}` (and a newline as
/// `\n` when `newlines` is false). Borrowed when nothing needed escaping, the usual case.
pub fn printable(text: &str, newlines: bool) -> Cow<'_, str> {
    let escape = |c: char| acts(c) || (!newlines && c == '\n');
    if !text.chars().any(escape) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '\n' if !newlines => out.push_str("\\n"),
            c if escape(c) => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// Like [`printable`] (newlines kept), but colour sequences (`ESC [ digits ; … m`, SGR) pass:
/// for output labctl colours itself on a terminal. Anything else an escape could do — move
/// the cursor, set the title, make a link — is shown escaped.
pub fn printable_keeping_colour(text: &str) -> Cow<'_, str> {
    if !text.chars().any(acts) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    let mut rest = text;
    while let Some(c) = rest.chars().next() {
        if c == '\u{1b}' {
            if let Some(len) = sgr_len(rest) {
                out.push_str(&rest[..len]);
                rest = &rest[len..];
                continue;
            }
        }
        if acts(c) {
            out.push_str(&format!("\\u{{{:x}}}", c as u32));
        } else {
            out.push(c);
        }
        rest = &rest[c.len_utf8()..];
    }
    Cow::Owned(out)
}

/// The length of the SGR sequence `text` starts with, if it starts with one.
fn sgr_len(text: &str) -> Option<usize> {
    let body = text.strip_prefix("\u{1b}[")?;
    let params = body
        .bytes()
        .take_while(|b| b.is_ascii_digit() || *b == b';')
        .count();
    (body.as_bytes().get(params) == Some(&b'm')).then_some(2 + params + 1)
}

/// The credentials of an `Authorization` header value of the `Bearer` scheme, whose name is
/// case-insensitive (RFC 7235: `bearer`, `BEARER` too); `None` for any other scheme.
pub fn bearer(value: &str) -> Option<&str> {
    let (scheme, rest) = value.trim_start().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| rest.trim())
        .filter(|t| !t.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn controls_and_bidi_overrides_are_shown_escaped() {
        assert!(matches!(
            printable("plain: 10.0.1.5\n", true),
            Cow::Borrowed(_)
        ));
        assert_eq!(
            printable("a\u{1b}]0;pwned\u{7}b\u{202e}txt.yaml", true),
            "a\\u{1b}]0;pwned\\u{7}b\\u{202e}txt.yaml"
        );
        assert_eq!(printable("x\nerror: forged", false), "x\\nerror: forged");
        assert_eq!(printable("x\nline two\t", true), "x\nline two\t");
        assert_eq!(printable("cr\r", true), "cr\\u{d}");
    }

    #[test]
    fn colour_passes_and_every_other_escape_does_not() {
        let ours = "\u{1b}[31m- missing\u{1b}[0m \u{1b}[38;5;2mok\u{1b}[m";
        assert_eq!(printable_keeping_colour(ours), ours);
        assert_eq!(
            printable_keeping_colour("\u{1b}[2J\u{1b}[31mx\u{7}\u{1b}"),
            "\\u{1b}[2J\u{1b}[31mx\\u{7}\\u{1b}"
        );
    }

    #[test]
    fn the_bearer_scheme_is_case_insensitive() {
        for header in ["Bearer abc", "bearer abc", "BEARER  abc ", "BeArEr abc"] {
            assert_eq!(super::bearer(header), Some("abc"), "{header}");
        }
        for header in ["Basic abc", "Bearer", "Bearer   ", "Bearerabc", ""] {
            assert_eq!(super::bearer(header), None, "{header}");
        }
    }
}
