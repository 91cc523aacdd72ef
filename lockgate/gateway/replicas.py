"""Several gateway replicas seen as one by the control plane: their admin endpoints and their
statistics merged.

Replicas share routes and the routing key through the state database
(:mod:`lockgate.gateway.routing`), so a route set on one reaches all; but each replica counts its
own traffic. A canary judged on one replica's ``GET /admin/stats/{name}`` would see a random
share of the requests (behind a load-balanced Service, a different replica on every call), so
:class:`~lockgate.gateway.process.RemoteGateway` asks every replica and merges the answers with
:func:`merge_stats`:

- counters (requests, errors, schema violations, retries, shadow requests, prediction counts,
  histograms and sketches, out-of-range predictions, dropped shadows) are summed, so rates are
  the fleet's;
- means (prediction, shadow difference) are weighted by their counts;
- latency percentiles are the **largest** of the replicas' (the fleet's q-quantile is never
  above the largest per-replica q-quantile, so a p99 limit holds for the fleet when it holds for
  this bound); ``max`` values are the largest; sample counts are summed;
- the window start ``since_unix`` is the **latest** of the replicas': a replica that restarted
  or was reset, or one that joined, moves it, and the canary controller then treats the window as
  reset (:func:`lockgate.serving.canary_analysis.step_window`), as it does for one gateway.

Where the replicas are (:func:`admin_endpoints`): ``LOCKGATE_GATEWAY_ADMIN_URL`` may list several
URLs separated by commas, and a URL with the scheme ``http+dns://`` (or ``https+dns://``) stands
for every address its host name resolves to: a Kubernetes headless Service
(``http+dns://lockgate-gateway-admin.<namespace>.svc:8081``) lists every ready gateway pod.
"""

from __future__ import annotations

import socket
import urllib.parse
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from lockgate.gateway.errors import GatewayError

__all__ = ["admin_endpoints", "merge_stats"]

_DNS_SCHEMES = {"http+dns": "http", "https+dns": "https"}

_SUMMED = (
    "requests",
    "answered",
    "shadow_requests",
    "errors",
    "schema_violations",
    "retried_on_champion",
    "latency_samples",
    "prediction_out_of_range",
)
"""Flat per-version counters of ``AdminVersionStats`` (summed over replicas)."""

_WINDOW_SUMMED = ("requests", "answered", "errors", "schema_violations", "retried_on_champion")
"""Counters of a ``live``/``shadow`` block."""


def _resolve(host: str, port: int) -> list[str]:
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    seen: list[str] = []
    for family, _, _, _, address in infos:
        ip = str(address[0])
        text = f"[{ip}]" if family == socket.AF_INET6 else ip
        if text not in seen:
            seen.append(text)
    return seen


def admin_endpoints(
    value: str, *, resolve: Callable[[str, int], list[str]] = _resolve
) -> list[str]:
    """The admin base URLs a configured value names, in order, without repeats.

    Args:
        value: one URL, several separated by commas, or ``http+dns://host:port`` for every
            address ``host`` resolves to (``host:port`` alone means ``http://host:port``).
        resolve: ``(host, port) -> addresses`` (the system resolver; replaceable in tests).

    Raises:
        GatewayError: the value names no URL, or a ``+dns`` host does not resolve.

    Example:
        >>> admin_endpoints("http://127.0.0.1:9001, 127.0.0.1:9002")
        ['http://127.0.0.1:9001', 'http://127.0.0.1:9002']
        >>> admin_endpoints("http+dns://gw:8081", resolve=lambda h, p: ["10.0.0.7", "10.0.0.9"])
        ['http://10.0.0.7:8081', 'http://10.0.0.9:8081']
    """
    out: list[str] = []
    for item in (part.strip() for part in value.split(",")):
        if not item:
            continue
        if "://" not in item:
            item = f"http://{item}"
        parsed = urllib.parse.urlsplit(item)
        scheme = _DNS_SCHEMES.get(parsed.scheme)
        if scheme is None:
            urls = [item.rstrip("/")]
        else:
            host, port = parsed.hostname, parsed.port
            if not host or port is None:
                raise GatewayError(
                    f"admin URL {item!r} has no host or port; rule: {parsed.scheme}://host:port "
                    "names every address of host; fix: e.g. "
                    "http+dns://lockgate-gateway-admin.<namespace>.svc:8081"
                )
            try:
                addresses = resolve(host, port)
            except OSError as exc:
                raise GatewayError(
                    f"admin host {host!r} of {item!r} does not resolve ({exc}); fix: check the "
                    "headless Service's name and namespace, or list the replicas' URLs"
                ) from None
            urls = [f"{scheme}://{address}:{port}" for address in addresses]
        out.extend(u for u in urls if u not in out)
    if not out:
        raise GatewayError(
            f"the gateway admin URL {value!r} names no replica; fix: set "
            "LOCKGATE_GATEWAY_ADMIN_URL to one URL, several separated by commas, or http+dns://"
        )
    return out


