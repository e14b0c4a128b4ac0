//! A listener's socket, plaintext or TLS.
//!
//! The TLS handshake runs inside the connection's first reads and writes rather than
//! before the connection is handed on: the accept loop never waits for one client's
//! handshake, and the deadlines that already bound a connection's start (the HTTP
//! watchdog's header timeout, the gRPC handshake timeout) bound the TLS handshake too,
//! so a client that opens a TLS connection and stops holds nothing longer than a
//! plaintext one could.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;
use tokio_rustls::Accept;

use crate::tls::ListenerTls;

pub(crate) enum Stream {
    Plain(TcpStream),
    Accepting(Box<Accept<TcpStream>>, Arc<ListenerTls>),
    Tls(Box<TlsStream<TcpStream>>),
    /// The handshake failed; the socket is gone.
    Failed,
}

impl Stream {
    pub(crate) fn new(tcp: TcpStream, tls: Option<&Arc<ListenerTls>>) -> Self {
        match tls {
            None => Stream::Plain(tcp),
            Some(t) => Stream::Accepting(Box::new(t.acceptor().accept(tcp)), t.clone()),
        }
    }

    /// Drives the TLS handshake; ready once there is a stream to read and write.
    fn poll_handshake(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if let Stream::Accepting(accept, tls) = self {
            match ready!(Pin::new(accept.as_mut()).poll(cx)) {
                Ok(s) => *self = Stream::Tls(Box::new(s)),
                Err(e) => {
                    tls.handshake_failed(&e);
                    *self = Stream::Failed;
                    return Poll::Ready(Err(e));
                }
            }
        }
        match self {
            Stream::Failed => Poll::Ready(Err(io::ErrorKind::NotConnected.into())),
            _ => Poll::Ready(Ok(())),
        }
    }

    pub(crate) fn is_write_vectored(&self) -> bool {
        match self {
            Stream::Plain(s) => s.is_write_vectored(),
            Stream::Tls(s) => s.is_write_vectored(),
            _ => false,
        }
    }
}

/// The open stream, once the handshake is done.
macro_rules! open {
    ($self:ident, $cx:ident, $s:ident => $e:expr) => {{
        let this = $self.get_mut();
        ready!(this.poll_handshake($cx))?;
        match this {
            Stream::Plain($s) => $e,
            Stream::Tls($s) => $e,
            _ => Poll::Ready(Err(io::ErrorKind::NotConnected.into())),
        }
    }};
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        open!(self, cx, s => Pin::new(s).poll_read(cx, buf))
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        open!(self, cx, s => Pin::new(s).poll_write(cx, buf))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        open!(self, cx, s => Pin::new(s).poll_write_vectored(cx, bufs))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        open!(self, cx, s => Pin::new(s).poll_flush(cx))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        match this {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
            // nothing was said yet: closing is dropping
            Stream::Accepting(..) | Stream::Failed => Poll::Ready(Ok(())),
        }
    }
}
