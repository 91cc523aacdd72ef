"""Label feedback: the join against a real prediction log, the writer, the judge."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from lockgate.errors import CorruptDataError, DataError, EmptyDataError, SchemaError
from lockgate.gateway.predlog import PredictionLog, read_prediction_log
from lockgate.gateway.predlog.records import encode_record as _encode_record
from lockgate.gateway.process import GatewayServer
from lockgate.monitoring.feedback import (
    feedback_files,
    feedback_watermark,
    judge,
    labels_for,
    live_performance,
    read_feedback,
    write_feedback,
)
from lockgate.monitoring.triggers import FeedbackPolicy
from lockgate.tasks import metrics
from lockgate.traffic import TrafficGenerator
from tests.gateway.test_gateway import MODEL as GATEWAY_MODEL
from tests.gateway.test_gateway import WIDTH as GATEWAY_WIDTH
from tests.gateway.test_gateway import fake_http, gateway  # noqa: F401  (fixtures: fake upstream, gateway)

MODEL = "fraud_lgbm"
T0 = dt.datetime(2026, 3, 1, tzinfo=dt.UTC)
WIDTH = 3


def micros(moment: dt.datetime) -> int:
    return int(moment.timestamp() * 1_000_000)


def write_log(log_dir: Path, records: Iterable[dict[str, Any]]) -> None:
    """Log records through the gateway's real PredictionLog (WAL, then rolled to Parquet)."""

    async def scenario() -> None:
        log = PredictionLog(log_dir, durability="flush", segment_max_bytes=64 << 10)
        await log.start()
        futures = []
        for rec in records:
            scores = rec.get("scores")
            outputs = None if scores is None else np.asarray(scores, np.float32).reshape(-1, 1)
            n = 1 if outputs is None else len(outputs)
            meta = {
                "t": rec["trace"],
                "ts": micros(rec["ts"]),
                "m": MODEL,
                "v": rec["version"],
                "rb": "shadow" if rec.get("shadow") else "single",
                "st": rec.get("status", 200),
                "lat": 1.0,
            }
            if rec.get("shadow"):
                meta["sh"] = True
            if rec.get("status", 200) != 200:
                meta["err"] = "upstream failed"
            inputs = np.zeros((n, WIDTH), np.float32)
            futures.append(log.append(_encode_record(meta, inputs, outputs)))
        await asyncio.gather(*futures)
        await log.close()

    asyncio.run(scenario())


@pytest.fixture
def world(tmp_path: Path) -> dict[str, Any]:
    """Two versions serving live traffic, shadow calls, errors; labels with dups and strangers."""
    rng = np.random.default_rng(4)
    n = 1200
    y = (rng.random(n) < 0.3).astype(int)
    good = np.clip(0.35 * y + rng.random(n) * 0.65, 0, 1)  # informative
    noise = rng.random(n)  # uninformative
    records, truth = [], []
    for i in range(n):
        version = "v1" if i % 3 else "v2"
        ts = T0 + dt.timedelta(seconds=10 * i)
        score = good[i] if version == "v1" else noise[i]
        records.append({"trace": f"tr-{i}", "ts": ts, "version": version, "scores": [score]})
        truth.append((f"tr-{i}", ts, version, float(np.float32(score)), y[i]))
        if i % 10 == 0:  # mirrored challenger call: same trace id, never counted
            records.append(
                {"trace": f"tr-{i}", "ts": ts, "version": "v9", "scores": [0.5], "shadow": True}
            )
    for i in range(30):  # errors: no outputs
        ts = T0 + dt.timedelta(seconds=10 * i + 1)
        records.append({"trace": f"err-{i}", "ts": ts, "version": "v1", "status": 502})
    log_dir = tmp_path / "log"
    write_log(log_dir, records)
    labelled = [t for t in truth if int(t[0].split("-")[1]) % 7 != 0]  # ~86 % coverage
    stamps = pd.Series([t[1] + dt.timedelta(days=2) for t in labelled])
    frame = pd.DataFrame(
        {
            "trace_id": [t[0] for t in labelled],
            "label": [t[4] for t in labelled],
            "label_timestamp": stamps,
        }
    )
    # 25 corrections arrive later with the opposite label (the later label wins), plus 40
    # labels of requests the log never saw
    corrected = frame.iloc[:25].copy()
    corrected["label"] = 1 - corrected["label"]
    corrected["label_timestamp"] = corrected["label_timestamp"] + dt.timedelta(days=1)
    strangers = pd.DataFrame(
        {
            "trace_id": [f"unknown-{i}" for i in range(40)],
            "label": [i % 2 for i in range(40)],
            "label_timestamp": [T0 + dt.timedelta(days=3)] * 40,
        }
    )
    feedback = tmp_path / "feedback"
    write_feedback(feedback, frame)
    write_feedback(feedback, pd.concat([corrected, strangers], ignore_index=True))
    truth_frame = pd.DataFrame(truth, columns=["trace_id", "ts", "version", "score", "y0"])
    return {"log": log_dir, "feedback": feedback, "truth": truth_frame, "n": n}


