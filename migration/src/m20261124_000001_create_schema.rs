//! The whole first schema: teams and systems, procedures and templates, runs, initiatives,
//! tasks, reviews, and the command inbox / event outbox.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

// The closed sets of this schema, frozen here: a later migration that widens one lists its own
// (the run statuses gained `awaiting_approval` so).
const RUN_STATUSES: [&str; 4] = ["started", "completed", "failed", "canceled"];
const SYSTEM_TYPES: [&str; 5] = ["system1", "system2", "system3", "system4", "system5"];
const PROCEDURE_STATUSES: [&str; 3] = ["draft", "approved", "retired"];
const RISK_LEVELS: [&str; 4] = ["low", "medium", "high", "critical"];
const IMPACTS: [&str; 3] = ["low", "medium", "high"];
const RETIRE_KINDS: [&str; 3] = ["superseded", "retired", "discarded"];
const INITIATIVE_STATUSES: [&str; 4] = ["pending", "in_progress", "completed", "canceled"];
const TASK_STATUSES: [&str; 7] = [
    "pending",
    "in_progress",
    "blocked",
    "completed",
    "approved",
    "rejected",
    "canceled",
];
const VERDICTS: [&str; 2] = ["approve", "reject"];
const REVIEW_OUTCOMES: [&str; 3] = ["succeeded", "partially_succeeded", "failed"];
const COMMAND_STATUSES: [&str; 2] = ["accepted", "rejected"];

/// A string enum column, constrained to its values (NULL passes the CHECK, as SQL has it).
fn enum_col(name: &'static str, values: &[&str], nullable: bool) -> ColumnDef {
    let mut col = if nullable {
        string_len_null(name, 24)
    } else {
        string_len(name, 24)
    };
    col.check(Expr::col(name).is_in(values.iter().copied()));
    col
}

fn fk(
    from_table: &'static str,
    from_col: &'static str,
    to_table: &'static str,
) -> ForeignKeyCreateStatement {
    ForeignKey::create()
        .name(format!("fk_{from_table}_{from_col}"))
        .from(from_table, from_col)
        .to(to_table, "id")
        .to_owned()
}

