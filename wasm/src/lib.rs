//! tokengate's in-proxy revocation fast path (issue 20; docs/operations.md, "Fast path
//! (proxy-wasm)"). Envoy's `jwt_authn` verifies the token and forwards its payload; this
//! filter then refuses revoked tokens from a set held in each worker's VM, so that the
//! ext_authz round trip, most of the cost of revocation, is not paid per request.
//!
//! Two roles of one module: the `sync` singleton keeps the set current from tokengate's
//! revocation feed and publishes it in Envoy's shared data; each worker's `filter` root
//! context picks a new copy up on its timer and judges requests against it. When no
//! sync succeeded within the bound, the filter does not guess (ext_authz or 503).
//!
//! The pure parts (JSON, base64url, the set, the rule, the configuration) build and
//! test on the host; the proxy-wasm contexts only on wasm32.

pub mod b64;
pub mod config;
pub mod json;
pub mod judge;
pub mod memo;
pub mod reason;
pub mod set;

#[cfg(target_arch = "wasm32")]
mod filter;
#[cfg(target_arch = "wasm32")]
mod sync;

/// Shared-data keys (scoped by Envoy to the VM id both roles use).
pub const SET_KEY: &str = "tokengate.fastpath.set";
pub const HEAD_KEY: &str = "tokengate.fastpath.head";

#[cfg(target_arch = "wasm32")]
proxy_wasm::main! {{
    proxy_wasm::set_log_level(proxy_wasm::types::LogLevel::Info);
    proxy_wasm::set_root_context(|_| -> Box<dyn proxy_wasm::traits::RootContext> {
        Box::new(filter::Root::default())
    });
}}
