//! tokengate's core: everything a decision needs and nothing of how it travels. The
//! server (the root package) adapts gRPC `Check` and the HTTP check to
//! [`decision::Engine`] and renders its answers; this crate never sees axum, tonic or
//! envoy-types, only `http` types.
//!
//! # Layout
//!
//! - [`config`]: the YAML configuration, parsed into types that cannot hold an invalid
//!   state (one key source per provider, one store); errors name file, line and field.
//! - [`decision`]: the one decision. [`decision::Engine`] takes a request as
//!   [`decision::extract::Headers`] + method/path/host, reduces it to its canonical form
//!   ([`decision::canonical`]), matches routes ([`decision::routes`]), verifies the token
//!   ([`jwt`]), checks how the token is bound to its sender (DPoP proof, client
//!   certificate), asks the revocation store and returns a verdict with a
//!   [`reason::Reason`].
//! - [`jwt`]: keys (static, files, JWKS with a per-kid fetch budget), verification,
//!   claims, DPoP proofs ([`jwt::dpop`], RFC 9449), minting for the admin API and tests.
//! - [`revocation`]: the store interface ([`revocation::RevocationStore`]), the memory and
//!   Redis stores, the local cache in front ([`revocation::cache`]) and the
//!   invalidation events that keep replicas' caches in step.
//! - [`status`]: the Token Status List consumer (draft-ietf-oauth-status-list-20): a
//!   token's `status_list` entry read from its issuer's signed, cached list.
//! - [`ssf`]: Shared Signals / CAEP: Security Event Tokens verified like access tokens
//!   (same JWS rules and key loading), their events mapped to revocations.
//! - [`reason`]: every deny, with its HTTP status, OAuth error, gRPC code and metric label.
//! - [`metrics`]: the Prometheus registry the decision reports to (the server exposes it).
//! - [`secret`]: secrets from the environment or a file, read in one place.
//! - [`json`]: JSON without duplicate keys at any depth (token headers and claims,
//!   admin request bodies).
//!
//! The contract all of this implements is `docs/spec.md`; "docs/spec.md §n" in comments cites it.

pub mod config;
pub mod crypto;
pub mod decision;
pub mod json;
pub mod jwt;
pub mod metrics;
pub mod reason;
pub mod revocation;
pub mod secret;
pub mod ssf;
pub mod status;
mod trace;
