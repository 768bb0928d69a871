//! Golden examples of every message (`docs/examples/`): one per command, event type and
//! outcome shape, and each query's request, answer and a refusal, built from fixed ids and
//! times. They are snapshots: a change to the wire
//! shows up as a diff in review. Command examples must also decode, so the documentation can
//! be pasted onto the bus as it is. Regenerate with `SOP_WRITE_CONTRACT=1 cargo test --lib`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::{Value, json};
use uuid::Uuid;

use super::decode::{Arrival, decode};
use crate::domain::diff::diff;
use crate::domain::error::ErrorCode;
use crate::domain::event::{Event, EventKind, ProcedureView};
use crate::domain::ids::*;
use crate::domain::procedure::{Procedure, Series};
use crate::domain::review::ReviewDraft;
use crate::domain::run::{Execution, RunTerms, TaskChange, Verdict};
use crate::domain::testing::*;
use crate::wire::answer::*;
use crate::wire::command::examples::{id, policy_document};
use crate::wire::command::{CommandName, SCHEMA_VERSION};
use crate::wire::event::EventEnvelope;
use crate::wire::outcome::{Accepted, ErrorBody, Outcome, Verdict as OutcomeVerdict};
use crate::wire::page::{BadCursor, Cursor};
use crate::wire::query::{QueryFailure, QueryName};

fn command(name: CommandName) -> Value {
    json!({
        "schema_version": SCHEMA_VERSION,
        "command_id": id(100),
        "actor": id(200),
        "correlation_id": "onboarding-42",
        "payload": name.example(),
    })
}

