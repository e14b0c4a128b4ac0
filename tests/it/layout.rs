//! The workspace's dependency rules (docs/layout.md), checked on the real dependency
//! graph: the core crate never reaches a transport (axum, tonic, envoy-types, prost),
//! even through another crate, and the server does not depend on the load tools.

use std::process::Command;

use crate::support::procs::repo;

/// Every package `package` depends on for its library (normal edges, not dev or build),
/// itself included.
fn dependencies(package: &str) -> Vec<String> {
    let out = Command::new(env!("CARGO"))
        .current_dir(repo())
        .args(["tree", "--offline", "--locked", "-e", "normal"])
        .args(["--prefix", "none", "-p", package])
        .output()
        .expect("cargo tree runs");
    assert!(
        out.status.success(),
        "cargo tree -p {package}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut names: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_string)
        .collect();
    names.sort();
    names.dedup();
    names
}

#[test]
fn the_core_reaches_no_transport_crate() {
    let deps = dependencies("tokengate-core");
    assert!(
        deps.iter().any(|d| d == "http"),
        "the core speaks `http` types: {deps:?}"
    );
    for transport in [
        "axum",
        "tonic",
        "tonic-health",
        "envoy-types",
        "prost",
        "tokengate",
    ] {
        assert!(
            !deps.iter().any(|d| d == transport),
            "tokengate-core depends on {transport} (directly or through another crate)"
        );
    }
}

#[test]
fn the_server_does_not_depend_on_the_tools() {
    let deps = dependencies("tokengate");
    assert!(deps.iter().any(|d| d == "tokengate-core"));
    assert!(
        !deps.iter().any(|d| d == "tokengate-tools"),
        "the server's library or binary depends on the load tools"
    );
}

#[test]
fn the_server_carries_one_crypto_backend() {
    let deps = dependencies("tokengate");
    assert!(
        deps.iter().any(|d| d == "aws-lc-rs"),
        "jsonwebtoken's backend"
    );
    assert!(
        !deps.iter().any(|d| d == "ring"),
        "ring is back in the server's graph: rustls (reqwest, redis) must use aws-lc-rs \
         through tokengate_core::crypto, not a second backend"
    );
}
