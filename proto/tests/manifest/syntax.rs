//! Syntax details: comments, line endings, block styles, quoting, error
//! order, the byte-order mark, and what stays hidden.

use super::*;

#[test]
fn comments_and_blank_lines_are_skipped_but_not_inside_words() {
    let apps = corpus_file("08-comments.skr8tr");
    let expected = AppSpec {
        args: strings(&["a # b", "c#d"]),
        port: Port::Fixed(80),
        health: Some(Health {
            check: http(HttpMethod::Get, "/h#frag", 200),
            interval: secs(10),
            timeout: secs(2),
            retries: 3,
        }),
        env: vars(&[("URL", "http://example.org/#anchor")]),
        ..defaults("commented", "/bin/echo", 5)
    };
    assert_eq!(apps, [expected]);
}

#[test]
fn crlf_file_parses_like_its_lf_twin() {
    let path = Path::new(CORPUS).join("09-crlf.skr8tr");
    let text = std::fs::read_to_string(&path).expect("CRLF corpus file");
    // Guards against a checkout that rewrote the line endings.
    assert_eq!(text.matches('\n').count(), text.matches("\r\n").count());
    assert!(
        text.contains("\r\n"),
        "09-crlf.skr8tr lost its CRLF endings"
    );
    let apps = parse_ok("09-crlf.skr8tr", &text);
    assert_eq!(apps, parse_ok("lf", &text.replace("\r\n", "\n")));
    let app = &apps[0];
    assert_eq!(app.args, ["--msg", "hello world"]);
    assert_eq!(app.port, Port::Fixed(7000));
    assert_eq!(app.env, vars(&[("A", "1"), ("B", "two words")]));
    assert_eq!(apps[1].name, "crlf-two");
}

#[test]
fn block_styles_build_the_same_spec() {
    let styles = [
        "app same\n  exec /x\n  health {\n    check tcp\n    retries 2\n  }\n  env {\n    A 1\n  }\n",
        "app same\n  exec /x\n  health\n    check tcp\n    retries 2\n  env\n    A 1\n",
        "app same\n  exec /x\n  health { check tcp; retries 2 }\n  env { A 1 }\n",
        "app same {\n  exec /x\n  health { check tcp; retries 2 }\n  env {\n    A 1\n  }\n}\n",
    ];
    let expected = AppSpec {
        health: Some(Health {
            check: Check::Tcp,
            interval: secs(10),
            timeout: secs(2),
            retries: 2,
        }),
        env: vars(&[("A", "1")]),
        ..defaults("same", "/x", 1)
    };
    for text in styles {
        assert_eq!(
            parse_ok("style", text),
            std::slice::from_ref(&expected),
            "{text}"
        );
    }
}

#[test]
fn every_error_of_a_file_is_reported_in_order() {
    let text = "\
app a
  exec /x
  replcas 3
  port 0
  health {
    check GET healthz
  }
app b
\tport 80
  drain 10
app a
  exec /y
";
    let diagnostics = parse("many.skr8tr", text).expect_err("seven mistakes");
    let found: Vec<_> = diagnostics
        .iter()
        .map(|d| (d.pos.line, d.pos.col, d.message.as_str()))
        .collect();
    let expected = [
        (3, 3, "unknown key `replcas` in app `a`"),
        (4, 8, "`port`: 0 is out of range (1 to 65535)"),
        (
            6,
            15,
            "`check`: `healthz` is not a path: it must start with `/`",
        ),
        (8, 1, "app `b` has no `exec`"),
        (9, 1, "tab in indentation"),
        (10, 9, "`drain`: duration `10` has no unit"),
        (11, 5, "app `a` is defined twice (first on line 1)"),
    ];
    assert_eq!(found, expected, "{diagnostics}");
    assert!(diagnostics.iter().all(|d| d.file == "many.skr8tr"));
}

