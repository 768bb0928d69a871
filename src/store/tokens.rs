//! The bearer tokens issued for systems: their public keys, labels, expiry and revocation.

use chrono::{DateTime, Utc};
use entity::system_token::{ActiveModel, Column, Entity, Model};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, Set,
};
use uuid::Uuid;

use crate::wire::admin::{IssueToken, TokenInfo};

/// A token row with the names of its system and team.
fn info(row: Model, system: &entity::system::Model, team: &str) -> TokenInfo {
    TokenInfo {
        token_id: row.id,
        system_id: row.system_id,
        system: system.name.clone(),
        team: team.to_owned(),
        public_key: row.public_key,
        label: row.label,
        issued_at: row.issued_at,
        expires_at: row.expires_at,
        revoked_at: row.revoked_at,
    }
}

async fn named(db: &impl ConnectionTrait, row: Model) -> Result<Option<TokenInfo>, sea_orm::DbErr> {
    let Some(system) = entity::system::Entity::find_by_id(row.system_id)
        .one(db)
        .await?
    else {
        return Ok(None);
    };
    let team = entity::team::Entity::find_by_id(system.team_id)
        .one(db)
        .await?
        .map(|t| t.name)
        .unwrap_or_default();
    Ok(Some(info(row, &system, &team)))
}

pub async fn insert(
    db: &impl ConnectionTrait,
    token: &IssueToken,
    now: DateTime<Utc>,
) -> Result<Option<TokenInfo>, sea_orm::DbErr> {
    let row = ActiveModel {
        id: Set(Uuid::now_v7()),
        system_id: Set(token.system_id),
        public_key: Set(token.public_key.trim().to_owned()),
        label: Set(token.label.clone()),
        issued_at: Set(now),
        expires_at: Set(token.expires_at),
        revoked_at: Set(None),
    }
    .insert(db)
    .await?;
    named(db, row).await
}

/// Revokes a token (a second revocation keeps the first time); `None` when there is none.
pub async fn revoke(
    db: &impl ConnectionTrait,
    id: Uuid,
    now: DateTime<Utc>,
) -> Result<Option<TokenInfo>, sea_orm::DbErr> {
    let Some(row) = Entity::find_by_id(id).one(db).await? else {
        return Ok(None);
    };
    let row = if row.revoked_at.is_none() {
        let mut active: ActiveModel = row.into();
        active.revoked_at = Set(Some(now));
        active.update(db).await?
    } else {
        row
    };
    named(db, row).await
}

pub async fn list(
    db: &impl ConnectionTrait,
    system_id: Option<Uuid>,
) -> Result<Vec<TokenInfo>, sea_orm::DbErr> {
    let mut find = Entity::find()
        .order_by_asc(Column::IssuedAt)
        .order_by_asc(Column::Id);
    if let Some(system) = system_id {
        find = find.filter(Column::SystemId.eq(system));
    }
    let mut out = Vec::new();
    for row in find.all(db).await? {
        if let Some(info) = named(db, row).await? {
            out.push(info);
        }
    }
    Ok(out)
}

/// Whether `public_key` is a token of `system` that works at `now`: issued, not revoked, not
/// expired.
pub async fn active(
    db: &impl ConnectionTrait,
    system: Uuid,
    public_key: &str,
    now: DateTime<Utc>,
) -> Result<bool, sea_orm::DbErr> {
    let row = Entity::find()
        .filter(Column::PublicKey.eq(public_key))
        .filter(Column::SystemId.eq(system))
        .one(db)
        .await?;
    Ok(row.is_some_and(|r| r.revoked_at.is_none() && r.expires_at.is_none_or(|e| e > now)))
}
