//! The invalidation subscriber: one pub/sub connection per replica on `{prefix}events`.
//! Every message becomes a [`Signal::Event`] (or [`Signal::Unscoped`] when an older
//! replica sent it); a dropped connection becomes a
//! [`Signal::Gap`] (the cache forgets its "not revoked" answers), and every successful
//! subscription a [`Signal::Up`] (after a gap the cache forgets once more, since events
//! published in between were lost).

use std::time::Duration;

use redis::RedisResult;
use tokio::sync::broadcast;
use tokio_stream::StreamExt;
use tokio_util::sync::CancellationToken;

use super::{parse_event, Endpoint, RedisTarget};
use crate::revocation::events::Signal;

pub async fn run(
    endpoint: Endpoint,
    redacted: String,
    channel: String,
    tx: broadcast::Sender<Signal>,
    shutdown: CancellationToken,
) {
    let mut backoff = Duration::from_millis(50);
    let mut node = 0usize;
    let mut ever_connected = false;
    loop {
        match subscribe(&endpoint, node, &channel).await {
            Ok(pubsub) => {
                backoff = Duration::from_millis(50);
                if ever_connected {
                    tracing::info!(store = %redacted, "invalidation subscription restored");
                }
                ever_connected = true;
                let _ = tx.send(Signal::Up);
                let mut stream = pubsub.into_on_message();
                loop {
                    tokio::select! {
                        _ = shutdown.cancelled() => return,
                        msg = stream.next() => match msg {
                            Some(msg) => {
                                let _ = tx.send(parse_event(msg.get_payload_bytes()));
                            }
                            None => break,
                        }
                    }
                }
                tracing::warn!(store = %redacted, "invalidation subscription lost; cache falls back to its TTL");
                let _ = tx.send(Signal::Gap);
            }
            Err(e) => {
                tracing::debug!(store = %redacted, error = %super::dial::explain(&e), "cannot subscribe to invalidation events yet");
                node += 1;
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(Duration::from_secs(1));
    }
}

/// Opens a pub/sub connection. In a Cluster, PUBLISH reaches every node, so any node
/// will do: rotate through the seeds on failure. With Sentinel, the current master:
/// after a failover the old connection drops (or its node, demoted, still relays what
/// the new master publishes, since PUBLISH is replicated), and this asks the Sentinels
/// again.
async fn subscribe(
    endpoint: &Endpoint,
    node: usize,
    channel: &str,
) -> RedisResult<redis::aio::PubSub> {
    let client = match &endpoint.target {
        RedisTarget::Standalone(info) => endpoint.client(info.clone())?,
        RedisTarget::Cluster(nodes) => endpoint.client(nodes[node % nodes.len()].clone())?,
        RedisTarget::Sentinel { .. } => endpoint.sentinel_master().await?,
    };
    let mut pubsub = tokio::time::timeout(Duration::from_secs(1), client.get_async_pubsub())
        .await
        .map_err(|_| redis::RedisError::from((redis::ErrorKind::Io, "connect timed out")))??;
    pubsub.subscribe(channel).await?;
    Ok(pubsub)
}
