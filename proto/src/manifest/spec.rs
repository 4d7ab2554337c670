//! `AppSpec`: one `app` block of a manifest, typed and checked, with every
//! default written down here. It crosses process boundaries (conductor store,
//! node assignments) as postcard, so fields and enum variants only ever get
//! appended — never reordered.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::time::Duration;

/// Default `replicas` of an app without a `scale` block. With one, an
/// unwritten `replicas` defaults to `scale { min }` instead, so the app
/// starts inside its range.
pub const DEFAULT_REPLICAS: u32 = 1;
/// Most replicas one app may ask for.
pub const MAX_REPLICAS: u32 = 1000;
/// Default `drain`: how long a stopping replica gets between SIGTERM and SIGKILL.
pub const DEFAULT_DRAIN: Duration = Duration::from_secs(2);
/// Default `settle`: without a health check, a replica alive this long is ready.
pub const DEFAULT_SETTLE: Duration = Duration::from_secs(8);
/// Default health `interval`.
pub const DEFAULT_HEALTH_INTERVAL: Duration = Duration::from_secs(10);
/// Default health `timeout`.
pub const DEFAULT_HEALTH_TIMEOUT: Duration = Duration::from_secs(2);
/// Default health `retries`: failures in a row before the replica is restarted.
pub const DEFAULT_HEALTH_RETRIES: u32 = 3;
/// Default `scale { min }`.
pub const DEFAULT_SCALE_MIN: u32 = 1;
/// Default `scale { cpu-above }`, in percent of the app's CPU share.
pub const DEFAULT_CPU_ABOVE: u8 = 80;
/// Default `scale { cpu-below }`.
pub const DEFAULT_CPU_BELOW: u8 = 20;
/// Default `vm { vcpus }`.
pub const DEFAULT_VM_VCPUS: u32 = 1;
/// Default `vm { memory }`: 256 MiB.
pub const DEFAULT_VM_MEMORY: u64 = 256 << 20;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppSpec {
    /// `app NAME`: lowercase letters, digits and `-`, at most 63 characters.
    pub name: String,
    /// `type`, default `service`.
    pub kind: AppKind,
    /// `exec`/`bin`: the program to run. `None` only when `serve` or `vm`
    /// supplies the program.
    pub exec: Option<String>,
    /// `args`, split like a shell would; `$PORT` is left for the node.
    pub args: Vec<String>,
    /// `port`, default `auto` (the node picks one from its range).
    pub port: Port,
    /// `replicas`, from 1 to 1000; default 1, or `scale { min }` when the
    /// app has a `scale` block.
    pub replicas: u32,
    /// `ram` in bytes; `None` means no reservation.
    pub ram: Option<u64>,
    /// `cpu`/`cpus` in thousandths of a core; `None` means no reservation.
    pub cpu_millis: Option<u32>,
    /// `gpu`, default false.
    pub gpu: bool,
    /// `restart`, default `always` for services and `never` for jobs.
    pub restart: Restart,
    /// `drain`, default 2 s.
    pub drain: Duration,
    /// `settle`, default 8 s.
    pub settle: Duration,
    pub health: Option<Health>,
    pub scale: Option<Scale>,
    /// `env { NAME value }`, in file order.
    pub env: Vec<(String, String)>,
    /// `secret { NAME value }`: passed to the process like env, never shown.
    pub secrets: Vec<(String, Secret)>,
    pub volumes: Vec<Volume>,
    pub build: Option<Build>,
    pub serve: Option<Serve>,
    pub vm: Option<Vm>,
    /// Line of the `app` keyword in its manifest, for messages.
    pub line: u32,
    /// `constraint KEY=VALUE` (repeatable): only nodes with every one of
    /// these labels run the app.
    pub constraints: Vec<(String, String)>,
    /// `spread KEY`: replicas spread evenly over the values nodes have for
    /// this label.
    pub spread: Option<String>,
    /// `user NAME`: the replica runs as this user (and its primary group).
    pub user: Option<String>,
    /// `group NAME`: the replica's group instead of the user's primary one.
    pub group: Option<String>,
    /// `disconnect { stop-after 20s }`: stop replicas on a node out of
    /// contact with the conductor that long; `None` keeps them running.
    pub disconnect: Option<Disconnect>,
}

