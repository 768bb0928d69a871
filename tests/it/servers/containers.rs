//! Servers in containers, through testcontainers: NATS and PostgreSQL from the images that
//! `SOP_TEST_NATS_IMAGE` and `SOP_TEST_POSTGRES_IMAGE` name (`name:tag`), by default the
//! official ones `deploy/compose.yaml` runs.
//!
//! Every container carries the label [`OWNER`]: the host and process id of the test process
//! that started it. When that process ends, however it ends, the [`REAPER`] removes its
//! containers. Should the reaper be gone too (killed with the whole process group, or neither
//! `docker` nor `podman` on PATH), the next test process to reach the engine removes the
//! containers of processes no longer running on this host.

use std::collections::HashMap;
use std::future::Future;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{ChildStdin, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use testcontainers_modules::nats::Nats as NatsImage;
use testcontainers_modules::postgres::Postgres as PostgresImage;
use testcontainers_modules::testcontainers::bollard::query_parameters::{
    ListContainersOptions, RemoveContainerOptions, UploadToContainerOptions,
};
use testcontainers_modules::testcontainers::bollard::{self, Docker};
use testcontainers_modules::testcontainers::core::client::docker_client_instance;
use testcontainers_modules::testcontainers::core::{CmdWaitFor, ExecCommand, IntoContainerPort};
use testcontainers_modules::testcontainers::runners::SyncRunner;
use testcontainers_modules::testcontainers::{Container, ContainerRequest, Image, ImageExt};
use uuid::Uuid;

use super::{NatsSpec, STARTUP, nats_ready};

/// The label every container of the tests carries: `host/pid` of the process that started it.
const OWNER: &str = "org.vsm-sop.test.owner";

/// An image: the variable that names it (`name:tag`), and its default.
type ImageSetting = (&'static str, &'static str);
const NATS_IMAGE: ImageSetting = ("SOP_TEST_NATS_IMAGE", "nats:2.10-alpine");
const POSTGRES_IMAGE: ImageSetting = ("SOP_TEST_POSTGRES_IMAGE", "postgres:15-alpine");

/// Where a NATS container finds its configuration (and the files it includes).
const NATS_CONF_DIR: &str = "/etc/sop";

/// Collects container ids, one a line, for as long as its standard input stays open; at end of
/// file removes those containers. As with the binaries' supervisor, the kernel closes that
/// input however the test process ends; interrupts are ignored so a Ctrl-C, which reaches the
/// whole process group, still lets the removal run.
const REAPER: &str = r#"
trap '' HUP INT TERM
ids=
while read -r id; do ids="$ids $id"; done
[ -n "$ids" ] || exit 0
if command -v docker >/dev/null 2>&1; then
    docker rm --force --volumes $ids
elif command -v podman >/dev/null 2>&1; then
    podman ${DOCKER_HOST:+--url "$DOCKER_HOST"} rm --force --volumes $ids
fi >/dev/null 2>&1
"#;

/// The engine this process starts its containers on, and the reaper that removes them.
pub struct Engine {
    reaper: Mutex<ChildStdin>,
}

/// The engine testcontainers finds (`DOCKER_HOST`, else the usual sockets), if it answers.
/// The first call also removes what earlier test processes left behind.
pub fn engine() -> Result<&'static Engine, String> {
    static ENGINE: OnceLock<Result<Engine, String>> = OnceLock::new();
    ENGINE.get_or_init(connect).as_ref().map_err(Clone::clone)
}

fn connect() -> Result<Engine, String> {
    block_on(async {
        let docker = docker().await?;
        tokio::time::timeout(Duration::from_secs(10), docker.ping())
            .await
            .map_err(|_| "no answer to a ping within 10 s".to_owned())?
            .map_err(|e| e.to_string())?;
        remove_leftovers(&docker).await;
        Ok::<_, String>(())
    })?;
    let mut reaper = Command::new("sh")
        .args(["-c", REAPER])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("start the reaper (sh): {e}"))?;
    let input = reaper.stdin.take().expect("piped stdin");
    Ok(Engine {
        reaper: Mutex::new(input),
    })
}

impl Engine {
    fn reap_at_exit(&self, id: &str) {
        let mut reaper = self.reaper.lock().expect("reaper lock");
        writeln!(reaper, "{id}").expect("the reaper runs");
    }
}

async fn docker() -> Result<Docker, String> {
    docker_client_instance().await.map_err(|e| e.to_string())
}

