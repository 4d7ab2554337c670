//! Issue 4's behaviour with real processes on 127.0.0.1: a conductor, node
//! agents and the test workload, driven through the `skr8tr` CLI.

use skr8tr_chaos_tests::harness::{self, Cluster, alive, http_get, wait_for};
use skr8tr_proto::command::{ClusterId, Command};
use skr8tr_proto::envelope::Envelope;
use skr8tr_proto::keys::SecretKey;
use skr8tr_proto::wire::{self, CommandRequest, HistoryEntry, ReplicaState};
use std::collections::BTreeSet;
use std::time::{Duration, SystemTime};

const WAIT: Duration = Duration::from_secs(60);

const WEB: &str = "app web
  exec {workload}
  args --version v1
  replicas 3
  health {
    check GET /healthz 200
    interval 1s
    timeout 500ms
    retries 2
  }
";

fn deploy_web(c: &Cluster) {
    let m = c.manifest("web.skr8tr", WEB);
    let out = c.ok(&["up", m.to_str().unwrap()]);
    assert!(
        out.contains("web: created, generation 1, 3 replicas"),
        "{out}"
    );
}

#[test]
fn up_spreads_three_replicas_over_two_nodes_and_they_answer() {
    let mut c = Cluster::start("spread");
    c.start_node("n1");
    c.start_node("n2");
    wait_for("two nodes", WAIT, || {
        (c.ok(&["nodes"]).matches(" ready ").count() == 2).then_some(())
    });
    deploy_web(&c);
    let replicas = c.wait_ready("web", 3, WAIT);
    let nodes: BTreeSet<&str> = replicas.iter().map(|r| r.node.as_str()).collect();
    assert_eq!(
        nodes.len(),
        2,
        "replicas are spread over both nodes: {replicas:?}"
    );
    for r in &replicas {
        let addr = format!("{}:{}", r.address, r.port.unwrap());
        let (status, body) = http_get(&addr, "/").unwrap();
        assert_eq!(status, 200);
        assert!(body.contains(&format!("replica={}", r.replica)), "{body}");
        assert!(body.contains("version=v1"), "{body}");
    }
    let ps = c.ok(&["ps", "web"]);
    assert_eq!(ps.matches(" ready ").count(), 3, "{ps}");
    let status = c.ok(&["status"]);
    let line = status.lines().find(|l| l.starts_with("web ")).unwrap();
    assert!(line.contains("3/3"), "{status}");
}

#[test]
fn replicas_heal_after_a_process_or_a_node_dies_and_new_nodes_join_at_once() {
    let mut c = Cluster::start("heal");
    c.start_node("n1");
    c.start_node("n2");
    deploy_web(&c);
    let replicas = c.wait_ready("web", 3, WAIT);

    // A replica process dies: its node restarts it.
    let victim = replicas[0].clone();
    let pid = victim.pid.unwrap();
    skr8tr_chaos_tests::harness::kill9(pid);
    let healed = wait_for("the killed replica to restart", WAIT, || {
        c.replicas("web").into_iter().find(|r| {
            r.replica == victim.replica
                && r.pid != Some(pid)
                && r.state == Some(ReplicaState::Ready)
        })
    });
    assert!(healed.restarts >= 1);
    let addr = format!("{}:{}", healed.address, healed.port.unwrap());
    assert_eq!(http_get(&addr, "/healthz").unwrap().0, 200);

    // A node agent dies: its replicas come up on the other node.
    let lost = healed.node.clone();
    let survivor = if lost == "n1" { "n2" } else { "n1" };
    let orphans: Vec<u32> = c
        .replicas("web")
        .iter()
        .filter(|r| r.node == lost)
        .filter_map(|r| r.pid)
        .collect();
    c.kill_node(&lost);
    wait_for("the lost node's replicas to die with it", WAIT, || {
        orphans.iter().all(|p| !alive(*p)).then_some(())
    });
    let moved = wait_for("every replica ready on the surviving node", WAIT, || {
        let r = c.replicas("web");
        (r.len() == 3
            && r.iter()
                .all(|r| r.node == survivor && r.state == Some(ReplicaState::Ready)))
        .then_some(r)
    });
    assert_eq!(moved.len(), 3);
    let nodes = c.ok(&["nodes"]);
    assert!(
        nodes
            .lines()
            .any(|l| l.starts_with(&lost) && l.contains(" lost ")),
        "{nodes}"
    );

    // A third node is schedulable as soon as it reports.
    c.start_node("n3");
    wait_for("n3 listed as ready", WAIT, || {
        c.ok(&["nodes"])
            .lines()
            .any(|l| l.starts_with("n3 ") && l.contains(" ready "))
            .then_some(())
    });
    c.ok(&["scale", "web", "4"]);
    let four = c.wait_ready("web", 4, WAIT);
    assert!(
        four.iter().any(|r| r.node == "n3"),
        "the new replica goes to the empty node: {four:?}"
    );
}

