//! `deploy/nats/roles.conf` on a real nats-server: each role publishes only its own commands,
//! agents cannot forge events, the worker cannot send commands.

use std::collections::BTreeSet;
use std::time::Duration;

use futures::StreamExt;

use crate::harness::*;
use crate::on_both_databases;
use vsm_sop::bus::roles;
use vsm_sop::domain::system::SystemKind;
use vsm_sop::store::{
    self,
    teams::{SystemSpec, TeamSpec},
};
use vsm_sop::wire::command::CommandName as C;

on_both_databases!(
    a_system_with_a_key_must_sign_its_commands,
    with_signatures_required_no_agent_acts_as_another_system
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

fn password(user: &str) -> String {
    format!("pw-{user}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_role_publishes_only_what_it_may() {
    let roles = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/nats/roles.conf");
    let server = PrivateNats::with(NatsSpec {
        include: vec![("roles.conf".into(), std::fs::read_to_string(roles).unwrap())],
        env: roles::users()
            .into_iter()
            .map(|user| (roles::password_variable(user), password(user)))
            .collect(),
        ..NatsSpec::default()
    });
    let url = server.url();
    let connect = |user: &'static str| {
        let url = url.clone();
        async move {
            eventually(&format!("a connection as {user}"), || async {
                async_nats::ConnectOptions::with_user_and_password(user.into(), password(user))
                    .connect(url.as_str())
                    .await
                    .ok()
            })
            .await
        }
    };
    let operator = connect("operator").await;
    let mut seen = operator.subscribe(">").await.unwrap();
    operator.flush().await.unwrap();

    // Every command, as each role: sent exactly when the command table lets the role send it.
    let mut cases: Vec<(&'static str, String, bool)> = Vec::new();
    for &kind in SystemKind::ALL {
        for &name in C::ALL {
            cases.push((kind.as_str(), name.as_str().to_owned(), name.may_send(kind)));
        }
    }
    for (user, subject, allowed) in [
        ("worker", "policy.changed.team-a", true),
        ("system1", "task.ready.team-a", false),
        ("system1", "sop.query.run.get", true),
        ("worker", "task.ready.team-a", true),
        ("worker", "procedure.draft", false),
        ("operator", "procedure.retire", true),
        // Operator requests are unsigned: only the operator may send them.
        ("operator", "sop.admin.team.apply", true),
        ("operator", "sop.admin.outbox.republish", true),
        ("system5", "sop.admin.team.apply", false),
        ("system1", "sop.admin.outbox.republish", false),
        ("worker", "sop.admin.team.apply", false),
        // Who is who: any agent may ask.
        ("system1", "sop.query.system.get", true),
    ] {
        cases.push((user, subject.to_owned(), allowed));
    }
    let mut clients = std::collections::HashMap::from([("operator", operator.clone())]);
    let mut expected = BTreeSet::new();
    for (i, (user, subject, allowed)) in cases.into_iter().enumerate() {
        if !clients.contains_key(user) {
            let client = connect(user).await;
            clients.insert(user, client);
        }
        let client = &clients[user];
        let marker = format!("{i}:{user}:{subject}");
        client
            .publish(subject.to_string(), marker.clone().into())
            .await
            .unwrap();
        client.flush().await.unwrap();
        if allowed {
            expected.insert(marker);
        }
    }
    let mut received = BTreeSet::new();
    while let Ok(Some(m)) = tokio::time::timeout(Duration::from_millis(500), seen.next()).await {
        let text = String::from_utf8_lossy(&m.payload).into_owned();
        if text.contains(':') {
            received.insert(text);
        }
    }
    assert_eq!(
        received, expected,
        "exactly the permitted publishes reached the bus"
    );
}
