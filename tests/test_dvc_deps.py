"""Guard: every pipeline module a dvc.yaml stage imports is one of its deps, or an edit there serves stale outputs.

The import closure is walked statically (ast), lazy imports inside functions included, within the
`pipeline` package: a `from pipeline.pkg import name` counts the package's `__init__.py` and, when `name` is a
submodule, that module too; importing a submodule also runs its parent packages' `__init__.py`.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "pipeline"
# Pure logging/presentation helpers and the package docstring: an edit there cannot change an output (nor can
# one in a package __init__.py that holds only a docstring, see `docstring_only`).
EXEMPT = {"pipeline/__init__.py", "pipeline/logs.py"}
CMD = re.compile(r"python -m pipeline (\w+)")
# `python -m pipeline` runs pipeline/__main__.py first, whose CPU pin (pipeline/runtime/cpu_isa.py) sets which kernels
# torch runs: every stage that sets torch up (runtime/devices.py) depends on it, though it never imports it.
ENTRY_DEPS = {"pipeline/runtime/devices.py": "pipeline/runtime/cpu_isa.py"}


def docstring_only(path: Path) -> bool:
    """True for a module whose body is a docstring and nothing else (a package's description)."""
    body = ast.parse(path.read_text()).body
    return len(body) == 1 and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant)


def exempt(rel: str) -> bool:
    """A module whose edits cannot change an output: EXEMPT, or a docstring-only file."""
    return rel in EXEMPT or docstring_only(ROOT / rel)


def module_file(name: str) -> Path | None:
    """The file of a dotted `pipeline...` module name (package -> its __init__.py), or None."""
    parts = name.split(".")
    if parts[0] != "pipeline":
        return None
    base = ROOT.joinpath(*parts)
    if base.with_suffix(".py").is_file():
        return base.with_suffix(".py")
    if (base / "__init__.py").is_file():
        return base / "__init__.py"
    return None


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path) -> set[str]:
    """Dotted names of the pipeline modules `path` imports anywhere (top level or inside functions)."""
    here = _module_name(path)
    package = here if path.name == "__init__.py" else here.rpartition(".")[0]
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            names.add(mod)
            names |= {f"{mod}.{a.name}" for a in node.names if module_file(f"{mod}.{a.name}") is not None}
    out = set()
    for name in names:
        parts = name.split(".")
        # importing a.b.c runs a/__init__, a/b/__init__ and a/b/c
        out |= {".".join(parts[:k]) for k in range(1, len(parts) + 1) if module_file(".".join(parts[:k]))}
    return out


def import_closure(module: str) -> set[Path]:
    """Files of every pipeline module reachable from `module` (itself included)."""
    todo, seen = [module], set()
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        path = module_file(name)
        if path is not None:
            todo += sorted(imported_modules(path) - seen)
    return {p for p in (module_file(n) for n in seen) if p is not None}


def stage_commands() -> dict[str, tuple[str, list[str]]]:
    """dvc.yaml stage name -> (pipeline module, literal deps), for stages that run `python -m pipeline`."""
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    out = {}
    for name, stage in stages.items():
        body = stage.get("do", stage)
        match = CMD.search(body.get("cmd", ""))
        if match:
            deps = [d for d in body.get("deps", []) if isinstance(d, str) and "${" not in d]
            out[name] = (match.group(1), deps)
    return out


def covered(rel: str, deps: list[str]) -> bool:
    return any(rel == d.rstrip("/") or rel.startswith(d.rstrip("/") + "/") for d in deps)


def missing_pairs() -> list[tuple[str, str]]:
    missing = []
    for stage, (module, deps) in sorted(stage_commands().items()):
        rels = {path.relative_to(ROOT).as_posix() for path in import_closure(f"pipeline.{module}")}
        rels |= {entry for user, entry in ENTRY_DEPS.items() if user in rels}
        for rel in sorted(rels):
            if not exempt(rel) and not covered(rel, deps):
                missing.append((stage, rel))
    return missing


def test_the_walk_sees_lazy_and_package_imports():
    closure = {p.relative_to(ROOT).as_posix() for p in import_closure("pipeline.reconstruct")}
    # reconstruct imports pipeline.resynth inside main(); the package imports every backend
    assert {"pipeline/reconstruct.py", "pipeline/resynth/__init__.py", "pipeline/resynth/diffusion.py"} <= closure
    assert all(not p.startswith("pipeline/reporting") for p in closure)


def test_torch_stages_list_the_cpu_pin_that_they_never_import():
    closure = {p.relative_to(ROOT).as_posix() for p in import_closure("pipeline.fit_codec")}
    assert "pipeline/runtime/devices.py" in closure and "pipeline/runtime/cpu_isa.py" not in closure
    torch_stages = [name for name, (_, deps) in stage_commands().items()
                    if covered("pipeline/runtime/devices.py", deps)]
    assert {"fit_codec", "fit_diffusion", "reconstruct", "train"} <= set(torch_stages)
    assert all(covered("pipeline/runtime/cpu_isa.py", stage_commands()[name][1]) for name in torch_stages)


def test_every_stage_lists_the_pipeline_modules_it_imports_as_deps():
    stages = stage_commands()
    assert {"prepare", "reconstruct", "train", "evaluate", "report"} <= set(stages)
    missing = missing_pairs()
    assert not missing, ("dvc.yaml deps miss modules the stage imports (an edit there would not re-run it); "
                         "add to each stage's deps:\n" + "\n".join(f"  {s}: {m}" for s, m in missing))
