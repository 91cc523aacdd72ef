"""The gate: may a challenger replace the champion? Policy spec and its pure evaluation.

A :class:`Gate` in the pipeline spec declares the rules; :func:`evaluate_gate` turns an
evaluation report (challenger and champion scored on the same gold rows) into one
:class:`RuleVerdict` per rule. Every verdict carries ``{metric, actual, threshold}``; the Dagster
layer turns them into blocking asset checks.

Rules, each a named check:

``gate_sample_size``   the gold set has at least ``min_gold_rows`` rows and, for binary,
                       ``min_gold_positives`` positives, for multiclass ``min_gold_rows_per_class``
                       rows of every class (regression: rows only), else no verdict can be
                       trusted;
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

Tasks. A gate is written before it knows the pipeline's task (``binary``, ``multiclass`` or
``regression``, see :mod:`lockgate.tasks.metrics` for each task's metrics). Metric names are checked
against every task's catalog when the gate is built (a typo, or a gate mixing metrics of
different tasks, is refused at once); :meth:`Gate.check_task` then checks them against the
pipeline's task, and :meth:`Gate.for_task` fills every task-dependent field the author left
unset (``primary``, ``absolute``, ``min_delta``, ``slice_metric``, an edge case's ``metric``) with
the task's default. The field defaults are the binary ones, so existing binary gates are
unchanged; for multiclass and regression an unset ``primary`` is the task's default primary
metric (``log_loss``, ``rmse``), ``min_delta`` is ``{primary: 0.0}``, ``slice_metric`` and edge
case metrics are ``primary``, and ``absolute`` is empty (log loss and RMSE have no bound that
fits every problem: write one). :func:`evaluate_gate` reads the task from ``report["task"]``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from lockgate.errors import SpecError
from lockgate.tasks import catalog as _tasks

__all__ = [
    "GATE_RULES",
    "INCUMBENT_RULES",
    "METRICS",
    "METRIC_HIGHER_IS_BETTER",
    "Condition",
    "EdgeCase",
    "Gate",
    "GoldSet",
    "RuleVerdict",
    "SliceSpec",
    "evaluate_gate",
]

METRICS = ("roc_auc", "pr_auc", "log_loss", "brier", "recall_at_fpr")
"""The binary metrics, in report order (every task's: :func:`lockgate.tasks.catalog.task_metric_names`)."""
METRIC_HIGHER_IS_BETTER: dict[str, bool] = {
    metric: _tasks.higher_is_better(task, metric)
    for task in _tasks.TASKS
    for metric in _tasks.task_metric_names(task)
}
"""Every catalog metric's name -> whether a higher value is better (a name has one direction in
every task that lists it)."""
_TASK_FIELDS = ("primary", "absolute", "min_delta", "slice_metric")
INCUMBENT_RULES = ("gate_vs_champion", "gate_significance", "gate_slices")
"""Rules that judge whether the challenger may *replace* the champion."""
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


def _catalog_text() -> str:
    return "; ".join(f"{t}: {list(_tasks.task_metric_names(t))}" for t in _tasks.TASKS)


def _check_metric(value: str) -> str:
    if value not in METRIC_HIGHER_IS_BETTER:
        raise ValueError(
            f"metric {value!r} is unknown; rule: a gate metric must be in the catalog of a task "
            f"({_catalog_text()}); fix: use one of those names"
        )
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

    - ``"finite"``: every prediction is valid for the task (binary: a finite probability in
      [0, 1]; multiclass: finite probabilities in [0, 1] whose row sums to 1; regression: a
      finite number) (robustness);
    - ``"min_metric"``: ``metric`` on the case rows is at least ``threshold``;
    - ``"min_mean_score_ratio"``: mean score on the case rows is at least ``threshold`` times
      the mean score on all gold rows (e.g. a known fraud pattern must score high); binary and
      regression (mean prediction) only;
    - ``"not_worse_than_champion"``: ``metric`` on the case rows is no more than ``threshold``
      worse than the champion's on the same rows.

    An unset ``metric`` is ``roc_auc`` for binary and the gate's primary metric for the other
    tasks (see :meth:`Gate.for_task`).
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

    The metric fields default to the binary task's choices; for another task, leave them unset
    to get that task's defaults, or name the task's metrics (see the module docstring).
    ``min_gold_positives`` applies to binary tasks, ``min_gold_rows_per_class`` to multiclass.

    Example:
        >>> gate = Gate(gold=GoldSet(key="transaction_id"), primary="roc_auc",
        ...             absolute={"roc_auc": 0.75}, min_delta={"roc_auc": 0.0},
        ...             max_slice_drop=0.02, slices=(SliceSpec(column="device_type"),))
        >>> gate.bound("log_loss", 0.1)
        ('max', 0.1)
        >>> regression = Gate(gold=GoldSet(key="id"), absolute={"rmse": 12.0})
        >>> regression.compatible_tasks(), regression.for_task("regression").min_delta
        (('regression',), {'rmse': 0.0})
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
    min_gold_rows_per_class: int = Field(default=20, ge=1)
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

    @model_validator(mode="after")
    def _one_task(self) -> Gate:
        if not self.compatible_tasks():
            named = sorted({metric for _, metric in self._named_metrics()})
            owners = {
                m: [t for t in _tasks.TASKS if m in _tasks.task_metric_names(t)] for m in named
            }
            raise ValueError(
                f"the gate names metrics of different tasks ({owners}"
                + (", comparison='delong' (binary)" if self.comparison == "delong" else "")
                + f"); rule: one gate judges one task ({_catalog_text()}); fix: keep the metrics "
                "of the pipeline's task only"
            )
        return self

    def _named_metrics(self) -> list[tuple[str, str]]:
        """``(field, metric)`` for every metric the author named (unset fields follow the task)."""
        named: list[tuple[str, str]] = []
        for field in ("primary", "slice_metric"):
            if field in self.model_fields_set:
                named.append((field, getattr(self, field)))
        for field in ("absolute", "min_delta"):
            if field in self.model_fields_set:
                named += [(field, m) for m in getattr(self, field)]
        named += [("min_relative_delta", m) for m in self.min_relative_delta]
        named += [
            (f"edge_cases[{case.name!r}].metric", case.metric)
            for case in self.edge_cases
            if "metric" in case.model_fields_set
        ]
        return named

    def compatible_tasks(self) -> tuple[_tasks.Task, ...]:
        """The tasks whose catalogs hold every metric this gate names (in :data:`TASKS` order)."""
        named = {metric for _, metric in self._named_metrics()}
        return tuple(
            task
            for task in _tasks.TASKS
            if named <= set(_tasks.task_metric_names(task))
            and (task == "binary" or self.comparison != "delong")
            and (
                task != "multiclass"
                or all(c.expect != "min_mean_score_ratio" for c in self.edge_cases)
            )
        )

    def check_task(self, task: str) -> None:
        """Refuses a gate that cannot judge models of ``task``; the pipeline spec calls this.

        Raises:
            SpecError: Naming the field, the metric, the task and the metrics allowed for it
                (also for an unknown task, ``comparison="delong"`` on a non-binary task and a
                ``min_mean_score_ratio`` edge case on a multiclass task).

        Example:
            >>> Gate(gold=GoldSet(key="id"), min_delta={"rmse": 0.0}).check_task("binary")
            Traceback (most recent call last):
            ...
            lockgate.errors.SpecError: Gate.min_delta names metric 'rmse', which task 'binary' ...
        """
        task = _tasks.check_task(task)
        allowed = list(_tasks.task_metric_names(task))
        for field, metric in self._named_metrics():
            if metric not in allowed:
                raise SpecError(
                    f"Gate.{field} names metric {metric!r}, which task {task!r} does not report; "
                    f"rule: a {task} gate may use only {allowed}; fix: replace {metric!r} by one "
                    f"of them (or leave the field unset for the {task} default)"
                )
        if self.comparison == "delong" and task != "binary":
            raise SpecError(
                f"Gate.comparison='delong' on task {task!r}; rule: DeLong's test compares binary "
                f"ROC AUCs only; fix: use comparison='paired_bootstrap'"
            )
        for case in self.edge_cases:
            if case.expect == "min_mean_score_ratio" and task == "multiclass":
                raise SpecError(
                    f"edge case {case.name!r} expects min_mean_score_ratio on task {task!r}; "
                    f"rule: a mean score exists for binary and regression models only; fix: use "
                    f"expect='min_metric' with one of {allowed}"
                )

    def for_task(self, task: str) -> Gate:
        """This gate with every unset task-dependent field set to the task's default.

        Binary gates come back unchanged (the field defaults are binary's). The evaluation and
        :func:`evaluate_gate` call this; read ``primary`` and ``slice_metric`` of the result.

        Raises:
            SpecError: As :meth:`check_task`.
        """
        self.check_task(task)
        if task == "binary":
            return self
        primary = self.primary if "primary" in self.model_fields_set else None
        primary = primary or _tasks.default_primary(task)
        defaults: dict[str, Any] = {
            "primary": primary,
            "absolute": {},
            "min_delta": {primary: 0.0},
            "slice_metric": primary,
        }
        update = {f: v for f, v in defaults.items() if f not in self.model_fields_set}
        update["edge_cases"] = tuple(
            case
            if "metric" in case.model_fields_set
            else case.model_copy(update={"metric": primary})
            for case in self.edge_cases
        )
        return self.model_copy(update=update)

    @staticmethod
    def bound(metric: str, value: float) -> tuple[str, float]:
        """('min', v) for higher-is-better metrics, ('max', v) for lower-is-better ones."""
        return ("min" if METRIC_HIGHER_IS_BETTER[metric] else "max", value)


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
    return challenger - champion if METRIC_HIGHER_IS_BETTER[metric] else champion - challenger


def _sample_size(report: Mapping[str, Any], gate: Gate) -> RuleVerdict:
    task = report.get("task", "binary")
    rows = report["gold"]["rows"]
    metric: str
    actual: Any
    threshold: Any
    if task == "regression":
        ok = rows >= gate.min_gold_rows
        metric, actual, threshold = "gold_rows", rows, gate.min_gold_rows
        has = f"gold set has {rows} rows"
        needs = f"; needs {gate.min_gold_rows}"
    elif task == "multiclass":
        counts = report["gold"]["class_counts"]
        smallest = min(counts, key=lambda c: (counts[c], str(c)))
        ok = rows >= gate.min_gold_rows and counts[smallest] >= gate.min_gold_rows_per_class
        metric = "gold_rows/smallest_class"
        actual = [rows, counts[smallest]]
        threshold = [gate.min_gold_rows, gate.min_gold_rows_per_class]
        has = f"gold set has {rows} rows, smallest class {smallest!r} has {counts[smallest]}"
        needs = f"; needs {gate.min_gold_rows} rows and {gate.min_gold_rows_per_class} per class"
    else:
        positives = report["gold"]["positives"]
        ok = rows >= gate.min_gold_rows and positives >= gate.min_gold_positives
        metric = "gold_rows/positives"
        actual = [rows, positives]
        threshold = [gate.min_gold_rows, gate.min_gold_positives]
        has = f"gold set has {rows} rows / {positives} positives"
        needs = f"; needs {gate.min_gold_rows} / {gate.min_gold_positives}"
    return RuleVerdict(
        rule="gate_sample_size",
        passed=ok,
        metric=metric,
        actual=actual,
        threshold=threshold,
        message=has + ("" if ok else f"{needs}: snapshot more data or raise gold.fraction"),
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
        return _unjudged(
            "gate_significance",
            gate.primary,
            "not required",
            "the policy does not require a significant improvement",
        )
    if report.get("champion") is None:
        return _bootstrap_verdict("gate_significance", gate, report)
    comparison = report["comparison"][gate.primary]
    lower, upper = comparison["lower"], comparison["upper"]
    improvement_lower = lower if METRIC_HIGHER_IS_BETTER[gate.primary] else -upper
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
        return _unjudged("gate_slices", gate.slice_metric, "no slice rule", "no slices declared")
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
    return _unjudged(
        rule,
        "champion",
        f"bootstrap={gate.bootstrap}",
        "no champion yet: bootstrap rule 'absolute' judges the first model on absolute "
        "bounds, sample size and edge cases"
        if ok
        else "no champion yet and bootstrap='block': promote the first model by hand with "
        f"`lockgate promote {report['pipeline']} {report['challenger']['version']}`",
        passed=ok,
    )


def _unjudged(
    rule: str, metric: str, threshold: str, message: str, *, passed: bool = True
) -> RuleVerdict:
    """The verdict of a rule that does not apply here (no value judged: ``actual`` is None)."""
    return RuleVerdict(
        rule=rule, passed=passed, metric=metric, actual=None, threshold=threshold, message=message
    )


def evaluate_gate(report: Mapping[str, Any], gate: Gate) -> list[RuleVerdict]:
    """Judge an evaluation report against the policy: one verdict per rule in GATE_RULES.

    The task is ``report["task"]`` (``"binary"`` for reports written before tasks existed); the
    gate is resolved for it with :meth:`Gate.for_task`.

    Raises:
        SpecError: When the gate names metrics the report's task does not have.
    """
    gate = gate.for_task(report.get("task", "binary"))
    verdicts = [
        _sample_size(report, gate),
        _absolute(report, gate),
        _vs_champion(report, gate),
        _significance(report, gate),
        _slices(report, gate),
        _edge_cases(report, gate),
    ]
    assert tuple(v.rule for v in verdicts) == GATE_RULES
    return _champion_itself(report, verdicts)


def _champion_itself(report: Mapping[str, Any], verdicts: list[RuleVerdict]) -> list[RuleVerdict]:
    """A rerun of the champion, compared with itself, is no replacement of the champion.

    When the challenger is the champion (a rerun on unchanged code and data), every change in
    the report is exactly 0. The rules in :data:`INCUMBENT_RULES` judge a *replacement* of the
    champion, so they pass and say why (a significant improvement over itself cannot exist);
    the absolute bounds, the sample size and the edge cases judge the model on its own and still
    apply.
    """
    from dataclasses import replace

    champion = report.get("champion")
    version = report["challenger"]["version"]
    if champion is None or champion.get("version") != version:
        return verdicts
    out = []
    for verdict in verdicts:
        if verdict.rule not in INCUMBENT_RULES:
            out.append(verdict)
        elif verdict.passed:
            out.append(replace(verdict, message=f"{verdict.message} ({version} is the champion)"))
        else:
            out.append(
                replace(
                    verdict,
                    passed=True,
                    failures=(),
                    message=(
                        f"{version} is the champion itself, compared with itself "
                        f"({verdict.message}); {verdict.rule} judges a replacement of the "
                        "champion, which a rerun of the champion is not"
                    ),
                )
            )
    return out
