use super::*;

fn scale(min: u32, max: u32, above: u8, below: u8) -> Scale {
    Scale {
        min,
        max,
        cpu_above: above,
        cpu_below: below,
    }
}

/// One sample a second from `from_s` to `to_s` (inclusive) at `pct`.
fn samples(window: &mut Window, from_s: u64, to_s: u64, pct: u32) {
    for t in from_s..=to_s {
        window.push_back((t * 1000, pct));
    }
}

const W: Windows = Windows {
    out_after: Duration::from_secs(10),
    in_after: Duration::from_secs(60),
    cooldown: Duration::from_secs(30),
};

#[test]
fn it_scales_out_only_after_the_window_and_proportionally() {
    let s = scale(1, 8, 80, 20);
    let mut w = Window::new();
    samples(&mut w, 100, 105, 95);
    // Above for 5 s of a 10 s window: hold.
    assert!(matches!(
        decide(&s, &w, 2, 0, 105_000, W),
        Decision::Hold(_)
    ));
    samples(&mut w, 106, 110, 95);
    // ceil(2 × 95 / 80) = 3.
    assert_eq!(
        decide(&s, &w, 2, 0, 110_000, W),
        Decision::Scale {
            replicas: 3,
            reason: "cpu 95% > 80% for 10s".into()
        }
    );
    // One dip below the threshold inside the window: hold.
    let mut dip = w.clone();
    dip[8].1 = 70;
    assert!(matches!(
        decide(&s, &dip, 2, 0, 110_000, W),
        Decision::Hold(_)
    ));
}

#[test]
fn a_step_at_most_doubles_and_never_passes_max() {
    let mut w = Window::new();
    samples(&mut w, 30, 40, 400); // four cores' worth of a one-core share
    let wide = scale(1, 100, 50, 10);
    // ceil(2 × 400 / 50) = 16, capped at 2 × 2.
    assert!(matches!(
        decide(&wide, &w, 2, 0, 40_000, W),
        Decision::Scale { replicas: 4, .. }
    ));
    assert!(matches!(
        decide(&scale(1, 3, 50, 10), &w, 2, 0, 40_000, W),
        Decision::Scale { replicas: 3, .. }
    ));
    // At max: nothing to do.
    assert!(matches!(
        decide(&scale(1, 2, 50, 10), &w, 2, 0, 40_000, W),
        Decision::Hold(_)
    ));
}

#[test]
fn it_scales_in_after_the_longer_window_down_to_min_at_most_halving() {
    let s = scale(2, 10, 80, 20);
    let mut w = Window::new();
    samples(&mut w, 0, 59, 5);
    assert!(matches!(decide(&s, &w, 8, 0, 59_000, W), Decision::Hold(_)));
    samples(&mut w, 60, 61, 5);
    // ceil(8 × 5 / 80) = 1, but a step at most halves: 4.
    assert_eq!(
        decide(&s, &w, 8, 0, 61_000, W),
        Decision::Scale {
            replicas: 4,
            reason: "cpu 5% < 20% for 60s".into()
        }
    );
    // Never below min.
    assert!(matches!(
        decide(&s, &w, 3, 0, 61_000, W),
        Decision::Scale { replicas: 2, .. }
    ));
    assert!(matches!(decide(&s, &w, 2, 0, 61_000, W), Decision::Hold(_)));
}

#[test]
fn the_cooldown_stops_flapping_and_a_count_outside_the_range_is_brought_back() {
    let s = scale(1, 4, 50, 20);
    let mut w = Window::new();
    samples(&mut w, 0, 40, 99);
    let d = decide(&s, &w, 1, 20_000, 40_000, W);
    assert!(
        matches!(&d, Decision::Hold(why) if why.starts_with("cooldown, 10s left")),
        "{d:?}"
    );
    assert!(matches!(
        decide(&s, &w, 1, 10_000, 40_000, W),
        Decision::Scale { replicas: 2, .. }
    ));
    assert_eq!(
        decide(&s, &Window::new(), 7, 0, 1, W),
        Decision::Scale {
            replicas: 4,
            reason: "7 is outside its range 1-4".into()
        }
    );
    assert!(
        matches!(decide(&s, &Window::new(), 2, 0, 100_000, W), Decision::Hold(h) if h == "no CPU figures yet")
    );
}

#[test]
fn in_between_it_holds_and_says_why() {
    let s = scale(1, 4, 80, 20);
    let mut w = Window::new();
    samples(&mut w, 0, 100, 45);
    assert_eq!(
        decide(&s, &w, 2, 0, 100_000, W),
        Decision::Hold("cpu 45%, within 20-80%".into())
    );
}

mod on_a_conductor {
    use super::super::pass;
    use crate::testing::Harness;
    use skr8tr_proto::command::Command;
    use skr8tr_proto::wire::ReplicaState;
    use std::time::Duration;

    const WEB: &str = "app web\n  exec /bin/web\n  scale { min 1; max 4; cpu-above 50 }\n";

    /// Node n1 reports web/1/0 ready at `cpu_millis`, now.
    fn busy(h: &Harness, cpu_millis: u64) {
        h.report("n1", &[("web/1/0", ReplicaState::Ready, Some(20000))]);
        if let Some(n) = h.c.nodes().get_mut("n1") {
            n.report.replicas[0].cpu_millis = cpu_millis;
        }
    }

    fn replicas(h: &Harness) -> u32 {
        h.c.store
            .snapshot()
            .unwrap()
            .app("web")
            .unwrap()
            .unwrap()
            .replicas
    }

    #[test]
    fn a_busy_app_grows_with_an_audit_entry_and_a_rollout_pauses_it() {
        let h = Harness::new("autoscale-pass");
        h.report("n1", &[]);
        h.up(WEB);
        crate::reconciler::step(&h.c, h.now()).unwrap();
        // Past the cooldown that counts from the start, then 10 s busy.
        h.advance(Duration::from_secs(31));
        let mut grew = false;
        for _ in 0..12 {
            busy(&h, 900);
            grew |= pass(&h.c).unwrap();
            h.advance(Duration::from_secs(1));
        }
        assert!(grew, "{:?}", h.c.autoscale().views);
        assert_eq!(replicas(&h), 2);
        let history = h.history();
        assert!(
            history
                .iter()
                .any(|e| e.contains("autoscale web 1 -> 2: cpu 90% > 50% for 10s")),
            "{history:?}"
        );
        let view = h.c.autoscale().views["web"].clone();
        assert!(
            view.last_change
                .is_some_and(|(_, s)| s.starts_with("autoscale web 1 -> 2"))
        );

        // A rolling update: the autoscaler waits, however busy the app.
        h.ok(Command::Rollout {
            file: "t.skr8tr".into(),
            manifest: WEB.replace("/bin/web", "/bin/web2"),
        });
        h.advance(Duration::from_secs(60));
        for _ in 0..15 {
            busy(&h, 1000);
            assert!(!pass(&h.c).unwrap(), "no change during a rollout");
            h.advance(Duration::from_secs(1));
        }
        assert_eq!(replicas(&h), 2);
        assert_eq!(
            h.c.autoscale().views["web"].decision,
            "paused: a rollout is in progress"
        );
    }
}
