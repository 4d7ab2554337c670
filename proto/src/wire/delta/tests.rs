use super::*;
use crate::wire::{NodeMessage, ReplicaState, encode};

fn replica(id: &str, state: ReplicaState, cpu: u64) -> ReplicaReport {
    ReplicaReport {
        replica: id.into(),
        app: id.split('/').next().unwrap().into(),
        generation: 1,
        state,
        pid: Some(100),
        port: Some(20000),
        restarts: 0,
        started_at_ms: 5,
        cpu_millis: cpu,
        rss_bytes: 1 << 20,
        error: None,
    }
}

fn report(replicas: Vec<ReplicaReport>) -> NodeReport {
    NodeReport {
        node: "n1".into(),
        address: "127.0.0.1".into(),
        boot_id: 7,
        assignments_version: 3,
        resources: Resources::default(),
        replicas,
        logs_port: Some(9000),
        limits: None,
        labels: vec![("zone".into(), "a".into())],
        wasm: false,
        leaving: false,
        logs_pin: None,
        clock_ms: 1000,
    }
}

#[test]
fn a_delta_carries_state_changes_additions_and_removals_and_applies_to_the_new_report() {
    let base = report(vec![
        replica("a/1/0", ReplicaState::Starting, 0),
        replica("a/1/1", ReplicaState::Ready, 0),
        replica("a/1/2", ReplicaState::Ready, 0),
    ]);
    let mut now = report(vec![
        replica("a/1/0", ReplicaState::Ready, 0),
        replica("a/1/2", ReplicaState::Ready, 0),
        replica("a/1/3", ReplicaState::Starting, 0),
    ]);
    now.clock_ms = 2000;
    now.assignments_version = 4;
    let d = ReportDelta::between(&base, &now, 41, 42).unwrap();
    assert_eq!((d.base, d.seq), (41, 42));
    let ids: Vec<&str> = d.changed.iter().map(|r| r.replica.as_str()).collect();
    assert_eq!(ids, ["a/1/0", "a/1/3"], "a/1/2 did not change");
    assert_eq!(d.removed, ["a/1/1"]);
    assert_eq!(d.apply(&base), now);
}

#[test]
fn small_usage_moves_are_not_a_change_and_ride_with_the_next_full_report() {
    let base = report(vec![replica("a/1/0", ReplicaState::Ready, 500)]);
    let now = report(vec![replica("a/1/0", ReplicaState::Ready, 530)]);
    let d = ReportDelta::between(&base, &now, 1, 2).unwrap();
    assert!(d.changed.is_empty() && d.removed.is_empty());
    assert_eq!(
        d.apply(&base).replicas[0].cpu_millis,
        500,
        "the held usage stays"
    );
    // A spike (as the autoscaler must see it) is a change at once.
    let spike = report(vec![replica("a/1/0", ReplicaState::Ready, 1500)]);
    let d = ReportDelta::between(&base, &spike, 1, 2).unwrap();
    assert_eq!(d.changed[0].cpu_millis, 1500);
    let now = report(vec![replica("a/1/0", ReplicaState::Ready, 900)]);
    // With a real change, the replica's current usage goes along.
    let mut moved = now.clone();
    moved.replicas[0].restarts = 1;
    let d = ReportDelta::between(&base, &moved, 1, 2).unwrap();
    assert_eq!(d.changed[0].cpu_millis, 900);
}

#[test]
fn a_change_only_full_reports_carry_needs_a_full_report() {
    let base = report(vec![]);
    for change in [
        |r: &mut NodeReport| r.address = "127.0.0.2".into(),
        |r: &mut NodeReport| r.labels.clear(),
        |r: &mut NodeReport| r.logs_port = None,
        |r: &mut NodeReport| r.boot_id = 8,
        |r: &mut NodeReport| r.wasm = true,
    ] {
        let mut now = base.clone();
        change(&mut now);
        assert!(ReportDelta::between(&base, &now, 1, 2).is_none(), "{now:?}");
    }
}

#[test]
fn the_reporter_sends_full_then_deltas_a_full_one_every_tenth_and_after_any_failure() {
    let mut r = Reporter::default();
    let kinds = |r: &mut Reporter, n: usize, ok: bool| -> Vec<char> {
        (0..n)
            .map(|i| {
                let now = report(vec![replica("a/1/0", ReplicaState::Ready, i as u64)]);
                let (m, p) = r.message(now);
                if ok {
                    r.sent(p);
                } else {
                    r.failed();
                }
                match m {
                    NodeMessage::Full { .. } => 'F',
                    NodeMessage::Delta(_) => 'd',
                    _ => '?',
                }
            })
            .collect()
    };
    let first: String = kinds(&mut r, 21, true).into_iter().collect();
    assert_eq!(first, "FdddddddddFdddddddddF");
    assert_eq!(
        kinds(&mut r, 2, false),
        ['d', 'F'],
        "a failed delta: full next"
    );
    assert_eq!(kinds(&mut r, 2, true), ['F', 'd']);
    // A conductor of the previous release: whole, unnumbered reports.
    r.downgrade();
    assert!(r.legacy());
    assert_eq!(kinds(&mut r, 3, true), ['?', '?', '?']);
}

#[test]
fn sequence_numbers_only_grow_and_each_delta_names_the_last_taken_report() {
    let mut r = Reporter::default();
    let mut held: Option<(u64, NodeReport)> = None;
    let mut seen = Vec::new();
    for i in 0..30u64 {
        let state = if i % 3 == 0 {
            ReplicaState::Ready
        } else {
            ReplicaState::Starting
        };
        let now = report(vec![replica("a/1/0", state, i)]);
        let (m, p) = r.message(now.clone());
        // As the conductor does: a delta applies to the report it holds.
        let (seq, taken) = match m {
            NodeMessage::Full { seq, report } => (seq, report),
            NodeMessage::Delta(d) => {
                let (s, base) = held.as_ref().unwrap();
                assert_eq!(d.base, *s);
                (d.seq, d.apply(base))
            }
            _ => unreachable!(),
        };
        assert_eq!(taken.replicas[0].state, state);
        seen.push(seq);
        held = Some((seq, taken));
        r.sent(p);
    }
    assert!(seen.windows(2).all(|w| w[0] < w[1]), "{seen:?}");
}

#[test]
fn full_and_delta_messages_decode_and_a_previous_release_report_still_does() {
    let full = NodeMessage::Full {
        seq: 9,
        report: report(vec![replica("a/1/0", ReplicaState::Ready, 0)]),
    };
    assert_eq!(NodeMessage::decode(&encode(&full)).unwrap(), full);
    let d = ReportDelta::between(&report(vec![]), &report(vec![]), 9, 10).unwrap();
    let delta = NodeMessage::Delta(d);
    assert_eq!(NodeMessage::decode(&encode(&delta)).unwrap(), delta);
    let old = NodeMessage::Report(report(vec![]));
    assert_eq!(NodeMessage::decode(&encode(&old)).unwrap(), old);
}
