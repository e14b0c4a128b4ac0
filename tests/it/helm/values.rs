//! values.schema.json (and the templates' `fail`s) make Helm itself refuse bad values:
//! misspellings, wrong types, weakening combinations, and every way to inline a secret.

use super::*;

/// Asserts that rendering `values` over the defaults is refused and that the message
/// names every `needles`, and none of `secrets`.
fn assert_values_refused(what: &str, values: &str, needles: &[&str], secrets: &[&str]) {
    let (ok, out) = render_with(values);
    assert!(!ok, "{what}: rendered:\n{out}");
    for needle in needles {
        assert!(
            out.contains(needle),
            "{what}: the refusal does not name {needle:?}:\n{out}"
        );
    }
    for secret in secrets {
        assert!(
            !out.contains(secret),
            "{what}: the refusal echoes the secret:\n{out}"
        );
    }
}

#[test]
fn the_schema_refuses_misspelled_keys_and_wrong_types() {
    let cases: &[(&str, &str, &[&str])] = &[
        (
            "misspelled top-level key",
            "replicaCuont: 3\n",
            &["additional properties 'replicaCuont' not allowed"],
        ),
        (
            "misspelled nested key",
            "tls:\n  grpc:\n    mtsl: true\n",
            &["/tls/grpc", "'mtsl' not allowed"],
        ),
        (
            "wrong type",
            "replicaCount: two\n",
            &["/replicaCount", "got string, want integer"],
        ),
        (
            "port as a string",
            "ports:\n  admin: \"9090\"\n",
            &["/ports/admin", "got string, want integer"],
        ),
        (
            "port out of range",
            "ports:\n  grpc: 70000\n",
            &["/ports/grpc", "maximum"],
        ),
        (
            "unknown mode",
            "mode: daemonset\n",
            &["/mode", "value must be one of 'standalone', 'sidecar'"],
        ),
        (
            "min TLS version",
            "tls:\n  http:\n    minVersion: \"1.1\"\n",
            &["/tls/http/minVersion"],
        ),
        (
            "boolean as a string",
            "podDisruptionBudget:\n  enabled: \"yes\"\n",
            &["/podDisruptionBudget/enabled", "want boolean"],
        ),
        (
            "misspelled config section",
            "config:\n  provders: []\n",
            &["/config", "'provders' not allowed"],
        ),
    ];
    for (what, values, needles) in cases {
        assert_values_refused(what, values, needles, &[]);
    }
}

#[test]
fn values_that_would_weaken_the_deployment_are_refused() {
    let cases: &[(&str, &str, &[&str])] = &[
        // Chart-owned config: listen would desynchronise ports and probes, tls the
        // mounted files, revocation.redis the Secret-only password.
        ("config.listen", "config:\n  listen: {admin: 0.0.0.0:1}\n", &["/config/listen"]),
        ("config.tls", "config:\n  tls: {}\n", &["/config/tls"]),
        ("config.revocation.redis", "config:\n  revocation:\n    redis: {url: redis://r:6379}\n", &["/config/revocation/redis"]),
        // An empty `from:` admits every source.
        ("empty adminFrom", "networkPolicy:\n  adminFrom: []\n", &["/networkPolicy/adminFrom", "minItems"]),
        ("empty clientsFrom", "networkPolicy:\n  clientsFrom: []\n", &["/networkPolicy/clientsFrom", "minItems"]),
        // The kubelet presents no client certificate: mTLS on admin kills every probe.
        ("mTLS on admin", "tls:\n  admin:\n    mtls: true\n", &["/tls/admin", "'mtls' not allowed"]),
        // Combinations the templates refuse (fail), naming the fix.
        ("TLS without a Secret", "tls:\n  enabled: true\n", &["tls.existingSecret"]),
        ("allowedClients without mTLS", "tls:\n  enabled: true\n  existingSecret: t\n  grpc:\n    allowedClients: [{dns: envoy.internal}]\n", &["tls.grpc.allowedClients needs tls.grpc.mtls"]),
        ("sidecar without an app image", "mode: sidecar\n", &["sidecar.app.image is required"]),
        ("sidecar with gRPC TLS", "mode: sidecar\nsidecar:\n  app: {image: a:1}\ntls:\n  enabled: true\n  existingSecret: t\n", &["sidecar mode", "tls.grpc.enabled=false"]),
    ];
    for (what, values, needles) in cases {
        assert_values_refused(what, values, needles, &[]);
    }
}

#[test]
fn every_way_to_inline_a_secret_is_refused_without_echoing_it() {
    // The class: a secret value reaching the ConfigMap or an env `value:` through any
    // value. Each path a user might try is refused by Helm before anything renders.
    let pw = "hunter2-Sup3rSecret";
    let cases: Vec<(&str, String, Vec<&str>)> = vec![
        ("password in the Redis URL", format!("redis:\n  url: redis://:{pw}@redis:6379/0\n"), vec!["/redis/url"]),
        ("user and password in a rediss URL", format!("redis:\n  url: rediss://default:{pw}@redis:6380\n"), vec!["/redis/url"]),
        ("redis.password", format!("redis:\n  password: {pw}\n"), vec!["/redis", "'password' not allowed"]),
        ("an env value", format!("extraSecretEnv:\n  - {{name: X, value: {pw}}}\n"), vec!["/extraSecretEnv/0"]),
        ("a password in config", format!("config:\n  revocation:\n    password: {pw}\n"), vec!["propertyName 'password'"]),
        ("an introspection client secret", format!("config:\n  oauth:\n    introspection_clients: [{{id: billing, secret: {pw}}}]\n"), vec!["propertyName 'secret'"]),
        ("a private key file", "config:\n  providers: [{name: m, keys: [{public_key_file: /k, private_key_file: /etc/tokengate/keys/p.pem}]}]\n".to_string(), vec!["propertyName 'private_key_file'"]),
    ];
    for (what, values, needles) in &cases {
        assert_values_refused(what, values, needles, &[pw]);
    }
}
