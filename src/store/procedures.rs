//! Procedure versions and their task templates.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use entity::enums::RetireKind;
use entity::{procedure, procedure_task};
use sea_orm::sea_query::{Expr, ExprTrait};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect, Set,
};
use uuid::Uuid;

use super::mapping::{from_json, read, read_opt, to_json};
use crate::domain::ids::*;
use crate::domain::procedure::*;
use crate::domain::template::{TaskTemplate, Templates};

fn to_row(p: &Procedure) -> procedure::ActiveModel {
    let mut row = procedure::ActiveModel {
        id: Set(p.id.0),
        series_id: Set(p.series_id.0),
        team_id: Set(p.team_id.0),
        version: Set(p.version.0 as i32),
        status: Set(p.status().into()),
        name: Set(p.meta.name.clone()),
        description: Set(p.meta.description.clone()),
        risk_level: Set(p.meta.risk_level.into()),
        impact: Set(p.meta.impact.into()),
        rollback_plan: Set(p.meta.rollback_plan.clone()),
        digest: Set(p.digest.as_str().to_owned()),
        created_by_system_id: Set(p.created_by.0),
        approved_by_system_id: Set(None),
        approved_at: Set(None),
        rejected_by_system_id: Set(None),
        rejected_at: Set(None),
        rejected_reason: Set(None),
        retired_by_system_id: Set(None),
        retired_at: Set(None),
        retired_kind: Set(None),
        retired_reason: Set(None),
        created_at: Set(p.created_at),
        updated_at: Set(p.updated_at),
    };
    let approval = match &p.state {
        ProcedureState::Draft { rejection } => {
            if let Some(r) = rejection {
                row.rejected_by_system_id = Set(Some(r.by.0));
                row.rejected_at = Set(Some(r.at));
                row.rejected_reason = Set(Some(r.reason.clone()));
            }
            None
        }
        ProcedureState::Approved(a) => Some(a),
        ProcedureState::Retired {
            approval,
            retirement,
        } => {
            let (kind, reason) = match &retirement.reason {
                RetireReason::Superseded { by } => (RetireKind::Superseded, by.to_string()),
                RetireReason::Retired { reason } => (RetireKind::Retired, reason.clone()),
                RetireReason::Discarded { reason } => (RetireKind::Discarded, reason.clone()),
            };
            row.retired_by_system_id = Set(Some(retirement.by.0));
            row.retired_at = Set(Some(retirement.at));
            row.retired_kind = Set(Some(kind));
            row.retired_reason = Set(Some(reason));
            approval.as_ref()
        }
    };
    if let Some(a) = approval {
        row.approved_by_system_id = Set(Some(a.by.0));
        row.approved_at = Set(Some(a.at));
    }
    row
}

fn corrupt(id: Uuid, what: &str) -> DbErr {
    DbErr::Type(format!("procedure {id}: {what}"))
}

