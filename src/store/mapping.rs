//! Domain ↔ entity enum conversions, the only place the two spellings meet.

use entity::enums as db;

use crate::domain::procedure::{Impact, ProcedureStatus, RiskLevel};
use crate::domain::review::ReviewOutcome;
use crate::domain::run::{InitiativeStatus, RunStatus, TaskStatus, Verdict};
use crate::domain::system::SystemKind;

macro_rules! both_ways {
    ($domain:ty, $db:ty { $($variant:ident),* $(,)? }) => {
        impl From<$domain> for $db {
            fn from(v: $domain) -> $db {
                match v { $(<$domain>::$variant => <$db>::$variant),* }
            }
        }
        impl From<$db> for $domain {
            fn from(v: $db) -> $domain {
                match v { $(<$db>::$variant => <$domain>::$variant),* }
            }
        }
    };
}

both_ways!(
    SystemKind,
    db::SystemType {
        System1,
        System2,
        System3,
        System4,
        System5
    }
);
both_ways!(
    ProcedureStatus,
    db::ProcedureStatus {
        Draft,
        Approved,
        Retired
    }
);
both_ways!(
    RiskLevel,
    db::RiskLevel {
        Low,
        Medium,
        High,
        Critical
    }
);
both_ways!(Impact, db::Impact { Low, Medium, High });
both_ways!(
    RunStatus,
    db::RunStatus {
        AwaitingApproval,
        Started,
        Completed,
        Failed,
        Canceled
    }
);
both_ways!(
    InitiativeStatus,
    db::InitiativeStatus {
        Pending,
        InProgress,
        Completed,
        Canceled
    }
);
both_ways!(
    TaskStatus,
    db::TaskStatus {
        Pending,
        InProgress,
        Blocked,
        Completed,
        Approved,
        Rejected,
        Canceled
    }
);
both_ways!(Verdict, db::Verdict { Approve, Reject });
both_ways!(
    ReviewOutcome,
    db::ReviewOutcome {
        Succeeded,
        PartiallySucceeded,
        Failed
    }
);

/// JSON array columns (`depends_on`, `skills`) to typed vectors. A value that does not parse
/// is a corrupt row, reported as a database error rather than guessed at.
pub fn from_json<T: serde::de::DeserializeOwned>(
    column: &str,
    value: serde_json::Value,
) -> Result<T, sea_orm::DbErr> {
    serde_json::from_value(value).map_err(|e| sea_orm::DbErr::Type(format!("column {column}: {e}")))
}

pub fn to_json<T: serde::Serialize>(value: &T) -> serde_json::Value {
    // Invariant: vectors of strings and UUIDs always serialise.
    serde_json::to_value(value).unwrap_or(serde_json::Value::Null)
}

#[cfg(test)]
mod tests {
    use super::*;
    use sea_orm::ActiveEnum;

    /// How serde names `value` on the wire.
    fn serde_name(value: impl serde::Serialize) -> String {
        serde_json::to_value(value)
            .unwrap()
            .as_str()
            .unwrap()
            .to_owned()
    }

    #[test]
    fn stored_values_are_the_wire_values() {
        for k in SystemKind::ALL.iter().copied() {
            assert_eq!(db::SystemType::from(k).to_value(), k.as_str());
            assert_eq!(serde_name(k), k.as_str());
        }
        for s in TaskStatus::ALL.iter().copied() {
            assert_eq!(db::TaskStatus::from(s).to_value(), s.as_str());
            assert_eq!(serde_name(s), s.as_str());
        }
        for s in RunStatus::ALL.iter().copied() {
            assert_eq!(db::RunStatus::from(s).to_value(), s.as_str());
            assert_eq!(serde_name(s), s.as_str());
        }
        for s in InitiativeStatus::ALL.iter().copied() {
            assert_eq!(db::InitiativeStatus::from(s).to_value(), s.as_str());
            assert_eq!(serde_name(s), s.as_str());
        }
        for r in RiskLevel::ALL.iter().copied() {
            assert_eq!(db::RiskLevel::from(r).to_value(), r.as_str());
            assert_eq!(serde_name(r), r.as_str());
        }
        for i in Impact::ALL.iter().copied() {
            assert_eq!(db::Impact::from(i).to_value(), i.as_str());
            assert_eq!(serde_name(i), i.as_str());
        }
        for o in ReviewOutcome::ALL.iter().copied() {
            assert_eq!(db::ReviewOutcome::from(o).to_value(), o.as_str());
            assert_eq!(serde_name(o), o.as_str());
        }
    }
}
