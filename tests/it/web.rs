//! The status pages end to end: a store filled by a real reconcile (the real binary against a
//! real Kea with planted drift and the Proxmox VE fixture), the real `labctl mcp --http`
//! serving them, read by Debian's headless Chromium (tests/npm/web.mjs, through
//! playwright-core) and, for the access rules, by plain HTTP requests.

use std::path::{Path, PathBuf};

use crate::mcp_http::{base, node_report, Server, READ_TOKEN};
use crate::support::cli::write;
use crate::support::git::commit_all;
use crate::support::lab::{reconcile_once, reconciled_lab};
use labctl::store::{ActorKind, Store};
use reqwest::header::{LOCATION, SET_COOKIE};
use reqwest::redirect::Policy;
use serde_json::Value as Json;

/// Chromium and the npm packages, or (outside CI) nothing: the test is skipped.
fn chromium() -> Option<PathBuf> {
    let npm = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/npm");
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    if !crate::support::runs(&chromium, "--version")
        || !npm.join("node_modules/playwright-core").is_dir()
    {
        crate::support::absent(
            "Chromium (apt-get install chromium) and the npm packages (npm ci --prefix tests/npm) are needed",
        );
        return None;
    }
    Some(npm)
}

/// Where the screenshots go: under target/, kept by CI as an artifact.
fn screenshot_dir() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .unwrap()
        .join("web-screenshots")
}

