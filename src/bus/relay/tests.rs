use super::*;

fn message(seq: i64, bytes: usize) -> Publication {
    Publication {
        seq,
        message_id: uuid::Uuid::now_v7(),
        subject: format!("s.{seq}"),
        headers: None,
        payload: vec![b'x'; bytes].into(),
        reply_to: None,
        chain_team: None,
    }
}

#[test]
fn the_relay_takes_what_is_pending_and_forgets_what_was_published_meanwhile() {
    let handoff = Handoff::default();
    handoff.keep((1..=6).map(|s| message(s, 10)).collect());
    // 1 and 2 were published by someone else; 9 is pending but was not handed over.
    let taken = handoff.take(&[3, 4, 5, 9]);
    let mut seqs: Vec<i64> = taken.keys().copied().collect();
    seqs.sort_unstable();
    assert_eq!(seqs, [3, 4, 5]);
    assert_eq!(taken[&5].subject, "s.5");
    assert_eq!(handoff.kept(), (1, 10), "only 6 is left");
    assert!(handoff.take(&[]).is_empty());
    handoff.clear();
    assert_eq!(handoff.kept(), (0, 0));
}

#[test]
fn published_messages_are_due_off_the_list_a_moment_after_the_first_of_them() {
    let mut unlisted = Unlisted::default();
    assert_eq!(unlisted.due(), None);
    unlisted.published(&[]);
    assert_eq!(unlisted.due(), None, "nothing published");
    let before = Instant::now();
    unlisted.published(&[3, 4, 7]);
    let due = unlisted.due().expect("due");
    assert!(due >= before + UNLIST_AFTER);
    unlisted.published(&[8, 9]);
    assert_eq!(unlisted.through.map(|(seq, _)| seq), Some(9));
    assert_eq!(
        unlisted.due(),
        Some(due),
        "the first publish sets the moment"
    );
}

fn unlisted(floor: Option<i64>) -> Unlisted {
    Unlisted {
        floor: Some(floor),
        ..Unlisted::default()
    }
}

#[test]
fn with_nothing_parked_one_range_takes_off_what_was_published() {
    let mut unlisted = unlisted(None);
    assert_eq!(unlisted.after(), None);
    unlisted.published(&[3, 4, 7]);
    assert_eq!(unlisted.after(), Some(7));
    assert_eq!(
        unlisted.take_off_plan(),
        TakeOff {
            range: Some((None, 7)),
            exact: vec![]
        }
    );
}

#[test]
fn the_range_never_covers_a_parked_message_nor_one_listed_again() {
    let mut unlisted = unlisted(None);
    // 5 fails for good after 3 and 4 went out: they come off with it, in its transaction.
    unlisted.published(&[3, 4]);
    assert_eq!(unlisted.take_off_plan().range, Some((None, 4)));
    unlisted.parked(5);
    assert_eq!(unlisted.after(), None, "read again from the first pending");
    assert_eq!(unlisted.due(), None, "nothing left to take off");
    // The range moves past 5 only once it is off the list, and starts above it.
    unlisted.published(&[6, 8]);
    assert_eq!(
        unlisted.take_off_plan(),
        TakeOff {
            range: Some((Some(5), 8)),
            exact: vec![]
        }
    );
    unlisted.taken_off();
    // 5 is listed again (republished) and published: taken off by itself, and the range
    // still starts above it, where nothing is listed behind the relay's back.
    unlisted.published(&[5, 9]);
    assert_eq!(
        unlisted.take_off_plan(),
        TakeOff {
            range: Some((Some(5), 9)),
            exact: vec![5]
        }
    );
    assert_eq!(unlisted.after(), Some(9));
    unlisted.taken_off();
    assert_eq!(
        unlisted.take_off_plan(),
        TakeOff {
            range: None,
            exact: vec![]
        }
    );
    // Only republished messages, below the floor: no range.
    unlisted.published(&[2]);
    assert_eq!(
        unlisted.take_off_plan(),
        TakeOff {
            range: None,
            exact: vec![2]
        }
    );
    assert_eq!(unlisted.after(), Some(2), "not read twice");
    assert!(unlisted.due().is_some());
}

#[test]
fn after_a_failure_the_handoff_keeps_what_is_sent_again_and_not_a_parked_message() {
    let batch: Vec<Publication> = (1..=5)
        .map(|s| Publication {
            reply_to: Some(format!("inbox.{s}")),
            ..message(s, 10)
        })
        .collect();
    // 1 acknowledged, 2 failed, 3 sent, 4 and 5 not sent.
    let sent = |batch| Sent {
        batch,
        acked: 1,
        sent: 3,
        failure: None,
    };
    let again = sent(batch.clone()).unpublished(false);
    let seqs: Vec<i64> = again.iter().map(|m| m.seq).collect();
    assert_eq!(seqs, [2, 3, 4, 5]);
    let answered: Vec<bool> = again.iter().map(|m| m.reply_to.is_none()).collect();
    assert_eq!(
        answered,
        [true, true, false, false],
        "4 and 5 still to answer"
    );
    let after_parking = sent(batch).unpublished(true);
    assert_eq!(after_parking.first().map(|m| m.seq), Some(3));
}

#[test]
fn the_handoff_keeps_at_most_its_byte_bound() {
    let handoff = Handoff::default();
    let big = HANDOFF_MAX_BYTES / 4;
    handoff.keep((1..=6).map(|s| message(s, big)).collect());
    assert_eq!(handoff.kept(), (4, 4 * big), "the rest is read back");
    assert_eq!(handoff.take(&[1, 5, 6]).len(), 1);
}
