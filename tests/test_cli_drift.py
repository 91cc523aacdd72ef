"""The drift command's text for each kind of prediction report (the report itself is stubbed)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from lockgate import cli
from lockgate.discover import CodeLocation
from pipelines.fraud import fraud_lgbm


def _report(prediction: dict[str, Any]) -> dict[str, Any]:
    return {"level": "warn", "reason": "r", "features": [], "prediction": prediction}


@pytest.mark.parametrize(
    ("prediction", "line"),
    [
        (
            {"severity": "ok", "psi": 0.01, "mean_reference": 0.02, "mean_current": 0.03},
            "PSI 0.010  mean 0.0200 -> 0.0300",
        ),
        (
            {
                "severity": "warn",
                "psi": 0.12,
                "class_share_reference": {"low": 0.5, "high": 0.5},
                "class_share_current": {"low": 0.3, "high": 0.7},
            },
            "PSI 0.120  classes low 0.500 -> 0.300, high 0.500 -> 0.700",
        ),
    ],
    ids=["mean", "classes"],
)
def test_drift_prints_the_prediction_line_of_every_task(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, prediction: dict[str, Any], line: str
) -> None:
    location = CodeLocation(source="module m", pipelines={fraud_lgbm.name: fraud_lgbm})
    monkeypatch.setattr(cli, "_locations", lambda *args: [location])
    monkeypatch.setattr(
        "lockgate.monitoring.drift_report.compute_drift_report", lambda *a, **k: _report(prediction)
    )
    result = CliRunner().invoke(cli.cli, ["drift", "fraud_lgbm", "--home", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert line in result.output
