//! Decodes the row-level messages of PostgreSQL's `pgoutput` plugin (protocol version 1).
//!
//! The replication client hands over Begin, Commit and logical messages already parsed; the
//! rest of the stream (relations, inserts, updates, deletes, truncates) arrives as raw bytes and
//! is decoded here. Values come in PostgreSQL's text format, exactly as `SELECT` prints them, so
//! the initial copy and the stream produce the same strings for the same row.

use thiserror::Error;

/// A `pgoutput` message that is not well-formed: the stream cannot be trusted past it.
#[derive(Debug, Error, PartialEq, Eq)]
#[error("pgoutput message `{tag}` is malformed: {detail}")]
pub struct DecodeError {
    /// The message's tag byte, as a character.
    pub tag: char,
    /// What was wrong.
    pub detail: String,
}

/// One column of a relation as the stream describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    /// Part of the replica identity (the primary key, by default).
    pub key: bool,
    /// Its name.
    pub name: String,
    /// Its type's OID (`pg_type.oid`).
    pub type_oid: u32,
    /// Its type modifier (e.g. the length of `varchar(n)` plus 4), -1 when none.
    pub type_modifier: i32,
}

/// A table's shape, sent before its first change in a session and after each DDL on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Relation {
    /// The table's OID, which later messages refer to.
    pub id: u32,
    /// Its schema (`public`).
    pub namespace: String,
    /// Its name.
    pub name: String,
    /// `d` default (primary key), `n` nothing, `f` full, `i` index.
    pub replica_identity: char,
    /// Its columns, in table order.
    pub columns: Vec<Column>,
}

/// One column's value in a tuple.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Value {
    /// SQL NULL.
    Null,
    /// A TOASTed value the update did not change: the stream leaves it out.
    Unchanged,
    /// The value in PostgreSQL's text format.
    Text(String),
}

/// A decoded message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// A table's shape.
    Relation(Relation),
    /// A row was inserted.
    Insert {
        /// The table's OID.
        relation: u32,
        /// The new row.
        new: Vec<Value>,
    },
    /// A row was updated.
    Update {
        /// The table's OID.
        relation: u32,
        /// The old key (when the key changed) or the whole old row (replica identity full).
        old: Option<Vec<Value>>,
        /// The new row.
        new: Vec<Value>,
    },
    /// A row was deleted.
    Delete {
        /// The table's OID.
        relation: u32,
        /// The old key (or whole old row with replica identity full).
        old: Vec<Value>,
    },
    /// Tables were truncated.
    Truncate {
        /// Their OIDs.
        relations: Vec<u32>,
    },
    /// Something this decoder does not turn into row changes (type and origin messages).
    Other(char),
}

/// Decodes one `pgoutput` message.
pub fn decode(data: &[u8]) -> Result<Message, DecodeError> {
    let Some((&tag, body)) = data.split_first() else {
        return Err(DecodeError {
            tag: '?',
            detail: "empty message".into(),
        });
    };
    let mut r = Reader {
        rest: body,
        tag: tag as char,
    };
    let message = match tag {
        b'R' => {
            let id = r.u32()?;
            let namespace = r.string()?;
            let name = r.string()?;
            let replica_identity = r.u8()? as char;
            let count = r.u16()?;
            let mut columns = Vec::with_capacity(usize::from(count));
            for _ in 0..count {
                let flags = r.u8()?;
                columns.push(Column {
                    key: flags & 1 == 1,
                    name: r.string()?,
                    type_oid: r.u32()?,
                    type_modifier: r.i32()?,
                });
            }
            Message::Relation(Relation {
                id,
                namespace,
                name,
                replica_identity,
                columns,
            })
        }
        b'I' => {
            let relation = r.u32()?;
            r.expect(b'N')?;
            Message::Insert {
                relation,
                new: r.tuple()?,
            }
        }
        b'U' => {
            let relation = r.u32()?;
            let old = match r.peek()? {
                b'K' | b'O' => {
                    r.u8()?;
                    Some(r.tuple()?)
                }
                _ => None,
            };
            r.expect(b'N')?;
            Message::Update {
                relation,
                old,
                new: r.tuple()?,
            }
        }
        b'D' => {
            let relation = r.u32()?;
            match r.u8()? {
                b'K' | b'O' => {}
                other => return Err(r.error(format!("expected K or O before the old tuple, found {other:#04x}"))),
            }
            Message::Delete {
                relation,
                old: r.tuple()?,
            }
        }
        b'T' => {
            let count = r.u32()?;
            let _options = r.u8()?;
            let relations = (0..count).map(|_| r.u32()).collect::<Result<_, _>>()?;
            Message::Truncate { relations }
        }
        other => Message::Other(other as char),
    };
    Ok(message)
}

struct Reader<'a> {
    rest: &'a [u8],
    tag: char,
}

