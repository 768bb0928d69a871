//! Query requests (core request/reply through the NATS service API, never stored in a stream)
//! and the error body they answer with.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Who may ask a query.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Asker {
    /// A system of the team the answer is about, named as `actor` (and signing, when it has a
    /// key): the answer is scoped to its team.
    Member,
    /// Anyone: it answers who is who before the asker knows its own id, so it takes no
    /// `actor`, needs no signature, and reveals only names, types, skills and ids (never keys).
    Anyone,
}

/// Declares every query once: its name (the subject suffix, `<prefix>sop.query.<name>`), its
/// request and answer types, who may ask it and what it answers. From this table come
/// [`QueryName`], the contract's request/reply channels and the MCP query tools.
macro_rules! queries {
    ($($variant:ident = $name:literal ($request:ty => $answer:ty) by $asker:ident: $doc:literal;)*) => {
        subject_names!(
            /// Every query, named as its subject suffix (`<prefix>sop.query.<name>`).
            QueryName { $($variant = $name,)* }
        );

        impl QueryName {
            pub fn asker(self) -> Asker {
                match self { $(QueryName::$variant => Asker::$asker,)* }
            }

            /// What it answers, in a sentence or two.
            pub fn doc(self) -> &'static str {
                match self { $(QueryName::$variant => $doc,)* }
            }
        }

        /// Each query with its request and answer types (the contract describes them).
        pub trait QueryVisitor {
            fn visit<R: schemars::JsonSchema + serde::de::DeserializeOwned, A: schemars::JsonSchema>(
                &mut self,
                name: QueryName,
            );
        }

        pub fn visit_queries(visitor: &mut impl QueryVisitor) {
            use super::answer::*;
            use super::outcome::Outcome;
            $(visitor.visit::<$request, $answer>(QueryName::$variant);)*
        }
    };
}

queries! {
    GetProcedure = "procedure.get" (ProcedureQuery => ProcedureDetail) by Member:
        "A procedure version with its task templates.";
    ListProcedures = "procedure.list" (ListQuery => ProcedureList) by Member:
        "The team's procedure versions, by status and/or part of the name; paged by series, then version.";
    History = "procedure.history" (SeriesQuery => History) by Member:
        "Every version of a series: who drafted, approved, rejected, retired each, and when; paged by version.";
    Diff = "procedure.diff" (DiffQuery => VersionDiff) by Member:
        "What changed between two versions: fields; templates added, removed, changed.";
    Preview = "procedure.preview" (ProcedureQuery => Preview) by Member:
        "Dry run: the initiative and tasks executing a version would create, and who would work them.";
    GetRun = "run.get" (RunQuery => RunDetail) by Member:
        "A run with its initiative, post-run review and tasks; the tasks paged in creation order.";
    ListRuns = "run.list" (RunListQuery => RunList) by Member:
        "The team's runs, by status and/or series, in creation order; paged. System5 finds the runs awaiting its approval with `status: awaiting_approval`.";
    ListTasks = "task.list" (TaskListQuery => TaskList) by Member:
        "Tasks assigned to one system of the team (the asker when not named), by status or readiness; paged in creation order. A System1's work list: `ready: true` gives what it can start now.";
    Trace = "initiative.trace" (InitiativeQuery => Trace) by Member:
        "From an initiative back to the procedure version and run that made it.";
    Audit = "audit.get" (AuditQuery => Audit) by Member:
        "Every event of a series or a run, with actor and time, from the database; paged by seq.";
    Outcome = "command.outcome" (OutcomeQuery => Outcome) by Member:
        "The outcome of a command, by command id.";
    GetSystem = "system.get" (SystemQuery => SystemIdentity) by Anyone:
        "Who a system is: by team and name (or type, when the team has one of that type) → id, type, team, skills, whether it has a key.";
    GetTeam = "team.get" (TeamQuery => TeamIdentity) by Anyone:
        "A team's systems (ids, names, types, skills), by team name or by one of its systems' ids.";
    GetPolicy = "policy.get" (PolicyQuery => PolicyAnswer) by Member:
        "The asking system's team's execution policy in force, with its version (0: none set).";
}

impl QueryName {
    /// Whether anyone may ask it ([`Asker::Anyone`]).
    pub fn is_identity(self) -> bool {
        self.asker() == Asker::Anyone
    }
}

