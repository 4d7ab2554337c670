//! The real `skr8tr` binary, run as an operator would.

// A test: an unwrap is an assertion (clippy allows it inside #[test]
// functions only; these helpers are part of the tests too).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};

/// A scratch directory removed when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Scratch {
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "skr8tr-cli-{}-{}-{name}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn skr8tr(args: &[&str], home: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_skr8tr"))
        .args(args)
        .env("HOME", home)
        .env_remove("SKR8TR_KEY")
        .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
        .output()
        .unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn fingerprint_line(out: &str) -> String {
    let fp = out
        .lines()
        .find_map(|l| l.strip_prefix("fingerprint"))
        .expect("keygen prints the fingerprint")
        .trim()
        .to_string();
    assert_eq!(fp.len(), 16, "{out}");
    assert!(fp.chars().all(|c| c.is_ascii_hexdigit()), "{out}");
    fp
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn keygen_writes_a_private_pair_and_refuses_to_overwrite() {
    let home = Scratch::new("keygen");
    let out = skr8tr(&["keygen"], home.path());
    assert!(out.status.success(), "{}", stderr(&out));
    let fp = fingerprint_line(&stdout(&out));
    let dir = home.path().join(".skr8tr");
    let sec = dir.join("signing.sec");
    let public = dir.join("signing.pub");
    assert_eq!(mode(&sec), 0o600);
    assert_eq!(mode(&dir), 0o700);
    let sec_text = std::fs::read_to_string(&sec).unwrap();
    assert!(sec_text.starts_with("-----BEGIN PRIVATE KEY-----"));
    assert!(
        std::fs::read_to_string(&public)
            .unwrap()
            .starts_with("-----BEGIN PUBLIC KEY-----")
    );

    // The fingerprint printed is the one both files yield.
    for file in [&sec, &public] {
        let out = skr8tr(&["fingerprint", file.to_str().unwrap()], home.path());
        assert!(out.status.success(), "{}", stderr(&out));
        assert_eq!(stdout(&out).trim(), fp);
    }
    // Default key for `fingerprint` is ~/.skr8tr/signing.sec.
    let out = skr8tr(&["fingerprint"], home.path());
    assert_eq!(stdout(&out).trim(), fp, "{}", stderr(&out));

    let again = skr8tr(&["keygen"], home.path());
    assert_eq!(again.status.code(), Some(1));
    assert!(
        stderr(&again).contains("already exists"),
        "{}",
        stderr(&again)
    );
    assert!(stderr(&again).contains("--force"), "{}", stderr(&again));
    assert_eq!(
        std::fs::read_to_string(&sec).unwrap(),
        sec_text,
        "old key kept"
    );

    let forced = skr8tr(&["keygen", "--force"], home.path());
    assert!(forced.status.success(), "{}", stderr(&forced));
    assert_ne!(fingerprint_line(&stdout(&forced)), fp);
    assert_eq!(mode(&sec), 0o600);
}

#[test]
fn keygen_out_dir_is_created() {
    let home = Scratch::new("out");
    let target = home.path().join("a/b/keys");
    let out = skr8tr(&["keygen", "--out", target.to_str().unwrap()], home.path());
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(mode(&target.join("signing.sec")), 0o600);
    assert!(!home.path().join(".skr8tr").exists());
}

#[test]
fn a_secret_key_readable_by_others_is_refused_with_the_fix() {
    let home = Scratch::new("perm");
    let dir = home.path().join("k");
    assert!(
        skr8tr(&["keygen", "--out", dir.to_str().unwrap()], home.path())
            .status
            .success()
    );
    let sec = dir.join("signing.sec");
    for bad in [0o644, 0o640, 0o604, 0o660] {
        std::fs::set_permissions(&sec, std::fs::Permissions::from_mode(bad)).unwrap();
        let out = skr8tr(&["fingerprint", sec.to_str().unwrap()], home.path());
        assert_eq!(out.status.code(), Some(1), "mode {bad:o}");
        let err = stderr(&out);
        assert!(
            err.contains(&format!("chmod 600 {}", sec.display())),
            "{err}"
        );
        assert!(err.contains(&format!("{bad:04o}")), "{err}");
        assert!(stdout(&out).is_empty());
    }
    std::fs::set_permissions(&sec, std::fs::Permissions::from_mode(0o600)).unwrap();
    assert!(
        skr8tr(&["fingerprint", sec.to_str().unwrap()], home.path())
            .status
            .success()
    );
}

#[test]
fn a_file_that_is_not_a_key_is_a_clear_error() {
    let home = Scratch::new("notkey");
    let junk = home.path().join("junk.pub");
    std::fs::write(&junk, "hello\n").unwrap();
    let out = skr8tr(&["fingerprint", junk.to_str().unwrap()], home.path());
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("not an ML-DSA-65 public key"),
        "{}",
        stderr(&out)
    );
    let missing = skr8tr(&["fingerprint", "/nonexistent/key.pub"], home.path());
    assert_eq!(missing.status.code(), Some(1));
    assert!(
        stderr(&missing).contains("/nonexistent/key.pub"),
        "{}",
        stderr(&missing)
    );
}

