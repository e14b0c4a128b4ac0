//! The Helm chart deploy/helm/tokengate (issue 15), rendered by a real Helm: PyPI's
//! helm-python-sdk binds Helm's own Go SDK (no helm binary can be fetched here), driven
//! by scripts/helm-render.py. Each values set ([`SETS`]: the defaults, a standalone with
//! TLS, mTLS, Redis and every toggle on, a sidecar on non-default ports) is linted as
//! `helm lint --strict` would, rendered, and its output checked by the real components:
//! kubernetes-validate --strict for core objects, the CRD field table of deploy.rs for
//! ServiceMonitor and PrometheusRule, `tokengate check-config` for the config the
//! ConfigMap carries, `envoy --mode validate` for the sidecar's Envoy. Then the wiring
//! (listen ports = containerPorts = probes = Services), the hardening, the admin port's
//! isolation, that no secret value is ever rendered, and that values.schema.json makes
//! Helm itself refuse bad values.

use crate::deploy::{
    assert_passes, container, container_port, crd_problems, documents, kubernetes_validate,
    port_of, read, run, s, seq,
};
use crate::support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use serde::Deserialize;
use serde_yaml_ng::Value;
use support::envoy::{validate_command, Scratch};
use support::procs::repo;
use support::serve::tokengate;

const CHART: &str = "deploy/helm/tokengate";

/// A values set: a name and the values file (None: the chart's defaults).
#[derive(Clone, Copy, Debug)]
struct Set {
    name: &'static str,
    values: Option<&'static str>,
    /// Whether the rendered config has a `tls:` section (tokengate needs the TLS config
    /// support from main to accept it).
    tls: bool,
}

const DEFAULTS: Set = Set {
    name: "defaults",
    values: None,
    tls: false,
};
const STANDALONE_TLS: Set = Set {
    name: "standalone-tls",
    values: Some("deploy/helm/tokengate/ci/standalone-tls-values.yaml"),
    tls: true,
};
const SIDECAR: Set = Set {
    name: "sidecar",
    values: Some("deploy/helm/tokengate/ci/sidecar-values.yaml"),
    tls: false,
};
const SETS: [Set; 3] = [DEFAULTS, STANDALONE_TLS, SIDECAR];

// ---------------------------------------------------------------------------- helm

/// The venv's python with helm-python-sdk (scripts/install-test-deps.sh installs it);
/// panics naming the fix when it is missing.
fn helm_python() -> PathBuf {
    let python = repo().join(".tools/venv/bin/python");
    let ok =
        python.exists() && run(Command::new(&python).args(["-I", "-c", "import helm_python"])).0;
    assert!(
        ok,
        "helm-python-sdk is not installed in .tools/venv: run scripts/install-test-deps.sh"
    );
    python
}

/// scripts/helm-render.py `command` on the chart with `values` files.
fn helm(command: &str, values: &[PathBuf]) -> Command {
    let mut cmd = Command::new(helm_python());
    cmd.current_dir(repo())
        .arg(repo().join("scripts/helm-render.py"))
        .args([command, CHART, "--namespace", "tokengate"]);
    for v in values {
        cmd.arg("-f").arg(v);
    }
    cmd
}

fn values_of(set: Set) -> Vec<PathBuf> {
    set.values.map(|v| repo().join(v)).into_iter().collect()
}

/// A rendered values set: the manifest stream and its documents.
struct Rendered {
    text: String,
    docs: Vec<Value>,
}

/// Renders `set` once per test run (each render is a Python process).
fn rendered(set: Set) -> &'static Rendered {
    static CACHE: [OnceLock<Rendered>; 3] = [OnceLock::new(), OnceLock::new(), OnceLock::new()];
    let i = SETS.iter().position(|x| x.name == set.name).expect("a set");
    CACHE[i].get_or_init(|| {
        let (ok, text) = run(&mut helm("render", &values_of(set)));
        assert!(ok, "helm render ({}) failed:\n{text}", set.name);
        let docs = serde_yaml_ng::Deserializer::from_str(&text)
            .map(|d| Value::deserialize(d).expect("rendered YAML"))
            .filter(|v| !v.is_null())
            .collect();
        Rendered { text, docs }
    })
}

impl Rendered {
    fn all(&self, kind: &str) -> Vec<&Value> {
        self.docs.iter().filter(|d| s(&d["kind"]) == kind).collect()
    }

    fn one(&self, kind: &str) -> &Value {
        let found = self.all(kind);
        assert_eq!(found.len(), 1, "expected one {kind}");
        found[0]
    }

