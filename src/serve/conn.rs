//! One HTTP connection and its watchdog.
//!
//! hyper bounds nothing that matters here by itself: its HTTP/1 header timeout also runs
//! while a kept-alive connection waits (so it cannot be both nginx's
//! `client_header_timeout` and `keepalive_timeout`), it does not run while hyper-util is
//! still sniffing for the HTTP/2 preface, and HTTP/2 has none at all. So the connection
//! records when requests start and end and when the first byte of the next one arrives
//! ([`Activity`]), and the task serving it closes it when, with no request in flight:
//! - the first request's head is not complete `header` after the connection opened;
//! - a later request's head is not complete `header` after its first byte; or
//! - no byte of a next request came `idle` after the last response (on HTTP/2, whose
//!   control frames cannot be told from a next request by their bytes: no next
//!   request came `idle` after the last response);
//!
//! and, with requests in flight, when none has started or finished for `request +
//! idle`: each request has its own deadline, so this is a client that does not take its
//! responses (a greedy reader pipelining requests, or an HTTP/2 peer granting no flow
//! control window), which would otherwise hold the connection with a write that never
//! completes.
//!
//! Closing is graceful where the protocol allows it: HTTP/2 gets GOAWAY and a moment to
//! take it; an HTTP/1 connection with nothing in flight has nothing to lose and is
//! dropped, as is a connection stuck on responses it is not taking. The same path serves
//! shutdown, so a half-sent request head cannot hold the drain up either.

use std::future::{poll_fn, Future};
use std::io;
use std::pin::{pin, Pin};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::{Notify, OwnedSemaphorePermit};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::request::Limited;
use super::stream::Stream;
use crate::config::HttpLimits;
use crate::tls::ListenerTls;

/// How long an HTTP/2 connection told to go away (GOAWAY) may take to close once nothing
/// is in flight: one round trip for the client to acknowledge, with room to spare.
const GOAWAY_GRACE: Duration = Duration::from_secs(1);

const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// `first_byte` when no byte of a next request has arrived.
const NONE: u64 = u64::MAX;

/// The HTTP limits as durations.
#[derive(Debug, Clone, Copy)]
pub(super) struct Timeouts {
    pub header: Duration,
    pub body: Duration,
    pub request: Duration,
    pub idle: Duration,
}

impl From<&HttpLimits> for Timeouts {
    fn from(l: &HttpLimits) -> Self {
        Self {
            header: Duration::from_secs(l.header_timeout_seconds),
            body: Duration::from_secs(l.body_timeout_seconds),
            request: Duration::from_secs(l.request_timeout_seconds),
            idle: Duration::from_secs(l.idle_timeout_seconds),
        }
    }
}

/// What the watchdog needs to know about a connection, written by the socket reader and
/// by each request. Times are microseconds since `opened`.
pub(super) struct Activity {
    opened: Instant,
    in_flight: AtomicUsize,
    served: AtomicBool,
    /// When a request last started or finished.
    progress: AtomicU64,
    first_byte: AtomicU64,
    h2: AtomicBool,
    /// Wakes the connection task when an HTTP/2 request ends on another task; HTTP/1
    /// requests end inside the connection task, which then looks anyway.
    ended: Notify,
}

impl Activity {
    fn new() -> Self {
        Self {
            opened: Instant::now(),
            in_flight: AtomicUsize::new(0),
            served: AtomicBool::new(false),
            progress: AtomicU64::new(0),
            first_byte: AtomicU64::new(NONE),
            h2: AtomicBool::new(false),
            ended: Notify::new(),
        }
    }

    fn now(&self) -> u64 {
        u64::try_from(self.opened.elapsed().as_micros()).unwrap_or(NONE - 1)
    }

    fn at(&self, micros: u64) -> Instant {
        self.opened + Duration::from_micros(micros)
    }

    pub(super) fn is_h2(&self) -> bool {
        self.h2.load(SeqCst)
    }

    fn busy(&self) -> bool {
        self.in_flight.load(SeqCst) > 0
    }

    /// Bytes arrived from the client. On HTTP/2 they may be PINGs or SETTINGS rather than
    /// a next request, so only the idle timeout applies between requests there.
    fn read(&self) {
        if !self.busy() && !self.is_h2() && self.first_byte.load(SeqCst) == NONE {
            self.first_byte.store(self.now(), SeqCst);
        }
    }

    /// A request head is complete and goes to the router; the connection is busy until
    /// the returned guard is dropped with the response body.
    pub(super) fn request_started(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, SeqCst);
        self.progress.store(self.now(), SeqCst);
        self.served.store(true, SeqCst);
        self.first_byte.store(NONE, SeqCst);
        InFlight(self.clone())
    }

    /// When the connection is to be closed if nothing changes.
    fn deadline(&self, t: &Timeouts) -> Instant {
        if self.busy() {
            return self.at(self.progress.load(SeqCst)) + t.request + t.idle;
        }
        if !self.served.load(SeqCst) {
            return self.opened + t.header;
        }
        match self.first_byte.load(SeqCst) {
            NONE => self.at(self.progress.load(SeqCst)) + t.idle,
            first => self.at(first) + t.header,
        }
    }
}

