//! The Envoy ext_authz v3 adapter: `CheckRequest` → [`Request`], [`Decision`] →
//! `CheckResponse`. Nothing is decided here.

use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::{BufMut, Bytes};
use envoy_types::ext_authz::v3::pb::{
    CheckRequest, CheckResponse, DeniedHttpResponse, HeaderAppendAction, HeaderValue,
    HeaderValueOption, HttpResponse, HttpStatus, OkHttpResponse,
};
use envoy_types::pb::google::protobuf::{value::Kind, ListValue, Struct, Value};
use envoy_types::pb::google::rpc;
use prost::Message;
use tonic::codec::{Codec, EncodeBuf, Encoder};
use tonic::codegen::{http, Body, BoxFuture, Service, StdError};
use tonic::server::{Grpc, NamedService, UnaryService};
use tonic::{Response, Status};
use tonic_prost::ProstCodec;

use crate::decision::{ClientCert, Decision, Engine, Headers, Policy, Request};
use crate::metrics::Transport;
use crate::reason::Deny;

/// Key of Envoy's per-route `context_extensions` that adds required scopes.
pub mod wire;

pub const REQUIRE_SCOPES_KEY: &str = "tokengate.require_scopes";

/// The gRPC service's full name, as Envoy's `grpc_service` calls it.
pub const SERVICE_NAME: &str = "envoy.service.auth.v3.Authorization";
const CHECK_PATH: &str = "/envoy.service.auth.v3.Authorization/Check";

/// The ext_authz v3 `Authorization` service. Written out rather than generated so that
/// an allow for a token seen before is sent as the bytes encoded the first time (kept
/// with the token's verified claims) instead of being built and encoded again.
#[derive(Clone)]
pub struct AuthzService {
    engine: Arc<Engine>,
}

impl AuthzService {
    pub fn new(engine: Arc<Engine>) -> Self {
        AuthzService { engine }
    }
}

impl NamedService for AuthzService {
    const NAME: &'static str = SERVICE_NAME;
}

impl<B> Service<http::Request<B>> for AuthzService
where
    B: Body + Send + 'static,
    B::Error: Into<StdError> + Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        if req.uri().path() != CHECK_PATH {
            return Box::pin(async { Ok(Status::unimplemented("").into_http()) });
        }
        let check = Check(self.engine.clone());
        Box::pin(async move { Ok(Grpc::new(AnswerCodec).unary(check, req).await) })
    }
}

struct Check(Arc<Engine>);

impl UnaryService<wire::Check> for Check {
    type Response = Answer;
    type Future = BoxFuture<Response<Answer>, Status>;

    fn call(&mut self, request: tonic::Request<wire::Check>) -> Self::Future {
        let engine = self.0.clone();
        let (metadata, _, check) = request.into_parts();
        Box::pin(async move {
            let trace = metadata.into_headers();
            Ok(Response::new(answer_traced(&engine, &check, &trace).await))
        })
    }
}

/// A `CheckResponse`, either already encoded or still to be.
#[derive(Debug, Clone)]
pub enum Answer {
    Encoded(Bytes),
    Message(Box<CheckResponse>),
}

impl Answer {
    /// Appends the answer's protobuf encoding to `dst`.
    pub fn write(&self, dst: &mut impl BufMut) -> Result<(), Status> {
        let short = || Status::internal("no room to encode the answer");
        match self {
            Answer::Encoded(bytes) if dst.remaining_mut() < bytes.len() => Err(short()),
            Answer::Encoded(bytes) => {
                dst.put_slice(bytes);
                Ok(())
            }
            Answer::Message(message) => message.encode(dst).map_err(|_| short()),
        }
    }

    /// The answer as a message (tests and the fuzz target read it this way).
    pub fn into_response(self) -> Result<CheckResponse, prost::DecodeError> {
        match self {
            Answer::Encoded(bytes) => CheckResponse::decode(bytes),
            Answer::Message(message) => Ok(*message),
        }
    }
}

/// Decodes the parts of `CheckRequest`s tokengate reads ([`wire::Check`]) as tonic's
/// prost codec does; encodes [`Answer`]s.
struct AnswerCodec;