def manual_join(log_dir: Path, feedback: Path, *, as_of: dt.datetime | None = None) -> pd.DataFrame:
    """The join done by hand with pandas on the fully read log and labels."""
    log = read_prediction_log(log_dir, MODEL)
    log = log[(~log["shadow"]) & (log["status"] == 200)].copy()
    log["score"] = [float(rows[0][-1]) for rows in log["outputs"]]
    labels = read_feedback(feedback)
    if as_of is not None:
        log = log[log["ts"] <= as_of]
        labels = labels[labels["label_timestamp"] <= as_of]
    labels = labels.sort_values("label_timestamp", kind="stable").drop_duplicates(
        "trace_id", keep="last"
    )
    return log.merge(labels[["trace_id", "label"]], on="trace_id", how="inner")


def expected_metrics(joined: pd.DataFrame, version: str, window: int) -> dict[str, float]:
    mine = joined[joined["version"] == version].sort_values("ts").tail(window)
    y, p = mine["label"].to_numpy(), mine["score"].to_numpy()
    return {
        "roc_auc": metrics.roc_auc(y, p),
        "pr_auc": metrics.pr_auc(y, p),
        "log_loss": metrics.log_loss(y, p),
        "brier": metrics.brier(y, p),
        "n": len(mine),
        "positives": int(y.sum()),
        "mean_score": float(p.mean()),
    }


@pytest.mark.parametrize("window", [10_000, 150])
def test_metrics_equal_the_metrics_module_on_the_manual_join(
    world: dict[str, Any], window: int
) -> None:
    report = live_performance(
        world["log"], world["feedback"], MODEL, window=window, min_labels=50, metric="roc_auc"
    )
    joined = manual_join(world["log"], world["feedback"])
    assert set(report["versions"]) == {"v1", "v2"}  # the shadow-only v9 never appears
    for version in ("v1", "v2"):
        want = expected_metrics(joined, version, window)
        got = report["versions"][version]
        for name in ("roc_auc", "pr_auc", "log_loss", "brier"):
            assert got["metrics"][name] == pytest.approx(want[name], rel=1e-12, abs=1e-12)
        assert got["n"] == want["n"]
        assert got["positives"] == want["positives"]
        assert got["mean_score"] == pytest.approx(want["mean_score"])
        assert got["positive_rate"] == pytest.approx(want["positives"] / want["n"])
        assert got["undefined"] == {}
        assert got["enough_labels"] is True
    assert report["versions"]["v1"]["metrics"]["roc_auc"] > 0.8  # informative scores
    assert abs(report["versions"]["v2"]["metrics"]["roc_auc"] - 0.5) < 0.1  # noise


