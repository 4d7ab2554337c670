//! `skr8tr history [--app APP] [--limit N]`: the audit log — who, what,
//! when, and whether it was accepted.

use crate::api::{self, Ctx};
use skr8tr_proto::wire::HistoryEntry;
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct Args {
    /// Only entries about this app
    #[arg(long)]
    app: Option<String>,
    /// How many of the latest entries
    #[arg(long, default_value_t = 50)]
    limit: usize,
    /// Fetch the whole log and re-verify, here, every hash link and every
    /// accepted command's signature against the keys valid at the time
    #[arg(long)]
    verify: bool,
}

pub fn run(ctx: &Ctx, args: Args) -> anyhow::Result<ExitCode> {
    if args.verify {
        return verify(ctx);
    }
    let mut path = format!("/v1/history?limit={}", args.limit);
    if let Some(app) = &args.app {
        path.push_str(&format!("&app={app}"));
    }
    let entries: Vec<HistoryEntry> =
        ctx.block_on(async { api::get(&ctx.client()?, &path).await })?;
    if ctx.json {
        println!("{}", serde_json::to_string_pretty(&entries)?);
        return Ok(ExitCode::SUCCESS);
    }
    let mut rows = vec![["SEQ", "TIME (UTC)", "WHO", "OUTCOME", "WHAT"].map(String::from)];
    for e in entries {
        let outcome = match (&e.code, &e.message) {
            (None, _) => "accepted".to_string(),
            (Some(code), Some(msg)) => format!("rejected: {code} ({})", first_line(msg)),
            (Some(code), None) => format!("rejected: {code}"),
        };
        rows.push([
            e.seq.to_string(),
            utc(e.time_ms),
            e.actor,
            outcome,
            e.summary,
        ]);
    }
    crate::table::print(&mut std::io::stdout().lock(), rows)?;
    Ok(ExitCode::SUCCESS)
}

fn verify(ctx: &Ctx) -> anyhow::Result<ExitCode> {
    let export: skr8tr_proto::wire::AuditExport =
        ctx.block_on(async { api::get(&ctx.client()?, "/v1/audit").await })?;
    let entries = export
        .entries
        .iter()
        .map(|bytes| skr8tr_store::audit::decode_entry(bytes))
        .collect::<Result<Vec<_>, _>>()?;
    let head = entries
        .last()
        .map(|e| (e.seq, skr8tr_proto::hex::encode(&e.hash)));
    if let Some(skr8tr_store::AuditEvent::Genesis { cluster, .. }) =
        entries.first().map(|e| &e.event)
        && *cluster != export.cluster
    {
        anyhow::bail!(
            "the log's genesis names cluster {cluster}, but the conductor serves cluster {}",
            export.cluster
        );
    }
    let report = skr8tr_store::audit::verify_chain(entries)
        .map_err(|e| anyhow::anyhow!("the audit log does NOT verify: {e}"))?;
    println!(
        "audit log verified: {} entries, {} signatures re-checked, {} refusals recorded",
        report.entries, report.signatures_verified, report.rejected
    );
    if let Some((seq, hash)) = head {
        println!(
            "head: entry {seq}, hash {hash} (keep it elsewhere to detect a truncated log later)"
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or("")
}

/// `2026-11-24 07:17:38` from Unix milliseconds (civil-from-days, proleptic
/// Gregorian), so the CLI needs no date crate.
pub fn utc(ms: u64) -> String {
    let secs = ms / 1000;
    let (days, rem) = ((secs / 86_400) as i64, secs % 86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn utc_dates() {
        assert_eq!(super::utc(0), "1970-01-01 00:00:00");
        assert_eq!(super::utc(1_795_506_095_619), "2026-11-24 07:41:35");
        assert_eq!(super::utc(951_782_400_000), "2000-02-29 00:00:00");
    }
}
