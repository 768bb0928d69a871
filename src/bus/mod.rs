//! The NATS edge: stream set-up, the command consumer, the outbox relay, and the client.
//! Decoding from bytes to commands happens here, once; nothing below this layer sees NATS.

pub mod admin;
pub mod audit;
pub mod client;
pub mod contract;
pub mod decode;
#[cfg(test)]
pub(crate) mod golden;
pub mod queries;
#[cfg(test)]
mod reference;
pub mod relay;
pub mod roles;
pub mod streams;
pub mod worker;

use std::time::Duration;

/// The wait before retry `attempt` (1 for the first): `first`, doubling each time, at most
/// `cap`. The consumer's redeliveries and the relay's retries both wait so.
pub(crate) fn backoff(attempt: u32, first: Duration, cap: Duration) -> Duration {
    let doublings = attempt.clamp(1, 32) - 1;
    first
        .saturating_mul(2_u32.saturating_pow(doublings))
        .min(cap)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    #[test]
    fn a_backoff_doubles_from_its_first_wait_to_its_cap() {
        let (first, cap) = (Duration::from_millis(250), Duration::from_secs(15));
        let waits: Vec<u128> = (0..=8)
            .map(|attempt| super::backoff(attempt, first, cap).as_millis())
            .collect();
        assert_eq!(
            waits,
            [250, 250, 500, 1_000, 2_000, 4_000, 8_000, 15_000, 15_000]
        );
        assert_eq!(super::backoff(u32::MAX, first, cap), cap);
    }
}
