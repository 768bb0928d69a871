//! Every statement the worker sends is served by an index: none reads a whole table that grows
//! with history, none sorts all its matches to keep a page. The scenarios of the other tests
//! run with their statements recorded, then each statement's plan is read back from a
//! database with a history behind it ([`with_history`]: `EXPLAIN QUERY PLAN` on SQLite,
//! `EXPLAIN` on Postgres), and any line of it that reads what grows with history
//! ([`faults`]) fails the test.

use std::collections::BTreeMap;

use entity::procedure_run;
use sea_orm::sea_query::Expr;
use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseConnection, DbBackend, EntityTrait, QueryFilter,
    Statement, TransactionTrait,
};
use serde_json::json;

use crate::harness::*;
use crate::on_both_databases;
use vsm_sop::wire::command::CommandName as C;
use vsm_sop::wire::query::QueryName as Q;

on_both_databases!(every_statement_is_served_by_an_index);

/// Tables bounded by work in hand rather than by history, which may be read whole: what the
/// relay has yet to publish or has set aside, the migrations applied, and the teams (the
/// organisation, read whole as a worker starts: each team's events stream is made sure of).
const BOUNDED: [&str; 4] = [
    "outbox_pending",
    "outbox_parked",
    "seaql_migrations",
    "team",
];

async fn every_statement_is_served_by_an_index(backend: Backend) {
    let recorded = Statements::default();
    let app = RECORDED
        .scope(recorded.clone(), async {
            crate::lifecycle::first_run_discovery_from_draft_to_recorded_review(backend).await;
            crate::lifecycle::a_rejected_task_is_replaced_and_the_run_still_completes(backend)
                .await;
            crate::governance::executes_meet_the_teams_policy(backend).await;
            crate::governance::system3_pauses_a_run_and_resumes_it_with_what_became_ready(backend)
                .await;
            crate::queries::queries_answer_about_procedures_runs_and_their_history(backend).await;
            crate::queries::a_system_lists_its_tasks_and_what_it_can_start_now(backend).await;
            crate::paging::the_audit_trail_pages_in_seq_order(backend).await;
            // Last, so that what it sends again is explained with its own values.
            with_history(backend).await
        })
        .await;
    let statements: Vec<Statement> = recorded.lock().unwrap().values().cloned().collect();
    let rows = table_rows(app.db()).await;
    let mut explained = 0;
    let mut failing = Vec::new();
    for statement in statements.iter().filter(|s| explainable(&s.sql)) {
        explained += 1;
        let plan = plan(app.db(), statement).await;
        if !faults(&plan, &rows).is_empty() {
            failing.push(format!("{}\n    {}", statement.sql, plan.join("\n    ")));
        }
    }
    app.stop().await;
    assert!(
        explained > 40,
        "the scenarios sent {explained} statements to explain"
    );
    assert!(
        failing.is_empty(),
        "{} of {explained} statements scan or sort what grows with history:\n\n{}",
        failing.len(),
        failing.join("\n\n")
    );
}

/// Teams behind the database the plans are read from, each with a series of ended runs a
/// year old (one long series among them) and a few open ones, so that each planner weighs its
/// indexes as it would for an organisation with a history (a planner that knows no rows finds
/// every index as good, and one that knows few may rightly read them all).
const TEAMS: usize = 10;
const ENDED: usize = 30;
const ENDED_LONG: usize = 600;
const OPEN: usize = 3;

