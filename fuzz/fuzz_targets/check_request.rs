//! CheckRequest handling: any bytes decoded as an ext_authz CheckRequest (what Envoy's
//! gRPC filter sends) go through the whole decision pipeline without a panic.
#![no_main]

use envoy_types::ext_authz::v3::pb::CheckRequest;
use libfuzzer_sys::fuzz_target;
use prost::Message;

#[path = "common.rs"]
mod common;

fuzz_target!(|data: &[u8]| {
    let Ok(req) = CheckRequest::decode(data) else { return };
    let (rt, engine) = common::engine();
    rt.block_on(tokengate::grpc::check_once(engine, req));
});
