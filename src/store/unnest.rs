//! Many rows in one Postgres statement with one parameter per column:
//! `INSERT INTO t (…) SELECT … FROM UNNEST($1::uuid[], $2::text[], …)`.
//!
//! A multi-row `VALUES` insert has one parameter per cell: 23,000 for a 1,000-task run, each
//! placed in the SQL text, parsed and bound, and every row count is a new prepared statement.
//! Here the statement is the same for any number of rows (it changes only with which columns
//! hold NULLs) and its arrays travel in binary.
//! Postgres only: SQLite runs in process and has no arrays (it keeps `insert_many`, see
//! [`super::writes`]).
//!
//! The driver binds arrays without NULL elements, so a column with NULLs travels as its
//! values (a placeholder where NULL) plus a `bool[]` saying which are NULL.

use sea_orm::sea_query::{ArrayType, Value};
use sea_orm::{ActiveModelTrait, ActiveValue, EntityName, EntityTrait, IdenStatic, Iterable};

use super::StoreError;

/// The `INSERT … SELECT … FROM UNNEST(…)` of `rows` (all with the same columns set, as for
/// `insert_many`), and its parameters.
pub fn insert<A: ActiveModelTrait>(mut rows: Vec<A>) -> Result<(String, Vec<Value>), StoreError> {
    let table = <A::Entity as Default>::default().table_name().to_owned();
    let (mut names, mut inputs, mut outputs, mut params) = (vec![], vec![], vec![], vec![]);
    for column in <A::Entity as EntityTrait>::Column::iter() {
        let cells: Vec<Value> = rows
            .iter_mut()
            .filter_map(|row| match row.take(column) {
                ActiveValue::Set(v) | ActiveValue::Unchanged(v) => Some(v),
                ActiveValue::NotSet => None,
            })
            .collect();
        if cells.is_empty() {
            continue; // not set (a database default such as a sequence)
        }
        if cells.len() != rows.len() {
            return Err(StoreError::Bug(format!(
                "{table}.{}: set in some rows only",
                column.as_str()
            )));
        }
        let name = column.as_str();
        let (array, pg_type, nulls) =
            column_array(cells).map_err(|e| StoreError::Bug(format!("{table}.{name}: {e}")))?;
        names.push(format!("\"{name}\""));
        params.push(array);
        inputs.push(format!("${}::{pg_type}[]", params.len()));
        let value = format!("c{}", params.len());
        match nulls {
            Some(nulls) => {
                params.push(nulls);
                inputs.push(format!("${}::bool[]", params.len()));
                outputs.push(format!(
                    "CASE WHEN c{} THEN NULL ELSE {value} END",
                    params.len()
                ));
            }
            None => outputs.push(value),
        }
    }
    let aliases: Vec<String> = (1..=params.len()).map(|i| format!("c{i}")).collect();
    // Rows in array order (a sequence default such as the outbox's seq follows it).
    let sql = format!(
        "INSERT INTO \"{table}\" ({}) SELECT {} FROM UNNEST({}) WITH ORDINALITY AS u({}, n) ORDER BY n",
        names.join(", "),
        outputs.join(", "),
        inputs.join(", "),
        aliases.join(", ")
    );
    Ok((sql, params))
}

/// One column's cells as an array parameter, its Postgres element type, and the NULL mask
/// when some cells are NULL.
fn column_array(cells: Vec<Value>) -> Result<(Value, &'static str, Option<Value>), String> {
    let (array_type, pg_type) = match &cells[0] {
        Value::Uuid(_) => (ArrayType::Uuid, "uuid"),
        Value::String(_) => (ArrayType::String, "text"),
        Value::Int(_) => (ArrayType::Int, "int4"),
        Value::BigInt(_) => (ArrayType::BigInt, "int8"),
        Value::Bool(_) => (ArrayType::Bool, "bool"),
        Value::ChronoDateTimeUtc(_) => (ArrayType::ChronoDateTimeUtc, "timestamptz"),
        Value::Json(_) => (ArrayType::Json, "jsonb"),
        Value::Bytes(_) => (ArrayType::Bytes, "bytea"),
        other => return Err(format!("no array form for {other:?}")),
    };
    let kind = std::mem::discriminant(&cells[0]);
    let mut nulls = Vec::with_capacity(cells.len());
    let mut values = Vec::with_capacity(cells.len());
    for cell in cells {
        if std::mem::discriminant(&cell) != kind {
            return Err("mixed value types".into());
        }
        let (value, null) = present(cell);
        values.push(value);
        nulls.push(Value::Bool(Some(null)));
    }
    let any_null = nulls.iter().any(|n| *n == Value::Bool(Some(true)));
    let mask = any_null.then(|| Value::Array(ArrayType::Bool, Some(Box::new(nulls))));
    Ok((
        Value::Array(array_type, Some(Box::new(values))),
        pg_type,
        mask,
    ))
}

/// A cell as a present value (a placeholder of its type when NULL) and whether it was NULL.
fn present(cell: Value) -> (Value, bool) {
    match cell {
        Value::Uuid(None) => (Value::Uuid(Some(uuid::Uuid::nil())), true),
        Value::String(None) => (Value::String(Some(String::new())), true),
        Value::Int(None) => (Value::Int(Some(0)), true),
        Value::BigInt(None) => (Value::BigInt(Some(0)), true),
        Value::Bool(None) => (Value::Bool(Some(false)), true),
        Value::ChronoDateTimeUtc(None) => (
            Value::ChronoDateTimeUtc(Some(chrono::DateTime::UNIX_EPOCH)),
            true,
        ),
        Value::Json(None) => (Value::Json(Some(Box::new(serde_json::Value::Null))), true),
        Value::Bytes(None) => (Value::Bytes(Some(Vec::new())), true),
        value => (value, false),
    }
}
