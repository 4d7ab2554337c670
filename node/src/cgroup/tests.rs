use super::*;

const MOUNTINFO_V1: &str = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";

const MOUNTINFO_V2: &str = "\
24 30 0:22 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw,nsdelegate
";

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("skr8tr-cg-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn v1_is_found_when_memory_and_cpu_are_mounted_and_v2_has_no_controllers() {
    let kind = detect_kind(MOUNTINFO_V1, |_| Some(String::new())).unwrap();
    assert_eq!(
        kind,
        Kind::V1 {
            memory: "/sys/fs/cgroup/memory".into(),
            cpu: "/sys/fs/cgroup/cpu".into(),
            cpuacct: Some("/sys/fs/cgroup/cpuacct".into()),
        }
    );
    // A joint `cpu,cpuacct` mount is the cpu hierarchy; no separate cpuacct.
    let joint = "32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct\n\
                 35 31 0:32 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n";
    assert_eq!(
        detect_kind(joint, |_| None).unwrap(),
        Kind::V1 {
            memory: "/sys/fs/cgroup/memory".into(),
            cpu: "/sys/fs/cgroup/cpu,cpuacct".into(),
            cpuacct: None,
        }
    );
}

#[test]
fn v2_is_found_when_it_offers_memory_and_cpu() {
    let read = |p: &Path| {
        assert_eq!(p, Path::new("/sys/fs/cgroup/cgroup.controllers"));
        Some("cpuset cpu io memory hugetlb pids rdma misc\n".to_string())
    };
    assert_eq!(
        detect_kind(MOUNTINFO_V2, read).unwrap(),
        Kind::V2 {
            root: "/sys/fs/cgroup".into()
        }
    );
    // cgroup2 without the cpu controller, and no v1: limits are off.
    let err = detect_kind(MOUNTINFO_V2, |_| Some("memory pids".into())).unwrap_err();
    assert!(err.contains("memory controller"), "{err}");
    let err = detect_kind("", |_| None).unwrap_err();
    assert!(err.contains("memory"), "{err}");
}

/// A directory laid out like the root of a cgroup2 mount: the files the
/// kernel would show, which the node reads and writes.
fn fake_v2_root(dir: &Path) {
    std::fs::write(dir.join("cgroup.controllers"), "cpu memory pids\n").unwrap();
    std::fs::write(dir.join("cgroup.subtree_control"), "").unwrap();
}

/// Cgroupfs creates a new group's files itself; the fake does it by hand
/// for the levels the node is about to create.
fn fake_v2_group(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    for f in [
        "cgroup.subtree_control",
        "memory.max",
        "cpu.max",
        "cgroup.procs",
    ] {
        std::fs::write(dir.join(f), "").unwrap();
    }
    std::fs::write(dir.join("memory.swap.max"), "max\n").unwrap();
    std::fs::write(
        dir.join("memory.events"),
        "low 0\nhigh 0\nmax 12\noom 2\noom_kill 1\noom_group_kill 0\n",
    )
    .unwrap();
}

#[test]
fn v2_limits_are_written_where_the_kernel_reads_them() {
    let root = scratch("v2");
    fake_v2_root(&root);
    let cgroups = Cgroups::new(Kind::V2 { root: root.clone() }, Path::new("/var/lib/node"));
    let cg = cgroups.replica("web/3/0");
    let leaf = cg.dirs[0].clone();
    assert_eq!(cg.dirs.len(), 1);
    assert!(leaf.starts_with(root.join("skr8tr")));
    // Pre-create each level's files as the kernel would.
    fake_v2_group(&root.join("skr8tr"));
    fake_v2_group(leaf.parent().unwrap());
    fake_v2_group(&leaf);

    let made = cgroups
        .create(
            "web/3/0",
            Limits {
                memory: Some(64 << 20),
                cpu_millis: Some(200),
            },
        )
        .unwrap();
    assert_eq!(made, cg);
    let read = |p: PathBuf| std::fs::read_to_string(p).unwrap();
    assert_eq!(read(leaf.join("memory.max")), (64u64 << 20).to_string());
    assert_eq!(read(leaf.join("memory.swap.max")), "0");
    assert_eq!(read(leaf.join("cpu.max")), "20000 100000");
    // Every level above the leaf delegates memory and cpu.
    for level in [
        root.clone(),
        root.join("skr8tr"),
        leaf.parent().unwrap().into(),
    ] {
        assert_eq!(
            read(level.join("cgroup.subtree_control")),
            "+memory +cpu",
            "{}",
            level.display()
        );
    }
    assert_eq!(cg.oom_kills(), 1);
    assert_eq!(cg.kill_file, Some(leaf.join("cgroup.kill")));
    std::fs::write(leaf.join("cgroup.procs"), "12\n7\n12\n").unwrap();
    assert_eq!(cg.pids(), vec![7, 12]);

    // Unset limits are written as none, so a reused cgroup keeps no old one.
    cgroups.create("web/3/0", Limits::default()).unwrap();
    assert_eq!(read(leaf.join("memory.max")), "max");
    assert_eq!(read(leaf.join("cpu.max")), "max 100000");
    let _ = std::fs::remove_dir_all(&root);
}

#[test]
fn v1_limits_go_to_the_memory_and_cpu_hierarchies() {
    let root = scratch("v1");
    let (memory, cpu) = (root.join("memory"), root.join("cpu"));
    let cgroups = Cgroups::new(
        Kind::V1 {
            memory: memory.clone(),
            cpu: cpu.clone(),
            cpuacct: None,
        },
        Path::new("/var/lib/node"),
    );
    let cg = cgroups
        .create(
            "api/1/2",
            Limits {
                memory: Some(1 << 30),
                cpu_millis: Some(1500),
            },
        )
        .unwrap();
    assert_eq!(cg.dirs.len(), 2);
    assert!(cg.dirs[0].starts_with(&memory) && cg.dirs[1].starts_with(&cpu));
    let read = |p: PathBuf| std::fs::read_to_string(p).unwrap();
    assert_eq!(
        read(cg.dirs[0].join("memory.limit_in_bytes")),
        (1u64 << 30).to_string()
    );
    assert_eq!(read(cg.dirs[1].join("cpu.cfs_quota_us")), "150000");
    assert_eq!(read(cg.dirs[1].join("cpu.cfs_period_us")), "100000");
    std::fs::write(
        &cg.oom_file,
        "oom_kill_disable 0\nunder_oom 0\noom_kill 3\n",
    )
    .unwrap();
    assert_eq!(cg.oom_kills(), 3);
    let _ = std::fs::remove_dir_all(&root);
}

#[test]
fn quotas_hashes_and_oom_lines() {
    assert_eq!(cpu_quota_us(200), 20_000);
    assert_eq!(cpu_quota_us(1), 1_000, "the kernel's minimum");
    assert_eq!(cpu_quota_us(4000), 400_000);
    assert_eq!(parse_oom_kills("oom 1\noom_kill 2\n"), Some(2));
    assert_eq!(parse_oom_kills("oom_kill_disable 0\n"), None);
    assert_eq!(short_hash("a").len(), 16);
    assert_ne!(short_hash("web/1/0"), short_hash("web/1/1"));
    // Different data dirs, different scopes.
    let k = Kind::V2 { root: "/x".into() };
    assert_ne!(
        Cgroups::new(k.clone(), Path::new("/a")).replica("r"),
        Cgroups::new(k, Path::new("/b")).replica("r")
    );
}