pub fn from_row(row: procedure::Model) -> Result<Procedure, DbErr> {
    let approval = match (row.approved_by_system_id, row.approved_at) {
        (Some(by), Some(at)) => Some(Approval {
            by: SystemId(by),
            at,
        }),
        _ => None,
    };
    let state = match read("procedure.status", &row.status)? {
        ProcedureStatus::Draft => ProcedureState::Draft {
            rejection: match (
                row.rejected_by_system_id,
                row.rejected_at,
                row.rejected_reason,
            ) {
                (Some(by), Some(at), Some(reason)) => Some(Rejection {
                    by: SystemId(by),
                    at,
                    reason,
                }),
                _ => None,
            },
        },
        ProcedureStatus::Approved => ProcedureState::Approved(
            approval.ok_or_else(|| corrupt(row.id, "approved without approver"))?,
        ),
        ProcedureStatus::Retired => {
            let (Some(by), Some(at), Some(kind), Some(reason)) = (
                row.retired_by_system_id,
                row.retired_at,
                row.retired_kind,
                row.retired_reason,
            ) else {
                return Err(corrupt(row.id, "retired without retirement"));
            };
            let reason = match kind {
                RetireKind::Superseded => RetireReason::Superseded {
                    by: ProcedureId(
                        reason
                            .parse()
                            .map_err(|_| corrupt(row.id, "superseded by a non-id"))?,
                    ),
                },
                RetireKind::Retired => RetireReason::Retired { reason },
                RetireKind::Discarded => RetireReason::Discarded { reason },
            };
            ProcedureState::Retired {
                approval,
                retirement: Retirement {
                    by: SystemId(by),
                    at,
                    reason,
                },
            }
        }
    };
    Ok(Procedure {
        id: ProcedureId(row.id),
        series_id: SeriesId(row.series_id),
        team_id: TeamId(row.team_id),
        version: Version(row.version as u32),
        meta: ProcedureMeta {
            name: row.name,
            description: row.description,
            risk_level: read("procedure.risk_level", &row.risk_level)?,
            impact: read("procedure.impact", &row.impact)?,
            rollback_plan: row.rollback_plan,
        },
        digest: Digest::from_stored(row.digest),
        state,
        created_by: SystemId(row.created_by_system_id),
        created_at: row.created_at,
        updated_at: row.updated_at,
    })
}

pub async fn insert(db: &impl ConnectionTrait, p: &Procedure) -> Result<(), DbErr> {
    procedure::Entity::insert(to_row(p))
        .exec_without_returning(db)
        .await?;
    Ok(())
}

pub async fn update(db: &impl ConnectionTrait, p: &Procedure) -> Result<(), DbErr> {
    to_row(p).reset_all().update(db).await?;
    Ok(())
}

pub async fn find(db: &impl ConnectionTrait, id: Uuid) -> Result<Option<Procedure>, DbErr> {
    procedure::Entity::find_by_id(id)
        .one(db)
        .await?
        .map(from_row)
        .transpose()
}

/// A page of a team's versions in (series, version) order: those after `after`, of `status`
/// when given, at most `n`. The order is a unique key, so consecutive pages never repeat or
/// skip a version, whatever is drafted meanwhile.
pub async fn page_of_team(
    db: &impl ConnectionTrait,
    team: TeamId,
    status: Option<ProcedureStatus>,
    after: Option<(SeriesId, Version)>,
    n: u64,
) -> Result<Vec<Procedure>, DbErr> {
    use procedure::Column;
    let mut query = procedure::Entity::find().filter(Column::TeamId.eq(team.0));
    if let Some(status) = status {
        query = query.filter(Column::Status.eq(status.as_str()));
    }
    if let Some((series, version)) = after {
        // A row comparison, which the index on (…, series_id, version) serves as a range.
        query = query.filter(
            Expr::tuple([Expr::col(Column::SeriesId), Expr::col(Column::Version)]).gt(Expr::tuple(
                [Expr::val(series.0), Expr::val(version.0 as i32)],
            )),
        );
    }
    query
        .order_by_asc(Column::SeriesId)
        .order_by_asc(Column::Version)
        .limit(n)
        .all(db)
        .await?
        .into_iter()
        .map(from_row)
        .collect()
}

/// A page of a series' versions, oldest first: those after `after`, at most `n`.
pub async fn page_of_series(
    db: &impl ConnectionTrait,
    series: SeriesId,
    after: Option<Version>,
    n: u64,
) -> Result<Vec<Procedure>, DbErr> {
    let mut query = procedure::Entity::find().filter(procedure::Column::SeriesId.eq(series.0));
    if let Some(version) = after {
        query = query.filter(procedure::Column::Version.gt(version.0 as i32));
    }
    query
        .order_by_asc(procedure::Column::Version)
        .limit(n)
        .all(db)
        .await?
        .into_iter()
        .map(from_row)
        .collect()
}

