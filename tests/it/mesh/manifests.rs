//! The mesh and gateway manifests, offline: strictly valid against the upstream CRD
//! schemas vendored in deploy/schemas (scripts/crd_schemas.py), refused when broken,
//! and pointing at the same tokengate Service with the same fail-closed settings.

use crate::deploy::{
    assert_passes, assert_refuses, break_text, documents, files_under, group_of,
    kubernetes_validate, read, rel, s, seq,
};
use crate::support;

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_yaml_ng::Value;
use support::envoy::Scratch;
use support::procs::repo;

use super::SCHEMA_GROUPS;
/// The hand-written schema of istiod's `meshConfig.extensionProviders` Helm values.
const MESH_VALUES_SCHEMA: &str =
    "deploy/schemas/istio-1.30.3/istiod-values.meshconfig.extensionproviders.json";

// ---------------------------------------------------------------------------- validation

/// scripts/crd_schemas.py in the tools' venv, where jsonschema is (a dependency of
/// kubernetes-validate).
pub(super) fn crd_schemas() -> Command {
    let venv = repo().join(".tools/venv/bin/python");
    let python = if venv.exists() {
        venv
    } else {
        PathBuf::from("python3")
    };
    let mut cmd = Command::new(python);
    cmd.current_dir(repo())
        .arg(repo().join("scripts/crd_schemas.py"))
        .arg("validate");
    cmd
}

fn crd_schemas_with_values_schema() -> Command {
    let mut cmd = crd_schemas();
    cmd.arg("--schema").arg(repo().join(MESH_VALUES_SCHEMA));
    cmd
}

/// The YAML files of the mesh and gateway install paths.
fn mesh_files() -> Vec<PathBuf> {
    ["deploy/istio", "deploy/envoy-gateway"]
        .iter()
        .flat_map(|d| files_under(&repo().join(d), &["yaml", "yml"]))
        .collect()
}

fn is_values_file(path: &Path) -> bool {
    path.ends_with("deploy/istio/istiod-values.yaml")
}

#[test]
fn mesh_manifests_validate_strictly_against_the_vendored_crd_schemas() {
    let files = mesh_files();
    let names: Vec<String> = files.iter().map(|p| rel(p)).collect();
    assert_eq!(
        names,
        [
            "deploy/istio/authorizationpolicy.yaml",
            "deploy/istio/destinationrule-tls.yaml",
            "deploy/istio/fast-path-requestauthentication.yaml",
            "deploy/istio/fast-path-wasmplugin.yaml",
            "deploy/istio/istiod-values.yaml",
            "deploy/envoy-gateway/backendtlspolicy.yaml",
            "deploy/envoy-gateway/gateway.yaml",
            "deploy/envoy-gateway/httproute.yaml",
            "deploy/envoy-gateway/referencegrant.yaml",
            "deploy/envoy-gateway/securitypolicy.yaml",
        ],
        "the mesh manifests changed: every file must be validated below"
    );
    let (values, objects): (Vec<PathBuf>, Vec<PathBuf>) =
        files.into_iter().partition(|p| is_values_file(p));
    // Every object is of a vendored kind: no core object hides among them (those go
    // to deploy/ext-authz, through kubernetes-validate).
    for path in &objects {
        for doc in documents(path) {
            assert!(
                SCHEMA_GROUPS.contains(&group_of(&doc)),
                "{}: {} {} is not of a vendored CRD group",
                rel(path),
                s(&doc["apiVersion"]),
                s(&doc["kind"])
            );
        }
    }
    assert_passes("crd_schemas.py validate", crd_schemas().args(&objects));
    assert_passes(
        "crd_schemas.py validate (istiod values)",
        crd_schemas_with_values_schema().args(&values),
    );
}

#[test]
fn ext_authz_core_manifests_pass_kubernetes_validate() {
    let files = files_under(&repo().join("deploy/ext-authz"), &["yaml"]);
    let core: Vec<&PathBuf> = files
        .iter()
        .filter(|p| {
            let docs = documents(p);
            !docs.is_empty()
                && docs.iter().all(|d| d["kind"].is_string())
                && !docs.iter().any(|d| s(&d["kind"]) == "Kustomization")
        })
        .collect();
    let names: Vec<String> = core.iter().map(|p| rel(p)).collect();
    assert_eq!(
        names,
        [
            "deploy/ext-authz/deployment.yaml",
            "deploy/ext-authz/networkpolicy.yaml",
            "deploy/ext-authz/service.yaml"
        ]
    );
    let out = assert_passes("kubernetes-validate", kubernetes_validate().args(&core));
    assert!(!out.contains("Couldn't find schema"), "{out}");
}

