//! Operator commands: what a signed envelope asks the conductor to do.
//!
//! Commands are postcard-encoded inside the signed payload and kept verbatim
//! in the audit log, so variants and fields are only ever appended.

use crate::keys::Fingerprint;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// Identifies one cluster; generated once when its store is created. A
/// command signed for one cluster is refused by every other.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ClusterId(pub [u8; 16]);

impl ClusterId {
    pub fn generate() -> Result<ClusterId, getrandom::Error> {
        let mut id = [0u8; 16];
        getrandom::fill(&mut id)?;
        Ok(ClusterId(id))
    }
}

impl fmt::Display for ClusterId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&crate::hex::encode(&self.0))
    }
}

impl fmt::Debug for ClusterId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ClusterId({self})")
    }
}

impl FromStr for ClusterId {
    type Err = String;

    fn from_str(s: &str) -> Result<ClusterId, String> {
        let bytes = crate::hex::decode(s)
            .filter(|b| b.len() == 16)
            .ok_or_else(|| format!("`{s}` is not a cluster id (32 hex digits)"))?;
        let mut out = [0u8; 16];
        out.copy_from_slice(&bytes);
        Ok(ClusterId(out))
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    /// Deploy (or update) every app of a manifest.
    Up {
        /// The file name, for history and messages.
        file: String,
        /// The manifest text.
        manifest: String,
    },
    /// Stop every replica of an app and forget it.
    Down { app: String },
    /// Set an app's desired replica count.
    Scale { app: String, replicas: u32 },
    /// Read an app's log lines (workload output is guarded like a mutation).
    Logs {
        app: String,
        replica: Option<String>,
        follow: bool,
    },
    /// Trust another operator key.
    AddOperatorKey { name: String, public_key: Vec<u8> },
    /// Stop trusting an operator key.
    RevokeOperatorKey { fingerprint: Fingerprint },
    /// A join ticket: the node called `name` may join, once, with the key
    /// it presents, until `expires_at_ms`. Made by `skr8tr ticket`, handed
    /// to `skr8tr node --ticket`.
    AdmitNode { name: String, expires_at_ms: u64 },
    /// Roll the apps of a manifest to a new generation, replica by replica.
    Rollout { file: String, manifest: String },
    /// Roll an app back to its previous generation the same way.
    Rollback { app: String },
    /// Forget node `name`'s key: its requests are refused from now on and
    /// its replicas are placed elsewhere; a new ticket admits a new key.
    RevokeNode { name: String },
    /// Set secret `name` of `app` to `value` (sealed to the conductor, see
    /// `sealed`) and roll the app to a new generation with it.
    SetSecret {
        app: String,
        name: String,
        value: String,
    },
    /// Cordon node `name`: nothing new is placed there, and what it runs
    /// moves away, surge-first (`skr8tr node drain`).
    DrainNode { name: String },
    /// Lift node `name`'s cordon (`skr8tr node uncordon`).
    UncordonNode { name: String },
    /// Read the output of the run before the latest of an app's replicas
    /// (`skr8tr logs --previous`), which nodes keep on disk.
    PreviousLogs {
        app: String,
        replica: Option<String>,
    },
    /// What `Up` of this manifest would change, and the index it was
    /// computed at (`skr8tr plan`); changes nothing.
    Plan { file: String, manifest: String },
    /// `Up`, only if the manifest's apps are still at `index` (`skr8tr up
    /// --check-index`): refused with `stale-plan` otherwise.
    UpChecked {
        file: String,
        manifest: String,
        index: u64,
    },
    /// A consistent copy of the conductor's store, streamed back as a
    /// snapshot file (`skr8tr snapshot save`); changes nothing.
    SnapshotSave,
}

impl Command {
    /// The apps a command is about, for the audit log's per-app index
    /// (`history --app`). A manifest that does not parse still names the
    /// apps of its `app NAME` lines.
    pub fn apps(&self) -> Vec<String> {
        match self {
            Command::Up { file, manifest }
            | Command::Rollout { file, manifest }
            | Command::Plan { file, manifest }
            | Command::UpChecked { file, manifest, .. } => {
                match crate::manifest::parse(file, manifest) {
                    Ok(specs) => specs.into_iter().map(|s| s.name).collect(),
                    Err(_) => app_lines(manifest),
                }
            }
            Command::Down { app }
            | Command::Scale { app, .. }
            | Command::Logs { app, .. }
            | Command::PreviousLogs { app, .. }
            | Command::Rollback { app }
            | Command::SetSecret { app, .. } => vec![app.clone()],
            Command::AddOperatorKey { .. }
            | Command::RevokeOperatorKey { .. }
            | Command::AdmitNode { .. }
            | Command::RevokeNode { .. }
            | Command::DrainNode { .. }
            | Command::UncordonNode { .. }
            | Command::SnapshotSave => Vec::new(),
        }
    }

