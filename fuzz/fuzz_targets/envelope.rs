//! Any bytes into the envelope verifier: a typed rejection, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use skr8tr_proto::command::ClusterId;
use skr8tr_proto::envelope;
use skr8tr_proto::keys::{PublicKey, SecretKey};
use std::sync::OnceLock;

fn ring() -> &'static [PublicKey] {
    static RING: OnceLock<Vec<PublicKey>> = OnceLock::new();
    RING.get_or_init(|| vec![SecretKey::from_seed(&[1; 32]).public()])
}

fuzz_target!(|data: &[u8]| {
    let _ = envelope::verify(data, ring(), &ClusterId([0; 16]), 1_800_000_000_000);
});
