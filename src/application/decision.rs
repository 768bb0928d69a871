//! What a use case decides: the plan of an accepted command, or why it is rejected.

use uuid::Uuid;

use crate::domain::error::{DomainError, ErrorCode};
use crate::domain::event::Event;
use crate::domain::receipt::Receipt;
use crate::store::changes::Change;

/// An accepted command, decided and not yet written: what to write, what to publish, what to
/// tell the sender. The pipeline applies it.
#[derive(Debug)]
pub struct Plan {
    pub changes: Vec<Change>,
    pub events: Vec<Event>,
    pub receipt: Receipt,
}

/// A command refused for a reason the sender can act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    pub code: ErrorCode,
    pub message: String,
    pub field: Option<String>,
}

impl Rejection {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Rejection {
        Rejection {
            code,
            message: message.into(),
            field: None,
        }
    }

    pub fn not_found(what: &str, id: Uuid) -> Rejection {
        Rejection::new(ErrorCode::NotFound, format!("no {what} {id}"))
    }
}

impl From<DomainError> for Rejection {
    fn from(e: DomainError) -> Rejection {
        Rejection {
            code: e.code(),
            field: e.field().map(str::to_owned),
            message: e.to_string(),
        }
    }
}

/// Why a use case gives no plan.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    /// Final: it becomes the command's outcome.
    #[error("rejected: {}", .0.message)]
    Rejected(Rejection),
    /// A read failed: the group commits nothing and the command is tried again.
    #[error(transparent)]
    Store(#[from] sea_orm::DbErr),
}

impl From<DomainError> for CommandError {
    fn from(e: DomainError) -> CommandError {
        CommandError::Rejected(e.into())
    }
}

impl From<Rejection> for CommandError {
    fn from(r: Rejection) -> CommandError {
        CommandError::Rejected(r)
    }
}
