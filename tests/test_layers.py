"""The package's layers: every module imports, imports point down the layers only, and no
module imports itself back through others (no circles).

The layer order is written here once; `docs/architecture.md` describes what each layer holds.
Imports under ``if TYPE_CHECKING:`` are for type checkers only and do not count.
"""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

import ims_store

# lowest first: a module may import its own layer and those of lower ranks; the layers of one
# rank (store and objects both read files through access) never import each other
RANKS = ["errors", "format", "access", ("store", "objects"), "write", "fronts", "api"]
RANK = {name: i for i, names in enumerate(RANKS) for name in ((names,) if isinstance(names, str) else names)}
LAYERS = list(RANK)
PACKAGE = Path(ims_store.__file__).parent


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _layer(module: str) -> str:
    parts = module.split(".")
    if len(parts) == 1:
        return "api"  # ims_store/__init__.py: the public API re-exports every layer
    if parts[1] in LAYERS:
        return parts[1]
    raise AssertionError(f"{module} is in no layer: put it in one of {LAYERS[1:-1]}")


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(path: Path) -> set[str]:
    """The ims_store modules ``path`` imports when it runs (at the top or inside functions)."""
    module = _module_name(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.split(".")[0] == "ims_store")
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            if target.split(".")[0] == "ims_store":
                found.add(target)
                # "from .layer import module" names a submodule
                for alias in node.names:
                    if (PACKAGE.parent / target.replace(".", "/") / f"{alias.name}.py").exists():
                        found.add(f"{target}.{alias.name}")
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(path.read_text(), str(path)))
    return found


MODULES = {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


@pytest.mark.parametrize("module", sorted(MODULES))
def test_every_module_imports(module: str) -> None:
    importlib.import_module(module)


@pytest.mark.parametrize("module", sorted(MODULES))
def test_imports_point_down_the_layers(module: str) -> None:
    mine = _layer(module)
    for target in sorted(_imports(MODULES[module])):
        assert target in MODULES, f"{module} imports {target}, which does not exist"
        theirs = _layer(target)
        assert theirs == mine or RANK[theirs] < RANK[mine], (
            f"{module} ({mine}) imports {target} ({theirs}), a layer of "
            + ("the same rank" if RANK[theirs] == RANK[mine] else "a higher rank")
        )


def _assert_no_circle(graph: dict[str, set[str]]) -> None:
    """Fail with the first circle found in an import graph (module -> the modules it imports)."""
    state: dict[str, int] = {}

    def walk(node: str, trail: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                cycle = [*trail[trail.index(nxt) :], nxt]
                raise AssertionError("import circle: " + " -> ".join(cycle))
            if nxt not in state:
                walk(nxt, [*trail, nxt])
        state[node] = 2

    for module in sorted(graph):
        if module not in state:
            walk(module, [module])


def test_no_import_circles() -> None:
    # a submodule's import runs its packages' __init__ first, but a package importing its own
    # submodule (to re-export it) is not a circle of the submodule's making
    _assert_no_circle({m: {t for t in _imports(p) if t != m} for m, p in MODULES.items()})


def test_the_layer_table_knows_every_layer_folder() -> None:
    folders = {p.name for p in PACKAGE.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    assert folders == set(LAYERS[1:-1])


def _all_imports(path: Path) -> set[str]:
    """Every ims_store module ``path`` names in an import, type-checking imports included."""
    module = _module_name(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.split(".")[0] == "ims_store")
        elif isinstance(node, ast.ImportFrom):
            base = package.split(".")[: len(package.split(".")) - (node.level - 1)] if node.level else []
            target = ".".join([*base, node.module] if node.module else base) if node.level else node.module or ""
            if target.split(".")[0] == "ims_store":
                found.add(target)
                for alias in node.names:
                    if f"{target}.{alias.name}" in MODULES:
                        found.add(f"{target}.{alias.name}")
    return found


def _private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


@pytest.mark.parametrize("module", sorted(MODULES))
def test_no_module_imports_another_modules_private_name(module: str) -> None:
    """A name another module uses is public in its own module (with a docstring)."""
    tree = ast.parse(MODULES[module].read_text())
    taken = [
        f"{node.module or '.'}.{alias.name}"
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom)
        for alias in node.names
        if _private(alias.name) and (node.level or (node.module or "").split(".")[0] == "ims_store")
    ]
    assert not taken, f"{module} imports private names of other modules: {taken}"


def _defined_private(tree: ast.AST) -> set[str]:
    """The private names a module defines: functions, classes, and attributes it assigns on ``self``."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and _private(node.name):
            names.add(node.name)
        elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store) and _private(node.attr):
            if isinstance(node.value, ast.Name) and node.value.id == "self":
                names.add(node.attr)
    return names


TREES = {m: ast.parse(p.read_text()) for m, p in MODULES.items()}
DEFINED = {m: _defined_private(t) for m, t in TREES.items()}


@pytest.mark.parametrize("module", sorted(MODULES))
def test_no_module_reaches_into_another_modules_privates(module: str) -> None:
    """``obj._name`` on anything but ``self`` / ``cls``, where ``_name`` is a private name another
    module of the package defines and this one does not: a seam missing a public name."""
    elsewhere = set().union(*(names for m, names in DEFINED.items() if m != module)) - DEFINED[module]
    reached = sorted(
        {
            f"{ast.unparse(node)} (line {node.lineno})"
            for node in ast.walk(TREES[module])
            if isinstance(node, ast.Attribute)
            and _private(node.attr)
            and node.attr in elsewhere
            and not (isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"))
        }
    )
    assert not reached, f"{module} uses private names of other modules: {reached}"


def test_no_import_circles_within_a_folder() -> None:
    """No circle among one folder's modules, counting imports made only for type checkers and
    those inside functions: a module that names another's types and is imported back by it
    is one job split across two modules, or two jobs without a seam between them."""
    folders: dict[str, list[str]] = {}
    for module in MODULES:
        folders.setdefault(module.rpartition(".")[0] if module.count(".") > 1 else module, []).append(module)
    for members in folders.values():
        inside = set(members)
        _assert_no_circle({m: {t for t in _all_imports(MODULES[m]) if t in inside and t != m} for m in members})
