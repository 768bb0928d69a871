//! Each team's events form a hash chain, the pattern of a transparency log: event `n` of a team
//! carries, in two headers, its place in the chain and the hash of event `n - 1`, and its own
//! hash covers that link. Change an event and the next one names a hash it no longer has;
//! delete, insert or reorder one and the places no longer follow each other. The database and
//! the team's stream each hold a copy, checked apart and against each other
//! (`sop audit verify`).
//!
//! The canonical form an event's hash is taken over (SHA-256, lowercase hex), each part
//! followed by a newline but the payload:
//!
//! ```text
//! sop-chain-v1
//! <team_id>          the team's id, hyphenated lowercase
//! <index>            the event's place, from 1, in decimal
//! <prev>             the previous event's hash (64 zeros for the first)
//! <event_id>         its event_id, the message's Nats-Msg-Id
//! <payload>          the event's bytes, exactly as published
//! ```

use sha2::{Digest, Sha256};
use uuid::Uuid;

/// The event's place in its team's chain, from 1.
pub const INDEX_HEADER: &str = "Sop-Chain-Index";
/// The hash of the team's previous event.
pub const PREV_HEADER: &str = "Sop-Chain-Prev";
/// What the first event names as its predecessor.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";
const TAG: &str = "sop-chain-v1";

/// The hash of one event in its team's chain (the canonical form above).
pub fn hash(team_id: Uuid, index: i64, prev: &str, event_id: Uuid, payload: &[u8]) -> String {
    let mut uuid = Uuid::encode_buffer();
    let mut h = Sha256::new();
    h.update(TAG.as_bytes());
    h.update(b"\n");
    h.update(team_id.hyphenated().encode_lower(&mut uuid).as_bytes());
    h.update(b"\n");
    h.update(index.to_string().as_bytes());
    h.update(b"\n");
    h.update(prev.as_bytes());
    h.update(b"\n");
    h.update(event_id.hyphenated().encode_lower(&mut uuid).as_bytes());
    h.update(b"\n");
    h.update(payload);
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut text = String::with_capacity(64);
    for byte in h.finalize() {
        text.push(HEX[usize::from(byte >> 4)] as char);
        text.push(HEX[usize::from(byte & 15)] as char);
    }
    text
}

/// A team's chain so far: how many events, and the last one's hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    pub length: i64,
    pub hash: String,
}

impl Default for Head {
    fn default() -> Head {
        Head {
            length: 0,
            hash: GENESIS.to_owned(),
        }
    }
}

impl Head {
    /// Appends an event: its link (place and predecessor), the head moved past it.
    pub fn append(&mut self, team_id: Uuid, event_id: Uuid, payload: &[u8]) -> Link {
        let link = Link {
            index: self.length + 1,
            prev: std::mem::take(&mut self.hash),
        };
        self.hash = hash(team_id, link.index, &link.prev, event_id, payload);
        self.length = link.index;
        link
    }
}

/// Where an event stands in its team's chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    pub index: i64,
    pub prev: String,
}

impl Link {
    /// The link as headers, added to `headers` (a JSON object of strings, or none yet).
    pub fn into_headers(self, headers: Option<serde_json::Value>) -> serde_json::Value {
        let mut headers = match headers {
            Some(serde_json::Value::Object(map)) => map,
            _ => serde_json::Map::new(),
        };
        headers.insert(INDEX_HEADER.into(), self.index.to_string().into());
        headers.insert(PREV_HEADER.into(), self.prev.into());
        serde_json::Value::Object(headers)
    }

    /// The link stored headers (a JSON object of strings: records, archives) name, if any.
    pub fn from_stored(headers: Option<&serde_json::Value>) -> Option<Link> {
        let header = |name: &str| headers?.get(name)?.as_str();
        Link::from_headers(header(INDEX_HEADER), header(PREV_HEADER))
    }

    /// The link an event's headers name, if they name one.
    pub fn from_headers(index: Option<&str>, prev: Option<&str>) -> Option<Link> {
        Some(Link {
            index: index?.parse().ok()?,
            prev: prev?.to_owned(),
        })
    }
}

/// One event of a team as a copy holds it, in the order it holds them.
#[derive(Debug, Clone)]
pub struct Held {
    /// Its link, if it has one (a message without the headers is not part of the chain).
    pub link: Option<Link>,
    pub event_id: Uuid,
    pub payload: bytes::Bytes,
    /// Where the copy keeps it, for the report (`stream sequence 42`, `outbox position 4097`).
    pub at: String,
}

