//! The inserts a group makes at its end (its new runs, inbox rows and outbox messages),
//! gathered as statements and sent together.
//!
//! SQLite runs on one thread of its own, and each statement is a round trip to it: sent over
//! a channel, the thread woken, the result sent back, the task woken: about 150–250 µs each
//! on two loaded cores, for a dozen statements a group. So on SQLite the statements go as one
//! multi-statement query, one round trip, its `?` parameters taken in order across the
//! statements (with the relay's deferred deletes, executes/s rose ≈ 13 %; see
//! `docs/benchmarks.md`). Postgres takes one statement per query; there each table is already
//! one statement ([`unnest`]).
//!
//! [`unnest`]: super::unnest

use sea_orm::{
    ActiveModelTrait, ConnectionTrait, DbBackend, DbErr, EntityTrait, QueryResult, QueryTrait,
    Statement, Values,
};

/// Statements to run in order, in the caller's transaction.
pub struct Writes {
    backend: DbBackend,
    statements: Vec<Statement>,
}

impl Writes {
    pub fn new(backend: DbBackend) -> Writes {
        Writes {
            backend,
            statements: Vec::new(),
        }
    }

    pub fn backend(&self) -> DbBackend {
        self.backend
    }

    pub fn push(&mut self, statement: Statement) {
        self.statements.push(statement);
    }

    /// Inserts rows of one table (all with the same columns set). Postgres: one statement (an
    /// array per column, [`super::unnest`]). SQLite: one per [`super::chunk_sizes`] piece,
    /// each with `returning` (a column list, e.g. `seq`) when given.
    pub fn insert<A>(&mut self, rows: Vec<A>, returning: Option<&str>) -> Result<(), DbErr>
    where
        A: ActiveModelTrait + Send,
    {
        if rows.is_empty() {
            return Ok(());
        }
        if self.backend == DbBackend::Postgres {
            let (sql, values) = super::unnest::insert(rows)?;
            let sql = match returning {
                Some(columns) => format!("{sql} RETURNING {columns}"),
                None => sql,
            };
            self.push(Statement::from_sql_and_values(self.backend, sql, values));
            return Ok(());
        }
        let mut rows = rows.into_iter();
        for size in super::chunk_sizes(rows.len()) {
            let mut statement =
                A::Entity::insert_many(rows.by_ref().take(size)).build(self.backend);
            if let Some(columns) = returning {
                statement.sql = format!("{} RETURNING {columns}", statement.sql);
            }
            self.push(statement);
        }
        Ok(())
    }

    /// Runs the statements; returns the rows they return (their `RETURNING`s), in order.
    pub async fn run(self, db: &impl ConnectionTrait) -> Result<Vec<QueryResult>, DbErr> {
        if self.backend != DbBackend::Sqlite {
            let mut rows = Vec::new();
            for statement in self.statements {
                rows.extend(db.query_all_raw(statement).await?);
            }
            return Ok(rows);
        }
        if self.statements.is_empty() {
            return Ok(Vec::new());
        }
        db.query_all_raw(joined(self.backend, self.statements))
            .await
    }
}

/// One multi-statement query of `statements`, their parameters in order: SQLite numbers
/// anonymous `?` parameters across the statements of one query.
fn joined(backend: DbBackend, statements: Vec<Statement>) -> Statement {
    let mut sql = String::new();
    let mut values = Vec::new();
    for statement in statements {
        if !sql.is_empty() {
            sql.push_str(";\n");
        }
        sql.push_str(&statement.sql);
        values.extend(statement.values.map(|Values(v)| v).unwrap_or_default());
    }
    Statement::from_sql_and_values(backend, sql, values)
}