#[test]
fn validate_prints_one_line_per_app_for_the_examples() {
    let home = Scratch::new("validate");
    let files = [
        "examples/api.skr8tr",
        "examples/batch.skr8tr",
        "examples/site.skr8tr",
    ];
    let mut args = vec!["validate"];
    args.extend(files);
    let out = skr8tr(&args, home.path());
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines[0].starts_with("FILE"), "{text}");
    assert_eq!(lines.len(), 1 + 4, "header + 4 apps:\n{text}");
    let api = lines.iter().find(|l| l.contains("api-server")).unwrap();
    for part in [
        "examples/api.skr8tr",
        "service",
        "3 (1-8)",
        "8080",
        "/usr/local/bin/myapi",
        "GET /healthz 200",
    ] {
        assert!(api.contains(part), "{api}");
    }
    // Columns line up: every row has APP at the same offset.
    let col = lines[0].find("APP").unwrap();
    assert!(
        lines[1..]
            .iter()
            .all(|l| l[col..].starts_with(|c: char| c.is_ascii_lowercase()))
    );
}

#[test]
fn validate_reports_every_error_with_position_and_hint() {
    let home = Scratch::new("bad");
    let bad = home.path().join("bad.skr8tr");
    std::fs::write(
        &bad,
        "app api\n  exec /bin/api\n  replcas 3\n  port 70000\n\napp worker\n  args --x\n",
    )
    .unwrap();
    let out = skr8tr(
        &["validate", bad.to_str().unwrap(), "examples/api.skr8tr"],
        home.path(),
    );
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    let file = bad.display();
    assert!(
        err.contains(&format!("{file}:3:3: error: unknown key `replcas`")),
        "{err}"
    );
    assert!(err.contains("hint: did you mean `replicas`?"), "{err}");
    assert!(
        err.contains(&format!("{file}:4:8: error: `port`: 70000 is out of range")),
        "{err}"
    );
    assert!(
        err.contains(&format!("{file}:6:1: error: app `worker` has no `exec`")),
        "{err}"
    );
    assert!(err.contains("3 errors found"), "{err}");
    assert!(stdout(&out).is_empty(), "no summary when anything failed");
}

#[test]
fn validate_names_unreadable_files_and_duplicates_across_files() {
    let home = Scratch::new("dup");
    let copy = home.path().join("copy.skr8tr");
    std::fs::copy(
        concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/api.skr8tr"),
        &copy,
    )
    .unwrap();
    let out = skr8tr(
        &[
            "validate",
            "examples/api.skr8tr",
            copy.to_str().unwrap(),
            "missing.skr8tr",
        ],
        home.path(),
    );
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("app `api-server` is also defined at examples/api.skr8tr:3"),
        "{err}"
    );
    assert!(err.contains("missing.skr8tr: error: No such file"), "{err}");

    let binary = home.path().join("bin.skr8tr");
    std::fs::write(&binary, b"app a\n  exec /x\xff\n").unwrap();
    let out = skr8tr(&["validate", binary.to_str().unwrap()], home.path());
    assert!(
        stderr(&out).contains(":2:10: error: the manifest is not UTF-8"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn usage_errors_exit_2() {
    let home = Scratch::new("usage");
    assert_eq!(skr8tr(&["validate"], home.path()).status.code(), Some(2));
    assert_eq!(
        skr8tr(&["no-such-command"], home.path()).status.code(),
        Some(2)
    );
}
