//! Size and document-count limits on what is loaded: a file, the whole repository, documents
//! per file and in total. Each broken limit is an error naming the file and the limit, the
//! repository is not valid (no desired state is built from it), and the oversized file is
//! never read into memory.

use std::path::Path;
use std::process::Output;

use crate::support::cli::{json_of, labctl_command, write};
use crate::support::git::{commit_all, git};
use crate::support::lab::reservation;
use labctl::source::{self, Exceeded, Limits, SourceSpec};

const CONFIG: &str = "apiVersion: labctl.dev/v1\nkind: Config\nmetadata: {name: lab}\nspec: {}\n";

/// A valid repository: labctl.yaml, two small reservations and `dhcp/big.yaml` of `big`
/// reservations in one file (about 190 bytes each).
fn repository(dir: &Path, big: usize) {
    write(dir, "labctl.yaml", CONFIG);
    reservation(dir, "a", "10.0.1.0/24", "aa:bb:cc:00:00:01", "10.0.1.10");
    reservation(dir, "b", "10.0.1.0/24", "aa:bb:cc:00:00:02", "10.0.1.11");
    let text: String = (0..big)
        .map(|i| {
            format!(
                "---\napiVersion: labctl.dev/v1\nkind: DhcpReservation\nmetadata: {{name: big-{i}}}\nspec:\n  subnet: 10.1.0.0/16\n  mac: \"aa:bb:cc:01:{:02x}:{:02x}\"\n  ip: 10.1.{}.{}\n  hostname: big-{i}.lab.example\n",
                i / 256,
                i % 256,
                i / 250,
                i % 250 + 1
            )
        })
        .collect();
    write(dir, "dhcp/big.yaml", &text);
}

fn validate(repo: &Path, env: &[(&str, &str)]) -> Output {
    let mut cmd = labctl_command();
    for (name, _) in Limits::ENV {
        cmd.env_remove(name);
    }
    cmd.args(["validate", repo.to_str().unwrap(), "--format", "json"]);
    cmd.envs(env.iter().copied());
    cmd.output().unwrap()
}