struct AnswerEncoder;

impl Codec for AnswerCodec {
    type Encode = Answer;
    type Decode = wire::Check;
    type Encoder = AnswerEncoder;
    type Decoder = <ProstCodec<CheckResponse, wire::Check> as Codec>::Decoder;

    fn encoder(&mut self) -> Self::Encoder {
        AnswerEncoder
    }

    fn decoder(&mut self) -> Self::Decoder {
        ProstCodec::<CheckResponse, wire::Check>::default().decoder()
    }
}

impl Encoder for AnswerEncoder {
    type Item = Answer;
    type Error = Status;

    fn encode(&mut self, item: Answer, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        item.write(dst)
    }
}

/// Envoy sends headers either as a lower-case map or, with `encode_raw_headers`, as a
/// list whose values may be only in `raw_value`. Read whichever is populated, in place.
struct EnvoyHeaders<'a> {
    /// The `headers` map's entries, in the order sent.
    map: &'a [wire::Header],
    /// Envoy's `header_map` (`encode_raw_headers`): every value of every name, raw.
    raw: &'a [wire::RawHeader],
}

impl Headers for EnvoyHeaders<'_> {
    fn values<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a [u8]> + 'a {
        let raw = self
            .raw
            .iter()
            .filter(move |h| h.key.eq_ignore_ascii_case(name.as_bytes()))
            .map(|h| {
                if h.raw_value.is_empty() {
                    &h.value[..]
                } else {
                    &h.raw_value[..]
                }
            });
        // The map's value for the name: its last entry, as a decoded map keeps it.
        let map = self
            .raw
            .is_empty()
            .then(|| {
                self.map
                    .iter()
                    .rev()
                    .find(|h| h.key[..] == *name.as_bytes())
            })
            .flatten()
            .map(|h| &h.value[..]);
        raw.chain(map)
    }
}

/// [`answer`] for a whole envoy-types `CheckRequest` (in-process callers).
pub async fn check_once(engine: &Engine, check: CheckRequest) -> CheckResponse {
    let answer = answer(engine, &wire::Check::from_request(&check)).await;
    // Only our own encoding is decoded here: it cannot fail, and if it ever did the
    // caller would see an empty response, which Envoy reads as a deny.
    answer.into_response().unwrap_or_default()
}

/// One Check, from the request Envoy sent to the answer it gets. The allow for a
/// verified token is encoded once and kept with its claims.
pub async fn answer(engine: &Engine, check: &wire::Check) -> Answer {
    answer_traced(engine, check, &http::HeaderMap::new()).await
}

/// [`answer`] as a span of the trace whose context `trace` (the Check call's gRPC
/// metadata) carries. Envoy puts its ext_authz span's `traceparent` there; the
/// CheckRequest's own headers are the client's, who must not pick where tokengate's
/// span goes.
pub async fn answer_traced(
    engine: &Engine,
    check: &wire::Check,
    trace: &http::HeaderMap,
) -> Answer {
    let attributes = check.attributes.as_ref();
    let http = attributes
        .and_then(|a| a.request.as_ref())
        .and_then(|r| r.http.as_ref());
    let headers = EnvoyHeaders {
        map: http.map_or(&[], |h| &h.headers[..]),
        raw: http
            .and_then(|h| h.header_map.as_ref())
            .map_or(&[], |m| &m.headers[..]),
    };
    let path = http.map_or("", |h| h.path.as_str());
    let request_id = http.map(|h| h.id.as_str()).filter(|s| !s.is_empty());
    let req = Request {
        transport: Transport::Grpc,
        method: http.map_or("", |h| h.method.as_str()),
        host: http.map(|h| h.host.as_str()).filter(|h| !h.is_empty()),
        scheme: http.map(|h| h.scheme.as_str()).filter(|s| !s.is_empty()),
        // Envoy sends it with `include_peer_certificate: true`, URL-encoded PEM.
        client_cert: attributes
            .and_then(|a| a.source.as_ref())
            .map(|s| s.certificate.as_str())
            .filter(|c| !c.is_empty())
            .map(ClientCert::UrlPem),
        path,
        headers: &headers,
        required_scopes: attributes.and_then(|a| a.context_extension(REQUIRE_SCOPES_KEY)),
        request_id,
    };
    let policy = engine.policy();
    let decision = crate::telemetry::check(engine, &policy, &req, trace).await;
    match decision {
        Decision::Allow(allowed) => match allowed.claims.as_deref() {
            Some(claims) => Answer::Encoded(
                allowed
                    .rendered
                    .grpc(|| allow(&policy, Some(claims)).encode_to_vec().into()),
            ),
            None => Answer::Message(Box::new(allow(&policy, None))),
        },
        Decision::Deny(deny) => Answer::Message(Box::new(deny_response(&policy, &deny))),
    }
}

