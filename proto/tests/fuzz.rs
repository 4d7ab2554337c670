//! Property test: the manifest parser never panics — not on arbitrary bytes,
//! not on arbitrary mutations of valid manifests — and whatever it accepts
//! re-encodes. Deterministic (seeded) so a failure reproduces; the case
//! count scales with `SKR8TR_FUZZ_CASES` (default 20 000 per property).
//! The `fuzz/` directory has a coverage-guided `cargo fuzz` target too.

// A test: an unwrap is an assertion (clippy allows it inside #[test]
// functions only; these helpers are part of the tests too).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use skr8tr_proto::manifest;
use std::path::Path;

/// xorshift64*: small, seedable, good enough to drive mutations.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

fn cases() -> usize {
    std::env::var("SKR8TR_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000)
}

/// Tokens that steer mutations towards the parser's interesting corners.
const TOKENS: &[&str] = &[
    "{",
    "}",
    "{ ",
    " }",
    ";",
    "#",
    "\"",
    "'",
    "\\",
    "\t",
    "  ",
    "    ",
    "\n",
    "\r\n",
    "app x",
    "app",
    "exec",
    "health",
    "scale",
    "env",
    "secret",
    "vm",
    "serve",
    "volume",
    "build",
    "port",
    "replicas",
    "0",
    "-1",
    "65536",
    "99999999999999999999",
    "10s",
    "500ms",
    "4gb",
    "0.5",
    "%",
    "$PORT",
    "${PORT}",
    "check GET /",
    "check tcp",
    "min 5",
    "max 1",
    "é",
    "\u{0}",
    "\u{feff}",
];

fn corpus() -> Vec<String> {
    let mut files = Vec::new();
    for dir in ["../examples", "tests/corpus/valid"] {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join(dir);
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            if let Ok(text) = std::fs::read_to_string(entry.path()) {
                files.push(text);
            }
        }
    }
    assert!(!files.is_empty(), "no seed manifests found");
    files
}

fn mutate(rng: &mut Rng, text: &str) -> Vec<u8> {
    let mut bytes = text.as_bytes().to_vec();
    for _ in 0..=rng.below(6) {
        let at = rng.below(bytes.len() + 1);
        match rng.below(8) {
            0 => {
                // flip a bit
                if !bytes.is_empty() {
                    let i = rng.below(bytes.len());
                    bytes[i] ^= 1 << rng.below(8);
                }
            }
            1 => {
                // delete a range
                let len = rng.below(16).min(bytes.len() - at.min(bytes.len()));
                bytes.drain(at..at + len);
            }
            2 | 3 => {
                let token = rng.pick(TOKENS).as_bytes();
                bytes.splice(at..at, token.iter().copied());
            }
            4 => {
                // duplicate a line
                let lines: Vec<&[u8]> = bytes.split(|b| *b == b'\n').collect();
                let line = rng.pick(&lines).to_vec();
                bytes.splice(at..at, line.into_iter().chain([b'\n']));
            }
            5 => {
                // swap two lines
                let mut lines: Vec<Vec<u8>> =
                    bytes.split(|b| *b == b'\n').map(<[u8]>::to_vec).collect();
                let (a, b) = (rng.below(lines.len()), rng.below(lines.len()));
                lines.swap(a, b);
                bytes = lines.join(&b'\n');
            }
            6 => {
                // change indentation of a line
                let lines: Vec<&[u8]> = bytes.split(|b| *b == b'\n').collect();
                let i = rng.below(lines.len());
                let mut out: Vec<Vec<u8>> = lines.iter().map(|l| l.to_vec()).collect();
                let spaces = rng.below(7);
                let trimmed: Vec<u8> = out[i].iter().copied().skip_while(|b| *b == b' ').collect();
                out[i] = std::iter::repeat_n(b' ', spaces).chain(trimmed).collect();
                bytes = out.join(&b'\n');
            }
            _ => {
                // random byte
                bytes.insert(at, rng.next() as u8);
            }
        }
    }
    bytes
}

/// Parsing either fails with positioned diagnostics inside the input, or
/// yields specs that survive postcard; it never panics.
fn check(bytes: &[u8]) {
    match manifest::parse_bytes("fuzz.skr8tr", bytes) {
        Ok(apps) => {
            assert!(!apps.is_empty());
            for app in apps {
                let enc = postcard::to_allocvec(&app).unwrap();
                let dec: manifest::AppSpec = postcard::from_bytes(&enc).unwrap();
                assert_eq!(dec, app);
            }
        }
        Err(diags) => {
            assert!(!diags.is_empty());
            let lines = bytes.iter().filter(|b| **b == b'\n').count() as u32 + 1;
            for d in diags.iter() {
                assert!(
                    d.pos.line >= 1 && d.pos.line <= lines,
                    "{d} (file has {lines} lines)"
                );
                assert!(d.pos.col >= 1, "{d}");
                assert!(!d.message.is_empty());
            }
        }
    }
}

#[test]
fn arbitrary_bytes_never_panic() {
    let mut rng = Rng(0x5eed_0001);
    for _ in 0..cases() {
        let len = rng.below(200);
        let bytes: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
        check(&bytes);
    }
}

#[test]
fn arbitrary_token_soup_never_panics() {
    let mut rng = Rng(0x5eed_0002);
    for _ in 0..cases() {
        let text: String = (0..rng.below(60)).map(|_| *rng.pick(TOKENS)).collect();
        check(text.as_bytes());
    }
}

#[test]
fn mutations_of_valid_manifests_never_panic() {
    let seeds = corpus();
    let mut rng = Rng(0x5eed_0003);
    let mut accepted = 0;
    for _ in 0..cases() {
        let seed = rng.pick(&seeds).clone();
        let bytes = mutate(&mut rng, &seed);
        check(&bytes);
        accepted += usize::from(manifest::parse_bytes("m", &bytes).is_ok());
    }
    // Some mutations are harmless (a comment, a blank): the generator must
    // reach both outcomes or it is not exploring.
    assert!(accepted > 0 && accepted < cases(), "accepted {accepted}");
}
