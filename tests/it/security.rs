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

on_both_databases!(a_system_with_a_key_must_sign_its_commands);

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
