//! Commands as the use cases take them: decoded and typed, but with free text and enum
//! strings still raw, so validation happens once, in the domain, with field-precise errors.

use uuid::Uuid;

use super::MessageMeta;
use crate::domain::procedure::MetaDraft;
use crate::domain::review::ReviewDraft;
use crate::domain::run::Verdict;
use crate::domain::template::TemplateDraft;
use crate::wire::command::CommandName;

/// Optional replacements for a procedure's fields (revise and edit).
#[derive(Debug, Clone, Default)]
pub struct ProcedureChanges {
    pub name: Option<String>,
    pub description: Option<String>,
    pub risk_level: Option<String>,
    pub impact: Option<String>,
    pub rollback_plan: Option<String>,
    pub tasks: Option<Vec<TemplateDraft>>,
}

impl ProcedureChanges {
    /// Lays the changes over the current values.
    pub fn over(&self, mut base: MetaDraft) -> MetaDraft {
        let pick = |new: &Option<String>, old: &mut String| {
            if let Some(v) = new {
                *old = v.clone();
            }
        };
        pick(&self.name, &mut base.name);
        pick(&self.description, &mut base.description);
        pick(&self.risk_level, &mut base.risk_level);
        pick(&self.impact, &mut base.impact);
        pick(&self.rollback_plan, &mut base.rollback_plan);
        base
    }
}

/// A command, by what it acts on: each family goes to its own handler, which matches only its
/// own commands.
#[derive(Debug, Clone)]
pub enum Command {
    /// Changes a procedure series: what a group read of series is forgotten.
    Series(SeriesCommand),
    /// Reads a series' approved version and creates a run from it.
    Execute(Execute),
    /// Changes a run: its tasks, its status or its review.
    Run(RunCommand),
}

#[derive(Debug, Clone)]
pub enum SeriesCommand {
    DraftProcedure {
        meta: MetaDraft,
        tasks: Vec<TemplateDraft>,
    },
    ReviseProcedure {
        procedure_id: Uuid,
        changes: ProcedureChanges,
    },
    EditProcedure {
        procedure_id: Uuid,
        changes: ProcedureChanges,
    },
    DiscardProcedure {
        procedure_id: Uuid,
        reason: String,
    },
    ApproveProcedure {
        procedure_id: Uuid,
    },
    RejectProcedure {
        procedure_id: Uuid,
        reason: String,
    },
    RetireProcedure {
        procedure_id: Uuid,
        reason: String,
    },
}

#[derive(Debug, Clone)]
pub struct Execute {
    pub series_id: Uuid,
    pub expected_version: Option<u32>,
    pub strategy_id: Option<Uuid>,
}

#[derive(Debug, Clone)]
pub enum RunCommand {
    StartTask {
        task_id: Uuid,
    },
    CompleteTask {
        task_id: Uuid,
        result: String,
    },
    BlockTask {
        task_id: Uuid,
        reason: String,
    },
    UnblockTask {
        task_id: Uuid,
        note: Option<String>,
    },
    ReviewTask {
        task_id: Uuid,
        verdict: Verdict,
        reasoning: String,
    },
    CancelTask {
        task_id: Uuid,
        reason: String,
    },
    ReplaceTask {
        task_id: Uuid,
        reason: String,
        name: Option<String>,
        content: Option<String>,
    },
    CancelRun {
        run_id: Uuid,
        reason: String,
    },
    ReviewInitiative {
        initiative_id: Uuid,
        review: ReviewDraft,
    },
}

/// A decoded command with its envelope.
#[derive(Debug, Clone)]
pub struct Incoming {
    pub command_id: Uuid,
    pub name: CommandName,
    pub actor: Uuid,
    pub correlation_id: Option<String>,
    pub reply_to: Option<String>,
    /// W3C `traceparent` of the command, passed on to its events.
    pub traceparent: Option<String>,
    /// The `Sop-Signature` header and the bytes it signs, when the command carried one.
    pub signed: Option<Signed>,
    pub command: Command,
}

/// A signature and the bytes it is over (for a command, its name and body:
/// [`crate::wire::signature::command_message`]).
#[derive(Debug, Clone)]
pub struct Signed {
    pub signature: String,
    pub message: Vec<u8>,
}

impl Incoming {
    pub fn meta(&self) -> MessageMeta {
        MessageMeta {
            command_id: self.command_id,
            command: self.name.as_str().to_owned(),
            actor: Some(self.actor),
            team: None,
            reply_to: self.reply_to.clone(),
        }
    }
}