fn signed(key: &SecretKey, cluster: ClusterId, command: Command) -> Vec<u8> {
    Envelope::sign(key, command, cluster, SystemTime::now())
        .unwrap()
        .to_bytes()
}

fn request(envelope: Vec<u8>) -> Vec<u8> {
    wire::encode(&CommandRequest {
        envelope,
        secrets: vec![],
    })
}

#[test]
fn unsigned_tampered_unknown_and_replayed_commands_are_refused_and_recorded() {
    let c = Cluster::start("security");
    let cluster = c.ping().unwrap().cluster;
    let operator =
        skr8tr_proto::keys::read_secret_key(&c.home().join(".skr8tr/signing.sec")).unwrap();
    let scale = || Command::Scale {
        app: "web".into(),
        replicas: 2,
    };

    // Unsigned: not an envelope at all.
    let reply = c.post_command(request(b"please scale web to 2".to_vec()));
    assert_eq!(
        (reply.accepted, reply.code.as_deref()),
        (false, Some("malformed")),
        "{reply:?}"
    );

    // Tampered: a valid signature over other bytes.
    let mut env = Envelope::from_bytes(&signed(&operator, cluster, scale())).unwrap();
    let last = env.payload.len() - 20;
    env.payload[last] ^= 1;
    let reply = c.post_command(request(env.to_bytes()));
    assert_eq!(reply.code.as_deref(), Some("bad-signature"), "{reply:?}");

    // Signed by a key the cluster does not know.
    let stranger = SecretKey::from_seed(&[77; 32]);
    let reply = c.post_command(request(signed(&stranger, cluster, scale())));
    assert_eq!(reply.code.as_deref(), Some("unknown-key"), "{reply:?}");
    assert!(
        reply
            .message
            .contains(&stranger.public().fingerprint().to_string())
    );

    // Accepted once (refused for a missing app, but signed and recorded),
    // then replayed byte for byte.
    let good = request(signed(
        &operator,
        cluster,
        Command::Down {
            app: "nothing".into(),
        },
    ));
    let first = c.post_command(good.clone());
    assert_eq!(first.code.as_deref(), Some("unknown-app"), "{first:?}");
    let again = c.post_command(good);
    assert_eq!(again.code.as_deref(), Some("replayed"), "{again:?}");

    // And one accepted command, through the CLI.
    c.ok(&["up", c.manifest("web.skr8tr", WEB).to_str().unwrap()]);

    let history: Vec<HistoryEntry> = serde_json::from_str(&c.ok(&["history", "--json"])).unwrap();
    let codes: Vec<Option<&str>> = history.iter().map(|h| h.code.as_deref()).collect();
    assert_eq!(
        codes,
        [
            None,
            Some("malformed"),
            Some("bad-signature"),
            Some("unknown-key"),
            Some("unknown-app"),
            Some("replayed"),
            None
        ]
    );
    let me = operator.public().fingerprint().to_string();
    // Refused before proving a key: recorded by sender, its claims shown.
    assert_eq!(history[3].actor, "127.0.0.1");
    assert!(
        history[3].summary.starts_with("unverified: scale web 2 (")
            && history[3]
                .summary
                .ends_with(&format!("names key {})", stranger.public().fingerprint())),
        "{}",
        history[3].summary
    );
    assert!(
        history[5].summary.starts_with("unverified: down nothing"),
        "a replay too"
    );
    assert_eq!(history[6].actor, me);
    assert!(history[6].accepted && history[6].summary == "up web.skr8tr");
    assert!(history.iter().all(|h| h.time_ms > 1_700_000_000_000));
    let table = c.ok(&["history"]);
    assert!(table.contains("rejected: replayed"), "{table}");
    assert!(table.contains(&me), "{table}");
}

