//! Envoy and upstream helpers for end-to-end tests (see tests/envoy.rs).
