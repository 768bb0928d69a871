use chrono::{DateTime, Duration, Utc};
use uuid::Uuid;

use super::*;

fn at(rfc3339: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(rfc3339)
        .unwrap()
        .with_timezone(&Utc)
}

fn series(n: u128) -> SeriesId {
    SeriesId(Uuid::from_u128(n))
}

fn weekly(days: &[&str], from: &str, to: &str, zone: &str) -> FreezeDocument {
    FreezeDocument {
        weekly: Some(WeeklyDocument {
            days: days.iter().map(|d| d.to_string()).collect(),
            from: from.into(),
            to: to.into(),
            time_zone: zone.into(),
        }),
        ..Default::default()
    }
}

fn policy(rule: RuleDocument) -> Policy {
    Policy::parse(&PolicyDocument { rules: vec![rule] }).unwrap()
}

fn attempt(now: DateTime<Utc>, open_runs: u32, started: &[DateTime<Utc>]) -> Attempt<'_> {
    Attempt {
        series: series(1),
        risk: RiskLevel::High,
        now,
        open_runs,
        started,
    }
}

fn refused(p: &Policy, a: &Attempt<'_>) -> Denial {
    p.check(a).expect_err("refused")
}

#[test]
fn a_rule_applies_at_or_above_its_risk_and_to_its_series() {
    let p = policy(RuleDocument {
        min_risk: Some("high".into()),
        series: Some(vec![series(1).0]),
        max_open_runs: Some(1),
        ..Default::default()
    });
    let rule = &p.rules[0];
    assert!(rule.applies(series(1), RiskLevel::High));
    assert!(rule.applies(series(1), RiskLevel::Critical));
    assert!(!rule.applies(series(1), RiskLevel::Medium));
    assert!(!rule.applies(series(2), RiskLevel::Critical));
    assert!(p.counts_runs(series(1), RiskLevel::Critical));
    assert!(!p.counts_runs(series(2), RiskLevel::Critical));
    assert!(p.may_count(series(1)) && !p.may_count(series(2)));
    let now = at("2026-12-04T12:00:00Z");
    let mut low = attempt(now, 5, &[]);
    low.risk = RiskLevel::Low;
    assert_eq!(p.check(&low), Ok(()));
}

#[test]
fn open_runs_are_limited() {
    let p = policy(RuleDocument {
        name: Some("one-at-a-time".into()),
        max_open_runs: Some(1),
        ..Default::default()
    });
    let now = at("2026-12-04T12:00:00Z");
    assert_eq!(p.check(&attempt(now, 0, &[])), Ok(()));
    let d = refused(&p, &attempt(now, 1, &[]));
    assert_eq!(d.rule, "one-at-a-time.max_open_runs");
    assert!(
        d.message.contains("has 1 open run;") && d.message.contains("at most 1"),
        "{}",
        d.message
    );
    assert_eq!(d.retry_at, None);
}

#[test]
fn runs_are_counted_over_a_rolling_window() {
    let p = policy(RuleDocument {
        max_runs: Some(MaxRuns {
            count: 2,
            per: "1h".into(),
        }),
        ..Default::default()
    });
    let now = at("2026-12-04T12:00:00Z");
    let m = Duration::minutes;
    // One start left the window 10 minutes ago: one counts, the second is allowed.
    assert_eq!(
        p.check(&attempt(now, 0, &[now - m(70), now - m(30)])),
        Ok(())
    );
    // Two within the hour: refused until the older of them leaves it.
    let starts = [now - m(30), now - m(50), now - m(90)];
    let d = refused(&p, &attempt(now, 0, &starts));
    assert_eq!(d.rule, "rules[0].max_runs");
    assert_eq!(d.retry_at, Some(now + m(10)));
    assert!(
        d.message.contains("started 2 runs in the last 1h"),
        "{}",
        d.message
    );
    // At that instant the window holds one start: allowed.
    assert_eq!(p.check(&attempt(now + m(10), 0, &starts)), Ok(()));
    assert_eq!(p.lookback(), Duration::hours(1));
}

