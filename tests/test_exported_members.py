"""The public surface is exactly what __all__ says, sorted, and every name resolves."""

from __future__ import annotations

import importlib
import pkgutil
from pathlib import Path

import pytest


def _walk(package: str) -> list[str]:
    """Every module of ``package``, found on disk (no list kept by hand)."""
    root = importlib.import_module(package)
    names = [package]
    for info in pkgutil.walk_packages(root.__path__, f"{package}."):
        if not info.name.endswith("__main__"):
            names.append(info.name)
    return sorted(names)


LIBRARY = _walk("lockgate")
# the example's modules that declare a surface of their own (its commands and feature repository
# are scripts)
EXAMPLE = [name for name in _walk("pipelines") if hasattr(importlib.import_module(name), "__all__")]
MODULES = LIBRARY + EXAMPLE


def test_the_walk_finds_every_subpackage() -> None:
    found = {name.split(".")[1] for name in LIBRARY if name.count(".") >= 1}
    for subpackage in (
        "lineage",
        "training",
        "evaluation",
        "serving",
        "gateway",
        "monitoring",
        "audit",
        "assets",
        "resources",
        "sensors",
        "tasks",
        "features",
        "_util",
    ):
        assert subpackage in found, f"lockgate.{subpackage} was not walked"
    assert "lockgate.gateway.predlog.wal" in LIBRARY


@pytest.mark.parametrize("name", LIBRARY)
def test_every_library_module_declares_its_surface(name: str) -> None:
    module = importlib.import_module(name)
    assert isinstance(getattr(module, "__all__", None), list), (
        f"{name} has no __all__; rule: every lockgate module says what it exports (an empty "
        f"list for a module only its own subpackage uses); fix: add __all__ to {name}"
    )


def _isort_key(name: str) -> tuple[int, str]:
    """ruff's RUF022 order: CONSTANTS, then Classes, then functions."""
    if name.isupper() or (name.upper() == name and "_" in name):
        return (0, name)
    return (1, name) if name[:1].isupper() else (2, name)


@pytest.mark.parametrize("name", MODULES)
def test_all_is_sorted_and_resolves(name: str) -> None:
    module = importlib.import_module(name)
    exported = module.__all__
    assert len(set(exported)) == len(exported), f"{name}.__all__ has duplicates"
    assert exported == sorted(exported, key=_isort_key), f"{name}.__all__ is not sorted"
    for member in exported:
        assert hasattr(module, member), f"{name}.__all__ names missing {member}"


def test_public_classes_are_exported_from_the_top() -> None:
    import lockgate

    public = {n for n in dir(lockgate) if not n.startswith("_") and n[0].isupper()}
    assert public <= set(lockgate.__all__), public - set(lockgate.__all__)


def test_definitions_module_is_cheap_to_import() -> None:
    import subprocess
    import sys

    code = (
        "import sys, pipelines.definitions;"
        "heavy = {'torch', 'lightgbm', 'feast', 'great_expectations'} & set(sys.modules);"
        "print(sorted(heavy))"
    )
    repo = Path(__file__).resolve().parents[1]  # where the example's package imports from
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=repo
    )
    assert out.stdout.strip() == "[]"
