//! The NATS users of a deployment whose teams are isolated on the bus, made from the teams
//! (`sop roles TEAM.json…`; `deploy/nats/roles.conf` is the demo team's).
//!
//! Each system's agent is a NATS user of its own, signed in with its `nats_key`. It may
//! publish the commands the command table lets its type send and ask queries; it may read
//! its own team's events (live, and from its team's stream, `SOP_EVENTS_<team>`, through
//! consumers) and the replies sent to its own inbox (`_INBOX.<nats_key>.>`: PubAcks, outcomes,
//! query answers). Nothing names another team's subjects or stream, so the server refuses
//! them. The worker publishes events and outcomes and answers requests; only the operator
//! sends operator requests and reads every stream.

use std::collections::BTreeSet;
use std::fmt::Write as _;

use crate::domain::error::DomainError;
use crate::wire::admin::TeamSpec;
use crate::wire::command::CommandName;
use crate::wire::subjects::Subjects;

/// The password variable of a NATS user: `worker` → `SOP_NATS_WORKER_PASSWORD`.
pub fn password_variable(user: &str) -> String {
    format!("SOP_NATS_{}_PASSWORD", user.to_ascii_uppercase())
}

/// The users signed in with a password, in the configuration's order.
pub const PASSWORD_USERS: [&str; 2] = ["worker", "operator"];

/// The inbox prefix of a client signed in as NATS user `nats_key`: only it may subscribe
/// there, so no one else reads its replies.
pub fn inbox_prefix(nats_key: &str) -> String {
    format!("_INBOX.{nats_key}")
}

fn quoted(subjects: &[String]) -> String {
    subjects
        .iter()
        .map(|s| format!("\"{s}\""))
        .collect::<Vec<_>>()
        .join(", ")
}

/// What an agent of `team` may do with its team's events stream: read its information, make,
/// read and delete consumers on it (the 2.9 and 2.10 forms of the API), pull from them, and
/// acknowledge.
fn team_stream_api(s: &Subjects, team: &str) -> Vec<String> {
    let stream = s.team_events_stream(team);
    vec![
        format!("$JS.API.STREAM.INFO.{stream}"),
        format!("$JS.API.CONSUMER.CREATE.{stream}"),
        format!("$JS.API.CONSUMER.CREATE.{stream}.>"),
        format!("$JS.API.CONSUMER.DURABLE.CREATE.{stream}.>"),
        format!("$JS.API.CONSUMER.INFO.{stream}.>"),
        format!("$JS.API.CONSUMER.DELETE.{stream}.>"),
        format!("$JS.API.CONSUMER.MSG.NEXT.{stream}.>"),
        format!("$JS.ACK.{stream}.>"),
        format!("$JS.FC.{stream}.>"),
    ]
}

