#!/usr/bin/env python3
"""Vendored CRD schemas for the mesh and gateway manifests (issue 15), and a strict validator.

kubernetes-validate knows the core kinds only; the Istio, Gateway API and Envoy Gateway
kinds under deploy/istio and deploy/envoy-gateway are checked here against the
openAPIV3Schema of the CRDs their projects release (deploy/schemas/README.md names the
versions). Python because jsonschema is already in the test venv (kubernetes-validate
depends on it): a full JSON Schema implementation, with no new Rust dependency.

The API server prunes fields a CRD schema does not declare, silently: a misspelled
`failOpen` is dropped and the default applies. So, unlike the API server, this validator
treats every undeclared field as an error (except under x-kubernetes-preserve-unknown-
fields), on top of the schema's types, enums, patterns and required fields. CEL rules
(x-kubernetes-validations) are not evaluated: the API server checks them at apply time.

  crd_schemas.py extract --out DIR [--only Kind/version]... CRD.yaml...
      the openAPIV3Schema of each served version, descriptions dropped, one JSON file each
  crd_schemas.py validate [--schema FILE] YAML...
      every document against its kind's schema (or against FILE); exit 1 on any problem
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import jsonschema
import yaml

SCHEMAS = Path(__file__).resolve().parent.parent / "deploy" / "schemas"

# ObjectMeta as far as the shipped manifests use it; CRD schemas say only `type: object`.
METADATA = {
    "type": "object",
    "additionalProperties": False,
    "required": ["name"],
    "properties": {
        "name": {"type": "string", "pattern": "^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$", "maxLength": 253},
        "namespace": {"type": "string", "pattern": "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", "maxLength": 63},
        "labels": {"type": "object", "additionalProperties": {"type": "string"}},
        "annotations": {"type": "object", "additionalProperties": {"type": "string"}},
    },
}

# Keys of a schema whose value is a map of field name -> schema (never a keyword).
NAMED_SCHEMAS = ("properties", "patternProperties", "definitions")
# Keys whose value is one schema, or a list of schemas.
ONE_SCHEMA = ("items", "additionalProperties", "not")
SCHEMA_LISTS = ("allOf", "anyOf", "oneOf")


def schema_file_name(group: str, version: str, kind: str) -> str:
    return f"{group}_{version}_{kind.lower()}.json"


def strip_descriptions(schema):
    """The schema without `description` keywords (a field named description is kept)."""
    if not isinstance(schema, dict):
        return schema
    out = {}
    for key, value in schema.items():
        if key == "description":
            continue
        if key in NAMED_SCHEMAS and isinstance(value, dict):
            out[key] = {name: strip_descriptions(s) for name, s in value.items()}
        elif key in ONE_SCHEMA and isinstance(value, dict):
            out[key] = strip_descriptions(value)
        elif key in SCHEMA_LISTS and isinstance(value, list):
            out[key] = [strip_descriptions(s) for s in value]
        else:
            out[key] = value
    return out


def strict(schema):
    """The schema made strict: undeclared fields refused, `nullable` spelled as JSON Schema."""
    if not isinstance(schema, dict):
        return schema
    out = {}
    for key, value in schema.items():
        if key in NAMED_SCHEMAS and isinstance(value, dict):
            out[key] = {name: strict(s) for name, s in value.items()}
        elif key in ONE_SCHEMA and isinstance(value, dict):
            out[key] = strict(value)
        elif key in SCHEMA_LISTS and isinstance(value, list):
            out[key] = [strict(s) for s in value]
        else:
            out[key] = value
    preserve = out.get("x-kubernetes-preserve-unknown-fields")
    if "properties" in out and "additionalProperties" not in out and not preserve:
        out["additionalProperties"] = False
    if out.get("nullable") and isinstance(out.get("type"), str):
        out["type"] = [out["type"], "null"]
    return out


def extract(out_dir: Path, crd_files: list[Path], only: list[str]) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    for crd_file in crd_files:
        for doc in yaml.safe_load_all(crd_file.read_text()):
            if not doc or doc.get("kind") != "CustomResourceDefinition":
                continue
            spec = doc["spec"]
            for version in spec["versions"]:
                if not version.get("served"):
                    continue
                if only and f"{spec['names']['kind']}/{version['name']}" not in only:
                    continue
                schema = strip_descriptions(version["schema"]["openAPIV3Schema"])
                name = schema_file_name(spec["group"], version["name"], spec["names"]["kind"])
                text = json.dumps(schema, indent=1, sort_keys=True) + "\n"
                (out_dir / name).write_text(text)
                print(f"{crd_file}: {name}", file=sys.stderr)


def find_schema(api_version: str, kind: str) -> Path | None:
    group, _, version = api_version.rpartition("/")
    matches = sorted(SCHEMAS.glob(f"*/{schema_file_name(group, version, kind)}"))
    return matches[-1] if matches else None


def where(error: jsonschema.ValidationError) -> str:
    return ".".join(str(p) for p in error.absolute_path) or "(document)"


def problems(doc, schema: dict) -> list[str]:
    validator = jsonschema.Draft4Validator(schema)
    return [f"{where(e)}: {e.message}" for e in sorted(validator.iter_errors(doc), key=lambda e: list(e.path))]


def validate(files: list[Path], schema_file: Path | None) -> int:
    failed = 0
    for path in files:
        for i, doc in enumerate(yaml.safe_load_all(path.read_text())):
            if doc is None:
                continue
            if schema_file is not None:
                schema = json.loads(schema_file.read_text())
                label = f"{path}: document {i} (schema {schema_file.name})"
            else:
                api_version, kind = doc.get("apiVersion", ""), doc.get("kind", "")
                found = find_schema(api_version, kind)
                label = f"{path}: document {i} ({kind} {doc.get('metadata', {}).get('name', '?')})"
                if found is None:
                    print(f"{label}: no vendored schema for {api_version} {kind}")
                    failed += 1
                    continue
                schema = json.loads(found.read_text())
                schema.setdefault("properties", {})["metadata"] = METADATA
                schema.setdefault("required", [])
                for field in ("apiVersion", "kind", "metadata"):
                    if field not in schema["required"]:
                        schema["required"].append(field)
                schema["properties"]["apiVersion"] = {"enum": [api_version]}
                schema["properties"]["kind"] = {"enum": [kind]}
            found_problems = problems(doc, strict(schema))
            for problem in found_problems:
                print(f"{label}: {problem}")
            failed += bool(found_problems)
    if failed:
        print(f"{failed} document(s) refused")
        return 1
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    ex = sub.add_parser("extract")
    ex.add_argument("--out", type=Path, required=True)
    ex.add_argument("--only", action="append", default=[], help="Kind/version (repeatable); default all")
    ex.add_argument("crds", type=Path, nargs="+")
    va = sub.add_parser("validate")
    va.add_argument("--schema", type=Path)
    va.add_argument("files", type=Path, nargs="+")
    args = parser.parse_args()
    if args.command == "extract":
        extract(args.out, args.crds, args.only)
        return 0
    return validate(args.files, args.schema)


if __name__ == "__main__":
    sys.exit(main())
