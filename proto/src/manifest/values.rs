//! Scalar values of the manifest: durations, sizes, percentages, numbers and
//! shell-like word lists. Each parser returns a message that says what was
//! expected; the caller adds the position.

use std::time::Duration;

/// A value problem: what is wrong and how to write it instead.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct ValueError {
    /// Character offset inside the value where the problem starts.
    pub offset: usize,
    pub message: String,
    pub hint: Option<String>,
}

impl ValueError {
    fn new(message: impl Into<String>, hint: impl Into<String>) -> ValueError {
        ValueError {
            offset: 0,
            message: message.into(),
            hint: Some(hint.into()),
        }
    }
}

/// `500ms`, `10s`, `2m`, `1h`. A bare number is refused: its unit would be a guess.
pub(crate) fn duration(text: &str) -> Result<Duration, ValueError> {
    let hint = "write a whole number with a unit: `500ms`, `10s`, `2m` or `1h`";
    let digits = text.chars().take_while(char::is_ascii_digit).count();
    let (num, unit) = text.split_at(digits);
    if num.is_empty() {
        return Err(ValueError::new(format!("`{text}` is not a duration"), hint));
    }
    let n: u64 = num
        .parse()
        .map_err(|_| ValueError::new(format!("`{text}` is too large"), hint))?;
    let millis_per = match unit {
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "" => {
            return Err(ValueError::new(
                format!("duration `{text}` has no unit"),
                format!("write `{text}s` for seconds or `{text}ms` for milliseconds"),
            ));
        }
        _ => {
            return Err(ValueError::new(
                format!("`{unit}` is not a duration unit"),
                hint,
            ));
        }
    };
    let ms = n
        .checked_mul(millis_per)
        .filter(|ms| *ms <= MAX_DURATION_MS)
        .ok_or_else(|| ValueError::new(format!("duration `{text}` is longer than a day"), hint))?;
    Ok(Duration::from_millis(ms))
}

const MAX_DURATION_MS: u64 = 24 * 3_600_000;

/// `256mb`, `4gb`, `512k`, `1GiB`: binary units (1mb = 1024 × 1024 bytes).
pub(crate) fn size(text: &str) -> Result<u64, ValueError> {
    let hint = "write a whole number with a unit: `256mb`, `4gb` (units are powers of 1024)";
    let digits = text.chars().take_while(char::is_ascii_digit).count();
    let (num, unit) = text.split_at(digits);
    if num.is_empty() {
        return Err(ValueError::new(format!("`{text}` is not a size"), hint));
    }
    let n: u64 = num
        .parse()
        .map_err(|_| ValueError::new(format!("`{text}` is too large"), hint))?;
    let shift = match unit.to_ascii_lowercase().as_str() {
        "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        "t" | "tb" | "tib" => 40,
        "" => {
            return Err(ValueError::new(
                format!("size `{text}` has no unit"),
                format!("write `{text}mb` or `{text}gb`"),
            ));
        }
        _ => {
            return Err(ValueError::new(
                format!("`{unit}` is not a size unit"),
                hint,
            ));
        }
    };
    if n == 0 {
        return Err(ValueError::new("a size of zero", hint));
    }
    n.checked_mul(1u64 << shift)
        .ok_or_else(|| ValueError::new(format!("size `{text}` is too large"), hint))
}

/// A whole number within `min..=max`.
pub(crate) fn number(text: &str, min: u64, max: u64) -> Result<u64, ValueError> {
    let hint = format!("write a whole number from {min} to {max}");
    if text.is_empty() || !text.chars().all(|c| c.is_ascii_digit()) {
        return Err(ValueError::new(
            format!("`{text}` is not a whole number"),
            hint,
        ));
    }
    match text.parse::<u64>() {
        Ok(n) if (min..=max).contains(&n) => Ok(n),
        _ => Err(ValueError::new(
            format!("{text} is out of range ({min} to {max})"),
            hint,
        )),
    }
}

/// A label key or value (`zone`, `eu-west-1a`): 1 to 63 of lowercase
/// letters, digits, `-`, `_` and `.`, as `skr8tr node --label` takes them.
pub(crate) fn label_key(text: &str) -> Result<String, ValueError> {
    let ok = !text.is_empty()
        && text.len() <= 63
        && text.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'-' | b'_' | b'.')
        });
    if ok {
        Ok(text.to_string())
    } else {
        Err(ValueError::new(
            format!("`{text}` is not a label"),
            "use 1 to 63 lowercase letters, digits, `-`, `_` or `.`, like `zone`",
        ))
    }
}

