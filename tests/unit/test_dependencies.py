"""Every third-party package the code imports is declared in pyproject.toml, and the lock
file pins each declared one at a version its specifier allows (run `make lock` after editing
the dependencies)."""

from __future__ import annotations

import ast
import importlib.metadata
import re
import sys
import tomllib
from pathlib import Path

from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
OWN = {"app", "tests", "bench", "sec_helpers", "migrations"}


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _declared(*groups: str) -> dict[str, Requirement]:
    reqs = [Requirement(r) for r in PYPROJECT["project"]["dependencies"]]
    for group in groups:
        reqs += [Requirement(r) for r in PYPROJECT["project"]["optional-dependencies"][group]]
    return {_norm(r.name): r for r in reqs}


def _imported_distributions(*folders: str) -> dict[str, set[str]]:
    """distribution name -> files importing it, for top-level imports outside the stdlib."""
    owners = importlib.metadata.packages_distributions()
    found: dict[str, set[str]] = {}
    for folder in folders:
        for path in (ROOT / folder).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if isinstance(node, ast.Import):
                    names = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names = [node.module]
                else:
                    continue
                for name in names:
                    top = name.partition(".")[0]
                    if top in sys.stdlib_module_names or top in OWN:
                        continue
                    for dist in owners.get(top, [f"<not installed: {top}>"]):
                        found.setdefault(_norm(dist), set()).add(str(path.relative_to(ROOT)))
    return found


def test_the_app_and_migrations_import_only_declared_packages() -> None:
    declared = _declared()
    missing = {
        dist: sorted(files)
        for dist, files in _imported_distributions("app", "migrations").items()
        if dist not in declared
    }
    assert not missing, f"imported but not in [project] dependencies: {missing}"


def test_the_tests_import_only_declared_packages() -> None:
    declared = _declared("dev")
    missing = {
        dist: sorted(files)
        for dist, files in _imported_distributions("tests", "bench").items()
        if dist not in declared
    }
    assert not missing, f"imported but not in the dependencies or the dev extra: {missing}"


def test_the_lock_pins_every_declared_package_within_its_specifier() -> None:
    pins = {}
    for line in (ROOT / "requirements.lock").read_text().splitlines():
        match = re.match(r"^([A-Za-z0-9_.\-]+)==(\S+)", line)
        if match:
            pins[_norm(match[1])] = match[2]
    stale = {}
    for name, req in _declared("dev").items():
        pinned = pins.get(name)
        if pinned is None or not req.specifier.contains(pinned, prereleases=True):
            stale[name] = f"{req.specifier or 'any'} declared, lock has {pinned}"
    assert not stale, f"requirements.lock is out of date (run `make lock`): {stale}"
