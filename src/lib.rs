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
//! agent → JetStream SOP_COMMANDS → consumer → decode → application::Pipeline::process_group {
//!     per command: inbox check → authorise + decide (domain) → write → outbox outcome + events
//!     one commit for the group
//! } → outcome to the reply inbox → committed messages handed to the relay (in memory) → ack
//!   → relay → SOP_EVENTS / SOP_OUTCOMES
//! ```

#![cfg_attr(test, allow(clippy::unwrap_used))]

/// A closed set of names, each spelled as its subject: `ALL`, `as_str`, `parse`, `Display`.
macro_rules! subject_names {
    ($(#[$doc:meta])* $enum:ident { $($variant:ident = $name:literal),* $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $enum { $($variant),* }

        impl $enum {
            pub const ALL: &'static [$enum] = &[$($enum::$variant),*];

            pub fn as_str(self) -> &'static str {
                match self { $($enum::$variant => $name),* }
            }

            pub fn parse(name: &str) -> Option<$enum> {
                match name { $($name => Some($enum::$variant),)* _ => None }
            }
        }

        impl std::fmt::Display for $enum {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

/// A closed set of the domain, named in snake_case on the wire and in the database: the
/// derives every one needs (serde, its schema, strum's list and names), `ALL` and `as_str`.
/// More derives and attributes go before the `enum`.
macro_rules! closed_set {
    ($(#[$meta:meta])* pub enum $name:ident { $($(#[$variant_meta:meta])* $variant:ident,)* }) => {
        #[derive(
            Debug,
            Clone,
            Copy,
            PartialEq,
            Eq,
            serde::Serialize,
            serde::Deserialize,
            schemars::JsonSchema,
            strum::VariantArray,
            strum::IntoStaticStr,
            strum::EnumMessage,
        )]
        $(#[$meta])*
        #[strum(serialize_all = "snake_case")]
        #[serde(rename_all = "snake_case")]
        pub enum $name { $($(#[$variant_meta])* $variant,)* }

        impl $name {
            pub const ALL: &'static [$name] = <$name as strum::VariantArray>::VARIANTS;

            pub fn as_str(self) -> &'static str {
                self.into()
            }
        }
    };
}

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
