//! The `sop` command line: the worker, migrations, team registration, every command, every
//! query, and the event stream, for people (tables) and scripts (`--json`, exit codes).
//!
//! Exit codes: 0 done; 1 usage or local error; 2 rejected / refused; 3 NATS unreachable or no
//! answer in time; 4 not found.

mod render;
mod up;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};
use futures::StreamExt;
use serde_json::{Map, Value, json};
use uuid::Uuid;

use crate::app;
use crate::application::queries::AUDIT_PAGE;
use crate::bus::client::{Client, ClientError, EventStart};
use crate::bus::contract;
use crate::config::{ConnectionSettings, Settings, WorkerSettings};
use crate::domain::event::EventKind;
use crate::store;
use crate::wire::admin::{AdminName, RepublishRequest, TeamSpec};
use crate::wire::command::CommandName;
use crate::wire::outcome::Outcome;
use crate::wire::query::QueryName;
use crate::wire::subjects::Subjects;
use render::{GraphFormat, Names};
use tokio::sync::OnceCell;

const EXIT_REJECTED: u8 = 2;
const EXIT_UNREACHABLE: u8 = 3;
const EXIT_NOT_FOUND: u8 = 4;

#[derive(Parser)]
#[command(
    name = "sop",
    version,
    about = "Standard Operating Procedures for VSM agents, over NATS"
)]
pub struct Cli {
    #[command(flatten)]
    connection: ConnectionSettings,
    /// Every setting, assembled by [`Cli::load`] with the subcommand's worker settings.
    #[arg(skip = Settings::local())]
    pub settings: Settings,
    /// The acting system, for commands and queries: its id, or its name within `--team`
    /// (`System1/alpha`; `System3`, `System4`, `System5` when the team has one of that type).
    #[arg(long, env = "SOP_ACTOR", global = true, help_heading = "Acting system")]
    actor: Option<String>,
    /// The acting system's team, when `--actor` is a name; also the team `events` follows.
    #[arg(long, env = "SOP_TEAM", global = true, help_heading = "Acting system")]
    team: Option<String>,
    /// The acting system's NATS user seed (`SU…`): commands are signed with it.
    #[arg(
        long,
        env = "SOP_NKEY_SEED",
        global = true,
        hide_env_values = true,
        help_heading = "Acting system"
    )]
    nkey_seed: Option<String>,
    /// Print JSON instead of tables.
    #[arg(long, global = true, help_heading = "Output")]
    json: bool,
    /// Seconds to wait for an outcome or an answer.
    #[arg(long, default_value_t = 30, global = true, help_heading = "Output")]
    timeout: u64,
    /// Log as JSON lines.
    #[arg(long, env = "SOP_LOG_JSON", global = true, help_heading = "Output")]
    pub log_json: bool,
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the worker: consume commands, apply them, publish events, answer queries.
    Worker(WorkerSettings),
    /// Try the service on this machine: data in ./.sop, a JetStream server found or started
    /// (nats-server from PATH), the next commands printed; then serve as `worker` does.
    Up(up::UpArgs),
    /// Apply database migrations and exit.
    Migrate(WorkerSettings),
    /// Register teams and show their systems (operators; `sop.admin.team.apply`, `sop.query.team.get`).
    Team {
        #[command(subcommand)]
        command: TeamCmd,
    },
    /// Procedure commands and queries.
    Procedure {
        #[command(subcommand)]
        command: ProcedureCmd,
    },
    /// Task commands.
    Task {
        #[command(subcommand)]
        command: TaskCmd,
    },
    /// Run commands and queries.
    Run {
        #[command(subcommand)]
        command: RunCmd,
    },
    /// Initiative commands and queries.
    Initiative {
        #[command(subcommand)]
        command: InitiativeCmd,
    },
    /// The audit trail of a series or a run: every event, actor and time.
    Audit {
        #[arg(long, required_unless_present = "run")]
        series: Option<Uuid>,
        #[arg(long)]
        run: Option<Uuid>,
        /// At most this many entries (fetched page by page).
        #[arg(long, default_value_t = 1000)]
        limit: u64,
    },
    /// The outcome of a command, by its id.
    Outcome { command_id: Uuid },
    /// Messages given up on, newest first (operators; `sop.admin.dead_letter.list`).
    DeadLetters {
        #[arg(long, default_value_t = 50)]
        limit: u64,
    },
    /// Outbox messages the relay parked because the server refused them for good
    /// (operators; `sop.admin.outbox.parked`, `sop.admin.outbox.republish`).
    Outbox {
        #[command(subcommand)]
        command: OutboxCmd,
    },
    /// Send any command with a JSON/YAML payload (the generic form of the commands above).
    Send {
        /// Command name, e.g. `procedure.draft`.
        command: String,
        #[command(flatten)]
        args: SendArgs,
    },
    /// Follow or replay events.
    Events {
        #[command(subcommand)]
        command: EventsCmd,
    },
    /// Make a NATS user key pair for a system: register the public key with `team apply`,
    /// give the seed to the agent (SOP_NKEY_SEED) to sign its commands.
    NkeyGenerate,
    /// Print the AsyncAPI contract (docs/asyncapi.yaml).
    Contract,
    /// Print the effective configuration (file, environment, flags), secrets redacted.
    Config(WorkerSettings),
    /// Measure the whole path against plain SQL and bare JetStream baselines.
    Bench(crate::bench::BenchArgs),
}

#[derive(Subcommand)]
enum OutboxCmd {
    /// The parked messages, oldest first, each with why the server refused it.
    Parked,
    /// Lists parked messages again for the relay to publish, once their cause is fixed.
    Republish {
        /// The `seq`s to republish, as `sop outbox parked` shows them.
        #[arg(required_unless_present = "all", conflicts_with = "all")]
        seqs: Vec<i64>,
        /// Every parked message.
        #[arg(long)]
        all: bool,
    },
}

