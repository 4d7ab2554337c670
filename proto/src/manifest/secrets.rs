//! Keeping secret values out of signed, audited bytes.
//!
//! `skr8tr up` replaces every value in a manifest's `secret` blocks with a
//! salted digest, `sha256:SALT:DIGEST`, before signing, and sends the values
//! beside the envelope. The conductor checks each value against the digest
//! the operator signed, so the values are as authentic as the manifest, yet
//! the audit log (which keeps the signed bytes forever) never holds them.

use super::error::{Diagnostics, Sink};
use super::tree::{self, Entry};
use sha2::{Digest, Sha256};

/// Prefix of a redacted secret value.
pub const REDACTED_PREFIX: &str = "sha256:";

/// One secret value taken out of a manifest.
#[derive(Clone, PartialEq, Eq)]
pub struct Extracted {
    pub app: String,
    pub name: String,
    pub value: String,
}

impl std::fmt::Debug for Extracted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Extracted({}/{} = ***)", self.app, self.name)
    }
}

/// `sha256:SALT:DIGEST` for a secret value.
pub fn digest(salt: &[u8; 16], app: &str, name: &str, value: &str) -> String {
    let mut h = Sha256::new();
    h.update(salt);
    for part in [app, name, value] {
        h.update((part.len() as u64).to_le_bytes());
        h.update(part.as_bytes());
    }
    format!(
        "{REDACTED_PREFIX}{}:{}",
        crate::hex::encode(salt),
        crate::hex::encode(&h.finalize())
    )
}

/// Whether `value` is the one `redacted` (a `sha256:SALT:DIGEST`) commits to.
pub fn matches(redacted: &str, app: &str, name: &str, value: &str) -> bool {
    let Some(rest) = redacted.strip_prefix(REDACTED_PREFIX) else {
        return false;
    };
    let Some((salt_hex, _)) = rest.split_once(':') else {
        return false;
    };
    let Some(salt) = crate::hex::decode(salt_hex).and_then(|s| <[u8; 16]>::try_from(s).ok()) else {
        return false;
    };
    digest(&salt, app, name, value) == redacted
}

/// Whether a secret value in a manifest is a digest rather than a value.
pub fn is_redacted(value: &str) -> bool {
    value.starts_with(REDACTED_PREFIX)
}

/// Rewrites `text` with every secret value replaced by its digest (salts
/// from `salt`), returning the new text and the values taken out. The
/// manifest must parse; the rewritten one parses to the same apps.
pub fn redact(
    file: &str,
    text: &str,
    mut salt: impl FnMut() -> [u8; 16],
) -> Result<(String, Vec<Extracted>), Diagnostics> {
    rewrite(file, text, |app, name, value| {
        digest(&salt(), app, name, value)
    })
}

/// Rewrites `text` with every secret value replaced by `replace(app,
/// name, value)` (a digest, or the value sealed to the conductor),
/// returning the new text and the values taken out. The manifest must
/// parse; the rewritten one parses to the same apps, provided each
/// replacement is a single word.
pub fn rewrite(
    file: &str,
    text: &str,
    mut replace: impl FnMut(&str, &str, &str) -> String,
) -> Result<(String, Vec<Extracted>), Diagnostics> {
    let specs = super::parse(file, text)?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut sink = Sink::new(file);
    let entries = tree::parse(text, &mut sink);
    let mut lines: Vec<String> = text.split('\n').map(str::to_string).collect();
    let mut extracted = Vec::new();
    // (line index, char column, raw length, replacement), applied right to left.
    let mut edits: Vec<(usize, usize, usize, String)> = Vec::new();
    for app in entries.iter().filter(|e| e.key == "app") {
        let Some(spec) = specs.iter().find(|s| s.name == app.value) else {
            continue;
        };
        for block in children(app).filter(|e| e.key == "secret") {
            for var in children(block) {
                let Some((_, secret)) = spec.secrets.iter().find(|(n, _)| *n == var.key) else {
                    continue;
                };
                let value = secret.expose().to_string();
                let redacted = replace(&spec.name, &var.key, &value);
                edits.push((
                    var.value_at.line as usize - 1,
                    var.value_at.col as usize - 1,
                    var.value.chars().count(),
                    redacted,
                ));
                extracted.push(Extracted {
                    app: spec.name.clone(),
                    name: var.key.clone(),
                    value,
                });
            }
        }
    }
    edits.sort_by_key(|e| std::cmp::Reverse((e.0, e.1)));
    for (line, col, len, replacement) in edits {
        if let Some(l) = lines.get_mut(line) {
            let chars: Vec<char> = l.chars().collect();
            let end = (col + len).min(chars.len());
            let start = col.min(end);
            *l = chars[..start]
                .iter()
                .chain(replacement.chars().collect::<Vec<_>>().iter())
                .chain(chars[end..].iter())
                .collect();
        }
    }
    Ok((lines.join("\n"), extracted))
}

fn children(e: &Entry) -> impl Iterator<Item = &Entry> {
    e.block.iter().flat_map(|b| b.entries.iter())
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "app web\n  exec /x\n  secret {\n    TOKEN \"s3cret value\"\n    KEY abc\n  }\n\
                        app db\n  exec /y\n  secret { PASS hunter2; USER admin }\n";

    #[test]
    fn values_leave_the_text_and_still_match() {
        let mut n = 0u8;
        let (redacted, values) = redact("m", TEXT, || {
            n += 1;
            [n; 16]
        })
        .unwrap();
        for secret in ["s3cret", "hunter2", "abc", "admin"] {
            assert!(!redacted.contains(secret), "{secret} left in:\n{redacted}");
        }
        assert_eq!(values.len(), 4);
        let specs = super::super::parse("m", &redacted).unwrap();
        for v in &values {
            let spec = specs.iter().find(|s| s.name == v.app).unwrap();
            let (_, placeholder) = spec.secrets.iter().find(|(n, _)| *n == v.name).unwrap();
            assert!(is_redacted(placeholder.expose()));
            assert!(matches(placeholder.expose(), &v.app, &v.name, &v.value));
            assert!(!matches(placeholder.expose(), &v.app, &v.name, "other"));
            assert!(!matches(
                placeholder.expose(),
                "other-app",
                &v.name,
                &v.value
            ));
        }
        assert_eq!(
            values.iter().find(|v| v.name == "TOKEN").unwrap().value,
            "s3cret value"
        );
        assert!(format!("{values:?}").contains("***"));
        assert!(!format!("{values:?}").contains("hunter2"));
    }

    #[test]
    fn a_manifest_without_secrets_is_unchanged() {
        let text = "app web\n  exec /x\n  env { A 1 }\n";
        let (redacted, values) = redact("m", text, || [0; 16]).unwrap();
        assert_eq!(redacted, text);
        assert!(values.is_empty());
        assert!(!matches("plain", "a", "b", "c"));
        assert!(!matches("sha256:zz:00", "a", "b", "c"));
    }
}