/// The first thing wrong with a copy of a chain.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Break {
    /// The event at `index` is not what was chained: the next one names another hash (or, the
    /// last, the head recorded with the team).
    Changed { index: i64, at: String },
    /// No event at `index`, and none after it there either.
    Missing { index: i64, at: String },
    /// The event at `index` comes out of its place: it is held later on.
    Reordered { index: i64, at: String },
    /// A second event at `index`, or one without a link among linked ones.
    Inserted { index: i64, at: String },
}

/// What checking one copy found.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Checked {
    /// Linked events held.
    pub events: usize,
    /// The first and last places held (the first may be above 1 where older events were
    /// archived, or the stream's limits dropped them).
    pub first: Option<i64>,
    pub last: Option<i64>,
    /// The hash of the last event held, as recomputed.
    pub head: Option<String>,
    pub first_break: Option<Break>,
    /// Events held before the chain begins: written before events were chained (0.2.0).
    pub unchained: usize,
    /// Each place's recomputed hash, to compare copies (not shown).
    #[serde(skip)]
    pub hashes: std::collections::BTreeMap<i64, String>,
}

/// Checks one copy of `team_id`'s chain, `held` in the copy's order. `head`, when known (the
/// database's record of the chain), must be where the copy ends.
pub fn check(team_id: Uuid, held: &[Held], head: Option<&Head>) -> Checked {
    let mut checked = Checked {
        events: 0,
        first: None,
        last: None,
        head: None,
        first_break: None,
        unchained: 0,
        hashes: Default::default(),
    };
    let mut expected: Option<(i64, String)> = None;
    for (k, event) in held.iter().enumerate() {
        let Some(link) = &event.link else {
            let Some((index, _)) = &expected else {
                checked.unchained += 1;
                continue;
            };
            checked.first_break = Some(Break::Inserted {
                index: *index,
                at: event.at.clone(),
            });
            break;
        };
        if let Some((index, prev)) = &expected {
            if link.index != *index {
                let at = event.at.clone();
                checked.first_break = Some(if link.index > *index {
                    if held[k..]
                        .iter()
                        .any(|e| e.link.as_ref().is_some_and(|l| l.index == *index))
                    {
                        Break::Reordered { index: *index, at }
                    } else {
                        Break::Missing { index: *index, at }
                    }
                } else if checked.hashes.contains_key(&link.index)
                    && held[..k].iter().any(|e| e.link.as_ref() == Some(link))
                {
                    Break::Inserted {
                        index: link.index,
                        at,
                    }
                } else {
                    Break::Reordered {
                        index: link.index,
                        at,
                    }
                });
                break;
            }
            if link.prev != *prev {
                checked.first_break = Some(Break::Changed {
                    index: index - 1,
                    at: held[k - 1].at.clone(),
                });
                break;
            }
        }
        let hash = hash(
            team_id,
            link.index,
            &link.prev,
            event.event_id,
            &event.payload,
        );
        checked.first.get_or_insert(link.index);
        checked.last = Some(link.index);
        checked.events += 1;
        checked.hashes.insert(link.index, hash.clone());
        expected = Some((link.index + 1, hash));
    }
    checked.head = checked.last.and_then(|l| checked.hashes.get(&l).cloned());
    if checked.first_break.is_none()
        && let Some(head) = head
    {
        let at = || held.last().map_or_else(String::new, |e| e.at.clone());
        match checked.last {
            Some(last) if last < head.length => {
                checked.first_break = Some(Break::Missing {
                    index: last + 1,
                    at: at(),
                });
            }
            Some(last) if last == head.length && checked.head.as_deref() != Some(&head.hash) => {
                checked.first_break = Some(Break::Changed {
                    index: last,
                    at: at(),
                });
            }
            None if head.length > 0 => {
                checked.first_break = Some(Break::Missing {
                    index: 1,
                    at: String::new(),
                });
            }
            _ => {}
        }
    }
    checked
}

