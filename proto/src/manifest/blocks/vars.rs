//! `env` and `secret` blocks: one `NAME value` line per variable.

use super::{PORT_HINT, PORT_TAKEN, is_env_name};
use crate::manifest::check::Checker;
use crate::manifest::error::Pos;
use crate::manifest::tree::Entry;
use crate::manifest::values;
use std::collections::HashMap;

/// One `NAME value` line of an `env` or `secret` block.
pub(crate) struct Var {
    pub name: String,
    pub value: String,
    /// Where the name is written, to report a variable also set elsewhere.
    pub at: Pos,
}

/// `env` and `secret` blocks: `NAME value` lines. A value may be quoted to
/// keep blanks or be empty (`NAME ""`); otherwise it is taken as written.
pub(crate) fn vars(c: &mut Checker<'_>, e: &Entry) -> Option<Vec<Var>> {
    let example = format!("{} {{ RUST_LOG info }}", e.key);
    let entries = c.block(e, &example)?;
    let mut out = Vec::new();
    let mut seen: HashMap<&str, u32> = HashMap::new();
    let mut ok = true;
    for v in entries {
        if !is_env_name(&v.key) {
            c.sink.error_hint(
                v.key_at,
                format!("`{}` is not a valid environment variable name", v.key),
                "use letters, digits and `_`, not starting with a digit, like `DATABASE_URL`",
            );
            ok = false;
            continue;
        }
        // `env { PORT N }` is checked against the app's `port` later.
        if v.key == "PORT" && e.key != "env" {
            c.sink.error_hint(v.key_at, PORT_TAKEN, PORT_HINT);
            ok = false;
            continue;
        }
        if let Some(first) = seen.insert(&v.key, v.key_at.line) {
            c.sink.error_hint(
                v.key_at,
                format!(
                    "`{}` is set twice in this `{}` block (first on line {first})",
                    v.key, e.key
                ),
                "keep one of them",
            );
            ok = false;
            continue;
        }
        // Not `c.value`: its hint has room for one example, and the empty
        // value deserves its own. Literal blocks hold no sub-blocks.
        if v.value.is_empty() {
            c.sink.error_hint(
                v.value_at,
                format!("`{}` needs a value", v.key),
                format!(
                    "for example `{0} value`, or `{0} \"\"` for an empty value",
                    v.key
                ),
            );
            ok = false;
            continue;
        }
        let raw = v.value.as_str();
        let value = if raw.starts_with(['"', '\'']) {
            match values::words(raw) {
                Ok(w) if w.len() == 1 => w.into_iter().next().unwrap_or_default(),
                Ok(_) => {
                    c.sink.error_hint(
                        v.value_at,
                        format!("the value of `{}` has text after its closing quote", v.key),
                        "quote the whole value",
                    );
                    ok = false;
                    continue;
                }
                Err(err) => {
                    c.value_error(v, err);
                    ok = false;
                    continue;
                }
            }
        } else {
            raw.to_string()
        };
        out.push(Var {
            name: v.key.clone(),
            value,
            at: v.key_at,
        });
    }
    ok.then_some(out)
}
