"""The package's shape: no import cycles, layers imported downwards only, one module list (the package docstring)
that names every module, no module over 350 lines, and no sys.path edits anywhere (the package is installed:
`pip install -e .`)."""

from __future__ import annotations

import ast
from pathlib import Path

import ragserve
from ragserve_ops.testing import ROOT

PACKAGE = ROOT / "handlers" / "ragserve"


def modules() -> dict[str, Path]:
    return {
        ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts).removesuffix(".__init__"): path
        for path in PACKAGE.rglob("*.py")
    }


def imports(path: Path) -> set[str]:
    """The ragserve modules a file imports at any level (inside functions too)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("ragserve"):
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name.startswith("ragserve")}
    return found


def test_no_import_cycles() -> None:
    known = modules()
    graph = {name: {m for m in imports(path) if m in known and m != name} for name, path in known.items()}
    state: dict[str, str] = {}

    def visit(name: str, trail: list[str]) -> None:
        state[name] = "open"
        for child in sorted(graph[name]):
            assert state.get(child) != "open", f"import cycle: {' -> '.join([*trail, name, child])}"
            if child not in state:
                visit(child, [*trail, name])
        state[name] = "done"

    for name in sorted(graph):
        if name not in state:
            visit(name, [])


# The layers, bottom up: a sub-package may import its own layer and those below, never one above. retrieval/ and
# llm/ are the two endpoints' engines (neither knows a request's shape); api/ is the top the handlers import.
LAYERS = [
    {"config", "runtime", "compilation"},
    {"ingest", "embedding"},
    {"index"},
    {"retrieval", "llm"},
    {"api"},
]


def test_sub_packages_import_only_their_layer_and_those_below() -> None:
    level = {room: i for i, layer in enumerate(LAYERS) for room in layer}
    upward = []
    for name, path in modules().items():
        parts = name.split(".")
        if len(parts) < 2 or parts[1] not in level:
            continue  # the package itself
        for imported in imports(path):
            target = imported.split(".")[1] if "." in imported else None
            if target in level and level[target] > level[parts[1]]:
                upward.append(f"{name} imports {imported}")
    assert not upward, upward
    assert set(level) == {name.split(".")[1] for name in modules() if "." in name}, "a sub-package has no layer"


def test_the_package_docstring_lists_every_module() -> None:
    listed = ragserve.__doc__
    missing = [
        name for name, path in modules().items() if path.name != "__init__.py" and
        str(path.relative_to(PACKAGE)) not in listed
    ]  # fmt: skip
    assert not missing, f"not in ragserve/__init__.py's module list: {missing}"


def test_nothing_edits_sys_path() -> None:
    offenders = [
        str(path.relative_to(ROOT))
        for folder in ("handlers", "scripts", "benchmarks", "tests")
        for path in (ROOT / folder).rglob("*.py")
        if "results" not in path.parts and "sys.path." + "insert" in path.read_text()
    ]
    assert not offenders


MAX_MODULE_LINES = 350  # past it a module holds more than one job: split it by what it does


def test_no_module_is_over_350_lines() -> None:
    long = {
        str(path.relative_to(ROOT)): lines
        for folder in ("ragserve", "ragserve_ops")
        for path in (PACKAGE.parent / folder).rglob("*.py")
        if (lines := len(path.read_text().splitlines())) > MAX_MODULE_LINES
    }
    assert not long, f"modules over {MAX_MODULE_LINES} lines: {long}"