/// Removes the containers of test processes that no longer run on this host.
async fn remove_leftovers(docker: &Docker) {
    let options = ListContainersOptions {
        all: true,
        filters: Some(HashMap::from([(
            "label".to_owned(),
            vec![OWNER.to_owned()],
        )])),
        ..Default::default()
    };
    let Ok(containers) = docker.list_containers(Some(options)).await else {
        return;
    };
    let here = format!("{}/", hostname());
    for container in containers {
        let owner = container.labels.as_ref().and_then(|l| l.get(OWNER));
        let Some(pid) = owner.and_then(|owner| owner.strip_prefix(&here)) else {
            continue;
        };
        if let (false, Some(id)) = (running(pid), &container.id) {
            let remove = RemoveContainerOptions {
                force: true,
                v: true,
                ..Default::default()
            };
            let _ = docker.remove_container(id, Some(remove)).await;
        }
    }
}

/// Whether process `pid` runs (whoever owns it); `true` when that cannot be told.
fn running(pid: &str) -> bool {
    Command::new("ps")
        .args(["-p", pid])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map_or(true, |status| status.success())
}

fn hostname() -> &'static str {
    static NAME: OnceLock<String> = OnceLock::new();
    NAME.get_or_init(|| {
        Command::new("hostname")
            .output()
            .ok()
            .map(|out| String::from_utf8_lossy(&out.stdout).trim().to_owned())
            .filter(|name| !name.is_empty())
            .unwrap_or_else(|| "localhost".to_owned())
    })
}

/// Runs `f` on a thread of its own: testcontainers' blocking calls drive a runtime of their
/// own, which a thread already inside one (an async test's) must not do.
fn off_runtime<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|scope| {
        scope
            .spawn(f)
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    })
}

fn block_on<F: Future + Send>(future: F) -> F::Output
where
    F::Output: Send,
{
    off_runtime(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime")
            .block_on(future)
    })
}

/// The image `setting` names: its variable, else its default, as (name, tag).
fn image((var, default): ImageSetting) -> (String, String) {
    let reference = std::env::var(var).unwrap_or_else(|_| default.to_owned());
    // A registry's port may precede the name: the tag follows the last `/`.
    let name_start = reference.rfind('/').map_or(0, |slash| slash + 1);
    match reference[name_start..].rfind(':') {
        Some(colon) => {
            let (name, tag) = reference.split_at(name_start + colon);
            (name.to_owned(), tag[1..].to_owned())
        }
        None => (reference, "latest".to_owned()),
    }
}

/// Starts a container of `request`, labelled as this process's, to be removed when it ends.
fn start<I: Image + Send>(request: ContainerRequest<I>, setting: ImageSetting) -> Container<I> {
    let engine = engine().unwrap_or_else(|why| panic!("no container engine answers: {why}"));
    let owner = format!("{}/{}", hostname(), std::process::id());
    let container = off_runtime(|| {
        request
            .with_label(OWNER, owner)
            .with_startup_timeout(STARTUP)
            .start()
    })
    .unwrap_or_else(|e| {
        let (name, tag) = image(setting);
        panic!(
            "start a container of {name}:{tag}: {e}. Pull or build that image, name another \
             with {} (name:tag), or run the tests on binaries (SOP_TEST_SERVERS=binaries)",
            setting.0
        )
    });
    engine.reap_at_exit(container.id());
    container
}

/// Removes a container now, off any runtime.
fn remove<I: Image + Send>(container: Option<Container<I>>) {
    if let Some(container) = container {
        off_runtime(move || drop(container));
    }
}

/// The host its published ports are on, as an address to connect to.
fn host_of<I: Image>(container: &Container<I>) -> String {
    let host = off_runtime(|| container.get_host())
        .expect("the container's host")
        .to_string();
    if host == "localhost" {
        "127.0.0.1".to_owned()
    } else {
        host
    }
}

