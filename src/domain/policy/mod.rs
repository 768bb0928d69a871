//! A team's execution policy, owned by System5: rules that say when a procedure may be
//! executed. A rule applies to procedures at or above a risk level (optionally only to named
//! series) and may limit open runs, runs per rolling window, the interval between runs,
//! forbid executes in freeze windows, and hold each run it allows for System5's approval. Evaluation is pure: the caller brings the time and the
//! series' run counts.

mod windows;

use std::collections::BTreeSet;

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

pub use windows::{Freeze, FreezeDocument, WeeklyDocument};

use super::error::DomainError;
use super::event::{Event, EventData, EventKind, PolicyEvent};
use super::ids::SeriesId;
use super::procedure::RiskLevel;
use super::system::{Actor, SystemKind};
use super::text;

/// Rules one policy may hold.
pub const MAX_RULES: usize = 64;

/// A policy as System5 writes it (`policy.set`, `sop policy set --file`), and as it is kept
/// and shown: validated into a [`Policy`] when set.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PolicyDocument {
    /// Checked in order; the first that refuses an execute names itself in the refusal.
    /// Required: `[]` clears the policy, so a document that forgot its rules changes nothing.
    #[schemars(length(max = MAX_RULES))]
    pub rules: Vec<RuleDocument>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RuleDocument {
    /// Names the rule in refusals (`field: <name>.<limit>`); `rules[<index>]` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = text::MAX_NAME))]
    pub name: Option<String>,
    /// The lowest risk level the rule applies to: `low` (every procedure, the default),
    /// `medium`, `high` or `critical`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<RiskLevel>")]
    pub min_risk: Option<String>,
    /// Only these series (ids of their first versions), when given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = MAX_RULES * 16))]
    pub series: Option<Vec<Uuid>>,
    /// At most this many runs of a series not yet ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub max_open_runs: Option<u32>,
    /// At most `count` runs of a series started per rolling window `per`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_runs: Option<MaxRuns>,
    /// At least this long between two runs' starts: `90s`, `15m`, `24h`, `7d`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[0-9]+[smhd]$"))]
    pub min_interval: Option<String>,
    /// Periods in which executes are refused.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = MAX_RULES))]
    pub freeze: Vec<FreezeDocument>,
    /// Each run executed awaits System5's `run.approve` before its first task is ready.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub run_approval: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MaxRuns {
    #[schemars(range(min = 1))]
    pub count: u32,
    /// The rolling window: `15m`, `24h`, `7d`.
    #[schemars(regex(pattern = r"^[0-9]+[smhd]$"))]
    pub per: String,
}

/// A validated policy.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Policy {
    pub rules: Vec<Rule>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub name: String,
    pub min_risk: RiskLevel,
    pub series: Option<BTreeSet<SeriesId>>,
    pub max_open_runs: Option<u32>,
    pub max_runs: Option<RateLimit>,
    pub min_interval: Option<Duration>,
    pub freeze: Vec<Freeze>,
    pub run_approval: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    pub count: u32,
    pub per: Duration,
}

/// What an execute would meet: the series, its risk and its runs, at `now`.
#[derive(Debug, Clone)]
pub struct Attempt<'a> {
    pub series: SeriesId,
    pub risk: RiskLevel,
    pub now: DateTime<Utc>,
    /// Runs of the series not yet ended.
    pub open_runs: u32,
    /// When the series' runs started, at least those within the longest window any rule
    /// looks back over ([`Policy::lookback`]), in any order.
    pub started: &'a [DateTime<Utc>],
}

/// Why a policy refuses an execute now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denial {
    /// The rule and its limit: `night-freeze.freeze`, `rules[0].max_open_runs`.
    pub rule: String,
    /// The figures: the limit, the count, when the next run would be allowed.
    pub message: String,
    /// When an execute could next be allowed (none while the run count must fall first).
    pub retry_at: Option<DateTime<Utc>>,
}

impl Policy {
    pub fn parse(document: &PolicyDocument) -> Result<Policy, DomainError> {
        if document.rules.len() > MAX_RULES {
            return Err(DomainError::invalid(
                "rules",
                format!("at most {MAX_RULES} rules, not {}", document.rules.len()),
            ));
        }
        let rules = document
            .rules
            .iter()
            .enumerate()
            .map(|(i, r)| Rule::parse(i, r))
            .collect::<Result<Vec<_>, _>>()?;
        let mut names = BTreeSet::new();
        for rule in &rules {
            if !names.insert(rule.name.as_str()) {
                return Err(DomainError::invalid(
                    "rules",
                    format!("two rules are named `{}`", rule.name),
                ));
            }
        }
        Ok(Policy { rules })
    }

    /// A policy as System5 sets it now: besides what [`Policy::parse`] checks (which every
    /// stored version passed), each rule must limit something, as one that limits nothing
    /// never refuses and is a mistake.
    pub fn parse_new(document: &PolicyDocument) -> Result<Policy, DomainError> {
        let policy = Policy::parse(document)?;
        match policy.rules.iter().position(|rule| !rule.limits()) {
            Some(i) => Err(DomainError::invalid(
                format!("rules[{i}]"),
                "limits nothing: give it max_open_runs, max_runs, min_interval, freeze or \
                 run_approval",
            )),
            None => Ok(policy),
        }
    }

