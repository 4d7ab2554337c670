//! Invalid manifests: each case names the exact line and column of the first
//! diagnostic, a fragment of its message and, where it matters, of its hint.
//! Columns count characters from 1, as editors show them.

// A test: an unwrap is an assertion (clippy allows it inside #[test]
// functions only; these helpers are part of the tests too).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use skr8tr_proto::manifest::{Diagnostic, MAX_MANIFEST_BYTES, parse, parse_bytes};

/// `(name, manifest, line, column, message fragment, hint fragment)`.
type Case = (
    &'static str,
    &'static [u8],
    u32,
    u32,
    &'static str,
    Option<&'static str>,
);

// One case per line pair reads better than rustfmt's one field per line.
#[rustfmt::skip]
const CASES: &[Case] = &[
    // Keys
    ("unknown key with suggestion", b"app a\n  exec /x\n  replcas 3\n",
        3, 3, "unknown key `replcas` in app `a`", Some("did you mean `replicas`?")),
    ("misplaced health key", b"app a\n  exec /x\n  interval 10s\n",
        3, 3, "unknown key `interval` in app `a`", Some("inside a `health` block")),
    ("misplaced volume key", b"app a\n  exec /x\n  path /x\n",
        3, 3, "unknown key `path`", Some("inside a `volume` block")),
    ("unknown key far from any", b"app a\n  exec /x\n  banana 1\n",
        3, 3, "unknown key `banana`", Some("known keys here: type, exec")),
    ("duplicate key in app", b"app a\n  exec /x\n  port 1\n  port 2\n",
        4, 3, "`port` is set twice in app `a` (first on line 3)", Some("keep one")),
    ("alias repeats its key", b"app a\n  exec /x\n  cpu 1\n  cpus 2\n",
        4, 3, "`cpus` repeats `cpu` (line 3)", Some("keep one")),
    ("duplicate key in block", b"app a\n  exec /x\n  health { check tcp; check tcp }\n",
        3, 23, "`check` is set twice in the `health` block", None),
    ("route without a slash", b"app a\n  exec /x\n  route api\n",
        3, 9, "`api` is not a route", Some("like `/api`")),
    ("host with a port", b"app a\n  exec /x\n  host a.test:80\n",
        3, 8, "`a.test:80` is not a host name", Some("no port")),
    ("two apps on one host", b"app a\n  exec /x\n  host a.test\napp b\n  exec /x\n  host A.test\n",
        4, 1, "apps `a` and `b` both claim host `a.test` path `/`", Some("its own")),
    ("key outside app", b"exec /x\napp a\n  exec /x\n",
        1, 1, "`exec` is outside any app block", Some("`app NAME`")),
    ("misspelt app", b"apps a\n  exec /x\n",
        1, 1, "unknown key `apps` at the top of the file", Some("did you mean `app`?")),
    ("value key given a block", b"app a\n  exec /x\n  port 80 {\n  }\n",
        3, 3, "`port` takes a value, not a block", Some("`port 8080`")),
    ("block key given a value", b"app a\n  exec /x\n  volume /d {\n    path /d\n  }\n",
        3, 10, "`volume` takes a block, not a value", None),
    ("block key without block", b"app a\n  exec /x\n  build\n",
        3, 3, "`build` needs a block", None),
    // Apps
    ("missing exec", b"app a\n  port 80\n",
        1, 1, "app `a` has no `exec`", Some("`exec /path/to/binary`")),
    ("exec and serve", b"app a\n  exec /x\n  serve { static public }\n",
        3, 3, "app `a` names its program twice: `exec` (line 2) and `serve`", None),
    ("program named twice, later first in key order", b"app a\n  type vm\n  vm { hypervisor qemu; kernel /k; rootfs /r }\n  exec /x\n",
        4, 3, "app `a` names its program twice: `vm` (line 3) and `exec`", None),
    ("one-line app block", b"app a { exec /x; port 80 }\n",
        1, 7, "an app block cannot be written on one line; put each key on its own line", None),
    ("exec with arguments", b"app a\n  exec /x y\n",
        2, 8, "`exec` takes one program path, not `/x y`", Some("`args --flag value`")),
    ("duplicate app name", b"app a\n  exec /x\napp a\n  exec /y\n",
        3, 5, "app `a` is defined twice (first on line 1)", None),
    ("invalid app name", b"app My_App\n  exec /x\n",
        1, 5, "`My_App` is not a valid app name", Some("like `my-app`")),
    ("app name starts with dash", b"app -a\n  exec /x\n",
        1, 5, "`-a` is not a valid app name", None),
    ("app name of 64 characters",
        b"app aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\n  exec /x\n",
        1, 5, "is not a valid app name (1 to 63", None),
    ("empty app name", b"app\n  exec /x\n",
        1, 4, "`app` needs a name", Some("`app api-server`")),
    ("app without body", b"app a\n",
        1, 1, "app `a` has no settings", None),
    ("empty file", b"",
        1, 1, "the manifest defines no app", Some("`app NAME`")),
    ("comments only", b"# one\n\n   # two\n",
        1, 1, "the manifest defines no app", None),
    // Numbers
    ("replicas 0", b"app a\n  exec /x\n  replicas 0\n",
        3, 12, "`replicas` is 0: out of range (1 to 1000)", Some("skr8tr down")),
    ("replicas 1001", b"app a\n  exec /x\n  replicas 1001\n",
        3, 12, "1001 is out of range", Some("from 1 to 1000")),
    ("replicas 1001 names the real range", b"app a\n  exec /x\n  replicas 1001\n",
        3, 12, "`replicas`: 1001 is out of range (1 to 1000)", None),
    ("port 0", b"app a\n  exec /x\n  port 0\n",
        3, 8, "`port`: 0 is out of range (1 to 65535)", Some("or `auto`")),
    ("port 70000", b"app a\n  exec /x\n  port 70000\n",
        3, 8, "70000 is out of range (1 to 65535)", None),
    ("port abc", b"app a\n  exec /x\n  port abc\n",
        3, 8, "`abc` is not a whole number", None),
    ("port on a CRLF line", b"app a\r\n  exec /x\r\n  port 0\r\n",
        3, 8, "0 is out of range", None),
    ("cpus 0", b"app a\n  exec /x\n  cpus 0\n",
        3, 8, "0 cores is out of range", None),
    ("cpu more precise than millis", b"app a\n  exec /x\n  cpu 0.0001\n",
        3, 7, "more precise than a thousandth of a core", None),
    ("gpu maybe", b"app a\n  exec /x\n  gpu maybe\n",
        3, 7, "`maybe` is not true or false", Some("`true` or `false`")),
    // Durations and sizes
    ("bad duration unit", b"app a\n  exec /x\n  drain 10d\n",
        3, 9, "`d` is not a duration unit", Some("`500ms`")),
    ("duration without unit", b"app a\n  exec /x\n  drain 10\n",
        3, 9, "duration `10` has no unit", Some("`10s`")),
    ("duration over a day", b"app a\n  exec /x\n  settle 25h\n",
        3, 10, "duration `25h` is longer than a day", None),
    ("size without unit", b"app a\n  exec /x\n  ram 256\n",
        3, 7, "size `256` has no unit", Some("`256mb`")),
    ("bad size unit", b"app a\n  exec /x\n  ram 12pb\n",
        3, 7, "`pb` is not a size unit", None),
    ("size of zero", b"app a\n  exec /x\n  ram 0mb\n",
        3, 7, "a size of zero", None),
    // Quoting: the column is the opening quote's
    ("unclosed double quote", b"app a\n  exec /x\n  args --msg \"hello\n",
        3, 14, "quote \" is never closed", Some("closing \"")),
    ("unclosed single quote", b"app a\n  exec /x\n  args 'ab\n",
        3, 8, "quote ' is never closed", None),
    ("unclosed quote after non-ASCII", b"app a\n  exec /x\n  args \xc3\xa9 \"x\n",
        3, 10, "quote \" is never closed", None),
    ("trailing backslash", b"app a\n  exec /x\n  args a\\\n",
        3, 9, "a backslash at the end of the line escapes nothing", None),
    // Structure
    ("unclosed brace at end of file", b"app a\n  exec /x\n  health {\n    check tcp\n",
        3, 10, "the `{` of `health` is never closed", Some("add a line with `}`")),
    ("forgotten brace", b"app a\n  exec /x\n  health {\n    check tcp\n  port 80\n",
        3, 10, "the `{` of `health` is never closed", Some("before line 5")),
    ("forgotten brace of an app", b"app a {\n  exec /x\napp b {\n  exec /y\n}\n",
        1, 7, "the `{` of `app` is never closed", Some("before line 3")),
    ("stray closing brace", b"app a\n  exec /x\n}\n",
        3, 1, "`}` without a matching `{`", None),
    ("line starting with a brace", b"app a\n  exec /x\n  {\n",
        3, 3, "a line cannot start with `{`", Some("`health {`")),
    ("block inside a one-line block", b"app a\n  exec /x\n  health { check tcp; scale { max 1 } }\n",
        3, 23, "blocks inside a one-line block", None),
    ("tab indentation", b"app a\n\texec /x\n",
        2, 1, "tab in indentation", Some("spaces")),
    ("unexpected indentation", b"  app a\n  exec /x\n",
        1, 3, "unexpected indentation", None),
    ("indentation matching no block", b"app a\n  exec /x\n  health\n    check tcp\n   port 80\n",
        5, 4, "indentation of 3 spaces lines up with no block above", Some("by 2 spaces")),
    ("dedent between an app's lines and the top", b"app a\n    exec /x\n  port 1\n",
        3, 3, "indentation of 2 spaces lines up with no block above", Some("indent this line by 4 spaces")),
    ("nested indentation in env", b"app a\n  exec /x\n  env\n    A 1\n      B 2\n",
        5, 7, "unexpected indentation", None),
    // Types
    ("unknown type with suggestion", b"app a\n  exec /x\n  type servce\n",
        3, 8, "`type` cannot be `servce`", Some("did you mean `service`?")),
    ("unknown restart", b"app a\n  exec /x\n  restart sometimes\n",
        3, 11, "`restart` cannot be `sometimes`", Some("always, on-failure, never")),
    ("type vm without vm block", b"app a\n  type vm\n  exec /x\n",
        2, 3, "app `a` is `type vm` but has no `vm` block", None),
    ("vm block without type vm", b"app a\n  vm { hypervisor qemu; kernel /k; rootfs /r }\n",
        2, 3, "app `a` has a `vm` block but is `type service`", Some("add `type vm`")),
    ("vm without kernel", b"app a\n  type vm\n  vm { hypervisor qemu; rootfs /r }\n",
        3, 3, "the `vm` block has no `kernel`", None),
    ("unknown hypervisor", b"app a\n  type vm\n  vm { hypervisor kvm; kernel /k; rootfs /r }\n",
        3, 19, "`kvm` is not a hypervisor", Some("`firecracker`, `qemu` or `cloud-hypervisor`")),
    ("job with restart always", b"app a\n  type job\n  exec /x\n  restart always\n",
        4, 11, "job `a` cannot `restart always`", Some("on-failure")),
    ("job with scale", b"app a\n  type job\n  exec /x\n  scale { max 2 }\n",
        4, 3, "job `a` cannot have a `scale` block", None),
    ("serve in a wasm app", b"app a\n  type wasm\n  serve { static p }\n",
        3, 3, "`serve` runs a static file server, but app `a` is `type wasm`", None),
    ("port in serve and app", b"app a\n  serve { static p; port 80 }\n  port 81\n",
        3, 3, "app `a` sets its port twice: here and in `serve` (line 2)", None),
    ("serve without static", b"app a\n  serve { port 80 }\n",
        2, 3, "the `serve` block has no `static`", None),
    // Scale
    ("scale min above max", b"app a\n  exec /x\n  scale { min 5; max 2 }\n",
        3, 15, "scale `min` (5) is greater than `max` (2)", None),
    ("scale without max", b"app a\n  exec /x\n  scale { min 1 }\n",
        3, 3, "the `scale` block has no `max`", Some("`max 8`")),
    ("cpu-below not under cpu-above", b"app a\n  exec /x\n  scale { max 4; cpu-above 50; cpu-below 50 }\n",
        3, 42, "`cpu-below` (50%) must be lower than `cpu-above` (50%)", None),
    ("percent 101", b"app a\n  exec /x\n  scale { max 4; cpu-above 101 }\n",
        3, 28, "101 is out of range (1 to 100)", Some("`70%`")),
    ("replicas outside scale range", b"app a\n  exec /x\n  replicas 5\n  scale { max 3 }\n",
        3, 12, "starts 5 replicas, outside its scale range 1..3", None),
    ("one replica outside scale range", b"app a\n  exec /x\n  replicas 1\n  scale { min 2; max 8 }\n",
        3, 12, "app `a` starts 1 replica, outside its scale range 2..8", None),
    // Environment
    ("env PORT", b"app a\n  exec /x\n  env {\n    PORT 80\n  }\n",
        4, 5, "`PORT` is set by the node", Some("set `port 80` on the app")),
    ("volume env PORT", b"app a\n  exec /x\n  volume { path /d; env PORT }\n",
        3, 25, "`PORT` is set by the node", Some("`port`")),
    ("env value missing", b"app a\n  exec /x\n  env { A }\n",
        3, 10, "`A` needs a value", Some("for example `A value`, or `A \"\"` for an empty value")),
    ("invalid env name", b"app a\n  exec /x\n  env {\n    1X 80\n  }\n",
        4, 5, "`1X` is not a valid environment variable name", None),
    ("duplicate env var", b"app a\n  exec /x\n  env {\n    A 1\n    A 2\n  }\n",
        5, 5, "`A` is set twice in this `env` block (first on line 4)", None),
    ("same var in env and secret", b"app a\n  exec /x\n  env { A 1 }\n  secret { A 2 }\n",
        4, 12, "`A` is set by both `env` and `secret` in app `a` (first on line 3)", None),
    ("same var in secret then env", b"app a\n  exec /x\n  secret { D 1 }\n  env { D 1 }\n",
        4, 9, "`D` is set by both `secret` and `env` in app `a` (first on line 3)", None),
    ("same var in env and a volume", b"app a\n  exec /x\n  env { D 1 }\n  volume { path /a; env D }\n  volume { path /b }\n",
        4, 25, "`D` is set by both `env` and `volume` in app `a` (first on line 3)", None),
    ("same var in two volumes", b"app a\n  exec /x\n  volume { path /a; env D }\n  volume { path /b; env D }\n",
        4, 25, "`D` is set by two `volume` blocks in app `a` (first on line 3)", None),
    ("text after a quoted value", b"app a\n  exec /x\n  env { K \"a\" b }\n",
        3, 11, "the value of `K` has text after its closing quote", None),
    ("unclosed quote in a secret", b"app a\n  exec /x\n  secret { K \"abc }\n",
        3, 14, "quote \" is never closed", None),
    // Health
    ("health without check", b"app a\n  exec /x\n  health { interval 5s }\n",
        3, 3, "the `health` block has no `check`", None),
    ("timeout longer than interval", b"app a\n  exec /x\n  health { check tcp; interval 1s; timeout 2s }\n",
        3, 44, "health `timeout` (2s) is longer than its `interval` (1s)", None),
    ("timeout longer than default interval", b"app a\n  exec /x\n  health { check tcp; timeout 20s }\n",
        3, 31, "its `interval` (the default 10s)", None),
    ("zero interval", b"app a\n  exec /x\n  health { check tcp; interval 0s }\n",
        3, 32, "must be longer than zero", None),
    ("check path without slash", b"app a\n  exec /x\n  health { check GET healthz }\n",
        3, 22, "`healthz` is not a path: it must start with `/`", None),
    ("check status 99", b"app a\n  exec /x\n  health { check GET /h 99 }\n",
        3, 25, "status 99 is out of range (100 to 599)", None),
    ("check status not a number", b"app a\n  exec /x\n  health { check GET /x abc }\n",
        3, 25, "`check`: status `abc` is not a whole number", None),
    ("check path inside the method", b"app a\n  exec /x\n  health { check GET E }\n",
        3, 22, "`E` is not a path", None),
    ("check status after non-ASCII path", "app a\n  exec /x\n  health { check GET /\u{fc} 99 }\n".as_bytes(),
        3, 25, "status 99 is out of range", None),
    ("check with extra words", b"app a\n  exec /x\n  health { check GET /x 200 extra }\n",
        3, 29, "the check has extra words at the end", None),
    ("check method POST", b"app a\n  exec /x\n  health { check POST /h }\n",
        3, 18, "`POST` is not a check (GET, HEAD or tcp)", None),
    ("retries 0", b"app a\n  exec /x\n  health { check tcp; retries 0 }\n",
        3, 31, "0 is out of range (1 to 100)", None),
    // Volumes and build
    ("volume relative path", b"app a\n  exec /x\n  volume { path data }\n",
        3, 17, "`data` is not an absolute path", Some("start it with `/`")),
    ("volume without path", b"app a\n  exec /x\n  volume { env DATA }\n",
        3, 3, "the `volume` block has no `path`", None),
    ("volume invalid env name", b"app a\n  exec /x\n  volume { path /d; env 9X }\n",
        3, 25, "`9X` is not a valid environment variable name", None),
    ("build without run", b"app a\n  exec /x\n  build { out x }\n",
        3, 3, "the `build` block has no `run`", Some("`run make`")),
    // Bytes
    ("non-UTF-8 byte", b"app a\n  exec /x\xff\n",
        2, 10, "the manifest is not UTF-8 text", Some("save the file as UTF-8")),
    ("non-UTF-8 after a multi-byte character", b"app a\n  exec /\xc3\xa9\xff\n",
        2, 10, "the manifest is not UTF-8 text", None),
    ("non-UTF-8 first byte", b"\xff",
        1, 1, "the manifest is not UTF-8 text", None),
    ("byte-order mark, then a bad name", b"\xef\xbb\xbfapp A\n  exec /x\n",
        1, 5, "`A` is not a valid app name", None),
];