def test_counts_duplicates_unknown_trace_ids_and_unlabelled(world: dict[str, Any]) -> None:
    report = live_performance(
        world["log"], world["feedback"], MODEL, window=5000, min_labels=50, metric="brier"
    )
    n = world["n"]
    labelled = sum(1 for i in range(n) if i % 7 != 0)
    assert report["labels"] == {
        "files": 2,
        "rows": labelled + 25 + 40,
        "duplicates": 25,
        "unique": labelled + 40,
        "matched": labelled,
        "unknown_trace_ids": 40,
    }
    assert report["predictions"]["live"] == n
    assert report["predictions"]["skipped_shadow"] == len(range(0, n, 10))
    assert report["predictions"]["skipped_errors"] == 30
    assert report["predictions"]["unlabelled"] == n - labelled
    assert report["predictions"]["duplicate_trace_ids"] == 0
    v1 = report["versions"]["v1"]
    v1_predictions = sum(1 for i in range(n) if i % 3)
    assert v1["predictions"] == v1_predictions
    assert v1["coverage"] == pytest.approx(v1["labelled"] / v1_predictions)
    # the corrections won: the first 25 labels are flipped with respect to the first file
    joined = manual_join(world["log"], world["feedback"])
    truth = world["truth"].set_index("trace_id")["y0"]
    flipped = joined[joined["label"] != joined["trace_id"].map(truth)]
    assert len(flipped) == 25


def test_since_leaves_older_predictions_out_of_the_scan(world: dict[str, Any]) -> None:
    args = dict(window=5000, min_labels=10, metric="roc_auc")
    full = live_performance(world["log"], world["feedback"], MODEL, **args)
    recent = live_performance(
        world["log"], world["feedback"], MODEL, since=T0 + dt.timedelta(seconds=995), **args
    )
    assert recent["predictions"]["live"] == full["predictions"]["live"] - 100
    dropped = full["labels"]["matched"] - recent["labels"]["matched"]
    assert 0 < dropped <= 100
    # their labels are still read, but match no prediction in the scanned part of the log
    assert recent["labels"]["unknown_trace_ids"] == full["labels"]["unknown_trace_ids"] + dropped


def test_as_of_sees_only_labels_known_then(world: dict[str, Any]) -> None:
    as_of = T0 + dt.timedelta(days=2, hours=1)  # labels of the first hour of traffic only
    args = dict(window=5000, min_labels=10, metric="roc_auc")
    report = live_performance(world["log"], world["feedback"], MODEL, as_of=as_of, **args)
    joined = manual_join(world["log"], world["feedback"], as_of=as_of)
    assert report["as_of"] == as_of.isoformat()
    assert report["labels"]["matched"] == len(joined)
    assert report["labels"]["duplicates"] == 0  # the corrections came a day later
    assert report["labels"]["unknown_trace_ids"] == 0  # so did the strangers
    for version in ("v1", "v2"):
        want = expected_metrics(joined, version, 5000)
        assert report["versions"][version]["n"] == want["n"]
        assert report["versions"][version]["metrics"]["roc_auc"] == pytest.approx(want["roc_auc"])
    # predictions made after as_of are not in the log view either
    early = live_performance(
        world["log"], world["feedback"], MODEL, as_of=T0 + dt.timedelta(seconds=995), **args
    )
    assert early["predictions"]["live"] == 100
    assert early["labels"]["matched"] == 0


def test_one_class_window_gives_none_with_the_reason(tmp_path: Path) -> None:
    records = [
        {"trace": f"a{i}", "ts": T0 + dt.timedelta(seconds=i), "version": "v1", "scores": [0.1]}
        for i in range(30)
    ]
    write_log(tmp_path / "log", records)
    write_feedback(
        tmp_path / "fb",
        labels_for([(f"a{i}", i) for i in range(30)], [0] * 30, [T0 + dt.timedelta(days=1)] * 30),
    )
    report = live_performance(
        tmp_path / "log", tmp_path / "fb", MODEL, window=100, min_labels=10, metric="roc_auc"
    )
    block = report["versions"]["v1"]
    assert block["metrics"]["roc_auc"] is None
    assert "single class" in block["undefined"]["roc_auc"]
    assert block["metrics"]["brier"] == pytest.approx(0.01, rel=1e-5)
    assert block["enough_labels"] is False  # n is enough, but the judged metric is undefined


