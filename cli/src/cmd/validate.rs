//! `skr8tr validate FILE...`: every app on one aligned line, or every error
//! of every file, `file:line:col: error: …` with a hint.

use skr8tr_proto::manifest::{self, AppSpec, MAX_MANIFEST_BYTES, Port};
use std::collections::HashMap;
use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct Args {
    /// Manifest files (.skr8tr)
    #[arg(required = true, value_name = "FILE")]
    files: Vec<PathBuf>,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let mut rows = Vec::new();
    let mut errors = Vec::new();
    let mut defined: HashMap<String, String> = HashMap::new();
    for path in &args.files {
        let file = path.display().to_string();
        let bytes = match read_limited(path) {
            Ok(b) => b,
            Err(e) => {
                errors.push(format!("{file}: error: {e}"));
                continue;
            }
        };
        match manifest::parse_bytes(&file, &bytes) {
            Ok(apps) => {
                for app in apps {
                    let here = format!("{file}:{}", app.line);
                    if let Some(first) = defined.insert(app.name.clone(), here.clone()) {
                        errors.push(format!(
                            "{here}:1: error: app `{}` is also defined at {first}\n  hint: \
                             app names are unique in a cluster; rename one of them",
                            app.name
                        ));
                    }
                    rows.push(summary(&file, &app));
                }
            }
            Err(diags) => errors.extend(diags.iter().map(|d| d.to_string())),
        }
    }
    if !errors.is_empty() {
        let mut err = std::io::stderr().lock();
        for e in &errors {
            writeln!(err, "{e}")?;
        }
        let n = errors.len();
        writeln!(err, "{n} error{} found", if n == 1 { "" } else { "s" })?;
        return Ok(ExitCode::from(crate::FAILURE));
    }
    let mut out = std::io::stdout().lock();
    let header = [
        "FILE", "APP", "TYPE", "REPLICAS", "PORT", "PROGRAM", "HEALTH",
    ]
    .map(String::from);
    crate::table::print(&mut out, std::iter::once(header).chain(rows).collect())?;
    Ok(ExitCode::SUCCESS)
}

fn read_limited(path: &PathBuf) -> std::io::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    std::fs::File::open(path)?
        .take(MAX_MANIFEST_BYTES as u64 + 1)
        .read_to_end(&mut bytes)?;
    if bytes.len() > MAX_MANIFEST_BYTES {
        return Err(std::io::Error::other(format!(
            "larger than the {MAX_MANIFEST_BYTES}-byte manifest limit; split it into several files"
        )));
    }
    Ok(bytes)
}

fn summary(file: &str, app: &AppSpec) -> [String; 7] {
    let replicas = match &app.scale {
        Some(s) => format!("{} ({}-{})", app.replicas, s.min, s.max),
        None => app.replicas.to_string(),
    };
    let port = match app.port {
        Port::Auto => "auto".to_string(),
        Port::Fixed(p) => p.to_string(),
    };
    let program = match (&app.exec, &app.serve, &app.vm) {
        (Some(exec), _, _) => exec.clone(),
        (None, Some(serve), _) => format!("serve {}", serve.dir),
        (None, None, Some(vm)) => format!("vm {}", vm.kernel),
        (None, None, None) => "-".to_string(),
    };
    let health = app
        .health
        .as_ref()
        .map_or_else(|| "-".to_string(), |h| h.check.to_string());
    [
        file.to_string(),
        app.name.clone(),
        app.kind.to_string(),
        replicas,
        port,
        program,
        health,
    ]
}
