use sea_orm::entity::prelude::*;

use crate::enums::CommandStatus;

/// One row per processed command id: a redelivered or re-sent command is found here instead
/// of being applied again, and answered with its outcome (an outbox message of the command).
#[sea_orm::model]
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "command_inbox")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub command_id: Uuid,
    /// The command name (`procedure.draft`), or the subject for an unknown command.
    pub command: String,
    pub actor_system_id: Option<Uuid>,
    pub status: CommandStatus,
    pub processed_at: DateTimeUtc,
}

impl ActiveModelBehavior for ActiveModel {}
