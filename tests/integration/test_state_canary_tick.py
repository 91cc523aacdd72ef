"""Two canary controllers ticking at once on shared PostgreSQL state, with the real tritonserver
and gateway: exactly one transition (one state change, one audit entry, one route change).

The controller takes the pipeline's lease (``ServingStack.canary_lease``) and claims its
transition by compare-and-swap (``save_canary_state(..., expected=...)``). Until
``lockgate/sensors/canary.py`` does both, four controllers all advance and this test is an
expected failure (strict: it must fail then, and must pass once the controller does).
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from benchmarks._versions import example_frame
from lockgate.resources.audit import AuditTrail
from lockgate.serving.canary import CanaryPolicy, start
from lockgate.serving.model_repository import load_version, write_model_version
from lockgate.serving.stack import LocalServingStack
from lockgate.serving.wire import encode, wire_schema_for_version
from lockgate.state.postgres import close_connections
from lockgate.state.registry import SharedAliasesLocalRegistry
from lockgate.traffic import TrafficGenerator

from .test_canary import PIPELINE, _store_version, spec

CONTROLLERS = 4
POLICY = CanaryPolicy(
    steps=(1, 5, 25, 100),
    hold_seconds=0,
    min_requests=5,
    max_p99_ms=500.0,
    max_p99_ratio=None,
    max_error_rate=0.05,
    max_error_rate_delta=None,
    max_prediction_psi=None,
)


def test_controllers_ticking_at_once_advance_once(
    postgres_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from lockgate.assets.serving import apply_route, ensure_loaded
    from lockgate.sensors.canary import run_canary_tick

    monkeypatch.setenv("LOCKGATE_SIGNING_KEY", "k" * 40)
    registry = SharedAliasesLocalRegistry(root=str(tmp_path / "artifacts"), state_url=postgres_url)
    frame = example_frame(3000)
    champion = _store_version(registry, frame, seed=1)
    challenger = _store_version(registry, frame, seed=2)
    stack = LocalServingStack(root=str(tmp_path / "serving"), state_url=postgres_url)
    audit = AuditTrail(url=postgres_url)
    try:
        stack.ensure()
        registry.move_alias(PIPELINE, "champion", champion, actor="test", reason="setup")
        ensure_loaded(stack, registry, PIPELINE, champion)
        write_model_version(
            registry, stack.repo_dir, pipeline=PIPELINE, version=challenger, target="cpu"
        )
        load_version(
            triton=stack.triton(), registry=registry, pipeline=PIPELINE, version=challenger
        )
        state = start(
            POLICY, pipeline=PIPELINE, champion=champion, challenger=challenger, now=time.time()
        )
        apply_route(stack, PIPELINE, state.to_dict())
        stack.gateway().reset_stats(PIPELINE)
        assert stack.save_canary_state(PIPELINE, state.to_dict(), expected=None)
        matrix = encode(frame, wire_schema_for_version(registry, PIPELINE, champion))
        # enough challenger traffic at 1% for the step to be ready to advance
        with TrafficGenerator(stack.gateway().url, PIPELINE, matrix, threads=4):
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                stats = stack.gateway().stats(PIPELINE)
                served = stats.get("versions", {}).get(challenger, {}).get("requests", 0)
                if served >= POLICY.min_requests:
                    break
                time.sleep(0.2)
        pipeline = spec(POLICY)
        barrier = threading.Barrier(CONTROLLERS)
        outcomes: list[object] = [None] * CONTROLLERS

        def controller(i: int) -> None:
            barrier.wait(timeout=60)
            outcomes[i] = run_canary_tick(
                pipeline, stack=stack, artifacts=registry, audit=audit, actor=f"controller-{i}"
            )

        threads = [threading.Thread(target=controller, args=(i,)) for i in range(CONTROLLERS)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
        actions = sorted(o.action for o in outcomes)  # type: ignore[union-attr]
        assert actions == ["advance"] + ["hold"] * (CONTROLLERS - 1), outcomes
        after = stack.canary_state(PIPELINE)
        assert after is not None
        assert [h["action"] for h in after["history"]] == ["start", "advance"]
        assert after["weight"] == 0.05
        steps = audit.log().entries(pipeline=PIPELINE, kind="canary_step")
        assert len(steps) == 1
        assert audit.log().verify().ok
        assert stack.gateway().routes()[PIPELINE]["weight"] == 0.05
    finally:
        stack.stop()
        close_connections()
