//! The parts of a `CheckRequest` tokengate reads, as a message of their own: decoding
//! one costs a fraction of decoding the whole request. The field numbers are those of
//! `envoy.service.auth.v3` (envoy-types' `CheckRequest`), so the bytes Envoy sends
//! decode as either; every field not declared here is skipped unread (the peer's
//! address, the destination, metadata, the time, the body).
//!
//! Header names and values stay slices of the received frame (`Bytes`): no copy, no
//! allocation, no UTF-8 check per header. The map Envoy sends (`headers`, one entry per
//! name) is kept as its list of entries; a name that comes twice reads as its last
//! entry, as decoding it into a map would keep it.

use bytes::Bytes;

/// `envoy.service.auth.v3.CheckRequest`, read in part.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Check {
    #[prost(message, optional, tag = "1")]
    pub attributes: Option<Attributes>,
}

/// `AttributeContext`: `source` and `request`, and the route's `context_extensions`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Attributes {
    #[prost(message, optional, tag = "1")]
    pub source: Option<Peer>,
    #[prost(message, optional, tag = "4")]
    pub request: Option<AttributeRequest>,
    /// `map<string, string>` on the wire.
    #[prost(message, repeated, tag = "10")]
    pub context_extensions: Vec<Entry>,
}

/// `AttributeContext.Peer`: only the URL-encoded PEM of its certificate.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Peer {
    #[prost(string, tag = "5")]
    pub certificate: String,
}

/// `AttributeContext.Request`: its HTTP part.
#[derive(Clone, PartialEq, prost::Message)]
pub struct AttributeRequest {
    #[prost(message, optional, tag = "2")]
    pub http: Option<HttpRequest>,
}

/// `AttributeContext.HttpRequest`, without query, fragment, size, protocol and body.
#[derive(Clone, PartialEq, prost::Message)]
pub struct HttpRequest {
    #[prost(string, tag = "1")]
    pub id: String,
    #[prost(string, tag = "2")]
    pub method: String,
    /// `map<string, string>` on the wire.
    #[prost(message, repeated, tag = "3")]
    pub headers: Vec<Header>,
    #[prost(string, tag = "4")]
    pub path: String,
    #[prost(string, tag = "5")]
    pub host: String,
    #[prost(string, tag = "6")]
    pub scheme: String,
    /// `envoy.config.core.v3.HeaderMap` (Envoy's `encode_raw_headers`).
    #[prost(message, optional, tag = "13")]
    pub header_map: Option<HeaderMap>,
}

/// One entry of a `map<string, string>`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Entry {
    #[prost(string, tag = "1")]
    pub key: String,
    #[prost(string, tag = "2")]
    pub value: String,
}

/// One entry of the `headers` map, as bytes.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Header {
    #[prost(bytes = "bytes", tag = "1")]
    pub key: Bytes,
    #[prost(bytes = "bytes", tag = "2")]
    pub value: Bytes,
}

/// `envoy.config.core.v3.HeaderMap`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct HeaderMap {
    #[prost(message, repeated, tag = "1")]
    pub headers: Vec<RawHeader>,
}

/// `envoy.config.core.v3.HeaderValue`: `value`, or `raw_value` when Envoy sends raw
/// bytes.
#[derive(Clone, PartialEq, prost::Message)]
pub struct RawHeader {
    #[prost(bytes = "bytes", tag = "1")]
    pub key: Bytes,
    #[prost(bytes = "bytes", tag = "2")]
    pub value: Bytes,
    #[prost(bytes = "bytes", tag = "3")]
    pub raw_value: Bytes,
}

impl Attributes {
    /// The route's context extension `key` (the last entry of that name).
    pub fn context_extension(&self, key: &str) -> Option<&str> {
        self.context_extensions
            .iter()
            .rev()
            .find(|e| e.key == key)
            .map(|e| e.value.as_str())
    }
}

