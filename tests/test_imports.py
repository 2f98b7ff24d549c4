"""The package's import graph: no cycle, and no cvg module imported inside a function outside
the CLI (whose subcommands import their stage lazily so that `cvg --help` starts fast)."""

import ast
from pathlib import Path

from tests.conftest import REPO

PACKAGE = REPO / "cvg"


def modules() -> dict[str, Path]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        name = ".".join(path.relative_to(REPO).with_suffix("").parts)
        out[name.removesuffix(".__init__")] = path
    return out


def imports(path: Path, names: set[str]) -> tuple[set[str], list[int]]:
    """(cvg modules imported at the top of ``path``, lines of cvg imports inside functions)."""
    tree = ast.parse(path.read_text())
    top = {id(node) for node in tree.body}
    found, nested = set(), []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            targets = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        else:
            continue
        targets = [t for t in targets if t in names]
        if targets:
            found.update(targets)
            if id(node) not in top:
                nested.append(node.lineno)
    return found, nested


def test_no_import_cycle_inside_cvg():
    mods = modules()
    graph = {name: imports(path, set(mods))[0] - {name} for name, path in mods.items()}
    state: dict[str, int] = {}

    def visit(node, stack):
        state[node] = 1
        for dep in graph[node]:
            if state.get(dep) == 1:
                raise AssertionError("import cycle: " + " -> ".join(stack[stack.index(dep):] + [dep]))
            if dep not in state:
                visit(dep, stack + [dep])
        state[node] = 2

    for name in graph:
        if name not in state:
            visit(name, [name])


def test_cvg_imports_sit_at_the_top_of_modules():
    mods = modules()
    nested = {name: lines for name, path in mods.items() if name != "cvg.cli" and (lines := imports(path, set(mods))[1])}
    assert nested == {}, nested
