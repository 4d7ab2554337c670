//! The node's sync loop against a conductor played by a local hyper server
//! on 127.0.0.1 that speaks the real protocol: TLS with a real identity
//! (which the node pins), sessions proven with real ML-DSA-65 keys over
//! the TLS exporter, and assignment sets answering each poll. Every
//! answer closes its connection, so every request opens a new session.
//! Replicas are real processes (`sleep`).

// A test: an unwrap is an assertion (clippy allows it inside #[test]
// functions only; these helpers are part of the tests too).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use skr8tr_net::{Auth, Client};
use skr8tr_node::supervisor::{Supervisor, SupervisorConfig};
use skr8tr_node::sync::{self, NodeSync};
use skr8tr_proto::command::ClusterId;
use skr8tr_proto::keys::{PublicKey, SecretKey};
use skr8tr_proto::manifest;
use skr8tr_proto::wire::{
    self, Assignment, Assignments, NodeMessage, NodeReport, ReplicaState, ReportAck, Role,
    SessionAccepted, SessionHello,
};
use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::Notify;

const DEADLINE: Duration = Duration::from_secs(20);

/// What the test conductor answers and what it saw.
#[derive(Default)]
struct Seen {
    /// The set it hands out.
    set: Option<Assignments>,
    /// The key it proves sessions with.
    proof_key: Option<Arc<SecretKey>>,
    /// Every report as the conductor holds it (deltas applied).
    reports: Vec<NodeReport>,
    /// The number of the last report taken.
    seq: Option<u64>,
    /// Deltas taken.
    deltas: usize,
    /// Answer as a conductor of the release before numbered reports: it
    /// cannot read them, and takes whole ones.
    legacy: bool,
    /// Whole, unnumbered reports taken.
    whole: usize,
    /// Whether each session carried a join ticket, in order.
    joins: Vec<bool>,
    /// Sessions whose proof did not verify against the node's key.
    forged: usize,
    /// Assignment sets handed out.
    polls: usize,
    /// Every assignments answer sent, as bytes (a recording proxy).
    recorded: Vec<Vec<u8>>,
    /// Answer polls with this recorded answer instead (a replay).
    replay: Option<Vec<u8>>,
}

type State = Arc<Mutex<Seen>>;

fn lock(s: &State) -> std::sync::MutexGuard<'_, Seen> {
    s.lock().unwrap()
}

/// Serves TLS with `identity`; returns the base URL.
async fn conductor(
    identity: &skr8tr_net::tls::Identity,
    node_key: PublicKey,
    state: State,
) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(identity.server_config().unwrap());
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let (key, state, acceptor) = (node_key.clone(), state.clone(), acceptor.clone());
            tokio::spawn(async move {
                let io = skr8tr_net::server::Guarded::new(stream, Duration::from_secs(60));
                let Ok(tls) = skr8tr_net::tls::accept(&acceptor, io, Duration::from_secs(5)).await
                else {
                    return;
                };
                let exporter = skr8tr_net::tls::exporter(tls.get_ref().1).unwrap();
                let proven = Arc::new(Mutex::new(false));
                let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                    let (key, state, proven) = (key.clone(), state.clone(), proven.clone());
                    async move {
                        let opens = req.uri().path() == wire::SESSION_PATH;
                        let mut r = answer(req, &key, &state, &exporter, &proven).await;
                        if !opens {
                            r.headers_mut()
                                .insert(hyper::header::CONNECTION, "close".parse().unwrap());
                        }
                        Ok::<_, std::convert::Infallible>(r)
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tls), service)
                    .await;
            });
        }
    });
    format!("https://{addr}")
}