def test_batched_requests_join_by_trace_and_row(tmp_path: Path) -> None:
    records = [
        {
            "trace": f"b{i}",
            "ts": T0 + dt.timedelta(seconds=i),
            "version": "v1",
            "scores": [0.2, 0.9, 0.4],
        }
        for i in range(20)
    ]
    write_log(tmp_path / "log", records)
    y = np.tile([0, 1, 0], 20)
    frame = labels_for(
        [(f"b{i}", 3 * i, 3) for i in range(20)], y, [T0 + dt.timedelta(days=1)] * 60
    )
    assert list(frame["row"][:4]) == [0, 1, 2, 0]
    write_feedback(tmp_path / "fb", frame)
    report = live_performance(
        tmp_path / "log", tmp_path / "fb", MODEL, window=100, min_labels=10, metric="roc_auc"
    )
    block = report["versions"]["v1"]
    assert block["n"] == 60
    assert block["predictions"] == 60
    assert block["metrics"]["roc_auc"] == 1.0  # the 0.9 rows are the positives


def test_write_feedback_is_atomic_and_round_trips(tmp_path: Path) -> None:
    folder = tmp_path / "fb"
    stamps = pd.to_datetime(["2026-03-02T10:00:00+01:00", "2026-03-03T01:00:00+01:00"])
    frame = pd.DataFrame(
        {"trace_id": ["x", "y"], "label": [True, False], "label_timestamp": stamps}
    )
    path = write_feedback(folder, frame)
    assert feedback_files(folder) == [path]
    assert [p.name for p in folder.iterdir()] == [path.name]  # no temp file left
    back = read_feedback(folder)
    assert list(back["trace_id"]) == ["x", "y"]
    assert list(back["label"]) == [1, 0]
    assert back["label_timestamp"][0] == pd.Timestamp("2026-03-02T09:00:00Z")
    before = feedback_watermark(folder)
    assert feedback_watermark(folder) == before
    write_feedback(folder, frame)
    after = feedback_watermark(folder)
    assert after["files"] == 2
    assert after["digest"] != before["digest"]


GOOD = {"trace_id": ["a", "b"], "label": [0, 1], "label_timestamp": [T0, T0]}


@pytest.mark.parametrize(
    ("change", "error", "match"),
    [
        ({"label": [0, 2]}, DataError, "other than 0 and 1"),
        ({"label": [0, None]}, DataError, "other than 0 and 1"),
        ({"trace_id": ["a", ""]}, DataError, "non-empty strings"),
        ({"trace_id": ["a", None]}, DataError, "non-empty strings"),
        ({"label_timestamp": [T0.replace(tzinfo=None)] * 2}, SchemaError, "timezone-aware"),
        ({"label_timestamp": [T0, pd.NaT]}, DataError, "missing"),
        ({"row": [0, -1]}, DataError, "row indices"),
        ({"score": [0.1, 0.2]}, SchemaError, "unexpected \\['score'\\]"),
    ],
)
def test_write_feedback_rejects_bad_frames_and_writes_nothing(
    tmp_path: Path, change: dict[str, Any], error: type[Exception], match: str
) -> None:
    frame = pd.DataFrame({**GOOD, **change})
    if "label_timestamp" in change and change["label_timestamp"][0] is T0:
        frame["label_timestamp"] = pd.to_datetime(frame["label_timestamp"], utc=True)
    with pytest.raises(error, match=match):
        write_feedback(tmp_path / "fb", frame)
    assert not (tmp_path / "fb").exists() or not any((tmp_path / "fb").iterdir())


def test_write_feedback_rejects_missing_columns_empty_frames_and_non_frames(
    tmp_path: Path,
) -> None:
    with pytest.raises(SchemaError, match="missing \\['label'\\]"):
        write_feedback(tmp_path / "fb", pd.DataFrame({"trace_id": ["a"], "label_timestamp": [T0]}))
    with pytest.raises(EmptyDataError, match="no rows"):
        write_feedback(tmp_path / "fb", pd.DataFrame(GOOD).iloc[:0])
    with pytest.raises(DataError, match="pandas DataFrame"):
        write_feedback(tmp_path / "fb", GOOD)  # type: ignore[arg-type]
    assert not (tmp_path / "fb").exists()


def test_a_foreign_file_in_the_folder_is_named(tmp_path: Path) -> None:
    folder = tmp_path / "fb"
    folder.mkdir()
    (folder / "junk.parquet").write_bytes(b"not parquet")
    with pytest.raises(CorruptDataError, match=r"junk\.parquet"):
        read_feedback(folder)
    (folder / "junk.parquet").unlink()
    pd.DataFrame({"trace_id": ["a"], "label": [1]}).to_parquet(folder / "partial.parquet")
    with pytest.raises(SchemaError, match=r"partial\.parquet"):
        read_feedback(folder)


