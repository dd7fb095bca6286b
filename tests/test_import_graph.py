"""The package's import graph: no cycle among ``monai_inr`` modules, every import goes down the layers
(errors < coords < io < transforms < networks, losses, metrics < inferers < data < engines, evaluation), and
``monai_inr`` never imports ``preprocessing``.

Imports are read with :mod:`ast` from every module of the package (module level and inside functions alike, so a cycle
cannot hide behind a function-local import). ``from a.b import c`` is an edge to ``a.b.c`` when that is a module, else
to ``a.b``; a package's ``__init__`` importing its own submodules is an edge like any other (so a submodule importing
names from its own package's ``__init__`` is a cycle), but the implicit import of a parent package when a submodule is
imported is not counted (Python resolves that without a cycle).
"""

from __future__ import annotations

import ast
from pathlib import Path

import monai_inr

ROOT = Path(monai_inr.__file__).resolve().parent


def _module_name(path: Path) -> str:
    rel = path.relative_to(ROOT.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(ROOT.rglob("*.py"))}


def _resolve(name: str, modules: dict[str, Path]) -> str | None:
    """The longest prefix of ``name`` that is a ``monai_inr`` module."""
    parts = name.split(".")
    for i in range(len(parts), 0, -1):
        cand = ".".join(parts[:i])
        if cand in modules:
            return cand
    return None


def _imports(module: str, path: Path, modules: dict[str, Path] | None = None) -> list[str]:
    """Absolute names imported by a module (relative imports resolved; ``from pkg import sub`` names ``pkg.sub``
    alone when ``sub`` is a module, ``pkg`` otherwise)."""
    modules = _modules() if modules is None else modules
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    out: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.extend(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            for a in node.names:
                sub = f"{mod}.{a.name}"
                out.append(sub if sub in modules else mod)
    return out


def import_graph() -> dict[str, set[str]]:
    """``module -> modules of monai_inr it imports`` (self-edges dropped)."""
    modules = _modules()
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        edges = set()
        for imported in _imports(name, path, modules):
            target = _resolve(imported, modules)
            if target is not None and target != name:
                edges.add(target)
        graph[name] = edges
    return graph


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every strongly connected component with more than one module (Tarjan), each as a sorted list."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                cycles.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return cycles


def test_detector_finds_a_cycle():
    assert find_cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert find_cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycle_among_monai_inr_modules():
    cycles = find_cycles(import_graph())
    assert not cycles, "import cycles: " + "; ".join(" <-> ".join(c) for c in cycles)


def test_monai_inr_does_not_import_preprocessing():
    offenders = sorted(
        f"{name} imports {imported}"
        for name, path in _modules().items()
        for imported in _imports(name, path)
        if imported == "preprocessing" or imported.startswith("preprocessing.")
    )
    assert not offenders, "; ".join(offenders)


#: the package's layers, bottom to top: a module may import its own layer and the layers below, never one above
LAYERS = {
    "errors": 0,
    "coords": 1,
    "io": 2,
    "transforms": 3,
    "networks": 4,
    "losses": 4,
    "metrics": 4,
    "inferers": 5,
    "data": 6,
    "engines": 7,
    "evaluation": 7,
    "demo": 8,
    "cli": 8,
}


def _layer(module: str) -> tuple[str, int | None]:
    parts = module.split(".")
    top = parts[1] if len(parts) > 1 else ""
    return top, LAYERS.get(top, 99 if not top else None)


def test_every_subpackage_has_a_layer():
    unknown = sorted({_layer(m)[0] for m in _modules() if _layer(m)[1] is None})
    assert not unknown, f"add {unknown} to LAYERS in tests/test_import_graph.py"


def test_no_module_imports_a_higher_layer():
    upward = sorted(
        f"{a} imports {b}"
        for a, targets in import_graph().items()
        for b in targets
        if _layer(a)[1] is not None and _layer(b)[1] is not None and _layer(b)[1] > _layer(a)[1] and _layer(b)[1] != 99
    )
    assert not upward, "; ".join(upward)