#[test]
fn runs_keep_a_minimum_interval() {
    let p = policy(RuleDocument {
        min_interval: Some("15m".into()),
        ..Default::default()
    });
    let now = at("2026-12-04T12:00:00Z");
    let d = refused(&p, &attempt(now, 0, &[now - Duration::minutes(5)]));
    assert_eq!(d.rule, "rules[0].min_interval");
    assert_eq!(d.retry_at, Some(now + Duration::minutes(10)));
    assert_eq!(
        p.check(&attempt(now, 0, &[now - Duration::minutes(15)])),
        Ok(())
    );
}

#[test]
fn an_absolute_freeze_holds_from_its_start_to_its_end() {
    let p = policy(RuleDocument {
        name: Some("holidays".into()),
        freeze: vec![FreezeDocument {
            from: Some("2026-12-24T00:00:00+01:00".into()),
            to: Some("2026-12-27T00:00:00+01:00".into()),
            weekly: None,
        }],
        ..Default::default()
    });
    assert_eq!(
        p.check(&attempt(at("2026-12-23T22:59:59Z"), 0, &[])),
        Ok(())
    );
    let d = refused(&p, &attempt(at("2026-12-23T23:00:00Z"), 0, &[]));
    assert_eq!(d.rule, "holidays.freeze");
    assert_eq!(d.retry_at, Some(at("2026-12-26T23:00:00Z")));
    assert_eq!(
        p.check(&attempt(at("2026-12-26T23:00:00Z"), 0, &[])),
        Ok(())
    );
}

#[test]
fn a_weekly_freeze_across_midnight_ends_the_next_morning() {
    // Friday 22:00 to Saturday 06:00, Berlin time (UTC+1 in December).
    let p = policy(RuleDocument {
        freeze: vec![weekly(&["fri"], "22:00", "06:00", "Europe/Berlin")],
        ..Default::default()
    });
    assert_eq!(
        p.check(&attempt(at("2026-12-04T20:59:00Z"), 0, &[])),
        Ok(())
    );
    let friday_night = refused(&p, &attempt(at("2026-12-04T21:00:00Z"), 0, &[]));
    assert_eq!(friday_night.retry_at, Some(at("2026-12-05T05:00:00Z")));
    let saturday_early = refused(&p, &attempt(at("2026-12-05T02:00:00Z"), 0, &[]));
    assert_eq!(saturday_early.retry_at, Some(at("2026-12-05T05:00:00Z")));
    assert!(
        saturday_early
            .message
            .contains("fri 22:00–06:00 Europe/Berlin"),
        "{}",
        saturday_early.message
    );
    assert_eq!(
        p.check(&attempt(at("2026-12-05T05:00:00Z"), 0, &[])),
        Ok(())
    );
    // Saturday night is not Friday night.
    assert_eq!(
        p.check(&attempt(at("2026-12-05T21:30:00Z"), 0, &[])),
        Ok(())
    );
}

#[test]
fn a_weekly_freeze_is_read_on_its_own_zone_clock() {
    let freeze = |zone: &str| {
        policy(RuleDocument {
            freeze: vec![weekly(
                &["mon", "tue", "wed", "thu", "fri"],
                "09:00",
                "17:00",
                zone,
            )],
            ..Default::default()
        })
    };
    // Friday 2026-12-04 15:00 UTC: 16:00 in Berlin (frozen), 10:00 in New York (frozen),
    // 00:00 Saturday in Tokyo (not).
    let now = at("2026-12-04T15:00:00Z");
    assert_eq!(
        refused(&freeze("Europe/Berlin"), &attempt(now, 0, &[])).retry_at,
        Some(at("2026-12-04T16:00:00Z"))
    );
    assert_eq!(
        refused(&freeze("America/New_York"), &attempt(now, 0, &[])).retry_at,
        Some(at("2026-12-04T22:00:00Z"))
    );
    assert_eq!(freeze("Asia/Tokyo").check(&attempt(now, 0, &[])), Ok(()));
}

