"""One way down: the package's import graph (read with ``ast``, every import at module level or inside a function)
has no cycle and no upward import, and the entry points use no other module's ``_private`` names."""

from __future__ import annotations

import ast
import glob
import os

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGE = "recbole_famous"

# Top to bottom; a unit is a top-level module or a subpackage. A unit may import units of its own layer or below.
LAYERS = [
    ["cli"],  # the command line: one parser, one exit-code handler, a module per subcommand
    ["launch", "bench", "tuning"],  # several processes; the benchmark and the search (run the runner per job)
    ["runner", "serving", "run_result"],  # entry points built from the pipeline steps; what a run gives
    ["pipeline"],  # the public steps
    ["config", "trainer", "checkpoint", "distributed", "diagnostics"],  # RecBole's Config / Trainer extended, checkpoint checks
    ["model"],
    ["data"],
    ["compat", "errors", "files", "resources"],
]
RANK = {f"{PACKAGE}.{unit}": i for i, layer in enumerate(LAYERS) for unit in layer}
# Checked for private names: the entry points and everything built on the pipeline steps.
ENTRY_POINTS = ["run_recbole_famous.py", *glob.glob(os.path.join(REPO, PACKAGE, "cli", "*.py")), f"{PACKAGE}/runner.py", f"{PACKAGE}/serving.py", f"{PACKAGE}/launch.py", f"{PACKAGE}/tuning.py",
                *glob.glob(os.path.join(REPO, PACKAGE, "bench", "*.py")), *glob.glob(os.path.join(REPO, "benchmarks", "*.py"))]


def module_name(path: str) -> str:
    rel = os.path.relpath(path, REPO)[:-3].replace(os.sep, ".")
    return rel[: -len(".__init__")] if rel.endswith(".__init__") else rel


def unit(module: str) -> str:
    """Top-level modules stand alone, a subpackage is one unit."""
    return ".".join(module.split(".")[:2])


def is_module(dotted: str) -> bool:
    path = os.path.join(REPO, *dotted.split("."))
    return os.path.isfile(path + ".py") or os.path.isdir(path)


def imports(path: str):
    """``(imported module, names taken from it, line)`` for every import of the package in a file."""
    module = module_name(path)
    is_init = path.endswith("__init__.py")
    for node in ast.walk(ast.parse(open(path, encoding="utf-8").read(), path)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == PACKAGE:
                    yield alias.name, [], node.lineno
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = module.split(".") if is_init else module.split(".")[:-1]
                parts = parts[: len(parts) - node.level + 1]
                base = ".".join(parts + ([base] if base else []))
            if base.split(".")[0] != PACKAGE:
                continue
            names = [a.name for a in node.names]
            submodules = [n for n in names if is_module(f"{base}.{n}")]
            for name in submodules:
                yield f"{base}.{name}", [], node.lineno
            rest = [n for n in names if n not in submodules]
            if rest or not submodules:
                yield base, rest, node.lineno


def package_files():
    return [p for p in glob.glob(os.path.join(REPO, PACKAGE, "**", "*.py"), recursive=True) if "__pycache__" not in p]


def unit_graph() -> dict:
    edges = {}
    for path in package_files():
        me = unit(module_name(path))
        if me == PACKAGE:  # the package's __init__ (compat, and a lazy ``run``) is the top, not a layer
            continue
        for target, _, _ in imports(path):
            other = unit(target)
            if other not in (me, PACKAGE):
                edges.setdefault(me, set()).add(other)
    return edges


def cycles(edges: dict) -> list:
    """Strongly connected components with more than one unit (Tarjan)."""
    index, low, stack, on, found = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(edges.get(v, ())):
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
                found.append(sorted(comp))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def test_cycle_finder_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": {"c"}}) == []


def test_no_import_cycle_among_the_package_modules():
    edges = unit_graph()
    assert len(edges) >= 6  # the graph was read (the package's modules import each other)
    assert cycles(edges) == []


def test_every_unit_has_a_layer_and_imports_only_its_layer_or_below():
    units = {unit(module_name(p)) for p in package_files()} - {PACKAGE}
    assert units <= set(RANK), f"units without a layer in LAYERS: {sorted(units - set(RANK))}"
    upward = [f"{a} -> {b}" for a, targets in unit_graph().items() for b in targets if RANK[b] < RANK[a]]
    assert upward == []


def private_uses(path: str) -> list:
    """``from M import _x`` and ``alias._x`` of another module of the package (``alias`` bound to a module)."""
    me = module_name(path)
    tree = ast.parse(open(path, encoding="utf-8").read(), path)
    found, aliases = [], {}
    for target, names, line in imports(path):
        if target != me:
            found += [f"{os.path.relpath(path, REPO)}:{line}: from {target} import {n}" for n in names
                      if n.startswith("_") and not n.startswith("__")]
    for node in ast.walk(tree):  # names bound to modules of the package
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == PACKAGE:
            for a in node.names:
                if is_module(f"{node.module}.{a.name}"):
                    aliases[a.asname or a.name] = f"{node.module}.{a.name}"
        elif isinstance(node, ast.Import):
            for a in node.names:
                if a.name.split(".")[0] == PACKAGE:
                    aliases[a.asname or a.name.split(".")[0]] = a.name if a.asname else PACKAGE
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in aliases \
                and node.attr.startswith("_") and not node.attr.startswith("__") and aliases[node.value.id] != me:
            found.append(f"{os.path.relpath(path, REPO)}:{node.lineno}: {node.value.id}.{node.attr}")
    return found


def test_private_use_finder_sees_both_forms(tmp_path):
    probe = os.path.join(REPO, PACKAGE, "bench", "_probe_for_test.py")
    try:
        with open(probe, "w") as f:
            f.write("from recbole_famous.runner import _start\nfrom recbole_famous import runner as r\nr._meta\n")
        assert len(private_uses(probe)) == 2
    finally:
        os.remove(probe)


def test_entry_points_use_no_private_name_of_another_module():
    files = [p if os.path.isabs(p) else os.path.join(REPO, p) for p in ENTRY_POINTS]
    assert len(files) > 15
    assert [hit for path in files for hit in private_uses(path)] == []
