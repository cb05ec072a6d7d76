//! A table's columns as Avro records: what a CDC source publishes for each table.
//!
//! Each table gets three records in the namespace `seam.cdc.<service>`: `<Table>Inserted` and
//! `<Table>Updated` with every column (the row after the change), and `<Table>Deleted` with the
//! key columns. Key columns are required; every other column is nullable with default null,
//! because the stream does not say which columns are `NOT NULL` and a column added later must
//! read old events: adding or dropping a column is then a compatible schema change, while
//! changing a column's type to another Avro type is not.

use apache_avro::types::Value as Avro;
use serde_json::json;
use thiserror::Error;

use crate::pgoutput::{Relation, Value};

/// How a column's text value is carried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `boolean` (PostgreSQL `bool`).
    Boolean,
    /// `int` (`int2`, `int4`).
    Int,
    /// `long` (`int8`, `oid`).
    Long,
    /// `float` (`float4`).
    Float,
    /// `double` (`float8`).
    Double,
    /// `string`: every other type in PostgreSQL's text format (numeric exactly, dates and
    /// timestamps in ISO form, json as text).
    Text,
}

impl Kind {
    /// The carrier of a PostgreSQL type.
    pub fn of(type_oid: u32) -> Self {
        match type_oid {
            16 => Self::Boolean,
            21 | 23 => Self::Int,
            20 | 26 => Self::Long,
            700 => Self::Float,
            701 => Self::Double,
            _ => Self::Text,
        }
    }

    fn avro(self) -> &'static str {
        match self {
            Self::Boolean => "boolean",
            Self::Int => "int",
            Self::Long => "long",
            Self::Float => "float",
            Self::Double => "double",
            Self::Text => "string",
        }
    }
}

/// One column of a table as published.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ColumnShape {
    /// The column's name in PostgreSQL.
    pub name: String,
    /// The Avro field name (the column name, with characters Avro does not allow as `_`).
    pub field: String,
    /// Its type's OID.
    pub type_oid: u32,
    /// Part of the key (the subject).
    pub key: bool,
}

impl ColumnShape {
    /// How its values are carried.
    pub fn kind(&self) -> Kind {
        Kind::of(self.type_oid)
    }
}

/// A table as published: its name and columns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableShape {
    /// The table's name (without schema).
    pub table: String,
    /// Its columns in table order.
    pub columns: Vec<ColumnShape>,
}

/// Why a table cannot be published as it is.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum ShapeError {
    /// No key column: the subject cannot be derived.
    #[error("table {table} has no key: give it a primary key, or declare `key:` for it in the topology (with REPLICA IDENTITY FULL when the key is not the primary key)")]
    NoKey {
        /// The table.
        table: String,
    },
    /// A declared key column does not exist.
    #[error(
        "table {table} has no column {column}, which the topology declares as its key; fix `key:` in the topology"
    )]
    NoSuchKeyColumn {
        /// The table.
        table: String,
        /// The column.
        column: String,
    },
    /// Two columns map to one Avro field name.
    #[error("table {table}: columns {first:?} and {second:?} both become the Avro field {field}; rename one of them")]
    FieldClash {
        /// The table.
        table: String,
        /// One column.
        first: String,
        /// The other.
        second: String,
        /// The field they both become.
        field: String,
    },
    /// A value does not parse as its column's type.
    #[error("table {table}, column {column}: {value:?} is not a {kind:?} value")]
    BadValue {
        /// The table.
        table: String,
        /// The column.
        column: String,
        /// The text.
        value: String,
        /// The carrier it should fit.
        kind: Kind,
    },
    /// A table changed in a way old events cannot be read through the new schema.
    #[error("table {table} changed incompatibly: {detail}. The source stopped before publishing anything with the new shape: revert the change and run `seam cdc run <service> --resync` (it copies the tables again and publishes only the difference), or publish the table under a new name (a new table, or a new source service) so consumers can move over")]
    Incompatible {
        /// The table.
        table: String,
        /// Which column and how.
        detail: String,
    },
    /// A key column is NULL.
    #[error("table {table}: key column {column} is NULL in a row; key columns must be NOT NULL")]
    NullKey {
        /// The table.
        table: String,
        /// The column.
        column: String,
    },
}

