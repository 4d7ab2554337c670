//! Where one replica fits: reservations per node ([`Load`]), whether a
//! node can take a replica ([`fits`]: alive, room, static port, labels,
//! wasm), the choice among those ([`Loads::choose`]: spread label, then
//! this app's count, then load, then name), and why nothing fits.

use super::{ClusterView, NodeFit};
use skr8tr_proto::manifest::{AppKind, AppSpec, Port};
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// What is reserved on one node.
#[derive(Default)]
pub(super) struct Load {
    cpu_millis: u64,
    ram_bytes: u64,
    replicas: u32,
    ports: Vec<u16>,
}

/// Every node's reservations for one plan, by node position (the order of
/// `ClusterView::nodes`, which is name order), and each app's count per
/// node. Positions instead of name lookups keep a choice among N nodes
/// to N integer comparisons: 10,000 placements over 1,000 nodes are 10
/// million of them per plan.
pub(super) struct Loads<'a> {
    names: Vec<&'a str>,
    fits: Vec<&'a NodeFit>,
    at: HashMap<&'a str, usize>,
    each: Vec<Load>,
    /// Each app's replicas per node position (sparse: many small apps on
    /// many nodes must not cost apps × nodes).
    per_app: HashMap<String, HashMap<usize, u32>>,
    /// The app the last choice was for, by scan: a second choice in a row
    /// for it builds the ranked candidates (one replica is cheaper to scan).
    scanned: Option<(String, &'a AppSpec)>,
    /// The last app's candidates in order, while it is placed replica
    /// after replica; and the nodes whose load changed since.
    ranked: Option<Ranked<'a>>,
    dirty: Vec<usize>,
}

/// The nodes with room for one app's spec, ordered by the choice's key
/// (this app's count, replicas, position): a choice is the first, and a
/// placement moves one node in the order, so placing K replicas over N
/// nodes costs N + K log N instead of K × N. Only for apps without
/// `spread` or volumes, whose key and room depend on nothing but the
/// node's own load.
struct Ranked<'a> {
    app: String,
    spec: &'a AppSpec,
    keys: Vec<Option<(u32, u32)>>,
    order: BTreeSet<(u32, u32, usize)>,
}

