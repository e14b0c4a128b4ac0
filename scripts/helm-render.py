"""Render or lint a Helm chart with a real Helm, offline, without a helm binary.

PyPI's helm-python-sdk binds Helm's own Go SDK (v4) through a C library, so this is
`helm template` and `helm lint` proper: the same template engine, the same
values.schema.json validation (bad values are refused before anything renders), the
same linter rules. A helm binary cannot be downloaded here (only package registries
are reachable); scripts/install-test-deps.sh installs the SDK into .tools/venv.

    .tools/venv/bin/python scripts/helm-render.py render deploy/helm/tokengate \\
        -f my-values.yaml --name tokengate --namespace tokengate -o out.yaml
    .tools/venv/bin/python scripts/helm-render.py lint deploy/helm/tokengate -f my-values.yaml

render writes every rendered manifest as one multi-document YAML stream (each
document headed by `# Source: <template>`, as `helm template` does; NOTES.txt is left
out). lint fails on any warning or error (`helm lint --strict`). Exit status: 0 ok,
1 refused (the message names the value or template), 2 usage.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import helm_python as helm

SEVERITY = {0: "UNKNOWN", 1: "INFO", 2: "WARNING", 3: "ERROR"}


def load_values(files: list[str]) -> dict[str, Any]:
    """The values files merged left to right, as repeated `helm -f` would."""
    merged: dict[str, Any] = {}
    for name in files:
        text = Path(name).read_text(encoding="utf-8")
        merged = merge(merged, helm.values_from_yaml(text))
    return merged


def merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


def render(args: argparse.Namespace) -> int:
    values = load_values(args.values)
    with helm.Chart.load(args.chart) as chart:
        manifests = chart.render(values, name=args.name, namespace=args.namespace, is_install=True)
    docs = []
    for source in sorted(manifests):
        text = manifests[source].strip()
        if source.endswith("NOTES.txt") or not text:
            continue
        docs.append(f"# Source: {source}\n{text}\n")
    out = "---\n".join(docs)
    if args.output:
        Path(args.output).write_text(out, encoding="utf-8")
    else:
        sys.stdout.write(out)
    if args.notes:
        notes = next((t for s, t in manifests.items() if s.endswith("NOTES.txt")), "")
        Path(args.notes).write_text(notes, encoding="utf-8")
    return 0


def lint(args: argparse.Namespace) -> int:
    values = load_values(args.values)
    report = helm.lint(args.chart, values, strict=True, namespace=args.namespace, quiet=False)
    failed = False
    for message in report.get("messages", []):
        severity = int(message.get("severity", 0))
        print(f"[{SEVERITY.get(severity, severity)}] {message.get('path')}: {message.get('error')}")
        failed = failed or severity >= 2
    failed = failed or bool(report.get("errors"))
    charts = report.get("total_charts_linted", 0)
    print(f"{charts} chart(s) linted, {'FAILED' if failed else 'no warnings or errors'}")
    return 1 if failed or charts < 1 else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name in ("render", "lint"):
        p = sub.add_parser(name)
        p.add_argument("chart", help="chart directory")
        p.add_argument("-f", "--values", action="append", default=[], help="values file")
        p.add_argument("--namespace", default="default")
        if name == "render":
            p.add_argument("--name", default="tokengate", help="release name")
            p.add_argument("-o", "--output", help="file for the manifests (default stdout)")
            p.add_argument("--notes", help="file for the rendered NOTES.txt")
    args = parser.parse_args()
    try:
        return render(args) if args.command == "render" else lint(args)
    except helm.HelmError as e:
        print(f"helm-render: {args.command} refused: {e}", file=sys.stderr)
        return 1
    except (OSError, json.JSONDecodeError) as e:
        print(f"helm-render: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
