"""Training/serving skew: the vector the gateway served from Feast's online store vs what
point-in-time historical retrieval (what training would have seen) gives for the same entities.

A request that carried entity keys (:mod:`lockgate.gateway.online_features`) is logged with its
keys (``entity_keys``) beside the wire rows it was served (``inputs``). For those rows,
:func:`compute_skew_report`

1. reads the most recent ``window_rows`` served rows (live answers with HTTP 200, no shadow
   copies, no older than ``window_seconds``) from the prediction log;
2. asks the Feast offline store for the feature service's values of the same entity keys **as
   of each request's time** (``FeastStore.historical_features``: the newest row at or before it
   within each view's TTL, the join training uses), and encodes them with the served version's
   wire schema (float32 numbers, ``code24`` categorical codes), so both sides went through the
   same rounding and category coding;
3. compares them per feature with the pure :func:`compare_served` (testable on frames).

Per feature the report gives: ``differ_share`` (rows whose served value differs from the
historical one beyond ``abs_tolerance + rel_tolerance * |historical|``, a categorical code
that differs, or a value present on one side only), ``mean_abs_diff`` (numeric features, over
rows present on both sides), ``missing_online`` (served missing, historical present: the
online store lacked the entity or was not materialized), ``missing_offline`` (served present,
historical missing: e.g. the online value is older than the view's TTL, so training would have
seen nothing) and ``jsd``: the Jensen-Shannon distance between the served and the historical
distribution (numeric: bins at the historical values' deciles; categorical: per category).
A feature's severity is the worse of its ``differ_share`` and ``jsd`` levels
(:class:`SkewPolicy`); the report's level is ``critical`` when any feature is critical,
``warning`` when any is at warning, else ``ok`` (``insufficient`` below ``min_rows`` rows).

Example:
    >>> import pandas as pd
    >>> served = pd.DataFrame({"amount": [1.0, 2.0, 3.0, 4.0]})
    >>> offline = pd.DataFrame({"amount": [1.0, 2.0, 3.0, 9.0]})
    >>> r = compare_served(served, offline, {"amount": "numeric"}, SkewPolicy(min_rows=1))
    >>> r["level"], r["features"][0]["differ_share"]
    ('critical', 0.25)
"""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, field_validator

from lockgate.errors import DataError, SpecError

if TYPE_CHECKING:
    from lockgate.features.store import FeastStore
    from lockgate.lineage.registry import ArtifactRegistry
    from lockgate.serving.wire import WireSchema
    from lockgate.spec import ModelPipeline

__all__ = [
    "SKEW_LEVELS",
    "SkewPolicy",
    "compare_served",
    "compute_skew_report",
    "read_entity_rows",
    "served_schemas",
]

SKEW_LEVELS = ("no_traffic", "insufficient", "ok", "warning", "critical")
"""Every level a skew report can have."""

Severity = Literal["ok", "warning", "critical"]
_ORDER = {"ok": 0, "warning": 1, "critical": 2}
_WORST_NAMED = 3


