//! `sop up`: the whole service on one machine for a person trying it, in one command.
//!
//! It chooses what nobody chose (settings still at their built-in defaults): the database
//! becomes an SQLite file in a local data folder, and the bus is the JetStream server already
//! answering on the default URL or else a `nats-server -js` it starts itself ([`crate::devbus`]).
//! What was configured it uses as given: an explicit NATS URL that does not answer is an error,
//! never a reason to start another server. Then it serves through [`app::start`], exactly as
//! `sop worker` does, after printing what a second terminal needs (exports and next commands).
//! Production runs `sop worker`; nothing here changes it.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use super::ctx::{EXIT_REJECTED, EXIT_UNREACHABLE, Exit};
use super::render;
use crate::app;
use crate::config::{Settings, WorkerSettings};
use crate::devbus::{self, DevServer, Probe};
use crate::store::{self, teams::TeamSpec};
use crate::wire::answer::TeamIdentity;
use anyhow::Context as _;
use clap::Args;

/// The demo team, built in so `sop up --demo` works from any folder.
const DEMO_TEAM: &str = include_str!("../../deploy/team.example.json");

/// The metrics port `sop worker` uses by default; `sop up` takes another if it is taken.
const DEFAULT_HTTP_PORT: u16 = 9464;

#[derive(Args)]
pub struct UpArgs {
    /// Register the demo team (deploy/team.example.json; idempotent) and print its systems' ids.
    #[arg(long)]
    demo: bool,
    /// Folder for the SQLite database and the NATS store of the server `sop up` starts.
    #[arg(long, default_value = ".sop")]
    data_dir: PathBuf,
    /// Start a nats-server of its own even when one with JetStream answers on the default URL
    /// (keeps this service's streams off a server shared with other work).
    #[arg(long)]
    own_nats: bool,
    /// The nats-server program to start; by default the first on PATH, then in /usr/local/sbin,
    /// /usr/sbin and /sbin (where Debian's package puts it, off a non-root user's PATH).
    #[arg(long, env = "SOP_NATS_SERVER")]
    nats_server: Option<PathBuf>,
    // Read by `Cli::load` into the one `Settings` value the run is given.
    #[command(flatten)]
    pub(super) worker: WorkerSettings,
}

pub async fn run(settings: &Settings, args: UpArgs) -> Result<ExitCode, Exit> {
    // Listening from the start: a signal during start-up then ends `sop up` through the same
    // orderly path (stop the worker, then the server) instead of killing it outright.
    let mut signals =
        Signals::listen().map_err(|e| Exit(1, format!("listening for signals: {e}")))?;
    let mut settings = settings.clone();
    std::fs::create_dir_all(&args.data_dir).map_err(|e| {
        Exit(
            1,
            format!("creating the data folder {}: {e}", args.data_dir.display()),
        )
    })?;
    let data_dir = args
        .data_dir
        .canonicalize()
        .with_context(|| format!("resolving {}", args.data_dir.display()))?;
    if settings.is_default("database_url") {
        settings.worker.database_url =
            format!("sqlite://{}?mode=rwc", data_dir.join("sop.db").display());
    }
    if settings.is_default("http_addr") {
        // A second `sop up` or a `sop worker` may hold the usual port; metrics are a side show.
        let port = devbus::free_port(DEFAULT_HTTP_PORT).context("finding a free port")?;
        settings.worker.http_addr = format!("127.0.0.1:{port}");
    }
    // `None`: a server someone else runs (configured, or found on the default URL).
    let mut started = choose_bus(&mut settings, &args, &data_dir).await?;
    let served = serve(&settings, &args, &data_dir, started.as_mut(), &mut signals).await;
    if let Some(server) = started {
        server.stop().await;
        println!("stopped the nats-server sop up started");
    }
    served
}