#[tokio::test(flavor = "multi_thread")]
async fn a_person_logs_in_follows_the_pages_from_overview_to_run_and_logs_out() {
    let Some(npm) = chromium() else { return };
    let Some(lab) = reconciled_lab().await else {
        return;
    };
    // Pools with capacity (one pool over it) and a dimension its children inherit, in a
    // second commit and a second real run.
    let r = lab.repo.path();
    write(
        r,
        "pools/lab.yaml",
        "apiVersion: labctl.dev/v1\nkind: Pool\nmetadata: {name: lab}\nspec: {type: compute, dimensions: {site: basement}, capacity: {cores: 32, memoryMiB: 131072, devices: 4}}\n---\napiVersion: labctl.dev/v1\nkind: Pool\nmetadata: {name: gpu-nodes}\nspec: {parent: lab, type: compute, proxmoxPool: gpu, dimensions: {gpu: true}, capacity: {cores: 8, memoryMiB: 65536, devices: 2}}\n---\napiVersion: labctl.dev/v1\nkind: Pool\nmetadata: {name: services}\nspec: {parent: lab, type: compute, proxmoxPool: services}\n",
    );
    let commit = commit_all(r, "capacity");
    reconcile_once(r, &lab.db).await;
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&lab.db, dir.path(), &[]);
    let shots = screenshot_dir();
    let seen = node_report(
        &npm,
        "web.mjs",
        &[&base(&server), READ_TOKEN, shots.to_str().unwrap()],
        &[],
        &server,
    );
    let page = |name: &str| &seen["pages"][name];
    let text = |name: &str| page(name)["text"].as_str().unwrap_or_default().to_string();

    // No cookie: the login form, remembering the page asked for.
    assert_eq!(
        page("login")["url"],
        "/login?next=%2Fdrift%3Fkind%3DDhcpReservation"
    );
    assert_eq!(seen["wrongToken"]["alert"], "That token is not accepted.");
    // The right token goes where the person was going.
    assert_eq!(page("drift")["url"], "/drift?kind=DhcpReservation");
    // The drifted field with both values, and what to do about it.
    let whisper = seen["whisper"].as_str().unwrap();
    for expected in [
        "DhcpReservation/whisper",
        "spec.ip",
        "10.0.1.209",
        "10.0.1.201",
        "high",
    ] {
        assert!(whisper.contains(expected), "{expected} in {whisper}");
    }
    let drift = text("drift");
    assert!(drift.contains("DhcpReservation/printer"), "{drift}");
    assert!(drift.contains("unmanaged"), "{drift}");

    // The overview's counts match the store.
    let store = Store::connect(&lab.db).await.unwrap();
    let open = store.open_deviations(None, None).await.unwrap();
    let overview = text("overview");
    assert!(
        overview.contains(&format!("Open deviations: {}", open.len())),
        "{overview}"
    );
    assert!(overview.contains(&commit[..12]), "{overview}");
    let run = store.latest_run().await.unwrap().unwrap();
    assert!(
        overview.contains(&format!("Last run: run {}", run.id)),
        "{overview}"
    );
    for provider in ["kea", "pve"] {
        assert!(overview.contains(provider), "{provider} in {overview}");
    }
    assert!(overview.contains("DhcpReservation"), "{overview}");

    // Drift → resource → the run that opened it.
    assert_eq!(
        page("resource")["url"],
        "/resources/DhcpReservation/whisper"
    );
    let resource = text("resource");
    assert!(resource.contains("Deviation history"), "{resource}");
    assert!(resource.contains("10.0.1.209"), "{resource}");
    // The timeline's newest entry links the run that opened the deviation.
    let opened = open
        .iter()
        .find(|d| d.record.name == "whisper" && d.record.field_path == "spec.ip")
        .unwrap()
        .opened_run;
    let h1 = page("run")["h1"].as_str().unwrap();
    assert!(h1.starts_with(&format!("Run {opened} ")), "{h1}");
    let run_page = text("run");
    assert!(run_page.contains("kea"), "{run_page}");
    assert!(run_page.contains("Deviations it opened"), "{run_page}");
    assert!(text("runs").contains(&run.id.to_string()));

    // Pools: the tree with capacity bars.
    let pools = text("pools");
    for expected in [
        "/lab/gpu-nodes",
        "20 / 32 cores",
        "12 / 8 cores",
        "65536 / 131072 MiB",
        "site=\"basement\" from lab",
        "gpu=true",
    ] {
        assert!(pools.contains(expected), "{expected} in {pools}");
    }
    assert_eq!(
        seen["meters"], 6,
        "cores, memory and devices of the two pools with capacity"
    );

    // Trend: both charts, drawn from the two runs (one hour, so a dot each).
    assert_eq!(seen["charts"], 2, "{seen}");
    assert!(seen["chartLines"].as_u64().unwrap() >= 2, "{seen}");
    let trend = text("trend");
    assert!(trend.contains("2 run(s) in the last 30 days"), "{trend}");

    // Logged out: the pages want a login again.
    assert_eq!(seen["afterLogout"], "/login");
    assert_eq!(seen["afterLogoutOverview"], "/login?next=%2F");

    // Nothing was loaded from anywhere but the server; every page fits a phone's width and
    // is small.
    let origin = base(&server);
    for url in seen["requests"].as_array().unwrap() {
        assert!(url.as_str().unwrap().starts_with(&origin), "{url}");
    }
    for (name, p) in seen["pages"].as_object().unwrap() {
        assert!(
            p["phoneScrollWidth"].as_u64().unwrap() <= 390,
            "{name} is wider than a phone: {p}"
        );
        assert!(p["bytes"].as_u64().unwrap() < 50_000, "{name}: {p}");
    }
    let files = seen["screenshots"].as_array().unwrap();
    assert_eq!(
        files.len(),
        17,
        "8 pages at two widths, and the overview dark"
    );
    assert_eq!(seen["lightBackground"], "rgb(255, 255, 255)", "{seen}");
    assert_eq!(seen["darkBackground"], "rgb(15, 18, 22)", "{seen}");
    for f in files {
        let len = std::fs::metadata(f.as_str().unwrap()).unwrap().len();
        assert!(len > 1000, "{f}");
    }

    // Logins and logouts are audited (page views are not), as the web actor.
    let audit = store.recent_audit(100).await.unwrap();
    let web: Vec<_> = audit
        .iter()
        .filter(|a| a.entry.actor_kind == ActorKind::Web)
        .map(|a| (a.entry.action.as_str(), a.entry.details["ok"].clone()))
        .collect();
    assert!(web.contains(&("web.login", Json::Bool(false))), "{web:?}");
    assert!(web.contains(&("web.login", Json::Bool(true))), "{web:?}");
    assert!(web.iter().any(|(a, _)| *a == "web.logout"), "{web:?}");
    for a in &audit {
        assert!(!a.entry.details.to_string().contains(READ_TOKEN));
        assert!(!a.entry.actor.contains(READ_TOKEN));
    }
    assert!(!server.logs().contains(READ_TOKEN));

    // A newer commit that does not validate: its run fails, the last good commit stays in
    // force, and the overview says both.
    write(r, "pools/broken.yaml", "apiVersion: labctl.dev/v1\nkind: Pool\nmetadata: {name: broken}\nspec: {parent: nowhere, type: compute}\n");
    let broken = commit_all(r, "broken");
    let out = crate::support::cli::labctl_command()
        .args([
            "reconcile",
            "--once",
            r.to_str().unwrap(),
            "--database-url",
            &lab.db,
        ])
        .output()
        .unwrap();
    assert_ne!(out.status.code(), Some(0), "{out:?}");
    let cookie = session(&origin, READ_TOKEN).await;
    let r = get(&format!("{origin}/"), &[("cookie", cookie.as_str())]).await;
    assert_eq!(r.status(), 200);
    let html = r.text().await.unwrap();
    assert!(html.contains("A newer run failed"), "{html}");
    assert!(
        html.contains(&broken[..12]) && html.contains(&commit[..12]),
        "{html}"
    );
}

