//! `sop archive`: retention. `create` writes history older than a horizon to a file and
//! removes it from the database; `replay` publishes an archive's messages again, into streams
//! rebuilt from scratch. Both work on the database or the bus directly, as operators.

use std::io::{BufRead, BufWriter};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use async_nats::jetstream::message::PublishMessage;
use chrono::{DateTime, Utc};
use clap::Subcommand;

use super::ctx::{Ctx, Exit};
use crate::config::WorkerSettings;
use crate::store;
use crate::wire::archive::{ArchivedMessage, Head, Kind};

#[derive(Subcommand)]
pub enum ArchiveCmd {
    /// Writes the event log's records and the dead letters older than `--before` to a file
    /// (JSON Lines), then removes them from the database. Messages not yet published stay.
    Create {
        /// The horizon, RFC 3339: what is older is archived.
        #[arg(long)]
        before: DateTime<Utc>,
        /// The archive file to write (created; an existing file is refused).
        #[arg(long)]
        to: PathBuf,
        #[command(flatten)]
        worker: WorkerSettings,
    },
    /// Publishes an archive's events (and outcomes, with `--outcomes`) again, in order, under
    /// their own message ids, creating missing streams first. Replay archives oldest first,
    /// then `sop outbox relist --events` for what the database still holds.
    Replay {
        /// The archive file.
        #[arg(long)]
        from: PathBuf,
        /// Outcomes too (to `SOP_OUTCOMES`).
        #[arg(long)]
        outcomes: bool,
        #[command(flatten)]
        worker: WorkerSettings,
    },
}

impl ArchiveCmd {
    pub fn worker(&self) -> &WorkerSettings {
        match self {
            ArchiveCmd::Create { worker, .. } | ArchiveCmd::Replay { worker, .. } => worker,
        }
    }
}

pub async fn run(ctx: &Ctx, command: ArchiveCmd) -> Result<ExitCode, Exit> {
    match command {
        ArchiveCmd::Create { before, to, .. } => create(ctx, before, to).await,
        ArchiveCmd::Replay { from, outcomes, .. } => replay(ctx, from, outcomes).await,
    }
}

async fn create(ctx: &Ctx, before: DateTime<Utc>, to: PathBuf) -> Result<ExitCode, Exit> {
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&to)
        .with_context(|| format!("creating {}", to.display()))?;
    let db = crate::app::connect_db(&ctx.settings).await?;
    let mut out = BufWriter::new(file);
    let counts = store::archive::archive(&db, before, &mut out)
        .await
        .map_err(anyhow::Error::from)?;
    ctx.print(&counts, |c| {
        format!(
            "archived to {}: {} messages ({} records), {} dead letters; {} records kept until published, {} behind a kept one in their team's chain",
            to.display(),
            c.messages,
            c.records,
            c.dead_letters,
            c.kept_unpublished,
            c.kept_in_chain
        )
    })?;
    Ok(ExitCode::SUCCESS)
}

/// Publishes awaited this many at a time: the order is kept, and a failure stops the replay
/// at the first message not acknowledged.
const WINDOW: usize = 256;

async fn replay(ctx: &Ctx, from: PathBuf, outcomes: bool) -> Result<ExitCode, Exit> {
    let file = std::fs::File::open(&from).with_context(|| format!("opening {}", from.display()))?;
    let nats = crate::app::connect_nats(&ctx.settings).await?;
    let js = async_nats::jetstream::new(nats);
    crate::app::ensure_streams(&ctx.settings, &js).await?;
    let subjects = crate::wire::subjects::Subjects::new(&ctx.settings.connection.subject_prefix);
    let team_streams = crate::bus::streams::TeamStreams::new(
        js.clone(),
        subjects.clone(),
        crate::app::stream_options(&ctx.settings),
    );
    let mut teams = std::collections::BTreeSet::new();
    let mut published = 0_u64;
    let mut acks = Vec::with_capacity(WINDOW);
    for (n, line) in std::io::BufReader::new(file).lines().enumerate() {
        let line = line.with_context(|| format!("reading {}", from.display()))?;
        let not_a_line = || format!("{} line {}: not an archive line", from.display(), n + 1);
        let head: Head = serde_json::from_str(&line).with_context(not_a_line)?;
        if head.archived == Kind::DeadLetter {
            continue; // kept in the archive, not on the bus
        }
        let ArchivedMessage {
            kind,
            subject,
            message_id,
            headers,
            message,
            ..
        } = serde_json::from_str(&line).with_context(not_a_line)?;
        if !(kind.starts_with("event.") || outcomes && kind == store::outbox::OUTCOME_KIND) {
            continue;
        }
        if let Some(team) = subjects.team_of_event(&subject)
            && teams.insert(team.to_owned())
        {
            team_streams
                .ensure(team)
                .await
                .map_err(|e| anyhow::anyhow!("creating the events stream of team {team}: {e}"))?;
        }
        let payload: Box<str> = message.into();
        let mut publish = PublishMessage::build()
            .payload(bytes::Bytes::from(String::from(payload)))
            .message_id(message_id.to_string());
        for (name, value) in headers.iter().filter_map(|h| h.as_object()).flatten() {
            if let Some(value) = value.as_str() {
                publish = publish.header(name.as_str(), value);
            }
        }
        acks.push(
            js.send_publish(subject, publish)
                .await
                .map_err(|e| anyhow::anyhow!("publishing line {}: {e}", n + 1))?,
        );
        if acks.len() == WINDOW {
            published += awaited(&mut acks).await?;
        }
    }
    published += awaited(&mut acks).await?;
    ctx.print(&serde_json::json!({ "published": published }), |_| {
        format!("{published} messages published from {}", from.display())
    })?;
    Ok(ExitCode::SUCCESS)
}

async fn awaited(
    acks: &mut Vec<async_nats::jetstream::context::PublishAckFuture>,
) -> Result<u64, Exit> {
    let n = acks.len() as u64;
    for ack in acks.drain(..) {
        ack.await
            .map_err(|e| anyhow::anyhow!("a replayed message not acknowledged: {e}"))?;
    }
    Ok(n)
}