/// One event of every type, from the domain itself.
fn events() -> BTreeMap<&'static str, Event> {
    let mut all: Vec<Event> = Vec::new();
    let (mut draft, drafted) =
        Procedure::draft(pid(1), meta(), &first_run_discovery(), &system4(), t(0)).unwrap();
    all.push(drafted);
    all.push(draft.reject("Too vague".into(), &system5(), t(1)).unwrap());
    all.push(
        draft
            .edit(meta(), &first_run_discovery(), true, &system4(), t(2))
            .unwrap(),
    );
    let mut series = Series::new(vec![draft.clone()]).unwrap();
    let digest = series.get(pid(1)).unwrap().digest.to_string();
    all.extend(
        series
            .approve(pid(1), &digest, &system5(), t(3))
            .unwrap()
            .events,
    );
    let (v2, revised) = series
        .revise(
            pid(1),
            meta(),
            &first_run_discovery(),
            pid(2),
            &system4(),
            t(4),
        )
        .unwrap();
    all.push(revised);
    let mut discarded = v2.clone();
    all.push(
        discarded
            .discard("Not needed".into(), &system4(), t(5))
            .unwrap(),
    );
    let mut retired = series.get(pid(1)).unwrap().clone();
    all.push(retired.retire("Obsolete".into(), &system5(), t(6)).unwrap());

    let (mut run, events) = execute(&first_run_discovery());
    all.extend(events);
    let worker = |run: &Execution, i: usize| {
        the_team()
            .into_iter()
            .find(|s| s.id == run.tasks[i].assignee)
            .unwrap()
    };
    let first = run.tasks[0].id;
    all.extend(run.start_task(first, &worker(&run, 0), t(11)).unwrap());
    all.extend(
        run.block_task(
            first,
            "Waiting for the user".into(),
            &worker(&run, 0),
            t(12),
        )
        .unwrap(),
    );
    all.extend(run.unblock_task(first, None, &system3(), t(13)).unwrap());
    all.extend(run.start_task(first, &worker(&run, 0), t(14)).unwrap());
    all.extend(
        run.complete_task(first, "Links collected".into(), &worker(&run, 0), t(15))
            .unwrap(),
    );
    all.extend(
        run.review_task(
            first,
            Verdict::Reject,
            "Missing links".into(),
            &system3(),
            t(16),
        )
        .unwrap(),
    );
    all.extend(
        run.replace_task(
            first,
            TaskId(id(30)),
            TaskChange {
                reason: "Redo".into(),
                ..Default::default()
            },
            &system3(),
            t(17),
        )
        .unwrap(),
    );
    all.extend(
        run.start_task(TaskId(id(30)), &worker(&run, 6), t(18))
            .unwrap(),
    );
    all.extend(
        run.complete_task(TaskId(id(30)), "All links".into(), &worker(&run, 6), t(19))
            .unwrap(),
    );
    all.extend(
        run.review_task(
            TaskId(id(30)),
            Verdict::Approve,
            "Good".into(),
            &system3(),
            t(20),
        )
        .unwrap(),
    );
    let mut canceled = run.clone();
    all.extend(
        canceled
            .cancel("Priorities changed".into(), &system3(), t(21))
            .unwrap(),
    );
    let rest: Vec<TaskId> = run.tasks[1..6].iter().map(|t| t.id).collect();
    for (i, task) in rest.into_iter().enumerate() {
        let w = worker(&run, i + 1);
        run.start_task(task, &w, t(30)).unwrap();
        run.complete_task(task, "done".into(), &w, t(31)).unwrap();
        all.extend(
            run.review_task(task, Verdict::Approve, "ok".into(), &system3(), t(32))
                .unwrap(),
        );
    }
    let review = ReviewDraft {
        outcome: "succeeded".into(),
        summary: "Discovery done".into(),
        lessons: vec!["Ask for documents first".into()],
        follow_ups: vec![],
    };
    all.push(
        run.record_review(ReviewId(id(40)), review, &system3(), t(40))
            .unwrap()
            .1,
    );
    let (mut doomed, _) = execute(&first_run_discovery());
    let second = doomed.tasks[1].id;
    let first = doomed.tasks[0].id;
    let w = the_team()
        .into_iter()
        .find(|s| s.id == doomed.tasks[0].assignee)
        .unwrap();
    doomed.start_task(first, &w, t(50)).unwrap();
    doomed.complete_task(first, "r".into(), &w, t(51)).unwrap();
    doomed
        .review_task(first, Verdict::Approve, "ok".into(), &system3(), t(52))
        .unwrap();
    all.extend(
        doomed
            .cancel_task(second, "Not needed".into(), &system3(), t(53))
            .unwrap(),
    );
    let policy: crate::domain::policy::PolicyDocument =
        serde_json::from_value(policy_document()).expect("the example policy");
    let previous = crate::domain::policy::PolicyDocument {
        rules: policy.rules[..1].to_vec(),
    };
    let (_, changed) =
        crate::domain::policy::Policy::replace(&policy, Some((1, &previous)), &system5()).unwrap();
    all.push(changed);
    let held = || {
        let terms = RunTerms {
            approval_rule: Some("risky".into()),
            ..RunTerms::default()
        };
        execute_with(&first_run_discovery(), terms)
    };
    let (mut approved, events) = held();
    all.extend(events);
    all.extend(
        approved
            .approve(Some("Rollback plan checked".into()), &system5(), t(54))
            .unwrap(),
    );
    let (mut rejected, _) = held();
    all.extend(
        rejected
            .reject("Not during the migration week".into(), &system5(), t(55))
            .unwrap(),
    );
    let (mut paused, _) = execute(&first_run_discovery());
    all.extend(
        paused
            .pause("Waiting for the budget decision".into(), &system3(), t(56))
            .unwrap(),
    );
    all.extend(
        paused
            .resume(Some("Budget approved".into()), &system3(), t(57))
            .unwrap(),
    );
    let mut by_kind = BTreeMap::new();
    for e in all {
        by_kind.entry(e.kind.as_str()).or_insert(e);
    }
    by_kind
}

/// An event's envelope; its id is made from its type, so that a new type leaves the other
/// examples as they are.
fn envelope(e: &Event) -> Value {
    serde_json::to_value(EventEnvelope {
        schema_version: SCHEMA_VERSION,
        event_id: Uuid::new_v5(&Uuid::NAMESPACE_OID, e.kind.as_str().as_bytes()),
        kind: e.kind.as_str().to_owned(),
        occurred_at: t(60),
        team_id: e.team_id.0,
        team: "discovery".into(),
        causation_id: id(100),
        correlation_id: Some("onboarding-42".into()),
        actor: id(200),
        data: e,
    })
    .unwrap()
}