#[test]
fn a_conductor_killed_and_restarted_keeps_apps_replicas_and_history() {
    let mut c = Cluster::start("restart");
    c.start_node("n1");
    c.start_node("n2");
    deploy_web(&c);
    let before = c.wait_ready("web", 3, WAIT);
    let history_before = c.ok(&["history", "--json"]);
    let pids: BTreeSet<u32> = before.iter().filter_map(|r| r.pid).collect();

    c.kill_conductor();
    c.start_conductor();
    let after = c.wait_ready("web", 3, WAIT);
    let pids_after: BTreeSet<u32> = after.iter().filter_map(|r| r.pid).collect();
    assert_eq!(
        pids_after, pids,
        "the same processes serve after the restart"
    );
    wait_for("re-sync to finish", WAIT, || {
        (!c.ping()?.resyncing).then_some(())
    });
    // Nothing was scheduled again. To know the reconciler has planned
    // since the restart, give it something to do: once it placed the
    // fourth replica, the history holds that command and that placement
    // and nothing else, and the first three still run.
    c.ok(&["scale", "web", "4"]);
    let four = c.wait_ready("web", 4, WAIT);
    let before: Vec<HistoryEntry> = serde_json::from_str(&history_before).unwrap();
    let after: Vec<HistoryEntry> =
        serde_json::from_str(&c.ok(&["history", "--json", "--limit", "1000"])).unwrap();
    let last_before = before.last().unwrap().seq;
    let new: Vec<&str> = after
        .iter()
        .filter(|e| e.seq > last_before)
        .map(|e| e.summary.as_str())
        .collect();
    assert_eq!(new.len(), 2, "only the scale and its placement: {new:?}");
    assert_eq!(new[0], "scale web 4");
    assert!(
        new[1].starts_with("schedule: placed web/1/3 on "),
        "{new:?}"
    );
    let pids_four: BTreeSet<u32> = four.iter().filter_map(|r| r.pid).collect();
    assert!(pids_four.is_superset(&pids), "{pids_four:?} ⊇ {pids:?}");
    for pid in pids {
        assert!(alive(pid));
    }
}

#[test]
fn logs_come_through_the_conductor_signed_and_audited() {
    let mut c = Cluster::start("logs");
    c.start_node("n1");
    deploy_web(&c);
    let replicas = c.wait_ready("web", 3, WAIT);

    let all = c.ok(&["logs", "web"]);
    for r in &replicas {
        let line = all
            .lines()
            .find(|l| l.starts_with(&r.replica))
            .unwrap_or_else(|| panic!("{all}"));
        assert!(line.contains("version=v1 listening on"), "{line}");
    }
    let one = c.ok(&["logs", "web", "--replica", &replicas[1].replica]);
    assert_eq!(one.lines().count(), 1, "{one}");
    assert!(one.contains("listening on"), "{one}");

    let missing = c.skr8tr(&["logs", "nope"]);
    assert_eq!(missing.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("unknown-app"));

    // -f prints what exists, then new lines: a replica killed and restarted
    // writes its start line again.
    let mut follow = c
        .command(&["logs", "web", "--replica", &replicas[0].replica, "-f"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = follow.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            let _ = tx.send(line);
        }
    });
    let first = rx.recv_timeout(WAIT).unwrap();
    assert!(first.contains("listening on"), "{first}");
    skr8tr_chaos_tests::harness::kill9(replicas[0].pid.unwrap());
    let mut later = Vec::new();
    let seen = |later: &Vec<String>| {
        later.iter().any(|l| l.contains("restarting"))
            && later.iter().any(|l| l.contains("listening on"))
    };
    while !seen(&later) {
        later.push(
            rx.recv_timeout(WAIT)
                .unwrap_or_else(|_| panic!("follow printed only {later:?}")),
        );
    }
    let _ = follow.kill();
    let _ = follow.wait();

    let history = c.ok(&["history", "--app", "web"]);
    assert!(
        history.contains("logs web --replica"),
        "reads of output are audited:\n{history}"
    );
    assert!(history.contains("up web.skr8tr"), "{history}");
    c.kill_node("n1");
}

