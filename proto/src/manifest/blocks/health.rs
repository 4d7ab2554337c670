//! The `health` block: `check GET|HEAD /path [status]` or `check tcp`,
//! with `interval`, `timeout` and `retries`.

use super::{keys, missing};
use crate::manifest::check::Checker;
use crate::manifest::spec::*;
use crate::manifest::tree::Entry;
use crate::manifest::values::{self, ValueError};

pub(crate) fn health(c: &mut Checker<'_>, e: &Entry) -> Option<Health> {
    let entries = c.block(e, "health { check GET /healthz 200 }")?;
    let mut check = None;
    let mut interval = (DEFAULT_HEALTH_INTERVAL, None);
    let mut timeout = (DEFAULT_HEALTH_TIMEOUT, None);
    let mut retries = DEFAULT_HEALTH_RETRIES;
    let mut ok = true;
    let known = keys("health", &["check", "interval", "timeout", "retries"], &[]);
    for (key, entry) in c.known(entries, &known) {
        let done = match key {
            "check" => c
                .parsed(entry, "check GET /healthz 200", probe)
                .map(|p| check = Some(p)),
            "interval" => c
                .parsed(entry, "interval 10s", positive_duration)
                .map(|d| interval = (d, Some(entry))),
            "timeout" => c
                .parsed(entry, "timeout 2s", positive_duration)
                .map(|d| timeout = (d, Some(entry))),
            "retries" => c
                .parsed(entry, "retries 3", |t| values::number(t, 1, 100))
                .map(|n| retries = u32::try_from(n).unwrap_or(100)),
            _ => unreachable!("the health keys are all handled"),
        };
        ok &= done.is_some();
    }
    if let (Some(t_entry), true) = (timeout.1, timeout.0 > interval.0) {
        c.sink.error_hint(
            t_entry.value_at,
            format!(
                "health `timeout` ({}) is longer than its `interval` ({})",
                t_entry.value,
                interval.1.map_or("the default 10s", |i| i.value.as_str())
            ),
            "a probe must end before the next one starts: shorten `timeout` or lengthen `interval`",
        );
        ok = false;
    }
    let Some(check) = check else {
        if ok {
            missing(c, e, "check", "check GET /healthz 200` or `check tcp");
        }
        return None;
    };
    ok.then_some(Health {
        check,
        interval: interval.0,
        timeout: timeout.0,
        retries,
    })
}

fn positive_duration(text: &str) -> Result<std::time::Duration, ValueError> {
    let d = values::duration(text)?;
    if d.is_zero() {
        return Err(ValueError {
            offset: 0,
            message: "must be longer than zero".into(),
            hint: Some("for example `500ms` or `10s`".into()),
        });
    }
    Ok(d)
}

/// `GET /path [status]`, `HEAD /path [status]` or `tcp`.
fn probe(text: &str) -> Result<Check, ValueError> {
    let hint = "write `check GET /healthz 200` (status defaults to 200) or `check tcp`";
    let err = |offset: usize, message: String| ValueError {
        offset,
        message,
        hint: Some(hint.into()),
    };
    let words = spans(text);
    let Some(&(_, first)) = words.first() else {
        return Err(err(0, "the check is empty".into()));
    };
    let method = match first.to_ascii_uppercase().as_str() {
        "TCP" if words.len() == 1 => return Ok(Check::Tcp),
        "TCP" => return Err(err(words[1].0, "`check tcp` takes nothing after it".into())),
        "GET" => HttpMethod::Get,
        "HEAD" => HttpMethod::Head,
        other => {
            return Err(err(
                0,
                format!("`{other}` is not a check (GET, HEAD or tcp)"),
            ));
        }
    };
    let path = match words.get(1) {
        Some((_, p)) if p.starts_with('/') => p.to_string(),
        Some((at, p)) => {
            return Err(err(
                *at,
                format!("`{p}` is not a path: it must start with `/`"),
            ));
        }
        None => {
            let end = text.chars().count();
            return Err(err(end, "the HTTP check needs a path".into()));
        }
    };
    let status = match words.get(2) {
        None => 200,
        Some((at, s)) => {
            let n = values::number(s, 100, 599)
                .map_err(|e| err(*at, format!("status {}", e.message)))?;
            u16::try_from(n).unwrap_or(200)
        }
    };
    if let Some((at, _)) = words.get(3) {
        return Err(err(*at, "the check has extra words at the end".into()));
    }
    Ok(Check::Http {
        method,
        path,
        status,
    })
}

/// The blank-separated words of `text`, each with its character offset
/// (`ValueError::offset` counts characters, not bytes).
fn spans(text: &str) -> Vec<(usize, &str)> {
    let mut out = Vec::new();
    // Byte and character offsets of the word being read.
    let mut start = None;
    for (chars, (i, c)) in text.char_indices().enumerate() {
        match (c.is_whitespace(), start) {
            (true, Some((from, at))) => {
                out.push((at, &text[from..i]));
                start = None;
            }
            (false, None) => start = Some((i, chars)),
            _ => {}
        }
    }
    if let Some((from, at)) = start {
        out.push((at, &text[from..]));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probes() {
        assert_eq!(probe("tcp"), Ok(Check::Tcp));
        assert_eq!(
            probe("GET /healthz 200"),
            Ok(Check::Http {
                method: HttpMethod::Get,
                path: "/healthz".into(),
                status: 200
            })
        );
        assert_eq!(
            probe("head /"),
            Ok(Check::Http {
                method: HttpMethod::Head,
                path: "/".into(),
                status: 200
            })
        );
        let e = probe("GET healthz").unwrap_err();
        assert_eq!(e.offset, 4);
        assert!(e.message.contains("must start with `/`"));
        let e = probe("GET /h 99").unwrap_err();
        assert_eq!(e.offset, 7);
        assert!(probe("POST /x").is_err());
        assert!(probe("tcp 80").is_err());
        assert_eq!(probe("GET /a 200 x").unwrap_err().offset, 11);
        // Offsets are per word and in characters.
        assert_eq!(probe("GET E").unwrap_err().offset, 4);
        let e = probe("GET /ü 99").unwrap_err();
        assert_eq!(
            (e.offset, e.message.as_str()),
            (7, "status 99 is out of range (100 to 599)")
        );
        let e = probe("GET /x abc").unwrap_err();
        assert_eq!(e.message, "status `abc` is not a whole number");
        assert_eq!(probe("GET").unwrap_err().offset, 3);
    }
}
