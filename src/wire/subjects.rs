//! Every NATS subject and stream name, spelled in one place.
//!
//! - Commands: two tokens, imperative — `procedure.approve`, `task.start`, `run.cancel`.
//! - Events: three tokens, past tense, the team name last — `task.ready.<team>`.
//! - Outcomes: `command.outcome.<command_id>`.
//! - Queries (core request/reply, never stored): `sop.query.<name>`.
//! - Operator requests (core request/reply, operators only): `sop.admin.<name>`.
//!
//! The token counts keep the families disjoint, so each JetStream stream captures exactly one
//! family (`procedure.*` vs `procedure.*.*`); a unit test proves it. Each team's events have a
//! stream of their own (`SOP_EVENTS_<team>`), so NATS permissions that name a stream keep one
//! team's agents off another's history. An optional prefix
//! (`acme.` → `acme.procedure.draft`) namespaces everything for shared buses and test isolation.

use crate::domain::event::EventKind;
use crate::domain::ids::CommandId;

/// The first token of every command and event subject.
pub const FAMILIES: &[&str] = &["procedure", "task", "run", "initiative", "policy"];

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subjects {
    /// Empty, or ends with a dot.
    prefix: String,
    /// Stream-name prefix derived from `prefix` (stream names may not contain dots).
    stream_prefix: String,
}

impl Subjects {
    /// `prefix` may be given with or without its trailing dot.
    pub fn new(prefix: &str) -> Subjects {
        let trimmed = prefix.trim().trim_end_matches('.');
        let prefix = if trimmed.is_empty() {
            String::new()
        } else {
            format!("{trimmed}.")
        };
        let stream_prefix = trimmed
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() {
                    c.to_ascii_uppercase()
                } else {
                    '_'
                }
            })
            .collect::<String>();
        let stream_prefix = if stream_prefix.is_empty() {
            stream_prefix
        } else {
            format!("{stream_prefix}_")
        };
        Subjects {
            prefix,
            stream_prefix,
        }
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// `procedure.draft` → `<prefix>procedure.draft`.
    pub fn command(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }

    /// The command name of a command subject (prefix removed), if it is one of ours.
    pub fn command_name<'a>(&self, subject: &'a str) -> Option<&'a str> {
        subject.strip_prefix(self.prefix.as_str())
    }

    pub fn command_filters(&self) -> Vec<String> {
        FAMILIES
            .iter()
            .map(|f| format!("{}{f}.*", self.prefix))
            .collect()
    }

    pub fn event(&self, kind: EventKind, team: &str) -> String {
        format!("{}{}.{team}", self.prefix, kind.as_str())
    }

    /// Every team's events: `<prefix><family>.*.*` for each family (what the worker publishes).
    pub fn event_filters(&self) -> Vec<String> {
        FAMILIES
            .iter()
            .map(|f| format!("{}{f}.*.*", self.prefix))
            .collect()
    }

    /// The subjects of one team's events stream: `<prefix><family>.*.<team>` for each family.
    pub fn team_event_filters(&self, team: &str) -> Vec<String> {
        FAMILIES
            .iter()
            .map(|f| format!("{}{f}.*.{team}", self.prefix))
            .collect()
    }

    /// The team an event subject names (its last token), if it is one of ours.
    pub fn team_of_event<'a>(&self, subject: &'a str) -> Option<&'a str> {
        let rest = subject.strip_prefix(self.prefix.as_str())?;
        let mut tokens = rest.split('.');
        let (family, _, team) = (tokens.next()?, tokens.next()?, tokens.next()?);
        (FAMILIES.contains(&family) && tokens.next().is_none()).then_some(team)
    }

    /// Events of one type and/or one team: `task.ready.*`, `*.*.<team>`, `task.ready.<team>`;
    /// `>` for all.
    pub fn event_filter(&self, kind: Option<&str>, team: Option<&str>) -> String {
        match (kind, team) {
            (None, None) => ">".to_owned(),
            (Some(kind), team) => format!("{}{kind}.{}", self.prefix, team.unwrap_or("*")),
            (None, Some(team)) => self.team_events(team),
        }
    }

    /// Every event of one team: `<prefix>*.*.<team>`.
    pub fn team_events(&self, team: &str) -> String {
        format!("{}*.*.{team}", self.prefix)
    }

    pub fn outcome(&self, id: CommandId) -> String {
        format!("{}command.outcome.{id}", self.prefix)
    }

    /// The subject group of the query service: `<prefix>sop.query`.
    pub fn query_group(&self) -> String {
        format!("{}sop.query", self.prefix)
    }

    pub fn query(&self, name: &str) -> String {
        format!("{}.{name}", self.query_group())
    }

    /// The subject group of operator requests: `<prefix>sop.admin` (operators only, by NATS
    /// permissions).
    pub fn admin_group(&self) -> String {
        format!("{}sop.admin", self.prefix)
    }

    pub fn admin(&self, name: &str) -> String {
        format!("{}.{name}", self.admin_group())
    }

    /// Where the worker publishes a team's signed chain checkpoints: `<prefix>sop.checkpoint.<team>`.
    pub fn checkpoint(&self, team: &str) -> String {
        format!("{}sop.checkpoint.{team}", self.prefix)
    }

    pub fn checkpoints_stream(&self) -> String {
        format!("{}SOP_CHECKPOINTS", self.stream_prefix)
    }

    pub fn outcome_filter(&self) -> String {
        format!("{}command.outcome.*", self.prefix)
    }

    pub fn commands_stream(&self) -> String {
        format!("{}SOP_COMMANDS", self.stream_prefix)
    }

    /// The stream of one team's events: `<PREFIX>SOP_EVENTS_<team>` (a team name is letters,
    /// digits, `-` and `_`, all allowed in a stream name).
    pub fn team_events_stream(&self, team: &str) -> String {
        format!("{}{team}", self.team_events_streams())
    }

    /// What every team's events stream name begins with.
    pub fn team_events_streams(&self) -> String {
        format!("{}SOP_EVENTS_", self.stream_prefix)
    }

    /// The one events stream of releases before 0.2.0, kept read-only where it exists.
    pub fn shared_events_stream(&self) -> String {
        format!("{}SOP_EVENTS", self.stream_prefix)
    }

    /// The subject the shared stream of releases before 0.2.0 is moved to: nothing publishes
    /// there, so its history stays readable while team streams take the new events.
    pub fn retired_events_subject(&self) -> String {
        format!("{}sop.retired.events", self.prefix)
    }

    pub fn outcomes_stream(&self) -> String {
        format!("{}SOP_OUTCOMES", self.stream_prefix)
    }

    /// The durable consumer all workers share (competing consumers).
    pub fn worker_consumer(&self) -> &'static str {
        "sop-worker"
    }
}

