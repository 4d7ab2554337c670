//! `skr8tr install conductor|node|ingress [-- FLAGS]`: writes the systemd
//! unit that runs the daemon with those flags (checked here, as the daemon
//! would parse them, so a typo fails now rather than at boot).
//!
//! - conductor and ingress: a dynamic user, their state in
//!   `/var/lib/skr8tr/ROLE` (`StateDirectory`), and the sandbox their role
//!   allows (read-only system, no new privileges, no devices, kernel and
//!   cgroup trees protected, native syscalls of `@system-service`); the
//!   ingress may bind ports below 1024 and nothing else.
//! - node: root and no sandbox, because replicas inherit the unit's, with
//!   `Delegate=yes` (its cgroup subtree is its own) and `KillMode=process`
//!   (restarting the agent keeps its replicas); plus
//!   `skr8tr-node-leave.service`, whose stop at host shutdown runs `skr8tr
//!   node leave`: replicas move away before the host goes down.
//!
//! `deploy/systemd/` holds the units this writes with the default flags.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Role {
    Conductor,
    Node,
    Ingress,
}

impl Role {
    fn name(self) -> &'static str {
        match self {
            Role::Conductor => "conductor",
            Role::Node => "node",
            Role::Ingress => "ingress",
        }
    }
}

#[derive(clap::Args)]
pub struct Args {
    role: Role,
    /// Where the units go
    #[arg(long, value_name = "DIR", default_value = "/etc/systemd/system")]
    unit_dir: PathBuf,
    /// The skr8tr binary the units run [default: this one]
    #[arg(long, value_name = "PATH")]
    bin: Option<PathBuf>,
    /// The daemon's flags, after `--` (for example `-- --listen
    /// 0.0.0.0:7771`); `--data` defaults to /var/lib/skr8tr/ROLE
    #[arg(last = true, value_name = "FLAGS")]
    flags: Vec<String>,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    use anyhow::Context;
    let bin = match &args.bin {
        Some(b) => b.clone(),
        None => std::env::current_exe().context("cannot tell where this binary is; pass --bin")?,
    };
    let bin = std::path::absolute(&bin)?;
    let units = units(args.role, &bin, &args.flags)?;
    std::fs::create_dir_all(&args.unit_dir)
        .with_context(|| format!("cannot create {}", args.unit_dir.display()))?;
    for (file, text) in &units {
        let path = args.unit_dir.join(file);
        std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
        println!("wrote {}", path.display());
    }
    let names: Vec<&str> = units
        .iter()
        .map(|(f, _)| f.trim_end_matches(".service"))
        .collect();
    println!(
        "start it now and at every boot: systemctl daemon-reload && systemctl enable --now {}",
        names.join(" ")
    );
    Ok(ExitCode::SUCCESS)
}

/// The role's unit files (name, text), for `bin` run with `flags`.
pub fn units(role: Role, bin: &Path, flags: &[String]) -> anyhow::Result<Vec<(String, String)>> {
    let state = format!("/var/lib/skr8tr/{}", role.name());
    let mut flags = flags.to_vec();
    let data = match flag_value(&flags, "--data") {
        Some(d) => d,
        None => {
            flags.extend(["--data".to_string(), state.clone()]);
            state.clone()
        }
    };
    // Parsed as the daemon will parse them.
    let argv = ["skr8tr", role.name()]
        .into_iter()
        .map(String::from)
        .chain(flags.iter().cloned());
    if let Err(e) = <crate::Cli as clap::Parser>::try_parse_from(argv) {
        anyhow::bail!(
            "these flags would not start `skr8tr {}`:\n{}",
            role.name(),
            e.render()
        );
    }
    let bin = bin
        .to_str()
        .ok_or_else(|| anyhow::anyhow!("the binary's path is not UTF-8: {}", bin.display()))?;
    let exec = std::iter::once(bin.to_string())
        .chain(std::iter::once(role.name().to_string()))
        .chain(flags)
        .map(|a| quote(&a))
        .collect::<anyhow::Result<Vec<_>>>()?
        .join(" ");
    let writable = if data.starts_with(&state) {
        String::new()
    } else {
        format!("ReadWritePaths={}\n", quote(&data)?)
    };
    let head = |what: &str| {
        format!(
            "# Written by `skr8tr install {}`.\n[Unit]\nDescription=Skr8tr {what}\n\
             Documentation=man:skr8tr-{}(1)\nAfter=network-online.target\n\
             Wants=network-online.target\n\n[Service]\nExecStart={exec}\n\
             Restart=always\nRestartSec=1s\n",
            role.name(),
            role.name()
        )
    };
    const INSTALL: &str = "\n[Install]\nWantedBy=multi-user.target\n";
    Ok(match role {
        Role::Conductor => vec![(
            "skr8tr-conductor.service".into(),
            format!(
                "{}{SANDBOX}StateDirectory=skr8tr/conductor\n{writable}\
                 CapabilityBoundingSet=\n{INSTALL}",
                head("conductor (control plane)")
            ),
        )],
        Role::Ingress => vec![(
            "skr8tr-ingress.service".into(),
            format!(
                "{}{SANDBOX}StateDirectory=skr8tr/ingress\n{writable}\
                 # Ports below 1024 (80, 443), and no other privilege.\n\
                 AmbientCapabilities=CAP_NET_BIND_SERVICE\n\
                 CapabilityBoundingSet=CAP_NET_BIND_SERVICE\n{INSTALL}",
                head("ingress (HTTP reverse proxy)")
            ),
        )],
        Role::Node => {
            let node = format!(
                "{}{NODE}{}{INSTALL}",
                head("node agent"),
                if data.starts_with(&state) {
                    "StateDirectory=skr8tr/node\n"
                } else {
                    ""
                }
            );
            let leave = format!(
                "# Written by `skr8tr install node`. Stopped only at host shutdown,\n\
                 # before the agent: its replicas move away first.\n\
                 [Unit]\nDescription=Skr8tr node: leave the cluster at shutdown\n\
                 After=skr8tr-node.service\nRequires=skr8tr-node.service\n\n\
                 [Service]\nType=oneshot\nRemainAfterExit=yes\nExecStart=/bin/true\n\
                 ExecStop={} node leave --data {}\nTimeoutStopSec=150\n{INSTALL}",
                quote(bin)?,
                quote(&data)?
            );
            vec![
                ("skr8tr-node.service".into(), node),
                ("skr8tr-node-leave.service".into(), leave),
            ]
        }
    })
}

