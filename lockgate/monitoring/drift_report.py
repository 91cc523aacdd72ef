"""The drift report: live traffic from the gateway's prediction log vs the champion's training data.

:func:`compute_drift_report` is what the ``drift_report`` asset and the ``<name>_on_drift``
sensor both run:

1. **Reference**: the champion's training snapshot (``triad.data_snapshot_sha256`` of its lock
   record), at most ``REFERENCE_ROWS`` rows (a seeded sample), encoded to the wire format the
   gateway logs (FP32 numeric values, ``code24`` categorical codes), so both sides went through
   the same float32 rounding and category coding. The champion's own scores on those rows are
   the reference of the prediction drift.
2. **Current window**: the live requests (not shadow copies, HTTP 200 only) no older than
   ``window_seconds``, streamed from the log with :func:`lockgate.gateway.app.iter_prediction_log`
   in Arrow batches: with ``window_rows`` set, the most recent ``window_rows`` rows (only they
   are held); with ``window_rows=None``, every row, each batch folded into the running counts
   of a :class:`lockgate.monitoring.drift.DriftAccumulator` as it is read, so a log larger than memory is
   analysed in bounded memory. Rows whose width is not the wire width are counted and left out.
3. **Metrics**: :class:`lockgate.monitoring.drift.DriftAccumulator` per watched feature (PSI, KS, JSD,
   Wasserstein; categorical PSI, JSD, chi-square; missing-value drift; the same numbers as
   :func:`lockgate.monitoring.drift.frame_drift`), and prediction drift: the same metrics on the champion's
   served predictions vs its predictions on the reference, per task
   (:func:`lockgate.monitoring.drift.prediction_values`): binary P(label 1) and regression values as a
   numeric column (bins at the reference predictions' quantiles), the multiclass predicted
   class as a categorical one (PSI, JSD, chi-square over the classes; the report adds each
   class's share). A feature missing in every live row is listed in ``missing_features`` and
   counts as critical.
4. **Level**: ``critical`` when at least ``min_critical_features`` features are critical or the
   prediction PSI reaches ``prediction_psi[1]``; ``warn`` when any feature or the prediction PSI
   is at warn; else ``ok``. Fewer than ``min_rows`` rows: ``insufficient``; no champion yet:
   ``no_champion``.

The report (JSON) and the overlaid histograms of the worst features (PNG) are stored in the
artifact registry under ``drift/<pipeline>/<report_id>/``, where ``report_id`` is the sha256 of
the report's canonical JSON: the same window gives the same id.
"""

from __future__ import annotations

import collections
import datetime as dt
import threading
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from lockgate.errors import SpecError

if TYPE_CHECKING:
    from lockgate.lineage.registry import ArtifactRegistry
    from lockgate.serving.stack import ServingStack
    from lockgate.serving.wire import WireSchema
    from lockgate.spec import ModelPipeline

__all__ = [
    "LEVELS",
    "REFERENCE_ROWS",
    "compute_drift_report",
    "level_headline",
    "log_fingerprint",
]

REFERENCE_ROWS = 200_000
"""Most reference rows used (a seeded sample of larger snapshots)."""

LEVELS = ("no_champion", "insufficient", "ok", "warn", "critical")
"""Every level a drift report can have."""

_PLOTS = 4
_CACHE_LOCK = threading.Lock()
_CACHE: collections.OrderedDict[tuple[str, ...], dict[str, Any]] = collections.OrderedDict()


def log_fingerprint(log_dir: Any, model: str) -> str:
    """A cheap description of the prediction log of ``model`` (file names, sizes, mtimes).

    Changes whenever a request is logged or a segment rolls; reads no data. For a log exported
    to object storage (``log_dir`` an ``s3://`` URL: several gateway replicas), the parts'
    names, one listing.
    """
    import hashlib
    from pathlib import Path

    lines: list[str] = []
    if isinstance(log_dir, str) and "://" in log_dir:
        from lockgate.gateway.predlog.export import PredictionLogExport

        parts = PredictionLogExport(url=log_dir).parts(model)
        lines = [f"{p.day}/{p.replica}/{p.seq}" for p in parts]
        return hashlib.sha256("\n".join(lines).encode()).hexdigest()
    root = Path(log_dir)
    for folder in (root / "_wal", root / model):
        if not folder.is_dir():
            continue
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                st = path.stat()
                lines.append(f"{path.relative_to(root)}:{st.st_size}:{st.st_mtime_ns}")
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()


