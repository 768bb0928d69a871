//! Teams and systems: registration by operators, and the actor lookup every command starts with.

use chrono::Utc;
use entity::{system, team};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DbErr, EntityTrait, JoinType, QueryFilter,
    QueryOrder, QuerySelect, Set,
};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::mapping::{from_json, read, to_json};
use crate::domain::error::DomainError;
use crate::domain::ids::{SystemId, TeamId};
use crate::domain::system::{Actor, SystemKind};
use crate::domain::team::check_roster;

/// What an operator applies: defined on the wire, where `sop.admin.team.apply` carries it.
pub use crate::wire::admin::{SystemSpec, TeamSpec};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TeamRecord {
    pub id: Uuid,
    pub name: String,
    pub systems: Vec<SystemRecord>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SystemRecord {
    pub id: Uuid,
    pub name: String,
    #[serde(rename = "type")]
    pub kind: SystemKind,
    pub skills: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_key: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum TeamError {
    #[error(transparent)]
    Invalid(#[from] DomainError),
    #[error(transparent)]
    Db(#[from] DbErr),
}

/// Creates or updates a team and its systems, in the caller's transaction.
pub async fn apply(db: &impl ConnectionTrait, spec: &TeamSpec) -> Result<TeamRecord, TeamError> {
    let (name, kinds) = spec.check()?;
    let now = Utc::now();
    let team_id = match team::Entity::find()
        .filter(team::Column::Name.eq(&name))
        .one(db)
        .await?
    {
        Some(t) => t.id,
        None => {
            let id = Uuid::now_v7();
            team::ActiveModel {
                id: Set(id),
                name: Set(name.clone()),
                created_at: Set(now),
                ..Default::default()
            }
            .insert(db)
            .await?;
            id
        }
    };
    for (s, kind) in spec.systems.iter().zip(&kinds) {
        let existing = system::Entity::find()
            .filter(system::Column::TeamId.eq(team_id))
            .filter(system::Column::Name.eq(s.name.trim()))
            .one(db)
            .await?;
        match existing {
            Some(row) => {
                let mut am: system::ActiveModel = row.into();
                am.kind = Set((*kind).into());
                am.skills = Set(to_json(&s.skills));
                if s.public_key.is_some() {
                    am.public_key = Set(s.public_key.clone());
                }
                am.update(db).await?;
            }
            None => {
                system::ActiveModel {
                    id: Set(s.id.unwrap_or_else(Uuid::now_v7)),
                    team_id: Set(team_id),
                    name: Set(s.name.trim().to_owned()),
                    kind: Set((*kind).into()),
                    skills: Set(to_json(&s.skills)),
                    public_key: Set(s.public_key.clone()),
                    created_at: Set(now),
                }
                .insert(db)
                .await?;
            }
        }
    }
    let record = load(db, team_id).await?;
    let all: Vec<SystemKind> = record.systems.iter().map(|s| s.kind).collect();
    check_roster(&all)?;
    Ok(record)
}

async fn load(db: &impl ConnectionTrait, team_id: Uuid) -> Result<TeamRecord, DbErr> {
    let t = team::Entity::find_by_id(team_id)
        .one(db)
        .await?
        .ok_or_else(|| DbErr::RecordNotFound(format!("team {team_id}")))?;
    let systems = system::Entity::find()
        .filter(system::Column::TeamId.eq(team_id))
        .order_by_asc(system::Column::Name)
        .all(db)
        .await?
        .into_iter()
        .map(|s| {
            Ok(SystemRecord {
                id: s.id,
                name: s.name,
                kind: read("system.kind", &s.kind)?,
                skills: from_json("system.skills", s.skills)?,
                public_key: s.public_key,
            })
        })
        .collect::<Result<_, DbErr>>()?;
    Ok(TeamRecord {
        id: t.id,
        name: t.name,
        systems,
    })
}

/// The chain heads of `teams`. Only the relay moves them, one relay at a time (its turn on
/// Postgres, the one worker on SQLite).
pub async fn chain_heads(
    txn: &impl ConnectionTrait,
    teams: &std::collections::BTreeSet<Uuid>,
) -> Result<std::collections::HashMap<Uuid, crate::wire::chain::Head>, DbErr> {
    use crate::wire::chain::Head;
    if teams.is_empty() {
        return Ok(Default::default());
    }
    let rows: Vec<(Uuid, i64, Option<String>)> = team::Entity::find()
        .select_only()
        .columns([
            team::Column::Id,
            team::Column::ChainLength,
            team::Column::ChainHead,
        ])
        .filter(team::Column::Id.is_in(teams.iter().copied()))
        .into_tuple()
        .all(txn)
        .await?;
    Ok(rows
        .into_iter()
        .map(|(id, length, hash)| {
            let head = match hash {
                Some(hash) => Head { length, hash },
                None => Head::default(),
            };
            (id, head)
        })
        .collect())
}

/// Every team with events: its id, name and chain head (the worker's checkpoints).
pub async fn all_heads(
    db: &impl ConnectionTrait,
) -> Result<Vec<(Uuid, String, crate::wire::chain::Head)>, DbErr> {
    let rows: Vec<(Uuid, String, i64, Option<String>)> = team::Entity::find()
        .select_only()
        .columns([
            team::Column::Id,
            team::Column::Name,
            team::Column::ChainLength,
            team::Column::ChainHead,
        ])
        .filter(team::Column::ChainLength.gt(0))
        .into_tuple()
        .all(db)
        .await?;
    Ok(rows
        .into_iter()
        .filter_map(|(id, name, length, hash)| {
            Some((
                id,
                name,
                crate::wire::chain::Head {
                    length,
                    hash: hash?,
                },
            ))
        })
        .collect())
}

/// Postgres: the teams whose chain has events linked and not all published: each with the
/// place published through and the chain's length.
pub async fn chains_in_flight(db: &impl ConnectionTrait) -> Result<Vec<(Uuid, i64, i64)>, DbErr> {
    use sea_orm::sea_query::{Expr, ExprTrait};
    team::Entity::find()
        .select_only()
        .columns([
            team::Column::Id,
            team::Column::ChainPublished,
            team::Column::ChainLength,
        ])
        .filter(Expr::col(team::Column::ChainLength).gt(Expr::col(team::Column::ChainPublished)))
        .into_tuple()
        .all(db)
        .await
}

/// Postgres: the teams' chains published through these places.
pub async fn chains_published(
    db: &impl ConnectionTrait,
    through: &std::collections::HashMap<Uuid, i64>,
) -> Result<(), DbErr> {
    use sea_orm::sea_query::Expr;
    for (id, place) in through {
        team::Entity::update_many()
            .col_expr(team::Column::ChainPublished, Expr::value(*place))
            .filter(team::Column::Id.eq(*id))
            .filter(team::Column::ChainPublished.lt(*place))
            .exec(db)
            .await?;
    }
    Ok(())
}

/// The statements that record `heads` as the teams' chain heads.
pub fn write_chain_heads(
    writes: &mut super::writes::Writes,
    heads: &std::collections::HashMap<Uuid, crate::wire::chain::Head>,
) {
    use sea_orm::QueryTrait as _;
    use sea_orm::sea_query::Expr;
    for (id, head) in heads {
        let statement = team::Entity::update_many()
            .col_expr(team::Column::ChainLength, Expr::value(head.length))
            .col_expr(team::Column::ChainHead, Expr::value(head.hash.clone()))
            .filter(team::Column::Id.eq(*id))
            .build(writes.backend());
        writes.push(statement);
    }
}

/// Every team's name, in name order.
pub async fn names(db: &impl ConnectionTrait) -> Result<Vec<String>, DbErr> {
    team::Entity::find()
        .select_only()
        .column(team::Column::Name)
        .order_by_asc(team::Column::Name)
        .into_tuple()
        .all(db)
        .await
}

pub async fn find_by_name(
    db: &impl ConnectionTrait,
    name: &str,
) -> Result<Option<TeamRecord>, DbErr> {
    match team::Entity::find()
        .filter(team::Column::Name.eq(name))
        .one(db)
        .await?
    {
        Some(t) => Ok(Some(load(db, t.id).await?)),
        None => Ok(None),
    }
}

/// The team a system belongs to, with all its systems.
pub async fn team_of_system(
    db: &impl ConnectionTrait,
    system_id: Uuid,
) -> Result<Option<TeamRecord>, DbErr> {
    match system::Entity::find_by_id(system_id).one(db).await? {
        Some(s) => Ok(Some(load(db, s.team_id).await?)),
        None => Ok(None),
    }
}

fn actor_of(row: system::Model) -> Result<Actor, DbErr> {
    Ok(Actor {
        id: SystemId(row.id),
        team_id: TeamId(row.team_id),
        kind: read("system.kind", &row.kind)?,
        name: row.name,
        skills: from_json("system.skills", row.skills)?,
        public_key: row.public_key,
    })
}

/// The acting system and its team's name (the event subject token), if it exists.
pub async fn actor(db: &impl ConnectionTrait, id: Uuid) -> Result<Option<(Actor, String)>, DbErr> {
    Ok(actor_and_team(db, id)
        .await?
        .map(|found| (found.actor, found.team_name)))
}

/// A system with its team: what a command group reads first.
pub struct ActorAndTeam {
    pub actor: Actor,
    pub team_name: String,
    /// Every system of the team, by name, the actor among them (as [`members`]).
    pub members: Vec<Actor>,
}

/// The acting system, its team's name and the team's systems, in one query (a join): every
/// command group starts with it, an execute needs the systems too, and each statement is a
/// round trip (on SQLite to the connection's thread, on the serial path). Teams are a few
/// systems, so reading them all costs a command that needs only the actor next to nothing.
pub async fn actor_and_team(
    db: &impl ConnectionTrait,
    id: Uuid,
) -> Result<Option<ActorAndTeam>, DbErr> {
    use sea_orm::sea_query::{Alias, Expr, ExprTrait};
    // The actor (`me`) by its key, then its team and the team's systems by theirs.
    let me = Alias::new("me");
    let of_team = system::Entity::belongs_to(team::Entity)
        .from(system::Column::TeamId)
        .to(team::Column::Id);
    let same_team = system::Entity::belongs_to(system::Entity)
        .from(system::Column::TeamId)
        .to(system::Column::TeamId);
    let rows = system::Entity::find()
        .join(JoinType::InnerJoin, of_team.into())
        .join_as(JoinType::InnerJoin, same_team.into(), me.clone())
        .filter(Expr::col((me, system::Column::Id)).eq(id))
        .select_also(team::Entity)
        .all(db)
        .await?;
    let (mut found, mut members) = (None, Vec::with_capacity(rows.len()));
    for (row, team) in rows {
        let member = actor_of(row)?;
        if member.id.0 == id {
            found = team.map(|t| (member.clone(), t.name));
        }
        members.push(member);
    }
    let Some((actor, team_name)) = found else {
        return Ok(None);
    };
    // By name, as [`members`] gives them: sorted here, as a team's systems are few and the
    // statement learns the team only as it runs.
    members.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(Some(ActorAndTeam {
        actor,
        team_name,
        members,
    }))
}

/// Every system of a team, by name (the order assignment ties are broken in).
pub async fn members(db: &impl ConnectionTrait, team_id: TeamId) -> Result<Vec<Actor>, DbErr> {
    system::Entity::find()
        .filter(system::Column::TeamId.eq(team_id.0))
        .order_by_asc(system::Column::Name)
        .all(db)
        .await?
        .into_iter()
        .map(actor_of)
        .collect()
}