/// The team a series belongs to (every version has the same), if the series exists.
pub async fn team_of_series(
    db: &impl ConnectionTrait,
    series: SeriesId,
) -> Result<Option<TeamId>, DbErr> {
    Ok(procedure::Entity::find()
        .filter(procedure::Column::SeriesId.eq(series.0))
        .select_only()
        .column(procedure::Column::TeamId)
        .into_tuple::<Uuid>()
        .one(db)
        .await?
        .map(TeamId))
}

/// The series a version belongs to.
pub async fn series_of(db: &impl ConnectionTrait, id: Uuid) -> Result<Option<SeriesId>, DbErr> {
    Ok(procedure::Entity::find_by_id(id)
        .one(db)
        .await?
        .map(|p| SeriesId(p.series_id)))
}

/// How a transaction holds the versions of a series it read (Postgres; SQLite serialises
/// writers anyway).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SeriesLock {
    /// To read only (queries).
    None,
    /// To execute: executes of one series run side by side, while a change to the series
    /// (approve, retire, revise…) waits for them and they for it.
    Share,
    /// To change the series.
    Exclusive,
}

/// Every version of a series, held as `lock` says for the rest of the transaction.
pub async fn load_series(
    db: &impl ConnectionTrait,
    series: SeriesId,
    lock: SeriesLock,
) -> Result<Option<Series>, DbErr> {
    let mut query = procedure::Entity::find()
        .filter(procedure::Column::SeriesId.eq(series.0))
        .order_by_asc(procedure::Column::Version);
    query = match lock {
        SeriesLock::None => query,
        SeriesLock::Share => query.lock_shared(),
        SeriesLock::Exclusive => query.lock_exclusive(),
    };
    let rows = query.all(db).await?;
    let versions = rows
        .into_iter()
        .map(from_row)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Series::new(versions))
}

/// Stores a version's templates, minting their ids; dependencies are stored as template ids
/// of the same version (so a copy is always remapped). Returns position → template id.
pub async fn insert_templates(
    db: &impl ConnectionTrait,
    procedure_id: ProcedureId,
    templates: &Templates,
) -> Result<BTreeMap<u32, Uuid>, DbErr> {
    let ids: BTreeMap<u32, Uuid> = templates
        .as_slice()
        .iter()
        .map(|t| (t.position, Uuid::now_v7()))
        .collect();
    let rows: Vec<procedure_task::ActiveModel> = templates
        .as_slice()
        .iter()
        .map(|t| {
            let deps: Vec<Uuid> = t.depends_on.iter().map(|p| ids[p]).collect();
            procedure_task::ActiveModel {
                id: Set(ids[&t.position]),
                procedure_id: Set(procedure_id.0),
                position: Set(t.position as i32),
                name: Set(t.name.clone()),
                description: Set(t.description.clone()),
                depends_on: Set(to_json(&deps)),
                default_assignee_system_type: Set(t.default_assignee_type.map(Into::into)),
                required_skills: Set(to_json(&t.required_skills)),
            }
        })
        .collect();
    for chunk in rows.chunks(500) {
        procedure_task::Entity::insert_many(chunk.to_vec())
            .exec_without_returning(db)
            .await?;
    }
    Ok(ids)
}

pub async fn delete_templates(
    db: &impl ConnectionTrait,
    procedure_id: ProcedureId,
) -> Result<(), DbErr> {
    procedure_task::Entity::delete_many()
        .filter(procedure_task::Column::ProcedureId.eq(procedure_id.0))
        .exec(db)
        .await?;
    Ok(())
}

/// A version's templates and position → template id, as [`templates`] reads them.
pub type StoredTemplates = (Templates, BTreeMap<u32, Uuid>);