def _weighted(pairs: Sequence[tuple[int, float | None]]) -> float | None:
    kept = [(n, v) for n, v in pairs if n and v is not None]
    total = sum(n for n, _ in kept)
    return sum(n * v for n, v in kept) / total if total else None


def _largest(values: Sequence[float | None]) -> float | None:
    kept = [v for v in values if v is not None]
    return max(kept) if kept else None


def _add_lists(lists: Sequence[Sequence[int]], what: str) -> list[int]:
    kept = [list(x) for x in lists if x]
    if not kept:
        return []
    if len({len(x) for x in kept}) > 1:
        # a replica that saw no prediction reports the default empty bins
        kept = [x for x in kept if any(x)] or kept[:1]
    if len({len(x) for x in kept}) > 1:
        raise GatewayError(
            f"the replicas report {what} with {sorted({len(x) for x in kept})} bins; rule: "
            "every replica serves the same versions with the same bins; fix: finish the rollout "
            "of the gateway image before the canary is judged"
        )
    return [sum(col) for col in zip(*kept, strict=True)]


def _add_sketches(sketches: Sequence[Mapping[str, int] | None]) -> dict[str, int]:
    total: dict[int, int] = {}
    for sketch in sketches:
        for key, count in (sketch or {}).items():
            total[int(key)] = total.get(int(key), 0) + int(count)
    return {str(k): c for k, c in sorted(total.items())}