class SkewPolicy(BaseModel):
    """How training/serving skew is measured and judged (the ``skew_report`` asset and check).

    Levels are ``(warning, critical)``: a value at or above a level reaches it.

    Attributes:
        abs_tolerance: served and historical numbers differ when ``|served - historical| >
            abs_tolerance + rel_tolerance * |historical|`` (both are float32 on the wire).
        rel_tolerance: see ``abs_tolerance``.
        differ_share: levels of the share of rows whose value differs (missing on one side
            counts as differing).
        jsd: levels of the Jensen-Shannon distance between the served and the historical
            distribution of a feature.
        features: features judged; empty: every feature of the served wire schema.
        window_rows: most recent served rows (entity-key requests) compared.
        window_seconds: oldest served row compared, in seconds before now (None: no limit).
        min_rows: fewer rows: the report says ``insufficient`` and judges nothing.
        block_on: the lowest level at which the ``skew_within_policy`` check fails at ERROR
            severity (blocking); a lower level than ``ok`` fails at WARN. None: never blocks.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    abs_tolerance: float = Field(default=1e-6, ge=0)
    rel_tolerance: float = Field(default=1e-5, ge=0)
    differ_share: tuple[float, float] = (0.01, 0.05)
    jsd: tuple[float, float] = (0.1, 0.2)
    features: tuple[str, ...] = ()
    window_rows: int = Field(default=10_000, ge=1)
    window_seconds: float | None = Field(default=7 * 86400.0, gt=0)
    min_rows: int = Field(default=20, ge=1)
    block_on: Literal["warning", "critical"] | None = "critical"

    @field_validator("differ_share", "jsd")
    @classmethod
    def _ordered(cls, value: tuple[float, float], info: Any) -> tuple[float, float]:
        warn, critical = value
        if not 0.0 <= warn <= critical <= 1.0:
            raise ValueError(
                f"{info.field_name}={tuple(value)} must be (warning, critical) with 0 <= warning "
                f"<= critical <= 1; e.g. {info.field_name}=(0.01, 0.05)"
            )
        return value


def _level(value: float | None, levels: tuple[float, float]) -> Severity:
    if value is None or not np.isfinite(value):
        return "ok"
    return "critical" if value >= levels[1] else "warning" if value >= levels[0] else "ok"


def _jsd(served: np.ndarray, offline: np.ndarray, kind: str) -> float | None:
    """Jensen-Shannon distance (base 2, in [0, 1]) of the present values of both sides."""
    from scipy.spatial import distance

    a = served[~np.isnan(served)]
    b = offline[~np.isnan(offline)]
    if a.size == 0 or b.size == 0:
        return None
    if kind == "categorical":
        cats, inverse = np.unique(np.concatenate([a, b]), return_inverse=True)
        p = np.bincount(inverse[: a.size], minlength=cats.size).astype(np.float64)
        q = np.bincount(inverse[a.size :], minlength=cats.size).astype(np.float64)
    else:
        from lockgate.monitoring.drift_measures import bin_proportions, quantile_edges

        ref = np.sort(b)
        inner = quantile_edges(ref, 10)
        p = bin_proportions(np.sort(a), inner)
        q = bin_proportions(ref, inner)
    value = float(distance.jensenshannon(p, q, base=2))
    return 0.0 if not np.isfinite(value) else value


def compare_served(
    served: pd.DataFrame,
    offline: pd.DataFrame,
    kinds: Mapping[str, str],
    policy: SkewPolicy | None = None,
) -> dict[str, Any]:
    """Per-feature skew of served values against historical ones, row by row (pure).

    Args:
        served: The served values, one row per served entity row, one float column per
            feature (wire values: numbers, categorical codes; NaN is missing).
        offline: The historical values of the same rows (same length and order, same columns).
        kinds: Feature -> ``"numeric"`` or ``"categorical"`` (the features compared).
        policy: Tolerances and levels (default :class:`SkewPolicy`).

    Returns:
        ``level`` (``insufficient``, ``ok``, ``warning`` or ``critical``), ``reason``,
        ``rows``, ``features`` (one dict per feature, worst first: ``feature``, ``kind``,
        ``rows``, ``differ``, ``differ_share``, ``mean_abs_diff``, ``missing_online``,
        ``missing_offline``, ``jsd``, ``severity``), ``critical_features``,
        ``warning_features`` and ``thresholds``.

    Raises:
        DataError: The frames have different lengths or lack a feature of ``kinds``.
    """
    policy = policy or SkewPolicy()
    if len(served) != len(offline):
        raise DataError(
            f"served has {len(served)} rows but offline {len(offline)}; rule: one historical "
            "row per served row, in the same order; fix: retrieve the historical features for "
            "exactly the served entity rows"
        )
    lacking = [f for f in kinds if f not in served.columns or f not in offline.columns]
    if lacking:
        raise DataError(
            f"feature(s) {lacking} are not in both frames (served: {list(served.columns)[:20]}, "
            f"offline: {list(offline.columns)[:20]}); rule: both sides hold every compared "
            "feature; fix: compare the features of the served wire schema"
        )
    n = len(served)
    thresholds = {
        "differ_share": list(policy.differ_share),
        "jsd": list(policy.jsd),
        "abs_tolerance": policy.abs_tolerance,
        "rel_tolerance": policy.rel_tolerance,
    }
    base: dict[str, Any] = {"rows": n, "thresholds": thresholds}
    if n < policy.min_rows:
        return {
            **base,
            "level": "insufficient",
            "reason": f"{n} served entity-key rows, fewer than min_rows={policy.min_rows}: "
            "nothing is judged yet",
            "features": [],
            "critical_features": [],
            "warning_features": [],
        }
    results: list[dict[str, Any]] = []
    for feature, kind in kinds.items():
        a = served[feature].to_numpy(dtype=np.float64, na_value=np.nan)
        b = offline[feature].to_numpy(dtype=np.float64, na_value=np.nan)
        a_missing, b_missing = np.isnan(a), np.isnan(b)
        both = ~a_missing & ~b_missing
        diff = np.abs(a[both] - b[both])
        if kind == "categorical":
            unequal = diff > 0
            mean_abs: float | None = None
        else:
            unequal = diff > policy.abs_tolerance + policy.rel_tolerance * np.abs(b[both])
            mean_abs = float(diff.mean()) if diff.size else None
        missing_online = int((a_missing & ~b_missing).sum())
        missing_offline = int((~a_missing & b_missing).sum())
        differ = int(unequal.sum()) + missing_online + missing_offline
        share = differ / n
        jsd = _jsd(a, b, kind)
        worst = max(
            _level(share, policy.differ_share), _level(jsd, policy.jsd), key=_ORDER.__getitem__
        )
        results.append(
            {
                "feature": feature,
                "kind": kind,
                "rows": n,
                "differ": differ,
                "differ_share": share,
                "mean_abs_diff": mean_abs,
                "missing_online": missing_online,
                "missing_offline": missing_offline,
                "jsd": jsd,
                "severity": worst,
            }
        )
    results.sort(key=lambda r: (-_ORDER[r["severity"]], -r["differ_share"], -(r["jsd"] or 0.0)))
    critical = [r["feature"] for r in results if r["severity"] == "critical"]
    warning = [r["feature"] for r in results if r["severity"] == "warning"]
    if critical or warning:
        level = "critical" if critical else "warning"
        named = [r for r in results if r["severity"] == level][:_WORST_NAMED]
        more = len(critical if critical else warning) - len(named)
        reason = f"{level} skew on " + ", ".join(_describe(r) for r in named)
        reason += f" and {more} more" if more > 0 else ""
    else:
        level = "ok"
        reason = (
            f"served values match point-in-time historical values on {len(results)} features "
            f"over {n} rows (worst differ share {max((r['differ_share'] for r in results), default=0.0):.2%})"
        )
    return {
        **base,
        "level": level,
        "reason": reason,
        "features": results,
        "critical_features": critical,
        "warning_features": warning,
    }


def _describe(r: Mapping[str, Any]) -> str:
    parts = [f"{r['differ_share']:.1%} of rows differ"]
    if r["missing_online"]:
        parts.append(f"{r['missing_online']} missing online")
    if r["missing_offline"]:
        parts.append(f"{r['missing_offline']} missing offline")
    if r["mean_abs_diff"]:
        parts.append(f"mean |diff| {r['mean_abs_diff']:.4g}")
    if r["jsd"] is not None and r["jsd"] >= 0.01:
        parts.append(f"JSD {r['jsd']:.3f}")
    return f"{r['feature']} ({', '.join(parts)})"


def read_entity_rows(
    log_dir: Any,
    model: str,
    *,
    since: dt.datetime | None = None,
    until: dt.datetime | None = None,
    limit: int | None = None,
) -> pd.DataFrame:
    """The served rows of entity-key requests, one row per entity row, newest ``limit`` kept.

    Only live answers (HTTP 200, not shadow copies) whose ``entity_keys`` hold one key per
    served row are read.

    Args:
        log_dir: The gateway's prediction log (folder or exported log).
        model: The public model name.
        since: Oldest record read (``ts >= since``).
        until: Newest record read (``ts < until``).
        limit: Keep the most recent rows only.

    Returns:
        Columns ``ts`` (datetime64[us, UTC]), ``version``, ``trace_id``, ``keys`` (a dict of
        join key -> value per row) and ``served`` (the served wire row, a float32 array).
    """
    import pyarrow.compute as pc

    from lockgate.gateway.predlog import iter_prediction_log

    records: list[dict[str, Any]] = []
    columns = ["trace_id", "ts", "version", "shadow", "status", "inputs", "entity_keys"]
    for batch in iter_prediction_log(log_dir, model, since=since, until=until, columns=columns):
        keep = pc.and_(
            pc.and_(pc.invert(batch.column("shadow")), pc.equal(batch.column("status"), 200)),
            pc.is_valid(batch.column("entity_keys")),
        )
        batch = batch.filter(pc.fill_null(keep, False))
        if batch.num_rows == 0:
            continue
        for rec in batch.to_pylist():
            inputs = rec["inputs"] or []
            try:
                keys = json.loads(rec["entity_keys"])
            except ValueError:
                continue
            if not isinstance(keys, dict) or not inputs:
                continue
            if any(not isinstance(v, list) or len(v) != len(inputs) for v in keys.values()):
                continue
            for i, row in enumerate(inputs):
                records.append(
                    {
                        "ts": rec["ts"],
                        "version": rec["version"],
                        "trace_id": rec["trace_id"],
                        "keys": {k: v[i] for k, v in keys.items()},
                        "served": np.asarray(row, dtype=np.float32),
                    }
                )
        if limit is not None and len(records) > 2 * limit:
            records = records[-limit:]
    if limit is not None:
        records = records[-limit:]
    frame = pd.DataFrame(records, columns=["ts", "version", "trace_id", "keys", "served"])
    frame["ts"] = pd.to_datetime(frame["ts"], utc=True).astype("datetime64[us, UTC]")
    return frame


def served_schemas(
    artifacts: ArtifactRegistry, pipeline: str, repo_dir: Any = None
) -> Callable[[str], WireSchema]:
    """Version -> the wire schema it was served with (cached per version).

    The version's lock record and snapshot in the artifact registry decide
    (:func:`lockgate.serving.wire.wire_schema_for_version`); a version the registry does not
    hold is read from the ``wire.json`` the gateway reads in a local model repository
    (``<repo>/<pipeline>-<version>/1/wire.json`` or ``<pipeline>-<version>-wire/1/``).

    Raises (from the returned callable):
        ArtifactError: The registry lacks the version and no ``wire.json`` exists, or its
            record fails its integrity check.
    """
    from pathlib import Path

    from lockgate.errors import ArtifactNotFoundError
    from lockgate.serving.wire import WireSchema, wire_schema_for_version

    cache: dict[str, WireSchema] = {}

    def schema_for(version: str) -> WireSchema:
        if version in cache:
            return cache[version]
        try:
            schema = wire_schema_for_version(artifacts, pipeline, version)
        except ArtifactNotFoundError:
            if repo_dir is None or "://" in str(repo_dir):
                raise
            folder = Path(repo_dir)
            files = [
                folder / f"{pipeline}-{version}" / "1" / "wire.json",
                folder / f"{pipeline}-{version}-wire" / "1" / "wire.json",
            ]
            found = next((f for f in files if f.is_file()), None)
            if found is None:
                raise
            schema = WireSchema.from_json(found.read_bytes())
        cache[version] = schema
        return schema

    return schema_for


def compute_skew_report(
    spec: ModelPipeline,
    *,
    feast: FeastStore,
    log_dir: Any,
    schema_for: Callable[[str], WireSchema],
    policy: SkewPolicy | None = None,
    now: float | None = None,
) -> dict[str, Any]:
    """Compares the online vectors the gateway served with point-in-time historical retrieval.

    Args:
        spec: The pipeline (its name is the public model; its ``feature_service`` is looked up).
        feast: The pipeline's Feast store (``FeastStore.for_pipeline``).
        log_dir: The gateway's prediction log.
        schema_for: Version -> the wire schema it was served with
            (``wire_schema_for_version(artifacts, spec.name, version)``).
        policy: Default: ``spec.online_features.skew``, else :class:`SkewPolicy`.
        now: End of the window, unix seconds (default: the clock).

    Returns:
        :func:`compare_served`'s report plus ``pipeline``, ``feature_service``,
        ``generated_at``, ``policy`` and ``window`` (``rows``, ``first``, ``last``,
        ``versions``); level ``no_traffic`` when no served row carried entity keys.

    Raises:
        SpecError: A feature of ``policy.features`` is not in a served version's wire schema.
        FeatureStoreError: Feast cannot join the service onto the served entities.
    """
    if policy is None:
        online = getattr(spec, "online_features", None)
        policy = getattr(online, "skew", None) or SkewPolicy()
    now = time.time() if now is None else now
    until = dt.datetime.fromtimestamp(now, dt.UTC)
    since = (
        None
        if policy.window_seconds is None
        else until - dt.timedelta(seconds=policy.window_seconds)
    )
    rows = read_entity_rows(log_dir, spec.name, since=since, until=until, limit=policy.window_rows)
    base: dict[str, Any] = {
        "pipeline": spec.name,
        "feature_service": spec.feature_service,
        "generated_at": until.isoformat(),
        "policy": policy.model_dump(mode="json"),
        "window": {
            "rows": len(rows),
            "first": None if rows.empty else rows["ts"].min().isoformat(),
            "last": None if rows.empty else rows["ts"].max().isoformat(),
            "versions": {str(k): int(v) for k, v in rows["version"].value_counts().items()},
        },
    }
    if rows.empty:
        return {
            **base,
            "level": "no_traffic",
            "reason": f"no served request of {spec.name} carried entity keys in the window "
            "(online features unused, or nothing served yet): nothing to compare",
            "rows": 0,
            "features": [],
            "critical_features": [],
            "warning_features": [],
        }
    from lockgate.serving.wire import encode

    served_parts: list[pd.DataFrame] = []
    offline_parts: list[pd.DataFrame] = []
    kinds: dict[str, str] = {}
    for version, part in rows.groupby("version", sort=True):
        schema = schema_for(str(version))
        unknown = [f for f in policy.features if f not in schema.names]
        if unknown:
            raise SpecError(
                f"skew features {unknown} of {spec.name!r} are not in version {version}'s wire "
                f"schema {list(schema.names)}; rule: judged features are served features; fix: "
                "correct SkewPolicy.features"
            )
        watched = list(policy.features) or list(schema.names)
        part = part[part["served"].map(len) == schema.width]
        if part.empty:
            continue
        entity = pd.DataFrame(list(part["keys"]))
        entity["event_timestamp"] = part["ts"].reset_index(drop=True)  # the request's time
        historical = feast.historical_features(
            feature_service=spec.feature_service, entity_df=entity
        )
        matrix = encode(historical, schema).astype(np.float64)
        names = list(schema.names)
        served = pd.DataFrame(np.stack(list(part["served"])).astype(np.float64), columns=names)
        offline = pd.DataFrame(matrix, columns=names)
        served_parts.append(served[watched])
        offline_parts.append(offline[watched])
        for column in schema.columns:
            if column.name in watched:
                kinds.setdefault(column.name, column.kind)
    if not served_parts:
        return {
            **base,
            "level": "no_traffic",
            "reason": "no served row had its version's wire width: nothing to compare",
            "rows": 0,
            "features": [],
            "critical_features": [],
            "warning_features": [],
        }
    report = compare_served(
        pd.concat(served_parts, ignore_index=True),
        pd.concat(offline_parts, ignore_index=True),
        kinds,
        policy,
    )
    return {**base, **report}
