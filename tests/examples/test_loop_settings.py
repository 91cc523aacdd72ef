"""The closed loop's settings as the example's code location applies them, in either
environment: the loop's pipeline gets the loop's policies, the others stand still."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from lockgate import Environment
from pipelines.closed_loop import LoopSettings, data_dir, loop_pipelines
from pipelines.fraud import PIPELINES


def test_the_loop_pipeline_gets_the_loops_policies_and_the_sandbox_budget() -> None:
    settings = LoopSettings(validation_p99_budget_ms=250.0, gate_absolute={"roc_auc": 0.6})
    pipelines = {p.name: p for p in loop_pipelines(settings)}
    looped = pipelines[settings.pipeline]
    assert looped.serving is not None
    assert looped.serving.p99_budget_ms == 250.0
    assert looped.canary == settings.canary
    assert looped.drift == settings.drift
    assert looped.feature_changes is None
    assert looped.gate is not None
    assert looped.gate.absolute["roc_auc"] == 0.6
    (original,) = [p for p in PIPELINES if p.name == settings.pipeline]
    assert original.serving is not None
    assert original.serving.p99_budget_ms == 50.0
    for name, other in pipelines.items():
        if name != settings.pipeline:
            assert (other.drift, other.feedback, other.feature_changes) == (None, None, None)
    # without the setting, the pipeline's own budget
    plain = {p.name: p for p in loop_pipelines(LoopSettings())}[settings.pipeline]
    assert plain.serving == original.serving
    with pytest.raises(ValidationError):
        LoopSettings(validation_p99_budget_ms=0)


def test_the_loop_reads_the_data_where_the_environment_keeps_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LOCKGATE_DATA_DIR", str(tmp_path / "shared" / "data"))
    local = Environment.local(tmp_path / "home")
    assert data_dir(local) == local.data_dir  # the embedded default ignores the variable
    production = Environment(kind="production", home=tmp_path / "home")
    assert data_dir(production) == tmp_path / "shared" / "data"
    monkeypatch.delenv("LOCKGATE_DATA_DIR")
    assert data_dir(production) == production.data_dir
