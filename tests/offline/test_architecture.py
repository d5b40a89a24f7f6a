"""The folders are the layers, and imports point one way: down.

CLI (the namespace modules, `_cli`) -> engines (`_deploy`, `_backup`, `_observe`, `_chaos`) ->
`_providers` -> `_kube` -> `_remote` -> `_core`. A module may import from its own package or
from a lower layer, never from a higher one or sideways into another engine, and no chain of
imports may come back to where it started. Imports inside functions count too: they are
imports all the same, only later.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

TASKS = Path(__file__).resolve().parents[2] / "tasks"

# Package (first component under tasks/) -> layer; "" is the top-level namespace modules.
LAYERS = {
    "": 5,
    "_cli": 5,
    "_deploy": 4,
    "_backup": 4,
    "_observe": 4,
    "_chaos": 4,
    "_providers": 3,
    "_kube": 2,
    "_remote": 1,
    "_core": 0,
}


def module_name(path: Path) -> str:
    parts = ["tasks", *path.relative_to(TASKS).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def package_of(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 2 or (len(parts) == 2 and parts[1] in LAYERS) else ""


def imports_of(path: Path) -> set[str]:
    """Every module of this project that `path` imports, at any depth of the code."""
    module = module_name(path)
    is_package = path.name == "__init__.py"
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.split(".")[0] == "tasks"}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".")
                base = base if is_package else base[:-1]
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] != "tasks":
                continue
            for alias in node.names:  # `from . import x` imports the module x
                candidate = f"{target}.{alias.name}"
                found.add(candidate if candidate in MODULES else target)
    return {name for name in found if name in MODULES and name != module}


MODULES = {module_name(p): p for p in TASKS.rglob("*.py")}
GRAPH = {name: imports_of(path) for name, path in MODULES.items()}


def test_every_package_has_a_layer():
    packages = {package_of(name) for name in MODULES}
    assert packages <= set(LAYERS), f"give these packages a layer: {packages - set(LAYERS)}"


@pytest.mark.parametrize("module", sorted(MODULES))
def test_imports_point_down(module: str):
    mine = package_of(module)
    for imported in GRAPH[module]:
        theirs = package_of(imported)
        if theirs == mine or LAYERS[theirs] < LAYERS[mine]:
            continue
        pytest.fail(
            f"{module} (layer {LAYERS[mine]}) imports {imported} (layer {LAYERS[theirs]}): "
            "imports point down only"
        )


def test_no_import_cycles():
    visiting: list[str] = []
    done: set[str] = set()

    def visit(name: str) -> None:
        if name in done:
            return
        if name in visiting:
            cycle = [*visiting[visiting.index(name) :], name]
            pytest.fail("import cycle: " + " -> ".join(cycle))
        visiting.append(name)
        for imported in sorted(GRAPH[name]):
            visit(imported)
        visiting.pop()
        done.add(name)

    for name in sorted(GRAPH):
        visit(name)


def test_the_graph_is_read():
    """The checks above mean something only if imports are found at all."""
    assert "tasks._core.sim_binaries" in GRAPH["tasks._core.command"]
    assert "tasks._kube.readiness" in GRAPH["tasks._deploy.plan"]
    assert "tasks._providers.kwok" in GRAPH["tasks._deploy.render"]  # inside a function
