//! The MCP read tools over pools, DHCP reservations, routes, MCP servers and snapshots, and
//! the MCP resources, end to end: a store filled by real reconciles (the real binary against
//! a real Kea, the Proxmox VE fixture and an rmcp server on loopback), then `labctl mcp` over
//! stdio, talked to by rmcp's client.

use crate::fixtures::proxmox as fixture;

use std::collections::BTreeSet;
use std::sync::Arc;

use crate::support::cli::write;
use crate::support::git::{commit_all, git};
use crate::support::kea::Kea;
use crate::support::lab::{kea_reservation, proxmox_lab, reconcile_once, reservation, TOKEN_ENV};
use crate::support::mcp::{call, connect, error_text, names, ok};
use crate::support::net::{free_port, serve};
use labctl::store::Store;
use rmcp::model::{
    Implementation, ListToolsResult, PaginatedRequestParams, ReadResourceRequestParams,
    ResourceContents, ServerCapabilities, ServerConfig, Tool,
};
use rmcp::service::RequestContext;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::{StreamableHttpServerConfig, StreamableHttpService};
use rmcp::{ErrorData, RoleServer, ServerHandler};
use serde_json::{json, Value as Json};

// ---- an MCP server for the lab to register ------------------------------------------------

#[derive(Clone)]
struct LabTools;

impl ServerHandler for LabTools {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new("lab-tools", "1.2.3"))
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        let schema: Arc<serde_json::Map<String, Json>> =
            Arc::new(json!({"type": "object"}).as_object().unwrap().clone());
        Ok(ListToolsResult::with_all_items(
            ["get_status", "list_hosts", "ping_host"]
                .into_iter()
                .map(|n| Tool::new(n, "a lab tool", schema.clone()))
                .collect(),
        ))
    }
}

struct McpFixture {
    url: String,
    task: tokio::task::JoinHandle<()>,
    config: StreamableHttpServerConfig,
}

impl Drop for McpFixture {
    fn drop(&mut self) {
        self.task.abort();
        self.config.cancellation_token.cancel();
    }
}

async fn mcp_fixture() -> McpFixture {
    let config = StreamableHttpServerConfig::default().with_sse_keep_alive(None);
    let service: StreamableHttpService<LabTools, LocalSessionManager> =
        StreamableHttpService::new(|| Ok(LabTools), Default::default(), config.clone());
    let app = axum::Router::new().nest_service("/mcp", service);
    let (port, task) = serve(app).await;
    McpFixture {
        url: format!("http://127.0.0.1:{port}/mcp"),
        task,
        config,
    }
}

// ---- the lab ------------------------------------------------------------------------------

const POOLS: &str = "\
apiVersion: labctl.dev/v1
kind: Pool
metadata: {name: homelab}
spec:
  type: compute
  properties: {owner: ops, backup: weekly}
  dimensions: {site: rack, gpu: false}
---
apiVersion: labctl.dev/v1
kind: Pool
metadata: {name: compute}
spec:
  parent: homelab
  type: compute
  capacity: {cores: 48, memoryMiB: 131072}
  properties: {backup: daily}
---
apiVersion: labctl.dev/v1
kind: Pool
metadata: {name: gpu-nodes, labels: {tier: inference}}
spec:
  parent: compute
  type: compute
  proxmoxPool: gpu
  capacity: {cores: 8, devices: 2}
  dimensions: {gpu: true}
---
apiVersion: labctl.dev/v1
kind: Pool
metadata: {name: services}
spec: {parent: compute, type: compute, proxmoxPool: services}
---
apiVersion: labctl.dev/v1
kind: Pool
metadata: {name: storage}
spec: {parent: homelab, type: storage, capacity: {storageGiB: 1000}}
";

