//! Every business rule a command can break, as data. The wire code of each is decided here,
//! once, by [`DomainError::code`]; messages are for people, codes are for programs.

use super::ids::{ProcedureId, SystemId, TaskId, TeamId, Version};
use super::system::SystemKind;

/// The stable rejection codes published on the wire (docs/reference.md, "Outcomes").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, strum::VariantArray, strum::IntoStaticStr)]
#[strum(serialize_all = "snake_case")]
pub enum ErrorCode {
    /// The bytes are not a command: malformed JSON, missing or mistyped fields.
    InvalidPayload,
    /// The envelope's schema version is not one this worker speaks.
    UnsupportedSchema,
    /// No command of that name exists.
    UnknownCommand,
    /// The command is well-formed but its content breaks a validation rule.
    ValidationFailed,
    /// The acting system may not do this (wrong type, wrong team, not the assignee, unknown).
    Forbidden,
    /// A referenced entity does not exist.
    NotFound,
    /// The entity is not in a state that allows this command.
    InvalidState,
    /// The command raced or contradicts newer data (stale version, already recorded).
    Conflict,
    /// The team's policy does not allow this now (a freeze, a run limit).
    PolicyDenied,
    /// A message this would publish (an event, an outcome, a query's answer) is larger than
    /// the NATS server accepts; nothing was applied.
    TooLarge,
    /// The worker could not process the command (a bug or a persistent infrastructure fault).
    Internal,
}

impl ErrorCode {
    pub const ALL: &'static [ErrorCode] = <ErrorCode as strum::VariantArray>::VARIANTS;

    pub fn as_str(self) -> &'static str {
        self.into()
    }

    /// Whether a command rejected with it is kept as a dead letter: it never decoded (its
    /// bytes are kept to be looked at), or the worker gave up on it.
    pub fn dead_letters(self) -> bool {
        matches!(
            self,
            ErrorCode::InvalidPayload
                | ErrorCode::UnsupportedSchema
                | ErrorCode::UnknownCommand
                | ErrorCode::Internal
        )
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DomainError {
    #[error("{field}: {message}")]
    Invalid { field: String, message: String },

    #[error("this command needs a {required}; the acting system is a {actual}")]
    WrongSystem {
        required: SystemKind,
        actual: SystemKind,
    },

    #[error("the acting system belongs to team {actor_team}, not to team {resource_team}")]
    WrongTeam {
        actor_team: TeamId,
        resource_team: TeamId,
    },

    #[error("task {task} is assigned to system {assignee}; only it (or System3) may do this")]
    NotAssignee { task: TaskId, assignee: SystemId },

    #[error("{entity} is {status}: cannot {action}")]
    InvalidTransition {
        entity: String,
        status: String,
        action: &'static str,
    },

    #[error("version {requested} is not the latest version of its series ({latest} is)")]
    NotLatestVersion { requested: Version, latest: Version },

    #[error("the series already has an open draft ({version}, {draft}); edit that draft instead")]
    OpenDraftExists {
        draft: ProcedureId,
        version: Version,
    },

    /// `rule` is the rule and its limit (`night.freeze`); `message` gives the figures.
    #[error("{message}")]
    PolicyDenied { rule: String, message: String },

    #[error("the series has no approved version to execute")]
    NoApprovedVersion,

    #[error("expected to execute {expected}, but the approved version is {current}")]
    VersionMismatch { expected: Version, current: Version },

    #[error(
        "procedure {procedure}'s content is {current}, not {named}, the digest this approval \
         names: it changed since it was read; read it again (procedure.get) and approve what \
         you read"
    )]
    DigestMismatch {
        procedure: ProcedureId,
        current: String,
        named: String,
    },

    #[error("task {task} is not ready: waiting for {waiting_on:?} to be approved")]
    NotReady {
        task: TaskId,
        waiting_on: Vec<TaskId>,
    },

    #[error("the team has no {kind} to assign task at position {position} to")]
    NoAssignee { kind: SystemKind, position: u32 },

    #[error("the run is {status}; a post-run review needs an ended run")]
    RunNotEnded { status: String },

    #[error("the run already has its post-run review")]
    AlreadyReviewed,

    #[error(
        "the run holds {limit} tasks, the most one run may: cancel it and execute the procedure again"
    )]
    RunFull { limit: usize },
}

impl DomainError {
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> DomainError {
        DomainError::Invalid {
            field: field.into(),
            message: message.into(),
        }
    }

    pub fn transition(
        entity: impl Into<String>,
        status: impl std::fmt::Display,
        action: &'static str,
    ) -> DomainError {
        DomainError::InvalidTransition {
            entity: entity.into(),
            status: status.to_string(),
            action,
        }
    }

    pub fn code(&self) -> ErrorCode {
        match self {
            DomainError::Invalid { .. } => ErrorCode::ValidationFailed,
            DomainError::WrongSystem { .. }
            | DomainError::WrongTeam { .. }
            | DomainError::NotAssignee { .. } => ErrorCode::Forbidden,
            DomainError::InvalidTransition { .. }
            | DomainError::OpenDraftExists { .. }
            | DomainError::NoApprovedVersion
            | DomainError::NotReady { .. }
            | DomainError::NoAssignee { .. }
            | DomainError::RunNotEnded { .. }
            | DomainError::RunFull { .. } => ErrorCode::InvalidState,
            DomainError::NotLatestVersion { .. }
            | DomainError::VersionMismatch { .. }
            | DomainError::DigestMismatch { .. }
            | DomainError::AlreadyReviewed => ErrorCode::Conflict,
            DomainError::PolicyDenied { .. } => ErrorCode::PolicyDenied,
        }
    }

    /// The offending field, when the rule concerns one.
    pub fn field(&self) -> Option<&str> {
        match self {
            DomainError::Invalid { field, .. } => Some(field),
            DomainError::DigestMismatch { .. } => Some("digest"),
            DomainError::PolicyDenied { rule, .. } => Some(rule),
            _ => None,
        }
    }
}