#[test]
fn a_freeze_ending_in_the_spring_forward_gap_ends_after_it() {
    // Berlin, Sunday 2026-03-29: at 02:00 CET the clocks jump to 03:00 CEST.
    let p = policy(RuleDocument {
        freeze: vec![weekly(&["sun"], "01:00", "02:30", "Europe/Berlin")],
        ..Default::default()
    });
    // 01:30 CET.
    let d = refused(&p, &attempt(at("2026-03-29T00:30:00Z"), 0, &[]));
    // 02:30 never happens that night: the freeze ends at 03:00 CEST.
    assert_eq!(d.retry_at, Some(at("2026-03-29T01:00:00Z")));
    assert_eq!(
        p.check(&attempt(at("2026-03-29T01:00:00Z"), 0, &[])),
        Ok(())
    );
}

#[test]
fn a_freeze_in_the_fall_back_hour_ends_at_the_coming_reading_of_its_end() {
    // Berlin, Sunday 2026-10-25: at 03:00 CEST the clocks go back to 02:00 CET, so 02:00–03:00
    // is read twice.
    let p = policy(RuleDocument {
        freeze: vec![weekly(&["sun"], "01:00", "02:30", "Europe/Berlin")],
        ..Default::default()
    });
    // 02:15 CEST: the freeze ends at 02:30 CEST.
    let first = refused(&p, &attempt(at("2026-10-25T00:15:00Z"), 0, &[]));
    assert_eq!(first.retry_at, Some(at("2026-10-25T00:30:00Z")));
    // 02:15 CET, the clock's second pass: frozen again, until 02:30 CET.
    let second = refused(&p, &attempt(at("2026-10-25T01:15:00Z"), 0, &[]));
    assert_eq!(second.retry_at, Some(at("2026-10-25T01:30:00Z")));
    assert_eq!(
        p.check(&attempt(at("2026-10-25T00:45:00Z"), 0, &[])),
        Ok(())
    );
}

#[test]
fn windows_that_follow_one_another_freeze_until_the_last_ends() {
    // The whole weekend, as two days' windows; Sunday's ends at midnight.
    let p = policy(RuleDocument {
        freeze: vec![
            weekly(&["sat"], "00:00", "24:00", "UTC"),
            weekly(&["sun"], "00:00", "24:00", "UTC"),
        ],
        ..Default::default()
    });
    let d = refused(&p, &attempt(at("2026-12-05T10:00:00Z"), 0, &[]));
    assert_eq!(d.retry_at, Some(at("2026-12-07T00:00:00Z")));
    assert_eq!(
        p.check(&attempt(at("2026-12-07T00:00:00Z"), 0, &[])),
        Ok(())
    );
    // Sunday 23:00 to Monday 02:00 begins on Sunday: Monday 01:00 is inside it.
    let p = policy(RuleDocument {
        freeze: vec![weekly(&["sun"], "23:00", "02:00", "UTC")],
        ..Default::default()
    });
    assert_eq!(
        refused(&p, &attempt(at("2026-12-07T01:00:00Z"), 0, &[])).retry_at,
        Some(at("2026-12-07T02:00:00Z"))
    );
}

