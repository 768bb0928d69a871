//! The store's own closed sets, string-backed. The domain's closed sets (statuses, system
//! types, risk levels…) are stored as their names and read back by the store's mapping,
//! so they are spelled once, in the domain.

use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};

macro_rules! string_enum {
    ($name:ident { $($variant:ident = $value:literal),* $(,)? }) => {
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, EnumIter, DeriveActiveEnum, Serialize, Deserialize)]
        #[sea_orm(rs_type = "String", db_type = "String(StringLen::N(24))")]
        pub enum $name {
            $(#[sea_orm(string_value = $value)] #[serde(rename = $value)] $variant,)*
        }

    };
}

string_enum!(RetireKind {
    Superseded = "superseded",
    Retired = "retired",
    Discarded = "discarded",
});

string_enum!(CommandStatus {
    Accepted = "accepted",
    Rejected = "rejected",
});
