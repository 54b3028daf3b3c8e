"""The package's import graph has no cycle and every import points down a floor (docs/ARCHITECTURE.md,
"Floors"): every module is parsed with `ast`, and every import counts — module level, inside functions,
under `if TYPE_CHECKING:` — so a lazy import cannot hide a loop or an upward edge.

An edge goes to the module an import names: `from pkg import name` to `pkg.name` when that is a module,
to the submodule a lazy package `__init__` maps `name` to in its `_EXPORTS` table, else to `pkg` itself.
Importing `a.b.c` also runs `a/__init__` and `a/b/__init__`; those are not edges (a package's own
modules import siblings by their full names all the time), only what `__init__` itself imports is.
"""

from __future__ import annotations

import ast
import functools
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("adu_depth_core", "adu_depth_ros")

# Floors, bottom up (docs/ARCHITECTURE.md); `adu_depth_ros` sits on floor 3. A module may import its own
# floor and those below.
FLOORS = {
    0: ("paths", "fileio", "vocab", "depth_traits"),  # torch-free, stdlib (+ numpy): importable anywhere
    1: ("config", "checkpoint", "geometry", "sysinfo", "models", "distill", "evaluation"),
    2: ("data", "runtime"),
    3: ("train", "evaluate", "eval_run", "eval_bag"),
    4: ("demo", "demo_report"),
    5: ("cli", "commands"),
}


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, tuple[Path, ast.Module]]:
    out = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            out[_module_name(path)] = (path, ast.parse(path.read_text(), filename=str(path)))
    return out


def _lazy_exports(tree: ast.Module) -> dict[str, str]:
    """A package `__init__`'s `_EXPORTS = {"Name": "submodule", ...}` (names resolved on first use)."""
    for node in tree.body:
        if (
            isinstance(node, ast.Assign)
            and any(isinstance(t, ast.Name) and t.id == "_EXPORTS" for t in node.targets)
            and isinstance(node.value, ast.Dict)
        ):
            return {
                k.value: v.value
                for k, v in zip(node.value.keys, node.value.values)
                if isinstance(k, ast.Constant) and isinstance(v, ast.Constant)
            }
    return {}


@functools.cache
def import_graph() -> dict[str, set[str]]:
    modules = _modules()
    exports = {n: _lazy_exports(tree) for n, (path, tree) in modules.items() if path.name == "__init__.py"}
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, (path, tree) in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(tree):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                    base = ".".join([*anchor, *([base] if base else [])])
                for alias in node.names:
                    full = f"{base}.{alias.name}"
                    if full in modules:
                        targets.append(full)
                    elif alias.name in exports.get(base, {}):
                        targets.append(f"{base}.{exports[base][alias.name]}")
                    else:
                        targets.append(base)
            graph[name].update(t for t in targets if t in modules and t != name)
    return graph


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(out)


def _describe(component: list[str], graph: dict[str, set[str]]) -> str:
    members = set(component)
    edges = [f"{a} -> {b}" for a in component for b in sorted(graph[a] & members)]
    return "{" + ", ".join(component) + "}: " + "; ".join(edges)


def floor_of(module: str) -> int:
    if module == "adu_depth_core":  # the version, nothing else
        return 0
    if module.startswith("adu_depth_ros"):
        return 3
    top = module.split(".")[1]
    for floor, names in FLOORS.items():
        if top in names:
            return floor
    raise AssertionError(f"{module} is on no floor: add it to FLOORS (and to docs/ARCHITECTURE.md)")


def upward_imports(graph: dict[str, set[str]]) -> list[tuple[str, str]]:
    return [
        (a, b) for a in sorted(graph) for b in sorted(graph[a]) if floor_of(b) > floor_of(a)
    ]


def test_the_graph_sees_lazy_and_relative_imports():
    graph = import_graph()
    assert "adu_depth_core.runtime.estimator" in graph["adu_depth_core.runtime"]  # `from .estimator import`
    assert "adu_depth_core.train.run" in graph["adu_depth_core.commands.train"]  # inside run()
    assert "adu_depth_core.data.factory" in graph["adu_depth_core.train.engine"]
    assert find_cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_import_cycle():
    graph = import_graph()
    cycles = find_cycles(graph)
    assert not cycles, "import cycles:\n" + "\n".join(_describe(c, graph) for c in cycles)


def test_imports_point_down_the_floors():
    upward = upward_imports(import_graph())
    assert not upward, "imports from a lower floor to a higher one:\n" + "\n".join(
        f"{a} (floor {floor_of(a)}) -> {b} (floor {floor_of(b)})" for a, b in upward
    )
