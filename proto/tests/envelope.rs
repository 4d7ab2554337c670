//! Signed-command envelopes and ML-DSA-65 keys, with real keys.

// A test: an unwrap is an assertion (clippy allows it inside #[test]
// functions only; these helpers are part of the tests too).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use skr8tr_proto::clock::now_ms;
use skr8tr_proto::command::{ClusterId, Command};
use skr8tr_proto::envelope::{
    self, Envelope, KeyRing, KeyStatus, MAX_CLOCK_SKEW, MAX_ENVELOPE_BYTES, Nonce, Payload,
    VerifyError,
};
use skr8tr_proto::keys::{Fingerprint, PublicKey, SecretKey};
use std::collections::HashSet;
use std::time::SystemTime;

const CLUSTER: ClusterId = ClusterId([7; 16]);

fn key(n: u8) -> SecretKey {
    SecretKey::from_seed(&[n; 32])
}

fn scale_cmd() -> Command {
    Command::Scale {
        app: "api".into(),
        replicas: 5,
    }
}

fn signed(key: &SecretKey) -> Vec<u8> {
    Envelope::sign(key, scale_cmd(), CLUSTER, SystemTime::now())
        .unwrap()
        .to_bytes()
}

fn payload_at(issued_at_ms: u64) -> Payload {
    Payload {
        command: scale_cmd(),
        cluster: CLUSTER,
        issued_at_ms,
        nonce: Nonce([1; 16]),
    }
}

#[test]
fn round_trip_returns_the_command_and_signer() {
    let k = key(1);
    let ring = [k.public()];
    let bytes = signed(&k);
    let v = envelope::verify(&bytes, &ring[..], &CLUSTER, now_ms()).unwrap();
    assert_eq!(v.payload.command, scale_cmd());
    assert_eq!(v.payload.cluster, CLUSTER);
    assert_eq!(v.signer, k.public().fingerprint());
    // Two signatures of the same command differ in nonce (and, hedged, in signature).
    let again = Envelope::from_bytes(&signed(&k)).unwrap();
    let first = Envelope::from_bytes(&bytes).unwrap();
    assert_ne!(again.payload, first.payload);
    assert_ne!(
        again.payload_unverified().unwrap().nonce,
        first.payload_unverified().unwrap().nonce
    );
}

#[test]
fn a_flipped_bit_anywhere_in_payload_or_signature_is_a_bad_signature() {
    let k = key(1);
    let ring = [k.public()];
    let env = Envelope::from_bytes(&signed(&k)).unwrap();
    let payload_bits = env.payload.len() * 8;
    // A spread of positions: first, last and every 37th bit of the payload.
    for bit in (0..payload_bits).step_by(37).chain([payload_bits - 1]) {
        let mut bad = env.clone();
        bad.payload[bit / 8] ^= 1 << (bit % 8);
        let err = envelope::verify(&bad.to_bytes(), &ring[..], &CLUSTER, now_ms()).unwrap_err();
        assert_eq!(
            err,
            VerifyError::BadSignature(k.public().fingerprint()),
            "payload bit {bit}"
        );
    }
    for byte in [0, 1, 100, 1000, env.signature.len() - 1] {
        let mut bad = env.clone();
        bad.signature[byte] ^= 0x10;
        let err = envelope::verify(&bad.to_bytes(), &ring[..], &CLUSTER, now_ms()).unwrap_err();
        assert_eq!(
            err,
            VerifyError::BadSignature(k.public().fingerprint()),
            "sig byte {byte}"
        );
    }
    let mut short = env.clone();
    short.signature.pop();
    let err = envelope::verify(&short.to_bytes(), &ring[..], &CLUSTER, now_ms()).unwrap_err();
    assert!(matches!(err, VerifyError::BadSignature(_)), "{err:?}");
}

#[test]
fn another_key_is_unknown_and_a_borrowed_fingerprint_is_a_bad_signature() {
    let trusted = key(1);
    let stranger = key(2);
    let ring = [trusted.public()];
    let err = envelope::verify(&signed(&stranger), &ring[..], &CLUSTER, now_ms()).unwrap_err();
    assert_eq!(
        err,
        VerifyError::UnknownKey(stranger.public().fingerprint())
    );
    assert!(err.to_string().contains("not an operator key"), "{err}");

    // The stranger claims to be the trusted key: the signature gives it away.
    let mut env = Envelope::from_bytes(&signed(&stranger)).unwrap();
    env.signer = trusted.public().fingerprint();
    let err = envelope::verify(&env.to_bytes(), &ring[..], &CLUSTER, now_ms()).unwrap_err();
    assert_eq!(
        err,
        VerifyError::BadSignature(trusted.public().fingerprint())
    );
}

