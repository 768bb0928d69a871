//! Command messages as they travel: a versioned envelope around a typed payload per command.
//! Payloads refuse unknown fields, so a misspelt field is an `invalid_payload` rejection
//! rather than a silently ignored value.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

pub use crate::domain::policy::PolicyDocument;
use crate::domain::procedure::{Impact, MetaDraft, RiskLevel};
use crate::domain::review::{MAX_LIST_ITEMS, ReviewDraft, ReviewOutcome};
use crate::domain::run::Verdict;
use crate::domain::system::SystemKind;
use crate::domain::template::{
    MAX_POSITION, MAX_SKILL_LEN, MAX_SKILLS, MAX_TEMPLATES, TemplateDraft,
};
use crate::domain::text::{MAX_NAME, MAX_TEXT};

/// The envelope schema version this worker speaks.
pub const SCHEMA_VERSION: u32 = 1;

/// The largest command, envelope and headers, the commands stream stores.
pub const MAX_COMMAND_BYTES: usize = 1024 * 1024;

/// Header carrying a core-NATS inbox the outcome is also sent to.
pub const REPLY_TO_HEADER: &str = "Sop-Reply-To";
/// W3C trace context: taken from a command and set on every event it causes.
pub const TRACEPARENT_HEADER: &str = "traceparent";
/// JetStream's de-duplication header; set to the command id.
pub const MSG_ID_HEADER: &str = "Nats-Msg-Id";

