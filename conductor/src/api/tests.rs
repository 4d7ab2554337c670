//! The API handlers in process: requests through the real router, bodies
//! in postcard, a real store in a scratch directory, the clock set by hand.

use super::session::{Principal, Session};
use crate::testing::Harness;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use skr8tr_proto::command::Command;
use skr8tr_proto::envelope::Envelope;
use skr8tr_proto::keys::SecretKey;
use skr8tr_proto::wire::{
    self, AuditPage, CommandReply, ErrorReply, HistoryPage, KeyView, NodeMessage, NodeReport,
    NodeView, PingReply, RegistrySnapshot, ReplicaState, ReplicaView, ReportAck, Resources, Role,
    SessionAccepted, SessionHello, StatusReply,
};
use std::sync::Arc;
use tower::ServiceExt;

/// A request on a connection whose session proved the operator key.
async fn call(h: &Harness, method: &str, uri: &str, body: Vec<u8>) -> (StatusCode, Vec<u8>) {
    let operator = Arc::new(Session::proven(Principal::Operator(
        h.operator.public().fingerprint(),
    )));
    call_on(h, &operator, method, uri, body).await
}

/// A request on the connection whose session is `session`.
async fn call_on(
    h: &Harness,
    session: &Arc<Session>,
    method: &str,
    uri: &str,
    body: Vec<u8>,
) -> (StatusCode, Vec<u8>) {
    let mut request = Request::builder()
        .method(method)
        .uri(uri)
        .body(Body::from(body))
        .unwrap();
    request.extensions_mut().insert(session.clone());
    let response = super::router(h.c.clone()).oneshot(request).await.unwrap();
    let status = response.status();
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap();
    (status, bytes.to_vec())
}

async fn get<T: serde::de::DeserializeOwned>(h: &Harness, uri: &str) -> T {
    let (status, body) = call(h, "GET", uri, vec![]).await;
    assert_eq!(
        status,
        StatusCode::OK,
        "{uri}: {:?}",
        wire::decode::<ErrorReply>(&body)
    );
    wire::decode(&body).unwrap()
}

async fn command(h: &Harness, body: Vec<u8>) -> (StatusCode, CommandReply) {
    let (status, body) = call(h, "POST", "/v1/commands", body).await;
    (status, wire::decode(&body).unwrap())
}

#[tokio::test]
async fn ping_names_the_cluster_and_the_conductor_key() {
    let h = Harness::new("api-ping");
    let ping: PingReply = get(&h, "/v1/ping").await;
    assert_eq!(ping.cluster, h.c.cluster);
    assert_eq!(ping.conductor_key, h.c.key.public().fingerprint());
    assert!(ping.resyncing, "a fresh conductor re-syncs first");
    h.c.end_resync();
    assert!(!get::<PingReply>(&h, "/v1/ping").await.resyncing);
}

#[tokio::test]
async fn commands_are_answered_after_they_are_recorded_and_refusals_have_their_status() {
    let h = Harness::new("api-commands");
    let up = Command::Up {
        file: "web.skr8tr".into(),
        manifest: "app web\n  exec /bin/web\n".into(),
    };
    let body = h.request(up);
    let (status, reply) = command(&h, body.clone()).await;
    assert_eq!(status, StatusCode::OK);
    assert!(reply.accepted, "{reply:?}");
    let seq = reply.seq.unwrap();
    assert_eq!(h.history()[seq as usize - 1], "up web.skr8tr");

    // The same bytes again: a replay, refused and recorded.
    let (status, reply) = command(&h, body).await;
    assert_eq!(
        (status, reply.code.as_deref()),
        (StatusCode::CONFLICT, Some("replayed"))
    );
    assert!(reply.seq.is_some());

    // A stranger's key: refused before anything is decoded, recorded.
    let stranger = SecretKey::from_seed(&[0x66; 32]);
    let forged = h.request_by(&stranger, Command::Down { app: "web".into() }, vec![]);
    let (status, reply) = command(&h, forged).await;
    assert_eq!(
        (status, reply.code.as_deref()),
        (StatusCode::UNAUTHORIZED, Some("unknown-key"))
    );
    assert!(
        reply.message.contains("skr8tr key add"),
        "{}",
        reply.message
    );

    // Signed too long ago.
    let stale = h.request(Command::Down { app: "web".into() });
    h.advance(std::time::Duration::from_secs(31));
    let (status, reply) = command(&h, stale).await;
    assert_eq!(
        (status, reply.code.as_deref()),
        (StatusCode::FORBIDDEN, Some("stale"))
    );

    // Not a command request at all.
    let (status, reply) = command(&h, b"garbage".to_vec()).await;
    assert_eq!(
        (status, reply.code.as_deref()),
        (StatusCode::BAD_REQUEST, Some("malformed"))
    );

    // Over the body limit: refused by the router before it is read whole.
    let (status, _) = call(
        &h,
        "POST",
        "/v1/commands",
        vec![0; wire::MAX_BODY_BYTES + 1],
    )
    .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);

    let history: HistoryPage = get(&h, "/v1/history?limit=10").await;
    let outcomes: Vec<(bool, Option<&str>)> = history
        .entries
        .iter()
        .skip(1)
        .map(|e| (e.accepted, e.code.as_deref()))
        .collect();
    assert_eq!(
        outcomes,
        [
            (true, None),
            (false, Some("replayed")),
            (false, Some("unknown-key")),
            (false, Some("stale")),
            (false, Some("malformed")),
        ]
    );
}

