//! `node::process` against real processes: environment and arguments,
//! volumes, the parent-death signal, stopping a group, the pid file, and
//! CPU/RSS sampling.

// A test: an unwrap is an assertion (clippy allows it inside #[test]
// functions only; these helpers are part of the tests too).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use skr8tr_node::process::{
    self, LaunchPlan, PID_FILE, PidFile, ProcessGroup, Sampler, SpawnError, Usage,
};
use skr8tr_proto::manifest::{self, AppSpec};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};

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
    }
}

/// Gone, or a zombie nobody reaped yet (PID 1 in a container may not).
fn dead(pid: u32) -> bool {
    !skr8tr_node::process::procfs::is_running(pid)
}

fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting: {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[tokio::test]
async fn the_replica_gets_its_port_environment_and_volumes() {
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
    let mut running = process::spawn(&plan(&s, 4321)).unwrap();
    assert_eq!(running.group.id(), running.pid);
    let mut out = String::new();
    running
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .await
        .unwrap();
    assert!(running.child.wait().await.unwrap().success());
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

#[tokio::test]
async fn a_missing_program_is_a_spawn_error_with_a_shell_exit_code() {
    let s = spec("app web\n  exec /nonexistent/skr8tr-test\n");
    let e = process::spawn(&plan(&s, 1)).unwrap_err();
    assert!(matches!(e, SpawnError::Exec { .. }), "{e}");
    assert_eq!(e.exit_code(), 127);
    assert!(
        e.to_string()
            .starts_with("cannot start /nonexistent/skr8tr-test: ")
    );
}

#[test]
fn a_replica_dies_with_the_thread_that_started_it() {
    let s = spec("app web\n  exec /bin/sleep\n  args 60\n");
    let (pid, running) = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let running = rt.block_on(async { process::spawn(&plan(&s, 1)).unwrap() });
        // Kept alive past this thread, so only the parent-death signal can
        // end it.
        (running.pid, running)
    })
    .join()
    .unwrap();
    wait_until("the parent-death signal", || dead(pid));
    drop(running);
}

#[tokio::test]
async fn stop_drains_then_kills_the_whole_group() {
    // Ignores SIGTERM, and so does its background child.
    let s = spec("app web\n  exec /bin/sh\n  args -c 'trap \"\" TERM; sleep 60 & echo $!; wait'\n");
    let mut running = process::spawn(&plan(&s, 1)).unwrap();
    let mut first = String::new();
    BufReader::new(running.stdout.take().unwrap())
        .read_line(&mut first)
        .await
        .unwrap();
    let grandchild: u32 = first.trim().parse().unwrap();
    assert!(process::is_alive(grandchild));
    let drain = Duration::from_millis(300);
    let began = Instant::now();
    let status = process::stop(&mut running.child, running.group, drain)
        .await
        .unwrap();
    assert!(
        began.elapsed() >= drain,
        "SIGTERM was ignored: the drain ran out"
    );
    assert_eq!(status.signal(), Some(libc::SIGKILL));
    wait_until("the grandchild is killed", || dead(grandchild));
}

#[tokio::test]
async fn stop_returns_as_soon_as_the_replica_exits_on_sigterm() {
    let s = spec("app web\n  exec /bin/sleep\n  args 60\n");
    let mut running = process::spawn(&plan(&s, 1)).unwrap();
    let began = Instant::now();
    let status = process::stop(&mut running.child, running.group, Duration::from_secs(30))
        .await
        .unwrap();
    assert!(began.elapsed() < Duration::from_secs(10));
    assert_eq!(status.signal(), Some(libc::SIGTERM));
    assert!(!process::is_alive(running.pid));
    // An already gone group is fine to kill again.
    process::kill_group_now(running.group);
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
    let mut pids = PidFile::new(&dir);
    pids.insert("web/1/0", ProcessGroup::new(recorded.id()).unwrap());
    pids.insert("web/1/1", ProcessGroup::new(reused.id()).unwrap());
    drop(pids);
    // Pretend the second pid now belongs to a process started at another
    // time: its recorded start time no longer matches.
    let text = std::fs::read_to_string(dir.join(PID_FILE)).unwrap();
    let text: String = text
        .lines()
        .map(
            |line| match line.strip_prefix(&format!("{} ", reused.id())) {
                Some(_) => format!("{} 1 web/1/1\n", reused.id()),
                None => format!("{line}\n"),
            },
        )
        .collect();
    std::fs::write(dir.join(PID_FILE), text).unwrap();

    assert_eq!(process::kill_leftovers(&dir), 1);
    wait_until("the recorded group is killed", || {
        recorded.try_wait().unwrap().is_some()
    });
    assert!(
        reused.try_wait().unwrap().is_none(),
        "a reused pid was killed"
    );
    // A new node run starts with an empty file: nothing more to kill.
    PidFile::new(&dir);
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
    std::fs::remove_file(&file).unwrap();
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
