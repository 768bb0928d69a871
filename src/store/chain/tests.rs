use super::*;
use crate::wire::chain::{Held, check};

const TEAM: Uuid = Uuid::from_u128(7);

/// A record's messages as the relay is handed them: an outcome, then `events` events.
fn record(seq: i64, events: usize) -> Vec<Publication> {
    (0..=events)
        .map(|i| Publication {
            seq: records::position(seq, i),
            message_id: Uuid::from_u128((seq as u128) << 16 | i as u128),
            subject: format!("s.{seq}.{i}"),
            headers: None,
            payload: format!("{{\"record\":{seq},\"n\":{i}}}")
                .into_bytes()
                .into(),
            reply_to: None,
            chain_team: (i > 0).then_some(TEAM),
        })
        .collect()
}

fn held(batch: &[Publication]) -> Vec<Held> {
    batch
        .iter()
        .filter(|p| p.chain_team.is_some())
        .map(|p| Held {
            link: p.link(),
            event_id: p.message_id,
            payload: p.payload.clone(),
            at: p.seq.to_string(),
        })
        .collect()
}

#[test]
fn the_relay_links_a_batch_in_order_one_run_per_record_and_pass() {
    let mut heads = Heads::from([(TEAM, Head::default())]);
    let mut first = record(1, 3);
    first.extend(record(2, 2));
    // The second record's last event comes in the next pass.
    let mut next = vec![first.pop().unwrap()];
    let runs = link(&mut first, &mut heads).unwrap();
    assert_eq!(
        runs.iter()
            .map(|r| (r.seq, r.first, r.events, r.place))
            .collect::<Vec<_>>(),
        [(1, 1, 3, 1), (2, 1, 1, 4)]
    );
    next.extend(record(3, 1));
    let more = link(&mut next, &mut heads).unwrap();
    assert_eq!(
        more.iter()
            .map(|r| (r.seq, r.first, r.events, r.place))
            .collect::<Vec<_>>(),
        [(2, 2, 1, 5), (3, 1, 1, 6)]
    );
    assert_eq!(heads[&TEAM].length, 6);
    assert!(unlinked_teams(&next).is_empty());
    first.extend(next);
    let checked = check(TEAM, &held(&first), Some(&heads[&TEAM]));
    assert_eq!(checked.first_break, None, "{checked:?}");
    assert_eq!(checked.events, 6);
    assert!(
        first
            .iter()
            .all(|p| p.chain_team.is_some() == p.link().is_some())
    );
}

#[test]
fn a_stored_record_gets_back_the_links_the_relay_gave_its_events() {
    let mut heads = Heads::from([(TEAM, Head::default())]);
    let mut batch = record(4, 5);
    let runs = link(&mut batch, &mut heads).unwrap();
    let mut stored: Vec<Stored> = batch
        .iter()
        .map(|p| Stored {
            publication: Publication {
                headers: None,
                ..p.clone()
            },
            kind: if p.chain_team.is_some() {
                "event.task.created".into()
            } else {
                OUTCOME_KIND.into()
            },
            causation_id: Uuid::nil(),
            created_at: chrono::Utc::now(),
        })
        .collect();
    attach(&mut stored, &runs.iter().collect::<Vec<_>>()).unwrap();
    for (s, p) in stored.iter().zip(&batch) {
        assert_eq!(s.publication.link(), p.link());
    }
    // A run that names an outcome's place is a damaged record, said so.
    let wrong = Run {
        first: 0,
        ..runs[0].clone()
    };
    assert!(attach(&mut stored, &[&wrong]).is_err());
}

#[test]
fn messages_linked_earlier_go_out_first_in_place_order_each_outcome_before_its_events() {
    let mut heads = Heads::from([(TEAM, Head::default())]);
    // Records 6 and 5 were linked in that order (5 committed late), then the relay stopped.
    let mut six = record(6, 2);
    let mut five = record(5, 1);
    link(&mut six, &mut heads).unwrap();
    link(&mut five, &mut heads).unwrap();
    // Read back in position order, with record 3 newly committed below them.
    let mut batch: Vec<Publication> = record(3, 1).into_iter().chain(five).chain(six).collect();
    in_chain_order(&mut batch);
    let order: Vec<i64> = batch.iter().map(|p| p.seq).collect();
    let p = records::position;
    assert_eq!(
        order,
        [
            p(6, 0),
            p(6, 1),
            p(6, 2),
            p(5, 0),
            p(5, 1),
            p(3, 0),
            p(3, 1)
        ]
    );
    link(&mut batch, &mut heads).unwrap();
    let checked = check(TEAM, &held(&batch), Some(&heads[&TEAM]));
    assert_eq!(checked.first_break, None, "{checked:?}");
    // Nothing linked: position order stands.
    let mut fresh: Vec<Publication> = record(9, 1).into_iter().chain(record(8, 1)).collect();
    in_chain_order(&mut fresh);
    assert_eq!(fresh[0].seq, p(9, 0));
}