/// Deploys two replicas of `web`, placed on node n1, which reports the
/// first ready and the second in `second`.
fn two_replicas_on_n1(h: &Harness, second: ReplicaState) {
    h.up("app web\n  exec /bin/web\n  replicas 2\n");
    h.report("n1", &[]);
    crate::reconciler::step(&h.c, h.now()).unwrap();
    h.report(
        "n1",
        &[
            ("web/1/0", ReplicaState::Ready, Some(20000)),
            ("web/1/1", second, Some(20001)),
        ],
    );
}

#[tokio::test]
async fn reads_merge_desired_state_with_what_nodes_report() {
    let h = Harness::new("api-reads");
    two_replicas_on_n1(&h, ReplicaState::Starting);
    let status: StatusReply = get(&h, "/v1/status").await;
    assert_eq!((status.nodes_alive, status.nodes_lost), (1, 0));
    let web = &status.apps[0];
    assert_eq!(
        (
            web.name.as_str(),
            web.desired,
            web.placed,
            web.running,
            web.ready
        ),
        ("web", 2, 2, 2, 1)
    );
    let nodes: Vec<NodeView> = get(&h, "/v1/nodes").await;
    assert_eq!(
        (nodes[0].name.as_str(), nodes[0].replicas, nodes[0].alive),
        ("n1", 2, true)
    );
    let replicas: Vec<ReplicaView> = get(&h, "/v1/replicas?app=web").await;
    assert_eq!(replicas.len(), 2);
    assert_eq!(replicas[0].state, Some(ReplicaState::Ready));
    assert_eq!(replicas[0].port, Some(20000));
    assert_eq!(replicas[0].address, "127.0.0.9");
    let keys: Vec<KeyView> = get(&h, "/v1/keys").await;
    assert_eq!(keys[0].fingerprint, h.operator.public().fingerprint());
    // History filtered by app finds the `up` (it names only the file) and
    // the placements, not other apps' entries.
    h.up("app other\n  exec /bin/other\n");
    let about_web: HistoryPage = get(&h, "/v1/history?app=web").await;
    let summaries: Vec<&str> = about_web
        .entries
        .iter()
        .map(|e| e.summary.as_str())
        .collect();
    assert_eq!(summaries.len(), 2, "{summaries:?}");
    assert!(
        summaries[1].starts_with("schedule: placed web/1/0"),
        "{summaries:?}"
    );
    // The audit export verifies offline, as `history --verify` does.
    let export: AuditPage = get(&h, "/v1/audit").await;
    assert_eq!(export.next, None, "one page holds it all");
    let records = export
        .entries
        .iter()
        .map(|b| skr8tr_store::audit::decode_entry(b).unwrap());
    let report = skr8tr_store::audit::verify_chain(records).unwrap();
    assert_eq!(report.signatures_verified, 2);
}

/// The exporter of the pretend TLS connections below: the conductor signs
/// and checks proofs over whatever value the connection gives it.
const EXPORTER: [u8; 32] = [0x5e; 32];