#[derive(Subcommand)]
enum TeamCmd {
    /// Create or update a team and its systems from a JSON or YAML file; prints the ids.
    Apply {
        #[arg(long, short)]
        file: PathBuf,
    },
    /// Show a team and its systems' ids (anyone may ask: no --actor).
    Show { name: String },
}

/// What every command takes: the entity it acts on, payload fields, or a payload file.
#[derive(Args, Clone)]
struct SendArgs {
    /// The id the command acts on (procedure, series, task, run or initiative), then payload
    /// fields as FIELD=VALUE (a VALUE that is JSON — number, list, object — is taken as JSON).
    #[arg(value_name = "ID | FIELD=VALUE")]
    args: Vec<String>,
    /// Payload file, JSON or YAML (`-` reads standard input); inline fields override it.
    #[arg(long, short)]
    file: Option<PathBuf>,
    /// Shortcut for reason=REASON.
    #[arg(long)]
    reason: Option<String>,
    /// Command id (default: a new one). Re-sending an id is safe: one effect, same outcome;
    /// use it to retry a command whose outcome did not come in time.
    #[arg(long = "command-id", alias = "id", value_name = "UUID")]
    id: Option<Uuid>,
    /// Send even when no worker answers (the command waits in the commands stream), and
    /// return once it is stored, without waiting for its outcome (`sop outcome <id>`).
    #[arg(long)]
    queue: bool,
}

#[derive(Subcommand)]
enum ProcedureCmd {
    /// Draft a new procedure (System4): `--file onboarding.yaml`.
    Draft(SendArgs),
    /// New draft version from the latest version (System4): `<procedure_id> [FIELD=VALUE…]`.
    Revise(SendArgs),
    /// Change a draft (System4): `<procedure_id> [FIELD=VALUE…]`.
    Edit(SendArgs),
    /// Discard a draft (System4): `<procedure_id> --reason …`.
    Discard(SendArgs),
    /// Approve a draft (System5): `<procedure_id>`.
    Approve(SendArgs),
    /// Send a draft back (System5): `<procedure_id> --reason …`.
    Reject(SendArgs),
    /// Retire the approved version (System5): `<procedure_id> --reason …`.
    Retire(SendArgs),
    /// Execute the series' approved version (System3): `<series_id | any version's procedure_id>
    /// [expected_version=N]`.
    Execute(SendArgs),
    /// A version with its task templates.
    Show { procedure_id: Uuid },
    /// The team's procedures.
    List {
        #[arg(long)]
        status: Option<String>,
        #[arg(long)]
        name: Option<String>,
    },
    /// Every version of a series, with who did what and when.
    History { series_id: Uuid },
    /// What changed between two versions.
    Diff { from: Uuid, to: Uuid },
    /// What executing a version would create, and who would work each task.
    Preview { procedure_id: Uuid },
    /// The task dependency graph.
    Graph {
        procedure_id: Uuid,
        #[arg(long, value_enum, default_value = "mermaid")]
        format: GraphFormat,
    },
}

#[derive(Subcommand)]
enum TaskCmd {
    /// Start a ready task (its assignee): `<task_id>`.
    Start(SendArgs),
    /// Complete a task (its assignee): `<task_id> result=…`.
    Complete(SendArgs),
    /// Block a task (its assignee): `<task_id> --reason …`.
    Block(SendArgs),
    /// Unblock a task (its assignee or System3): `<task_id> [note=…]`.
    Unblock(SendArgs),
    /// Review a completed task (System3): `<task_id> verdict=approve|reject [reasoning=…]`.
    Review(SendArgs),
    /// Cancel a task and its dependents (System3): `<task_id> --reason …`.
    Cancel(SendArgs),
    /// Replace a rejected or blocked task (System3): `<task_id> --reason … [name=…] [content=…]`.
    Replace(SendArgs),
}

#[derive(Subcommand)]
enum RunCmd {
    /// Cancel a run (System3): `<run_id> --reason …`.
    Cancel(SendArgs),
    /// A run with its initiative, tasks and review.
    Show { run_id: Uuid },
}

#[derive(Subcommand)]
enum InitiativeCmd {
    /// Record the post-run review (System3): `<initiative_id> outcome=… summary=… [lessons='[…]']`.
    Review(SendArgs),
    /// From an initiative back to its procedure version and run.
    Trace { initiative_id: Uuid },
}

/// Only the `--team`'s events when it is given (or SOP_TEAM is set).
#[derive(Args)]
struct EventFilter {
    /// Only this event type, e.g. `task.ready`.
    #[arg(long = "type")]
    kind: Option<String>,
    /// Stop after this many events.
    #[arg(long)]
    limit: Option<usize>,
}

#[derive(Subcommand)]
enum EventsCmd {
    /// Print new events as they happen.
    Tail {
        #[command(flatten)]
        filter: EventFilter,
    },
    /// Replay events from the start of the stream, a sequence or a time, to the last one stored.
    Replay {
        #[command(flatten)]
        filter: EventFilter,
        /// Start at this stream sequence.
        #[arg(long, conflicts_with = "since")]
        from_seq: Option<u64>,
        /// Start at this time (RFC 3339).
        #[arg(long)]
        since: Option<chrono::DateTime<chrono::Utc>>,
        /// Keep going after the last stored event, as `tail` does.
        #[arg(long)]
        follow: bool,
    },
}

