//! The CDC source as a seam service: row changes in, `<Table>Inserted/Updated/Deleted` out.
//!
//! The model mirrors the published tables (`row/<subject>` holds a row's column values as
//! text) plus the source's progress (`cdc/state`: the phase and the end LSN of the last applied
//! transaction). Both are written in the same atomic store write as the events, so after any
//! crash the journal, the mirror and the position agree: a transaction whose end LSN is not past
//! the recorded one was applied already and changes nothing when PostgreSQL sends it again.
//!
//! The initial copy of the tables is diffed against the mirror rather than appended: rows that
//! are already there unchanged emit nothing, and at the end of the copy rows the copy did not
//! see are deleted. So a copy interrupted by a crash and done again from a new exported
//! snapshot publishes exactly the difference between what was published and the tables.

use std::collections::BTreeMap;

use seam::service::{Apply, ApplyError, Service, SnapshotOut};
use serde::{Deserialize, Serialize};

use crate::pgoutput::Value;
use crate::schema::{ShapeError, TableShape};

/// Model key of the source's progress.
pub const STATE_KEY: &str = "cdc/state";
/// Model prefix of the mirrored rows.
const ROWS: &str = "row/";

/// Where the source stands, kept in its model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct CdcState {
    /// The initial copy this source is doing or last did (1 for the first).
    pub load: u64,
    /// True once the copy `load` is complete and the stream is being followed.
    pub streaming: bool,
    /// The end LSN of the last transaction applied (while streaming): the slot's position.
    pub lsn: u64,
}

/// One row change of a committed transaction, in the table's column order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Change {
    /// A row was inserted.
    Insert {
        /// The table.
        table: String,
        /// Its values.
        new: Vec<Value>,
    },
    /// A row was updated; `old` is its old key when the key changed.
    Update {
        /// The table.
        table: String,
        /// The old key (or old row).
        old: Option<Vec<Value>>,
        /// Its values now (unchanged TOAST values left out).
        new: Vec<Value>,
    },
    /// A row was deleted.
    Delete {
        /// The table.
        table: String,
        /// Its key (or old row).
        old: Vec<Value>,
    },
    /// Every row of the table was removed.
    Truncate {
        /// The table.
        table: String,
    },
}

/// What the CDC driver asks the source to apply.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum CdcCommand {
    /// Starts initial copy number `load` (the previous one, if any, did not finish).
    BeginLoad {
        /// The copy's number.
        load: u64,
    },
    /// Rows of the initial copy `load`.
    Load {
        /// The copy's number.
        load: u64,
        /// `(table, values)`.
        rows: Vec<(String, Vec<Value>)>,
    },
    /// The copy `load` is complete at `lsn` (the slot's consistent point): rows it did not see
    /// are deleted, and the stream is followed from `lsn`.
    LoadDone {
        /// The copy's number.
        load: u64,
        /// Where the stream continues.
        lsn: u64,
    },
    /// One committed transaction, ending at `end_lsn`.
    Transaction {
        /// The end LSN of its commit record.
        end_lsn: u64,
        /// Its changes to published tables, in commit order.
        changes: Vec<Change>,
    },
}

/// A mirrored row: the copy that last wrote it and its values by column name.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Row {
    load: u64,
    values: BTreeMap<String, Option<String>>,
}

/// The source: the shapes of its tables and the namespace of their records. Immutable for the
/// life of a node; a DDL change starts a node with the new shapes.
#[derive(Debug, Clone)]
pub struct CdcSource {
    namespace: String,
    tables: BTreeMap<String, TableShape>,
    /// Per table, its records' full names (Inserted, Updated, Deleted), made once.
    records: BTreeMap<String, [String; 3]>,
}

impl CdcSource {
    /// A source publishing `tables` as records in `namespace`.
    pub fn new(namespace: &str, tables: impl IntoIterator<Item = TableShape>) -> Self {
        let tables: BTreeMap<String, TableShape> = tables.into_iter().map(|t| (t.table.clone(), t)).collect();
        let records = tables
            .values()
            .map(|t| (t.table.clone(), t.records(namespace)))
            .collect();
        Self {
            namespace: namespace.to_string(),
            tables,
            records,
        }
    }

    /// The shape of `table`.
    pub fn table(&self, table: &str) -> Option<&TableShape> {
        self.tables.get(table)
    }

    /// Every table's shape.
    pub fn tables(&self) -> impl Iterator<Item = &TableShape> {
        self.tables.values()
    }

    /// Every record schema the source writes, `(full name, schema text)`.
    pub fn schemas(&self) -> Vec<(String, String)> {
        self.tables
            .values()
            .flat_map(|t| t.records(&self.namespace).into_iter().zip(t.schemas(&self.namespace)))
            .collect()
    }