impl Check {
    /// The same request read from envoy-types' whole `CheckRequest` (in-process callers:
    /// the benchmarks, `check_once`).
    pub fn from_request(request: &envoy_types::ext_authz::v3::pb::CheckRequest) -> Check {
        use prost::Message;
        Check::decode(request.encode_to_vec().as_slice()).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use envoy_types::ext_authz::v3::pb::CheckRequest;
    use envoy_types::pb::envoy::config::core::v3::{HeaderMap as PbMap, HeaderValue};
    use envoy_types::pb::envoy::service::auth::v3::attribute_context;
    use envoy_types::pb::envoy::service::auth::v3::AttributeContext;
    use prost::Message;

    #[test]
    fn envoys_bytes_read_the_same_in_part() {
        let request = CheckRequest {
            attributes: Some(AttributeContext {
                source: Some(attribute_context::Peer {
                    certificate: "cert%20pem".into(),
                    principal: "spiffe://x".into(),
                    ..Default::default()
                }),
                request: Some(attribute_context::Request {
                    http: Some(attribute_context::HttpRequest {
                        id: "req-1".into(),
                        method: "GET".into(),
                        headers: [("authorization", "Bearer t"), ("x-a", "1")]
                            .into_iter()
                            .map(|(k, v)| (k.to_string(), v.to_string()))
                            .collect(),
                        path: "/orders?x=1".into(),
                        host: "api.example".into(),
                        scheme: "https".into(),
                        query: "x=1".into(),
                        body: "ignored".into(),
                        header_map: Some(PbMap {
                            headers: vec![HeaderValue {
                                key: "dpop".into(),
                                value: String::new(),
                                raw_value: b"\xffraw".to_vec(),
                            }],
                        }),
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                context_extensions: [("tokengate.require_scopes".to_string(), "a b".to_string())]
                    .into_iter()
                    .collect(),
                ..Default::default()
            }),
        };
        let check = Check::decode(request.encode_to_vec().as_slice()).unwrap();
        let a = check.attributes.as_ref().unwrap();
        assert_eq!(a.source.as_ref().unwrap().certificate, "cert%20pem");
        assert_eq!(a.context_extension("tokengate.require_scopes"), Some("a b"));
        let http = a.request.as_ref().unwrap().http.as_ref().unwrap();
        assert_eq!(
            (http.id.as_str(), http.method.as_str(), http.path.as_str()),
            ("req-1", "GET", "/orders?x=1")
        );
        assert_eq!(
            (http.host.as_str(), http.scheme.as_str()),
            ("api.example", "https")
        );
        let mut headers: Vec<_> = http
            .headers
            .iter()
            .map(|h| (h.key.to_vec(), h.value.to_vec()))
            .collect();
        headers.sort();
        assert_eq!(
            headers,
            vec![
                (b"authorization".to_vec(), b"Bearer t".to_vec()),
                (b"x-a".to_vec(), b"1".to_vec())
            ]
        );
        let raw = &http.header_map.as_ref().unwrap().headers[0];
        assert_eq!(
            (&raw.key[..], &raw.raw_value[..]),
            (&b"dpop"[..], &b"\xffraw"[..])
        );
        assert_eq!(Check::from_request(&request), check);
    }

    #[test]
    fn a_map_entry_sent_twice_reads_as_its_last() {
        // Two wire entries for one key: a map decoder keeps the last; so does `values`.
        let entry = |k: &str, v: &str| {
            let mut e = Vec::new();
            Entry {
                key: k.into(),
                value: v.into(),
            }
            .encode_length_delimited(&mut e)
            .unwrap();
            e
        };
        let mut http = Vec::new();
        for e in [
            entry("authorization", "first"),
            entry("authorization", "last"),
        ] {
            http.push(3 << 3 | 2); // field 3, length-delimited
            http.extend_from_slice(&e);
        }
        let decoded = HttpRequest::decode(http.as_slice()).unwrap();
        let map = attribute_context::HttpRequest::decode(http.as_slice()).unwrap();
        assert_eq!(map.headers["authorization"], "last");
        let last = decoded
            .headers
            .iter()
            .rev()
            .find(|h| &h.key[..] == b"authorization");
        assert_eq!(last.map(|h| &h.value[..]), Some(&b"last"[..]));
    }
}
