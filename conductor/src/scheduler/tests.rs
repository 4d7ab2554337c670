use super::*;
use skr8tr_proto::manifest;

fn app(text: &str, generation: u64, replicas: u32) -> (AppRecord, AppSpec) {
    let spec = manifest::parse("t", text).unwrap().remove(0);
    (
        AppRecord {
            generation,
            previous_generation: None,
            replicas,
            status: AppStatus::Active,
        },
        spec,
    )
}

fn nodes(list: &[(&str, bool)]) -> BTreeMap<String, NodeFit> {
    list.iter()
        .map(|(n, alive)| {
            (
                n.to_string(),
                NodeFit {
                    alive: *alive,
                    schedulable: true,
                    silent_ms: 0,
                    cpu_millis: 2000,
                    ram_bytes: 4 << 30,
                    labels: Vec::new(),
                    wasm: false,
                },
            )
        })
        .collect()
}

fn apply(placements: &mut BTreeMap<String, PlacementRecord>, plan: &Plan) {
    for c in &plan.changes {
        match c {
            Change::Place { replica, record }
            | Change::Update { replica, record }
            | Change::Move {
                replica, record, ..
            } => {
                placements.insert(replica.clone(), record.clone());
            }
            Change::Remove { replica, .. } => {
                placements.remove(replica);
            }
        }
    }
}

fn step(
    placements: &mut BTreeMap<String, PlacementRecord>,
    apps: &BTreeMap<String, (AppRecord, AppSpec)>,
    nodes: &BTreeMap<String, NodeFit>,
) {
    let p = plan(&ClusterView {
        apps,
        placements,
        nodes,
        rolling: &Default::default(),
        observed: &Default::default(),
    });
    apply(placements, &p);
}

fn nodes_of(placements: &BTreeMap<String, PlacementRecord>) -> Vec<&str> {
    placements.values().map(|p| p.node.as_str()).collect()
}

#[test]
fn spreads_replicas_and_is_stable() {
    let apps = BTreeMap::from([("web".to_string(), app("app web\n  exec /x\n", 1, 3))]);
    let nodes = nodes(&[("n1", true), ("n2", true)]);
    let mut placements = BTreeMap::new();
    let p = plan(&ClusterView {
        apps: &apps,
        placements: &placements,
        nodes: &nodes,
        rolling: &Default::default(),
        observed: &Default::default(),
    });
    assert_eq!(p.changes.len(), 3);
    apply(&mut placements, &p);
    assert_eq!(nodes_of(&placements), ["n1", "n2", "n1"]);
    assert_eq!(placements["web/1/0"].port, None);
    // Nothing to do the second time.
    let again = plan(&ClusterView {
        apps: &apps,
        placements: &placements,
        nodes: &nodes,
        rolling: &Default::default(),
        observed: &Default::default(),
    });
    assert_eq!(again, Plan::default());
}

#[test]
fn moves_replicas_off_a_lost_node() {
    let apps = BTreeMap::from([("web".to_string(), app("app web\n  exec /x\n", 1, 2))]);
    let mut placements = BTreeMap::new();
    let two = nodes(&[("n1", true), ("n2", true)]);
    step(&mut placements, &apps, &two);
    let lost = nodes(&[("n1", false), ("n2", true)]);
    let p = plan(&ClusterView {
        apps: &apps,
        placements: &placements,
        nodes: &lost,
        rolling: &Default::default(),
        observed: &Default::default(),
    });
    assert_eq!(
        p.changes,
        vec![Change::Move {
            replica: "web/1/0".into(),
            from: "n1".into(),
            record: PlacementRecord {
                node: "n2".into(),
                ..placements["web/1/0"].clone()
            },
        }]
    );
    assert!(
        p.summary()
            .contains("moved web/1/0 from lost node n1 to n2")
    );
}

