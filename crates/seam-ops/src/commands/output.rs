//! Writing to the terminal: aligned tables, and a closed pipe (`seam dlq list | head`) ends the
//! command quietly instead of panicking.

use std::io::{ErrorKind, Write};

/// Prints `text` and a newline to stdout; exits 0 if the reader went away.
pub fn line(text: &str) {
    let mut out = std::io::stdout().lock();
    let written = out.write_all(text.as_bytes()).and_then(|()| out.write_all(b"\n"));
    if let Err(e) = written.and_then(|()| out.flush()) {
        if e.kind() == ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
    }
}

/// Rows under a header, each column as wide as its widest cell; the last column is not padded.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let render = |cells: &mut dyn Iterator<Item = &str>| {
        let mut line = String::new();
        for (i, (cell, w)) in cells.zip(&widths).enumerate() {
            if i + 1 == widths.len() {
                line.push_str(cell);
            } else {
                line.push_str(&format!("{cell:<w$}  "));
            }
        }
        line.trim_end().to_string()
    };
    let mut out = vec![render(&mut header.iter().copied())];
    out.extend(rows.iter().map(|r| render(&mut r.iter().map(String::as_str))));
    out.join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_align_to_the_widest_cell() {
        let t = table(
            &["A", "BB", "C"],
            &[vec!["long".into(), "x".into(), "tail text".into()]],
        );
        assert_eq!(t, "A     BB  C\nlong  x   tail text");
    }
}