/// The configuration text for subjects `s` and `teams`: the worker, one user per system of
/// every team (each must have a `nats_key`, each key once), and the operator.
pub fn roles_conf(s: &Subjects, teams: &[TeamSpec]) -> Result<String, DomainError> {
    let prefix = s.prefix();
    let queries = format!("{}.>", s.query_group());
    let admin = format!("{}.>", s.admin_group());
    let mut out = String::new();
    let _ = write!(
        out,
        "# NATS users of vsm-sop with each team isolated on the bus, made by `sop roles` from the
# team files (regenerate after adding a team or a system: `sop roles teams/*.json`, then
# `nats-server --signal reload`). This one is the demo team's (a test fails when it differs:
# `sop roles deploy/team.example.json > deploy/nats/roles.conf`). Include it from the server
# configuration (`include roles.conf`); set the two passwords through the environment of
# nats-server (never commit real ones).
#
# Subject prefix: {shown_prefix}
#   commands  {commands}  (stream {commands_stream})
#   events    <family>.<type>.<team>  (one stream per team: {team_streams}<team>)
#   outcomes  {outcomes}  (stream {outcomes_stream}; the worker also sends each to its
#             sender's inbox, and `sop.query.command.outcome` answers it to its team)
#   queries   {queries}  (request/reply; the worker answers a system about its own team only)
#   admin     {admin}  (request/reply; operator only: unsigned, so these permissions guard it)
# Each agent signs in with its system's nats_key, takes `_INBOX.<nats_key>` as its inbox prefix
# (sop does, given SOP_NATS_NKEY), and may publish its type's commands — the commands of a
# task's assignee come from any type — queries, and the JetStream API of its team's stream.

authorization {{
  users: [
",
        shown_prefix = if prefix.is_empty() { "none" } else { prefix },
        commands = s.command_filters().join(" "),
        commands_stream = s.commands_stream(),
        team_streams = s.team_events_streams(),
        outcomes = s.outcome_filter(),
        outcomes_stream = s.outcomes_stream(),
    );
    let worker_publish: Vec<String> = s
        .event_filters()
        .into_iter()
        .chain([s.outcome_filter(), s.checkpoint("*")])
        .chain(["$JS.API.>", "$JS.ACK.>", "_INBOX.>", "$SRV.>"].map(String::from))
        .collect();
    let worker_subscribe = [
        "_INBOX.>".to_owned(),
        "$SRV.>".to_owned(),
        queries.clone(),
        admin,
    ];
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
    let mut keys = BTreeSet::new();
    for (t, team) in teams.iter().enumerate() {
        let (name, kinds) = team.check()?;
        let _ = writeln!(out, "    # team {name}");
        for (i, (system, kind)) in team.systems.iter().zip(kinds).enumerate() {
            let field = || format!("teams[{t}].systems[{i}].nats_key");
            let key = system.nats_key.as_deref().map(str::trim).ok_or_else(|| {
                DomainError::invalid(
                    field(),
                    format!(
                        "system `{}` of team {name} has no nats_key: make one with `sop \
                         nkey-generate` and give its seed to the agent (SOP_NATS_NKEY)",
                        system.name
                    ),
                )
            })?;
            if !keys.insert(key.to_owned()) {
                return Err(DomainError::invalid(
                    field(),
                    format!("{key} is given to two systems: each agent has a NATS user of its own"),
                ));
            }
            let publish: Vec<String> = CommandName::ALL
                .iter()
                .filter(|command| command.may_send(kind))
                .map(|command| s.command(command.as_str()))
                .chain([queries.clone()])
                .chain(team_stream_api(s, &name))
                .collect();
            let subscribe: Vec<String> = std::iter::once(format!("{}.>", inbox_prefix(key)))
                .chain(s.team_event_filters(&name))
                .collect();
            let _ = writeln!(
                out,
                "    {{ nkey: {key}, permissions: {{  # {}
        publish: {{ allow: [{}] }}
        subscribe: {{ allow: [{}] }}
    }} }}",
                system.name.replace(['\n', '\r'], " "),
                quoted(&publish),
                quoted(&subscribe),
            );
        }
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
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn demo_team() -> TeamSpec {
        let path =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/team.example.json");
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
    }

    #[test]
    fn the_deployed_roles_are_those_the_demo_team_makes() {
        let made = roles_conf(&Subjects::new(""), &[demo_team()]).unwrap();
        crate::bus::golden::generated_file("deploy/nats/roles.conf", &made);
    }

    #[test]
    fn a_prefix_is_put_before_every_subject_and_stream_of_ours() {
        let made = roles_conf(&Subjects::new("acme"), &[demo_team()]).unwrap();
        assert!(made.contains("\"acme.procedure.draft\""));
        assert!(made.contains("\"acme.sop.query.>\""));
        assert!(made.contains("$JS.API.CONSUMER.MSG.NEXT.ACME_SOP_EVENTS_discovery.>"));
        assert!(made.contains("\"acme.task.*.discovery\""));
        assert!(!made.contains("\"procedure.draft\""));
        assert!(!made.contains("\"sop.query.>\""));
    }

    #[test]
    fn every_system_needs_a_nats_key_of_its_own() {
        let mut team = demo_team();
        team.systems[1].nats_key = team.systems[0].nats_key.clone();
        let twice = roles_conf(&Subjects::new(""), &[team.clone()]).unwrap_err();
        assert!(twice.to_string().contains("two systems"), "{twice}");
        team.systems[1].nats_key = None;
        let none = roles_conf(&Subjects::new(""), &[team.clone()]).unwrap_err();
        assert!(none.to_string().contains("sop nkey-generate"), "{none}");
        let key = team.systems[0].nats_key.take();
        team.systems[1].nats_key = key.clone();
        team.systems[1].public_key = key;
        let shared = roles_conf(&Subjects::new(""), &[team]).unwrap_err();
        assert!(shared.to_string().contains("of its own"), "{shared}");
    }
}