impl Cli {
    /// Parses the command line, then lays the config file (if any) under it.
    pub fn load() -> Result<Cli, String> {
        use clap::{CommandFactory, FromArgMatches};
        let matches = match with_payload_help(Cli::command()).try_get_matches() {
            Ok(matches) => matches,
            // Help and version: printed, exit 0.
            Err(e) if !e.use_stderr() => e.exit(),
            // A usage error exits 1, as the README says: clap's own 2 means "rejected" here.
            Err(e) => {
                let _ = e.print();
                std::process::exit(1);
            }
        };
        let mut cli = Cli::from_arg_matches(&matches).map_err(|e| e.to_string())?;
        let worker = match &cli.command {
            Cmd::Worker(w) | Cmd::Migrate(w) | Cmd::Config(w) => Some(w.clone()),
            Cmd::Up(args) => Some(args.worker.clone()),
            Cmd::Bench(args) => Some(args.worker.clone()),
            _ => None,
        };
        cli.settings = Settings::resolve(cli.connection.clone(), worker, &matches)
            .map_err(|e| e.to_string())?;
        Ok(cli)
    }

    /// The worker logs its work; one-shot commands log only warnings unless RUST_LOG says more.
    pub fn default_log_filter(&self) -> &'static str {
        match self.command {
            Cmd::Worker(_) | Cmd::Up(_) => "info,sqlx=warn",
            _ => "warn",
        }
    }
}

/// Each command's help ends with the payload fields it takes, from the contract; only when
/// help is asked for (generating the contract takes a moment).
fn with_payload_help(cli: clap::Command) -> clap::Command {
    let asks_help = std::env::args().any(|a| a == "-h" || a == "--help" || a == "help");
    if !asks_help {
        return cli;
    }
    let doc = contract::asyncapi();
    CommandName::ALL.iter().fold(cli, |cli, &name| {
        let Some((family, verb)) = name.as_str().split_once('.') else {
            return cli;
        };
        let fields = contract::payload_fields(&doc, name);
        let lines: Vec<String> = fields
            .iter()
            .map(|(field, kind, required, about)| {
                let need = if *required { "required" } else { "optional" };
                format!("  {field:<22} {kind:<14} {need:<9} {about}")
                    .trim_end()
                    .to_owned()
            })
            .collect();
        let help = format!("Payload fields ({name}):\n{}", lines.join("\n"));
        cli.mut_subcommand(family, |f| f.mut_subcommand(verb, |c| c.after_help(help)))
    })
}

/// A failure with the exit code it maps to.
struct Exit(u8, String);

impl From<anyhow::Error> for Exit {
    fn from(e: anyhow::Error) -> Exit {
        Exit(1, format!("{e:#}"))
    }
}

impl From<ClientError> for Exit {
    fn from(e: ClientError) -> Exit {
        match &e {
            ClientError::Nats(_) | ClientError::Timeout(_) => Exit(EXIT_UNREACHABLE, e.to_string()),
            ClientError::Refused(b) if b.code == "not_found" => Exit(EXIT_NOT_FOUND, e.to_string()),
            ClientError::Refused(_) => Exit(EXIT_REJECTED, e.to_string()),
            ClientError::Decode(_) | ClientError::TooLarge { .. } => Exit(1, e.to_string()),
        }
    }
}

struct Ctx {
    settings: Settings,
    /// As given: an id, or a name within `team`.
    actor: Option<String>,
    team: Option<String>,
    nkey_seed: Option<String>,
    json: bool,
    timeout: Duration,
    /// One connection per invocation.
    client: OnceCell<Client>,
    /// The acting system's id, resolved once.
    actor_id: OnceCell<Uuid>,
    /// The acting team's systems' names, read once.
    names: OnceCell<Names>,
}

impl Ctx {
    async fn client(&self) -> Result<&Client, Exit> {
        self.client
            .get_or_try_init(|| async {
                let nats = app::connect_nats(&self.settings)
                    .await
                    .map_err(|e| Exit(EXIT_UNREACHABLE, format!("{e:#}")))?;
                let client = Client::new(nats, Subjects::new(&self.settings.subject_prefix))
                    .with_timeout(self.timeout);
                match &self.nkey_seed {
                    Some(seed) => client
                        .with_signing_seed(seed)
                        .map_err(|e| Exit(1, format!("SOP_NKEY_SEED: {e}"))),
                    None => Ok(client),
                }
            })
            .await
    }

    /// The acting system's id: `--actor` as an id, or its name resolved within `--team` by
    /// `system.get` (once per invocation).
    async fn actor(&self) -> Result<Uuid, Exit> {
        self.actor_id
            .get_or_try_init(|| async {
                let given = self.actor.as_deref().map(str::trim).ok_or_else(|| {
                    Exit(
                        1,
                        "give the acting system with --actor <system id>, or --team <team> \
                         --actor <name> (or SOP_ACTOR, SOP_TEAM)"
                            .into(),
                    )
                })?;
                if let Ok(id) = Uuid::parse_str(given) {
                    return Ok(id);
                }
                let team = self.team.as_deref().ok_or_else(|| {
                    Exit(
                        1,
                        format!(
                            "--actor `{given}` is a name: give its team with --team <team> \
                             (or SOP_TEAM), or give the system's id"
                        ),
                    )
                })?;
                let found: Value = self
                    .client()
                    .await?
                    .query(
                        QueryName::GetSystem,
                        &json!({ "team": team, "name": given }),
                    )
                    .await?;
                found["id"]
                    .as_str()
                    .and_then(|id| Uuid::parse_str(id).ok())
                    .ok_or_else(|| Exit(1, format!("system.get answered no id: {found}")))
            })
            .await
            .copied()
    }