    /// System5 replaces its team's policy whole with `document`, after `previous` (its version
    /// and document; none before the first): the version it becomes and `policy.changed`.
    pub fn replace(
        document: &PolicyDocument,
        previous: Option<(u32, &PolicyDocument)>,
        actor: &Actor,
    ) -> Result<(u32, Event), DomainError> {
        actor.authorise(SystemKind::System5, actor.team_id)?;
        Policy::parse_new(document)?;
        let version = previous.map_or(1, |(version, _)| version + 1);
        let data = PolicyEvent {
            version,
            policy: document.clone(),
            previous: previous.map(|(_, document)| document.clone()),
            set_by_system_id: actor.id,
        };
        let event = Event::new(
            EventKind::PolicyChanged,
            actor.team_id,
            EventData::Policy(Box::new(data)),
        );
        Ok((version, event))
    }

    /// How far back [`Attempt::started`] must reach for every rule.
    pub fn lookback(&self) -> Duration {
        self.rules
            .iter()
            .flat_map(|r| [r.max_runs.map(|m| m.per), r.min_interval])
            .flatten()
            .max()
            .unwrap_or_else(Duration::zero)
    }

    /// Whether any rule applying to `series` at `risk` limits how many runs it may have:
    /// such executes must be serialised for the limit to hold.
    pub fn counts_runs(&self, series: SeriesId, risk: RiskLevel) -> bool {
        self.rules
            .iter()
            .any(|r| r.applies(series, risk) && r.counts_runs())
    }

    /// Whether a rule could count the runs of `series`, whatever its risk: an execute of it
    /// must then hold the series alone (its lock exclusive) for the count to stay true.
    pub fn may_count(&self, series: SeriesId) -> bool {
        self.rules
            .iter()
            .any(|r| r.series.as_ref().is_none_or(|s| s.contains(&series)) && r.counts_runs())
    }

    /// The first rule, in order, that holds a run of `series` at `risk` for approval.
    pub fn approval_rule(&self, series: SeriesId, risk: RiskLevel) -> Option<&str> {
        self.rules
            .iter()
            .find(|r| r.run_approval && r.applies(series, risk))
            .map(|r| r.name.as_str())
    }

    /// The first rule, in order, that refuses the attempt.
    pub fn check(&self, attempt: &Attempt<'_>) -> Result<(), Denial> {
        self.rules
            .iter()
            .filter(|r| r.applies(attempt.series, attempt.risk))
            .try_for_each(|r| r.check(attempt))
    }
}

impl Rule {
    fn parse(index: usize, document: &RuleDocument) -> Result<Rule, DomainError> {
        let at = |field: &str| format!("rules[{index}].{field}");
        let name = match &document.name {
            Some(name) => text::required(&at("name"), name, text::MAX_NAME)?,
            None => format!("rules[{index}]"),
        };
        let min_risk = match &document.min_risk {
            Some(raw) => RiskLevel::parse(raw.trim()).map_err(|_| {
                DomainError::invalid(at("min_risk"), "one of low, medium, high, critical")
            })?,
            None => RiskLevel::Low,
        };
        let positive = |field: &str, n: u32| {
            if n == 0 {
                Err(DomainError::invalid(at(field), "must be at least 1"))
            } else {
                Ok(n)
            }
        };
        let max_open_runs = document
            .max_open_runs
            .map(|n| positive("max_open_runs", n))
            .transpose()?;
        let max_runs = document
            .max_runs
            .as_ref()
            .map(|m| {
                Ok::<_, DomainError>(RateLimit {
                    count: positive("max_runs.count", m.count)?,
                    per: duration(&at("max_runs.per"), &m.per)?,
                })
            })
            .transpose()?;
        let min_interval = document
            .min_interval
            .as_ref()
            .map(|raw| duration(&at("min_interval"), raw))
            .transpose()?;
        if document.freeze.len() > MAX_RULES {
            return Err(DomainError::invalid(
                at("freeze"),
                format!("at most {MAX_RULES} windows"),
            ));
        }
        let freeze = document
            .freeze
            .iter()
            .enumerate()
            .map(|(j, f)| Freeze::parse(&at(&format!("freeze[{j}]")), f))
            .collect::<Result<Vec<_>, _>>()?;
        if document
            .series
            .as_ref()
            .is_some_and(|s| s.len() > MAX_RULES * 16)
        {
            return Err(DomainError::invalid(
                at("series"),
                format!("at most {} series", MAX_RULES * 16),
            ));
        }
        Ok(Rule {
            name,
            min_risk,
            series: document
                .series
                .as_ref()
                .map(|s| s.iter().copied().map(SeriesId).collect()),
            max_open_runs,
            max_runs,
            min_interval,
            freeze,
            run_approval: document.run_approval,
        })
    }

    /// Whether it can refuse an execute or hold a run for approval.
    fn limits(&self) -> bool {
        self.counts_runs() || !self.freeze.is_empty() || self.run_approval
    }

