"""`lockgate serve start` after a tritonserver crash, with the real CLI, tritonserver and gateway.

The crash is a SIGKILL of the tritonserver process alone, as by the OOM killer. Its parent is a
long-lived process (here the test process; in production the Dagster daemon or a notebook that
started the stack), so the dead server stays a zombie until that process reaps it, and its
python-backend stubs, which watch the server's PID, keep running with their models in memory.
No Dagster daemon runs: nothing but `serve start` repairs it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from benchmarks._versions import example_frame
from lockgate import Environment
from lockgate.audit.log import AuditLog
from lockgate.lineage.registry import LocalArtifactRegistry
from lockgate.resources.audit import AuditTrail
from lockgate.serving.canary import start
from lockgate.serving.stack import LocalServingStack
from lockgate.serving.triton_config import triton_model_name
from lockgate.serving.wire import encode, wire_schema_for_version
from lockgate.traffic import TrafficGenerator

from .processes import group_members
from .test_canary import FAST, PIPELINE, _store_version, spec

LOCKGATE = [sys.executable, "-m", "lockgate.cli"]
HOLD = FAST.model_copy(update={"hold_seconds": 3600})


def _lockgate(*args: str, home: Path, check: bool = True) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, DAGSTER_DISABLE_TELEMETRY="1")
    cmd = [*LOCKGATE, *args, "--home", str(home)]
    result = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    if check and result.returncode != 0:
        raise AssertionError(f"{cmd} exited {result.returncode}:\n{result.stdout}\n{result.stderr}")
    return result


def _crash(pid: int) -> None:
    """SIGKILL tritonserver alone and wait until it is gone (its stubs stay)."""
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while pid in group_members(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert pid not in group_members(pid)


@pytest.fixture
def served(tmp_path: Path) -> Iterator[dict[str, Any]]:
    """A lockgate home whose stack serves a champion beside a canary challenger at 1 %."""
    from lockgate.assets.serving import apply_route, ensure_loaded
    from lockgate.sensors.canary import run_canary_tick

    home = tmp_path / "home"
    env = Environment.local(home)
    registry = LocalArtifactRegistry(root=str(env.artifacts_dir))
    frame = example_frame(3000)
    champion = _store_version(registry, frame, seed=1)
    challenger = _store_version(registry, frame, seed=2)
    registry.move_alias(PIPELINE, "champion", champion, actor="test", reason="first model")
    audit = AuditTrail(path=str(env.audit_path))
    stack = LocalServingStack(root=str(env.serving_dir))
    pgids: list[int] = []
    starter = stack.triton()  # the long-lived parent: this process
    try:
        starter.start()
        out = _lockgate("serve", "start", home=home).stdout  # serves the champion of record
        assert f"{PIPELINE}: champion {champion}, restored in" in out
        outcome = run_canary_tick(
            spec(HOLD), stack=stack, artifacts=registry, audit=audit, actor="test"
        )
        assert outcome.action == "idle", outcome
        ensure_loaded(stack, registry, PIPELINE, challenger)
        state = start(
            HOLD, pipeline=PIPELINE, champion=champion, challenger=challenger, now=time.time()
        )
        apply_route(stack, PIPELINE, state.to_dict())
        stack.save_canary_state(PIPELINE, state.to_dict())
        yield {
            "home": home,
            "registry": registry,
            "audit": audit,
            "stack": stack,
            "champion": champion,
            "challenger": challenger,
            "pgids": pgids,
            "matrix": encode(frame, wire_schema_for_version(registry, PIPELINE, champion)),
        }
    finally:
        _lockgate("serve", "stop", home=home, check=False)
        starter.kill()  # reaps its zombie; kills nothing else
        for pgid in pgids:  # whatever a failed assertion left behind
            for pid in group_members(pgid):
                os.kill(pid, signal.SIGKILL)


def test_serve_start_after_a_triton_crash_restores_what_was_served(served) -> None:
    stack, home = served["stack"], served["home"]
    champion, challenger = served["champion"], served["challenger"]
    triton = stack.triton()
    old_pid, triton_url, grpc_port = triton.pid, triton.url, triton.grpc_port
    gateway_url = stack.gateway().url
    assert old_pid is not None
    served["pgids"].append(old_pid)
    route = stack.gateway().routes()[PIPELINE]
    assert (route["mode"], route["weight"]) == ("canary", 0.01)
    stubs = [p for p in group_members(old_pid) if p != old_pid]
    assert stubs, "the python backend runs each loaded model in a stub process"

    _crash(old_pid)
    out = _lockgate("serve", "start", home=home).stdout

    new = stack.triton()
    served["pgids"].append(new.pid)
    assert new.pid != old_pid
    assert (new.url, new.grpc_port, stack.gateway().url) == (triton_url, grpc_port, gateway_url)
    assert group_members(old_pid) == [], "the crashed server's stubs were reaped"
    for version in (champion, challenger):
        assert new.is_ready(triton_model_name(PIPELINE, version))
    assert stack.gateway().routes()[PIPELINE] == route  # the canary goes on at 1 %
    assert f"{PIPELINE}: champion {champion} + canary {challenger} at 1%" in out
    report = TrafficGenerator(gateway_url, PIPELINE, served["matrix"], max_requests=60)
    report = report.start().wait(60)
    assert report.errors == 0, report.error_messages
    assert report.by_version[champion] > 0
    first, entry = AuditLog(served["audit"].path).entries(kind="serving_restored")
    assert (first["payload"]["triton_restarted"], first["payload"]["loaded"]) == (False, [champion])
    assert entry["payload"]["loaded"] == [champion, challenger]
    assert entry["payload"]["route_changed"] is False  # the gateway kept its routes
    assert entry["payload"]["champion"] == champion
    assert entry["payload"]["challenger"] == challenger
    assert entry["payload"]["triton_restarted"] is True
    assert entry["payload"]["reaped_stubs"] == len(stubs)
    assert entry["payload"]["recovery_s"] > 0

    status = _lockgate("serve", "status", home=home).stdout
    assert f"tritonserver: up {triton_url}" in status
    assert f"{PIPELINE} champion {champion}: answering" in status
    assert f"{PIPELINE} challenger {challenger}: answering" in status

    _crash(new.pid)  # a second crash, not repaired: status must not say "up"
    status = _lockgate("serve", "status", home=home, check=False)
    assert status.returncode == 1, status.stdout
    assert "tritonserver: down" in status.stdout
    assert f"{PIPELINE} champion {champion}: NOT answering" in status.stdout


def test_serve_start_on_a_healthy_stack_changes_nothing(served) -> None:
    stack, home = served["stack"], served["home"]
    pid = stack.triton().pid
    served["pgids"].append(pid)
    route = stack.gateway().routes()[PIPELINE]
    log = AuditLog(served["audit"].path)
    before = log.entries(kind="serving_restored")
    out = _lockgate("serve", "start", home=home).stdout
    assert "answering" in out
    assert stack.triton().pid == pid
    assert stack.gateway().routes()[PIPELINE] == route
    assert log.entries(kind="serving_restored") == before  # nothing to restore, nothing audited


def test_the_supervisor_restores_a_crashed_triton_without_the_daemon(served) -> None:
    """`lockgate serve supervise` notices the crash by itself and brings champion and canary
    back; SIGTERM stops the supervisor and leaves the servers running."""
    stack, home, champion = served["stack"], served["home"], served["champion"]
    env = dict(os.environ, DAGSTER_DISABLE_TELEMETRY="1", PYTHONUNBUFFERED="1")
    supervisor = subprocess.Popen(
        [*LOCKGATE, "serve", "supervise", "--interval", "0.5", "--home", str(home)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        start_new_session=True,
    )
    try:
        assert supervisor.stdout is not None
        assert "supervising the serving stack" in supervisor.stdout.readline()
        old_pid = stack.triton().pid
        assert old_pid is not None
        served["pgids"].append(old_pid)
        log = AuditLog(served["audit"].path)
        _crash(old_pid)
        deadline = time.monotonic() + 180  # a generous bound on the wait, not a timing check
        mine: list[dict[str, Any]] = []
        while not mine and time.monotonic() < deadline and supervisor.poll() is None:
            time.sleep(0.2)
            entries = log.entries(pipeline=PIPELINE, kind="serving_restored")
            mine = [e for e in entries if "serve supervise" in e["actor"]]
        assert mine, "the supervisor restored nothing"
        new = stack.triton()
        served["pgids"].append(new.pid)
        assert new.pid not in (None, old_pid)
        for version in (champion, served["challenger"]):
            assert new.is_ready(triton_model_name(PIPELINE, version))
        assert mine[0]["payload"]["triton_restarted"] is True
        report = TrafficGenerator(stack.gateway().url, PIPELINE, served["matrix"], max_requests=30)
        report = report.start().wait(60)
        assert report.errors == 0, report.error_messages
    finally:
        supervisor.send_signal(signal.SIGTERM)
        out, err = supervisor.communicate(timeout=60)
    assert supervisor.returncode == 0, err
    assert "supervisor stopped; the servers keep running" in out
    assert stack.triton().pid == new.pid