    /// The names of the acting team's systems (`--team`, else the team of an `--actor` id),
    /// read once; none for `--json` (scripts get ids) or when neither is known. Names are a
    /// courtesy: a failure to read them leaves the ids.
    async fn names(&self) -> &Names {
        self.names
            .get_or_init(|| async {
                if self.json {
                    return Names::default();
                }
                let request = match (&self.team, self.actor.as_deref().map(str::trim)) {
                    (Some(team), _) => json!({ "team": team }),
                    (None, Some(actor)) => match Uuid::parse_str(actor) {
                        Ok(id) => json!({ "system_id": id }),
                        Err(_) => return Names::default(),
                    },
                    (None, None) => return Names::default(),
                };
                match self.client().await {
                    Ok(client) => client
                        .query::<_, Value>(QueryName::GetTeam, &request)
                        .await
                        .map(|team| Names::of_team(&team))
                        .unwrap_or_default(),
                    Err(_) => Names::default(),
                }
            })
            .await
    }

    fn print(&self, value: &Value, human: impl FnOnce(&Value) -> String) -> Result<(), Exit> {
        if self.json {
            println!(
                "{}",
                serde_json::to_string_pretty(value).map_err(|e| Exit(1, e.to_string()))?
            );
        } else {
            println!("{}", human(value));
        }
        Ok(())
    }

    async fn query(&self, name: QueryName, mut request: Value) -> Result<Value, Exit> {
        request["actor"] = json!(self.actor().await?);
        Ok(self
            .client()
            .await?
            .query::<_, Value>(name, &request)
            .await?)
    }

    /// A list query with every page (or the first `at_most` items) joined into one answer.
    async fn query_pages(
        &self,
        name: QueryName,
        mut request: Value,
        items: &str,
        at_most: Option<usize>,
    ) -> Result<Value, Exit> {
        request["actor"] = json!(self.actor().await?);
        Ok(self
            .client()
            .await?
            .query_pages(name, &request, items, at_most)
            .await?)
    }

    async fn send(&self, name: CommandName, args: SendArgs) -> Result<ExitCode, Exit> {
        match self.outcome_of(name, &args).await? {
            Some(outcome) => self.print_outcome(&outcome),
            None => Ok(ExitCode::SUCCESS),
        }
    }

    /// Sends the command and waits for its outcome; `None` when it was only queued.
    async fn outcome_of(
        &self,
        name: CommandName,
        args: &SendArgs,
    ) -> Result<Option<Outcome>, Exit> {
        let payload = payload(name, args)?;
        // A typo is told here, not answered by a rejection and a dead letter.
        crate::bus::decode::check_payload(name, &payload).map_err(|r| {
            let why = r.message.trim_start_matches("payload: ");
            Exit(1, format!("not a {name} payload: {why}"))
        })?;
        let actor = self.actor().await?;
        let client = self.client().await?;
        let id = args.id.unwrap_or_else(Uuid::now_v7);
        if args.queue {
            client.enqueue(id, name, actor, payload).await?;
            let queued = json!({ "command_id": id, "command": name.as_str(), "status": "queued" });
            self.print(&queued, |_| {
                format!("queued {name} as {id}: `sop outcome {id}` shows its outcome once a worker has run it")
            })?;
            return Ok(None);
        }
        if !client.worker_serves().await? {
            let s = &self.settings;
            return Err(Exit(
                EXIT_UNREACHABLE,
                format!(
                    "no worker answers for subject prefix `{}` on {}: is `sop worker` (or `sop up`) \
                     running, with the same SOP_SUBJECT_PREFIX and SOP_NATS_URL? Nothing was sent; \
                     --queue sends anyway, and the command waits for a worker",
                    s.subject_prefix, s.nats_url
                ),
            ));
        }
        match client.send_with_id(id, name, actor, payload).await {
            Err(ClientError::Timeout(id)) => Err(Exit(
                EXIT_UNREACHABLE,
                format!(
                    "no outcome within {} s: {name} is queued as {id} and runs once a worker \
                     takes it; `sop outcome {id}` shows its outcome; to retry, send it again \
                     with --command-id {id} (it never runs twice)",
                    self.timeout.as_secs()
                ),
            )),
            other => Ok(Some(other?)),
        }
    }

    fn print_outcome(&self, outcome: &Outcome) -> Result<ExitCode, Exit> {
        let value = serde_json::to_value(outcome).map_err(|e| Exit(1, e.to_string()))?;
        self.print(&value, render::outcome)?;
        Ok(match outcome.error_code() {
            None => ExitCode::SUCCESS,
            Some("not_found") => ExitCode::from(EXIT_NOT_FOUND),
            Some(_) => ExitCode::from(EXIT_REJECTED),
        })
    }

    /// `procedure execute` by a series id or by any of its versions' ids: a positional id that
    /// `procedure.get` knows is a version and stands for its series. The worker keeps taking
    /// only series ids, so `series_id` means one thing on the wire.
    async fn execute(&self, mut args: SendArgs) -> Result<ExitCode, Exit> {
        let given = args
            .args
            .first()
            .filter(|a| !a.contains('='))
            .and_then(|a| Uuid::parse_str(a.trim()).ok());
        let mut a_version = false;
        if let Some(id) = given {
            match self
                .query(QueryName::GetProcedure, json!({ "procedure_id": id }))
                .await
            {
                Ok(v) => {
                    if let Some(series) = v["procedure"]["series_id"].as_str() {
                        args.args[0] = series.to_owned();
                        a_version = true;
                    }
                }
                Err(Exit(EXIT_NOT_FOUND, _)) => {}
                Err(e) => return Err(e),
            }
        }
        let Some(outcome) = self
            .outcome_of(CommandName::ExecuteProcedure, &args)
            .await?
        else {
            return Ok(ExitCode::SUCCESS);
        };
        // People get what the id should have been; scripts (`--json`) get the outcome.
        if let (Some(id), false, Some("not_found"), false) =
            (given, a_version, outcome.error_code(), self.json)
        {
            return Err(Exit(
                EXIT_NOT_FOUND,
                format!(
                    "{id} is neither a procedure series nor a version of one in your team: \
                     give a series_id or any version's procedure_id (`sop procedure list` \
                     shows both)"
                ),
            ));
        }
        self.print_outcome(&outcome)
    }
}

