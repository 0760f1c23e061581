"""The package's layering (ARCHITECTURE.md), enforced on the source: a broken rule fails here, naming the import.

Read from the files with ``ast`` (nothing is imported), so a rule holds whatever a test happened to load.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "fastml"

#: Layers, bottom first: a module may import its own layer and those below, never one above.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("fastml.errors", "fastml.types", "fastml._internal", "fastml.report"),
    ("fastml.data",),
    ("fastml.recipe",),
    ("fastml.metrics", "fastml.models"),
    ("fastml.verification",),
    ("fastml.backends",),
    ("fastml.estimate", "fastml.diagnose", "fastml.synth", "fastml.gate", "fastml.export"),
    ("fastml.pipeline",),
    ("fastml.scan",),
    ("fastml.cli", "fastml.commands", "fastml.__main__", "fastml"),
)
#: Where fastml may import its own modules inside a function without saying why on the line: the CLI verbs
#: (``fastml --help`` imports every verb module, so each imports its stage when it runs).
DEFERRED_OK = ("fastml.cli", "fastml.commands")
#: The names the built-in backends are registered under (no module outside ``fastml.backends`` compares with them).
BACKEND_NAMES = ("hls4ml", "rtl", "conifer")


@dataclass(frozen=True)
class Import:
    source: str  # the importing module
    target: str  # the imported module (a package's __init__ under the package name)
    line: int
    in_function: bool
    text: str


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules(root: Path = PACKAGE) -> dict[str, Path]:
    return {module_name(p, root): p for p in sorted(root.rglob("*.py"))}


def _resolve(source: str, is_package: bool, node: ast.ImportFrom, known: dict[str, Path]) -> list[str]:
    if node.level == 0:
        base = node.module or ""
    else:
        parts = source.split(".") if is_package else source.split(".")[:-1]
        parts = parts[: len(parts) - node.level + 1]
        base = ".".join(parts + ([node.module] if node.module else []))
    # ``from pkg import sub`` imports the submodule where one exists
    subs = [f"{base}.{a.name}" for a in node.names if f"{base}.{a.name}" in known]
    return subs or [base]


def imports(root: Path = PACKAGE) -> list[Import]:
    known = _modules(root)
    found: list[Import] = []
    for name, path in known.items():
        src = path.read_text()
        lines = src.splitlines()

        def visit(node: ast.AST, in_function: bool, type_only: bool, name: str = name, path: Path = path,
                   lines: list[str] = lines) -> None:
            for child in ast.iter_child_nodes(node):
                func = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef))
                tc = type_only or (isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test))
                targets: list[str] = []
                if isinstance(child, ast.ImportFrom):
                    targets = _resolve(name, path.name == "__init__.py", child, known)
                elif isinstance(child, ast.Import):
                    targets = [a.name for a in child.names]
                for target in targets:
                    if (target == "fastml" or target.startswith("fastml.")) and not tc:
                        text = "\n".join(lines[child.lineno - 1: child.end_lineno])
                        found.append(Import(name, target, child.lineno, in_function, text))
                visit(child, func, tc)

        visit(ast.parse(src), False, False)
    return found


def layer_of(module: str) -> int:
    best, rank = -1, -1
    for i, layer in enumerate(LAYERS):
        for prefix in layer:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > best:
                best, rank = len(prefix), i
    assert rank >= 0, f"{module} is in no layer of ARCHITECTURE.md: add it to LAYERS"
    return rank


def _ancestors(module: str) -> list[str]:
    """Importing a.b.c runs a.b's __init__ first (the root package's is only lazy names, left out)."""
    parts = module.split(".")
    return [".".join(parts[:i]) for i in range(2, len(parts))]


def upward_imports(root: Path = PACKAGE) -> list[str]:
    return [f"{i.source}:{i.line} imports {i.target} (layer {layer_of(i.source)} -> {layer_of(i.target)})"
            for i in imports(root) if not i.in_function and layer_of(i.target) > layer_of(i.source)]


def import_cycles(root: Path = PACKAGE) -> list[list[str]]:
    graph: dict[str, set[str]] = {m: set() for m in _modules(root)}
    for i in imports(root):
        if not i.in_function:
            for target in (*_ancestors(i.target), i.target):
                if target in graph and target != i.source and not i.source.startswith(target + "."):
                    graph[i.source].add(target)
    # Tarjan's strongly connected components: any component of two or more modules is a cycle
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def connect(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                connect(w)
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
                cycles.append(sorted(component))

    for v in graph:
        if v not in index:
            connect(v)
    return cycles


def unexplained_deferred_imports(root: Path = PACKAGE) -> list[str]:
    return [f"{i.source}:{i.line}: {i.text.strip()}" for i in imports(root)
            if i.in_function and not i.source.startswith(DEFERRED_OK) and "# deferred:" not in i.text]


#: The rules ARCHITECTURE.md names, also for imports inside functions: (importer, what it may never import).
NAMED_RULES = (
    ("fastml.recipe", ("fastml.models", "fastml.backends")),
    ("fastml.models", ("fastml.backends",)),
    ("fastml.backends", ("fastml.pipeline", "fastml.estimate")),
)


def named_rule_breaks(root: Path = PACKAGE) -> list[str]:
    return [f"{i.source}:{i.line} imports {i.target}" for source, forbidden in NAMED_RULES for i in imports(root)
            if (i.source == source or i.source.startswith(source + "."))
            and any(i.target == f or i.target.startswith(f + ".") for f in forbidden)]


def backend_name_branches(root: Path = PACKAGE) -> list[str]:
    found = []
    for name, path in _modules(root).items():
        if name.startswith("fastml.backends.") or name == "fastml._internal.plugins":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Compare):
                for operand in (node.left, *node.comparators):
                    values = operand.elts if isinstance(operand, (ast.Tuple, ast.List, ast.Set)) else [operand]
                    if any(isinstance(v, ast.Constant) and v.value in BACKEND_NAMES for v in values):
                        found.append(f"{name}:{node.lineno}: {ast.unparse(node)}")
    return found


def stray_error_classes(root: Path = PACKAGE) -> list[str]:
    stray = []
    for name, path in _modules(root).items():
        if name == "fastml.errors":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef) and any(
                    ast.unparse(b).split(".")[-1].endswith(("Error", "Exception")) for b in node.bases):
                stray.append(f"{name}.{node.name}")
    return stray


def test_every_module_is_in_a_layer() -> None:
    for module in _modules():
        layer_of(module)


def test_imports_point_down() -> None:
    assert not (found := upward_imports()), "imports that point up the layers:\n" + "\n".join(found)


def test_no_import_cycle() -> None:
    assert not (found := import_cycles()), f"import cycles: {found}"


def test_imports_inside_functions_say_why() -> None:
    assert not (found := unexplained_deferred_imports()), (
        "fastml modules imported inside a function without a '# deferred: <why>' comment (import at the top, or "
        "say which heavy dependency it defers):\n" + "\n".join(found))


def test_named_rules() -> None:
    assert not (found := named_rule_breaks()), "\n".join(found)


def test_no_module_outside_a_backend_branches_on_its_name() -> None:
    assert not (found := backend_name_branches()), (
        "code branching on a backend's name (ask get_backend(name) instead):\n" + "\n".join(found))


def test_every_error_class_is_in_errors() -> None:
    assert not (found := stray_error_classes()), f"error classes outside fastml/errors.py: {found}"


def test_the_checks_find_what_they_look_for(tmp_path: Path) -> None:
    """Each check above, run on a small tree that breaks its rule, reports the break (none is vacuous)."""
    root = tmp_path / "fastml"
    files = {
        "__init__.py": "",
        "errors.py": "class FastmlError(Exception):\n    pass\n",
        "recipe.py": "from .models import kind_of\n",
        "models/__init__.py": "from ..recipe import x\n\ndef kind_of():\n    from ..backends import y\n",
        "backends/__init__.py": "class BadError(ValueError):\n    pass\n",
        "estimate.py": "def f(b):\n    return b.backend == 'rtl'\n",
    }
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    assert upward_imports(root) == ["fastml.recipe:1 imports fastml.models (layer 2 -> 3)"]
    assert import_cycles(root) == [["fastml.models", "fastml.recipe"]]
    assert unexplained_deferred_imports(root) == ["fastml.models:4: from ..backends import y"]
    assert sorted(named_rule_breaks(root)) == ["fastml.models:4 imports fastml.backends",
                                               "fastml.recipe:1 imports fastml.models"]
    assert backend_name_branches(root) == ["fastml.estimate:2: b.backend == 'rtl'"]
    assert stray_error_classes(root) == ["fastml.backends.BadError"]
