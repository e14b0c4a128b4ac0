//! Istio and Envoy Gateway install paths (issue 15): the manifests under deploy/istio,
//! deploy/envoy-gateway and deploy/ext-authz, checked offline against the CRD schemas
//! vendored from the upstream releases (deploy/schemas/README.md), and the Envoy
//! configuration each project generates from them (written out by hand in
//! envoy/istio-ext-authz-{grpc,http}.yaml and envoy/envoy-gateway-ext-auth.yaml) run in
//! a real Envoy against a real tokengate: allow, deny, and tokengate down.
//!
//! Also the reason the Istio policy matches every request: Istio enables ext_authz only
//! where a CUSTOM policy's rules match, so an exact-path rule leaves every other
//! spelling of that path unchecked (shown here as an attack that works).
//!
//! | module      | what                                                                 |
//! |-------------|----------------------------------------------------------------------|
//! | `manifests` | the manifests against the vendored schemas, and wired to each other  |
//! | `proxies`   | the generated Envoy configurations in a real Envoy, as an attacker   |

mod manifests;
mod proxies;

/// API groups whose manifests are validated here against the vendored schemas (and
/// skipped by deploy.rs's kubernetes-validate, which has no schema for them).
pub(crate) const SCHEMA_GROUPS: &[&str] = &[
    "extensions.istio.io",
    "security.istio.io",
    "networking.istio.io",
    "gateway.networking.k8s.io",
    "gateway.envoyproxy.io",
];