/// The payload field the positional id fills, per command.
fn id_field(name: CommandName) -> Option<&'static str> {
    use CommandName as N;
    match name {
        N::DraftProcedure => None,
        N::ReviseProcedure
        | N::EditProcedure
        | N::DiscardProcedure
        | N::ApproveProcedure
        | N::RejectProcedure
        | N::RetireProcedure => Some("procedure_id"),
        N::ExecuteProcedure => Some("series_id"),
        N::StartTask
        | N::CompleteTask
        | N::BlockTask
        | N::UnblockTask
        | N::ReviewTask
        | N::CancelTask
        | N::ReplaceTask => Some("task_id"),
        N::CancelRun => Some("run_id"),
        N::ReviewInitiative => Some("initiative_id"),
    }
}

/// Reads a JSON or YAML file (`-`: standard input) into a JSON value.
fn read_document(path: &Path) -> anyhow::Result<Value> {
    let text = if path.as_os_str() == "-" {
        std::io::read_to_string(std::io::stdin())?
    } else {
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?
    };
    match serde_json::from_str(&text) {
        Ok(v) => Ok(v),
        Err(_) => serde_yaml_ng::from_str(&text)
            .with_context(|| format!("{} is neither JSON nor YAML", path.display())),
    }
}

/// File, then positional id, then FIELD=VALUE pairs, then --reason.
fn payload(name: CommandName, args: &SendArgs) -> Result<Value, Exit> {
    let mut payload = match &args.file {
        Some(path) => read_document(path)?,
        None => Value::Object(Map::new()),
    };
    let Some(object) = payload.as_object_mut() else {
        return Err(Exit(1, "the payload file must hold an object".into()));
    };
    for (i, arg) in args.args.iter().enumerate() {
        match arg.split_once('=') {
            Some((key, value)) => {
                let value =
                    serde_json::from_str(value).unwrap_or_else(|_| Value::String(value.to_owned()));
                object.insert(key.to_owned(), value);
            }
            None if i == 0 => {
                let field = id_field(name)
                    .ok_or_else(|| Exit(1, format!("{name} takes no id; give FIELD=VALUE")))?;
                object.insert(field.to_owned(), Value::String(arg.clone()));
            }
            None => return Err(Exit(1, format!("`{arg}` is not FIELD=VALUE"))),
        }
    }
    if let Some(reason) = &args.reason {
        object.insert("reason".into(), Value::String(reason.clone()));
    }
    Ok(payload)
}

fn human_procedure(v: &Value, names: &Names) -> String {
    let p = names.in_object(
        &v["procedure"],
        &[
            "created_by_system_id",
            "approved_by_system_id",
            "retired_by_system_id",
        ],
    );
    // A template without a type is worked by a System1, as `procedure preview` says.
    let tasks = Value::Array(
        v["tasks"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|t| {
                let mut t = t.clone();
                if t["default_assignee_type"].is_null() {
                    t["default_assignee_type"] = json!("system1");
                }
                t
            })
            .collect(),
    );
    let head = render::fields(
        &p,
        &[
            "procedure_id",
            "series_id",
            "version",
            "status",
            "name",
            "description",
            "risk_level",
            "impact",
            "rollback_plan",
            "created_by_system_id",
            "approved_by_system_id",
            "approved_at",
            "retired_reason",
            "rejected_reason",
        ],
    );
    let tasks = render::table(
        &["position", "name", "depends_on", "assignee_type", "skills"],
        &render::rows(
            &tasks,
            &[
                "position",
                "name",
                "depends_on",
                "default_assignee_type",
                "required_skills",
            ],
        ),
    );
    format!("{head}\n\n{tasks}")
}

fn human_diff(v: &Value) -> String {
    let mut out = vec![format!(
        "{} v{} → v{}",
        render::cell(&v["to"]["name"]),
        render::cell(&v["from"]["version"]),
        render::cell(&v["to"]["version"])
    )];
    for f in v["fields"].as_array().into_iter().flatten() {
        out.push(format!(
            "~ {}: {} → {}",
            render::cell(&f["field"]),
            render::cell(&f["from"]),
            render::cell(&f["to"])
        ));
    }
    for t in v["tasks_added"].as_array().into_iter().flatten() {
        out.push(format!(
            "+ task {}: {}",
            render::cell(&t["position"]),
            render::cell(&t["name"])
        ));
    }
    for t in v["tasks_removed"].as_array().into_iter().flatten() {
        out.push(format!(
            "- task {}: {}",
            render::cell(&t["position"]),
            render::cell(&t["name"])
        ));
    }
    for t in v["tasks_changed"].as_array().into_iter().flatten() {
        for c in t["changes"].as_array().into_iter().flatten() {
            out.push(format!(
                "~ task {} {}: {} → {}",
                render::cell(&t["position"]),
                render::cell(&c["field"]),
                render::cell(&c["from"]),
                render::cell(&c["to"])
            ));
        }
    }
    if out.len() == 1 {
        out.push("(no changes)".into());
    }
    out.join("\n")
}

