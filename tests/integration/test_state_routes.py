"""Gateway routes shared by replicas through PostgreSQL: two real gateway processes, a change
through one's admin API seen by the other within the poll interval; no lost updates."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from lockgate.gateway.errors import GatewayError
from lockgate.gateway.process import GatewayServer
from lockgate.gateway.routing import Route, RouteTable, load_routing_key
from lockgate.state.audit import PostgresAuditLog
from lockgate.state.postgres import PostgresSwapStore, close_connections

MODEL = "fraud_lgbm"


@pytest.fixture(autouse=True)
def _no_idle_connections() -> Iterator[None]:
    yield
    close_connections()


def _until(check, timeout_s: float) -> float:
    """Seconds until ``check()`` is true; fails after ``timeout_s``."""
    began = time.monotonic()
    while not check():
        assert time.monotonic() - began < timeout_s, f"not seen within {timeout_s} s"
        time.sleep(0.05)
    return time.monotonic() - began


def test_two_gateway_replicas_share_their_routes(
    postgres_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LOCKGATE_STATE_DB_URL", postgres_url)  # the replicas inherit it
    monkeypatch.setenv("LOCKGATE_SIGNING_KEY", "s" * 64)  # one key signs the shared audit chain
    replicas = [
        GatewayServer(
            state_dir=str(tmp_path / name),
            log_dir=str(tmp_path / f"{name}-log"),
            upstream_url="127.0.0.1:1",
            verify_routes=False,
            audit_path=str(tmp_path / "home" / "audit" / f"{name}.jsonl"),
            actor="test-suite",
        )
        for name in ("a", "b")
    ]
    with replicas[0] as a, replicas[1] as b:
        assert a.pid != b.pid
        a.set_route(MODEL, {"mode": "single", "champion": "v1"})
        seen = _until(lambda: MODEL in b.routes(), timeout_s=5.0)
        assert b.routes()[MODEL]["champion"] == "v1"
        b.set_route(MODEL, {"mode": "canary", "champion": "v1", "challenger": "v2", "weight": 0.1})
        seen = max(seen, _until(lambda: a.routes()[MODEL]["mode"] == "canary", timeout_s=5.0))
        assert a.routes()[MODEL]["challenger"] == "v2"
        b.delete_route(MODEL)
        seen = max(seen, _until(lambda: MODEL not in a.routes(), timeout_s=5.0))
        assert seen < 3.0  # the poll interval (1 s) bounds it, with room for a loaded machine
    # the routes are in PostgreSQL, not in either replica's folder
    assert not (tmp_path / "a" / "routes.json").exists()
    assert not (tmp_path / "b" / "routes.json").exists()
    # and both replicas' admin changes are in one shared audit chain, not in files
    assert not (tmp_path / "home" / "audit").exists()
    chain = PostgresAuditLog(postgres_url, log="gateway", signing_key="s" * 64)
    entries = list(chain.entries())
    assert len(entries) >= 3, entries
    assert chain.verify().ok


def test_concurrent_route_changes_lose_nothing(postgres_url: str, tmp_path: Path) -> None:
    store = PostgresSwapStore(url=postgres_url, namespace="gateway")
    tables = [RouteTable(tmp_path / n, store=store, poll_s=0.2) for n in ("a", "b", "c", "d")]
    try:

        def put(i: int) -> None:
            table = tables[i % len(tables)]
            table.set(f"m{i}", Route.parse({"mode": "single", "champion": f"v{i}"}, name=f"m{i}"))

        threads = [threading.Thread(target=put, args=(i,)) for i in range(16)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for table in tables:
            table.refresh()
            assert sorted(table.routes) == sorted(f"m{i}" for i in range(16))
    finally:
        for table in tables:
            table.close()


def test_a_routes_file_seeds_the_shared_store_and_the_key_is_shared(
    postgres_url: str, tmp_path: Path
) -> None:
    store = PostgresSwapStore(url=postgres_url, namespace="gateway")
    local = RouteTable(tmp_path / "old", store=None)
    (tmp_path / "old").mkdir()
    local.set(MODEL, Route.parse({"mode": "single", "champion": "v7"}, name=MODEL))
    seeded = RouteTable(tmp_path / "old", store=store)
    other = RouteTable(tmp_path / "new", store=store)
    try:
        assert other.to_json() == seeded.to_json() == {MODEL: local.routes[MODEL].to_json()}
    finally:
        seeded.close()
        other.close()
    first = load_routing_key(tmp_path / "a", store=store)
    assert load_routing_key(tmp_path / "b", store=store) == first
    assert len(first) == 32
    assert not (tmp_path / "a" / "routing.key").exists()


def test_the_control_plane_reads_both_replicas_statistics_merged(
    postgres_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Requests spread over two real replicas are counted once each in what the canary
    controller reads (``RemoteGateway`` over both admin URLs); a reset reaches both."""
    import json
    import urllib.error
    import urllib.request

    from lockgate.gateway.process import RemoteGateway

    monkeypatch.setenv("LOCKGATE_STATE_DB_URL", postgres_url)
    monkeypatch.setenv("LOCKGATE_SIGNING_KEY", "s" * 64)
    token = "t" * 40
    replicas = [
        GatewayServer(
            state_dir=str(tmp_path / name),
            log_dir=str(tmp_path / f"{name}-log"),
            upstream_url="127.0.0.1:1",  # nothing listens: every request is an upstream error
            verify_routes=False,
            admin_token=token,
            actor="test-suite",
        )
        for name in ("a", "b")
    ]
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    body = json.dumps(
        {"inputs": [{"name": "INPUT__0", "shape": [1, 2], "datatype": "FP32", "data": [1, 2]}]}
    ).encode()

    def send(gateway: GatewayServer, n: int) -> None:
        for _ in range(n):
            request = urllib.request.Request(
                f"{gateway.url}/v2/models/{MODEL}/infer", data=body, method="POST"
            )
            with pytest.raises(urllib.error.HTTPError):
                opener.open(request, timeout=10)

    with replicas[0] as a, replicas[1] as b:
        a.set_route(MODEL, {"mode": "single", "champion": "v1"})
        _until(lambda: MODEL in b.routes(), timeout_s=5.0)
        send(a, 7)
        send(b, 4)
        fleet = RemoteGateway(
            gateway_url=a.url, gateway_admin_url=f"{a.admin_url},{b.admin_url}", admin_token=token
        )
        assert fleet.admin_urls() == [a.admin_url, b.admin_url]
        stats = fleet.stats(MODEL)
        assert stats["replicas"] == 2  # type: ignore[typeddict-item]
        assert stats["versions"]["v1"]["requests"] == 11
        assert stats["versions"]["v1"]["errors"] == 11
        assert a.stats(MODEL)["versions"]["v1"]["requests"] == 7  # each counts its own
        assert fleet.reset_stats(MODEL)["replicas"] == 2
        assert a.stats(MODEL)["versions"]["v1"]["requests"] == 0
        assert b.stats(MODEL)["versions"]["v1"]["requests"] == 0
        b.stop()
        with pytest.raises(GatewayError, match="unreachable"):
            fleet.stats(MODEL)  # a partial count would judge a canary on part of its traffic