/// Declares every command once: its name (the subject), the family that handles it, its
/// payload type, who sends it and what it does. From this one table come [`CommandName`], the
/// typed [`Command`], decoding a payload by name, and the contract's list of commands.
macro_rules! commands {
    ($(
        $(#[$family_doc:meta])*
        $family:ident($family_enum:ident) {
            $($variant:ident = $name:literal ($payload:ty) by $sender:literal: $summary:literal;)*
        }
    )*) => {
        subject_names!(
            /// Every command, named as its subject (without prefix).
            CommandName { $($($variant = $name,)*)* }
        );

        /// A decoded command, by what it acts on: each family goes to its own handler, which
        /// matches only its own commands. Free text and enum strings are still raw here, so
        /// validation happens once, in the domain, with field-precise errors.
        #[derive(Debug, Clone)]
        pub enum Command { $($(#[$family_doc])* $family($family_enum),)* }

        $(
            $(#[$family_doc])*
            #[derive(Debug, Clone)]
            pub enum $family_enum { $($variant($payload),)* }
        )*

        impl CommandName {
            /// Who may send it.
            pub fn sender(self) -> &'static str {
                match self { $($(CommandName::$variant => $sender,)*)* }
            }

            /// What it does, in a sentence.
            pub fn summary(self) -> &'static str {
                match self { $($(CommandName::$variant => $summary,)*)* }
            }
        }

        impl Command {
            /// The payload of command `name`, as its type.
            pub fn decode(
                name: CommandName,
                payload: serde_json::Value,
            ) -> Result<Command, crate::wire::fault::Fault> {
                Ok(match name {
                    $($(CommandName::$variant => {
                        Command::$family($family_enum::$variant(crate::wire::fault::from_value(payload)?))
                    })*)*
                })
            }

            pub fn name(&self) -> CommandName {
                match self {
                    $($(Command::$family($family_enum::$variant(_)) => CommandName::$variant,)*)*
                }
            }
        }

        /// Each command with its payload type (the contract describes them).
        pub trait PayloadVisitor {
            fn visit<P: schemars::JsonSchema + serde::de::DeserializeOwned>(&mut self, name: CommandName);
        }

        pub fn visit_payloads(visitor: &mut impl PayloadVisitor) {
            $($(visitor.visit::<$payload>(CommandName::$variant);)*)*
        }
    };
}

commands! {
    /// Drafts, changes and executes procedure versions (`application::procedures`).
    Procedure(ProcedureCommand) {
        DraftProcedure = "procedure.draft" (DraftProcedure)
            by "system4": "Draft version 1 of a new procedure series.";
        ReviseProcedure = "procedure.revise" (ChangeProcedure)
            by "system4": "Start a new draft (latest + 1) from the latest, non-draft version.";
        EditProcedure = "procedure.edit" (ChangeProcedure)
            by "system4": "Change a draft in place; `tasks` replaces all templates.";
        DiscardProcedure = "procedure.discard" (ProcedureWithReason)
            by "system4": "Abandon a draft; it is retired without approval.";
        ApproveProcedure = "procedure.approve" (ApproveProcedure)
            by "system5": "Approve a draft; the series' approved version is retired.";
        RejectProcedure = "procedure.reject" (ProcedureWithReason)
            by "system5": "Send a draft back to System4 with a reason.";
        RetireProcedure = "procedure.retire" (ProcedureWithReason)
            by "system5": "Take the approved version out of service.";
        ExecuteProcedure = "procedure.execute" (ExecuteProcedure)
            by "system3": "Run the series' approved version: run, initiative, tasks.";
    }
    /// Changes a run: its tasks, its status or its review (`application::runs`).
    Run(RunCommand) {
        StartTask = "task.start" (TaskRef)
            by "the task's assignee": "Start a ready pending task.";
        CompleteTask = "task.complete" (CompleteTask)
            by "the task's assignee": "Complete an in-progress task with its result.";
        BlockTask = "task.block" (TaskWithReason)
            by "the task's assignee": "Block an in-progress task, with the reason.";
        UnblockTask = "task.unblock" (UnblockTask)
            by "the task's assignee or system3": "Put a blocked task back to pending.";
        ReviewTask = "task.review" (ReviewTask)
            by "system3": "Approve or reject a completed task.";
        CancelTask = "task.cancel" (TaskWithReason)
            by "system3": "Cancel a task that is not in progress, with its dependents.";
        ReplaceTask = "task.replace" (ReplaceTask)
            by "system3": "Replace a rejected or blocked task by a new pending one.";
        CancelRun = "run.cancel" (RunWithReason)
            by "system3": "Cancel a run, started or awaiting approval, and its open tasks.";
        ApproveRun = "run.approve" (ApproveRun)
            by "system5": "Let a run awaiting approval start: its first tasks become ready.";
        RejectRun = "run.reject" (RunWithReason)
            by "system5": "Refuse a run awaiting approval, with the reason: it ends canceled.";
        ReviewInitiative = "initiative.review" (ReviewInitiative)
            by "system3": "Record the post-run review of an ended run, once.";
    }
    /// Sets the team's execution policy (`application::policies`).
    Policy(PolicyCommand) {
        SetPolicy = "policy.set" (PolicyDocument)
            by "system5": "Replace the team's execution policy, whole: the rules that limit when procedures may be executed.";
    }
}

/// The envelope as read: every field optional, so that a command missing one still yields its
/// id and actor for the rejection outcome; a field the contract does not have is refused.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawEnvelope {
    pub schema_version: Option<u32>,
    pub command_id: Option<Uuid>,
    pub actor: Option<Uuid>,
    pub correlation_id: Option<String>,
    pub payload: Option<serde_json::Value>,
}

/// Longest `correlation_id` a command may carry.
pub const MAX_CORRELATION_ID: usize = 200;

/// The envelope as sent by clients.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
#[schemars(rename = "Command_{P}", deny_unknown_fields)]
pub struct Envelope<P> {
    #[schemars(extend("const" = 1))]
    pub schema_version: u32,
    pub command_id: Uuid,
    /// The acting system's id.
    pub actor: Uuid,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = MAX_CORRELATION_ID))]
    pub correlation_id: Option<String>,
    pub payload: P,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TemplateDto {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = MAX_POSITION))]
    pub position: Option<u32>,
    #[schemars(length(min = 1, max = MAX_NAME))]
    pub name: String,
    #[serde(default)]
    #[schemars(length(max = MAX_TEXT))]
    pub description: String,
    #[serde(default)]
    #[schemars(length(max = MAX_TEMPLATES), inner(range(min = 1, max = MAX_POSITION)))]
    pub depends_on: Vec<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<SystemKind>")]
    pub default_assignee_type: Option<String>,
    #[serde(default)]
    #[schemars(length(max = MAX_SKILLS), inner(length(min = 1, max = MAX_SKILL_LEN)))]
    pub required_skills: Vec<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DraftProcedure {
    #[schemars(length(min = 1, max = MAX_NAME))]
    pub name: String,
    #[serde(default)]
    #[schemars(length(max = MAX_TEXT))]
    pub description: String,
    #[schemars(with = "RiskLevel")]
    pub risk_level: String,
    #[schemars(with = "Impact")]
    pub impact: String,
    #[schemars(length(min = 1, max = MAX_TEXT))]
    pub rollback_plan: String,
    #[schemars(length(min = 1, max = MAX_TEMPLATES))]
    pub tasks: Vec<TemplateDto>,
}

/// Revise (new draft from the latest version) and edit (change the draft in place): the fields
/// given replace the current ones; `tasks`, when given, replaces the whole template list.
#[derive(Debug, Clone, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ChangeProcedure {
    pub procedure_id: Uuid,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = MAX_NAME))]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = MAX_TEXT))]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<RiskLevel>")]
    pub risk_level: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<Impact>")]
    pub impact: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = MAX_TEXT))]
    pub rollback_plan: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = MAX_TEMPLATES))]
    pub tasks: Option<Vec<TemplateDto>>,
}

#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ApproveProcedure {
    pub procedure_id: Uuid,
    /// The `digest` of the version as the approver read it (`procedure.get`): if the draft
    /// changed since, the approval is a `conflict` and nothing is approved.
    #[schemars(regex(pattern = r"^sha256:[0-9a-f]{64}$"))]
    #[serde(deserialize_with = "digest_text")]
    pub digest: String,
}

