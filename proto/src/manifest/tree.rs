//! First pass: lines to a tree of `key value` entries. Blocks open either
//! with a trailing `{` (closed by a `}` line), inline as `key { a 1; b 2 }`,
//! or by indenting the lines under a key. The tree knows no key names except
//! that `env` and `secret` blocks hold literal `NAME value` lines.

use super::error::{Pos, Sink};

#[derive(Debug, Clone)]
pub(crate) struct Entry {
    pub key: String,
    pub key_at: Pos,
    /// The rest of the line after the key, comment stripped and trimmed.
    pub value: String,
    pub value_at: Pos,
    pub block: Option<Block>,
}

#[derive(Debug, Clone)]
pub(crate) struct Block {
    pub entries: Vec<Entry>,
}

/// Blocks whose lines are `NAME value` pairs taken literally: no braces or
/// blocks are recognised inside them.
const LITERAL_BLOCKS: [&str; 2] = ["env", "secret"];

struct Frame {
    /// `None` for the file itself.
    owner: Option<Entry>,
    brace: bool,
    literal: bool,
    /// The indentation of this frame's lines, once the first one is seen.
    base: Option<usize>,
    /// The indentation of the line that opened the frame.
    owner_indent: usize,
    open_at: Pos,
    entries: Vec<Entry>,
}

impl Frame {
    fn open(owner: Entry, brace: bool, base: Option<usize>, open_at: Pos) -> Frame {
        Frame {
            owner_indent: owner.key_at.col as usize - 1,
            literal: LITERAL_BLOCKS.contains(&owner.key.as_str()),
            owner: Some(owner),
            brace,
            base,
            open_at,
            entries: Vec::new(),
        }
    }
}

pub(crate) fn parse(text: &str, sink: &mut Sink) -> Vec<Entry> {
    let mut stack = vec![Frame {
        owner: None,
        brace: false,
        literal: false,
        base: Some(0),
        owner_indent: 0,
        open_at: Pos::new(1, 1),
        entries: Vec::new(),
    }];

    for (idx, raw) in text.split('\n').enumerate() {
        let line_no = idx + 1;
        let raw = raw.strip_suffix('\r').unwrap_or(raw);
        let Some((indent, content)) = measure(raw, line_no, sink) else {
            continue;
        };
        let at = Pos::new(line_no, indent + 1);

        if content == "}" {
            while stack.len() > 1 && !top(&stack).brace {
                close(&mut stack);
            }
            if stack.len() > 1 {
                close(&mut stack);
            } else {
                sink.error_hint(
                    at,
                    "`}` without a matching `{`",
                    "remove it, or open the block with `{` at the end of its first line",
                );
            }
            continue;
        }

        let mut dedented = false;
        while stack.len() > 1 {
            let frame = top(&stack);
            let below_base = frame.base.is_some_and(|b| indent < b);
            // A `{` block whose lines were indented, followed by a line back at
            // the opener's level: the `}` was forgotten. Say so once and close
            // it, rather than reading the rest of the file as its contents.
            let forgotten_brace = frame.brace
                && frame.base.is_some_and(|b| b > frame.owner_indent)
                && indent <= frame.owner_indent;
            if frame.brace && !forgotten_brace || !frame.brace && !below_base {
                break;
            }
            if forgotten_brace {
                let key = frame.owner.as_ref().map(|o| o.key.as_str()).unwrap_or("");
                sink.error_hint(
                    frame.open_at,
                    format!("the `{{` of `{key}` is never closed"),
                    format!("add a line with `}}` before line {line_no}"),
                );
            }
            close(&mut stack);
            dedented = true;
        }
        let frame = top_mut(&mut stack);
        match frame.base {
            None => frame.base = Some(indent),
            Some(b) if indent == b => {}
            Some(b) if indent > b => {
                let can_own = !frame.literal
                    && !dedented
                    && frame.entries.last().is_some_and(|e| e.block.is_none());
                if can_own {
                    let owner = frame.entries.pop().expect("checked by can_own");
                    stack.push(Frame::open(owner, false, Some(indent), at));
                } else if dedented {
                    sink.error_hint(
                        at,
                        format!("indentation of {indent} spaces lines up with no block above"),
                        format!("indent this line by {b} spaces, like the lines it belongs with"),
                    );
                } else {
                    sink.error_hint(
                        at,
                        "unexpected indentation",
                        "only the lines of a block are indented under it; align this line with the one above",
                    );
                }
            }
            Some(b) => sink.error_hint(
                at,
                format!("line is indented less ({indent} spaces) than the lines above it in this block ({b})"),
                "indent every line of a block the same",
            ),
        }

        let literal = top(&stack).literal;
        let (entry, opens) = split_line(content, at, literal, sink);
        match opens {
            Some(brace_at) => stack.push(Frame::open(entry, true, None, brace_at)),
            None => top_mut(&mut stack).entries.push(entry),
        }
    }

    while stack.len() > 1 {
        let frame = top(&stack);
        if frame.brace {
            let key = frame.owner.as_ref().map(|o| o.key.as_str()).unwrap_or("");
            sink.error_hint(
                frame.open_at,
                format!("the `{{` of `{key}` is never closed"),
                "add a line with `}` where the block ends",
            );
        }
        close(&mut stack);
    }
    stack.pop().map(|f| f.entries).unwrap_or_default()
}

