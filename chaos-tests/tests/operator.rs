//! Issue 15's operator-facing behaviour with real processes on 127.0.0.1,
//! driven through the `skr8tr` CLI as an operator would.

use skr8tr_chaos_tests::harness::{Cluster, wait_for};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(60);

#[test]
fn a_crash_looping_app_says_why_in_status_and_ps_shows_the_last_exit() {
    let mut c = Cluster::start("crashloop");
    c.start_node("n1");
    let m = c.manifest(
        "broken.skr8tr",
        "app missing\n  exec /nonexistent/bin\n\napp flaky\n  exec /bin/sh\n  args -c 'exit 3'\n",
    );
    c.ok(&["up", m.to_str().unwrap()]);
    let note = |app: &str, want: &str| {
        let want = want.to_string();
        let prefix = format!("{app} ");
        wait_for(&format!("`status` to say `{want}`"), WAIT, || {
            let status = c.ok(&["status"]);
            status
                .lines()
                .find(|l| l.starts_with(&prefix) && l.contains(&want))
                .map(str::to_string)
        })
    };
    note(
        "missing",
        "crash loop: exit 127, cannot start /nonexistent/bin",
    );
    note("flaky", "crash loop: exited with code 3");
    let ps = wait_for("`ps` to show the exit code", WAIT, || {
        let ps = c.ok(&["ps", "flaky"]);
        ps.contains("exited with code 3").then_some(ps)
    });
    assert!(ps.lines().next().unwrap().contains("NOTE"), "{ps}");
}
