"""Label feedback: delayed labels joined to the gateway's prediction log, live performance per version.

The gateway answers every request with a trace id (``parameters.lockgate_trace_id``) and logs
it with the served version and the output rows (:mod:`lockgate.gateway.app`). Labels arrive later
(a chargeback, a fraud analyst's verdict) as Parquet files in a feedback folder, one row per
labelled prediction::

    trace_id         string     the trace id the gateway returned
    label            int8       0 or 1
    label_timestamp  timestamp  when the label became known (tz-aware, stored as UTC)
    row              int32      optional: the row of a batched request (default 0)

* :func:`write_feedback` validates a frame and adds it as a new file, atomically.
* :func:`live_performance` streams the log and joins the labels: per model version, the most
  recent ``window`` labelled predictions give ROC AUC, PR AUC, log loss and Brier score
  (:mod:`lockgate.tasks.metrics`), label coverage, mean score and positive rate.
* :func:`judge` (pure) compares the champion's live metric with its gold-set estimate and
  says ``ok``, ``warn`` or ``critical``; :func:`lockgate.monitoring.triggers.step` turns levels into
  retrains.
* :func:`labels_for` builds the feedback frame for requests a
  :class:`~lockgate.traffic.TrafficGenerator` sent (demo, drills, tests).

Example:
    >>> import pandas as pd
    >>> frame = labels_for([("t-1", 0), ("t-2", 1)], [0, 1],
    ...                    pd.to_datetime(["2024-01-02", "2024-01-03"], utc=True))
    >>> list(frame.columns)
    ['trace_id', 'label', 'label_timestamp']

The folder of label files is :mod:`~lockgate.monitoring.feedback_store`, the join and the live
metrics :mod:`~lockgate.monitoring.feedback_performance`; their public names are re-exported here.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from lockgate.errors import DataError
from lockgate.monitoring.feedback_performance import (
    HIGHER_IS_BETTER,
    LIVE_METRICS,
    live_metrics,
    live_performance,
    metric_interval,
)
from lockgate.monitoring.feedback_store import (
    FEEDBACK_COLUMNS,
    check_task,
    feedback_files,
    feedback_schema,
    feedback_watermark,
    read_feedback,
    write_feedback,
)

if TYPE_CHECKING:
    import pandas as pd

    from lockgate.monitoring.triggers import FeedbackPolicy

__all__ = [
    "FEEDBACK_COLUMNS",
    "HIGHER_IS_BETTER",
    "LIVE_METRICS",
    "feedback_files",
    "feedback_schema",
    "feedback_watermark",
    "judge",
    "labels_for",
    "live_metrics",
    "live_performance",
    "metric_interval",
    "read_feedback",
    "write_feedback",
]

Level = Literal["ok", "warn", "critical"]


# ---------------------------------------------------------------------------------------------
# judging


def judge(
    performance: Mapping[str, Any],
    champion_version: str,
    gold_estimate: float | None,
    policy: FeedbackPolicy,
    *,
    task: str = "binary",
) -> tuple[Level, str, dict[str, Any]]:
    """The level of the champion's live performance under ``policy`` (pure).

    ``critical`` when the live metric is worse than the gold-set estimate by more than
    ``max_drop`` or worse than ``min_value``; ``warn`` when worse by more than half of
    ``max_drop``; ``ok`` otherwise, and ``ok`` with the reason when the window holds fewer
    than ``min_labels`` labelled predictions or the metric is undefined on it. "Worse" follows
    the metric's direction for the task (:func:`lockgate.tasks.catalog.metric_direction`): lower ROC
    AUC / PR AUC / accuracy / R2, higher log loss / Brier score / RMSE / MAE; ``drop`` is how
    much worse, positive when worse. When the window's block carries a bootstrap ``interval``
    (small windows, see :func:`live_performance`) the reason quotes it and the evidence holds
    it as ``live_interval``.

    Args:
        performance: a :func:`live_performance` report.
        champion_version: the version the champion alias points at.
        gold_estimate: the champion's metric on the gold set (None: only ``min_value`` judges).
        policy: the pipeline's feedback policy.
        task: the pipeline's task (the metric's direction).

    Returns:
        ``(level, reason, evidence)``; evidence is JSON-able (metric, live and gold values,
        drop, thresholds, window size and span).

    Raises:
        SpecError: the metric is not one of the task's.

    Example:
        >>> from lockgate.monitoring.triggers import FeedbackPolicy
        >>> perf = {"versions": {"v1": {"n": 800, "positives": 40, "metrics": {"roc_auc": 0.7},
        ...         "undefined": {}, "window_start": None, "window_end": None}}}
        >>> judge(perf, "v1", 0.9, FeedbackPolicy(max_drop=0.05))[0]
        'critical'
    """
    from lockgate.tasks.catalog import higher_is_better

    metric = policy.metric
    if task == "binary" and metric in HIGHER_IS_BETTER:
        higher = HIGHER_IS_BETTER[metric]
    else:
        higher = higher_is_better(check_task(task), metric)
    block = (performance.get("versions") or {}).get(champion_version) or {}
    interval = block.get("interval")
    n = int(block.get("n") or 0)
    live = (block.get("metrics") or {}).get(metric)
    evidence: dict[str, Any] = {
        "model": performance.get("model"),
        "champion": champion_version,
        "metric": metric,
        "higher_is_better": higher,
        "live": live,
        "gold": gold_estimate,
        "drop": None,
        "max_drop": policy.max_drop,
        "warn_drop": policy.max_drop / 2,
        "min_value": policy.min_value,
        "n": n,
        "positives": int(block.get("positives") or 0),
        "min_labels": policy.min_labels,
        "window_start": block.get("window_start"),
        "window_end": block.get("window_end"),
        "as_of": performance.get("as_of"),
        "task": task,
        "live_interval": interval,
    }
    if n < policy.min_labels:
        reason = (
            f"{n} labelled live predictions of champion {champion_version} in the window, fewer "
            f"than min_labels={policy.min_labels}: not judged"
        )
        return "ok", reason, evidence
    if live is None or not math.isfinite(float(live)):
        why = (block.get("undefined") or {}).get(metric, "no value")
        return "ok", f"live {metric} of champion {champion_version} is undefined: {why}", evidence
    live = float(live)
    sign = "higher" if higher else "lower"
    quoted = f"live {metric}={live:.4f}"
    if interval:
        quoted += f" (95% interval {interval[0]:.4f} to {interval[1]:.4f})"
    if gold_estimate is not None:
        drop = (gold_estimate - live) if higher else (live - gold_estimate)
        evidence["drop"] = drop
        change = f"worse by {drop:.4f}" if drop > 0 else f"better by {-drop:.4f}"
        where = f"{quoted} vs gold {gold_estimate:.4f} ({change}, "
        if drop > policy.max_drop:
            return (
                "critical",
                where + f"more than max_drop={policy.max_drop}; {sign} is better) on {n} labels",
                evidence,
            )
    else:
        drop, where = None, f"{quoted} (no gold estimate, "
    if policy.min_value is not None and (
        live < policy.min_value if higher else live > policy.min_value
    ):
        bound = "below" if higher else "above"
        return (
            "critical",
            f"{quoted} is {bound} min_value={policy.min_value} on {n} labels",
            evidence,
        )
    if drop is not None and drop > policy.max_drop / 2:
        return (
            "warn",
            where
            + f"more than half of max_drop={policy.max_drop}; {sign} is better) on {n} labels",
            evidence,
        )
    tail = "within half of max_drop" if drop is not None else "only min_value judges"
    return "ok", where + f"{tail}) on {n} labels", evidence


# ---------------------------------------------------------------------------------------------
# labels for traffic the demo sent


def labels_for(
    trace_rows: Iterable[Sequence[Any]] | Mapping[str, int],
    labels: Sequence[Any] | np.ndarray | pd.Series,
    label_timestamps: Sequence[Any] | np.ndarray | pd.Series,
) -> pd.DataFrame:
    """The feedback frame for requests whose trace id and sent rows are known.

    Args:
        trace_rows: per answered request ``(trace_id, first_row)`` or ``(trace_id, first_row,
            n_rows)`` (what :attr:`lockgate.traffic.TrafficReport.trace_rows` records), or a
            mapping trace id -> row; rows index ``labels`` and ``label_timestamps``.
        labels: the label of every row of the matrix the traffic was sent from.
        label_timestamps: when each row's label became known (tz-aware).

    Returns:
        A frame for :func:`write_feedback`: ``trace_id``, ``label``, ``label_timestamp`` and,
        when a request carried several rows, ``row``.

    Raises:
        DataError: a row index is outside ``labels``, or the two sequences differ in length.
    """
    import pandas as pd

    y = np.asarray(labels)
    stamps = pd.Series(pd.to_datetime(label_timestamps)).reset_index(drop=True)
    if len(y) != len(stamps):
        raise DataError(
            f"labels has {len(y)} values but label_timestamps {len(stamps)}; rule: one label "
            "time per label; fix: pass the same rows of both columns"
        )
    items: Iterable[Sequence[Any]] = (
        list(trace_rows.items()) if isinstance(trace_rows, Mapping) else trace_rows
    )
    traces: list[str] = []
    starts: list[int] = []
    positions: list[int] = []
    for item in items:
        trace, start, *rest = tuple(item)
        count = int(rest[0]) if rest else 1
        for offset in range(count):
            traces.append(str(trace))
            starts.append(int(start) + offset)
            positions.append(offset)
    index = np.asarray(starts, np.int64)
    if len(index) and (index.min() < 0 or index.max() >= len(y)):
        raise DataError(
            f"row indices span {index.min()}..{index.max()} but there are {len(y)} labels; "
            "rule: trace rows index the matrix the traffic was sent from; fix: pass that "
            "matrix's labels"
        )
    frame = pd.DataFrame(
        {
            "trace_id": traces,
            "label": y[index] if len(index) else np.array([], np.int8),
            "label_timestamp": stamps.iloc[index].reset_index(drop=True),
        }
    )
    if any(positions):
        frame["row"] = np.asarray(positions, np.int32)
    return frame