def test_labels_for_checks_row_indices() -> None:
    with pytest.raises(DataError, match="row indices span"):
        labels_for([("t", 5)], [0, 1], [T0, T0])
    with pytest.raises(DataError, match="label_timestamps"):
        labels_for([("t", 0)], [0, 1], [T0])
    frame = labels_for({"t": 1}, [0, 1], pd.to_datetime([T0, T0 + dt.timedelta(days=1)]))
    assert frame.to_dict("list") == {
        "trace_id": ["t"],
        "label": [1],
        "label_timestamp": [pd.Timestamp(T0 + dt.timedelta(days=1))],
    }


def test_traffic_through_the_real_gateway_is_labelled_by_trace_id_and_row(
    tmp_path: Path,
    gateway: GatewayServer,  # noqa: F811
) -> None:
    """TrafficGenerator -> gateway (canary v1/v2, batches of 2) -> labels_for -> the join."""
    gateway.set_route(
        GATEWAY_MODEL, {"mode": "canary", "champion": "v1", "challenger": "v2", "weight": 0.5}
    )
    rng = np.random.default_rng(2)
    matrix = (rng.random((400, GATEWAY_WIDTH)) * 0.8).astype(np.float32)
    mean = matrix.mean(axis=1)  # the fake upstream answers row mean (+0.1 for v2)
    y = (rng.random(400) < mean).astype(int)
    traffic = TrafficGenerator(
        gateway.url, GATEWAY_MODEL, matrix, batch=2, max_requests=120, keep_trace_ids=True
    )
    report = traffic.start().wait(120)
    assert report.errors == 0
    assert len(report.trace_rows) == report.answered == 120
    assert {n for _, _, n in report.trace_rows} == {2}
    stamps = pd.Series([pd.Timestamp.now(tz="UTC") + pd.Timedelta(days=1)] * 400)
    write_feedback(tmp_path / "fb", labels_for(report.trace_rows, y, stamps))
    perf = live_performance(
        tmp_path / "log", tmp_path / "fb", GATEWAY_MODEL, window=1000, min_labels=10, metric="brier"
    )
    log = read_prediction_log(tmp_path / "log")
    served = dict(zip(log["trace_id"], log["version"], strict=True))
    offset = {"v1": np.float32(0.0), "v2": np.float32(0.1)}
    for version in ("v1", "v2"):
        rows = [
            start + j
            for trace, start, n in report.trace_rows
            if served[trace] == version
            for j in range(n)
        ]
        p = (mean[rows] + offset[version]).astype(np.float64)
        block = perf["versions"][version]
        assert block["n"] == block["predictions"] == len(rows) > 0
        assert block["metrics"]["brier"] == pytest.approx(metrics.brier(y[rows], p), rel=1e-9)
        assert block["metrics"]["roc_auc"] == pytest.approx(metrics.roc_auc(y[rows], p))
    assert perf["predictions"]["unlabelled"] == 0


# ---------------------------------------------------------------------------------------------
# judge


def perf(metric: str, live: float | None, n: int = 1000, why: str = "") -> dict[str, Any]:
    block = {
        "n": n,
        "positives": n // 10,
        "metrics": {metric: live},
        "undefined": {metric: why} if live is None else {},
        "window_start": "a",
        "window_end": "b",
    }
    return {"model": MODEL, "as_of": None, "versions": {"v1": block}}


@pytest.mark.parametrize(
    ("metric", "gold", "live", "level"),
    [
        ("roc_auc", 0.90, 0.80, "critical"),
        ("roc_auc", 0.90, 0.87, "warn"),
        ("roc_auc", 0.90, 0.89, "ok"),
        ("roc_auc", 0.90, 0.97, "ok"),  # better than gold
        ("pr_auc", 0.40, 0.30, "critical"),
        ("log_loss", 0.20, 0.30, "critical"),  # lower is better: a rise is a drop
        ("log_loss", 0.20, 0.23, "warn"),
        ("log_loss", 0.20, 0.10, "ok"),
        ("brier", 0.05, 0.11, "critical"),
        ("brier", 0.05, 0.01, "ok"),
    ],
)
def test_judge_is_direction_aware(metric: str, gold: float, live: float, level: str) -> None:
    policy = FeedbackPolicy(metric=metric, max_drop=0.05)  # type: ignore[arg-type]
    got, reason, evidence = judge(perf(metric, live), "v1", gold, policy)
    assert got == level, reason
    assert evidence["live"] == live
    assert evidence["gold"] == gold
    assert evidence["drop"] == pytest.approx(gold - live if metric.endswith("auc") else live - gold)
    assert metric in reason


