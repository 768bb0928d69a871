//! Systems of the Viable System Model and the authorisation rule every command passes:
//! the acting system must have the required type *and* belong to the team that owns the data.

use super::error::DomainError;
use super::ids::{SystemId, TeamId};

closed_set! {
    /// The five VSM roles. A team has one each of System2..System5 and one or more System1s.
    #[derive(PartialOrd, Ord, Hash)]
    pub enum SystemKind {
        /// Operation: works tasks.
        #[schemars(title = "System1")]
        System1,
        /// Coordination.
        #[schemars(title = "System2")]
        System2,
        /// Control: executes procedures, reviews tasks and runs.
        #[schemars(title = "System3")]
        System3,
        /// Intelligence: drafts and revises procedures.
        #[schemars(title = "System4")]
        System4,
        /// Policy: approves, rejects and retires procedures.
        #[schemars(title = "System5")]
        System5,
    }
}

impl SystemKind {
    /// Accepts `system3`, `System3` and `3`.
    pub fn parse(field: &str, raw: &str) -> Result<SystemKind, DomainError> {
        let lower = raw.trim().to_ascii_lowercase();
        let name = format!("system{}", lower.strip_prefix("system").unwrap_or(&lower));
        SystemKind::ALL
            .iter()
            .copied()
            .find(|kind| kind.as_str() == name)
            .ok_or_else(|| {
                DomainError::invalid(
                    field,
                    format!("`{raw}` is not a system type (system1..system5)"),
                )
            })
    }
}

impl std::fmt::Display for SystemKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A party to a command or an event: a role, or the system a task is assigned to (of any
/// role: a template may assign a task to any type; the domain checks it is the assignee).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Party {
    Assignee,
    Role(SystemKind),
}

impl Party {
    /// Whether a system of `kind` may be this party.
    pub fn admits(self, kind: SystemKind) -> bool {
        match self {
            Party::Assignee => true,
            Party::Role(role) => role == kind,
        }
    }

    pub fn describe(self) -> &'static str {
        match self {
            Party::Assignee => "the task's assignee",
            Party::Role(role) => role.as_str(),
        }
    }

    /// The parties in words: "the task's assignee or system3".
    pub fn list(parties: &[Party], joint: &str) -> String {
        let words: Vec<&str> = parties.iter().map(|p| p.describe()).collect();
        words.join(joint)
    }
}

/// A registered system as the worker knows it, loaded inside the command's transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    pub id: SystemId,
    pub team_id: TeamId,
    pub kind: SystemKind,
    pub name: String,
    /// Skills used to pick an assignee for templates that require them.
    pub skills: Vec<String>,
    /// When registered, every command of this system must carry a signature made with the
    /// matching key (checked at the edge of the pipeline).
    pub public_key: Option<String>,
}

impl Actor {
    /// Fails closed: the wrong type or the wrong team is refused, naming what was required.
    pub fn authorise(&self, required: SystemKind, team: TeamId) -> Result<(), DomainError> {
        if self.kind != required {
            return Err(DomainError::WrongSystem {
                required,
                actual: self.kind,
            });
        }
        self.same_team(team)
    }

    pub fn same_team(&self, team: TeamId) -> Result<(), DomainError> {
        if self.team_id != team {
            return Err(DomainError::WrongTeam {
                actor_team: self.team_id,
                resource_team: team,
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use uuid::Uuid;

    fn actor(kind: SystemKind, team: TeamId) -> Actor {
        Actor {
            id: SystemId(Uuid::from_u128(1)),
            team_id: team,
            kind,
            name: "a".into(),
            skills: vec![],
            public_key: None,
        }
    }

    #[test]
    fn system4_cannot_approve() {
        let team = TeamId(Uuid::from_u128(7));
        let err = actor(SystemKind::System4, team)
            .authorise(SystemKind::System5, team)
            .unwrap_err();
        assert_eq!(
            err,
            DomainError::WrongSystem {
                required: SystemKind::System5,
                actual: SystemKind::System4
            }
        );
    }

    #[test]
    fn a_system_of_another_team_is_refused() {
        let ours = TeamId(Uuid::from_u128(7));
        let theirs = TeamId(Uuid::from_u128(8));
        let err = actor(SystemKind::System5, theirs)
            .authorise(SystemKind::System5, ours)
            .unwrap_err();
        assert!(matches!(err, DomainError::WrongTeam { .. }));
    }

    #[test]
    fn system_kinds_parse_in_their_usual_spellings() {
        assert_eq!(
            SystemKind::parse("f", "System3").unwrap(),
            SystemKind::System3
        );
        assert_eq!(
            SystemKind::parse("f", "system1").unwrap(),
            SystemKind::System1
        );
        assert_eq!(SystemKind::parse("f", "5").unwrap(), SystemKind::System5);
        assert!(SystemKind::parse("f", "system6").is_err());
    }
}
