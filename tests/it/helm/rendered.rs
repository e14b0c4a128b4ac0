//! Lint, validation by the real tools, and the rendered config through the real binary.

use super::*;

// ---------------------------------------------------------------------------- lint, render, validate

#[test]
fn helm_lint_is_clean_for_every_values_set() {
    for set in SETS {
        let out = assert_passes(
            &format!("helm lint --strict ({})", set.name),
            &mut helm("lint", &values_of(set)),
        );
        assert!(
            out.contains("1 chart(s) linted, no warnings or errors"),
            "{out}"
        );
    }
}

#[test]
fn every_rendering_validates_core_objects_strictly_and_crds_by_field() {
    let dir = Scratch::new("helm-validate");
    for set in SETS {
        let r = rendered(set);
        let (crds, core): (Vec<&Value>, Vec<&Value>) = r
            .docs
            .iter()
            .partition(|d| s(&d["apiVersion"]).starts_with("monitoring.coreos.com/"));
        let core_text = core
            .iter()
            .map(|d| serde_yaml_ng::to_string(d).expect("YAML"))
            .collect::<Vec<_>>()
            .join("---\n");
        let file = dir.write(&format!("{}.yaml", set.name), &core_text);
        let out = assert_passes(
            &format!("kubernetes-validate --strict ({})", set.name),
            kubernetes_validate().arg(&file),
        );
        assert!(!out.contains("Couldn't find schema"), "{out}");

        let mut kinds: Vec<&str> = core.iter().map(|d| s(&d["kind"])).collect();
        kinds.sort_unstable();
        let mut want = vec![
            "ConfigMap",
            "Deployment",
            "NetworkPolicy",
            "PodDisruptionBudget",
            "Service",
            "ServiceAccount",
        ];
        if set.name != "defaults" {
            want.push("Service"); // <fullname>-metrics, for the ServiceMonitor
            want.sort_unstable();
        }
        assert_eq!(kinds, want, "{}", set.name);

        let mut crd_kinds: Vec<&str> = crds.iter().map(|d| s(&d["kind"])).collect();
        crd_kinds.sort_unstable();
        let want: &[&str] = if set.name == "defaults" {
            &[]
        } else {
            &["PrometheusRule", "ServiceMonitor"]
        };
        assert_eq!(crd_kinds, want, "{}: monitoring toggles", set.name);
        for doc in crds {
            let problems = crd_problems(doc);
            assert!(
                problems.is_empty(),
                "{}:\n{}",
                set.name,
                problems.join("\n")
            );
        }
    }
}

#[test]
fn the_crd_check_sees_a_misspelled_servicemonitor_field() {
    let r = rendered(STANDALONE_TLS);
    let mut monitor = r.one("ServiceMonitor").clone();
    let endpoint = &mut monitor["spec"]["endpoints"][0];
    let tls = endpoint["tlsConfig"].clone();
    endpoint
        .as_mapping_mut()
        .expect("endpoint")
        .insert("tlsconfig".into(), tls);
    let problems = crd_problems(&monitor).join("\n");
    assert!(
        problems.contains("ServiceMonitor.spec.endpoints[]: unknown field `tlsconfig`"),
        "{problems}"
    );
}

// ---------------------------------------------------------------------------- the real binary

/// Runs `tokengate check-config` on the rendered config of `set`, with its /etc/tokengate
/// paths moved into a scratch directory holding what the Secrets would mount.
fn check_config(set: Set) {
    let r = rendered(set);
    let dir = Scratch::new("helm-check-config");
    let root = dir.join("etc/tokengate");
    std::fs::create_dir_all(root.join("keys")).expect("keys dir");
    std::fs::copy(
        repo().join("tests/fixtures/keys/rsa-public.pem"),
        root.join("keys/issuer-public.pem"),
    )
    .expect("key");
    if set.tls {
        write_tls_files(&root.join("tls"));
    }
    let text = r
        .config_text()
        .replace("/etc/tokengate/", &format!("{}/", root.display()));
    let file = dir.write("tokengate.yaml", &text);
    let hmac = read(&repo().join("tests/fixtures/keys/hs.secret"));
    let out = tokengate(&["check-config", file.to_str().expect("path")])
        .env("TOKENGATE_HMAC_KEY", hmac.trim_end())
        .output()
        .expect("tokengate check-config runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains(": OK"),
        "tokengate check-config refuses the chart's config ({}):\n{text}\n{stdout}{}",
        set.name,
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA, a server certificate it signed and its key, as a cert-manager Secret holds them.
fn write_tls_files(dir: &Path) {
    std::fs::create_dir_all(dir).expect("tls dir");
    std::fs::write(
        dir.join("leaf.ext"),
        "subjectAltName=DNS:tokengate.tokengate.svc\nbasicConstraints=CA:FALSE\n\
         keyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n",
    )
    .expect("extensions file");
    let openssl = |args: &str| {
        let args: Vec<&str> = args.split_whitespace().collect();
        assert_passes(
            "openssl",
            Command::new("openssl").current_dir(dir).args(args),
        )
    };
    let ec = "-newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes";
    openssl(&format!(
        "req -x509 {ec} -keyout ca.key -out ca.crt -days 1 -subj /CN=test-ca"
    ));
    openssl(&format!(
        "req {ec} -keyout tls.key -out tls.csr -subj /CN=tokengate"
    ));
    openssl(
        "x509 -req -in tls.csr -CA ca.crt -CAkey ca.key -CAcreateserial -out tls.crt \
         -days 1 -extfile leaf.ext",
    );
}

#[test]
fn tokengate_check_config_accepts_every_rendered_config() {
    // With TLS it also loads the certificate and key and the client CA (a CA and a leaf
    // made by openssl stand in for cert-manager's Secret).
    for set in SETS {
        check_config(set);
    }
}

#[test]
fn a_config_value_that_passes_the_schema_is_still_judged_by_tokengate() {
    // `config` sections are free-form to the schema; tokengate's own parser is the
    // judge, so check-config above would catch a misspelled field. Prove it does.
    let (ok, out) = render_with("config:\n  providers: [{name: main, algorithms: [RS256], keys: [{public_key_file: /etc/tokengate/keys/k.pem}]}]\n  tokens: {require_jit: true}\n");
    assert!(ok, "{out}");
    let docs: Vec<Value> = serde_yaml_ng::Deserializer::from_str(&out)
        .map(|d| Value::deserialize(d).expect("YAML"))
        .collect();
    let cm = docs
        .iter()
        .find(|d| s(&d["kind"]) == "ConfigMap")
        .expect("ConfigMap");
    let dir = Scratch::new("helm-check-config-bad");
    let file = dir.write("tokengate.yaml", s(&cm["data"]["tokengate.yaml"]));
    let out = tokengate(&["check-config", file.to_str().expect("path")])
        .output()
        .expect("tokengate runs");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("require_jit"), "{err}");
}