fn human_run(v: &Value, names: &Names) -> String {
    let run = render::fields(
        &names.in_object(&v["run"], &["started_by_system_id"]),
        &[
            "run_id",
            "status",
            "procedure_id",
            "procedure_version",
            "initiative_id",
            "started_by_system_id",
            "started_at",
            "completed_at",
            "reason",
        ],
    );
    let tasks = render::table(
        &["position", "task_id", "name", "status", "ready", "assignee"],
        &render::rows(
            &names.in_rows(&v["tasks"], &["assignee_system_id"]),
            &[
                "position",
                "task_id",
                "name",
                "status",
                "ready",
                "assignee_system_id",
            ],
        ),
    );
    let review = match &v["review"] {
        Value::Null => "no post-run review yet".to_owned(),
        r => format!(
            "review: {} — {}",
            render::cell(&r["outcome"]),
            render::cell(&r["summary"])
        ),
    };
    format!("{run}\n\n{tasks}\n\n{review}")
}

/// Prints events: a replay ends with the last event stored when it began, unless `follow`.
async fn events(
    ctx: &Ctx,
    filter: EventFilter,
    start: EventStart,
    follow: bool,
) -> Result<(), Exit> {
    if let Some(kind) = &filter.kind
        && !EventKind::ALL.iter().any(|k| k.as_str() == kind)
    {
        let known: Vec<&str> = EventKind::ALL.iter().map(|k| k.as_str()).collect();
        return Err(Exit(
            1,
            format!("no event type `{kind}`; the types are {}", known.join(", ")),
        ));
    }
    let client = ctx.client().await?;
    if let Some(team) = &ctx.team {
        // A misspelt team would otherwise match nothing, silently.
        match client
            .query::<_, Value>(QueryName::GetTeam, &json!({ "team": team }))
            .await
        {
            Err(ClientError::Refused(e)) if e.code == "not_found" => {
                return Err(Exit(
                    EXIT_NOT_FOUND,
                    format!("no team `{team}`: {}", e.message),
                ));
            }
            Err(e) => return Err(e.into()),
            Ok(_) => {}
        }
    }
    let subject = client
        .subjects()
        .event_filter(filter.kind.as_deref(), ctx.team.as_deref());
    if follow {
        eprintln!(
            "following {subject} on {} (Ctrl-C stops)",
            ctx.settings.nats_url
        );
    }
    // Each team's names, read the first time one of its events shows (people only).
    let mut names: std::collections::HashMap<String, Names> = Default::default();
    let stream = match follow {
        true => client.events(&subject, start).await?.boxed(),
        false => client.history(&subject, start).await?.boxed(),
    };
    let mut stream = std::pin::pin!(stream);
    let mut seen = 0;
    while let Some(event) = stream.next().await {
        let event = event?;
        if ctx.json {
            println!(
                "{}",
                serde_json::to_string(&event).map_err(|e| Exit(1, e.to_string()))?
            );
        } else {
            let d = &event.data;
            let what = ["task_id", "run_id", "review_id"]
                .iter()
                .find_map(|k| d[*k].as_str().map(|v| format!("{k}={v}")))
                .or_else(|| {
                    d["procedure"]["procedure_id"]
                        .as_str()
                        .map(|v| format!("procedure_id={v}"))
                })
                .unwrap_or_default();
            let status = d["status"]
                .as_str()
                .or(d["procedure"]["status"].as_str())
                .unwrap_or("");
            if !names.contains_key(&event.team) {
                let team = client
                    .query::<_, Value>(QueryName::GetTeam, &json!({ "team": event.team }))
                    .await
                    .map(|t| Names::of_team(&t))
                    .unwrap_or_default();
                names.insert(event.team.clone(), team);
            }
            let team = &names[&event.team];
            let by = render::cell(&team.name(&json!(event.actor)));
            let assignee = match &d["assignee_system_id"] {
                Value::Null => String::new(),
                id => format!(" → {}", render::cell(&team.name(id))),
            };
            println!(
                "{}  {:<22} {:<14} {what} {status} by {by}{assignee}",
                event.occurred_at.format("%H:%M:%S%.3f"),
                event.kind,
                event.team
            );
        }
        seen += 1;
        if filter.limit.is_some_and(|l| seen >= l) {
            break;
        }
    }
    Ok(())
}

