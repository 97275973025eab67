"""Chart helpers are named by the file they live in: `rayvllm.<file>.<thing>` is defined in `_<file>.tpl`, so
an include names where to read it, and a helper cannot hide in a manifest template."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from chart_support import CHART

TEMPLATES = CHART / "templates"
DEFINE = re.compile(r"\{\{-?\s*define\s+\"([^\"]+)\"")
TEMPLATE_FILES = sorted(path for path in TEMPLATES.rglob("*") if path.is_file())
PARTIALS = [path for path in TEMPLATE_FILES if path.name.startswith("_")]


def defines(path: Path) -> list[str]:
    return DEFINE.findall(path.read_text())


def misnamed(path: Path) -> list[str]:
    """The helpers of a `_<file>.tpl` not named `rayvllm.<file>.<thing>` (the file part case-insensitively,
    as `_networkpolicy.tpl` holds `rayvllm.networkPolicy.*`)."""
    component = path.name.removeprefix("_").removesuffix(".tpl").lower()
    wrong = []
    for name in defines(path):
        parts = name.split(".")
        if len(parts) < 3 or parts[0] != "rayvllm" or parts[1].lower() != component or not all(parts):
            wrong.append(name)
    return wrong


@pytest.mark.parametrize("path", PARTIALS, ids=[str(p.relative_to(TEMPLATES)) for p in PARTIALS])
def test_each_helper_is_named_after_its_file(path: Path) -> None:
    assert path.suffix == ".tpl", "partials hold helpers only; name them _<component>.tpl"
    assert defines(path), "a partial without helpers"
    assert misnamed(path) == [], f"name them rayvllm.{path.stem.removeprefix('_')}.<thing>, or move them"


def test_manifest_templates_define_no_helpers() -> None:
    found = {
        str(path.relative_to(TEMPLATES)): defines(path)
        for path in TEMPLATE_FILES
        if path not in PARTIALS and defines(path)
    }
    assert found == {}, "helpers belong in a _<component>.tpl file"


def test_the_name_check_catches_a_misplaced_helper(tmp_path: Path) -> None:
    pod = tmp_path / "_pod.tpl"
    pod.write_text(
        '{{- define "rayvllm.pod.template" -}}{{- end }}\n'
        '{{- define "rayvllm.modelCache.env" -}}{{- end }}\n'
        '{{ define "rayvllm.pod" }}{{ end }}\n'
    )
    assert misnamed(pod) == ["rayvllm.modelCache.env", "rayvllm.pod"]


def test_every_included_helper_is_defined() -> None:
    """A rename that misses an include would otherwise fail only when that branch renders."""
    included = {
        name
        for path in TEMPLATE_FILES
        for name in re.findall(r"(?:include|template)\s+\"(rayvllm\.[^\"]+)\"", path.read_text())
    }
    defined = {name for path in PARTIALS for name in defines(path)}
    assert included - defined == set()
