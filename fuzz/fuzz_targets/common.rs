//! A tokengate configured like the test suite's (fixture keys of every family), built once.

use std::sync::{Arc, OnceLock};

use tokengate::config::Config;
use tokengate::decision::{Engine, Policy};
use tokengate::metrics::Metrics;

pub fn config() -> &'static Config {
    static CONFIG: OnceLock<Config> = OnceLock::new();
    CONFIG.get_or_init(|| {
        let keys = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/fixtures/keys");
        let yaml = format!(
            "providers:\n  - name: fuzz\n    issuer: https://issuer.test\n    audiences: [api]\n    \
             algorithms: [HS256, RS256, PS256, ES256, ES384, EdDSA]\n    keys:\n      \
             - {{kid: hs, secret_file: {keys}/hs.secret}}\n      \
             - {{kid: rsa, public_key_file: {keys}/rsa-public.pem}}\n      \
             - {{kid: ec256, public_key_file: {keys}/ec256-public.pem}}\n      \
             - {{kid: ec384, public_key_file: {keys}/ec384-public.pem}}\n      \
             - {{kid: ed, public_key_file: {keys}/ed25519-public.pem}}\n\
             routes:\n  - {{path_prefix: /public, exempt: true}}\n  - {{path_prefix: /admin, require_scopes: [admin]}}\n"
        );
        Config::parse("fuzz.yaml", &yaml).expect("fuzz config")
    })
}

/// An engine on the memory store, and the runtime it lives in.
pub fn engine() -> &'static (tokio::runtime::Runtime, Arc<Engine>) {
    static ENGINE: OnceLock<(tokio::runtime::Runtime, Arc<Engine>)> = OnceLock::new();
    ENGINE.get_or_init(|| {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let engine = rt.block_on(async {
            let metrics = Arc::new(Metrics::new(&["fuzz"]).expect("metrics"));
            let store = tokengate::build_store(config(), metrics.clone()).expect("store");
            let policy = Policy::load(config()).expect("keys");
            Arc::new(Engine::new(policy, store, metrics))
        });
        (rt, engine)
    })
}