/// GET `url` with `headers`, redirects not followed.
pub(crate) async fn get(url: &str, headers: &[(&str, &str)]) -> reqwest::Response {
    let mut req = client().get(url);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    req.send().await.unwrap()
}

/// POST the form `pairs` to `url` with `headers`, as a browser posts a form.
async fn post(url: &str, headers: &[(&str, &str)], pairs: &[(&str, &str)]) -> reqwest::Response {
    let enc = |s: &str| -> String {
        s.bytes()
            .map(|b| match b {
                b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' => {
                    (b as char).to_string()
                }
                _ => format!("%{b:02X}"),
            })
            .collect()
    };
    let body: Vec<String> = pairs
        .iter()
        .map(|(k, v)| format!("{}={}", enc(k), enc(v)))
        .collect();
    let mut req = client()
        .post(url)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body.join("&"));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    req.send().await.unwrap()
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(Policy::none())
        .build()
        .unwrap()
}

/// Logs in at `base` with `token` as a browser would (the form's CSRF cookie and value): the
/// session cookie, `labctl_session=…`.
pub(crate) async fn session(base: &str, token: &str) -> String {
    let (csrf, cookie) = login_form(base).await;
    let r = post(
        &format!("{base}/login"),
        &[("cookie", cookie.as_str())],
        &[("token", token), ("csrf", csrf.as_str()), ("next", "/")],
    )
    .await;
    assert_eq!(r.status(), 303);
    r.headers()
        .get_all(SET_COOKIE)
        .iter()
        .map(|v| v.to_str().unwrap())
        .find(|c| c.starts_with("labctl_session=") && !c.starts_with("labctl_session=;"))
        .expect("a session cookie")
        .split(';')
        .next()
        .unwrap()
        .to_string()
}

/// The login form's CSRF value and cookie.
async fn login_form(base: &str) -> (String, String) {
    let r = get(&format!("{base}/login"), &[]).await;
    assert_eq!(r.status(), 200);
    let cookie = r.headers()[SET_COOKIE].to_str().unwrap().to_string();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    let cookie = cookie.split(';').next().unwrap().to_string();
    let html = r.text().await.unwrap();
    let csrf = html
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .unwrap()
        .to_string();
    (csrf, cookie)
}