def _latency(blocks: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {
        q: _largest([b.get(q) for b in blocks]) for q in ("p50", "p90", "p99", "max")
    }
    out["mean"] = _weighted([(int(b.get("samples") or 0), b.get("mean")) for b in blocks])
    out["samples"] = sum(int(b.get("samples") or 0) for b in blocks)
    return out


def _window(blocks: Sequence[Mapping[str, Any]], *, shadow: bool) -> dict[str, Any]:
    out: dict[str, Any] = {k: sum(int(b.get(k) or 0) for b in blocks) for k in _WINDOW_SUMMED}
    if shadow:
        out.pop("retried_on_champion")
    n = out["requests"]
    out["error_rate"] = out["errors"] / n if n else 0.0
    out["schema_violation_rate"] = out["schema_violations"] / n if n else 0.0
    out["latency_ms"] = _latency([b.get("latency_ms") or {} for b in blocks])
    preds = [b.get("prediction") or {} for b in blocks]
    hist = [p.get("histogram") or {} for p in preds]
    out["prediction"] = {
        "count": sum(int(p.get("count") or 0) for p in preds),
        "mean": _weighted([(int(p.get("count") or 0), p.get("mean")) for p in preds]),
        "kind": next((p.get("kind") for p in preds if p.get("kind")), None),
        "histogram": {
            "edges": next((h.get("edges") for h in hist if h.get("edges")), None),
            "counts": _add_lists([h.get("counts") or [] for h in hist], "prediction histograms"),
        },
        "sketch": _add_sketches([p.get("sketch") for p in preds]),
        "out_of_range": sum(int(p.get("out_of_range") or 0) for p in preds),
    }
    if shadow:
        diffs = [b.get("abs_diff") or {} for b in blocks]
        out["abs_diff"] = {
            "count": sum(int(d.get("count") or 0) for d in diffs),
            "mean": _weighted([(int(d.get("count") or 0), d.get("mean")) for d in diffs]),
            "max": _largest([d.get("max") for d in diffs]),
            "p99": _largest([d.get("p99") for d in diffs]),
        }
    return out


def _predictions(block: Any) -> int:
    prediction = (block or {}).get("prediction") or {}
    return int(prediction.get("count") or 0)


def _version(entries: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {"role": next((e["role"] for e in entries if e.get("role")), None)}
    out |= {k: sum(int(e.get(k) or 0) for e in entries) for k in _SUMMED}
    total = out["requests"] + out["shadow_requests"]
    out["error_rate"] = out["errors"] / total if total else 0.0
    out["schema_violation_rate"] = out["schema_violations"] / total if total else 0.0
    for q in ("p50_ms", "p90_ms", "p99_ms", "shadow_max_abs_diff"):
        out[q] = _largest([e.get(q) for e in entries])
    live = _window([e.get("live") or {} for e in entries], shadow=False)
    shadow = _window([e.get("shadow") or {} for e in entries], shadow=True)
    out["mean_prediction"] = _weighted(
        [(_predictions(e.get("live")) + _predictions(e.get("shadow")), e.get("mean_prediction"))
         for e in entries]
    )  # fmt: skip
    out["prediction_histogram"] = _add_lists(
        [e.get("prediction_histogram") or [] for e in entries], "prediction histograms"
    )
    out["prediction_kind"] = next(
        (e.get("prediction_kind") for e in entries if e.get("prediction_kind")), None
    )
    out["prediction_sketch"] = _add_sketches([e.get("prediction_sketch") for e in entries])
    out["shadow_mean_abs_diff"] = shadow["abs_diff"]["mean"]
    out["live"] = live
    out["shadow"] = shadow
    return out


def merge_stats(snapshots: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """One ``GET /admin/stats/{name}`` answer for the fleet, from each replica's answer.

    See the module doc for how each figure merges; ``replicas`` is added (how many answered).

    Raises:
        GatewayError: no snapshot, snapshots of different models, or histograms whose bins
            differ.

    Example:
        >>> a = {"model": "m", "since_unix": 10.0, "versions": {"v1": {"requests": 3,
        ...      "errors": 1, "p99_ms": 9.0}}}
        >>> b = {"model": "m", "since_unix": 12.0, "versions": {"v1": {"requests": 5,
        ...      "errors": 0, "p99_ms": 4.0}}}
        >>> merged = merge_stats([a, b])
        >>> merged["since_unix"], merged["versions"]["v1"]["requests"]
        (12.0, 8)
        >>> merged["versions"]["v1"]["p99_ms"], merged["versions"]["v1"]["error_rate"]
        (9.0, 0.125)
    """
    if not snapshots:
        raise GatewayError("no gateway replica answered for its statistics")
    if len(snapshots) == 1:
        return {**snapshots[0], "replicas": 1}
    models = {s.get("model") for s in snapshots}
    if len(models) > 1:
        raise GatewayError(f"replica statistics of different models {sorted(map(str, models))}")
    first = snapshots[0]
    latest = max(snapshots, key=lambda s: float(s.get("since_unix") or 0.0))
    names = sorted({v for s in snapshots for v in (s.get("versions") or {})})
    versions = {
        name: _version(
            [s["versions"][name] for s in snapshots if name in (s.get("versions") or {})]
        )
        for name in names
    }
    return {
        "model": first.get("model"),
        "since": latest.get("since"),
        "since_unix": latest.get("since_unix"),
        "now": max(str(s.get("now") or "") for s in snapshots) or None,
        "route": next((s.get("route") for s in snapshots if s.get("route")), None),
        "histogram_edges": first.get("histogram_edges"),
        "versions": versions,
        "shadow_dropped": sum(int(s.get("shadow_dropped") or 0) for s in snapshots),
        "replicas": len(snapshots),
    }
