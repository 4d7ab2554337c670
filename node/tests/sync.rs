//! The node's sync loop against a conductor played by a local hyper server
//! on 127.0.0.1 that speaks the real protocol with real ML-DSA-65 keys: it
//! verifies every node request against the node's key and answers with
//! assignment sets it signs. Replicas are real processes (`sleep`).

// A test: an unwrap is an assertion (clippy allows it inside #[test]
// functions only; these helpers are part of the tests too).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use skr8tr_net::Client;
use skr8tr_node::supervisor::{Supervisor, SupervisorConfig};
use skr8tr_node::sync::{self, NodeSync};
use skr8tr_proto::command::ClusterId;
use skr8tr_proto::keys::{PublicKey, SecretKey};
use skr8tr_proto::manifest;
use skr8tr_proto::wire::{
    self, Assignment, Assignments, Join, NodeMessage, NodeReport, ReplicaState, ReportAck,
    SignedAssignments, SignedNodeRequest,
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
    /// The set it hands out, and the key it signs it with.
    set: Option<(Assignments, Arc<SecretKey>)>,
    reports: Vec<NodeReport>,
    /// Whether each request carried a join ticket, in order.
    joins: Vec<bool>,
    /// Requests whose signature did not verify against the node's key.
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

async fn conductor(node_key: PublicKey, state: State) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let (key, state) = (node_key.clone(), state.clone());
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                    let (key, state) = (key.clone(), state.clone());
                    async move { Ok::<_, std::convert::Infallible>(answer(req, &key, &state).await) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    format!("http://{addr}")
}

async fn answer(req: Request<Incoming>, key: &PublicKey, state: &State) -> Response<Full<Bytes>> {
    let path = req.uri().path().to_string();
    let body = req.into_body().collect().await.unwrap().to_bytes();
    let signed: SignedNodeRequest = wire::decode(&body).unwrap();
    let now = skr8tr_proto::clock::now_ms();
    let Ok(request) = signed.open(key, "n1", now) else {
        lock(state).forged += 1;
        return reply(StatusCode::UNAUTHORIZED, vec![]);
    };
    let poll = {
        let mut seen = lock(state);
        seen.joins.push(signed.join.is_some());
        let version = seen.set.as_ref().map_or(0, |(a, _)| a.version);
        match (path.as_str(), request.message) {
            ("/v1/nodes/n1/report", NodeMessage::Report(report)) => {
                seen.reports.push(report);
                let ack = ReportAck {
                    assignments_version: version,
                };
                return reply(StatusCode::OK, wire::encode(&ack));
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
                    Some((set, key)) => (have, (Assignments { nonce, ..set }, key)),
                    None => return reply(StatusCode::SERVICE_UNAVAILABLE, vec![]),
                }
            }
            _ => return reply(StatusCode::BAD_REQUEST, vec![]),
        }
    };
    let (have, (set, signer)) = poll;
    if have == set.version {
        // Long-poll, shortened: the node asks again.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let signed = wire::encode(&SignedAssignments::sign(&signer, &set).unwrap());
    let mut seen = lock(state);
    seen.polls += 1;
    seen.recorded.push(signed.clone());
    reply(StatusCode::OK, signed)
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
async fn a_node_runs_only_sets_the_pinned_conductor_signed_for_it_and_reports_them() {
    let node_key = SecretKey::from_seed(&[0x21; 32]);
    let conductor_key = Arc::new(SecretKey::from_seed(&[0x22; 32]));
    let impostor = Arc::new(SecretKey::from_seed(&[0x23; 32]));
    let state: State = Arc::default();
    lock(&state).set = Some((set("n1", 5, &["sleeper/1/0"]), conductor_key.clone()));
    let url = conductor(node_key.public(), state.clone()).await;

    let dir = std::env::temp_dir().join(format!("skr8tr-node-sync-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
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
        },
        changed.clone(),
    ));
    let join = Join {
        public_key: node_key.public().to_bytes(),
        ticket: b"a ticket".to_vec(),
    };
    let node = Arc::new(NodeSync {
        client: Client::new(&url).unwrap(),
        key: node_key,
        join: Mutex::new(Some(join)),
        conductor_key: conductor_key.public(),
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
        logs_port: None,
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
        assert!(seen.joins[0], "the first request presents the ticket");
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

    // A set signed by another key, or addressed to another node, is not
    // run: the replica keeps running and the version stays.
    for bad in [
        (set("n1", 6, &[]), impostor),
        (set("n2", 7, &[]), conductor_key.clone()),
    ] {
        let polls = {
            let mut seen = lock(&state);
            seen.set = Some(bad);
            seen.polls
        };
        wait_until("the node to fetch the bad set twice", || {
            lock(&state).polls >= polls + 2
        })
        .await;
    }
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

    // The real conductor's next set: the replica is stopped.
    lock(&state).set = Some((set("n1", 8, &[]), conductor_key));
    wait_until("the unassigned replica to be gone", || {
        last_replicas(&state).is_empty()
            && lock(&state).reports.last().unwrap().assignments_version == 8
    })
    .await;

    // An on-path attacker replays the recorded answer that assigned the
    // replica (correctly signed, for this node): it answers another poll,
    // so the node refuses it and the replica stays down.
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
    poller.abort();
    reporter.abort();
    supervisor.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}
