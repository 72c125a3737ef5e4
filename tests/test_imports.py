"""The house: the modules of reports/ import one another without a circle, and none imports another
inside a function to dodge one; the two apps keep to their rooms."""

import ast
from pathlib import Path

from tests.helpers import ROOT

APP = ROOT / "reports"
MODULES = {
    ".".join(path.relative_to(ROOT).with_suffix("").parts): path
    for path in sorted(APP.rglob("*.py"))
    if "migrations" not in path.parts and path.name != "__init__.py"
}


def imported(module: str, path: Path, *, top_level: bool) -> set[str]:
    """The reports modules that `module` imports (at its top level, or inside functions)."""
    tree = ast.parse(path.read_text())
    package = module.rsplit(".", 1)[0]
    nodes = (
        tree.body if top_level else [n for f in ast.walk(tree) if isinstance(f, ast.FunctionDef) for n in ast.walk(f)]
    )
    found = set()
    for node in nodes:
        if isinstance(node, ast.If) and getattr(node.test, "id", "") == "TYPE_CHECKING":
            continue
        if isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(
                    package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else [])
                )
            names = [f"{base}.{alias.name}" for alias in node.names] + [base]
            found.update(name for name in names if name in MODULES)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name in MODULES)
    return found - {module}


def test_the_import_graph_of_reports_has_no_circle():
    graph = {module: imported(module, path, top_level=True) for module, path in MODULES.items()}
    visiting, done = [], set()

    def visit(module):
        if module in done:
            return
        assert module not in visiting, "import circle: " + " → ".join([*visiting[visiting.index(module) :], module])
        visiting.append(module)
        for dependency in graph[module]:
            visit(dependency)
        visiting.pop()
        done.add(module)

    for module in graph:
        visit(module)


def test_no_module_imports_another_inside_a_function():
    # AppConfig.ready() is where Django wants app-loading imports
    allowed = {"reports.apps"}
    inside = {module: imported(module, path, top_level=False) for module, path in MODULES.items()}
    assert {module: found for module, found in inside.items() if found and module not in allowed} == {}


def test_notifications_imports_nothing_of_reports_and_reports_only_its_services():
    for path in (ROOT / "notifications").rglob("*.py"):
        assert "reports" not in {
            n.module.split(".")[0]
            for n in ast.walk(ast.parse(path.read_text()))
            if isinstance(n, ast.ImportFrom) and n.module
        }, path
    for path in APP.rglob("*.py"):
        used = {n.module for n in ast.walk(ast.parse(path.read_text())) if isinstance(n, ast.ImportFrom) and n.module}
        assert {m for m in used if m.startswith("notifications")} <= {"notifications.services"}, path


def test_settings_are_read_at_use_time_with_their_defaults(settings):
    from reports import conf

    del settings.REPORTS_CHUNK_SIZE
    assert conf.DEFAULTS["REPORTS_CHUNK_SIZE"] == conf.REPORTS_CHUNK_SIZE
    settings.REPORTS_CHUNK_SIZE = 7
    assert conf.REPORTS_CHUNK_SIZE == 7
