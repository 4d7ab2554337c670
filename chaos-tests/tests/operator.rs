//! Issue 15's operator-facing behaviour with real processes on 127.0.0.1,
//! driven through the `skr8tr` CLI as an operator would.

use skr8tr_chaos_tests::harness::{Cluster, skr8tr_bin, wait_for};
use std::process::Command;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(60);

#[test]
fn a_crash_looping_app_says_why_in_status_and_ps_shows_the_last_exit() {
    let mut c = Cluster::start("crashloop");
    c.start_node("n1");
    let m = c.manifest(
        "broken.skr8tr",
        "app missing\n  exec /nonexistent/bin\n\napp flaky\n  exec /bin/sh\n  args -c 'exit 3'\n",
    );
    c.ok(&["up", m.to_str().unwrap()]);
    let note = |app: &str, want: &str| {
        let want = want.to_string();
        let prefix = format!("{app} ");
        wait_for(&format!("`status` to say `{want}`"), WAIT, || {
            let status = c.ok(&["status"]);
            status
                .lines()
                .find(|l| l.starts_with(&prefix) && l.contains(&want))
                .map(str::to_string)
        })
    };
    note(
        "missing",
        "crash loop: exit 127, cannot start /nonexistent/bin",
    );
    note("flaky", "crash loop: exited with code 3");
    let ps = wait_for("`ps` to show the exit code", WAIT, || {
        let ps = c.ok(&["ps", "flaky"]);
        ps.contains("exited with code 3").then_some(ps)
    });
    assert!(ps.lines().next().unwrap().contains("NOTE"), "{ps}");
}

#[test]
fn daemons_log_json_lines_with_log_format_json() {
    let mut c = Cluster::start("jsonlog");
    c.start_node_with("n1", &["--log-format", "json"]);
    let log = c.dir.join("node-n1.log");
    let lines = wait_for("the node's first log lines", WAIT, || {
        let text = std::fs::read_to_string(&log).ok()?;
        let lines: Vec<String> = text.lines().map(str::to_string).collect();
        (lines.len() >= 2).then_some(lines)
    });
    for line in &lines {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not a JSON line ({e}): {line}"));
        assert!(v["timestamp"].is_string(), "{line}");
        assert!(v["level"].is_string(), "{line}");
        assert!(v["fields"]["message"].is_string(), "{line}");
    }
}