    fn shape(&self, table: &str) -> Result<&TableShape, ApplyError> {
        self.tables
            .get(table)
            .ok_or_else(|| ApplyError::rejected(format!("table {table} is not published by this source")))
    }

    fn emit(
        &self,
        ctx: &mut Apply<'_>,
        shape: &TableShape,
        which: usize,
        subject: &str,
        row: &[Value],
    ) -> Result<(), ApplyError> {
        let record = &self.records[&shape.table][which];
        let value = shape.avro(row, which == 2).map_err(shape_error)?;
        let body = ctx.catalog().encode_value(record, value)?;
        ctx.emit_encoded(subject, record, body)?;
        Ok(())
    }

    fn state(ctx: &Apply<'_>) -> Result<CdcState, ApplyError> {
        Ok(ctx.get::<CdcState>(STATE_KEY)?.unwrap_or(CdcState {
            load: 0,
            streaming: false,
            lsn: 0,
        }))
    }

    /// Writes `values` as the row of `subject` and emits Inserted (new) or Updated; with
    /// `only_if_changed`, emits nothing when the mirror already holds these values.
    fn upsert(
        &self,
        ctx: &mut Apply<'_>,
        shape: &TableShape,
        load: u64,
        values: &[Value],
        only_if_changed: bool,
        force_insert: bool,
    ) -> Result<(), ApplyError> {
        let subject = shape.subject(values).map_err(shape_error)?;
        let key = format!("{ROWS}{subject}");
        // An insert's row is new (the copy and the stream never overlap) and has every value:
        // nothing to compare or fill in, so the mirror need not be read.
        let old: Option<Row> = if force_insert && !only_if_changed && !values.contains(&Value::Unchanged) {
            None
        } else {
            ctx.get(&key)?
        };
        let mut merged = values.to_vec();
        for (i, c) in shape.columns.iter().enumerate() {
            if merged.get(i) == Some(&Value::Unchanged) {
                let kept = old.as_ref().and_then(|o| o.values.get(&c.name).cloned().flatten());
                merged[i] = kept.map_or(Value::Null, Value::Text);
            }
        }
        let row = Row {
            load,
            values: shape
                .columns
                .iter()
                .zip(&merged)
                .map(|(c, v)| {
                    let text = match v {
                        Value::Text(t) => Some(t.clone()),
                        _ => None,
                    };
                    (c.name.clone(), text)
                })
                .collect(),
        };
        let unchanged = old.as_ref().is_some_and(|o| o.values == row.values);
        ctx.put(&key, &row)?;
        if only_if_changed && unchanged {
            return Ok(());
        }
        let which = if old.is_none() || force_insert { 0 } else { 1 };
        self.emit(ctx, shape, which, &subject, &merged)
    }

    fn delete(&self, ctx: &mut Apply<'_>, shape: &TableShape, subject: &str, key: &[Value]) -> Result<(), ApplyError> {
        let model_key = format!("{ROWS}{subject}");
        if ctx.get::<Row>(&model_key)?.is_none() {
            return Ok(());
        }
        ctx.remove(&model_key);
        self.emit(ctx, shape, 2, subject, key)
    }

    fn values_of(shape: &TableShape, row: &Row) -> Vec<Value> {
        shape
            .columns
            .iter()
            .map(|c| match row.values.get(&c.name) {
                Some(Some(t)) => Value::Text(t.clone()),
                _ => Value::Null,
            })
            .collect()
    }

    fn apply_change(&self, ctx: &mut Apply<'_>, load: u64, change: &Change) -> Result<(), ApplyError> {
        match change {
            Change::Insert { table, new } => {
                let shape = self.shape(table)?;
                self.upsert(ctx, shape, load, new, false, true)
            }
            Change::Update { table, old, new } => {
                let shape = self.shape(table)?;
                let subject = shape.subject(new).map_err(shape_error)?;
                if let Some(old) = old {
                    let old_subject = shape.subject(old).map_err(shape_error)?;
                    if old_subject != subject {
                        // The key changed: to consumers, one row left and another arrived.
                        self.delete(ctx, shape, &old_subject, old)?;
                        return self.upsert(ctx, shape, load, new, false, true);
                    }
                }
                self.upsert(ctx, shape, load, new, false, false)
            }
            Change::Delete { table, old } => {
                let shape = self.shape(table)?;
                let subject = shape.subject(old).map_err(shape_error)?;
                self.delete(ctx, shape, &subject, old)
            }
            Change::Truncate { table } => {
                let shape = self.shape(table)?;
                for (key, row) in ctx.scan::<Row>(&format!("{ROWS}{table}/"))? {
                    let subject = key.trim_start_matches(ROWS).to_string();
                    let values = Self::values_of(shape, &row);
                    self.delete(ctx, shape, &subject, &values)?;
                }
                Ok(())
            }
        }
    }
}

