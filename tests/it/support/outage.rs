//! Store outages as the tests play them, written once: the fail-closed answer an outage
//! must get, and the wait for tokengate to recover by itself (Redis is killed and
//! restarted from async tests with `RedisServer::kill_now` / `restart_now`).
//!
//! Recovery is asserted to happen within [`RECOVERY`], never to be quick: how fast a
//! debug build reconnects on a loaded 2-core machine is not a behaviour, and a test that
//! fails on it fails for luck. How long an outage answer takes is compared with a
//! baseline measured in the same test (tests/it/faults.rs), not with a fixed bound.

use std::time::Duration;

use envoy_types::pb::envoy::service::auth::v3::authorization_client::AuthorizationClient;
use serde_json::json;
use tonic::transport::Channel;

use super::{check_token, token, wait_for, Answer};

/// How long tokengate may take to notice that a store is back before a test calls the
/// recovery lost: generous on purpose (see the module doc).
pub const RECOVERY: Duration = Duration::from_secs(30);

/// Asserts that `a` is the fail-closed answer to a store outage: gRPC UNAVAILABLE with
/// HTTP 503 and reason `store_unavailable`, a `retry-after`, and no challenge (the token
/// is not bad, so clients must not throw it away).
pub fn assert_store_unavailable(a: &Answer) {
    assert_eq!(a.reason().as_deref(), Some("store_unavailable"), "{a:?}");
    assert_eq!((a.grpc_code, a.http_status), (14, Some(503)), "{a:?}");
    assert!(a.header("retry-after").is_some(), "{a:?}");
    assert!(
        a.header("www-authenticate").is_none(),
        "an outage is not a bad token: {a:?}"
    );
}

/// Waits (up to [`RECOVERY`]) until a token never seen before — a revocation-cache miss,
/// so a store call — is allowed through `client`: the store answers again.
pub async fn wait_fresh_checks_allowed(client: &AuthorizationClient<Channel>, what: &str) {
    wait_for(what, RECOVERY, || {
        let mut c = client.clone();
        async move {
            check_token(&mut c, &token("ec256", "alice", json!({})))
                .await
                .allowed()
        }
    })
    .await;
}