async fn dispatch(cli: Cli) -> Result<ExitCode, Exit> {
    let ctx = Ctx {
        settings: cli.settings,
        actor: cli.actor,
        team: cli.team,
        nkey_seed: cli.nkey_seed,
        json: cli.json,
        timeout: Duration::from_secs(cli.timeout),
        client: OnceCell::new(),
        actor_id: OnceCell::new(),
        names: OnceCell::new(),
    };
    use CommandName as N;
    match cli.command {
        Cmd::Worker(_) => {
            let running = app::start(&ctx.settings).await?;
            app::wait_for_signal().await;
            tracing::info!("shutting down");
            running.stop().await;
        }
        Cmd::Up(args) => return up::run(&ctx.settings, args).await,
        Cmd::Migrate(_) => {
            let db = app::connect_db(&ctx.settings).await?;
            store::migrate(&db).await.context("running migrations")?;
            println!("migrations applied");
        }
        Cmd::Team { command } => {
            let client = ctx.client().await?;
            let value: Value = match command {
                TeamCmd::Apply { file } => {
                    // Parsed here too, so a malformed file is told before anything is sent.
                    let spec: TeamSpec =
                        serde_json::from_value(read_document(&file)?).context("not a team file")?;
                    client.admin(AdminName::ApplyTeam, &spec).await?
                }
                TeamCmd::Show { name } => {
                    client
                        .query(QueryName::GetTeam, &json!({ "team": name }))
                        .await?
                }
            };
            ctx.print(&value, |v| {
                format!(
                    "team {} ({})\n\n{}",
                    render::cell(&v["name"]),
                    render::cell(&v["id"]),
                    render::table(
                        &["id", "name", "type", "skills", "has_key"],
                        &render::rows(&v["systems"], &["id", "name", "type", "skills", "has_key"])
                    )
                )
            })?;
        }
        Cmd::Procedure { command } => match command {
            ProcedureCmd::Draft(a) => return ctx.send(N::DraftProcedure, a).await,
            ProcedureCmd::Revise(a) => return ctx.send(N::ReviseProcedure, a).await,
            ProcedureCmd::Edit(a) => return ctx.send(N::EditProcedure, a).await,
            ProcedureCmd::Discard(a) => return ctx.send(N::DiscardProcedure, a).await,
            ProcedureCmd::Approve(a) => return ctx.send(N::ApproveProcedure, a).await,
            ProcedureCmd::Reject(a) => return ctx.send(N::RejectProcedure, a).await,
            ProcedureCmd::Retire(a) => return ctx.send(N::RetireProcedure, a).await,
            ProcedureCmd::Execute(a) => return ctx.execute(a).await,
            ProcedureCmd::Show { procedure_id } => {
                let v = ctx
                    .query(
                        QueryName::GetProcedure,
                        json!({ "procedure_id": procedure_id }),
                    )
                    .await?;
                let names = ctx.names().await;
                ctx.print(&v, |v| human_procedure(v, names))?;
            }
            ProcedureCmd::List { status, name } => {
                let v = ctx
                    .query_pages(
                        QueryName::ListProcedures,
                        json!({ "status": status, "name": name }),
                        "procedures",
                        None,
                    )
                    .await?;
                ctx.print(&v, |v| {
                    render::table(
                        &[
                            "procedure_id",
                            "series_id",
                            "version",
                            "status",
                            "risk",
                            "impact",
                            "name",
                        ],
                        &render::rows(
                            &v["procedures"],
                            &[
                                "procedure_id",
                                "series_id",
                                "version",
                                "status",
                                "risk_level",
                                "impact",
                                "name",
                            ],
                        ),
                    )
                })?;
            }
            ProcedureCmd::History { series_id } => {
                let v = ctx
                    .query_pages(
                        QueryName::History,
                        json!({ "series_id": series_id }),
                        "versions",
                        None,
                    )
                    .await?;
                let names = ctx.names().await;
                ctx.print(&v, |v| {
                    let versions = names.in_rows(
                        &v["versions"],
                        &["created_by_system_id", "approved_by_system_id"],
                    );
                    render::table(
                        &[
                            "version",
                            "status",
                            "procedure_id",
                            "drafted_by",
                            "approved_by",
                            "approved_at",
                            "retired_at",
                            "retired_reason",
                        ],
                        &render::rows(
                            &versions,
                            &[
                                "version",
                                "status",
                                "procedure_id",
                                "created_by_system_id",
                                "approved_by_system_id",
                                "approved_at",
                                "retired_at",
                                "retired_reason",
                            ],
                        ),
                    )
                })?;
            }
            ProcedureCmd::Diff { from, to } => {
                let v = ctx
                    .query(QueryName::Diff, json!({ "from": from, "to": to }))
                    .await?;
                ctx.print(&v, human_diff)?;
            }
            ProcedureCmd::Preview { procedure_id } => {
                let v = ctx
                    .query(QueryName::Preview, json!({ "procedure_id": procedure_id }))
                    .await?;
                ctx.print(&v, |v| {
                    let head = render::fields(v, &["initiative_name", "executable", "blocked_by"]);
                    let tasks = render::table(
                        &[
                            "position",
                            "name",
                            "depends_on",
                            "ready_at_start",
                            "assignee_type",
                            "assignee",
                        ],
                        &render::rows(
                            &v["tasks"],
                            &[
                                "position",
                                "name",
                                "depends_on",
                                "ready_at_start",
                                "assignee_type",
                                "assignee_name",
                            ],
                        ),
                    );
                    format!("{head}\n\n{tasks}")
                })?;
            }
            ProcedureCmd::Graph {
                procedure_id,
                format,
            } => {
                let v = ctx
                    .query(
                        QueryName::GetProcedure,
                        json!({ "procedure_id": procedure_id }),
                    )
                    .await?;
                println!("{}", render::graph(&v["procedure"], &v["tasks"], format));
            }
        },
        Cmd::Task { command } => {
            let (name, args) = match command {
                TaskCmd::Start(a) => (N::StartTask, a),
                TaskCmd::Complete(a) => (N::CompleteTask, a),
                TaskCmd::Block(a) => (N::BlockTask, a),
                TaskCmd::Unblock(a) => (N::UnblockTask, a),
                TaskCmd::Review(a) => (N::ReviewTask, a),
                TaskCmd::Cancel(a) => (N::CancelTask, a),
                TaskCmd::Replace(a) => (N::ReplaceTask, a),
            };
            return ctx.send(name, args).await;
        }
        Cmd::Run { command } => match command {
            RunCmd::Cancel(a) => return ctx.send(N::CancelRun, a).await,
            RunCmd::Show { run_id } => {
                let v = ctx
                    .query_pages(
                        QueryName::GetRun,
                        json!({ "run_id": run_id }),
                        "tasks",
                        None,
                    )
                    .await?;
                let names = ctx.names().await;
                ctx.print(&v, |v| human_run(v, names))?;
            }
        },
        Cmd::Initiative { command } => match command {
            InitiativeCmd::Review(a) => return ctx.send(N::ReviewInitiative, a).await,
            InitiativeCmd::Trace { initiative_id } => {
                let v = ctx
                    .query(QueryName::Trace, json!({ "initiative_id": initiative_id }))
                    .await?;
                ctx.print(&v, |v| {
                    format!(
                        "initiative {} ← run {} ({}) ← {} v{} ({})\nreview: {}",
                        render::cell(&v["initiative_id"]),
                        render::cell(&v["run"]["run_id"]),
                        render::cell(&v["run"]["status"]),
                        render::cell(&v["procedure"]["name"]),
                        render::cell(&v["procedure"]["version"]),
                        render::cell(&v["procedure"]["procedure_id"]),
                        render::cell(&v["review_id"]),
                    )
                })?;
            }
        },
        Cmd::Audit { series, run, limit } => {
            // `limit` bounds what is shown; pages never ask for more than that either.
            let page = limit.min(AUDIT_PAGE.max);
            let v = ctx
                .query_pages(
                    QueryName::Audit,
                    json!({ "series_id": series, "run_id": run, "limit": page }),
                    "entries",
                    Some(usize::try_from(limit).unwrap_or(usize::MAX)),
                )
                .await?;
            let names = ctx.names().await;
            ctx.print(&v, |v| {
                render::table(
                    &["seq", "occurred_at", "type", "actor", "causation"],
                    &render::rows(
                        &names.in_rows(&v["entries"], &["actor"]),
                        &["seq", "occurred_at", "type", "actor", "causation_id"],
                    ),
                )
            })?;
        }
        Cmd::Outcome { command_id } => {
            let outcome = ctx
                .client()
                .await?
                .outcome(command_id)
                .await?
                .ok_or_else(|| {
                    Exit(EXIT_NOT_FOUND, format!("no outcome for {command_id} (yet)"))
                })?;
            let value = serde_json::to_value(&outcome).map_err(|e| Exit(1, e.to_string()))?;
            ctx.print(&value, render::outcome)?;
        }
        Cmd::DeadLetters { limit } => {
            let answer: Value = ctx
                .client()
                .await?
                .admin(AdminName::DeadLetters, &json!({ "limit": limit }))
                .await?;
            if answer["truncated"] == json!(true) {
                eprintln!(
                    "(older dead letters left out: the answer would exceed the server's limit)"
                );
            }
            ctx.print(&answer["dead_letters"], |v| {
                render::table(
                    &["received_at", "reason", "subject", "command_id", "message"],
                    &render::rows(
                        v,
                        &["received_at", "reason", "subject", "command_id", "message"],
                    ),
                )
            })?;
        }
        Cmd::Outbox { command } => {
            let client = ctx.client().await?;
            let answer: Value = match command {
                OutboxCmd::Parked => client.admin(AdminName::ParkedOutbox, &json!({})).await?,
                OutboxCmd::Republish { seqs, all } => {
                    match client
                        .admin(AdminName::RepublishOutbox, &RepublishRequest { seqs, all })
                        .await
                    {
                        Ok(moved) => moved,
                        Err(ClientError::Refused(e)) if e.code == "not_found" => {
                            return Err(Exit(
                                EXIT_NOT_FOUND,
                                format!(
                                    "{}; `sop outbox parked` lists the parked messages",
                                    e.message
                                ),
                            ));
                        }
                        Err(e) => return Err(e.into()),
                    }
                }
            };
            ctx.print(&answer["parked"], |v| {
                let fields = ["seq", "parked_at", "kind", "bytes", "subject", "reason"];
                render::table(&fields, &render::rows(v, &fields))
            })?;
        }
        Cmd::Send { command, args } => {
            let name = CommandName::parse(&command).ok_or_else(|| {
                let known: Vec<&str> = CommandName::ALL.iter().map(|c| c.as_str()).collect();
                Exit(
                    1,
                    format!("unknown command `{command}`; one of: {}", known.join(", ")),
                )
            })?;
            return ctx.send(name, args).await;
        }
        Cmd::Events { command } => match command {
            EventsCmd::Tail { filter } => events(&ctx, filter, EventStart::New, true).await?,
            EventsCmd::Replay {
                filter,
                from_seq,
                since,
                follow,
            } => {
                let start = match (from_seq, since) {
                    (Some(seq), _) => EventStart::Sequence(seq),
                    (None, Some(t)) => EventStart::Time(t),
                    (None, None) => EventStart::First,
                };
                events(&ctx, filter, start, follow).await?
            }
        },
        Cmd::Contract => print!("{}", contract::asyncapi_yaml()),
        Cmd::NkeyGenerate => {
            let pair = nkeys::KeyPair::new_user();
            let seed = pair.seed().map_err(|e| Exit(1, e.to_string()))?;
            let value = json!({ "public_key": pair.public_key(), "seed": seed });
            ctx.print(&value, |v| render::fields(v, &["public_key", "seed"]))?;
        }
        Cmd::Bench(args) => crate::bench::run(&ctx.settings, &args).await?,
        Cmd::Config(_) => {
            let problem = ctx.settings.validate().err();
            let value = ctx.settings.redacted();
            ctx.print(&value, |v| {
                let keys: Vec<&str> = v
                    .as_object()
                    .map(|m| m.keys().map(String::as_str).collect())
                    .unwrap_or_default();
                render::fields(v, &keys)
            })?;
            if let Some(problem) = problem {
                return Err(Exit(1, problem.to_string()));
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Runs the parsed command line and maps failures to exit codes.
pub async fn run(cli: Cli) -> ExitCode {
    let json = cli.json;
    match dispatch(cli).await {
        Ok(code) => code,
        // A script that asked for JSON gets its errors as JSON too, on stderr.
        Err(Exit(code, message)) if json => {
            let error = json!({ "error": { "exit_code": code, "message": message } });
            eprintln!("{error}");
            ExitCode::from(code)
        }
        Err(Exit(code, message)) => {
            eprintln!("error: {message}");
            ExitCode::from(code)
        }
    }
}