fn shape_error(e: ShapeError) -> ApplyError {
    ApplyError::rejected(e.to_string())
}

impl Service for CdcSource {
    type Command = CdcCommand;

    fn apply(&self, ctx: &mut Apply<'_>, command: &CdcCommand) -> Result<(), ApplyError> {
        let mut state = Self::state(ctx)?;
        match command {
            CdcCommand::BeginLoad { load } => {
                state = CdcState {
                    load: *load,
                    streaming: false,
                    lsn: 0,
                };
            }
            CdcCommand::Load { load, rows } => {
                if state.streaming || state.load != *load {
                    return Err(ApplyError::rejected(format!(
                        "rows of initial copy {load} arrived while the source is at copy {} ({})",
                        state.load,
                        if state.streaming { "streaming" } else { "copying" }
                    )));
                }
                for (table, values) in rows {
                    let shape = self.shape(table)?;
                    self.upsert(ctx, shape, *load, values, true, false)?;
                }
                return Ok(());
            }
            CdcCommand::LoadDone { load, lsn } => {
                if state.streaming || state.load != *load {
                    return Err(ApplyError::rejected(format!(
                        "initial copy {load} ended while the source is at copy {}",
                        state.load
                    )));
                }
                for (key, row) in ctx.scan::<Row>(ROWS)? {
                    if row.load == *load {
                        continue;
                    }
                    let subject = key.trim_start_matches(ROWS).to_string();
                    let table = subject.split('/').next().unwrap_or_default().to_string();
                    match self.tables.get(&table) {
                        Some(shape) => {
                            let values = Self::values_of(shape, &row);
                            self.delete(ctx, shape, &subject, &values)?;
                        }
                        // A table no longer published: its mirror goes, silently for consumers
                        // (they never get events of a table the source does not publish).
                        None => ctx.remove(&key),
                    }
                }
                state.streaming = true;
                state.lsn = *lsn;
            }
            CdcCommand::Transaction { end_lsn, changes } => {
                if !state.streaming {
                    return Err(ApplyError::rejected(
                        "a streamed transaction arrived before the initial copy finished",
                    ));
                }
                if *end_lsn <= state.lsn {
                    // Sent again after a restart: applied already.
                    return Ok(());
                }
                for change in changes {
                    self.apply_change(ctx, state.load, change)?;
                }
                state.lsn = *end_lsn;
            }
        }
        ctx.put(STATE_KEY, &state)
    }

    fn snapshot(&self, out: &mut SnapshotOut<'_>) -> Result<(), ApplyError> {
        for item in out.scan::<Row>(ROWS)? {
            let (key, row) = item?;
            let subject = key.trim_start_matches(ROWS).to_string();
            let table = subject.split('/').next().unwrap_or_default();
            let Some(shape) = self.tables.get(table) else {
                continue;
            };
            let record = self.records[table][0].clone();
            let value = shape.avro(&Self::values_of(shape, &row), false).map_err(shape_error)?;
            let body = out.catalog().encode_value(&record, value)?;
            out.emit_encoded(&subject, &record, body)?;
        }
        Ok(())
    }

    fn is_internal(&self, _command: &CdcCommand) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use seam::codec::Catalog;
    use seam::service::apply_command;
    use seam::store::Store;

    fn source() -> (CdcSource, Catalog) {
        let shape = TableShape::new(
            "customers",
            [("id".to_string(), 20, true), ("name".to_string(), 25, false)],
            None,
        )
        .expect("shape");
        let source = CdcSource::new("seam.cdc.crm", [shape]);
        let schemas = source.schemas();
        let catalog = Catalog::from_sources(schemas.iter().map(|(_, t)| ("", t.as_str()))).expect("catalog");
        (source, catalog)
    }

    fn row(id: &str, name: &str) -> Vec<Value> {
        vec![Value::Text(id.into()), Value::Text(name.into())]
    }

    /// Applies each command in its own write and returns the records of the events emitted.
    fn run(source: &CdcSource, catalog: &Catalog, store: &Store, commands: &[CdcCommand]) -> Vec<(String, String)> {
        let mut out = Vec::new();
        for c in commands {
            let mut set = store.write_set().expect("set");
            apply_command(source, store, &mut set, catalog, c).expect("applies");
            out.extend(set.entries().iter().map(|e| {
                (
                    e.record.rsplit('.').next().unwrap_or_default().to_string(),
                    e.subject.clone(),
                )
            }));
            store.commit(&mut set, true).expect("commit");
        }
        out
    }

