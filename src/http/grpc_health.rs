//! gRPC health (`grpc.health.v1`) that follows readiness. Envoy health-checks its
//! ext_authz cluster over gRPC; a replica that says SERVING while it has no keys or no
//! store would be sent checks it can only refuse. So the overall status ("") and the
//! `envoy.service.auth.v3.Authorization` service are NOT_SERVING whenever `/readyz`
//! would answer 503: every readiness verdict is published here, and a small task makes
//! one every [`POLL`] so that the status moves even when nobody probes `/readyz`.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;
use tonic::server::NamedService;
use tonic_health::server::HealthReporter;
use tonic_health::ServingStatus;

use super::health::Readiness;
use crate::decision::Engine;

/// How often readiness is re-evaluated for gRPC health.
pub const POLL: Duration = Duration::from_secs(1);

/// The statuses this replica reports.
const SERVICES: [&str; 2] = ["", <crate::grpc::AuthzService as NamedService>::NAME];

/// Publishes readiness verdicts to a health reporter, only when they change (each
/// change wakes every `Watch` stream).
pub struct GrpcHealth {
    reporter: HealthReporter,
    last: Mutex<Option<bool>>,
}

impl GrpcHealth {
    pub(super) async fn publish(&self, ready: bool) {
        let mut last = self.last.lock().await;
        if *last == Some(ready) {
            return;
        }
        let status = if ready {
            ServingStatus::Serving
        } else {
            ServingStatus::NotServing
        };
        for service in SERVICES {
            self.reporter.set_service_status(service, status).await;
        }
        *last = Some(ready);
    }
}

/// Makes `reporter` follow readiness: NOT_SERVING at once (nothing is known yet), then
/// each verdict, and NOT_SERVING again at shutdown.
pub async fn follow(
    reporter: HealthReporter,
    readiness: Arc<Readiness>,
    engine: Arc<Engine>,
    shutdown: CancellationToken,
) {
    let grpc = GrpcHealth {
        reporter,
        last: Mutex::new(None),
    };
    grpc.publish(false).await;
    readiness.publish_to(grpc);
    tokio::spawn(async move {
        loop {
            readiness.evaluate(&engine).await;
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tokio::time::sleep(POLL) => {}
            }
        }
        readiness.set_shutting_down();
        readiness.evaluate(&engine).await;
    });
}
