//! Dead letters: written in the same transaction as the message's rejection outcome.

use chrono::{DateTime, Utc};
use entity::dead_letter;
use sea_orm::{ConnectionTrait, DbErr, EntityTrait, QueryOrder, QuerySelect, Set};
use uuid::Uuid;

/// Bytes of a body kept in the record; the rest is dropped (its size is recorded).
pub const KEPT_BYTES: usize = 64 * 1024;

#[allow(clippy::too_many_arguments)]
pub async fn record(
    db: &impl ConnectionTrait,
    command_id: Uuid,
    subject: &str,
    reason: &str,
    message: &str,
    payload: &[u8],
    at: DateTime<Utc>,
) -> Result<(), DbErr> {
    let kept = &payload[..payload.len().min(KEPT_BYTES)];
    dead_letter::Entity::insert(dead_letter::ActiveModel {
        command_id: Set(command_id),
        subject: Set(subject.chars().take(400).collect()),
        reason: Set(reason.to_owned()),
        message: Set(message.to_owned()),
        payload: Set(String::from_utf8_lossy(kept).replace('\0', "\u{fffd}")),
        payload_bytes: Set(payload.len().min(i32::MAX as usize) as i32),
        received_at: Set(at),
    })
    .exec_without_returning(db)
    .await?;
    Ok(())
}

/// The most recent dead letters first.
pub async fn latest(
    db: &impl ConnectionTrait,
    limit: u64,
) -> Result<Vec<dead_letter::Model>, DbErr> {
    dead_letter::Entity::find()
        .order_by_desc(dead_letter::Column::ReceivedAt)
        .limit(limit)
        .all(db)
        .await
}
