//! The group's transaction as one use case sees it.
//!
//! Use cases decide before they write: every rejection is found while reading and deciding
//! in the domain, and only an accepted command writes. So a command needs no savepoint of its
//! own (two round trips and a subtransaction each; dropping them raised execute throughput by
//! about a fifth): a rejected command has written nothing to undo. This wrapper notes the first
//! write, so a use case that breaks the rule is caught ([`UseCaseTxn::wrote`]) and its group
//! fails as on a database error instead of committing half a command.

use std::sync::atomic::{AtomicBool, Ordering};

use sea_orm::{
    ConnectionTrait, DatabaseTransaction, DbBackend, DbErr, ExecResult, QueryResult, Statement,
};

pub struct UseCaseTxn<'a> {
    txn: &'a DatabaseTransaction,
    wrote: AtomicBool,
}

impl<'a> UseCaseTxn<'a> {
    pub fn new(txn: &'a DatabaseTransaction) -> UseCaseTxn<'a> {
        UseCaseTxn {
            txn,
            wrote: AtomicBool::new(false),
        }
    }

    /// Whether any statement that may write has run through this use case's view.
    pub fn wrote(&self) -> bool {
        self.wrote.load(Ordering::Relaxed)
    }

    fn note(&self, sql: &str) {
        // Conservative: anything but a plain SELECT counts (an UPDATE … RETURNING is a query).
        let select = sql
            .trim_start()
            .get(..6)
            .is_some_and(|head| head.eq_ignore_ascii_case("select"));
        if !select {
            self.wrote.store(true, Ordering::Relaxed);
        }
    }
}

#[async_trait::async_trait]
impl ConnectionTrait for UseCaseTxn<'_> {
    fn get_database_backend(&self) -> DbBackend {
        self.txn.get_database_backend()
    }

    async fn execute_raw(&self, stmt: Statement) -> Result<ExecResult, DbErr> {
        self.wrote.store(true, Ordering::Relaxed);
        self.txn.execute_raw(stmt).await
    }

    async fn execute_unprepared(&self, sql: &str) -> Result<ExecResult, DbErr> {
        self.wrote.store(true, Ordering::Relaxed);
        self.txn.execute_unprepared(sql).await
    }

    async fn query_one_raw(&self, stmt: Statement) -> Result<Option<QueryResult>, DbErr> {
        self.note(&stmt.sql);
        self.txn.query_one_raw(stmt).await
    }

    async fn query_all_raw(&self, stmt: Statement) -> Result<Vec<QueryResult>, DbErr> {
        self.note(&stmt.sql);
        self.txn.query_all_raw(stmt).await
    }
}

#[cfg(test)]
mod tests {
    use sea_orm::ConnectionTrait;
    use uuid::Uuid;

    use super::UseCaseTxn;
    use crate::domain::ids::TeamId;
    use crate::store;

    #[tokio::test]
    async fn reads_leave_it_clean_and_any_write_marks_it() {
        let db = store::connect("sqlite::memory:", 1).await.unwrap();
        store::migrate(&db).await.unwrap();
        let txn = store::begin(&db).await.unwrap();

        let reads = UseCaseTxn::new(&txn);
        store::teams::members(&reads, TeamId(Uuid::now_v7()))
            .await
            .unwrap();
        store::procedures::load_series(
            &reads,
            crate::domain::ids::SeriesId(Uuid::now_v7()),
            store::procedures::SeriesLock::None,
        )
        .await
        .unwrap();
        assert!(!reads.wrote());

        let insert = UseCaseTxn::new(&txn);
        store::dead_letters::record(
            &insert,
            Uuid::now_v7(),
            "s",
            "c",
            "m",
            b"{}",
            chrono::Utc::now(),
        )
        .await
        .unwrap();
        assert!(insert.wrote());

        // An UPDATE … RETURNING travels as a query: it counts as a write all the same.
        let returning = UseCaseTxn::new(&txn);
        let stmt = sea_orm::Statement::from_string(
            returning.get_database_backend(),
            "  update system set name = name where 1 = 0 returning id",
        );
        returning.query_all_raw(stmt).await.unwrap();
        assert!(returning.wrote());
    }
}