/// Opens a session on a new pretend connection: `key` proves `role`
/// (with `ticket`, if any). Returns the connection and the answer.
async fn session(
    h: &Harness,
    key: &SecretKey,
    role: Role,
    ticket: Option<Vec<u8>>,
) -> (Arc<Session>, StatusCode, Vec<u8>) {
    let conn = Arc::new(Session::new(EXPORTER));
    let hello = SessionHello::sign(key, role, ticket, &EXPORTER).unwrap();
    let (status, body) = call_on(h, &conn, "POST", "/v1/session", wire::encode(&hello)).await;
    (conn, status, body)
}

fn ticket(h: &Harness, node: &str) -> Vec<u8> {
    let admit = Command::AdmitNode {
        name: node.into(),
        expires_at_ms: h.now() + 600_000,
    };
    let now = std::time::UNIX_EPOCH + std::time::Duration::from_millis(h.now());
    Envelope::sign(&h.operator, admit, h.c.cluster, now)
        .unwrap()
        .to_bytes()
}

fn empty_report(node: &str) -> NodeMessage {
    NodeMessage::Report(NodeReport {
        node: node.into(),
        address: "127.0.0.9".into(),
        boot_id: 7,
        assignments_version: 0,
        resources: Resources {
            cpu_millis: 2000,
            ram_bytes: 1 << 30,
            ..Resources::default()
        },
        replicas: vec![],
        logs_port: None,
        limits: None,
        labels: Vec::new(),
        wasm: false,
        leaving: false,
        logs_pin: None,
        clock_ms: 0,
    })
}

