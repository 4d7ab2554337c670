//! The manifest parser against real files: the valid corpus in
//! `tests/corpus/valid/` (every key and alias of DESIGN.md, both block
//! styles, inline blocks, multi-app files, comments, CRLF), the original
//! project's manifest, the shipped examples, and what must hold for every
//! parsed spec (secrets hidden from `Debug`, postcard round trip).
//! Invalid manifests and their positions are in `manifest_invalid.rs`.

// A test: an unwrap is an assertion (clippy allows it inside #[test]
// functions only; these helpers are part of the tests too).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use skr8tr_proto::manifest::{
    AppKind, AppSpec, Build, Check, Health, HttpMethod, Hypervisor, Port, Restart, Scale, Secret,
    Serve, Vm, Volume, parse,
};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

mod compat;
mod syntax;

const CORPUS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/corpus/valid");
const EXAMPLES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples");

/// The manifest of the original project, byte for byte.
const ORIGINAL: &str = "\
app api-server
  exec     /usr/local/bin/myapi
  args     --port 8080 --db postgres.internal:5432
  port     8080
  replicas 3
  health {
    check  GET /healthz 200
    interval 10s
    retries 3
  }
  scale {
    min       1
    max       8
    cpu-above 80
    cpu-below 20
  }
";

fn parse_ok(file: &str, text: &str) -> Vec<AppSpec> {
    match parse(file, text) {
        Ok(apps) => apps,
        Err(diagnostics) => panic!("{file} should parse, but:\n{diagnostics}"),
    }
}

/// Every `*.skr8tr` file of a directory, sorted, with its text.
fn manifests(dir: &str) -> Vec<(PathBuf, String)> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{dir}: {e}"))
        .map(|entry| entry.expect("directory entry").path())
        .filter(|p| p.extension().is_some_and(|ext| ext == "skr8tr"))
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|p| {
            let text = std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{p:?}: {e}"));
            (p, text)
        })
        .collect()
}

fn corpus_file(name: &str) -> Vec<AppSpec> {
    let path = Path::new(CORPUS).join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path:?}: {e}"));
    parse_ok(name, &text)
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

fn strings(words: &[&str]) -> Vec<String> {
    words.iter().map(|w| w.to_string()).collect()
}

