//! Freeze windows: periods in which a rule refuses executes. Absolute (`from`–`to`, instants)
//! or weekly (days, local times and a time zone). A weekly window is checked on the local
//! clock of its zone at the instant of the attempt, so it follows daylight-saving changes; a
//! window whose `to` is not after its `from` ends on the next day.

use std::collections::BTreeSet;
use std::fmt;

use chrono::offset::LocalResult;
use chrono::{DateTime, Datelike, Duration, NaiveDate, TimeZone, Timelike, Utc, Weekday};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

use crate::domain::error::DomainError;

/// A freeze window as written: `from` and `to` (RFC 3339 instants with their offset), or
/// `weekly`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FreezeDocument {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("format" = "date-time"))]
    pub from: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("format" = "date-time"))]
    pub to: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weekly: Option<WeeklyDocument>,
}

/// A day of the week as a weekly window names it: the contract's closed set, which the
/// document's days are read against.
#[derive(schemars::JsonSchema)]
#[schemars(rename_all = "lowercase")]
#[expect(dead_code, reason = "it only describes the days in the contract")]
enum Day {
    Mon,
    Tue,
    Wed,
    Thu,
    Fri,
    Sat,
    Sun,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WeeklyDocument {
    /// `mon` … `sun`: the days the window begins on.
    #[schemars(with = "Vec<Day>", length(min = 1, max = 7))]
    pub days: Vec<String>,
    /// Local `HH:MM`.
    #[schemars(regex(pattern = r"^([01]?[0-9]|2[0-3]):[0-5][0-9]$"))]
    pub from: String,
    /// Local `HH:MM` (`24:00`: the end of the day); not after `from`: the next day.
    #[schemars(regex(pattern = r"^(([01]?[0-9]|2[0-3]):[0-5][0-9]|24:00)$"))]
    pub to: String,
    /// An IANA time zone, e.g. `Europe/Berlin`.
    pub time_zone: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Freeze {
    Between {
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    },
    Weekly {
        days: BTreeSet<u32>,
        /// Minutes after local midnight: `from` in 0..1440, `to` in 1..=1440.
        from: u32,
        to: u32,
        zone: Tz,
    },
}

const DAY: u32 = 24 * 60;

impl Freeze {
    pub fn parse(field: &str, draft: &FreezeDocument) -> Result<Freeze, DomainError> {
        let at = |f: &str| format!("{field}.{f}");
        match (&draft.from, &draft.to, &draft.weekly) {
            (Some(from), Some(to), None) => {
                let instant = |f: &str, raw: &str| {
                    DateTime::parse_from_rfc3339(raw.trim())
                        .map(|t| t.with_timezone(&Utc))
                        .map_err(|_| {
                            DomainError::invalid(at(f), "an RFC 3339 instant with its offset")
                        })
                };
                let (from, to) = (instant("from", from)?, instant("to", to)?);
                if to <= from {
                    return Err(DomainError::invalid(at("to"), "must be after `from`"));
                }
                Ok(Freeze::Between { from, to })
            }
            (None, None, Some(w)) => {
                let days = w
                    .days
                    .iter()
                    .map(|d| {
                        d.trim()
                            .parse::<Weekday>()
                            .map(|d| d.num_days_from_monday())
                            .map_err(|_| {
                                DomainError::invalid(
                                    at("weekly.days"),
                                    "days such as mon, sat, sun",
                                )
                            })
                    })
                    .collect::<Result<BTreeSet<_>, _>>()?;
                if days.is_empty() {
                    return Err(DomainError::invalid(at("weekly.days"), "at least one day"));
                }
                let from = minutes(&at("weekly.from"), &w.from, false)?;
                let to = minutes(&at("weekly.to"), &w.to, true)?;
                if from == to % DAY && to != DAY {
                    return Err(DomainError::invalid(
                        at("weekly.to"),
                        "must differ from `from` (before it, the window ends the next day; a \
                         whole day is from 00:00 to 24:00)",
                    ));
                }
                let zone = w.time_zone.trim().parse::<Tz>().map_err(|_| {
                    DomainError::invalid(
                        at("weekly.time_zone"),
                        "an IANA time zone such as Europe/Berlin",
                    )
                })?;
                Ok(Freeze::Weekly {
                    days,
                    from,
                    to,
                    zone,
                })
            }
            _ => Err(DomainError::invalid(
                field,
                "either `from` and `to`, or `weekly`",
            )),
        }
    }

    /// When the window that holds `now` ends, if one does.
    pub fn end_if_within(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match self {
            Freeze::Between { from, to } => (*from <= now && now < *to).then_some(*to),
            Freeze::Weekly {
                days,
                from,
                to,
                zone,
            } => {
                let local = now.with_timezone(zone);
                let today = local.date_naive();
                let minute = local.time().num_seconds_from_midnight() / 60;
                let begins =
                    |date: NaiveDate| days.contains(&date.weekday().num_days_from_monday());
                // The local day the window holding `now` ends on.
                let ends = if from < to {
                    (begins(today) && *from <= minute && minute < *to).then_some(today)?
                } else if begins(today) && minute >= *from {
                    today.succ_opt()?
                } else {
                    (begins(today.pred_opt()?) && minute < *to).then_some(today)?
                };
                Some(local_instant(*zone, ends, *to, now))
            }
        }
    }
}

/// `HH:MM` as minutes after midnight; `24:00` only where `end_of_day` may be.
fn minutes(field: &str, raw: &str, end_of_day: bool) -> Result<u32, DomainError> {
    let bad = || DomainError::invalid(field, "a local time HH:MM");
    let (h, m) = raw.trim().split_once(':').ok_or_else(bad)?;
    let (h, m): (u32, u32) = (h.parse().map_err(|_| bad())?, m.parse().map_err(|_| bad())?);
    let total = h * 60 + m;
    if m >= 60 || total > DAY || (total == DAY && !end_of_day) {
        return Err(bad());
    }
    Ok(total)
}

/// The first instant after `now` at which the clock of `zone` reads `minutes` on `date`. Where
/// the clock skips that time (moved forward), the first instant after the gap; where it reads
/// it twice (moved back), the first of the two still to come.
fn local_instant(zone: Tz, date: NaiveDate, minutes: u32, now: DateTime<Utc>) -> DateTime<Utc> {
    let (date, minutes) = if minutes == DAY {
        (date.succ_opt().unwrap_or(date), 0)
    } else {
        (date, minutes)
    };
    let mut local = date
        .and_hms_opt(minutes / 60, minutes % 60, 0)
        .unwrap_or_default();
    // No zone skips more than a few hours at once.
    for _ in 0..(4 * 60) {
        match zone.from_local_datetime(&local) {
            LocalResult::Single(t) => return t.with_timezone(&Utc),
            LocalResult::Ambiguous(first, second) => {
                let first = first.with_timezone(&Utc);
                return if first > now {
                    first
                } else {
                    second.with_timezone(&Utc)
                };
            }
            LocalResult::None => local += Duration::minutes(1),
        }
    }
    Utc.from_utc_datetime(&local)
}

impl fmt::Display for Freeze {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Freeze::Between { from, to } => {
                write!(f, "{} to {}", from.to_rfc3339(), to.to_rfc3339())
            }
            Freeze::Weekly {
                days,
                from,
                to,
                zone,
            } => {
                let names: Vec<String> = days
                    .iter()
                    .filter_map(|&d| Weekday::try_from(d as u8).ok())
                    .map(|d| d.to_string().to_lowercase())
                    .collect();
                let hm = |m: &u32| format!("{:02}:{:02}", m / 60, m % 60);
                write!(
                    f,
                    "{} {}–{} {}",
                    names.join(","),
                    hm(from),
                    hm(to),
                    zone.name()
                )
            }
        }
    }
}
