//! The benchmark ceiling: a bare ext_authz server on the same stack as tokengate (tokio
//! multi-thread runtime, tonic, envoy-types, axum) that allows everything.
//!
//! - gRPC `envoy.service.auth.v3.Authorization/Check` (+ `grpc.health.v1`): decodes the
//!   `CheckRequest` like tokengate does and answers an `OkResponse` with an explicit OK
//!   `google.rpc.Status` (Envoy reads a response without one as a deny).
//! - HTTP (`--http`): 200 with an empty body for any method and path, the ceiling of
//!   Envoy's HTTP ext_authz mode.
//!
//! No token is read, nothing is verified: whatever tokengate does on top of this is the
//! cost of tokengate. Used by scripts/bench.sh.
//!
//!     cargo run --release -p tokengate-tools --bin bare -- --grpc 127.0.0.1:19101 --http 127.0.0.1:19102

use std::net::SocketAddr;

use clap::Parser;
use envoy_types::ext_authz::v3::pb::{
    Authorization, AuthorizationServer, CheckRequest, CheckResponse, HttpResponse, OkHttpResponse,
};
use envoy_types::pb::google::rpc;
use tonic::{Request, Response, Status};

#[derive(Parser)]
struct Args {
    /// gRPC listener (Authorization/Check and health).
    #[arg(long, default_value = "127.0.0.1:19101")]
    grpc: SocketAddr,
    /// HTTP listener answering 200 to everything (HTTP ext_authz ceiling).
    #[arg(long)]
    http: Option<SocketAddr>,
}

struct Bare;

#[tonic::async_trait]
impl Authorization for Bare {
    async fn check(
        &self,
        request: Request<CheckRequest>,
    ) -> Result<Response<CheckResponse>, Status> {
        // Take the decoded message as tokengate does, then drop it.
        let _check = request.into_inner();
        Ok(Response::new(CheckResponse {
            status: Some(rpc::Status {
                code: 0,
                message: String::new(),
                details: Vec::new(),
            }),
            http_response: Some(HttpResponse::OkResponse(OkHttpResponse::default())),
            dynamic_metadata: None,
        }))
    }
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    // The same runtime tokengate's `serve` builds: multi-thread, one worker per core.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let (health_reporter, health_service) = tonic_health::server::health_reporter();
        health_reporter
            .set_serving::<AuthorizationServer<Bare>>()
            .await;
        let grpc = tonic::transport::Server::builder()
            .add_service(health_service)
            .add_service(AuthorizationServer::new(Bare))
            .serve_with_shutdown(args.grpc, async {
                let _ = tokio::signal::ctrl_c().await;
            });
        let http = async {
            let Some(addr) = args.http else {
                return anyhow::Ok(());
            };
            let listener = tokio::net::TcpListener::bind(addr).await?;
            let app = axum::Router::new().fallback(|| async { axum::http::StatusCode::OK });
            axum::serve(listener, app).await?;
            Ok(())
        };
        eprintln!("bare: grpc {} http {:?}", args.grpc, args.http);
        let (g, h) = tokio::join!(grpc, http);
        g?;
        h?;
        Ok(())
    })
}