fn top(stack: &[Frame]) -> &Frame {
    stack
        .last()
        .expect("the file frame is never popped inside the loop")
}

fn top_mut(stack: &mut [Frame]) -> &mut Frame {
    stack
        .last_mut()
        .expect("the file frame is never popped inside the loop")
}

/// Pops the innermost block and hands it to its owner entry.
fn close(stack: &mut Vec<Frame>) {
    let Some(frame) = stack.pop() else { return };
    if let Some(mut owner) = frame.owner {
        owner.block = Some(Block {
            entries: frame.entries,
        });
        top_mut(stack).entries.push(owner);
    }
}

/// Returns the indentation and the content without comment and trailing
/// blanks, or `None` for a blank or comment line.
fn measure<'a>(raw: &'a str, line_no: usize, sink: &mut Sink) -> Option<(usize, &'a str)> {
    let mut indent = 0;
    for (col, c) in raw.chars().enumerate() {
        match c {
            ' ' => indent += 1,
            '\t' => {
                sink.error_hint(
                    Pos::new(line_no, col + 1),
                    "tab in indentation",
                    "indent with spaces, two per level",
                );
                indent += 2;
            }
            _ => break,
        }
    }
    let rest = raw.trim_start_matches([' ', '\t']);
    let content = strip_comment(rest).trim_end();
    if content.is_empty() {
        None
    } else {
        Some((indent, content))
    }
}

/// Cuts a `#` comment that starts a line or follows a blank, outside quotes.
/// If quotes are unbalanced the first such `#` wins, quotes or not.
fn strip_comment(s: &str) -> &str {
    let mut quote = None;
    let mut escaped = false;
    let mut prev_blank = true;
    let mut naive = None;
    for (i, c) in s.char_indices() {
        if c == '#' && prev_blank {
            naive.get_or_insert(i);
            if quote.is_none() {
                return &s[..i];
            }
        }
        match (quote, c) {
            _ if escaped => escaped = false,
            (Some('"') | None, '\\') => escaped = true,
            (None, '"' | '\'') => quote = Some(c),
            (Some(q), _) if c == q => quote = None,
            _ => {}
        }
        prev_blank = c == ' ' || c == '\t';
    }
    match (quote, naive) {
        (Some(_), Some(i)) => &s[..i],
        _ => s,
    }
}

/// Splits a line into its key and value; reports whether it opens a `{` block.
/// Inline blocks (`scale { min 1; max 4 }`) are expanded here.
fn split_line(content: &str, at: Pos, literal: bool, sink: &mut Sink) -> (Entry, Option<Pos>) {
    let key_end = content.find([' ', '\t']).unwrap_or(content.len());
    let key = &content[..key_end];
    let after_key = &content[key_end..];
    let value = after_key.trim_start();
    let value_at = at.right(chars(&content[..content.len() - value.len()]));
    let mut entry = Entry {
        key: key.to_string(),
        key_at: at,
        value: value.to_string(),
        value_at,
        block: None,
    };
    if literal {
        return (entry, None);
    }
    if key == "{" {
        sink.error_hint(
            at,
            "a line cannot start with `{`",
            "put `{` at the end of the line that opens the block, like `health {`",
        );
        entry.key.clear();
        return (entry, None);
    }
    if let Some(before) = value.strip_suffix('{')
        && (before.is_empty() || before.ends_with([' ', '\t']))
    {
        let brace_at = value_at.right(chars(before));
        entry.value = before.trim_end().to_string();
        if entry.value.is_empty() {
            entry.value_at = brace_at;
        }
        return (entry, Some(brace_at));
    }
    if let Some(inner) = value.strip_prefix('{').and_then(|v| v.strip_suffix('}')) {
        let open_at = value_at;
        let mut entries = Vec::new();
        let mut offset = 1; // past the `{`
        for piece in inner.split(';') {
            let trimmed = piece.trim_start();
            let piece_at = open_at.right(offset + chars(&piece[..piece.len() - trimmed.len()]));
            offset += chars(piece) + 1;
            let trimmed = trimmed.trim_end();
            if trimmed.is_empty() {
                continue;
            }
            if trimmed.contains(['{', '}']) {
                sink.error_hint(
                    piece_at,
                    "blocks inside a one-line block",
                    "write the outer block over several lines",
                );
                continue;
            }
            let (child, _) = split_line(trimmed, piece_at, true, sink);
            entries.push(child);
        }
        entry.value.clear();
        entry.value_at = open_at;
        entry.block = Some(Block { entries });
    }
    (entry, None)
}