fn allow(policy: &Policy, claims: Option<&crate::jwt::Claims>) -> CheckResponse {
    let forwarding = &policy.forwarding;
    let mut ok = OkHttpResponse::default();
    for (name, value) in policy.upstream_headers(claims) {
        match value {
            Some(value) => ok.headers.push(header(name, value)),
            None => ok.headers_to_remove.push(name.to_string()),
        }
    }
    if forwarding.remove_authorization {
        ok.headers_to_remove.push("authorization".into());
    }
    let dynamic_metadata = claims
        .filter(|_| forwarding.dynamic_metadata)
        .map(|c| to_struct(&c.payload));
    CheckResponse {
        // Envoy treats a response without an OK status as a deny.
        status: Some(rpc::Status {
            code: 0,
            message: String::new(),
            details: Vec::new(),
        }),
        http_response: Some(HttpResponse::OkResponse(ok)),
        dynamic_metadata,
    }
}

fn deny_response(policy: &Policy, deny: &Deny) -> CheckResponse {
    let responses = &policy.responses;
    let mut headers = vec![header("content-type", "application/json".into())];
    if let Some(challenge) = deny.challenge(&responses.realm, policy.dpop_algs()) {
        headers.push(header("www-authenticate", challenge));
    }
    if let Some(nonce) = &deny.dpop_nonce {
        headers.push(header("dpop-nonce", nonce.clone()));
    }
    if deny.reason.http_status() == 503 {
        headers.push(header(
            "retry-after",
            responses.retry_after_seconds.to_string(),
        ));
    }
    CheckResponse {
        status: Some(rpc::Status {
            code: deny.reason.grpc_code(),
            message: deny.reason.as_str().to_string(),
            details: Vec::new(),
        }),
        http_response: Some(HttpResponse::DeniedResponse(DeniedHttpResponse {
            status: Some(HttpStatus {
                code: i32::from(deny.reason.http_status()),
            }),
            headers,
            body: deny.body(),
        })),
        dynamic_metadata: None,
    }
}

/// A header that replaces any value of the same name. The deprecated `append` stays
/// unset: current Envoy reads an unset `append_action` as APPEND, which would let a
/// client's own `x-user-id` travel next to ours.
#[allow(deprecated)] // naming `append` is the only way to leave it unset
fn header(key: &str, value: String) -> HeaderValueOption {
    HeaderValueOption {
        header: Some(HeaderValue {
            key: key.to_string(),
            value,
            raw_value: Vec::new(),
        }),
        append: None,
        append_action: HeaderAppendAction::OverwriteIfExistsOrAdd as i32,
        keep_empty_value: false,
    }
}

fn to_struct(map: &serde_json::Map<String, serde_json::Value>) -> Struct {
    Struct {
        fields: map.iter().map(|(k, v)| (k.clone(), to_value(v))).collect(),
    }
}

fn to_value(v: &serde_json::Value) -> Value {
    use serde_json::Value as J;
    let kind = match v {
        J::Null => Kind::NullValue(0),
        J::Bool(b) => Kind::BoolValue(*b),
        J::Number(n) => Kind::NumberValue(n.as_f64().unwrap_or(0.0)),
        J::String(s) => Kind::StringValue(s.clone()),
        J::Array(a) => Kind::ListValue(ListValue {
            values: a.iter().map(to_value).collect(),
        }),
        J::Object(o) => Kind::StructValue(to_struct(o)),
    };
    Value { kind: Some(kind) }
}