async fn answer(
    req: Request<Incoming>,
    key: &PublicKey,
    state: &State,
    exporter: &[u8; 32],
    proven: &Mutex<bool>,
) -> Response<Full<Bytes>> {
    let path = req.uri().path().to_string();
    let body = req.into_body().collect().await.unwrap().to_bytes();
    if path == wire::SESSION_PATH {
        let hello: SessionHello = wire::decode(&body).unwrap();
        let mut seen = lock(state);
        seen.joins.push(hello.ticket.is_some());
        if hello.verify(exporter).ok().as_ref() != Some(key)
            || hello.role != Role::Node("n1".into())
        {
            seen.forged += 1;
            return reply(StatusCode::UNAUTHORIZED, vec![]);
        }
        *proven.lock().unwrap() = true;
        let proof = wire::conductor_proof(seen.proof_key.as_ref().unwrap(), exporter).unwrap();
        let accepted = SessionAccepted {
            principal: "node n1".into(),
            proof,
        };
        return reply(StatusCode::OK, wire::encode(&accepted));
    }
    if !*proven.lock().unwrap() {
        return reply(StatusCode::UNAUTHORIZED, vec![]);
    }
    let message: NodeMessage = wire::decode(&body).unwrap();
    let poll = {
        let mut seen = lock(state);
        let version = seen.set.as_ref().map_or(0, |a| a.version);
        match (path.as_str(), message) {
            ("/v1/nodes/n1/report", NodeMessage::Full { .. } | NodeMessage::Delta(_))
                if seen.legacy =>
            {
                // What the previous release's conductor answers.
                let e = wire::ErrorReply {
                    code: "bad-request".into(),
                    message: "not a node message: Found an enum discriminant that was not expected"
                        .into(),
                };
                return reply(StatusCode::BAD_REQUEST, wire::encode(&e));
            }
            ("/v1/nodes/n1/report", NodeMessage::Report(report)) if seen.legacy => {
                seen.whole += 1;
                seen.reports.push(report);
                return reply(StatusCode::OK, ack(version));
            }
            ("/v1/nodes/n1/report", m @ (NodeMessage::Full { .. } | NodeMessage::Delta(_))) => {
                let (seq, report) = match m {
                    NodeMessage::Full { seq, report } => (seq, report),
                    NodeMessage::Delta(d) => {
                        // As the conductor: a delta applies to what it holds.
                        assert_eq!(Some(d.base), seen.seq, "a delta on the last report");
                        seen.deltas += 1;
                        (d.seq, d.apply(seen.reports.last().unwrap()))
                    }
                    _ => unreachable!(),
                };
                seen.seq = Some(seq);
                seen.reports.push(report);
                return reply(StatusCode::OK, ack(version));
            }
            (
                "/v1/nodes/n1/assignments",
                NodeMessage::Poll {
                    version: have,
                    nonce,
                },
            ) => {
                if let Some(old) = seen.replay.clone() {
                    // The node backs off after refusing it.
                    seen.polls += 1;
                    return reply(StatusCode::OK, old);
                }
                match seen.set.clone() {
                    Some(set) => (have, Assignments { nonce, ..set }),
                    None => return reply(StatusCode::SERVICE_UNAVAILABLE, vec![]),
                }
            }
            _ => return reply(StatusCode::BAD_REQUEST, vec![]),
        }
    };
    let (have, set) = poll;
    if have == set.version {
        // Long-poll, shortened: the node asks again.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let body = wire::encode(&set);
    let mut seen = lock(state);
    seen.polls += 1;
    seen.recorded.push(body.clone());
    reply(StatusCode::OK, body)
}

fn reply(status: StatusCode, body: Vec<u8>) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r
}

fn set(node: &str, version: u64, replicas: &[&str]) -> Assignments {
    let spec = manifest::parse(
        "t.skr8tr",
        "app sleeper\n  exec /bin/sleep\n  args 1000\n  settle 100ms\n",
    )
    .unwrap()
    .remove(0);
    Assignments {
        cluster: ClusterId([1; 16]),
        node: node.into(),
        version,
        replicas: replicas
            .iter()
            .map(|id| Assignment {
                replica: id.to_string(),
                app: "sleeper".into(),
                generation: 1,
                spec: spec.clone(),
            })
            .collect(),
        nonce: [0; 16],
    }
}

async fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + DEADLINE;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The last report's replicas: id and state.
fn last_replicas(state: &State) -> Vec<(String, ReplicaState)> {
    lock(state)
        .reports
        .last()
        .map(|r| {
            r.replicas
                .iter()
                .map(|x| (x.replica.clone(), x.state))
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn a_node_runs_only_sets_the_pinned_conductor_sent_on_its_session_and_reports_them() {
    let node_key = Arc::new(SecretKey::from_seed(&[0x21; 32]));
    let conductor_key = Arc::new(SecretKey::from_seed(&[0x22; 32]));
    let impostor = Arc::new(SecretKey::from_seed(&[0x23; 32]));
    let state: State = Arc::default();
    {
        let mut seen = lock(&state);
        seen.set = Some(set("n1", 5, &["sleeper/1/0"]));
        seen.proof_key = Some(conductor_key.clone());
    }
    let dir = std::env::temp_dir().join(format!("skr8tr-node-sync-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("tls")).unwrap();
    let identity = skr8tr_net::tls::Identity::create(&dir.join("tls")).unwrap();
    let url = conductor(&identity, node_key.public(), state.clone()).await;
    let changed = Arc::new(Notify::new());
    let supervisor = Arc::new(Supervisor::new(
        SupervisorConfig {
            address: IpAddr::V4(Ipv4Addr::LOCALHOST),
            port_range: (28100, 28199),
            data_dir: dir.clone(),
            log_lines: 10,
            shim: common::shim_bin(),
            grace: Duration::from_secs(5),
            cgroups: None,
            allow_root: false,
            wasm_runtime: None,
            disk_logs: None,
        },
        changed.clone(),
    ));
    let auth = Auth::new(node_key.clone(), Role::Node("n1".into()))
        .with_ticket(Some(b"a ticket".to_vec()))
        .with_conductor(conductor_key.public());
    let node = Arc::new(NodeSync {
        client: Client::new(&url, identity.pin()).unwrap().with_auth(auth),
        name: "n1".into(),
        address: "127.0.0.1".into(),
        boot_id: 9,
        resources: sync::detect_resources(),
        limits: None,
        labels: Vec::new(),
        wasm: false,
        heartbeat: Duration::from_millis(100),
        supervisor: supervisor.clone(),
        changed,
        version: AtomicU64::new(0),
        repoll: Notify::new(),
        leaving: Default::default(),
        lost_after_ms: std::sync::atomic::AtomicU64::new(5000),
        gated: Default::default(),
        logs_port: None,
        logs_pin: None,
        reporter: Default::default(),
    });
    node.report_once().await;
    let reporter = tokio::spawn(node.clone().report());
    let poller = tokio::spawn(node.clone().poll());

    wait_until("the assigned replica to be reported ready", || {
        last_replicas(&state) == [("sleeper/1/0".to_string(), ReplicaState::Ready)]
            && lock(&state).reports.last().unwrap().assignments_version == 5
    })
    .await;
    {
        let seen = lock(&state);
        assert!(seen.joins[0], "the first session presents the ticket");
        assert!(
            seen.joins[1..].iter().all(|j| !j),
            "and no later one: {:?}",
            seen.joins
        );
        assert_eq!(seen.forged, 0);
        let r = seen.reports.last().unwrap();
        assert_eq!((r.node.as_str(), r.boot_id), ("n1", 9));
        assert!(r.resources.cpu_millis >= 1000 && r.resources.ram_bytes > 0);
    }

    // A server that cannot prove the pinned conductor key (it holds the
    // TLS identity, but not the conductor's ML-DSA key): no request goes
    // past its session, so its set is never even fetched.
    let sessions = {
        let mut seen = lock(&state);
        seen.set = Some(set("n1", 6, &[]));
        seen.proof_key = Some(impostor);
        seen.joins.len()
    };
    wait_until("the node to try two more sessions", || {
        lock(&state).joins.len() >= sessions + 2
    })
    .await;
    // A set addressed to another node is not run.
    let polls = {
        let mut seen = lock(&state);
        seen.set = Some(set("n2", 7, &[]));
        seen.proof_key = Some(conductor_key.clone());
        seen.polls
    };
    wait_until("the node to fetch the bad set twice", || {
        lock(&state).polls >= polls + 2
    })
    .await;
    // The replica kept running throughout and the version stayed.
    let before = lock(&state).reports.len();
    wait_until("two more reports", || {
        lock(&state).reports.len() >= before + 2
    })
    .await;
    assert_eq!(
        last_replicas(&state),
        [("sleeper/1/0".to_string(), ReplicaState::Ready)]
    );
    assert_eq!(lock(&state).reports.last().unwrap().assignments_version, 5);
    assert!(
        lock(&state).deltas > 0,
        "heartbeats between full reports are deltas"
    );

    // The real conductor's next set: the replica is stopped.
    lock(&state).set = Some(set("n1", 8, &[]));
    wait_until("the unassigned replica to be gone", || {
        last_replicas(&state).is_empty()
            && lock(&state).reports.last().unwrap().assignments_version == 8
    })
    .await;

    // A recorded answer that assigned the replica (for this node, from
    // the real conductor) played back on a later poll: it answers another
    // poll, so the node refuses it and the replica stays down.
    let polls = {
        let mut seen = lock(&state);
        let first = seen.recorded[0].clone();
        seen.replay = Some(first);
        seen.polls
    };
    wait_until("the node to be sent the replay three times", || {
        lock(&state).polls >= polls + 3
    })
    .await;
    let before = lock(&state).reports.len();
    wait_until("two more reports", || {
        lock(&state).reports.len() >= before + 2
    })
    .await;
    assert!(last_replicas(&state).is_empty(), "a replayed set was run");
    assert_eq!(lock(&state).reports.last().unwrap().assignments_version, 8);

    // Rolled back to a conductor that cannot read numbered reports: the
    // node reports whole, and keeps in contact.
    lock(&state).legacy = true;
    wait_until("three whole reports", || lock(&state).whole >= 3).await;
    poller.abort();
    reporter.abort();
    supervisor.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}

/// The conductor's answer to a report taken.
fn ack(version: u64) -> Vec<u8> {
    wire::encode(&ReportAck {
        assignments_version: version,
        left: false,
        lost_after_ms: 5000,
    })
}
