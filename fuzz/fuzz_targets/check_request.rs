//! CheckRequest handling: any bytes decoded as tonic decodes a Check for tokengate (the
//! parts it reads, `grpc::wire::Check`: what Envoy's gRPC filter sends, header values
//! as raw bytes) go through the whole decision pipeline without a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use prost::Message;
use tokengate::grpc::wire;

#[path = "common.rs"]
mod common;

fuzz_target!(|data: &[u8]| {
    let Ok(check) = wire::Check::decode(data) else { return };
    let (rt, engine) = common::engine();
    rt.block_on(tokengate::grpc::answer(engine, &check));
});