fn outcomes() -> Vec<(&'static str, Value)> {
    let accepted = Outcome {
        schema_version: SCHEMA_VERSION,
        command_id: id(100),
        command: "procedure.execute".into(),
        verdict: OutcomeVerdict::Accepted {
            result: Accepted {
                procedure_id: Some(id(1)),
                series_id: Some(id(1)),
                version: Some(1),
                status: Some("started".into()),
                digest: Some(digest()),
                run_id: Some(id(10)),
                initiative_id: Some(id(11)),
                task_ids: vec![id(20), id(21)],
                ..Default::default()
            },
        },
        processed_at: t(60),
    };
    let rejected = Outcome {
        verdict: OutcomeVerdict::Rejected {
            error: ErrorBody {
                code: "validation_failed".into(),
                message: "tasks[position=2].depends_on: no task at position 9 in this procedure"
                    .into(),
                field: Some("tasks[position=2].depends_on".into()),
            },
        },
        command: "procedure.draft".into(),
        ..accepted.clone()
    };
    // The refusal the example policy gives a second open run of a risky procedure.
    let policy = crate::domain::policy::Policy::parse(
        &serde_json::from_value(policy_document()).expect("the example policy"),
    )
    .expect("a valid policy");
    let started = [t(30)];
    let denial = policy
        .check(&crate::domain::policy::Attempt {
            series: SeriesId(id(1)),
            risk: crate::domain::procedure::RiskLevel::High,
            now: t(60),
            open_runs: 1,
            started: &started,
        })
        .expect_err("a second open run is refused");
    let policy_denied = Outcome {
        verdict: OutcomeVerdict::Rejected {
            error: ErrorBody {
                code: "policy_denied".into(),
                message: denial.message,
                field: Some(denial.rule),
            },
        },
        ..accepted.clone()
    };
    vec![
        ("accepted", serde_json::to_value(accepted).unwrap()),
        ("rejected", serde_json::to_value(rejected).unwrap()),
        (
            "policy_denied",
            serde_json::to_value(policy_denied).unwrap(),
        ),
    ]
}

fn examples() -> Vec<(PathBuf, Value)> {
    let mut out = Vec::new();
    for name in CommandName::ALL {
        out.push((
            PathBuf::from(format!("commands/{}.json", name.as_str())),
            command(*name),
        ));
    }
    let events = events();
    assert_eq!(
        events.len(),
        EventKind::ALL.len(),
        "an example of every event type"
    );
    for (kind, e) in &events {
        out.push((PathBuf::from(format!("events/{kind}.json")), envelope(e)));
    }
    for (name, o) in outcomes() {
        out.push((PathBuf::from(format!("outcomes/{name}.json")), o));
    }
    for name in QueryName::ALL {
        let (request, answer, failure) = query_example(*name);
        for (part, value) in [
            ("request", request),
            ("answer", answer),
            ("failure", failure),
        ] {
            out.push((
                PathBuf::from(format!("queries/{}.{part}.json", name.as_str())),
                value,
            ));
        }
    }
    out
}

fn failure(code: ErrorCode, message: &str, field: Option<&str>) -> Value {
    serde_json::to_value(QueryFailure {
        error: ErrorBody {
            code: code.as_str().into(),
            message: message.into(),
            field: field.map(str::to_owned),
        },
    })
    .unwrap()
}

