//! Remediation pull requests end to end: a real Kea changed behind labctl's back, a real bare
//! Git remote receiving the branches, and the forge fixture (GitHub's and Gitea's documented
//! API) receiving the pull requests. One pull request per change set, never a duplicate: not
//! on a re-run, not after the store is lost, not after a person closed it.

use std::path::PathBuf;
use std::process::Output;

use serde_json::{json, Value as Json};

use crate::support::cli::{json_of, labctl, labctl_command, write};
use crate::support::forge::Forge;
use crate::support::git::{commit_all, git};
use crate::support::kea::Kea;
use crate::support::lab::{kea_config, kea_reservation, reservation, SUBNET};

const WHISPER: &str = "labctl/drift/dhcpreservation-whisper";
const PRINTER: &str = "labctl/drift/dhcpreservation-printer";
const SPEAKER: &str = "labctl/drift/dhcpreservation-speaker";
const WHISPER_MAC: &str = "bc:24:11:5e:02:01";
const SPEAKER_MAC: &str = "bc:24:11:5e:02:03";
const PRINTER_MAC: &str = "aa:bb:cc:00:00:99";

/// A lab repository (work tree and the bare remote labctl reads), a forge in front of it.
struct Lab {
    dir: tempfile::TempDir,
    bare: PathBuf,
    url: String,
    forge: Forge,
    token: &'static str,
}

