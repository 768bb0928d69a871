//! The command inbox: one row per processed command id, holding its outcome. Inserting it in
//! the same transaction as the command's effects is what makes effects exactly-once on an
//! at-least-once bus.

use entity::command_inbox;
use entity::enums::CommandStatus;
use sea_orm::sea_query::OnConflict;
use sea_orm::{ConnectionTrait, DbErr, EntityTrait, Set};
use uuid::Uuid;

use super::mapping::{from_json, to_json};
use crate::wire::outcome::Outcome;

pub async fn find(db: &impl ConnectionTrait, command_id: Uuid) -> Result<Option<Outcome>, DbErr> {
    Ok(find_with_actor(db, command_id).await?.map(|(o, _)| o))
}

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

/// Records the outcome; `false` when the id was already recorded (a concurrent duplicate).
pub async fn insert(
    db: &impl ConnectionTrait,
    outcome: &Outcome,
    actor: Option<Uuid>,
) -> Result<bool, DbErr> {
    let row = command_inbox::ActiveModel {
        command_id: Set(outcome.command_id),
        command: Set(outcome.command.chars().take(200).collect()),
        actor_system_id: Set(actor),
        status: Set(if outcome.is_accepted() {
            CommandStatus::Accepted
        } else {
            CommandStatus::Rejected
        }),
        outcome: Set(to_json(outcome)),
        processed_at: Set(outcome.processed_at),
    };
    let inserted = command_inbox::Entity::insert(row)
        .on_conflict(
            OnConflict::column(command_inbox::Column::CommandId)
                .do_nothing()
                .to_owned(),
        )
        .exec_without_returning(db)
        .await?;
    Ok(inserted == 1)
}
