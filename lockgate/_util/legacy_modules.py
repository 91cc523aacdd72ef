"""Old module paths of lockgate, before the subpackages, resolve to where the code lives now.

Lock records name trainers and models by ``module:Class`` (e.g. ``lockgate.trainers:LightGBMTrainer``),
and every Triton model repository holds a ``model.py`` that imports lockgate's modules by name.
Both outlive a lockgate upgrade: a version locked or written before the modules moved must still
reproduce and load. A finder on :data:`sys.meta_path` maps each old path to the module that now
holds its code (the same module object, so classes compare equal); nothing else imports through
it. Old names that are now packages (``lockgate.gateway``, ``lockgate.serving``, ...) import as
the package; their old contents are reached through :data:`PACKAGE_ALIASES` by the resolver of
``module:Class`` paths (:func:`lockgate.training.import_paths.import_object`).
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
from types import ModuleType
from typing import Any

__all__ = ["MOVED_MODULES", "PACKAGE_ALIASES", "install", "resolve_module_name"]

MOVED_MODULES: dict[str, str] = {
    "lockgate.fsutil": "lockgate._util.fs",
    "lockgate.dataio": "lockgate._util.dataio",
    "lockgate.hashing": "lockgate.lineage.hashing",
    "lockgate.lock": "lockgate.lineage.lock",
    "lockgate.signing": "lockgate.lineage.signing",
    "lockgate.project": "lockgate.lineage.project",
    "lockgate.reproduce": "lockgate.lineage.reproduce",
    "lockgate.build": "lockgate.lineage.steps",
    "lockgate.metrics": "lockgate.tasks.metrics",
    "lockgate.trainers": "lockgate.training",
    "lockgate.training.trainers": "lockgate.training",
    "lockgate.trainers_sklearn": "lockgate.training.sklearn_trainer",
    "lockgate.trainers_torch_module": "lockgate.training.torch_module_trainer",
    "lockgate.stats": "lockgate.evaluation.stats",
    "lockgate.gate": "lockgate.evaluation.gate",
    "lockgate.plots": "lockgate.evaluation.plots",
    "lockgate.validation": "lockgate.features.validation",
    "lockgate.mutations": "lockgate.monitoring.mutations",
    "lockgate.drift": "lockgate.monitoring.drift",
    "lockgate.feedback": "lockgate.monitoring.feedback",
    "lockgate.triggers": "lockgate.monitoring.triggers",
    "lockgate.triton_config": "lockgate.serving.triton_config",
    "lockgate.wire": "lockgate.serving.wire",
    "lockgate.canary": "lockgate.serving.canary",
    "lockgate.coalesce": "lockgate.gateway.coalesce",
    "lockgate.named_inputs": "lockgate.gateway.named_inputs",
    "lockgate.prediction_sketch": "lockgate.gateway.prediction_sketch",
}
"""Old dotted module -> the module that holds its code now."""

PACKAGE_ALIASES: dict[str, str] = {
    "lockgate.gateway": "lockgate.gateway.app",
    "lockgate.serving": "lockgate.serving.model_repository",
    "lockgate.monitoring": "lockgate.monitoring.drift_report",
    "lockgate.evaluation": "lockgate.evaluation.report",
    "lockgate.audit": "lockgate.audit.log",
    "lockgate.tasks": "lockgate.tasks.catalog",
}
"""Old modules whose name is now a package -> the module that holds their old contents."""


def resolve_module_name(name: str) -> str:
    """The module that holds today what ``name`` held before (``name`` itself when unmoved)."""
    return MOVED_MODULES.get(name) or PACKAGE_ALIASES.get(name) or name


class _AliasLoader(importlib.abc.Loader):
    def __init__(self, target: str) -> None:
        self._target = target
        self._spec: importlib.machinery.ModuleSpec | None = None

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        module = importlib.import_module(self._target)
        self._spec = module.__spec__
        return module

    def exec_module(self, module: ModuleType) -> None:
        # the import system stamped the alias's spec on the real module: give it its own back
        module.__spec__ = self._spec


class _AliasFinder(importlib.abc.MetaPathFinder):
    def find_spec(
        self, fullname: str, path: Any, target: Any = None
    ) -> importlib.machinery.ModuleSpec | None:
        new = MOVED_MODULES.get(fullname)
        if new is None:
            return None
        return importlib.machinery.ModuleSpec(fullname, _AliasLoader(new))


_FINDER = _AliasFinder()


def install() -> None:
    """Put the finder on :data:`sys.meta_path` once (called when :mod:`lockgate` is imported)."""
    if not any(isinstance(f, _AliasFinder) for f in sys.meta_path):
        sys.meta_path.append(_FINDER)