/// A broken copy of `file` (one replacement) is refused, naming the problem.
fn assert_schema_refuses(file: &str, from: &str, to: &str, needles: &[&str]) {
    let dir = Scratch::new("crd-schemas");
    let broken = dir.write(
        "broken.yaml",
        &break_text(&read(&repo().join(file)), from, to),
    );
    let mut cmd = if file.ends_with("istiod-values.yaml") {
        crd_schemas_with_values_schema()
    } else {
        crd_schemas()
    };
    assert_refuses(
        &format!("{file}: {from} -> {to}"),
        cmd.arg(&broken),
        needles,
    );
}

#[test]
fn crd_schema_check_refuses_a_misspelled_field_a_wrong_type_and_a_wrong_enum() {
    // Misspelled: the API server would prune the field and the default would apply.
    assert_schema_refuses(
        "deploy/envoy-gateway/securitypolicy.yaml",
        "failOpen: false",
        "failopen: false",
        &["spec.extAuth", "'failopen' was unexpected"],
    );
    assert_schema_refuses(
        "deploy/istio/istiod-values.yaml",
        "statusOnError: \"503\"",
        "statusOnErorr: \"503\"",
        &["envoyExtAuthzGrpc", "'statusOnErorr' was unexpected"],
    );
    assert_schema_refuses(
        "deploy/istio/authorizationpolicy.yaml",
        "  provider:\n",
        "  providers:\n",
        &["'providers' was unexpected"],
    );
    // Wrong types.
    assert_schema_refuses(
        "deploy/envoy-gateway/securitypolicy.yaml",
        "port: 9001",
        "port: \"9001\"",
        &[
            "spec.extAuth.grpc.backendRefs.0.port",
            "is not of type 'integer'",
        ],
    );
    assert_schema_refuses(
        "deploy/istio/istiod-values.yaml",
        "failOpen: false",
        "failOpen: \"no\"",
        &["'no' is not of type 'boolean'"],
    );
    // Wrong enum values.
    assert_schema_refuses(
        "deploy/istio/authorizationpolicy.yaml",
        "action: CUSTOM",
        "action: EXTERNAL",
        &["spec.action", "'EXTERNAL' is not one of"],
    );
    assert_schema_refuses(
        "deploy/envoy-gateway/httproute.yaml",
        "type: PathPrefix",
        "type: Prefix",
        &["spec.rules.0.matches.0.path.type", "'Prefix' is not one of"],
    );
    assert_schema_refuses(
        "deploy/istio/destinationrule-tls.yaml",
        "mode: SIMPLE",
        "mode: TLS",
        &["spec.trafficPolicy.tls.mode", "'TLS' is not one of"],
    );
    // A kind without a vendored schema is refused, never passed unchecked.
    assert_schema_refuses(
        "deploy/envoy-gateway/securitypolicy.yaml",
        "kind: SecurityPolicy",
        "kind: SecurityPolicies",
        &["no vendored schema for gateway.envoyproxy.io/v1alpha1 SecurityPolicies"],
    );
}

// ---------------------------------------------------------------------------- wiring

/// The one document of `kind` in `file`.
fn object(file: &str, kind: &str) -> Value {
    let docs: Vec<Value> = documents(&repo().join(file))
        .into_iter()
        .filter(|d| s(&d["kind"]) == kind)
        .collect();
    assert_eq!(docs.len(), 1, "expected one {kind} in {file}");
    docs.into_iter().next().expect("one object")
}

/// The port of the tokengate Service named `name`.
fn service_port(name: &str) -> u64 {
    let service = object("deploy/ext-authz/service.yaml", "Service");
    seq(&service["spec"]["ports"])
        .iter()
        .find(|p| s(&p["name"]) == name)
        .and_then(|p| p["port"].as_u64())
        .unwrap_or_else(|| panic!("Service tokengate has no port {name}"))
}

