"""lockgate.state.postgres without a server: URLs, and the errors when none answers."""

from __future__ import annotations

import pytest

from lockgate._util.services import free_ports
from lockgate._util.urls import redact_url
from lockgate.state.postgres import (
    PostgresSwapStore,
    StateStoreError,
    StateUnavailableError,
)
from lockgate.state.swap import SwapStore


def test_redact_url_hides_only_the_password() -> None:
    assert redact_url("postgresql://app:s3cret@db.internal:5433/state?sslmode=require") == (
        "postgresql://app:***@db.internal:5433/state?sslmode=require"
    )
    assert redact_url("postgresql://db/state") == "postgresql://db/state"


def test_a_dead_server_is_named_with_the_rule_and_the_fix() -> None:
    (port,) = free_ports(1)
    url = f"postgresql://lockgate:topsecret@127.0.0.1:{port}/state"
    store = PostgresSwapStore(url=url, connect_timeout_s=2)
    with pytest.raises(StateUnavailableError) as caught:
        store.get("aliases/fraud.json")
    message = str(caught.value)
    assert "topsecret" not in message
    assert f"postgresql://lockgate:***@127.0.0.1:{port}/state" in message
    assert "never falls back to local files" in message  # the rule
    assert "LOCKGATE_STATE_DB_URL" in message  # the fix


def test_a_url_that_is_not_postgresql_is_refused() -> None:
    store = PostgresSwapStore(url="sqlite:////tmp/state.db")
    with pytest.raises(StateStoreError, match="is not a PostgreSQL URL"):
        store.swap("k", None, b"v")


def test_the_store_is_a_swap_store() -> None:
    assert isinstance(PostgresSwapStore(url="postgresql://h/db"), SwapStore)
