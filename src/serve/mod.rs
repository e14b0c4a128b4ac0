//! The listeners' accept loops and the limits that keep slow or greedy clients from
//! holding tokengate's connections (issue 13).
//!
//! `axum::serve` and tonic's default incoming stream accept every connection and keep it
//! for as long as the client likes, so a client that opens connections and sends half a
//! request could hold them for ever at no cost. Here every HTTP connection has a watchdog
//! (see [`conn`]) and every request a deadline (see [`request`]), and every listener a
//! cap on open connections, so that what a hostile client can hold is bounded in time and
//! in number. Beyond the cap a new connection is accepted and closed at once: a client
//! (or Envoy) learns immediately that it should go elsewhere, instead of waiting in the
//! kernel's backlog behind the connections that exhausted the cap.

mod conn;
mod grpc;
mod request;
mod stream;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::TokioExecutor;
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::config::HttpLimits;
use crate::tls::ListenerTls;

pub use grpc::{server as grpc_server, Incoming as GrpcIncoming};

/// Serves `router` on `listener` until `shutdown` is cancelled, then stops accepting,
/// lets requests in flight finish and returns when every connection has closed.
/// `name` only labels log events; with `tls` every connection is TLS.
pub async fn http(
    listener: TcpListener,
    router: Router,
    limits: &HttpLimits,
    name: &'static str,
    tls: Option<Arc<ListenerTls>>,
    shutdown: CancellationToken,
) {
    let max = limits.max_connections;
    let timeouts = conn::Timeouts::from(limits);
    let slots = Arc::new(Semaphore::new(max));
    // No HTTP/1 timer: hyper would then enforce its own 30 s header timeout, which also
    // runs while a kept-alive connection waits and would cut it short of
    // `idle_timeout_seconds`. The connection watchdog enforces both instead.
    let builder = auto::Builder::new(TokioExecutor::new());
    let mut refusals = Refusals::new(name, max);
    loop {
        let tcp = tokio::select! {
            biased;
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok((tcp, _peer)) => tcp,
                Err(e) => {
                    accept_failed(name, &e).await;
                    continue;
                }
            },
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            refusals.refused();
            drop(tcp);
            continue;
        };
        // no Nagle delay on small answers (as for gRPC)
        let _ = tcp.set_nodelay(true);
        tokio::spawn(conn::serve(
            tcp,
            tls.clone(),
            router.clone(),
            builder.clone(),
            timeouts,
            shutdown.clone(),
            slot,
        ));
    }
    // Close the listening socket now: the kernel stops completing handshakes for a
    // server that will never accept them.
    drop(listener);
    // Drained when every connection has given its slot back.
    let all = u32::try_from(max).unwrap_or(u32::MAX);
    let _ = slots.acquire_many(all).await;
}

/// Errors of `accept` that concern one connection only; others (EMFILE, ENOBUFS) would
/// repeat at once, so the loop pauses instead of spinning (as `axum::serve` does).
async fn accept_failed(name: &'static str, e: &std::io::Error) {
    use std::io::ErrorKind::*;
    if !matches!(
        e.kind(),
        ConnectionRefused | ConnectionAborted | ConnectionReset
    ) {
        tracing::error!(listener = name, error = %e, "accept failed; pausing 1 s");
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Warns about refused connections at most every [`Refusals::EVERY`], with the count, so
/// that a flood cannot flood the log too.
struct Refusals {
    name: &'static str,
    max: usize,
    count: u64,
    last: Option<Instant>,
}

impl Refusals {
    const EVERY: Duration = Duration::from_secs(10);

    fn new(name: &'static str, max: usize) -> Self {
        Self {
            name,
            max,
            count: 0,
            last: None,
        }
    }

    fn refused(&mut self) {
        self.count += 1;
        if self.last.is_none_or(|t| t.elapsed() >= Self::EVERY) {
            tracing::warn!(
                listener = self.name,
                max_connections = self.max,
                refused = self.count,
                "connection limit reached: new connections are closed at once"
            );
            self.last = Some(Instant::now());
            self.count = 0;
        }
    }
}
