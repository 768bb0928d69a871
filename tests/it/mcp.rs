//! `sop mcp` over stdio, spoken to as a host does (JSON-RPC lines): the bound role's tools,
//! a call that works, and a refusal as a tool error carrying the code.

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

use sea_orm::EntityTrait;

use crate::harness::*;
use crate::on_both_databases;

on_both_databases!(
    an_mcp_host_lists_the_roles_tools_and_calls_them,
    a_system_with_a_key_is_served_only_with_its_seed,
    a_models_mistakes_change_nothing_and_say_what_to_do,
    sop_mcp_serves_before_the_worker_and_answers_within_its_budget,
    one_http_door_serves_many_systems_by_token
);

struct Host {
    child: tokio::process::Child,
    stdin: tokio::process::ChildStdin,
    lines: tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
    next_id: u64,
    /// The notifications the server sent, by method.
    notified: Vec<String>,
}

impl Host {
    fn start(app: &TestApp, actor: uuid::Uuid, seed: Option<&str>) -> Host {
        Host::start_with(app, &["mcp", "--actor", &actor.to_string()], seed)
    }

    fn start_with(app: &TestApp, args: &[&str], seed: Option<&str>) -> Host {
        let mut command = app.sop_command(args);
        match seed {
            Some(seed) => command.env("SOP_NKEY_SEED", seed),
            None => command.env_remove("SOP_NKEY_SEED"),
        };
        Host::spawn(command)
    }