#[test]
fn completions_parse_in_bash_and_man_pages_render() {
    let dir = std::env::temp_dir().join(format!("skr8tr-man-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let bin = skr8tr_bin();
    let run = |args: &[&str]| {
        let out = Command::new(&bin).args(args).output().unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let script = run(&["completions", "bash"]);
    for sub in ["up", "rollout", "ingress", "completions"] {
        assert!(script.contains(sub), "bash completion lacks {sub}");
    }
    let file = dir.join("skr8tr.bash");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(&file, &script).unwrap();
    // Sourced by a real bash, the function is defined and registered.
    let check = Command::new("bash")
        .arg("-c")
        .arg(format!("source {} && complete -p skr8tr", file.display()))
        .output()
        .unwrap();
    assert!(
        check.status.success() && String::from_utf8_lossy(&check.stdout).contains("_skr8tr"),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );
    for shell in ["zsh", "fish", "elvish", "powershell"] {
        assert!(run(&["completions", shell]).contains("skr8tr"), "{shell}");
    }
    let said = run(&["man", "--out", dir.join("man").to_str().unwrap()]);
    let page = dir.join("man/skr8tr-up.1");
    assert!(page.exists(), "{said}");
    assert!(dir.join("man/skr8tr.1").exists());
    // The printed command works as printed when man is installed.
    if Command::new("man").arg("--version").output().is_ok() {
        let out = Command::new("man")
            .arg("-l")
            .arg(&page)
            .env("MANPAGER", "cat")
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            text.contains("Deploy (or update) the apps of a manifest"),
            "{text}"
        );
    }
    // A closed pipe is not a failure (`skr8tr completions bash | head`).
    let piped = Command::new("bash")
        .arg("-c")
        .arg(format!(
            "set -o pipefail; {} completions bash | head -1",
            bin.display()
        ))
        .output()
        .unwrap();
    assert!(
        piped.status.success(),
        "{}",
        String::from_utf8_lossy(&piped.stderr)
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn install_writes_units_that_systemd_analyze_verifies() {
    let dir = std::env::temp_dir().join(format!("skr8tr-units-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let bin = skr8tr_bin();
    // Their man pages, where `Documentation=man:` finds them.
    let man = Command::new(&bin)
        .args(["man", "--out", dir.join("man/man1").to_str().unwrap()])
        .output()
        .unwrap();
    assert!(man.status.success());
    let units = dir.join("units");
    let install = |role: &str, flags: &[&str]| {
        let out = Command::new(&bin)
            .args(["install", role, "--unit-dir", units.to_str().unwrap(), "--"])
            .args(flags)
            .output()
            .unwrap();
        let said = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "{role}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            said.contains("systemctl daemon-reload && systemctl enable --now skr8tr-"),
            "{said}"
        );
    };
    install(
        "conductor",
        &[
            "--listen",
            "0.0.0.0:7771",
            "--init-key",
            "/etc/skr8tr/signing.pub",
        ],
    );
    install(
        "node",
        &[
            "--conductor-key",
            "/etc/skr8tr/conductor.pub",
            "--name",
            "n 1%",
        ],
    );
    install(
        "ingress",
        &[
            "--listen",
            "0.0.0.0:80",
            "--route",
            "/:web",
            "--name",
            "edge",
        ],
    );
    let files: Vec<_> = std::fs::read_dir(&units)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(files.len(), 4, "{files:?}");
    let verify = Command::new("systemd-analyze")
        .arg("verify")
        .args(&files)
        .env("MANPATH", dir.join("man"))
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&verify.stderr);
    assert!(
        verify.status.success() && !said.contains("skr8tr"),
        "{said}"
    );
    let read = |f: &str| std::fs::read_to_string(units.join(f)).unwrap();
    let node = read("skr8tr-node.service");
    for line in ["KillMode=process", "Delegate=yes", "--name \"n 1%%\""] {
        assert!(node.contains(line), "{node}");
    }
    // Replicas inherit the node's sandbox: it has none.
    for absent in ["ProtectSystem", "NoNewPrivileges", "DynamicUser"] {
        assert!(!node.contains(absent), "{node}");
    }
    assert!(read("skr8tr-node-leave.service").contains("node leave --data /var/lib/skr8tr/node"));
    for f in ["skr8tr-conductor.service", "skr8tr-ingress.service"] {
        let unit = read(f);
        for line in [
            "NoNewPrivileges=yes",
            "ProtectSystem=strict",
            "DynamicUser=yes",
        ] {
            assert!(unit.contains(line), "{f}: {unit}");
        }
    }
    // A typo is refused, and nothing is written.
    let typo = Command::new(&bin)
        .args([
            "install",
            "node",
            "--unit-dir",
            dir.join("typo").to_str().unwrap(),
        ])
        .args([
            "--",
            "--conductor-key",
            "k",
            "--name",
            "n",
            "--prot-range",
            "1-2",
        ])
        .output()
        .unwrap();
    assert!(!typo.status.success());
    assert!(String::from_utf8_lossy(&typo.stderr).contains("--prot-range"));
    assert!(!dir.join("typo").exists());
    // deploy/systemd holds what `install` writes (deploy/systemd/regenerate).
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let fresh = dir.join("fresh");
    let regen = Command::new(root.join("deploy/systemd/regenerate"))
        .arg(&fresh)
        .arg(&bin)
        .output()
        .unwrap();
    assert!(
        regen.status.success(),
        "{}",
        String::from_utf8_lossy(&regen.stderr)
    );
    for f in std::fs::read_dir(&fresh).unwrap() {
        let f = f.unwrap().path();
        let name = f.file_name().unwrap();
        let kept = std::fs::read_to_string(root.join("deploy/systemd").join(name)).unwrap();
        assert_eq!(
            kept,
            std::fs::read_to_string(&f).unwrap(),
            "deploy/systemd/{name:?} is stale: run deploy/systemd/regenerate"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn up_wait_follows_replicas_to_ready_and_rollout_draws_bars_on_a_terminal() {
    let mut c = Cluster::start("progress");
    c.start_node("n1");
    let web = |version: &str| {
        format!(
            "app web\n  exec {{workload}}\n  args --version {version}\n  replicas 2\n  health {{ check GET /healthz 200; interval 1s }}\n"
        )
    };
    let m = c.manifest("web.skr8tr", &web("v1"));
    // Piped (as here): a plain line per change, no cursor movement.
    let out = c.ok(&["up", m.to_str().unwrap(), "--wait"]);
    assert!(out.contains("web: 2/2 ready"), "{out}");
    assert!(out.contains("all ready in"), "{out}");
    assert!(!out.contains('\x1b') && !out.contains('\r'), "{out:?}");
    assert_eq!(c.replicas("web").len(), 2);
    // A wait that cannot end says what it waited for.
    let stuck = c.manifest("stuck.skr8tr", "app stuck\n  exec /nonexistent/bin\n");
    let out = c.skr8tr(&[
        "up",
        stuck.to_str().unwrap(),
        "--wait",
        "--wait-timeout",
        "3s",
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("stuck 0/1"), "{err}");
    // On a terminal (`script` gives the command a pty): bars drawn.
    let m = c.manifest("web.skr8tr", &web("v2"));
    let cmd = format!("{} rollout {}", skr8tr_bin().display(), m.display());
    let out = Command::new("script")
        .args(["-qec", &cmd, "/dev/null"])
        .env("HOME", c.home())
        .env("SKR8TR_CONDUCTOR", &c.url)
        .env("SKR8TR_PIN", c.pin_file())
        .env("TERM", "xterm")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("done in"), "{text}");
    assert!(text.contains("step"), "{text}");
    assert!(
        text.contains('\x1b'),
        "no bar drawn on a terminal: {text:?}"
    );
}

#[test]
fn plan_shows_the_diff_and_the_printed_check_index_command_applies_it_once() {
    let mut c = Cluster::start("plan");
    c.start_node("n1");
    let web = "app web\n  exec /bin/sleep\n  args 1000\n  replicas 2\n  settle 100ms\n";
    let path = c.manifest(
        "apps.skr8tr",
        &format!("{web}\napp old\n  exec /bin/sleep\n  args 999\n  settle 100ms\n"),
    );
    let file = path.to_str().unwrap();
    c.ok(&["up", file, "--wait"]);
    // The next version: web changed and grown, old gone, db new.
    std::fs::write(
        &path,
        format!(
            "{}\napp db\n  exec /bin/sleep\n  args 998\n  settle 100ms\n",
            web.replace("args 1000", "args 1001")
                .replace("replicas 2", "replicas 3")
        ),
    )
    .unwrap();
    let plan = c.ok(&["plan", file]);
    for want in [
        "~ app web: roll out generation 1 -> 2",
        "    ~ args: [\"1000\"] -> [\"1001\"]",
        "    1 replica to add (2 -> 3)",
        "+ app db: create, generation 1, 1 replica",
        "- app old: not in this file, but its current generation came from a file also named `apps.skr8tr`",
    ] {
        assert!(
            plan.lines().any(|l| l.starts_with(want)),
            "no {want:?} in:\n{plan}"
        );
    }
    // Nothing changed yet.
    assert_eq!(c.replicas("db").len(), 0);
    // The command the plan prints, run as printed.
    let apply = plan
        .lines()
        .find_map(|l| l.strip_prefix("apply it with: "))
        .unwrap_or_else(|| panic!("no apply line in:\n{plan}"));
    let words: Vec<&str> = apply.split_whitespace().collect();
    assert_eq!(&words[..3], ["skr8tr", "up", file]);
    // Someone scales web first: the plan is stale, nothing is applied.
    c.ok(&["scale", "web", "4"]);
    let stale = c.skr8tr(&words[1..]);
    assert_eq!(stale.status.code(), Some(1));
    let err = String::from_utf8_lossy(&stale.stderr);
    assert!(
        err.contains("stale-plan") && err.contains("plan again"),
        "{err}"
    );
    assert_eq!(c.replicas("db").len(), 0);
    // Planned again, it applies.
    let plan = c.ok(&["plan", file]);
    assert!(
        plan.contains("    ~ replicas: 2 -> 3") && plan.contains("1 replica to remove (4 -> 3)"),
        "{plan}"
    );
    let apply = plan
        .lines()
        .find_map(|l| l.strip_prefix("apply it with: "))
        .unwrap();
    let words: Vec<&str> = apply.split_whitespace().collect();
    let out = c.ok(&words[1..]);
    assert!(out.contains("web: rolling out generation 1 -> 2"), "{out}");
    assert!(out.contains("db: created"), "{out}");
    let history = c.ok(&["history"]);
    assert!(history.contains("plan apps.skr8tr"), "{history}");
    assert!(history.contains("--check-index"), "{history}");
}
