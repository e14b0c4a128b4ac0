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
//!
//! This file is the harness (values sets, rendering once per run); [`rendered`] lints,
//! validates and runs the real binary, [`wiring`] ties the objects together and checks
//! the hardening, [`values`] shows Helm refusing bad and secret-carrying values.

use crate::deploy::{
    assert_passes, container, container_port, crd_problems, documents, kubernetes_validate,
    port_of, read, run, s, seq,
};
use crate::support;

mod rendered;
mod values;
mod wiring;

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
    /// Whether the rendered config has a `tls:` section (every listener on, so the
    /// admin probes are HTTPS).
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