/// `(code, location, message)` of each error diagnostic.
fn errors(out: &Output) -> Vec<(String, String, String)> {
    let json = json_of(out);
    json["diagnostics"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["severity"] == "error")
        .map(|d| {
            let loc = &d["location"];
            (
                d["code"].as_str().unwrap().to_string(),
                format!(
                    "{}:{}:{}",
                    loc["file"].as_str().unwrap(),
                    loc["line"],
                    loc["column"]
                ),
                d["message"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[test]
fn a_file_over_the_size_limit_is_an_error_in_a_directory_and_in_a_commit() {
    let dir = tempfile::tempdir().unwrap();
    let r = dir.path();
    repository(r, 40);
    let size = std::fs::metadata(r.join("dhcp/big.yaml")).unwrap().len();
    assert!(size > 7000, "{size}");
    // Within the limits the repository is valid.
    let out = validate(r, &[]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );

    let limit = [("LABCTL_MAX_FILE_BYTES", "4096")];
    let out = validate(r, &limit);
    assert_eq!(out.status.code(), Some(1));
    let expected = vec![(
        "file-too-large".to_string(),
        "dhcp/big.yaml:1:1".to_string(),
        format!(
            "{size} bytes ({:.1} MiB) is over the limit of 4096 bytes (0.0 MiB) for one file; it was not read",
            size as f64 / 1048576.0
        ),
    )];
    assert_eq!(errors(&out), expected);
    assert_eq!(json_of(&out)["valid"], false);

    // The same from the object database of a commit (the blob is never inflated).
    git(r, &["init", "-q"]);
    commit_all(r, "lab");
    let out = validate(r, &limit);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(errors(&out), expected);
    assert!(json_of(&out)["commit"].is_string(), "read as Git");

    // Human output names the file, the limit and what to do.
    let out = labctl_command()
        .args(["validate", r.to_str().unwrap()])
        .env("LABCTL_MAX_FILE_BYTES", "4096")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("error[file-too-large]")
            && stderr.contains("dhcp/big.yaml:1:1")
            && stderr.contains("raise LABCTL_MAX_FILE_BYTES"),
        "{stderr}"
    );
}

#[test]
fn the_total_size_limit_refuses_the_file_that_crosses_it() {
    let dir = tempfile::tempdir().unwrap();
    let r = dir.path();
    repository(r, 40);
    git(r, &["init", "-q"]);
    commit_all(r, "lab");
    // Files are read in path order: dhcp/a, dhcp/b, dhcp/big, labctl.yaml.
    let small: u64 = ["dhcp/a.yaml", "dhcp/b.yaml"]
        .iter()
        .map(|f| std::fs::metadata(r.join(f)).unwrap().len())
        .sum();
    let out = validate(r, &[("LABCTL_MAX_TOTAL_BYTES", "2000")]);
    assert_eq!(out.status.code(), Some(1));
    let errors = errors(&out);
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(
        (errors[0].0.as_str(), errors[0].1.as_str()),
        ("repository-too-large", "dhcp/big.yaml:1:1")
    );
    assert!(
        errors[0].2.contains(&format!(
            "after {small} bytes of other files is over the limit of 2000 bytes"
        )),
        "{errors:?}"
    );
    // labctl.yaml after it still fits, and was read: no "no labctl.yaml" warning.
    let json = json_of(&out);
    assert!(
        !json["diagnostics"]
            .as_array()
            .unwrap()
            .iter()
            .any(|d| d["code"] == "no-config"),
        "{json}"
    );
}

#[test]
fn document_counts_per_file_and_in_total_are_limited() {
    let dir = tempfile::tempdir().unwrap();
    let r = dir.path();
    repository(r, 40);
    let out = validate(r, &[("LABCTL_MAX_FILE_DOCUMENTS", "25")]);
    assert_eq!(out.status.code(), Some(1));
    // Each document of dhcp/big.yaml is 9 lines from its `---`: the 26th starts on line
    // 25 * 9 + 2.
    assert_eq!(
        errors(&out),
        vec![(
            "too-many-documents".into(),
            "dhcp/big.yaml:227:1".into(),
            "this file holds more than 25 documents; the rest of it was not read".into()
        )]
    );
    // Those 25, dhcp/a and dhcp/b, and labctl.yaml's Config after it.
    assert_eq!(json_of(&out)["documents"], 25 + 2 + 1);

    // In total: a, b (2) and 40 in big.yaml is over 30, at big.yaml's 29th document (28 * 9
    // + 2); labctl.yaml after it is not read.
    let out = validate(r, &[("LABCTL_MAX_DOCUMENTS", "30")]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        errors(&out),
        vec![(
            "too-many-documents".into(),
            "dhcp/big.yaml:254:1".into(),
            "the repository holds more than 30 documents; the rest of this file and the files \
             after it were not read"
                .into()
        )]
    );

    let out = validate(r, &[("LABCTL_MAX_DOCUMENTS", "many")]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stdout)
            .contains("LABCTL_MAX_DOCUMENTS=`many` is not a positive whole number"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

#[test]
fn load_with_reports_each_refused_file_with_its_size_and_limit() {
    let dir = tempfile::tempdir().unwrap();
    let r = dir.path();
    repository(r, 40);
    let limits = Limits {
        file_bytes: 1000,
        ..Limits::default()
    };
    let snapshot =
        source::load_with(&SourceSpec::Directory(r.to_path_buf()), None, limits).unwrap();
    let size = std::fs::metadata(r.join("dhcp/big.yaml")).unwrap().len();
    assert_eq!(snapshot.refused.len(), 1);
    assert_eq!(snapshot.refused[0].path, "dhcp/big.yaml");
    assert_eq!(snapshot.refused[0].bytes, size);
    assert_eq!(snapshot.refused[0].limit, Exceeded::FileBytes(1000));
    assert!(snapshot.files.iter().all(|f| f.path != "dhcp/big.yaml"));
    assert_eq!(snapshot.limits, limits);
}
