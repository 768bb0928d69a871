//! Which publish failures set an outbox message aside ("park" it) and which are retried in
//! order. Pure: the relay passes in the error, the pass's other acknowledgements and the
//! time; parking itself (the database) and the retry loop are the relay's.
//!
//! A message is parked only when the server will not take it however often it is sent:
//! retrying it would hold up every message behind it for good. Anything that can heal (the
//! connection, a stream that comes back, a cluster without a leader) is retried in order.

use std::time::{Duration, Instant};

use async_nats::jetstream::context::{PublishError, PublishErrorKind};

/// Consecutive failed passes before an unanswered message is parked.
pub const UNANSWERED_PASSES: u32 = 3;
/// The least time those passes must span.
pub const UNANSWERED_FOR: Duration = Duration::from_secs(30);

/// What a failed publish says about the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// The server will never accept it as it is: park it at once.
    Refused,
    /// Sent, never acknowledged: what a publish the worker's NATS user may not make looks
    /// like (the server only answers with an asynchronous `-ERR`), but also a slow or
    /// broken connection. Parked only when it keeps happening while others go through.
    Unanswered,
    /// Anything that may heal: retried in order.
    Transient,
}

/// Classifies a publish error (the one place that does).
pub fn classify(error: &PublishError) -> Failure {
    match error.kind() {
        // The client refuses it before sending: larger than the server's `max_payload`.
        PublishErrorKind::MaxPayloadExceeded => Failure::Refused,
        PublishErrorKind::TimedOut => Failure::Unanswered,
        // A JetStream API error answering the publish (the stream's maximum message size,
        // …), unless the server says it is unavailable for now (503: no leader,
        // insufficient resources, a store that failed or is full).
        PublishErrorKind::Other => {
            match std::error::Error::source(error)
                .and_then(|source| source.downcast_ref::<async_nats::jetstream::Error>())
            {
                Some(api) if api.code() == 503 => Failure::Transient,
                Some(_) => Failure::Refused,
                None => Failure::Transient,
            }
        }
        // No responders (the stream may come back), a connection that broke, too many
        // publishes in flight, and the expectations the relay never sets.
        PublishErrorKind::StreamNotFound
        | PublishErrorKind::BrokenPipe
        | PublishErrorKind::MaxAckPending
        | PublishErrorKind::WrongLastMessageId
        | PublishErrorKind::WrongLastSequence => Failure::Transient,
    }
}

/// The consecutive unanswered passes of the message at the head of the failures.
#[derive(Debug, Default)]
pub struct Strikes {
    current: Option<Strike>,
}

#[derive(Debug, Clone, Copy)]
struct Strike {
    seq: i64,
    passes: u32,
    since: Instant,
}

impl Strikes {
    /// A pass found message `seq` unanswered; `later_acked` says whether a message sent after
    /// it in the same pass was acknowledged (the server works for others). Returns why to
    /// park it, once it has failed [`UNANSWERED_PASSES`] passes in a row over at least
    /// [`UNANSWERED_FOR`] and the server answered someone else this time.
    pub fn unanswered(&mut self, seq: i64, later_acked: bool, now: Instant) -> Option<String> {
        let strike = match self.current {
            Some(s) if s.seq == seq => Strike {
                passes: s.passes + 1,
                ..s
            },
            _ => Strike {
                seq,
                passes: 1,
                since: now,
            },
        };
        self.current = Some(strike);
        let over = now.saturating_duration_since(strike.since);
        (strike.passes >= UNANSWERED_PASSES && over >= UNANSWERED_FOR && later_acked).then(|| {
            self.current = None;
            format!(
                "no acknowledgement in {} passes over {} s while later messages were \
                 acknowledged (may the worker's NATS user publish to this subject?)",
                strike.passes,
                over.as_secs()
            )
        })
    }

    /// Any other outcome of a pass: the count starts again.
    pub fn clear(&mut self) {
        self.current = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api_error(code: u64, err_code: u64) -> PublishError {
        let error: async_nats::jetstream::Error = serde_json::from_value(serde_json::json!({
            "code": code, "err_code": err_code, "description": "refused"
        }))
        .unwrap();
        PublishError::with_source(PublishErrorKind::Other, error)
    }

    #[test]
    fn only_what_the_server_will_never_take_is_refused() {
        use PublishErrorKind as K;
        let cases = [
            (PublishError::new(K::MaxPayloadExceeded), Failure::Refused),
            // The stream's maximum message size.
            (api_error(400, 10054), Failure::Refused),
            (api_error(503, 10077), Failure::Transient),
            (PublishError::new(K::TimedOut), Failure::Unanswered),
            (PublishError::new(K::StreamNotFound), Failure::Transient),
            (PublishError::new(K::BrokenPipe), Failure::Transient),
            (PublishError::new(K::MaxAckPending), Failure::Transient),
            (PublishError::new(K::Other), Failure::Transient),
            (
                PublishError::with_source(K::Other, "the connection's channel closed"),
                Failure::Transient,
            ),
        ];
        for (error, expected) in cases {
            assert_eq!(classify(&error), expected, "{error}");
        }
    }

    #[test]
    fn an_unanswered_message_is_parked_after_three_passes_over_thirty_seconds_while_others_pass() {
        let t0 = Instant::now();
        let mut strikes = Strikes::default();
        assert!(strikes.unanswered(7, true, t0).is_none());
        assert!(
            strikes.unanswered(7, true, t0 + UNANSWERED_FOR).is_none(),
            "two passes"
        );
        let third = t0 + UNANSWERED_FOR;
        assert!(
            strikes.unanswered(7, false, third).is_none(),
            "nothing else was acknowledged: the server may be down for everyone"
        );
        assert!(strikes.unanswered(7, true, third).is_some());
        assert!(
            strikes.unanswered(7, true, third).is_none(),
            "parked: counting starts again"
        );
    }

    #[test]
    fn strikes_need_the_time_and_the_same_message_and_no_other_outcome_in_between() {
        let t0 = Instant::now();
        let mut strikes = Strikes::default();
        for _ in 0..5 {
            assert!(strikes.unanswered(7, true, t0).is_none(), "quick passes");
        }
        assert!(
            strikes.unanswered(8, true, t0 + UNANSWERED_FOR).is_none(),
            "another message"
        );
        assert!(strikes.unanswered(8, true, t0 + UNANSWERED_FOR).is_none());
        strikes.clear();
        let later = t0 + 3 * UNANSWERED_FOR;
        assert!(strikes.unanswered(8, true, later).is_none(), "counted anew");
        assert!(strikes.unanswered(8, true, later).is_none());
        assert!(
            strikes
                .unanswered(8, true, later + UNANSWERED_FOR)
                .is_some()
        );
    }
}
