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

use super::{parse_event, RedisTarget};
use crate::revocation::events::Signal;

pub async fn run(
    target: RedisTarget,
    redacted: String,
    channel: String,
    tx: broadcast::Sender<Signal>,
    shutdown: CancellationToken,
) {
    let mut backoff = Duration::from_millis(50);
    let mut node = 0usize;
    let mut ever_connected = false;
    loop {
        match subscribe(&target, node, &channel).await {
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
                tracing::debug!(store = %redacted, error = %e, "cannot subscribe to invalidation events yet");
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
/// will do: rotate through the seeds on failure.
async fn subscribe(
    target: &RedisTarget,
    node: usize,
    channel: &str,
) -> RedisResult<redis::aio::PubSub> {
    let client = match target {
        RedisTarget::Standalone(info) => redis::Client::open(info.clone())?,
        RedisTarget::Cluster(nodes) => redis::Client::open(nodes[node % nodes.len()].clone())?,
        RedisTarget::Sentinel { .. } => sentinel_master(target).await?,
    };
    let mut pubsub = tokio::time::timeout(Duration::from_secs(1), client.get_async_pubsub())
        .await
        .map_err(|_| redis::RedisError::from((redis::ErrorKind::Io, "connect timed out")))??;
    pubsub.subscribe(channel).await?;
    Ok(pubsub)
}

/// Asks the Sentinels for the current master and returns a client for it.
pub async fn sentinel_master(target: &RedisTarget) -> RedisResult<redis::Client> {
    let RedisTarget::Sentinel {
        sentinels,
        service,
        node,
        tls,
    } = target
    else {
        return Err((redis::ErrorKind::Client, "not a sentinel target").into());
    };
    let mut info = redis::sentinel::SentinelNodeConnectionInfo::default()
        .set_redis_connection_info(node.clone());
    if *tls {
        info = info.set_tls_mode(redis::TlsMode::Secure);
    }
    let mut client = redis::sentinel::SentinelClient::build(
        sentinels.clone(),
        service.clone(),
        Some(info),
        redis::sentinel::SentinelServerType::Master,
    )?;
    client.async_get_client().await
}
