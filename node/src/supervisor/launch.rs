//! A replica's start: its build (if any), owner, cgroup and launch plan,
//! then its shim, which forks it.

use super::lock;
use super::replica::Replica;
use crate::cgroup;
use crate::process::{self, LaunchPlan};
use crate::shim::client::{self, LaunchError, Shim};
use crate::shim::{self as shim_proto, Plan};
use skr8tr_proto::wire::ReplicaState;

impl Replica {
    /// Builds the app if it has a `build`, sets up the replica's cgroup
    /// and starts its shim, which forks it. `Err` is the message, a shell's
    /// exit code and the state to show until the next try.
    pub(super) async fn launch(&self, port: u16) -> Result<Shim, (String, i32, ReplicaState)> {
        let start_failed = |(m, c): (String, i32)| (m, c, ReplicaState::StartFailed);
        let config = &self.inner.config;
        let dir = shim_proto::replica_dir(&config.data_dir, &self.id);
        let owner = match &self.spec().user {
            Some(user) => Some(
                crate::identity::resolve(
                    user,
                    self.spec().group.as_deref(),
                    config.allow_root,
                    std::path::Path::new("/etc"),
                )
                .map_err(|e| (e, 126, ReplicaState::StartFailed))?,
            ),
            None => None,
        };
        let mut plan = LaunchPlan {
            replica: &self.id,
            app: &self.assignment.app,
            spec: self.spec(),
            port,
            address: config.address,
            owner,
            dir: &dir,
            built: None,
            wasm_runtime: config.wasm_runtime.as_deref(),
        };
        let built = match &self.spec().build {
            Some(build) => Some(
                self.inner
                    .builds
                    .ensure(
                        &self.assignment.app,
                        build,
                        &process::environment(&plan),
                        &self.log,
                    )
                    .await
                    .map_err(|e| (e.to_string(), 1, ReplicaState::BuildFailed))?,
            ),
            None => None,
        };
        plan.built = built.as_deref();
        let program = process::program(&plan)
            .map_err(|e| (e.to_string(), e.exit_code()))
            .map_err(start_failed)?;
        let cgroup = match &config.cgroups {
            Some(cgroups) => {
                let limits = cgroup::Limits {
                    memory: self.spec().ram,
                    cpu_millis: self.spec().cpu_millis,
                };
                Some(cgroups.create(&self.id, limits).map_err(|e| {
                    start_failed((format!("cannot set up the replica's cgroup: {e}"), 126))
                })?)
            }
            None => None,
        };
        let restarts = lock(&self.inner.table)
            .replicas
            .get(&self.id)
            .map_or(0, |e| e.restarts);
        let plan = Plan {
            replica: self.id.clone(),
            app: self.assignment.app.clone(),
            generation: self.assignment.generation,
            port,
            restarts,
            assignment: skr8tr_proto::wire::encode(&self.assignment),
            program: program.program,
            args: program.args,
            env: program.env,
            cwd: built.clone(),
            uid: owner.map(|o| o.0),
            gid: owner.map(|o| o.1),
            cgroup,
            grace_ms: config.grace.as_millis() as u64,
        };
        client::launch(&config.shim, &dir, &plan)
            .await
            .map_err(|e| match e {
                LaunchError::Failed { error, code } => (error, code),
                other => (other.to_string(), 126),
            })
            .map_err(start_failed)
    }
}
