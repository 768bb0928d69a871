//! `sop mcp` over stdio, spoken to as a host does (JSON-RPC lines): the bound role's tools,
//! a call that works, and a refusal as a tool error carrying the code.

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

use crate::harness::*;
use crate::on_both_databases;

on_both_databases!(
    an_mcp_host_lists_the_roles_tools_and_calls_them,
    a_system_with_a_key_is_served_only_with_its_seed
);

struct Host {
    child: tokio::process::Child,
    stdin: tokio::process::ChildStdin,
    lines: tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
    next_id: u64,
}

impl Host {
    fn start(app: &TestApp, actor: uuid::Uuid, seed: Option<&str>) -> Host {
        let mut command = app.sop_command(&["mcp", "--actor", &actor.to_string()]);
        match seed {
            Some(seed) => command.env("SOP_NKEY_SEED", seed),
            None => command.env_remove("SOP_NKEY_SEED"),
        };
        let mut child = command
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("sop mcp");
        let stdin = child.stdin.take().unwrap();
        let lines = BufReader::new(child.stdout.take().unwrap()).lines();
        Host {
            child,
            stdin,
            lines,
            next_id: 0,
        }
    }

    async fn send(&mut self, message: Value) {
        let mut line = message.to_string();
        line.push('\n');
        self.stdin.write_all(line.as_bytes()).await.unwrap();
    }

    /// Sends a request and returns its `result` (skipping anything else the server says).
    async fn request(&mut self, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        self.send(json!({ "jsonrpc": "2.0", "id": id, "method": method, "params": params }))
            .await;
        loop {
            let line = tokio::time::timeout(WAIT, self.lines.next_line())
                .await
                .expect("an answer in time")
                .unwrap()
                .expect("sop mcp ended");
            let message: Value = serde_json::from_str(&line).unwrap();
            if message["id"] == id {
                assert!(message["error"].is_null(), "{method}: {message}");
                return message["result"].clone();
            }
        }
    }

    async fn initialize(&mut self) -> Value {
        let init = self
            .request(
                "initialize",
                json!({ "protocolVersion": "2025-06-18", "capabilities": {},
                        "clientInfo": { "name": "vsm-sop tests", "version": "1" } }),
            )
            .await;
        self.send(json!({ "jsonrpc": "2.0", "method": "notifications/initialized" }))
            .await;
        init
    }

    async fn call(&mut self, tool: &str, arguments: Value) -> Value {
        self.request(
            "tools/call",
            json!({ "name": tool, "arguments": arguments }),
        )
        .await
    }
}

async fn an_mcp_host_lists_the_roles_tools_and_calls_them(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let team = app.register_team("hosted").await;
    let sop = approved_sop(&app, &team).await;
    let mut host = Host::start(&app, team.s3, None);
    let init = host.initialize().await;
    assert_eq!(init["serverInfo"]["name"], "vsm-sop");
    let instructions = init["instructions"].as_str().unwrap();
    assert!(
        instructions.contains("System3/root") && instructions.contains("policy_denied"),
        "{instructions}"
    );

    let tools = host.request("tools/list", json!({})).await;
    let names: Vec<&str> = tools["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert!(names.contains(&"procedure_execute") && names.contains(&"task_review"));
    assert!(!names.contains(&"procedure_approve"), "not System3's");
    let execute = &tools["tools"].as_array().unwrap()[0];
    assert_eq!(execute["name"], "procedure_execute");
    assert_eq!(execute["inputSchema"]["required"], json!(["series_id"]));

    let ran = host
        .call("procedure_execute", json!({ "series_id": sop }))
        .await;
    assert_eq!(ran["isError"], false, "{ran}");
    assert_eq!(ran["structuredContent"]["result"]["status"], "started");
    let refused = host
        .call(
            "procedure_execute",
            json!({ "series_id": uuid::Uuid::now_v7() }),
        )
        .await;
    assert_eq!(refused["isError"], true);
    assert_eq!(
        refused["structuredContent"]["code"], "not_found",
        "{refused}"
    );
    assert!(refused["structuredContent"]["next_step"].is_string());
    let text: Value =
        serde_json::from_str(refused["content"][0]["text"].as_str().unwrap()).unwrap();
    assert_eq!(text, refused["structuredContent"], "the same body as text");
    let listed = host.call("procedure_list", json!({})).await;
    assert_eq!(listed["isError"], false, "{listed}");
    assert_eq!(
        listed["structuredContent"]["procedures"][0]["series_id"],
        sop.to_string()
    );

    drop(host.stdin);
    let status = tokio::time::timeout(WAIT, host.child.wait())
        .await
        .expect("sop mcp ends with its input")
        .unwrap();
    assert!(status.success(), "{status}");
    app.stop().await;
}

/// A system with a registered key: `sop mcp` signs its commands and queries with the seed it
/// was started with; without it, the worker refuses them and the model is told so.
async fn a_system_with_a_key_is_served_only_with_its_seed(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let team = app.register_team("keyed").await;
    let pair = nkeys::KeyPair::new_user();
    app.register_key("keyed", "System4/root", "system4", pair.public_key())
        .await;

    let mut unsigned = Host::start(&app, team.s4, None);
    unsigned.initialize().await;
    let refused = unsigned
        .call("procedure_draft", first_run_discovery())
        .await;
    assert_eq!(refused["isError"], true);
    assert_eq!(
        refused["structuredContent"]["code"], "forbidden",
        "{refused}"
    );

    let seed = pair.seed().unwrap();
    let mut signed = Host::start(&app, team.s4, Some(&seed));
    signed.initialize().await;
    let drafted = signed.call("procedure_draft", first_run_discovery()).await;
    assert_eq!(drafted["isError"], false, "{drafted}");
    let listed = signed.call("procedure_list", json!({})).await;
    assert_eq!(listed["isError"], false, "{listed}");
    app.stop().await;
}
