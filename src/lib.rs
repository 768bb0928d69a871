//! vsm-sop: governed, versioned Standard Operating Procedures for a Viable System Model
//! organisation of agents, over NATS JetStream.
//!
//! # Layout
//! Layers, each importing only the ones below it:
//!
//! - [`cli`]: the `sop` command line (worker, operators' and agents' commands, queries);
//! - [`ops`]: metrics, health and readiness over HTTP (observes, never processes);
//! - [`devbus`]: `sop up`'s JetStream server: probes an address, starts and stops `nats-server -js`;
//! - [`app`]: composition root (connect, migrate, ensure streams, spawn consumer + relay);
//! - [`bus`]: the NATS edge — streams, the command consumer, decoding, the outbox relay, the client;
//! - [`application`]: one use case per command and the transaction pipeline around them;
//! - [`store`]: persistence with SeaORM — repositories, command inbox, event outbox;
//! - [`wire`]: the contract — subjects, envelopes, payload DTOs, outcomes;
//! - [`domain`]: the pure rules — procedures, templates, runs, tasks, reviews, events.
//!
//! # One command's path
//! ```text
//! agent → JetStream SOP_COMMANDS → consumer → decode → application::process_group {
//!     per command: inbox check → authorise + decide (domain) → write → outbox outcome + events
//!     one commit for the group
//! } → outcome to the reply inbox → committed messages handed to the relay (in memory) → ack
//!   → relay → SOP_EVENTS / SOP_OUTCOMES
//! ```

#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod app;
pub mod application;
pub mod bus;
pub mod cli;
pub mod config;
pub mod devbus;
pub mod domain;
pub mod mcp;
pub mod ops;
pub mod store;
pub mod wire;
