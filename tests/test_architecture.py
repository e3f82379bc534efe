"""The package's shape: layered subpackages, no import cycles, no private names across modules."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PKG = "napari_wellzarr"
#: What each subpackage may import from the package (besides itself and ``errors``).
LAYERS = {
    "storage": set(),
    "convert": {"storage"},
    "openhcs": {"storage", "convert.naming"},
    "testing": {"storage", "convert"},
    "plugin": {"storage", "convert", "openhcs", "testing"},
}
MAX_LINES = 800


def _modules() -> dict[str, Path]:
    out = {}
    for path in sorted((SRC / PKG).rglob("*.py")):
        parts = path.relative_to(SRC).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = path
    return out


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _runtime_nodes(tree: ast.AST) -> list[ast.AST]:
    """Every node outside ``if TYPE_CHECKING:`` blocks."""
    out: list[ast.AST] = []
    stack = [tree]
    while stack:
        node = stack.pop()
        out.append(node)
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child):
                stack.extend(child.orelse)
                continue
            stack.append(child)
    return out


def _package_of(module: str, path: Path) -> str:
    return module if path.name == "__init__.py" else module.rpartition(".")[0]


def _imports(
    module: str, path: Path, *, type_checking: bool = True, source: str | None = None
) -> list[tuple[str, str, int]]:
    """``(imported module, imported name or "", line)`` of each import of the package.

    Imports under ``if TYPE_CHECKING:`` count unless ``type_checking`` is false.
    """
    modules = _modules()
    tree = ast.parse(path.read_text() if source is None else source, str(path))
    out = []
    for node in ast.walk(tree) if type_checking else _runtime_nodes(tree):
        if isinstance(node, ast.Import):
            out += [(a.name, "", node.lineno) for a in node.names if a.name.startswith(PKG)]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                pkg = _package_of(module, path).split(".")
                base = ".".join(pkg[: len(pkg) - node.level + 1] + ([base] if base else []))
            if not base.startswith(PKG):
                continue
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                out.append(
                    (sub, "", node.lineno) if sub in modules else (base, alias.name, node.lineno)
                )
    return out


def _graph(*, type_checking: bool = True) -> dict[str, set[str]]:
    return {
        m: {target for target, _, _ in _imports(m, p, type_checking=type_checking)} - {m}
        for m, p in _modules().items()
    }


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in graph:
                continue
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))
    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_no_import_cycles() -> None:
    """No cycle, counting imports inside functions and under ``TYPE_CHECKING`` too."""
    assert _cycles(_graph()) == []


def _private_uses(module: str, path: Path, source: str | None = None) -> list[str]:
    """Private names of other modules that ``module`` imports or reads as attributes.

    A private *module* (napari's ``_reader``) may be imported inside its own package.
    """
    found = []
    package = _package_of(module, path)
    for target, name, line in _imports(module, path, source=source):
        leaf = target.rpartition(".")[2]
        if name.startswith("_") and not name.startswith("__"):
            found.append(f"{module}:{line} imports {name} from {target}")
        elif not name and leaf.startswith("_") and target.rpartition(".")[0] != package:
            found.append(f"{module}:{line} imports the private module {target}")
    return found + _private_attributes(module, path, source)


def test_no_private_names_imported_across_modules() -> None:
    found = [f for module, path in _modules().items() for f in _private_uses(module, path)]
    assert found == []


def _private_attributes(module: str, path: Path, source: str | None = None) -> list[str]:
    """``alias._name`` where ``alias`` is a module of the package imported here."""
    tree = ast.parse(path.read_text() if source is None else source, str(path))
    aliases = set()
    modules = _modules()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith(PKG):
            for alias in node.names:
                if f"{node.module}.{alias.name}" in modules:
                    aliases.add(alias.asname or alias.name)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith(PKG) and alias.asname:
                    aliases.add(alias.asname)
    return [
        f"{module}:{node.lineno} uses {node.value.id}.{node.attr}"
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute)
        and isinstance(node.value, ast.Name)
        and node.value.id in aliases
        and node.attr.startswith("_")
        and not node.attr.startswith("__")
    ]


def _subpackage(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 2 or (len(parts) == 2 and parts[1] in LAYERS) else ""


@pytest.mark.parametrize("layer", sorted(LAYERS))
def test_layers_import_only_what_is_below_them(layer: str) -> None:
    allowed = {f"{PKG}.{a}" for a in LAYERS[layer] | {layer}} | {f"{PKG}.errors", PKG}
    found = []
    for module, path in _modules().items():
        if _subpackage(module) != layer:
            continue
        for target, _, line in _imports(module, path):
            if not any(target == a or target.startswith(a + ".") for a in allowed):
                found.append(f"{path.relative_to(SRC)}:{line} imports {target}")
    assert found == []


def test_no_module_over_the_size_limit() -> None:
    sizes = {m: len(p.read_text().splitlines()) for m, p in _modules().items()}
    assert {m: n for m, n in sizes.items() if n > MAX_LINES} == {}


def test_module_docstrings_are_short() -> None:
    long = {}
    for module, path in _modules().items():
        doc = ast.get_docstring(ast.parse(path.read_text())) or ""
        if not doc or len(doc.splitlines()) > 3:
            long[module] = len(doc.splitlines())
    assert long == {}


def test_the_checks_see_a_cycle_and_a_private_import(tmp_path: Path) -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert _cycles(graph) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []
    fake = SRC / PKG / "convert" / "fake.py"
    bad = (
        "from napari_wellzarr.convert.naming import _COORD_GROUPS\n"
        "from napari_wellzarr.storage import fsio\n"
        "fsio._private()\n"
        "from napari_wellzarr.plugin import _reader\n"
    )
    found = _private_uses(f"{PKG}.convert.fake", fake, bad)
    assert [f.split(" ", 1)[1] for f in found] == [
        "imports _COORD_GROUPS from napari_wellzarr.convert.naming",
        "imports the private module napari_wellzarr.plugin._reader",
        "uses fsio._private",
    ]
    ok = "from napari_wellzarr.plugin import _reader\n"
    assert _private_uses(f"{PKG}.plugin.fake", SRC / PKG / "plugin" / "fake.py", ok) == []
