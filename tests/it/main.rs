//! Integration tests: the worker on real NATS JetStream and real databases (Postgres and
//! SQLite), driven only through messages, as agents would.

#![allow(clippy::unwrap_used)] // tests fail loudly by design

mod audit;
mod cli;
mod delivery;
mod deploy;
mod governance;
mod harness;
mod identity;
mod lifecycle;
mod limits;
mod mcp;
mod paging;
mod parking;
mod plans;
mod processes;
mod queries;
mod rebuild;
mod rejections;
mod schema;
mod security;
mod servers;
mod up;
