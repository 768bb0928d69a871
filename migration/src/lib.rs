//! Schema migrations, one change per file. They run identically on Postgres and SQLite, at
//! worker start-up and with `sop migrate`.

pub use sea_orm_migration::prelude::*;

mod m20261124_000001_create_schema;
mod m20261124_000002_outbox_links;
mod m20261124_000003_outbox_headers;
mod m20261124_000004_create_dead_letter;
mod m20261124_000005_system_public_key;
mod m20261124_000006_outbox_raw_payload;
mod m20261124_000007_outbox_pending;
mod m20261201_000008_drop_outbox_team_index;
mod m20261204_000009_create_outbox_parked;
mod m20261204_000010_procedure_digest;
mod m20261204_000011_run_digest;
mod m20261204_000012_create_team_policy;
mod m20261205_000013_run_approval;
mod m20261207_000014_create_system_token;

pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261124_000001_create_schema::Migration),
            Box::new(m20261124_000002_outbox_links::Migration),
            Box::new(m20261124_000003_outbox_headers::Migration),
            Box::new(m20261124_000004_create_dead_letter::Migration),
            Box::new(m20261124_000005_system_public_key::Migration),
            Box::new(m20261124_000006_outbox_raw_payload::Migration),
            Box::new(m20261124_000007_outbox_pending::Migration),
            Box::new(m20261201_000008_drop_outbox_team_index::Migration),
            Box::new(m20261204_000009_create_outbox_parked::Migration),
            Box::new(m20261204_000010_procedure_digest::Migration),
            Box::new(m20261204_000011_run_digest::Migration),
            Box::new(m20261204_000012_create_team_policy::Migration),
            Box::new(m20261205_000013_run_approval::Migration),
            Box::new(m20261207_000014_create_system_token::Migration),
        ]
    }
}
