//! `node::process` against real processes: environment and arguments,
//! volumes, the pid file of older agents, and CPU/RSS sampling.

// A test: an unwrap is an assertion (clippy allows it inside #[test]
// functions only; these helpers are part of the tests too).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use skr8tr_node::process::{self, LaunchPlan, PID_FILE, Sampler, SpawnError, Usage};
use skr8tr_proto::manifest::{self, AppSpec};
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::time::{Duration, Instant};

fn temp_dir(name: &str) -> PathBuf {
    let dir =
        std::env::temp_dir().join(format!("skr8tr-node-process-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn spec(text: &str) -> AppSpec {
    manifest::parse("test.skr8tr", text).unwrap().remove(0)
}

fn plan<'a>(spec: &'a AppSpec, port: u16) -> LaunchPlan<'a> {
    LaunchPlan {
        replica: "web/3/0",
        app: "web",
        spec,
        port,
        address: std::net::Ipv4Addr::LOCALHOST.into(),
        owner: None,
        dir: std::path::Path::new("/nonexistent"),
        built: None,
        wasm_runtime: None,
    }
}

fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting: {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn the_replica_gets_its_port_environment_and_volumes() {
    let dir = temp_dir("env");
    let volume = dir.join("data/nested");
    let s = spec(&format!(
        r#"app web
  exec /bin/sh
  args -c 'echo "arg=$1 port=$PORT replica=$SKR8TR_REPLICA app=$SKR8TR_APP"; echo "greeting=$GREETING token=$TOKEN data=$DATA_DIR"; echo "path=$PATH"' sh ${{PORT}}
  env {{
    GREETING "hello on $PORT"
  }}
  secret {{
    TOKEN s3cret
  }}
  volume {{
    path {}
    env  DATA_DIR
  }}
"#,
        volume.display()
    ));
    let p = process::program(&plan(&s, 4321)).unwrap();
    assert_eq!(p.program, "/bin/sh");
    assert_eq!(p.args.last().map(String::as_str), Some("4321"));
    let names: Vec<&str> = p.env.iter().map(|(k, _)| k.as_str()).collect();
    let mut unique = names.clone();
    unique.sort_unstable();
    unique.dedup();
    assert_eq!(unique.len(), names.len(), "each variable once: {names:?}");
    // Run it as the shim does: that environment only.
    let out = std::process::Command::new(&p.program)
        .args(&p.args)
        .env_clear()
        .envs(p.env.iter().map(|(k, v)| (k, v)))
        .output()
        .unwrap();
    assert!(out.status.success());
    let out = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "arg=4321 port=4321 replica=web/3/0 app=web");
    assert_eq!(
        lines[1],
        format!(
            "greeting=hello on 4321 token=s3cret data={}",
            volume.display()
        )
    );
    assert!(lines[2].len() > "path=".len(), "PATH is inherited");
    let mode = std::fs::metadata(&volume).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o700);
}

#[test]
fn a_wasm_app_on_a_node_without_a_runtime_is_a_start_error() {
    let s = spec("app web\n  type wasm\n  exec /m.wasm\n");
    let e = process::program(&plan(&s, 1)).unwrap_err();
    assert!(matches!(e, SpawnError::NoRuntime { .. }), "{e}");
    assert_eq!(e.exit_code(), 127);
    assert!(e.to_string().contains("--wasm-runtime"), "{e}");
}

fn sleeper() -> std::process::Child {
    use std::os::unix::process::CommandExt;
    std::process::Command::new("sleep")
        .arg("60")
        .process_group(0)
        .spawn()
        .unwrap()
}

#[test]
fn leftover_groups_from_the_pid_file_are_killed_unless_the_pid_was_reused() {
    let dir = temp_dir("leftovers");
    let mut recorded = sleeper();
    let mut reused = sleeper();
    let boot = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap();
    let started = process::procfs::stat(recorded.id()).unwrap().start_time;
    // The second pid "now belongs to a process started at another time":
    // its recorded start time does not match.
    std::fs::write(
        dir.join(PID_FILE),
        format!(
            "boot {}\n{} {started} web/1/0\n{} 1 web/1/1\n",
            boot.trim(),
            recorded.id(),
            reused.id()
        ),
    )
    .unwrap();
    assert_eq!(process::kill_leftovers(&dir), 1);
    wait_until("the recorded group is killed", || {
        recorded.try_wait().unwrap().is_some()
    });
    assert!(
        reused.try_wait().unwrap().is_none(),
        "a reused pid was killed"
    );
    // The file is read once, then gone: nothing more to kill.
    assert!(!dir.join(PID_FILE).exists());
    assert_eq!(process::kill_leftovers(&dir), 0);
    reused.kill().unwrap();
    reused.wait().unwrap();
}

#[test]
fn a_pid_file_from_another_boot_or_garbage_kills_nothing() {
    let dir = temp_dir("boot");
    let mut child = sleeper();
    let file = dir.join(PID_FILE);
    std::fs::write(
        &file,
        format!("boot not-this-boot\n{} 0 web/1/0\n", child.id()),
    )
    .unwrap();
    assert_eq!(process::kill_leftovers(&dir), 0);
    let boot = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap();
    let own = std::process::id();
    let garbage = format!("boot {}\ngarbage\n0 0 x\n1 0 y\n{own} 0 z\n\n", boot.trim());
    std::fs::write(&file, garbage).unwrap();
    assert_eq!(process::kill_leftovers(&dir), 0);
    assert!(!file.exists(), "read once, then removed");
    assert_eq!(process::kill_leftovers(&dir), 0);
    assert!(child.try_wait().unwrap().is_none());
    child.kill().unwrap();
    child.wait().unwrap();
}

#[test]
fn the_sampler_measures_a_busy_process() {
    let mut busy = std::process::Command::new("/bin/sh")
        .args(["-c", "while :; do :; done"])
        .spawn()
        .unwrap();
    let every = Duration::from_millis(200);
    let mut sampler = Sampler::default();
    let start = Instant::now();
    let first = sampler.sample(busy.id(), start, every);
    assert_eq!(first.cpu_millis, 0, "one reading is no rate yet");
    assert!(first.rss_bytes > 0);
    // Within `every`, the figures repeat without reading /proc.
    assert_eq!(sampler.sample(busy.id(), start, every), first);
    let deadline = start + Duration::from_secs(20);
    let mut cpu = 0;
    while cpu < 200 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(300));
        cpu = sampler.sample(busy.id(), Instant::now(), every).cpu_millis;
    }
    busy.kill().unwrap();
    busy.wait().unwrap();
    assert!(cpu >= 200, "a busy loop used {cpu} millicores");
    let gone = sampler.sample(busy.id(), Instant::now(), Duration::ZERO);
    assert_eq!(gone, Usage::default());
}