/// Uses the configured or already running JetStream server, or starts one (returned: it is
/// `sop up`'s to stop).
async fn choose_bus(
    settings: &mut Settings,
    args: &UpArgs,
    data_dir: &Path,
) -> Result<Option<DevServer>, Exit> {
    if !settings.is_default("nats_url") {
        if args.own_nats {
            return Err(Exit(
                1,
                "--own-nats starts a server of its own; it cannot be combined with a configured NATS URL".into(),
            ));
        }
        // Configured means meant: report it unreachable rather than quietly serving elsewhere.
        app::connect_nats(settings).await.map_err(|e| {
            Exit(
                EXIT_UNREACHABLE,
                format!(
                    "{e:#}\n(sop up starts a nats-server of its own only when no NATS URL is configured)"
                ),
            )
        })?;
        println!(
            "NATS: using the configured server at {}",
            settings.connection.nats_url
        );
        return Ok(None);
    }
    let probed = match (
        args.own_nats,
        devbus::address(&settings.connection.nats_url),
    ) {
        (false, Some(address)) => devbus::probe(&address).await,
        _ => Probe::Closed,
    };
    let preferred = match &probed {
        Probe::JetStream { version } => {
            println!(
                "NATS: using the JetStream server (nats-server {version}) already answering at {}",
                settings.connection.nats_url
            );
            return Ok(None);
        }
        Probe::WithoutJetStream { version } => {
            println!(
                "NATS: nats-server {version} at {} runs without JetStream, so it is not used; starting one with JetStream",
                settings.connection.nats_url
            );
            0
        }
        Probe::NotNats => {
            println!(
                "NATS: what answers at {} is not a NATS server; starting one",
                settings.connection.nats_url
            );
            0
        }
        Probe::Closed if args.own_nats => 0,
        Probe::Closed => devbus::DEFAULT_PORT,
    };
    let binary = match &args.nats_server {
        Some(program) => devbus::executable(program).ok_or_else(|| {
            Exit(
                1,
                format!(
                    "--nats-server {} is not an executable file.\n{}",
                    program.display(),
                    devbus::INSTALL_HINT
                ),
            )
        })?,
        None => devbus::find_binary(std::env::var_os("PATH").as_deref()).ok_or_else(|| {
            Exit(
                1,
                format!(
                    "no nats-server on PATH nor in {}.\n{}",
                    devbus::SBIN_DIRS.join(", "),
                    devbus::INSTALL_HINT
                ),
            )
        })?,
    };
    let port = devbus::free_port(preferred).context("finding a free port")?;
    let server = DevServer::start(
        &binary,
        port,
        &data_dir.join("nats"),
        &data_dir.join("nats-server.log"),
    )
    .await?;
    println!(
        "NATS: started {} (pid {}) with JetStream at {}, store {}, log {}",
        binary.display(),
        server.pid().unwrap_or_default(),
        server.url(),
        data_dir.join("nats").display(),
        server.log().display()
    );
    settings.connection.nats_url = server.url().to_owned();
    Ok(Some(server))
}

/// Starts the worker, registers the demo team, prints the next steps, and serves until a
/// signal (or until the server `sop up` started goes away).
async fn serve(
    settings: &Settings,
    args: &UpArgs,
    data_dir: &Path,
    started: Option<&mut DevServer>,
    signals: &mut Signals,
) -> Result<ExitCode, Exit> {
    let running = app::start(settings).await?;
    let team = if args.demo {
        match demo_team(&running).await {
            Ok(team) => Some(team),
            Err(e) => {
                running.stop().await;
                return Err(e);
            }
        }
    } else {
        None
    };
    print!(
        "{}",
        next_steps(settings, data_dir, team.as_ref(), &running)
    );
    let exit = match started {
        None => {
            signals.recv().await;
            ExitCode::SUCCESS
        }
        Some(server) => tokio::select! {
            () = signals.recv() => ExitCode::SUCCESS,
            status = server.exited() => {
                tracing::error!(?status, log = %server.log().display(), "the nats-server sop up started has exited");
                ExitCode::FAILURE
            }
        },
    };
    tracing::info!("shutting down");
    running.stop().await;
    Ok(exit)
}

async fn demo_team(running: &app::Running) -> Result<TeamIdentity, Exit> {
    let spec: TeamSpec = serde_json::from_str(DEMO_TEAM).context("reading the demo team")?;
    let txn = store::begin(&running.db)
        .await
        .context("opening a transaction")?;
    let record = store::teams::apply(&txn, &spec)
        .await
        .map_err(|e| Exit(EXIT_REJECTED, e.to_string()))?;
    txn.commit().await.context("committing the demo team")?;
    running
        .team_streams
        .ensure(&record.name)
        .await
        .map_err(|e| Exit(1, format!("creating the demo team's events stream: {e}")))?;
    Ok(record.into())
}

