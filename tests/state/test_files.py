"""The embedded state: FileSwapStore and the canary state store on files."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from lockgate.serving.canary import CanaryError, CanaryPolicy, start
from lockgate.serving.canary_state import CanaryStateStore
from lockgate.serving.stack import LocalServingStack, RemoteServingStack
from lockgate.state.files import FileSwapStore
from lockgate.state.postgres import StateStoreError
from lockgate.state.swap import SwapStore
from tests.state import workers


def test_file_swap_store_compares_and_swaps(tmp_path: Path) -> None:
    store = FileSwapStore(root=str(tmp_path / "state"))
    assert isinstance(store, SwapStore)
    assert store.keys("") == []
    assert store.get("a/b.json") is None
    assert store.swap("a/b.json", None, b"1") is True
    assert store.swap("a/b.json", None, b"2") is False
    assert store.swap("a/b.json", b"0", b"2") is False
    assert store.swap("a/b.json", b"1", b"2") is True
    assert store.get("a/b.json") == b"2"
    store.swap("c.json", None, b"c")
    assert store.keys("") == ["a/b.json", "c.json"]  # lock files are hidden
    assert store.keys("a/") == ["a/b.json"]
    assert stat.S_IMODE((tmp_path / "state" / "c.json").stat().st_mode) == 0o600
    for bad in ("../x", "/etc/passwd", ".hidden", "a/../../x"):
        with pytest.raises(StateStoreError, match="must be a relative path"):
            store.get(bad)


def test_canary_state_keeps_its_file_format(tmp_path: Path) -> None:
    stack = LocalServingStack(root=str(tmp_path / "serving"))
    state = start(CanaryPolicy(), pipeline="fraud", champion="v1", challenger="v2", now=0.0)
    assert stack.canary_state("fraud") is None
    assert stack.save_canary_state("fraud", state.to_dict()) is True
    path = stack.state_dir / "fraud.json"
    assert path.read_text() == json.dumps(state.to_dict(), sort_keys=True, indent=1)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stack.canary_state("fraud") == state.to_dict()
    assert stack.canary_pipelines() == ["fraud"]
    # a record written by an earlier release (same file) is read and swapped from
    moved = {**state.to_dict(), "weight": 0.05}
    assert stack.save_canary_state("fraud", moved, expected=state.to_dict()) is True
    assert stack.save_canary_state("fraud", moved, expected=state.to_dict()) is False
    assert stack.canary_state("fraud") == moved


def test_a_damaged_record_is_named(tmp_path: Path) -> None:
    store = CanaryStateStore(FileSwapStore(root=str(tmp_path)), where=str(tmp_path))
    (tmp_path / "fraud.json").write_text("{not json")
    with pytest.raises(CanaryError, match="is not JSON"):
        store.get("fraud")
    with pytest.raises(CanaryError, match="cannot name a canary state record"):
        store.get("../fraud")


def test_two_controllers_on_files_make_one_transition(tmp_path: Path) -> None:
    fields = {
        "triton_url": "http://127.0.0.1:9",
        "gateway_url": "http://127.0.0.1:9",
        "model_repository": str(tmp_path / "repo"),
        "canary_state_dir": str(tmp_path / "canary"),
        "predictions_dir": str(tmp_path / "predictions"),
    }
    stack = RemoteServingStack(**fields)
    state = start(
        CanaryPolicy(hold_seconds="1h", min_requests=200),
        pipeline="fraud",
        champion="v1",
        challenger="v2",
        now=0.0,
    )
    stack.save_canary_state("fraud", state.to_dict(), expected=None)
    results = workers.race(workers.controller_tick, [(fields, "fraud", 7200.0)] * 3)
    assert sorted(results) == ["advance", "lost", "lost"]
    after = stack.canary_state("fraud")
    assert after is not None
    assert [h["action"] for h in after["history"]] == ["start", "advance"]


def test_one_controller_at_a_time_holds_the_file_lease(tmp_path: Path) -> None:
    fields = {
        "triton_url": "http://127.0.0.1:9",
        "gateway_url": "http://127.0.0.1:9",
        "model_repository": str(tmp_path / "repo"),
        "canary_state_dir": str(tmp_path / "canary"),
        "predictions_dir": str(tmp_path / "predictions"),
    }
    results = workers.race(workers.lease_and_claim, [(fields, "fraud", 1.0)] * 3)
    assert sorted(results) == ["busy", "busy", "held"]
    stack = RemoteServingStack(**fields)
    with stack.canary_lease("fraud") as held:
        assert held
        assert workers.race(workers.lease_and_claim, [(fields, "fraud", 0.0)]) == ["busy"]
    assert stack.canary_pipelines() == []  # the lock file is no pipeline's state