/// `route /api`: a path prefix the ingress sends to the app.
pub(crate) fn route_path(text: &str) -> Result<String, ValueError> {
    // No `%` and no `.`/`..` segments: the ingress refuses requests with
    // those, so such a route could never match.
    let ok = text.starts_with('/')
        && text.len() <= 256
        && !text.contains("//")
        && !text.split('/').any(|seg| seg == "." || seg == "..")
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/-._~!$&'()*+,;=:@".contains(&b));
    if !ok {
        return Err(ValueError::new(
            format!("`{text}` is not a route"),
            "write a path prefix of at most 256 characters without `%` or `.`/`..` \
             segments, like `/api` (`/` for everything)",
        ));
    }
    let trimmed = if text.len() > 1 {
        text.trim_end_matches('/')
    } else {
        text
    };
    Ok(trimmed.to_string())
}

/// `host api.example.com`: a host name the ingress sends to the app.
pub(crate) fn host_name(text: &str) -> Result<String, ValueError> {
    let lower = text.to_ascii_lowercase();
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
    };
    if lower.len() <= 253 && lower.split('.').all(label_ok) {
        Ok(lower)
    } else {
        Err(ValueError::new(
            format!("`{text}` is not a host name"),
            "write a DNS name, like `api.example.com` (no port, no scheme)",
        ))
    }
}

/// `KEY=VALUE`: a label a node must have (`role=db`).
pub(crate) fn label(text: &str) -> Result<(String, String), ValueError> {
    let Some((k, v)) = text.split_once('=') else {
        return Err(ValueError::new(
            format!("`{text}` is not a label like `role=db`"),
            "write KEY=VALUE, the way nodes are labelled: `skr8tr node --label role=db`",
        ));
    };
    let key = label_key(k)?;
    let value = label_key(v).map_err(|mut e| {
        e.offset = k.chars().count() + 1;
        e
    })?;
    Ok((key, value))
}

/// A user or group name (`www-data`, `_svc`): what `/etc/passwd` holds,
/// 1 to 32 of letters, digits, `_`, `-` and `.`, not starting with `-`.
pub(crate) fn account(text: &str) -> Result<String, ValueError> {
    let ok = !text.is_empty()
        && text.len() <= 32
        && !text.starts_with('-')
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
    if ok {
        Ok(text.to_string())
    } else {
        Err(ValueError::new(
            format!("`{text}` is not a user or group name"),
            "write a name from the node's /etc/passwd or /etc/group, like `www-data`",
        ))
    }
}

/// `70` or `70%`, from 1 to 100.
pub(crate) fn percent(text: &str) -> Result<u8, ValueError> {
    let bare = text.strip_suffix('%').unwrap_or(text);
    let n = number(bare, 1, 100).map_err(|mut e| {
        e.hint = Some("write a percentage from 1 to 100, like `70` or `70%`".into());
        e
    })?;
    // number() checked the range.
    Ok(u8::try_from(n).unwrap_or(100))
}

/// A CPU count: `1`, `2`, `0.5`, `0.25` — stored in thousandths of a core.
pub(crate) fn cpus(text: &str) -> Result<u32, ValueError> {
    let hint = "write a number of cores from 0.001 to 1024, like `1`, `2` or `0.5`";
    let (whole, frac) = text.split_once('.').unwrap_or((text, ""));
    let digits_ok = |s: &str| s.chars().all(|c| c.is_ascii_digit());
    if (whole.is_empty() && frac.is_empty())
        || !digits_ok(whole)
        || !digits_ok(frac)
        || (text.contains('.') && frac.is_empty())
    {
        return Err(ValueError::new(
            format!("`{text}` is not a number of cores"),
            hint,
        ));
    }
    if frac.len() > 3 {
        return Err(ValueError::new(
            format!("`{text}` is more precise than a thousandth of a core"),
            hint,
        ));
    }
    let whole: u64 = if whole.is_empty() {
        0
    } else {
        whole
            .parse()
            .map_err(|_| ValueError::new(format!("`{text}` is too large"), hint))?
    };
    let frac_millis: u64 = format!("{frac:0<3}").parse().unwrap_or(0);
    let millis = whole
        .checked_mul(1000)
        .and_then(|m| m.checked_add(frac_millis))
        .filter(|m| (1..=1_024_000).contains(m))
        .ok_or_else(|| ValueError::new(format!("{text} cores is out of range"), hint))?;
    Ok(u32::try_from(millis).unwrap_or(u32::MAX))
}

/// `true`/`false` (also `yes`/`no`, `on`/`off`).
pub(crate) fn boolean(text: &str) -> Result<bool, ValueError> {
    match text.to_ascii_lowercase().as_str() {
        "true" | "yes" | "on" => Ok(true),
        "false" | "no" | "off" => Ok(false),
        _ => Err(ValueError::new(
            format!("`{text}` is not true or false"),
            "write `true` or `false`",
        )),
    }
}