    fn pod(&self) -> &Value {
        &self.one("Deployment")["spec"]["template"]["spec"]
    }

    fn tokengate(&self) -> &Value {
        container(self.pod(), "tokengate")
    }

    /// The tokengate config the ConfigMap carries, as text and parsed.
    fn config_text(&self) -> &str {
        s(&self.one("ConfigMap")["data"]["tokengate.yaml"])
    }

    fn config(&self) -> Value {
        serde_yaml_ng::from_str(self.config_text()).expect("config YAML")
    }
}

/// Renders `values` (YAML text) over the defaults; returns success and the output.
fn render_with(values: &str) -> (bool, String) {
    let dir = Scratch::new("helm-values");
    let file = dir.write("values.yaml", values);
    run(&mut helm("render", &[file]))
}

fn mode(set: Set) -> &'static str {
    if set.name == "sidecar" {
        "sidecar"
    } else {
        "standalone"
    }
}

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
fn tokengate_check_config_accepts_the_rendered_configs_without_tls() {
    for set in SETS.into_iter().filter(|s| !s.tls) {
        check_config(set);
    }
}

// Enabled once main's `tls` config section is merged into this branch.
#[test]
#[ignore = "the config's `tls` section lands on main first (tls-schema.md)"]
fn tokengate_check_config_accepts_the_rendered_config_with_tls() {
    check_config(STANDALONE_TLS);
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

// ---------------------------------------------------------------------------- wiring

#[test]
fn listen_ports_container_ports_probes_and_services_agree() {
    for set in SETS {
        let r = rendered(set);
        let config = r.config();
        let tg = r.tokengate();
        let what = set.name;
        let listen = |l: &str| port_of(s(&config["listen"][l]));
        for l in ["grpc", "http", "admin"] {
            assert_eq!(
                container_port(tg, l),
                listen(l),
                "{what}: containerPort {l}"
            );
        }
        // gRPC is reachable only from the pod's Envoy in sidecar mode.
        let grpc_host = s(&config["listen"]["grpc"])
            .rsplit_once(':')
            .expect("addr")
            .0;
        assert_eq!(
            grpc_host,
            if mode(set) == "sidecar" {
                "127.0.0.1"
            } else {
                "0.0.0.0"
            },
            "{what}"
        );

        // Probes on the admin port, HTTPS exactly when the admin listener has TLS.
        let admin_tls = !config["tls"]["admin"].is_null();
        for (probe, path) in [
            ("livenessProbe", "/healthz"),
            ("readinessProbe", "/readyz"),
            ("startupProbe", "/healthz"),
        ] {
            let get = &tg[probe]["httpGet"];
            assert_eq!(s(&get["path"]), path, "{what}: {probe}");
            assert_eq!(s(&get["port"]), "admin", "{what}: {probe}");
            assert_eq!(
                s(&get["scheme"]),
                if admin_tls { "HTTPS" } else { "HTTP" },
                "{what}: {probe}"
            );
        }
        assert_eq!(admin_tls, set.tls, "{what}: admin TLS");

        // The config file is mounted where the args point, from the ConfigMap.
        let args: Vec<&str> = seq(&tg["args"]).iter().map(s).collect();
        assert_eq!(args, ["serve", "--config", "/etc/tokengate/tokengate.yaml"]);
        let pod = r.pod();
        let volume = |name: &str| -> &Value {
            seq(&pod["volumes"])
                .iter()
                .find(|v| s(&v["name"]) == name)
                .unwrap_or_else(|| panic!("{what}: no volume {name}"))
        };
        let mounts = seq(&tg["volumeMounts"]);
        let mount_of = |path: &str| -> Option<&Value> {
            mounts
                .iter()
                .filter(|m| path.starts_with(s(&m["mountPath"])))
                .max_by_key(|m| s(&m["mountPath"]).len())
        };
        let cfg = mount_of("/etc/tokengate/tokengate.yaml").expect("config mount");
        assert_eq!(s(&cfg["subPath"]), "tokengate.yaml");
        assert_eq!(
            s(&volume(s(&cfg["name"]))["configMap"]["name"]),
            s(&r.one("ConfigMap")["metadata"]["name"])
        );

        // Every file the config names is inside a mounted Secret: keys, TLS files.
        let mut files = Vec::new();
        collect_files(&config, &mut files);
        assert!(!files.is_empty(), "{what}");
        for file in &files {
            let m = mount_of(file).unwrap_or_else(|| panic!("{what}: {file} is not mounted"));
            let secret = s(&volume(s(&m["name"]))["secret"]["secretName"]);
            assert!(!secret.is_empty(), "{what}: {file} is not from a Secret");
            assert_eq!(m["readOnly"].as_bool(), Some(true), "{what}: {file}");
        }
        if set.tls {
            let tls = mount_of("/etc/tokengate/tls/tls.crt").expect("tls mount");
            assert_eq!(s(&tls["mountPath"]), "/etc/tokengate/tls");
            assert!(
                tls["subPath"].is_null(),
                "{what}: a subPath mount never sees cert-manager's renewals"
            );
            assert_eq!(
                s(&volume(s(&tls["name"]))["secret"]["secretName"]),
                "tokengate-tls"
            );
        }

        // Services: target named ports the pod declares, never admin (but the
        // headless metrics Service, which carries admin only).
        let main_svc = r
            .all("Service")
            .into_iter()
            .find(|d| !s(&d["metadata"]["name"]).ends_with("-metrics"))
            .expect("the Service");
        let targets: Vec<&str> = seq(&main_svc["spec"]["ports"])
            .iter()
            .map(|p| s(&p["targetPort"]))
            .collect();
        let selector = &main_svc["spec"]["selector"];
        assert_eq!(
            selector,
            &r.one("Deployment")["spec"]["selector"]["matchLabels"],
            "{what}"
        );
        if mode(set) == "sidecar" {
            assert_eq!(targets, ["public"], "{what}");
            sidecar_wiring(r, &config);
        } else {
            assert_eq!(targets, ["grpc", "http"], "{what}");
        }
        for svc in r.all("Service") {
            if s(&svc["metadata"]["name"]).ends_with("-metrics") {
                assert_eq!(svc["spec"]["clusterIP"].as_str(), Some("None"));
                let ports = seq(&svc["spec"]["ports"]);
                assert_eq!(ports.len(), 1);
                assert_eq!(s(&ports[0]["targetPort"]), "admin");
                let monitor = r.one("ServiceMonitor");
                let endpoint = &seq(&monitor["spec"]["endpoints"])[0];
                assert_eq!(s(&endpoint["port"]), s(&ports[0]["name"]));
                assert_eq!(s(&endpoint["path"]), "/metrics");
                assert_eq!(
                    s(&endpoint["scheme"]),
                    if admin_tls { "https" } else { "" },
                    "{what}: scrape scheme"
                );
                for (k, v) in monitor["spec"]["selector"]["matchLabels"]
                    .as_mapping()
                    .expect("matchLabels")
                {
                    assert_eq!(&svc["metadata"]["labels"][s(k)], v, "{what}");
                }
            } else {
                for p in seq(&svc["spec"]["ports"]) {
                    assert_ne!(s(&p["targetPort"]), "admin", "{what}: admin in a Service");
                }
            }
        }
    }
}

/// Paths of every `*_file` field of the config.
fn collect_files(v: &Value, out: &mut Vec<String>) {
    if let Some(map) = v.as_mapping() {
        for (k, val) in map {
            if s(k).ends_with("_file") {
                out.push(s(val).to_string());
            }
            collect_files(val, out);
        }
    }
    for item in seq(v) {
        collect_files(item, out);
    }
}

/// The sidecar's Envoy config: valid to Envoy, and its ports those of the pod.
fn sidecar_wiring(r: &Rendered, config: &Value) {
    let envoy_text = s(&r.one("ConfigMap")["data"]["envoy.yaml"]);
    let dir = Scratch::new("helm-envoy");
    let file = dir.write("envoy.yaml", envoy_text);
    assert_passes(
        "envoy --mode validate (the chart's sidecar config)",
        &mut validate_command(&file),
    );
    let envoy: Value = serde_yaml_ng::from_str(envoy_text).expect("envoy YAML");
    let cluster_port = |name: &str| -> u16 {
        let cluster = seq(&envoy["static_resources"]["clusters"])
            .iter()
            .find(|c| s(&c["name"]) == name)
            .unwrap_or_else(|| panic!("no cluster {name}"));
        let addr = &cluster["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]
            ["address"]["socket_address"];
        assert_eq!(s(&addr["address"]), "127.0.0.1", "{name}");
        u16::try_from(addr["port_value"].as_u64().expect("port")).expect("u16")
    };
    assert_eq!(
        cluster_port("tokengate_grpc"),
        port_of(s(&config["listen"]["grpc"]))
    );
    assert_eq!(
        cluster_port("tokengate_http"),
        port_of(s(&config["listen"]["http"]))
    );
    let pod = r.pod();
    let envoy_c = container(pod, "envoy");
    let listener = &seq(&envoy["static_resources"]["listeners"])[0]["address"]["socket_address"];
    assert_eq!(
        listener["port_value"].as_u64(),
        Some(u64::from(container_port(envoy_c, "public")))
    );
    // The values file puts the app on 3100: Envoy routes there.
    assert_eq!(cluster_port("app"), 3100);
    let app = container(pod, "shop");
    assert!(
        app["ports"].is_null(),
        "the app declares no port: loopback only"
    );
    let mount = seq(&envoy_c["volumeMounts"])
        .iter()
        .find(|m| s(&m["mountPath"]) == "/etc/envoy/envoy.yaml")
        .expect("envoy config mount");
    assert_eq!(s(&mount["subPath"]), "envoy.yaml");
}

#[test]
fn the_charts_copies_are_the_tested_files() {
    // Helm cannot read outside the chart: the Envoy bootstrap and the alert rules are
    // copies, which must stay the validated originals.
    for (copy, original) in [
        ("deploy/helm/tokengate/files/envoy.yaml", "envoy/envoy.yaml"),
        (
            "deploy/helm/tokengate/files/alerts.yaml",
            "deploy/prometheus/alerts.yaml",
        ),
    ] {
        assert_eq!(
            read(&repo().join(copy)),
            read(&repo().join(original)),
            "{copy} differs from {original}: cp {original} {copy}"
        );
    }
}

#[test]
fn prometheusrule_carries_exactly_the_groups_of_alerts_yaml() {
    let alerts = &documents(&repo().join("deploy/prometheus/alerts.yaml"))[0];
    assert!(!seq(&alerts["groups"]).is_empty());
    for set in [STANDALONE_TLS, SIDECAR] {
        let rule = rendered(set).one("PrometheusRule");
        assert_eq!(rule["spec"]["groups"], alerts["groups"], "{}", set.name);
    }
    assert!(rendered(DEFAULTS).all("PrometheusRule").is_empty());
}

#[test]
fn a_config_change_rolls_the_pods() {
    let checksum = |text: &str| -> String {
        let docs: Vec<Value> = serde_yaml_ng::Deserializer::from_str(text)
            .map(|d| Value::deserialize(d).expect("YAML"))
            .collect();
        let d = docs
            .iter()
            .find(|d| s(&d["kind"]) == "Deployment")
            .expect("Deployment");
        s(&d["spec"]["template"]["metadata"]["annotations"]["checksum/config"]).to_string()
    };
    let before = checksum(&rendered(DEFAULTS).text);
    assert_eq!(before.len(), 64, "sha256 hex");
    let (ok, out) = render_with(
        "config:\n  providers: [{name: main, keys: [{jwks_uri: https://idp.example.com/jwks}]}]\n",
    );
    assert!(ok, "{out}");
    assert_ne!(checksum(&out), before);
}

// ---------------------------------------------------------------------------- hardening

#[test]
fn every_pod_is_locked_down_and_rolls_safely() {
    for set in SETS {
        let r = rendered(set);
        let pod = r.pod();
        let what = set.name;
        assert_eq!(
            pod["securityContext"]["runAsNonRoot"].as_bool(),
            Some(true),
            "{what}"
        );
        assert_eq!(
            s(&pod["securityContext"]["seccompProfile"]["type"]),
            "RuntimeDefault",
            "{what}"
        );
        assert_eq!(
            pod["automountServiceAccountToken"].as_bool(),
            Some(false),
            "{what}"
        );
        assert_eq!(
            r.one("ServiceAccount")["automountServiceAccountToken"].as_bool(),
            Some(false)
        );
        let names: Vec<&str> = seq(&pod["containers"])
            .iter()
            .map(|c| s(&c["name"]))
            .collect();
        let want: &[&str] = if mode(set) == "sidecar" {
            &["tokengate", "envoy", "shop"]
        } else {
            &["tokengate"]
        };
        assert_eq!(names, want, "{what}");
        for c in seq(&pod["containers"]) {
            let what = format!("{what}, container {}", s(&c["name"]));
            let sc = &c["securityContext"];
            assert_eq!(sc["readOnlyRootFilesystem"].as_bool(), Some(true), "{what}");
            assert_eq!(
                sc["allowPrivilegeEscalation"].as_bool(),
                Some(false),
                "{what}"
            );
            assert_eq!(sc["runAsNonRoot"].as_bool(), Some(true), "{what}");
            assert_eq!(
                seq(&sc["capabilities"]["drop"])
                    .iter()
                    .map(s)
                    .collect::<Vec<_>>(),
                ["ALL"],
                "{what}"
            );
            assert!(
                c["resources"]["requests"]["cpu"].is_string(),
                "{what}: cpu request"
            );
            assert!(
                c["resources"]["limits"]["memory"].is_string(),
                "{what}: memory limit"
            );
            let image = s(&c["image"]);
            assert!(
                image.contains(':') && !image.ends_with(":latest"),
                "{what}: {image}"
            );
        }
        let deployment = r.one("Deployment");
        assert_eq!(
            deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"].as_u64(),
            Some(0),
            "{what}"
        );
        let pdb = r.one("PodDisruptionBudget");
        assert_eq!(
            pdb["spec"]["selector"]["matchLabels"],
            deployment["spec"]["selector"]["matchLabels"]
        );
    }
}

#[test]
fn the_admin_port_admits_only_admin_from() {
    for set in SETS {
        let r = rendered(set);
        let policy = r.one("NetworkPolicy");
        let what = set.name;
        assert_eq!(
            policy["spec"]["podSelector"]["matchLabels"],
            r.one("Deployment")["spec"]["selector"]["matchLabels"]
        );
        let mut admin_rules = 0;
        for rule in seq(&policy["spec"]["ingress"]) {
            let ports: Vec<&str> = seq(&rule["ports"]).iter().map(|p| s(&p["port"])).collect();
            assert!(
                !ports.is_empty(),
                "{what}: a rule without ports opens every port"
            );
            if rule["from"].is_null() {
                assert_eq!(
                    ports,
                    ["public"],
                    "{what}: open to everyone: Envoy's listener only"
                );
            } else {
                assert!(
                    !seq(&rule["from"]).is_empty(),
                    "{what}: `from: []` admits everyone"
                );
            }
            if ports.contains(&"admin") {
                admin_rules += 1;
                assert_eq!(ports, ["admin"], "{what}");
                let from = seq(&rule["from"]);
                assert_eq!(from.len(), 1, "{what}");
                assert_eq!(
                    s(&from[0]["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"]),
                    "monitoring",
                    "{what}"
                );
            }
        }
        assert_eq!(
            admin_rules, 1,
            "{what}: exactly one rule admits the admin port"
        );
    }
}

// ---------------------------------------------------------------------------- secrets

#[test]
fn no_secret_value_is_ever_rendered() {
    for set in SETS {
        let r = rendered(set);
        let what = set.name;
        assert!(
            r.all("Secret").is_empty(),
            "{what}: the chart only references Secrets"
        );
        // Every environment variable of every container comes from a Secret by
        // reference: no `value:` can carry a password into the pod spec.
        for c in seq(&r.pod()["containers"]) {
            for env in seq(&c["env"]) {
                assert!(env["value"].is_null(), "{what}: inlined env {env:?}");
                let secret = &env["valueFrom"]["secretKeyRef"];
                assert!(
                    !s(&secret["name"]).is_empty() && !s(&secret["key"]).is_empty(),
                    "{what}: env not from a secretKeyRef: {env:?}"
                );
            }
        }
        // The Redis password variable the config names is set from the Secret.
        let config = r.config();
        let redis = &config["revocation"]["redis"];
        let mut keys: Vec<&str> = redis
            .as_mapping()
            .expect("revocation.redis")
            .keys()
            .map(s)
            .collect();
        keys.sort_unstable();
        assert_eq!(keys, ["password_env", "url"], "{what}");
        assert!(
            !s(&redis["url"]).contains('@'),
            "{what}: a URL with credentials"
        );
        let var = s(&redis["password_env"]);
        let env = seq(&r.tokengate()["env"])
            .iter()
            .find(|e| s(&e["name"]) == var)
            .unwrap_or_else(|| panic!("{what}: {var} is not set"));
        let want = if set.name == "standalone-tls" {
            ("redis-auth", "redis-password")
        } else {
            ("tokengate-redis", "password")
        };
        let secret = &env["valueFrom"]["secretKeyRef"];
        assert_eq!((s(&secret["name"]), s(&secret["key"])), want, "{what}");
        // No private key ships (only `token mint` uses one).
        assert!(!r.config_text().contains("private_key"), "{what}");
    }
}

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
