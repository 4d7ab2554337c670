//! The `specs` table as schema 3 wrote it, frozen: an app spec before
//! `disconnect { stop-after }`. Written by the step from schema 2 and read
//! by the step to schema 4, which converts each value to today's
//! [`AppSpec`] (no `disconnect`: replicas keep running, as they did).
//!
//! Field order is the postcard encoding: never edit these types. The
//! nested types taken from today's `manifest` (health, scale, volumes, …)
//! have not changed since schema 3; a change to one of them must freeze it
//! here too.

use serde::{Deserialize, Serialize};
use skr8tr_proto::manifest::{self as now, AppSpec};
use std::time::Duration;

#[derive(Serialize, Deserialize)]
pub enum StoredSpec {
    V1(SpecRecord),
}

#[derive(Serialize, Deserialize)]
pub struct SpecRecord {
    pub spec: Spec,
    pub file: String,
    pub manifest: String,
    pub hash: [u8; 32],
}

/// Today's `specs` value, as the store writes it (`StoredSpec::V1`).
#[derive(Serialize)]
pub enum StoredSpecNow {
    V1(SpecRecordNow),
}

#[derive(Serialize)]
pub struct SpecRecordNow {
    pub spec: AppSpec,
    pub file: String,
    pub manifest: String,
    pub hash: [u8; 32],
}

#[derive(Serialize, Deserialize)]
pub struct Spec {
    pub name: String,
    pub kind: now::AppKind,
    pub exec: Option<String>,
    pub args: Vec<String>,
    pub port: now::Port,
    pub replicas: u32,
    pub ram: Option<u64>,
    pub cpu_millis: Option<u32>,
    pub gpu: bool,
    pub restart: now::Restart,
    pub drain: Duration,
    pub settle: Duration,
    pub health: Option<now::Health>,
    pub scale: Option<now::Scale>,
    pub env: Vec<(String, String)>,
    pub secrets: Vec<(String, now::Secret)>,
    pub volumes: Vec<now::Volume>,
    pub build: Option<now::Build>,
    pub serve: Option<now::Serve>,
    pub vm: Option<Vm>,
    pub line: u32,
    pub constraints: Vec<(String, String)>,
    pub spread: Option<String>,
    pub user: Option<String>,
    pub group: Option<String>,
}

#[derive(Serialize, Deserialize)]
pub struct Vm {
    pub hypervisor: now::Hypervisor,
    pub kernel: String,
    pub rootfs: String,
    pub vcpus: u32,
    pub memory: u64,
    pub net: Option<String>,
    pub args: Vec<String>,
    pub binary: Option<String>,
}

impl SpecRecord {
    /// The same record in today's schema: no `disconnect` block.
    pub fn upgrade(self) -> StoredSpecNow {
        let s = self.spec;
        StoredSpecNow::V1(SpecRecordNow {
            spec: AppSpec {
                name: s.name,
                kind: s.kind,
                exec: s.exec,
                args: s.args,
                port: s.port,
                replicas: s.replicas,
                ram: s.ram,
                cpu_millis: s.cpu_millis,
                gpu: s.gpu,
                restart: s.restart,
                drain: s.drain,
                settle: s.settle,
                health: s.health,
                scale: s.scale,
                env: s.env,
                secrets: s.secrets,
                volumes: s.volumes,
                build: s.build,
                serve: s.serve,
                vm: s.vm.map(|v| now::Vm {
                    hypervisor: v.hypervisor,
                    kernel: v.kernel,
                    rootfs: v.rootfs,
                    vcpus: v.vcpus,
                    memory: v.memory,
                    net: v.net,
                    args: v.args,
                    binary: v.binary,
                }),
                line: s.line,
                constraints: s.constraints,
                spread: s.spread,
                user: s.user,
                group: s.group,
                disconnect: None,
            },
            file: self.file,
            manifest: self.manifest,
            hash: self.hash,
        })
    }
}

/// Decodes one schema-3 `specs` value, strictly.
pub fn decode(bytes: &[u8]) -> Result<SpecRecord, String> {
    match postcard::take_from_bytes::<StoredSpec>(bytes) {
        Ok((StoredSpec::V1(r), [])) => Ok(r),
        Ok((_, rest)) => Err(format!("{} bytes left over", rest.len())),
        Err(e) => Err(e.to_string()),
    }
}
