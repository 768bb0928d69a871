//! Who is who, over the bus: an operator registers a team (`sop.admin.team.apply`), anyone
//! resolves a system by team and name (`sop.query.system.get`) or lists a team
//! (`sop.query.team.get`), and the CLI acts by name without ever opening a database.

use serde_json::{Value, json};
use uuid::Uuid;

use crate::harness::*;
use crate::on_both_databases;
use vsm_sop::bus::client::ClientError;
use vsm_sop::wire::admin::AdminName as A;
use vsm_sop::wire::query::QueryName as Q;

on_both_databases!(
    a_team_registered_over_the_bus_is_resolved_by_name,
    dead_letters_and_parked_messages_are_listed_over_the_bus,
    the_cli_acts_by_name_and_needs_no_database
);

fn team_file(name: &str) -> Value {
    json!({
        "name": name,
        "systems": [
            { "name": "System1/alpha", "type": "system1", "skills": ["interviewing"] },
            { "name": "System1/beta", "type": "system1" },
            { "name": "System3/root", "type": "system3" },
            { "name": "System4/root", "type": "system4" },
            { "name": "System5/root", "type": "system5" }
        ]
    })
}

fn refused(result: Result<Value, ClientError>) -> vsm_sop::wire::outcome::ErrorBody {
    match result {
        Err(ClientError::Refused(e)) => e,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

async fn a_team_registered_over_the_bus_is_resolved_by_name(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let first: Value = app
        .client
        .admin(A::ApplyTeam, &team_file("identity"))
        .await
        .unwrap();
    // Applying the same file again changes nothing: same team, same systems, same ids.
    let again: Value = app
        .client
        .admin(A::ApplyTeam, &team_file("identity"))
        .await
        .unwrap();
    assert_eq!(first, again);
    assert_eq!(first["systems"].as_array().unwrap().len(), 5);
    let id_of = |name: &str| {
        first["systems"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["name"] == name)
            .unwrap()["id"]
            .clone()
    };

    let beta: Value = app
        .client
        .query(
            Q::GetSystem,
            &json!({ "team": "identity", "name": "System1/beta" }),
        )
        .await
        .unwrap();
    assert_eq!(beta["id"], id_of("System1/beta"));
    assert_eq!(beta["type"], "system1");
    assert_eq!(beta["team_id"], first["id"]);
    assert_eq!(beta["has_key"], false);
    assert!(beta.get("public_key").is_none(), "{beta}");
    // A type names the team's only system of that type.
    let s5: Value = app
        .client
        .query(
            Q::GetSystem,
            &json!({ "team": "identity", "name": "System5" }),
        )
        .await
        .unwrap();
    assert_eq!(s5["id"], id_of("System5/root"));
    // Two System1s: the type alone names neither; the refusal lists the team's systems.
    let unknown = refused(
        app.client
            .query(
                Q::GetSystem,
                &json!({ "team": "identity", "name": "System1" }),
            )
            .await,
    );
    assert_eq!(unknown.code, "not_found");
    assert!(
        unknown.message.contains("System1/alpha"),
        "{}",
        unknown.message
    );
    let no_team = refused(
        app.client
            .query(
                Q::GetSystem,
                &json!({ "team": "nobody", "name": "System5" }),
            )
            .await,
    );
    assert_eq!(no_team.code, "not_found");

    let team: Value = app
        .client
        .query(Q::GetTeam, &json!({ "team": "identity" }))
        .await
        .unwrap();
    assert_eq!(team["id"], first["id"]);
    let names: Vec<&str> = team["systems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "System1/alpha",
            "System1/beta",
            "System3/root",
            "System4/root",
            "System5/root"
        ]
    );
    let by_member: Value = app
        .client
        .query(Q::GetTeam, &json!({ "system_id": id_of("System3/root") }))
        .await
        .unwrap();
    assert_eq!(by_member, team);
    let neither = refused(app.client.query(Q::GetTeam, &json!({})).await);
    assert_eq!(neither.code, "validation_failed");

    // A malformed team is refused with its rule, and nothing is written.
    let mut bad = team_file("identity-bad");
    bad["systems"][0]["type"] = json!("system9");
    let invalid = refused(app.client.admin(A::ApplyTeam, &bad).await);
    assert_eq!(invalid.code, "validation_failed");
    let missing = refused(
        app.client
            .query(Q::GetTeam, &json!({ "team": "identity-bad" }))
            .await,
    );
    assert_eq!(missing.code, "not_found");
    app.stop().await;
}

async fn dead_letters_and_parked_messages_are_listed_over_the_bus(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let none: Value = app.client.admin(A::DeadLetters, &json!({})).await.unwrap();
    assert_eq!(none["dead_letters"], json!([]));
    let id = Uuid::now_v7();
    let subject = app.client.subjects().command("procedure.draft");
    let outcome = app
        .client
        .send_raw(&subject, id, b"not json".to_vec())
        .await
        .unwrap();
    assert_eq!(outcome.error_code(), Some("invalid_payload"));
    let letters: Value = app
        .client
        .admin(A::DeadLetters, &json!({ "limit": 10 }))
        .await
        .unwrap();
    assert_eq!(letters["dead_letters"][0]["command_id"], json!(id));
    assert_eq!(letters["dead_letters"][0]["reason"], "invalid_payload");
    assert_eq!(letters["truncated"], false);

    let parked: Value = app.client.admin(A::ParkedOutbox, &json!({})).await.unwrap();
    assert_eq!(parked["parked"], json!([]));
    // Republishing what is not parked moves nothing and says which.
    let not_parked = refused(
        app.client
            .admin(A::RepublishOutbox, &json!({ "seqs": [424242] }))
            .await,
    );
    assert_eq!(not_parked.code, "not_found");
    let neither = refused(app.client.admin(A::RepublishOutbox, &json!({})).await);
    assert_eq!(neither.code, "validation_failed");
    let all: Value = app
        .client
        .admin(A::RepublishOutbox, &json!({ "all": true }))
        .await
        .unwrap();
    assert_eq!(all["parked"], json!([]));
    app.stop().await;
}

/// Runs `sop` in `dir` with the worker's NATS and prefix and no database setting at all.
async fn sop_without_db(app: &TestApp, dir: &std::path::Path, args: &[&str]) -> String {
    let s = &app.settings;
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_sop"))
        .args(args)
        .current_dir(dir)
        .env("SOP_NATS_URL", &s.connection.nats_url)
        .env("SOP_SUBJECT_PREFIX", &s.connection.subject_prefix)
        .env("RUST_LOG", "error")
        .env_remove("SOP_DATABASE_URL")
        .env_remove("SOP_CONFIG")
        .env_remove("SOP_ACTOR")
        .env_remove("SOP_TEAM")
        .env_remove("SOP_NKEY_SEED")
        .output()
        .await
        .expect("run sop");
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    );
    assert!(out.status.success(), "sop {args:?}: {stdout}{stderr}");
    stdout
}