impl<'a> Loads<'a> {
    pub(super) fn new(nodes: &'a BTreeMap<String, NodeFit>) -> Loads<'a> {
        let names: Vec<&str> = nodes.keys().map(String::as_str).collect();
        Loads {
            at: names.iter().enumerate().map(|(i, n)| (*n, i)).collect(),
            fits: nodes.values().collect(),
            each: names.iter().map(|_| Load::default()).collect(),
            names,
            per_app: HashMap::new(),
            scanned: None,
            ranked: None,
            dirty: Vec::new(),
        }
    }

    pub(super) fn get(&self, node: &str) -> Option<&Load> {
        self.at.get(node).map(|i| &self.each[*i])
    }

    /// Counts one replica of `app` on `node`; a node not in the view
    /// (no report yet) has no load to count.
    pub(super) fn add(&mut self, node: &str, spec: &AppSpec, app: &str) {
        let Some(&i) = self.at.get(node) else { return };
        self.touched(i);
        let l = &mut self.each[i];
        l.cpu_millis = l
            .cpu_millis
            .saturating_add(u64::from(spec.cpu_millis.unwrap_or(0)));
        l.ram_bytes = l.ram_bytes.saturating_add(spec.ram.unwrap_or(0));
        l.replicas += 1;
        if let Port::Fixed(p) = spec.port {
            l.ports.push(p);
        }
        let counts = match self.per_app.get_mut(app) {
            Some(c) => c,
            None => self.per_app.entry(app.to_string()).or_default(),
        };
        *counts.entry(i).or_default() += 1;
    }

    pub(super) fn remove(&mut self, node: &str, spec: &AppSpec, app: &str) {
        let Some(&i) = self.at.get(node) else { return };
        self.touched(i);
        let l = &mut self.each[i];
        l.cpu_millis = l
            .cpu_millis
            .saturating_sub(u64::from(spec.cpu_millis.unwrap_or(0)));
        l.ram_bytes = l.ram_bytes.saturating_sub(spec.ram.unwrap_or(0));
        l.replicas = l.replicas.saturating_sub(1);
        if let Some(n) = self.per_app.get_mut(app).and_then(|c| c.get_mut(&i)) {
            *n = n.saturating_sub(1);
        }
        if let Port::Fixed(p) = spec.port
            && let Some(at) = l.ports.iter().position(|x| *x == p)
        {
            l.ports.remove(at);
        }
    }

    fn count(&self, app: &str, i: usize) -> u32 {
        self.per_app
            .get(app)
            .and_then(|c| c.get(&i))
            .copied()
            .unwrap_or(0)
    }

    fn touched(&mut self, i: usize) {
        if self.ranked.is_some() {
            self.dirty.push(i);
        }
    }

    /// The node for one more replica of `app`: among those with room (and,
    /// for an app with a volume that already has placements, only the
    /// nodes that hold them: its data is there), the one whose `spread`
    /// label value holds the fewest of its replicas, then the fewest of its
    /// replicas, then the least loaded, then the smallest name.
    pub(super) fn choose(
        &mut self,
        d: &ClusterView<'_>,
        app: &str,
        spec: &'a AppSpec,
    ) -> Option<String> {
        if spec.spread.is_some() || !spec.volumes.is_empty() {
            return self.scan(d, app, spec);
        }
        let same = |a: &str, s: &AppSpec| a == app && std::ptr::eq(s, spec);
        let mut r = match self.ranked.take() {
            Some(r) if same(&r.app, r.spec) => r,
            other => {
                if !self.scanned.as_ref().is_some_and(|(a, s)| same(a, s)) {
                    self.ranked = other;
                    self.scanned = Some((app.to_string(), spec));
                    return self.scan(d, app, spec);
                }
                self.dirty.clear();
                let keys: Vec<_> = (0..self.names.len())
                    .map(|i| self.key(i, app, spec))
                    .collect();
                let order = keys
                    .iter()
                    .enumerate()
                    .filter_map(|(i, k)| k.map(|(a, b)| (a, b, i)))
                    .collect();
                Ranked {
                    app: app.to_string(),
                    spec,
                    keys,
                    order,
                }
            }
        };
        for i in std::mem::take(&mut self.dirty) {
            let new = self.key(i, app, spec);
            if r.keys[i] != new {
                if let Some((a, b)) = r.keys[i] {
                    r.order.remove(&(a, b, i));
                }
                if let Some((a, b)) = new {
                    r.order.insert((a, b, i));
                }
                r.keys[i] = new;
            }
        }
        let chosen = r.order.first().map(|(_, _, i)| self.names[*i].to_string());
        self.ranked = Some(r);
        chosen
    }

    /// Node `i`'s place in the order for one more replica of `app`, if it
    /// has room.
    fn key(&self, i: usize, app: &str, spec: &AppSpec) -> Option<(u32, u32)> {
        let count = self.count(app, i);
        has_room(self.fits[i], &self.each[i], spec).then_some((count, self.each[i].replicas))
    }

    /// [`Loads::choose`] by looking at every node: for `spread` (a node's
    /// key depends on its whole group) and volumes (on where the app is).
    pub(super) fn scan(&self, d: &ClusterView<'_>, app: &str, spec: &AppSpec) -> Option<String> {
        let holders = volume_holders(d, app, spec);
        let of_app = self.per_app.get(app);
        let count = |i: usize| of_app.and_then(|c| c.get(&i)).copied().unwrap_or(0);
        // This app's replicas per value of the spread label, counted once
        // per choice rather than once per candidate.
        let groups: HashMap<Option<&str>, u32> = match &spec.spread {
            None => HashMap::new(),
            Some(key) => {
                let mut g = HashMap::new();
                for (i, node) in self.fits.iter().enumerate() {
                    *g.entry(label(node, key)).or_default() += count(i);
                }
                g
            }
        };
        (0..self.names.len())
            .filter(|&i| holders.as_ref().is_none_or(|h| h.contains(self.names[i])))
            .filter_map(|i| {
                let group = spec.spread.as_ref().map_or(0, |key| {
                    groups.get(&label(self.fits[i], key)).copied().unwrap_or(0)
                });
                has_room(self.fits[i], &self.each[i], spec)
                    .then(|| (group, count(i), self.each[i].replicas, i))
            })
            .min()
            .map(|(_, _, _, i)| self.names[i].to_string())
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

pub(super) fn why_unplaced(d: &ClusterView<'_>, load: &Loads<'_>, spec: &AppSpec) -> String {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::Observed;
    use skr8tr_proto::manifest;

    fn next(state: &mut u64) -> u64 {
        // splitmix64: a seed replays the same sequence.
        *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = *state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    #[test]
    fn the_ranked_choice_is_always_the_choice_of_a_scan_over_every_node() {
        let specs: Vec<AppSpec> = [
            "app a\n  exec /bin/a\n",
            "app b\n  exec /bin/b\n  cpus 0.5\n  ram 512mb\n",
            "app c\n  exec /bin/c\n  port 8080\n",
            "app d\n  exec /bin/d\n  constraint zone=x\n",
        ]
        .iter()
        .map(|t| manifest::parse("t", t).unwrap().remove(0))
        .collect();
        for seed in 0..32u64 {
            let mut rng = seed;
            let nodes: BTreeMap<String, NodeFit> = (0..1 + next(&mut rng) % 12)
                .map(|i| {
                    let n = next(&mut rng);
                    let fit = NodeFit {
                        alive: !n.is_multiple_of(7),
                        schedulable: !n.is_multiple_of(11),
                        silent_ms: 0,
                        cpu_millis: 1000 + (n >> 8) % 3000,
                        ram_bytes: (1 + (n >> 16) % 4) << 30,
                        labels: vec![("zone".into(), ["x", "y"][(n >> 20) as usize % 2].into())],
                        wasm: false,
                    };
                    (format!("n{i:02}"), fit)
                })
                .collect();
            let empty = BTreeMap::new();
            let (placements, rolling) = (BTreeMap::new(), Default::default());
            let observed = Observed::default();
            let view = ClusterView {
                apps: &empty,
                placements: &placements,
                nodes: &nodes,
                rolling: &rolling,
                observed: &observed,
            };
            let mut load = Loads::new(&nodes);
            let mut placed: Vec<(String, usize)> = Vec::new();
            let mut which = 0;
            for step in 0..300 {
                // Mostly the same app again, as a plan places an app's
                // replicas one after another.
                if next(&mut rng).is_multiple_of(4) {
                    which = (next(&mut rng) % specs.len() as u64) as usize;
                }
                let (spec, app) = (&specs[which], ["a", "b", "c", "d"][which]);
                if next(&mut rng).is_multiple_of(5) && !placed.is_empty() {
                    // A replica moves away (a lost node's, a removed one).
                    let at = (next(&mut rng) % placed.len() as u64) as usize;
                    let (node, w) = placed.swap_remove(at);
                    load.remove(&node, &specs[w], ["a", "b", "c", "d"][w]);
                    continue;
                }
                let scanned = load.scan(&view, app, spec);
                let chosen = load.choose(&view, app, spec);
                assert_eq!(chosen, scanned, "seed {seed} step {step}: {app}");
                if let Some(node) = chosen {
                    load.add(&node, spec, app);
                    placed.push((node, which));
                }
            }
        }
    }
}
