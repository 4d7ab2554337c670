//! `skr8tr history [--app APP] [--limit N] [--from SEQ] [--verify
//! [--snapshot FILE]]`: the
//! audit log — who, what, when, and whether it was accepted — read a page
//! at a time, so a log of any size is shown (and verified) in bounded
//! memory.

use crate::api::{self, Ctx};
use skr8tr_net::Client;
use skr8tr_proto::wire::{AuditPage, HistoryEntry, HistoryPage};
use skr8tr_store::audit::{ChainVerifier, decode_entry};
use std::io::Write;
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct Args {
    /// Only entries about this app
    #[arg(long)]
    app: Option<String>,
    /// How many of the latest entries
    #[arg(long, default_value_t = 50)]
    limit: usize,
    /// Print every entry from this sequence number on, page by page, up
    /// to --limit (0: no limit), instead of the latest ones
    #[arg(long, value_name = "SEQ", conflicts_with = "app")]
    from: Option<u64>,
    /// Fetch the whole log, a page at a time, and re-verify, here, every
    /// hash link and every accepted command's signature against the keys
    /// valid at the time
    #[arg(long)]
    verify: bool,
    /// With --verify: verify this snapshot file (`skr8tr snapshot save`)
    /// here, with no conductor
    #[arg(long, value_name = "FILE", requires = "verify")]
    snapshot: Option<std::path::PathBuf>,
    /// With --snapshot: also check the file is signed by this conductor
    /// key (DATA/conductor.pub)
    #[arg(long, value_name = "FILE", requires = "snapshot")]
    conductor_key: Option<std::path::PathBuf>,
}

/// Entries the conductor sends per page at most.
const PAGE: usize = 500;

pub fn run(ctx: &Ctx, args: Args) -> anyhow::Result<ExitCode> {
    if let Some(file) = &args.snapshot {
        return verify_snapshot(file, args.conductor_key.as_deref());
    }
    if args.verify {
        return verify(ctx);
    }
    if let Some(from) = args.from {
        return forward(ctx, from, args.limit);
    }
    let entries = ctx.block_on(latest(ctx, args.app.as_deref(), args.limit))?;
    if ctx.json {
        println!("{}", serde_json::to_string_pretty(&entries)?);
        return Ok(ExitCode::SUCCESS);
    }
    crate::table::print(&mut std::io::stdout().lock(), rows(entries))?;
    Ok(ExitCode::SUCCESS)
}

/// The latest `limit` entries (of `app`), oldest first: pages fetched
/// backwards until there are enough.
pub async fn latest(
    ctx: &Ctx,
    app: Option<&str>,
    limit: usize,
) -> anyhow::Result<Vec<HistoryEntry>> {
    let client = ctx.client()?;
    let mut pages: Vec<Vec<HistoryEntry>> = Vec::new();
    let mut have = 0;
    let mut before: Option<u64> = None;
    while have < limit {
        let page = page(&client, app, before, (limit - have).min(PAGE)).await?;
        let page_empty = page.entries.is_empty();
        have += page.entries.len();
        pages.push(page.entries);
        match page.before {
            // Only ever backwards: a page that does not move ends the walk.
            Some(b) if !page_empty && before.is_none_or(|prev| b < prev) => before = Some(b),
            _ => break,
        }
    }
    Ok(pages.into_iter().rev().flatten().collect())
}

async fn page(
    client: &Client,
    app: Option<&str>,
    before: Option<u64>,
    limit: usize,
) -> anyhow::Result<HistoryPage> {
    let mut path = format!("/v1/history?limit={limit}");
    if let Some(b) = before {
        path.push_str(&format!("&before={b}"));
    }
    if let Some(app) = app {
        path.push_str(&format!("&app={}", query_escape(app)));
    }
    api::get(client, &path).await
}

