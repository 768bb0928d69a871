//! Teams' execution policies, every version kept.

use chrono::{DateTime, Utc};
use entity::team_policy;
use sea_orm::{ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, QueryOrder, Set};

use super::mapping::{from_json, to_json};
use crate::domain::ids::{SystemId, TeamId};
use crate::domain::policy::PolicyDocument;

/// A version of a team's policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredPolicy {
    pub version: u32,
    pub document: PolicyDocument,
    pub set_by: SystemId,
    pub set_at: DateTime<Utc>,
}

/// The policy in force for `team`: its newest version, if it ever set one.
pub async fn in_force(
    db: &impl ConnectionTrait,
    team: TeamId,
) -> Result<Option<StoredPolicy>, DbErr> {
    let Some(row) = team_policy::Entity::find()
        .filter(team_policy::Column::TeamId.eq(team.0))
        .order_by_desc(team_policy::Column::Version)
        .one(db)
        .await?
    else {
        return Ok(None);
    };
    Ok(Some(StoredPolicy {
        version: row.version as u32,
        document: from_json("team_policy.document", row.document)?,
        set_by: SystemId(row.set_by_system_id),
        set_at: row.set_at,
    }))
}

pub async fn insert(
    db: &impl ConnectionTrait,
    team: TeamId,
    policy: &StoredPolicy,
) -> Result<(), DbErr> {
    team_policy::Entity::insert(team_policy::ActiveModel {
        team_id: Set(team.0),
        version: Set(policy.version as i32),
        document: Set(to_json(&policy.document)),
        set_by_system_id: Set(policy.set_by.0),
        set_at: Set(policy.set_at),
    })
    .exec_without_returning(db)
    .await?;
    Ok(())
}
