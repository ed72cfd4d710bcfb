"""The shape of the code: symprop's modules import each other without a cycle (imports
inside functions included), and none imports another module's private names."""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "symprop"


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _resolve(module: str, node: ast.ImportFrom) -> str:
    """The absolute name of what ``from ... import`` names, from ``module``."""
    if node.level == 0:
        return node.module or ""
    package = module if MODULES[module].name == "__init__.py" else module.rsplit(".", 1)[0]
    base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
    return f"{base}.{node.module}" if node.module else base


def _imports(module: str):
    """``(imported module, names)`` for every import in ``module``, at any depth."""
    tree = ast.parse(MODULES[module].read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, ()
        elif isinstance(node, ast.ImportFrom):
            target = _resolve(module, node)
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                if sub in MODULES:  # "from . import numeric": the module itself
                    yield sub, ()
                else:
                    yield target, (alias.name,)


def _graph():
    graph = {}
    for module in MODULES:
        graph[module] = {target for target, _ in _imports(module) if target in MODULES and target != module}
    return graph


def test_the_modules_are_found():
    assert {"symprop.functions", "symprop.derive", "symprop.report", "symprop.output",
            "symprop.documents.solution"} <= set(MODULES)


def test_no_import_cycle():
    graph = _graph()
    state, stack = {}, []

    def visit(module):
        state[module] = "open"
        stack.append(module)
        for other in sorted(graph[module]):
            if state.get(other) == "open":
                cycle = stack[stack.index(other):] + [other]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if other not in state:
                visit(other)
        stack.pop()
        state[module] = "done"

    for module in sorted(graph):
        if module not in state:
            visit(module)


def test_the_cycle_detector_sees_a_cycle(tmp_path):
    """The check above can fail: a graph with a back edge is reported."""
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}}
    state = {}

    def has_cycle(module, open_):
        open_.add(module)
        for other in graph[module]:
            if other in open_ or (other not in state and has_cycle(other, open_)):
                return True
        open_.discard(module)
        state[module] = True
        return False

    assert has_cycle("a", set())


def test_no_private_names_imported_from_another_module():
    found = []
    for module in MODULES:
        for target, names in _imports(module):
            if target.startswith("symprop") and target != module:
                found += [f"{module} imports {target}.{n}" for n in names if n.startswith("_") and not n.startswith("__")]
        # module._private attribute reads through an imported module alias
        tree = ast.parse(MODULES[module].read_text(encoding="utf-8"))
        aliases = {}
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                target = _resolve(module, node)
                for alias in node.names:
                    if f"{target}.{alias.name}" in MODULES:
                        aliases[alias.asname or alias.name] = f"{target}.{alias.name}"
        for node in ast.walk(tree):
            if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in aliases
                    and node.attr.startswith("_") and not node.attr.startswith("__")):
                found.append(f"{module} reads {aliases[node.value.id]}.{node.attr}")
    assert not found, "\n".join(found)


def test_the_engine_knows_nothing_of_documents():
    """Compute modules never import the rooms above them (reports, documents, files, CLI)."""
    above = {"symprop.report", "symprop.output", "symprop.quiz", "symprop.cli"} | {m for m in MODULES if m.startswith("symprop.documents")}
    compute = ["symprop.functions", "symprop.graph", "symprop.derive", "symprop.layered", "symprop.numeric",
               "symprop.matrix", "symprop.gates", "symprop.mistakes", "symprop.spec", "symprop.exam", "symprop.grade",
               "symprop.printing"]
    graph = _graph()
    wrong = [(m, t) for m in compute for t in graph[m] if t in above]
    assert not wrong, wrong
