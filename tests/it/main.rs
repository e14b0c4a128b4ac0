//! tokengate's integration tests: one binary (linked once), a module per area. Every
//! test drives real parts: a real `redis-server`, Envoy, nginx, Traefik or OpenID
//! provider started by [`support`] on loopback ports the OS picked, and tokengate itself
//! in-process ([`support::TestServer`]) or as the built binary ([`support::procs`]).
//!
//! Run one area with `cargo test --test it grpc::` (module path as the filter).

// The workspace lints guard the request path (Cargo.toml, clippy.toml). A test states
// what it expects with unwrap/expect, and the harness's blocking waits (with deadlines)
// and std locks never run on a server's path.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::disallowed_types,
    clippy::disallowed_methods
)]

mod support;

mod admin;
mod backchannel;
mod bypass;
mod caching;
mod cli;
mod deploy;
mod dpop;
mod envoy;
mod fast_path;
mod faults;
mod grpc;
mod health;
mod helm;
mod hostile;
mod idp;
mod ingress;
mod layout;
mod mesh;
mod mtls_bound;
mod observability;
mod openapi;
mod properties;
mod providers;
mod redis;
mod redis_tls;
mod revocation;
mod sentinel;
mod slow_clients;
mod ssf;
mod status_list;
mod tls;
mod tracing;
mod transports;
