//! The outbox stores one record per command's messages that concern the same series and run,
//! its messages compressed together ([`entity::outbox::encode`]), instead of a row per message:
//! a command's events repeat its ids and envelope, so a 10-task run's log shrinks about
//! tenfold. A message is named by its position in the log (`record << 12 | index`), which the
//! relay's pending and parked lists now hold. The command inbox no longer keeps a copy of each
//! outcome: it is the command's outcome message in the outbox.
//!
//! Both ways rewrite every message, in order: existing records are grouped as new commands'
//! are, and the pending and parked lists follow their messages.

use std::collections::{HashMap, HashSet};

use entity::outbox::{self, Links, Message, RawValue};
use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;
use sea_orm_migration::sea_orm::{ConnectionTrait, DbBackend, QueryResult, Statement};
use uuid::Uuid;

#[derive(DeriveMigrationName)]
pub struct Migration;

/// Rows read at a time.
const CHUNK: i64 = 2_000;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table("outbox_record")
                .col(big_pk_auto("seq"))
                .col(uuid_null("team_id"))
                .col(uuid("causation_id"))
                .col(uuid_null("series_id"))
                .col(uuid_null("run_id"))
                .col(integer("messages"))
                .col(binary("body"))
                .col(timestamp_with_time_zone("created_at"))
                .to_owned(),
        )
        .await?;
        let moved = rows_to_records(m).await?;
        relist(m, &moved).await?;
        m.drop_table(Table::drop().table("outbox").to_owned())
            .await?;
        rename(m, "outbox_record", "outbox").await?;
        if m.get_database_backend() == DbBackend::Postgres {
            exec(
                m,
                "SELECT setval(pg_get_serial_sequence('outbox', 'seq'), \
                 COALESCE((SELECT MAX(seq) FROM outbox), 0) + 1, false)",
            )
            .await?;
        }
        // Only records with links are read by them (the audit trail); an outcome's own record
        // (a refused command) has none.
        for (name, column) in [("ix_outbox_series_id", "series_id"), ("ix_outbox_run_id", "run_id")] {
            exec(
                m,
                &format!(
                    "CREATE INDEX {name} ON outbox ({column}, seq) WHERE {column} IS NOT NULL"
                ),
            )
            .await?;
        }
        exec(m, "CREATE INDEX ix_outbox_causation ON outbox (causation_id)").await?;
        m.alter_table(
            Table::alter()
                .table("command_inbox")
                .drop_column("outcome")
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.alter_table(
            Table::alter()
                .table("command_inbox")
                .add_column(json_binary("outcome").default("{}"))
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table("outbox_message")
                .col(big_pk_auto("seq"))
                .col(uuid_uniq("message_id"))
                .col(string_len("kind", 64))
                .col(string_len("subject", 400))
                .col(uuid_null("team_id"))
                .col(uuid_null("causation_id"))
                .col(string_len_null("reply_to", 400))
                .col(timestamp_with_time_zone("created_at"))
                .col(uuid_null("series_id"))
                .col(uuid_null("run_id"))
                .col(json_binary_null("headers"))
                .col(binary("payload"))
                .to_owned(),
        )
        .await?;
        let moved = records_to_rows(m).await?;
        relist(m, &moved).await?;
        m.drop_table(Table::drop().table("outbox").to_owned())
            .await?;
        rename(m, "outbox_message", "outbox").await?;
        for column in ["series_id", "run_id"] {
            exec(
                m,
                &format!("CREATE INDEX ix_outbox_{column} ON outbox ({column}, seq)"),
            )
            .await?;
        }
        Ok(())
    }
}

async fn exec(m: &SchemaManager<'_>, sql: &str) -> Result<(), DbErr> {
    m.get_connection().execute_unprepared(sql).await.map(|_| ())
}

async fn rename(m: &SchemaManager<'_>, from: &'static str, to: &'static str) -> Result<(), DbErr> {
    m.rename_table(Table::rename().table(from, to).to_owned())
        .await
}

async fn select(
    m: &SchemaManager<'_>,
    sql: &str,
    values: Vec<Value>,
) -> Result<Vec<QueryResult>, DbErr> {
    let backend = m.get_database_backend();
    let sql = if backend == DbBackend::Postgres {
        numbered(sql)
    } else {
        sql.to_owned()
    };
    m.get_connection()
        .query_all_raw(Statement::from_sql_and_values(backend, sql, values))
        .await
}

async fn insert(m: &SchemaManager<'_>, insert: InsertStatement) -> Result<(), DbErr> {
    let backend = m.get_database_backend();
    m.get_connection()
        .execute_raw(backend.build(&insert))
        .await
        .map(|_| ())
}

