//! The `vm` block: a micro-VM's hypervisor, kernel, root filesystem and size.

use super::{keys, missing, path};
use crate::manifest::check::Checker;
use crate::manifest::spec::*;
use crate::manifest::tree::Entry;
use crate::manifest::values;

pub(crate) fn vm(c: &mut Checker<'_>, e: &Entry) -> Option<Vm> {
    let entries = c.block(
        e,
        "vm { hypervisor firecracker; kernel /vm/vmlinux; rootfs /vm/rootfs.ext4 }",
    )?;
    let known = keys(
        "vm",
        &[
            "hypervisor",
            "kernel",
            "rootfs",
            "vcpus",
            "memory",
            "net",
            "args",
        ],
        &[],
    );
    let mut hypervisor = None;
    let mut kernel = None;
    let mut rootfs = None;
    let mut vcpus = DEFAULT_VM_VCPUS;
    let mut memory = DEFAULT_VM_MEMORY;
    let mut net = None;
    let mut args = Vec::new();
    let mut binary = None;
    let mut ok = true;
    for (key, entry) in c.known(entries, &known) {
        let done = match key {
            "hypervisor" => c
                .parsed(entry, "hypervisor firecracker", hypervisor_of)
                .map(|(h, path)| {
                    hypervisor = Some(h);
                    binary = path;
                }),
            "kernel" => c
                .parsed(entry, "kernel /vm/vmlinux", |t| path(t, false))
                .map(|p| kernel = Some(p)),
            "rootfs" => c
                .parsed(entry, "rootfs /vm/rootfs.ext4", |t| path(t, false))
                .map(|p| rootfs = Some(p)),
            "vcpus" => c
                .parsed(entry, "vcpus 2", |t| values::number(t, 1, 256))
                .map(|n| vcpus = n as u32),
            // A bare number is MiB, as Firecracker's `mem_size_mib` (and
            // manifests written for the original implementation) say.
            "memory" => c
                .parsed(entry, "memory 512mb", |t| {
                    match values::number(t, 1, 1 << 20) {
                        Ok(mib) => Ok(mib << 20),
                        Err(_) => values::size(t),
                    }
                })
                .map(|n| memory = n),
            "net" => c
                .value(entry, "net tap0")
                .map(|n| net = Some(n.to_string())),
            "args" => c
                .parsed(entry, "args --console ttyS0", values::words)
                .map(|a| args = a),
            _ => unreachable!("the vm keys are all handled"),
        };
        ok &= done.is_some();
    }
    if !ok {
        return None;
    }
    for (value, key, example) in [
        (hypervisor.is_none(), "hypervisor", "hypervisor firecracker"),
        (kernel.is_none(), "kernel", "kernel /vm/vmlinux"),
        (rootfs.is_none(), "rootfs", "rootfs /vm/rootfs.ext4"),
    ] {
        if value {
            missing(c, e, key, example);
        }
    }
    Some(Vm {
        hypervisor: hypervisor?,
        kernel: kernel?,
        rootfs: rootfs?,
        vcpus,
        memory,
        net,
        args,
        binary,
    })
}

/// `firecracker`, `qemu`, `cloud-hypervisor`, or a path to one of them
/// (`/usr/bin/firecracker`, `/opt/qemu-system-x86_64`): the file name picks
/// the hypervisor, the path is the program run.
fn hypervisor_of(text: &str) -> Result<(Hypervisor, Option<String>), values::ValueError> {
    let named = |name: &str| match name {
        "firecracker" => Some(Hypervisor::Firecracker),
        "qemu" => Some(Hypervisor::Qemu),
        "cloud-hypervisor" => Some(Hypervisor::CloudHypervisor),
        n if n.starts_with("qemu-system-") => Some(Hypervisor::Qemu),
        _ => None,
    };
    if let Some(h) = named(text).filter(|_| !text.contains('/')) {
        return Ok((h, None));
    }
    let file = text.rsplit('/').next().unwrap_or(text);
    match (text.starts_with('/'), named(file)) {
        (true, Some(h)) => Ok((h, Some(text.to_string()))),
        _ => Err(values::ValueError {
            offset: 0,
            message: format!("`{text}` is not a hypervisor"),
            hint: Some(
                "write `firecracker`, `qemu` or `cloud-hypervisor`, or an absolute path to one \
                 (like `/usr/bin/firecracker`)"
                    .into(),
            ),
        }),
    }
}
