"""Layout guards for the ``trecvit`` source tree, read with ``ast`` only (nothing is imported).

What these tests protect:

* **No import circles.** Every ``import`` / ``from ... import`` in every module counts, including the
  lazy ones inside functions and methods (that is exactly where circles get hidden); only imports
  guarded by ``if TYPE_CHECKING:`` are left out, as they never run. A failure lists each circle with
  its files and the ``file:line`` of every import inside it, so it says which import to break.
* **The library never imports the CLI.** ``trecvit.cli`` sits on top of the library; nothing outside
  ``trecvit/cli/`` may import it, not even lazily.
* **Every package explains itself.** Each folder holding ``.py`` files has an ``__init__.py`` whose
  docstring is at least a sentence.
* **Modules stay small.** The project aims at 100-500 lines a file; over ``MAX_LINES`` is a hard fail,
  a sign the file should be split.

The graph builder and cycle finder are themselves tested on a synthetic tree (``test_checker_*``).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).parents[1]
PACKAGE_DIR = REPO / "src" / "trecvit"
CLI = "trecvit.cli"
MAX_LINES = 1000
MIN_DOCSTRING = 60


@dataclass(frozen=True)
class Edge:
    """One import statement: ``source`` imports ``target`` at ``path:line``."""

    source: str
    target: str
    path: Path
    line: int
    text: str
    type_checking: bool = False

    def where(self) -> str:
        """``file:line`` of the import, relative to the repository where possible."""
        return f"{_display(self.path)}:{self.line}"

    def describe(self) -> str:
        """One report line: ``file:line: source -> target   [the import statement]``."""
        return f"{self.where()}: {self.source} -> {self.target}   [{self.text}]"


def _display(path: Path) -> str:
    """``path`` relative to the repository root, or as given when it lies elsewhere."""
    try:
        return path.relative_to(REPO).as_posix()
    except ValueError:
        return path.as_posix()


def python_files(package_dir: Path) -> list[Path]:
    """Every ``.py`` file under ``package_dir``, skipping ``__pycache__``."""
    return sorted(p for p in package_dir.rglob("*.py") if "__pycache__" not in p.parts)


def module_name(path: Path, package_dir: Path) -> str:
    """Dotted name of ``path``; a package's ``__init__.py`` is named after the package."""
    parts = list(path.relative_to(package_dir.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def discover_modules(package_dir: Path) -> dict[str, Path]:
    """Map each dotted module name under ``package_dir`` to its file."""
    return {module_name(p, package_dir): p for p in python_files(package_dir)}


def _is_type_checking(test: ast.expr) -> bool:
    """Whether an ``if`` test is ``TYPE_CHECKING`` or ``typing.TYPE_CHECKING``."""
    if isinstance(test, ast.Name):
        return test.id == "TYPE_CHECKING"
    return isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"


def iter_imports(node: ast.AST, guarded: bool = False) -> Iterator[tuple[ast.Import | ast.ImportFrom, bool]]:
    """Yield ``(import node, under TYPE_CHECKING)`` for every import anywhere below ``node``.

    Walks the whole tree (functions, methods, classes, ``try``/``if`` blocks); only the body of an
    ``if TYPE_CHECKING:`` is flagged as guarded, its ``else`` branch runs and is not.
    """
    for child in ast.iter_child_nodes(node):
        if isinstance(child, (ast.Import, ast.ImportFrom)):
            yield child, guarded
        elif isinstance(child, ast.If) and _is_type_checking(child.test):
            for stmt in child.body:
                yield from _imports_in(stmt, True)
            for stmt in child.orelse:
                yield from _imports_in(stmt, guarded)
        else:
            yield from iter_imports(child, guarded)


def _imports_in(stmt: ast.stmt, guarded: bool) -> Iterator[tuple[ast.Import | ast.ImportFrom, bool]]:
    """``iter_imports`` for one statement, the statement itself included."""
    yield from iter_imports(ast.Module(body=[stmt], type_ignores=[]), guarded)


def _from_base(module: str, is_package: bool, node: ast.ImportFrom) -> str:
    """The absolute module named by ``from <...> import``, resolving relative levels."""
    if node.level == 0:
        return node.module or ""
    parts = module.split(".") if is_package else module.split(".")[:-1]
    parts = parts[: len(parts) - (node.level - 1)]
    return ".".join(parts + ([node.module] if node.module else []))


def _targets(module: str, is_package: bool, node: ast.Import | ast.ImportFrom, known: set[str]) -> list[str]:
    """The modules one import statement points at (before filtering to the package)."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    base = _from_base(module, is_package, node)
    return [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]


def _inside(name: str, top: str) -> bool:
    """Whether dotted ``name`` is ``top`` or lies below it."""
    return name == top or name.startswith(top + ".")


def build_import_graph(package_dir: Path) -> tuple[dict[str, Path], list[Edge]]:
    """Modules and import edges of the package rooted at ``package_dir``.

    Edge rules:

    * every ``import`` / ``from ... import`` statement anywhere in a file counts (module level, inside
      functions, methods, classes, ``try`` blocks); those in an ``if TYPE_CHECKING:`` body are kept
      but flagged ``type_checking=True``;
    * relative imports are resolved against the importing module (a package's ``__init__`` is the
      package itself);
    * ``import a.b.c`` gives an edge to ``a.b.c``;
    * ``from a.b import c`` gives an edge to ``a.b.c`` when that is a module or package in the tree,
      otherwise to ``a.b``;
    * imports of anything outside the package are ignored;
    * no implicit edges to parent packages (importing ``a.b.c`` runs ``a/__init__`` and
      ``a/b/__init__``, but counting that would make every re-exporting ``__init__`` circular).

    One edge per imported name, deduplicated per ``(source, target, line)``.
    """
    top = package_dir.name
    modules = discover_modules(package_dir)
    known = set(modules)
    edges: dict[tuple[str, str, int], Edge] = {}
    for name, path in modules.items():
        source = path.read_text(encoding="utf-8")
        is_package = path.name == "__init__.py"
        for node, guarded in iter_imports(ast.parse(source, filename=str(path))):
            for target in _targets(name, is_package, node, known):
                key = (name, target, node.lineno)
                if _inside(target, top) and key not in edges:
                    text = " ".join((ast.get_source_segment(source, node) or "").split())
                    edges[key] = Edge(name, target, path, node.lineno, text, guarded)
    return modules, sorted(edges.values(), key=lambda e: (e.source, e.line, e.target))


def strongly_connected_components(edges: list[Edge]) -> list[list[str]]:
    """Tarjan's algorithm: the components of the graph that form circles.

    A component counts when it holds two or more modules, or one module that imports itself.
    Each component is sorted; components are returned in sorted order.
    """
    graph: dict[str, list[str]] = {}
    for e in edges:
        graph.setdefault(e.source, []).append(e.target)
        graph.setdefault(e.target, [])
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
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
            if len(component) > 1 or v in graph[v]:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(found)


def find_circles(edges: list[Edge]) -> list[tuple[list[str], list[Edge]]]:
    """Each circle (ignoring ``TYPE_CHECKING`` imports) with the edges that stay inside it."""
    runtime = [e for e in edges if not e.type_checking]
    circles = []
    for component in strongly_connected_components(runtime):
        members = set(component)
        circles.append((component, [e for e in runtime if e.source in members and e.target in members]))
    return circles


def format_circles(circles: list[tuple[list[str], list[Edge]]], modules: dict[str, Path]) -> str:
    """Human-readable report: per circle, its files and every import inside it, as ``file:line``."""
    out = [f"{len(circles)} import circle(s); break one import in each:"]
    for i, (component, inner) in enumerate(circles, 1):
        out.append(f"circle {i}: {' <-> '.join(component)}")
        out.append("  files: " + ", ".join(_display(modules[m]) for m in component if m in modules))
        out.extend(f"  {e.describe()}" for e in inner)
    return "\n".join(out)


def imports_of(edges: list[Edge], target: str) -> list[Edge]:
    """Edges into ``target`` (or any module below it) from modules outside it."""
    return [e for e in edges if _inside(e.target, target) and not _inside(e.source, target)]


# --- the checks on the real tree ---------------------------------------------------------------


def test_no_import_circles():
    modules, edges = build_import_graph(PACKAGE_DIR)
    circles = find_circles(edges)
    if circles:
        pytest.fail(format_circles(circles, modules), pytrace=False)


def test_library_never_imports_the_cli():
    _, edges = build_import_graph(PACKAGE_DIR)
    bad = imports_of(edges, CLI)
    if bad:
        pytest.fail(f"{len(bad)} import(s) of {CLI} from outside trecvit/cli/:\n"
                    + "\n".join(f"  {e.describe()}" for e in bad), pytrace=False)


def test_every_package_has_a_docstring():
    problems = []
    for folder in sorted({p.parent for p in python_files(PACKAGE_DIR)}):
        init = folder / "__init__.py"
        if not init.exists():
            problems.append(f"{_display(folder)}/: holds .py files but has no __init__.py")
            continue
        doc = (ast.get_docstring(ast.parse(init.read_text(encoding="utf-8"))) or "").strip()
        if len(doc) < MIN_DOCSTRING:
            problems.append(f"{_display(init)}: docstring has {len(doc)} chars, want >= {MIN_DOCSTRING}")
    if problems:
        pytest.fail("\n".join(problems), pytrace=False)


def test_modules_stay_small():
    sizes = {p: len(p.read_text(encoding="utf-8").splitlines()) for p in python_files(PACKAGE_DIR)}
    big = {p: n for p, n in sizes.items() if n > MAX_LINES}
    if big:
        pytest.fail(f"modules over {MAX_LINES} lines (aim for 100-500; split them):\n"
                    + "\n".join(f"  {_display(p)}: {n} lines" for p, n in sorted(big.items())), pytrace=False)


# --- self-tests of the checker on a synthetic tree ---------------------------------------------

SYNTHETIC = {
    "__init__.py": '"""Root."""\nfrom .core import run\n',
    "core.py": "import os\nfrom pkg import helpers\n\n\ndef run():\n    return helpers\n",
    "helpers.py": "def late():\n    from .core import run\n    return run\n",
    "selfish.py": "import pkg.selfish\n",
    "typed.py": (
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n"
        "    from pkg.sub.leaf import X\n"
        "else:\n"
        "    from . import helpers\n"
    ),
    "sub/__init__.py": "from ..core import run\nfrom .leaf import X\n",
    "sub/leaf.py": "import pkg.typed\nfrom pkg import run\nX = 1\n\n\nclass A:\n    def m(self):\n        from pkg.cli import main\n",
    "cli/__init__.py": "from pkg.core import (\n    run,\n)\n",
    "cli/main.py": "from ..sub import leaf\n",
}


def _write_tree(root: Path) -> Path:
    """Write ``SYNTHETIC`` as package ``pkg`` under ``root``; return the package folder."""
    package = root / "pkg"
    for rel, text in SYNTHETIC.items():
        (package / rel).parent.mkdir(parents=True, exist_ok=True)
        (package / rel).write_text(text)
    return package


def test_checker_builds_the_expected_edges(tmp_path):
    modules, edges = build_import_graph(_write_tree(tmp_path))
    assert set(modules) == {"pkg", "pkg.core", "pkg.helpers", "pkg.selfish", "pkg.typed", "pkg.sub",
                            "pkg.sub.leaf", "pkg.cli", "pkg.cli.main"}
    got = {(e.source, e.target, e.line, e.type_checking) for e in edges}
    assert got == {
        ("pkg", "pkg.core", 2, False),               # relative re-export
        ("pkg.core", "pkg.helpers", 2, False),       # `from pkg import submodule`; `os` ignored
        ("pkg.helpers", "pkg.core", 2, False),       # relative, inside a function
        ("pkg.selfish", "pkg.selfish", 1, False),
        ("pkg.typed", "pkg.sub.leaf", 3, True),      # TYPE_CHECKING body
        ("pkg.typed", "pkg.helpers", 5, False),      # its else branch runs
        ("pkg.sub", "pkg.core", 1, False),           # two-level relative import
        ("pkg.sub", "pkg.sub.leaf", 2, False),
        ("pkg.sub.leaf", "pkg.typed", 1, False),     # no implicit edge to pkg / pkg.sub
        ("pkg.sub.leaf", "pkg", 2, False),           # `run` is not a module: edge to the package
        ("pkg.sub.leaf", "pkg.cli.main", 8, False),  # inside a method
        ("pkg.cli", "pkg.core", 1, False),
        ("pkg.cli.main", "pkg.sub.leaf", 1, False),
    }


def test_checker_finds_circles_and_reports_their_imports(tmp_path):
    modules, edges = build_import_graph(_write_tree(tmp_path))
    circles = find_circles(edges)
    # pkg.sub.leaf -> pkg.typed -> pkg.sub.leaf only through TYPE_CHECKING: not a circle;
    # pkg.sub.leaf -> pkg.cli.main -> pkg.sub.leaf is one, through a method-level import.
    assert [c for c, _ in circles] == [["pkg.cli.main", "pkg.sub.leaf"], ["pkg.core", "pkg.helpers"],
                                       ["pkg.selfish"]]
    inner = {c[0]: {(e.source, e.target, e.line) for e in es} for c, es in circles}
    assert inner["pkg.core"] == {("pkg.core", "pkg.helpers", 2), ("pkg.helpers", "pkg.core", 2)}
    report = format_circles(circles, modules)
    assert report.startswith("3 import circle(s)")
    assert f"{tmp_path.as_posix()}/pkg/helpers.py:2: pkg.helpers -> pkg.core   [from .core import run]" in report
    assert f"files: {tmp_path.as_posix()}/pkg/core.py, {tmp_path.as_posix()}/pkg/helpers.py" in report


def test_checker_finds_cli_imports(tmp_path):
    _, edges = build_import_graph(_write_tree(tmp_path))
    assert [e.text for e in edges if e.source == "pkg.cli"] == ["from pkg.core import ( run, )"]
    assert [(e.source, e.target, e.line) for e in imports_of(edges, "pkg.cli")] == [
        ("pkg.sub.leaf", "pkg.cli.main", 8)
    ]