#[test]
fn secrets_reach_the_process_but_never_the_audit_log() {
    let mut c = Cluster::start("secrets");
    c.start_node("n1");
    let m = c.manifest(
        "db.skr8tr",
        "app db\n  exec {workload}\n  env { MODE test }\n  secret {\n    DB_PASSWORD \"correct horse battery staple\"\n  }\n  health { check tcp }\n",
    );
    c.ok(&["up", m.to_str().unwrap()]);
    let r = c.wait_ready("db", 1, WAIT).remove(0);
    let environ = std::fs::read(format!("/proc/{}/environ", r.pid.unwrap())).unwrap();
    let environ = String::from_utf8_lossy(&environ);
    assert!(
        environ.contains("DB_PASSWORD=correct horse battery staple"),
        "the process has its secret"
    );
    assert!(environ.contains("MODE=test"));

    // Stop the conductor and read its store directly: every audit entry,
    // envelopes included, is free of the value; the spec (which nodes
    // need) has it sealed to the conductor's key, and opens with it.
    c.kill_conductor();
    let store = skr8tr_store::Store::open(&c.data(), skr8tr_store::Options::default()).unwrap();
    let snap = store.snapshot().unwrap();
    let needle = b"correct horse battery staple";
    for entry in snap.audit_all().unwrap() {
        let bytes = format!("{entry:?}");
        assert!(
            !bytes.contains("correct horse"),
            "audit entry {} holds the secret",
            entry.seq
        );
        if let skr8tr_store::AuditEvent::Command { envelope, .. } = &entry.event {
            assert!(
                !envelope.windows(needle.len()).any(|w| w == needle),
                "entry {} envelope",
                entry.seq
            );
        }
    }
    let spec = snap.spec("db", 1).unwrap().unwrap();
    let sealed = spec.spec.secrets[0].1.expose();
    assert!(skr8tr_proto::sealed::is_sealed(sealed), "{sealed}");
    let key = std::fs::read(c.data().join("conductor.kem")).unwrap();
    let opening = skr8tr_proto::sealed::OpeningKey::from_bytes(&key).unwrap();
    assert_eq!(
        opening.open("db", "DB_PASSWORD", sealed).unwrap(),
        "correct horse battery staple"
    );
    let file = std::fs::read(c.data().join(skr8tr_store::DB_FILE)).unwrap();
    assert!(
        !file.windows(needle.len()).any(|w| w == needle),
        "the store file"
    );
    assert!(
        !spec.manifest.contains("correct horse"),
        "the stored manifest text is the signed, redacted one"
    );
    assert!(store.verify_audit().is_ok());
    drop(snap);
    drop(store);
    c.start_conductor();
}

#[test]
fn only_nodes_admitted_with_a_ticket_join_and_a_ticket_works_once() {
    let mut c = Cluster::start("admission");
    // No ticket: refused, so it never sees assignments (which hold secrets).
    c.start_node_with("rogue", &[]);
    wait_for("the refusal in the rogue node's log", WAIT, || {
        c.log("node-rogue.log")
            .contains("is not admitted to this cluster")
            .then_some(())
    });
    assert!(
        !c.ok(&["nodes"]).contains("rogue"),
        "an unadmitted node is not listed"
    );

    // A ticket for another name does not admit this one.
    let ticket = c.dir.join("n1.ticket");
    c.ok(&["ticket", "n1", "--out", ticket.to_str().unwrap()]);
    c.start_node_with("n2", &["--ticket", ticket.to_str().unwrap()]);
    wait_for("the name mismatch in n2's log", WAIT, || {
        c.log("node-n2.log")
            .contains("the ticket admits node `n1`, not `n2`")
            .then_some(())
    });
    c.kill_node("n2");

    // The right node joins with it; the same ticket cannot admit a second
    // node of that name (with another key).
    c.start_node_with("n1", &["--ticket", ticket.to_str().unwrap()]);
    wait_for("n1 ready", WAIT, || {
        c.ok(&["nodes"])
            .lines()
            .any(|l| l.starts_with("n1 ") && l.contains(" ready "))
            .then_some(())
    });
    c.start_node_labelled("n1-again", "n1", &["--ticket", ticket.to_str().unwrap()]);
    wait_for("the second use refused", WAIT, || {
        let log = c.log("node-n1-again.log");
        (log.contains("already") || log.contains("was already used")).then_some(())
    });

    let history: Vec<HistoryEntry> = serde_json::from_str(&c.ok(&["history", "--json"])).unwrap();
    let admits: Vec<&HistoryEntry> = history
        .iter()
        .filter(|h| h.summary.contains("admit node n1"))
        .collect();
    assert!(admits.iter().any(|h| h.accepted), "{history:?}");
    assert!(
        admits.iter().any(|h| !h.accepted),
        "the reuse is recorded as refused: {history:?}"
    );

    // A restarted node keeps its key: no ticket needed again.
    c.kill_node("n1");
    c.start_node_with("n1", &[]);
    wait_for("n1 back without a ticket", WAIT, || {
        c.ok(&["nodes"])
            .lines()
            .any(|l| l.starts_with("n1 ") && l.contains(" ready "))
            .then_some(())
    });
}

