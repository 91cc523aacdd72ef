"""The public surface is exactly what __all__ says, sorted, and every name resolves."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest

MODULES = [
    "lockgate",
    "lockgate.errors",
    "lockgate.lineage.hashing",
    "lockgate.lineage.lock",
    "lockgate.spec",
    "lockgate.training.trainers",
    "lockgate.training.sklearn_trainer",
    "lockgate.training.torch_module_trainer",
    "lockgate.tasks.metrics",
    "lockgate.tasks.catalog",
    "lockgate.features.validation",
    "lockgate.lineage.steps",
    "lockgate.lineage.reproduce",
    "lockgate.assets",
    "lockgate.resources",
    "pipelines.fraud_data",
    "lockgate.evaluation.stats",
    "lockgate.audit.log",
    "lockgate.serving.canary",
    "lockgate.evaluation.gate",
    "lockgate.evaluation.report",
    "lockgate.serving.wire",
    "lockgate.traffic",
    "lockgate.serving.triton_config",
    "lockgate.serving.model_repository",
    "lockgate.monitoring.drift",
    "lockgate.evaluation.plots",
    "lockgate._util.dataio",
    "lockgate.resources.feast_store",
    "lockgate.monitoring.triggers",
    "lockgate.monitoring.drift_report",
    "pipelines.closed_loop",
    "lockgate.monitoring.feedback",
    "lockgate.sensors",
    "lockgate.monitoring.mutations",
    "lockgate.sensors.feature_store",
    "lockgate.gateway.named_inputs",
    "lockgate.gateway.prediction_sketch",
    "lockgate.lineage.project",
    "lockgate.scaffold",
    "lockgate.discover",
    "lockgate.daemon",
    "lockgate.lineage.signing",
]


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