/// The first place two copies disagree at, among the places both hold.
pub fn first_difference(a: &Checked, b: &Checked) -> Option<i64> {
    a.hashes
        .iter()
        .find(|(index, hash)| b.hashes.get(index).is_some_and(|other| other != *hash))
        .map(|(index, _)| *index)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chain(n: usize) -> (Uuid, Vec<Held>, Head) {
        let team = Uuid::from_u128(7);
        let mut head = Head::default();
        let held = (0..n)
            .map(|i| {
                let id = Uuid::from_u128(100 + i as u128);
                let payload = bytes::Bytes::from(format!("{{\"n\":{i}}}"));
                let link = head.append(team, id, &payload);
                Held {
                    link: Some(link),
                    event_id: id,
                    payload,
                    at: format!("#{i}"),
                }
            })
            .collect();
        (team, held, head)
    }

    #[test]
    fn the_hash_is_sha256_of_the_canonical_form() {
        let (team, event) = (Uuid::from_u128(7), Uuid::from_u128(9));
        let form = format!("sop-chain-v1\n{team}\n12\n{GENESIS}\n{event}\n{{\"n\":1}}");
        let expected: String = Sha256::digest(form.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(hash(team, 12, GENESIS, event, br#"{"n":1}"#), expected);
    }

    #[test]
    fn a_clean_chain_checks_to_its_head() {
        let (team, held, head) = chain(5);
        let checked = check(team, &held, Some(&head));
        assert_eq!(checked.first_break, None);
        assert_eq!(
            (checked.first, checked.last, checked.events),
            (Some(1), Some(5), 5)
        );
        assert_eq!(checked.head.as_deref(), Some(head.hash.as_str()));
        assert_eq!(held[0].link.as_ref().unwrap().prev, GENESIS);
    }

    #[test]
    fn a_changed_event_is_named_at_its_place() {
        let (team, mut held, head) = chain(5);
        held[2].payload = bytes::Bytes::from_static(b"{\"n\":99}");
        let found = check(team, &held, Some(&head)).first_break;
        assert!(
            matches!(found, Some(Break::Changed { index: 3, .. })),
            "{found:?}"
        );
        // The last one: only the recorded head tells.
        let (team, mut held, head) = chain(5);
        held[4].payload = bytes::Bytes::from_static(b"{}");
        assert_eq!(check(team, &held, None).first_break, None);
        let found = check(team, &held, Some(&head)).first_break;
        assert!(
            matches!(found, Some(Break::Changed { index: 5, .. })),
            "{found:?}"
        );
    }

    #[test]
    fn deleted_inserted_and_reordered_events_are_named() {
        let (team, held, head) = chain(6);
        let mut deleted = held.clone();
        deleted.remove(3);
        let found = check(team, &deleted, Some(&head)).first_break;
        assert!(
            matches!(found, Some(Break::Missing { index: 4, .. })),
            "{found:?}"
        );
        let mut tail_gone = held.clone();
        tail_gone.pop();
        let found = check(team, &tail_gone, Some(&head)).first_break;
        assert!(
            matches!(found, Some(Break::Missing { index: 6, .. })),
            "{found:?}"
        );
        let mut swapped = held.clone();
        swapped.swap(1, 2);
        let found = check(team, &swapped, Some(&head)).first_break;
        assert!(
            matches!(found, Some(Break::Reordered { index: 2, .. })),
            "{found:?}"
        );
        let mut twice = held.clone();
        twice.insert(3, held[2].clone());
        let found = check(team, &twice, Some(&head)).first_break;
        assert!(
            matches!(found, Some(Break::Inserted { index: 3, .. })),
            "{found:?}"
        );
        let mut unlinked = held.clone();
        unlinked[4].link = None;
        let found = check(team, &unlinked, Some(&head)).first_break;
        assert!(
            matches!(found, Some(Break::Inserted { index: 5, .. })),
            "{found:?}"
        );
    }

    #[test]
    fn a_copy_that_starts_later_checks_from_where_it_starts() {
        let (team, held, head) = chain(6);
        let checked = check(team, &held[2..], Some(&head));
        assert_eq!(checked.first_break, None);
        assert_eq!(checked.first, Some(3));
        let other = check(team, &held, None);
        assert_eq!(first_difference(&checked, &other), None);
        let mut changed = held.clone();
        changed[3].payload = bytes::Bytes::from_static(b"{}");
        let changed = check(team, &changed, None);
        assert_eq!(first_difference(&other, &changed), Some(4));
    }

    #[test]
    fn a_link_goes_into_headers_and_back() {
        let link = Link {
            index: 3,
            prev: "ab".into(),
        };
        let headers = link
            .clone()
            .into_headers(Some(serde_json::json!({ "traceparent": "t" })));
        assert_eq!(headers["traceparent"], "t");
        let back = Link::from_headers(
            headers[INDEX_HEADER].as_str(),
            headers[PREV_HEADER].as_str(),
        );
        assert_eq!(back, Some(link.clone()));
        assert_eq!(Link::from_stored(Some(&headers)), Some(link));
    }
}
