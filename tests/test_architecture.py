"""The import rules of the code base, checked on the real import graph (grimp).

- No import cycles among the modules of ``middleware``, ``jobs``, ``schemas`` and ``sandbox``
  (imports inside functions count: deferring an import does not remove a cycle).
- Nothing under ``middleware`` imports ``sandbox``: the product never depends on its test double.
- Nothing outside ``middleware.web`` imports it: the CLI, the jobs and the coming dashboard call
  the operations, not the views. (``app.py``, the composition root that registers the web
  blueprints, is not a package and is not in the graph.)

- The rooms of ``middleware`` import downwards only, in the layers of ``LAYERS``
  (docs/architecture.md draws them); rooms marked independent never import each other.
- The rules (``middleware.sync``) stay pure: no HTTP, Redis, SQL, queue or web library.
- No imports inside functions, but where a heavy import is deferred on purpose: the line before
  says so with a comment that starts ``# Deferred``.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import grimp
import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("middleware", "jobs", "schemas", "sandbox")


# Highest first; docs/architecture.md explains each room.
LAYERS = (
    grimp.Layer("cli", "web", independent=True),
    grimp.Layer("listener"),
    grimp.Layer("services"),
    grimp.Layer("sync_now", "fullsync", "results", independent=True),
    grimp.Layer("sf_to_cc", "cc_to_sf", independent=True),
    grimp.Layer("runner"),
    grimp.Layer(
        "connections",
        "api_budget",
        "context",
        "outcome",
        "intake",
        "metrics",
        "embedded_worker",
        "extension",
        independent=False,
    ),
    grimp.Layer("workers"),
    grimp.Layer("queue"),
    grimp.Layer("salesforce", "constantcontact", independent=True),
    grimp.Layer("store", "oauth_tokens", independent=True),
    grimp.Layer("vendor_errors", "settings", "logging", independent=False),
    grimp.Layer("sync"),
)
IO_LIBRARIES = ("requests", "redis", "rq", "sqlalchemy", "flask", "simple_salesforce", "werkzeug")


@pytest.fixture(scope="module")
def graph() -> grimp.ImportGraph:
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    return grimp.build_graph(*PACKAGES, exclude_type_checking_imports=True, cache_dir=None)


def _under(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def import_cycles(graph: grimp.ImportGraph) -> set[frozenset[str]]:
    """Every direct import ``a -> b`` for which ``b`` also leads back to ``a``, as ``{a, b}``."""
    cycles = set()
    for importer in graph.modules:
        for imported in graph.find_modules_directly_imported_by(importer):
            if imported != importer and graph.chain_exists(importer=imported, imported=importer):
                cycles.add(frozenset({importer, imported}))
    return cycles


def _show(pairs: set[frozenset[str]]) -> list[str]:
    return sorted(" <-> ".join(sorted(pair)) for pair in pairs)


def test_there_are_no_import_cycles(graph: grimp.ImportGraph) -> None:
    assert not (cycles := import_cycles(graph)), f"import cycles: {_show(cycles)}"


def test_the_rooms_import_downwards_only(graph: grimp.ImportGraph) -> None:
    illegal = graph.find_illegal_dependencies_for_layers(layers=LAYERS, containers={"middleware"})
    found = sorted(
        f"{dep.importer} -> {dep.imported}: {sorted(route.heads)} -> {sorted(route.tails)}"
        for dep in illegal
        for route in dep.routes
    )
    assert not found, f"imports against the layers: {found}"


def test_the_rules_do_no_io() -> None:
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    graph = grimp.build_graph("middleware", include_external_packages=True, cache_dir=None)
    found = sorted(
        f"{importer} -> {imported}"
        for importer in graph.modules
        if _under(importer, "middleware.sync")
        for imported in graph.find_modules_directly_imported_by(importer)
        if imported.split(".")[0] in IO_LIBRARIES
    )
    assert not found, f"the pure rules import I/O libraries: {found}"


def test_the_middleware_never_imports_the_sandbox(graph: grimp.ImportGraph) -> None:
    found = sorted(
        f"{importer} -> {imported}"
        for importer in graph.modules
        if _under(importer, "middleware")
        for imported in graph.find_modules_directly_imported_by(importer)
        if _under(imported, "sandbox")
    )
    assert not found


def test_only_the_web_package_imports_the_web_package(graph: grimp.ImportGraph) -> None:
    importers = {
        importer
        for importer in graph.modules
        if not _under(importer, "middleware.web")
        for imported in graph.find_modules_directly_imported_by(importer)
        if _under(imported, "middleware.web")
    }
    assert not importers, f"import middleware.web from outside it: {sorted(importers)}"


def imports_inside_functions(root: Path) -> list[str]:
    """``path:line`` of every import inside a function not preceded by a ``# Deferred`` comment."""
    found = []
    for path in sorted(root.rglob("*.py")):
        lines = path.read_text().splitlines()
        for node in ast.walk(ast.parse("\n".join(lines))):
            if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            for inner in ast.walk(node):
                if isinstance(inner, ast.Import | ast.ImportFrom) and not _deferred(
                    lines, inner.lineno
                ):
                    found.append(f"{path.relative_to(root.parent)}:{inner.lineno}")
    return found


def _deferred(lines: list[str], lineno: int) -> bool:
    # The comment block just above the import (or above the group of imports it belongs to).
    for line in reversed(lines[: lineno - 1]):
        text = line.strip()
        if text.startswith("# Deferred"):
            return True
        if not (text.startswith("#") or text.startswith(("import ", "from "))):
            return False
    return False


def test_imports_sit_at_the_top_unless_deferred_on_purpose() -> None:
    found = [hit for package in PACKAGES for hit in imports_inside_functions(ROOT / package)]
    assert not found, f"imports inside functions (say '# Deferred ...' if on purpose): {found}"


def test_the_function_import_check_sees_an_unmarked_import(tmp_path: Path) -> None:
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "m.py").write_text(
        "def f():\n    import json\n\n\n"
        "def g():\n    # Deferred: heavy,\n    # say why.\n    import csv\n    import io\n"
    )
    assert imports_inside_functions(pkg) == ["pkg/m.py:2"]


def test_a_cycle_is_found_however_long_and_however_the_import_is_written(tmp_path: Path) -> None:
    # The checker itself: a three-module cycle closed by an import inside a function.
    pkg = tmp_path / "cyclepkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from cyclepkg import b\n")
    (pkg / "b.py").write_text("import cyclepkg.c\n")
    (pkg / "c.py").write_text("def f():\n    from cyclepkg import a\n")
    (pkg / "d.py").write_text("from cyclepkg import a\n")
    sys.path.insert(0, str(tmp_path))
    try:
        found = import_cycles(grimp.build_graph("cyclepkg", cache_dir=None))
    finally:
        sys.path.remove(str(tmp_path))
    # d imports a but nothing leads back to d: not a cycle.
    assert found == {
        frozenset({"cyclepkg.a", "cyclepkg.b"}),
        frozenset({"cyclepkg.b", "cyclepkg.c"}),
        frozenset({"cyclepkg.c", "cyclepkg.a"}),
    }


def test_the_architecture_page_names_every_room() -> None:
    page = (ROOT / "docs" / "architecture.md").read_text()
    rooms = [room for layer in LAYERS for room in layer.module_tails]
    missing = [r for r in rooms if f"`{r}/`" not in page and f"`{r}.py`" not in page]
    assert not missing, f"docs/architecture.md lacks the rooms {missing}"