/// Splits like a POSIX shell would, without expanding anything: words are
/// separated by blanks; `'…'` is literal; `"…"` allows `\"`, `\\` and `\$`;
/// a backslash outside quotes escapes the next character. `$PORT` stays as
/// written (the node expands it).
pub(crate) fn words(text: &str) -> Result<Vec<String>, ValueError> {
    let mut out = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut chars = text.chars().enumerate().peekable();
    while let Some((i, c)) = chars.next() {
        match c {
            ' ' | '\t' => {
                if in_word {
                    out.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some((_, '\'')) => break,
                        Some((_, ch)) => word.push(ch),
                        None => return Err(unclosed('\'', i)),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some((_, '"')) => break,
                        Some((_, '\\')) => match chars.next() {
                            Some((_, ch @ ('"' | '\\' | '$'))) => word.push(ch),
                            Some((_, ch)) => {
                                word.push('\\');
                                word.push(ch);
                            }
                            None => return Err(unclosed('"', i)),
                        },
                        Some((_, ch)) => word.push(ch),
                        None => return Err(unclosed('"', i)),
                    }
                }
            }
            '\\' => {
                in_word = true;
                match chars.next() {
                    Some((_, ch)) => word.push(ch),
                    None => {
                        return Err(ValueError {
                            offset: i,
                            message: "a backslash at the end of the line escapes nothing".into(),
                            hint: Some(
                                "arguments cannot continue on the next line; write them on one line"
                                    .into(),
                            ),
                        });
                    }
                }
            }
            _ => {
                in_word = true;
                word.push(c);
            }
        }
    }
    if in_word {
        out.push(word);
    }
    Ok(out)
}

fn unclosed(quote: char, offset: usize) -> ValueError {
    ValueError {
        offset,
        message: format!("quote {quote} is never closed"),
        hint: Some(format!("add the closing {quote} on the same line")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(duration("0s"), Ok(Duration::ZERO));
        assert!(duration("10").unwrap_err().message.contains("no unit"));
        assert!(duration("1.5s").is_err());
        assert!(duration("s").is_err());
        assert!(duration("10d").unwrap_err().message.contains("`d`"));
        assert!(duration("99999999999999999999s").is_err());
        assert!(
            duration("25h")
                .unwrap_err()
                .message
                .contains("longer than a day")
        );
    }

    #[test]
    fn sizes() {
        assert_eq!(size("256mb"), Ok(256 << 20));
        assert_eq!(size("4gb"), Ok(4 << 30));
        assert_eq!(size("4GB"), Ok(4 << 30));
        assert_eq!(size("512k"), Ok(512 << 10));
        assert_eq!(size("1GiB"), Ok(1 << 30));
        assert_eq!(size("100b"), Ok(100));
        assert!(size("256").unwrap_err().hint.unwrap().contains("256mb"));
        assert!(size("0mb").is_err());
        assert!(size("12pb").is_err());
        assert!(size("99999999999tb").is_err());
    }

    #[test]
    fn numbers_and_percentages() {
        assert_eq!(number("3", 1, 10), Ok(3));
        assert!(
            number("0", 1, 10)
                .unwrap_err()
                .message
                .contains("out of range")
        );
        assert!(number("-1", 1, 10).is_err());
        assert!(number("3x", 1, 10).is_err());
        assert!(number("", 1, 10).is_err());
        assert!(number("99999999999999999999999", 1, 10).is_err());
        assert_eq!(percent("70"), Ok(70));
        assert_eq!(percent("70%"), Ok(70));
        assert!(percent("0").is_err());
        assert!(percent("101%").is_err());
        assert!(percent("%").is_err());
    }

    #[test]
    fn cpu_counts() {
        assert_eq!(cpus("1"), Ok(1000));
        assert_eq!(cpus("0.5"), Ok(500));
        assert_eq!(cpus(".25"), Ok(250));
        assert_eq!(cpus("2.125"), Ok(2125));
        assert!(cpus("0").is_err());
        assert!(cpus("0.0001").is_err());
        assert!(cpus("1.").is_err());
        assert!(cpus(".").is_err());
        assert!(cpus("two").is_err());
        assert!(cpus("5000").is_err());
    }

    #[test]
    fn booleans() {
        assert_eq!(boolean("true"), Ok(true));
        assert_eq!(boolean("No"), Ok(false));
        assert!(boolean("maybe").is_err());
    }

    #[test]
    fn words_follow_shell_quoting() {
        assert_eq!(
            words(r#"--msg "hello world" --port $PORT"#).unwrap(),
            ["--msg", "hello world", "--port", "$PORT"]
        );
        assert_eq!(
            words(r#"'it''s' "a \"q\" \$x \n" a\ b ${PORT}"#).unwrap(),
            ["its", r#"a "q" $x \n"#, "a b", "${PORT}"]
        );
        assert_eq!(words(r#""" x"#).unwrap(), ["", "x"]);
        assert_eq!(words("   ").unwrap(), Vec::<String>::new());
        let e = words(r#"--msg "hello"#).unwrap_err();
        assert_eq!(e.offset, 6);
        assert!(e.message.contains("never closed"));
        assert!(words("abc\\").is_err());
        assert!(words("'abc").is_err());
    }
}
