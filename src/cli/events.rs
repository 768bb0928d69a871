//! `sop events`: follow new events, or replay the stored ones, one line each (or JSON lines).

use std::collections::HashMap;
use std::process::ExitCode;

use clap::{Args, Subcommand};
use futures::StreamExt;
use serde::Deserialize;
use uuid::Uuid;

use super::ctx::{Ctx, EXIT_NOT_FOUND, Exit};
use super::render::Names;
use crate::bus::client::EventStart;
use crate::domain::event::EventKind;
use crate::wire::event::EventEnvelope;

/// Only the `--team`'s events when it is given (or SOP_TEAM is set).
#[derive(Args)]
pub struct EventFilter {
    /// Only this event type, e.g. `task.ready`.
    #[arg(long = "type")]
    kind: Option<String>,
    /// Stop after this many events.
    #[arg(long)]
    limit: Option<usize>,
}

#[derive(Subcommand)]
pub enum EventsCmd {
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

/// What a line shows of any event's data: the entity, its status and its assignee.
#[derive(Debug, Default, Deserialize)]
struct Line {
    task_id: Option<Uuid>,
    run_id: Option<Uuid>,
    review_id: Option<Uuid>,
    status: Option<String>,
    procedure: Option<ProcedureLine>,
    assignee_system_id: Option<Uuid>,
}

#[derive(Debug, Deserialize)]
struct ProcedureLine {
    procedure_id: Uuid,
    status: String,
}

pub async fn run(ctx: &Ctx, command: EventsCmd) -> Result<ExitCode, Exit> {
    match command {
        EventsCmd::Tail { filter } => print(ctx, filter, EventStart::New, true).await?,
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
            print(ctx, filter, start, follow).await?
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Prints events: a replay ends with the last event stored when it began, unless `follow`.
async fn print(
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
        match ctx.team(team).await {
            Err(Exit(EXIT_NOT_FOUND, message)) => {
                return Err(Exit(EXIT_NOT_FOUND, format!("no team `{team}`: {message}")));
            }
            Err(e) => return Err(e),
            Ok(_) => {}
        }
    }
    let subject = client
        .subjects()
        .event_filter(filter.kind.as_deref(), ctx.team.as_deref());
    if follow {
        eprintln!(
            "following {subject} on {} (Ctrl-C stops)",
            ctx.settings.connection.nats_url
        );
    }
    // Each team's names, read the first time one of its events shows (people only).
    let mut names: HashMap<String, Names> = HashMap::new();
    let stream = match follow {
        true => client.events(&subject, start).await?.boxed(),
        false => client.history(&subject, start).await?.boxed(),
    };
    let mut stream = std::pin::pin!(stream);
    let mut seen = 0;
    while let Some(event) = stream.next().await {
        let event = event?;
        if ctx.json {
            let line = serde_json::to_string(&event).map_err(|e| Exit(1, e.to_string()))?;
            println!("{line}");
        } else {
            if !names.contains_key(&event.team) {
                let team = ctx
                    .team(&event.team)
                    .await
                    .map(|t| Names::of_team(&t))
                    .unwrap_or_default();
                names.insert(event.team.clone(), team);
            }
            println!("{}", line(&event, &names[&event.team]));
        }
        seen += 1;
        if filter.limit.is_some_and(|l| seen >= l) {
            break;
        }
    }
    Ok(())
}

fn line(event: &EventEnvelope<serde_json::Value>, names: &Names) -> String {
    let d = Line::deserialize(&event.data).unwrap_or_default();
    let what = [
        ("task_id", d.task_id),
        ("run_id", d.run_id),
        ("review_id", d.review_id),
        ("procedure_id", d.procedure.as_ref().map(|p| p.procedure_id)),
    ]
    .into_iter()
    .find_map(|(k, id)| id.map(|id| format!("{k}={id}")))
    .unwrap_or_default();
    let status = d
        .status
        .as_deref()
        .or(d.procedure.as_ref().map(|p| p.status.as_str()))
        .unwrap_or("");
    let assignee = d
        .assignee_system_id
        .map(|id| format!(" → {}", names.of(&id)))
        .unwrap_or_default();
    format!(
        "{}  {:<22} {:<14} {what} {status} by {}{assignee}",
        event.occurred_at.format("%H:%M:%S%.3f"),
        event.kind,
        event.team,
        names.of(&event.actor)
    )
}