/// A request in flight, from its head to the end of its response body.
pub(super) struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        let a = &self.0;
        a.progress.store(a.now(), SeqCst);
        a.first_byte.store(NONE, SeqCst);
        if a.in_flight.fetch_sub(1, SeqCst) == 1 && a.is_h2() {
            a.ended.notify_one();
        }
    }
}

/// The socket, reporting reads to [`Activity`] and telling HTTP/2 prior knowledge from
/// HTTP/1 by the first bytes (hyper-util decides the same way, but does not say).
struct Watched {
    tcp: Stream,
    activity: Arc<Activity>,
    /// Preface bytes matched so far; `usize::MAX` once decided.
    preface: usize,
}

impl Watched {
    fn saw(&mut self, bytes: &[u8]) {
        if self.preface < H2_PREFACE.len() {
            let want = &H2_PREFACE[self.preface..];
            let n = want.len().min(bytes.len());
            if bytes[..n] != want[..n] {
                self.preface = usize::MAX;
            } else {
                self.preface += n;
                if self.preface == H2_PREFACE.len() {
                    self.activity.h2.store(true, SeqCst);
                    self.preface = usize::MAX;
                }
            }
        }
        self.activity.read();
    }
}

impl AsyncRead for Watched {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.tcp).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = polled {
            if buf.filled().len() > before {
                let filled = buf.filled();
                this.saw(&filled[before..]);
            }
        }
        polled
    }
}

/// Writes go straight to the socket.
impl AsyncWrite for Watched {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().tcp).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().tcp).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.tcp.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().tcp).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().tcp).poll_shutdown(cx)
    }
}

/// Serves one connection until it closes, the watchdog closes it, or shutdown has
/// drained it. The slot is the connection's place under the listener's cap.
pub(super) async fn serve(
    tcp: TcpStream,
    tls: Option<Arc<ListenerTls>>,
    router: Router,
    builder: auto::Builder<TokioExecutor>,
    t: Timeouts,
    shutdown: CancellationToken,
    _slot: OwnedSemaphorePermit,
) {
    let activity = Arc::new(Activity::new());
    let io = TokioIo::new(Watched {
        tcp: Stream::new(tcp, tls.as_ref()),
        activity: activity.clone(),
        preface: 0,
    });
    let service = TowerToHyperService::new(Limited::new(router, activity.clone(), t));
    let mut conn = pin!(builder.serve_connection(io, service));
    let mut cancelled = pin!(shutdown.cancelled());
    let mut ended = pin!(activity.ended.notified());
    let mut timer = pin!(tokio::time::sleep(t.idle));
    // Set once the connection is being closed: from then on it is dropped when nothing
    // is in flight at this instant, or a request deadline after it at the latest.
    let mut closing: Option<Instant> = None;

    poll_fn(|cx| loop {
        if let Poll::Ready(result) = conn.as_mut().poll(cx) {
            if let Err(e) = result {
                tracing::debug!(error = %e, "HTTP connection ended with an error");
            }
            return Poll::Ready(());
        }
        if ended.as_mut().poll(cx).is_ready() {
            ended.set(activity.ended.notified());
            continue;
        }
        let now = Instant::now();
        let wake = match closing {
            None => {
                let stop = cancelled.as_mut().poll(cx).is_ready();
                let at = activity.deadline(&t);
                if !stop && at > now {
                    at
                } else if !stop && activity.busy() {
                    // stuck on responses the client does not take
                    return Poll::Ready(());
                } else {
                    // Timed out, or shutting down: let hyper close what it can close
                    // cleanly, and look again.
                    conn.as_mut().graceful_shutdown();
                    let grace = if activity.is_h2() {
                        GOAWAY_GRACE
                    } else {
                        Duration::ZERO
                    };
                    closing = Some(now + grace);
                    continue;
                }
            }
            Some(at) => {
                let until = if activity.busy() { at + t.request } else { at };
                if until <= now {
                    return Poll::Ready(());
                }
                until
            }
        };
        // The deadline moves later with every request. Rather than follow each move,
        // the timer is moved only when the deadline comes before it, or once it has
        // fired: it is then armed again for the deadline as it now is.
        if wake < timer.deadline() || timer.deadline() <= now {
            timer.as_mut().reset(wake);
        }
        if timer.as_mut().poll(cx).is_ready() {
            continue;
        }
        return Poll::Pending;
    })
    .await;
}
