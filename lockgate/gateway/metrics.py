"""The gateway's ``/metrics`` page: its statistics as Prometheus text exposition.

A :class:`prometheus_client` collector (:class:`GatewayCollector`) reads the cumulative counters
and histograms of :class:`lockgate.gateway.stats.Stats` (per public model, lockgate version and
shadow flag; the WAL's commit figures; requests in flight) at scrape time and yields them as
metric families; :func:`render_metrics` collects them from a private registry (never the
process-wide default one) and writes the text format 0.0.4. It writes the families itself rather
than with :func:`prometheus_client.exposition.generate_latest`, which would sort label names and
print every count as a float: the page keeps the form it always had (labels ``model``,
``version``, ``shadow`` in that order, counts as integers, ``_sum`` before ``_count``), on which
dashboards and tests match text. The counters never reset.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector, CollectorRegistry

from lockgate.gateway.stats import Histogram, Stats

__all__ = ["GatewayCollector", "render_metrics"]

# counters of live traffic only: one sample per (model, version)
_LIVE_COUNTERS = (
    (
        "lockgate_gateway_challenger_retries_total",
        "Failed canary challenger requests retried on the champion.",
        "retries",
    ),
    (
        "lockgate_gateway_coalesced_calls_total",
        "Upstream calls that carried the rows of several requests (coalescing under load).",
        "merged_calls",
    ),
    (
        "lockgate_gateway_coalesced_requests_total",
        "Requests sent upstream inside a coalesced call.",
        "merged_requests",
    ),
)


def _series_labels(model: str, version: str, shadow: bool) -> dict[str, str]:
    return {"model": model, "version": version, "shadow": "true" if shadow else "false"}


def _add_histogram(family: Metric, labels: dict[str, str], hist: Histogram) -> None:
    """The cumulative buckets (``+Inf`` last), ``_sum`` and ``_count`` of one histogram."""
    acc = 0
    for bound, c in zip(hist.bounds, hist.counts, strict=False):
        acc += c
        family.add_sample(f"{family.name}_bucket", {**labels, "le": repr(bound)}, acc)
    acc += hist.counts[-1]
    family.add_sample(f"{family.name}_bucket", {**labels, "le": "+Inf"}, acc)
    family.add_sample(f"{family.name}_sum", labels, hist.total)
    family.add_sample(f"{family.name}_count", labels, hist.count)


def _single(name: str, kind: str, text: str, value: float) -> Metric:
    family = Metric(name, text, kind)
    family.add_sample(name, {}, value)
    return family


class GatewayCollector(Collector):
    """Yields the metric families of one gateway's :class:`Stats` at each scrape."""

    def __init__(self, stats: Stats) -> None:
        self.stats = stats

    def collect(self) -> Iterator[Metric]:
        """The gateway's metric families, in a fixed order, series sorted."""
        stats = self.stats
        items = [(_series_labels(*key), key[2], s) for key, s in sorted(stats.series.items())]
        requests = Metric(
            "lockgate_gateway_requests_total",
            "Inference requests per public model, lockgate version and shadow flag.",
            "counter",
        )
        errors = Metric(
            "lockgate_gateway_errors_total",
            "Failed inference requests (upstream error, timeout, unreachable, log) by kind.",
            "counter",
        )
        violations = Metric(
            "lockgate_gateway_schema_violations_total",
            "Requests refused by the input schema check, for the version they would have hit.",
            "counter",
        )
        for labels, _, s in items:
            requests.add_sample(requests.name, labels, s.requests)
            for kind, n in sorted(s.errors.items()):
                errors.add_sample(errors.name, {**labels, "kind": kind}, n)
            violations.add_sample(violations.name, labels, s.violations)
        yield requests
        yield errors
        yield violations
        for name, text, attr in _LIVE_COUNTERS:
            live = Metric(name, text, "counter")
            for labels, shadow, s in items:
                if not shadow:
                    live.add_sample(name, labels, getattr(s, attr))
            yield live
        latency = Metric(
            "lockgate_gateway_latency_seconds",
            "Gateway latency of answered requests (receive to upstream answer, before the log).",
            "histogram",
        )
        prediction = Metric(
            "lockgate_gateway_prediction",
            "Predictions: OUTPUT__0 values of one-value outputs, the top-class probability of "
            "multiclass outputs.",
            "histogram",
        )
        diff = Metric(
            "lockgate_gateway_shadow_abs_diff",
            "Absolute difference between the shadow (challenger) and the champion output.",
            "histogram",
        )
        for labels, _, s in items:
            _add_histogram(latency, labels, s.latency)
        yield latency
        for labels, _, s in items:
            _add_histogram(prediction, labels, s.prediction)
        yield prediction
        for labels, shadow, s in items:
            if shadow:
                _add_histogram(diff, labels, s.diff)
        yield diff
        dropped = Metric(
            "lockgate_gateway_shadow_dropped_total",
            "Shadow requests not sent because too many were in flight.",
            "counter",
        )
        for m, n in sorted(stats.shadow_dropped.items()):
            dropped.add_sample(dropped.name, {"model": m}, n)
        yield dropped
        yield _single(
            "lockgate_gateway_wal_commits_total",
            "counter",
            "Group commits of the WAL.",
            stats.wal_commits,
        )
        yield _single(
            "lockgate_gateway_wal_records_total",
            "counter",
            "Records committed to the WAL.",
            stats.wal_records,
        )
        yield _single(
            "lockgate_gateway_wal_errors_total", "counter", "Failed WAL commits.", stats.wal_errors
        )
        commit = Metric(
            "lockgate_gateway_wal_commit_seconds",
            "Duration of one group commit (write + fdatasync).",
            "histogram",
        )
        _add_histogram(commit, {}, stats.wal_commit)
        yield commit
        yield _single(
            "lockgate_gateway_wal_segments_rolled_total",
            "counter",
            "WAL segments converted to Parquet and deleted.",
            stats.segments_rolled,
        )
        yield _single(
            "lockgate_gateway_inflight_requests",
            "gauge",
            "Inference requests in progress.",
            stats.inflight,
        )


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _value(value: float) -> str:
    return str(value) if isinstance(value, int) else repr(value)


def _text(families: Iterable[Metric]) -> bytes:
    """Prometheus text format 0.0.4: ``# HELP``, ``# TYPE``, then the samples as added."""
    lines: list[str] = []
    for family in families:
        help_text = family.documentation.replace("\\", "\\\\").replace("\n", "\\n")
        lines.append(f"# HELP {family.name} {help_text}")
        lines.append(f"# TYPE {family.name} {family.type}")
        for sample in family.samples:
            labels = ",".join(f'{k}="{_escape(v)}"' for k, v in sample.labels.items())
            braces = f"{{{labels}}}" if labels else ""
            lines.append(f"{sample.name}{braces} {_value(sample.value)}")
    return ("\n".join(lines) + "\n").encode()


def render_metrics(stats: Stats) -> bytes:
    """The Prometheus text exposition (format 0.0.4) of ``stats``."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(GatewayCollector(stats))
    return _text(registry.collect())