/// `?` placeholders as Postgres's `$1`, `$2`, ….
fn numbered(sql: &str) -> String {
    let mut n = 0;
    sql.chars()
        .map(|c| {
            if c == '?' {
                n += 1;
                format!("${n}")
            } else {
                c.to_string()
            }
        })
        .collect()
}

/// The `seq`s of every message on the pending or parked list (the old numbering or the new).
async fn listed(m: &SchemaManager<'_>) -> Result<HashSet<i64>, DbErr> {
    let rows = select(
        m,
        "SELECT seq FROM outbox_pending UNION SELECT seq FROM outbox_parked",
        vec![],
    )
    .await?;
    rows.iter().map(|r| r.try_get::<i64>("", "seq")).collect()
}

/// Old message rows into records; returns where each listed message went.
async fn rows_to_records(m: &SchemaManager<'_>) -> Result<HashMap<i64, i64>, DbErr> {
    let listed = listed(m).await?;
    let mut moved = HashMap::new();
    let mut open: Vec<(i64, Message)> = Vec::new();
    let mut record: Option<Links> = None;
    let mut next_record = 1_i64;
    let mut after = 0_i64;
    loop {
        let rows = select(
            m,
            "SELECT seq, message_id, kind, subject, team_id, causation_id, series_id, run_id, \
             headers, reply_to, payload, created_at FROM outbox WHERE seq > ? ORDER BY seq LIMIT ?",
            vec![after.into(), CHUNK.into()],
        )
        .await?;
        let Some(last) = rows.last() else { break };
        after = last.try_get("", "seq")?;
        for row in &rows {
            let seq: i64 = row.try_get("", "seq")?;
            let payload: Vec<u8> = row.try_get("", "payload")?;
            let payload = String::from_utf8(payload)
                .map_err(|e| DbErr::Custom(format!("outbox message {seq}: {e}")))?;
            let id: Uuid = row.try_get("", "message_id")?;
            let kind: String = row.try_get("", "kind")?;
            let links = Links {
                causation_id: row.try_get::<Option<Uuid>>("", "causation_id")?.unwrap_or(id),
                team_id: row.try_get("", "team_id")?,
                series_id: row.try_get("", "series_id")?,
                run_id: row.try_get("", "run_id")?,
                event: kind.starts_with("event."),
            };
            let message = Message {
                id,
                kind,
                subject: row.try_get("", "subject")?,
                headers: row.try_get("", "headers")?,
                reply_to: row.try_get("", "reply_to")?,
                at: row.try_get("", "created_at")?,
                payload: RawValue::from_string(payload)
                    .map_err(|e| DbErr::Custom(format!("outbox message {seq}: {e}")))?,
            };
            record = match record {
                Some(r) if outbox::joins(&r, open.len(), &links) => Some(r.with(&links)),
                Some(r) => {
                    write_record(m, next_record, &r, &mut open, &listed, &mut moved).await?;
                    next_record += 1;
                    Some(links)
                }
                None => Some(links),
            };
            open.push((seq, message));
        }
    }
    if let Some(r) = record {
        write_record(m, next_record, &r, &mut open, &listed, &mut moved).await?;
    }
    Ok(moved)
}

async fn write_record(
    m: &SchemaManager<'_>,
    record: i64,
    links: &Links,
    open: &mut Vec<(i64, Message)>,
    listed: &HashSet<i64>,
    moved: &mut HashMap<i64, i64>,
) -> Result<(), DbErr> {
    for (i, (seq, _)) in open.iter().enumerate() {
        if listed.contains(seq) {
            moved.insert(*seq, outbox::position(record, i));
        }
    }
    let messages: Vec<Message> = open.drain(..).map(|(_, message)| message).collect();
    let created_at = messages[0].at;
    insert(
        m,
        Query::insert()
            .into_table("outbox_record")
            .columns([
                "seq",
                "team_id",
                "causation_id",
                "series_id",
                "run_id",
                "messages",
                "body",
                "created_at",
            ])
            .values_panic([
                record.into(),
                links.team_id.into(),
                links.causation_id.into(),
                links.series_id.into(),
                links.run_id.into(),
                (messages.len() as i32).into(),
                outbox::encode(&messages)?.into(),
                created_at.into(),
            ])
            .to_owned(),
    )
    .await
}