fn chars(s: &str) -> usize {
    s.chars().count()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree(text: &str) -> (Vec<Entry>, Vec<String>) {
        let mut sink = Sink::new("t");
        let entries = parse(text, &mut sink);
        let errors = match sink.finish() {
            Ok(()) => vec![],
            Err(d) => d.iter().map(|d| d.to_string()).collect(),
        };
        (entries, errors)
    }

    fn keys(entries: &[Entry]) -> Vec<&str> {
        entries.iter().map(|e| e.key.as_str()).collect()
    }

    #[test]
    fn indentation_and_braces_build_the_same_tree() {
        let indented = "app a\n  exec /x\n  health\n    check tcp\n    retries 2\n  port 80\n";
        let braced = "app a\n  exec /x\n  health {\n    check tcp\n    retries 2\n  }\n  port 80\n";
        let inline = "app a {\n  exec /x\n  health { check tcp; retries 2 }\n  port 80\n}\n";
        for text in [indented, braced, inline] {
            let (t, errors) = tree(text);
            assert!(errors.is_empty(), "{text}: {errors:?}");
            assert_eq!(keys(&t), ["app"], "{text}");
            let app = t[0].block.as_ref().unwrap();
            assert_eq!(keys(&app.entries), ["exec", "health", "port"], "{text}");
            let health = app.entries[1].block.as_ref().unwrap();
            assert_eq!(keys(&health.entries), ["check", "retries"], "{text}");
            assert_eq!(health.entries[1].value, "2");
        }
    }

    #[test]
    fn positions_are_one_based_columns() {
        let (t, _) = tree("# c\napp a\n  port   8080  # http\n  scale { min 1; max 4 }\n");
        let app = &t[0].block.as_ref().unwrap().entries;
        assert_eq!(app[0].key_at, Pos { line: 3, col: 3 });
        assert_eq!(app[0].value, "8080");
        assert_eq!(app[0].value_at, Pos { line: 3, col: 10 });
        let scale = app[1].block.as_ref().unwrap();
        assert_eq!(scale.entries[1].key, "max");
        assert_eq!(scale.entries[1].key_at, Pos { line: 4, col: 18 });
        assert_eq!(scale.entries[1].value_at, Pos { line: 4, col: 22 });
    }

    #[test]
    fn comments_respect_quotes() {
        assert_eq!(
            strip_comment("args --msg \"a # b\" # c"),
            "args --msg \"a # b\" "
        );
        assert_eq!(strip_comment("KEY don't # note"), "KEY don't ");
        assert_eq!(strip_comment("KEY a#b"), "KEY a#b");
        assert_eq!(strip_comment("# all"), "");
    }

    #[test]
    fn env_blocks_are_literal() {
        let (t, errors) = tree("app a\n  env {\n    JSON {\"a\":1}\n    OPEN {\n  }\n");
        assert!(errors.is_empty(), "{errors:?}");
        let env = &t[0].block.as_ref().unwrap().entries[0];
        let vars = &env.block.as_ref().unwrap().entries;
        assert_eq!(vars[0].value, "{\"a\":1}");
        assert_eq!(vars[1].value, "{");
    }

    #[test]
    fn structural_errors_are_reported() {
        let (_, e) = tree("app a\n  health {\n    check tcp\n");
        assert!(
            e[0].starts_with("t:2:10: error: the `{` of `health` is never closed"),
            "{e:?}"
        );
        let (_, e) = tree("}\n");
        assert!(e[0].contains("without a matching"), "{e:?}");
        let (_, e) = tree("  app a\n");
        assert!(e[0].contains("unexpected indentation"), "{e:?}");
        let (_, e) = tree("app a\n    exec /x\n  port 1\n");
        assert!(
            e[0].starts_with("t:3:3:") && e[0].contains("lines up with no block"),
            "{e:?}"
        );
        let (_, e) = tree("app a\n\texec /x\n");
        assert!(e[0].contains("tab in indentation"), "{e:?}");
    }
}
