use super::*;
use crate::assignments::of_node;
use crate::testing::Harness;
use skr8tr_proto::command::Command;
use skr8tr_proto::wire::ReplicaState;
use std::time::Duration;

const NODES: [&str; 3] = ["n1", "n2", "n3"];
const APPS: [&str; 3] = ["a", "b", "c"];

fn next(state: &mut u64) -> u64 {
    // splitmix64: a seed replays the same sequence.
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Every node reports every replica placed on it, ready.
fn all_ready(h: &Harness) {
    let snap = h.c.store.snapshot().unwrap();
    let placements = snap.placements().unwrap();
    for (i, node) in NODES.iter().enumerate() {
        let ids: Vec<String> = placements
            .iter()
            .filter(|(_, p)| p.node == *node)
            .map(|(id, _)| id.clone())
            .collect();
        let replicas: Vec<(&str, ReplicaState, Option<u16>)> = ids
            .iter()
            .enumerate()
            .map(|(j, id)| {
                (
                    id.as_str(),
                    ReplicaState::Ready,
                    Some(20000 + (i * 100 + j) as u16),
                )
            })
            .collect();
        h.report(node, &replicas);
    }
}

fn check(h: &Harness, what: &str) {
    let from_index = h.c.index.desired(&h.c.store).unwrap();
    let snap = h.c.store.snapshot().unwrap();
    let full = Desired::load(&snap).unwrap();
    assert_eq!(*from_index, full, "after {what}");
    for node in NODES.iter().chain(&["n4"]) {
        let cached =
            h.c.index
                .assignments(&h.c.store, h.c.cluster, node)
                .unwrap();
        assert_eq!(
            *cached,
            of_node(&snap, h.c.cluster, node).unwrap(),
            "{node} after {what}"
        );
    }
}

#[test]
fn the_index_always_equals_a_full_read_of_the_store() {
    for seed in 0..16u64 {
        let h = Harness::new(&format!("index-{seed}"));
        let mut rng = seed;
        for node in NODES {
            h.report(node, &[]);
        }
        for i in 0..60 {
            let app = APPS[(next(&mut rng) % 3) as usize];
            let n = next(&mut rng) % 5;
            let node = NODES[(next(&mut rng) % 3) as usize];
            let what = match next(&mut rng) % 10 {
                0 | 1 => {
                    let n = n.max(1);
                    let _ = h.up(&format!("app {app}\n  exec /bin/{app}\n  replicas {n}\n"));
                    format!("up {app} {n}")
                }
                2 => {
                    let _ = h.apply(Command::Scale {
                        app: app.into(),
                        replicas: n as u32,
                    });
                    format!("scale {app} {n}")
                }
                3 => {
                    let _ = h.apply(Command::Down { app: app.into() });
                    format!("down {app}")
                }
                4 => {
                    let _ = h.apply(Command::Rollout {
                        file: "t".into(),
                        manifest: format!("app {app}\n  exec /bin/{app}-{i}\n  replicas {n}\n"),
                    });
                    format!("rollout {app}")
                }
                5 => {
                    let _ = h.apply(Command::DrainNode { name: node.into() });
                    format!("drain {node}")
                }
                6 => {
                    let _ = h.apply(Command::UncordonNode { name: node.into() });
                    format!("uncordon {node}")
                }
                7 => {
                    all_ready(&h);
                    h.advance(Duration::from_millis(1500));
                    "reports".into()
                }
                _ => {
                    crate::reconciler::step(&h.c, h.now()).unwrap();
                    "a reconciler pass".into()
                }
            };
            check(&h, &format!("seed {seed} step {i}: {what}"));
        }
    }
}

#[test]
fn a_commit_wakes_the_long_polls_of_the_nodes_it_touched_only() {
    let h = Harness::new("index-wakes");
    h.report("n1", &[]);
    h.report("n2", &[]);
    h.up("app web\n  exec /bin/web\n  replicas 1\n");
    let mut n1 = h.c.index.watch("n1");
    let mut n2 = h.c.index.watch("n2");
    h.c.bump();
    n1.borrow_and_update();
    n2.borrow_and_update();
    assert!(crate::reconciler::step(&h.c, h.now()).unwrap());
    h.c.bump();
    // web/1/0 went to n1 (fewest replicas, then the smallest name).
    assert!(n1.has_changed().unwrap(), "n1's set changed");
    assert!(
        !n2.has_changed().unwrap(),
        "n2's did not: its poll sleeps on"
    );
    let set =
        h.c.index
            .assignments(&h.c.store, h.c.cluster, "n1")
            .unwrap();
    assert_eq!(set.replicas.len(), 1);
    // Asked again with nothing committed: the same set, not rebuilt.
    let again =
        h.c.index
            .assignments(&h.c.store, h.c.cluster, "n1")
            .unwrap();
    assert!(Arc::ptr_eq(&set, &again));
}

#[tokio::test]
async fn a_commit_not_in_the_index_is_caught_up_on_the_blocking_pool_and_wakes_its_nodes() {
    let h = Harness::new("index-behind");
    assert!(h.c.index.behind(&h.c.store), "not built yet: behind");
    h.c.index_synced().await;
    assert!(!h.c.index.behind(&h.c.store));
    h.report("n1", &[]);
    h.up("app web\n  exec /bin/web\n  replicas 1\n");
    h.c.bump();
    let mut n1 = h.c.index.watch("n1");
    n1.borrow_and_update();
    // A pass commits but nobody indexes it: the next async reader does.
    assert!(crate::reconciler::step(&h.c, h.now()).unwrap());
    assert!(h.c.index.behind(&h.c.store), "a commit the index lacks");
    h.c.index_synced().await;
    assert!(!h.c.index.behind(&h.c.store));
    assert!(n1.has_changed().unwrap(), "n1's long-poll is woken");
    let d = h.c.index.desired(&h.c.store).unwrap();
    assert!(d.placements.values().any(|p| p.node == "n1"));
}
