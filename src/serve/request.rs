//! Per-request limits: a deadline from the complete head to the response, and a bound on
//! the wait between two reads of the body.
//!
//! A client that sends its head and then trickles the body one byte at a time stays
//! within any per-read timeout; only a deadline on the whole request bounds it. The
//! per-read timeout still matters: it frees a stalled request long before the deadline.
//! Both answer 408 and close an HTTP/1 connection, since the rest of a body that was
//! not read cannot be told from the next request.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{header, HeaderValue, Request, Response, StatusCode};
use axum::response::IntoResponse;
use axum::Router;
use http_body::{Frame, SizeHint};
use hyper::body::Incoming;
use tokio::time::{Instant, Sleep};
use tower_service::Service;

use super::conn::{Activity, InFlight, Timeouts};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The router behind the request limits, one per connection.
#[derive(Clone)]
pub(super) struct Limited {
    router: Router,
    activity: Arc<Activity>,
    body: Duration,
    request: Duration,
}

impl Limited {
    pub(super) fn new(router: Router, activity: Arc<Activity>, t: Timeouts) -> Self {
        Self {
            router,
            activity,
            body: t.body,
            request: t.request,
        }
    }
}

impl Service<Request<Incoming>> for Limited {
    type Response = Response<Tracked>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<Incoming>) -> Self::Future {
        let in_flight = self.activity.request_started();
        let h2 = self.activity.is_h2();
        // Bodiless requests (every check) need no timer.
        let (req, stalled) = if http_body::Body::is_end_stream(req.body()) {
            (req.map(Body::new), None)
        } else {
            let stalled = Arc::new(AtomicBool::new(false));
            let (parts, body) = req.into_parts();
            let body = Timed::new(body, self.body, stalled.clone());
            (Request::from_parts(parts, Body::new(body)), Some(stalled))
        };
        let handled = self.router.call(req);
        let deadline = self.request;
        Box::pin(async move {
            let response = match tokio::time::timeout(deadline, handled).await {
                Ok(Ok(r)) if !stalled.is_some_and(|s| s.load(SeqCst)) => r,
                Ok(Err(never)) => match never {},
                _ => timed_out(h2),
            };
            Ok(response.map(|body| Tracked {
                body,
                _in_flight: in_flight,
            }))
        })
    }
}

/// 408 with a JSON body like every other error; HTTP/1 closes after it (HTTP/2 ends
/// only the stream, and forbids the header).
fn timed_out(h2: bool) -> Response<Body> {
    let body = serde_json::json!({
        "error": "request_timeout",
        "message": "the request was not received in time",
    });
    let mut response = (
        StatusCode::REQUEST_TIMEOUT,
        crate::http::json_body(body.to_string()),
    )
        .into_response();
    if !h2 {
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    response
}

/// The response body, holding the request's place in flight until hyper has sent it.
pub(super) struct Tracked {
    body: Body,
    _in_flight: InFlight,
}

impl http_body::Body for Tracked {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.get_mut().body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// The request body with the wait for each next frame bounded.
struct Timed {
    inner: Incoming,
    gap: Duration,
    timer: Option<Pin<Box<Sleep>>>,
    waiting: bool,
    stalled: Arc<AtomicBool>,
}

#[derive(Debug, thiserror::Error)]
#[error("the request body stalled")]
struct Stalled;

impl Timed {
    fn new(inner: Incoming, gap: Duration, stalled: Arc<AtomicBool>) -> Self {
        Timed {
            inner,
            gap,
            timer: None,
            waiting: false,
            stalled,
        }
    }
}

impl http_body::Body for Timed {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        if let Poll::Ready(frame) = Pin::new(&mut this.inner).poll_frame(cx) {
            this.waiting = false;
            return Poll::Ready(frame.map(|f| f.map_err(Into::into)));
        }
        if this.stalled.load(SeqCst) {
            return Poll::Ready(Some(Err(Stalled.into())));
        }
        let gap = this.gap;
        let timer = this
            .timer
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(gap)));
        if !this.waiting {
            timer.as_mut().reset(Instant::now() + gap);
            this.waiting = true;
        }
        if timer.as_mut().poll(cx).is_ready() {
            this.stalled.store(true, SeqCst);
            return Poll::Ready(Some(Err(Stalled.into())));
        }
        Poll::Pending
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