def test_judge_min_value_without_gold_and_with_it() -> None:
    policy = FeedbackPolicy(metric="roc_auc", max_drop=0.05, min_value=0.75)
    assert judge(perf("roc_auc", 0.70), "v1", None, policy)[0] == "critical"
    level, reason, _ = judge(perf("roc_auc", 0.80), "v1", None, policy)
    assert (level, "no gold estimate" in reason) == ("ok", True)
    assert judge(perf("roc_auc", 0.74), "v1", 0.76, policy)[0] == "critical"  # drop small
    brier = FeedbackPolicy(metric="brier", max_drop=1.0, min_value=0.1)
    assert judge(perf("brier", 0.15), "v1", 0.14, brier)[0] == "critical"
    assert judge(perf("brier", 0.05), "v1", 0.04, brier)[0] == "ok"


def test_judge_says_ok_and_why_without_enough_labels() -> None:
    policy = FeedbackPolicy(metric="roc_auc", min_labels=500)
    level, reason, evidence = judge(perf("roc_auc", 0.5, n=499), "v1", 0.9, policy)
    assert level == "ok"
    assert "499 labelled live predictions" in reason
    assert "min_labels=500" in reason
    assert evidence["n"] == 499
    level, reason, _ = judge(perf("roc_auc", 0.5), "v2", 0.9, policy)  # champion not seen
    assert (level, "0 labelled" in reason) == ("ok", True)
    level, reason, _ = judge(perf("roc_auc", None, why="single class"), "v1", 0.9, policy)
    assert level == "ok"
    assert "undefined: single class" in reason


# ---- tasks other than binary ---------------------------------------------------------------


def _log_outputs(log_dir: Path, version: str, outputs: np.ndarray, t0: dt.datetime) -> list[str]:
    """One live answer of ``outputs[i]`` (a row of any width) per trace; returns the traces."""
    traces = [f"task-{i}" for i in range(len(outputs))]

    async def scenario() -> None:
        log = PredictionLog(log_dir, durability="flush")
        await log.start()
        futures = []
        for i, trace in enumerate(traces):
            meta = {
                "t": trace,
                "ts": micros(t0 + dt.timedelta(seconds=i)),
                "m": MODEL,
                "v": version,
                "rb": "single",
                "st": 200,
                "lat": 1.0,
            }
            out = np.asarray(outputs[i : i + 1], np.float32).reshape(1, -1)
            futures.append(log.append(_encode_record(meta, np.zeros((1, WIDTH), np.float32), out)))
        await asyncio.gather(*futures)
        await log.close()

    asyncio.run(scenario())
    return traces


def _stamps(n: int, t0: dt.datetime) -> pd.Series:
    return pd.Series(pd.to_datetime([t0 + dt.timedelta(days=1)] * n, utc=True))


