//! `sop`: the worker and the operator/agent command line.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use futures::StreamExt;
use uuid::Uuid;

use vsm_sop::app;
use vsm_sop::bus::client::{Client, ClientError};
use vsm_sop::config::Settings;
use vsm_sop::store::{self, teams::TeamSpec};
use vsm_sop::wire::command::CommandName;
use vsm_sop::wire::subjects::Subjects;

/// Exit codes scripts can branch on.
const EXIT_REJECTED: u8 = 2;
const EXIT_UNREACHABLE: u8 = 3;
const EXIT_NOT_FOUND: u8 = 4;

#[derive(Parser)]
#[command(
    name = "sop",
    version,
    about = "Standard Operating Procedures for VSM agents, over NATS"
)]
struct Cli {
    #[command(flatten)]
    settings: Settings,
    /// Log as JSON lines.
    #[arg(long, env = "SOP_LOG_JSON", global = true)]
    log_json: bool,
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the worker: consume commands, apply them, publish events.
    Worker,
    /// Apply database migrations and exit.
    Migrate,
    /// Register teams and their systems.
    Team {
        #[command(subcommand)]
        command: TeamCmd,
    },
    /// Send a command and print its outcome (exit 2 if rejected, 4 if not found, 3 if unreachable).
    Send {
        /// Command name, e.g. `procedure.draft`.
        command: String,
        /// The acting system's id.
        #[arg(long)]
        actor: Uuid,
        /// JSON payload file (`-` for standard input).
        #[arg(long, conflicts_with = "payload")]
        file: Option<PathBuf>,
        /// JSON payload inline.
        #[arg(long)]
        payload: Option<String>,
        /// Command id (default: a new one). Re-sending an id is safe.
        #[arg(long)]
        id: Option<Uuid>,
        /// Seconds to wait for the outcome.
        #[arg(long, default_value_t = 30)]
        timeout: u64,
    },
    /// Show a run from the database: status, tasks and post-run review.
    Run {
        #[command(subcommand)]
        command: RunCmd,
    },
    /// Print the stored outcome of a command.
    Outcome { command_id: Uuid },
    /// Print events as JSON lines: all from the start, or only new ones with --new.
    Events {
        /// Only this team's events.
        #[arg(long)]
        team: Option<String>,
        /// Only new events (default: replay from the first).
        #[arg(long)]
        new: bool,
        /// Stop after this many events.
        #[arg(long)]
        limit: Option<usize>,
    },
}

#[derive(Subcommand)]
enum RunCmd {
    /// Print a run as JSON: the run, its tasks and its review.
    Show { run_id: Uuid },
}

#[derive(Subcommand)]
enum TeamCmd {
    /// Create or update a team and its systems from a JSON file; prints ids.
    Apply {
        #[arg(long)]
        file: PathBuf,
    },
    /// Show a team and its systems.
    Show { name: String },
}

fn init_tracing(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,sqlx=warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}

fn read_payload(
    file: Option<PathBuf>,
    inline: Option<String>,
) -> anyhow::Result<serde_json::Value> {
    let text = match (file, inline) {
        (Some(path), _) if path.as_os_str() == "-" => std::io::read_to_string(std::io::stdin())?,
        (Some(path), _) => {
            std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?
        }
        (None, Some(text)) => text,
        (None, None) => anyhow::bail!("give the payload with --file or --payload"),
    };
    serde_json::from_str(&text).context("the payload is not JSON")
}