/// Header carrying the error text of a failed query (NATS service API convention).
pub const SERVICE_ERROR_HEADER: &str = "Nats-Service-Error";
/// Header carrying an HTTP-like status of a failed query (400, 403, 404, 409, 413, 500).
pub const SERVICE_ERROR_CODE_HEADER: &str = "Nats-Service-Error-Code";

#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ProcedureQuery {
    /// The asking system (queries answer within its team).
    pub actor: Uuid,
    pub procedure_id: Uuid,
}

#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    pub actor: Uuid,
    /// Only versions in this status.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<crate::domain::procedure::ProcedureStatus>")]
    pub status: Option<String>,
    /// Case-insensitive part of the name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// At most this many versions in this answer (default 50, at most 500); a page also ends
    /// early when the next version would make the answer larger than the server accepts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u64>,
    /// The previous answer's `next_cursor`, unchanged, for the next page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cursor: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SeriesQuery {
    pub actor: Uuid,
    pub series_id: Uuid,
    /// At most this many versions in this answer (default 50, at most 500); a page also ends
    /// early when the next version would make the answer larger than the server accepts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u64>,
    /// The previous answer's `next_cursor`, unchanged, for the next page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cursor: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DiffQuery {
    pub actor: Uuid,
    /// Procedure (version) ids.
    pub from: Uuid,
    pub to: Uuid,
}

#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RunQuery {
    pub actor: Uuid,
    pub run_id: Uuid,
    /// At most this many tasks in this answer (default 100, at most 1000); a page also ends
    /// early when the next task would make the answer larger than the server accepts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u64>,
    /// The previous answer's `next_cursor`, unchanged, for the next page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cursor: Option<String>,
}

/// The team's runs, newest last: System5's runs awaiting approval, a series' runs.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RunListQuery {
    pub actor: Uuid,
    /// Only runs in this status (`awaiting_approval`, `started`, `completed`, `failed`,
    /// `canceled`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<crate::domain::run::RunStatus>")]
    pub status: Option<String>,
    /// Only runs of this series.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub series_id: Option<Uuid>,
    /// At most this many runs in this answer (default 20, at most 100); a page also ends
    /// early when the next run would make the answer larger than the server accepts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u64>,
    /// The previous answer's `next_cursor`, unchanged, for the next page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cursor: Option<String>,
}

/// Tasks assigned to one system of the asker's team: a System1's work list.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TaskListQuery {
    pub actor: Uuid,
    /// Whose tasks: the asker's when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub assignee_system_id: Option<Uuid>,
    /// Only tasks in this status (`pending`, `in_progress`, `blocked`, `completed`,
    /// `approved`, `rejected`, `canceled`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<crate::domain::run::TaskStatus>")]
    pub status: Option<String>,
    /// Only tasks that can be started now (`true`: pending and ready), or only those that
    /// cannot (`false`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready: Option<bool>,
    /// At most this many tasks in this answer (default 50, at most 500); a page also ends
    /// early when the next task would make the answer larger than the server accepts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u64>,
    /// The previous answer's `next_cursor`, unchanged, for the next page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cursor: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct InitiativeQuery {
    pub actor: Uuid,
    pub initiative_id: Uuid,
}

#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AuditQuery {
    pub actor: Uuid,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub series_id: Option<Uuid>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_id: Option<Uuid>,
    /// At most this many entries in this answer (default 1000, at most 10000); a page also ends
    /// early when the next entry would make the answer larger than the server accepts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u64>,
    /// The previous answer's `next_cursor`, unchanged, for the next page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cursor: Option<String>,
}

/// The asking system's team's policy.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PolicyQuery {
    pub actor: Uuid,
}

#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OutcomeQuery {
    pub actor: Uuid,
    pub command_id: Uuid,
}

/// A system by its team's name and its own (`System1/alpha`), or by its type (`System5`,
/// `system5`) when the team has exactly one system of that type.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SystemQuery {
    pub team: String,
    pub name: String,
}

/// A team by its name, or the team of a system by the system's id: give exactly one.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TeamQuery {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub team: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system_id: Option<Uuid>,
}

/// The body of a failed query: the same codes as command rejections.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct QueryFailure {
    pub error: super::outcome::ErrorBody,
}