fn vars(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn exposed(spec: &AppSpec) -> Vec<(&str, &str)> {
    spec.secrets
        .iter()
        .map(|(k, v)| (k.as_str(), v.expose()))
        .collect()
}

fn http(method: HttpMethod, path: &str, status: u16) -> Check {
    Check::Http {
        method,
        path: path.to_string(),
        status,
    }
}

/// An app with only a name and a program: every other field at its default.
fn defaults(name: &str, exec: &str, line: u32) -> AppSpec {
    AppSpec {
        name: name.to_string(),
        kind: AppKind::Service,
        exec: Some(exec.to_string()),
        args: Vec::new(),
        port: Port::Auto,
        replicas: 1,
        ram: None,
        cpu_millis: None,
        gpu: false,
        restart: Restart::Always,
        drain: secs(2),
        settle: secs(8),
        health: None,
        scale: None,
        env: Vec::new(),
        secrets: Vec::new(),
        volumes: Vec::new(),
        build: None,
        serve: None,
        vm: None,
        line,
        constraints: Vec::new(),
        spread: None,
        user: None,
        group: None,
        disconnect: None,
    }
}

#[test]
fn every_corpus_file_parses_without_diagnostics() {
    let files = manifests(CORPUS);
    assert!(files.len() >= 8, "only {} corpus files", files.len());
    for (path, text) in &files {
        let apps = parse_ok(&path.display().to_string(), text);
        assert!(!apps.is_empty(), "{path:?} defines no app");
    }
}

#[test]
fn corpus_uses_every_key_alias_and_choice() {
    // First word, and first two words, of every line and of every `;` piece.
    let mut keys = BTreeSet::new();
    let mut pairs = BTreeSet::new();
    for (_, text) in manifests(CORPUS) {
        for part in text.lines().flat_map(|l| l.split(['{', ';'])) {
            let mut words = part.split_whitespace().map(str::to_string);
            if let Some(key) = words.next() {
                keys.insert(key.clone());
                pairs.insert((key, words.next().unwrap_or_default()));
            }
        }
    }
    let every_key = "app type exec bin args port replicas ram cpu cpus gpu restart drain \
        settle health check interval timeout retries scale min max cpu-above cpu-below env \
        secret volume path build run out serve static vm hypervisor kernel rootfs vcpus memory net";
    for key in every_key.split_whitespace() {
        assert!(keys.contains(key), "no corpus file uses `{key}`");
    }
    let every_choice = "type service, type process, type job, type wasm, type vm, port auto, \
        port 8080, ram 512mb, ram 2gb, cpu 0.5, cpus 2, gpu true, restart always, \
        restart on-failure, restart never, check GET, check HEAD, check tcp, cpu-above 80, \
        cpu-above 80%, hypervisor firecracker, hypervisor qemu, hypervisor cloud-hypervisor";
    for choice in every_choice.split(", ") {
        let (key, value) = choice.split_once(' ').expect("`key value`");
        let pair = (key.to_string(), value.to_string());
        assert!(pairs.contains(&pair), "no corpus file has `{choice}`");
    }
}

#[test]
fn original_manifest_parses_exactly_as_written() {
    let apps = parse_ok("api.skr8tr", ORIGINAL);
    let expected = AppSpec {
        name: "api-server".into(),
        kind: AppKind::Service,
        exec: Some("/usr/local/bin/myapi".into()),
        args: strings(&["--port", "8080", "--db", "postgres.internal:5432"]),
        port: Port::Fixed(8080),
        replicas: 3,
        ram: None,
        cpu_millis: None,
        gpu: false,
        restart: Restart::Always,
        drain: secs(2),
        settle: secs(8),
        health: Some(Health {
            check: http(HttpMethod::Get, "/healthz", 200),
            interval: secs(10),
            timeout: secs(2),
            retries: 3,
        }),
        scale: Some(Scale {
            min: 1,
            max: 8,
            cpu_above: 80,
            cpu_below: 20,
        }),
        env: Vec::new(),
        secrets: Vec::new(),
        volumes: Vec::new(),
        build: None,
        serve: None,
        vm: None,
        line: 1,
        constraints: Vec::new(),
        spread: None,
        user: None,
        group: None,
        disconnect: None,
    };
    assert_eq!(apps, [expected]);
}

#[test]
fn shipped_examples_parse() {
    let files = manifests(EXAMPLES);
    assert!(files.len() >= 3, "only {} examples", files.len());
    for (path, text) in &files {
        let apps = parse_ok(&path.display().to_string(), text);
        assert!(!apps.is_empty(), "{path:?} defines no app");
    }
    // `api.skr8tr` is the original manifest under two comment lines.
    let (_, api) = files
        .iter()
        .find(|(p, _)| p.ends_with("api.skr8tr"))
        .expect("examples/api.skr8tr");
    let example = parse_ok("api.skr8tr", api).remove(0);
    assert_eq!(example.line, 3);
    let original = parse_ok("original", ORIGINAL).remove(0);
    assert_eq!(AppSpec { line: 1, ..example }, original);
}

#[test]
fn braces_file_sets_every_app_key() {
    let apps = corpus_file("01-braces.skr8tr");
    let expected = AppSpec {
        kind: AppKind::Service,
        args: strings(&[
            "--listen",
            "0.0.0.0:$PORT",
            "--msg",
            "hello world",
            "--title",
            "single quoted",
            "--data",
            "${DATA_DIR}/x",
        ]),
        port: Port::Fixed(8080),
        replicas: 4,
        ram: Some(2 << 30),
        cpu_millis: Some(500),
        gpu: true,
        restart: Restart::OnFailure,
        drain: ms(500),
        settle: secs(120),
        health: Some(Health {
            check: http(HttpMethod::Get, "/healthz", 204),
            interval: secs(5),
            timeout: ms(1500),
            retries: 4,
        }),
        scale: Some(Scale {
            min: 2,
            max: 10,
            cpu_above: 80,
            cpu_below: 25,
        }),
        env: vars(&[
            ("RUST_LOG", "info,web=debug"),
            ("GREETING", "hello world"),
            ("EMPTY", ""),
        ]),
        secrets: vec![
            ("DB_PASSWORD".into(), Secret::new("s3cr3t-value".into())),
            ("API_TOKEN".into(), Secret::new("tok en".into())),
        ],
        volumes: vec![
            Volume {
                path: "/var/lib/web/data".into(),
                env: Some("DATA_DIR".into()),
            },
            Volume {
                path: "/var/cache/web".into(),
                env: None,
            },
        ],
        ..defaults("web", "/opt/web/bin/server", 2)
    };
    assert_eq!(apps, [expected]);
    assert_eq!(
        exposed(&apps[0]),
        [("DB_PASSWORD", "s3cr3t-value"), ("API_TOKEN", "tok en")]
    );
}

#[test]
fn indented_file_uses_aliases_and_blocks_without_braces() {
    let apps = corpus_file("02-indented.skr8tr");
    let [w] = apps.as_slice() else {
        panic!("{apps:?}")
    };
    assert_eq!(w.kind, AppKind::Service, "`process` is `service`");
    assert_eq!(
        w.exec.as_deref(),
        Some("/usr/bin/worker"),
        "`bin` is `exec`"
    );
    assert_eq!(w.args, ["--queue", "jobs"]);
    assert_eq!((w.port, w.replicas), (Port::Auto, 2));
    assert_eq!(w.cpu_millis, Some(2000), "`cpus` is `cpu`");
    assert_eq!(w.ram, Some(512 << 20));
    assert_eq!(w.restart, Restart::Always);
    let health = Health {
        check: http(HttpMethod::Head, "/ready", 200),
        interval: secs(30),
        timeout: secs(5),
        retries: 1,
    };
    assert_eq!(w.health, Some(health));
    let scale = Scale {
        min: 1,
        max: 4,
        cpu_above: 80,
        cpu_below: 30,
    };
    assert_eq!(w.scale, Some(scale));
    let env = vars(&[
        ("QUEUE_URL", "amqp://mq.internal:5672/%2f"),
        ("WORKERS", "8"),
    ]);
    assert_eq!(w.env, env);
    assert_eq!(exposed(w), [("MQ_PASSWORD", "hunter2")]);
    let volume = Volume {
        path: "/srv/worker/spool".into(),
        env: Some("SPOOL_DIR".into()),
    };
    assert_eq!(w.volumes, [volume]);
}

#[test]
fn inline_file_reads_one_line_blocks() {
    let apps = corpus_file("03-inline.skr8tr");
    let [c] = apps.as_slice() else {
        panic!("{apps:?}")
    };
    assert_eq!(c.args, ["-p", "$PORT", "-m", "64"]);
    let health = c.health.as_ref().expect("health");
    assert_eq!((&health.check, health.retries), (&Check::Tcp, 2));
    assert_eq!((health.interval, health.timeout), (secs(10), secs(2)));
    let scale = c.scale.as_ref().expect("scale");
    assert_eq!((scale.min, scale.max), (1, 3));
    assert_eq!((scale.cpu_above, scale.cpu_below), (90, 10));
    assert_eq!(c.env, vars(&[("LANG", "C.UTF-8"), ("TZ", "UTC")]));
    assert_eq!(exposed(c), [("SASL_PASS", "pw")]);
    let paths: Vec<_> = c
        .volumes
        .iter()
        .map(|v| (&*v.path, v.env.as_deref()))
        .collect();
    assert_eq!(
        paths,
        [
            ("/var/lib/cache", Some("CACHE_DIR")),
            ("/var/log/cache", None)
        ]
    );
}

#[test]
fn app_braces_file_holds_two_apps() {
    let apps = corpus_file("04-app-braces.skr8tr");
    let names: Vec<_> = apps.iter().map(|a| (a.name.as_str(), a.line)).collect();
    assert_eq!(names, [("frontend", 2), ("backend", 13)]);
    let (front, back) = (&apps[0], &apps[1]);
    assert_eq!(front.port, Port::Fixed(3000));
    let check = front.health.as_ref().map(|h| &h.check);
    assert_eq!(check, Some(&http(HttpMethod::Get, "/status", 200)));
    let env = vars(&[("BACKEND_URL", "http://backend.internal:4000")]);
    assert_eq!(front.env, env);
    assert_eq!((back.port, back.replicas), (Port::Fixed(4000), 3));
    let health = Health {
        check: Check::Tcp,
        interval: secs(3),
        timeout: secs(1),
        retries: 3,
    };
    assert_eq!(back.health, Some(health));
}

#[test]
fn kinds_file_has_jobs_and_wasm() {
    let apps = corpus_file("05-kinds.skr8tr");
    let migrate = AppSpec {
        kind: AppKind::Job,
        args: strings(&["--to", "latest"]),
        restart: Restart::Never, // a job's default
        ..defaults("migrate", "/opt/db/bin/migrate", 2)
    };
    let backup = AppSpec {
        kind: AppKind::Job,
        restart: Restart::Never,
        replicas: 2,
        drain: secs(60),
        settle: Duration::ZERO,
        ..defaults("backup", "/opt/db/bin/backup", 7)
    };
    let filter = AppSpec {
        kind: AppKind::Wasm,
        port: Port::Fixed(9000),
        ram: Some(64 << 20),
        cpu_millis: Some(250),
        ..defaults("edge-filter", "/opt/wasm/filter.wasm", 15)
    };
    assert_eq!(apps, [migrate, backup, filter]);
}

#[test]
fn static_file_builds_and_serves() {
    let apps = corpus_file("06-static.skr8tr");
    let docs = AppSpec {
        exec: None,
        port: Port::Fixed(8000), // from `serve { port }`
        replicas: 2,
        build: Some(Build {
            run: strings(&["npm ci", "npm run build -- --mode production"]),
            out: Some("dist".into()),
        }),
        serve: Some(Serve { dir: "dist".into() }),
        ..defaults("docs", "", 2)
    };
    let blog = AppSpec {
        exec: None,
        build: Some(Build {
            run: strings(&["hugo --minify"]),
            out: None,
        }),
        serve: Some(Serve {
            dir: "public".into(),
        }),
        ..defaults("blog", "", 14)
    };
    assert_eq!(apps, [docs, blog]);
}

#[test]
fn vm_file_sets_every_vm_key_and_defaults() {
    let apps = corpus_file("07-vm.skr8tr");
    let vms: Vec<_> = apps.iter().map(|a| (a.kind, a.exec.clone())).collect();
    assert_eq!(vms, vec![(AppKind::Vm, None); 3]);
    let sandbox = Vm {
        hypervisor: Hypervisor::Firecracker,
        kernel: "/var/lib/vms/vmlinux".into(),
        rootfs: "/var/lib/vms/rootfs.ext4".into(),
        vcpus: 2,
        memory: 1 << 30,
        net: Some("tap0".into()),
        args: strings(&["--boot-args", "console=ttyS0 reboot=k"]),
        binary: None,
    };
    assert_eq!(apps[0].vm, Some(sandbox));
    assert_eq!((apps[0].port, apps[0].replicas), (Port::Fixed(8080), 2));
    let check = apps[0].health.as_ref().map(|h| &h.check);
    assert_eq!(check, Some(&http(HttpMethod::Get, "/ping", 200)));
    let legacy = Vm {
        hypervisor: Hypervisor::CloudHypervisor,
        kernel: "/vm/legacy/kernel".into(),
        rootfs: "/vm/legacy/disk.img".into(),
        vcpus: 1,
        memory: 256 << 20,
        net: None,
        args: Vec::new(),
        binary: None,
    };
    assert_eq!(apps[1].vm, Some(legacy));
    let qemu = apps[2].vm.as_ref().expect("vm");
    assert_eq!(
        (qemu.hypervisor, qemu.memory),
        (Hypervisor::Qemu, 2048 << 20)
    );
}
