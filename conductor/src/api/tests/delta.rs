//! Delta reports through the real handler: a delta applies only to the
//! report the conductor holds under its base number; anything else is
//! answered `report-resend`, which a node follows with a full report.

use super::*;
use crate::testing::replica;
use skr8tr_proto::wire::ReportDelta;

fn full(seq: u64, replicas: Vec<wire::ReplicaReport>) -> NodeMessage {
    let NodeMessage::Report(report) = empty_report("n1") else {
        unreachable!()
    };
    NodeMessage::Full {
        seq,
        report: NodeReport { replicas, ..report },
    }
}

fn held(h: &Harness) -> (Option<u64>, Vec<(String, ReplicaState)>) {
    let nodes = h.c.nodes();
    let n = &nodes["n1"];
    let replicas = n
        .report
        .replicas
        .iter()
        .map(|r| (r.replica.clone(), r.state))
        .collect();
    (n.seq, replicas)
}

#[tokio::test]
async fn a_delta_applies_to_the_report_held_under_its_base_and_any_other_is_sent_back() {
    let h = Harness::new("api-delta");
    let key = SecretKey::from_seed(&[0x21; 32]);
    let (n1, status, _) = session(&h, &key, Role::Node("n1".into()), Some(ticket(&h, "n1"))).await;
    assert_eq!(status, StatusCode::OK);
    let post = |m: NodeMessage| {
        let n1 = n1.clone();
        let h = &h;
        async move { call_on(h, &n1, "POST", "/v1/nodes/n1/report", wire::encode(&m)).await }
    };
    let starting = vec![replica("web/1/0", ReplicaState::Starting, Some(20000))];
    let NodeMessage::Full { report: base, .. } = full(5, starting.clone()) else {
        unreachable!()
    };
    assert_eq!(post(full(5, starting)).await.0, StatusCode::OK);
    assert_eq!(held(&h).0, Some(5));

    // What changed, on the held report: taken.
    let mut now = base.clone();
    now.replicas[0].state = ReplicaState::Ready;
    now.replicas
        .push(replica("web/1/1", ReplicaState::Starting, Some(20001)));
    let d = ReportDelta::between(&base, &now, 5, 6).unwrap();
    assert_eq!(post(NodeMessage::Delta(d.clone())).await.0, StatusCode::OK);
    assert_eq!(
        held(&h),
        (
            Some(6),
            vec![
                ("web/1/0".into(), ReplicaState::Ready),
                ("web/1/1".into(), ReplicaState::Starting)
            ]
        )
    );

    // The same delta again (its base is no longer held), a delta from
    // another boot of the node, and one after a conductor restart (which
    // holds no report): each is sent back, and nothing it says is taken.
    let resend = |(status, body): (StatusCode, Vec<u8>)| {
        assert_eq!(status, StatusCode::CONFLICT);
        let e: ErrorReply = wire::decode(&body).unwrap();
        assert_eq!(e.code, "report-resend");
        assert!(e.message.contains("send a full report"), "{}", e.message);
    };
    let mut gone = ReportDelta::between(&now, &base, 5, 9).unwrap();
    gone.removed = vec!["web/1/0".into(), "web/1/1".into()];
    resend(post(NodeMessage::Delta(gone.clone())).await);
    let reboot = ReportDelta {
        base: 6,
        boot_id: 8,
        ..gone.clone()
    };
    resend(post(NodeMessage::Delta(reboot)).await);
    assert_eq!(held(&h).1.len(), 2, "the held report is as it was");
    h.c.nodes().clear();
    resend(post(NodeMessage::Delta(ReportDelta { base: 6, ..gone })).await);
    // The full report the node sends next is taken.
    assert_eq!(post(full(7, vec![])).await.0, StatusCode::OK);
    assert_eq!(held(&h), (Some(7), vec![]));
    // A full report that arrives after a newer one (a request abandoned
    // and delivered late) does not replace it.
    resend(post(full(6, starting_again())).await);
    assert_eq!(held(&h), (Some(7), vec![]));
    // A delta speaking for another node is refused, as a report is.
    let NodeMessage::Full { report: empty, .. } = full(7, vec![]) else {
        unreachable!()
    };
    let other = ReportDelta {
        node: "n2".into(),
        ..ReportDelta::between(&empty, &empty, 7, 8).unwrap()
    };
    let (status, body) = post(NodeMessage::Delta(other)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let e: ErrorReply = wire::decode(&body).unwrap();
    assert!(e.message.contains("posted for node `n1`"), "{}", e.message);
    assert_eq!(held(&h), (Some(7), vec![]));

    // 10,000 deltas on a base not held (a node looping on a stale one):
    // each refused, none taken, the held report as it was.
    let stale = ReportDelta::between(&empty, &empty, 3, 4).unwrap();
    for _ in 0..10_000 {
        let (status, _) = post(NodeMessage::Delta(stale.clone())).await;
        assert_eq!(status, StatusCode::CONFLICT);
    }
    assert_eq!(held(&h), (Some(7), vec![]));
}

fn starting_again() -> Vec<wire::ReplicaReport> {
    vec![replica("web/1/0", ReplicaState::Starting, Some(20000))]
}
