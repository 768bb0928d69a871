//! The functional core: every business rule of procedures, runs, tasks and reviews, as pure
//! synchronous code. No clock, no randomness, no I/O: `now` and new ids come in as arguments,
//! decisions come out as state changes plus [`event::Event`]s. Nothing here imports sea_orm,
//! async_nats, tokio or serde_json.

pub mod diff;
pub mod error;
pub mod event;
pub mod ids;
pub mod policy;
pub mod procedure;
pub mod receipt;
pub mod review;
pub mod run;
pub mod system;
pub mod team;
pub mod template;
pub mod text;

#[cfg(test)]
mod properties;
#[cfg(test)]
mod run_tests;
#[cfg(test)]
pub(crate) mod testing;