    fn spawn(mut command: tokio::process::Command) -> Host {
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
            notified: Vec::new(),
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
            if let (Some(method), true) = (message["method"].as_str(), message["id"].is_null()) {
                self.notified.push(method.to_owned());
            }
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

    /// Calls `tool` until its result passes `done`, for at most [`WAIT`].
    async fn call_until(
        &mut self,
        what: &str,
        tool: &str,
        arguments: Value,
        done: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let result = self.call(tool, arguments.clone()).await;
            if done(&result) {
                return result;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{what}: still {result}"
            );
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }

    async fn tool_names(&mut self) -> Vec<String> {
        let tools = self.request("tools/list", json!({})).await;
        tools["tools"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["name"].as_str().unwrap().to_owned())
            .collect()
    }

    /// A call the server refuses: its body, checked to carry a next step.
    async fn refused(&mut self, tool: &str, arguments: Value) -> Value {
        let result = self.call(tool, arguments).await;
        assert_eq!(result["isError"], true, "{tool}: {result}");
        let body = result["structuredContent"].clone();
        assert!(
            body["next_step"].as_str().is_some_and(|s| !s.is_empty()),
            "{body}"
        );
        body
    }
}

/// What a model gets wrong — another role's tool, a tool that does not exist, arguments its
/// schema does not have, a value outside a set, a missing argument, far too much text — is
/// refused with a code, the argument at fault and a next step, and changes nothing.
async fn a_models_mistakes_change_nothing_and_say_what_to_do(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let team = app.register_team("mistaken").await;
    let mut s1 = Host::start(&app, team.s1a, None);
    s1.initialize().await;
    let approve = s1
        .refused(
            "procedure_approve",
            json!({ "procedure_id": uuid::Uuid::now_v7() }),
        )
        .await;
    assert_eq!(approve["code"], "forbidden", "{approve}");
    assert!(
        approve["message"].as_str().unwrap().contains("system5"),
        "{approve}"
    );
    let invented = s1.refused("procedure_publish", json!({})).await;
    assert_eq!(invented["code"], "unknown_command", "{invented}");
    assert!(
        invented["message"].as_str().unwrap().contains("task_start"),
        "{invented}"
    );
    let as_other = s1
        .refused("procedure_list", json!({ "actor": team.s5 }))
        .await;
    assert_eq!(
        (&as_other["code"], &as_other["field"]),
        (&json!("invalid_payload"), &json!("actor"))
    );
    let unknown = s1.refused("run_list", json!({ "colour": "red" })).await;
    assert_eq!(
        (&unknown["code"], &unknown["field"]),
        (&json!("invalid_payload"), &json!("colour"))
    );
    let drafts = s1
        .refused("procedure_list", json!({ "status": "drafts" }))
        .await;
    assert_eq!(drafts["field"], "status", "{drafts}");
    let huge = "x".repeat(2 * 1024 * 1024);
    let too_large = s1.refused("procedure_list", json!({ "name": huge })).await;
    assert_eq!(too_large["code"], "too_large", "{too_large}");

    let mut s4 = Host::start(&app, team.s4, None);
    s4.initialize().await;
    let drafted = s4.call("procedure_draft", first_run_discovery()).await;
    let draft = drafted["structuredContent"]["result"]["procedure_id"].clone();
    let empty = s4
        .refused("procedure_edit", json!({ "procedure_id": draft }))
        .await;
    assert_eq!(empty["code"], "validation_failed", "{empty}");
    let history = s4
        .call("procedure_get", json!({ "procedure_id": draft }))
        .await;
    assert_eq!(
        history["structuredContent"]["procedure"]["updated_at"],
        history["structuredContent"]["procedure"]["created_at"],
        "the draft is as it was: {history}"
    );

    let mut s5 = Host::start(&app, team.s5, None);
    s5.initialize().await;
    let set = s5
        .call(
            "policy_set",
            json!({ "rules": [{ "name": "one", "max_open_runs": 1 }] }),
        )
        .await;
    assert_eq!(set["isError"], false, "{set}");
    let forgot = s5.refused("policy_set", json!({})).await;
    assert_eq!(
        (&forgot["code"], &forgot["field"]),
        (&json!("invalid_payload"), &json!("rules"))
    );
    let nulls = s5.refused("policy_set", json!({ "rules": null })).await;
    assert_eq!(nulls["field"], "rules", "{nulls}");
    let policy = s5.call("policy_get", json!({})).await;
    assert_eq!(policy["structuredContent"]["version"], 1, "{policy}");
    assert_eq!(
        policy["structuredContent"]["policy"]["rules"][0]["name"],
        "one"
    );
    let cleared = s5.call("policy_set", json!({ "rules": [] })).await;
    assert_eq!(cleared["isError"], false, "{cleared}");
    app.stop().await;
}

/// A host that starts `sop mcp` before NATS is up gets a server that answers at once: the
/// tools every role shares, and each call `unavailable` within its budget, never a dead
/// process.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sop_mcp_serves_before_nats_is_up() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap()
        .port();
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_sop"));
    command
        .args([
            "mcp",
            "--team",
            "early",
            "--actor",
            "System3",
            "--call-budget",
            "3",
        ])
        .env("SOP_NATS_URL", format!("nats://127.0.0.1:{port}"))
        .env("RUST_LOG", "error");
    let mut host = Host::spawn(command);
    let init = host.initialize().await;
    assert_eq!(init["serverInfo"]["name"], "vsm-sop");
    assert!(
        host.tool_names()
            .await
            .contains(&"procedure_get".to_owned())
    );
    let unavailable = host.refused("procedure_list", json!({})).await;
    assert_eq!(unavailable["code"], "unavailable", "{unavailable}");
}

