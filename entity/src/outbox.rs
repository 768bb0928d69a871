use sea_orm::entity::prelude::*;

/// The event log, one record per command's messages that concern the same series and run:
/// written with the state change that caused them and published afterwards by the relay (what
/// is left to publish is listed in `outbox_pending`, by message position). Records are written
/// once and kept: they are the audit trail. The messages are stored together in `body` (see
/// [`encode`]): a command's events repeat its ids and envelope, which compress away.
#[sea_orm::model]
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "outbox")]
pub struct Model {
    /// The record's number: its messages are at positions `seq << 12` + 0, 1, … ([`position`]).
    #[sea_orm(primary_key)]
    pub seq: i64,
    pub team_id: Option<Uuid>,
    /// The command whose messages these are.
    pub causation_id: Uuid,
    /// The procedure series the messages concern (audit trail of a series).
    pub series_id: Option<Uuid>,
    /// The run they concern (audit trail of a run).
    pub run_id: Option<Uuid>,
    /// How many messages the body holds.
    pub messages: i32,
    /// The messages, [`encode`]d.
    pub body: Vec<u8>,
    pub created_at: DateTimeUtc,
}

impl ActiveModelBehavior for ActiveModel {}

/// Messages per record at most: the low bits of a message's position.
pub const RECORD_MESSAGES: usize = 1 << RECORD_BITS;
/// Bits of a position that number a message within its record.
pub const RECORD_BITS: u32 = 12;

/// The position of a record's `index`-th message: increasing in the order messages were
/// written, and what `outbox_pending`, `outbox_parked` and the audit trail name a message by.
pub fn position(record: i64, index: usize) -> i64 {
    (record << RECORD_BITS) | index as i64
}

/// The record and index of a message's position.
pub fn record_of(position: i64) -> (i64, usize) {
    (
        position >> RECORD_BITS,
        (position & (RECORD_MESSAGES as i64 - 1)) as usize,
    )
}

/// One stored message: what the relay publishes, and what the audit trail shows of it. Written
/// with a borrowed payload (`Message<&RawValue>`), read back with its own.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Message<P = Box<RawValue>> {
    /// Its `Nats-Msg-Id` (an event's `event_id`, an outcome's command id).
    pub id: Uuid,
    /// `event.<type>` for domain events, `outcome` for command outcomes.
    pub kind: String,
    pub subject: String,
    /// NATS headers to publish with it (e.g. `traceparent`), a JSON object of strings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub headers: Option<Json>,
    /// Core-NATS inbox an outcome is also sent to (its sender).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply_to: Option<String>,
    pub at: DateTimeUtc,
    /// The message exactly as published: JSON, kept byte for byte.
    pub payload: P,
}

pub use serde_json::value::RawValue;

/// The first byte of a body: how the rest is encoded. 1: a JSON array of [`Message`]s,
/// compressed with zstd against [`DICTIONARY`].
const FORMAT_ZSTD_V1: u8 = 1;
/// A zstd dictionary trained (32 KiB, `train_dictionary`) on records of every command's
/// messages, their instance values (digests, team and template texts) replaced by random ones
/// so that it learns the contract's shapes rather than one deployment's values, and on the
/// contract's example events and outcomes. Frozen: every body of format 1 needs these bytes; a
/// better dictionary is a new format.
const DICTIONARY: &[u8] = include_bytes!("outbox.dict");
const LEVEL: i32 = 1;
/// The most a body may hold once decompressed: far above any command's messages (a record
/// holds at most [`RECORD_MESSAGES`]), so only a damaged body is refused.
const MAX_DECODED: usize = 1 << 30;