impl TableShape {
    /// The shape of a relation from the stream or the catalog, with `declared_key` (from the
    /// topology) overriding the relation's own key columns.
    pub fn new(
        table: &str,
        columns: impl IntoIterator<Item = (String, u32, bool)>,
        declared_key: Option<&[String]>,
    ) -> Result<Self, ShapeError> {
        let mut shaped: Vec<ColumnShape> = columns
            .into_iter()
            .map(|(name, type_oid, key)| ColumnShape {
                field: field_name(&name),
                name,
                type_oid,
                key,
            })
            .collect();
        if let Some(key) = declared_key {
            for k in key {
                if !shaped.iter().any(|c| &c.name == k) {
                    return Err(ShapeError::NoSuchKeyColumn {
                        table: table.to_string(),
                        column: k.clone(),
                    });
                }
            }
            for c in &mut shaped {
                c.key = key.contains(&c.name);
            }
        }
        if !shaped.iter().any(|c| c.key) {
            return Err(ShapeError::NoKey {
                table: table.to_string(),
            });
        }
        for (i, a) in shaped.iter().enumerate() {
            if let Some(b) = shaped[i + 1..].iter().find(|b| b.field == a.field) {
                return Err(ShapeError::FieldClash {
                    table: table.to_string(),
                    first: a.name.clone(),
                    second: b.name.clone(),
                    field: a.field.clone(),
                });
            }
        }
        Ok(Self {
            table: table.to_string(),
            columns: shaped,
        })
    }

    /// The shape of a relation message.
    pub fn of_relation(relation: &Relation, declared_key: Option<&[String]>) -> Result<Self, ShapeError> {
        Self::new(
            &relation.name,
            relation.columns.iter().map(|c| (c.name.clone(), c.type_oid, c.key)),
            declared_key,
        )
    }

    /// Whether events of `self` can still be read through the schemas of `new` (the table after
    /// a DDL statement): columns may be added or dropped and widened (int → long → float →
    /// double), but the key must stay and no column may change to another carrier.
    pub fn evolves_to(&self, new: &TableShape) -> Result<(), ShapeError> {
        let incompatible = |detail: String| ShapeError::Incompatible {
            table: self.table.clone(),
            detail,
        };
        let keys = |s: &TableShape| {
            s.columns
                .iter()
                .filter(|c| c.key)
                .map(|c| c.name.clone())
                .collect::<Vec<_>>()
        };
        if keys(self) != keys(new) {
            return Err(incompatible(format!(
                "its key columns were {:?} and are now {:?}",
                keys(self),
                keys(new)
            )));
        }
        for old in &self.columns {
            let Some(now) = new.columns.iter().find(|c| c.name == old.name) else {
                continue;
            };
            let (from, to) = (old.kind(), now.kind());
            let widened = matches!(
                (from, to),
                (Kind::Int, Kind::Long | Kind::Float | Kind::Double)
                    | (Kind::Long, Kind::Float | Kind::Double)
                    | (Kind::Float, Kind::Double)
            );
            if from != to && !widened {
                return Err(incompatible(format!(
                    "column {} changed from {} (type oid {}) to {} (type oid {})",
                    old.name,
                    from.avro(),
                    old.type_oid,
                    to.avro(),
                    now.type_oid
                )));
            }
        }
        Ok(())
    }

    /// The table's name as a type name: `order_lines` → `OrderLines`.
    pub fn type_name(&self) -> String {
        let mut out = String::new();
        for part in self
            .table
            .split(|c: char| !c.is_ascii_alphanumeric())
            .filter(|p| !p.is_empty())
        {
            let mut chars = part.chars();
            if let Some(first) = chars.next() {
                out.push(first.to_ascii_uppercase());
                out.extend(chars);
            }
        }
        if out.is_empty() || out.starts_with(|c: char| c.is_ascii_digit()) {
            out.insert(0, 'T');
        }
        out
    }

    /// The full record names `(inserted, updated, deleted)` in `namespace`.
    pub fn records(&self, namespace: &str) -> [String; 3] {
        let t = self.type_name();
        ["Inserted", "Updated", "Deleted"].map(|what| format!("{namespace}.{t}{what}"))
    }

