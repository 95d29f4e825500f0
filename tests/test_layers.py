"""The layering of docs/architecture.md, checked on the source: imports only point down, no cycles, and
faces (tools, widgets) reach lower layers only through their public packages (nrt_lab.monitor above all).

Every import counts — module level, inside functions (lazy imports) and under ``TYPE_CHECKING`` — because a
lazy or type-only import that points up is still an upward dependency.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "nrt_lab"

# Rank of each top-level part of nrt_lab: a module may import parts of lower or equal rank (equal only within
# its own part), never higher.
RANKS: dict[str, int] = {
    "errors": 0,
    "hardware": 1,
    "kernels": 1,
    "driver": 2,
    "neff": 2,
    "runtime": 3,
    "compiler": 3,
    "monitor": 4,
    "models": 4,  # demo NEFFs (neff + numpy only): below cluster, whose demo job runs them
    "nrt": 5,
    "nrtpy": 5,
    "tools": 6,
    "widgets": 6,
    "legacy": 5,  # below tools: nrt-lab pkg|systemctl|migrate-check and neuron-monitor/top use it
    "cluster": 5,  # Ray clusters of emulated nodes; below tools and widgets, which show them
    "plot": 7,  # static figures: a face over the widgets' figure code
    "__init__": 7,
}
# Parts that import nothing of nrt_lab at all (pure data; array math).
SELF_CONTAINED = {"hardware", "kernels", "errors"}
# Faces see lower layers only through these public packages, never through their submodules.
FACES = {"tools", "widgets", "legacy", "cluster", "plot"}
FACE_MAY_IMPORT_SUBMODULES_OF = {"monitor", "tools", "widgets", "legacy", "cluster", "hardware"}


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> list[tuple[int, str]]:
    """Every nrt_lab module imported by ``path`` (absolute names), with its line number."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = _module_name(path) if path.name == "__init__.py" else _module_name(path).rpartition(".")[0]
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names if alias.name.startswith("nrt_lab")]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            if not module.startswith("nrt_lab"):
                continue
            found.append((node.lineno, module))
            # ``from nrt_lab.driver import locks`` imports the submodule nrt_lab.driver.locks.
            for alias in node.names:
                candidate = PACKAGE.parent / Path(*f"{module}.{alias.name}".split("."))
                if candidate.with_suffix(".py").is_file() or (candidate / "__init__.py").is_file():
                    found.append((node.lineno, f"{module}.{alias.name}"))
    return found


def _part(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


SOURCES = sorted(PACKAGE.rglob("*.py"))
GRAPH: dict[str, list[tuple[int, str]]] = {_module_name(p): _imports(p) for p in SOURCES}


def test_every_part_has_a_rank() -> None:
    unranked = {_part(m) for m in GRAPH} - RANKS.keys()
    assert not unranked, f"give these parts of nrt_lab a layer in RANKS (and in docs/architecture.md): {unranked}"


def test_imports_only_point_down() -> None:
    problems = []
    for module, imports in GRAPH.items():
        mine = _part(module)
        for line, target in imports:
            theirs = _part(target)
            if theirs == mine:
                continue
            if mine in SELF_CONTAINED:
                problems.append(f"{module}:{line} imports {target}: {mine} imports nothing of nrt_lab")
            elif RANKS[theirs] >= RANKS[mine]:
                problems.append(f"{module}:{line} imports {target} (layer {theirs} is not below {mine})")
    assert not problems, "\n".join(problems)


def test_faces_use_public_packages_only() -> None:
    problems = []
    for module, imports in GRAPH.items():
        if _part(module) not in FACES:
            continue
        for line, target in imports:
            parts = target.split(".")
            if len(parts) > 2 and parts[1] not in FACE_MAY_IMPORT_SUBMODULES_OF:
                problems.append(f"{module}:{line} imports {target}: use nrt_lab.{parts[1]} or nrt_lab.monitor")
    assert not problems, "\n".join(problems)


def test_no_import_cycles() -> None:
    """Between modules, a package's ``__init__`` re-exporting its own submodules does not count as a cycle."""
    edges: dict[str, set[str]] = {m: set() for m in GRAPH}
    for module, imports in GRAPH.items():
        for _line, target in imports:
            if target not in GRAPH or target == module:
                continue
            if module.startswith(target + "."):  # a submodule importing its own package's public names
                continue
            edges[module].add(target)
    cycles: list[list[str]] = []
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(edges[node]):
            if state.get(nxt) == 1:
                cycles.append(stack[stack.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for node in sorted(edges):
        if node not in state:
            visit(node)
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)


@pytest.mark.parametrize("part", sorted(SELF_CONTAINED))
def test_self_contained_parts_exist(part: str) -> None:
    assert any(_part(m) == part for m in GRAPH)
