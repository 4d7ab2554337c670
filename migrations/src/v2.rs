//! The `specs` table as schemas 1 and 2 wrote it, frozen: an app spec
//! before the placement and identity keys (`constraint`, `spread`, `user`,
//! `group`) and the hypervisor path of a `vm` block. Only read, by the step
//! to schema 3, which converts each value to schema 3's (`v3`).
//!
//! Field order is the postcard encoding: never edit these types. The
//! nested types taken from today's `manifest` (health, scale, volumes, …)
//! have not changed since schema 2; a change to one of them must freeze it
//! here too.

use crate::v3;
use serde::Deserialize;
use skr8tr_proto::manifest as now;
use std::time::Duration;

#[derive(Deserialize)]
pub enum StoredSpec {
    V1(SpecRecord),
}

#[derive(Deserialize)]
pub struct SpecRecord {
    pub spec: Spec,
    pub file: String,
    pub manifest: String,
    pub hash: [u8; 32],
}

#[derive(Deserialize)]
pub struct Spec {
    name: String,
    kind: now::AppKind,
    exec: Option<String>,
    args: Vec<String>,
    port: now::Port,
    replicas: u32,
    ram: Option<u64>,
    cpu_millis: Option<u32>,
    gpu: bool,
    restart: now::Restart,
    drain: Duration,
    settle: Duration,
    health: Option<now::Health>,
    scale: Option<now::Scale>,
    env: Vec<(String, String)>,
    secrets: Vec<(String, now::Secret)>,
    volumes: Vec<now::Volume>,
    build: Option<now::Build>,
    serve: Option<now::Serve>,
    vm: Option<Vm>,
    line: u32,
}

#[derive(Deserialize)]
struct Vm {
    hypervisor: now::Hypervisor,
    kernel: String,
    rootfs: String,
    vcpus: u32,
    memory: u64,
    net: Option<String>,
    args: Vec<String>,
}

impl SpecRecord {
    /// The same record in schema 3 (frozen in `v3`): no constraints, no
    /// spread, the node's user, the hypervisor found on the PATH.
    pub fn upgrade(self) -> v3::StoredSpec {
        let s = self.spec;
        v3::StoredSpec::V1(v3::SpecRecord {
            spec: v3::Spec {
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
                vm: s.vm.map(|v| v3::Vm {
                    hypervisor: v.hypervisor,
                    kernel: v.kernel,
                    rootfs: v.rootfs,
                    vcpus: v.vcpus,
                    memory: v.memory,
                    net: v.net,
                    args: v.args,
                    binary: None,
                }),
                line: s.line,
                constraints: Vec::new(),
                spread: None,
                user: None,
                group: None,
            },
            file: self.file,
            manifest: self.manifest,
            hash: self.hash,
        })
    }
}

/// Decodes one schema-2 `specs` value, strictly.
pub fn decode(bytes: &[u8]) -> Result<SpecRecord, String> {
    match postcard::take_from_bytes::<StoredSpec>(bytes) {
        Ok((StoredSpec::V1(r), [])) => Ok(r),
        Ok((_, rest)) => Err(format!("{} bytes left over", rest.len())),
        Err(e) => Err(e.to_string()),
    }
}