    /// The three schemas as JSON text, in the order of [`TableShape::records`].
    pub fn schemas(&self, namespace: &str) -> [String; 3] {
        let t = self.type_name();
        let field = |c: &ColumnShape| {
            if c.key {
                json!({"name": c.field, "type": c.kind().avro(), "doc": format!("key column {}", c.name)})
            } else {
                json!({"name": c.field, "type": ["null", c.kind().avro()], "default": null, "doc": format!("column {}", c.name)})
            }
        };
        let all: Vec<_> = self.columns.iter().map(field).collect();
        let keys: Vec<_> = self.columns.iter().filter(|c| c.key).map(field).collect();
        let record = |what: &str, doc: String, fields: &Vec<serde_json::Value>| {
            json!({"type": "record", "name": format!("{t}{what}"), "namespace": namespace, "doc": doc, "fields": fields})
                .to_string()
        };
        [
            record(
                "Inserted",
                format!("A row was inserted into {}: its values.", self.table),
                &all,
            ),
            record(
                "Updated",
                format!("A row of {} was updated: its values after the update.", self.table),
                &all,
            ),
            record(
                "Deleted",
                format!("A row was deleted from {}: its key.", self.table),
                &keys,
            ),
        ]
    }

    /// The subject of a row: `<table>/<key values joined by '/'>`, with `%` and `/` in a value
    /// percent-escaped so distinct keys never share a subject.
    pub fn subject(&self, row: &[Value]) -> Result<String, ShapeError> {
        let mut subject = self.table.clone();
        for (c, v) in self.columns.iter().zip(row) {
            if !c.key {
                continue;
            }
            let Value::Text(text) = v else {
                return Err(ShapeError::NullKey {
                    table: self.table.clone(),
                    column: c.name.clone(),
                });
            };
            subject.push('/');
            subject.push_str(&text.replace('%', "%25").replace('/', "%2F"));
        }
        Ok(subject)
    }

    /// The Avro record of a row: every column (`key_only`: the key columns).
    pub fn avro(&self, row: &[Value], key_only: bool) -> Result<Avro, ShapeError> {
        let mut fields = Vec::with_capacity(self.columns.len());
        for (i, c) in self.columns.iter().enumerate() {
            if key_only && !c.key {
                continue;
            }
            let value = match row.get(i) {
                Some(Value::Text(text)) => Some(parse(&self.table, c, text)?),
                _ => None,
            };
            let value = match (c.key, value) {
                (true, Some(v)) => v,
                (true, None) => {
                    return Err(ShapeError::NullKey {
                        table: self.table.clone(),
                        column: c.name.clone(),
                    })
                }
                (false, Some(v)) => Avro::Union(1, Box::new(v)),
                (false, None) => Avro::Union(0, Box::new(Avro::Null)),
            };
            fields.push((c.field.clone(), value));
        }
        Ok(Avro::Record(fields))
    }
}

fn parse(table: &str, column: &ColumnShape, text: &str) -> Result<Avro, ShapeError> {
    let bad = || ShapeError::BadValue {
        table: table.to_string(),
        column: column.name.clone(),
        value: text.to_string(),
        kind: column.kind(),
    };
    Ok(match column.kind() {
        Kind::Boolean => match text {
            "t" | "true" => Avro::Boolean(true),
            "f" | "false" => Avro::Boolean(false),
            _ => return Err(bad()),
        },
        Kind::Int => Avro::Int(text.parse().map_err(|_| bad())?),
        Kind::Long => Avro::Long(text.parse().map_err(|_| bad())?),
        Kind::Float => Avro::Float(text.parse().map_err(|_| bad())?),
        Kind::Double => Avro::Double(text.parse().map_err(|_| bad())?),
        Kind::Text => Avro::String(text.to_string()),
    })
}

