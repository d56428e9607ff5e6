"""constraints.txt must agree with pyproject.toml: setup.sh installs with `-c constraints.txt`, so a pin changed in
one file and not the other would make the install fail or, worse, silently take the constraints' version."""

import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]


def _constraints() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        assert "==" in line, f"constraints.txt: not an exact pin: {line!r}"
        name, version = (part.strip() for part in line.split("==", 1))
        assert canonicalize_name(name) not in pins, f"constraints.txt: {name} pinned twice"
        pins[canonicalize_name(name)] = version
    return pins


def _project_requirements() -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = [r for group in project.get("optional-dependencies", {}).values() for r in group]
    return [Requirement(r) for r in list(project["dependencies"]) + extras]


def test_every_exact_pin_of_pyproject_is_the_constraints_version():
    pins = _constraints()
    for req in _project_requirements():
        exact = [s.version for s in req.specifier if s.operator == "=="]
        if not exact:
            continue
        name = canonicalize_name(req.name)
        assert name in pins, f"{name} is pinned in pyproject.toml but missing from constraints.txt"
        assert pins[name] == exact[0], (
            f"{name}: pyproject.toml pins {exact[0]}, constraints.txt {pins[name]}; "
            "rebuild .venv and write constraints.txt again (see its header)"
        )


def test_range_requirements_are_met_by_the_constraints():
    """A requirement given as a range (setuptools<81) must admit the version constraints.txt installs."""
    pins = _constraints()
    for req in _project_requirements():
        name = canonicalize_name(req.name)
        assert name in pins, f"{name} is required by pyproject.toml but missing from constraints.txt"
        assert req.specifier.contains(pins[name], prereleases=True), (
            f"{name}: constraints.txt has {pins[name]}, pyproject.toml wants {req}"
        )