#[test]
fn static_ports_never_share_a_node() {
    let apps = BTreeMap::from([(
        "api".to_string(),
        app("app api\n  exec /x\n  port 8080\n", 1, 3),
    )]);
    let nodes = nodes(&[("n1", true), ("n2", true)]);
    let p = plan(&ClusterView {
        apps: &apps,
        placements: &BTreeMap::new(),
        nodes: &nodes,
        rolling: &Default::default(),
        observed: &Default::default(),
    });
    assert_eq!(p.changes.len(), 2);
    let reason = &p.unplaced["api"];
    assert!(
        reason.contains("static port 8080 is taken on every live node"),
        "{reason}"
    );
}

#[test]
fn resources_are_respected_and_least_loaded_wins() {
    let apps = BTreeMap::from([
        (
            "big".to_string(),
            app("app big\n  exec /x\n  ram 3gb\n", 1, 2),
        ),
        ("small".to_string(), app("app small\n  exec /x\n", 1, 1)),
    ]);
    let nodes = nodes(&[("n1", true), ("n2", true)]);
    let mut placements = BTreeMap::new();
    step(&mut placements, &apps, &nodes);
    assert_eq!(placements["big/1/0"].node, "n1");
    assert_eq!(placements["big/1/1"].node, "n2");
    let huge = BTreeMap::from([(
        "huge".to_string(),
        app("app huge\n  exec /x\n  ram 8gb\n", 1, 1),
    )]);
    let p = plan(&ClusterView {
        apps: &huge,
        placements: &BTreeMap::new(),
        nodes: &nodes,
        rolling: &Default::default(),
        observed: &Default::default(),
    });
    assert!(p.changes.is_empty());
    assert!(
        p.unplaced["huge"].contains("no live node has room"),
        "{:?}",
        p.unplaced
    );
    let none = plan(&ClusterView {
        apps: &huge,
        placements: &BTreeMap::new(),
        nodes: &BTreeMap::new(),
        rolling: &Default::default(),
        observed: &Default::default(),
    });
    assert!(none.unplaced["huge"].contains("no live node"));
}

#[test]
fn scale_down_and_new_generations_remove_placements() {
    let mut apps = BTreeMap::from([("web".to_string(), app("app web\n  exec /x\n", 1, 3))]);
    let nodes = nodes(&[("n1", true)]);
    let mut placements = BTreeMap::new();
    step(&mut placements, &apps, &nodes);
    apps.get_mut("web").unwrap().0.replicas = 1;
    let p = plan(&ClusterView {
        apps: &apps,
        placements: &placements,
        nodes: &nodes,
        rolling: &Default::default(),
        observed: &Default::default(),
    });
    assert_eq!(p.changes.len(), 2);
    apply(&mut placements, &p);
    assert_eq!(placements.keys().collect::<Vec<_>>(), ["web/1/0"]);
    apps.get_mut("web").unwrap().0.generation = 2;
    step(&mut placements, &apps, &nodes);
    assert_eq!(placements.keys().collect::<Vec<_>>(), ["web/2/0"]);
    apps.clear();
    step(&mut placements, &apps, &nodes);
    assert!(placements.is_empty());
}

/// A node's name, labels and whether it runs wasm.
type Labelled<'a> = (&'a str, &'a [(&'a str, &'a str)], bool);