#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    #[error("outbox body: unknown format {0}")]
    Format(u8),
    #[error("outbox body: {0}")]
    Zstd(#[from] std::io::Error),
    #[error("outbox body: {0}")]
    Json(#[from] serde_json::Error),
    #[error("outbox body: {0}")]
    Damaged(&'static str),
}

impl From<BodyError> for DbErr {
    fn from(e: BodyError) -> DbErr {
        DbErr::Custom(e.to_string())
    }
}

fn prepared() -> &'static (
    zstd::dict::EncoderDictionary<'static>,
    zstd::dict::DecoderDictionary<'static>,
) {
    static PREPARED: std::sync::OnceLock<(
        zstd::dict::EncoderDictionary<'static>,
        zstd::dict::DecoderDictionary<'static>,
    )> = std::sync::OnceLock::new();
    PREPARED.get_or_init(|| {
        (
            zstd::dict::EncoderDictionary::copy(DICTIONARY, LEVEL),
            zstd::dict::DecoderDictionary::copy(DICTIONARY),
        )
    })
}

thread_local! {
    // A context per thread: setting one up costs more than compressing a command's messages.
    static COMPRESSOR: std::cell::RefCell<Option<zstd::bulk::Compressor<'static>>> =
        const { std::cell::RefCell::new(None) };
    static DECOMPRESSOR: std::cell::RefCell<Option<zstd::bulk::Decompressor<'static>>> =
        const { std::cell::RefCell::new(None) };
}

/// A record's body: its messages, in order.
pub fn encode<P: serde::Serialize>(messages: &[Message<P>]) -> Result<Vec<u8>, BodyError> {
    let json = serde_json::to_vec(messages)?;
    COMPRESSOR.with(|cell| {
        let mut cell = cell.borrow_mut();
        let compressor = match cell.as_mut() {
            Some(c) => c,
            None => cell.insert(zstd::bulk::Compressor::with_prepared_dictionary(
                &prepared().0,
            )?),
        };
        let mut body = Vec::with_capacity(json.len() / 4 + 64);
        body.push(FORMAT_ZSTD_V1);
        body.extend_from_slice(&compressor.compress(&json)?);
        Ok(body)
    })
}

/// The messages of a body.
pub fn decode(body: &[u8]) -> Result<Vec<Message>, BodyError> {
    let (&format, frame) = body.split_first().ok_or(BodyError::Damaged("empty"))?;
    if format != FORMAT_ZSTD_V1 {
        return Err(BodyError::Format(format));
    }
    let size = zstd::zstd_safe::get_frame_content_size(frame)
        .map_err(|_| BodyError::Damaged("no frame"))?
        .ok_or(BodyError::Damaged("no content size"))?;
    let size = usize::try_from(size)
        .ok()
        .filter(|&s| s <= MAX_DECODED)
        .ok_or(BodyError::Damaged("content size out of range"))?;
    let json = DECOMPRESSOR.with(|cell| {
        let mut cell = cell.borrow_mut();
        let decompressor = match cell.as_mut() {
            Some(d) => d,
            None => cell.insert(zstd::bulk::Decompressor::with_prepared_dictionary(
                &prepared().1,
            )?),
        };
        decompressor.decompress(frame, size)
    })?;
    Ok(serde_json::from_slice(&json)?)
}

/// Whether `message` may join a record of these links as its next message (`len` already in
/// it): the same command and team, room left, and the same series and run, unless the message
/// is an outcome (filed under nothing: it joins any record) or the record holds no event yet
/// (it takes the event's links).
pub fn joins(record: &Links, len: usize, message: &Links) -> bool {
    len < RECORD_MESSAGES
        && record.causation_id == message.causation_id
        && record.team_id == message.team_id
        && (!message.event
            || !record.event
            || (record.series_id, record.run_id) == (message.series_id, message.run_id))
}

/// What a record and each of its messages are filed under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Links {
    pub causation_id: Uuid,
    pub team_id: Option<Uuid>,
    pub series_id: Option<Uuid>,
    pub run_id: Option<Uuid>,
    /// An event (filed under its series and run), not an outcome; for a record, that it holds
    /// an event.
    pub event: bool,
}

