//! The NATS edge: stream set-up, the command consumer, the outbox relay, and the client.
//! Decoding from bytes to commands happens here, once; nothing below this layer sees NATS.

pub mod admin;
pub mod client;
pub mod contract;
pub mod decode;
#[cfg(test)]
pub(crate) mod golden;
pub mod queries;
pub mod relay;
pub mod streams;
pub mod worker;