/// A request each query takes, an answer it gives and a refusal it may give, from the same
/// fixtures as the command and event examples.
fn query_example(name: QueryName) -> (Value, Value, Value) {
    use QueryName as Q;
    let actor = id(200);
    let series = approved_series();
    let v1 = series.get(pid(1)).unwrap();
    let view = ProcedureView::of(v1);
    let cursor = Cursor::Procedures {
        series_id: id(1),
        version: 1,
    }
    .encode();
    let (run, _) = execute(&first_run_discovery());
    // As the service words them (`Rejection::not_found`): another team's is not found alike.
    let not_found =
        |what: &str| failure(ErrorCode::NotFound, &format!("no {what} {}", id(99)), None);
    match name {
        Q::GetProcedure => (
            json!({ "actor": actor, "procedure_id": id(1) }),
            to_value(&ProcedureDetail {
                procedure: view.clone(),
                tasks: first_run_discovery().as_slice().to_vec(),
            }),
            not_found("procedure"),
        ),
        Q::ListProcedures => (
            json!({ "actor": actor, "status": "approved", "name": "discovery", "limit": 1 }),
            to_value(&ProcedureList {
                procedures: vec![view.clone()],
                next_cursor: Some(cursor.clone()),
            }),
            failure(
                ErrorCode::ValidationFailed,
                &BadCursor.to_string(),
                Some("cursor"),
            ),
        ),
        Q::History => (
            json!({ "actor": actor, "series_id": id(1) }),
            to_value(&History {
                series_id: v1.series_id,
                versions: series.versions().iter().map(ProcedureView::of).collect(),
                next_cursor: None,
            }),
            not_found("procedure series"),
        ),
        Q::Diff => {
            let mut medium = meta();
            medium.risk_level = crate::domain::procedure::RiskLevel::Medium;
            let mut v2 = revise(&series, 1, 2, 4).unwrap();
            v2.meta = medium.clone();
            let templates = first_run_discovery();
            (
                json!({ "actor": actor, "from": id(1), "to": id(2) }),
                to_value(&VersionDiff {
                    from: view.clone(),
                    to: ProcedureView::of(&v2),
                    diff: diff((&v1.meta, &templates), (&medium, &templates)),
                }),
                not_found("procedure"),
            )
        }
        Q::Preview => (
            json!({ "actor": actor, "procedure_id": id(1) }),
            to_value(&Preview {
                procedure: view.clone(),
                executable: false,
                blocked_by: Some(
                    "executes are frozen by rule `quiet-hours` (sat,sun 00:00–24:00 \
                     Europe/Berlin) until 2027-01-18T00:00:00+01:00"
                        .into(),
                ),
                policy_rule: Some("quiet-hours.freeze".into()),
                approval_rule: Some("risky".into()),
                initiative_name: v1.meta.name.clone(),
                initiative_description: v1.meta.description.clone(),
                tasks: first_run_discovery()
                    .as_slice()
                    .iter()
                    .zip(&run.tasks)
                    .map(|(t, task)| PreviewTask {
                        position: t.position,
                        name: t.name.clone(),
                        description: t.description.clone(),
                        depends_on: t.depends_on.iter().copied().collect(),
                        ready_at_start: t.depends_on.is_empty(),
                        assignee_type: task.assignee_type,
                        assignee_system_id: Some(task.assignee),
                        assignee_name: the_team()
                            .into_iter()
                            .find(|s| s.id == task.assignee)
                            .map(|s| s.name),
                        required_skills: t.required_skills.clone(),
                    })
                    .collect(),
            }),
            not_found("procedure"),
        ),
        Q::GetRun => (
            json!({ "actor": actor, "run_id": run.provenance.run_id, "limit": 2 }),
            to_value(&RunDetail {
                run: run.run_view(),
                initiative: run.initiative_view(),
                tasks: run.tasks[..2].iter().map(|t| run.task_view(t)).collect(),
                review: None,
                next_cursor: Some(
                    Cursor::RunTasks {
                        run_id: run.provenance.run_id.0,
                        seq: 1,
                    }
                    .encode(),
                ),
            }),
            not_found("run"),
        ),
        Q::ListRuns => (
            json!({ "actor": actor, "status": "awaiting_approval" }),
            to_value(&RunList {
                runs: vec![
                    execute_with(
                        &first_run_discovery(),
                        RunTerms {
                            approval_rule: Some("risky".into()),
                            ..RunTerms::default()
                        },
                    )
                    .0
                    .run_view(),
                ],
                next_cursor: None,
            }),
            failure(
                ErrorCode::ValidationFailed,
                "one of awaiting_approval, started, completed, failed, canceled",
                Some("status"),
            ),
        ),
        Q::ListTasks => (
            json!({ "actor": run.tasks[0].assignee, "ready": true }),
            to_value(&TaskList {
                assignee_system_id: run.tasks[0].assignee,
                tasks: vec![run.task_view(&run.tasks[0])],
                next_cursor: None,
            }),
            failure(
                ErrorCode::ValidationFailed,
                "one of pending, in_progress, blocked, completed, approved, rejected, canceled",
                Some("status"),
            ),
        ),
        Q::Trace => (
            json!({ "actor": actor, "initiative_id": run.initiative.id }),
            to_value(&Trace {
                initiative_id: run.initiative.id,
                run: run.run_view(),
                procedure: view.clone(),
                review_id: None,
            }),
            not_found("initiative"),
        ),
        Q::Audit => (
            json!({ "actor": actor, "run_id": run.provenance.run_id }),
            to_value(&Audit {
                entries: vec![AuditEntry {
                    seq: 7,
                    event_id: id(1000),
                    kind: "run.started".into(),
                    subject: "run.started.discovery".into(),
                    occurred_at: t(10),
                    actor: Some(system3().id.0),
                    causation_id: Some(id(100)),
                    published: true,
                }],
                next_cursor: None,
            }),
            failure(
                ErrorCode::ValidationFailed,
                "give series_id or run_id",
                Some("series_id"),
            ),
        ),
        Q::Outcome => (
            json!({ "actor": actor, "command_id": id(100) }),
            outcomes().remove(0).1,
            not_found("outcome of command"),
        ),
        Q::GetSystem => {
            let s3 = system3();
            (
                json!({ "team": "discovery", "name": "System3" }),
                to_value(&SystemIdentity {
                    id: s3.id.0,
                    name: s3.name.clone(),
                    kind: s3.kind,
                    team_id: s3.team_id.0,
                    team: "discovery".into(),
                    skills: s3.skills.clone(),
                    has_key: false,
                }),
                failure(
                    ErrorCode::NotFound,
                    &format!(
                        "team discovery has no system `System9`; its systems: {}",
                        the_team()
                            .iter()
                            .map(|s| s.name.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                    None,
                ),
            )
        }
        Q::GetTeam => (
            json!({ "team": "discovery" }),
            to_value(&TeamIdentity {
                id: team().0,
                name: "discovery".into(),
                systems: the_team()
                    .into_iter()
                    .map(|s| Member {
                        id: s.id.0,
                        name: s.name,
                        kind: s.kind,
                        skills: s.skills,
                        has_key: false,
                    })
                    .collect(),
            }),
            failure(
                ErrorCode::ValidationFailed,
                "give either team or system_id",
                Some("team"),
            ),
        ),
        Q::GetPolicy => (
            json!({ "actor": actor }),
            to_value(&PolicyAnswer {
                version: 2,
                policy: serde_json::from_value(policy_document()).unwrap(),
                set_by_system_id: Some(system5().id),
                set_at: Some(t(5)),
            }),
            failure(
                ErrorCode::Forbidden,
                &format!("no system {} is registered", id(99)),
                None,
            ),
        ),
    }
}

fn to_value<T: serde::Serialize>(answer: &T) -> Value {
    serde_json::to_value(answer).unwrap()
}

/// Asserts that the file at `path` (from the repository's root) holds `made`, what the code
/// generates; with `SOP_WRITE_CONTRACT` set, writes it first. The contract, the golden
/// examples, the NATS users and the agents' tool rows are all kept so.
pub(crate) fn generated_file(path: &str, made: &str) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(path);
    if std::env::var_os("SOP_WRITE_CONTRACT").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, made).unwrap();
    }
    let held = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        held == made,
        "{} differs from the code: regenerate with SOP_WRITE_CONTRACT=1 cargo test --lib",
        path.display()
    );
}

