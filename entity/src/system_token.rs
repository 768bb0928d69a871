use sea_orm::entity::prelude::*;

/// A bearer token an operator issued for a system: its public key only, never the token.
#[sea_orm::model]
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "system_token")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub system_id: Uuid,
    /// NATS user public key (`U…`) of the token's seed; it verifies the token's signatures.
    #[sea_orm(unique)]
    pub public_key: String,
    pub label: Option<String>,
    pub issued_at: DateTimeUtc,
    pub expires_at: Option<DateTimeUtc>,
    pub revoked_at: Option<DateTimeUtc>,
}

impl ActiveModelBehavior for ActiveModel {}
