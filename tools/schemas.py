"""Build kubeconform's JSON schemas from Go modules: the Kubernetes OpenAPI spec and the chart's CRDs.

The sources are the modules pinned below, read from Go's module cache (`go mod download` fetches them once;
after that this runs offline). The output goes outside the clone, to
`${RAYVLLM_CACHE:-~/.cache/rayvllm}/schemas/<key>/standalone-strict/<kind>-<group>-<version>.json`, the
layout kubeconform's `-schema-location` template `{{ .ResourceKind }}{{ .KindSuffix }}` expects. The schemas
are strict (objects reject undeclared fields, as `kubectl --validate=strict` does), so only `-strict` runs
find them.

usage: python tools/schemas.py [--status]   # builds if needed; prints the -schema-location template
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

KUBERNETES = "k8s.io/kubernetes@v1.35.4"
# Module -> its folders of CRD YAML. KubeRay v1.7.x is not on the module proxy; v1.6.0 is the newest.
CRD_MODULES = {
    "github.com/ray-project/kuberay/ray-operator@v1.6.0": ["config/crd/bases"],
    "github.com/prometheus-operator/prometheus-operator@v0.85.0": ["example/prometheus-operator-crd"],
    "sigs.k8s.io/gateway-api@v1.4.1": ["config/crd/standard"],
}
MODULES = [KUBERNETES, *CRD_MODULES]
FORMAT_VERSION = "1"  # bump when the conversion below changes


def cache_root() -> Path:
    return Path(os.environ.get("RAYVLLM_CACHE") or Path.home() / ".cache" / "rayvllm") / "schemas"


def schema_dir() -> Path:
    """The folder for this set of pins; a change of pin or of the conversion gets a new one."""
    key = hashlib.sha256("\n".join([FORMAT_VERSION, *MODULES]).encode()).hexdigest()[:12]
    return cache_root() / key


def schema_location() -> str:
    """kubeconform's `-schema-location` for these schemas."""
    return str(schema_dir() / "standalone{{ .StrictSuffix }}" / "{{ .ResourceKind }}{{ .KindSuffix }}.json")


def module_dir(module_at_version: str) -> Path:
    out = subprocess.run(
        ["go", "mod", "download", "-json", module_at_version], capture_output=True, text=True, check=False
    )
    info = json.loads(out.stdout or "{}")
    if out.returncode != 0 or "Dir" not in info:
        raise SystemExit(
            f"schemas: cannot get Go module {module_at_version}: {info.get('Error') or out.stderr}"
        )
    return Path(info["Dir"])


def file_name(group: str, version: str, kind: str) -> str:
    """Mirror kubeconform's KindSuffix: the first label of the group, then the version."""
    suffix = f"-{group.split('.')[0].lower()}-{version}" if group else f"-{version}"
    return f"{kind.lower()}{suffix}.json"


def strict(node: Any) -> Any:
    """Close every object that lists its properties and does not explicitly keep unknown fields."""
    if isinstance(node, dict):
        if (
            "properties" in node
            and "additionalProperties" not in node
            and not node.get("x-kubernetes-preserve-unknown-fields")
        ):
            node["additionalProperties"] = False
        for value in node.values():
            strict(value)
    elif isinstance(node, list):
        for value in node:
            strict(value)
    return node


# The OpenAPI spec declares these strings; YAML writes them as numbers too (`nvidia.com/gpu: 1`, `port: 80`).
NUMBER_OR_STRING = {
    "io.k8s.apimachinery.pkg.api.resource.Quantity": {"oneOf": [{"type": "string"}, {"type": "number"}]},
    "io.k8s.apimachinery.pkg.util.intstr.IntOrString": {"oneOf": [{"type": "string"}, {"type": "integer"}]},
}


def kubernetes_schemas(spec_path: Path) -> dict[str, dict[str, Any]]:
    """One self-contained schema per kind: the kind's definition plus the definitions it reaches."""
    definitions: dict[str, Any] = json.loads(spec_path.read_text())["definitions"]
    for name, replacement in NUMBER_OR_STRING.items():
        definitions[name] = {"description": definitions[name].get("description", ""), **replacement}

    def refs(node: Any) -> set[str]:
        found: set[str] = set()
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/definitions/"):
                found.add(ref.removeprefix("#/definitions/"))
            for value in node.values():
                found |= refs(value)
        elif isinstance(node, list):
            for value in node:
                found |= refs(value)
        return found

    direct = {name: refs(body) for name, body in definitions.items()}
    schemas: dict[str, dict[str, Any]] = {}
    for name, body in definitions.items():
        for gvk in body.get("x-kubernetes-group-version-kind", []):
            reachable: set[str] = set()
            todo = list(direct[name])
            while todo:
                ref = todo.pop()
                if ref not in reachable:
                    reachable.add(ref)
                    todo.extend(direct[ref])
            schema = copy.deepcopy(body)
            schema.pop("x-kubernetes-group-version-kind", None)
            # apiVersion and kind are fixed by the file the object was matched to.
            schema["definitions"] = {ref: copy.deepcopy(definitions[ref]) for ref in sorted(reachable)}
            schemas[file_name(gvk["group"], gvk["version"], gvk["kind"])] = strict(schema)
    return schemas


class CRDLoader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
    """A safe loader that reads a bare `=` (YAML's old `value` tag, used in enums) as the string it is."""


CRDLoader.add_constructor("tag:yaml.org,2002:value", lambda loader, node: loader.construct_scalar(node))


def crd_schemas(crd_dir: Path) -> dict[str, dict[str, Any]]:
    schemas: dict[str, dict[str, Any]] = {}
    for path in sorted(crd_dir.glob("*.yaml")):
        for doc in yaml.load_all(path.read_text(), Loader=CRDLoader):
            if not doc or doc.get("kind") != "CustomResourceDefinition":
                continue
            spec = doc["spec"]
            for version in spec["versions"]:
                schema = copy.deepcopy(version["schema"]["openAPIV3Schema"])
                schemas[file_name(spec["group"], version["name"], spec["names"]["kind"])] = strict(schema)
    return schemas


def build(target: Path) -> int:
    schemas = kubernetes_schemas(module_dir(KUBERNETES) / "api" / "openapi-spec" / "swagger.json")
    for module, folders in CRD_MODULES.items():
        root = module_dir(module)
        for folder in folders:
            schemas.update(crd_schemas(root / folder))
    staging = target.with_name(target.name + ".tmp")
    shutil.rmtree(staging, ignore_errors=True)
    out = staging / "standalone-strict"
    out.mkdir(parents=True)
    for name, schema in schemas.items():
        (out / name).write_text(json.dumps(schema))
    (staging / "SOURCES").write_text("\n".join(MODULES) + "\n")
    shutil.rmtree(target, ignore_errors=True)
    staging.rename(target)
    return len(schemas)


def ensure() -> Path:
    """Build the schemas once per set of pins; later calls only check that they are there."""
    target = schema_dir()
    if not (target / "SOURCES").is_file():
        target.parent.mkdir(parents=True, exist_ok=True)
        count = build(target)
        print(f"schemas: {count} kubeconform schemas written to {target}", file=sys.stderr)
    return target


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--status", action="store_true", help="print where the schemas are, for go-tools.sh")
    args = parser.parse_args()
    target = ensure()
    if args.status:
        print(f"go-tools: kubeconform schemas in {target}")
    else:
        print(schema_location())
    return 0


if __name__ == "__main__":
    sys.exit(main())