fn index(
    table: &'static str,
    name: &str,
    cols: &[&'static str],
    unique: bool,
) -> IndexCreateStatement {
    let mut ix = Index::create();
    ix.if_not_exists().name(name).table(table);
    for c in cols {
        ix.col(*c);
    }
    if unique {
        ix.unique();
    }
    ix.to_owned()
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table("team")
                .if_not_exists()
                .col(uuid("id").primary_key())
                .col(string_len_uniq("name", 64))
                .col(timestamp_with_time_zone("created_at"))
                .to_owned(),
        )
        .await?;

        m.create_table(
            Table::create()
                .table("system")
                .if_not_exists()
                .col(uuid("id").primary_key())
                .col(uuid("team_id"))
                .col(string_len("name", 200))
                .col(enum_col("kind", &SYSTEM_TYPES, false))
                .col(json_binary("skills"))
                .col(timestamp_with_time_zone("created_at"))
                .foreign_key(&mut fk("system", "team_id", "team"))
                .to_owned(),
        )
        .await?;
        m.create_index(index(
            "system",
            "ux_system_team_name",
            &["team_id", "name"],
            true,
        ))
        .await?;

        m.create_table(
            Table::create()
                .table("procedure")
                .if_not_exists()
                .col(uuid("id").primary_key())
                .col(uuid("series_id"))
                .col(uuid("team_id"))
                .col(integer("version"))
                .col(enum_col("status", &PROCEDURE_STATUSES, false))
                .col(string_len("name", 200))
                .col(text("description"))
                .col(enum_col("risk_level", &RISK_LEVELS, false))
                .col(enum_col("impact", &IMPACTS, false))
                .col(text("rollback_plan"))
                .col(uuid("created_by_system_id"))
                .col(uuid_null("approved_by_system_id"))
                .col(timestamp_with_time_zone_null("approved_at"))
                .col(uuid_null("rejected_by_system_id"))
                .col(timestamp_with_time_zone_null("rejected_at"))
                .col(text_null("rejected_reason"))
                .col(uuid_null("retired_by_system_id"))
                .col(timestamp_with_time_zone_null("retired_at"))
                .col(enum_col("retired_kind", &RETIRE_KINDS, true))
                .col(text_null("retired_reason"))
                .col(timestamp_with_time_zone("created_at"))
                .col(timestamp_with_time_zone("updated_at"))
                .check(Expr::col("version").gte(1))
                .foreign_key(&mut fk("procedure", "team_id", "team"))
                .foreign_key(&mut fk("procedure", "created_by_system_id", "system"))
                .to_owned(),
        )
        .await?;
        m.create_index(index(
            "procedure",
            "ux_procedure_series_version",
            &["series_id", "version"],
            true,
        ))
        .await?;
        m.create_index(index(
            "procedure",
            "ix_procedure_team_status",
            &["team_id", "status"],
            false,
        ))
        .await?;
        // Partial unique indexes (same syntax on Postgres and SQLite): the database itself
        // refuses a second draft or a second approved version in a series, whatever the code does.
        let conn = m.get_connection();
        conn.execute_unprepared(
            "CREATE UNIQUE INDEX IF NOT EXISTS ux_procedure_one_draft \
             ON procedure (series_id) WHERE status = 'draft'",
        )
        .await?;
        conn.execute_unprepared(
            "CREATE UNIQUE INDEX IF NOT EXISTS ux_procedure_one_approved \
             ON procedure (series_id) WHERE status = 'approved'",
        )
        .await?;

        m.create_table(
            Table::create()
                .table("procedure_task")
                .if_not_exists()
                .col(uuid("id").primary_key())
                .col(uuid("procedure_id"))
                .col(integer("position"))
                .col(string_len("name", 200))
                .col(text("description"))
                .col(json_binary("depends_on"))
                .col(enum_col(
                    "default_assignee_system_type",
                    &SYSTEM_TYPES,
                    true,
                ))
                .col(json_binary("required_skills"))
                .foreign_key(&mut fk("procedure_task", "procedure_id", "procedure"))
                .to_owned(),
        )
        .await?;
        m.create_index(index(
            "procedure_task",
            "ux_procedure_task_position",
            &["procedure_id", "position"],
            true,
        ))
        .await?;

        m.create_table(
            Table::create()
                .table("procedure_run")
                .if_not_exists()
                .col(uuid("id").primary_key())
                .col(uuid("procedure_id"))
                .col(uuid("series_id"))
                .col(integer("procedure_version"))
                .col(uuid("team_id"))
                .col(uuid_uniq("initiative_id"))
                .col(enum_col("status", &RUN_STATUSES, false))
                .col(uuid("started_by_system_id"))
                .col(timestamp_with_time_zone("started_at"))
                .col(timestamp_with_time_zone_null("completed_at"))
                .col(text_null("reason"))
                .foreign_key(&mut fk("procedure_run", "procedure_id", "procedure"))
                .foreign_key(&mut fk("procedure_run", "team_id", "team"))
                .to_owned(),
        )
        .await?;
        m.create_index(index(
            "procedure_run",
            "ix_run_series",
            &["series_id"],
            false,
        ))
        .await?;
        m.create_index(index(
            "procedure_run",
            "ix_run_team_status",
            &["team_id", "status"],
            false,
        ))
        .await?;

        m.create_table(
            Table::create()
                .table("initiative")
                .if_not_exists()
                .col(uuid("id").primary_key())
                .col(uuid("team_id"))
                .col(uuid_null("strategy_id"))
                .col(enum_col("status", &INITIATIVE_STATUSES, false))
                .col(string_len("name", 200))
                .col(text("description"))
                .col(text_null("result"))
                .col(uuid_null("procedure_id"))
                .col(integer_null("procedure_version"))
                .col(uuid_null("run_id"))
                .col(timestamp_with_time_zone("created_at"))
                .col(timestamp_with_time_zone("updated_at"))
                .foreign_key(&mut fk("initiative", "team_id", "team"))
                .foreign_key(&mut fk("initiative", "procedure_id", "procedure"))
                .foreign_key(&mut fk("initiative", "run_id", "procedure_run"))
                .to_owned(),
        )
        .await?;
        m.create_index(index("initiative", "ux_initiative_run", &["run_id"], true))
            .await?;

        m.create_table(
            Table::create()
                .table("task")
                .if_not_exists()
                .col(uuid("id").primary_key())
                .col(uuid("team_id"))
                .col(uuid("initiative_id"))
                .col(uuid_null("procedure_task_id"))
                .col(integer("seq"))
                .col(integer("position"))
                .col(enum_col("status", &TASK_STATUSES, false))
                .col(boolean("ready"))
                .col(uuid("assignee_system_id"))
                .col(enum_col("assignee_type", &SYSTEM_TYPES, false))
                .col(string_len("name", 200))
                .col(text("content"))
                .col(text_null("result"))
                .col(text_null("reasoning"))
                .col(enum_col("review_verdict", &VERDICTS, true))
                .col(text_null("review_reasoning"))
                .col(json_binary("depends_on"))
                .col(enum_col(
                    "default_assignee_system_type",
                    &SYSTEM_TYPES,
                    true,
                ))
                .col(json_binary("required_skills"))
                .col(uuid_null("replaces_task_id"))
                .col(uuid_null("follow_up_task_id"))
                .col(timestamp_with_time_zone("created_at"))
                .col(timestamp_with_time_zone("updated_at"))
                .foreign_key(&mut fk("task", "initiative_id", "initiative"))
                .foreign_key(&mut fk("task", "assignee_system_id", "system"))
                .to_owned(),
        )
        .await?;
        m.create_index(index(
            "task",
            "ux_task_initiative_seq",
            &["initiative_id", "seq"],
            true,
        ))
        .await?;
        m.create_index(index(
            "task",
            "ix_task_assignee_status",
            &["assignee_system_id", "status"],
            false,
        ))
        .await?;

        m.create_table(
            Table::create()
                .table("run_review")
                .if_not_exists()
                .col(uuid("id").primary_key())
                .col(uuid_uniq("run_id"))
                .col(uuid("initiative_id"))
                .col(uuid("procedure_id"))
                .col(integer("procedure_version"))
                .col(uuid("team_id"))
                .col(uuid("reviewer_system_id"))
                .col(enum_col("outcome", &REVIEW_OUTCOMES, false))
                .col(text("summary"))
                .col(json_binary("lessons"))
                .col(json_binary("follow_ups"))
                .col(json_binary("context"))
                .col(timestamp_with_time_zone("created_at"))
                .foreign_key(&mut fk("run_review", "run_id", "procedure_run"))
                .foreign_key(&mut fk("run_review", "initiative_id", "initiative"))
                .to_owned(),
        )
        .await?;

        m.create_table(
            Table::create()
                .table("command_inbox")
                .if_not_exists()
                .col(uuid("command_id").primary_key())
                .col(string_len("command", 200))
                .col(uuid_null("actor_system_id"))
                .col(enum_col("status", &COMMAND_STATUSES, false))
                .col(json_binary("outcome"))
                .col(timestamp_with_time_zone("processed_at"))
                .to_owned(),
        )
        .await?;

        m.create_table(
            Table::create()
                .table("outbox")
                .if_not_exists()
                .col(big_pk_auto("seq"))
                .col(uuid_uniq("message_id"))
                .col(string_len("kind", 64))
                .col(string_len("subject", 400))
                .col(uuid_null("team_id"))
                .col(uuid_null("causation_id"))
                .col(json_binary("payload"))
                .col(string_len_null("reply_to", 400))
                .col(timestamp_with_time_zone("created_at"))
                .col(timestamp_with_time_zone_null("published_at"))
                .to_owned(),
        )
        .await?;
        // The relay scans only what is unpublished; a partial index keeps that scan small
        // however long the audit log grows.
        conn.execute_unprepared(
            "CREATE INDEX IF NOT EXISTS ix_outbox_unpublished ON outbox (seq) WHERE published_at IS NULL",
        )
        .await?;
        m.create_index(index(
            "outbox",
            "ix_outbox_team",
            &["team_id", "seq"],
            false,
        ))
        .await?;
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            "outbox",
            "command_inbox",
            "run_review",
            "task",
            "initiative",
            "procedure_run",
            "procedure_task",
            "procedure",
            "system",
            "team",
        ] {
            m.drop_table(Table::drop().table(table).if_exists().to_owned())
                .await?;
        }
        Ok(())
    }
}
