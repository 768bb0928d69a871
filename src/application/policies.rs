//! The team's execution policy: System5 sets it (`policy.set`), every execute meets it.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use sea_orm::DbErr;

use super::reads::Reads;
use super::{CommandError, Plan};
use crate::domain::error::DomainError;
use crate::domain::ids::SeriesId;
use crate::domain::policy::{Attempt, Policy, PolicyDocument};
use crate::domain::procedure::RiskLevel;
use crate::domain::receipt::Receipt;
use crate::domain::system::Actor;
use crate::store::changes::Change;
use crate::store::policies::StoredPolicy;
use crate::wire::command::PolicyCommand;

/// A team's policy in force: as set, and as the domain evaluates it.
#[derive(Debug)]
pub struct TeamPolicy {
    pub stored: StoredPolicy,
    pub rules: Policy,
}

impl TeamPolicy {
    /// The stored version, validated again (it was when set: a failure is a corrupt row).
    pub fn of(stored: StoredPolicy) -> Result<Arc<TeamPolicy>, DbErr> {
        let rules = Policy::parse(&stored.document)
            .map_err(|e| DbErr::Type(format!("team_policy version {}: {e}", stored.version)))?;
        Ok(Arc::new(TeamPolicy { stored, rules }))
    }

    /// What the policy says of executing `series` (at `risk`) at `now`: refused (the rule and
    /// why), or allowed, held for System5's approval under a rule or not. The execute and its
    /// preview both ask here; `activity` reads the series' open runs and its starts since the
    /// time given, and is called only where a rule counts runs.
    pub async fn judge(
        &self,
        series: SeriesId,
        risk: RiskLevel,
        now: DateTime<Utc>,
        activity: impl AsyncFnOnce(DateTime<Utc>) -> Result<(u32, Vec<DateTime<Utc>>), DbErr>,
    ) -> Result<Judgement, DbErr> {
        let (open_runs, started) = if self.rules.counts_runs(series, risk) {
            activity(now - self.rules.lookback()).await?
        } else {
            (0, Vec::new())
        };
        let attempt = Attempt {
            series,
            risk,
            now,
            open_runs,
            started: &started,
        };
        Ok(match self.rules.check(&attempt) {
            Err(denial) => Judgement::Refused(DomainError::PolicyDenied {
                rule: denial.rule,
                message: denial.message,
            }),
            Ok(()) => Judgement::Allowed {
                approval_rule: self.rules.approval_rule(series, risk).map(str::to_owned),
            },
        })
    }
}

/// The policy's answer to an execute ([`TeamPolicy::judge`]).
#[derive(Debug)]
pub enum Judgement {
    Refused(DomainError),
    /// Allowed; held for System5's approval when a rule (named) asks for it.
    Allowed {
        approval_rule: Option<String>,
    },
}

pub async fn handle(
    reads: &mut Reads<'_>,
    actor: &Actor,
    command: PolicyCommand,
    now: DateTime<Utc>,
) -> Result<Plan, CommandError> {
    match command {
        PolicyCommand::SetPolicy(document) => set(reads, actor, document, now).await,
    }
}

async fn set(
    reads: &mut Reads<'_>,
    actor: &Actor,
    document: PolicyDocument,
    now: DateTime<Utc>,
) -> Result<Plan, CommandError> {
    let previous = reads.policy(actor.team_id).await?;
    let (version, event) = Policy::replace(
        &document,
        previous
            .as_ref()
            .map(|p| (p.stored.version, &p.stored.document)),
        actor,
    )?;
    for (i, rule) in document.rules.iter().enumerate() {
        for (j, &id) in rule.series.iter().flatten().enumerate() {
            named_series_exists(reads, actor, id, &format!("rules[{i}].series[{j}]")).await?;
        }
    }
    Ok(Plan {
        changes: vec![Change::NewPolicy {
            team: actor.team_id,
            policy: StoredPolicy {
                version,
                document,
                set_by: actor.id,
                set_at: now,
            },
        }],
        events: vec![event],
        receipt: Receipt::Policy { version },
    })
}

/// A rule may only name a series of the team: one that names another would never apply.
async fn named_series_exists(
    reads: &Reads<'_>,
    actor: &Actor,
    id: uuid::Uuid,
    field: &str,
) -> Result<(), CommandError> {
    if reads.team_of_series(SeriesId(id)).await? == Some(actor.team_id) {
        return Ok(());
    }
    let mut series_of_version = reads.series_of_version(id).await?;
    if let Some(series) = series_of_version
        && reads.team_of_series(series).await? != Some(actor.team_id)
    {
        series_of_version = None;
    }
    let why = match series_of_version {
        Some(series) => format!("{id} is a version's id: name its series, {}", series.0),
        None => format!("the team has no procedure series {id} (`sop procedure list` shows them)"),
    };
    Err(DomainError::invalid(field, why).into())
}
