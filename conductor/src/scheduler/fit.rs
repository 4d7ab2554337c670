//! Where one replica fits: reservations per node ([`Load`]), whether a
//! node can take a replica ([`fits`]: alive, room, static port, labels,
//! wasm), the choice among those ([`choose`]: spread label, then this
//! app's count, then load, then name), and why nothing fits.

use super::{ClusterView, NodeFit};
use skr8tr_proto::manifest::{AppKind, AppSpec, Port};
use std::collections::BTreeMap;

#[derive(Default)]
pub(super) struct Load {
    cpu_millis: u64,
    ram_bytes: u64,
    replicas: u32,
    per_app: BTreeMap<String, u32>,
    ports: Vec<u16>,
}

impl Load {
    pub(super) fn add(&mut self, spec: &AppSpec, app: &str) {
        self.cpu_millis = self
            .cpu_millis
            .saturating_add(u64::from(spec.cpu_millis.unwrap_or(0)));
        self.ram_bytes = self.ram_bytes.saturating_add(spec.ram.unwrap_or(0));
        self.replicas += 1;
        *self.per_app.entry(app.to_string()).or_default() += 1;
        if let Port::Fixed(p) = spec.port {
            self.ports.push(p);
        }
    }

    pub(super) fn remove(&mut self, spec: &AppSpec, app: &str) {
        self.cpu_millis = self
            .cpu_millis
            .saturating_sub(u64::from(spec.cpu_millis.unwrap_or(0)));
        self.ram_bytes = self.ram_bytes.saturating_sub(spec.ram.unwrap_or(0));
        self.replicas = self.replicas.saturating_sub(1);
        if let Some(n) = self.per_app.get_mut(app) {
            *n = n.saturating_sub(1);
        }
        if let Port::Fixed(p) = spec.port
            && let Some(i) = self.ports.iter().position(|x| *x == p)
        {
            self.ports.remove(i);
        }
    }
}

/// Whether `node` may run `spec` at all: every `constraint` label, and a
/// WebAssembly runtime for `type wasm`.
pub(super) fn eligible(node: &NodeFit, spec: &AppSpec) -> bool {
    spec.constraints
        .iter()
        .all(|(k, v)| node.labels.iter().any(|(nk, nv)| nk == k && nv == v))
        && (spec.kind != AppKind::Wasm || node.wasm)
}

/// The value a node has for `label`, if any.
fn label<'a>(node: &'a NodeFit, label: &str) -> Option<&'a str> {
    node.labels
        .iter()
        .find(|(k, _)| k == label)
        .map(|(_, v)| v.as_str())
}

/// Whether `node` has room for one more replica of `spec` on top of `load`:
/// alive, eligible, CPU and RAM reservations within what it offers, static
/// port free.
pub(super) fn has_room(node: &NodeFit, load: &Load, spec: &AppSpec) -> bool {
    let cpu = u64::from(spec.cpu_millis.unwrap_or(0));
    let ram = spec.ram.unwrap_or(0);
    let port_free = match spec.port {
        Port::Fixed(p) => !load.ports.contains(&p),
        Port::Auto => true,
    };
    node.alive
        && node.schedulable
        && eligible(node, spec)
        && load.cpu_millis.saturating_add(cpu) <= node.cpu_millis
        && load.ram_bytes.saturating_add(ram) <= node.ram_bytes
        && port_free
}

/// The node for one more replica of `app`: among those with room (and, for
/// an app with a volume that already has placements, only the nodes that
/// hold them: its data is there), the one whose `spread` label value holds
/// the fewest of its replicas, then the fewest of its replicas, then the
/// least loaded, then the smallest name.
pub(super) fn choose(
    d: &ClusterView<'_>,
    load: &BTreeMap<&str, Load>,
    app: &str,
    spec: &AppSpec,
) -> Option<String> {
    let holders = volume_holders(d, app, spec);
    let of_app = |name: &str| {
        load.get(name)
            .and_then(|l| l.per_app.get(app).copied())
            .unwrap_or(0)
    };
    let in_group = |value: Option<&str>| -> u32 {
        let Some(key) = &spec.spread else {
            return 0;
        };
        d.nodes
            .iter()
            .filter(|(_, n)| label(n, key) == value)
            .map(|(name, _)| of_app(name))
            .sum()
    };
    d.nodes
        .iter()
        .filter(|(name, _)| holders.as_ref().is_none_or(|h| h.contains(name.as_str())))
        .filter_map(|(name, node)| {
            let l = load.get(name.as_str())?;
            let group = spec.spread.as_ref().map(|k| label(node, k));
            has_room(node, l, spec)
                .then(|| (in_group(group.flatten()), of_app(name), l.replicas, name))
        })
        .min()
        .map(|(_, _, _, name)| name.clone())
}

/// The nodes that hold an app's volumes: where its placements are (any
/// generation, lost nodes included). `None`: the app has no volume, or no
/// placement yet, so any node will do.
pub(super) fn volume_holders<'a>(
    d: &'a ClusterView<'_>,
    app: &str,
    spec: &AppSpec,
) -> Option<std::collections::BTreeSet<&'a str>> {
    if spec.volumes.is_empty() {
        return None;
    }
    let holders: std::collections::BTreeSet<&str> = d
        .placements
        .values()
        .filter(|p| p.app == app)
        .map(|p| p.node.as_str())
        .collect();
    (!holders.is_empty()).then_some(holders)
}

pub(super) fn why_unplaced(
    d: &ClusterView<'_>,
    load: &BTreeMap<&str, Load>,
    spec: &AppSpec,
) -> String {
    let alive: Vec<&String> = d
        .nodes
        .iter()
        .filter(|(_, n)| n.alive)
        .map(|(k, _)| k)
        .collect();
    if alive.is_empty() {
        return "no live node; start one with `skr8tr node`".into();
    }
    if alive
        .iter()
        .all(|n| d.nodes.get(*n).is_some_and(|n| !n.schedulable))
    {
        return "every live node is cordoned; `skr8tr node uncordon NAME` one, or add a node"
            .into();
    }
    if !alive
        .iter()
        .any(|n| d.nodes.get(*n).is_some_and(|n| eligible(n, spec)))
    {
        if spec.kind == AppKind::Wasm && !d.nodes.values().any(|n| n.alive && n.wasm) {
            return "no live node can run wasm; start one with `skr8tr node --wasm-runtime PATH`"
                .into();
        }
        let want: Vec<String> = spec
            .constraints
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        return format!(
            "no live node has the labels {} (`constraint`); label one with `skr8tr node --label`",
            want.join(", ")
        );
    }
    if let Port::Fixed(p) = spec.port
        && alive
            .iter()
            .all(|n| load.get(n.as_str()).is_some_and(|l| l.ports.contains(&p)))
    {
        return format!(
            "static port {p} is taken on every live node ({}); add a node or use `port auto`",
            alive.len()
        );
    }
    format!(
        "no live node has room for {} cpus and {} MiB RAM; add a node or lower `cpus`/`ram`",
        f64::from(spec.cpu_millis.unwrap_or(0)) / 1000.0,
        spec.ram.unwrap_or(0) >> 20
    )
}