impl Reader<'_> {
    fn error(&self, detail: String) -> DecodeError {
        DecodeError { tag: self.tag, detail }
    }

    fn take(&mut self, n: usize) -> Result<&[u8], DecodeError> {
        if self.rest.len() < n {
            return Err(self.error(format!("{n} more bytes expected, {} left", self.rest.len())));
        }
        let (head, tail) = self.rest.split_at(n);
        self.rest = tail;
        Ok(head)
    }

    fn peek(&self) -> Result<u8, DecodeError> {
        self.rest
            .first()
            .copied()
            .ok_or_else(|| self.error("message ends early".into()))
    }

    fn expect(&mut self, want: u8) -> Result<(), DecodeError> {
        match self.u8()? {
            b if b == want => Ok(()),
            other => Err(self.error(format!("expected {:?}, found {other:#04x}", want as char))),
        }
    }

    fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.take(1)?[0])
    }

    fn u16(&mut self) -> Result<u16, DecodeError> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    fn u32(&mut self) -> Result<u32, DecodeError> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn i32(&mut self) -> Result<i32, DecodeError> {
        let b = self.take(4)?;
        Ok(i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn string(&mut self) -> Result<String, DecodeError> {
        let end = self
            .rest
            .iter()
            .position(|b| *b == 0)
            .ok_or_else(|| self.error("a name has no terminating zero byte".into()))?;
        let text =
            String::from_utf8(self.rest[..end].to_vec()).map_err(|_| self.error("a name is not UTF-8".into()))?;
        self.rest = &self.rest[end + 1..];
        Ok(text)
    }

    fn tuple(&mut self) -> Result<Vec<Value>, DecodeError> {
        let count = self.u16()?;
        let mut values = Vec::with_capacity(usize::from(count));
        for _ in 0..count {
            values.push(match self.u8()? {
                b'n' => Value::Null,
                b'u' => Value::Unchanged,
                b't' => {
                    let len = self.u32()? as usize;
                    let bytes = self.take(len)?.to_vec();
                    Value::Text(String::from_utf8(bytes).map_err(|_| self.error("a text value is not UTF-8".into()))?)
                }
                other => {
                    return Err(self.error(format!(
                        "column kind {other:#04x} (binary values are not requested, so only n, u and t can come)"
                    )))
                }
            });
        }
        Ok(values)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Builds messages the way `pgoutput` writes them.
    #[derive(Default)]
    struct Bytes(Vec<u8>);

    impl Bytes {
        fn u8(mut self, v: u8) -> Self {
            self.0.push(v);
            self
        }
        fn u16(mut self, v: u16) -> Self {
            self.0.extend(v.to_be_bytes());
            self
        }
        fn u32(mut self, v: u32) -> Self {
            self.0.extend(v.to_be_bytes());
            self
        }
        fn i32(mut self, v: i32) -> Self {
            self.0.extend(v.to_be_bytes());
            self
        }
        fn s(mut self, v: &str) -> Self {
            self.0.extend(v.as_bytes());
            self.0.push(0);
            self
        }
        fn text(self, v: &str) -> Self {
            let mut b = self.u8(b't').u32(v.len() as u32);
            b.0.extend(v.as_bytes());
            b
        }
    }

    #[test]
    fn a_relation_names_its_columns_and_key() {
        let msg = Bytes::default()
            .u8(b'R')
            .u32(16384)
            .s("public")
            .s("customers")
            .u8(b'd')
            .u16(2)
            .u8(1)
            .s("id")
            .u32(20)
            .i32(-1)
            .u8(0)
            .s("name")
            .u32(1043)
            .i32(104);
        let Message::Relation(rel) = decode(&msg.0).expect("decodes") else {
            panic!("a relation");
        };
        assert_eq!(
            (rel.id, rel.namespace.as_str(), rel.name.as_str()),
            (16384, "public", "customers")
        );
        assert_eq!(rel.replica_identity, 'd');
        assert!(rel.columns[0].key && !rel.columns[1].key);
        assert_eq!((rel.columns[1].name.as_str(), rel.columns[1].type_oid), ("name", 1043));
    }

    #[test]
    fn inserts_updates_and_deletes_carry_their_tuples() {
        let insert = Bytes::default()
            .u8(b'I')
            .u32(7)
            .u8(b'N')
            .u16(3)
            .text("1")
            .u8(b'n')
            .text("Ada");
        assert_eq!(
            decode(&insert.0).expect("insert"),
            Message::Insert {
                relation: 7,
                new: vec![Value::Text("1".into()), Value::Null, Value::Text("Ada".into())],
            }
        );
        let update = Bytes::default()
            .u8(b'U')
            .u32(7)
            .u8(b'K')
            .u16(1)
            .text("1")
            .u8(b'N')
            .u16(2)
            .text("2")
            .u8(b'u');
        assert_eq!(
            decode(&update.0).expect("update"),
            Message::Update {
                relation: 7,
                old: Some(vec![Value::Text("1".into())]),
                new: vec![Value::Text("2".into()), Value::Unchanged],
            }
        );
        let plain = Bytes::default().u8(b'U').u32(7).u8(b'N').u16(1).text("é");
        assert!(matches!(decode(&plain.0), Ok(Message::Update { old: None, .. })));
        let delete = Bytes::default().u8(b'D').u32(7).u8(b'K').u16(1).text("1");
        assert_eq!(
            decode(&delete.0).expect("delete"),
            Message::Delete {
                relation: 7,
                old: vec![Value::Text("1".into())],
            }
        );
        let truncate = Bytes::default().u8(b'T').u32(2).u8(0).u32(7).u32(8);
        assert_eq!(
            decode(&truncate.0).expect("truncate"),
            Message::Truncate { relations: vec![7, 8] }
        );
        assert_eq!(decode(b"Yxyz").expect("type"), Message::Other('Y'));
    }

    #[test]
    fn cut_or_garbled_messages_are_refused_with_the_tag() {
        let insert = Bytes::default().u8(b'I').u32(7).u8(b'N').u16(2).text("1");
        let err = decode(&insert.0).expect_err("one column short");
        assert_eq!(err.tag, 'I');
        assert!(decode(&[]).is_err());
        let bad_kind = Bytes::default().u8(b'I').u32(7).u8(b'N').u16(1).u8(b'b');
        assert!(decode(&bad_kind.0).expect_err("binary").detail.contains("binary"));
        let no_new = Bytes::default().u8(b'I').u32(7).u8(b'X');
        assert!(decode(&no_new.0).is_err());
    }
}
