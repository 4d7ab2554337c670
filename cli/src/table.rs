//! Aligned plain-text tables: what every listing command prints. Every
//! cell is shown on one line with its control characters escaped
//! (`show::line`): cells come from the network.

use std::io::Write;

/// Writes `rows` (the first is the header) with columns padded to line up;
/// the last column is not padded.
pub fn print<const N: usize>(out: &mut impl Write, rows: Vec<[String; N]>) -> std::io::Result<()> {
    let rows: Vec<[String; N]> = rows
        .into_iter()
        .map(|row| row.map(|cell| crate::show::line(&cell).into_owned()))
        .collect();
    let mut widths = [0usize; N];
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    for row in rows {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            if i + 1 == N {
                line.push_str(cell);
            } else {
                line.push_str(&format!("{cell:<w$}  ", w = widths[i]));
            }
        }
        writeln!(out, "{}", line.trim_end())?;
    }
    Ok(())
}