    /// Whether it limits a series' runs (by count, rate or interval).
    fn counts_runs(&self) -> bool {
        self.max_open_runs.is_some() || self.max_runs.is_some() || self.min_interval.is_some()
    }

    pub fn applies(&self, series: SeriesId, risk: RiskLevel) -> bool {
        risk >= self.min_risk && self.series.as_ref().is_none_or(|s| s.contains(&series))
    }

    /// The window holding `now` and when the freeze ends: where windows follow one another
    /// (a Saturday's and a Sunday's), at the end of the last.
    fn frozen_until(&self, now: DateTime<Utc>) -> Option<(&Freeze, DateTime<Utc>)> {
        let (window, mut end) = self
            .freeze
            .iter()
            .find_map(|w| w.end_if_within(now).map(|end| (w, end)))?;
        // Bounded: each step moves past one window, and a rule holds few.
        for _ in 0..self.freeze.len() * 8 {
            match self.freeze.iter().find_map(|w| w.end_if_within(end)) {
                Some(later) if later > end => end = later,
                _ => break,
            }
        }
        Some((window, end))
    }

    fn check(&self, a: &Attempt<'_>) -> Result<(), Denial> {
        let deny = |limit: &str, message: String, retry_at| Denial {
            rule: format!("{}.{limit}", self.name),
            message,
            retry_at,
        };
        if let Some((window, end)) = self.frozen_until(a.now) {
            return Err(deny(
                "freeze",
                format!(
                    "executes are frozen by rule `{}` ({window}) until {}",
                    self.name,
                    end.to_rfc3339()
                ),
                Some(end),
            ));
        }
        if let Some(limit) = self.max_open_runs
            && a.open_runs >= limit
        {
            // A limit tightened below the runs already open needs more than one to end.
            let to_end = match a.open_runs - limit + 1 {
                1 => "one ends".to_owned(),
                n => format!("{n} of them end"),
            };
            return Err(deny(
                "max_open_runs",
                format!(
                    "the series has {}; rule `{}` allows at most {limit}: the next execute is \
                     allowed once {to_end}",
                    runs(a.open_runs as usize, "open run"),
                    self.name
                ),
                None,
            ));
        }
        if let Some(RateLimit { count, per }) = self.max_runs {
            let mut within: Vec<_> = a.started.iter().filter(|&&s| s > a.now - per).collect();
            if within.len() >= count as usize {
                within.sort();
                // Allowed again once enough of these starts leave the window.
                let next = *within[within.len() - count as usize] + per;
                return Err(deny(
                    "max_runs",
                    format!(
                        "the series started {} in the last {}; rule `{}` allows at most \
                         {count}: the next execute is allowed at {}",
                        runs(within.len(), "run"),
                        shown(per),
                        self.name,
                        next.to_rfc3339()
                    ),
                    Some(next),
                ));
            }
        }
        if let Some(interval) = self.min_interval
            && let Some(&last) = a.started.iter().max()
            && last + interval > a.now
        {
            let next = last + interval;
            return Err(deny(
                "min_interval",
                format!(
                    "the series' last run started at {}; rule `{}` wants {} between runs: the \
                     next execute is allowed at {}",
                    last.to_rfc3339(),
                    self.name,
                    shown(interval),
                    next.to_rfc3339()
                ),
                Some(next),
            ));
        }
        Ok(())
    }
}

/// Longest window a rule may name: a year.
const MAX_DURATION_DAYS: i64 = 366;

/// `90s`, `15m`, `24h`, `7d`: a whole number and its unit.
pub fn duration(field: &str, raw: &str) -> Result<Duration, DomainError> {
    let raw = raw.trim();
    let bad = || DomainError::invalid(field, "a duration such as 90s, 15m, 24h or 7d");
    let unit = raw.chars().last().ok_or_else(bad)?;
    let n: i64 = raw[..raw.len() - unit.len_utf8()]
        .parse()
        .map_err(|_| bad())?;
    let d = match unit {
        's' => Duration::seconds(n),
        'm' => Duration::minutes(n),
        'h' => Duration::hours(n),
        'd' => Duration::days(n),
        _ => return Err(bad()),
    };
    if d <= Duration::zero() || d > Duration::days(MAX_DURATION_DAYS) {
        return Err(DomainError::invalid(
            field,
            format!("must be more than 0 and at most {MAX_DURATION_DAYS}d"),
        ));
    }
    Ok(d)
}

/// `1 open run`, `2 open runs`.
fn runs(n: usize, what: &str) -> String {
    if n == 1 {
        format!("1 {what}")
    } else {
        format!("{n} {what}s")
    }
}

/// A duration as a person reads it: `24h`, `15m`, `90s`.
fn shown(d: Duration) -> String {
    let s = d.num_seconds();
    match s {
        s if s % 86_400 == 0 => format!("{}d", s / 86_400),
        s if s % 3_600 == 0 => format!("{}h", s / 3_600),
        s if s % 60 == 0 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

#[cfg(test)]
mod tests;
