//! Schema migrations, one change per file, registered by their file names (`build.rs`): a
//! migration is added by adding its file. They run identically on Postgres and SQLite, at
//! worker start-up and with `sop migrate`.

pub use sea_orm_migration::prelude::*;

mod run_statuses;

include!(concat!(env!("OUT_DIR"), "/migrations.rs"));

pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        all()
    }
}
