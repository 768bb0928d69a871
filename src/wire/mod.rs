//! The contract on the bus: subjects, command envelopes and payloads, outcomes and event
//! envelopes. Serde types only: decoding into domain commands happens in `bus`, and nothing
//! here touches NATS or the database.

pub mod admin;
pub mod answer;
pub mod archive;
pub mod chain;
pub mod command;
pub mod event;
pub mod fault;
pub mod outcome;
pub mod page;
pub mod query;
pub mod signature;
pub mod subjects;
pub mod token;