/// The sandbox of the conductor and the ingress.
const SANDBOX: &str = "LimitNOFILE=65536
DynamicUser=yes
StateDirectoryMode=0700
UMask=0077
NoNewPrivileges=yes
ProtectSystem=strict
ProtectHome=yes
PrivateTmp=yes
PrivateDevices=yes
ProtectKernelTunables=yes
ProtectKernelModules=yes
ProtectKernelLogs=yes
ProtectControlGroups=yes
ProtectClock=yes
ProtectHostname=yes
RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX
RestrictNamespaces=yes
RestrictRealtime=yes
RestrictSUIDSGID=yes
LockPersonality=yes
MemoryDenyWriteExecute=yes
SystemCallArchitectures=native
SystemCallFilter=@system-service
";

/// The node's: replicas inherit the unit's limits and sandbox, so it sets
/// none of them, only what keeps replicas across agent restarts.
const NODE: &str = "# Stopping or restarting the agent leaves its replicas running; the
# next agent takes them on. skr8tr-node-leave.service moves them away at
# host shutdown.
KillMode=process
Delegate=yes
LimitNOFILE=1048576
TasksMax=infinity
";

/// The value after `name` (`--data DIR` or `--data=DIR`), if given.
fn flag_value(flags: &[String], name: &str) -> Option<String> {
    let mut it = flags.iter();
    while let Some(f) = it.next() {
        if f == name {
            return it.next().cloned();
        }
        if let Some(v) = f.strip_prefix(name).and_then(|r| r.strip_prefix('=')) {
            return Some(v.to_string());
        }
    }
    None
}

/// One word of a unit's command line: quoted when it must be, with `%`
/// and `$` escaped (systemd would expand them).
fn quote(word: &str) -> anyhow::Result<String> {
    if word.chars().any(|c| c.is_control()) {
        anyhow::bail!(
            "`{}` holds a control character; a unit cannot carry it",
            word.escape_debug()
        );
    }
    let plain = !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "/._:=,@+-".contains(c));
    let word = word.replace('%', "%%").replace('$', "$$");
    Ok(if plain {
        word
    } else {
        format!("\"{}\"", word.replace('\\', "\\\\").replace('"', "\\\""))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_are_quoted_and_specifiers_escaped() {
        assert_eq!(quote("--listen").unwrap(), "--listen");
        assert_eq!(quote("a b").unwrap(), "\"a b\"");
        assert_eq!(quote("50%").unwrap(), "\"50%%\"");
        assert_eq!(quote("$HOME").unwrap(), "\"$$HOME\"");
        assert_eq!(quote("say \"hi\"").unwrap(), "\"say \\\"hi\\\"\"");
        assert_eq!(quote("").unwrap(), "\"\"");
        assert!(quote("a\nExecStartPre=/bin/evil").is_err());
    }

    #[test]
    fn data_is_found_in_either_spelling() {
        let f = |v: &[&str]| {
            flag_value(
                &v.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
                "--data",
            )
        };
        assert_eq!(f(&["--data", "/d"]), Some("/d".into()));
        assert_eq!(f(&["--data=/e"]), Some("/e".into()));
        assert_eq!(f(&["--database", "/x"]), None);
    }

    #[test]
    fn bad_flags_are_refused_before_anything_is_written() {
        let e = units(Role::Node, Path::new("/usr/bin/skr8tr"), &["--nmae".into()]).unwrap_err();
        assert!(
            e.to_string().contains("would not start `skr8tr node`"),
            "{e}"
        );
    }
}
