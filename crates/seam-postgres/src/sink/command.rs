//! What a sink's translators produce: SQL statements on the consumer's database, each with its
//! parameters. Builders cover the common shapes (an upsert of a replica row, a getOrCreate
//! placeholder, a delete) so translators do not write SQL for them; anything else is
//! [`SinkCommand::sql`].

use std::fmt::Write as _;

use bytes::BytesMut;
use tokio_postgres::types::{Format, IsNull, ToSql, Type};

/// One parameter. Sent in PostgreSQL's text format, so the server parses it with the column's
/// own input function: any column type takes it (`numeric`, `timestamptz`, `uuid`, ...), and a
/// value that does not fit fails that statement with the server's message.
#[derive(Debug, Clone, PartialEq)]
pub enum SqlValue {
    /// SQL NULL.
    Null,
    /// A value in its text form.
    Text(String),
}

impl ToSql for SqlValue {
    fn to_sql(&self, _ty: &Type, out: &mut BytesMut) -> Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        match self {
            SqlValue::Null => Ok(IsNull::Yes),
            SqlValue::Text(text) => {
                out.extend_from_slice(text.as_bytes());
                Ok(IsNull::No)
            }
        }
    }

    fn accepts(_ty: &Type) -> bool {
        true
    }

    fn encode_format(&self, _ty: &Type) -> Format {
        Format::Text
    }

    tokio_postgres::types::to_sql_checked!();
}

macro_rules! text_from {
    ($($t:ty),*) => {$(
        impl From<$t> for SqlValue {
            fn from(v: $t) -> Self {
                SqlValue::Text(v.to_string())
            }
        }
    )*};
}
text_from!(i16, i32, i64, u32, u64, bool, &str, String, &String);

impl From<f64> for SqlValue {
    fn from(v: f64) -> Self {
        SqlValue::Text(if v.is_nan() {
            "NaN".into()
        } else if v.is_infinite() {
            if v > 0.0 { "Infinity" } else { "-Infinity" }.into()
        } else {
            v.to_string()
        })
    }
}

impl<T: Into<SqlValue>> From<Option<T>> for SqlValue {
    fn from(v: Option<T>) -> Self {
        v.map_or(SqlValue::Null, Into::into)
    }
}

/// A statement for the consumer's database. All commands of one foreign event run in the same
/// database transaction as the consumer's position, so the event takes effect exactly once.
#[derive(Debug, Clone, PartialEq)]
pub struct SinkCommand {
    /// The SQL, with `$1`, `$2`, ... for the parameters.
    pub statement: String,
    /// The parameters, in order.
    pub params: Vec<SqlValue>,
}

/// `"name"`, with embedded quotes doubled: a column or table name as an SQL identifier.
pub fn quote(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// A table name that may carry its schema (`app.customers`): each part quoted.
fn quote_table(table: &str) -> String {
    table.split('.').map(quote).collect::<Vec<_>>().join(".")
}

impl SinkCommand {
    /// Any statement.
    pub fn sql(statement: impl Into<String>, params: Vec<SqlValue>) -> Self {
        Self {
            statement: statement.into(),
            params,
        }
    }

    /// Inserts the row, or sets its columns when a row with the key exists: a replica row that
    /// the source's latest event describes completely.
    pub fn upsert(table: &str, key: &[(&str, SqlValue)], columns: &[(&str, SqlValue)]) -> Self {
        let set = if columns.is_empty() {
            "NOTHING".to_string()
        } else {
            let assignments: Vec<String> = columns
                .iter()
                .map(|(c, _)| format!("{q} = EXCLUDED.{q}", q = quote(c)))
                .collect();
            format!("UPDATE SET {}", assignments.join(", "))
        };
        Self::insert(table, key, columns, &set)
    }

    /// Inserts the row only when no row has the key (getOrCreate): a placeholder for an entity
    /// another event refers to before its own event arrived; the later upsert fills it.
    pub fn get_or_create(table: &str, key: &[(&str, SqlValue)], defaults: &[(&str, SqlValue)]) -> Self {
        Self::insert(table, key, defaults, "NOTHING")
    }

    /// Deletes the row with the key (nothing when there is none).
    pub fn delete(table: &str, key: &[(&str, SqlValue)]) -> Self {
        let mut statement = format!("DELETE FROM {} WHERE ", quote_table(table));
        let conditions: Vec<String> = key
            .iter()
            .enumerate()
            .map(|(i, (c, _))| format!("{} = ${}", quote(c), i + 1))
            .collect();
        statement.push_str(&conditions.join(" AND "));
        Self {
            statement,
            params: key.iter().map(|(_, v)| v.clone()).collect(),
        }
    }

    fn insert(table: &str, key: &[(&str, SqlValue)], columns: &[(&str, SqlValue)], on_conflict: &str) -> Self {
        let all: Vec<&(&str, SqlValue)> = key.iter().chain(columns).collect();
        let names: Vec<String> = all.iter().map(|(c, _)| quote(c)).collect();
        let mut statement = format!("INSERT INTO {} ({}) VALUES (", quote_table(table), names.join(", "));
        for i in 0..all.len() {
            let _ = write!(statement, "{}${}", if i == 0 { "" } else { ", " }, i + 1);
        }
        let keys: Vec<String> = key.iter().map(|(c, _)| quote(c)).collect();
        let _ = write!(statement, ") ON CONFLICT ({}) DO {on_conflict}", keys.join(", "));
        Self {
            statement,
            params: all.iter().map(|(_, v)| v.clone()).collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upsert_sets_every_non_key_column_from_the_new_row() {
        let c = SinkCommand::upsert(
            "customers",
            &[("id", 7i64.into())],
            &[("name", "Ada".into()), ("email", SqlValue::Null)],
        );
        assert_eq!(
            c.statement,
            "INSERT INTO \"customers\" (\"id\", \"name\", \"email\") VALUES ($1, $2, $3) ON CONFLICT (\"id\") DO UPDATE SET \"name\" = EXCLUDED.\"name\", \"email\" = EXCLUDED.\"email\""
        );
        assert_eq!(
            c.params,
            vec![SqlValue::Text("7".into()), SqlValue::Text("Ada".into()), SqlValue::Null]
        );
    }

    #[test]
    fn get_or_create_never_overwrites_and_delete_matches_the_whole_key() {
        let c = SinkCommand::get_or_create("app.t\"x", &[("a", 1i32.into())], &[]);
        assert_eq!(
            c.statement,
            "INSERT INTO \"app\".\"t\"\"x\" (\"a\") VALUES ($1) ON CONFLICT (\"a\") DO NOTHING"
        );
        let d = SinkCommand::delete("t", &[("a", 1i32.into()), ("b", "x".into())]);
        assert_eq!(d.statement, "DELETE FROM \"t\" WHERE \"a\" = $1 AND \"b\" = $2");
        assert_eq!(d.params.len(), 2);
    }

    #[test]
    fn floats_keep_their_special_values() {
        assert_eq!(SqlValue::from(f64::NAN), SqlValue::Text("NaN".into()));
        assert_eq!(SqlValue::from(f64::NEG_INFINITY), SqlValue::Text("-Infinity".into()));
        assert_eq!(SqlValue::from(None::<i64>), SqlValue::Null);
    }
}