/// NATS subject matching (`*` one token, `>` the rest), for tests and client-side filters.
pub fn matches(filter: &str, subject: &str) -> bool {
    let mut f = filter.split('.');
    let mut s = subject.split('.');
    loop {
        match (f.next(), s.next()) {
            (Some(">"), Some(_)) => return true,
            (Some("*"), Some(_)) => {}
            (Some(a), Some(b)) if a == b => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::command::CommandName;
    use uuid::Uuid;

    fn any(filters: &[String], subject: &str) -> bool {
        filters.iter().any(|f| matches(f, subject))
    }

    #[test]
    fn command_event_and_outcome_filters_never_overlap() {
        for prefix in ["", "acme", "t1.x."] {
            let s = Subjects::new(prefix);
            let outcomes = vec![s.outcome_filter()];
            for name in CommandName::ALL {
                let subject = s.command(name.as_str());
                assert!(any(&s.command_filters(), &subject), "{subject}");
                assert!(!any(&s.team_event_filters("team-a"), &subject), "{subject}");
                assert!(!any(&outcomes, &subject), "{subject}");
            }
            assert!(!any(
                &s.team_event_filters("x"),
                &s.retired_events_subject()
            ));
            for kind in EventKind::ALL.iter().copied() {
                let subject = s.event(kind, "team-a");
                assert!(any(&s.team_event_filters("team-a"), &subject), "{subject}");
                assert!(!any(&s.team_event_filters("team-b"), &subject), "{subject}");
                assert_eq!(s.team_of_event(&subject), Some("team-a"));
                assert!(!any(&s.command_filters(), &subject), "{subject}");
                assert!(!any(&outcomes, &subject), "{subject}");
                assert!(matches(&s.team_events("team-a"), &subject));
                assert!(!matches(&s.team_events("team-b"), &subject));
            }
            for name in crate::wire::query::QueryName::ALL {
                let subject = s.query(name.as_str());
                assert!(!any(&s.command_filters(), &subject), "{subject}");
                assert!(!any(&s.team_event_filters("team-a"), &subject), "{subject}");
                assert!(!any(&outcomes, &subject), "{subject}");
            }
            // Operator requests sit apart from the queries every agent may ask (`sop.query.>`).
            for name in crate::wire::admin::AdminName::ALL {
                let subject = s.admin(name.as_str());
                assert!(!any(&s.command_filters(), &subject), "{subject}");
                assert!(!any(&s.team_event_filters("team-a"), &subject), "{subject}");
                assert!(!any(&outcomes, &subject), "{subject}");
                assert!(!matches(&format!("{}.>", s.query_group()), &subject));
            }
            let outcome = s.outcome(CommandId(Uuid::nil()));
            assert!(any(&outcomes, &outcome));
            assert!(!any(&s.command_filters(), &outcome));
            assert!(!any(&s.team_event_filters("team-a"), &outcome));
        }
    }

    #[test]
    fn event_filters_select_by_type_and_team() {
        let s = Subjects::new("p");
        assert_eq!(s.event_filter(None, None), ">");
        assert_eq!(s.event_filter(Some("task.ready"), None), "p.task.ready.*");
        assert_eq!(
            s.event_filter(Some("task.ready"), Some("a")),
            "p.task.ready.a"
        );
        assert_eq!(s.event_filter(None, Some("a")), "p.*.*.a");
    }

    #[test]
    fn a_prefix_namespaces_subjects_and_streams() {
        let s = Subjects::new("t-42");
        assert_eq!(s.command("task.start"), "t-42.task.start");
        assert_eq!(s.command_name("t-42.task.start"), Some("task.start"));
        assert_eq!(s.commands_stream(), "T_42_SOP_COMMANDS");
        assert_eq!(
            Subjects::new("").team_events_stream("team-a"),
            "SOP_EVENTS_team-a"
        );
        assert_eq!(s.team_events_stream("a_1"), "T_42_SOP_EVENTS_a_1");
        assert_eq!(Subjects::new("a.").command("x.y"), "a.x.y");
    }

    #[test]
    fn subject_matching_follows_nats_wildcards() {
        assert!(matches("a.*", "a.b"));
        assert!(!matches("a.*", "a.b.c"));
        assert!(matches("a.>", "a.b.c"));
        assert!(!matches("a.b", "a"));
    }
}
