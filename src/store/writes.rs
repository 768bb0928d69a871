//! The inserts a group makes at its end (its new runs, inbox rows and outbox messages),
//! gathered as statements and sent together, in one round trip.
//!
//! Each statement is a round trip: on SQLite to the driver's thread (sent over a channel,
//! the thread woken, the result sent back, the task woken), on Postgres over the socket, where
//! the sends, wake-ups and per-statement set-up cost more than the rows. So:
//!
//! - SQLite: the statements go as one multi-statement query, its `?` parameters taken in
//!   order across the statements;
//! - Postgres takes one statement per query, so all but the last become data-modifying
//!   `WITH` clauses of the last (each table already one statement, [`unnest`]). They run to
//!   completion whether or not the query reads them, all in one statement: foreign keys
//!   between them are checked at its end.
//!
//! [`unnest`]: super::unnest

use sea_orm::{
    ActiveModelTrait, ConnectionTrait, DbBackend, EntityTrait, QueryResult, QueryTrait, Statement,
    Values,
};

use super::StoreError;

/// Statements to run in order, in the caller's transaction.
pub struct Writes {
    backend: DbBackend,
    /// Each with the name later statements read its `RETURNING` rows by (Postgres).
    statements: Vec<(Option<&'static str>, Statement)>,
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
        self.statements.push((None, statement));
    }

    /// Postgres: a statement whose `RETURNING` rows later statements read as the table
    /// `name` (a `WITH` clause of the combined statement); they do not come back to the caller.
    pub fn push_as(&mut self, name: &'static str, statement: Statement) {
        self.statements.push((Some(name), statement));
    }

    /// Inserts rows of one table (all with the same columns set). Postgres: one statement (an
    /// array per column, [`super::unnest`]). SQLite: one per [`super::chunk_sizes`] piece,
    /// each with `returning` (a column list, e.g. `seq`) when given.
    pub fn insert<A>(&mut self, rows: Vec<A>, returning: Option<&str>) -> Result<(), StoreError>
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

    /// Runs the statements; returns the rows they return (their `RETURNING`s), in order. On
    /// Postgres only the last statement's rows come back: the others are its `WITH` clauses.
    pub async fn run(self, db: &impl ConnectionTrait) -> Result<Vec<QueryResult>, StoreError> {
        if self.statements.is_empty() {
            return Ok(Vec::new());
        }
        let statement = match self.backend {
            DbBackend::Sqlite => joined(self.backend, self.statements),
            _ => with_clauses(self.backend, self.statements)?,
        };
        Ok(db.query_all_raw(statement).await?)
    }
}

/// One Postgres statement of `statements`: all but the last as data-modifying `WITH`
/// clauses of the last, each named as pushed or `w{i}`, their `$n` parameters renumbered
/// in order. An unnamed clause that returns rows is refused: nothing could read them.
fn with_clauses(
    backend: DbBackend,
    statements: Vec<(Option<&'static str>, Statement)>,
) -> Result<Statement, StoreError> {
    let mut clauses = Vec::with_capacity(statements.len());
    let mut values = Vec::new();
    let mut last = String::new();
    let count = statements.len();
    for (i, (name, statement)) in statements.into_iter().enumerate() {
        let sql = renumbered(&statement.sql, values.len());
        values.extend(statement.values.map(|Values(v)| v).unwrap_or_default());
        if i + 1 == count {
            last = sql;
        } else {
            if name.is_none() && sql.contains(" RETURNING ") {
                return Err(StoreError::Bug(format!(
                    "on Postgres only the last statement's rows come back: {sql}"
                )));
            }
            let name = name.map_or_else(|| format!("w{i}"), str::to_owned);
            clauses.push(format!("{name} AS ({sql})"));
        }
    }
    let sql = if clauses.is_empty() {
        last
    } else {
        format!("WITH {} {last}", clauses.join(", "))
    };
    Ok(Statement::from_sql_and_values(backend, sql, values))
}

/// `sql` with each `$n` parameter shifted by `offset`. The statements here are built by this
/// crate, with their values as parameters: no literal or quoted name holds a `$`.
fn renumbered(sql: &str, offset: usize) -> String {
    if offset == 0 {
        return sql.to_owned();
    }
    let mut out = String::with_capacity(sql.len() + 16);
    let mut rest = sql;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..=at]);
        rest = &rest[at + 1..];
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if let Ok(n) = rest[..digits].parse::<usize>() {
            out.push_str(&(n + offset).to_string());
        }
        rest = &rest[digits..];
    }
    out.push_str(rest);
    out
}

/// One multi-statement query of `statements`, their parameters in order: SQLite numbers
/// anonymous `?` parameters across the statements of one query.
fn joined(backend: DbBackend, statements: Vec<(Option<&'static str>, Statement)>) -> Statement {
    let mut sql = String::new();
    let mut values = Vec::new();
    for (_, statement) in statements {
        if !sql.is_empty() {
            sql.push_str(";\n");
        }
        sql.push_str(&statement.sql);
        values.extend(statement.values.map(|Values(v)| v).unwrap_or_default());
    }
    Statement::from_sql_and_values(backend, sql, values)
}

#[cfg(test)]
mod tests {
    use sea_orm::{DbBackend, Statement, Values};

    use super::{renumbered, with_clauses};

    #[test]
    fn parameters_are_shifted_past_those_of_earlier_statements() {
        assert_eq!(
            renumbered("SELECT $1, $2::int[]", 0),
            "SELECT $1, $2::int[]"
        );
        assert_eq!(
            renumbered("UNNEST($1::uuid[], $10::text[]) AS u(c1, c10)", 3),
            "UNNEST($4::uuid[], $13::text[]) AS u(c1, c10)"
        );
    }

    #[test]
    fn postgres_statements_become_with_clauses_of_the_last() {
        let pg = DbBackend::Postgres;
        let statements = vec![
            (
                None,
                Statement::from_sql_and_values(pg, "INSERT INTO a SELECT $1", [1.into()]),
            ),
            (
                Some("written"),
                Statement::from_sql_and_values(
                    pg,
                    "INSERT INTO b SELECT $1, $2 RETURNING seq",
                    [2.into(), 3.into()],
                ),
            ),
            (
                None,
                Statement::from_string(pg, "INSERT INTO c SELECT seq FROM written RETURNING seq"),
            ),
        ];
        let combined = with_clauses(pg, statements).unwrap();
        assert_eq!(
            combined.sql,
            "WITH w0 AS (INSERT INTO a SELECT $1), written AS (INSERT INTO b SELECT $2, $3 RETURNING seq) \
             INSERT INTO c SELECT seq FROM written RETURNING seq"
        );
        let Values(values) = combined.values.expect("values");
        assert_eq!(values, vec![1.into(), 2.into(), 3.into()]);
        let returns_early = vec![
            (
                None,
                Statement::from_string(pg, "INSERT INTO a SELECT 1 RETURNING seq"),
            ),
            (None, Statement::from_string(pg, "INSERT INTO c SELECT 2")),
        ];
        assert!(
            with_clauses(pg, returns_early).is_err(),
            "its rows would be lost"
        );
        let alone = with_clauses(
            pg,
            vec![(None, Statement::from_string(pg, "INSERT INTO a SELECT 1"))],
        )
        .unwrap();
        assert_eq!(alone.sql, "INSERT INTO a SELECT 1");
    }
}
