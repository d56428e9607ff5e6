"""The house rules that keep the code easy to see.

The top of pipeline/ is the DVC graph: the stages and commands, __main__/__init__ and at most MAX_SHARED modules
that many stages share; everything else stands in a package. Stages never import stages, and nothing in a
package imports a stage or command (no upward import). No import circle, no private name imported from another
module, no module over MAX_MODULE_LINES lines, no function over MAX_FUNCTION_LINES lines. The dispatcher is thin.
"""

import ast
import subprocess
import sys
from pathlib import Path

from pipeline.__main__ import COMMANDS, STAGES

PKG = Path(__file__).resolve().parents[1] / "pipeline"
MAX_SHARED = 10
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 80


def _module(path: Path) -> str:
    parts = ("pipeline", *path.relative_to(PKG).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module(p): p for p in sorted(PKG.rglob("*.py"))}


def _import_edges(path: Path) -> set[str]:
    """The pipeline modules `path` imports anywhere (lazy imports too): `from a.b import c` is a.b.c when c is a
    module, else a.b (the parent packages' __init__ that Python runs first are no edge)."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            out |= {f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in MODULES else node.module
                    for a in node.names}
    return (out & set(MODULES)) - {_module(path)}


def _imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names |= {f"{node.module}.{a.name}" for a in node.names}
    return names


def test_no_stage_module_imports_another_stage():
    stage_modules = {f"pipeline.{s}" for s in STAGES + COMMANDS}
    for path in PKG.rglob("*.py"):
        module = "pipeline." + ".".join(path.relative_to(PKG).with_suffix("").parts)
        bad = (_imports(path) & stage_modules) - {module}
        assert not bad, f"{module} imports stage module(s) {sorted(bad)}: move shared code out of the stage"


def test_every_stage_has_a_module_with_main():
    for name in STAGES + COMMANDS:
        tree = ast.parse((PKG / f"{name}.py").read_text())
        assert any(isinstance(n, ast.FunctionDef) and n.name == "main" for n in tree.body), name


def test_help_lists_every_stage_and_unknown_stage_is_an_error():
    out = subprocess.run([sys.executable, "-m", "pipeline", "--help"], capture_output=True, text=True, check=True)
    assert all(s in out.stdout for s in STAGES)
    bad = subprocess.run([sys.executable, "-m", "pipeline", "nope"], capture_output=True, text=True)
    assert bad.returncode == 2 and "unknown stage" in bad.stderr


def test_prepare_does_not_import_torch_or_faiss():
    code = "import sys, pipeline.prepare; print('torch' in sys.modules, 'faiss' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False False"


def test_stage_loggers_are_named_pipeline_dot_stage():
    import re

    for name in STAGES + COMMANDS:
        found = re.findall(r"logging\.getLogger\(\"([\w.]+)\"\)", (PKG / f"{name}.py").read_text())
        assert all(f == f"pipeline.{name}" or not f.startswith(("pipeline", name)) for f in found), (name, found)


def test_the_label_index_is_defined_once_in_schema():
    import re

    from pipeline.schema import BONAFIDE, LABEL_INDEX, SPOOF

    assert LABEL_INDEX == {"spoof": SPOOF, "bonafide": BONAFIDE} == {"spoof": 0, "bonafide": 1}
    literal = re.compile(r"\{\s*\"spoof\"\s*:\s*0|\"bonafide\"\s*:\s*1\s*\}|^(SPOOF|BONAFIDE)\s*=\s*[01]\b", re.M)
    offenders = [str(p.relative_to(PKG)) for p in PKG.rglob("*.py")
                 if p.name != "schema.py" and literal.search(p.read_text())]
    assert not offenders, f"label index redefined outside pipeline/schema.py: {offenders}"


def test_the_top_of_the_package_holds_the_stages_commands_and_a_few_shared_modules():
    top = {p.stem for p in PKG.glob("*.py")} - {"__init__", "__main__"}
    shared = top - set(STAGES + COMMANDS)
    assert set(STAGES + COMMANDS) <= top
    assert len(shared) <= MAX_SHARED, f"{len(shared)} shared modules at the top of pipeline/: {sorted(shared)}"
    users = {name: {s for s in STAGES + COMMANDS if f"pipeline.{name}" in _import_edges(PKG / f"{s}.py")}
             for name in shared}
    lonely = {name: sorted(u) for name, u in users.items() if len(u) < 2}
    assert not lonely, f"shared modules at the top that fewer than two stages import (move them to a package): {lonely}"


def test_no_module_in_a_package_imports_a_stage_or_command():
    stages = {f"pipeline.{s}" for s in STAGES + COMMANDS}
    upward = {m: sorted(_import_edges(p) & stages) for m, p in MODULES.items() if p.parent != PKG}
    assert not {m: u for m, u in upward.items() if u}, upward


def test_no_import_circle_among_pipeline_modules():
    graph = {m: _import_edges(p) for m, p in MODULES.items()}
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(module: str, path: list[str]) -> list[str] | None:
        state[module] = 1
        for dep in sorted(graph[module]):
            if state.get(dep) == 1:
                return path + [module, dep]
            if dep not in state and (cycle := visit(dep, path + [module])):
                return cycle
        state[module] = 2
        return None

    for module in sorted(graph):
        if module not in state:
            cycle = visit(module, [])
            assert cycle is None, f"import circle: {' -> '.join(cycle[cycle.index(cycle[-1]):])}"


def test_no_private_name_is_imported_from_another_module():
    found = []
    for module, path in MODULES.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("pipeline"):
                found += [f"{module}: from {node.module} import {a.name}" for a in node.names
                          if a.name.startswith("_") and not a.name.startswith("__")]
    assert not found, "private names imported across modules (make them public or move them):\n" + "\n".join(found)


def test_no_module_over_400_lines_and_no_function_over_80():
    long_modules = {m: n for m, p in MODULES.items() if (n := len(p.read_text().splitlines())) > MAX_MODULE_LINES}
    assert not long_modules, long_modules
    long_functions = []
    for module, path in MODULES.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = node.end_lineno - node.lineno + 1
                if n > MAX_FUNCTION_LINES:
                    long_functions.append(f"{module}.{node.name}: {n} lines")
    assert not long_functions, long_functions
