//! What the load tools, the criterion bench and the integration tests all need to build
//! the same way, written once: the fixture keys and the configuration that names them
//! ([`fixture`]), the `CheckRequest` Envoy sends ([`request`]), and token minting and
//! signing ([`token`]). A bench that built its requests differently from the tests would
//! measure something the tests never checked.
//!
//! Hostile builders (raw header bytes, claims no honest signer writes) stay in
//! tests/it/support: only the tests want them.

pub mod fixture;
pub mod request;
pub mod token;