async fn with_history(backend: Backend) -> TestApp {
    let app = TestApp::spawn(backend).await;
    let mut long = None;
    for t in 0..TEAMS {
        let team = app.register_team(&format!("history-{t}")).await;
        let series = approved_sop(&app, &team).await;
        let ended = if t == 0 {
            // Counting rules, so that each execute counts the series' open and recent runs.
            let rules = json!({ "rules": [
                { "name": "open", "max_open_runs": 1000, "series": [series] },
                { "name": "rate", "max_runs": { "count": 100_000, "per": "24h" } },
            ] });
            app.ok(C::SetPolicy, team.s5, rules).await;
            long = Some((team.clone(), series));
            ENDED_LONG
        } else {
            ENDED
        };
        let execute = || app.ok(C::ExecuteProcedure, team.s3, json!({ "series_id": series }));
        let runs = futures::future::join_all((0..ended + OPEN).map(|_| execute())).await;
        futures::future::join_all(runs[..ended].iter().map(|run| {
            app.ok(
                C::CancelRun,
                team.s3,
                json!({ "run_id": run.run_id, "reason": "history" }),
            )
        }))
        .await;
    }
    let year_ago = chrono::Utc::now() - chrono::Duration::days(365);
    procedure_run::Entity::update_many()
        .col_expr(procedure_run::Column::StartedAt, Expr::value(year_ago))
        .filter(procedure_run::Column::Status.eq("canceled"))
        .exec(app.db())
        .await
        .unwrap();
    // The long series' team reads its runs and a System1 its tasks, past a long history.
    let (team, series) = long.unwrap();
    app.ok(C::ExecuteProcedure, team.s3, json!({ "series_id": series }))
        .await;
    for filter in [
        json!({}),
        json!({ "status": "started" }),
        json!({ "series_id": series }),
        json!({ "series_id": series, "status": "canceled" }),
    ] {
        let mut request = json!({ "actor": team.s3 });
        request
            .as_object_mut()
            .unwrap()
            .extend(filter.as_object().unwrap().clone());
        ask(&app, Q::ListRuns, request).await;
    }
    for filter in [
        json!({}),
        json!({ "ready": true }),
        json!({ "ready": false }),
        json!({ "status": "pending" }),
        json!({ "status": "canceled", "ready": false }),
    ] {
        let mut request = json!({ "actor": team.s1a, "assignee_system_id": team.s1a });
        request
            .as_object_mut()
            .unwrap()
            .extend(filter.as_object().unwrap().clone());
        ask(&app, Q::ListTasks, request).await;
    }
    // Postgres' autovacuum keeps its statistics; SQLite keeps none unless told, and the
    // worker never tells it, so its planner is tested as it runs, without them.
    if backend == Backend::Postgres {
        app.db().execute_unprepared("ANALYZE").await.unwrap();
    }
    app
}

async fn ask(app: &TestApp, name: Q, request: serde_json::Value) {
    app.client
        .query::<_, serde_json::Value>(name, &request)
        .await
        .unwrap_or_else(|e| panic!("{name}: {e}"));
}

/// Each table's rows as Postgres' statistics count them (none on SQLite).
async fn table_rows(db: &DatabaseConnection) -> BTreeMap<String, f64> {
    if db.get_database_backend() == DbBackend::Sqlite {
        return BTreeMap::new();
    }
    db.query_all_raw(Statement::from_string(
        DbBackend::Postgres,
        "SELECT relname::text AS name, reltuples::float8 AS n FROM pg_class WHERE relkind = 'r'",
    ))
    .await
    .unwrap()
    .iter()
    .map(|r| {
        (
            r.try_get::<String>("", "name").unwrap(),
            r.try_get::<f64>("", "n").unwrap(),
        )
    })
    .collect()
}

/// One read or change (inserts read nothing; several statements in one text are a group's
/// inserts).
fn explainable(sql: &str) -> bool {
    let sql = sql.trim_start().to_ascii_uppercase();
    let one = !sql.trim_end().trim_end_matches(';').contains(';');
    one && ["SELECT", "UPDATE", "DELETE"]
        .iter()
        .any(|verb| sql.starts_with(verb))
}

/// The plan's lines as the database prints them. Postgres is told to avoid scans and sorts
/// wherever an index can serve, so the plan it prints is the best the schema allows whatever
/// the table statistics say; a scan or a sort left in it has no index to serve it.
async fn plan(db: &DatabaseConnection, statement: &Statement) -> Vec<String> {
    let explain = |prefix: &str| {
        Statement::from_sql_and_values(
            statement.db_backend,
            format!("{prefix} {}", statement.sql),
            statement.values.clone().map(|v| v.0).unwrap_or_default(),
        )
    };
    match db.get_database_backend() {
        DbBackend::Sqlite => db
            .query_all_raw(explain("EXPLAIN QUERY PLAN"))
            .await
            .unwrap_or_else(|e| panic!("explain {}: {e}", statement.sql))
            .into_iter()
            .map(|row| row.try_get::<String>("", "detail").unwrap())
            .collect(),
        _ => {
            let tx = db.begin().await.unwrap();
            tx.execute_unprepared("SET LOCAL enable_seqscan = off; SET LOCAL enable_sort = off")
                .await
                .unwrap();
            let rows = tx
                .query_all_raw(explain("EXPLAIN"))
                .await
                .unwrap_or_else(|e| panic!("explain {}: {e}", statement.sql));
            tx.rollback().await.unwrap();
            rows.into_iter()
                .map(|row| row.try_get::<String>("", "QUERY PLAN").unwrap())
                .collect()
        }
    }
}