impl Links {
    /// The record's links once `message` has joined it.
    pub fn with(self, message: &Links) -> Links {
        if self.event { self } else { *message }
    }
}

/// Groups messages, in order, into records ([`joins`]): each record's links and its range of
/// `messages`.
pub fn group(links: impl IntoIterator<Item = Links>) -> Vec<(Links, std::ops::Range<usize>)> {
    let mut records: Vec<(Links, std::ops::Range<usize>)> = Vec::new();
    for (i, message) in links.into_iter().enumerate() {
        match records.last_mut() {
            Some((record, range)) if joins(record, range.len(), &message) => {
                *record = record.with(&message);
                range.end = i + 1;
            }
            _ => records.push((message, i..i + 1)),
        }
    }
    records
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests fail loudly by design
mod tests {
    use super::*;

    fn message(n: u8, kind: &str) -> Message {
        Message {
            id: Uuid::from_bytes([n; 16]),
            kind: kind.into(),
            subject: format!("t.{kind}"),
            headers: n
                .is_multiple_of(2)
                .then(|| serde_json::json!({ "traceparent": "00-ab-cd-01" })),
            reply_to: None,
            at: chrono::DateTime::from_timestamp(1_800_000_000, n.into()).unwrap(),
            payload: RawValue::from_string(format!(
                r#"{{"n":{n},"text":"Ünïcode \"quoted\"","nested":{{ "kept" : [1, 2.50] }}}}"#
            ))
            .unwrap(),
        }
    }

    #[test]
    fn a_body_gives_back_every_message_byte_for_byte() {
        let messages: Vec<Message> = (0..50).map(|n| message(n, "event.task.created")).collect();
        let body = encode(&messages).unwrap();
        let back = decode(&body).unwrap();
        assert_eq!(back.len(), messages.len());
        for (a, b) in messages.iter().zip(&back) {
            assert_eq!(a.payload.get(), b.payload.get(), "the exact bytes");
            assert_eq!(
                (a.id, &a.kind, &a.subject, &a.headers, &a.at),
                (b.id, &b.kind, &b.subject, &b.headers, &b.at)
            );
        }
        assert!(body.len() * 10 < serde_json::to_vec(&messages).unwrap().len());
    }

    #[test]
    fn a_damaged_or_unknown_body_is_an_error_not_a_panic() {
        assert!(matches!(decode(&[]), Err(BodyError::Damaged(_))));
        assert!(matches!(decode(&[9, 1, 2]), Err(BodyError::Format(9))));
        let mut body = encode(&[message(1, "outcome")]).unwrap();
        body.truncate(body.len() / 2);
        assert!(decode(&body).is_err());
    }

    #[test]
    fn positions_order_records_then_messages() {
        assert_eq!(record_of(position(7, 3)), (7, 3));
        assert!(position(7, RECORD_MESSAGES - 1) < position(8, 0));
    }

    #[test]
    fn records_split_where_the_command_or_the_links_change() {
        let (a, b) = (Uuid::from_bytes([1; 16]), Uuid::from_bytes([2; 16]));
        let (s, r1, r2) = (Some(Uuid::from_bytes([3; 16])), Some(a), Some(b));
        let l = |causation_id, series_id, run_id, event| Links {
            causation_id,
            team_id: None,
            series_id,
            run_id,
            event,
        };
        let records = group([
            l(a, None, None, false), // an outcome, then its run's events: one record
            l(a, s, r1, true),
            l(a, s, r1, true),
            l(a, s, None, true), // another link: a new record
            l(a, s, r2, true),
            l(a, None, None, true), // an event without links is filed under none
            l(b, None, None, false), // another command
        ]);
        let shape: Vec<_> = records
            .iter()
            .map(|(links, range)| (links.run_id, range.clone()))
            .collect();
        assert_eq!(
            shape,
            [
                (r1, 0..3),
                (None, 3..4),
                (r2, 4..5),
                (None, 5..6),
                (None, 6..7)
            ]
        );
    }
}
