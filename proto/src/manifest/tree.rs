//! First pass: lines to a tree of `key value` entries. Blocks open either
//! with a trailing `{` (closed by a `}` line), inline as `key { a 1; b 2 }`,
//! or by indenting the lines under a key. The tree knows no key names except
//! that `env` and `secret` blocks hold literal `NAME value` lines.

use super::error::{Pos, Sink};
use std::str::CharIndices;

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

/// The key of the top-level blocks: an indented line that starts with it
/// was meant to start a block, not to continue the one above.
const TOP_KEY: &str = "app";

struct Frame {
    /// `None` for the file itself.
    owner: Option<Entry>,
    brace: bool,
    literal: bool,
    /// The indentation of this frame's lines, once the first one is seen.
    base: Option<usize>,
    /// The indentation of the line that opened the frame (a width, like
    /// `base`, not the owner's column: a tab counts two).
    owner_indent: usize,
    open_at: Pos,
    entries: Vec<Entry>,
}

impl Frame {
    fn open(
        owner: Entry,
        owner_indent: usize,
        brace: bool,
        base: Option<usize>,
        open_at: Pos,
    ) -> Frame {
        Frame {
            owner_indent,
            literal: LITERAL_BLOCKS.contains(&owner.key.as_str()),
            owner: Some(owner),
            brace,
            base,
            open_at,
            entries: Vec::new(),
        }
    }
}

/// What closing blocks for a less-indented line did.
#[derive(PartialEq, Eq)]
enum Dedent {
    /// The line did not end any block.
    None,
    /// It ended at least one block.
    Closed,
    /// It ends a top-level block but is still indented: it belongs to that
    /// block, misaligned, which stays open.
    Misaligned,
}

/// The blocks open at a line: the file itself, then each block inside the
/// one before. The file's frame is not in `open`, so there is always a top.
struct Stack {
    file: Frame,
    open: Vec<Frame>,
}

impl Stack {
    /// How many blocks are open (0: at the top level of the file).
    fn depth(&self) -> usize {
        self.open.len()
    }

    fn top(&self) -> &Frame {
        self.open.last().unwrap_or(&self.file)
    }

    fn top_mut(&mut self) -> &mut Frame {
        match self.open.last_mut() {
            Some(frame) => frame,
            None => &mut self.file,
        }
    }

    fn push(&mut self, frame: Frame) {
        self.open.push(frame);
    }

    /// Closes the innermost block and hands it to its owner entry.
    fn close(&mut self) {
        let Some(frame) = self.open.pop() else { return };
        if let Some(mut owner) = frame.owner {
            owner.block = Some(Block {
                entries: frame.entries,
            });
            self.top_mut().entries.push(owner);
        }
    }
}

