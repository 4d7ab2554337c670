//! Issue 13, the fault schedule: two minutes of one fault at a time (kill
//! -9 of the conductor, a node or a replica; a node frozen, cut off or
//! losing packets; the conductor's disk full) between operator commands,
//! on a fleet of namespaces under load, with a fixed seed. Every invariant
//! of `schedule::observe` must hold; the table is printed (`--nocapture`).
//! `chaos-tests/run.sh --minutes N --seed S` runs longer schedules.

#[test]
fn a_two_minute_fault_schedule_breaks_no_invariant() {
    let report = skr8tr_chaos_tests::schedule::run(2.0, 42);
    eprint!("{}", report.text);
    assert!(
        report.violations.is_empty(),
        "{}\n{}",
        report.text,
        report.violations.join("\n")
    );
}
