//! Issue 11's runtimes with real processes: `build` (once, cached, a
//! failure shown in `ps` and `logs`), `type wasm` through a stand-in
//! runtime on the one node that has it, and `type vm` for each hypervisor
//! through a stand-in that records its argv and serves the forwarded port.

use skr8tr_chaos_tests::harness::{Cluster, http_get, wait_for, workload_bin};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(60);

/// An executable script that writes its argv (one per line) to `argv`
/// and then serves `$PORT` as the workload.
fn stand_in(path: &Path, argv: &Path) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(
        path,
        format!(
            "#!/bin/sh\nfor a in \"$@\"; do echo \"$a\"; done > {}\nexec {} --version stand-in\n",
            argv.display(),
            workload_bin().display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

fn admitted(c: &mut Cluster, name: &str, extra: &[&str]) {
    let ticket = c.dir.join(format!("{name}.ticket")).display().to_string();
    c.ok(&["ticket", name, "--out", &ticket]);
    let mut args = vec!["--ticket", ticket.as_str()];
    args.extend_from_slice(extra);
    c.start_node_with(name, &args);
}

fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn a_build_runs_once_serves_and_a_failing_one_shows_its_error() {
    let mut c = Cluster::start("build");
    c.start_node("n1");
    let counter = c.dir.join("builds.count");
    let manifest = format!(
        "app built\n  exec ./app\n  args --version built\n  replicas 2\n  health {{ check GET /healthz 200; interval 1s }}\n  build {{\n    run echo built >> {count}\n    run cp {w} ./app\n  }}\n\n\
         app broken\n  exec ./nothing\n  build {{\n    run echo trying\n    run exit 3\n  }}\n",
        count = counter.display(),
        w = workload_bin().display()
    );
    c.ok(&["up", c.manifest("b.skr8tr", &manifest).to_str().unwrap()]);
    let ready = c.wait_ready("built", 2, WAIT);
    assert_eq!(lines(&counter), ["built"], "two replicas, one build");
    let r = &ready[0];
    let (status, body) = http_get(&format!("{}:{}", r.address, r.port.unwrap()), "/").unwrap();
    assert_eq!(status, 200);
    assert!(body.contains("version=built"), "{body}");
    // A restart finds it built.
    let killed = std::process::Command::new("kill")
        .args(["-9", &r.pid.unwrap().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    wait_for("the killed replica back", WAIT, || {
        c.replicas("built")
            .iter()
            .any(|x| x.restarts > 0 && x.state == Some(skr8tr_proto::wire::ReplicaState::Ready))
            .then_some(())
    });
    assert_eq!(lines(&counter), ["built"], "not rebuilt on restart");

    let ps = wait_for("the failed build in ps", WAIT, || {
        let ps = c.ok(&["ps", "broken"]);
        ps.contains("build-failed").then_some(ps)
    });
    assert!(ps.contains("build failed: `exit 3` exited with 3"), "{ps}");
    let logs = c.ok(&["logs", "broken"]);
    assert!(
        logs.contains("trying") && logs.contains("build failed: `exit 3` exited with 3"),
        "{logs}"
    );
}

#[test]
fn a_wasm_app_runs_through_the_runtime_on_the_one_node_that_has_it() {
    let mut c = Cluster::start("wasm");
    let argv = c.dir.join("wasm.argv");
    let runtime = c.dir.join("bin/fake-wasmtime");
    stand_in(&runtime, &argv);
    let flag = format!("{} run --dir .", runtime.display());
    admitted(&mut c, "plain", &[]);
    admitted(&mut c, "wasmer", &["--wasm-runtime", &flag]);
    wait_for("two nodes, one with wasm", WAIT, || {
        let n = c.ok(&["nodes"]);
        (n.matches(" ready ").count() == 2 && n.contains(", wasm")).then_some(())
    });
    let manifest = "app fn\n  type wasm\n  exec /srv/handler.wasm\n  args --listen-port $PORT\n  replicas 2\n  env { GREETING hi }\n  health { check GET /healthz 200; interval 1s }\n";
    c.ok(&["up", c.manifest("w.skr8tr", manifest).to_str().unwrap()]);
    let ready = c.wait_ready("fn", 2, WAIT);
    assert!(ready.iter().all(|r| r.node == "wasmer"), "{ready:?}");
    let port = ready.last().unwrap().port.unwrap().to_string();
    let args = lines(&argv);
    assert_eq!(
        &args[..3],
        ["run", "--dir", "."],
        "the runtime's own flags first"
    );
    assert!(
        args.windows(2).any(|w| w == ["--env", "GREETING=hi"]),
        "{args:?}"
    );
    assert!(args.iter().any(|a| a.starts_with("PORT=")), "{args:?}");
    let module = args.iter().position(|a| a == "/srv/handler.wasm").unwrap();
    assert_eq!(args[module + 1], "--listen-port");
    assert!(
        ready
            .iter()
            .any(|r| r.port.unwrap().to_string() == args[module + 2]),
        "{args:?} vs {port}"
    );
}

#[test]
fn a_vm_app_starts_each_hypervisor_with_its_argv_and_is_probed_on_the_forwarded_port() {
    let mut c = Cluster::start("vm");
    c.start_node("n1");
    let bin = c.dir.join("hv");
    let argv = |name: &str| c.dir.join(format!("{name}.argv"));
    let mut manifest = String::new();
    for (app, binary) in [
        ("fc", "firecracker"),
        ("qm", "qemu-system-x86_64"),
        ("ch", "cloud-hypervisor"),
    ] {
        let path: PathBuf = bin.join(app).join(binary);
        stand_in(&path, &argv(app));
        manifest.push_str(&format!(
            "app {app}\n  type vm\n  health {{ check GET /healthz 200; interval 1s }}\n  vm {{\n    hypervisor {}\n    kernel /vm/vmlinux\n    rootfs /vm/rootfs.ext4\n    vcpus 2\n    memory 512\n    args --extra\n  }}\n\n",
            path.display()
        ));
    }
    c.ok(&["up", c.manifest("vm.skr8tr", &manifest).to_str().unwrap()]);
    let port = |app: &str| c.wait_ready(app, 1, WAIT)[0].port.unwrap();

    let fc_port = port("fc");
    let fc = lines(&argv("fc"));
    assert_eq!(&fc[..2], ["--no-api", "--config-file"], "{fc:?}");
    assert_eq!(fc.last().map(String::as_str), Some("--extra"));
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&fc[2]).unwrap()).unwrap();
    assert_eq!(config["machine-config"]["mem_size_mib"], 512);
    assert_eq!(config["machine-config"]["vcpu_count"], 2);
    assert_eq!(config["boot-source"]["kernel_image_path"], "/vm/vmlinux");
    assert_eq!(config["drives"][0]["path_on_host"], "/vm/rootfs.ext4");
    assert!(fc_port > 0);

    let qm_port = port("qm");
    let qm = lines(&argv("qm"));
    let after = |args: &[String], flag: &str| {
        args.iter()
            .position(|a| a == flag)
            .map(|i| args[i + 1].clone())
            .unwrap_or_else(|| panic!("{flag} missing from {args:?}"))
    };
    assert_eq!(after(&qm, "-kernel"), "/vm/vmlinux");
    assert_eq!(
        after(&qm, "-drive"),
        "file=/vm/rootfs.ext4,format=raw,if=virtio"
    );
    assert_eq!(
        (after(&qm, "-m"), after(&qm, "-smp")),
        ("512".into(), "2".into())
    );
    assert_eq!(
        after(&qm, "-netdev"),
        format!("user,id=net0,hostfwd=tcp:127.0.0.1:{qm_port}-:8080")
    );

    port("ch");
    let ch = lines(&argv("ch"));
    assert_eq!(after(&ch, "--kernel"), "/vm/vmlinux");
    assert_eq!(after(&ch, "--disk"), "path=/vm/rootfs.ext4");
    assert_eq!(after(&ch, "--cpus"), "boot=2");
    assert_eq!(after(&ch, "--memory"), "size=512M");
    // Ready means the health check passed on the forwarded port.
    let (status, body) = http_get(&format!("127.0.0.1:{qm_port}"), "/").unwrap();
    assert_eq!(status, 200);
    assert!(body.contains("version=stand-in"), "{body}");
}
