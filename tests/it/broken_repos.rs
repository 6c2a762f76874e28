//! Broken desired-state repositories: every subdirectory of `tests/broken/` is a small repo
//! that must fail validation with exactly the diagnostics listed in its `expected.txt`
//! (one `Diagnostic::summary()` line each, in the order validation returns them; blank lines
//! and lines starting with `#` are ignored). Adding a case needs no code: add a directory.
//!
//! Bless mode: `LABCTL_BLESS=1 cargo test broken` rewrites each case's `expected.txt` to the
//! diagnostics validation returns now, keeping the file's leading `#` comment lines; review the
//! change with `git diff tests/broken`. Without it a mismatch fails with a unified diff
//! (`-` expected, `+` actual).

use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};

use labctl::source::{self, SourceSpec};
use labctl::validate;

/// The suite is meant to cover every kind of diagnostic; fewer cases means some went missing.
const MIN_CASES: usize = 15;

fn broken_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("broken")
}

/// Case directories, sorted by name.
fn cases() -> Vec<PathBuf> {
    let dir = broken_dir();
    let entries =
        fs::read_dir(&dir).unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()));
    let mut cases: Vec<PathBuf> = entries
        .map(|entry| entry.expect("directory entry").path())
        .filter(|path| path.is_dir())
        .collect();
    cases.sort();
    cases
}

/// The expected summary lines of a case.
fn expected_lines(text: &str) -> Vec<String> {
    text.lines()
        .map(str::trim_end)
        .filter(|line| !line.trim().is_empty() && !line.trim_start().starts_with('#'))
        .map(str::to_string)
        .collect()
}

/// Whether this run rewrites the expected files instead of comparing against them.
fn blessing() -> bool {
    std::env::var_os("LABCTL_BLESS").is_some_and(|v| v == "1")
}

/// A unified line diff of the expected and the actual summary lines.
fn diff(expected: &[String], actual: &[String]) -> String {
    let expected = expected
        .iter()
        .map(|l| format!("{l}\n"))
        .collect::<String>();
    let actual = actual.iter().map(|l| format!("{l}\n")).collect::<String>();
    similar::TextDiff::from_lines(&expected, &actual)
        .unified_diff()
        .context_radius(3)
        .header("expected.txt", "actual")
        .to_string()
}

/// `expected.txt` for `actual`: the old file's leading comment lines, then one line each.
fn blessed(old: &str, actual: &[String]) -> String {
    let mut text: String = old
        .lines()
        .take_while(|line| line.trim_start().starts_with('#'))
        .map(|line| format!("{line}\n"))
        .collect();
    for line in actual {
        writeln!(text, "{line}").unwrap();
    }
    text
}

/// Validates one case; returns a description of what is wrong with it, if anything.
fn check_case(dir: &Path) -> Option<String> {
    let expected_file = dir.join("expected.txt");
    let expected_text = match fs::read_to_string(&expected_file) {
        Ok(text) => text,
        Err(e) if blessing() && e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Some(format!("cannot read {}: {e}", expected_file.display())),
    };
    let expected = expected_lines(&expected_text);
    let snapshot = match source::load(&SourceSpec::Directory(dir.to_path_buf()), None) {
        Ok(snapshot) => snapshot,
        Err(e) => return Some(format!("cannot load the repository: {e}")),
    };
    let validation = validate::validate(&snapshot);
    let actual: Vec<String> = validation.diagnostics.iter().map(|d| d.summary()).collect();

    let mut problems = Vec::new();
    if validation.is_valid() {
        problems.push("validation found no error; every broken repo must be invalid".to_string());
    }
    if validation.state.is_some() {
        problems.push("a desired state was built although the repo is broken".to_string());
    }
    if actual != expected && blessing() {
        fs::write(&expected_file, blessed(&expected_text, &actual))
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", expected_file.display()));
        eprintln!("blessed {}", expected_file.display());
    } else if actual != expected {
        problems.push(format!(
            "diagnostics differ from expected.txt (- expected only, + actual only; \
             LABCTL_BLESS=1 rewrites it):\n{}",
            diff(&expected, &actual)
        ));
    }
    if problems.is_empty() {
        return None;
    }
    let mut report = problems.join("\n");
    if actual != expected && !blessing() {
        report.push_str("\nactual diagnostics:\n");
        for line in &actual {
            writeln!(report, "{line}").unwrap();
        }
    }
    Some(report)
}

#[test]
fn broken_repos_report_exactly_the_expected_diagnostics() {
    let cases = cases();
    assert!(
        cases.len() >= MIN_CASES,
        "expected at least {MIN_CASES} cases in {}, found {}",
        broken_dir().display(),
        cases.len()
    );
    let mut failures = Vec::new();
    for dir in &cases {
        let name = dir.file_name().unwrap().to_string_lossy().into_owned();
        if let Some(report) = check_case(dir) {
            failures.push((name, report));
        }
    }
    if !failures.is_empty() {
        let mut message = format!(
            "{} of {} broken-repo cases failed:\n",
            failures.len(),
            cases.len()
        );
        for (name, report) in &failures {
            write!(message, "\n=== tests/broken/{name}\n{report}").unwrap();
        }
        let names: Vec<&str> = failures.iter().map(|(name, _)| name.as_str()).collect();
        write!(message, "\nfailed cases: {}", names.join(", ")).unwrap();
        panic!("{message}");
    }
}

#[test]
fn diff_marks_missing_and_extra_lines() {
    let lines = |s: &[&str]| s.iter().map(|l| l.to_string()).collect::<Vec<_>>();
    let out = diff(&lines(&["a", "b", "c"]), &lines(&["a", "c", "d"]));
    assert_eq!(
        out,
        "--- expected.txt\n+++ actual\n@@ -1,3 +1,3 @@\n a\n-b\n c\n+d\n"
    );
}

#[test]
fn blessing_keeps_the_leading_comments_and_writes_the_actual_lines() {
    let old = "# what the case shows\n# and why\nold.yaml:1:1: error[x]: gone\n";
    let actual = vec!["new.yaml:2:3: error[y]: now".to_string()];
    let text = blessed(old, &actual);
    assert_eq!(
        text,
        "# what the case shows\n# and why\nnew.yaml:2:3: error[y]: now\n"
    );
    assert_eq!(expected_lines(&text), actual);
}

#[test]
fn expected_files_skip_comments_and_blank_lines() {
    let text = "# what the case shows\n\nfile.yaml:1:1: error[x]: y  \n  # indented comment\n";
    assert_eq!(
        expected_lines(text),
        vec!["file.yaml:1:1: error[x]: y".to_string()]
    );
}
