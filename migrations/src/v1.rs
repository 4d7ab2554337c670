//! Schema 1's audit records, frozen: the types as schema 1 wrote them, so
//! a step can read a v1 log whatever the store's types become later. Only
//! decoding is needed (steps read old records and write new tables).
//! Identifiers are their raw arrays: `ClusterId` and `Fingerprint` encode
//! as exactly these.

use serde::Deserialize;

#[derive(Deserialize)]
pub enum StoredAudit {
    V1(AuditRecord),
}

#[derive(Deserialize)]
pub struct AuditRecord {
    pub seq: u64,
    pub time_ms: u64,
    pub event: AuditEvent,
    pub outcome: AuditOutcome,
    pub prev_hash: [u8; 32],
    pub hash: [u8; 32],
}

#[derive(Deserialize)]
pub enum AuditEvent {
    Genesis {
        cluster: [u8; 16],
        key_name: String,
        public_key: Vec<u8>,
    },
    Command {
        envelope: Vec<u8>,
        signer: Option<[u8; 8]>,
        summary: String,
    },
    System {
        summary: String,
    },
}

#[derive(Deserialize)]
pub enum AuditOutcome {
    Accepted,
    Rejected { code: String, message: String },
}

/// Decodes one stored v1 audit value (trailing bytes are an error).
pub fn decode(bytes: &[u8]) -> Result<AuditRecord, String> {
    match postcard::take_from_bytes::<StoredAudit>(bytes) {
        Ok((StoredAudit::V1(r), [])) => Ok(r),
        Ok((_, rest)) => Err(format!("{} bytes left over", rest.len())),
        Err(e) => Err(e.to_string()),
    }
}

/// The apps a schema-1 entry is about, as schema 1's `history --app` found
/// them: a command's own apps when its envelope can be read (an `up`
/// names them in its manifest), else the app its summary names
/// (`scale web 5`); a conductor entry's replica ids (`placed web/1/0`) and
/// `rollout web:` prefix.
pub fn apps_of(record: &AuditRecord) -> Vec<String> {
    let mut apps = match &record.event {
        AuditEvent::Genesis { .. } => Vec::new(),
        AuditEvent::Command {
            envelope, summary, ..
        } => skr8tr_proto::envelope::Envelope::from_bytes(envelope)
            .and_then(|e| e.payload_unverified())
            .map(|p| p.command.apps())
            .unwrap_or_else(|_| command_summary_app(summary).into_iter().collect()),
        AuditEvent::System { summary } => system_apps(summary),
    };
    apps.sort();
    apps.dedup();
    apps
}

fn command_summary_app(summary: &str) -> Option<String> {
    let mut words = summary.split_whitespace();
    match (words.next(), words.next()) {
        (Some("scale" | "down" | "logs" | "rollback"), Some(app)) if is_app_name(app) => {
            Some(app.to_string())
        }
        _ => None,
    }
}

fn system_apps(summary: &str) -> Vec<String> {
    let mut apps = Vec::new();
    if let Some(rest) = summary.strip_prefix("rollout ")
        && let Some((app, _)) = rest.split_once(':')
        && is_app_name(app)
    {
        apps.push(app.to_string());
    }
    for word in summary.split(|c: char| c.is_whitespace() || c == ';' || c == ',') {
        let mut parts = word.split('/');
        if let (Some(app), Some(g), Some(i), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
            && is_app_name(app)
            && g.parse::<u64>().is_ok()
            && i.parse::<u32>().is_ok()
        {
            apps.push(app.to_string());
        }
    }
    apps
}

fn is_app_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conductor_entries_name_their_apps() {
        assert_eq!(
            system_apps("schedule: placed web/1/0 on n1; moved api/2/1 from lost node n1 to n2"),
            ["web", "api"]
        );
        assert_eq!(
            system_apps("rollout web: step 1/3: surge web/2/0 on n1"),
            ["web", "web"]
        );
        assert!(system_apps("node node-0 admitted").is_empty());
        assert_eq!(command_summary_app("scale web 5"), Some("web".into()));
        assert_eq!(command_summary_app("up web.skr8tr"), None);
        assert_eq!(command_summary_app("unreadable"), None);
    }
}