const HARBOR: &str = "\
apiVersion: labctl.dev/v1
kind: Device
metadata: {name: harbor, labels: {role: platform}}
spec:
  type: vm
  pool: /homelab/compute/services
  proxmox: {node: pve-01, vmid: 202}
  cores: 8
  memoryMiB: 16384
  disks: [{name: scsi0, sizeGiB: 100}]
  interfaces:
    - {name: net0, mac: \"bc:24:11:5e:02:02\", ip: 10.0.1.202, bridge: vmbr0}
  services:
    - {name: grafana, port: 3000, protocol: http}
";

const WHISPER: &str = "\
apiVersion: labctl.dev/v1
kind: Device
metadata: {name: whisper, labels: {role: inference}}
spec:
  type: vm
  pool: /homelab/compute/gpu-nodes
  proxmox: {node: pve-01, vmid: 201}
  cores: 12
  memoryMiB: 49152
  disks: [{name: scsi0, sizeGiB: 500}]
  interfaces:
    - {name: net0, mac: \"bc:24:11:5e:02:01\", ip: 10.0.1.201, bridge: vmbr0}
  services:
    - {name: ollama, port: 11434, protocol: http, health: /api/tags}
  dimensions: {cuda: \"12.4\"}
";

const NAS: &str = "\
apiVersion: labctl.dev/v1
kind: Device
metadata: {name: nas, labels: {role: storage}}
spec:
  type: physical
  pool: /homelab/storage
  cores: 4
  interfaces:
    - {name: eno1, mac: \"3c:ec:ef:10:20:40\", ip: 10.0.2.40}
";

fn text_of(contents: &[ResourceContents]) -> (String, Option<String>) {
    match &contents[0] {
        ResourceContents::TextResourceContents {
            text, mime_type, ..
        } => (text.clone(), mime_type.clone()),
        other => panic!("not text: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn pools_reservations_routes_mcp_servers_snapshots_and_resources() {
    let Some(kea) = Kea::start(
        json!([
            kea_reservation("harbor", "bc:24:11:5e:02:02", "10.0.1.202"),
            kea_reservation("whisper", "bc:24:11:5e:02:01", "10.0.1.201"),
            // Not in Git.
            kea_reservation("printer", "aa:bb:cc:00:00:99", "10.0.1.99"),
        ]),
        json!([kea_reservation("nas", "3c:ec:ef:10:20:40", "10.0.2.40")]),
    )
    .await
    else {
        return;
    };
    let pve = fixture::serve(proxmox_lab()).await;
    let mcp = mcp_fixture().await;
    let repo = tempfile::tempdir().unwrap();
    let r = repo.path();
    write(
        r,
        "labctl.yaml",
        &format!(
            "apiVersion: labctl.dev/v1\nkind: Config\nmetadata: {{name: lab}}\nspec:\n  providers:\n    - {{name: kea, kind: kea, url: \"{}\", timeoutSeconds: 2}}\n    - {{name: pve, kind: proxmox, url: \"{}\", token: {{env: {TOKEN_ENV}}}, timeoutSeconds: 2}}\n",
            kea.url,
            pve.url()
        ),
    );
    write(r, "pools/lab.yaml", POOLS);
    write(r, "devices/harbor.yaml", HARBOR);
    write(r, "devices/whisper.yaml", WHISPER);
    write(r, "devices/nas.yaml", NAS);
    reservation(
        r,
        "harbor",
        "10.0.1.0/24",
        "bc:24:11:5e:02:02",
        "10.0.1.202",
    );
    reservation(
        r,
        "whisper",
        "10.0.1.0/24",
        "bc:24:11:5e:02:01",
        "10.0.1.201",
    );
    reservation(r, "nas", "10.0.2.0/24", "3c:ec:ef:10:20:40", "10.0.2.40");
    write(
        r,
        "routes/grafana.yaml",
        "apiVersion: labctl.dev/v1\nkind: Route\nmetadata: {name: grafana}\nspec:\n  entryPoints: [websecure]\n  host: grafana.lab.example\n  backend: {urls: [\"http://10.0.1.202:3000\"]}\n",
    );
    write(
        r,
        "routes/ollama.yaml",
        "apiVersion: labctl.dev/v1\nkind: Route\nmetadata: {name: ollama}\nspec:\n  rule: \"Host(`ollama.lab.example`) && PathPrefix(`/`)\"\n  backend: {service: {device: whisper, service: ollama}}\n  middlewares: [lan-only]\n",
    );
    write(
        r,
        "mcp/lab-tools.yaml",
        &format!(
            "apiVersion: labctl.dev/v1\nkind: McpServer\nmetadata: {{name: lab-tools}}\nspec:\n  transport: streamable-http\n  url: {}\n  expectedTools: [get_status, list_hosts, reboot_host]\n",
            mcp.url
        ),
    );
    write(
        r,
        "mcp/gone.yaml",
        &format!(
            "apiVersion: labctl.dev/v1\nkind: McpServer\nmetadata: {{name: gone}}\nspec:\n  transport: streamable-http\n  url: http://127.0.0.1:{}/mcp\n  expectedTools: [anything]\n",
            free_port()
        ),
    );
    // Never started here (the host does not allow commands): unknown.
    write(
        r,
        "mcp/local.yaml",
        "apiVersion: labctl.dev/v1\nkind: McpServer\nmetadata: {name: local}\nspec:\n  transport: stdio\n  command: /opt/mcp/local\n  env: {MODE: ro, API_TOKEN: s3cr3t}\n",
    );
    git(r, &["init", "-q", "-b", "main"]);
    let commit = commit_all(r, "lab");

    let db_dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", db_dir.path().join("state.db").display());
    reconcile_once(r, &db).await;
    let store = Store::connect(&db).await.unwrap();
    let model = store.latest_model().await.unwrap().expect("a model");
    assert_eq!(model.commit_sha.as_deref(), Some(commit.as_str()));
    let model_json = model.json().unwrap();
    let stored = |kind: &str, name: &str| -> Json {
        model_json["resources"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["kind"] == kind && r["name"] == name)
            .unwrap_or_else(|| panic!("{kind}/{name} not in the model"))
            .clone()
    };

    let client = connect(&db).await;
    let tools = client.list_all_tools().await.unwrap();
    let listed: BTreeSet<&str> = tools.iter().map(|t| t.name.as_ref()).collect();
    for t in [
        "list_pools",
        "get_pool",
        "list_dhcp_reservations",
        "list_routes",
        "list_mcp_servers",
        "list_snapshots",
        "diff_snapshots",
    ] {
        assert!(listed.contains(t), "{t} not listed: {listed:?}");
        let tool = tools.iter().find(|x| x.name == t).unwrap();
        let a = tool.annotations.as_ref().expect("annotations");
        assert_eq!(a.read_only_hint, Some(true), "{t}");
        assert_eq!(a.open_world_hint, Some(false), "{t}");
        assert_eq!(tool.output_schema.as_ref().unwrap()["type"], "object");
    }
    let basis = |v: &Json| {
        assert_eq!(v["commit"], commit.as_str(), "{v}");
        assert!(v["observedAt"].as_str().unwrap().ends_with('Z'), "{v}");
    };

    // ---- list_devices / get_device / lookup_ip from the Git specs.
    let v = ok(
        &tools,
        "list_devices",
        call(&client, "list_devices", json!({"label": "role=inference"})).await,
    );
    assert_eq!(names(&v["devices"], "name"), ["whisper"], "{v}");
    assert!(v.get("notes").is_none(), "{v}");
    assert_eq!(v["devices"][0]["labels"]["role"], "inference");
    assert_eq!(v["devices"][0]["pool"], "/homelab/compute/gpu-nodes");
    // A pool selects the devices in it and below it.
    let v = ok(
        &tools,
        "list_devices",
        call(&client, "list_devices", json!({"pool": "/homelab/compute"})).await,
    );
    assert_eq!(names(&v["devices"], "name"), ["harbor", "whisper"], "{v}");
    let v = ok(
        &tools,
        "list_devices",
        call(&client, "list_devices", json!({"pool": "STORAGE"})).await,
    );
    assert_eq!(names(&v["devices"], "name"), ["nas"], "{v}");
    let v = ok(
        &tools,
        "list_devices",
        call(&client, "list_devices", json!({"dimension": "gpu=true"})).await,
    );
    assert_eq!(names(&v["devices"], "name"), ["whisper"], "{v}");
    let msg = error_text(
        "list_devices",
        call(
            &client,
            "list_devices",
            json!({"pool": "/homelab/compute/gpu-node"}),
        )
        .await,
    );
    assert!(
        msg.contains("Did you mean `/homelab/compute/gpu-nodes`?"),
        "{msg}"
    );
    let v = ok(
        &tools,
        "get_device",
        call(&client, "get_device", json!({"device": "whisper"})).await,
    );
    let d = &v["device"];
    assert_eq!(d["labels"], stored("Device", "whisper")["labels"]);
    assert_eq!(d["pool"], "/homelab/compute/gpu-nodes");
    assert_eq!(
        d["services"],
        stored("Device", "whisper")["spec"]["services"]
    );
    assert_eq!(d["dimensions"]["gpu"], true, "{d}");
    assert_eq!(d["dimensions"]["cuda"], "12.4", "{d}");
    assert_eq!(d["dimensions"]["site"], "rack", "{d}");
    // nas has no provider covering it as a device: its IP comes from its spec.
    let v = ok(
        &tools,
        "lookup_ip",
        call(&client, "lookup_ip", json!({"ip": "10.0.2.40"})).await,
    );
    let nas = v["usedBy"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["kind"] == "Device" && u["name"] == "nas")
        .unwrap_or_else(|| panic!("Device/nas uses 10.0.2.40: {v}"));
    assert_eq!(nas["fields"], json!(["spec.interfaces[0].ip"]));
    assert_eq!(nas["source"], "desired");
    let v = ok(
        &tools,
        "lookup_ip",
        call(&client, "lookup_ip", json!({"ip": "10.0.1.202"})).await,
    );
    let grafana = v["usedBy"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["kind"] == "Route" && u["name"] == "grafana")
        .unwrap_or_else(|| panic!("Route/grafana's backend uses 10.0.1.202: {v}"));
    assert_eq!(grafana["fields"], json!(["spec.backend.urls[0]"]));

    // ---- list_pools: paths, usage summed from member specs, filters, fields, pages.
    let v = ok(
        &tools,
        "list_pools",
        call(&client, "list_pools", json!({})).await,
    );
    basis(&v);
    assert_eq!(
        names(&v["pools"], "path"),
        [
            "/homelab",
            "/homelab/compute",
            "/homelab/compute/gpu-nodes",
            "/homelab/compute/services",
            "/homelab/storage"
        ]
    );
    let pool = |v: &Json, name: &str| -> Json {
        v["pools"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == name)
            .unwrap()
            .clone()
    };
    let spec = |name: &str, key: &str| stored("Device", name)["spec"][key].as_u64().unwrap();
    let compute = pool(&v, "compute");
    assert_eq!(
        compute["usage"]["cores"],
        spec("harbor", "cores") + spec("whisper", "cores")
    );
    assert_eq!(
        compute["usage"]["memoryMiB"],
        spec("harbor", "memoryMiB") + spec("whisper", "memoryMiB")
    );
    assert_eq!(compute["usage"]["storageGiB"], 600);
    assert_eq!(compute["usage"]["devices"], 2);
    assert_eq!(compute["capacity"]["cores"], 48);
    assert_eq!(
        compute["members"],
        json!([]),
        "members are direct: {compute}"
    );
    // A physical host is counted as a member, not as a user of cores.
    let storage = pool(&v, "storage");
    assert_eq!(storage["usage"]["devices"], 1);
    assert_eq!(storage["usage"]["cores"], 0);
    let gpu = pool(&v, "gpu-nodes");
    assert_eq!(gpu["members"], json!(["whisper"]));
    assert_eq!(gpu["usage"]["cores"], 12);
    let v = ok(
        &tools,
        "list_pools",
        call(
            &client,
            "list_pools",
            json!({"fields": ["overCapacity"], "pathPrefix": "/homelab/compute/"}),
        )
        .await,
    );
    assert_eq!(
        names(&v["pools"], "name"),
        ["compute", "gpu-nodes", "services"]
    );
    assert_eq!(pool(&v, "gpu-nodes")["overCapacity"], json!(["cores"]));
    assert!(pool(&v, "gpu-nodes").get("usage").is_none());
    let v = ok(
        &tools,
        "list_pools",
        call(&client, "list_pools", json!({"dimensions": ["gpu=true"]})).await,
    );
    assert_eq!(names(&v["pools"], "name"), ["gpu-nodes"]);
    let v = ok(
        &tools,
        "list_pools",
        call(&client, "list_pools", json!({"type": "Storage"})).await,
    );
    assert_eq!(names(&v["pools"], "name"), ["storage"]);
    let p1 = ok(
        &tools,
        "list_pools",
        call(&client, "list_pools", json!({"limit": 3})).await,
    );
    assert_eq!(p1["total"], 5);
    let p2 = ok(
        &tools,
        "list_pools",
        call(
            &client,
            "list_pools",
            json!({"limit": 3, "cursor": p1["nextCursor"]}),
        )
        .await,
    );
    assert_eq!(names(&p2["pools"], "name"), ["services", "storage"]);
    assert!(p2.get("nextCursor").is_none());
    let msg = error_text(
        "list_pools",
        call(&client, "list_pools", json!({"type": "gpu"})).await,
    );
    assert!(msg.contains("compute, storage, network"), "{msg}");

    // ---- get_pool: inheritance with its source, members below it.
    let v = ok(
        &tools,
        "get_pool",
        call(
            &client,
            "get_pool",
            json!({"pool": "/homelab/compute/gpu-nodes"}),
        )
        .await,
    );
    basis(&v);
    assert_eq!(v["pool"]["path"], "/homelab/compute/gpu-nodes");
    assert_eq!(v["ancestors"], json!(["/homelab", "/homelab/compute"]));
    assert_eq!(
        v["properties"]["backup"],
        json!({"value": "daily", "from": "compute", "inherited": true})
    );
    assert_eq!(
        v["properties"]["owner"],
        json!({"value": "ops", "from": "homelab", "inherited": true})
    );
    assert_eq!(
        v["dimensions"]["gpu"],
        json!({"value": true, "from": "gpu-nodes", "inherited": false})
    );
    assert_eq!(v["dimensions"]["site"]["from"], "homelab");
    assert_eq!(v["pool"]["labels"], json!({"tier": "inference"}));
    let v = ok(
        &tools,
        "get_pool",
        call(&client, "get_pool", json!({"pool": "Compute"})).await,
    );
    assert_eq!(v["allMembers"], json!(["harbor", "whisper"]));
    assert_eq!(v["pool"]["children"], json!(["gpu-nodes", "services"]));
    let msg = error_text(
        "get_pool",
        call(&client, "get_pool", json!({"pool": "gpu-node"})).await,
    );
    assert!(
        msg.contains("Did you mean `/homelab/compute/gpu-nodes`?"),
        "{msg}"
    );

    // ---- list_dhcp_reservations: subnet filter, live-only ones, the owning device.
    let v = ok(
        &tools,
        "list_dhcp_reservations",
        call(&client, "list_dhcp_reservations", json!({})).await,
    );
    basis(&v);
    assert_eq!(
        names(&v["reservations"], "name"),
        ["printer", "whisper", "harbor", "nas"],
        "sorted by address: {v}"
    );
    let v = ok(
        &tools,
        "list_dhcp_reservations",
        call(
            &client,
            "list_dhcp_reservations",
            json!({"subnet": "10.0.2.0/24"}),
        )
        .await,
    );
    assert_eq!(names(&v["reservations"], "name"), ["nas"]);
    let nas = &v["reservations"][0];
    assert_eq!(nas["ip"], stored("DhcpReservation", "nas")["spec"]["ip"]);
    assert_eq!(nas["device"], "nas");
    assert_eq!(nas["inGit"], true);
    let v = ok(
        &tools,
        "list_dhcp_reservations",
        call(
            &client,
            "list_dhcp_reservations",
            json!({"subnet": "10.0.1.0/24"}),
        )
        .await,
    );
    assert_eq!(v["total"], 3);
    let printer = &v["reservations"][0];
    assert_eq!(printer["name"], "printer");
    assert_eq!(printer["inGit"], false);
    let msg = error_text(
        "list_dhcp_reservations",
        call(
            &client,
            "list_dhcp_reservations",
            json!({"subnet": "10.0.1.0"}),
        )
        .await,
    );
    assert!(msg.contains("10.0.1.0/24"), "{msg}");
    let v = ok(
        &tools,
        "list_dhcp_reservations",
        call(
            &client,
            "list_dhcp_reservations",
            json!({"fields": ["ip"], "limit": 1}),
        )
        .await,
    );
    assert_eq!(
        v["reservations"],
        json!([{"name": "printer", "ip": "10.0.1.99"}])
    );
    assert!(v["nextCursor"].is_string(), "{v}");

    // ---- list_routes: host from `host` or the rule, substring filter in any case.
    let v = ok(
        &tools,
        "list_routes",
        call(&client, "list_routes", json!({})).await,
    );
    basis(&v);
    assert_eq!(names(&v["routes"], "name"), ["grafana", "ollama"]);
    assert_eq!(
        v["routes"][0]["backendUrls"],
        json!(["http://10.0.1.202:3000"])
    );
    assert_eq!(v["routes"][1]["host"], "ollama.lab.example");
    assert_eq!(v["routes"][1]["backendService"], "whisper/ollama");
    assert_eq!(
        v["routes"][1]["status"],
        stored("Route", "ollama")["status"]
    );
    let v = ok(
        &tools,
        "list_routes",
        call(&client, "list_routes", json!({"host": "OLLAMA"})).await,
    );
    assert_eq!(names(&v["routes"], "name"), ["ollama"]);
    let v = ok(
        &tools,
        "list_routes",
        call(&client, "list_routes", json!({"fields": ["host"]})).await,
    );
    assert_eq!(
        v["routes"][0],
        json!({"name": "grafana", "host": "grafana.lab.example"})
    );
    let v = ok(
        &tools,
        "list_routes",
        call(&client, "list_routes", json!({"host": "nothing-here"})).await,
    );
    assert_eq!(v["total"], 0);

    // ---- list_mcp_servers: health and tools from the observation.
    let v = ok(
        &tools,
        "list_mcp_servers",
        call(
            &client,
            "list_mcp_servers",
            json!({"fields": ["offeredTools", "serverName", "serverVersion", "reachable", "missingTools", "expectedTools", "status"]}),
        )
        .await,
    );
    basis(&v);
    assert_eq!(names(&v["servers"], "name"), ["gone", "lab-tools", "local"]);
    let lab = &v["servers"][1];
    let details = &stored("McpServer", "lab-tools")["details"];
    assert_eq!(lab["reachable"], true, "{v}");
    assert_eq!(lab["serverName"], details["serverName"]);
    assert_eq!(lab["serverName"], "lab-tools");
    assert_eq!(lab["serverVersion"], "1.2.3");
    assert_eq!(
        lab["offeredTools"],
        json!(["get_status", "list_hosts", "ping_host"])
    );
    assert_eq!(
        lab["expectedTools"],
        json!(["get_status", "list_hosts", "reboot_host"])
    );
    assert_eq!(lab["missingTools"], json!(["reboot_host"]));
    assert_eq!(lab["status"], "out-of-sync");
    let gone = &v["servers"][0];
    assert_eq!(gone["reachable"], false, "{v}");
    assert!(
        gone.get("missingTools").is_none(),
        "unknown, not missing: {gone}"
    );
    let v = ok(
        &tools,
        "list_mcp_servers",
        call(&client, "list_mcp_servers", json!({"reachable": false})).await,
    );
    assert_eq!(names(&v["servers"], "name"), ["gone"]);

    // ---- list_snapshots, then a second reconcile after the lab changed, and the diff.
    let v = ok(
        &tools,
        "list_snapshots",
        call(&client, "list_snapshots", json!({})).await,
    );
    basis(&v);
    let first = store.list_snapshots(None, 100).await.unwrap();
    assert_eq!(
        v["snapshots"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["id"].as_i64().unwrap())
            .collect::<Vec<_>>(),
        first.iter().map(|s| s.id).collect::<Vec<_>>()
    );
    let pve_first = first.iter().find(|s| s.provider == "pve").unwrap().id;
    pve.with(|lab| {
        lab.guests
            .get_mut(&202)
            .unwrap()
            .config
            .insert("cores".into(), json!(6));
    });
    reconcile_once(r, &db).await;
    let v = ok(
        &tools,
        "list_snapshots",
        call(
            &client,
            "list_snapshots",
            json!({"provider": "PVE", "limit": 1}),
        )
        .await,
    );
    let pve_second = v["snapshots"][0]["id"].as_i64().unwrap();
    assert!(pve_second > pve_first, "{v}");
    assert_eq!(v["snapshots"][0]["provider"], "pve");
    assert!(v["nextCursor"].is_string(), "{v}");
    let v = ok(
        &tools,
        "diff_snapshots",
        call(
            &client,
            "diff_snapshots",
            json!({"from": pve_first, "to": pve_second}),
        )
        .await,
    );
    basis(&v);
    let want = store.diff_snapshots(pve_first, pve_second).await.unwrap();
    assert_eq!(v["total"], want.len() as u64);
    let cores = v["changes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["path"].as_str().unwrap().ends_with("/cores"))
        .unwrap_or_else(|| panic!("the cores change: {v}"));
    assert_eq!(cores["kind"], "changed");
    assert_eq!(cores["before"], 8);
    assert_eq!(cores["after"], 6);
    assert_eq!(cores["resource"], "Device/harbor");
    // The provider's two latest, the same diff.
    let w = ok(
        &tools,
        "diff_snapshots",
        call(&client, "diff_snapshots", json!({"provider": "pve"})).await,
    );
    assert_eq!(w["changes"], v["changes"]);
    let msg = error_text(
        "diff_snapshots",
        call(&client, "diff_snapshots", json!({"provider": "pvee"})).await,
    );
    assert!(msg.contains("Did you mean `pve`?"), "{msg}");
    let msg = error_text(
        "diff_snapshots",
        call(&client, "diff_snapshots", json!({"from": 99999})).await,
    );
    assert!(msg.contains("no observed snapshot 99999"), "{msg}");

    // ---- resources: listed (paginated), a document, the plan, a schema, a template.
    let resources = client.list_all_resources().await.unwrap();
    let uris: BTreeSet<&str> = resources.iter().map(|r| r.uri.as_str()).collect();
    for uri in [
        "labctl://plan/latest",
        "labctl://schemas/device",
        "labctl://Device/whisper",
        "labctl://Pool/gpu-nodes",
        "labctl://DhcpReservation/nas",
        "labctl://Route/ollama",
        "labctl://McpServer/lab-tools",
    ] {
        assert!(uris.contains(uri), "{uri} not listed: {uris:?}");
    }
    // Live-only resources are not documents.
    assert!(!uris.contains("labctl://DhcpReservation/printer"));
    let latest = store.latest_model().await.unwrap().unwrap().json().unwrap();
    let docs = latest["resources"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r.get("spec").is_some_and(|s| !s.is_null()))
        .count();
    // The plan, the status, six schemas and the documents.
    assert_eq!(resources.len(), 2 + 6 + docs);
    let read = |uri: &str| {
        let client = &client;
        let uri = uri.to_string();
        async move {
            client
                .read_resource(ReadResourceRequestParams::new(uri))
                .await
        }
    };
    let (text, mime) = text_of(&read("labctl://Device/whisper").await.unwrap().contents);
    assert_eq!(mime.as_deref(), Some("application/json"));
    let doc: Json = serde_json::from_str(&text).unwrap();
    let whisper = latest["resources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["kind"] == "Device" && r["name"] == "whisper")
        .unwrap();
    assert_eq!(doc["apiVersion"], "labctl.dev/v1");
    assert_eq!(doc["kind"], "Device");
    assert_eq!(doc["metadata"]["name"], "whisper");
    assert_eq!(doc["metadata"]["labels"], whisper["labels"]);
    assert_eq!(doc["spec"], whisper["spec"]);
    assert_eq!(doc["status"]["state"], whisper["status"]);
    assert_eq!(doc["status"]["commit"], commit.as_str());
    // A self-contained document validates as `labctl validate` would.
    let (text, _) = text_of(&read("labctl://DhcpReservation/nas").await.unwrap().contents);
    let doc: Json = serde_json::from_str(&text).unwrap();
    let yaml = json!({
        "apiVersion": doc["apiVersion"], "kind": doc["kind"],
        "metadata": doc["metadata"], "spec": doc["spec"],
    });
    let checked = labctl::validate::validate_text("nas.yaml", &yaml.to_string());
    assert_eq!(checked.errors(), 0, "{:?}", checked.diagnostics);

    // A value under a secret-looking key is not shown.
    let (text, _) = text_of(&read("labctl://McpServer/local").await.unwrap().contents);
    let doc: Json = serde_json::from_str(&text).unwrap();
    assert_eq!(
        doc["spec"]["env"],
        json!({"MODE": "ro", "API_TOKEN": "[redacted]"})
    );
    assert!(!text.contains("s3cr3t"));

    let (text, _) = text_of(&read("labctl://status").await.unwrap().contents);
    let status: Json = serde_json::from_str(&text).unwrap();
    let latest_run = store.latest_run().await.unwrap().unwrap();
    assert_eq!(status["runs"][0]["id"], latest_run.id, "{status}");

    let (text, _) = text_of(&read("labctl://plan/latest").await.unwrap().contents);
    let plan: Json = serde_json::from_str(&text).unwrap();
    let open = store.open_deviations(None, None).await.unwrap();
    assert_eq!(plan["summary"]["open"], open.len() as u64);
    assert_eq!(plan["deviations"].as_array().unwrap().len(), open.len());
    assert!(
        plan["deviations"]
            .as_array()
            .unwrap()
            .iter()
            .any(|d| d["kind"] == "McpServer" && d["name"] == "lab-tools"),
        "{plan}"
    );

    let (text, mime) = text_of(&read("labctl://schemas/device").await.unwrap().contents);
    assert_eq!(mime.as_deref(), Some("application/schema+json"));
    let schema: Json = serde_json::from_str(&text).unwrap();
    assert_eq!(
        schema,
        labctl::model::schema::for_kind(labctl::model::Kind::Device)
    );

    let templates = client.list_all_resource_templates().await.unwrap();
    let template = templates
        .iter()
        .find(|t| t.uri_template == "labctl://Pool/{name}")
        .expect("the Pool template");
    // Resolved with a name in another case.
    let uri = template.uri_template.replace("{name}", "GPU-Nodes");
    let (text, _) = text_of(&read(&uri).await.unwrap().contents);
    let doc: Json = serde_json::from_str(&text).unwrap();
    assert_eq!(doc["metadata"]["name"], "gpu-nodes");
    assert_eq!(doc["spec"]["proxmoxPool"], "gpu");

    // A miss suggests the close name.
    let err = read("labctl://Device/whispr")
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("Did you mean `whisper`?"), "{err}");
    let err = read("labctl://Devices/whisper")
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("labctl://Device/whisper"), "{err}");

    client.cancel().await.unwrap();
    store.close().await;
    drop(mcp);
}

// ---- a model stored before models had a version -----------------------------------------

/// A reconciled model exactly as labctl wrote it before the model had a version (keys sorted,
/// Git documents with `labels` and `spec`, live-only resources without them).
fn unversioned_model() -> Json {
    json!({"resources": [
        {"deviations": 0, "kind": "Pool", "labels": {}, "name": "homelab", "providers": [],
         "spec": {"type": "compute", "dimensions": {"site": "basement"},
                  "capacity": {"cores": 8}},
         "status": "unobserved"},
        {"deviations": 0, "kind": "Pool", "labels": {"tier": "gpu"}, "name": "gpu-nodes",
         "providers": [],
         "spec": {"type": "compute", "parent": "homelab", "dimensions": {"gpu": true}},
         "status": "unobserved"},
        {"deviations": 1, "desired": {"cores": 6, "memoryMiB": 8192},
         "kind": "Device", "labels": {"role": "inference"}, "name": "whisper",
         "observed": {"cores": 4, "memoryMiB": 8192}, "providers": ["proxmox"],
         "spec": {"type": "vm", "pool": "gpu-nodes", "cores": 6, "memoryMiB": 8192,
                  "interfaces": [{"name": "net0", "mac": "BC:24:11:00:00:01"}]},
         "status": "out-of-sync"},
        {"deviations": 0, "kind": "Device", "labels": {}, "name": "pve1", "providers": [],
         "spec": {"type": "physical", "pool": "homelab", "ip": "10.0.1.2"},
         "status": "unobserved"},
        {"deviations": 0, "desired": {"ip": "10.0.1.30", "mac": "bc:24:11:00:00:01"},
         "kind": "DhcpReservation", "labels": {}, "name": "whisper",
         "observed": {"ip": "10.0.1.30", "mac": "bc:24:11:00:00:01"}, "providers": ["kea"],
         "spec": {"subnet": "10.0.1.0/24", "ip": "10.0.1.30", "mac": "bc:24:11:00:00:01"},
         "status": "synced"},
        {"deviations": 1, "kind": "DhcpReservation", "name": "printer",
         "observed": {"ip": "10.0.1.40", "mac": "bc:24:11:00:00:09"}, "providers": ["kea"],
         "status": "out-of-sync"},
        {"deviations": 0, "desired": {"host": "asr.lab"}, "kind": "Route", "labels": {},
         "name": "asr", "observed": {"host": "asr.lab"}, "providers": ["caddy"],
         "spec": {"host": "asr.lab", "backend": {"urls": ["http://10.0.1.30:9000"]}},
         "status": "synced"},
        {"deviations": 0, "details": {"serverName": "lab-tools", "tools": ["b", "a"]},
         "desired": {"expectedTools": ["a"]}, "kind": "McpServer", "labels": {},
         "name": "lab-tools", "observed": {"reachable": true}, "providers": ["mcp"],
         "spec": {"transport": "http", "url": "http://10.0.1.30:8080/mcp",
                  "expectedTools": ["a", "c"]},
         "status": "synced"},
    ]})
}

#[tokio::test]
async fn mcp_answers_over_a_model_stored_before_models_had_a_version() {
    let db_dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", db_dir.path().join("state.db").display());
    let store = Store::connect(&db).await.unwrap();
    store.migrate().await.unwrap();
    let run = store.start_run("timer", "ctl-1").await.unwrap();
    let report = labctl::store::RunReport {
        commit_sha: Some("c0ffee".into()),
        model: Some(unversioned_model().into()),
        ..labctl::store::RunReport::new(labctl::store::Outcome::Succeeded)
    };
    store.finish_run(run, report).await.unwrap();
    store.close().await;

    let client = connect(&db).await;
    let tools = client.list_all_tools().await.unwrap();
    let answer = |tool: &'static str, args: Json| {
        let (client, tools) = (&client, &tools);
        async move { ok(tools, tool, call(client, tool, args).await) }
    };

    let v = answer("infrastructure_summary", json!({})).await;
    assert_eq!(v["resources"], 8);
    assert_eq!(v["run"], run);
    assert_eq!(v["commit"], "c0ffee");
    assert_eq!(v["byKind"]["DhcpReservation"]["byStatus"]["out-of-sync"], 1);
    assert_eq!(v["byKind"]["Device"]["total"], 2);

    let v = answer("list_devices", json!({"pool": "homelab"})).await;
    assert_eq!(names(&v["devices"], "name"), ["pve1", "whisper"]);
    let v = answer("list_devices", json!({"dimension": "gpu=true"})).await;
    assert_eq!(names(&v["devices"], "name"), ["whisper"]);
    assert_eq!(v["devices"][0]["pool"], "/homelab/gpu-nodes");
    assert_eq!(v["devices"][0]["ips"], json!(["10.0.1.30"]));
    let v = answer("list_devices", json!({"status": "Out-Of-Sync"})).await;
    assert_eq!(names(&v["devices"], "name"), ["whisper"]);

    let v = answer("get_device", json!({"device": "10.0.1.30"})).await;
    assert_eq!(v["device"]["name"], "whisper");
    assert_eq!(v["device"]["reservations"], json!(["whisper"]));
    assert_eq!(v["device"]["provider"], "proxmox");
    assert_eq!(v["device"]["dimensions"]["site"], "basement");

    let v = answer("lookup_ip", json!({"ip": "10.0.1.30"})).await;
    assert_eq!(v["free"], false);
    let users: BTreeSet<String> = v["usedBy"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| format!("{}/{} {}", u["kind"], u["name"], u["source"]))
        .collect();
    assert!(
        users.contains("\"DhcpReservation\"/\"whisper\" \"both\""),
        "{users:?}"
    );
    assert!(users.contains("\"Route\"/\"asr\" \"desired\""), "{users:?}");
    assert!(users.contains("\"McpServer\"/\"lab-tools\" \"desired\""));

    let v = answer("get_pool", json!({"pool": "GPU-NODES"})).await;
    assert_eq!(v["pool"]["path"], "/homelab/gpu-nodes");
    assert_eq!(v["ancestors"], json!(["/homelab"]));
    assert_eq!(v["dimensions"]["site"]["from"], "homelab");
    assert_eq!(v["dimensions"]["site"]["inherited"], true);
    let v = answer("list_pools", json!({"fields": ["overCapacity", "usage"]})).await;
    assert_eq!(names(&v["pools"], "name"), ["homelab", "gpu-nodes"]);
    assert_eq!(v["pools"][0]["usage"]["cores"], 6);
    assert_eq!(v["pools"][0]["overCapacity"], json!([]));

    let v = answer("list_dhcp_reservations", json!({"status": "out-of-sync"})).await;
    assert_eq!(names(&v["reservations"], "name"), ["printer"]);
    assert_eq!(v["reservations"][0]["inGit"], false);
    let v = answer("list_routes", json!({})).await;
    assert_eq!(v["routes"][0]["host"], "asr.lab");
    let v = answer("list_mcp_servers", json!({})).await;
    assert_eq!(v["servers"][0]["missingTools"], json!(["c"]));

    let read = client
        .read_resource(ReadResourceRequestParams::new("labctl://Device/whisper"))
        .await
        .unwrap();
    let ResourceContents::TextResourceContents { text, .. } = &read.contents[0] else {
        panic!("a text resource")
    };
    let doc: Json = serde_json::from_str(text).unwrap();
    assert_eq!(doc["metadata"]["labels"]["role"], "inference");
    assert_eq!(doc["status"]["state"], "out-of-sync");
    client.cancel().await.unwrap();
}