pub(crate) fn parse(text: &str, sink: &mut Sink) -> Vec<Entry> {
    let mut stack = Stack {
        file: Frame {
            owner: None,
            brace: false,
            literal: false,
            base: Some(0),
            owner_indent: 0,
            open_at: Pos::new(1, 1),
            entries: Vec::new(),
        },
        open: Vec::new(),
    };

    for (idx, raw) in text.split('\n').enumerate() {
        let line_no = idx + 1;
        let raw = raw.strip_suffix('\r').unwrap_or(raw);
        let Some((indent, lead, content)) = measure(raw, line_no, sink) else {
            continue;
        };
        // `indent` decides structure; positions count characters.
        let at = Pos::new(line_no, lead + 1);

        if content == "}" {
            while stack.depth() > 0 && !stack.top().brace {
                stack.close();
            }
            if stack.depth() > 0 {
                stack.close();
            } else {
                sink.error_hint(
                    at,
                    "`}` without a matching `{`",
                    "remove it, or open the block with `{` at the end of its first line",
                );
            }
            continue;
        }

        let app_line = content.split([' ', '\t']).next() == Some(TOP_KEY);
        let dedent = dedent(&mut stack, indent, app_line, line_no, sink);
        let frame = stack.top_mut();
        match frame.base {
            None => frame.base = Some(indent),
            Some(b) if indent == b => {}
            Some(b) if dedent == Dedent::Misaligned => misaligned(at, indent, b, sink),
            Some(b) if indent > b => {
                let can_own = !frame.literal
                    && dedent == Dedent::None
                    && frame.entries.last().is_some_and(|e| e.block.is_none());
                let owner = if can_own { frame.entries.pop() } else { None };
                if let Some(owner) = owner {
                    stack.push(Frame::open(owner, b, false, Some(indent), at));
                } else if dedent == Dedent::Closed {
                    misaligned(at, indent, b, sink);
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

        let literal = stack.top().literal;
        let (entry, opens) = split_line(content, at, literal, sink);
        match opens {
            Some(brace_at) => stack.push(Frame::open(entry, indent, true, None, brace_at)),
            None => stack.top_mut().entries.push(entry),
        }
    }

    while stack.depth() > 0 {
        let frame = stack.top();
        if frame.brace {
            let key = frame.owner.as_ref().map(|o| o.key.as_str()).unwrap_or("");
            sink.error_hint(
                frame.open_at,
                format!("the `{{` of `{key}` is never closed"),
                "add a line with `}` where the block ends",
            );
        }
        stack.close();
    }
    stack.file.entries
}

/// Closes the blocks that a line indented by `indent` ends; `app_line`
/// when the line starts with `app`.
fn dedent(
    stack: &mut Stack,
    indent: usize,
    app_line: bool,
    line_no: usize,
    sink: &mut Sink,
) -> Dedent {
    let mut done = Dedent::None;
    while stack.depth() > 0 {
        let frame = stack.top();
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
        // Only `app` lines sit at the top level, unindented: another
        // indented line is still part of this app, just misaligned. Keeping
        // it here avoids a second, wrong "outside any app block" error.
        if !frame.brace && stack.depth() == 1 && indent > 0 && !app_line {
            return Dedent::Misaligned;
        }
        if forgotten_brace {
            let key = frame.owner.as_ref().map(|o| o.key.as_str()).unwrap_or("");
            sink.error_hint(
                frame.open_at,
                format!("the `{{` of `{key}` is never closed"),
                format!("add a line with `}}` before line {line_no}"),
            );
        }
        stack.close();
        done = Dedent::Closed;
    }
    done
}

/// A line between two indentation levels, kept in the block whose lines are
/// indented by `base`.
fn misaligned(at: Pos, indent: usize, base: usize, sink: &mut Sink) {
    sink.error_hint(
        at,
        format!("indentation of {indent} spaces lines up with no block above"),
        format!("indent this line by {base} spaces, like the lines it belongs with"),
    );
}

/// Returns the indentation width (a tab counts two), the number of leading
/// blank characters (for columns) and the content without comment and
/// trailing blanks; `None` for a blank or comment line.
fn measure<'a>(raw: &'a str, line_no: usize, sink: &mut Sink) -> Option<(usize, usize, &'a str)> {
    let mut indent = 0;
    let mut lead = 0;
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
        lead += 1;
    }
    let rest = raw.trim_start_matches([' ', '\t']);
    let content = strip_comment(rest).trim_end();
    if content.is_empty() {
        None
    } else {
        Some((indent, lead, content))
    }
}

/// Cuts a `#` comment that starts a line or follows a blank, outside quotes.
fn strip_comment(s: &str) -> &str {
    let comment = unquoted(s, &['#']).into_iter().find(|&at| {
        s[..at]
            .chars()
            .next_back()
            .is_none_or(|p| p == ' ' || p == '\t')
    });
    comment.map_or(s, |at| &s[..at])
}

/// Byte offsets of the `wanted` characters of `s` that lie outside quotes.
/// Quotes are read as `values::words` reads them: `'…'` literal, `"…"` with
/// backslash escapes, and outside quotes a backslash makes the next
/// character literal. A quote never closed on the line is an ordinary
/// character, so an apostrophe (`don't`) does not hide the rest of a line.
fn unquoted(s: &str, wanted: &[char]) -> Vec<usize> {
    let mut found = Vec::new();
    // Once a kind of quote is found unclosed, no later one closes either;
    // not searching again keeps this linear.
    let mut unclosed: Vec<char> = Vec::new();
    let mut it = s.char_indices();
    while let Some((at, c)) = it.next() {
        match c {
            '\\' => {
                it.next();
            }
            '"' | '\'' if !unclosed.contains(&c) => {
                let mut ahead = it.clone();
                if skip_quoted(&mut ahead, c) {
                    it = ahead;
                } else {
                    unclosed.push(c);
                }
            }
            _ if wanted.contains(&c) => found.push(at),
            _ => {}
        }
    }
    found
}

/// Moves `it` past the quote that closes a `quote` just read; false if the
/// line has none.
fn skip_quoted(it: &mut CharIndices<'_>, quote: char) -> bool {
    while let Some((_, c)) = it.next() {
        if c == quote {
            return true;
        }
        if c == '\\' && quote == '"' {
            it.next();
        }
    }
    false
}

/// `s` cut at each `sep` outside quotes.
fn split_unquoted(s: &str, sep: char) -> Vec<&str> {
    let mut start = 0;
    let mut pieces = Vec::new();
    for end in unquoted(s, &[sep]).into_iter().chain([s.len()]) {
        pieces.push(&s[start..end]);
        start = end + sep.len_utf8();
    }
    pieces
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
        for piece in split_unquoted(inner, ';') {
            let trimmed = piece.trim_start();
            let piece_at = open_at.right(offset + chars(&piece[..piece.len() - trimmed.len()]));
            offset += chars(piece) + 1;
            let trimmed = trimmed.trim_end();
            if trimmed.is_empty() {
                continue;
            }
            if !unquoted(trimmed, &['{', '}']).is_empty() {
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
        // A quote that closes protects its `#`; an apostrophe does not.
        assert_eq!(strip_comment("\"a #b\" # it's"), "\"a #b\" ");
        assert_eq!(strip_comment("a \\# b"), "a \\# b");
    }

    #[test]
    fn one_line_blocks_split_outside_quotes() {
        assert_eq!(
            split_unquoted(" A \"x; y\"; B 'p;q'; C", ';'),
            [" A \"x; y\"", " B 'p;q'", " C"]
        );
        assert_eq!(split_unquoted("A don't; B 1", ';'), ["A don't", " B 1"]);
        assert_eq!(split_unquoted("A \\; b", ';'), ["A \\; b"]);
        assert_eq!(split_unquoted("", ';'), [""]);
        assert!(unquoted("J \"{}\"", &['{', '}']).is_empty());
    }

    #[test]
    fn tabs_indent_two_but_count_one_column() {
        let (t, _) = tree("app a {\n\texec /x\n\thealth {\n\t  check tcp\n\t}\n\tport 1\n}\n");
        let app = &t[0].block.as_ref().unwrap().entries;
        assert_eq!(keys(app), ["exec", "health", "port"]);
        assert_eq!(app[2].key_at, Pos { line: 6, col: 2 });
        assert_eq!(app[2].value_at, Pos { line: 6, col: 7 });
    }

    #[test]
    fn a_misaligned_line_stays_in_its_app_unless_it_starts_one() {
        let (t, e) = tree("app a\n    exec /x\n  port 1\n");
        assert_eq!(keys(&t), ["app"]);
        assert_eq!(
            keys(&t[0].block.as_ref().unwrap().entries),
            ["exec", "port"]
        );
        assert!(e[0].contains("indent this line by 4 spaces"), "{e:?}");
        let (t, e) = tree("app a\n  exec /x\n app b\n  exec /y\n");
        assert_eq!(keys(&t), ["app", "app"]);
        assert!(
            e[0].starts_with("t:3:2:") && e[0].contains("by 0 spaces"),
            "{e:?}"
        );
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