#[test]
fn ext_authz_service_is_wired_to_its_config_and_pods() {
    let dir = repo().join("deploy/ext-authz");
    let k = documents(&dir.join("kustomization.yaml")).remove(0);
    for file in seq(&k["resources"]) {
        assert!(dir.join(s(file)).is_file(), "{} does not exist", s(file));
    }
    let config_path = dir.join("config/tokengate.yaml");
    if let Err(e) = tokengate::config::Config::parse(&rel(&config_path), &read(&config_path)) {
        panic!("tokengate rejects deploy/ext-authz/config/tokengate.yaml: {e}");
    }
    let config = documents(&config_path).remove(0);
    // The proxies call it over the network: the gRPC listener is not on loopback.
    assert!(s(&config["listen"]["grpc"]).starts_with("0.0.0.0:"));
    assert_eq!(s(&config["revocation"]["on_store_error"]), "deny");

    let deployment = object("deploy/ext-authz/deployment.yaml", "Deployment");
    let pod = &deployment["spec"]["template"]["spec"];
    let tg = &seq(&pod["containers"])[0];
    let service = object("deploy/ext-authz/service.yaml", "Service");
    assert_eq!(
        service["spec"]["selector"],
        deployment["spec"]["selector"]["matchLabels"]
    );
    for (name, listener) in [("grpc", "grpc"), ("http", "http")] {
        let container_port = seq(&tg["ports"])
            .iter()
            .find(|p| s(&p["name"]) == name)
            .and_then(|p| p["containerPort"].as_u64())
            .expect("container port");
        let listen = s(&config["listen"][listener]);
        assert!(
            listen.ends_with(&format!(":{container_port}")),
            "{listener}: {listen} vs containerPort {container_port}"
        );
        let port = seq(&service["spec"]["ports"])
            .iter()
            .find(|p| s(&p["name"]) == name)
            .expect("Service port");
        assert_eq!(s(&port["targetPort"]), name, "Service port {name}");
    }
    let grpc = seq(&service["spec"]["ports"])
        .iter()
        .find(|p| s(&p["name"]) == "grpc")
        .expect("grpc port");
    assert_eq!(
        s(&grpc["appProtocol"]),
        "grpc",
        "the proxies must speak HTTP/2 to it"
    );
    // Every manifest beside the kustomization is in it.
    for name in ["deployment.yaml", "service.yaml", "networkpolicy.yaml"] {
        assert!(
            seq(&k["resources"]).iter().any(|r| s(r) == name),
            "{name} is not in deploy/ext-authz/kustomization.yaml"
        );
    }
    // The NetworkPolicies: the admin port only from a selected namespace, and Redis
    // admits these pods.
    let policies = documents(&dir.join("networkpolicy.yaml"));
    let labels = &deployment["spec"]["template"]["metadata"]["labels"];
    let own = policies
        .iter()
        .find(|p| {
            p["spec"]["podSelector"]["matchLabels"] == deployment["spec"]["selector"]["matchLabels"]
        })
        .expect("a NetworkPolicy for the tokengate pods");
    for rule in seq(&own["spec"]["ingress"]) {
        let ports: Vec<&str> = seq(&rule["ports"]).iter().map(|p| s(&p["port"])).collect();
        assert!(!ports.is_empty(), "a rule without ports opens every port");
        if ports.contains(&"admin") {
            assert_eq!(ports, ["admin"], "admin shares no rule: {rule:?}");
            for peer in seq(&rule["from"]) {
                assert!(
                    peer["namespaceSelector"]["matchLabels"].is_mapping(),
                    "the admin port admits selected namespaces only: {peer:?}"
                );
            }
        }
    }
    let redis = policies
        .iter()
        .find(|p| s(&p["spec"]["podSelector"]["matchLabels"]["app.kubernetes.io/name"]) == "redis")
        .expect("a NetworkPolicy admitting tokengate to Redis");
    let from = &seq(&seq(&redis["spec"]["ingress"])[0]["from"])[0]["podSelector"]["matchLabels"];
    for (k, v) in from.as_mapping().expect("matchLabels") {
        assert_eq!(&labels[s(k)], v, "Redis admits the tokengate pods");
    }
    let configmap = seq(&k["configMapGenerator"])[0]["name"].clone();
    assert!(
        seq(&pod["volumes"])
            .iter()
            .any(|v| v["configMap"]["name"] == configmap),
        "the pods mount the generated config"
    );
}

