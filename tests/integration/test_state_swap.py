"""Compare-and-swap in PostgreSQL (lockgate.state): the store, and registry aliases on it.

Against a real PostgreSQL server; the races run in separate processes that start together.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import psycopg2
import pytest

from lockgate.errors import AliasConflictError, ArtifactNotFoundError
from lockgate.lineage.hashing import sha256_bytes
from lockgate.lineage.lock import CodeVersion, build_lock_record
from lockgate.lineage.registry import LocalArtifactRegistry
from lockgate.state.postgres import PostgresSwapStore, close_connections
from lockgate.state.registry import SharedAliasesLocalRegistry
from tests.state import workers

WRITERS = 6


_race = workers.race


@pytest.fixture(autouse=True)
def _no_idle_connections() -> Iterator[None]:
    """This process's pooled connections closed after each test (the server waits for them)."""
    yield
    close_connections()


def test_swap_replaces_only_the_expected_value(postgres_url: str) -> None:
    store = PostgresSwapStore(url=postgres_url)
    assert store.get("aliases/a.json") is None
    assert store.swap("aliases/a.json", None, b"\x00one") is True
    assert store.swap("aliases/a.json", None, b"two") is False  # must be absent: it is not
    assert store.swap("aliases/a.json", b"stale", b"two") is False
    assert store.get("aliases/a.json") == b"\x00one"
    assert store.swap("aliases/a.json", b"\x00one", b"two") is True
    assert store.get("aliases/a.json") == b"two"
    store.swap("aliases/b.json", None, b"b")
    store.swap("other/c", None, b"c")
    assert store.keys("aliases/") == ["aliases/a.json", "aliases/b.json"]
    assert store.keys("") == ["aliases/a.json", "aliases/b.json", "other/c"]
    # namespaces do not see each other's keys
    other = PostgresSwapStore(url=postgres_url, namespace="routes")
    assert other.get("aliases/a.json") is None
    assert other.keys("") == []
    assert store.uri("aliases/a.json").endswith("#lockgate_swap/registry/aliases/a.json")
    assert ":***@" in store.uri("aliases/a.json")


def test_a_connection_the_server_closed_is_replaced(postgres_url: str) -> None:
    store = PostgresSwapStore(url=postgres_url)
    store.swap("k", None, b"v")
    admin = psycopg2.connect(postgres_url)
    admin.autocommit = True
    with admin.cursor() as cur:  # kill this process's pooled connection, as a restart would
        cur.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE application_name = 'lockgate' AND pid <> pg_backend_pid()"
        )
        assert cur.rowcount >= 1
    admin.close()
    assert store.get("k") == b"v"


def test_of_concurrent_swaps_from_one_value_exactly_one_wins(postgres_url: str) -> None:
    store = PostgresSwapStore(url=postgres_url, namespace="race")
    assert store.swap("champion", None, b"v0")
    results = _race(
        workers.swap_once,
        [(postgres_url, "champion", b"v0", f"v{i + 1}".encode()) for i in range(WRITERS)],
    )
    assert sorted(results) == [False] * (WRITERS - 1) + [True]
    winner = results.index(True)
    assert store.get("champion") == f"v{winner + 1}".encode()


def test_of_concurrent_inserts_exactly_one_wins(postgres_url: str) -> None:
    results = _race(
        workers.swap_once,
        [(postgres_url, "fresh", None, f"v{i}".encode()) for i in range(WRITERS)],
    )
    assert results.count(True) == 1


def _lock(files: dict[str, bytes]) -> dict:
    return build_lock_record(
        pipeline="fraud",
        code=CodeVersion("c0ffee", False, "test"),
        snapshot={"frame_sha256": "a" * 64},
        trainer={"kind": "lightgbm", "seed": 1},
        features=["amount"],
        label="y",
        split={"holdout_fraction": 0.2, "timestamp_column": "ts"},
        weights_file="model.txt",
        files={n: sha256_bytes(d) for n, d in files.items()},
        environment={"python": "3.11", "packages": {}},
    )


def _store_version(registry: LocalArtifactRegistry, payload: bytes) -> str:
    files = {"model.txt": payload}
    lock = _lock(files)
    registry.put_model_version("fraud", lock["version"], files, lock)
    return str(lock["version"])


@pytest.fixture
def shared(tmp_path: Path, postgres_url: str, monkeypatch) -> SharedAliasesLocalRegistry:
    monkeypatch.setenv("LOCKGATE_SIGNING_KEY", "k" * 64)  # the spawned writers inherit it
    return SharedAliasesLocalRegistry(root=str(tmp_path / "artifacts"), state_url=postgres_url)


def test_aliases_live_in_postgres_not_in_the_folder(
    shared: SharedAliasesLocalRegistry, postgres_url: str, tmp_path: Path
) -> None:
    a, b = _store_version(shared, b"a"), _store_version(shared, b"b")
    shared.move_alias("fraud", "champion", a, actor="t", reason="first", expected=None)
    shared.move_alias("fraud", "champion", b, actor="t", reason="better", expected=a)
    with pytest.raises(AliasConflictError, match="moved it meanwhile"):
        shared.move_alias("fraud", "champion", a, actor="t", reason="stale", expected=a)
    assert not (tmp_path / "artifacts" / "aliases").exists()
    assert shared.list_prefix("aliases") == ["fraud.json"]
    assert shared.uri("aliases/fraud.json").startswith("postgresql://")
    with pytest.raises(ArtifactNotFoundError, match="does not exist in the shared state"):
        shared.read_bytes("aliases/ghost.json")
    # another registry on the same database and folder sees the same champion
    again = SharedAliasesLocalRegistry(root=str(tmp_path / "artifacts"), state_url=postgres_url)
    assert again.alias("fraud", "champion") == b
    assert [h["reason"] for h in again.aliases("fraud")["history"]] == ["first", "better"]
    # artifacts and lock signatures still go to the folder
    assert (tmp_path / "artifacts" / "models" / "fraud" / a / "lock.sig").is_file()
    # without a URL the same class keeps aliases in the folder
    local = SharedAliasesLocalRegistry(root=str(tmp_path / "artifacts"))
    assert local.alias("fraud", "champion") is None


def test_concurrent_promotions_from_one_champion_never_double_promote(
    shared: SharedAliasesLocalRegistry, postgres_url: str
) -> None:
    old = _store_version(shared, b"old")
    candidates = [_store_version(shared, bytes([i])) for i in range(WRITERS)]
    shared.move_alias("fraud", "champion", old, actor="t", reason="initial", expected=None)
    results = _race(
        workers.move_alias_once,
        [(shared.root, postgres_url, "champion", v, old) for v in candidates],
    )
    assert sorted(results) == ["AliasConflictError"] * (WRITERS - 1) + ["moved"]
    winner = candidates[results.index("moved")]
    state = shared.aliases("fraud")
    assert state["aliases"] == {"champion": winner}
    moves = [(h["from"], h["to"]) for h in state["history"]]
    assert moves == [(None, old), (old, winner)]  # exactly one promotion recorded