    #[test]
    fn a_copy_then_a_stream_publish_each_change_once() {
        let (source, catalog) = source();
        let store = Store::in_memory();
        let events = run(
            &source,
            &catalog,
            &store,
            &[
                CdcCommand::BeginLoad { load: 1 },
                CdcCommand::Load {
                    load: 1,
                    rows: vec![
                        ("customers".into(), row("1", "Ada")),
                        ("customers".into(), row("2", "Bob")),
                    ],
                },
                CdcCommand::LoadDone { load: 1, lsn: 100 },
                CdcCommand::Transaction {
                    end_lsn: 200,
                    changes: vec![
                        Change::Update {
                            table: "customers".into(),
                            old: None,
                            new: vec![Value::Text("1".into()), Value::Unchanged],
                        },
                        Change::Delete {
                            table: "customers".into(),
                            old: vec![Value::Text("2".into()), Value::Null],
                        },
                    ],
                },
                // Sent again after a restart: nothing happens.
                CdcCommand::Transaction {
                    end_lsn: 200,
                    changes: vec![Change::Insert {
                        table: "customers".into(),
                        new: row("3", "Cy"),
                    }],
                },
            ],
        );
        let names: Vec<&str> = events.iter().map(|(r, _)| r.as_str()).collect();
        assert_eq!(
            names,
            [
                "CustomersInserted",
                "CustomersInserted",
                "CustomersUpdated",
                "CustomersDeleted"
            ]
        );
        assert_eq!(events[2].1, "customers/1");
        let kept: Row =
            serde_json::from_slice(&store.model_get("row/customers/1").expect("get").expect("row")).expect("json");
        assert_eq!(
            kept.values["name"].as_deref(),
            Some("Ada"),
            "an unchanged TOAST value is kept"
        );
    }

    #[test]
    fn a_copy_done_again_publishes_only_the_difference() {
        let (source, catalog) = source();
        let store = Store::in_memory();
        run(
            &source,
            &catalog,
            &store,
            &[
                CdcCommand::BeginLoad { load: 1 },
                CdcCommand::Load {
                    load: 1,
                    rows: vec![
                        ("customers".into(), row("1", "Ada")),
                        ("customers".into(), row("2", "Bob")),
                    ],
                },
            ],
        );
        // The first copy crashed here; the second sees 1 unchanged, 2 gone, 3 new.
        let events = run(
            &source,
            &catalog,
            &store,
            &[
                CdcCommand::BeginLoad { load: 2 },
                CdcCommand::Load {
                    load: 2,
                    rows: vec![
                        ("customers".into(), row("1", "Ada")),
                        ("customers".into(), row("3", "Cy")),
                    ],
                },
                CdcCommand::LoadDone { load: 2, lsn: 500 },
            ],
        );
        assert_eq!(
            events,
            [
                ("CustomersInserted".to_string(), "customers/3".to_string()),
                ("CustomersDeleted".to_string(), "customers/2".to_string()),
            ]
        );
        let mut out = SnapshotOut::new(&store, &catalog);
        source.snapshot(&mut out).expect("snapshot");
        let subjects: Vec<String> = out.into_records().into_iter().map(|(s, _, _)| s).collect();
        assert_eq!(subjects, ["customers/1", "customers/3"]);
    }

    #[test]
    fn a_changed_key_is_a_delete_and_an_insert_and_truncate_deletes_every_row() {
        let (source, catalog) = source();
        let store = Store::in_memory();
        let events = run(
            &source,
            &catalog,
            &store,
            &[
                CdcCommand::BeginLoad { load: 1 },
                CdcCommand::LoadDone { load: 1, lsn: 1 },
                CdcCommand::Transaction {
                    end_lsn: 2,
                    changes: vec![
                        Change::Insert {
                            table: "customers".into(),
                            new: row("1", "Ada"),
                        },
                        Change::Insert {
                            table: "customers".into(),
                            new: row("2", "Bob"),
                        },
                        Change::Update {
                            table: "customers".into(),
                            old: Some(vec![Value::Text("1".into()), Value::Null]),
                            new: row("9", "Ada"),
                        },
                    ],
                },
                CdcCommand::Transaction {
                    end_lsn: 3,
                    changes: vec![Change::Truncate {
                        table: "customers".into(),
                    }],
                },
            ],
        );
        let subjects: Vec<String> = events.iter().map(|(r, s)| format!("{r} {s}")).collect();
        assert_eq!(
            subjects,
            [
                "CustomersInserted customers/1",
                "CustomersInserted customers/2",
                "CustomersDeleted customers/1",
                "CustomersInserted customers/9",
                "CustomersDeleted customers/2",
                "CustomersDeleted customers/9",
            ]
        );
    }
}