/// Waits until `ready`; panics if that takes longer than [`STARTUP`].
fn wait_until(what: &str, ready: impl Fn() -> bool) {
    let deadline = Instant::now() + STARTUP;
    while !ready() {
        assert!(
            Instant::now() < deadline,
            "{what} did not answer within {STARTUP:?} of its start"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A NATS container as `spec` describes it, on a fixed host port so that it comes back on the
/// same URL after a restart. Removed on drop.
pub struct Nats {
    container: Option<Container<NatsImage>>,
    host: String,
    port: u16,
}

impl Nats {
    pub fn start(spec: &NatsSpec) -> Nats {
        let (name, tag) = image(NATS_IMAGE);
        let port = super::free_port();
        let mut cmd = vec!["-c".to_owned(), format!("{NATS_CONF_DIR}/nats.conf")];
        if spec.jetstream {
            cmd.extend(["--jetstream", "--store_dir", "/data/jetstream"].map(str::to_owned));
        }
        let mut request = NatsImage::default()
            .with_name(name)
            .with_tag(tag)
            .with_cmd(cmd)
            .with_mapped_port(port, 4222.tcp())
            .with_copy_to(
                format!("{NATS_CONF_DIR}/nats.conf"),
                spec.config().into_bytes(),
            );
        for (file, text) in &spec.include {
            request =
                request.with_copy_to(format!("{NATS_CONF_DIR}/{file}"), text.clone().into_bytes());
        }
        for (var, value) in &spec.env {
            request = request.with_env_var(var, value);
        }
        let container = start(request, NATS_IMAGE);
        Nats {
            host: host_of(&container),
            container: Some(container),
            port,
        }
    }

    pub fn url(&self) -> String {
        format!("nats://{}:{}", self.host, self.port)
    }

    /// Stops the server (the container and its store stay) and leaves it down.
    pub fn stop(&mut self) {
        let container = self.container.as_ref().expect("a container");
        off_runtime(|| container.stop_with_timeout(Some(0))).expect("stop the NATS container");
    }

    /// Starts the stopped server again with the configuration `spec` now describes.
    pub fn resume(&mut self, spec: &NatsSpec) {
        let container = self.container.as_ref().expect("a container");
        upload(container.id(), "nats.conf", &spec.config());
        off_runtime(|| container.start()).expect("start the NATS container again");
        let (host, port) = (&self.host, self.port);
        wait_until("nats-server", || nats_ready(host, port));
    }

    /// Kills the server (the container and its store stay), waits `down`, and starts it again
    /// with the configuration `spec` now describes.
    pub async fn restart(&mut self, down: Duration, spec: &NatsSpec) {
        self.stop();
        tokio::time::sleep(down).await;
        self.resume(spec);
    }
}

impl Drop for Nats {
    fn drop(&mut self) {
        remove(self.container.take());
    }
}

/// Puts `text` in the (stopped) container as `NATS_CONF_DIR/file`.
fn upload(container: &str, file: &str, text: &str) {
    let mut header = tar::Header::new_gnu();
    header.set_size(text.len() as u64);
    header.set_mode(0o644);
    header.set_cksum();
    let mut archive = tar::Builder::new(Vec::new());
    archive
        .append_data(&mut header, file, text.as_bytes())
        .expect("a tar archive in memory");
    let archive = archive.into_inner().expect("a tar archive in memory");
    let options = UploadToContainerOptions {
        path: NATS_CONF_DIR.to_owned(),
        ..Default::default()
    };
    block_on(async move {
        docker()
            .await?
            .upload_to_container(container, Some(options), bollard::body_full(archive.into()))
            .await
            .map_err(|e| e.to_string())
    })
    .unwrap_or_else(|e| panic!("copy {file} into the NATS container: {e}"));
}

/// Where the official NATS images keep `nats-server`: Alpine's, then the one built from scratch.
const NATS_PROGRAMS: [&str; 2] = ["/usr/local/bin/nats-server", "/nats-server"];

/// A container of the NATS image running a plain server, `files` in [`NATS_CONF_DIR`], and
/// the path of its `nats-server`: for running that program on them.
fn nats_tool(files: Vec<(String, Vec<u8>)>) -> (Container<NatsImage>, &'static str) {
    let (name, tag) = image(NATS_IMAGE);
    let mut request = NatsImage::default()
        .with_name(name)
        .with_tag(tag)
        .with_cmd(["--port", "4222"]);
    for (file, bytes) in files {
        request = request.with_copy_to(format!("{NATS_CONF_DIR}/{file}"), bytes);
    }
    let container = start(request, NATS_IMAGE);
    let program = NATS_PROGRAMS
        .into_iter()
        .find(|program| matches!(run(&container, &[program, "--version"]), Some((0, _))))
        .unwrap_or_else(|| panic!("the NATS image has no nats-server in {NATS_PROGRAMS:?}"));
    (container, program)
}

/// Runs `command` in `container`: its exit status and what it wrote on standard error.
fn run<I: Image>(container: &Container<I>, command: &[&str]) -> Option<(i64, String)> {
    off_runtime(|| {
        let exec =
            ExecCommand::new(command.iter().copied()).with_cmd_ready_condition(CmdWaitFor::exit());
        let mut done = container.exec(exec).ok()?;
        let said = String::from_utf8_lossy(&done.stderr_to_vec().ok()?).into_owned();
        Some((done.exit_code().ok()??, said))
    })
}

/// Checks a configuration file as `nats-server -t` does, with the NATS image's own program.
pub fn check_nats_config(conf: &Path) -> Result<(), String> {
    let file = conf
        .file_name()
        .expect("a file")
        .to_string_lossy()
        .into_owned();
    let text = std::fs::read(conf).expect("read the configuration");
    let target = format!("{NATS_CONF_DIR}/{file}");
    let (container, program) = nats_tool(vec![(file, text)]);
    let checked = run(&container, &[program, "-c", &target, "-t"]);
    remove(Some(container));
    match checked {
        Some((0, _)) => Ok(()),
        Some((code, said)) => Err(format!("exit {code}: {said}")),
        None => Err("nats-server -t did not run".to_owned()),
    }
}

/// The NATS image's `nats-server`, copied out of a container of it once per process into
/// cargo's temporary directory for integration tests.
pub fn nats_server_program() -> PathBuf {
    static PROGRAM: OnceLock<PathBuf> = OnceLock::new();
    PROGRAM
        .get_or_init(|| {
            let (container, program) = nats_tool(Vec::new());
            let bytes = off_runtime(|| container.copy_file_from(program, Vec::new()))
                .expect("copy nats-server out of its container");
            remove(Some(container));
            let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("nats-server");
            std::fs::create_dir_all(&dir).expect("create a directory for nats-server");
            // Written aside, then renamed: other test processes may be running it.
            let aside = dir.join(format!(".nats-server-{}", Uuid::new_v4().simple()));
            std::fs::write(&aside, bytes).expect("write nats-server");
            make_executable(&aside);
            let path = dir.join("nats-server");
            std::fs::rename(&aside, &path).expect("put nats-server in place");
            path
        })
        .clone()
}

#[cfg(unix)]
fn make_executable(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))
        .expect("make nats-server executable");
}

#[cfg(not(unix))]
fn make_executable(_: &Path) {}

/// A PostgreSQL container, password-protected (its port is published), on a fixed host port
/// so that it comes back on the same URL after a restart. Removed on drop.
pub struct Postgres {
    container: Option<Container<PostgresImage>>,
    host: String,
    port: u16,
    password: String,
}

impl Postgres {
    pub fn start() -> Postgres {
        let (name, tag) = image(POSTGRES_IMAGE);
        let port = super::free_port();
        let password = Uuid::new_v4().simple().to_string();
        let request = PostgresImage::default()
            .with_password(&password)
            .with_name(name)
            .with_tag(tag)
            .with_mapped_port(port, 5432.tcp());
        let container = start(request, POSTGRES_IMAGE);
        Postgres {
            host: host_of(&container),
            container: Some(container),
            port,
            password,
        }
    }

    pub fn admin_url(&self) -> String {
        format!(
            "postgres://postgres:{}@{}:{}/postgres",
            self.password, self.host, self.port
        )
    }

    pub fn up(&self) {
        let container = self.container.as_ref().expect("a container");
        off_runtime(|| container.start()).expect("start the PostgreSQL container again");
        wait_until("PostgreSQL", || postgres_ready(&self.host, self.port));
    }

    /// Kills the server: no shutdown, as in a crash.
    pub fn down(&self) {
        let container = self.container.as_ref().expect("a container");
        off_runtime(|| container.stop_with_timeout(Some(0)))
            .expect("stop the PostgreSQL container");
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        remove(self.container.take());
    }
}

/// PostgreSQL on `host:port` takes connections: it answers a startup message by asking for
/// authentication, where a server still starting or recovering answers with an error.
fn postgres_ready(host: &str, port: u16) -> bool {
    let Ok(mut stream) = std::net::TcpStream::connect((host, port)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    let parameters = b"user\0postgres\0database\0postgres\0\0";
    let length = u32::try_from(8 + parameters.len()).expect("a short message");
    let mut startup = length.to_be_bytes().to_vec();
    startup.extend(196_608_u32.to_be_bytes()); // protocol 3.0
    startup.extend(parameters);
    let mut answer = [0_u8; 1];
    stream.write_all(&startup).is_ok()
        && stream.read_exact(&mut answer).is_ok()
        && answer[0] == b'R'
}