/// An Avro field name for a column: letters, digits and `_`, not starting with a digit.
fn field_name(column: &str) -> String {
    let mut out: String = column
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || c == '_' { c } else { '_' })
        .collect();
    if out.is_empty() || out.starts_with(|c: char| c.is_ascii_digit()) {
        out.insert(0, '_');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use apache_avro::Schema;

    fn customers() -> TableShape {
        TableShape::new(
            "customers",
            [
                ("id".to_string(), 20, true),
                ("name".to_string(), 1043, false),
                ("vip".to_string(), 16, false),
                ("credit limit".to_string(), 1700, false),
            ],
            None,
        )
        .expect("a shape")
    }

    #[test]
    fn rows_become_records_of_the_derived_schemas() {
        let shape = customers();
        let [ins, upd, del] = shape.schemas("seam.cdc.customers");
        let row = vec![
            Value::Text("7".into()),
            Value::Text("Ada".into()),
            Value::Null,
            Value::Text("100.50".into()),
        ];
        for text in [&ins, &upd] {
            let schema = Schema::parse_str(text).expect("parses");
            let value = shape.avro(&row, false).expect("a record");
            let body = apache_avro::writer::datum::GenericDatumWriter::builder(&schema)
                .build()
                .expect("writer")
                .write_value_to_vec(value)
                .expect("fits");
            assert!(!body.is_empty());
        }
        let schema = Schema::parse_str(&del).expect("parses");
        let key = shape.avro(&row, true).expect("the key");
        apache_avro::writer::datum::GenericDatumWriter::builder(&schema)
            .build()
            .expect("writer")
            .write_value_to_vec(key)
            .expect("fits");
        assert_eq!(shape.records("n")[0], "n.CustomersInserted");
        assert_eq!(shape.subject(&row).expect("subject"), "customers/7");
        assert!(ins.contains("\"credit_limit\""), "{ins}");
    }

    #[test]
    fn adding_a_column_is_compatible_and_changing_its_type_is_not() {
        use apache_avro::schema_compatibility::SchemaCompatibility;
        let old = customers();
        let mut widened = old.clone();
        widened.columns[0].type_oid = 20;
        let mut added = old.clone();
        added.columns.push(ColumnShape {
            name: "email".into(),
            field: "email".into(),
            type_oid: 25,
            key: false,
        });
        let mut retyped = old.clone();
        retyped.columns[2].type_oid = 23;
        let parse = |s: &TableShape| Schema::parse_str(&s.schemas("n")[0]).expect("parses");
        assert!(SchemaCompatibility::can_read(&parse(&old), &parse(&added)).is_ok());
        assert!(old.evolves_to(&added).is_ok());
        assert!(added.evolves_to(&old).is_ok(), "a dropped column is ignored by readers");
        assert!(old.evolves_to(&widened).is_ok());
        let err = old.evolves_to(&retyped).expect_err("bool to int").to_string();
        assert!(err.contains("column vip changed from boolean"), "{err}");
        let mut rekeyed = old.clone();
        rekeyed.columns[1].key = true;
        assert!(old.evolves_to(&rekeyed).is_err());
    }

    #[test]
    fn keys_names_and_values_are_checked() {
        let none = TableShape::new("t", [("a".to_string(), 23, false)], None);
        assert!(matches!(none, Err(ShapeError::NoKey { .. })));
        let declared = TableShape::new("t", [("a".to_string(), 23, false)], Some(&["b".to_string()]));
        assert!(matches!(declared, Err(ShapeError::NoSuchKeyColumn { .. })));
        let clash = TableShape::new(
            "t",
            [("a b".to_string(), 23, true), ("a_b".to_string(), 23, false)],
            None,
        );
        assert!(matches!(clash, Err(ShapeError::FieldClash { .. })));
        let shape = TableShape::new(
            "order_lines",
            [("k".to_string(), 25, true), ("n".to_string(), 23, false)],
            None,
        )
        .expect("shape");
        assert_eq!(shape.type_name(), "OrderLines");
        let row = [Value::Text("a/b%".into()), Value::Text("x".into())];
        assert_eq!(shape.subject(&row).expect("subject"), "order_lines/a%2Fb%25");
        assert!(matches!(shape.avro(&row, false), Err(ShapeError::BadValue { .. })));
        assert!(matches!(
            shape.subject(&[Value::Null, Value::Null]),
            Err(ShapeError::NullKey { .. })
        ));
    }
}