async fn client(settings: &Settings, timeout: Duration) -> Result<Client, ExitCode> {
    match app::connect_nats(&settings.nats_url).await {
        Ok(nats) => {
            Ok(Client::new(nats, Subjects::new(&settings.subject_prefix)).with_timeout(timeout))
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            Err(ExitCode::from(EXIT_UNREACHABLE))
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let settings = cli.settings;
    match cli.command {
        Cmd::Worker => {
            let running = app::start(&settings).await?;
            wait_for_signal().await;
            tracing::info!("shutting down");
            running.stop().await;
        }
        Cmd::Migrate => {
            let db = app::connect_db(&settings).await?;
            store::migrate(&db).await.context("running migrations")?;
            println!("migrations applied");
        }
        Cmd::Team { command } => {
            let db = app::connect_db(&settings).await?;
            store::migrate(&db).await.context("running migrations")?;
            match command {
                TeamCmd::Apply { file } => {
                    let text = std::fs::read_to_string(&file)
                        .with_context(|| format!("reading {}", file.display()))?;
                    let spec: TeamSpec = serde_json::from_str(&text).context("not a team file")?;
                    let txn = store::begin(&db).await?;
                    let record = store::teams::apply(&txn, &spec).await?;
                    txn.commit().await?;
                    println!("{}", serde_json::to_string_pretty(&record)?);
                }
                TeamCmd::Show { name } => match store::teams::find_by_name(&db, &name).await? {
                    Some(record) => println!("{}", serde_json::to_string_pretty(&record)?),
                    None => {
                        eprintln!("no team {name}");
                        return Ok(ExitCode::from(EXIT_NOT_FOUND));
                    }
                },
            }
        }
        Cmd::Send {
            command,
            actor,
            file,
            payload,
            id,
            timeout,
        } => {
            let Some(name) = CommandName::parse(&command) else {
                let known: Vec<&str> = CommandName::ALL.iter().map(|c| c.as_str()).collect();
                anyhow::bail!("unknown command `{command}`; one of: {}", known.join(", "));
            };
            let payload = read_payload(file, payload)?;
            let client = match client(&settings, Duration::from_secs(timeout)).await {
                Ok(c) => c,
                Err(code) => return Ok(code),
            };
            let outcome = match client
                .send_with_id(id.unwrap_or_else(Uuid::now_v7), name, actor, payload)
                .await
            {
                Ok(o) => o,
                Err(e @ (ClientError::Nats(_) | ClientError::Timeout(_))) => {
                    eprintln!("error: {e}");
                    return Ok(ExitCode::from(EXIT_UNREACHABLE));
                }
                Err(e) => return Err(e.into()),
            };
            println!("{}", serde_json::to_string_pretty(&outcome)?);
            return Ok(match outcome.error_code() {
                None => ExitCode::SUCCESS,
                Some("not_found") => ExitCode::from(EXIT_NOT_FOUND),
                Some(_) => ExitCode::from(EXIT_REJECTED),
            });
        }
        Cmd::Run {
            command: RunCmd::Show { run_id },
        } => {
            let db = app::connect_db(&settings).await?;
            let Some(run) = store::runs::load(&db, vsm_sop::domain::ids::RunId(run_id)).await?
            else {
                eprintln!("no run {run_id}");
                return Ok(ExitCode::from(EXIT_NOT_FOUND));
            };
            let review = store::reviews::of_run(&db, run_id).await?;
            let tasks: Vec<_> = run.tasks.iter().map(|t| run.task_view(t)).collect();
            let shown = serde_json::json!({
                "run": run.run_view(),
                "initiative": { "id": run.initiative.id, "status": run.initiative.status.as_str(),
                    "name": run.initiative.name, "result": run.initiative.result },
                "tasks": tasks,
                "review": review.map(|r| serde_json::json!({
                    "review_id": r.id, "outcome": r.outcome, "summary": r.summary, "lessons": r.lessons,
                    "follow_ups": r.follow_ups, "context": r.context, "recorded_at": r.created_at,
                })),
            });
            println!("{}", serde_json::to_string_pretty(&shown)?);
        }
        Cmd::Outcome { command_id } => {
            let client = match client(&settings, Duration::from_secs(10)).await {
                Ok(c) => c,
                Err(code) => return Ok(code),
            };
            match client.outcome(command_id).await? {
                Some(o) => println!("{}", serde_json::to_string_pretty(&o)?),
                None => {
                    eprintln!("no outcome for {command_id} (yet)");
                    return Ok(ExitCode::from(EXIT_NOT_FOUND));
                }
            }
        }
        Cmd::Events { team, new, limit } => {
            let client = match client(&settings, Duration::from_secs(10)).await {
                Ok(c) => c,
                Err(code) => return Ok(code),
            };
            let filter = match &team {
                Some(t) => client.subjects().team_events(t),
                None => ">".to_owned(),
            };
            let deliver = if new {
                async_nats::jetstream::consumer::DeliverPolicy::New
            } else {
                async_nats::jetstream::consumer::DeliverPolicy::All
            };
            let events = client.events(&filter, deliver).await?;
            let mut events = std::pin::pin!(events);
            let mut seen = 0;
            while let Some(event) = events.next().await {
                println!("{}", serde_json::to_string(&event?)?);
                seen += 1;
                if limit.is_some_and(|l| seen >= l) {
                    break;
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn wait_for_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing(cli.log_json);
    match run(cli).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
