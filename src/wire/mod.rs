//! The contract on the bus: subjects, command envelopes and payloads, outcomes and event
//! envelopes. Serde types only: decoding into domain commands happens in `bus`, and nothing
//! here touches NATS or the database.

/// A closed set of names, each spelled as its subject: `ALL`, `as_str`, `parse`, `Display`.
macro_rules! subject_names {
    ($(#[$doc:meta])* $enum:ident { $($variant:ident = $name:literal),* $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $enum { $($variant),* }

        impl $enum {
            pub const ALL: &'static [$enum] = &[$($enum::$variant),*];

            pub fn as_str(self) -> &'static str {
                match self { $($enum::$variant => $name),* }
            }

            pub fn parse(name: &str) -> Option<$enum> {
                match name { $($name => Some($enum::$variant),)* _ => None }
            }
        }

        impl std::fmt::Display for $enum {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

pub mod admin;
pub mod answer;
pub mod command;
pub mod event;
pub mod fault;
pub mod outcome;
pub mod page;
pub mod query;
pub mod signature;
pub mod subjects;
pub mod token;