#[test]
fn operator_keys_are_added_and_revoked_by_signed_commands_and_the_log_verifies() {
    let c = Cluster::start("keys");
    let bob_dir = c.dir.join("bob");
    c.ok(&["keygen", "--out", bob_dir.to_str().unwrap()]);
    let bob_sec = bob_dir.join("signing.sec");
    let as_bob = |args: &[&str]| {
        let mut all = vec!["--key", bob_sec.to_str().unwrap()];
        all.extend_from_slice(args);
        c.skr8tr(&all)
    };
    // Unknown at first; the refusal says how to fix it.
    let out = as_bob(&["up", c.manifest("web.skr8tr", WEB).to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("skr8tr key add"));

    c.ok(&[
        "key",
        "add",
        "bob",
        bob_dir.join("signing.pub").to_str().unwrap(),
    ]);
    let out = as_bob(&["up", c.manifest("web.skr8tr", WEB).to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let bob_fp = String::from_utf8_lossy(
        &c.skr8tr(&["fingerprint", bob_dir.join("signing.pub").to_str().unwrap()])
            .stdout,
    )
    .trim()
    .to_string();
    let list = c.ok(&["key", "list"]);
    assert!(
        list.lines()
            .any(|l| l.starts_with(&bob_fp) && l.contains("bob") && l.contains("active")),
        "{list}"
    );

    c.ok(&["key", "revoke", &bob_fp]);
    let out = as_bob(&["scale", "web", "1"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("revoked"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(c.ok(&["key", "list"]).contains("revoked at seq"));

    // The last active key cannot lock everyone out.
    let me = String::from_utf8_lossy(&c.skr8tr(&["fingerprint"]).stdout)
        .trim()
        .to_string();
    let out = c.skr8tr(&["key", "revoke", &me]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("last active operator key"));

    // The whole log re-verifies offline, bob's accepted command included.
    let verified = c.ok(&["history", "--verify"]);
    assert!(verified.contains("audit log verified"), "{verified}");
    // key add, bob's up, key revoke: three accepted signed commands.
    assert!(verified.contains("3 signatures re-checked"), "{verified}");
}

#[test]
fn the_registry_lists_ready_replicas_and_lookup_round_robins() {
    let mut c = Cluster::start("registry");
    c.start_node("n1");
    c.start_node("n2");
    deploy_web(&c);
    let replicas = c.wait_ready("web", 3, WAIT);
    let all = c.ok(&["lookup", "web"]);
    for r in &replicas {
        assert!(
            all.contains(&format!("{}:{}\t{}", r.address, r.port.unwrap(), r.replica)),
            "{all}"
        );
    }
    let picks: BTreeSet<String> = (0..6).map(|_| c.ok(&["lookup", "web", "--one"])).collect();
    assert_eq!(
        picks.len(),
        3,
        "round-robin visits every replica: {picks:?}"
    );

    // A watch with the current index waits; a replica dying changes the
    // registry, and the watch answers at once without it.
    let client = c.client();
    let (_, body) = harness::block_on(client.get("/v1/registry", Duration::from_secs(5))).unwrap();
    let snap: wire::RegistrySnapshot = wire::decode(&body).unwrap();
    assert_eq!(snap.apps["web"].len(), 3);
    let watcher = {
        let (client, index) = (c.client(), snap.index);
        std::thread::spawn(move || {
            let t = std::time::Instant::now();
            let path = format!("/v1/registry?index={index}");
            let (_, body) = harness::block_on(client.get(&path, Duration::from_secs(60))).unwrap();
            (
                t.elapsed(),
                wire::decode::<wire::RegistrySnapshot>(&body).unwrap(),
            )
        })
    };
    std::thread::sleep(Duration::from_millis(300));
    skr8tr_chaos_tests::harness::kill9(replicas[0].pid.unwrap());
    let (waited, changed) = watcher.join().unwrap();
    assert_ne!(changed.index, snap.index);
    assert!(
        waited < Duration::from_secs(20),
        "answered on the change, not at the timeout: {waited:?}"
    );
    let left = changed.apps.get("web").cloned().unwrap_or_default();
    assert!(
        left.iter().all(|e| e.replica != replicas[0].replica),
        "{left:?}"
    );
    let missing = c.skr8tr(&["lookup", "nope"]);
    assert_eq!(missing.status.code(), Some(1));
}
