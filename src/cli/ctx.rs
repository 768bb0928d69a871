//! What every subcommand shares: one connection, the acting system, systems' names, output as
//! tables or JSON, and sending a command through to its outcome.

use std::process::ExitCode;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use tokio::sync::OnceCell;
use uuid::Uuid;

use super::render::{self, Names};
use super::send::{SendArgs, payload};
use crate::app;
use crate::bus::client::{Client, ClientError};
use crate::config::Settings;
use crate::wire::answer::{Paged, SystemIdentity, TeamIdentity};
use crate::wire::command::CommandName;
use crate::wire::outcome::Outcome;
use crate::wire::query::QueryName;
use crate::wire::subjects::Subjects;

pub const EXIT_REJECTED: u8 = 2;
pub const EXIT_UNREACHABLE: u8 = 3;
pub const EXIT_NOT_FOUND: u8 = 4;

/// A failure with the exit code it maps to.
pub struct Exit(pub u8, pub String);

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

pub struct Ctx {
    pub settings: Settings,
    /// As given: an id, or a name within `team`.
    pub actor: Option<String>,
    pub team: Option<String>,
    pub nkey_seed: Option<String>,
    pub json: bool,
    pub timeout: Duration,
    /// One connection per invocation.
    pub client: OnceCell<Client>,
    /// The acting system's id, resolved once.
    pub actor_id: OnceCell<Uuid>,
    /// The acting team's systems' names, read once.
    pub names: OnceCell<Names>,
}

impl Ctx {
    pub async fn client(&self) -> Result<&Client, Exit> {
        self.client
            .get_or_try_init(|| async {
                let nats = app::connect_nats(&self.settings)
                    .await
                    .map_err(|e| Exit(EXIT_UNREACHABLE, format!("{e:#}")))?;
                self.client_on(nats)
            })
            .await
    }

    /// A client whose connection keeps trying in the background while NATS is down, for a
    /// server that must answer its host from the start (`sop mcp`).
    pub async fn client_in_background(&self) -> Result<Client, Exit> {
        let nats = app::connect_nats_in_background(&self.settings)
            .await
            .map_err(|e| Exit(EXIT_UNREACHABLE, format!("{e:#}")))?;
        self.client_on(nats)
    }

    fn client_on(&self, nats: async_nats::Client) -> Result<Client, Exit> {
        let client = Client::new(
            nats,
            Subjects::new(&self.settings.connection.subject_prefix),
        )
        .with_timeout(self.timeout);
        match &self.nkey_seed {
            Some(seed) => client
                .with_signing_seed(seed)
                .map_err(|e| Exit(1, format!("SOP_NKEY_SEED: {e}"))),
            None => Ok(client),
        }
    }

    /// The acting system's id: `--actor` as an id, or its name resolved within `--team` by
    /// `system.get` (once per invocation).
    pub async fn actor(&self) -> Result<Uuid, Exit> {
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
                let found: SystemIdentity = self
                    .client()
                    .await?
                    .query(
                        QueryName::GetSystem,
                        &json!({ "team": team, "name": given }),
                    )
                    .await?;
                Ok(found.id)
            })
            .await
            .copied()
    }

    /// A team by name (`team.get`): anyone may ask.
    pub async fn team(&self, name: &str) -> Result<TeamIdentity, Exit> {
        Ok(self
            .client()
            .await?
            .query(QueryName::GetTeam, &json!({ "team": name }))
            .await?)
    }

    /// The names of the acting team's systems (`--team`, else the team of an `--actor` id),
    /// read once; none for `--json` (scripts get ids) or when neither is known. Names are a
    /// courtesy: a failure to read them leaves the ids.
    pub async fn names(&self) -> &Names {
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
                        .query::<_, TeamIdentity>(QueryName::GetTeam, &request)
                        .await
                        .map(|team| Names::of_team(&team))
                        .unwrap_or_default(),
                    Err(_) => Names::default(),
                }
            })
            .await
    }

    /// `value` as JSON (`--json`) or as `human` renders it: one typed value for both.
    pub fn print<T: Serialize>(
        &self,
        value: &T,
        human: impl FnOnce(&T) -> String,
    ) -> Result<(), Exit> {
        if self.json {
            let text = serde_json::to_string_pretty(value).map_err(|e| Exit(1, e.to_string()))?;
            println!("{text}");
        } else {
            println!("{}", human(value));
        }
        Ok(())
    }

    /// A query as the acting system.
    pub async fn query<A: DeserializeOwned>(
        &self,
        name: QueryName,
        mut request: Value,
    ) -> Result<A, Exit> {
        request["actor"] = json!(self.actor().await?);
        Ok(self.client().await?.query(name, &request).await?)
    }

    /// A list query with every page (or the first `at_most` items) joined into one answer.
    pub async fn query_pages<A: Paged>(
        &self,
        name: QueryName,
        mut request: Value,
        at_most: Option<usize>,
    ) -> Result<A, Exit> {
        request["actor"] = json!(self.actor().await?);
        Ok(self
            .client()
            .await?
            .query_pages(name, &request, at_most)
            .await?)
    }

    pub async fn send(&self, name: CommandName, args: SendArgs) -> Result<ExitCode, Exit> {
        match self.outcome_of(name, &args).await? {
            Some(outcome) => self.print_outcome(&outcome),
            None => Ok(ExitCode::SUCCESS),
        }
    }

    /// Sends the command and waits for its outcome; `None` when it was only queued.
    pub async fn outcome_of(
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
                    s.connection.subject_prefix, s.connection.nats_url
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

    pub fn print_outcome(&self, outcome: &Outcome) -> Result<ExitCode, Exit> {
        self.print(outcome, render::outcome)?;
        Ok(match outcome.error_code() {
            None => ExitCode::SUCCESS,
            Some("not_found") => ExitCode::from(EXIT_NOT_FOUND),
            Some(_) => ExitCode::from(EXIT_REJECTED),
        })
    }
}
