"""The package's import structure: what import-linter's layer contract (``make lint``) does not check.

Layers point down (pyproject.toml, ``[tool.importlinter]``); here: no ninr module imports another ninr
module inside a function (an import placed there to dodge a circle hides the circle), none imports a private
name (``_x``) from another module, and the package has no import circle at all.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "ninr"


def module_name(path: Path) -> str:
    parts = path.relative_to(SRC.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(SRC.rglob("*.py"))}


def imports(name: str) -> list[tuple[str, str | None, bool]]:
    """``(module imported, name imported or None, inside a function)`` for each ninr import of ``name``."""
    path = MODULES[name]
    tree = ast.parse(path.read_text(encoding="utf-8"))
    out: list[tuple[str, str | None, bool]] = []

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            inside = in_function or isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef)
            if isinstance(child, ast.ImportFrom) and child.module and child.level == 0:
                out.extend((child.module, a.name, inside) for a in child.names if child.module.startswith("ninr"))
            elif isinstance(child, ast.Import):
                out.extend((a.name, None, inside) for a in child.names if a.name.startswith("ninr"))
            visit(child, inside)

    visit(tree, False)
    return out


def test_the_module_table_sees_the_package() -> None:
    assert {"ninr", "ninr.cli", "ninr.train.fit", "ninr.studies.part"} <= set(MODULES)


@pytest.mark.parametrize("name", sorted(MODULES))
def test_no_import_inside_a_function_and_no_private_name_from_another_module(name: str) -> None:
    for module, imported, inside in imports(name):
        assert not inside, f"{name} imports {module} inside a function"
        private = imported is not None and imported.startswith("_") and not imported.startswith("__")
        assert not private or f"{module}.{imported}" in MODULES, f"{name} imports the private {module}.{imported}"


def test_the_package_has_no_import_circle() -> None:
    graph: dict[str, set[str]] = {}
    for name in MODULES:
        targets = set()
        for module, imported, _ in imports(name):
            target = f"{module}.{imported}" if f"{module}.{imported}" in MODULES else module
            while target not in MODULES and "." in target:
                target = target.rsplit(".", 1)[0]
            if target != name and target in MODULES:
                targets.add(target)
        graph[name] = targets
    state: dict[str, int] = {}

    def cycle_from(node: str, stack: list[str]) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1 and not (nxt == "ninr" or node.startswith(nxt + ".")):
                return [*stack[stack.index(nxt) :], nxt]
            if nxt not in state:
                found = cycle_from(nxt, stack)
                if found:
                    return found
        stack.pop()
        state[node] = 2
        return None

    for name in sorted(graph):
        if name not in state:
            found = cycle_from(name, [])
            assert found is None, " -> ".join(found)
