//! The Confluent wire format: one magic byte (0), a 4-byte big-endian schema id, then the Avro body.
//!
//! Payload bytes come from a topic anyone can write to, so they are parsed with bounds checks and
//! typed errors, never by indexing.

use thiserror::Error;

/// The only magic byte the Confluent framing defines.
pub const MAGIC: u8 = 0;

/// Bytes of framing before the Avro body.
pub const HEADER_LEN: usize = 5;

/// Why a payload is not a Confluent-framed record.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum FrameError {
    /// A record without a value (a tombstone or a producer bug).
    #[error("the record has no value (empty payload); seam events always carry a Confluent-framed Avro value")]
    Empty,
    /// Fewer bytes than the framing needs.
    #[error("the payload is {len} bytes, shorter than the 5-byte Confluent header (magic byte + schema id)")]
    Short {
        /// Bytes present.
        len: usize,
    },
    /// The first byte is not 0, so this is not Confluent framing (plain JSON or raw Avro, say).
    #[error("the payload starts with byte {found:#04x}, not the Confluent magic byte 0x00; was it written by a serializer without a schema registry?")]
    WrongMagic {
        /// The byte found.
        found: u8,
    },
}

/// A framed payload split into its schema id and Avro body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Framed<'a> {
    /// The registry's id of the writer schema.
    pub schema_id: u32,
    /// The Avro binary body, written with that schema.
    pub body: &'a [u8],
}

/// Splits a payload into schema id and body.
pub fn parse(payload: &[u8]) -> Result<Framed<'_>, FrameError> {
    let (&magic, rest) = payload.split_first().ok_or(FrameError::Empty)?;
    if magic != MAGIC {
        return Err(FrameError::WrongMagic { found: magic });
    }
    let (id, body) = rest
        .split_first_chunk::<4>()
        .ok_or(FrameError::Short { len: payload.len() })?;
    Ok(Framed {
        schema_id: u32::from_be_bytes(*id),
        body,
    })
}

/// Frames an Avro body with its schema id.
pub fn frame(schema_id: u32, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN + body.len());
    out.push(MAGIC);
    out.extend_from_slice(&schema_id.to_be_bytes());
    out.extend_from_slice(body);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_payload_is_reported_as_empty() {
        assert_eq!(parse(&[]), Err(FrameError::Empty));
    }

    #[test]
    fn payloads_shorter_than_the_header_are_short() {
        for len in 1..HEADER_LEN {
            let bytes = vec![0u8; len];
            assert_eq!(parse(&bytes), Err(FrameError::Short { len }));
        }
    }

    #[test]
    fn a_non_zero_first_byte_is_wrong_magic() {
        assert_eq!(parse(b"{\"a\":1}"), Err(FrameError::WrongMagic { found: b'{' }));
    }

    #[test]
    fn frame_and_parse_round_trip() {
        let framed = frame(0x0102_0304, b"body");
        assert_eq!(framed[..5], [0, 1, 2, 3, 4]);
        let parsed = parse(&framed).expect("framed payload parses");
        assert_eq!(parsed.schema_id, 0x0102_0304);
        assert_eq!(parsed.body, b"body");
    }

    #[test]
    fn a_header_without_body_has_an_empty_body() {
        let parsed = parse(&[0, 0, 0, 0, 7]).expect("header only parses");
        assert_eq!(parsed.schema_id, 7);
        assert!(parsed.body.is_empty());
    }
}
