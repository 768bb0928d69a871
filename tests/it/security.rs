//! Who may act as whom: signatures bind every command and query to its system, and the NATS
//! users `sop roles` makes keep each team's agents to their own commands, events and replies,
//! on a real nats-server.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;

use crate::harness::*;
use crate::on_both_databases;
use sea_orm::EntityTrait;
use vsm_sop::bus::client::{Client, ClientError, EventStart};
use vsm_sop::bus::roles;
use vsm_sop::store::{
    self,
    teams::{SystemSpec, TeamSpec},
};
use vsm_sop::wire::admin::AdminName;
use vsm_sop::wire::answer::TeamIdentity;
use vsm_sop::wire::command::CommandName as C;
use vsm_sop::wire::outcome::{Accepted, Verdict};
use vsm_sop::wire::query::QueryName;
use vsm_sop::wire::subjects::Subjects;

on_both_databases!(
    a_system_with_a_key_must_sign_its_commands,
    with_signatures_required_no_agent_acts_as_another_system,
    teams_are_isolated_on_the_bus
);

async fn a_system_with_a_key_must_sign_its_commands(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let team = app.register_team("signed").await;
    // System4 registers a key; from now on its commands must be signed with it.
    let pair = nkeys::KeyPair::new_user();
    let txn = store::begin(app.db()).await.unwrap();
    let spec = TeamSpec {
        name: "signed".into(),
        systems: vec![SystemSpec {
            name: "System4/root".into(),
            kind: "system4".into(),
            id: None,
            skills: vec![],
            public_key: Some(pair.public_key()),
            nats_key: None,
        }],
    };
    store::teams::apply(&txn, &spec).await.unwrap();
    txn.commit().await.unwrap();

    let unsigned = app
        .refused(C::DraftProcedure, team.s4, first_run_discovery())
        .await;
    assert_eq!(unsigned.code, "forbidden");
    assert!(
        unsigned.message.contains("Sop-Signature"),
        "{}",
        unsigned.message
    );
    let impostor = app
        .client
        .clone()
        .with_signing_seed(&nkeys::KeyPair::new_user().seed().unwrap())
        .unwrap();
    let forged = impostor
        .send(C::DraftProcedure, team.s4, first_run_discovery())
        .await
        .unwrap();
    assert_eq!(forged.error_code(), Some("forbidden"));
    let signer = app
        .client
        .clone()
        .with_signing_seed(&pair.seed().unwrap())
        .unwrap();
    let signed = signer
        .send(C::DraftProcedure, team.s4, first_run_discovery())
        .await
        .unwrap();
    assert!(signed.is_accepted(), "{signed:?}");
    // Systems without a key are unaffected.
    let id: uuid::Uuid = serde_json::from_value(
        serde_json::to_value(&signed).unwrap()["result"]["procedure_id"].clone(),
    )
    .unwrap();
    app.ok(C::ApproveProcedure, team.s5, app.approval(id).await)
        .await;
    // A key that is not a user key is refused at registration.
    let txn = store::begin(app.db()).await.unwrap();
    let mut bad = spec.clone();
    bad.systems[0].public_key = Some(nkeys::KeyPair::new_account().public_key());
    assert!(store::teams::apply(&txn, &bad).await.is_err());
    drop(txn);
    app.stop().await;
}