struct Revoking(PublicKey);

impl KeyRing for Revoking {
    fn lookup(&self, fp: &Fingerprint) -> KeyStatus<'_> {
        if *fp == self.0.fingerprint() {
            KeyStatus::Revoked
        } else {
            KeyStatus::Unknown
        }
    }
}

#[test]
fn a_revoked_key_is_refused() {
    let k = key(1);
    let err = envelope::verify(&signed(&k), &Revoking(k.public()), &CLUSTER, now_ms()).unwrap_err();
    assert_eq!(err, VerifyError::RevokedKey(k.public().fingerprint()));
}

#[test]
fn another_cluster_is_refused() {
    let k = key(1);
    let ring = [k.public()];
    let other = ClusterId([9; 16]);
    let err = envelope::verify(&signed(&k), &ring[..], &other, now_ms()).unwrap_err();
    assert_eq!(
        err,
        VerifyError::WrongCluster {
            expected: other,
            got: CLUSTER
        }
    );
}

#[test]
fn the_clock_window_is_thirty_seconds_either_way() {
    let k = key(1);
    let ring = [k.public()];
    let now = 1_800_000_000_000;
    let skew = MAX_CLOCK_SKEW.as_millis() as u64;
    let check = |issued: u64| {
        let env = Envelope::sign_payload(&k, &payload_at(issued)).unwrap();
        envelope::verify(&env.to_bytes(), &ring[..], &CLUSTER, now)
    };
    assert!(check(now - skew).is_ok());
    assert!(check(now + skew).is_ok());
    assert_eq!(
        check(now - skew - 1),
        Err(VerifyError::Stale { age_ms: skew + 1 })
    );
    assert_eq!(
        check(now + skew + 1),
        Err(VerifyError::FromFuture { ahead_ms: skew + 1 })
    );
    assert_eq!(check(0), Err(VerifyError::Stale { age_ms: now }));
    let err = check(now - 60_000).unwrap_err();
    assert!(err.to_string().contains("check the clocks"), "{err}");
}

#[test]
fn framing_errors_are_malformed_not_panics() {
    let k = key(1);
    let ring = [k.public()];
    let bytes = signed(&k);
    for cut in [0, 1, 2, 10, bytes.len() / 2, bytes.len() - 1] {
        let err = envelope::verify(&bytes[..cut], &ring[..], &CLUSTER, now_ms()).unwrap_err();
        assert!(
            matches!(err, VerifyError::Malformed(_)),
            "cut {cut}: {err:?}"
        );
    }
    let mut trailing = bytes.clone();
    trailing.push(0);
    let err = envelope::verify(&trailing, &ring[..], &CLUSTER, now_ms()).unwrap_err();
    assert!(matches!(err, VerifyError::Malformed(_)), "{err:?}");

    let mut env = Envelope::from_bytes(&bytes).unwrap();
    env.version = 2;
    let err = envelope::verify(&env.to_bytes(), &ring[..], &CLUSTER, now_ms()).unwrap_err();
    assert_eq!(err, VerifyError::UnsupportedVersion(2));

    let huge = vec![0u8; MAX_ENVELOPE_BYTES + 1];
    let err = envelope::verify(&huge, &ring[..], &CLUSTER, now_ms()).unwrap_err();
    assert!(matches!(err, VerifyError::TooLarge { .. }), "{err:?}");
}

#[test]
fn a_validly_signed_but_unreadable_payload_is_its_own_error() {
    let k = key(1);
    let ring = [k.public()];
    // What a newer client's command looks like to this version: a payload
    // with an extra trailing field.
    let mut bytes = postcard::to_allocvec(&payload_at(now_ms())).unwrap();
    bytes.push(42);
    let env = Envelope {
        version: envelope::ENVELOPE_VERSION,
        signer: k.public().fingerprint(),
        signature: k.sign(&bytes, envelope::SIGNING_CONTEXT).unwrap(),
        payload: bytes,
    };
    let err = envelope::verify(&env.to_bytes(), &ring[..], &CLUSTER, now_ms()).unwrap_err();
    assert!(matches!(err, VerifyError::MalformedPayload(_)), "{err:?}");
}

