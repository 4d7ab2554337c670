//! A real cluster on this machine for tests and benchmarks: the `skr8tr`
//! binary as conductor and nodes, each in its own process, an operator key,
//! and helpers that wait for conditions with deadlines instead of sleeping.
//! Every process is killed when the `Cluster` is dropped (replicas die with
//! their node agent).

use skr8tr_net::Client;
use skr8tr_proto::wire::{self, PingReply, ReplicaState, ReplicaView};

pub use crate::load::{Load, LoadReport};
pub use crate::procs::*;
use std::collections::BTreeMap;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// How a test's cluster differs from the default one.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// More flags for `skr8tr conductor`.
    pub conductor_args: Vec<String>,
    /// Start the conductor, nodes and ingress with this open-file limit
    /// (soft and hard), through `prlimit`.
    pub file_limit: Option<u32>,
    /// More environment for node agents started from now on (a faked
    /// clock, say).
    pub node_env: Vec<(String, String)>,
    /// Put the conductor's data directory on a tmpfs of this size
    /// (`16m`), so a test can fill it.
    pub conductor_disk: Option<String>,
    /// Run the conductor, every node and the ingress each on a host of
    /// their own ([`crate::fleet`]: network namespaces on a bridge), so a
    /// test can cut and degrade links between them.
    pub fleet: bool,
    /// The conductor's `--lost-after` (and the nodes' `--grace`) instead
    /// of the tests' quick 2 s.
    pub lost_after: Option<&'static str>,
}

pub struct Cluster {
    options: Options,
    ingress: Option<Child>,
    pub dir: PathBuf,
    pub url: String,
    pub port: u16,
    conductor: Option<Child>,
    nodes: BTreeMap<String, Child>,
    next_range: u16,
    pub lost_after: &'static str,
    disk: Option<crate::disk::SmallDisk>,
    fleet: Option<crate::fleet::Fleet>,
}

/// The `skr8tr` binary, built next to this crate's binaries.
pub fn skr8tr_bin() -> PathBuf {
    let here = std::env::current_exe().expect("test binary path");
    let mut dir = here.parent().expect("deps dir").to_path_buf();
    if dir.ends_with("deps") {
        dir.pop();
    }
    let bin = dir.join("skr8tr");
    assert!(
        bin.exists(),
        "{} is missing: build it first with `cargo build -p skr8tr` (cargo test --workspace does)",
        bin.display()
    );
    bin
}

/// The test workload binary (`chaos-tests/src/bin/workload.rs`).
pub fn workload_bin() -> PathBuf {
    skr8tr_bin().with_file_name("skr8tr-workload")
}

pub fn free_port() -> u16 {
    // Handed to a child that binds it later, so it must stay free until
    // then: a port from the kernel's ephemeral range (`bind(0)`) does not,
    // since any outgoing connection may take it as its local port in the
    // meantime — the child then fails with "Address already in use", or a
    // poll that connects to the port reaches itself (a TCP self-connect)
    // and reports a server that is not there. So pick below that range,
    // each port once per process, from a per-process offset.
    use std::sync::atomic::{AtomicU16, Ordering};
    const LOW: u16 = 12000;
    const SPAN: u16 = 8000; // 12000..20000: below node port ranges too
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let offset = (std::process::id() % u32::from(SPAN)) as u16;
    for _ in 0..SPAN {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = LOW + (offset.wrapping_add(n) % SPAN);
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port in {LOW}..{}", LOW + SPAN);
}

/// Each cluster of this process gets its own 1000 ports for its nodes, so
/// clusters of tests running in parallel never hand out the same port.
/// They stay below the kernel's ephemeral range (32768 and up), which
/// outgoing connections draw from (see [`free_port`]).
fn next_port_block() -> u16 {
    use std::sync::atomic::{AtomicU16, Ordering};
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed) % 12;
    20000 + n * 1000
}

/// Polls `f` until it returns `Some`, or panics after `timeout` saying what
/// was awaited.
pub fn wait_for<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            start.elapsed() < timeout,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(25));
    }
}

impl Cluster {
    /// Makes an operator key and starts a conductor on a free port.
    pub fn start(name: &str) -> Cluster {
        Cluster::start_with(name, Options::default())
    }

