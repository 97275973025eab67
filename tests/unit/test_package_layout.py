"""The package's folders say what runs where, and their imports keep to it (README's Layout table):

- `http/` is plain ASGI: no Ray, no vLLM, and nothing of the layers above it;
- `serve/` is what the RayService runs: nothing of the laptop runner or the benchmark;
- `local/` runs the app on a laptop: it may build the Serve app, never import the benchmark;
- `config.py`, `capacity.py` and `procs.py` are the bottom layer that every folder may use.

Every import counts, also those inside functions: a lazy import still runs in the process that calls it.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "app" / "src" / "rayvllm"
BOTTOM = ("config.py", "capacity.py", "procs.py")
# folder (or bottom module) -> imported module prefixes it must never import
FORBIDDEN = {
    "http": ("ray", "vllm", "rayvllm.serve", "rayvllm.local", "rayvllm.bench"),
    "serve": ("rayvllm.local", "rayvllm.bench"),
    "local": ("rayvllm.bench",),
    **{name: ("rayvllm.serve", "rayvllm.http", "rayvllm.local", "rayvllm.bench") for name in BOTTOM},
}


def imported_modules(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def modules_of(part: str) -> list[Path]:
    target = PACKAGE / part
    return sorted(target.rglob("*.py")) if target.is_dir() else [target]


@pytest.mark.parametrize("part", FORBIDDEN)
def test_each_part_imports_only_what_its_layer_may(part: str) -> None:
    modules = modules_of(part)
    assert modules and all(module.exists() for module in modules), f"{part} is gone: update the layout"
    broken = [
        f"{module.relative_to(PACKAGE)} imports {name}"
        for module in modules
        for name in sorted(imported_modules(module))
        if any(name == prefix or name.startswith(prefix + ".") for prefix in FORBIDDEN[part])
    ]
    assert not broken


def test_the_package_uses_absolute_imports_only() -> None:
    """Relative imports would hide an import of another layer from the check above."""
    relative = [
        str(path.relative_to(PACKAGE))
        for path in PACKAGE.rglob("*.py")
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.ImportFrom) and node.level > 0
    ]
    assert not relative


def test_every_module_lives_in_a_layer_of_the_layout() -> None:
    """A new top-level module has to be placed in the layout (and in this test) on purpose."""
    entry_points = {"__init__.py", "__main__.py", "cli.py"}
    top_level = {path.name for path in PACKAGE.glob("*.py")}
    assert top_level - entry_points == set(BOTTOM)
    folders = {path.name for path in PACKAGE.iterdir() if path.is_dir() and path.name != "__pycache__"}
    assert folders == {"http", "serve", "local", "bench"}
