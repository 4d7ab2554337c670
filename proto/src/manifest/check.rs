//! Helpers shared by the second pass: value errors with positions, unknown
//! and repeated keys, and "this key wants a block / a value" checks.

use super::error::{Sink, nearest};
use super::tree::Entry;
use super::values::ValueError;
use std::collections::HashMap;

/// The keys one block accepts.
pub(crate) struct Keys {
    /// What the block is called in messages: "app `web`", "the health block".
    pub place: String,
    /// Canonical key names.
    pub known: &'static [&'static str],
    /// `(alias, canonical)` pairs.
    pub aliases: &'static [(&'static str, &'static str)],
    /// Keys that may appear more than once.
    pub repeatable: &'static [&'static str],
}

pub(crate) struct Checker<'s> {
    pub sink: &'s mut Sink,
}

impl Checker<'_> {
    /// Returns the entries of a block as `(canonical key, entry)`, after
    /// reporting unknown keys (with the nearest known one) and repeats.
    pub fn known<'e>(
        &mut self,
        entries: &'e [Entry],
        keys: &Keys,
    ) -> Vec<(&'static str, &'e Entry)> {
        // Canonical key to the first entry that set it.
        let mut seen: HashMap<&'static str, &Entry> = HashMap::new();
        let mut out = Vec::new();
        for e in entries {
            if e.key.is_empty() {
                continue; // already reported by the tree pass
            }
            let canonical = keys
                .known
                .iter()
                .copied()
                .find(|k| *k == e.key)
                .or_else(|| {
                    keys.aliases
                        .iter()
                        .find(|(alias, _)| *alias == e.key)
                        .map(|(_, canonical)| *canonical)
                });
            let Some(key) = canonical else {
                self.unknown(e, keys);
                continue;
            };
            if !keys.repeatable.contains(&key) {
                if let Some(first) = seen.get(key) {
                    self.repeated(e, first, keys);
                    continue;
                }
                seen.insert(key, e);
            }
            out.push((key, e));
        }
        out
    }

    /// `e` sets the same key as `first`, maybe under another name (`cpus`
    /// after `cpu`): the message names what was written.
    fn repeated(&mut self, e: &Entry, first: &Entry, keys: &Keys) {
        let line = first.key_at.line;
        let message = if e.key == first.key {
            format!(
                "`{}` is set twice in {} (first on line {line})",
                e.key, keys.place
            )
        } else {
            format!(
                "`{}` repeats `{}` (line {line}) in {}: they are the same key",
                e.key, first.key, keys.place
            )
        };
        self.sink.error_hint(e.key_at, message, "keep one of them");
    }

    fn unknown(&mut self, e: &Entry, keys: &Keys) {
        let mut candidates: Vec<&str> = keys.known.to_vec();
        candidates.extend(keys.aliases.iter().map(|(a, _)| *a));
        let message = format!("unknown key `{}` in {}", e.key, keys.place);
        if let Some(near) = nearest(&e.key, &candidates) {
            self.sink
                .error_hint(e.key_at, message, format!("did you mean `{near}`?"));
        } else if let Some(block) = home_block(&e.key) {
            self.sink.error_hint(
                e.key_at,
                message,
                format!("`{}` belongs inside a `{block}` block", e.key),
            );
        } else {
            self.sink.error_hint(
                e.key_at,
                message,
                format!("known keys here: {}", keys.known.join(", ")),
            );
        }
    }

    /// Reports a value problem at the right column of the value.
    pub fn value_error(&mut self, e: &Entry, err: ValueError) {
        let at = e.value_at.right(err.offset);
        let message = format!("`{}`: {}", e.key, err.message);
        match err.hint {
            Some(hint) => self.sink.error_hint(at, message, hint),
            None => self.sink.error(at, message),
        }
    }

    /// The entry's value, or `None` after reporting that it is missing or
    /// that a block was given where a value belongs.
    pub fn value<'e>(&mut self, e: &'e Entry, example: &str) -> Option<&'e str> {
        if e.block.is_some() {
            self.sink.error_hint(
                e.key_at,
                format!("`{}` takes a value, not a block", e.key),
                format!("write it on one line: `{example}`"),
            );
            return None;
        }
        if e.value.is_empty() {
            self.sink.error_hint(
                e.value_at,
                format!("`{}` needs a value", e.key),
                format!("for example `{example}`"),
            );
            return None;
        }
        Some(&e.value)
    }

    /// Parses the value with `parse`, reporting errors; `None` on any problem.
    pub fn parsed<T>(
        &mut self,
        e: &Entry,
        example: &str,
        parse: impl FnOnce(&str) -> Result<T, ValueError>,
    ) -> Option<T> {
        let text = self.value(e, example)?;
        match parse(text) {
            Ok(v) => Some(v),
            Err(err) => {
                self.value_error(e, err);
                None
            }
        }
    }

    /// The entries of a block key, or `None` after reporting a missing block.
    pub fn block<'e>(&mut self, e: &'e Entry, example: &str) -> Option<&'e [Entry]> {
        match &e.block {
            Some(b) => {
                if !e.value.is_empty() {
                    self.sink.error_hint(
                        e.value_at,
                        format!("`{}` takes a block, not a value", e.key),
                        format!("for example `{example}`"),
                    );
                }
                Some(&b.entries)
            }
            None => {
                self.sink.error_hint(
                    e.key_at,
                    format!("`{}` needs a block", e.key),
                    format!("for example `{example}`"),
                );
                None
            }
        }
    }

    /// One of `choices`, or an error naming them all.
    pub fn choice<T: Copy>(&mut self, e: &Entry, choices: &[(&str, T)]) -> Option<T> {
        let names: Vec<&str> = choices.iter().map(|(n, _)| *n).collect();
        let example = format!("{} {}", e.key, names[0]);
        let text = self.value(e, &example)?;
        if let Some((_, v)) = choices.iter().find(|(n, _)| *n == text) {
            return Some(*v);
        }
        let hint = match nearest(text, &names) {
            Some(near) => format!("did you mean `{near}`?"),
            None => format!("choose one of: {}", names.join(", ")),
        };
        self.sink
            .error_hint(e.value_at, format!("`{}` cannot be `{text}`", e.key), hint);
        None
    }
}

/// The block a misplaced key belongs in, for the hint.
fn home_block(key: &str) -> Option<&'static str> {
    Some(match key {
        "check" | "interval" | "timeout" | "retries" => "health",
        "min" | "max" | "cpu-above" | "cpu-below" => "scale",
        "hypervisor" | "kernel" | "rootfs" | "vcpus" | "memory" | "net" => "vm",
        "static" => "serve",
        "run" | "out" => "build",
        "path" => "volume",
        _ => return None,
    })
}