/// Partial indexes that hold live rows only (a series' one draft, its one approved version),
/// which may be read whole.
const LIVE_INDEXES: [&str; 2] = ["ux_procedure_one_draft", "ux_procedure_one_approved"];

/// Under a `LIMIT`, an index walked in order and filtered stops once the page is full: it
/// reads about `table rows / matching rows` rows per row kept. Postgres takes that plan when
/// it expects the matches to be dense, and then it reads at most this many per row kept.
const DENSE: f64 = 0.1;

/// The lines of a plan that read what grows with history: a whole table (SQLite `SCAN t`,
/// Postgres `Seq Scan on t` or an index scan with no condition), a sort of what was found
/// (`USE TEMP B-TREE`, `Sort`), or, on Postgres, rows an index found by a prefix and a
/// filter then drops by status or start time: the columns that part live rows from history.
/// Catalog and [`BOUNDED`] tables and [`LIVE_INDEXES`] may be read whole, and an index walked
/// under a limit may filter when Postgres expects [`DENSE`] matches (`rows` gives each
/// table's rows as Postgres counts them).
fn faults<'a>(plan: &'a [String], rows: &BTreeMap<String, f64>) -> Vec<&'a String> {
    let bounded = |rest: &str| {
        let table = rest
            .trim_start_matches("on ")
            .split([' ', '('])
            .next()
            .unwrap_or_default();
        BOUNDED.contains(&table) || table.starts_with("sqlite_") || table.starts_with("pg_")
    };
    let indent = |line: &str| line.len() - line.trim_start().len();
    let node = |line: &str| {
        line.trim_start()
            .trim_start_matches("->")
            .trim_start()
            .to_owned()
    };
    // The estimated rows of a plan node: `(cost=… rows=N width=…)`.
    let estimated = |line: &str| -> f64 {
        line.split("rows=")
            .nth(1)
            .and_then(|r| r.split(' ').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0.0)
    };
    let mut found = Vec::new();
    let mut dense_until = None;
    for (i, line) in plan.iter().enumerate() {
        let text = node(line);
        // The detail lines of a dense walk (its filter) belong to it.
        match dense_until {
            Some(depth) if indent(line) > depth && !line.trim_start().starts_with("->") => {
                continue;
            }
            _ => dense_until = None,
        }
        let fault = if let Some(rest) = text.strip_prefix("SCAN ") {
            !rest.starts_with("CONSTANT ROW") && !bounded(rest)
        } else if let Some(rest) = text.strip_prefix("Seq Scan ") {
            !bounded(rest)
        } else if text.contains("Index Scan using") || text.contains("Index Only Scan using") {
            let index = text
                .split("using ")
                .nth(1)
                .and_then(|r| r.split(' ').next());
            let table = text
                .split(" on ")
                .nth(1)
                .and_then(|r| r.split(' ').next())
                .unwrap_or_default();
            let limited = i > 0 && node(&plan[i - 1]).starts_with("Limit");
            let all = rows.get(table).copied().unwrap_or(f64::INFINITY);
            if limited && estimated(&text) >= DENSE * all {
                dense_until = Some(indent(line));
                false
            } else {
                let details = plan[i + 1..]
                    .iter()
                    .take_while(|d| indent(d) > indent(line) && !d.trim_start().starts_with("->"));
                let conditioned = details.into_iter().any(|d| d.contains("Index Cond:"));
                !bounded(table)
                    && !LIVE_INDEXES.contains(&index.unwrap_or_default())
                    && !conditioned
            }
        } else if text.starts_with("Filter:") {
            text.contains("(status)::text = ") || text.contains("started_at")
        } else {
            // An incremental sort orders only rows that share its presorted key (a series'
            // versions), not every match.
            text.contains("TEMP B-TREE") || text.starts_with("Sort  (")
        };
        if fault {
            found.push(line);
        }
    }
    found
}
