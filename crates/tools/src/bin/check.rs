//! Sends one ext_authz `CheckRequest` to tokengate exactly as Envoy's gRPC filter does and
//! prints the answer: for the README walkthrough and for poking at a running sidecar.
//!
//!     cargo run -p tokengate-tools --bin check -- --token "$TOKEN" [--path /api/items] [--addr http://127.0.0.1:9001]

use clap::Parser;
use envoy_types::ext_authz::v3::pb::HttpResponse;
use envoy_types::pb::envoy::service::auth::v3::authorization_client::AuthorizationClient;
use tokengate_tools::request::{bearer, check_request};

#[derive(Parser)]
struct Args {
    /// tokengate's gRPC listener.
    #[arg(long, default_value = "http://127.0.0.1:9001")]
    addr: String,
    /// Bearer token to send in `authorization` (omit to send none).
    #[arg(long, env = "TOKEN")]
    token: Option<String>,
    /// Path of the original request.
    #[arg(long, default_value = "/api/items")]
    path: String,
    /// Method of the original request.
    #[arg(long, default_value = "GET")]
    method: String,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let auth = args.token.as_deref().map(bearer);
    let headers: Vec<(&str, &str)> = auth.iter().map(|a| ("authorization", a.as_str())).collect();
    let request = check_request(&args.method, &args.path, "", &headers);
    let mut client = AuthorizationClient::connect(args.addr).await?;
    let response = client.check(request).await?.into_inner();
    let code = response.status.map_or(-1, |s| s.code);
    match response.http_response {
        Some(HttpResponse::OkResponse(ok)) => {
            println!("ALLOW (grpc status {code})");
            for h in ok.headers.iter().filter_map(|o| o.header.as_ref()) {
                println!("  upstream header {}: {}", h.key, h.value);
            }
            for h in &ok.headers_to_remove {
                println!("  upstream header removed: {h}");
            }
        }
        Some(HttpResponse::DeniedResponse(d)) => {
            println!(
                "DENY (grpc status {code}, http {})",
                d.status.map_or(0, |s| s.code)
            );
            for h in d.headers.iter().filter_map(|o| o.header.as_ref()) {
                println!("  {}: {}", h.key, h.value);
            }
            println!("  {}", d.body);
        }
        _ => println!("no http_response (grpc status {code})"),
    }
    Ok(())
}
