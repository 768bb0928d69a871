//! SeaORM entities: the persisted shape of teams, systems, procedures and their runs, plus the
//! command inbox and event outbox. Plain data only; the rules live in the worker's `domain`
//! and the mapping in its `store`. Enums are string-backed (`varchar` with a CHECK constraint
//! in the migration), so the schema is the same on Postgres and SQLite.

pub mod command_inbox;
pub mod dead_letter;
pub mod enums;
pub mod initiative;
pub mod outbox;
pub mod outbox_chain;
pub mod outbox_parked;
pub mod outbox_pending;
pub mod procedure;
pub mod procedure_run;
pub mod procedure_task;
pub mod run_review;
pub mod system;
pub mod system_token;
pub mod task;
pub mod team;
pub mod team_policy;