#[test]
fn golden_examples_match_the_code() {
    for (path, value) in examples() {
        let text = serde_json::to_string_pretty(&value).unwrap() + "\n";
        generated_file(&format!("docs/examples/{}", path.display()), &text);
    }
}

#[test]
fn query_examples_decode_and_read_back_as_they_are() {
    for name in QueryName::ALL {
        let (request, answer, failure) = query_example(*name);
        let bytes = serde_json::to_vec(&request).unwrap();
        let asked = crate::bus::queries::decode(*name, &bytes);
        assert!(asked.is_ok(), "{name}: {:?}", asked.err());
        assert!(answer.is_object(), "{name}");
        let _: QueryFailure = serde_json::from_value(failure).unwrap();
    }
}

#[test]
fn command_examples_decode_as_they_are() {
    for name in CommandName::ALL {
        let bytes = serde_json::to_vec(&command(*name)).unwrap();
        let decoded = decode(&Arrival {
            name: name.as_str(),
            payload: &bytes,
            msg_id: None,
            reply_to: None,
            fallback_id: Uuid::nil(),
        });
        assert!(
            decoded.is_ok(),
            "{name}: {:?}",
            decoded.err().map(|u| u.rejection)
        );
    }
    for (_, o) in outcomes() {
        let _: Outcome = serde_json::from_value(o).unwrap();
    }
}

