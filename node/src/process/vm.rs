//! `type vm`: the hypervisor command line a `vm` block asks for.
//!
//! - firecracker: a config file per replica (`DIR/firecracker.json`: boot
//!   source, root drive, machine size, the tap device of `net`), then
//!   `firecracker --no-api --config-file FILE`.
//! - qemu: `-kernel`, `-drive`, `-m`, `-smp`, no display, and user-mode
//!   networking that forwards the replica's `$PORT` on the node's address
//!   to the guest's port (the app's fixed `port`, else 8080).
//! - cloud-hypervisor: `--kernel`, `--disk`, `--cpus`, `--memory`, and the
//!   tap device of `net`.
//!
//! The `vm` block's `args` come last. The health check probes `$PORT` as
//! for any replica.

use skr8tr_proto::manifest::{AppSpec, Hypervisor, Port, Vm};
use std::net::IpAddr;
use std::path::Path;

/// Where a guest serves when the app's port is `auto`.
pub const GUEST_PORT: u16 = 8080;
/// The guest kernel's command line.
const BOOT_ARGS: &str = "console=ttyS0 reboot=k panic=1 root=/dev/vda";

/// The program and arguments that run `vm` for a replica on `port`;
/// `dir` (the replica's own directory) receives firecracker's config.
pub fn command(
    spec: &AppSpec,
    vm: &Vm,
    port: u16,
    address: IpAddr,
    dir: &Path,
) -> std::io::Result<(String, Vec<String>)> {
    let mib = (vm.memory >> 20).max(1);
    let guest = match spec.port {
        Port::Fixed(p) => p,
        Port::Auto => GUEST_PORT,
    };
    let (default, mut args): (&str, Vec<String>) = match vm.hypervisor {
        Hypervisor::Firecracker => {
            let config = dir.join("firecracker.json");
            std::fs::create_dir_all(dir)?;
            std::fs::write(&config, firecracker_config(vm, mib))?;
            (
                "firecracker",
                vec![
                    "--no-api".into(),
                    "--config-file".into(),
                    config.display().to_string(),
                ],
            )
        }
        Hypervisor::Qemu => {
            let host = match address {
                IpAddr::V4(a) if !a.is_unspecified() => a.to_string(),
                _ => "127.0.0.1".into(),
            };
            (
                "qemu-system-x86_64",
                vec![
                    "-kernel".into(),
                    vm.kernel.clone(),
                    "-drive".into(),
                    format!("file={},format=raw,if=virtio", vm.rootfs),
                    "-m".into(),
                    mib.to_string(),
                    "-smp".into(),
                    vm.vcpus.to_string(),
                    "-nographic".into(),
                    "-append".into(),
                    BOOT_ARGS.into(),
                    "-netdev".into(),
                    format!("user,id=net0,hostfwd=tcp:{host}:{port}-:{guest}"),
                    "-device".into(),
                    "virtio-net-pci,netdev=net0".into(),
                ],
            )
        }
        Hypervisor::CloudHypervisor => {
            let mut args = vec![
                "--kernel".into(),
                vm.kernel.clone(),
                "--disk".into(),
                format!("path={}", vm.rootfs),
                "--cpus".into(),
                format!("boot={}", vm.vcpus),
                "--memory".into(),
                format!("size={mib}M"),
                "--cmdline".into(),
                BOOT_ARGS.into(),
            ];
            if let Some(tap) = &vm.net {
                args.extend(["--net".into(), format!("tap={tap}")]);
            }
            ("cloud-hypervisor", args)
        }
    };
    args.extend(vm.args.iter().cloned());
    let program = vm.binary.clone().unwrap_or_else(|| default.to_string());
    Ok((program, args))
}

/// Firecracker's `--config-file` JSON (its documented keys).
fn firecracker_config(vm: &Vm, mib: u64) -> String {
    let net: Vec<serde_json::Value> = vm
        .net
        .iter()
        .map(|tap| serde_json::json!({"iface_id": "eth0", "host_dev_name": tap}))
        .collect();
    let config = serde_json::json!({
        "boot-source": {"kernel_image_path": vm.kernel, "boot_args": BOOT_ARGS},
        "drives": [{
            "drive_id": "rootfs",
            "path_on_host": vm.rootfs,
            "is_root_device": true,
            "is_read_only": false,
        }],
        "machine-config": {"vcpu_count": vm.vcpus, "mem_size_mib": mib},
        "network-interfaces": net,
    });
    format!("{config:#}\n")
}