    /// [`Cluster::start`] with `options`.
    pub fn start_with(name: &str, options: Options) -> Cluster {
        let dir =
            std::env::temp_dir().join(format!("skr8tr-cluster-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("cluster dir");
        let port = free_port();
        let mut fleet = options.fleet.then(crate::fleet::Fleet::new);
        let ip = fleet.as_mut().map_or("127.0.0.1".to_string(), |f| {
            f.host("conductor").ip.to_string()
        });
        let lost_after = options.lost_after.unwrap_or("2s");
        let mut c = Cluster {
            options,
            url: format!("https://{ip}:{port}"),
            dir,
            port,
            conductor: None,
            ingress: None,
            nodes: BTreeMap::new(),
            next_range: next_port_block(),
            lost_after,
            disk: None,
            fleet,
        };
        if let Some(size) = c.options.conductor_disk.clone() {
            c.disk = Some(crate::disk::SmallDisk::mount(&c.data(), &size));
        }
        let out = c.skr8tr(&["keygen"]);
        assert!(
            out.status.success(),
            "keygen: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        c.start_conductor();
        c
    }

    /// The options daemons started from now on get.
    pub fn options_mut(&mut self) -> &mut Options {
        &mut self.options
    }

    /// The hosts, with `Options::fleet`.
    pub fn fleet(&self) -> Option<&crate::fleet::Fleet> {
        self.fleet.as_ref()
    }

    /// The address `host` (`conductor`, a node's label, `ingress`) listens
    /// on: its own with a fleet, else loopback.
    pub fn host_ip(&mut self, host: &str) -> String {
        self.fleet
            .as_mut()
            .map_or("127.0.0.1".to_string(), |f| f.host(host).ip.to_string())
    }

    /// A daemon's command on `host`: in its namespace with a fleet, else
    /// [`Cluster::daemon`].
    fn daemon_on(&mut self, host: &str, args: &[&str]) -> Command {
        let Some(fleet) = self.fleet.as_mut() else {
            return self.daemon(args);
        };
        let mut cmd = fleet.command(host, &skr8tr_bin());
        cmd.args(args);
        self.operator_env(cmd)
    }

    /// The environment every command of this cluster runs with.
    fn operator_env(&self, mut cmd: Command) -> Command {
        cmd.env("HOME", self.home())
            .env("SKR8TR_CONDUCTOR", &self.url)
            .env("SKR8TR_PIN", self.pin_file())
            .env_remove("SKR8TR_KEY");
        cmd
    }

    /// The conductor's small disk, if `Options::conductor_disk` gave one.
    pub fn conductor_disk(&self) -> Option<&crate::disk::SmallDisk> {
        self.disk.as_ref()
    }

    pub fn ingress_pid(&self) -> Option<u32> {
        self.ingress.as_ref().map(Child::id)
    }

    pub fn home(&self) -> PathBuf {
        self.dir.join("home")
    }

    pub fn data(&self) -> PathBuf {
        self.dir.join("conductor")
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(skr8tr_bin());
        cmd.args(args);
        self.operator_env(cmd)
    }

    /// The conductor's `tls.pin`, which every command and daemon pins.
    pub fn pin_file(&self) -> PathBuf {
        self.data().join("tls.pin")
    }

    /// The conductor's TLS pin (once it has made its identity).
    pub fn pin(&self) -> Option<skr8tr_net::Pin> {
        skr8tr_net::Pin::from_arg(&self.pin_file().display().to_string()).ok()
    }

    /// A daemon's command: [`Cluster::command`], under `prlimit` when the
    /// options set a file limit.
    pub fn daemon(&self, args: &[&str]) -> Command {
        let Some(limit) = self.options.file_limit else {
            return self.command(args);
        };
        let mut cmd = Command::new("prlimit");
        cmd.arg(format!("--nofile={limit}:{limit}"))
            .arg("--")
            .arg(skr8tr_bin())
            .args(args);
        self.operator_env(cmd)
    }

    /// Runs an operator command to completion.
    pub fn skr8tr(&self, args: &[&str]) -> Output {
        self.command(args).output().expect("run skr8tr")
    }

    /// Runs an operator command and returns its stdout; panics on failure.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.skr8tr(args);
        assert!(
            out.status.success(),
            "skr8tr {args:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    pub fn start_conductor(&mut self) {
        let log = std::fs::File::create(self.dir.join("conductor.log")).expect("log file");
        let pub_key = self.home().join(".skr8tr/signing.pub");
        let (data, listen, init_key) = (
            self.data().display().to_string(),
            format!("{}:{}", self.host_ip("conductor"), self.port),
            pub_key.display().to_string(),
        );
        let extra = self.options.conductor_args.clone();
        let mut args = vec![
            "conductor",
            "--data",
            &data,
            "--listen",
            &listen,
            "--init-key",
            &init_key,
            "--lost-after",
            self.lost_after,
        ];
        args.extend(extra.iter().map(String::as_str));
        let child = self
            .daemon_on("conductor", &args)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start conductor");
        self.conductor = Some(child);
        wait_for("the conductor's TLS pin", Duration::from_secs(30), || {
            self.pin()
        });
        let client = self.client();
        wait_for("the conductor to answer", Duration::from_secs(30), || {
            block_on(client.get("/v1/ping", Duration::from_secs(2)))
                .ok()
                .filter(|(s, _)| s.is_success())
        });
    }

    /// SIGKILL: no shutdown path runs.
    pub fn kill_conductor(&mut self) -> u32 {
        let mut c = self.conductor.take().expect("a running conductor");
        let pid = c.id();
        let _ = c.kill();
        let _ = c.wait();
        pid
    }

    pub fn conductor_pid(&self) -> Option<u32> {
        self.conductor.as_ref().map(Child::id)
    }

    /// Makes a join ticket for `name` and starts the node with it and
    /// `extra` flags (later starts of the same node need no ticket).
    pub fn start_admitted(&mut self, name: &str, extra: &[&str]) {
        let ticket = self
            .dir
            .join(format!("{name}.ticket"))
            .display()
            .to_string();
        self.ok(&["ticket", name, "--out", &ticket]);
        let mut args = vec!["--ticket", ticket.as_str()];
        args.extend_from_slice(extra);
        self.start_node_with(name, &args);
    }

    /// Makes a join ticket for `name` and starts the node with it.
    pub fn start_node(&mut self, name: &str) {
        let ticket = self.dir.join(format!("{name}.ticket"));
        self.ok(&["ticket", name, "--out", &ticket.display().to_string()]);
        self.start_node_with(name, &["--ticket", &ticket.display().to_string()]);
    }

    /// Starts a node agent with extra flags (no ticket is made).
    pub fn start_node_with(&mut self, name: &str, extra: &[&str]) {
        self.start_node_labelled(name, name, extra);
    }

    /// Starts node `name` whose process, log (`node-LABEL.log`) and data
    /// directory go by `label` (two agents may claim one name).
    pub fn start_node_labelled(&mut self, label: &str, name: &str, extra: &[&str]) {
        let range = format!("{}-{}", self.next_range, self.next_range + 199);
        self.next_range += 200;
        let log =
            std::fs::File::create(self.dir.join(format!("node-{label}.log"))).expect("log file");
        let key = self.data().join("conductor.pub").display().to_string();
        let data = self.dir.join(format!("node-{label}")).display().to_string();
        let advertise = self.host_ip(label);
        let mut args = vec![
            "node",
            "--advertise",
            &advertise,
            "--conductor-key",
            &key,
            "--name",
            name,
            "--port-range",
            &range,
            "--data",
            &data,
        ];
        // Replicas outlive a dead agent as long as the conductor takes to
        // call the node lost, unless the test says otherwise.
        if !extra.contains(&"--grace") {
            args.extend(["--grace", self.lost_after]);
        }
        args.extend_from_slice(extra);
        let env = self.options.node_env.clone();
        let child = self
            .daemon_on(label, &args)
            .envs(env)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start node");
        self.nodes.insert(label.to_string(), child);
    }

    /// How a node agent ended, if it has.
    pub fn node_exit(&mut self, name: &str) -> Option<std::process::ExitStatus> {
        self.nodes.get_mut(name)?.try_wait().ok()?
    }

    pub fn node_pid(&self, name: &str) -> Option<u32> {
        self.nodes.get(name).map(Child::id)
    }

    /// SIGTERM a node agent and wait for it to exit: its replicas keep
    /// running under their shims for the grace.
    pub fn stop_node(&mut self, name: &str) {
        if let Some(mut c) = self.nodes.remove(name) {
            let status = Command::new("kill")
                .args(["-TERM", &c.id().to_string()])
                .status()
                .expect("run kill");
            assert!(status.success());
            let _ = c.wait();
        }
    }

    /// SIGKILL a node agent: its replicas stop by themselves once the
    /// grace (`--grace`, by default here the lost-node timeout) is over.
    pub fn kill_node(&mut self, name: &str) {
        if let Some(mut c) = self.nodes.remove(name) {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts `skr8tr ingress` with `routes`; returns its address once it
    /// answers.
    pub fn start_ingress(&mut self, routes: &[&str]) -> String {
        self.start_ingress_with(routes, &[])
    }

    /// [`Cluster::start_ingress`] with extra flags. Its key (in the
    /// cluster's home) is admitted with a fresh ticket each start; once
    /// admitted, the ticket is not needed again.
    pub fn start_ingress_with(&mut self, routes: &[&str], extra: &[&str]) -> String {
        let addr = format!("{}:{}", self.host_ip("ingress"), free_port());
        let ticket = self.dir.join("ingress.ticket").display().to_string();
        self.ok(&["ticket", "--ingress", "edge", "--out", &ticket]);
        let mut args = vec![
            "ingress", "--listen", &addr, "--name", "edge", "--ticket", &ticket,
        ];
        args.extend_from_slice(extra);
        for r in routes {
            args.push("--route");
            args.push(r);
        }
        let log = std::fs::File::create(self.dir.join("ingress.log")).expect("log file");
        let child = self
            .daemon_on("ingress", &args)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start ingress");
        self.ingress = Some(child);
        wait_for("the ingress to listen", Duration::from_secs(30), || {
            std::net::TcpStream::connect(&addr).ok().map(|_| ())
        });
        // Its first registry (a TLS session and, the first time, its
        // admission) comes a moment after it listens.
        wait_for(
            "the ingress's first registry",
            Duration::from_secs(30),
            || {
                self.log("ingress.log")
                    .contains("INFO registry: ")
                    .then_some(())
            },
        );
        addr
    }

    /// An operator's client of the conductor: pinned, its sessions
    /// proven with the operator key.
    pub fn client(&self) -> Client {
        self.anonymous_client().with_auth(skr8tr_net::Auth::new(
            std::sync::Arc::new(self.operator_key()),
            skr8tr_proto::wire::Role::Operator,
        ))
    }

    /// A pinned client that proves no key (only `ping` answers it).
    pub fn anonymous_client(&self) -> Client {
        Client::new(&self.url, self.pin().expect("the conductor's TLS pin")).expect("conductor URL")
    }

    pub fn ping(&self) -> Option<PingReply> {
        let (status, body) =
            block_on(self.client().get("/v1/ping", Duration::from_secs(2))).ok()?;
        status
            .is_success()
            .then(|| wire::decode(&body).ok())
            .flatten()
    }

    pub fn replicas(&self, app: &str) -> Vec<ReplicaView> {
        block_on(
            self.client()
                .get(&format!("/v1/replicas?app={app}"), Duration::from_secs(5)),
        )
        .ok()
        .and_then(|(_, body)| wire::decode(&body).ok())
        .unwrap_or_default()
    }

    /// Waits until `app` has exactly `n` replicas, all ready.
    pub fn wait_ready(&self, app: &str, n: usize, timeout: Duration) -> Vec<ReplicaView> {
        wait_for(&format!("{n} ready replicas of {app}"), timeout, || {
            let r = self.replicas(app);
            (r.len() == n && r.iter().all(|r| r.state == Some(ReplicaState::Ready))).then_some(r)
        })
    }

    /// Writes a manifest into the cluster directory; `{workload}` is
    /// replaced by the test workload's path.
    pub fn manifest(&self, name: &str, text: &str) -> PathBuf {
        let path = self.dir.join(name);
        let text = text.replace("{workload}", &workload_bin().display().to_string());
        std::fs::write(&path, text).expect("write manifest");
        path
    }

    /// The operator key `Cluster::start` made.
    pub fn operator_key(&self) -> skr8tr_proto::keys::SecretKey {
        skr8tr_proto::keys::read_secret_key(&self.home().join(".skr8tr/signing.sec"))
            .expect("the operator key")
    }

    /// POSTs a command request body and decodes the conductor's reply.
    pub fn post_command(&self, body: Vec<u8>) -> wire::CommandReply {
        let (_, bytes) = block_on(self.client().post(
            "/v1/commands",
            body,
            Duration::from_secs(30),
        ))
        .expect("the conductor answers");
        wire::decode(&bytes).expect("a command reply")
    }

    pub fn log(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.join(name)).unwrap_or_default()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let names: Vec<String> = self.nodes.keys().cloned().collect();
        for n in names {
            self.kill_node(&n);
        }
        if self.conductor.is_some() {
            self.kill_conductor();
        }
        if let Some(mut i) = self.ingress.take() {
            let _ = i.kill();
            let _ = i.wait();
        }
        self.disk.take();
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        } else {
            eprintln!("cluster files kept for inspection: {}", self.dir.display());
        }
    }
}