/// What the second terminal needs: the exports, the demo team, the next commands.
fn next_steps(
    settings: &Settings,
    data_dir: &Path,
    team: Option<&TeamIdentity>,
    running: &app::Running,
) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "data: {}", data_dir.display());
    if let Some(http) = running.http {
        let _ = writeln!(
            out,
            "metrics and health: http://{http}/metrics, /healthz, /readyz"
        );
    }
    let _ = writeln!(out, "\nIn another terminal, in this folder:\n");
    let _ = writeln!(out, "  export PATH=$PWD/target/release:$PATH");
    let _ = writeln!(
        out,
        "  export SOP_NATS_URL={}",
        shell_word(&settings.connection.nats_url)
    );
    let _ = writeln!(
        out,
        "  export SOP_SUBJECT_PREFIX={}",
        shell_word(&settings.connection.subject_prefix)
    );
    match team {
        Some(team) => {
            let _ = writeln!(out, "  export SOP_TEAM={}", shell_word(&team.name));
            let systems = render::systems(&team.systems);
            let _ = writeln!(
                out,
                "\nteam {} ({})\n{}\n",
                team.name,
                team.id,
                indent(&systems)
            );
            let _ = writeln!(
                out,
                "Then (README: \"A first procedure, end to end\"):\n\n\
                 \x20 P=$(sop procedure draft --actor System4 --file examples/first-run-discovery.json --json | jq -r .result.procedure_id)\n\
                 \x20 D=$(sop procedure show $P --actor System5 --json | jq -r .procedure.digest)   # the content System5 read\n\
                 \x20 sop procedure approve $P digest=$D --actor System5\n\
                 \x20 R=$(sop procedure execute $P --actor System3 --json | jq -r .result.run_id)\n\
                 \x20 sop run show $R --actor System3   # each task's assignee: System1/alpha or System1/beta"
            );
        }
        None => {
            let _ = writeln!(
                out,
                "\nThen register a team (or run `sop up --demo`):\n\n\
                 \x20 sop team apply --file deploy/team.example.json"
            );
        }
    }
    let _ = writeln!(
        out,
        "\nServing. Stop with Ctrl-C; the data stays in {} (delete it to start afresh).",
        data_dir.display()
    );
    out
}

fn indent(text: &str) -> String {
    text.lines()
        .map(|l| format!("  {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// `word` as one shell word: as is when that is safe, else single-quoted.
fn shell_word(word: &str) -> String {
    let plain = !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:@,=+%".contains(c));
    if plain {
        word.to_owned()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

/// SIGINT and SIGTERM, registered when made so none is missed during start-up.
struct Signals {
    #[cfg(unix)]
    int: tokio::signal::unix::Signal,
    #[cfg(unix)]
    term: tokio::signal::unix::Signal,
}

impl Signals {
    fn listen() -> std::io::Result<Signals> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            Ok(Signals {
                int: signal(SignalKind::interrupt())?,
                term: signal(SignalKind::terminate())?,
            })
        }
        #[cfg(not(unix))]
        Ok(Signals {})
    }

    async fn recv(&mut self) {
        #[cfg(unix)]
        tokio::select! {
            _ = self.int.recv() => {}
            _ = self.term.recv() => {}
        }
        #[cfg(not(unix))]
        let _ = tokio::signal::ctrl_c().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exports_are_single_shell_words() {
        assert_eq!(shell_word("nats://127.0.0.1:4222"), "nats://127.0.0.1:4222");
        assert_eq!(shell_word(""), "''");
        assert_eq!(
            shell_word("sqlite:///tmp/a b/sop.db?mode=rwc"),
            "'sqlite:///tmp/a b/sop.db?mode=rwc'"
        );
        assert_eq!(shell_word("it's"), r"'it'\''s'");
    }

    #[test]
    fn the_demo_team_is_a_team_file() {
        let spec: TeamSpec = serde_json::from_str(DEMO_TEAM).unwrap();
        assert_eq!(spec.name, "discovery");
    }
}
