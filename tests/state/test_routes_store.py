"""Route tables choose their store: the file unless a shared store is configured."""

from __future__ import annotations

from pathlib import Path

import pytest

from lockgate.gateway.routing import Route, RouteTable, shared_route_store
from lockgate.state.files import FileSwapStore
from lockgate.state.postgres import PostgresSwapStore


def test_the_environment_names_the_shared_store() -> None:
    assert shared_route_store({}) is None
    store = shared_route_store({"LOCKGATE_STATE_DB_URL": "postgresql://u:p@db/state"})
    assert isinstance(store, PostgresSwapStore)
    assert store.namespace == "gateway"


def test_store_none_keeps_the_file_whatever_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LOCKGATE_STATE_DB_URL", "postgresql://u:p@127.0.0.1:1/none")
    table = RouteTable(tmp_path, store=None)
    table.set("m", Route.parse({"mode": "single", "champion": "v1"}, name="m"))
    assert (tmp_path / "routes.json").is_file()
    assert RouteTable(tmp_path, store=None).to_json() == table.to_json()


def test_any_swap_store_shares_routes_between_tables(tmp_path: Path) -> None:
    store = FileSwapStore(root=str(tmp_path / "shared"))
    a = RouteTable(tmp_path / "a", store=store, poll_s=60)
    b = RouteTable(tmp_path / "b", store=store, poll_s=60)
    try:
        a.set("m", Route.parse({"mode": "single", "champion": "v1"}, name="m"))
        assert b.routes == {}  # not polled yet
        assert b.refresh() is True
        assert b.to_json() == a.to_json()
        assert b.delete("m") is True
        assert b.delete("m") is False
        a.refresh()
        assert a.routes == {}
    finally:
        a.close()
        b.close()
