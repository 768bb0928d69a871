use sea_orm::entity::prelude::*;

use crate::enums::RetireKind;

/// One version of a procedure. `(series_id, version)` is unique; partial unique indexes allow
/// at most one draft and one approved version per series.
#[sea_orm::model]
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "procedure")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub series_id: Uuid,
    pub team_id: Uuid,
    pub version: i32,
    pub status: String,
    pub name: String,
    pub description: String,
    pub risk_level: String,
    pub impact: String,
    pub rollback_plan: String,
    /// `sha256:<hex>` of the version's canonical content.
    pub digest: String,
    pub created_by_system_id: Uuid,
    pub approved_by_system_id: Option<Uuid>,
    pub approved_at: Option<DateTimeUtc>,
    pub rejected_by_system_id: Option<Uuid>,
    pub rejected_at: Option<DateTimeUtc>,
    pub rejected_reason: Option<String>,
    pub retired_by_system_id: Option<Uuid>,
    pub retired_at: Option<DateTimeUtc>,
    pub retired_kind: Option<RetireKind>,
    /// The retire/discard reason, or for `superseded` the id of the superseding version.
    pub retired_reason: Option<String>,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

impl ActiveModelBehavior for ActiveModel {}