def _reference(spec: ModelPipeline, artifacts: ArtifactRegistry, champion: str) -> dict[str, Any]:
    """The wire-encoded reference sample and the champion's scores on it (cached per version)."""
    from lockgate.lineage.steps import load_snapshot_frame, load_trained_model
    from lockgate.monitoring.drift import prediction_values
    from lockgate.serving.wire import encode, wire_schema_for_version

    record = artifacts.lock_record(spec.name, champion)
    sha = str(record["triad"]["data_snapshot_sha256"])
    key = (spec.name, champion, sha)
    with _CACHE_LOCK:
        if key in _CACHE:
            _CACHE.move_to_end(key)
            return _CACHE[key]
    schema = wire_schema_for_version(artifacts, spec.name, champion)
    frame = load_snapshot_frame(artifacts, sha)
    if len(frame) > REFERENCE_ROWS:
        frame = frame.sample(n=REFERENCE_ROWS, random_state=0).sort_index()
    matrix = encode(frame, schema)
    model = load_trained_model(artifacts, spec.name, champion)
    if model.task == "binary":
        scores = np.asarray(model.predict_proba(frame), dtype=np.float64)
    else:
        scores = prediction_values(model.task, model.predict(frame), model.classes)
    codes = _category_names(frame, schema)
    ref = {
        "snapshot": sha,
        "schema": schema,
        "frame": _wire_frame(matrix, schema, codes),
        "scores": scores,
        "task": model.task,
        "classes": tuple(model.classes),
        "width": int(model.output_width),
        "codes": codes,
        "rows": len(frame),
    }
    with _CACHE_LOCK:
        _CACHE[key] = ref
        while len(_CACHE) > 4:
            _CACHE.popitem(last=False)
    return ref


def _category_names(frame: pd.DataFrame, schema: WireSchema) -> dict[str, dict[float, str]]:
    from lockgate.serving.wire import code24

    names: dict[str, dict[float, str]] = {}
    for column in schema.columns:
        if column.kind != "categorical" or column.name not in frame.columns:
            continue
        values = frame[column.name].dropna().astype("string").unique()
        names[column.name] = {float(code24(str(v))): str(v) for v in values}
    return names


def _wire_frame(
    matrix: np.ndarray, schema: WireSchema, codes: Mapping[str, Mapping[float, str]]
) -> pd.DataFrame:
    """Wire matrix -> DataFrame: numeric columns as float64, categorical as names (or codes)."""
    data: dict[str, Any] = {}
    for j, column in enumerate(schema.columns):
        values = matrix[:, j].astype(np.float64)
        if column.kind == "numeric":
            data[column.name] = values
            continue
        known = codes.get(column.name, {})
        series = pd.Series(values)
        missing = series.isna()
        named = series.map(known)
        unseen = named.isna() & ~missing
        if unseen.any():
            named[unseen] = "<unseen code " + series[unseen].astype("int64").astype(str) + ">"
        data[column.name] = named.astype(object).where(~missing, None).to_numpy()
    return pd.DataFrame(data)


def _iso(micros: int) -> str:
    return dt.datetime.fromtimestamp(micros / 1e6, dt.UTC).isoformat()


def _count_versions(counter: collections.Counter[str], versions: np.ndarray) -> None:
    """Adds the rows of each version (one ``np.unique`` per batch, not a loop over rows)."""
    if versions.size:
        names, counts = np.unique(versions.astype(str), return_counts=True)
        counter.update(dict(zip(names.tolist(), counts.tolist(), strict=True)))