/// `route` and `host`: how the ingress reaches an app. Kept beside the
/// spec, not in it: changing where an app is served never restarts it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Routing {
    pub app: String,
    /// A path prefix (`/api`).
    pub route: Option<String>,
    /// A host name (`api.example.com`), lowercase.
    pub host: Option<String>,
}

/// `disconnect { … }`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Disconnect {
    /// `stop-after`: out of contact this long, the node stops the replica.
    pub stop_after: Duration,
}

/// The shortest `stop-after`: a few heartbeats, so a late report or two
/// does not stop a replica.
pub const MIN_STOP_AFTER: Duration = Duration::from_secs(3);

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum AppKind {
    /// A long-running process (`type service`, alias `process`).
    Service,
    /// Runs to completion; its exit code is reported.
    Job,
    /// A WebAssembly module run by a runtime on the node.
    Wasm,
    /// A micro-VM described by the `vm` block.
    Vm,
}

impl AppKind {
    pub fn as_str(self) -> &'static str {
        match self {
            AppKind::Service => "service",
            AppKind::Job => "job",
            AppKind::Wasm => "wasm",
            AppKind::Vm => "vm",
        }
    }
}

impl fmt::Display for AppKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Port {
    /// The node picks a free port from its range.
    Auto,
    /// Every replica listens on this port; at most one per node.
    Fixed(u16),
}

impl fmt::Display for Port {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Port::Auto => f.write_str("auto"),
            Port::Fixed(p) => write!(f, "{p}"),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Restart {
    Always,
    OnFailure,
    Never,
}

impl Restart {
    pub fn as_str(self) -> &'static str {
        match self {
            Restart::Always => "always",
            Restart::OnFailure => "on-failure",
            Restart::Never => "never",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Health {
    pub check: Check,
    /// Time between probes once the replica is ready, default 10 s.
    pub interval: Duration,
    /// How long one probe may take, default 2 s.
    pub timeout: Duration,
    /// Failures in a row before the replica is restarted, default 3.
    pub retries: u32,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Check {
    /// `check GET /path 200`: the status defaults to 200.
    Http {
        method: HttpMethod,
        path: String,
        status: u16,
    },
    /// `check tcp`: a connection to the port is accepted.
    Tcp,
}

impl fmt::Display for Check {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Check::Http {
                method,
                path,
                status,
            } => write!(f, "{} {path} {status}", method.as_str()),
            Check::Tcp => f.write_str("tcp"),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum HttpMethod {
    Get,
    Head,
}

impl HttpMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            HttpMethod::Get => "GET",
            HttpMethod::Head => "HEAD",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Scale {
    pub min: u32,
    pub max: u32,
    /// Add a replica when average CPU use is above this percentage.
    pub cpu_above: u8,
    /// Remove a replica when average CPU use is below this percentage.
    pub cpu_below: u8,
}

/// A secret value: it reaches the process's environment and nothing else —
/// `Debug` shows `***` so it cannot leak into a log line by accident.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: String) -> Secret {
        Secret(value)
    }

    /// The clear value, for the one place that needs it: the child's environment.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Volume {
    /// Absolute directory on the node, created if missing.
    pub path: String,
    /// Environment variable that receives the path, if any.
    pub env: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Build {
    /// Shell commands run in order before the first start.
    pub run: Vec<String>,
    /// What the build produces (a path), if it says.
    pub out: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Serve {
    /// Directory served as static files by Skr8tr's built-in server.
    pub dir: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Vm {
    pub hypervisor: Hypervisor,
    pub kernel: String,
    pub rootfs: String,
    /// Default 1.
    pub vcpus: u32,
    /// Bytes, default 256 MiB.
    pub memory: u64,
    /// Network attachment (for example a tap device name), if any.
    pub net: Option<String>,
    /// Extra hypervisor arguments.
    pub args: Vec<String>,
    /// `hypervisor /usr/bin/firecracker`: the program to run, when given
    /// as a path (its file name names the hypervisor).
    pub binary: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Hypervisor {
    Firecracker,
    Qemu,
    CloudHypervisor,
}

impl Hypervisor {
    pub const NAMES: [&'static str; 3] = ["firecracker", "qemu", "cloud-hypervisor"];
}
