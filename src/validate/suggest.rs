//! "Did you mean" suggestions for misspelt names.

/// The candidate closest to `word`, if it is close enough to be a likely typo.
pub fn did_you_mean<'a>(
    word: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    let lower = word.to_ascii_lowercase();
    let length = word.chars().count();
    let mut best: Option<(usize, &str)> = None;
    for cand in candidates {
        if cand.eq_ignore_ascii_case(word) {
            return Some(cand);
        }
        // Allow roughly one edit per three characters, at least one and at most three.
        let cand_length = cand.chars().count();
        let allowed = (length.max(cand_length) / 3).clamp(1, 3);
        // The distance is at least the difference in length. Checked first: the distance
        // costs the product of the lengths, and a word comes from whoever asks (an MCP
        // client's megabyte-long tool name took half a minute).
        if length.abs_diff(cand_length) > allowed {
            continue;
        }
        let dist = strsim::damerau_levenshtein(&lower, &cand.to_ascii_lowercase());
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
        assert_eq!(did_you_mean("nam", fields), Some("name"));
        assert_eq!(did_you_mean("nameeee", fields), None);
        assert_eq!(did_you_mean(&"n".repeat(1 << 20), fields), None);
    }
}