/// Every entry from `from` on, printed as its page arrives.
fn forward(ctx: &Ctx, from: u64, limit: usize) -> anyhow::Result<ExitCode> {
    ctx.block_on(async {
        let client = ctx.client()?;
        let mut out = std::io::stdout().lock();
        let mut from = from.max(1);
        let mut shown = 0;
        let mut header = !ctx.json;
        loop {
            let want = if limit == 0 {
                PAGE
            } else {
                (limit - shown).min(PAGE)
            };
            let path = format!("/v1/history?from={from}&limit={want}");
            let page: HistoryPage = api::get(&client, &path).await?;
            if page.entries.is_empty() {
                break;
            }
            shown += page.entries.len();
            if ctx.json {
                for e in &page.entries {
                    writeln!(out, "{}", serde_json::to_string(e)?)?;
                }
            } else {
                let mut rows = rows(page.entries);
                if !std::mem::take(&mut header) {
                    rows.remove(0);
                }
                crate::table::print(&mut out, rows)?;
            }
            match page.next {
                // Only ever forwards.
                Some(next) if next > from && (limit == 0 || shown < limit) => from = next,
                _ => break,
            }
        }
        anyhow::Ok(())
    })?;
    Ok(ExitCode::SUCCESS)
}

fn rows(entries: Vec<HistoryEntry>) -> Vec<[String; 5]> {
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
    rows
}

/// Verifies the log a page at a time: memory holds one page and the keys.
fn verify(ctx: &Ctx) -> anyhow::Result<ExitCode> {
    let (report, head) = ctx.block_on(async {
        let client = ctx.client()?;
        let mut verifier = ChainVerifier::default();
        let mut from = 1;
        let mut cluster = None;
        loop {
            let page: AuditPage = api::get(&client, &format!("/v1/audit?from={from}")).await?;
            let first = cluster.get_or_insert(page.cluster);
            if *first != page.cluster {
                anyhow::bail!("the conductor changed cluster while the log was read");
            }
            for bytes in &page.entries {
                let entry = decode_entry(bytes)?;
                if let skr8tr_store::AuditEvent::Genesis { cluster: c, .. } = &entry.event
                    && *c != page.cluster
                {
                    anyhow::bail!(
                        "the log's genesis names cluster {c}, but the conductor serves cluster {}",
                        page.cluster
                    );
                }
                verifier
                    .push(&entry)
                    .map_err(|e| anyhow::anyhow!("the audit log does NOT verify: {e}"))?;
            }
            match page.next {
                // Only ever forwards.
                Some(next) if !page.entries.is_empty() && next > from => from = next,
                _ => break,
            }
        }
        let head = verifier.head();
        let report = verifier
            .finish()
            .map_err(|e| anyhow::anyhow!("the audit log does NOT verify: {e}"))?;
        anyhow::Ok((report, head))
    })?;
    println!(
        "audit log verified: {} entries, {} signatures re-checked, {} refusals recorded",
        report.entries, report.signatures_verified, report.rejected
    );
    if let Some((seq, hash)) = head {
        println!(
            "head: entry {seq}, hash {} (keep it elsewhere to detect a truncated log later)",
            skr8tr_proto::hex::encode(&hash)
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Verifies a snapshot file's database and audit chain offline.
fn verify_snapshot(
    file: &std::path::Path,
    key: Option<&std::path::Path>,
) -> anyhow::Result<ExitCode> {
    let (checked, signed) = skr8tr_conductor::snapshot::verify(file, key, &std::env::temp_dir())
        .map_err(|e| anyhow::anyhow!("the snapshot does NOT verify: {e}"))?;
    let r = &checked.report;
    println!(
        "snapshot verified: cluster {}, {} apps; audit log {} entries, {} signatures re-checked, \
         {} refusals recorded; head: entry {}, hash {}",
        checked.header.cluster,
        checked.apps,
        r.entries,
        r.signatures_verified,
        r.rejected,
        checked.header.audit_seq,
        skr8tr_proto::hex::encode(&checked.header.audit_hash)
    );
    if signed {
        println!("signed by the conductor key given");
    } else {
        println!(
            "its signature was not checked (--conductor-key with the conductor.pub of the conductor that took it checks it)"
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// An app name as a query parameter (names are `a-z0-9-`; anything else
/// is percent-encoded so it cannot add parameters).
fn query_escape(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
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

    #[test]
    fn app_names_cannot_add_query_parameters() {
        assert_eq!(super::query_escape("web-1"), "web-1");
        assert_eq!(super::query_escape("a&limit=9"), "a%26limit%3D9");
    }
}
