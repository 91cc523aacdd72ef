"""Several gateway replicas as one: their statistics merged exactly like one gateway's that saw
all the traffic, latency bounds that hold for the fleet, and the admin endpoints they name."""

from __future__ import annotations

import numpy as np
import pytest

from lockgate.gateway.errors import GatewayError
from lockgate.gateway.replicas import admin_endpoints, merge_stats
from lockgate.gateway.routing import Route
from lockgate.gateway.stats import Stats
from lockgate.serving.canary import VersionStats

ROUTE = Route.parse({"mode": "canary", "champion": "v1", "challenger": "v2", "weight": 0.25})


def _traffic(seed: int, n: int) -> list[tuple[str, bool, float, str | None, bool, np.ndarray]]:
    """(version, shadow, latency, error, violation, predictions) of ``n`` requests."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        version = "v2" if rng.random() < 0.3 else "v1"
        error = "upstream" if rng.random() < 0.02 else None
        violation = rng.random() < 0.01
        preds = rng.beta(1.0, 6.0, size=(int(rng.integers(1, 5)), 1)).astype(np.float32)
        shadow = version == "v2" and rng.random() < 0.2
        out.append((version, shadow, float(rng.gamma(2.0, 0.004)), error, violation, preds))
    return out


def _observe(
    stats: Stats, requests: list[tuple[str, bool, float, str | None, bool, np.ndarray]]
) -> None:
    for version, shadow, latency, error, violation, preds in requests:
        diffs = np.abs(preds.reshape(-1) - 0.1) if shadow else None
        stats.get("fraud", version, shadow).observe(
            latency_s=latency, error=error, violation=violation, predictions=preds, diffs=diffs
        )


def test_merged_replicas_count_like_one_gateway_that_saw_all_the_traffic() -> None:
    a_traffic, b_traffic = _traffic(1, 700), _traffic(2, 500)
    a, b, whole = Stats(), Stats(), Stats()
    _observe(a, a_traffic)
    _observe(b, b_traffic)
    _observe(whole, a_traffic + b_traffic)
    merged = merge_stats([a.snapshot("fraud", ROUTE), b.snapshot("fraud", ROUTE)])
    one = whole.snapshot("fraud", ROUTE)
    assert merged["replicas"] == 2
    assert set(merged["versions"]) == set(one["versions"]) == {"v1", "v2"}
    for version in ("v1", "v2"):
        m, w = merged["versions"][version], one["versions"][version]
        for key in (
            "requests", "answered", "shadow_requests", "errors", "schema_violations",
            "latency_samples", "prediction_histogram", "prediction_sketch", "role",
            "prediction_out_of_range",
        ):  # fmt: skip
            assert m[key] == w[key], key
        assert m["error_rate"] == pytest.approx(w["error_rate"])
        assert m["mean_prediction"] == pytest.approx(w["mean_prediction"], rel=1e-9)
        for block in ("live", "shadow"):
            assert m[block]["prediction"]["histogram"] == w[block]["prediction"]["histogram"]
            assert m[block]["prediction"]["count"] == w[block]["prediction"]["count"]
            assert m[block]["requests"] == w[block]["requests"]
        # the fleet's p99 is never above the largest replica p99: a bound the limit may use
        assert m["p99_ms"] >= w["p99_ms"] - 1e-9
        assert m["p99_ms"] == max(
            s["versions"][version]["p99_ms"]
            for s in (a.snapshot("fraud", ROUTE), b.snapshot("fraud", ROUTE))
        )
    if merged["versions"]["v2"]["shadow"]["abs_diff"]["count"]:
        assert merged["versions"]["v2"]["shadow_mean_abs_diff"] == pytest.approx(
            one["versions"]["v2"]["shadow_mean_abs_diff"]
        )
    # the canary controller reads the merged answer as it reads one gateway's
    fleet = VersionStats.from_gateway(merged, version="v2")
    alone = VersionStats.from_gateway(one, version="v2")
    assert (fleet.requests, fleet.errors, fleet.schema_violations, fleet.shadow_requests) == (
        alone.requests, alone.errors, alone.schema_violations, alone.shadow_requests,
    )  # fmt: skip
    assert fleet.prediction_histogram == alone.prediction_histogram
    assert fleet.prediction_sketch == alone.prediction_sketch


def test_a_restarted_or_reset_replica_moves_the_window_start() -> None:
    a, b = Stats(), Stats()
    _observe(a, _traffic(3, 50))
    _observe(b, _traffic(4, 50))
    before = merge_stats([a.snapshot("fraud", ROUTE), b.snapshot("fraud", ROUTE)])
    b.reset("fraud")
    after = merge_stats([a.snapshot("fraud", ROUTE), b.snapshot("fraud", ROUTE)])
    assert after["since_unix"] > before["since_unix"]
    assert after["versions"]["v1"]["requests"] < before["versions"]["v1"]["requests"]


def test_replicas_must_agree_on_the_model_and_the_bins() -> None:
    a, b = Stats(), Stats()
    _observe(a, _traffic(5, 30))
    _observe(b, _traffic(6, 30))
    other = b.snapshot("fraud", ROUTE) | {"model": "churn"}
    with pytest.raises(GatewayError, match="different models"):
        merge_stats([a.snapshot("fraud", ROUTE), other])
    odd = b.snapshot("fraud", ROUTE)
    odd["versions"]["v1"]["prediction_histogram"] = [1, 2, 3]
    with pytest.raises(GatewayError, match="bins"):
        merge_stats([a.snapshot("fraud", ROUTE), odd])
    with pytest.raises(GatewayError, match="no gateway replica"):
        merge_stats([])


def test_admin_endpoints_list_commas_and_every_address_of_a_dns_name() -> None:
    assert admin_endpoints("http://127.0.0.1:9001/,127.0.0.1:9002, http://127.0.0.1:9001") == [
        "http://127.0.0.1:9001",
        "http://127.0.0.1:9002",
    ]
    asked: list[tuple[str, int]] = []

    def resolve(host: str, port: int) -> list[str]:
        asked.append((host, port))
        return ["10.1.0.4", "10.1.0.9", "[fd00::3]"]

    assert admin_endpoints("http+dns://gw-admin.ml.svc:8081", resolve=resolve) == [
        "http://10.1.0.4:8081",
        "http://10.1.0.9:8081",
        "http://[fd00::3]:8081",
    ]
    assert asked == [("gw-admin.ml.svc", 8081)]
    # the real resolver: localhost's addresses
    assert "http://127.0.0.1:8081" in admin_endpoints("http+dns://localhost:8081")
    with pytest.raises(GatewayError, match="no host or port"):
        admin_endpoints("http+dns://gw-admin")
    with pytest.raises(GatewayError, match="does not resolve"):
        admin_endpoints("http+dns://no-such-host.invalid:8081")
    with pytest.raises(GatewayError, match="names no replica"):
        admin_endpoints(" , ")
