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
