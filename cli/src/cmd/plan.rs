//! `skr8tr plan FILE`: what `skr8tr up FILE` would change — per app, a
//! diff of the spec, replicas added or removed, how a rollout would
//! replace them, and warnings — and the index it was computed at, for
//! `skr8tr up FILE --check-index N`. Signed and audited like `up` (the
//! conductor computes it, as only it can tell whether sealed secrets
//! changed), and it changes nothing.

use crate::api::{self, Ctx};
use skr8tr_proto::command::Command;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct Args {
    /// The manifest (.skr8tr)
    file: PathBuf,
}

pub fn run(ctx: &Ctx, args: Args) -> anyhow::Result<ExitCode> {
    let reply = ctx.block_on(async {
        let client = ctx.anonymous_client()?;
        let sealing = super::up::sealing_key(&client).await?;
        let (file, manifest) = super::up::read_manifest(&args.file, &sealing)?;
        api::send_on(ctx, &client, Command::Plan { file, manifest }, vec![]).await
    })?;
    if ctx.json || !reply.accepted {
        return api::finish(ctx, reply);
    }
    let text = crate::show::text(&reply.message);
    println!("{text}");
    // The conductor ends with `index N`: how to apply this plan, with the
    // path and the global flags as given here — unless `up` would be
    // refused now anyway.
    let refused = text
        .lines()
        .any(|l| l.starts_with("up would be refused now:"));
    if let Some(index) = text.lines().last().and_then(|l| l.strip_prefix("index "))
        && !refused
    {
        let mut words: Vec<String> = vec!["skr8tr".into()];
        words.extend(global_flags().iter().map(|w| crate::show::shell_word(w)));
        words.extend([
            "up".into(),
            crate::show::shell_word(&args.file.display().to_string()),
        ]);
        words.extend(["--check-index".into(), index.to_string()]);
        println!("apply it with: {}", words.join(" "));
    }
    Ok(ExitCode::SUCCESS)
}

/// The arguments before the `plan` subcommand (`--conductor`, `--pin`,
/// `--key`, …), so the printed command talks to the same conductor.
fn global_flags() -> Vec<String> {
    std::env::args()
        .skip(1)
        .take_while(|a| a != "plan")
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn words_are_quoted_for_a_shell() {
        assert_eq!(crate::show::shell_word("/tmp/a.skr8tr"), "/tmp/a.skr8tr");
        assert_eq!(
            crate::show::shell_word("my apps.skr8tr"),
            "'my apps.skr8tr'"
        );
        assert_eq!(crate::show::shell_word("it's"), "'it'\\''s'");
        assert_eq!(crate::show::shell_word(""), "''");
    }
}