/// A worker that requires signatures: a system without a key can do nothing, and a key acts
/// only as its own system, neither as another of its team nor as one of another team;
/// registering a team whose systems lack keys is refused.
async fn with_signatures_required_no_agent_acts_as_another_system(backend: Backend) {
    let app =
        TestApp::spawn_configured(backend, None, None, |s| s.worker.require_signatures = true)
            .await;
    let (a, b) = (app.register_team("a").await, app.register_team("b").await);
    let (a4, a5, b4) = (
        nkeys::KeyPair::new_user(),
        nkeys::KeyPair::new_user(),
        nkeys::KeyPair::new_user(),
    );
    app.register_key("a", "System4/root", "system4", a4.public_key())
        .await;
    app.register_key("a", "System5/root", "system5", a5.public_key())
        .await;
    app.register_key("b", "System4/root", "system4", b4.public_key())
        .await;
    let as_a4 = app
        .client
        .clone()
        .with_signing_seed(&a4.seed().unwrap())
        .unwrap();

    // Commands: without a key, unsigned, under another system's id of either team.
    let keyless = app
        .refused(C::DraftProcedure, b.s5, first_run_discovery())
        .await;
    assert_eq!(keyless.code, "forbidden");
    assert!(
        keyless
            .message
            .contains("requires every command and query to be signed")
    );
    assert!(
        keyless.message.contains("sop team apply"),
        "says what to do"
    );
    let unsigned = app
        .refused(C::DraftProcedure, a.s4, first_run_discovery())
        .await;
    assert_eq!(unsigned.code, "forbidden");
    for (actor, whose) in [(a.s5, "its team's System5"), (b.s4, "team b's System4")] {
        let forged = as_a4
            .send(C::DraftProcedure, actor, first_run_discovery())
            .await
            .unwrap();
        assert_eq!(forged.error_code(), Some("forbidden"), "as {whose}");
    }
    let own = as_a4
        .send(C::DraftProcedure, a.s4, first_run_discovery())
        .await
        .unwrap();
    assert!(own.is_accepted(), "{own:?}");

    // Queries likewise.
    let ask = |client: &vsm_sop::bus::client::Client, actor: uuid::Uuid| {
        let client = client.clone();
        async move {
            client
                .query::<_, serde_json::Value>(
                    vsm_sop::wire::query::QueryName::ListProcedures,
                    &serde_json::json!({ "actor": actor }),
                )
                .await
        }
    };
    for (client, actor) in [(&app.client, a.s4), (&app.client, b.s5), (&as_a4, b.s4)] {
        match ask(client, actor).await {
            Err(vsm_sop::bus::client::ClientError::Refused(e)) => assert_eq!(e.code, "forbidden"),
            other => panic!("expected a refusal, got {other:?}"),
        }
    }
    let listed = ask(&as_a4, a.s4).await.unwrap();
    assert_eq!(
        listed["procedures"].as_array().unwrap().len(),
        1,
        "{listed}"
    );

    // A team registered over the bus brings a key for each system.
    let mut spec = serde_json::json!({
        "name": "c",
        "systems": [
            { "name": "System4/root", "type": "system4", "public_key": nkeys::KeyPair::new_user().public_key() },
            { "name": "System5/root", "type": "system5" }
        ]
    });
    match app
        .client
        .admin::<_, serde_json::Value>(vsm_sop::wire::admin::AdminName::ApplyTeam, &spec)
        .await
    {
        Err(vsm_sop::bus::client::ClientError::Refused(e)) => {
            assert_eq!(
                (e.code.as_str(), e.field.as_deref()),
                ("validation_failed", Some("systems[1].public_key")),
                "{e:?}"
            );
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    spec["systems"][1]["public_key"] = nkeys::KeyPair::new_user().public_key().into();
    let team: serde_json::Value = app
        .client
        .admin(vsm_sop::wire::admin::AdminName::ApplyTeam, &spec)
        .await
        .unwrap();
    assert_eq!(team["systems"].as_array().unwrap().len(), 2);
    app.stop().await;
}

/// A NATS user's password in these tests.
fn password(user: &str) -> String {
    format!("pw-{user}")
}

/// The subject prefix of the isolation test's deployment.
const PREFIX: &str = "iso";

/// An agent signed in to NATS as its system's own user (`nats_key`), with the refusals the
/// server sent it.
struct Agent {
    system: uuid::Uuid,
    nats: async_nats::Client,
    client: Client,
    refusals: Arc<Mutex<Vec<String>>>,
}

impl Agent {
    async fn connect(url: &str, pair: &nkeys::KeyPair, system: uuid::Uuid) -> Agent {
        let refusals = Arc::new(Mutex::new(Vec::new()));
        let seen = refusals.clone();
        let nats = eventually("an agent's connection", || {
            let seen = seen.clone();
            async move {
                async_nats::ConnectOptions::with_nkey(pair.seed().unwrap())
                    .custom_inbox_prefix(roles::inbox_prefix(&pair.public_key()))
                    .event_callback(move |event| {
                        let seen = seen.clone();
                        async move {
                            if let async_nats::Event::ServerError(e) = event {
                                seen.lock().unwrap().push(e.to_string());
                            }
                        }
                    })
                    .connect(url)
                    .await
                    .ok()
            }
        })
        .await;
        let client = Client::new(nats.clone(), Subjects::new(PREFIX)).with_timeout(WAIT);
        Agent {
            system,
            nats,
            client,
            refusals,
        }
    }

    /// The server's permission violation naming `subject`, as this agent's client heard it.
    async fn refused(&self, subject: &str) -> String {
        eventually(&format!("the server refusing {subject}"), || async {
            self.refusals
                .lock()
                .unwrap()
                .iter()
                .find(|e| e.to_lowercase().contains("permissions violation") && e.contains(subject))
                .cloned()
        })
        .await
    }

    fn heard_no_refusal(&self) {
        let refusals = self.refusals.lock().unwrap();
        assert!(refusals.is_empty(), "{refusals:?}");
    }

    async fn ok(&self, name: C, payload: serde_json::Value) -> Accepted {
        match self
            .client
            .send(name, self.system, payload)
            .await
            .unwrap()
            .verdict
        {
            Verdict::Accepted { result } => result,
            Verdict::Rejected { error } => panic!("{name} rejected: {error:?}"),
        }
    }
}

/// One team of the isolation test: its spec (each system with a NATS key), its agents once
/// registered.
struct IsolatedTeam {
    spec: TeamSpec,
    pairs: Vec<nkeys::KeyPair>,
    agents: std::collections::HashMap<String, Agent>,
}

impl IsolatedTeam {
    fn new(name: &str) -> IsolatedTeam {
        let systems = [
            ("System1/alpha", "system1"),
            ("System1/beta", "system1"),
            ("System3/root", "system3"),
            ("System4/root", "system4"),
            ("System5/root", "system5"),
        ];
        let pairs: Vec<nkeys::KeyPair> =
            systems.iter().map(|_| nkeys::KeyPair::new_user()).collect();
        let spec = TeamSpec {
            name: name.into(),
            systems: systems
                .iter()
                .zip(&pairs)
                .map(|((name, kind), pair)| SystemSpec {
                    name: (*name).into(),
                    kind: (*kind).into(),
                    id: None,
                    skills: vec![],
                    public_key: None,
                    nats_key: Some(pair.public_key()),
                })
                .collect(),
        };
        IsolatedTeam {
            spec,
            pairs,
            agents: Default::default(),
        }
    }

    fn agent(&self, name: &str) -> &Agent {
        &self.agents[name]
    }

    /// Drafts, approves and runs a one-task procedure to its end, each step by its own agent.
    async fn lifecycle(&self, app: &TestApp) {
        let draft = serde_json::json!({
            "name": "Isolated", "description": "One task", "risk_level": "low", "impact": "low",
            "rollback_plan": "none",
            "tasks": [{ "position": 1, "name": "Do it", "description": "The one step",
                        "default_assignee_type": "system1" }],
        });
        let drafted = self
            .agent("System4/root")
            .ok(C::DraftProcedure, draft)
            .await;
        let id = drafted.procedure_id.unwrap();
        self.agent("System5/root")
            .ok(C::ApproveProcedure, app.approval(id).await)
            .await;
        let s3 = self.agent("System3/root");
        let run = s3
            .ok(C::ExecuteProcedure, serde_json::json!({ "series_id": id }))
            .await;
        let task_id = run.task_ids[0];
        let task = entity::task::Entity::find_by_id(task_id)
            .one(app.db())
            .await
            .unwrap()
            .unwrap();
        let worker = self
            .agents
            .values()
            .find(|a| a.system == task.assignee_system_id)
            .unwrap();
        worker
            .ok(C::StartTask, serde_json::json!({ "task_id": task_id }))
            .await;
        worker
            .ok(
                C::CompleteTask,
                serde_json::json!({ "task_id": task_id, "result": "done" }),
            )
            .await;
        let reviewed = s3
            .ok(
                C::ReviewTask,
                serde_json::json!({ "task_id": task_id, "verdict": "approve", "reasoning": "fine" }),
            )
            .await;
        assert_eq!(reviewed.status.as_deref(), Some("approved"));
        let got: serde_json::Value = s3
            .client
            .query(
                QueryName::GetRun,
                &serde_json::json!({ "actor": s3.system, "run_id": run.run_id }),
            )
            .await
            .unwrap();
        assert_eq!(got["run"]["status"], "completed", "{got}");
    }
}

/// Two teams on a nats-server configured with what `sop roles` makes for them: each agent
/// is a NATS user of its own. What an agent of one team may not do, the server refuses (the
/// client hears the permission violation); what it may, works, and the whole lifecycle runs
/// for both teams with no refusal on the way.
async fn teams_are_isolated_on_the_bus(backend: Backend) {
    let mut red = IsolatedTeam::new("red");
    let mut blue = IsolatedTeam::new("blue");
    let subjects = Subjects::new(PREFIX);
    let conf = roles::roles_conf(&subjects, &[red.spec.clone(), blue.spec.clone()]).unwrap();
    let server = PrivateNats::with(NatsSpec {
        jetstream: true,
        include: vec![("roles.conf".into(), conf)],
        env: roles::PASSWORD_USERS
            .iter()
            .map(|user| (roles::password_variable(user), password(user)))
            .collect(),
        ..NatsSpec::default()
    });
    let url = server.url();
    let app = TestApp::spawn_configured(backend, Some(url.clone()), None, |s| {
        s.connection.subject_prefix = PREFIX.into();
        s.connection.nats_user = Some("worker".into());
        s.connection.nats_password = Some(password("worker"));
    })
    .await;
    let operator =
        async_nats::ConnectOptions::with_user_and_password("operator".into(), password("operator"))
            .connect(url.as_str())
            .await
            .unwrap();
    let operator = Client::new(operator, subjects.clone()).with_timeout(WAIT);
    for team in [&mut red, &mut blue] {
        // Over the bus, as an operator: the team's events stream comes with it.
        let applied: TeamIdentity = operator
            .admin(AdminName::ApplyTeam, &team.spec)
            .await
            .unwrap();
        for (system, pair) in team.spec.systems.iter().zip(&team.pairs) {
            let id = applied
                .systems
                .iter()
                .find(|m| m.name == system.name)
                .unwrap()
                .id;
            let agent = Agent::connect(&url, pair, id).await;
            team.agents.insert(system.name.clone(), agent);
        }
    }

    // Allowed: live events of its own team, the whole lifecycle, replay of its team's stream.
    let red1 = red.agent("System1/alpha");
    let mut live = red1
        .nats
        .subscribe(subjects.event_filter(Some("run.started"), Some("red")))
        .await
        .unwrap();
    red1.nats.flush().await.unwrap();
    red.lifecycle(&app).await;
    blue.lifecycle(&app).await;
    let started = tokio::time::timeout(WAIT, live.next())
        .await
        .unwrap()
        .unwrap();
    let started: serde_json::Value = serde_json::from_slice(&started.payload).unwrap();
    assert_eq!(started["team"], "red");
    let history = red1
        .client
        .history(&subjects.team_events("red"), EventStart::First)
        .await
        .unwrap();
    let history: Vec<_> = history.map(|e| e.unwrap()).collect().await;
    assert!(history.len() > 5, "{} events", history.len());
    assert!(history.iter().all(|e| e.team == "red"));
    let mut report = vec![format!(
        "allowed  red System1: subscribe {}, replay {} ({} events), commands of its type with their outcomes, queries",
        subjects.event_filter(Some("run.started"), Some("red")),
        subjects.team_events_stream("red"),
        history.len()
    )];
    for team in [&red, &blue] {
        for agent in team.agents.values() {
            agent.heard_no_refusal();
        }
    }
    report.push("allowed  both teams: draft, approve, execute, start, complete, review, run.get — no refusal heard".into());

    // Denied, each refused by the server.
    let blue_command = blue
        .agent("System4/root")
        .client
        .send(
            C::DraftProcedure,
            blue.agent("System4/root").system,
            first_run_discovery(),
        )
        .await
        .unwrap()
        .command_id;
    let blue_key = blue.pairs[0].public_key();
    let subscriptions = [
        subjects.event_filter(Some("task.ready"), Some("blue")),
        subjects.team_events("blue"),
        subjects.outcome_filter(),
        "_INBOX.>".to_owned(),
        format!("{}.>", roles::inbox_prefix(&blue_key)),
    ];
    for subject in &subscriptions {
        let _held = red1.nats.subscribe(subject.clone()).await.unwrap();
        red1.nats.flush().await.unwrap();
        let said = red1.refused(subject).await;
        report.push(format!("denied   subscribe {subject}: {said}"));
    }
    let mut js = async_nats::jetstream::new(red1.nats.clone());
    js.set_timeout(Duration::from_millis(500));
    let blue_stream = subjects.team_events_stream("blue");
    let consumer = js
        .create_consumer_on_stream(
            async_nats::jetstream::consumer::pull::Config::default(),
            &blue_stream,
        )
        .await;
    assert!(consumer.is_err(), "a consumer on {blue_stream}");
    let said = red1.refused(&blue_stream).await;
    report.push(format!("denied   consumer on {blue_stream}: {said}"));
    let outcome = js
        .get_stream_no_info(subjects.outcomes_stream())
        .await
        .unwrap()
        .direct_get_last_for_subject(
            subjects.outcome(vsm_sop::domain::ids::CommandId(blue_command)),
        )
        .await;
    assert!(outcome.is_err(), "blue's outcome read");
    let said = red1
        .refused(&format!(
            "$JS.API.DIRECT.GET.{}",
            subjects.outcomes_stream()
        ))
        .await;
    report.push(format!("denied   direct get of blue's outcome: {said}"));
    let listed = futures::StreamExt::next(&mut js.stream_names()).await;
    assert!(!matches!(listed, Some(Ok(_))), "stream names listed");
    let said = red1.refused("$JS.API.STREAM.NAMES").await;
    report.push(format!("denied   list the streams (teams): {said}"));
    for subject in [
        subjects.command("procedure.approve"),
        subjects.event(vsm_sop::domain::event::EventKind::ALL[0], "red"),
        subjects.admin("team.apply"),
    ] {
        red1.nats
            .publish(subject.clone(), "{}".into())
            .await
            .unwrap();
        red1.nats.flush().await.unwrap();
        let said = red1.refused(&subject).await;
        report.push(format!("denied   publish {subject}: {said}"));
    }
    // The worker answers a system about its own team only: blue's outcome is not red's.
    match red1
        .client
        .query::<_, serde_json::Value>(
            QueryName::Outcome,
            &serde_json::json!({ "actor": red1.system, "command_id": blue_command }),
        )
        .await
    {
        Err(ClientError::Refused(e)) => {
            assert_eq!(e.code, "not_found");
            report.push(format!(
                "denied   query command.outcome of blue's command: worker says {}",
                e.code
            ));
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    eprintln!(
        "nats-server {}\n{}",
        red1.nats.server_info().version,
        report.join("\n")
    );
    app.stop().await;
}
