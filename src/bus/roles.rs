//! The NATS users of a secured deployment (`deploy/nats/roles.conf`), made from the command
//! table: each role may publish the commands the table lets it send, the queries, and the
//! outcome reads; the worker publishes events and outcomes; only the operator sends operator
//! requests. `sop roles` prints it for the configured subject prefix.

use std::fmt::Write as _;

use crate::domain::system::SystemKind;
use crate::wire::command::CommandName;
use crate::wire::subjects::Subjects;

/// The password variable of a NATS user: `system3` → `SOP_NATS_SYSTEM3_PASSWORD`.
pub fn password_variable(user: &str) -> String {
    format!("SOP_NATS_{}_PASSWORD", user.to_ascii_uppercase())
}

fn quoted(subjects: &[String]) -> String {
    subjects
        .iter()
        .map(|s| format!("\"{s}\""))
        .collect::<Vec<_>>()
        .join(", ")
}

/// What every agent may publish besides its commands: queries, and reading an outcome back
/// from its stream (a direct get, or the stream API on servers without one).
fn agent_reads(s: &Subjects) -> Vec<String> {
    let outcomes = s.outcomes_stream();
    vec![
        format!("{}.>", s.query_group()),
        format!("$JS.API.STREAM.INFO.{outcomes}"),
        format!("$JS.API.DIRECT.GET.{outcomes}.>"),
        format!("$JS.API.STREAM.MSG.GET.{outcomes}"),
    ]
}

/// The configuration text for subjects `s`.
pub fn roles_conf(s: &Subjects) -> String {
    let prefix = s.prefix();
    let commands = s.command_filters().join(" ");
    let events = s.event_filters();
    let queries = format!("{}.>", s.query_group());
    let admin = format!("{}.>", s.admin_group());
    let subscribe = quoted(
        &std::iter::once("_INBOX.>".to_owned())
            .chain(events.iter().cloned())
            .chain([s.outcome_filter()])
            .collect::<Vec<_>>(),
    );
    let mut out = String::new();
    let _ = write!(
        out,
        "# Per-role NATS users for vsm-sop: each role may publish only its own commands, and read only
# what it needs. Made by `sop roles` from the command table (a test fails when this file
# differs: regenerate with `sop roles > deploy/nats/roles.conf`). Include it from a server
# configuration (`include roles.conf`) and set the passwords through the environment of
# nats-server (never commit real ones); in production prefer nkeys or JWTs with the same
# permissions.
#
# Subject prefix: {shown_prefix}
#   commands  {commands}  (stream {commands_stream})
#   events    {events_text}  (stream {events_stream})
#   outcomes  {outcomes}  (stream {outcomes_stream})
#   queries   {queries}  (request/reply; any agent, including system.get / team.get, which
#             answer who is who without an actor)
#   admin     {admin}  (request/reply; operator only: team registration, dead letters, parked
#             outbox — unsigned, so these permissions guard them)
# The commands of a task's assignee may come from any role: a template may assign a task to
# any type, and the worker checks that the sender is the assignee.

# What every agent may receive: replies (PubAcks, outcomes, query answers), events, outcomes.
AGENT_SUBSCRIBE = [{subscribe}]

authorization {{
  users: [
",
        shown_prefix = if prefix.is_empty() { "none" } else { prefix },
        events_text = events.join(" "),
        commands_stream = s.commands_stream(),
        events_stream = s.events_stream(),
        outcomes = s.outcome_filter(),
        outcomes_stream = s.outcomes_stream(),
    );
    let worker_publish: Vec<String> = events
        .iter()
        .cloned()
        .chain([s.outcome_filter()])
        .chain(["$JS.API.>", "$JS.ACK.>", "_INBOX.>", "$SRV.>"].map(String::from))
        .collect();
    let worker_subscribe = ["_INBOX.>".to_owned(), "$SRV.>".to_owned(), queries, admin];
    let _ = writeln!(
        out,
        "    {{ user: worker, password: ${}, permissions: {{
        publish: {{ allow: [{}] }}
        subscribe: {{ allow: [{}] }}
        allow_responses: true
    }} }}",
        password_variable("worker"),
        quoted(&worker_publish),
        quoted(&worker_subscribe),
    );
    for &kind in SystemKind::ALL {
        let sends: Vec<String> = CommandName::ALL
            .iter()
            .filter(|name| name.may_send(kind))
            .map(|name| s.command(name.as_str()))
            .collect();
        let publish: Vec<String> = agent_reads(s).into_iter().chain(sends).collect();
        let _ = writeln!(
            out,
            "    {{ user: {user}, password: ${}, permissions: {{
        publish: {{ allow: [{}] }}
        subscribe: {{ allow: $AGENT_SUBSCRIBE }}
    }} }}",
            password_variable(kind.as_str()),
            quoted(&publish),
            user = kind.as_str(),
        );
    }
    let _ = write!(
        out,
        "    # Operators: everything (stream administration, replay, the sop CLI), and the only user
    # that may publish on {}.> — no agent's list above allows it.
    {{ user: operator, password: ${} }}
  ]
}}
",
        s.admin_group(),
        password_variable("operator"),
    );
    out
}

/// The users `roles_conf` declares, in its order.
pub fn users() -> Vec<&'static str> {
    std::iter::once("worker")
        .chain(SystemKind::ALL.iter().map(|k| k.as_str()))
        .chain(["operator"])
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_deployed_roles_are_those_the_command_table_makes() {
        let made = roles_conf(&Subjects::new(""));
        crate::bus::golden::generated_file("deploy/nats/roles.conf", &made);
    }

    #[test]
    fn a_prefix_is_put_before_every_subject_and_stream_of_ours() {
        let made = roles_conf(&Subjects::new("acme"));
        assert!(made.contains("\"acme.procedure.draft\""));
        assert!(made.contains("\"acme.sop.query.>\""));
        assert!(made.contains("$JS.API.DIRECT.GET.ACME_SOP_OUTCOMES.>"));
        assert!(!made.contains("\"procedure.draft\""));
        assert!(!made.contains("\"sop.query.>\""));
    }
}