/// The templates of approved versions, each read once and then served from memory: approved
/// versions never change (only drafts are edited). Held by the command pipeline, shared by its
/// clones; emptied when it reaches [`APPROVED_CACHE`] versions.
#[derive(Debug, Clone, Default)]
pub struct ApprovedTemplates(Arc<Mutex<HashMap<ProcedureId, Arc<StoredTemplates>>>>);

impl ApprovedTemplates {
    /// The templates of approved version `procedure_id`.
    pub async fn get(
        &self,
        db: &impl ConnectionTrait,
        procedure_id: ProcedureId,
    ) -> Result<Arc<StoredTemplates>, DbErr> {
        if let Some(hit) = self
            .0
            .lock()
            .ok()
            .and_then(|m| m.get(&procedure_id).cloned())
        {
            return Ok(hit);
        }
        let read = Arc::new(templates(db, procedure_id).await?);
        if let Ok(mut map) = self.0.lock() {
            if map.len() >= APPROVED_CACHE {
                map.clear();
            }
            map.insert(procedure_id, read.clone());
        }
        Ok(read)
    }
}

/// Approved versions whose templates [`ApprovedTemplates`] keeps in memory.
const APPROVED_CACHE: usize = 1024;

/// A version's templates (dependencies back as positions) and position → template id.
pub async fn templates(
    db: &impl ConnectionTrait,
    procedure_id: ProcedureId,
) -> Result<StoredTemplates, DbErr> {
    let rows = procedure_task::Entity::find()
        .filter(procedure_task::Column::ProcedureId.eq(procedure_id.0))
        .order_by_asc(procedure_task::Column::Position)
        .all(db)
        .await?;
    let position_of: BTreeMap<Uuid, u32> = rows.iter().map(|r| (r.id, r.position as u32)).collect();
    let mut list = Vec::with_capacity(rows.len());
    for r in rows {
        let deps: Vec<Uuid> = from_json("procedure_task.depends_on", r.depends_on)?;
        list.push(TaskTemplate {
            position: r.position as u32,
            name: r.name,
            description: r.description,
            depends_on: deps
                .iter()
                .map(|d| {
                    position_of.get(d).copied().ok_or_else(|| {
                        DbErr::Type(format!("template {} depends on unknown {d}", r.id))
                    })
                })
                .collect::<Result<_, _>>()?,
            default_assignee_type: read_opt(
                "procedure_task.default_assignee_system_type",
                r.default_assignee_system_type.as_deref(),
            )?,
            required_skills: from_json("procedure_task.required_skills", r.required_skills)?,
        });
    }
    let ids = position_of.into_iter().map(|(id, p)| (p, id)).collect();
    Ok((Templates::from_stored(list), ids))
}

/// Gives each version stored before digests existed its digest, and the runs, initiatives
/// and reviews made from it theirs: one transaction per version (run after the migrations).
pub async fn fill_digests(db: &sea_orm::DatabaseConnection) -> Result<u64, DbErr> {
    use sea_orm::TransactionTrait;
    use sea_orm::sea_query::{Alias, Expr, ExprTrait, Query};
    let rows = procedure::Entity::find()
        .filter(procedure::Column::Digest.eq(""))
        .all(db)
        .await?;
    let filled = rows.len() as u64;
    for row in rows {
        let p = from_row(row)?;
        let txn = db.begin().await?;
        let (templates, _) = templates(&txn, p.id).await?;
        let digest = Digest::of(&p.meta, &templates).to_string();
        let tables = [
            ("procedure", "digest", "id"),
            ("procedure_run", "procedure_digest", "procedure_id"),
            ("initiative", "procedure_digest", "procedure_id"),
            ("run_review", "procedure_digest", "procedure_id"),
        ];
        for (table, column, key) in tables {
            let update = Query::update()
                .table(Alias::new(table))
                .value(Alias::new(column), digest.as_str())
                .and_where(Expr::col(Alias::new(key)).eq(p.id.0))
                .to_owned();
            txn.execute(&update).await?;
        }
        txn.commit().await?;
    }
    Ok(filled)
}
