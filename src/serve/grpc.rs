//! The gRPC listener's limits, within what tonic's server lets a caller set.
//!
//! tonic owns the connections once accepted, so what it cannot do is done on the way in:
//! [`Incoming`] caps open connections and gives each a handshake deadline. The deadline
//! matters because hyper's HTTP/2 server waits for the client preface without one, and
//! its keep-alive PINGs only start after the handshake: without it a socket that sends
//! nothing would hold a slot for ever, and the cap would turn that into a denial of
//! service. After the handshake a peer that stops answering PINGs is closed by hyper.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Sleep;
use tokio_stream::Stream;
use tonic::transport::server::{Connected, TcpConnectInfo};

use super::stream::Stream as Socket;
use super::Refusals;
use crate::config::GrpcLimits;
use crate::tls::ListenerTls;

/// The client preface (24 bytes) and the header of its first frame (9, SETTINGS): what a
/// client must have sent for the handshake to count as begun in earnest.
const HANDSHAKE_BYTES: usize = 24 + 9;

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

/// A tonic server builder with the configured HTTP/2 limits.
pub fn server(limits: &GrpcLimits) -> tonic::transport::Server {
    let server = tonic::transport::Server::builder()
        .http2_keepalive_interval(Some(secs(limits.keepalive_interval_seconds)))
        .http2_keepalive_timeout(Some(secs(limits.keepalive_timeout_seconds)))
        .timeout(secs(limits.request_timeout_seconds))
        .max_concurrent_streams(limits.max_concurrent_streams)
        .http2_max_pending_accept_reset_streams(Some(limits.max_pending_accept_reset_streams));
    match limits.max_connection_age_seconds {
        // No max_connection_age_grace: tonic 0.14 then skips the GOAWAY and closes at
        // age + grace without warning. Calls in flight at GOAWAY are bounded anyway, by
        // the request timeout.
        Some(age) => server.max_connection_age(secs(age)),
        None => server,
    }
}

/// The gRPC listener's accepted connections, for `serve_with_incoming_shutdown`.
pub struct Incoming {
    listener: TcpListener,
    tls: Option<Arc<ListenerTls>>,
    slots: Arc<Semaphore>,
    handshake: Duration,
    refusals: Refusals,
    pause: Option<Pin<Box<Sleep>>>,
}

impl Incoming {
    pub fn new(listener: TcpListener, limits: &GrpcLimits, tls: Option<Arc<ListenerTls>>) -> Self {
        Self {
            listener,
            tls,
            slots: Arc::new(Semaphore::new(limits.max_connections)),
            handshake: secs(limits.handshake_timeout_seconds),
            refusals: Refusals::new("grpc", limits.max_connections),
            pause: None,
        }
    }
}

impl Stream for Incoming {
    type Item = io::Result<Conn>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        loop {
            if let Some(pause) = &mut this.pause {
                if pause.as_mut().poll(cx).is_pending() {
                    return Poll::Pending;
                }
                this.pause = None;
            }
            let tcp = match this.listener.poll_accept(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Ok((tcp, _peer))) => tcp,
                Poll::Ready(Err(e)) => {
                    use std::io::ErrorKind::*;
                    if !matches!(
                        e.kind(),
                        ConnectionRefused | ConnectionAborted | ConnectionReset
                    ) {
                        // EMFILE and the like would repeat at once: pause, as for HTTP
                        tracing::error!(listener = "grpc", error = %e, "accept failed; pausing 1 s");
                        this.pause = Some(Box::pin(tokio::time::sleep(Duration::from_secs(1))));
                    }
                    continue;
                }
            };
            let Ok(slot) = this.slots.clone().try_acquire_owned() else {
                this.refusals.refused();
                drop(tcp);
                continue;
            };
            // TCP_NODELAY: a Check answer ends with a small trailers frame; without it
            // that frame waits for the client's delayed ACK (~40 ms per request when one
            // request is in flight).
            let _ = tcp.set_nodelay(true);
            let info = tcp.connect_info();
            return Poll::Ready(Some(Ok(Conn {
                tcp: Socket::new(tcp, this.tls.as_ref()),
                info,
                handshake: Some(Box::pin(tokio::time::sleep(this.handshake))),
                seen: 0,
                _slot: slot,
            })));
        }
    }
}

/// An accepted gRPC connection: its slot under the cap, and its handshake deadline
/// (which, on a TLS listener, bounds the TLS handshake and the HTTP/2 one together).
pub struct Conn {
    tcp: Socket,
    info: TcpConnectInfo,
    /// Running until the client has sent [`HANDSHAKE_BYTES`].
    handshake: Option<Pin<Box<Sleep>>>,
    seen: usize,
    _slot: OwnedSemaphorePermit,
}

impl Connected for Conn {
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> TcpConnectInfo {
        self.info.clone()
    }
}

impl Conn {
    /// Whether the handshake deadline has passed (registering for its wake-up if not).
    /// Looked at whenever the socket is pending in either direction: before the TLS
    /// handshake is done, hyper's first move is to write its SETTINGS, so a client that
    /// stalls there leaves hyper waiting on a write, not a read.
    fn late(&mut self, cx: &mut Context<'_>) -> bool {
        self.handshake
            .as_mut()
            .is_some_and(|deadline| deadline.as_mut().poll(cx).is_ready())
    }

    fn timed_out<T>() -> Poll<io::Result<T>> {
        Poll::Ready(Err(io::Error::new(
            io::ErrorKind::TimedOut,
            "no TLS and HTTP/2 handshake within grpc_limits.handshake_timeout_seconds",
        )))
    }

    /// `polled`, unless it is pending past the handshake deadline.
    fn bounded<T>(
        &mut self,
        cx: &mut Context<'_>,
        polled: Poll<io::Result<T>>,
    ) -> Poll<io::Result<T>> {
        if polled.is_pending() && self.late(cx) {
            return Self::timed_out();
        }
        polled
    }
}

impl AsyncRead for Conn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.tcp).poll_read(cx, buf);
        if this.handshake.is_some() {
            if let Poll::Ready(Ok(())) = polled {
                this.seen += buf.filled().len() - before;
                if this.seen >= HANDSHAKE_BYTES {
                    this.handshake = None;
                }
            }
            return this.bounded(cx, polled);
        }
        polled
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.tcp).poll_write(cx, buf);
        this.bounded(cx, polled)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.tcp).poll_write_vectored(cx, bufs);
        this.bounded(cx, polled)
    }

    fn is_write_vectored(&self) -> bool {
        self.tcp.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.tcp).poll_flush(cx);
        this.bounded(cx, polled)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().tcp).poll_shutdown(cx)
    }
}
