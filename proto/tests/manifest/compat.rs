//! Manifests written for the original C implementation (three patterns
//! from its public examples), and the placement and identity keys.

use super::parse_ok;
use skr8tr_proto::manifest::{Hypervisor, Port, parse};

/// The first error of a manifest that must not parse, as `line:col: message`.
fn first_error(text: &str) -> String {
    let d = parse("t.skr8tr", text).expect_err("should not parse");
    d.to_string().lines().next().unwrap_or_default().to_string()
}

#[test]
fn env_port_equal_to_port_is_allowed_and_a_different_one_is_an_error() {
    let app = &parse_ok(
        "svc.skr8tr",
        "app svc\n  exec /bin/svc\n  port 8004\n  env {\n    PORT 8004\n    MODE prod\n  }\n",
    )[0];
    assert_eq!(app.port, Port::Fixed(8004));
    // The node sets PORT itself; MODE stays.
    assert_eq!(app.env, vec![("MODE".to_string(), "prod".to_string())]);

    let err = first_error("app svc\n  exec /bin/svc\n  port 8004\n  env {\n    PORT 8005\n  }\n");
    assert!(
        err.contains("5:5")
            && err.contains("`PORT` in `env` is `8005` but app `svc` has `port 8004`"),
        "{err}"
    );
    let err = first_error("app svc\n  exec /bin/svc\n  env { PORT 8004 }\n");
    assert!(err.contains("`PORT` is set by the node"), "{err}");
    // A secret named PORT is still refused outright.
    let err = first_error("app svc\n  exec /bin/svc\n  port 1\n  secret { PORT 1 }\n");
    assert!(err.contains("`PORT` is set by the node"), "{err}");
}

#[test]
fn a_hypervisor_path_names_the_hypervisor_and_is_the_binary() {
    let app = &parse_ok(
        "vm.skr8tr",
        "app box\n  type vm\n  vm {\n    hypervisor /usr/bin/firecracker\n    kernel /k\n    rootfs /r\n    memory 512\n  }\n",
    )[0];
    let vm = app.vm.as_ref().unwrap();
    assert_eq!(vm.hypervisor, Hypervisor::Firecracker);
    assert_eq!(vm.binary.as_deref(), Some("/usr/bin/firecracker"));
    assert_eq!(vm.memory, 512 << 20, "a bare number is MiB");
    let qemu = &parse_ok(
        "vm.skr8tr",
        "app box\n  type vm\n  vm { hypervisor /opt/bin/qemu-system-x86_64; kernel /k; rootfs /r; memory 1gb }\n",
    )[0];
    let vm = qemu.vm.as_ref().unwrap();
    assert_eq!((vm.hypervisor, vm.memory), (Hypervisor::Qemu, 1 << 30));
    let err = first_error(
        "app box\n  type vm\n  vm {\n    hypervisor /usr/bin/bochs\n    kernel /k\n    rootfs /r\n  }\n",
    );
    assert!(
        err.contains("4:16") && err.contains("not a hypervisor"),
        "{err}"
    );
    // Keys that do not exist stay errors.
    let err = first_error(
        "app box\n  type vm\n  vm {\n    hypervisor qemu\n    kernel /k\n    rootfs /r\n    disk /d\n  }\n",
    );
    assert!(err.contains("unknown key `disk`"), "{err}");
}

#[test]
fn constraints_spread_user_and_group_parse_with_positions() {
    let app = &parse_ok(
        "db.skr8tr",
        "app db\n  exec /bin/db\n  constraint role=db\n  constraint disk=ssd\n  spread zone\n  user postgres\n  group dba\n",
    )[0];
    assert_eq!(
        app.constraints,
        vec![("role".into(), "db".into()), ("disk".into(), "ssd".into())]
    );
    assert_eq!(app.spread.as_deref(), Some("zone"));
    assert_eq!(
        (app.user.as_deref(), app.group.as_deref()),
        (Some("postgres"), Some("dba"))
    );
    let err = first_error("app db\n  exec /bin/db\n  constraint role\n");
    assert!(
        err.contains("3:14") && err.contains("not a label like `role=db`"),
        "{err}"
    );
    let err = first_error("app db\n  exec /bin/db\n  constraint role=DB\n");
    assert!(
        err.contains("3:19") && err.contains("`DB` is not a label"),
        "{err}"
    );
    let err = first_error("app db\n  exec /bin/db\n  constraint role=a\n  constraint role=b\n");
    assert!(
        err.contains("4:14") && err.contains("constrains `role` twice"),
        "{err}"
    );
    let err = first_error("app db\n  exec /bin/db\n  user -x\n");
    assert!(err.contains("not a user or group name"), "{err}");
    let err = first_error("app db\n  exec /bin/db\n  group dba\n");
    assert!(err.contains("a `group` but no `user`"), "{err}");
    let all = parse("t.skr8tr", "app db\n  exec /bin/db\n  spred zone\n")
        .unwrap_err()
        .to_string();
    assert!(all.contains("did you mean `spread`"), "{all}");
}

#[test]
fn disconnect_stop_after_parses_and_bad_values_say_where() {
    let app = &parse_ok(
        "worker.skr8tr",
        "app worker\n  exec /bin/worker\n  disconnect { stop-after 20s }\n",
    )[0];
    assert_eq!(
        app.disconnect,
        Some(skr8tr_proto::manifest::Disconnect {
            stop_after: std::time::Duration::from_secs(20)
        })
    );
    let plain = &parse_ok("w.skr8tr", "app w\n  exec /bin/w\n")[0];
    assert_eq!(plain.disconnect, None, "availability first by default");
    let err = first_error("app w\n  exec /bin/w\n  disconnect { stop-after 1s }\n");
    assert!(
        err.contains("3:27") && err.contains("shorter than"),
        "{err}"
    );
    let err = first_error("app w\n  exec /bin/w\n  disconnect { }\n");
    assert!(err.contains("no `stop-after`"), "{err}");
    let all = parse(
        "t.skr8tr",
        "app w\n  exec /bin/w\n  disconnect { stop-afte 20s }\n",
    )
    .unwrap_err()
    .to_string();
    assert!(all.contains("did you mean `stop-after`"), "{all}");
    let err = first_error("app w\n  exec /bin/w\n  disconnect { stop-after soon }\n");
    assert!(err.contains("3:27"), "{err}");
}