/// A digest as `procedure.get` shows it, `sha256:` and 64 lower-case hex digits (space around
/// it aside): anything else is a malformed payload, not content that changed.
fn digest_text<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<String, D::Error> {
    let text = String::deserialize(deserializer)?;
    let well_formed = text.trim().strip_prefix("sha256:").is_some_and(|hex| {
        hex.len() == 64 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    });
    if well_formed {
        Ok(text)
    } else {
        Err(serde::de::Error::custom(
            "not a digest: `sha256:` and 64 lower-case hex digits, as procedure.get shows it",
        ))
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ProcedureWithReason {
    pub procedure_id: Uuid,
    #[schemars(length(min = 1, max = MAX_TEXT))]
    pub reason: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ExecuteProcedure {
    /// The series to run (its first version's id); the approved version is taken.
    pub series_id: Uuid,
    /// Refuse with `conflict` unless this is still the approved version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub expected_version: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strategy_id: Option<Uuid>,
}

#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TaskRef {
    pub task_id: Uuid,
}

#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CompleteTask {
    pub task_id: Uuid,
    #[schemars(length(max = MAX_TEXT))]
    pub result: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TaskWithReason {
    pub task_id: Uuid,
    #[schemars(length(min = 1, max = MAX_TEXT))]
    pub reason: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UnblockTask {
    pub task_id: Uuid,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = MAX_TEXT))]
    pub note: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ReviewTask {
    pub task_id: Uuid,
    pub verdict: Verdict,
    #[serde(default)]
    #[schemars(length(max = MAX_TEXT))]
    pub reasoning: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ReplaceTask {
    pub task_id: Uuid,
    #[schemars(length(min = 1, max = MAX_TEXT))]
    pub reason: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = MAX_NAME))]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = MAX_TEXT))]
    pub content: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RunWithReason {
    pub run_id: Uuid,
    #[schemars(length(min = 1, max = MAX_TEXT))]
    pub reason: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ApproveRun {
    pub run_id: Uuid,
    /// What the approver checked, kept with the decision.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = MAX_TEXT))]
    pub note: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ReviewInitiative {
    pub initiative_id: Uuid,
    #[schemars(with = "ReviewOutcome")]
    pub outcome: String,
    #[schemars(length(min = 1, max = MAX_TEXT))]
    pub summary: String,
    #[serde(default)]
    #[schemars(length(max = MAX_LIST_ITEMS), inner(length(min = 1, max = MAX_TEXT)))]
    pub lessons: Vec<String>,
    #[serde(default)]
    #[schemars(length(max = MAX_LIST_ITEMS), inner(length(min = 1, max = MAX_TEXT)))]
    pub follow_ups: Vec<String>,
}

impl From<TemplateDto> for TemplateDraft {
    fn from(t: TemplateDto) -> TemplateDraft {
        TemplateDraft {
            position: t.position,
            name: t.name,
            description: t.description,
            depends_on: t.depends_on,
            default_assignee_type: t.default_assignee_type,
            required_skills: t.required_skills,
        }
    }
}

impl DraftProcedure {
    /// The version's fields and its templates, as the domain checks them.
    pub fn into_drafts(self) -> (MetaDraft, Vec<TemplateDraft>) {
        let meta = MetaDraft {
            name: self.name,
            description: self.description,
            risk_level: self.risk_level,
            impact: self.impact,
            rollback_plan: self.rollback_plan,
        };
        (meta, self.tasks.into_iter().map(Into::into).collect())
    }
}

impl ChangeProcedure {
    /// The fields given, laid over `base`.
    pub fn over(&self, mut base: MetaDraft) -> MetaDraft {
        let pick = |new: &Option<String>, old: &mut String| {
            if let Some(v) = new {
                old.clone_from(v);
            }
        };
        pick(&self.name, &mut base.name);
        pick(&self.description, &mut base.description);
        pick(&self.risk_level, &mut base.risk_level);
        pick(&self.impact, &mut base.impact);
        pick(&self.rollback_plan, &mut base.rollback_plan);
        base
    }

    /// Whether it names no field to change (an edit must change something).
    pub fn is_empty(&self) -> bool {
        let ChangeProcedure {
            procedure_id: _,
            name,
            description,
            risk_level,
            impact,
            rollback_plan,
            tasks,
        } = self;
        [name, description, risk_level, impact, rollback_plan]
            .iter()
            .all(|f| f.is_none())
            && tasks.is_none()
    }

    /// The templates given, as the domain checks them.
    pub fn take_tasks(&mut self) -> Option<Vec<TemplateDraft>> {
        self.tasks
            .take()
            .map(|list| list.into_iter().map(Into::into).collect())
    }
}

impl ReviewInitiative {
    pub fn into_draft(self) -> ReviewDraft {
        ReviewDraft {
            outcome: self.outcome,
            summary: self.summary,
            lessons: self.lessons,
            follow_ups: self.follow_ups,
        }
    }
}