def test_regression_feedback_measures_rmse_with_an_interval(tmp_path: Path) -> None:
    from lockgate.monitoring.feedback import judge, live_performance, read_feedback, write_feedback

    rng = np.random.default_rng(0)
    t0 = dt.datetime(2025, 3, 1, tzinfo=dt.UTC)
    y = rng.normal(100.0, 20.0, 300)
    pred = y + rng.normal(0.0, 5.0, 300)
    traces = _log_outputs(tmp_path / "log", "v1", pred[:, None], t0)
    frame = labels_for(list(zip(traces, range(300), strict=True)), y, _stamps(300, t0))
    write_feedback(tmp_path / "fb", frame, task="regression")
    back = read_feedback(tmp_path / "fb", task="regression")
    np.testing.assert_allclose(back["label"].to_numpy(), y)
    with pytest.raises(SchemaError, match="label integer 0/1"):  # binary readers refuse it
        read_feedback(tmp_path / "fb")
    perf = live_performance(
        tmp_path / "log", tmp_path / "fb", MODEL, window=1000, min_labels=100, metric="rmse",
        task="regression",
    )  # fmt: skip
    block = perf["versions"]["v1"]
    expected = metrics.rmse(y, pred.astype(np.float32).astype(np.float64))
    assert block["metrics"]["rmse"] == pytest.approx(expected, rel=1e-6)
    assert set(block["metrics"]) == {"rmse", "mae", "r2"}
    low, high = block["interval"]
    assert low < expected < high
    assert block["mean_label"] == pytest.approx(float(y.mean()))
    # rmse is lower-is-better: a live rmse above the gold estimate is worse, by a positive drop
    policy = FeedbackPolicy(metric="rmse", max_drop=1.0, min_labels=100)
    level, reason, evidence = judge(perf, "v1", expected - 2.0, policy, task="regression")
    assert level == "critical"
    assert evidence["higher_is_better"] is False
    assert evidence["drop"] == pytest.approx(2.0, rel=1e-3)
    assert "worse by 2.0" in reason
    assert "lower is better" in reason
    assert "95% interval" in reason
    level, reason, evidence = judge(perf, "v1", expected + 2.0, policy, task="regression")
    assert (level, round(evidence["drop"], 3)) == ("ok", -2.0)  # better than gold: no alarm
    assert "better by 2.0" in reason  # said as such, never "worse by -2.0"
    assert "worse by" not in reason


def test_multiclass_feedback_reads_rows_in_class_order(tmp_path: Path) -> None:
    from lockgate.monitoring.feedback import live_performance, write_feedback

    rng = np.random.default_rng(1)
    t0 = dt.datetime(2025, 3, 1, tzinfo=dt.UTC)
    classes = (3, 7, 9)  # integer classes: labels are matched as strings
    probs = rng.dirichlet([2.0, 2.0, 2.0], 400)
    truth = np.asarray(classes)[probs.argmax(axis=1)]
    truth[:40] = 3  # some mistakes
    traces = _log_outputs(tmp_path / "log", "v1", probs, t0)
    frame = labels_for(list(zip(traces, range(400), strict=True)), truth, _stamps(400, t0))
    write_feedback(tmp_path / "fb", frame, task="multiclass")
    perf = live_performance(
        tmp_path / "log", tmp_path / "fb", MODEL, window=1000, min_labels=100,
        metric="top1_accuracy", task="multiclass", classes=classes,
    )  # fmt: skip
    block = perf["versions"]["v1"]
    served = probs.astype(np.float32).astype(np.float64)
    codes = np.searchsorted(classes, truth)
    assert block["metrics"]["top1_accuracy"] == pytest.approx(
        metrics.top1_accuracy(codes, served), rel=1e-9
    )
    assert block["metrics"]["log_loss"] == pytest.approx(
        metrics.multiclass_log_loss(codes, served), rel=1e-5
    )
    assert block["interval"] is not None
    assert block["positives"] == 0
    assert block["positive_rate"] is None
    # a label the model does not know: said, not zeroed
    extra = labels_for([("task-0", 0)], [5], _stamps(1, t0))
    write_feedback(tmp_path / "fb", extra, task="multiclass")
    again = live_performance(
        tmp_path / "log", tmp_path / "fb", MODEL, window=1000, min_labels=100,
        metric="top1_accuracy", task="multiclass", classes=classes,
    )  # fmt: skip
    assert again["versions"]["v1"]["metrics"]["top1_accuracy"] is None
    assert "not among the model's classes" in again["versions"]["v1"]["undefined"]["log_loss"]


def test_feedback_refuses_labels_and_metrics_of_another_task(tmp_path: Path) -> None:
    from lockgate.errors import SpecError
    from lockgate.monitoring.feedback import live_performance, write_feedback

    t0 = dt.datetime(2025, 3, 1, tzinfo=dt.UTC)
    frame = labels_for([("a", 0)], [float("nan")], _stamps(1, t0))
    with pytest.raises(DataError, match="not finite numbers"):
        write_feedback(tmp_path / "fb", frame, task="regression")
    with pytest.raises(SpecError, match="not a live metric of task 'regression'"):
        live_performance(
            tmp_path, tmp_path, MODEL, window=10, min_labels=1, metric="roc_auc", task="regression"
        )
    with pytest.raises(SpecError, match="classes"):
        live_performance(
            tmp_path, tmp_path, MODEL, window=10, min_labels=1, metric="log_loss",
            task="multiclass",
        )  # fmt: skip