#[test]
fn secrets_never_show_in_debug_or_diagnostics() {
    let value = "hunter2-do-not-print";
    let text = format!("app s\n  exec /x\n  env {{ MODE prod }}\n  secret {{ TOKEN {value} }}\n");
    let apps = parse_ok("s", &text);
    assert_eq!(exposed(&apps[0]), [("TOKEN", value)]);
    for shown in [format!("{apps:?}"), format!("{apps:#?}")] {
        assert!(!shown.contains(value), "{shown}");
        assert!(shown.contains("***") && shown.contains("prod"), "{shown}");
    }
    // Broken secret blocks name the variable, never the value.
    for broken in [
        format!("app s\n  exec /x\n  secret {{ 1TOKEN {value} }}\n"),
        format!("app s\n  exec /x\n  secret {{ PORT {value} }}\n"),
        format!("app s\n  exec /x\n  secret {{ T {value}\n    T {value}\n  }}\n"),
        format!("app s\n  exec /x\n  env {{ T a }}\n  secret {{ T {value} }}\n"),
        format!("app s\n  exec /x\n  secret {{ T \"{value}\" x }}\n"),
    ] {
        let diagnostics = parse("s", &broken).expect_err("a broken secret block");
        let shown = diagnostics.to_string();
        assert!(!shown.contains(value), "{shown}");
    }
}

#[test]
fn specs_round_trip_through_postcard() {
    let mut apps = parse_ok("original", ORIGINAL);
    for (path, text) in manifests(CORPUS).into_iter().chain(manifests(EXAMPLES)) {
        apps.extend(parse_ok(&path.display().to_string(), &text));
    }
    assert!(apps.len() >= 20, "only {} apps", apps.len());
    for app in &apps {
        let bytes = postcard::to_allocvec(app).expect("encode");
        let back: AppSpec = postcard::from_bytes(&bytes).expect("decode");
        assert_eq!(&back, app);
    }
    let web = apps.iter().find(|a| a.name == "web").expect("web");
    let back: AppSpec = postcard::from_bytes(&postcard::to_allocvec(web).unwrap()).unwrap();
    assert_eq!(back.secrets[0].1.expose(), "s3cr3t-value");
}

#[test]
fn quotes_protect_semicolons_and_hashes_in_one_line_blocks() {
    let text = "app q\n  exec /x\n  env { MSG \"a; b\"; B 'c;d' }\n  secret { PASS \"abc #def\" }\n  args \"x # y\" # z\n  build { run echo 'a; b'; out o }\n";
    let apps = parse_ok("q", text);
    assert_eq!(apps[0].env, vars(&[("MSG", "a; b"), ("B", "c;d")]));
    assert_eq!(exposed(&apps[0]), [("PASS", "abc #def")]);
    assert_eq!(apps[0].args, ["x # y"]);
    let build = apps[0].build.as_ref().expect("build");
    assert_eq!(build.run, ["echo 'a; b'"]);
    // An apostrophe is not a quote that runs to the end of the line.
    let apps = parse_ok("q", "app q\n  exec /x\n  env { A don't; B 1 } # c\n");
    assert_eq!(apps[0].env, vars(&[("A", "don't"), ("B", "1")]));
}

#[test]
fn scale_without_replicas_starts_at_its_min() {
    let apps = parse_ok("s", "app s\n  exec /x\n  scale { min 2; max 8 }\n");
    assert_eq!(apps[0].replicas, 2);
    let apps = parse_ok(
        "s",
        "app s\n  exec /x\n  replicas 5\n  scale { min 2; max 8 }\n",
    );
    assert_eq!(apps[0].replicas, 5);
}

#[test]
fn a_leading_byte_order_mark_is_skipped() {
    let text = "\u{feff}app a\n  exec /x\n";
    let expected = [defaults("a", "/x", 1)];
    assert_eq!(parse_ok("bom", text), expected);
    let from_bytes = skr8tr_proto::manifest::parse_bytes("bom", text.as_bytes());
    assert_eq!(from_bytes.expect("parses"), expected);
}

#[test]
fn route_and_host_are_read_beside_the_spec() {
    let text = "app web\n  exec /x\n  route /api/\n  host Web.Example.com\napp b\n  exec /y\n";
    let apps = skr8tr_proto::manifest::parse_routed("t.skr8tr", text).unwrap();
    assert_eq!(apps[0].1.route.as_deref(), Some("/api"));
    assert_eq!(apps[0].1.host.as_deref(), Some("web.example.com"));
    assert_eq!(
        (apps[1].1.route.as_deref(), apps[1].1.host.as_deref()),
        (None, None)
    );
    // Where an app is served is not part of its spec: changing it is no rollout.
    let plain = skr8tr_proto::manifest::parse("t.skr8tr", "app web\n  exec /x\n").unwrap();
    assert_eq!(apps[0].0.exec, plain[0].exec);
}
