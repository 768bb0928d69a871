//! A page of rows in id order over several statuses, read as one statement whose arms each
//! walk one status's range of an index on `(…, status, id)` and which the database merges:
//! SQLite merges `arm UNION ALL arm … ORDER BY id LIMIT n` arm by arm; Postgres plans a
//! top-level `UNION ALL` as an append and a sort of everything, and merges (Merge Append) only
//! arms that are ordered and limited themselves, inside a subquery.
//!
//! So a list that any status may fill needs no index on `(…, id)` of its own, which would
//! take a new entry at every status change (on Postgres a row's new version is indexed anew).
//! A page reads at most one row per status beyond what it returns.

use sea_orm::sea_query::{Asterisk, Expr, ExprTrait, Order, Query, SelectStatement, UnionType};
use sea_orm::{ColumnTrait, EntityTrait, FromQueryResult, QueryFilter, QueryTrait, Select};
use sea_orm::{ConnectionTrait, DbBackend, DbErr};

/// Up to `limit` rows of `select` in ascending `id` order, each arm `select` with
/// `status = s` for one `s` of `statuses` (and whatever `arm` adds for that status).
pub async fn page<E, F>(
    db: &impl ConnectionTrait,
    select: Select<E>,
    status: E::Column,
    statuses: &[&'static str],
    id: E::Column,
    limit: u64,
    arm: F,
) -> Result<Vec<E::Model>, DbErr>
where
    E: EntityTrait,
    E::Model: FromQueryResult,
    F: Fn(&'static str, Select<E>) -> Select<E>,
{
    // Each status is written into the statement, not bound: Postgres plans a prepared
    // statement once for any values, and an arm whose status it cannot see could be planned
    // as a walk of the whole table in id order (what suits a common status) even for a
    // status no row has. The statuses are the domain's closed set of snake_case names.
    let mut arms = statuses.iter().map(|s| {
        debug_assert!(s.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'));
        let literal = ExprTrait::eq(Expr::col(status), Expr::cust(format!("'{s}'")));
        arm(s, select.clone().filter(literal)).into_query()
    });
    let Some(first) = arms.next() else {
        return Ok(vec![]);
    };
    // The merged rows' order: by the result's column, which a union's ORDER BY names bare.
    let by_id = Expr::col(id.as_column_ref().1);
    let query = match db.get_database_backend() {
        DbBackend::Sqlite => {
            let mut query = first;
            for other in arms {
                query.union(UnionType::All, other);
            }
            query.order_by_expr(by_id, Order::Asc).limit(limit);
            query
        }
        _ => {
            let ordered = |mut arm: SelectStatement| {
                arm.order_by(id, Order::Asc).limit(limit);
                arm
            };
            // Only arms after the first are written in parentheses, which an arm's own
            // `ORDER BY … LIMIT` needs: the first is a subquery of its own.
            let mut union = Query::select()
                .column(Asterisk)
                .from_subquery(ordered(first), "first")
                .to_owned();
            for other in arms {
                union.union(UnionType::All, ordered(other));
            }
            Query::select()
                .column(Asterisk)
                .from_subquery(union, "merged")
                .order_by_expr(by_id, Order::Asc)
                .limit(limit)
                .to_owned()
        }
    };
    let statement = db.get_database_backend().build(&query);
    E::Model::find_by_statement(statement).all(db).await
}
