"""The lock files agree with pyproject.toml's exact pins (scripts/lock.sh regenerates them)."""

import re
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _lock(path: Path) -> dict[str, str]:
    pins = {}
    for line in path.read_text().splitlines():
        if line and not line.startswith(("#", "-r")):
            name, _, version = line.partition("==")
            pins[_norm(name)] = version
    return pins


def test_every_pyproject_pin_is_exact_and_locked_at_the_same_version():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    locked = _lock(REPO / "requirements.lock") | _lock(REPO / "requirements-test.lock")
    for spec in [*project["dependencies"], *project["optional-dependencies"]["test"]]:
        name, _, version = spec.partition("==")
        assert version, f"{spec} is not an exact pin"
        name = _norm(name.split("[")[0])
        assert locked.get(name) == version, f"{name}: pyproject {version}, lock {locked.get(name)}"
    for pins in (_lock(REPO / "requirements.lock"), _lock(REPO / "requirements-test.lock")):
        assert all(re.fullmatch(r"[0-9][0-9A-Za-z.+!-]*", v) for v in pins.values())
