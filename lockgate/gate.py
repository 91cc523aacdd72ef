"""The gate: may a challenger replace the champion? Policy spec and its pure evaluation.

A :class:`Gate` in the pipeline spec declares the rules; :func:`evaluate_gate` turns an
evaluation report (challenger and champion scored on the same gold rows) into one
:class:`RuleVerdict` per rule. Every verdict carries ``{metric, actual, threshold}``; the Dagster
layer turns them into blocking asset checks.

Rules, each a named check:

``gate_sample_size``   the gold set has at least ``min_gold_rows`` rows and ``min_gold_positives``
                       positives, else no verdict can be trusted;
``gate_absolute``      each metric in ``absolute`` meets its bound (min for higher-is-better
                       metrics, max for lower-is-better ones);
``gate_vs_champion``   the challenger's change against the champion, in the metric's good
                       direction, is at least ``min_delta`` (absolute) and ``min_relative_delta``
                       (relative), per metric;
``gate_significance``  with ``require_significance``, the paired comparison of the primary metric
                       shows an improvement whose confidence interval excludes zero;
``gate_slices``        no declared slice loses more than ``max_slice_drop`` of ``slice_metric``;
``gate_edge_cases``    every edge case passes its expectation.

With no champion yet, the comparison rules follow ``bootstrap``: ``"absolute"`` lets the first
model through on the absolute rules, sample size and edge cases alone; ``"block"`` fails them so
that a person promotes the first model (``lockgate promote``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

__all__ = [
    "GATE_RULES",
    "METRICS",
    "Condition",
    "EdgeCase",
    "Gate",
    "GoldSet",
    "RuleVerdict",
    "SliceSpec",
    "evaluate_gate",
]

METRICS = ("roc_auc", "pr_auc", "log_loss", "brier", "recall_at_fpr")
_HIGHER = {
    "roc_auc": True,
    "pr_auc": True,
    "recall_at_fpr": True,
    "log_loss": False,
    "brier": False,
}
GATE_RULES = (
    "gate_sample_size",
    "gate_absolute",
    "gate_vs_champion",
    "gate_significance",
    "gate_slices",
    "gate_edge_cases",
)
_OPS = ("<", "<=", ">", ">=", "==", "!=", "in", "not in", "isnull", "notnull")


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


def _check_metric(value: str) -> str:
    if value not in METRICS:
        raise ValueError(f"metric {value!r} is unknown; use one of {list(METRICS)}")
    return value


class GoldSet(_Frozen):
    """Which rows form the gold validation set: a stable hash of a key column picks them.

    A row is gold when ``sha256(salt + key) mod 10_000 < fraction * 10_000``. The choice never
    changes as data grows, so gold rows are held out of training for every model version, and
    champion and challenger are both scored on rows neither has seen.
    """

    key: str
    fraction: float = Field(default=0.1, gt=0.0, lt=1.0)
    salt: str = "lockgate-gold-v1"


class SliceSpec(_Frozen):
    """A slice of the gold set: a categorical column, or a numeric one cut at ``edges``."""

    column: str
    edges: tuple[float, ...] | None = None
    labels: tuple[str, ...] | None = None

    @model_validator(mode="after")
    def _labels_fit_edges(self) -> SliceSpec:
        if self.edges is not None and list(self.edges) != sorted(set(self.edges)):
            raise ValueError(f"slice edges {self.edges} must be strictly increasing")
        if self.labels is not None and (
            self.edges is None or len(self.labels) != len(self.edges) + 1
        ):
            raise ValueError(
                f"slice {self.column!r} has {len(self.labels)} labels; it needs len(edges) + 1 "
                "(one per bucket, including below the first and above the last edge)"
            )
        return self

    @property
    def name(self) -> str:
        """The slice's name in reports: the column, with ``_bucket`` for numeric cuts."""
        return self.column if self.edges is None else f"{self.column}_bucket"


class Condition(_Frozen):
    """``column op value``, e.g. ``Condition(column="account_age_days", op="<", value=30)``."""

    column: str
    op: Literal["<", "<=", ">", ">=", "==", "!=", "in", "not in", "isnull", "notnull"]
    value: float | int | str | tuple[float | int | str, ...] | None = None


