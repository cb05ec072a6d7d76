//! The records of an export in progress. While a node exports a snapshot, every commit waits, so
//! the records go to a plain file as the service emits them (no registry lookups, no Avro
//! container framing, nothing held in memory); once commits go on, the file is read back to write
//! the snapshot file with the schema ids and the record count in its header.
//!
//! Layout: per record, the subject, the record's full name and the Avro body, each as a
//! big-endian u32 length and the bytes.

use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::Path;

/// Writes an export's records.
#[derive(Debug)]
pub struct RawWriter {
    out: BufWriter<File>,
    count: u64,
}

impl RawWriter {
    /// Creates (or truncates) the file at `path`.
    pub fn create(path: &Path) -> std::io::Result<Self> {
        Ok(Self {
            out: BufWriter::new(File::create(path)?),
            count: 0,
        })
    }

    /// Appends one record.
    pub fn append(&mut self, subject: &str, record: &str, body: &[u8]) -> std::io::Result<()> {
        for part in [subject.as_bytes(), record.as_bytes(), body] {
            let len = u32::try_from(part.len())
                .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidInput, "a record part over 4 GiB"))?;
            self.out.write_all(&len.to_be_bytes())?;
            self.out.write_all(part)?;
        }
        self.count += 1;
        Ok(())
    }

    /// Flushes; returns how many records were written.
    pub fn finish(mut self) -> std::io::Result<u64> {
        self.out.flush()?;
        Ok(self.count)
    }
}

/// Reads an export's records back: `(subject, record full name, body)`.
pub struct RawReader {
    input: BufReader<File>,
}

impl RawReader {
    /// Opens the file at `path`.
    pub fn open(path: &Path) -> std::io::Result<Self> {
        Ok(Self {
            input: BufReader::new(File::open(path)?),
        })
    }

    fn part(&mut self, first: bool) -> std::io::Result<Option<Vec<u8>>> {
        let mut len = [0u8; 4];
        match self.input.read_exact(&mut len) {
            Ok(()) => {}
            Err(e) if first && e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
            Err(e) => return Err(e),
        }
        let mut bytes = vec![0; u32::from_be_bytes(len) as usize];
        self.input.read_exact(&mut bytes)?;
        Ok(Some(bytes))
    }
}

impl Iterator for RawReader {
    type Item = std::io::Result<(String, String, Vec<u8>)>;

    fn next(&mut self) -> Option<Self::Item> {
        let text =
            |b: Vec<u8>| String::from_utf8(b).map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e));
        let record = (|| {
            let Some(subject) = self.part(true)? else {
                return Ok(None);
            };
            let (Some(record), Some(body)) = (self.part(false)?, self.part(false)?) else {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "a record cut short",
                ));
            };
            Ok(Some((text(subject)?, text(record)?, body)))
        })();
        record.transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_a_cut_file_is_an_error() {
        let dir = std::env::temp_dir().join(format!("seam-raw-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("export.records");
        let mut w = RawWriter::create(&path).expect("create");
        w.append("s/1", "x.A", &[1, 2]).expect("append");
        w.append("s/2", "x.B", &[]).expect("append");
        assert_eq!(w.finish().expect("finish"), 2);
        let back: Vec<_> = RawReader::open(&path)
            .expect("open")
            .collect::<Result<_, _>>()
            .expect("read");
        assert_eq!(
            back,
            [
                ("s/1".to_string(), "x.A".to_string(), vec![1, 2]),
                ("s/2".to_string(), "x.B".to_string(), vec![])
            ]
        );
        let len = std::fs::metadata(&path).expect("meta").len();
        let f = std::fs::OpenOptions::new().write(true).open(&path).expect("open");
        f.set_len(len - 3).expect("cut");
        let cut: Result<Vec<_>, _> = RawReader::open(&path).expect("open").collect();
        assert!(cut.is_err());
        let _ = std::fs::remove_dir_all(dir);
    }
}
