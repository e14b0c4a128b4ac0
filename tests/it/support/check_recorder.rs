//! A recording ext_authz gRPC server that allows everything: only to pin down what
//! Envoy itself puts in a Check call (tests/it/tracing.rs: where the W3C trace context
//! travels), which tokengate's own server does not expose. Real tonic over a loopback
//! socket; never a stand-in for tokengate's decisions.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use envoy_types::ext_authz::v3::pb::{CheckRequest, CheckResponse};
use envoy_types::pb::envoy::service::auth::v3::authorization_server::{
    Authorization, AuthorizationServer,
};

/// One Check call as received.
#[derive(Debug, Clone)]
pub struct RecordedCheck {
    /// The gRPC call's own metadata (its HTTP/2 request headers), lower-case names.
    pub metadata: Vec<(String, String)>,
    /// The CheckRequest's `attributes.request.http.headers`: the client request's.
    pub http_headers: std::collections::HashMap<String, String>,
}

impl RecordedCheck {
    pub fn metadata(&self, name: &str) -> Option<&str> {
        self.metadata
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Default, Clone)]
struct Recorder(Arc<Mutex<Vec<RecordedCheck>>>);

#[tonic::async_trait]
impl Authorization for Recorder {
    async fn check(
        &self,
        request: tonic::Request<CheckRequest>,
    ) -> Result<tonic::Response<CheckResponse>, tonic::Status> {
        let metadata = request
            .metadata()
            .clone()
            .into_headers()
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_string(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect();
        let http_headers = request
            .into_inner()
            .attributes
            .and_then(|a| a.request)
            .and_then(|r| r.http)
            .map(|h| h.headers)
            .unwrap_or_default();
        self.0.lock().unwrap().push(RecordedCheck {
            metadata,
            http_headers,
        });
        Ok(tonic::Response::new(CheckResponse {
            status: Some(Default::default()),
            ..Default::default()
        }))
    }
}

/// The recording server, stopped on drop.
pub struct CheckRecorder {
    pub addr: SocketAddr,
    calls: Arc<Mutex<Vec<RecordedCheck>>>,
    task: tokio::task::JoinHandle<()>,
}

impl CheckRecorder {
    pub async fn start() -> CheckRecorder {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("recorder binds");
        let addr = listener.local_addr().expect("recorder address");
        let recorder = Recorder::default();
        let calls = recorder.0.clone();
        let task = tokio::spawn(async move {
            let _ = tonic::transport::Server::builder()
                .add_service(AuthorizationServer::new(recorder))
                .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener))
                .await;
        });
        CheckRecorder { addr, calls, task }
    }

    pub fn calls(&self) -> Vec<RecordedCheck> {
        self.calls.lock().unwrap().clone()
    }
}

impl Drop for CheckRecorder {
    fn drop(&mut self) {
        self.task.abort();
    }
}