/// `value` with every `$ref` replaced by what it points at in `root` (the contract's schemas
/// refer to one another), so that a validator needs nothing else; without titles, which
/// annotate and differ between documents that agree.
pub(crate) fn resolved(value: &Value, root: &Value) -> Value {
    match value {
        Value::Object(map) => {
            if let Some(Value::String(to)) = map.get("$ref") {
                let target = root
                    .pointer(to.trim_start_matches('#'))
                    .unwrap_or_else(|| panic!("dangling {to}"));
                return resolved(target, root);
            }
            Value::Object(
                map.iter()
                    .filter(|(k, _)| !matches!(k.as_str(), "$defs" | "$schema" | "title"))
                    .map(|(k, v)| (k.clone(), resolved(v, root)))
                    .collect(),
            )
        }
        Value::Array(items) => Value::Array(items.iter().map(|v| resolved(v, root)).collect()),
        other => other.clone(),
    }
}

/// The schema of the message an example is: a command's, an event's or an outcome's.
fn schema_of_example(doc: &Value, path: &Path) -> jsonschema::Validator {
    let (family, file) = (
        path.parent().unwrap().to_str().unwrap(),
        path.file_name()
            .unwrap()
            .to_str()
            .unwrap()
            .trim_end_matches(".json"),
    );
    let (channel, message) = match family {
        "outcomes" => ("command.outcome".to_owned(), "outcome"),
        "events" => (file.to_owned(), "event"),
        "queries" => {
            let (query, part) = file.rsplit_once('.').unwrap();
            match part {
                "request" => (format!("sop.query.{query}"), "request"),
                _ => (format!("sop.query.{query}.reply"), part),
            }
        }
        _ => (file.to_owned(), "command"),
    };
    let messages = doc["channels"][&channel]["messages"]
        .as_object()
        .unwrap_or_else(|| panic!("no channel {channel}"));
    let message = messages
        .get(message)
        .or_else(|| messages.values().next())
        .unwrap();
    let schema = resolved(&resolved(message, doc)["payload"], doc);
    jsonschema::validator_for(&schema).unwrap_or_else(|e| panic!("{channel}: {e}"))
}

#[test]
fn every_example_is_valid_against_the_contract_and_the_contract_refuses_what_the_worker_does() {
    let doc = crate::bus::contract::asyncapi();
    for (path, value) in examples() {
        let validator = schema_of_example(&doc, &path);
        let errors: Vec<String> = validator
            .iter_errors(&value)
            .map(|e| e.to_string())
            .collect();
        assert!(errors.is_empty(), "{}: {errors:?}", path.display());
    }
    // What the worker refuses, a client validating first learns before sending.
    let draft = schema_of_example(&doc, Path::new("commands/procedure.draft.json"));
    let mut risky = command(CommandName::DraftProcedure);
    risky["payload"]["risk_level"] = json!("extreme");
    assert!(!draft.is_valid(&risky), "risk_level is one of four");
    let mut extra = command(CommandName::DraftProcedure);
    extra["priority"] = json!("high");
    assert!(
        !draft.is_valid(&extra),
        "no envelope field beyond the contract's"
    );
    let mut old = command(CommandName::DraftProcedure);
    old["schema_version"] = json!(2);
    assert!(!draft.is_valid(&old), "schema_version is 1");
    let mut long = command(CommandName::DraftProcedure);
    long["payload"]["name"] = json!("n".repeat(crate::domain::text::MAX_NAME + 1));
    assert!(
        !draft.is_valid(&long),
        "names are at most MAX_NAME characters"
    );
    let ready = schema_of_example(&doc, Path::new("events/task.ready.json"));
    let mut started = envelope(&events()["task.ready"]);
    started["type"] = json!("task.started");
    assert!(
        !ready.is_valid(&started),
        "each event message fixes its type"
    );
}