#[tokio::test(flavor = "multi_thread")]
async fn pages_need_a_session_a_form_of_this_site_or_a_trusted_proxy() {
    let Some(lab) = reconciled_lab().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    // A proxy that is not this client: its header is ignored.
    let proxy = ["--user-header", "Remote-User", "--trusted-proxy"];
    let server = Server::start(
        &lab.db,
        dir.path(),
        &[&proxy[..], &["10.9.9.9/32"]].concat(),
    );
    let base = base(&server);

    // No cookie: to the login form; the stylesheet needs none.
    let r = get(&format!("{base}/runs"), &[]).await;
    assert_eq!(r.status(), 303);
    assert_eq!(r.headers()[LOCATION], "/login?next=%2Fruns");
    assert_eq!(
        get(&format!("{base}/static/style.css"), &[]).await.status(),
        200
    );
    // A user header from an address that is not a trusted proxy counts for nothing, nor does
    // a session cookie labctl never issued.
    let forged = format!("labctl_session={}", "a".repeat(64));
    for header in [("Remote-User", "mallory"), ("cookie", forged.as_str())] {
        assert_eq!(get(&format!("{base}/"), &[header]).await.status(), 303);
    }

    // The login form: without its CSRF cookie, or posted from another site, refused.
    let login = format!("{base}/login");
    let (csrf, csrf_cookie) = login_form(&base).await;
    let form = |token, next| [("token", token), ("csrf", csrf.as_str()), ("next", next)];
    let cookie = ("cookie", csrf_cookie.as_str());
    let r = post(&login, &[], &form(READ_TOKEN, "/runs")).await;
    assert_eq!(r.status(), 403);
    // An empty value matches an empty cookie (one a neighbouring site might plant): refused.
    let empty = [("token", READ_TOKEN), ("csrf", ""), ("next", "/")];
    let r = post(&login, &[("cookie", "labctl_csrf=")], &empty).await;
    assert_eq!(r.status(), 403);
    let r = post(
        &login,
        &[cookie, ("origin", "http://evil.example")],
        &form(READ_TOKEN, "/runs"),
    )
    .await;
    assert_eq!(r.status(), 403);
    // A wrong token: 401, and the form again.
    let r = post(&login, &[cookie], &form("nope", "/runs")).await;
    assert_eq!(r.status(), 401);
    assert!(r
        .text()
        .await
        .unwrap()
        .contains("That token is not accepted."));
    // A next that leaves the site goes home instead.
    let r = post(&login, &[cookie], &form(READ_TOKEN, "//evil.example/")).await;
    assert_eq!(r.status(), 303);
    assert_eq!(r.headers()[LOCATION], "/");
    let session = r
        .headers()
        .get_all(SET_COOKIE)
        .iter()
        .map(|v| v.to_str().unwrap())
        .find(|c| c.starts_with("labctl_session=") && !c.starts_with("labctl_session=;"))
        .unwrap()
        .to_string();
    assert!(
        session.contains("HttpOnly") && session.contains("SameSite=Strict"),
        "{session}"
    );
    assert!(!session.contains(READ_TOKEN));
    let session = session.split(';').next().unwrap().to_string();
    let with_session = ("cookie", session.as_str());
    let r = get(&format!("{base}/runs"), &[with_session]).await;
    assert_eq!(r.status(), 200);
    let csp = r.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(csp.contains("default-src 'none'"), "{csp}");
    let html = r.text().await.unwrap();
    assert!(html.contains("reader"), "the viewer is named");
    assert!(!html.contains(READ_TOKEN));
    // A logout without the session's CSRF token does nothing.
    let r = post(
        &format!("{base}/logout"),
        &[with_session],
        &[("csrf", "guess")],
    )
    .await;
    assert_eq!(r.status(), 403);
    assert_eq!(
        get(&format!("{base}/runs/999999"), &[with_session])
            .await
            .status(),
        404
    );
    // A page number past the end (or past any integer's sum) is the last page.
    for page in ["/drift?page=18446744073709551615", "/pools?page=99999999"] {
        let r = get(&format!("{base}{page}"), &[with_session]).await;
        assert_eq!(r.status(), 200, "{page}");
    }
    // A Host that is not this server's (DNS rebinding) gets nothing.
    let r = get(
        &format!("{base}/runs"),
        &[with_session, ("host", "evil.example")],
    )
    .await;
    assert_eq!(r.status(), 403);
    drop(server);

    // Behind a trusted proxy doing single sign-on: its header is the viewer, no login.
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(
        &lab.db,
        dir.path(),
        &[&proxy[..], &["127.0.0.1/32"]].concat(),
    );
    let drift = format!("{}/drift", crate::mcp_http::base(&server));
    let r = get(&drift, &[("Remote-User", "alice")]).await;
    assert_eq!(r.status(), 200);
    let html = r.text().await.unwrap();
    assert!(html.contains("proxy:alice"), "{html}");
    assert!(!html.contains("Log out"), "no session to end");
    // Without the header, the login form as before.
    assert_eq!(get(&drift, &[]).await.status(), 303);
}
