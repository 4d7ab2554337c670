//! `plan` and `up --check-index` through the real store.

use crate::testing::Harness;
use skr8tr_proto::command::Command;
use skr8tr_proto::manifest::secrets;
use skr8tr_proto::wire::SecretValue;
use skr8tr_store::Outcome;

const TWO: &str = "app web\n  exec /bin/web\n  args --version v1\n  replicas 2\n\
                   app api\n  exec /bin/api\n  port 8081\n";

fn with_sidecar(text: &str) -> (String, Vec<SecretValue>) {
    let (signed, values) = secrets::redact("t.skr8tr", text, || [7; 16]).unwrap();
    (signed, values.into_iter().map(SecretValue::from).collect())
}

fn plan(h: &Harness, text: &str) -> String {
    let (manifest, sidecar) = with_sidecar(text);
    match h.apply_with(
        Command::Plan {
            file: "t.skr8tr".into(),
            manifest,
        },
        &sidecar,
    ) {
        Outcome::Accepted { value, .. } => value,
        Outcome::Rejected { refusal, .. } => panic!("refused: {refusal:?}"),
    }
}

fn up_checked(h: &Harness, text: &str, index: u64) -> Outcome<String> {
    let (manifest, sidecar) = with_sidecar(text);
    h.apply_with(
        Command::UpChecked {
            file: "t.skr8tr".into(),
            manifest,
            index,
        },
        &sidecar,
    )
}

fn index_of(plan: &str) -> u64 {
    let last = plan.lines().last().unwrap();
    last.strip_prefix("index ")
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no index in {plan}"))
}

#[test]
fn plan_shows_added_changed_and_removed_apps_and_changes_nothing() {
    let h = Harness::new("plan-diff");
    let first = plan(&h, TWO);
    assert!(
        first.contains("+ app web: create, generation 1, 2 replicas"),
        "{first}"
    );
    assert!(first.contains("    + exec: \"/bin/web\""), "{first}");
    assert!(first.contains("    + port.Fixed: 8081"), "{first}");
    assert!(
        !first.contains("volumes"),
        "empty lists are left out: {first}"
    );
    assert!(first.contains("+ app api: create"), "{first}");
    // Nothing was applied.
    assert!(h.c.store.snapshot().unwrap().app("web").unwrap().is_none());
    // The same state gives the same index.
    assert_eq!(index_of(&plan(&h, TWO)), index_of(&first));

    assert!(matches!(h.up(TWO), Outcome::Accepted { .. }));
    let next = "app web\n  exec /bin/web\n  args --version v2\n  replicas 4\n  env { MODE fast }\n\
                app db\n  exec /bin/db\n";
    let text = plan(&h, next);
    let want = [
        "~ app web: roll out generation 1 -> 2, one at a time, each new replica ready before an old one drains (drained first where no node has room for one more)",
        "    ~ args: [\"--version\",\"v1\"] -> [\"--version\",\"v2\"]",
        "    + env.MODE: \"fast\"",
        "    ~ replicas: 2 -> 4",
        "    2 replicas to add (2 -> 4)",
        "+ app db: create, generation 1, 1 replica",
        "- app api: not in this file, but its current generation came from a file also named `t.skr8tr`: `up` leaves it running (`skr8tr down api` stops it, if it belongs to this file)",
    ];
    for line in want {
        assert!(
            text.lines().any(|l| l == line),
            "missing {line:?} in:\n{text}"
        );
    }
    assert!(plan(&h, TWO).contains("= app web: unchanged (generation 1)"));
    // Fewer replicas, and a fixed port replaced in place.
    let fewer = plan(
        &h,
        &TWO.replace("replicas 2", "replicas 1")
            .replace("/bin/api", "/bin/api2"),
    );
    assert!(
        fewer.contains("    1 replica to remove (2 -> 1)"),
        "{fewer}"
    );
    assert!(
        fewer.contains(
            "~ app api: roll out generation 1 -> 2, one at a time; in place where port 8081"
        ),
        "{fewer}"
    );
    let snap = h.c.store.snapshot().unwrap();
    assert!(snap.app("db").unwrap().is_none());
    assert!(snap.spec("web", 2).unwrap().is_none());
}

