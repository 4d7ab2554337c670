//! What reaches the terminal from the network is shown, never obeyed: a
//! string a conductor, a node or a stranger sent may hold newlines (a fake
//! extra row in `history`), escape sequences (colours, cursor moves, a
//! window title) or bidirectional overrides. These turn every such
//! character into a visible escape (`\n`, `\x1b`, `\u{202e}`), so one
//! field stays one field on one line.

use std::borrow::Cow;

/// `s` on one line: every control character, newlines and tabs included,
/// escaped.
pub fn line(s: &str) -> Cow<'_, str> {
    escape(s, false)
}

/// `s` as text: control characters escaped, but newlines kept (a reply's
/// multi-line message, a list of manifest errors).
pub fn text(s: &str) -> Cow<'_, str> {
    escape(s, true)
}

fn escape(s: &str, keep_newlines: bool) -> Cow<'_, str> {
    let unsafe_char = |c: char| (c != '\n' || !keep_newlines) && needs_escape(c);
    if !s.chars().any(unsafe_char) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if !unsafe_char(c) {
            out.push(c);
            continue;
        }
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x80 => out.push_str(&format!("\\x{:02x}", c as u32)),
            c => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
        }
    }
    Cow::Owned(out)
}

/// Control characters (C0, DEL, C1) and the Unicode controls that reorder
/// or hide text.
fn needs_escape(c: char) -> bool {
    c.is_control()
        || matches!(c,
            '\u{200b}'..='\u{200f}' // zero-width, LRM/RLM
            | '\u{2028}' | '\u{2029}' // line and paragraph separators
            | '\u{202a}'..='\u{202e}' // bidi embeddings and overrides
            | '\u{2066}'..='\u{2069}' // bidi isolates
            | '\u{feff}')
}

/// A word as a POSIX shell reads it back.
pub fn shell_word(word: &str) -> String {
    let plain = !word.is_empty()
        && word
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./:=@%+,".contains(&b));
    if plain {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', "'\\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn controls_are_shown_not_obeyed() {
        assert_eq!(line("plain text, ünïcode"), "plain text, ünïcode");
        assert!(matches!(line("plain"), Cow::Borrowed(_)));
        assert_eq!(
            line("up x\n42  2026-01-01  root  accepted  down prod"),
            "up x\\n42  2026-01-01  root  accepted  down prod"
        );
        assert_eq!(
            line("\x1b[2J\x1b]0;owned\x07"),
            "\\x1b[2J\\x1b]0;owned\\x07"
        );
        assert_eq!(line("a\tb\rc\x7f"), "a\\tb\\rc\\x7f");
        assert_eq!(line("evil\u{202e}txt.exe"), "evil\\u{202e}txt.exe");
        assert_eq!(line("\u{9b}31m"), "\\u{9b}31m", "a C1 control");
        assert_eq!(
            text("line one\nline two\x1b[0m"),
            "line one\nline two\\x1b[0m"
        );
    }
}