#[tokio::test]
async fn nodes_are_admitted_once_by_ticket_in_a_session_and_then_poll_on_it() {
    let h = Harness::new("api-nodes");
    let node_key = SecretKey::from_seed(&[0x11; 32]);
    let report = "/v1/nodes/n1/report";
    let message = |m: NodeMessage| wire::encode(&m);
    // Unknown and without a ticket: told how to get one.
    let (_, status, answer) = session(&h, &node_key, Role::Node("n1".into()), None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let e: ErrorReply = wire::decode(&answer).unwrap();
    assert_eq!(e.code, "not-admitted");
    assert!(e.message.contains("skr8tr ticket n1"), "{}", e.message);

    // With a ticket: admitted, and the conductor proves its key over the
    // same exporter.
    let (n1, status, answer) = session(
        &h,
        &node_key,
        Role::Node("n1".into()),
        Some(ticket(&h, "n1")),
    )
    .await;
    assert_eq!(
        status,
        StatusCode::OK,
        "{:?}",
        wire::decode::<ErrorReply>(&answer)
    );
    let accepted: SessionAccepted = wire::decode(&answer).unwrap();
    assert!(wire::check_conductor_proof(
        &h.c.key.public(),
        &EXPORTER,
        &accepted.proof
    ));
    assert!(h.history().last().unwrap().starts_with("admit node n1"));
    let (status, answer) = call_on(&h, &n1, "POST", report, message(empty_report("n1"))).await;
    assert_eq!(
        status,
        StatusCode::OK,
        "{:?}",
        wire::decode::<ErrorReply>(&answer)
    );
    let _: ReportAck = wire::decode(&answer).unwrap();
    assert!(h.c.nodes().contains_key("n1"));
    // One session per connection.
    let hello = SessionHello::sign(&node_key, Role::Node("n1".into()), None, &EXPORTER).unwrap();
    let (status, _) = call_on(&h, &n1, "POST", "/v1/session", wire::encode(&hello)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    // A stolen ticket presented second, by another key: refused, recorded.
    let impostor = SecretKey::from_seed(&[0x12; 32]);
    let (_, status, answer) = session(
        &h,
        &impostor,
        Role::Node("n1".into()),
        Some(ticket(&h, "n1")),
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(
        wire::decode::<ErrorReply>(&answer).unwrap().code,
        "already-admitted"
    );
    // Without a ticket: refused too.
    let (_, status, _) = session(&h, &impostor, Role::Node("n1".into()), None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    // A body far larger than any proof is refused unverified.
    let conn = Arc::new(Session::new(EXPORTER));
    let (status, _) = call_on(&h, &conn, "POST", "/v1/session", vec![0; 40 * 1024]).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    // A proof made for another connection does not open this one.
    let conn = Arc::new(Session::new([0x01; 32]));
    let (status, answer) = call_on(&h, &conn, "POST", "/v1/session", wire::encode(&hello)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        wire::decode::<ErrorReply>(&answer).unwrap().code,
        "bad-signature"
    );
    // A node's session is its own: not another node's, and not a reader's.
    let (status, _) = call_on(
        &h,
        &n1,
        "POST",
        "/v1/nodes/n2/report",
        message(empty_report("n2")),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = call_on(&h, &n1, "GET", "/v1/status", vec![]).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    // A report posted under another node's name.
    let (status, _) = call_on(&h, &n1, "POST", report, message(empty_report("n2"))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _) = call_on(&h, &n1, "POST", "/v1/nodes/bad%20name/report", vec![]).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    // The node's assignments: for n1, echoing the poll's nonce, with the
    // secret value (sealed at rest) opened for the node.
    h.up("app web\n  exec /bin/web\n  secret { K v1 }\n");
    crate::reconciler::step(&h.c, h.now()).unwrap();
    let poll = |version, nonce| {
        message(NodeMessage::Poll {
            version,
            nonce: [nonce; 16],
        })
    };
    let (status, answer) = call_on(&h, &n1, "POST", "/v1/nodes/n1/assignments", poll(0, 1)).await;
    assert_eq!(status, StatusCode::OK);
    let set = wire::Assignments::open(&answer, "n1", &[1; 16]).unwrap();
    assert_eq!(set.replicas[0].replica, "web/1/0");
    assert_eq!(set.replicas[0].spec.secrets[0].1.expose(), "v1");
    // Polling with that version waits out the long-poll, then answers the
    // same set (the test's long-poll window is 300 ms), bound to the
    // second poll: the first answer does not open for it.
    let (status, again) = call_on(
        &h,
        &n1,
        "POST",
        "/v1/nodes/n1/assignments",
        poll(set.version, 2),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let same = wire::Assignments::open(&again, "n1", &[2; 16]).unwrap();
    assert_eq!((same.version, same.replicas), (set.version, set.replicas));
    assert!(wire::Assignments::open(&answer, "n1", &[2; 16]).is_err());

    // Revoked: the open session is refused at once.
    let revoke = h.request(Command::RevokeNode { name: "n1".into() });
    let (_, reply) = command(&h, revoke).await;
    assert!(reply.accepted, "{reply:?}");
    let (status, answer) = call_on(&h, &n1, "POST", report, message(empty_report("n1"))).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        wire::decode::<ErrorReply>(&answer).unwrap().code,
        "revoked-key"
    );
}

#[tokio::test]
async fn every_read_but_ping_needs_a_proven_key_and_each_principal_reads_its_own() {
    let h = Harness::new("api-auth");
    h.c.end_resync();
    let reads = [
        "/v1/status",
        "/v1/nodes",
        "/v1/replicas",
        "/v1/history",
        "/v1/keys",
        "/v1/audit",
        "/v1/registry",
        "/v1/lookup/web",
    ];
    let anonymous = Arc::new(Session::new(EXPORTER));
    for path in reads {
        let (status, answer) = call_on(&h, &anonymous, "GET", path, vec![]).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{path}");
        let e: ErrorReply = wire::decode(&answer).unwrap();
        assert_eq!(e.code, "unauthenticated", "{path}");
        assert!(e.message.contains("skr8tr keygen"), "{path}: {}", e.message);
    }
    let (status, _) = call_on(&h, &anonymous, "GET", "/v1/ping", vec![]).await;
    assert_eq!(status, StatusCode::OK);

    // An operator's session reads everything.
    let (op, status, _) = session(&h, &h.operator, Role::Operator, None).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = call_on(&h, &op, "GET", "/v1/status", vec![]).await;
    assert_eq!(status, StatusCode::OK);
    // A stranger's key is no operator's.
    let stranger = SecretKey::from_seed(&[0x66; 32]);
    let (_, status, answer) = session(&h, &stranger, Role::Operator, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(
        wire::decode::<ErrorReply>(&answer)
            .unwrap()
            .message
            .contains("skr8tr key add"),
        "told how to fix it"
    );

    // An ingress, admitted by its ticket, reads the registry and nothing else.
    let edge = SecretKey::from_seed(&[0x44; 32]);
    let ticket = ticket(&h, &format!("{}edge", wire::INGRESS_PREFIX));
    let (ingress, status, answer) =
        session(&h, &edge, Role::Ingress("edge".into()), Some(ticket)).await;
    assert_eq!(
        status,
        StatusCode::OK,
        "{:?}",
        wire::decode::<ErrorReply>(&answer)
    );
    let (status, _) = call_on(&h, &ingress, "GET", "/v1/registry", vec![]).await;
    assert_eq!(status, StatusCode::OK);
    for path in ["/v1/status", "/v1/replicas", "/v1/audit", "/v1/nodes"] {
        let (status, _) = call_on(&h, &ingress, "GET", path, vec![]).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{path}");
    }
    // It cannot pose as a node either.
    let (status, _) = call_on(
        &h,
        &ingress,
        "POST",
        "/v1/nodes/edge/report",
        wire::encode(&empty_report("edge")),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn the_registry_is_withheld_while_resyncing_and_lookup_rotates() {
    let h = Harness::new("api-registry");
    let (status, answer) = call(&h, "GET", "/v1/registry?index=0", vec![]).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        wire::decode::<ErrorReply>(&answer)
            .unwrap()
            .message
            .contains("re-syncing")
    );
    h.c.end_resync();
    two_replicas_on_n1(&h, ReplicaState::Ready);
    let snap: RegistrySnapshot = get(&h, "/v1/registry?index=0").await;
    assert_eq!(snap.apps["web"].len(), 2);
    let ones: Vec<u16> = {
        let mut v = Vec::new();
        for _ in 0..2 {
            let one: Vec<wire::Endpoint> = get(&h, "/v1/lookup/web?one=true").await;
            v.push(one[0].port);
        }
        v
    };
    assert_ne!(ones[0], ones[1], "round robin");
    let (status, _) = call(&h, "GET", "/v1/lookup/nope", vec![]).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    // Known, but nothing ready: 503, not 404.
    h.report("n1", &[("web/1/0", ReplicaState::Starting, Some(20000))]);
    let (status, _) = call(&h, "GET", "/v1/lookup/web", vec![]).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
}

#[tokio::test]
async fn the_logs_endpoint_serves_only_signed_logs_commands() {
    let h = Harness::new("api-logs");
    let body = h.request(Command::Down { app: "web".into() });
    let (status, answer) = call(&h, "POST", "/v1/logs", body).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let reply: CommandReply = wire::decode(&answer).unwrap();
    assert!(reply.message.contains("only signed `logs` commands"));
    assert_eq!(h.history().len(), 1, "turned away before it was recorded");
    let logs = h.request(Command::Logs {
        app: "web".into(),
        replica: None,
        follow: false,
    });
    let (status, answer) = call(&h, "POST", "/v1/logs", logs).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(
        wire::decode::<CommandReply>(&answer)
            .unwrap()
            .code
            .as_deref(),
        Some("unknown-app")
    );
}

#[tokio::test]
async fn ten_thousand_session_proofs_from_a_stranger_are_refused_within_the_audit_budget() {
    let h = Harness::new("api-session-flood");
    let before = h.history().len();
    let stranger = SecretKey::from_seed(&[0x77; 32]);
    // A valid proof of the stranger's own key, with a forged ticket for a
    // name nobody holds: the worst a stranger can send (it reaches the
    // ticket check, whose refusals are recorded).
    let hello = SessionHello::sign(
        &stranger,
        Role::Node("n9".into()),
        Some(vec![0xee; 4000]),
        &EXPORTER,
    )
    .unwrap();
    let body = wire::encode(&hello);
    for i in 0..10_000 {
        let conn = Arc::new(Session::new(EXPORTER));
        let (status, _) = call_on(&h, &conn, "POST", "/v1/session", body.clone()).await;
        assert!(status.is_client_error(), "proof {i}: {status}");
        // And nothing it may read afterwards.
        if i % 1000 == 0 {
            let (status, _) = call_on(&h, &conn, "GET", "/v1/status", vec![]).await;
            assert_eq!(status, StatusCode::UNAUTHORIZED);
        }
    }
    assert!(h.c.node_key("n9").is_none());
    let added = h.history().len() - before;
    assert!(added <= 32, "{added} audit entries for 10,000 refusals");
}

mod delta;
mod snapshot;