async fn the_cli_acts_by_name_and_needs_no_database(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let dir = std::env::temp_dir().join(format!("sop-identity-{}", Uuid::now_v7()));
    std::fs::create_dir_all(&dir).unwrap();
    let team_path = dir.join("team.json");
    std::fs::write(&team_path, team_file("named").to_string()).unwrap();
    let draft_path = dir.join("draft.yaml");
    std::fs::write(
        &draft_path,
        "name: Onboarding\nrisk_level: low\nimpact: medium\nrollback_plan: Remove the account.\ntasks:\n  - name: Create account\n    required_skills: [interviewing]\n  - name: Welcome call\n    depends_on: [1]\n",
    )
    .unwrap();
    let files = [team_path.clone(), draft_path.clone()];
    let run = |args: Vec<String>| {
        let app = &app;
        let dir = dir.clone();
        async move {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            sop_without_db(app, &dir, &args).await
        }
    };
    let json_of = |out: String| serde_json::from_str::<Value>(&out).expect("JSON output");
    let args = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();

    let team = json_of(
        run(args(&[
            "team",
            "apply",
            "--file",
            team_path.to_str().unwrap(),
            "--json",
        ]))
        .await,
    );
    assert_eq!(team["name"], "named");
    let shown = run(args(&["team", "show", "named"])).await;
    assert!(shown.contains("System1/alpha"), "{shown}");

    let as_ = |name: &str, rest: &[&str]| {
        let mut all = args(rest);
        all.extend(args(&["--team", "named", "--actor", name, "--json"]));
        all
    };
    let v1 = json_of(
        run(as_(
            "System4",
            &["procedure", "draft", "--file", draft_path.to_str().unwrap()],
        ))
        .await,
    );
    let digest =
        |drafted: &Value| format!("digest={}", drafted["result"]["digest"].as_str().unwrap());
    let (v1, d1) = (
        v1["result"]["procedure_id"].as_str().unwrap().to_owned(),
        digest(&v1),
    );
    run(as_("System5/root", &["procedure", "approve", &v1, &d1])).await;
    let v2 = json_of(
        run(as_(
            "System4",
            &["procedure", "revise", &v1, "description=Second version"],
        ))
        .await,
    );
    let (v2, d2) = (
        v2["result"]["procedure_id"].as_str().unwrap().to_owned(),
        digest(&v2),
    );
    run(as_("System5", &["procedure", "approve", &v2, &d2])).await;
    // Executed by the id of version 2, which stands for its series.
    let started = json_of(run(as_("System3", &["procedure", "execute", &v2])).await);
    assert_eq!(started["status"], "accepted", "{started}");
    assert_eq!(started["result"]["version"], 2);
    let run_id = started["result"]["run_id"].as_str().unwrap().to_owned();

    let mut show = args(&["run", "show", &run_id]);
    show.extend(args(&["--team", "named", "--actor", "System3"]));
    let shown = run(show).await;
    assert!(
        shown.contains("System1/alpha") && shown.contains("System3/root"),
        "{shown}"
    );
    let mut history = args(&["procedure", "history", &v1]);
    history.extend(args(&["--team", "named", "--actor", "System1/beta"]));
    // History takes a series id: version 1's series is version 1's `series_id`.
    let series = json_of(run(as_("System3", &["procedure", "show", &v1])).await);
    history[2] = series["procedure"]["series_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let versions = run(history).await;
    assert!(
        versions.contains("System4/root") && versions.contains("System5/root"),
        "{versions}"
    );

    // Nothing in the folder but what the test wrote: no sop.db.
    let mut left: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    left.sort();
    let mut expected = files.to_vec();
    expected.sort();
    assert_eq!(left, expected);
    let _ = std::fs::remove_dir_all(&dir);
    app.stop().await;
}
