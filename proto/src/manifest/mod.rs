//! The `.skr8tr` manifest: text to checked [`AppSpec`]s.
//!
//! Layout:
//! - `tree`: lines to a tree of `key value` entries (braces or indentation).
//! - `app`, `blocks`: the tree to typed specs, key by key.
//! - `cross`: checks between keys of one app (program source, scale, env).
//! - `check`: unknown/repeated keys and value errors, with positions and hints.
//! - `values`: durations, sizes, percentages, numbers, shell-like words.
//! - `spec`: the `AppSpec` types and their documented defaults.
//! - `error`: `Diagnostic` (`file:line:col: error: …` plus a hint).
//! - [`secrets`]: secret values out of signed text, salted digests in.
//!
//! Parsing never panics and never stops at the first problem: it returns
//! every diagnostic of the file, in order.

mod app;
mod blocks;
mod check;
mod cross;
mod error;
pub mod secrets;
mod spec;
mod tree;
mod values;

pub use error::{Diagnostic, Diagnostics, Pos};
pub use spec::*;

/// The largest manifest accepted, from a file or from the network.
pub const MAX_MANIFEST_BYTES: usize = 1 << 20;

/// A duration as a manifest writes it: `500ms`, `10s`, `2m` or `1h`, a
/// whole number with a unit, at most a day. The one duration syntax of
/// Skr8tr: command-line flags and the test workload use it too. The error
/// says what is wrong and how to write it.
pub fn parse_duration(text: &str) -> Result<std::time::Duration, String> {
    values::duration(text).map_err(|e| match e.hint {
        Some(hint) => format!("{}; {hint}", e.message),
        None => e.message,
    })
}

/// Parses a manifest already known to be text. `file` names it in messages.
pub fn parse(file: &str, text: &str) -> Result<Vec<AppSpec>, Diagnostics> {
    Ok(parse_routed(file, text)?
        .into_iter()
        .map(|(s, _)| s)
        .collect())
}

/// [`parse`], with each app's `route` and `host`.
pub fn parse_routed(file: &str, text: &str) -> Result<Vec<(AppSpec, Routing)>, Diagnostics> {
    if text.len() > MAX_MANIFEST_BYTES {
        return Err(Diagnostics::one(
            file,
            Pos::new(1, 1),
            &format!(
                "the manifest is {} bytes; the limit is {MAX_MANIFEST_BYTES}",
                text.len()
            ),
            "split it into several files",
        ));
    }
    let mut sink = error::Sink::new(file);
    // Some editors start UTF-8 files with a byte-order mark; it is not
    // part of the first key, and editors do not count it as a column.
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let entries = tree::parse(text, &mut sink);
    let apps = app::apps(&entries, &mut sink);
    if apps.is_empty() && sink.count() == 0 {
        sink.error_hint(
            Pos::new(1, 1),
            "the manifest defines no app",
            "start with `app NAME` and indent its keys under it",
        );
    }
    sink.finish()?;
    Ok(apps)
}

/// Parses raw bytes: rejects oversized input and names the line of the first
/// byte that is not UTF-8.
pub fn parse_bytes(file: &str, bytes: &[u8]) -> Result<Vec<AppSpec>, Diagnostics> {
    match std::str::from_utf8(bytes) {
        Ok(text) => parse(file, text),
        Err(e) => {
            let good = &bytes[..e.valid_up_to()];
            let line = good.iter().filter(|b| **b == b'\n').count() + 1;
            let line_start = good.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
            let mut before = &good[line_start..];
            if line_start == 0 {
                // Not a column, as in `parse`.
                before = before.strip_prefix(b"\xef\xbb\xbf").unwrap_or(before);
            }
            let col = String::from_utf8_lossy(before).chars().count() + 1;
            Err(Diagnostics::one(
                file,
                Pos::new(line, col),
                "the manifest is not UTF-8 text",
                "save the file as UTF-8",
            ))
        }
    }
}
