"""The house rules that keep the code easy to see: stages never import stages; the dispatcher is thin."""

import ast
import subprocess
import sys
from pathlib import Path

from pipeline.__main__ import COMMANDS, STAGES

PKG = Path(__file__).resolve().parents[1] / "pipeline"


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