fn labelled(list: &[Labelled<'_>]) -> BTreeMap<String, NodeFit> {
    list.iter()
        .map(|(n, labels, wasm)| {
            (
                n.to_string(),
                NodeFit {
                    alive: true,
                    schedulable: true,
                    silent_ms: 0,
                    cpu_millis: 2000,
                    ram_bytes: 4 << 30,
                    labels: labels
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect(),
                    wasm: *wasm,
                },
            )
        })
        .collect()
}

#[test]
fn constraints_place_only_on_nodes_with_every_label() {
    let apps = BTreeMap::from([(
        "db".to_string(),
        app(
            "app db\n  exec /x\n  constraint role=db\n  constraint disk=ssd\n",
            1,
            2,
        ),
    )]);
    let nodes = labelled(&[
        ("a", &[("role", "db")], false),
        ("b", &[("role", "db"), ("disk", "ssd")], false),
        ("c", &[("disk", "ssd")], false),
    ]);
    let mut placements = BTreeMap::new();
    step(&mut placements, &apps, &nodes);
    assert_eq!(nodes_of(&placements), ["b", "b"]);
    // With no such node, the reason names the labels.
    let nodes = labelled(&[("a", &[("role", "web")], false)]);
    let p = plan(&ClusterView {
        apps: &apps,
        placements: &BTreeMap::new(),
        nodes: &nodes,
        rolling: &Default::default(),
        observed: &Default::default(),
    });
    assert!(p.changes.is_empty());
    assert!(
        p.unplaced["db"].contains("no live node has the labels role=db, disk=ssd"),
        "{:?}",
        p.unplaced
    );
}

#[test]
fn spread_balances_over_label_values_not_nodes() {
    let apps = BTreeMap::from([(
        "web".to_string(),
        app("app web\n  exec /x\n  spread zone\n", 1, 4),
    )]);
    // Zone a has three nodes, zone b one: plain spreading would put three
    // replicas in zone a.
    let nodes = labelled(&[
        ("a1", &[("zone", "a")], false),
        ("a2", &[("zone", "a")], false),
        ("a3", &[("zone", "a")], false),
        ("b1", &[("zone", "b")], false),
    ]);
    let mut placements = BTreeMap::new();
    step(&mut placements, &apps, &nodes);
    let b = nodes_of(&placements).iter().filter(|n| **n == "b1").count();
    assert_eq!(b, 2, "{:?}", nodes_of(&placements));
}

#[test]
fn wasm_apps_go_only_to_nodes_with_a_runtime() {
    let apps = BTreeMap::from([(
        "fn".to_string(),
        app("app fn\n  type wasm\n  exec /m.wasm\n", 1, 3),
    )]);
    let nodes = labelled(&[("plain", &[], false), ("wasm", &[], true)]);
    let mut placements = BTreeMap::new();
    step(&mut placements, &apps, &nodes);
    assert_eq!(nodes_of(&placements), ["wasm", "wasm", "wasm"]);
    let none = labelled(&[("plain", &[], false)]);
    let p = plan(&ClusterView {
        apps: &apps,
        placements: &BTreeMap::new(),
        nodes: &none,
        rolling: &Default::default(),
        observed: &Default::default(),
    });
    assert!(
        p.unplaced["fn"].contains("can run wasm"),
        "{:?}",
        p.unplaced
    );
}

#[test]
fn an_app_with_a_volume_stays_on_its_node_and_waits_when_it_is_lost() {
    let apps = BTreeMap::from([(
        "db".to_string(),
        app("app db\n  exec /x\n  volume { path /var/lib/db }\n", 1, 1),
    )]);
    let mut nodes = labelled(&[("n1", &[], false), ("n2", &[], false)]);
    let mut placements = BTreeMap::new();
    step(&mut placements, &apps, &nodes);
    let home = nodes_of(&placements)[0].to_string();
    nodes.get_mut(&home).unwrap().alive = false;
    let p = plan(&ClusterView {
        apps: &apps,
        placements: &placements,
        nodes: &nodes,
        rolling: &Default::default(),
        observed: &Default::default(),
    });
    assert!(p.changes.is_empty(), "not moved: {:?}", p.changes);
    let why = &p.unplaced["db"];
    assert!(
        why.starts_with("unschedulable: db/1/0 keeps its volume /var/lib/db on node")
            && why.contains(&home),
        "{why}"
    );
    // A new generation of it goes to the same node, not an empty one.
    let (record, spec) = &apps["db"];
    let next = place_one(
        &ClusterView {
            apps: &apps,
            placements: &placements,
            nodes: &labelled(&[("n1", &[], false), ("n2", &[], false)]),
            rolling: &Default::default(),
            observed: &Default::default(),
        },
        "db",
        spec,
        record.generation + 1,
        0,
    )
    .unwrap();
    assert_eq!(next.node, home);
}
