//! `skr8tr completions SHELL` and `skr8tr man --out DIR`: shell completion
//! scripts and man pages, generated from the same clap definition the
//! binary parses with, so they cannot drift from its flags.

use clap::CommandFactory;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct CompletionsArgs {
    /// The shell: bash, zsh, fish, elvish or powershell
    shell: clap_complete::Shell,
}

#[derive(clap::Args)]
pub struct ManArgs {
    /// Directory for skr8tr.1 and one skr8tr-COMMAND.1 per subcommand
    /// (created if missing)
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
}

/// Prints the completion script; for example
/// `skr8tr completions bash > /etc/bash_completion.d/skr8tr`.
pub fn completions(args: CompletionsArgs) -> anyhow::Result<ExitCode> {
    let mut command = crate::Cli::command();
    // Into memory first: clap_complete panics on a failed write, and
    // `… | head` closes the pipe early.
    let mut script = Vec::new();
    clap_complete::generate(args.shell, &mut command, "skr8tr", &mut script);
    std::io::Write::write_all(&mut std::io::stdout().lock(), &script)?;
    Ok(ExitCode::SUCCESS)
}

pub fn man(args: ManArgs) -> anyhow::Result<ExitCode> {
    use anyhow::Context;
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("cannot create {}", args.out.display()))?;
    clap_mangen::generate_to(crate::Cli::command(), &args.out)
        .with_context(|| format!("cannot write man pages into {}", args.out.display()))?;
    let pages = std::fs::read_dir(&args.out)?
        .filter_map(Result::ok)
        .filter(|e| e.path().extension().is_some_and(|x| x == "1"))
        .count();
    println!(
        "{pages} man pages in {}; read one with `man -l {}/skr8tr.1`",
        args.out.display(),
        args.out.display()
    );
    Ok(ExitCode::SUCCESS)
}
