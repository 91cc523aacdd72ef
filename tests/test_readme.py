"""README.md stays true to the code: its pipeline example runs and its quick start is two lines."""

from __future__ import annotations

import re
from pathlib import Path

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()


def test_pipeline_example_builds_definitions(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("LOCKGATE_HOME", str(tmp_path))
    block = re.search(r"## Defining a pipeline\n\n```python\n(.*?)```", README, re.S)
    assert block is not None
    namespace: dict = {}
    exec(compile(block.group(1), "README.md", "exec"), namespace)
    defs = namespace["defs"]
    keys = {k.to_user_string() for k in defs.resolve_asset_graph().get_all_asset_keys()}
    assert {"fraud_lgbm/rollout", "fraud_lgbm/drift_report", "fraud_lgbm/live_performance"} <= keys
    assert defs.resolve_job_def("fraud_lgbm_train")
    sensors = {s.name for s in defs.sensors}
    assert sensors == {
        "fraud_lgbm_on_canary_tick",
        "fraud_lgbm_on_drift",
        "fraud_lgbm_on_label_feedback",
        "fraud_lgbm_on_feature_change",
    }


def test_quick_start_is_two_commands_and_ci_runs_the_second() -> None:
    block = re.search(r"## Quick start\n\n```bash\n(.*?)```", README, re.S)
    assert block is not None
    commands = [line for line in block.group(1).splitlines() if line.strip()]
    assert len(commands) == 2
    ci = (Path(__file__).resolve().parents[1] / ".ci" / "run").read_text()
    assert commands[1].strip() in ci
