//! Command messages as they travel: a versioned envelope around a typed payload per command.
//! Payloads refuse unknown fields, so a misspelt field is an `invalid_payload` rejection
//! rather than a silently ignored value.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

pub use crate::domain::policy::PolicyDocument;
use crate::domain::procedure::{Impact, MetaDraft, RiskLevel};
use crate::domain::review::{MAX_LIST_ITEMS, ReviewDraft, ReviewOutcome};
use crate::domain::run::Verdict;
use crate::domain::system::Party::{self, Assignee, Role};
use crate::domain::system::SystemKind::{self, System3, System4, System5};
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
/// payload type, who may send it, what it does, when a model should use it and an example
/// payload. From this one table come [`CommandName`], the typed [`Command`], decoding a
/// payload by name, the contract's list of commands, the MCP tools of each role, the NATS
/// users' permissions ([`crate::bus::roles`]) and the golden examples.
macro_rules! commands {
    ($(
        $(#[$family_doc:meta])*
        $family:ident($family_enum:ident) {
            $(
                $variant:ident = $name:literal ($payload:ty) by [$($sender:expr),+]:
                    $summary:literal
                    guide $guide:literal
                    example $example:expr;
            )*
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
            pub fn senders(self) -> &'static [Party] {
                match self { $($(CommandName::$variant => &[$($sender),+],)*)* }
            }

            /// What it does, in a sentence.
            pub fn summary(self) -> &'static str {
                match self { $($(CommandName::$variant => $summary,)*)* }
            }

            /// When to use it and the rules it is held to, for a model choosing its next step.
            pub fn guide(self) -> &'static str {
                match self { $($(CommandName::$variant => $guide,)*)* }
            }

            /// An example payload (the golden examples in `docs/examples/`).
            #[cfg(test)]
            pub(crate) fn example(self) -> serde_json::Value {
                use examples::*;
                use serde_json::json;
                match self { $($(CommandName::$variant => $example,)*)* }
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

impl CommandName {
    /// Whether a system of `kind` may send it.
    pub fn may_send(self, kind: SystemKind) -> bool {
        self.senders().iter().any(|sender| sender.admits(kind))
    }

    /// Who may send it, in words: "system3", "the task's assignee or system3".
    pub fn sender_text(self) -> String {
        Party::list(self.senders(), " or ")
    }
}

/// What the example payloads refer to: fixed ids, the digest of the example procedure and a
/// policy as a System5 would set it.
#[cfg(test)]
pub(crate) mod examples {
    use serde_json::{Value, json};
    use uuid::Uuid;

    pub use crate::domain::testing::digest;

    /// The `n`th fixed id of the examples.
    pub fn id(n: u128) -> Uuid {
        Uuid::from_u128(0x0190_0000_0000_7000_8000_0000_0000_0000 + n)
    }

    /// One rule for risky procedures, one for all.
    pub fn policy_document() -> Value {
        json!({ "rules": [
            { "name": "risky", "min_risk": "high", "max_open_runs": 1,
              "max_runs": { "count": 10, "per": "24h" }, "min_interval": "15m", "run_approval": true },
            { "name": "quiet-hours", "freeze": [
                { "weekly": { "days": ["sat", "sun"], "from": "00:00", "to": "24:00",
                              "time_zone": "Europe/Berlin" } },
                { "from": "2026-12-24T00:00:00+01:00", "to": "2026-12-27T00:00:00+01:00" } ] },
        ] })
    }
}

commands! {
    /// Drafts, changes and executes procedure versions (`application::procedures`).
    Procedure(ProcedureCommand) {
        DraftProcedure = "procedure.draft" (DraftProcedure) by [Role(System4)]:
            "Draft version 1 of a new procedure series."
            guide "Use to propose a new reusable procedure (SOP). Tasks are positioned 1..n; `depends_on` names earlier positions. The draft is yours to edit until System5 approves or rejects it."
            example json!({
                "name": "First Run Discovery",
                "description": "Learn who the user is and what they need.",
                "risk_level": "low", "impact": "high",
                "rollback_plan": "Revert to prior purpose/strategy and re-interview the user.",
                "tasks": [
                { "position": 1, "name": "Collect user identity and links" },
                { "position": 2, "name": "Conduct the interview", "depends_on": [1],
                      "default_assignee_type": "system1", "required_skills": ["interviewing"] },
                ],
            });
        ReviseProcedure = "procedure.revise" (ChangeProcedure) by [Role(System4)]:
            "Start a new draft (latest + 1) from the latest, non-draft version; its templates are copied unless `tasks` is given."
            guide "Use to improve a procedure that is approved or retired: makes a new draft version from the latest. A series has at most one draft: edit it instead if one exists (invalid_state says so)."
            example json!({ "procedure_id": id(1), "description": "Sharper discovery" });
        EditProcedure = "procedure.edit" (ChangeProcedure) by [Role(System4)]:
            "Change a draft in place; `tasks` replaces all templates; an edit naming no field is refused."
            guide "Use to change a draft in place, e.g. after System5 rejected it with a reason. Any field given replaces the draft's; `tasks` replaces all of them."
            example json!({ "procedure_id": id(1), "risk_level": "medium" });
        DiscardProcedure = "procedure.discard" (ProcedureWithReason) by [Role(System4)]:
            "Abandon a draft; it is retired without approval."
            guide "Use to abandon a draft that should never be approved."
            example json!({ "procedure_id": id(1), "reason": "Superseded by the onboarding SOP" });
        ApproveProcedure = "procedure.approve" (ApproveProcedure) by [Role(System5)]:
            "Approve a draft whose digest is still the one given (else `conflict`); the series' approved version is retired in the same transaction."
            guide "Read the draft first (procedure_get) and pass its `digest`: you approve exactly the content you read. A conflict on `digest` means it changed since: read it again before deciding."
            example json!({ "procedure_id": id(1), "digest": digest() });
        RejectProcedure = "procedure.reject" (ProcedureWithReason) by [Role(System5)]:
            "Send a draft back to System4 with a reason (kept until its next edit); it stays a draft."
            guide "Use to send a draft back to System4 with a reason it can act on; the draft stays a draft."
            example json!({ "procedure_id": id(1), "reason": "Superseded by the onboarding SOP" });
        RetireProcedure = "procedure.retire" (ProcedureWithReason) by [Role(System5)]:
            "Take the approved version out of service; it stays readable and never executes again."
            guide "Use to take an approved procedure out of service; it can no longer be executed."
            example json!({ "procedure_id": id(1), "reason": "Superseded by the onboarding SOP" });
        ExecuteProcedure = "procedure.execute" (ExecuteProcedure) by [Role(System3)]:
            "Run the series' approved version: run, initiative, tasks. The team's policy may refuse it (`policy_denied`) or hold the run for System5 (`awaiting_approval`)."
            guide "Use to run a series' approved version: creates the initiative and its tasks, assigned by type and skills. Check procedure_preview first when unsure. The team's policy may refuse it (policy_denied: wait until the time given) or hold the run for System5's approval (status awaiting_approval)."
            example json!({ "series_id": id(1), "expected_version": 1 });
    }
    /// Changes a run: its tasks, its status or its review (`application::runs`).
    Run(RunCommand) {
        StartTask = "task.start" (TaskRef) by [Assignee]:
            "Start a ready pending task."
            guide "Use on a task assigned to you that is ready (task_list with ready=true, or task_wait_ready)."
            example json!({ "task_id": id(20) });
        CompleteTask = "task.complete" (CompleteTask) by [Assignee]:
            "Complete an in-progress task with its result."
            guide "Use when the work of a task you started is done: `result` is what System3 reviews, so make it complete."
            example json!({ "task_id": id(20), "result": "Identity and three links collected" });
        BlockTask = "task.block" (TaskWithReason) by [Assignee]:
            "Block an in-progress task, with the reason."
            guide "Use when you cannot go on with a started task: say what you need in `reason`."
            example json!({ "task_id": id(20), "reason": "Waiting for the user's reply" });
        UnblockTask = "task.unblock" (UnblockTask) by [Assignee, Role(System3)]:
            "Put a blocked task back to pending."
            guide "Use when a blocked task can go on again."
            example json!({ "task_id": id(20), "note": "The user replied" });
        ReviewTask = "task.review" (ReviewTask) by [Role(System3)]:
            "Approve or reject a completed task."
            guide "Use on a completed task: approve it (its dependents become ready) or reject it with reasoning (then replace or cancel it)."
            example json!({ "task_id": id(20), "verdict": "approve", "reasoning": "Complete" });
        CancelTask = "task.cancel" (TaskWithReason) by [Role(System3)]:
            "Cancel a task that is not in progress, with its dependents."
            guide "Use to drop a task that is not in progress; the tasks that depend on it are canceled too."
            example json!({ "task_id": id(20), "reason": "Waiting for the user's reply" });
        ReplaceTask = "task.replace" (ReplaceTask) by [Role(System3)]:
            "Replace a rejected or blocked task by a new pending one (the outcome's `task_id`)."
            guide "Use on a rejected or blocked task to give the work a fresh start, optionally with a new name or content."
            example json!({ "task_id": id(20), "reason": "Missing links", "content": "Collect all links" });
        CancelRun = "run.cancel" (RunWithReason) by [Role(System3)]:
            "Cancel a run, started, paused or awaiting approval, and its open tasks."
            guide "Use to stop a whole run (started, paused or awaiting approval) with a reason."
            example json!({ "run_id": id(10), "reason": "Priorities changed" });
        PauseRun = "run.pause" (RunWithReason) by [Role(System3)]:
            "Pause a started run: no task is ready or starts until it is resumed; work already started may finish."
            guide "Use to hold a started run for a while (say why in `reason`): tasks in progress may still be completed and reviewed, but nothing new starts. Resume it with run_resume; it counts as open for the team's policy."
            example json!({ "run_id": id(10), "reason": "Waiting for the budget decision" });
        ResumeRun = "run.resume" (RunWithNote) by [Role(System3)]:
            "Resume a paused run: its ready tasks, and those that became ready meanwhile, are made ready."
            guide "Use on a paused run once it may go on: every pending task whose dependencies are approved becomes ready (task.ready)."
            example json!({ "run_id": id(10), "note": "Budget approved" });
        ApproveRun = "run.approve" (RunWithNote) by [Role(System5)]:
            "Let a run awaiting approval start: its first tasks become ready."
            guide "Use on a run awaiting approval (a policy rule held it) once you judge it may go ahead: its first tasks become ready."
            example json!({ "run_id": id(10), "note": "Rollback plan checked" });
        RejectRun = "run.reject" (RunWithReason) by [Role(System5)]:
            "Refuse a run awaiting approval, with the reason: it ends canceled."
            guide "Use on a run awaiting approval that must not go ahead: it ends canceled with your reason."
            example json!({ "run_id": id(10), "reason": "Not during the migration week" });
        ReviewInitiative = "initiative.review" (ReviewInitiative) by [Role(System3)]:
            "Record the post-run review of an ended run, once."
            guide "Use once a run has ended (completed, failed or canceled): the post-run review, once per run."
            example json!({
            "initiative_id": id(11), "outcome": "succeeded", "summary": "Discovery done",
            "lessons": ["Ask for documents before the interview"], "follow_ups": ["Check in after a week"],
            });
    }
    /// Sets the team's execution policy (`application::policies`).
    Policy(PolicyCommand) {
        SetPolicy = "policy.set" (PolicyDocument) by [Role(System5)]:
            "Replace the team's execution policy, whole (a new version, the outcome's `policy_version`): the rules that limit when procedures may be executed."
            guide "Use to replace the team's execution policy whole: read it first (policy_get) and send every rule you want to keep."
            example policy_document();
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
pub struct RunWithNote {
    pub run_id: Uuid,
    /// Why, kept with the decision: what the approver checked.
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
