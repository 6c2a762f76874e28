//! "Did you mean" suggestions for misspelt names.

/// The candidate closest to `word`, if it is close enough to be a likely typo.
pub fn did_you_mean<'a>(
    word: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    let lower = word.to_ascii_lowercase();
    let mut best: Option<(usize, &str)> = None;
    for cand in candidates {
        if cand.eq_ignore_ascii_case(word) {
            return Some(cand);
        }
        let dist = strsim::damerau_levenshtein(&lower, &cand.to_ascii_lowercase());
        // Allow roughly one edit per three characters, at least one and at most three.
        let allowed = (word.chars().count().max(cand.chars().count()) / 3).clamp(1, 3);
        if dist <= allowed && best.is_none_or(|(d, _)| dist < d) {
            best = Some((dist, cand));
        }
    }
    best.map(|(_, c)| c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggests_close_names_only() {
        let fields = ["name", "labels", "annotations"];
        assert_eq!(did_you_mean("nmae", fields), Some("name"));
        assert_eq!(did_you_mean("lables", fields), Some("labels"));
        assert_eq!(did_you_mean("Labels", fields), Some("labels"));
        assert_eq!(did_you_mean("owner", fields), None);
        assert_eq!(
            did_you_mean("memoryMb", ["memoryMiB", "cores"]),
            Some("memoryMiB")
        );
    }
}
