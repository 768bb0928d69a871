//! The command inbox: one row per processed command id, holding its outcome. Inserting it in
//! the same transaction as the command's effects is what makes effects exactly-once on an
//! at-least-once bus.

use std::collections::HashMap;

use entity::command_inbox;
use entity::enums::CommandStatus;
use sea_orm::{ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, Set};
use uuid::Uuid;

use super::mapping::{from_json, to_json};
use crate::wire::outcome::Outcome;

/// The outcome and the system that sent the command (when it was known).
pub async fn find_with_actor(
    db: &impl ConnectionTrait,
    command_id: Uuid,
) -> Result<Option<(Outcome, Option<Uuid>)>, DbErr> {
    match command_inbox::Entity::find_by_id(command_id)
        .one(db)
        .await?
    {
        Some(row) => Ok(Some((
            from_json("command_inbox.outcome", row.outcome)?,
            row.actor_system_id,
        ))),
        None => Ok(None),
    }
}

/// The stored outcomes of those of `ids` that have one.
pub async fn find_many(
    db: &impl ConnectionTrait,
    ids: &[Uuid],
) -> Result<HashMap<Uuid, Outcome>, DbErr> {
    if ids.is_empty() {
        return Ok(HashMap::new());
    }
    command_inbox::Entity::find()
        .filter(command_inbox::Column::CommandId.is_in(ids.iter().copied()))
        .all(db)
        .await?
        .into_iter()
        .map(|row| {
            Ok((
                row.command_id,
                from_json("command_inbox.outcome", row.outcome)?,
            ))
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
            outcome: Set(to_json(outcome)),
            processed_at: Set(outcome.processed_at),
        })
        .collect();
    writes.insert(rows, None)
}
