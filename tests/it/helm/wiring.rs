//! Ports, probes, mounts and Services agree; copies match; pods are hardened; the admin
//! port admits only `adminFrom`; no secret value is rendered.

use super::*;

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