class EdgeCase(_Frozen):
    """A curated case with its expected behaviour, run on the gold rows.

    Rows are the gold rows matching every ``where`` condition, then ``set`` overwrites columns
    (``None`` makes them missing) and ``scale`` multiplies numeric ones. ``expect``:

    - ``"finite"``: every prediction is a finite probability in [0, 1] (robustness);
    - ``"min_metric"``: ``metric`` on the case rows is at least ``threshold``;
    - ``"min_mean_score_ratio"``: mean score on the case rows is at least ``threshold`` times
      the mean score on all gold rows (e.g. a known fraud pattern must score high);
    - ``"not_worse_than_champion"``: ``metric`` on the case rows is no more than ``threshold``
      worse than the champion's on the same rows.
    """

    name: str
    description: str = ""
    where: tuple[Condition, ...] = ()
    set: dict[str, float | int | str | None] = Field(default_factory=dict)
    scale: dict[str, float] = Field(default_factory=dict)
    expect: Literal["finite", "min_metric", "min_mean_score_ratio", "not_worse_than_champion"] = (
        "finite"
    )
    metric: str = "roc_auc"
    threshold: float = 0.0
    min_rows: int = Field(default=20, ge=1)

    @field_validator("metric")
    @classmethod
    def _known_metric(cls, value: str) -> str:
        return _check_metric(value)


class Gate(_Frozen):
    """The promotion policy: absolute bounds, change vs champion, slices, edge cases, sample size.

    Example:
        >>> gate = Gate(primary="roc_auc", absolute={"roc_auc": 0.75}, min_delta={"roc_auc": 0.0},
        ...             max_slice_drop=0.02, slices=(SliceSpec(column="device_type"),))
        >>> gate.bound("log_loss", 0.1)
        ('max', 0.1)
    """

    gold: GoldSet
    primary: str = "roc_auc"
    absolute: dict[str, float] = Field(default_factory=lambda: {"roc_auc": 0.7})
    min_delta: dict[str, float] = Field(default_factory=lambda: {"roc_auc": 0.0})
    min_relative_delta: dict[str, float] = Field(default_factory=dict)
    require_significance: bool = False
    comparison: Literal["paired_bootstrap", "delong"] = "paired_bootstrap"
    slices: tuple[SliceSpec, ...] = ()
    slice_metric: str = "roc_auc"
    max_slice_drop: float | None = 0.05
    min_slice_rows: int = Field(default=300, ge=1)
    edge_cases: tuple[EdgeCase, ...] = ()
    min_gold_rows: int = Field(default=1000, ge=1)
    min_gold_positives: int = Field(default=20, ge=1)
    bootstrap: Literal["absolute", "block"] = "absolute"
    n_boot: int = Field(default=400, ge=50)
    alpha: float = Field(default=0.05, gt=0.0, lt=0.5)
    seed: int = 0

    @field_validator("primary", "slice_metric")
    @classmethod
    def _known(cls, value: str) -> str:
        return _check_metric(value)

    @field_validator("absolute", "min_delta", "min_relative_delta")
    @classmethod
    def _known_keys(cls, value: dict[str, float]) -> dict[str, float]:
        for metric in value:
            _check_metric(metric)
        return value

    @staticmethod
    def bound(metric: str, value: float) -> tuple[str, float]:
        """('min', v) for higher-is-better metrics, ('max', v) for lower-is-better ones."""
        return ("min" if _HIGHER[metric] else "max", value)