#[test]
fn istio_and_envoy_gateway_manifests_point_at_tokengate_and_fail_closed_with_503() {
    let host = "tokengate.tokengate.svc.cluster.local";
    let values = documents(&repo().join("deploy/istio/istiod-values.yaml")).remove(0);
    let providers = seq(&values["meshConfig"]["extensionProviders"]);
    let provider = |name: &str, kind: &str| -> Value {
        providers
            .iter()
            .find(|p| s(&p["name"]) == name)
            .map(|p| p[kind].clone())
            .unwrap_or_else(|| panic!("no extension provider {name} with {kind}"))
    };
    let grpc = provider("tokengate-grpc", "envoyExtAuthzGrpc");
    let http = provider("tokengate-http", "envoyExtAuthzHttp");
    for (p, port) in [(&grpc, "grpc"), (&http, "http")] {
        assert_eq!(s(&p["service"]), host);
        assert_eq!(p["port"].as_u64(), Some(service_port(port)));
        assert_eq!(p["failOpen"].as_bool(), Some(false));
        assert_eq!(s(&p["statusOnError"]), "503");
    }
    assert_eq!(s(&http["pathPrefix"]), "/authz");
    let list = |v: &Value| -> Vec<String> { seq(v).iter().map(|x| s(x).to_string()).collect() };
    assert_eq!(
        list(&http["includeRequestHeadersInCheck"]),
        ["authorization", "cookie"]
    );
    assert_eq!(
        list(&http["headersToUpstreamOnAllow"]),
        ["x-user-id", "x-tenant-id"]
    );

    let policy = object(
        "deploy/istio/authorizationpolicy.yaml",
        "AuthorizationPolicy",
    );
    assert_eq!(s(&policy["spec"]["action"]), "CUSTOM");
    assert_eq!(s(&policy["spec"]["provider"]["name"]), "tokengate-grpc");
    let rules = seq(&policy["spec"]["rules"]);
    assert!(
        rules.len() == 1 && rules[0].as_mapping().is_some_and(|m| m.is_empty()),
        "the CUSTOM policy must match every request (`rules: [{{}}]`): {rules:?}"
    );

    // TLS to tokengate from the app's sidecars: Istio applies credentialName at
    // sidecars only with a workloadSelector (the schema cannot say so), and the Secret
    // must be in the proxies' namespace, so the rule sits beside the policy.
    let dr = object("deploy/istio/destinationrule-tls.yaml", "DestinationRule");
    assert_eq!(s(&dr["spec"]["host"]), host);
    let tls = &dr["spec"]["trafficPolicy"]["tls"];
    assert!(!s(&tls["credentialName"]).is_empty());
    assert_eq!(
        dr["spec"]["workloadSelector"]["matchLabels"], policy["spec"]["selector"]["matchLabels"],
        "credentialName needs the workloadSelector of the calling workloads"
    );
    assert_eq!(dr["metadata"]["namespace"], policy["metadata"]["namespace"]);
    assert_eq!(s(&tls["sni"]), host);

    let sp = object("deploy/envoy-gateway/securitypolicy.yaml", "SecurityPolicy");
    let ext = &sp["spec"]["extAuth"];
    let backend = &seq(&ext["grpc"]["backendRefs"])[0];
    assert_eq!(s(&backend["name"]), "tokengate");
    assert_eq!(s(&backend["namespace"]), "tokengate");
    assert_eq!(backend["port"].as_u64(), Some(service_port("grpc")));
    assert_eq!(ext["failOpen"].as_bool(), Some(false));
    assert_eq!(ext["statusOnError"].as_u64(), Some(503));
    let route = object("deploy/envoy-gateway/httproute.yaml", "HTTPRoute");
    let target = &seq(&sp["spec"]["targetRefs"])[0];
    assert_eq!(s(&target["kind"]), "HTTPRoute");
    assert_eq!(target["name"], route["metadata"]["name"]);
    assert_eq!(sp["metadata"]["namespace"], route["metadata"]["namespace"]);
    // The cross-namespace reference is granted, to exactly this policy's namespace.
    let grant = object("deploy/envoy-gateway/referencegrant.yaml", "ReferenceGrant");
    assert_eq!(s(&grant["metadata"]["namespace"]), "tokengate");
    let from = &seq(&grant["spec"]["from"])[0];
    assert_eq!(s(&from["kind"]), "SecurityPolicy");
    assert_eq!(from["namespace"], sp["metadata"]["namespace"]);
    let tls = object(
        "deploy/envoy-gateway/backendtlspolicy.yaml",
        "BackendTLSPolicy",
    );
    assert_eq!(s(&tls["spec"]["validation"]["hostname"]), host);
    assert_eq!(
        s(&seq(&tls["spec"]["targetRefs"])[0]["sectionName"]),
        "grpc"
    );

    // The generated Envoy configurations say the same.
    for file in [
        "envoy/istio-ext-authz-grpc.yaml",
        "envoy/istio-ext-authz-http.yaml",
        "envoy/envoy-gateway-ext-auth.yaml",
    ] {
        let text = read(&repo().join(file));
        for must in ["failure_mode_allow: false", "code: 503", "timeout: 0.5s"] {
            assert!(text.contains(must), "{file} lacks `{must}`");
        }
    }
}