fn first_error(name: &str, manifest: &[u8]) -> Result<Diagnostic, String> {
    let file = format!("{name}.skr8tr");
    let diagnostics = match parse_bytes(&file, manifest) {
        Ok(apps) => return Err(format!("accepted: {apps:?}")),
        Err(d) => d,
    };
    // Every position lies inside the text: a line that exists, a column on
    // it or just past its end.
    let text = String::from_utf8_lossy(manifest);
    let lines: Vec<&str> = text.split('\n').collect();
    for d in diagnostics.iter() {
        let line = lines.get(d.pos.line as usize - 1).copied().unwrap_or("");
        let width = line.trim_end_matches('\r').chars().count() as u32;
        if d.file != file || d.pos.line as usize > lines.len() || d.pos.col > width + 1 {
            return Err(format!("position outside the input: {d}"));
        }
    }
    Ok(diagnostics.0[0].clone())
}

#[test]
fn invalid_manifests_report_line_column_and_message() {
    assert!(CASES.len() >= 40);
    let mut failures = Vec::new();
    for &(name, manifest, line, col, message, hint) in CASES {
        let d = match first_error(name, manifest) {
            Ok(d) => d,
            Err(e) => {
                failures.push(format!("{name}: {e}"));
                continue;
            }
        };
        let hint_ok = hint.is_none_or(|h| d.hint.as_deref().is_some_and(|dh| dh.contains(h)));
        if (d.pos.line, d.pos.col) != (line, col) || !d.message.contains(message) || !hint_ok {
            failures.push(format!(
                "{name}: expected {line}:{col} `{message}` (hint {hint:?}), got\n  {d}"
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn case_names_are_unique() {
    let mut names: Vec<&str> = CASES.iter().map(|c| c.0).collect();
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), CASES.len());
}

#[test]
fn diagnostics_print_as_file_line_col() {
    let d = parse("web.skr8tr", "app web\n  exec /x\n  replcas 3\n").unwrap_err();
    assert_eq!(
        d.to_string(),
        "web.skr8tr:3:3: error: unknown key `replcas` in app `web`\n  hint: did you mean `replicas`?"
    );
}

#[test]
fn oversized_input_is_refused_before_parsing() {
    let app = "app a\n  exec /x\n";
    let pad = |total: usize| format!("{app}#{}\n", "x".repeat(total - app.len() - 2));
    let at_limit = pad(MAX_MANIFEST_BYTES);
    assert_eq!(at_limit.len(), MAX_MANIFEST_BYTES);
    assert!(parse("limit", &at_limit).is_ok());

    let over = pad(MAX_MANIFEST_BYTES + 1);
    for result in [parse("big", &over), parse_bytes("big", over.as_bytes())] {
        let d = result.expect_err("one byte over the limit");
        assert_eq!(d.len(), 1, "{d}");
        let d = &d.0[0];
        assert_eq!((d.pos.line, d.pos.col), (1, 1));
        let expected = format!(
            "the manifest is {} bytes; the limit is 1048576",
            MAX_MANIFEST_BYTES + 1
        );
        assert_eq!(d.message, expected);
        assert!(d.hint.as_deref().is_some_and(|h| h.contains("split")));
    }
}

/// Every diagnostic of `text` as `(line, column, message)`.
fn all_errors(text: &str) -> Vec<(u32, u32, String)> {
    match parse("all", text) {
        Ok(apps) => panic!("accepted: {apps:?}"),
        Err(d) => d
            .iter()
            .map(|d| (d.pos.line, d.pos.col, d.message.clone()))
            .collect(),
    }
}

fn assert_errors(text: &str, expected: &[(u32, u32, &str)]) {
    let found = all_errors(text);
    let matches = found.len() == expected.len()
        && found
            .iter()
            .zip(expected)
            .all(|(f, e)| (f.0, f.1) == (e.0, e.1) && f.2.contains(e.2));
    assert!(
        matches,
        "{text:?}\nexpected {expected:?}\nfound    {found:?}"
    );
}

#[test]
fn columns_after_a_tab_count_characters() {
    // A tab indents like two spaces, but an editor shows it as one column.
    assert_errors(
        "app a\n\texec /x\n\tport 0\n\tportt 1\n",
        &[
            (2, 1, "tab in indentation"),
            (3, 1, "tab in indentation"),
            (3, 7, "`port`: 0 is out of range"),
            (4, 1, "tab in indentation"),
            (4, 2, "unknown key `portt`"),
        ],
    );
    // A `{` block opened on a tab-indented line still closes where it should.
    assert_errors(
        "app a {\n\texec /x\n\thealth {\n\t  check tcp\n\t}\n\tport 0\n}\n",
        &[
            (2, 1, "tab in indentation"),
            (3, 1, "tab in indentation"),
            (4, 1, "tab in indentation"),
            (5, 1, "tab in indentation"),
            (6, 1, "tab in indentation"),
            (6, 7, "`port`: 0 is out of range"),
        ],
    );
}

#[test]
fn a_misaligned_line_stays_in_its_app() {
    // No knock-on "outside any app block": the line belongs to `app a`.
    assert_errors(
        "app a\n    exec /x\n  port 1\n",
        &[(3, 3, "indentation of 2 spaces lines up with no block above")],
    );
    assert_errors(
        "app a\n  exec /x\n port 0\n",
        &[
            (3, 2, "indentation of 1 spaces lines up with no block above"),
            (3, 7, "`port`: 0 is out of range"),
        ],
    );
}

#[test]
fn one_line_app_is_one_clear_error() {
    assert_errors(
        "app a { exec /x; port 80 }\napp b\n  exec /x\n",
        &[(1, 7, "an app block cannot be written on one line")],
    );
}

#[test]
fn app_bodies_are_checked_after_a_bad_or_repeated_name() {
    assert_errors(
        "app Bad\n  exec /x\n  port 0\n",
        &[
            (1, 5, "`Bad` is not a valid app name"),
            (3, 8, "`port`: 0 is out of range"),
        ],
    );
    assert_errors(
        "app a\n  exec /x\napp a\n  exec /y\n  port 0\n",
        &[
            (3, 5, "app `a` is defined twice"),
            (5, 8, "`port`: 0 is out of range"),
        ],
    );
    assert_errors(
        "app\n  exec /x\n  port 0\n",
        &[
            (1, 4, "`app` needs a name"),
            (3, 8, "`port`: 0 is out of range"),
        ],
    );
}

#[test]
fn the_diagnostic_cap_keeps_the_first_by_position() {
    // The tree pass reports the tabs before the app pass reports line 3.
    let text = format!("app a\n  exec /x\n  port 0\n{}", "\t#\n".repeat(150));
    let found = all_errors(&text);
    assert_eq!(found.len(), 100);
    assert_eq!(found[0].0, 3, "{:?}", found[0]);
    assert!(
        found[0].2.contains("`port`: 0 is out of range"),
        "{found:?}"
    );
    assert!(found[1..].iter().all(|f| f.2 == "tab in indentation"));
}
