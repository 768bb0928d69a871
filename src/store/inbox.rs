//! The command inbox: one row per processed command id (its outcome is the command's outcome
//! message in the outbox). Inserting it in the same transaction as the command's effects is
//! what makes effects exactly-once on an at-least-once bus.

use std::collections::HashMap;

use entity::command_inbox;
use entity::enums::CommandStatus;
use sea_orm::{ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, Set};
use uuid::Uuid;

use crate::domain::error::ErrorCode;
use crate::wire::outcome::{ErrorBody, Outcome, Verdict};

/// The outcome and the system that sent the command (when it was known).
pub async fn find_with_actor(
    db: &impl ConnectionTrait,
    command_id: Uuid,
) -> Result<Option<(Outcome, Option<Uuid>)>, DbErr> {
    let Some(row) = command_inbox::Entity::find_by_id(command_id)
        .one(db)
        .await?
    else {
        return Ok(None);
    };
    let outcome = outcomes(db, &[command_id])
        .await?
        .remove(&command_id)
        .unwrap_or_else(|| archived(&row));
    Ok(Some((outcome, row.actor_system_id)))
}

/// The stored outcomes of those of `ids` that have one.
pub async fn find_many(
    db: &impl ConnectionTrait,
    ids: &[Uuid],
) -> Result<HashMap<Uuid, Outcome>, DbErr> {
    if ids.is_empty() {
        return Ok(HashMap::new());
    }
    let seen = command_inbox::Entity::find()
        .filter(command_inbox::Column::CommandId.is_in(ids.iter().copied()))
        .all(db)
        .await?;
    if seen.is_empty() {
        return Ok(HashMap::new());
    }
    let ids: Vec<Uuid> = seen.iter().map(|row| row.command_id).collect();
    let mut found = outcomes(db, &ids).await?;
    for row in &seen {
        found.entry(row.command_id).or_insert_with(|| archived(row));
    }
    Ok(found)
}

/// The answer to a command whose outcome was archived (`sop archive`): what the inbox still
/// knows of it, as a `conflict` that tells the sender to use a new id to act again.
fn archived(row: &command_inbox::Model) -> Outcome {
    let status = match row.status {
        CommandStatus::Accepted => "accepted",
        CommandStatus::Rejected => "rejected",
    };
    Outcome {
        schema_version: crate::wire::command::SCHEMA_VERSION,
        command_id: row.command_id,
        command: row.command.clone(),
        verdict: Verdict::Rejected {
            error: ErrorBody {
                code: ErrorCode::Conflict.as_str().to_owned(),
                message: format!(
                    "command {} was processed at {} ({status}); its outcome has been archived. \
                     Send the command with a new command_id to act again",
                    row.command_id,
                    row.processed_at.to_rfc3339()
                ),
                field: Some("command_id".into()),
            },
        },
        processed_at: row.processed_at,
    }
}

/// The outcomes of processed commands, read from their outcome messages.
async fn outcomes(
    db: &impl ConnectionTrait,
    ids: &[Uuid],
) -> Result<HashMap<Uuid, Outcome>, DbErr> {
    super::outbox::outcomes_of(db, ids)
        .await?
        .into_iter()
        .map(|(id, payload)| {
            serde_json::from_slice(&payload)
                .map(|outcome| (id, outcome))
                .map_err(|e| DbErr::Type(format!("the outcome of command {id}: {e}")))
        })
        .collect()
}

/// Records outcomes with the system that sent each command (when known). An id recorded
/// meanwhile by another transaction (a concurrent duplicate) fails the statement, and with
/// it the caller's transaction: the record that stands is the other one.
pub fn insert_into(
    writes: &mut super::writes::Writes,
    outcomes: &[(Outcome, Option<Uuid>)],
) -> Result<(), super::StoreError> {
    let rows: Vec<command_inbox::ActiveModel> = outcomes
        .iter()
        .map(|(outcome, actor)| command_inbox::ActiveModel {
            command_id: Set(outcome.command_id),
            command: Set(outcome.command.chars().take(200).collect()),
            actor_system_id: Set(*actor),
            status: Set(if outcome.is_accepted() {
                CommandStatus::Accepted
            } else {
                CommandStatus::Rejected
            }),
            processed_at: Set(outcome.processed_at),
        })
        .collect();
    writes.insert(rows, None)
}