def test_a_non_binary_spec_serves_and_judges_its_gates_primary_metric(tmp_path: Path) -> None:
    from lockgate import Gate, GoldSet, LabelSource, LightGBMTrainer, ModelPipeline, TritonTarget
    from lockgate.monitoring.triggers import DriftPolicy

    def spec(task: str, **over: Any) -> ModelPipeline:
        return ModelPipeline(
            name="shop",
            feature_service="shop_v1",
            label="y",
            task=task,  # type: ignore[arg-type]
            labels=LabelSource(entity_columns=("id",)),
            trainer=LightGBMTrainer(seed=1),
            gate=Gate(gold=GoldSet(key="id")),
            serving=TritonTarget(device="cpu"),
            drift=DriftPolicy(),
            project_dir=str(tmp_path),
            **over,
        )

    assert spec("regression", feedback=FeedbackPolicy()).feedback.metric == "rmse"  # type: ignore[union-attr]
    assert spec("multiclass", feedback=FeedbackPolicy()).feedback.metric == "log_loss"  # type: ignore[union-attr]
    assert spec("binary", feedback=FeedbackPolicy()).feedback.metric == "roc_auc"  # type: ignore[union-attr]
    chosen = spec("regression", feedback=FeedbackPolicy(metric="mae"))
    assert chosen.feedback is not None
    assert chosen.feedback.metric == "mae"
    with pytest.raises(ValueError, match=r"feedback\.metric 'roc_auc' is not a regression metric"):
        spec("regression", feedback=FeedbackPolicy(metric="roc_auc"))
    with pytest.raises(ValueError, match="not a binary live metric"):
        spec("binary", feedback=FeedbackPolicy(metric="rmse"))


def test_a_window_of_many_labels_still_gets_an_interval() -> None:
    """Windows above 5,000 labels used to get no interval at all; the vectorised bootstrap
    gives every window one, narrower as the window grows, around the point estimate."""
    from lockgate.monitoring.feedback_performance import metric_interval
    from lockgate.tasks import metrics as task_metrics

    rng = np.random.default_rng(3)
    widths = []
    for n in (2_000, 40_000, 240_000):
        y = (rng.random(n) < 0.02).astype(np.int64)
        p = np.clip(0.3 * y + 0.7 * rng.random(n), 0.0, 1.0)
        interval = metric_interval("binary", "roc_auc", y, p)
        assert interval is not None, n
        low, high = interval
        assert low < task_metrics.roc_auc(y, p) < high
        widths.append(high - low)
    assert widths[0] > widths[1] > widths[2] > 0.0
    # one class only: the metric is undefined, and so is its interval
    assert metric_interval("binary", "roc_auc", np.zeros(50_000), rng.random(50_000)) is None


def test_live_performance_gives_an_interval_above_5000_labels(tmp_path: Path) -> None:
    from lockgate.monitoring.feedback import live_performance, write_feedback

    n = 6_000
    rng = np.random.default_rng(4)
    t0 = dt.datetime(2025, 3, 1, tzinfo=dt.UTC)
    y = (rng.random(n) < 0.05).astype(np.int64)
    score = np.clip(0.3 * y + 0.7 * rng.random(n), 0.0, 1.0)
    traces = _log_outputs(tmp_path / "log", "v1", score[:, None], t0)
    frame = labels_for(list(zip(traces, range(n), strict=True)), y, _stamps(n, t0))
    write_feedback(tmp_path / "fb", frame)
    perf = live_performance(
        tmp_path / "log", tmp_path / "fb", MODEL, window=n, min_labels=100, metric="roc_auc"
    )
    block = perf["versions"]["v1"]
    assert block["n"] == n
    low, high = block["interval"]
    assert low < block["metrics"]["roc_auc"] < high
