//! `tracing`: OpenTelemetry spans exported by OTLP (issue 17). Off by default. The
//! standard `OTEL_*` environment variables (`OTEL_EXPORTER_OTLP_ENDPOINT`,
//! `OTEL_SERVICE_NAME`, `OTEL_RESOURCE_ATTRIBUTES`, `OTEL_TRACES_SAMPLER_ARG`) fill in
//! what the file leaves out.

use std::collections::BTreeMap;

use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Tracing {
    pub enabled: bool,
    pub protocol: OtlpProtocol,
    /// The collector; absent: `OTEL_EXPORTER_OTLP_ENDPOINT`, else the protocol's local
    /// default (`http://localhost:4317` for gRPC, `http://localhost:4318` for HTTP).
    pub endpoint: Option<String>,
    /// Absent: `OTEL_SERVICE_NAME`, else `tokengate`.
    pub service_name: Option<String>,
    /// Share of root spans (requests that arrive without a sampled parent decision)
    /// that are sampled, 0.0..=1.0; a request with a parent follows the parent.
    /// Absent: `OTEL_TRACES_SAMPLER_ARG`, else 1.0.
    #[serde(deserialize_with = "ratio")]
    pub sample_ratio: Option<f64>,
    /// Added to the resource, beside `OTEL_RESOURCE_ATTRIBUTES`.
    pub resource_attributes: BTreeMap<String, String>,
    /// Spans waiting for export; beyond it new spans are dropped (and counted), never
    /// waited for.
    #[serde(deserialize_with = "super::connections")]
    pub max_queue_size: usize,
    /// One export's deadline.
    #[serde(deserialize_with = "super::timeout_seconds")]
    pub export_timeout_seconds: u64,
}

impl Default for Tracing {
    fn default() -> Self {
        Self {
            enabled: false,
            protocol: OtlpProtocol::Grpc,
            endpoint: None,
            service_name: None,
            sample_ratio: None,
            resource_attributes: BTreeMap::new(),
            max_queue_size: 2048,
            export_timeout_seconds: 10,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum OtlpProtocol {
    /// OTLP/gRPC.
    #[default]
    Grpc,
    /// OTLP/HTTP with protobuf bodies.
    Http,
}

fn ratio<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
    match Option::<f64>::deserialize(d)? {
        Some(r) if !(0.0..=1.0).contains(&r) => {
            Err(serde::de::Error::custom("must be between 0.0 and 1.0"))
        }
        r => Ok(r),
    }
}