#[test]
fn a_signature_under_another_context_does_not_verify_as_a_command() {
    let k = key(1);
    let ring = [k.public()];
    let bytes = postcard::to_allocvec(&payload_at(now_ms())).unwrap();
    let env = Envelope {
        version: envelope::ENVELOPE_VERSION,
        signer: k.public().fingerprint(),
        signature: k.sign(&bytes, b"some other protocol").unwrap(),
        payload: bytes,
    };
    let err = envelope::verify(&env.to_bytes(), &ring[..], &CLUSTER, now_ms()).unwrap_err();
    assert_eq!(err, VerifyError::BadSignature(k.public().fingerprint()));
}

#[test]
fn every_rejection_has_a_distinct_code() {
    let errors = [
        VerifyError::TooLarge { size: 0, limit: 0 },
        VerifyError::Malformed(String::new()),
        VerifyError::UnsupportedVersion(0),
        VerifyError::UnknownKey(Fingerprint([0; 8])),
        VerifyError::RevokedKey(Fingerprint([0; 8])),
        VerifyError::BadSignature(Fingerprint([0; 8])),
        VerifyError::MalformedPayload(String::new()),
        VerifyError::WrongCluster {
            expected: CLUSTER,
            got: CLUSTER,
        },
        VerifyError::Stale { age_ms: 0 },
        VerifyError::FromFuture { ahead_ms: 0 },
    ];
    let codes: HashSet<&str> = errors.iter().map(|e| e.code().as_str()).collect();
    assert_eq!(codes.len(), errors.len());
    let messages: HashSet<String> = errors.iter().map(|e| e.to_string()).collect();
    assert_eq!(messages.len(), errors.len());
}

#[test]
fn keys_round_trip_through_pem_in_the_standard_encodings() {
    let k = key(3);
    let pem = k.to_pem().unwrap();
    assert!(
        pem.starts_with("-----BEGIN PRIVATE KEY-----\n"),
        "{}",
        &*pem
    );
    let back = SecretKey::from_pem(&pem).unwrap();
    assert_eq!(*back.seed(), [3; 32]);
    assert_eq!(back.public(), k.public());

    // PKCS#8 seed-only form for id-ml-dsa-65 (OID 2.16.840.1.101.3.4.3.18),
    // as in the IETF LAMPS ML-DSA certificate profile and OpenSSL 3.5.
    let der = base64_body(&pem);
    let prefix = [
        0x30, 0x34, 0x02, 0x01, 0x00, 0x30, 0x0b, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03,
        0x04, 0x03, 0x12, 0x04, 0x22, 0x80, 0x20,
    ];
    assert_eq!(&der[..prefix.len()], prefix);
    assert_eq!(&der[prefix.len()..], [3; 32]);

    let public_pem = k.public().to_pem().unwrap();
    assert!(public_pem.starts_with("-----BEGIN PUBLIC KEY-----\n"));
    let der = base64_body(&public_pem);
    let prefix = [
        0x30, 0x82, 0x07, 0xb2, 0x30, 0x0b, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04,
        0x03, 0x12, 0x03, 0x82, 0x07, 0xa1, 0x00,
    ];
    assert_eq!(&der[..prefix.len()], prefix);
    assert_eq!(&der[prefix.len()..], k.public().to_bytes());
    assert_eq!(PublicKey::from_pem(&public_pem).unwrap(), k.public());

    assert!(SecretKey::from_pem(&public_pem).is_err());
    assert!(PublicKey::from_pem(&pem).is_err());
    assert!(
        PublicKey::from_pem("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n")
            .is_err()
    );
    assert!(PublicKey::from_bytes(&[0; 10]).is_err());
}

#[test]
fn fingerprints_are_16_hex_digits_and_parse_back() {
    let fp = key(1).public().fingerprint();
    let text = fp.to_string();
    assert_eq!(text.len(), 16);
    assert!(text.chars().all(|c| c.is_ascii_hexdigit()));
    assert_eq!(text.parse::<Fingerprint>().unwrap(), fp);
    assert_ne!(key(2).public().fingerprint(), fp);
    assert!("xyz".parse::<Fingerprint>().is_err());
    assert!("abcd".parse::<Fingerprint>().is_err());
    let cluster: ClusterId = CLUSTER.to_string().parse().unwrap();
    assert_eq!(cluster, CLUSTER);
}