def _window(
    spec: ModelPipeline,
    log_dir: Any,
    width: int,
    *,
    now: float,
    feed: Callable[[np.ndarray, np.ndarray, np.ndarray], None],
    output_width: int = 1,
) -> dict[str, Any]:
    """Streams the live rows of the window into ``feed(matrix, versions, scores)``.

    ``scores`` holds the rows' outputs, ``(n, output_width)`` when ``output_width`` > 1 (a
    multiclass model's probabilities), else ``(n,)``; NaN where a record's outputs do not
    line up with its inputs or have another width. With ``window_rows`` set, only the most
    recent ``window_rows`` rows are fed, once, at the end (at most that many rows are held);
    without, every batch is fed as it is read.
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    from lockgate.gateway.predlog import iter_prediction_log

    policy = spec.drift
    assert policy is not None
    since = None
    if policy.window_seconds is not None:
        since = dt.datetime.fromtimestamp(now - policy.window_seconds, dt.UTC)
    limit = policy.window_rows
    chunks: collections.deque[tuple[np.ndarray, np.ndarray, np.ndarray]] = collections.deque()
    held = requests = skipped_width = rows_fed = 0
    first_ts = last_ts = None
    versions_seen: collections.Counter[str] = collections.Counter()
    for batch in iter_prediction_log(
        log_dir,
        spec.name,
        since=since,
        until=dt.datetime.fromtimestamp(now, dt.UTC),
        columns=["ts", "version", "shadow", "status", "inputs", "outputs"],
    ):
        keep = pc.and_(pc.invert(batch.column("shadow")), pc.equal(batch.column("status"), 200))
        batch = batch.filter(pc.fill_null(keep, False))
        if batch.num_rows == 0:
            continue
        requests += batch.num_rows
        ts = pc.cast(batch.column("ts"), pa.int64()).to_numpy()
        first_ts = int(ts.min()) if first_ts is None else min(first_ts, int(ts.min()))
        last_ts = int(ts.max()) if last_ts is None else max(last_ts, int(ts.max()))
        inputs = batch.column("inputs")
        outputs = batch.column("outputs")
        per_request = pc.fill_null(pc.list_value_length(inputs), 0).to_numpy()
        out_per_request = pc.fill_null(pc.list_value_length(outputs), 0).to_numpy()
        aligned = per_request == out_per_request
        versions = np.repeat(
            np.asarray(batch.column("version").to_pylist(), dtype=object), per_request
        )
        rows = inputs.flatten()
        row_width = pc.fill_null(pc.list_value_length(rows), 0).to_numpy()
        ok = row_width == width
        skipped_width += int((~ok).sum())
        if not ok.all():
            rows = rows.filter(pa.array(ok))
            versions = versions[ok]
        matrix = rows.flatten().to_numpy(zero_copy_only=False).reshape(-1, width)
        shape = (len(matrix), output_width) if output_width > 1 else (len(matrix),)
        scores = np.full(shape, np.nan)
        if aligned.all() and output_width > 1:
            out_rows = outputs.flatten()
            out_width = pc.fill_null(pc.list_value_length(out_rows), 0).to_numpy()
            if out_width.size == ok.size and (out_width == output_width).all():
                values = out_rows.flatten().to_numpy(zero_copy_only=False)
                scores = np.asarray(values, dtype=np.float64).reshape(-1, output_width)[ok]
        elif aligned.all():
            out_rows = outputs.flatten()
            first = pc.list_element(out_rows, 0).to_numpy(zero_copy_only=False)
            scores = np.asarray(first, dtype=np.float64)[ok] if ok.size == first.size else scores
        if limit is None:
            feed(matrix, versions, scores)
            rows_fed += len(matrix)
            _count_versions(versions_seen, versions)
            continue
        chunks.append((matrix, versions, scores))
        held += len(matrix)
        while chunks and held - len(chunks[0][0]) >= limit:
            held -= len(chunks.popleft()[0])
    if limit is not None and chunks:
        versions = np.concatenate([c[1] for c in chunks])[-limit:]
        feed(
            np.concatenate([c[0] for c in chunks])[-limit:],
            versions,
            np.concatenate([c[2] for c in chunks])[-limit:],
        )
        rows_fed = len(versions)
        _count_versions(versions_seen, versions)
    return {
        "rows": rows_fed,
        "versions": dict(versions_seen),
        "requests": requests,
        "skipped_rows": skipped_width,
        "first_ts": first_ts,
        "last_ts": last_ts,
    }


def compute_drift_report(
    spec: ModelPipeline,
    *,
    stack: ServingStack,
    artifacts: ArtifactRegistry,
    now: float | None = None,
    store: bool = True,
) -> dict[str, Any]:
    """Analyse the current window of the prediction log against the champion's training data.

    Args:
        spec: the pipeline (needs ``drift``).
        stack: where the prediction log is (``stack.prediction_log_dir``).
        artifacts: the registry (champion alias, lock record, snapshot, model; reports go there).
        now: end of the window, unix seconds (default: the clock).
        store: write the report and its plots to the registry.

    Returns:
        The report: ``level`` (see :data:`LEVELS`), ``reason``, ``champion``, ``reference``,
        ``window``, ``features`` (one :class:`lockgate.monitoring.drift.FeatureDrift` dict each, worst
        first), ``critical_features``, ``warn_features``, ``prediction``, ``thresholds``,
        ``report_id`` and ``uri`` (None when not stored), and ``images`` (plot file names).

    Raises:
        SpecError: the pipeline has no drift policy, or a watched feature is not in the wire
            schema.
    """
    from lockgate.evaluation import plots
    from lockgate.lineage.hashing import canonical_json, sha256_bytes
    from lockgate.monitoring.drift import (
        DriftAccumulator,
        prediction_kind,
        prediction_values,
        severity,
    )

    policy = spec.drift
    if policy is None:
        raise SpecError(
            f"pipeline {spec.name!r} has no drift policy; add drift=DriftPolicy() to its spec"
        )
    now = time.time() if now is None else now
    champion = artifacts.alias(spec.name, "champion")
    base: dict[str, Any] = {
        "pipeline": spec.name,
        "champion": champion,
        "generated_at": dt.datetime.fromtimestamp(now, dt.UTC).isoformat(),
        "policy": policy.model_dump(mode="json"),
        "report_id": None,
        "uri": None,
        "images": [],
    }
    if champion is None:
        return {**base, "level": "no_champion", "reason": f"{spec.name} has no champion yet"}
    ref = _reference(spec, artifacts, champion)
    schema: WireSchema = ref["schema"]
    watched = list(policy.features) or list(schema.names)
    unknown = [f for f in watched if f not in schema.names]
    if unknown:
        raise SpecError(
            f"drift features {unknown} of {spec.name!r} are not in the wire schema "
            f"{list(schema.names)}; fix DriftPolicy.features"
        )
    thresholds = policy.thresholds()
    features = DriftAccumulator(
        ref["frame"], features=watched, bins=policy.bins, thresholds=thresholds,
        ks_pvalue_method="limit",
    )  # fmt: skip
    task: str = ref["task"]
    kind = prediction_kind(task)
    predictions = DriftAccumulator(
        pd.DataFrame({"prediction": ref["scores"]}), bins=policy.bins, thresholds=thresholds,
        ks_pvalue_method="limit", kinds={"prediction": kind},
    )  # fmt: skip
    served_sum = [0.0]

    def feed(matrix: np.ndarray, versions: np.ndarray, scores: np.ndarray) -> None:
        features.update(_wire_frame(matrix, schema, ref["codes"])[watched])
        mine = scores[versions == champion]
        values = prediction_values(task, mine, ref["classes"])
        served = values[np.isfinite(values)] if kind == "numeric" else values[pd.notna(values)]
        if served.size:
            predictions.update({"prediction": served})
            if kind == "numeric":
                served_sum[0] += float(served.sum())

    window = _window(
        spec, stack.prediction_log_dir, schema.width, now=now, feed=feed,
        output_width=ref["width"],
    )  # fmt: skip
    n = window["rows"]
    first, last = window["first_ts"], window["last_ts"]
    base["reference"] = {"snapshot_sha256": ref["snapshot"], "rows": ref["rows"]}
    base["window"] = {
        "rows": n,
        "requests": window["requests"],
        "skipped_rows_wrong_width": window["skipped_rows"],
        "first": None if first is None else _iso(first),
        "last": None if last is None else _iso(last),
        "versions": window["versions"],
        "mode": "streamed" if policy.window_rows is None else f"last {policy.window_rows} rows",
    }
    base["thresholds"] = {
        "psi": list(policy.psi),
        "ks": list(policy.ks),
        "jsd": list(policy.jsd),
        "prediction_psi": None if policy.prediction_psi is None else list(policy.prediction_psi),
    }
    if n < policy.min_rows:
        return {
            **base,
            "level": "insufficient",
            "reason": f"{n} live rows in the window, fewer than min_rows={policy.min_rows}: "
            "nothing is judged yet",
            "features": [],
            "critical_features": [],
            "warn_features": [],
            "missing_features": [],
            "prediction": None,
        }
    # a feature that arrives missing in every live row is the worst drift there is; the
    # distribution metrics need values, so it is listed apart and counts as critical
    missing = [f for f in watched if features.histogram(f)["n_cur"] == 0]
    results = features.result([f for f in watched if f not in missing])
    order = {"critical": 2, "warn": 1, "ok": 0}
    results.sort(key=lambda r: (-order[r.severity], -(r.psi if np.isfinite(r.psi) else 0.0)))
    critical = [*missing, *(r.feature for r in results if r.severity == "critical")]
    warn = [r.feature for r in results if r.severity == "warn"]

    prediction: dict[str, Any]
    if predictions.n_current >= policy.min_rows:
        pred = predictions.result()[0].to_dict()
        levels = policy.prediction_psi
        pred["severity"] = (
            "ok" if levels is None else severity(pred["psi"], warn=levels[0], critical=levels[1])
        )
        pred["task"] = task
        if kind == "numeric":
            pred["mean_reference"] = float(np.nanmean(ref["scores"]))
            pred["mean_current"] = served_sum[0] / predictions.n_current
        else:  # the share of each predicted class, reference and live
            hist = predictions.histogram("prediction")
            pred["class_share_reference"] = dict(
                zip(hist["categories"], hist["reference"], strict=True)
            )
            pred["class_share_current"] = dict(
                zip(hist["categories"], hist["current"], strict=True)
            )
        prediction = pred
    else:
        prediction = {
            "severity": "ok",
            "reason": f"{predictions.n_current} champion scores in the window (< min_rows): "
            "not judged",
        }

    reasons = []
    if len(critical) >= policy.min_critical_features:
        reasons.append(f"critical drift on {', '.join(critical)}")
    if missing:
        reasons.append(f"missing in every live row: {', '.join(missing)}")
    if prediction.get("severity") == "critical":
        reasons.append(f"prediction PSI {prediction['psi']:.3f} >= {policy.prediction_psi[1]}")  # type: ignore[index]
    if len(critical) >= policy.min_critical_features or prediction.get("severity") == "critical":
        level, reason = "critical", "; ".join(reasons)
    elif critical or warn or prediction.get("severity") == "warn":
        level = "warn"
        reason = "warn level on " + ", ".join(
            [*critical, *warn, *(["prediction"] if prediction.get("severity") == "warn" else [])]
        )
        if critical:
            reason += f" (critical on {len(critical)} < min_critical_features)"
    else:
        level, reason = "ok", f"no drift above the warn levels on {len(results)} features"
    report = {
        **base,
        "level": level,
        "reason": reason,
        "features": [r.to_dict() for r in results],
        "critical_features": critical,
        "warn_features": warn,
        "missing_features": missing,
        "prediction": prediction,
    }
    if not store:
        return report
    skip = ("report_id", "uri", "images", "generated_at", "histograms")
    identity = {k: v for k, v in report.items() if k not in skip}
    report_id = sha256_bytes(canonical_json(identity))[:16]
    prefix = f"drift/{spec.name}/{report_id}"
    worst = results[:_PLOTS]
    report["report_id"] = report_id
    report["uri"] = artifacts.uri(f"{prefix}/drift.json")
    report["images"] = sorted(f"{r.feature}.png" for r in worst)
    report["histograms"] = {}  # bin shares of the plotted features, for the inline charts
    if artifacts.exists(f"{prefix}/drift.json"):  # the same window analysed again: stored
        stored = artifacts.read_json(f"{prefix}/drift.json")
        report["histograms"] = stored.get("histograms", {})
        return report
    images: dict[str, bytes] = {}
    for r in worst:
        hist = features.histogram(r.feature)
        report["histograms"][r.feature] = {
            "reference": [float(v) for v in hist["reference"]],
            "current": [float(v) for v in hist["current"]],
        }
        if hist["kind"] == "numeric":
            edges = hist["edges"]
            labels = [f"[{edges[i]:.4g}, {edges[i + 1]:.4g})" for i in range(len(edges) - 1)]
        else:
            labels = [str(c) for c in hist["categories"]]
        subtitle = f"{r.severity}: PSI {r.psi:.3f}  JSD {r.jsd:.3f}" + (
            f"  KS {r.ks:.3f}" if r.ks is not None else ""
        )
        images[f"{r.feature}.png"] = plots.drift_histogram_plot(
            r.feature, labels, hist["reference"], hist["current"], subtitle=subtitle
        )
    artifacts.write_files_once(prefix, {"drift.json": canonical_json(report), **images})
    return report


_LEVEL_MARKS = {
    "critical": "🔴 CRITICAL",
    "warn": "🟠 WARN",
    "ok": "🟢 OK",
    "insufficient": "⚪ INSUFFICIENT DATA",
    "no_champion": "⚪ NO CHAMPION",
}


def level_headline(report: Mapping[str, Any]) -> str:
    """The report's level and reason on one line, marked so that it reads at a glance.

    Example:
        >>> level_headline({"level": "critical", "reason": "critical drift on age"})
        '🔴 CRITICAL: critical drift on age'
    """
    mark = _LEVEL_MARKS.get(str(report["level"]), str(report["level"]).upper())
    return f"{mark}: {report['reason']}"
