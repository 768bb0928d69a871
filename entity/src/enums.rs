//! String-backed enums stored in the tables. Their values are the wire values.

use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};

macro_rules! string_enum {
    ($name:ident { $($variant:ident = $value:literal),* $(,)? }) => {
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, EnumIter, DeriveActiveEnum, Serialize, Deserialize)]
        #[sea_orm(rs_type = "String", db_type = "String(StringLen::N(24))")]
        pub enum $name {
            $(#[sea_orm(string_value = $value)] #[serde(rename = $value)] $variant,)*
        }

        impl $name {
            /// Every stored value, for the migration's CHECK constraint.
            pub const VALUES: &'static [&'static str] = &[$($value),*];
        }
    };
}

string_enum!(SystemType {
    System1 = "system1",
    System2 = "system2",
    System3 = "system3",
    System4 = "system4",
    System5 = "system5",
});

string_enum!(ProcedureStatus {
    Draft = "draft",
    Approved = "approved",
    Retired = "retired",
});

string_enum!(RiskLevel {
    Low = "low",
    Medium = "medium",
    High = "high",
    Critical = "critical",
});

string_enum!(Impact {
    Low = "low",
    Medium = "medium",
    High = "high",
});

string_enum!(RetireKind {
    Superseded = "superseded",
    Retired = "retired",
    Discarded = "discarded",
});

string_enum!(RunStatus {
    AwaitingApproval = "awaiting_approval",
    Started = "started",
    Completed = "completed",
    Failed = "failed",
    Canceled = "canceled",
});

string_enum!(InitiativeStatus {
    Pending = "pending",
    InProgress = "in_progress",
    Completed = "completed",
    Canceled = "canceled",
});

string_enum!(TaskStatus {
    Pending = "pending",
    InProgress = "in_progress",
    Blocked = "blocked",
    Completed = "completed",
    Approved = "approved",
    Rejected = "rejected",
    Canceled = "canceled",
});

string_enum!(Verdict {
    Approve = "approve",
    Reject = "reject",
});

string_enum!(ReviewOutcome {
    Succeeded = "succeeded",
    PartiallySucceeded = "partially_succeeded",
    Failed = "failed",
});

string_enum!(CommandStatus {
    Accepted = "accepted",
    Rejected = "rejected",
});
