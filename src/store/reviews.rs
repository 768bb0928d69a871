//! Post-run reviews.

use entity::run_review;
use sea_orm::{ConnectionTrait, DbErr, EntityTrait, Set};

use super::mapping::to_json;
use crate::domain::review::Review;

pub async fn insert(
    db: &impl ConnectionTrait,
    team: uuid::Uuid,
    review: &Review,
) -> Result<(), DbErr> {
    let v = &review.view;
    run_review::Entity::insert(run_review::ActiveModel {
        id: Set(v.review_id.0),
        run_id: Set(v.provenance.run_id.0),
        initiative_id: Set(v.provenance.initiative_id.0),
        procedure_id: Set(v.provenance.procedure_id.0),
        procedure_version: Set(v.provenance.procedure_version.0 as i32),
        procedure_digest: Set(v.provenance.procedure_digest.clone()),
        team_id: Set(team),
        reviewer_system_id: Set(v.reviewer_system_id.0),
        outcome: Set(review.outcome.into()),
        summary: Set(v.summary.clone()),
        lessons: Set(to_json(&v.lessons)),
        follow_ups: Set(to_json(&v.follow_ups)),
        context: Set(to_json(&v.context)),
        created_at: Set(v.recorded_at),
    })
    .exec_without_returning(db)
    .await?;
    Ok(())
}

/// The stored review of a run, as recorded (context included).
pub async fn of_run(
    db: &impl ConnectionTrait,
    run_id: uuid::Uuid,
) -> Result<Option<run_review::Model>, DbErr> {
    use sea_orm::{ColumnTrait, QueryFilter};
    run_review::Entity::find()
        .filter(run_review::Column::RunId.eq(run_id))
        .one(db)
        .await
}

/// A stored review as its event view.
pub fn view_of(
    row: run_review::Model,
    series_id: crate::domain::ids::SeriesId,
    run_status: &'static str,
) -> Result<crate::domain::event::ReviewView, DbErr> {
    use super::mapping::from_json;
    use crate::domain::event::{Provenance, ReviewView};
    use crate::domain::ids::*;
    let outcome: crate::domain::review::ReviewOutcome =
        super::mapping::read("run_review.outcome", &row.outcome)?;
    Ok(ReviewView {
        review_id: ReviewId(row.id),
        provenance: Provenance {
            run_id: RunId(row.run_id),
            initiative_id: InitiativeId(row.initiative_id),
            procedure_id: ProcedureId(row.procedure_id),
            series_id,
            procedure_version: Version(row.procedure_version as u32),
            procedure_digest: row.procedure_digest,
        },
        reviewer_system_id: SystemId(row.reviewer_system_id),
        run_status: run_status.into(),
        outcome: outcome.as_str().into(),
        summary: row.summary,
        lessons: from_json("run_review.lessons", row.lessons)?,
        follow_ups: from_json("run_review.follow_ups", row.follow_ups)?,
        context: from_json("run_review.context", row.context)?,
        recorded_at: row.created_at,
    })
}
