//! Domain ↔ row conversions: how the domain's closed sets and JSON columns are stored.

use sea_orm::DbErr;

use crate::domain::procedure::{Impact, ProcedureStatus, RiskLevel};
use crate::domain::review::ReviewOutcome;
use crate::domain::run::{InitiativeStatus, RunStatus, TaskStatus, Verdict};
use crate::domain::system::SystemKind;

/// A closed set of the domain, stored as its names (`as_str`): the database holds no spelling
/// of its own, and a migration that widens a CHECK lists the names it allows then.
pub trait Stored: Copy + 'static {
    const ALL: &'static [Self];
    fn as_str(self) -> &'static str;
}

macro_rules! stored {
    ($($set:ty),* $(,)?) => {$(
        impl Stored for $set {
            const ALL: &'static [$set] = <$set>::ALL;
            fn as_str(self) -> &'static str {
                <$set>::as_str(self)
            }
        }

        impl From<$set> for String {
            fn from(value: $set) -> String {
                value.as_str().to_owned()
            }
        }
    )*};
}

stored!(
    SystemKind,
    ProcedureStatus,
    RiskLevel,
    Impact,
    RunStatus,
    InitiativeStatus,
    TaskStatus,
    Verdict,
    ReviewOutcome,
);

/// The value stored in `column` as `T`; a name `T` does not have is a corrupt row.
pub fn read<T: Stored>(column: &str, stored: &str) -> Result<T, DbErr> {
    T::ALL
        .iter()
        .copied()
        .find(|value| value.as_str() == stored)
        .ok_or_else(|| DbErr::Type(format!("column {column}: {stored:?} is none of its values")))
}

/// [`read`] of a nullable column.
pub fn read_opt<T: Stored>(column: &str, stored: Option<&str>) -> Result<Option<T>, DbErr> {
    stored.map(|s| read(column, s)).transpose()
}

/// JSON array columns (`depends_on`, `skills`) to typed vectors. A value that does not parse
/// is a corrupt row, reported as a database error rather than guessed at.
pub fn from_json<T: serde::de::DeserializeOwned>(
    column: &str,
    value: serde_json::Value,
) -> Result<T, DbErr> {
    serde_json::from_value(value).map_err(|e| DbErr::Type(format!("column {column}: {e}")))
}

pub fn to_json<T: serde::Serialize>(value: &T) -> serde_json::Value {
    // Invariant: vectors of strings and UUIDs always serialise.
    serde_json::to_value(value).unwrap_or(serde_json::Value::Null)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// How serde names `value` on the wire.
    fn serde_name(value: impl serde::Serialize) -> String {
        serde_json::to_value(value)
            .unwrap()
            .as_str()
            .unwrap()
            .to_owned()
    }

    fn round_trips<T: Stored + serde::Serialize + PartialEq + std::fmt::Debug>() {
        for &value in T::ALL {
            assert_eq!(read::<T>("column", value.as_str()).unwrap(), value);
            assert_eq!(serde_name(value), value.as_str(), "stored as on the wire");
        }
        assert!(matches!(
            read::<T>("column", "paused?"),
            Err(DbErr::Type(_))
        ));
    }

    #[test]
    fn stored_values_are_the_wire_values_and_read_back() {
        round_trips::<SystemKind>();
        round_trips::<ProcedureStatus>();
        round_trips::<RiskLevel>();
        round_trips::<Impact>();
        round_trips::<RunStatus>();
        round_trips::<InitiativeStatus>();
        round_trips::<TaskStatus>();
        round_trips::<Verdict>();
        round_trips::<ReviewOutcome>();
    }
}