/// A signature made by an independent FIPS 204 implementation (dilithium-py)
/// from a fixed seed verifies here, and the public keys agree byte for byte.
#[test]
fn known_answer_vector_from_an_independent_implementation() {
    let text = include_str!("vectors/ml-dsa-65-seed-00-1f.txt");
    let field = |name: &str| -> Vec<u8> {
        let line = text
            .lines()
            .find_map(|l| l.strip_prefix(name).and_then(|r| r.strip_prefix(' ')))
            .unwrap_or_else(|| panic!("vector has no {name}"));
        skr8tr_proto::hex::decode(line).unwrap()
    };
    let seed: [u8; 32] = field("seed").try_into().unwrap();
    let k = SecretKey::from_seed(&seed);
    let pk_hash = sha256_hex(&k.public().to_bytes());
    assert_eq!(
        pk_hash,
        skr8tr_proto::hex::encode(&field("public_key_sha256"))
    );
    let (msg, ctx, sig) = (field("message"), field("context"), field("signature"));
    assert!(k.public().verify(&msg, &ctx, &sig));
    assert!(!k.public().verify(&msg, b"other context", &sig));
    assert!(!k.public().verify(b"other message", &ctx, &sig));
    // And our own signatures verify under the same key.
    let ours = k.sign(&msg, &ctx).unwrap();
    assert!(k.public().verify(&msg, &ctx, &ours));
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    skr8tr_proto::hex::encode(&sha2::Sha256::digest(bytes))
}

/// Decodes the base64 body of a PEM document (test helper, not production code).
fn base64_body(pem: &str) -> Vec<u8> {
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    let value = |c: u8| -> u32 {
        match c {
            b'A'..=b'Z' => u32::from(c - b'A'),
            b'a'..=b'z' => u32::from(c - b'a') + 26,
            b'0'..=b'9' => u32::from(c - b'0') + 52,
            b'+' => 62,
            b'/' => 63,
            _ => panic!("not base64: {c}"),
        }
    };
    let mut out = Vec::new();
    for chunk in body.trim_end_matches('=').as_bytes().chunks(4) {
        let mut acc = 0u32;
        for (i, c) in chunk.iter().enumerate() {
            acc |= value(*c) << (18 - 6 * i);
        }
        let bytes = acc.to_be_bytes();
        out.extend_from_slice(&bytes[1..chunk.len()]);
    }
    out
}

#[test]
fn nonces_are_random() {
    let a = Nonce::generate().unwrap();
    let b = Nonce::generate().unwrap();
    assert_ne!(a, b);
    assert_eq!(a.to_string().len(), 32);
}

#[test]
fn a_join_ticket_is_valid_until_its_own_expiry_and_at_most_a_day() {
    let k = key(1);
    let ring = [k.public()];
    let t0 = 1_800_000_000_000u64;
    let ticket = |expires_at_ms: u64| {
        let payload = Payload {
            command: Command::AdmitNode {
                name: "n1".into(),
                expires_at_ms,
            },
            cluster: CLUSTER,
            issued_at_ms: t0,
            nonce: Nonce([3; 16]),
        };
        Envelope::sign_payload(&k, &payload).unwrap().to_bytes()
    };
    let ten_min = ticket(t0 + 600_000);
    assert!(
        envelope::verify(&ten_min, &ring[..], &CLUSTER, t0 + 300_000).is_ok(),
        "used 5 minutes later"
    );
    assert!(envelope::verify(&ten_min, &ring[..], &CLUSTER, t0 + 600_000 + 29_000).is_ok());
    assert!(matches!(
        envelope::verify(&ten_min, &ring[..], &CLUSTER, t0 + 700_000),
        Err(VerifyError::Stale { .. })
    ));
    let forever = ticket(u64::MAX);
    let day = envelope::MAX_TICKET_LIFETIME_MS;
    assert!(envelope::verify(&forever, &ring[..], &CLUSTER, t0 + day).is_ok());
    assert!(
        envelope::verify(&forever, &ring[..], &CLUSTER, t0 + day + 60_000).is_err(),
        "capped at a day"
    );
    // Other commands keep the 30 s window.
    let scale = Envelope::sign_payload(&k, &payload_at(t0))
        .unwrap()
        .to_bytes();
    assert!(envelope::verify(&scale, &ring[..], &CLUSTER, t0 + 300_000).is_err());
}
