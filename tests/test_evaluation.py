"""Gold selection, edge cases and the report on small real models."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from lockgate.errors import SchemaError
from lockgate.evaluation import apply_edge_case, build_report, gold_mask, model_card
from lockgate.gate import Condition, EdgeCase, Gate, GoldSet, SliceSpec, evaluate_gate
from lockgate.trainers import LightGBMTrainer


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
