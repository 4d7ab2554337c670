//! Manifest diagnostics: every error carries file, line, column, what was
//! expected and, where one exists, a hint (often the nearest known key).

use std::fmt;

/// A position in a manifest, 1-based like editors show it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Pos {
    pub line: u32,
    pub col: u32,
}

impl Pos {
    pub(crate) fn new(line: usize, col: usize) -> Pos {
        // A manifest is capped at MAX_MANIFEST_BYTES, so both fit in u32.
        Pos {
            line: u32::try_from(line).unwrap_or(u32::MAX),
            col: u32::try_from(col).unwrap_or(u32::MAX),
        }
    }

    /// The position `n` characters to the right on the same line.
    pub(crate) fn right(self, n: usize) -> Pos {
        Pos {
            line: self.line,
            col: self
                .col
                .saturating_add(u32::try_from(n).unwrap_or(u32::MAX)),
        }
    }
}

/// One problem found in a manifest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostic {
    pub file: String,
    pub pos: Pos,
    pub message: String,
    pub hint: Option<String>,
}

impl fmt::Display for Diagnostic {
    /// `file:line:col: error: message` and, on the next line, `  hint: …`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: error: {}",
            self.file, self.pos.line, self.pos.col, self.message
        )?;
        if let Some(hint) = &self.hint {
            write!(f, "\n  hint: {hint}")?;
        }
        Ok(())
    }
}

/// Every problem found in one manifest, in file order. Never empty.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct Diagnostics(pub Vec<Diagnostic>);

impl Diagnostics {
    /// One diagnostic, for a problem found before parsing starts.
    pub(crate) fn one(file: &str, pos: Pos, message: &str, hint: &str) -> Diagnostics {
        Diagnostics(vec![Diagnostic {
            file: file.to_string(),
            pos,
            message: message.to_string(),
            hint: Some(hint.to_string()),
        }])
    }

    pub fn iter(&self) -> impl Iterator<Item = &Diagnostic> {
        self.0.iter()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{d}")?;
        }
        Ok(())
    }
}

/// Collects diagnostics for one file while parsing goes on, so an operator
/// sees every error at once, not one per run.
#[derive(Debug)]
pub(crate) struct Sink {
    file: String,
    found: Vec<Diagnostic>,
    total: usize,
}

impl Sink {
    pub(crate) fn new(file: &str) -> Sink {
        Sink {
            file: file.to_string(),
            found: Vec::new(),
            total: 0,
        }
    }

    pub(crate) fn error(&mut self, pos: Pos, message: impl Into<String>) {
        self.push(pos, message.into(), None);
    }

    pub(crate) fn error_hint(
        &mut self,
        pos: Pos,
        message: impl Into<String>,
        hint: impl Into<String>,
    ) {
        self.push(pos, message.into(), Some(hint.into()));
    }

    fn push(&mut self, pos: Pos, message: String, hint: Option<String>) {
        self.total += 1;
        // Bound memory: a binary file fed to the parser would otherwise
        // produce one error per line. The passes do not report in file
        // order, so keep far more than are shown and cut after sorting.
        if self.found.len() < MAX_COLLECTED {
            self.found.push(Diagnostic {
                file: self.file.clone(),
                pos,
                message,
                hint,
            });
        }
    }

    /// Problems found so far (a running count, also past the display cap).
    pub(crate) fn count(&self) -> usize {
        self.total
    }

    pub(crate) fn finish(mut self) -> Result<(), Diagnostics> {
        if self.found.is_empty() {
            Ok(())
        } else {
            // Stable: two errors at one position keep the order found.
            self.found.sort_by_key(|d| d.pos);
            self.found.truncate(MAX_DIAGNOSTICS);
            Err(Diagnostics(self.found))
        }
    }
}

/// More errors than this in one file are not worth reading.
const MAX_DIAGNOSTICS: usize = 100;
/// How many are kept before sorting: the first [`MAX_DIAGNOSTICS`] by
/// position are among them unless one pass alone reports more than this.
const MAX_COLLECTED: usize = 1000;

/// The known word closest to `word`, if it is close enough to be a typo.
pub(crate) fn nearest<'a>(word: &str, known: &[&'a str]) -> Option<&'a str> {
    let word = word.to_ascii_lowercase();
    known
        .iter()
        .map(|k| (edit_distance(&word, k), *k))
        .filter(|(d, k)| *d <= 2.max(k.len() / 4) && *d < k.len())
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}

/// Optimal-string-alignment distance: Levenshtein plus adjacent swaps, so
/// `replcias` is one edit from `replicas`.
fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in d[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut v = (d[i - 1][j] + 1)
                .min(d[i][j - 1] + 1)
                .min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                v = v.min(d[i - 2][j - 2] + 1);
            }
            d[i][j] = v;
        }
    }
    d[a.len()][b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_finds_typos_and_ignores_strangers() {
        let keys = ["replicas", "restart", "port", "exec", "health"];
        assert_eq!(nearest("replcas", &keys), Some("replicas"));
        assert_eq!(nearest("replcias", &keys), Some("replicas"));
        assert_eq!(nearest("prot", &keys), Some("port"));
        assert_eq!(nearest("HEALTH", &keys), Some("health"));
        assert_eq!(nearest("banana", &keys), None);
        assert_eq!(nearest("x", &keys), None);
    }

    #[test]
    fn diagnostic_format_is_file_line_col() {
        let d = Diagnostic {
            file: "a.skr8tr".into(),
            pos: Pos { line: 3, col: 5 },
            message: "unknown key `replcas`".into(),
            hint: Some("did you mean `replicas`?".into()),
        };
        assert_eq!(
            d.to_string(),
            "a.skr8tr:3:5: error: unknown key `replcas`\n  hint: did you mean `replicas`?"
        );
    }
}
