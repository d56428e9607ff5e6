"""constraints.txt must agree with pyproject.toml: setup.sh installs with `-c constraints.txt`, so a pin changed in
one file and not the other would make the install fail or, worse, silently take the constraints' version."""

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _name(requirement: str) -> str:
    """PEP 503 normalised project name, extras dropped."""
    name = re.match(r"[A-Za-z0-9._-]+", requirement.strip()).group(0)
    return re.sub(r"[-_.]+", "-", name).lower()


def _constraints() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        assert "==" in line, f"constraints.txt: not an exact pin: {line!r}"
        name, version = line.split("==", 1)
        assert _name(name) not in pins, f"constraints.txt: {name} pinned twice"
        pins[_name(name)] = version.strip()
    return pins


def _project_requirements() -> list[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = [r for group in project.get("optional-dependencies", {}).values() for r in group]
    return list(project["dependencies"]) + extras


def test_every_exact_pin_of_pyproject_is_the_constraints_version():
    pins = _constraints()
    for requirement in _project_requirements():
        match = re.search(r"==\s*([^\s;,]+)", requirement)
        if match is None:
            continue
        name = _name(requirement)
        assert name in pins, f"{name} is pinned in pyproject.toml but missing from constraints.txt"
        assert pins[name] == match.group(1), (
            f"{name}: pyproject.toml pins {match.group(1)}, constraints.txt {pins[name]}; "
            "rebuild .venv and write constraints.txt again (see its header)"
        )


def test_range_requirements_are_met_by_the_constraints():
    """A requirement given as a range (setuptools<81) must admit the version constraints.txt installs."""
    pins = _constraints()
    for requirement in _project_requirements():
        match = re.search(r"<\s*([0-9][0-9.]*)", requirement)
        if match is None or "==" in requirement:
            continue
        name = _name(requirement)
        assert name in pins, f"{name} is required by pyproject.toml but missing from constraints.txt"
        have = tuple(int(p) for p in re.findall(r"\d+", pins[name])[:3])
        bound = tuple(int(p) for p in match.group(1).split("."))
        assert have[: len(bound)] < bound, (
            f"{name}: constraints.txt has {pins[name]}, pyproject.toml wants {requirement}"
        )