/// A host that starts `sop mcp` before the worker gets a server that answers `unavailable`
/// until the worker comes, then offers the system's own tools and says they changed. With the
/// worker gone, a command answers within the budget with its `command_id`, and the model finds
/// its outcome once a worker has run it: one run, not two.
async fn sop_mcp_serves_before_the_worker_and_answers_within_its_budget(backend: Backend) {
    let mut app = TestApp::spawn(backend).await;
    let team = app.register_team("early").await;
    let sop = approved_sop(&app, &team).await;
    app.pause_consumer().await;

    let mut host = Host::start_with(
        &app,
        &[
            "mcp",
            "--team",
            "early",
            "--actor",
            "System3/root",
            "--call-budget",
            "3",
        ],
        None,
    );
    host.initialize().await;
    let early = host.tool_names().await;
    assert!(
        early.contains(&"procedure_get".to_owned()) && early.contains(&"task_start".to_owned())
    );
    assert!(
        !early.contains(&"procedure_execute".to_owned()),
        "System3's own tools wait for the worker"
    );
    let unavailable = host.refused("procedure_list", json!({})).await;
    assert_eq!(unavailable["code"], "unavailable", "{unavailable}");

    let worker = || {
        let mut command = app.sop_command(&["worker"]);
        command
            .env("SOP_HTTP_ADDR", "127.0.0.1:0")
            .kill_on_drop(true);
        command.spawn().expect("sop worker")
    };
    let mut first = worker();
    let listed = host
        .call_until(
            "a worker answers through sop mcp",
            "procedure_list",
            json!({}),
            |r| r["isError"] == false,
        )
        .await;
    assert_eq!(
        listed["structuredContent"]["procedures"][0]["series_id"],
        sop.to_string()
    );
    assert!(
        host.notified
            .iter()
            .any(|m| m == "notifications/tools/list_changed"),
        "{:?}",
        host.notified
    );
    assert!(
        host.tool_names()
            .await
            .contains(&"procedure_execute".to_owned())
    );

    first.kill().await.unwrap();
    first.wait().await.unwrap();
    let pending = host
        .refused("procedure_execute", json!({ "series_id": sop }))
        .await;
    assert_eq!(pending["code"], "timeout", "{pending}");
    let command_id = pending["command_id"]
        .as_str()
        .expect("the command's id")
        .to_owned();
    assert!(
        pending["next_step"]
            .as_str()
            .unwrap()
            .contains("command_outcome")
    );

    let mut second = worker();
    let outcome = host
        .call_until(
            "the command's outcome",
            "command_outcome",
            json!({ "command_id": command_id }),
            |r| r["isError"] == false && r["structuredContent"]["status"].is_string(),
        )
        .await;
    assert_eq!(
        outcome["structuredContent"]["status"], "accepted",
        "{outcome}"
    );
    let runs = host.call("run_list", json!({ "series_id": sop })).await;
    assert_eq!(
        runs["structuredContent"]["runs"].as_array().unwrap().len(),
        1,
        "{runs}"
    );
    second.kill().await.unwrap();
    app.stop().await;
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

/// One HTTP/1.1 exchange on a fresh connection: the status, the headers (lower-case names)
/// and the body.
async fn http(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, std::collections::HashMap<String, String>, String) {
    use tokio::io::AsyncReadExt;
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let mut request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    request.push_str(body);
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    tokio::time::timeout(WAIT, stream.read_to_end(&mut raw))
        .await
        .expect("an answer in time")
        .unwrap();
    let raw = String::from_utf8_lossy(&raw).into_owned();
    let (head, rest) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
    let mut lines = head.lines();
    let status = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_lowercase(), v.trim().to_owned()))
        .collect();
    (status, headers, rest.to_owned())
}

/// A JSON-RPC message posted to `/mcp` in session `id` with `bearer`'s token.
async fn in_session(
    addr: &str,
    bearer: &str,
    id: &str,
    body: &str,
) -> (u16, std::collections::HashMap<String, String>, String) {
    let headers = [
        ("Accept", "application/json, text/event-stream"),
        ("Content-Type", "application/json"),
        ("Authorization", bearer),
        ("Mcp-Session-Id", id),
        ("Mcp-Protocol-Version", "2025-06-18"),
    ];
    http(addr, "POST", "/mcp", &headers, body).await
}

/// The JSON-RPC message in a Streamable HTTP answer (plain JSON, or the `data:` of an event;
/// a chunked body's framing lines are not JSON and are skipped).
fn rpc(body: &str) -> Value {
    body.lines()
        .map(|l| l.trim_start_matches("data:").trim())
        .find_map(|l| {
            serde_json::from_str::<Value>(l)
                .ok()
                .filter(Value::is_object)
        })
        .unwrap_or_else(|| panic!("no JSON-RPC message in {body}"))
}