impl Lab {
    /// Git declares whisper (.201) and speaker (.203); labctl.yaml proposes through `kind`.
    async fn new(kea: &Kea, kind: &str, token: &'static str) -> Lab {
        let dir = tempfile::tempdir().unwrap();
        let work = dir.path().join("work");
        std::fs::create_dir_all(&work).unwrap();
        let bare = dir.path().join("remote.git");
        let forge = Forge::start("lab/state", &bare, token).await;
        let forge_url = match kind {
            "github" => forge.github_url(),
            _ => forge.gitea_url(),
        };
        git(&work, &["init", "-q"]);
        kea_config(&work, &kea.url, "propose");
        let config = std::fs::read_to_string(work.join("labctl.yaml")).unwrap();
        write(
            &work,
            "labctl.yaml",
            &format!(
                "{config}  propose:\n    forge:\n      kind: {kind}\n      url: {forge_url}\n      \
                 repository: lab/state\n      token: {{env: LABCTL_TEST_FORGE_TOKEN}}\n    \
                 labels: [labctl]\n    reviewers: [alice]\n"
            ),
        );
        reservation(&work, "whisper", SUBNET, WHISPER_MAC, "10.0.1.201");
        reservation(&work, "speaker", SUBNET, SPEAKER_MAC, "10.0.1.203");
        commit_all(&work, "lab");
        git(
            dir.path(),
            &[
                "clone",
                "-q",
                "--bare",
                work.to_str().unwrap(),
                "remote.git",
            ],
        );
        let url = format!("file://{}", bare.display());
        Lab {
            dir,
            bare,
            url,
            forge,
            token,
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn db(&self) -> String {
        format!("sqlite://{}", self.path("state.db").display())
    }

    /// `labctl ARGS REPO --cache-dir … --database-url … --format json` with the forge token.
    fn labctl(&self, args: &[&str]) -> Output {
        labctl_command()
            .args(args)
            .arg(&self.url)
            .arg("--cache-dir")
            .arg(self.path("cache"))
            .args(["--database-url", &self.db(), "--format", "json"])
            .env("LABCTL_TEST_FORGE_TOKEN", self.token)
            .env("LABCTL_LOG", "debug")
            .output()
            .unwrap()
    }

    fn git(&self, args: &[&str]) -> String {
        let dir = format!("--git-dir={}", self.bare.display());
        git(self.dir.path(), &[&[dir.as_str()][..], args].concat())
    }

    fn tip(&self, branch: &str) -> String {
        self.git(&["rev-parse", &format!("refs/heads/{branch}")])
    }
}

/// A real Kea where whisper moved (.209, Git says .201) and a printer Git does not know was
/// added by hand; speaker is as Git says.
async fn drifted_kea() -> Option<Kea> {
    Kea::start(
        json!([
            kea_reservation("whisper", WHISPER_MAC, "10.0.1.209"),
            kea_reservation("speaker", SPEAKER_MAC, "10.0.1.203"),
            kea_reservation("printer", PRINTER_MAC, "10.0.1.99"),
        ]),
        json!([]),
    )
    .await
}

/// `(branch, push outcome, pull outcome)` of a `propose --format json` run.
fn outcomes(out: &Output) -> Vec<(String, String, String)> {
    let json = json_of(out);
    json["published"]
        .as_array()
        .unwrap_or_else(|| panic!("{json:#}"))
        .iter()
        .map(|o| {
            (
                o["branch"].as_str().unwrap().to_string(),
                o["push"]["outcome"].as_str().unwrap_or("-").to_string(),
                o["pull"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn row(branch: &str, push: &str, pull: &str) -> (String, String, String) {
    (branch.into(), push.into(), pull.into())
}

/// Moves `mac`'s reservation in Kea to `ip` (`None`: removes it), behind labctl's back.
async fn set_kea(kea: &Kea, mac: &str, ip: Option<&str>) {
    let mut dhcp4 = kea.config().await;
    let list = dhcp4["subnet4"][0]["reservations"].as_array_mut().unwrap();
    list.retain(|r| r["hw-address"] != mac || ip.is_some());
    for r in list.iter_mut() {
        if r["hw-address"] == mac {
            r["ip-address"] = json!(ip.unwrap());
        }
    }
    kea.set_config(dhcp4).await;
}

/// Fails if `token` appears in any of `texts`.
fn never_contains(token: &str, texts: &[(&str, String)]) {
    for (what, text) in texts {
        assert!(!text.contains(token), "the token is in {what}");
    }
}

/// Everything labctl wrote that a token must never reach: the pushed history, the database
/// files and the forge's request bodies.
fn written(lab: &Lab) -> Vec<(&'static str, String)> {
    let mut db = Vec::new();
    for f in ["state.db", "state.db-wal"] {
        if let Ok(bytes) = std::fs::read(lab.path(f)) {
            db.extend(bytes);
        }
    }
    vec![
        ("the pushed history", lab.git(&["log", "--all", "-p"])),
        ("the database", String::from_utf8_lossy(&db).into_owned()),
        (
            "a request body",
            lab.forge
                .heard()
                .iter()
                .map(|h| h.body.clone())
                .collect::<Vec<_>>()
                .join("\n"),
        ),
    ]
}

#[tokio::test(flavor = "multi_thread")]
async fn one_pull_request_per_change_set_on_github_through_every_turn() {
    let Some(kea) = drifted_kea().await else {
        return;
    };
    let lab = Lab::new(&kea, "github", "ghp-forge-3c9d71e0").await;
    let mut logs = Vec::new();
    let mut run = |lab: &Lab| {
        let out = lab.labctl(&["propose"]);
        logs.push(String::from_utf8_lossy(&out.stderr).into_owned());
        logs.push(String::from_utf8_lossy(&out.stdout).into_owned());
        out
    };

    // A dry run says what would be opened, and writes nothing anywhere.
    let out = lab.labctl(&["propose", "--dry-run"]);
    let would: Vec<String> = json_of(&out)["published"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["pull"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(would, ["would-open", "would-open"]);
    assert_eq!(lab.git(&["for-each-ref", "refs/heads/labctl/"]), "");
    assert_eq!(lab.forge.count("POST", ""), 0);
    assert!(!lab.path("state.db").exists());

    // First run: a branch and a pull request per resource, with labels and a reviewer.
    let out = run(&lab);
    assert_eq!(
        outcomes(&out),
        vec![
            row(PRINTER, "created", "opened"),
            row(WHISPER, "created", "opened")
        ],
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let prs = lab.forge.prs();
    assert_eq!(prs.len(), 2);
    let whisper = &prs[1];
    assert_eq!(
        (whisper.head.as_str(), whisper.base.as_str()),
        (WHISPER, "main")
    );
    assert_eq!(
        whisper.title,
        "labctl: accept live spec.ip of DhcpReservation whisper from kea"
    );
    assert!(
        whisper.body.contains(
            "| DhcpReservation/whisper | spec.ip | `\"10.0.1.201\"` | `\"10.0.1.209\"` | this run | high |"
        ),
        "{}",
        whisper.body
    );
    assert!(
        whisper.body.contains("+  ip: 10.0.1.209"),
        "{}",
        whisper.body
    );
    assert!(
        whisper.body.contains("    fields: [spec.ip]"),
        "{}",
        whisper.body
    );
    assert_eq!(
        (whisper.labels.clone(), whisper.reviewers.clone()),
        (vec!["labctl".to_string()], vec!["alice".to_string()])
    );
    let whisper_tip = lab.tip(WHISPER);

    // Nothing changed: no new pull request, no edit, no new commit.
    let out = run(&lab);
    assert_eq!(
        outcomes(&out),
        vec![
            row(PRINTER, "unchanged", "unchanged"),
            row(WHISPER, "unchanged", "unchanged")
        ],
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert_eq!(lab.forge.count("POST", "/pulls"), 2);
    assert_eq!(lab.forge.count("PATCH", "/pulls/2"), 0);
    assert_eq!(lab.tip(WHISPER), whisper_tip);

    // whisper moves again in Kea: the same pull request, its branch and body updated.
    set_kea(&kea, WHISPER_MAC, Some("10.0.1.219")).await;
    let out = run(&lab);
    assert_eq!(
        outcomes(&out),
        vec![
            row(PRINTER, "unchanged", "unchanged"),
            row(WHISPER, "updated", "updated")
        ]
    );
    assert_eq!(lab.forge.count("POST", "/pulls"), 2);
    assert_ne!(lab.tip(WHISPER), whisper_tip);
    assert!(lab.forge.prs()[1].body.contains("`\"10.0.1.219\"`"));

    // A person closes the printer's pull request: not proposed again.
    lab.forge.close(1);
    let out = run(&lab);
    assert_eq!(
        outcomes(&out),
        vec![
            row(PRINTER, "-", "declined"),
            row(WHISPER, "unchanged", "unchanged")
        ]
    );

    // The store is lost: the forge still knows both, nothing is opened twice.
    for f in ["state.db", "state.db-wal", "state.db-shm"] {
        let _ = std::fs::remove_file(lab.path(f));
    }
    let out = run(&lab);
    assert_eq!(
        outcomes(&out),
        vec![
            row(PRINTER, "-", "declined"),
            row(WHISPER, "unchanged", "unchanged")
        ]
    );
    assert_eq!(lab.forge.count("POST", "/pulls"), 2);

    // The printer's live value changes: a new proposal, so a new pull request.
    set_kea(&kea, PRINTER_MAC, Some("10.0.1.98")).await;
    let out = run(&lab);
    assert_eq!(
        outcomes(&out),
        vec![
            row(PRINTER, "updated", "opened"),
            row(WHISPER, "unchanged", "unchanged")
        ]
    );
    assert_eq!(lab.forge.prs().len(), 3);

    // Someone else commits on whisper's branch: left alone, reported, not edited.
    let person = lab.path("person");
    git(
        lab.dir.path(),
        &[
            "clone",
            "-q",
            "-b",
            WHISPER,
            lab.bare.to_str().unwrap(),
            "person",
        ],
    );
    let text = std::fs::read_to_string(person.join("dhcp/whisper.yaml")).unwrap();
    write(&person, "dhcp/whisper.yaml", &format!("{text}# checked\n"));
    let theirs = commit_all(&person, "a note");
    git(&person, &["push", "-q", "origin", WHISPER]);
    set_kea(&kea, WHISPER_MAC, Some("10.0.1.229")).await;
    let edits = lab.forge.count("PATCH", "/pulls/2");
    let out = run(&lab);
    assert_eq!(
        outcomes(&out),
        vec![
            row(PRINTER, "unchanged", "unchanged"),
            row(WHISPER, "foreign", "left")
        ]
    );
    assert_eq!(lab.tip(WHISPER), theirs);
    assert_eq!(lab.forge.count("PATCH", "/pulls/2"), edits);

    // whisper is back where Git has it: its pull request is closed with a comment (a dry run
    // first says so, and closes nothing).
    set_kea(&kea, WHISPER_MAC, Some("10.0.1.201")).await;
    let dry = json_of(&lab.labctl(&["propose", "--dry-run"]));
    assert_eq!(
        dry["settled"],
        json!([{"branch": WHISPER, "number": 2, "state": "would-resolve"}])
    );
    assert!(lab.forge.prs()[1].open);
    let out = run(&lab);
    let json = json_of(&out);
    assert_eq!(
        json["settled"],
        json!([{"branch": WHISPER, "number": 2, "state": "resolved"}]),
        "{json:#}"
    );
    let whisper = lab.forge.prs()[1].clone();
    assert!(!whisper.open);
    assert!(
        whisper.comments[0].contains("- `DhcpReservation/whisper spec.ip`"),
        "{:?}",
        whisper.comments
    );
    // Never a second open pull request for one branch, and the token nowhere but headers.
    let prs = lab.forge.prs();
    for p in &prs {
        assert!(
            prs.iter()
                .filter(|q| q.open && p.open && q.head == p.head)
                .count()
                <= 1
        );
    }
    let mut texts = written(&lab);
    texts.push(("labctl's output", logs.join("\n")));
    never_contains(lab.token, &texts);
    assert!(lab
        .forge
        .heard()
        .iter()
        .all(|h| h.authorization.as_deref() == Some("Bearer ghp-forge-3c9d71e0")));
    drop(kea);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_hundred_runs_against_a_changing_kea_open_one_pull_request_per_change_set() {
    let Some(kea) = drifted_kea().await else {
        return;
    };
    let lab = Lab::new(&kea, "gitea", "gitea-tok-81f2aa4c").await;
    let mut logs = String::new();
    let mut runs = Vec::new();
    for i in 1..=100 {
        match i {
            // The same resource drifts further: its pull request is updated, not doubled.
            30 => set_kea(&kea, WHISPER_MAC, Some("10.0.1.219")).await,
            // Back where Git has it: closed as resolved.
            50 => set_kea(&kea, WHISPER_MAC, Some("10.0.1.201")).await,
            // Another resource drifts: its own pull request.
            60 => set_kea(&kea, SPEAKER_MAC, Some("10.0.1.213")).await,
            // A person merges the speaker's pull request: Git moves, the drift resolves.
            80 => {
                let speaker = lab
                    .forge
                    .prs()
                    .into_iter()
                    .find(|p| p.head == SPEAKER)
                    .unwrap();
                lab.git(&["update-ref", "refs/heads/main", &lab.tip(SPEAKER)]);
                lab.forge.merge(speaker.number);
            }
            _ => {}
        }
        let out = lab.labctl(&["reconcile", "--once"]);
        logs.push_str(&String::from_utf8_lossy(&out.stdout));
        logs.push_str(&String::from_utf8_lossy(&out.stderr));
        assert_eq!(
            out.status.code(),
            Some(0),
            "run {i}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        runs.push(json_of(&out));
    }
    let prs = lab.forge.prs();
    let heads: Vec<(&str, bool, bool)> = prs
        .iter()
        .map(|p| (p.head.as_str(), p.open, p.merged))
        .collect();
    assert_eq!(
        heads,
        vec![
            (PRINTER, true, false),
            (WHISPER, false, false),
            (SPEAKER, false, true)
        ]
    );
    assert_eq!(lab.forge.count("POST", "/pulls"), 3);
    // whisper's change set changed once (run 30): one edit; closed with a comment at run 50.
    assert_eq!(lab.forge.count("PATCH", "/pulls/2"), 2);
    assert_eq!(prs[1].comments.len(), 1);
    assert!(prs[1].body.contains("10.0.1.219"));
    // Gitea took the label by its id, and the reviewer.
    assert_eq!(prs[0].labels, vec!["labctl".to_string()]);
    assert_eq!(prs[0].reviewers, vec!["alice".to_string()]);

    // Every branch still proposed validates and plans clean for what it covers.
    let plan = labctl_command()
        .args(["plan", &lab.url, "--rev", PRINTER, "--cache-dir"])
        .arg(lab.path("cache"))
        .args(["--format", "json"])
        .output()
        .unwrap();
    let plan = json_of(&plan)["plan"].clone();
    assert_eq!(crate::support::cli::deviations(&plan), vec![]);
    // The merged change is in Git; nothing is left to propose but the printer.
    let out = labctl(&["status", "--database-url", &lab.db(), "--format", "json"]);
    let status = json_of(&out);
    let open: u64 = status["openDeviations"]
        .as_object()
        .unwrap()
        .values()
        .map(|n| n.as_u64().unwrap())
        .sum();
    assert_eq!(open, 1, "{status:#}");
    assert_eq!(
        status["pullRequests"],
        json!([{"number": 1, "url": "https://forge.example/lab/state/pull/1", "branch": PRINTER,
                "state": "open", "summary": "PR #1 open",
                "deviations": ["DhcpReservation/printer"]}])
    );
    // The deviation says which pull request proposes it: `drift` and MCP's answers.
    let drift = json_of(&labctl(&[
        "drift",
        "--database-url",
        &lab.db(),
        "--format",
        "json",
    ]));
    assert_eq!(drift[0]["pullRequest"]["summary"], json!("PR #1 open"));
    let client = crate::support::mcp::connect(&lab.db()).await;
    let tools = client.list_all_tools().await.unwrap();
    let answer = crate::support::mcp::call(&client, "get_drift", json!({})).await;
    let answer = crate::support::mcp::ok(&tools, "get_drift", answer);
    assert_eq!(
        answer["deviations"][0]["pullRequest"]["summary"],
        json!("PR #1 open"),
        "{answer:#}"
    );
    let answer = crate::support::mcp::call(
        &client,
        "explain_deviation",
        json!({"kind": "DhcpReservation", "name": "printer"}),
    )
    .await;
    let answer = crate::support::mcp::ok(&tools, "explain_deviation", answer);
    assert!(
        answer["remediation"]
            .as_str()
            .unwrap()
            .starts_with("PR #1 open: review it at https://forge.example/lab/state/pull/1; "),
        "{answer:#}"
    );
    client.cancel().await.unwrap();
    let mut texts = written(&lab);
    texts.push(("labctl's output", logs));
    never_contains(lab.token, &texts);
    assert!(lab
        .forge
        .heard()
        .iter()
        .all(|h| h.authorization.as_deref() == Some("token gitea-tok-81f2aa4c")));
    drop(kea);
}

const OLLAMA: &str = "apiVersion: labctl.dev/v1
kind: DhcpReservation
metadata:
  name: ollama   # the new inference VM
spec:
  subnet: 10.0.1.0/24
  mac: \"bc:24:11:5e:02:50\"
  ip: 10.0.1.150
  hostname: ollama.lab.example
";

#[tokio::test(flavor = "multi_thread")]
async fn an_assistant_proposes_over_mcp_and_nothing_in_the_lab_changes() {
    let Some(kea) = Kea::start(
        json!([
            kea_reservation("whisper", WHISPER_MAC, "10.0.1.201"),
            kea_reservation("speaker", SPEAKER_MAC, "10.0.1.203"),
        ]),
        json!([]),
    )
    .await
    else {
        return;
    };
    let lab = Lab::new(&kea, "github", "ghp-agent-44be01d2").await;
    let out = lab.labctl(&["reconcile", "--once"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let kea_before = kea.config().await;
    let cache = lab.path("cache");
    let client = crate::support::mcp::connect_with(
        &lab.db(),
        &["--repo", &lab.url, "--cache-dir", cache.to_str().unwrap()],
        &[("LABCTL_TEST_FORGE_TOKEN", lab.token)],
    )
    .await;
    let tools = client.list_all_tools().await.unwrap();
    let propose = |args: Json| {
        let client = &client;
        async move { crate::support::mcp::call(client, "propose_change", args).await }
    };

    // Invalid: the address is whisper's. The diagnostics come back; nothing is written.
    let taken = OLLAMA.replace("10.0.1.150", "10.0.1.201");
    let answer = propose(json!({"documents": taken, "reason": "an address for ollama"})).await;
    let answer = crate::support::mcp::ok(&tools, "propose_change", answer);
    assert_eq!(answer["valid"], json!(false), "{answer:#}");
    let diagnostic = &answer["diagnostics"][0];
    assert_eq!(
        (
            diagnostic["code"].as_str(),
            diagnostic["location"].as_str(),
            diagnostic["field"].as_str()
        ),
        (
            Some("duplicate-ip"),
            Some("dhcp/whisper.yaml:7:7"),
            Some("spec.ip")
        ),
        "{answer:#}"
    );
    assert!(diagnostic["help"].is_string());
    assert!(answer.get("branch").is_none());
    assert_eq!(
        lab.git(&["for-each-ref", "refs/heads/labctl/"]),
        "",
        "an invalid proposal pushed a branch"
    );
    assert_eq!(lab.forge.count("POST", "/pulls"), 0);

    // Valid: a branch, a pull request with the reason and the plan, the lab untouched.
    let reason = "Ollama needs a fixed address for the reverse proxy.";
    let args = json!({"documents": OLLAMA, "reason": reason});
    let answer = crate::support::mcp::ok(&tools, "propose_change", propose(args.clone()).await);
    assert_eq!(answer["valid"], json!(true), "{answer:#}");
    let branch = answer["branch"].as_str().unwrap().to_string();
    assert!(
        branch.starts_with("labctl/proposal/dhcpreservation-ollama-"),
        "{branch}"
    );
    assert_eq!(answer["push"], json!("created"));
    assert_eq!(
        answer["files"],
        json!([{"path": "dhcp/ollama.yaml", "action": "added"}])
    );
    assert_eq!(answer["pullRequest"]["number"], json!(1));
    assert_eq!(
        answer["plan"]["deviations"],
        json!(["DhcpReservation ollama: missing"]),
        "{answer:#}"
    );
    assert_eq!(
        lab.git(&["show", &format!("{branch}:dhcp/ollama.yaml")]) + "\n",
        OLLAMA
    );
    let pr = lab.forge.prs()[0].clone();
    assert_eq!(
        (pr.head.as_str(), pr.base.as_str()),
        (branch.as_str(), "main")
    );
    assert!(pr.body.contains(&format!("> {reason}")), "{}", pr.body);
    assert!(pr.body.contains("validates with no errors"), "{}", pr.body);
    assert!(
        pr.body
            .contains("would then show DhcpReservation ollama: missing"),
        "{}",
        pr.body
    );

    // The same proposal again: the same branch and pull request, nothing new.
    let again = crate::support::mcp::ok(&tools, "propose_change", propose(args).await);
    assert_eq!(
        (again["branch"].as_str(), again["push"].as_str()),
        (Some(branch.as_str()), Some("unchanged"))
    );
    assert_eq!(again["pullRequest"]["number"], json!(1));
    assert_eq!(lab.forge.count("POST", "/pulls"), 1);

    // Field edits of a declared resource, in place.
    let answer = crate::support::mcp::ok(
        &tools,
        "propose_change",
        propose(json!({
            "edits": [{"resource": "DhcpReservation/whisper", "field": "spec.hostname",
                       "value": "whisper-2.lab.example"}],
            "reason": "renamed"
        }))
        .await,
    );
    let edited = answer["branch"].as_str().unwrap();
    let text = lab.git(&["show", &format!("{edited}:dhcp/whisper.yaml")]);
    assert!(text.contains("  hostname: whisper-2.lab.example"), "{text}");
    assert_eq!(lab.forge.count("POST", "/pulls"), 2);

    // Input that is not a proposal is a tool error.
    let error = crate::support::mcp::error_text(
        "propose_change",
        propose(json!({"documents": OLLAMA, "edits": [], "reason": "both"})).await,
    );
    assert!(error.contains("exactly one of"), "{error}");

    // No provider was changed: Kea holds what it held.
    assert_eq!(kea.config().await, kea_before);
    client.cancel().await.unwrap();
    drop(kea);
}
