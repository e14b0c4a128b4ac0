//! The ext_authz `CheckRequest` as Envoy's gRPC filter sends it. Envoy's default
//! settings put the original request's headers in the `headers` map with lower-case
//! names, a header sent twice as one value joined by commas; tokengate reads that map.

use std::collections::HashMap;

use envoy_types::ext_authz::v3::pb::CheckRequest;
use envoy_types::pb::envoy::service::auth::v3::attribute_context::{HttpRequest, Request};
use envoy_types::pb::envoy::service::auth::v3::AttributeContext;
use prost::Message;

/// `Bearer {token}`: the `authorization` value.
pub fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

/// The headers of a request as Envoy's `headers` map holds them: names lower-cased,
/// the values of a repeated name joined with `,` in the order given.
pub fn header_map(headers: &[(&str, &str)]) -> HashMap<String, String> {
    let mut map: HashMap<String, String> = HashMap::with_capacity(headers.len());
    for (name, value) in headers {
        map.entry(name.to_ascii_lowercase())
            .and_modify(|v| {
                v.push(',');
                v.push_str(value);
            })
            .or_insert_with(|| value.to_string());
    }
    map
}

/// `http` as the one request attribute of a `CheckRequest`.
pub fn wrap(http: HttpRequest) -> CheckRequest {
    CheckRequest {
        attributes: Some(AttributeContext {
            request: Some(Request {
                http: Some(http),
                ..Default::default()
            }),
            ..Default::default()
        }),
    }
}

/// A `CheckRequest` for `method path` on `host` ("" leaves the attribute unset) with
/// `headers` (see [`header_map`]).
pub fn check_request(
    method: &str,
    path: &str,
    host: &str,
    headers: &[(&str, &str)],
) -> CheckRequest {
    wrap(HttpRequest {
        method: method.into(),
        path: path.into(),
        host: host.into(),
        headers: header_map(headers),
        ..Default::default()
    })
}

/// What Envoy sends for the `i`-th client request `GET /api/items` on `app.bench.local`
/// carrying `token`: pseudo-headers and a browser-like client's headers included, the
/// request id numbered. The requests of scripts/bench.sh (through `gen_requests`) and of
/// the criterion bench.
pub fn bench_request(token: &str, i: usize) -> CheckRequest {
    let request_id = format!("00000000-0000-4000-8000-{i:012}");
    let auth = bearer(token);
    let mut req = check_request(
        "GET",
        "/api/items",
        "app.bench.local",
        &[
            (":authority", "app.bench.local"),
            (":method", "GET"),
            (":path", "/api/items"),
            (":scheme", "http"),
            ("accept", "*/*"),
            ("user-agent", "bench/1.0"),
            ("x-forwarded-proto", "http"),
            ("x-request-id", &request_id),
            ("authorization", &auth),
        ],
    );
    if let Some(http) = http_mut(&mut req) {
        http.id = format!("{i:07}");
        http.scheme = "http".into();
        http.protocol = "HTTP/1.1".into();
    }
    req
}

/// The request attribute of `req`, to adjust one field.
pub fn http_mut(req: &mut CheckRequest) -> Option<&mut HttpRequest> {
    req.attributes.as_mut()?.request.as_mut()?.http.as_mut()
}

/// `msg` as one gRPC length-prefixed message (flag byte 0, 4 length bytes, protobuf):
/// what goes on the wire inside the HTTP/2 DATA frames.
pub fn grpc_frame(msg: &CheckRequest) -> Vec<u8> {
    let body = msg.encode_to_vec();
    let mut out = Vec::with_capacity(5 + body.len());
    out.push(0);
    out.extend_from_slice(&(body.len() as u32).to_be_bytes());
    out.extend_from_slice(&body);
    out
}