/// Records back into message rows, and each outcome back into its inbox row; returns where
/// each listed message went.
async fn records_to_rows(m: &SchemaManager<'_>) -> Result<HashMap<i64, i64>, DbErr> {
    let listed = listed(m).await?;
    let mut moved = HashMap::new();
    let mut next = 1_i64;
    let mut after = 0_i64;
    loop {
        let rows = select(
            m,
            "SELECT seq, team_id, causation_id, series_id, run_id, body FROM outbox \
             WHERE seq > ? ORDER BY seq LIMIT ?",
            vec![after.into(), (CHUNK / 100).into()],
        )
        .await?;
        let Some(last) = rows.last() else { break };
        after = last.try_get("", "seq")?;
        for row in &rows {
            let record: i64 = row.try_get("", "seq")?;
            let causation: Uuid = row.try_get("", "causation_id")?;
            let body: Vec<u8> = row.try_get("", "body")?;
            for (i, message) in outbox::decode(&body)?.into_iter().enumerate() {
                let position = outbox::position(record, i);
                if listed.contains(&position) {
                    moved.insert(position, next);
                }
                let payload: Box<str> = message.payload.into();
                if message.kind == "outcome" {
                    let json: serde_json::Value = serde_json::from_str(&payload)
                        .map_err(|e| DbErr::Custom(format!("outcome of {causation}: {e}")))?;
                    let backend = m.get_database_backend();
                    m.get_connection()
                        .execute_raw(
                            backend.build(
                                Query::update()
                                    .table("command_inbox")
                                    .value("outcome", json)
                                    .and_where(Expr::col("command_id").eq(causation)),
                            ),
                        )
                        .await?;
                }
                insert(
                    m,
                    Query::insert()
                        .into_table("outbox_message")
                        .columns([
                            "seq",
                            "message_id",
                            "kind",
                            "subject",
                            "team_id",
                            "causation_id",
                            "reply_to",
                            "created_at",
                            "series_id",
                            "run_id",
                            "headers",
                            "payload",
                        ])
                        .values_panic([
                            next.into(),
                            message.id.into(),
                            message.kind.clone().into(),
                            message.subject.into(),
                            row.try_get::<Option<Uuid>>("", "team_id")?.into(),
                            Some(causation).into(),
                            message.reply_to.into(),
                            message.at.into(),
                            links_of(row, &message.kind, "series_id")?.into(),
                            links_of(row, &message.kind, "run_id")?.into(),
                            message.headers.into(),
                            payload.as_bytes().to_vec().into(),
                        ])
                        .to_owned(),
                )
                .await?;
                next += 1;
            }
        }
    }
    if m.get_database_backend() == DbBackend::Postgres {
        exec(
            m,
            "SELECT setval(pg_get_serial_sequence('outbox_message', 'seq'), \
             COALESCE((SELECT MAX(seq) FROM outbox_message), 0) + 1, false)",
        )
        .await?;
    }
    Ok(moved)
}

/// A message's own link: its record's, for an event (an outcome has none).
fn links_of(row: &QueryResult, kind: &str, column: &str) -> Result<Option<Uuid>, DbErr> {
    if kind.starts_with("event.") {
        row.try_get("", column)
    } else {
        Ok(None)
    }
}

/// The pending and parked lists, renumbered as their messages moved. The parked list is made
/// anew: a message's position names no row of the outbox, so it keeps no foreign key to it.
async fn relist(m: &SchemaManager<'_>, moved: &HashMap<i64, i64>) -> Result<(), DbErr> {
    let pending = select(m, "SELECT seq FROM outbox_pending", vec![]).await?;
    let parked = select(
        m,
        "SELECT seq, reason, parked_at FROM outbox_parked",
        vec![],
    )
    .await?;
    let to = |row: &QueryResult| -> Result<i64, DbErr> {
        let seq: i64 = row.try_get("", "seq")?;
        moved
            .get(&seq)
            .copied()
            .ok_or_else(|| DbErr::Custom(format!("listed outbox message {seq} not found")))
    };
    exec(m, "DELETE FROM outbox_pending").await?;
    for chunk in pending.chunks(500) {
        let mut statement = Query::insert()
            .into_table("outbox_pending")
            .columns(["seq"])
            .to_owned();
        for row in chunk {
            statement.values_panic([to(row)?.into()]);
        }
        insert(m, statement).await?;
    }
    m.create_table(
        Table::create()
            .table("outbox_parked_next")
            .col(big_integer("seq").primary_key())
            .col(text("reason"))
            .col(timestamp_with_time_zone("parked_at"))
            .to_owned(),
    )
    .await?;
    for row in &parked {
        let reason: String = row.try_get("", "reason")?;
        let at: chrono::DateTime<chrono::Utc> = row.try_get("", "parked_at")?;
        insert(
            m,
            Query::insert()
                .into_table("outbox_parked_next")
                .columns(["seq", "reason", "parked_at"])
                .values_panic([to(row)?.into(), reason.into(), at.into()])
                .to_owned(),
        )
        .await?;
    }
    m.drop_table(Table::drop().table("outbox_parked").to_owned())
        .await?;
    rename(m, "outbox_parked_next", "outbox_parked").await
}