/// `sop mcp --http` without `--actor` serves every system whose token a request carries:
/// none or a bad one is 401 with the challenge and metadata the MCP authorization
/// specification describes; a token acts as its system (signed: the worker checks its key);
/// a revoked one is refused; the token is in no log; SIGTERM ends the server cleanly. Bound to
/// one system, it refuses to listen beyond loopback.
async fn one_http_door_serves_many_systems_by_token(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let team = app.register_team("door").await;
    let sop = approved_sop(&app, &team).await;
    let issue = |actor: &'static str| {
        let app = &app;
        async move {
            let (code, out, err) = app
                .sop(&[
                    "--json",
                    "--team",
                    "door",
                    "--actor",
                    actor,
                    "token",
                    "issue",
                    "--label",
                    "test",
                    "--expires",
                    "1d",
                ])
                .await;
            assert_eq!(code, 0, "{err}");
            serde_json::from_str::<Value>(&out).unwrap()
        }
    };
    let s3 = issue("System3/root").await;
    let s1 = issue("System1/alpha").await;
    let s3_token = s3["token"].as_str().unwrap().to_owned();
    let s1_token = s1["token"].as_str().unwrap().to_owned();
    assert!(s3_token.starts_with("sop_"));
    let (code, listed, _) = app.sop(&["--json", "token", "list"]).await;
    assert_eq!(code, 0);
    let listed: Value = serde_json::from_str(&listed).unwrap();
    assert_eq!(listed.as_array().unwrap().len(), 2);
    assert!(!listed.to_string().contains(&s3_token), "never shown again");
    let stored = entity::system_token::Entity::find()
        .all(app.db())
        .await
        .unwrap();
    assert!(
        stored
            .iter()
            .all(|t| !s3_token.contains(&t.public_key) && t.public_key.starts_with('U'))
    );

    let mut server = app
        .sop_command(&["mcp", "--http", "127.0.0.1:0"])
        .env("RUST_LOG", "debug")
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("sop mcp --http");
    let mut log = BufReader::new(server.stderr.take().unwrap()).lines();
    let addr = loop {
        let line = tokio::time::timeout(WAIT, log.next_line())
            .await
            .expect("started")
            .unwrap()
            .expect("a line");
        if let Some(rest) = line.split("serving MCP on http://").nth(1) {
            break rest.trim_end_matches("/mcp").to_owned();
        }
    };
    let logged = tokio::spawn(async move {
        let mut all = String::new();
        while let Ok(Some(line)) = log.next_line().await {
            all.push_str(&line);
            all.push('\n');
        }
        all
    });
    let init = json!({ "jsonrpc": "2.0", "id": 1, "method": "initialize",
        "params": { "protocolVersion": "2025-06-18", "capabilities": {},
                    "clientInfo": { "name": "vsm-sop tests", "version": "1" } } })
    .to_string();
    let accept = ("Accept", "application/json, text/event-stream");
    let json_type = ("Content-Type", "application/json");

    let (status, headers, _) = http(&addr, "POST", "/mcp", &[accept, json_type], &init).await;
    assert_eq!(status, 401);
    let challenge = &headers["www-authenticate"];
    assert!(
        challenge.starts_with("Bearer resource_metadata=\"http://")
            && challenge.contains("/.well-known/oauth-protected-resource/mcp"),
        "{challenge}"
    );
    let (status, _, metadata) = http(
        &addr,
        "GET",
        "/.well-known/oauth-protected-resource/mcp",
        &[],
        "",
    )
    .await;
    assert_eq!(status, 200);
    assert!(
        rpc(&metadata)["resource"]
            .as_str()
            .unwrap()
            .ends_with("/mcp"),
        "{metadata}"
    );
    let forged = format!(
        "sop_{}_{}",
        team.s5.simple(),
        nkeys::KeyPair::new_user().seed().unwrap()
    );
    for bad in ["Bearer nope", &format!("Bearer {forged}")] {
        let (status, headers, _) = http(
            &addr,
            "POST",
            "/mcp",
            &[accept, json_type, ("Authorization", bad)],
            &init,
        )
        .await;
        assert_eq!(status, 401, "{bad}");
        assert!(headers["www-authenticate"].contains("error=\"invalid_token\""));
    }

    // Each token's session acts as its own system.
    let session = |token: String| {
        let (addr, init) = (addr.clone(), init.clone());
        async move {
            let bearer = format!("Bearer {token}");
            let (status, headers, body) = http(
                &addr,
                "POST",
                "/mcp",
                &[accept, json_type, ("Authorization", &bearer)],
                &init,
            )
            .await;
            assert_eq!(status, 200, "{body}");
            let id = headers["mcp-session-id"].clone();
            let initialized =
                json!({ "jsonrpc": "2.0", "method": "notifications/initialized" }).to_string();
            in_session(&addr, &bearer, &id, &initialized).await;
            (bearer, id, rpc(&body))
        }
    };
    let call = |bearer: String, id: String, tool: &'static str, arguments: Value| {
        let addr = addr.clone();
        async move {
            let request = json!({ "jsonrpc": "2.0", "id": 2, "method": "tools/call",
                "params": { "name": tool, "arguments": arguments } })
            .to_string();
            let (status, _, body) = in_session(&addr, &bearer, &id, &request).await;
            (
                status,
                if status == 200 {
                    rpc(&body)["result"].clone()
                } else {
                    Value::Null
                },
            )
        }
    };
    let (s3_bearer, s3_session, s3_init) = session(s3_token.clone()).await;
    assert_eq!(
        s3_init["result"]["serverInfo"]["name"], "vsm-sop",
        "{s3_init}"
    );
    let (_, ran) = call(
        s3_bearer.clone(),
        s3_session.clone(),
        "procedure_execute",
        json!({ "series_id": sop }),
    )
    .await;
    assert_eq!(ran["isError"], false, "{ran}");
    let run_id: uuid::Uuid = ran["structuredContent"]["result"]["run_id"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let run = entity::procedure_run::Entity::find_by_id(run_id)
        .one(app.db())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        run.started_by_system_id, team.s3,
        "the token's system executed it"
    );
    let (s1_bearer, s1_session, _) = session(s1_token).await;
    let (_, denied) = call(
        s1_bearer.clone(),
        s1_session.clone(),
        "procedure_execute",
        json!({ "series_id": sop }),
    )
    .await;
    assert_eq!(
        denied["structuredContent"]["code"], "forbidden",
        "a System1's token is a System1: {denied}"
    );
    let (_, ready) = call(s1_bearer, s1_session, "task_list", json!({ "ready": true })).await;
    assert_eq!(ready["isError"], false, "{ready}");

    // Revoked: the worker refuses what it signs at once; the door, once its check expires.
    let (code, _, err) = app
        .sop(&["token", "revoke", s3["token_id"].as_str().unwrap()])
        .await;
    assert_eq!(code, 0, "{err}");
    let (status, after) = call(s3_bearer, s3_session, "run_list", json!({})).await;
    assert!(
        status == 401 || after["structuredContent"]["code"] == "forbidden",
        "{status} {after}"
    );

    let status = sigterm(&mut server, WAIT).await;
    assert!(status.success(), "SIGTERM ends it cleanly: {status}");
    let logged = logged.await.unwrap();
    assert!(!logged.contains(&s3_token[20..]), "a token reached the log");

    let (code, _, err) = app
        .sop(&[
            "mcp",
            "--http",
            "0.0.0.0:0",
            "--actor",
            &team.s3.to_string(),
        ])
        .await;
    assert_eq!(code, 1);
    assert!(err.contains("not a loopback address"), "{err}");
    app.stop().await;
}