@dataclass(frozen=True)
class RuleVerdict:
    """One gate rule's outcome; ``failures`` lists each breach with its numbers."""

    rule: str
    passed: bool
    metric: str
    actual: Any
    threshold: Any
    message: str
    failures: tuple[dict[str, Any], ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form."""
        out = asdict(self)
        out["failures"] = list(self.failures)
        return out


def _improvement(metric: str, challenger: float, champion: float) -> float:
    """Change in the metric's good direction: positive means the challenger is better."""
    return challenger - champion if _HIGHER[metric] else champion - challenger


def _sample_size(report: Mapping[str, Any], gate: Gate) -> RuleVerdict:
    rows, positives = report["gold"]["rows"], report["gold"]["positives"]
    ok = rows >= gate.min_gold_rows and positives >= gate.min_gold_positives
    return RuleVerdict(
        rule="gate_sample_size",
        passed=ok,
        metric="gold_rows/positives",
        actual=[rows, positives],
        threshold=[gate.min_gold_rows, gate.min_gold_positives],
        message=(
            f"gold set has {rows} rows / {positives} positives"
            + (
                ""
                if ok
                else f"; needs {gate.min_gold_rows} / {gate.min_gold_positives}: "
                "snapshot more data or raise gold.fraction"
            )
        ),
    )


def _absolute(report: Mapping[str, Any], gate: Gate) -> RuleVerdict:
    metrics = report["challenger"]["metrics"]
    failures = []
    for metric, bound in sorted(gate.absolute.items()):
        actual = metrics[metric]["estimate"]
        kind, value = Gate.bound(metric, bound)
        ok = actual >= value if kind == "min" else actual <= value
        if not ok:
            failures.append({"metric": metric, "actual": actual, "threshold": f"{kind} {value}"})
    first = failures[0] if failures else None
    return RuleVerdict(
        rule="gate_absolute",
        passed=not failures,
        metric=first["metric"] if first else ",".join(sorted(gate.absolute)),
        actual=first["actual"] if first else {m: metrics[m]["estimate"] for m in gate.absolute},
        threshold=first["threshold"] if first else dict(gate.absolute),
        message="; ".join(
            f"{f['metric']}={f['actual']:.4f} breaks {f['threshold']}" for f in failures
        )
        or "every absolute bound met",
        failures=tuple(failures),
    )


def _vs_champion(report: Mapping[str, Any], gate: Gate) -> RuleVerdict:
    champion = report.get("champion")
    if champion is None:
        return _bootstrap_verdict("gate_vs_champion", gate, report)
    failures = []
    compared = {}
    for metric in sorted(set(gate.min_delta) | set(gate.min_relative_delta)):
        mine = report["challenger"]["metrics"][metric]["estimate"]
        theirs = champion["metrics"][metric]["estimate"]
        gain = _improvement(metric, mine, theirs)
        compared[metric] = gain
        if metric in gate.min_delta and gain < gate.min_delta[metric]:
            failures.append(
                {
                    "metric": metric,
                    "actual": gain,
                    "threshold": f"change >= {gate.min_delta[metric]}",
                    "challenger": mine,
                    "champion": theirs,
                }
            )
        if metric in gate.min_relative_delta and theirs != 0:
            relative = gain / abs(theirs)
            if relative < gate.min_relative_delta[metric]:
                failures.append(
                    {
                        "metric": metric,
                        "actual": relative,
                        "threshold": f"relative change >= {gate.min_relative_delta[metric]}",
                        "challenger": mine,
                        "champion": theirs,
                    }
                )
    first = failures[0] if failures else None
    return RuleVerdict(
        rule="gate_vs_champion",
        passed=not failures,
        metric=first["metric"] if first else gate.primary,
        actual=first["actual"] if first else compared.get(gate.primary, compared),
        threshold=first["threshold"] if first else dict(gate.min_delta),
        message="; ".join(
            f"{f['metric']}: challenger {f['challenger']:.4f} vs champion {f['champion']:.4f}, "
            f"change {f['actual']:+.4f} breaks {f['threshold']}"
            for f in failures
        )
        or f"no regression against champion {champion['version']}",
        failures=tuple(failures),
    )


def _significance(report: Mapping[str, Any], gate: Gate) -> RuleVerdict:
    if not gate.require_significance:
        return RuleVerdict(
            rule="gate_significance",
            passed=True,
            metric=gate.primary,
            actual=None,
            threshold="not required",
            message="the policy does not require a significant improvement",
        )
    if report.get("champion") is None:
        return _bootstrap_verdict("gate_significance", gate, report)
    comparison = report["comparison"][gate.primary]
    lower, upper = comparison["lower"], comparison["upper"]
    improvement_lower = lower if _HIGHER[gate.primary] else -upper
    ok = improvement_lower > 0
    return RuleVerdict(
        rule="gate_significance",
        passed=ok,
        metric=f"{gate.primary} delta ({comparison['method']})",
        actual=[comparison["delta"], lower, upper],
        threshold=f"{100 * (1 - gate.alpha):.0f}% interval of the improvement excludes 0",
        message=(
            f"{gate.primary} delta {comparison['delta']:+.4f}, interval [{lower:+.4f}, {upper:+.4f}]"
            f", p={comparison['p_value']:.3g}"
            + ("" if ok else ": not significant, the challenger is not promoted on noise")
        ),
    )


def _slices(report: Mapping[str, Any], gate: Gate) -> RuleVerdict:
    if gate.max_slice_drop is None or not gate.slices:
        return RuleVerdict(
            rule="gate_slices",
            passed=True,
            metric=gate.slice_metric,
            actual=None,
            threshold="no slice rule",
            message="no slices declared",
        )
    if report.get("champion") is None:
        return _bootstrap_verdict("gate_slices", gate, report)
    failures = []
    worst: tuple[float, str] | None = None
    for item in report["slices"]:
        mine, theirs = item["challenger"], item["champion"]
        if mine is None or theirs is None:
            continue  # undefined on this slice (too few rows or one class): reported, not judged
        drop = -_improvement(gate.slice_metric, mine, theirs)
        label = f"{item['slice']}={item['value']}"
        if worst is None or drop > worst[0]:
            worst = (drop, label)
        if drop > gate.max_slice_drop:
            failures.append(
                {
                    "metric": f"{gate.slice_metric}[{label}]",
                    "actual": drop,
                    "threshold": f"drop <= {gate.max_slice_drop}",
                    "challenger": mine,
                    "champion": theirs,
                    "rows": item["rows"],
                }
            )
    failures.sort(key=lambda f: -f["actual"])
    first = failures[0] if failures else None
    return RuleVerdict(
        rule="gate_slices",
        passed=not failures,
        metric=first["metric"] if first else f"{gate.slice_metric} largest slice drop",
        actual=first["actual"] if first else (worst[0] if worst else None),
        threshold=f"drop <= {gate.max_slice_drop}",
        message="; ".join(
            f"{f['metric']}: {f['challenger']:.4f} vs champion {f['champion']:.4f} "
            f"(drop {f['actual']:.4f} on {f['rows']} rows)"
            for f in failures
        )
        or (f"largest drop {worst[0]:+.4f} on {worst[1]}" if worst else "no comparable slice"),
        failures=tuple(failures),
    )


def _edge_cases(report: Mapping[str, Any], gate: Gate) -> RuleVerdict:
    cases = report.get("edge_cases", [])
    failures = [
        {
            "metric": f"edge_case[{c['name']}] {c['expect']}",
            "actual": c["actual"],
            "threshold": c["threshold"],
            "reason": c["message"],
        }
        for c in cases
        if not c["passed"]
    ]
    first = failures[0] if failures else None
    return RuleVerdict(
        rule="gate_edge_cases",
        passed=not failures,
        metric=first["metric"] if first else "edge cases",
        actual=first["actual"] if first else f"{len(cases)} passed",
        threshold=first["threshold"] if first else "all pass",
        message="; ".join(f"{f['metric']}: {f['reason']}" for f in failures)
        or f"{len(cases)} edge cases passed",
        failures=tuple(failures),
    )


def _bootstrap_verdict(rule: str, gate: Gate, report: Mapping[str, Any]) -> RuleVerdict:
    ok = gate.bootstrap == "absolute"
    return RuleVerdict(
        rule=rule,
        passed=ok,
        metric="champion",
        actual=None,
        threshold=f"bootstrap={gate.bootstrap}",
        message=(
            "no champion yet: bootstrap rule 'absolute' judges the first model on absolute "
            "bounds, sample size and edge cases"
            if ok
            else "no champion yet and bootstrap='block': promote the first model by hand with "
            f"`lockgate promote {report['pipeline']} {report['challenger']['version']}`"
        ),
    )


def evaluate_gate(report: Mapping[str, Any], gate: Gate) -> list[RuleVerdict]:
    """Judge an evaluation report against the policy: one verdict per rule in GATE_RULES."""
    verdicts = [
        _sample_size(report, gate),
        _absolute(report, gate),
        _vs_champion(report, gate),
        _significance(report, gate),
        _slices(report, gate),
        _edge_cases(report, gate),
    ]
    assert tuple(v.rule for v in verdicts) == GATE_RULES
    return verdicts