#[test]
fn a_policy_is_refused_with_the_field_at_fault() {
    let field = |rule: RuleDocument| {
        Policy::parse(&PolicyDocument { rules: vec![rule] })
            .unwrap_err()
            .field()
            .map(str::to_owned)
    };
    assert_eq!(
        field(RuleDocument {
            freeze: vec![weekly(&["sat"], "01:00", "02:00", "Mars/Olympus")],
            ..Default::default()
        })
        .as_deref(),
        Some("rules[0].freeze[0].weekly.time_zone")
    );
    assert_eq!(
        field(RuleDocument {
            freeze: vec![weekly(&["someday"], "01:00", "02:00", "UTC")],
            ..Default::default()
        })
        .as_deref(),
        Some("rules[0].freeze[0].weekly.days")
    );
    assert_eq!(
        field(RuleDocument {
            freeze: vec![weekly(&["sat"], "25:00", "02:00", "UTC")],
            ..Default::default()
        })
        .as_deref(),
        Some("rules[0].freeze[0].weekly.from")
    );
    assert_eq!(
        field(RuleDocument {
            max_runs: Some(MaxRuns {
                count: 3,
                per: "soon".into(),
            }),
            ..Default::default()
        })
        .as_deref(),
        Some("rules[0].max_runs.per")
    );
    assert_eq!(
        field(RuleDocument {
            max_open_runs: Some(0),
            ..Default::default()
        })
        .as_deref(),
        Some("rules[0].max_open_runs")
    );
    assert_eq!(
        field(RuleDocument {
            min_risk: Some("extreme".into()),
            ..Default::default()
        })
        .as_deref(),
        Some("rules[0].min_risk")
    );
    let both = FreezeDocument {
        from: Some("2026-12-24T00:00:00Z".into()),
        to: Some("2026-12-25T00:00:00Z".into()),
        weekly: Some(WeeklyDocument::default()),
    };
    assert_eq!(
        field(RuleDocument {
            freeze: vec![both],
            ..Default::default()
        })
        .as_deref(),
        Some("rules[0].freeze[0]")
    );
    let twice = Policy::parse(&PolicyDocument {
        rules: vec![
            RuleDocument {
                name: Some("a".into()),
                ..Default::default()
            },
            RuleDocument {
                name: Some("a".into()),
                ..Default::default()
            },
        ],
    });
    assert_eq!(twice.unwrap_err().field(), Some("rules"));
}

#[test]
fn a_limit_tightened_below_the_open_runs_says_how_many_must_end() {
    let p = policy(RuleDocument {
        name: Some("pair".into()),
        max_open_runs: Some(2),
        ..Default::default()
    });
    let now = at("2026-12-04T12:00:00Z");
    let at_limit = refused(&p, &attempt(now, 2, &[]));
    assert!(
        at_limit.message.ends_with("allowed once one ends"),
        "{}",
        at_limit.message
    );
    let over = refused(&p, &attempt(now, 5, &[]));
    assert!(
        over.message.contains("has 5 open runs;") && over.message.ends_with("once 4 of them end"),
        "{}",
        over.message
    );
}

#[test]
fn a_new_rule_must_limit_something() {
    let idle = PolicyDocument {
        rules: vec![RuleDocument {
            name: Some("idle".into()),
            min_risk: Some("high".into()),
            ..Default::default()
        }],
    };
    // Stored versions are read as they were set; a new one is refused.
    assert!(Policy::parse(&idle).is_ok());
    let refused = Policy::parse_new(&idle).unwrap_err();
    assert_eq!(refused.field(), Some("rules[0]"));
    assert!(refused.to_string().contains("limits nothing"), "{refused}");
    for limiting in [
        RuleDocument {
            run_approval: true,
            ..Default::default()
        },
        RuleDocument {
            freeze: vec![weekly(&["sat"], "00:00", "24:00", "UTC")],
            ..Default::default()
        },
        RuleDocument {
            min_interval: Some("1h".into()),
            ..Default::default()
        },
    ] {
        let document = PolicyDocument {
            rules: vec![limiting],
        };
        assert!(Policy::parse_new(&document).is_ok(), "{document:?}");
    }
}

#[test]
fn a_weekly_window_that_ends_where_it_starts_is_refused_with_the_ways_to_say_it() {
    let refused = Policy::parse(&PolicyDocument {
        rules: vec![RuleDocument {
            freeze: vec![weekly(&["fri"], "22:00", "22:00", "UTC")],
            ..Default::default()
        }],
    })
    .unwrap_err();
    assert_eq!(refused.field(), Some("rules[0].freeze[0].weekly.to"));
    assert!(refused.to_string().contains("00:00 to 24:00"), "{refused}");
}
