"""Gold selection, edge cases and the report on small real models."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest

from lockgate.errors import SchemaError
from lockgate.evaluation.gate import Condition, EdgeCase, Gate, GoldSet, SliceSpec, evaluate_gate
from lockgate.evaluation.model_card import model_card
from lockgate.evaluation.report import (
    apply_edge_case,
    build_report,
    gold_mask,
    run_edge_cases,
)
from lockgate.training import LightGBMTrainer


def _frame(n: int = 4000, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n)
    device = rng.choice(["ios", "web", "pos"], size=n)
    logit = -3 + 2 * x + (device == "web")
    return pd.DataFrame(
        {
            "transaction_id": [f"t{i}" for i in range(n)],
            "x": x,
            "noise": rng.normal(size=n),
            "device": device,
            "y": (rng.random(n) < 1 / (1 + np.exp(-logit))).astype("int64"),
        }
    )


def test_gold_mask_is_stable_and_sized() -> None:
    frame = _frame()
    gold = GoldSet(key="transaction_id", fraction=0.2)
    mask = gold_mask(frame, gold)
    assert 0.17 < mask.mean() < 0.23
    # membership depends only on the key: stable under reordering and growth
    bigger = pd.concat(
        [frame, _frame(seed=1).assign(transaction_id=lambda f: "u" + f.index.astype(str))]
    )
    assert (gold_mask(bigger, gold)[: len(frame)] == mask).all()
    shuffled = frame.sample(frac=1.0, random_state=1)
    assert (gold_mask(shuffled, gold) == mask[shuffled.index.to_numpy()]).all()
    assert (gold_mask(frame, GoldSet(key="transaction_id", salt="other")) != mask).any()
    with pytest.raises(SchemaError, match="gold set key"):
        gold_mask(frame.drop(columns=["transaction_id"]), gold)


def test_edge_case_rows() -> None:
    frame = _frame()
    case = EdgeCase(
        name="web_missing_x",
        where=(Condition(column="device", op="==", value="web"),),
        set={"x": None},
        scale={"noise": 10.0},
    )
    rows = apply_edge_case(frame, case)
    assert set(rows["device"]) == {"web"}
    assert rows["x"].isna().all()
    assert np.allclose(rows["noise"], frame.loc[rows.index, "noise"] * 10)
    assert frame["x"].notna().all()  # the gold frame is untouched
    with pytest.raises(SchemaError, match="lacks"):
        apply_edge_case(frame, EdgeCase(name="b", where=(Condition(column="z", op="isnull"),)))


def test_report_and_card_with_real_models() -> None:
    frame = _frame()
    gold_def = GoldSet(key="transaction_id", fraction=0.3)
    mask = gold_mask(frame, gold_def)
    train, gold = frame[~mask], frame[mask].reset_index(drop=True)
    good = LightGBMTrainer(seed=1, num_boost_round=40).fit(
        train, features=["x", "device"], label="y"
    )
    bad = LightGBMTrainer(seed=1, num_boost_round=40).fit(train, features=["noise"], label="y")
    gate = Gate(
        gold=gold_def,
        slices=(
            SliceSpec(column="device"),
            SliceSpec(column="x", edges=(0.0,), labels=("neg", "pos")),
        ),
        min_slice_rows=50,
        min_gold_rows=100,
        n_boot=100,
        edge_cases=(EdgeCase(name="missing_x", set={"x": None}),),
    )
    report, scores = build_report(
        pipeline="p", gate=gate, label="y", gold=gold, gold_sha256="g" * 64,
        challenger_version="good", challenger=good, champion_version="bad", champion=bad,
    )  # fmt: skip
    mine, theirs = report["challenger"]["metrics"], report["champion"]["metrics"]
    assert mine["roc_auc"]["lower"] <= mine["roc_auc"]["estimate"] <= mine["roc_auc"]["upper"]
    assert mine["roc_auc"]["estimate"] > theirs["roc_auc"]["estimate"] + 0.2
    assert report["comparison"]["roc_auc"]["lower"] > 0
    assert {s["slice"] for s in report["slices"]} == {"device", "x_bucket"}
    assert report["largest_slice_gap"]["delta"] == min(s["delta"] for s in report["slices"])
    assert report["edge_cases"][0]["passed"] is True
    assert report["challenger"]["calibration"]["bins"]
    assert len(scores["challenger"]) == len(gold)
    verdicts = evaluate_gate(report, gate)
    assert all(v.passed for v in verdicts)
    lock = {
        "triad": {"code_commit": "c", "data_snapshot_sha256": "d", "weights_sha256": "w"},
        "code": {"dirty": False},
        "artifact": {"weights_file": "model.txt"},
        "trainer": {"kind": "lightgbm", "seed": 1},
        "features": ["x", "device"],
    }
    card = model_card(report, lock, verdicts)
    assert "| roc_auc |" in card
    assert "PASS `gate_vs_champion`" in card


# --------------------------------------------------------------------------------------------
# Tasks: small fake models with the task-general API (predict, classes, task)
# --------------------------------------------------------------------------------------------


class _FakeModel:
    """``predict(frame)`` from a function of the frame, with ``classes`` and ``task``."""

    def __init__(self, task: str, fn, classes: tuple | None = None) -> None:
        self.task, self.classes, self._fn = task, classes, fn

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        return np.asarray(self._fn(frame), dtype=np.float64)


CLASSES = ("cat", "dog", "eel")
LOCK = {
    "triad": {"code_commit": "c", "data_snapshot_sha256": "d", "weights_sha256": "w"},
    "code": {"dirty": False},
    "artifact": {"weights_file": "model.txt"},
    "trainer": {"kind": "lightgbm", "seed": 1},
    "features": ["x"],
}


def _task_frame(task: str, n: int = 1200, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    device = rng.choice(["ios", "web"], size=n)
    if task == "regression":
        x = rng.normal(size=n)
        label = 3.0 * x + rng.normal(size=n)
    else:
        codes = rng.integers(0, 3, size=n)
        x = codes + rng.normal(size=n) * 0.7
        label = np.asarray(CLASSES, dtype=object)[codes]
    return pd.DataFrame(
        {"transaction_id": [f"t{i}" for i in range(n)], "x": x, "device": device, "label": label}
    )


def _softmax_model(sharpness: float, classes: tuple = CLASSES) -> _FakeModel:
    def fn(frame: pd.DataFrame) -> np.ndarray:
        z = -sharpness * (frame["x"].to_numpy()[:, None] - np.arange(3)[None, :]) ** 2
        p = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
        return p[:, [CLASSES.index(c) for c in classes]]

    return _FakeModel("multiclass", fn, classes)


def _task_models(task: str) -> tuple[_FakeModel, _FakeModel]:
    """(good, bad) models of the task."""
    if task == "regression":
        return (
            _FakeModel("regression", lambda f: 3.0 * f["x"].to_numpy()),
            _FakeModel("regression", lambda f: 1.5 * f["x"].to_numpy()),
        )
    return _softmax_model(1.0), _softmax_model(0.1)


def _task_gate(**policy) -> Gate:
    return Gate(
        gold=GoldSet(key="transaction_id"),
        slices=(SliceSpec(column="device"),),
        min_slice_rows=50,
        min_gold_rows=100,
        n_boot=100,
        edge_cases=(
            EdgeCase(name="finite"),
            EdgeCase(
                name="web",
                expect="not_worse_than_champion",
                where=(Condition(column="device", op="==", value="web"),),
            ),
        ),
        **policy,
    )


def _task_report(task: str, challenger: _FakeModel, champion: _FakeModel | None, **policy):
    return build_report(
        pipeline="p", gate=_task_gate(**policy), label="label", gold=_task_frame(task),
        gold_sha256="g" * 64, challenger_version="new", challenger=challenger,
        champion_version="old" if champion else None, champion=champion, task=task,
    )  # fmt: skip


def test_regression_report_keys_and_card() -> None:
    import json

    good, bad = _task_models("regression")
    report, scores = _task_report("regression", good, bad)
    json.dumps(report)
    assert report["task"] == "regression"
    assert set(report["challenger"]) == {"version", "metrics", "residuals", "prediction_summary"}
    assert list(report["challenger"]["metrics"]) == ["rmse", "mae", "r2"]
    assert set(report["comparison"]) == {"rmse", "mae", "r2"}
    assert report["gold"]["positives"] is None
    assert set(report["gold"]["target"]) == {"mean", "std"}
    rmse = report["challenger"]["metrics"]["rmse"]
    assert rmse["lower"] <= rmse["estimate"] <= rmse["upper"]
    assert report["challenger"]["residuals"]["n"] == len(scores["challenger"])
    assert {s["metric"] for s in report["slices"]} == {"rmse"}
    assert [c["passed"] for c in report["edge_cases"]] == [True, True]
    assert report["policy"]["primary"] == "rmse"
    card = model_card(report, LOCK, evaluate_gate(report, _task_gate()))
    assert "| rmse |" in card
    assert "## Residuals" in card
    assert "- task: `regression`" in card


def test_multiclass_report_keys_and_card() -> None:
    import json

    good, bad = _task_models("multiclass")
    report, scores = _task_report("multiclass", good, bad)
    json.dumps(report)
    assert report["task"] == "multiclass"
    assert report["classes"] == list(CLASSES)
    assert set(report["challenger"]) == {
        "version",
        "metrics",
        "calibration",
        "per_class",
        "confusion_matrix",
        "prediction_summary",
    }
    assert list(report["challenger"]["metrics"]) == [
        "log_loss",
        "top1_accuracy",
        "macro_f1",
        "min_class_recall",
        "roc_auc_ovr",
    ]
    counts = report["gold"]["class_counts"]
    assert list(counts) == list(CLASSES)
    assert sum(counts.values()) == report["gold"]["rows"]
    assert [c["class"] for c in report["challenger"]["per_class"]] == list(CLASSES)
    assert np.asarray(report["challenger"]["confusion_matrix"]).sum() == report["gold"]["rows"]
    assert scores["challenger"].shape == (report["gold"]["rows"], 3)
    assert report["challenger"]["calibration"]["bins"]
    card = model_card(report, LOCK, evaluate_gate(report, _task_gate()))
    assert "| macro_f1 |" in card
    assert "## Per class" in card
    assert "| eel |" in card


@pytest.mark.parametrize("task", ["regression", "multiclass"])
def test_vs_champion_on_a_real_report(task: str) -> None:
    good, bad = _task_models(task)
    better, _ = _task_report(task, good, bad)
    assert all(v.passed for v in evaluate_gate(better, _task_gate())), evaluate_gate(
        better, _task_gate()
    )
    worse, _ = _task_report(task, bad, good)
    verdicts = {v.rule: v for v in evaluate_gate(worse, _task_gate())}
    assert not verdicts["gate_vs_champion"].passed
    assert verdicts["gate_vs_champion"].metric == ("rmse" if task == "regression" else "log_loss")
    assert not verdicts["gate_slices"].passed
    assert not verdicts["gate_edge_cases"].passed  # worse on the web rows too


def test_multiclass_champion_columns_are_reordered_and_unknown_labels_refused() -> None:
    from lockgate.errors import DataError

    good, _ = _task_models("multiclass")
    shuffled = _softmax_model(1.0, classes=("eel", "cat", "dog"))
    report, scores = _task_report("multiclass", good, shuffled)
    np.testing.assert_allclose(scores["champion"], scores["challenger"])
    assert report["comparison"]["log_loss"]["delta"] == 0.0
    other = _FakeModel("multiclass", good.predict, ("cat", "dog", "fox"))
    with pytest.raises(DataError, match="classes"):
        _task_report("multiclass", good, other)
    frame = _task_frame("multiclass")
    frame.loc[3, "label"] = "yak"
    with pytest.raises(DataError, match=r"not among the model's classes.*'yak'"):
        build_report(
            pipeline="p",
            gate=_task_gate(),
            label="label",
            gold=frame,
            gold_sha256="g" * 64,
            challenger_version="new",
            challenger=good,
            champion_version=None,
            champion=None,
            task="multiclass",
        )


def test_invalid_predictions_fail_the_finite_edge_case_per_task() -> None:
    def finite_case(task: str, model: _FakeModel, gold_mean_score: float) -> dict[str, Any]:
        cases = (EdgeCase(name="finite", min_rows=1),)
        return run_edge_cases(
            cases,
            _task_frame(task),
            label="label",
            challenger=model,
            champion=None,
            gold_mean_score=gold_mean_score,
            task=task,
        )[0]

    broken = _FakeModel("multiclass", lambda f: np.full((len(f), 3), 0.5), CLASSES)
    result = finite_case("multiclass", broken, 0.0)
    assert result["passed"] is False
    assert "summing to 1" in result["threshold"]
    nan_model = _FakeModel("regression", lambda f: np.where(f["x"] > 0, np.nan, 1.0))
    assert finite_case("regression", nan_model, 1.0)["passed"] is False


def test_a_gate_that_does_not_fit_the_task_is_refused_by_the_report() -> None:
    from lockgate.errors import SpecError

    good, bad = _task_models("regression")
    with pytest.raises(SpecError, match="task 'regression'"):
        _task_report("regression", good, bad, absolute={"roc_auc": 0.7})


def test_edge_case_messages_round_numbers_and_name_the_rule() -> None:
    good, bad = _task_models("regression")
    cases = (
        EdgeCase(
            name="web", expect="not_worse_than_champion", metric="rmse", threshold=0.0, min_rows=1
        ),
        EdgeCase(name="finite", min_rows=1),
    )
    frame = _task_frame("regression")
    worse, fine = run_edge_cases(
        cases,
        frame,
        label="label",
        challenger=bad,
        champion=good,
        gold_mean_score=1.0,
        task="regression",
    )
    assert not worse["passed"]
    change = f"{worse['actual']:+.4f}"
    assert worse["message"] == (
        f"web: rmse change vs champion {change} (breaks rmse no more than 0.0 worse than champion)"
    )
    assert fine["message"].startswith("finite: valid predictions (meets ")
