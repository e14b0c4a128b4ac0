//! Token parsing and verification: any bytes as a bearer token must give a decision,
//! never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "common.rs"]
mod common;

fuzz_target!(|data: &[u8]| {
    let Ok(token) = std::str::from_utf8(data) else { return };
    let (_, engine) = common::engine();
    let policy = engine.policy();
    let _ = policy.verifier.verify(token, tokengate::jwt::now_unix());
});
