//! `up --wait`: follow the apps of a manifest until every replica is
//! ready, with a bar per app on a terminal and a line per change
//! otherwise.

use crate::api::{self, Ctx};
use anyhow::bail;
use skr8tr_proto::wire::{AppView, StatusReply};
use std::process::ExitCode;
use std::time::{Duration, Instant};

/// Whether `a` has every replica it wants ready, nothing rolling.
fn settled(a: &AppView) -> bool {
    a.ready >= a.desired && a.rollout.is_none()
}

fn note(a: &AppView) -> String {
    let mut note = "ready".to_string();
    if let Some(r) = &a.rollout {
        note = format!("ready, rolling out {r}");
    }
    if let Some(why) = &a.unplaced {
        note = format!("ready; {}", crate::show::line(why));
    }
    note
}

pub fn ready(ctx: &Ctx, apps: &[String], timeout: Duration) -> anyhow::Result<ExitCode> {
    let started = Instant::now();
    let mut progress = crate::progress::Progress::new(apps, ctx.json, true);
    let waited = ctx.block_on(async {
        let client = ctx.client()?;
        loop {
            let status: StatusReply = api::get(&client, "/v1/status").await?;
            let mine: Vec<&AppView> = status
                .apps
                .iter()
                .filter(|a| apps.contains(&a.name))
                .collect();
            for a in &mine {
                progress.set(&a.name, a.ready.into(), a.desired.into(), &note(a));
            }
            if mine.len() == apps.len() && mine.iter().all(|a| settled(a)) {
                return anyhow::Ok(Vec::new());
            }
            if started.elapsed() >= timeout {
                let behind = apps
                    .iter()
                    .map(|name| match mine.iter().find(|a| a.name == *name) {
                        Some(a) => format!("{name} {}/{} {}", a.ready, a.desired, note(a)),
                        None => format!("{name} not deployed"),
                    })
                    .collect();
                return Ok(behind);
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    });
    progress.finish();
    let behind = waited?;
    if !behind.is_empty() {
        bail!(
            "not every replica was ready within {:?} (--wait-timeout): {}; see `skr8tr status` and `skr8tr ps`",
            timeout,
            behind.join(", ")
        );
    }
    if !ctx.json {
        println!("all ready in {:.1}s", started.elapsed().as_secs_f64());
    }
    Ok(ExitCode::SUCCESS)
}
