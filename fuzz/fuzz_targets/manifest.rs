//! Any bytes into the manifest parser: it must return specs or diagnostics,
//! never panic, and every diagnostic must point inside the input.
#![no_main]

use libfuzzer_sys::fuzz_target;
use skr8tr_proto::manifest;

fuzz_target!(|data: &[u8]| {
    if let Err(diags) = manifest::parse_bytes("fuzz.skr8tr", data) {
        let lines = data.iter().filter(|b| **b == b'\n').count() as u32 + 1;
        for d in diags.iter() {
            assert!(d.pos.line >= 1 && d.pos.line <= lines);
        }
    }
});