    /// The command's kind, as a metric label: `up`, `scale`, `key-add`.
    pub fn kind(&self) -> &'static str {
        match self {
            Command::Up { .. } => "up",
            Command::Down { .. } => "down",
            Command::Scale { .. } => "scale",
            Command::Logs { .. } => "logs",
            Command::AddOperatorKey { .. } => "key-add",
            Command::RevokeOperatorKey { .. } => "key-revoke",
            Command::AdmitNode { .. } => "admit-node",
            Command::Rollout { .. } => "rollout",
            Command::Rollback { .. } => "rollback",
            Command::RevokeNode { .. } => "node-revoke",
            Command::SetSecret { .. } => "secret-set",
            Command::DrainNode { .. } => "node-drain",
            Command::UncordonNode { .. } => "node-uncordon",
            Command::PreviousLogs { .. } => "logs-previous",
            Command::Plan { .. } => "plan",
            Command::UpChecked { .. } => "up",
            Command::SnapshotSave => "snapshot-save",
        }
    }

    /// A short label for history listings: `up web.skr8tr`, `scale api 5`.
    pub fn summary(&self) -> String {
        match self {
            Command::Up { file, .. } => format!("up {file}"),
            Command::Down { app } => format!("down {app}"),
            Command::Scale { app, replicas } => format!("scale {app} {replicas}"),
            Command::Logs { app, replica, .. } => match replica {
                Some(r) => format!("logs {app} --replica {r}"),
                None => format!("logs {app}"),
            },
            Command::AddOperatorKey { name, public_key } => {
                format!("key add {name} {}", Fingerprint::of(public_key))
            }
            Command::RevokeOperatorKey { fingerprint } => format!("key revoke {fingerprint}"),
            Command::AdmitNode { name, .. } => format!("admit node {name}"),
            Command::Rollout { file, .. } => format!("rollout {file}"),
            Command::Rollback { app } => format!("rollback {app}"),
            Command::RevokeNode { name } => format!("node revoke {name}"),
            Command::SetSecret { app, name, .. } => format!("secret set {app} {name}"),
            Command::DrainNode { name } => format!("node drain {name}"),
            Command::UncordonNode { name } => format!("node uncordon {name}"),
            Command::Plan { file, .. } => format!("plan {file}"),
            Command::SnapshotSave => "snapshot save".into(),
            Command::UpChecked { file, index, .. } => format!("up {file} --check-index {index}"),
            Command::PreviousLogs { app, replica } => match replica {
                Some(r) => format!("logs {app} --previous --replica {r}"),
                None => format!("logs {app} --previous"),
            },
        }
    }
}

/// The names of a manifest's top-level `app NAME` lines, read leniently.
fn app_lines(manifest: &str) -> Vec<String> {
    let mut names: Vec<String> = manifest
        .lines()
        .filter_map(|l| l.strip_prefix("app "))
        .map(|rest| rest.trim().trim_end_matches('{').trim().to_string())
        .filter(|n| {
            !n.is_empty()
                && n.len() <= 63
                && n.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        })
        .collect();
    names.dedup();
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_command_names_the_apps_it_is_about() {
        let up = |m: &str| Command::Up {
            file: "f".into(),
            manifest: m.into(),
        };
        assert_eq!(
            up("app web\n  exec /x\napp api {\n  exec /y\n}\n").apps(),
            ["web", "api"]
        );
        // Invalid, but its apps are still known by their lines.
        assert_eq!(up("app web\n  replcas 3\napp Bad\n").apps(), ["web"]);
        assert_eq!(
            Command::Scale {
                app: "web".into(),
                replicas: 2
            }
            .apps(),
            ["web"]
        );
        assert!(
            Command::AdmitNode {
                name: "n1".into(),
                expires_at_ms: 0
            }
            .apps()
            .is_empty()
        );
    }
}