#[test]
fn check_index_applies_a_fresh_plan_and_refuses_a_stale_one() {
    let h = Harness::new("plan-index");
    assert!(matches!(h.up(TWO), Outcome::Accepted { .. }));
    let changed = TWO.replace("v1", "v2");
    let index = index_of(&plan(&h, &changed));
    // Someone scales web in between: the plan is stale.
    h.ok(Command::Scale {
        app: "web".into(),
        replicas: 3,
    });
    match up_checked(&h, &changed, index) {
        Outcome::Rejected { refusal, seq } => {
            assert_eq!(refusal.code.as_str(), "stale-plan");
            assert!(
                refusal.message.contains("plan again"),
                "{}",
                refusal.message
            );
            assert!(seq.is_some(), "recorded");
        }
        Outcome::Accepted { value, .. } => panic!("a stale plan was applied: {value}"),
    }
    assert!(
        h.c.store
            .snapshot()
            .unwrap()
            .spec("web", 2)
            .unwrap()
            .is_none()
    );
    // A fresh plan applies, as `up` would.
    let index = index_of(&plan(&h, &changed));
    match up_checked(&h, &changed, index) {
        Outcome::Accepted { value, .. } => {
            assert!(
                value.starts_with("web: rolling out generation 1 -> 2"),
                "{value}"
            )
        }
        Outcome::Rejected { refusal, .. } => panic!("refused: {refusal:?}"),
    }
    // The rollout running makes `up` refused: the plan says so.
    let during = plan(&h, &changed.replace("v2", "v3"));
    assert!(
        during.contains("up would be refused now: web is rolling out from generation 1 to 2"),
        "{during}"
    );
    assert_ne!(index_of(&during), index);
    assert!(
        h.history().iter().any(|s| s.contains("plan t.skr8tr")),
        "{:?}",
        h.history()
    );
}

#[test]
fn the_index_covers_the_manifest_not_only_the_cluster() {
    let h = Harness::new("plan-manifest");
    assert!(matches!(h.up(TWO), Outcome::Accepted { .. }));
    let a = TWO.replace("v1", "v2");
    let b = TWO.replace("v1", "v9");
    let planned = index_of(&plan(&h, &a));
    assert_ne!(planned, index_of(&plan(&h, &b)));
    // The file changed between plan and apply: refused.
    match up_checked(&h, &b, planned) {
        Outcome::Rejected { refusal, .. } => assert_eq!(refusal.code.as_str(), "stale-plan"),
        Outcome::Accepted { value, .. } => panic!("applied another manifest: {value}"),
    }
    // Scaling an app the manifest leaves unchanged does not make it stale.
    let only_web = "app web\n  exec /bin/web\n  args --version v1\n  replicas 2\n\
                    app api\n  exec /bin/api2\n  port 8081\n";
    let planned = index_of(&plan(&h, only_web));
    h.ok(Command::Scale {
        app: "web".into(),
        replicas: 5,
    });
    // `up` leaves an unchanged app's count alone: the plan still holds.
    assert_eq!(index_of(&plan(&h, only_web)), planned);
    // A line added above the apps changes nothing `up` does.
    let moved = format!("# a comment\n{TWO}");
    let text = plan(&h, &moved);
    assert!(text.contains("= app api: unchanged"), "{text}");
}

#[test]
fn a_changed_secret_is_named_never_shown() {
    let h = Harness::new("plan-secret");
    let app = |v: &str| format!("app web\n  exec /bin/web\n  secret {{ TOKEN {v} }}\n");
    assert!(matches!(
        h.up(&app("first-value")),
        Outcome::Accepted { .. }
    ));
    assert!(plan(&h, &app("first-value")).contains("= app web: unchanged"));
    let text = plan(&h, &app("second-value"));
    assert!(
        text.contains("    ~ secret.TOKEN: a new value (not shown)"),
        "{text}"
    );
    assert!(
        !text.contains("second-value") && !text.contains("first-value"),
        "{text}"
    );
}

#[test]
fn a_route_change_is_planned_and_moves_the_index() {
    let h = Harness::new("plan-route");
    assert!(matches!(h.up(TWO), Outcome::Accepted { .. }));
    let routed = TWO.replace("  replicas 2\n", "  replicas 2\n  host w.test\n");
    let before = plan(&h, TWO);
    let text = plan(&h, &routed);
    assert!(
        text.contains("~ app web: served by the ingress at host `w.test` (was no route)"),
        "{text}"
    );
    assert!(
        text.contains("= app web: unchanged"),
        "a route is no rollout: {text}"
    );
    assert_ne!(index_of(&text), index_of(&before));
    match up_checked(&h, &routed, index_of(&text)) {
        Outcome::Accepted { value, .. } => {
            assert!(
                value.contains("web: the ingress serves it at host `w.test`"),
                "{value}"
            )
        }
        Outcome::Rejected { refusal, .. } => panic!("refused: {refusal:?}"),
    }
    assert!(!plan(&h, &routed).contains("served by the ingress"));
}
