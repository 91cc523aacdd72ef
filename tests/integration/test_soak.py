"""The soak benchmark (benchmarks/bench_soak.py) as a test: real tritonserver, gateway and
``lockgate serve supervise``, a canary ticking, load from loopback clients, and faults injected
on a schedule (gateway SIGKILL, tritonserver SIGKILL, the log's tmpfs full then freed).

By default a 45-second run with one fault of each kind; the 10-minute run (four of each) is
marked ``slow`` and runs only with ``pytest -m slow``. Both need root (the script mounts a tmpfs)
and are skipped without it.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "benchmarks" / "bench_soak.py"
NO_MOUNT = 77  # the script's exit status when it cannot mount its tmpfs


def _soak(tmp_path: Path, *args: str, timeout_s: float) -> dict:
    out = tmp_path / "soak.json"
    done = subprocess.run(
        [sys.executable, str(SCRIPT), *args, "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=timeout_s,
        cwd=ROOT,
    )
    if done.returncode == NO_MOUNT:
        pytest.skip(f"the soak needs a tmpfs it can mount (root): {done.stdout.strip()}")
    assert out.exists(), f"exit {done.returncode}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    record = json.loads(out.read_text())
    assert done.returncode == (0 if record["passed"] else 1), done.stderr[-3000:]
    return record


def _check(record: dict, cycles: int) -> None:
    summary = record["summary"]
    assert summary["lost"] == 0, (
        f"{summary['lost']} answered requests are missing from the prediction log: "
        f"{summary['lost_examples']}"
    )
    assert summary["duplicate_log_rows"] == 0
    assert summary["answered_2xx"] > 0
    kinds = [f["kind"] for f in record["faults"]]
    assert kinds == ["gateway_sigkill", "tritonserver_sigkill", "disk_full"] * cycles
    for fault in record["faults"]:
        assert fault["recovered"], fault
        assert fault["recovery_s"] is not None, fault
    assert summary["all_recovered"]
    assert summary["refused_503_disk_full"] > 0, "the full disk refused nothing"
    assert summary["refused_503_disk_full_logged"] == 0  # refused because it could not be logged
    assert record["canary"]["ticks_by_action"].get("hold", 0) > 0  # the canary ran throughout
    assert record["passed"]


def test_soak_short_loses_no_answered_request(tmp_path: Path) -> None:
    record = _soak(tmp_path, "--duration", "45", timeout_s=600)
    _check(record, cycles=1)


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_soak_ten_minutes_loses_no_answered_request(
    tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    if "slow" not in (request.config.getoption("markexpr") or ""):
        pytest.skip("the 10-minute soak runs with `pytest -m slow`")
    record = _soak(tmp_path, "--duration", "600", timeout_s=1500)
    _check(record, cycles=4)
