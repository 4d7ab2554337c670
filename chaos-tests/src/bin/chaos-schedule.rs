//! `chaos-schedule --minutes N --seed S`: runs the fault schedule
//! (`skr8tr_chaos_tests::schedule`) and prints its table; exit 1 when an
//! invariant broke. `chaos-tests/run.sh` builds and runs it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

fn main() -> std::process::ExitCode {
    let mut minutes = 2.0;
    let mut seed = 1;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let value = args.next();
        match (a.as_str(), value.as_deref().map(str::parse::<f64>)) {
            ("--minutes", Some(Ok(m))) if m > 0.0 => minutes = m,
            ("--seed", Some(Ok(s))) if s >= 0.0 => seed = s as u64,
            _ => {
                eprintln!("usage: chaos-schedule [--minutes N] [--seed S]");
                return std::process::ExitCode::from(2);
            }
        }
    }
    let report = skr8tr_chaos_tests::schedule::run(minutes, seed);
    print!("{}", report.text);
    for v in &report.violations {
        println!("BROKEN: {v}");
    }
    if report.violations.is_empty() {
        std::process::ExitCode::SUCCESS
    } else {
        std::process::ExitCode::FAILURE
    }
}
