"""Shared state in PostgreSQL: connections and :class:`PostgresSwapStore`.

Production keeps the state that several processes change at once (aliases, canary state,
gateway routes, the audit chain) in one PostgreSQL database, each change in one transaction.
:func:`transaction` is the one way lockgate's state classes talk to it: a connection from a small
per-process pool, one transaction per call, a clear error naming the server (password redacted)
when it cannot be reached. :class:`PostgresSwapStore` is the :class:`~lockgate.state.swap.SwapStore`
on a table ``lockgate_swap`` created on first use.

The classes are plain pydantic models configured by strings (a URL), so the Dagster layer can bind
their fields to environment variables.
"""

from __future__ import annotations

import atexit
import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field

from lockgate._util.urls import redact_url
from lockgate.errors import LockgateError

__all__ = [
    "STATE_URL_ENV",
    "PostgresSwapStore",
    "StateStoreError",
    "StateUnavailableError",
    "advisory_lease",
    "close_connections",
    "ensure_schema",
    "transaction",
]

STATE_URL_ENV = "LOCKGATE_STATE_DB_URL"
"""The environment variable production binds the state database's URL to."""

_T = TypeVar("_T")
_MAX_IDLE = 4
_RULE = (
    "rule: production keeps shared state (aliases, canary state, gateway routes, the audit "
    "chain) in PostgreSQL and never falls back to local files"
)


class StateStoreError(LockgateError):
    """The shared-state database refused an operation."""


class StateUnavailableError(StateStoreError):
    """The shared-state database cannot be reached."""


def _check_url(url: str) -> None:
    scheme = urlsplit(url).scheme
    if scheme not in ("postgresql", "postgres"):
        raise StateStoreError(
            f"state database URL {redact_url(url)!r} is not a PostgreSQL URL; rule: shared state "
            "lives in PostgreSQL; fix: set it (e.g. $"
            f"{STATE_URL_ENV}) to postgresql://user:password@host:5432/database"
        )


class _Pool:
    """Idle connections of this process to one URL (a forked child never reuses its parent's)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.pid = os.getpid()
        self.idle: list[Any] = []
        self.lock = threading.Lock()

    def take(self, connect_timeout_s: float, *, fresh: bool = False) -> tuple[Any, bool]:
        with self.lock:
            while self.idle and not fresh:
                conn = self.idle.pop()
                if not conn.closed:
                    return conn, True
        import psycopg2

        _check_url(self.url)
        try:
            conn = psycopg2.connect(
                self.url,
                connect_timeout=max(1, int(connect_timeout_s)),
                application_name="lockgate",
            )
        except psycopg2.OperationalError as exc:
            detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise StateUnavailableError(
                f"cannot reach the state database at {redact_url(self.url)} ({detail}); {_RULE}; "
                "fix: start the server or correct the URL (production reads it from "
                f"${STATE_URL_ENV})"
            ) from exc
        return conn, False

    def give(self, conn: Any) -> None:
        with self.lock:
            if not conn.closed and len(self.idle) < _MAX_IDLE and os.getpid() == self.pid:
                self.idle.append(conn)
                return
        conn.close()


_POOLS: dict[tuple[int, str], _Pool] = {}
_POOLS_LOCK = threading.Lock()


def close_connections() -> int:
    """Close this process's idle state-database connections; return how many were closed.

    Registered with :mod:`atexit`. Call it before stopping a server that waits for its clients
    (PostgreSQL's default "smart" shutdown does).
    """
    closed = 0
    with _POOLS_LOCK:
        pools = [p for (pid, _), p in _POOLS.items() if pid == os.getpid()]
    for pool in pools:
        with pool.lock:
            idle, pool.idle = pool.idle, []
        for conn in idle:
            if not conn.closed:
                conn.close()
                closed += 1
    return closed


atexit.register(close_connections)


def _pool(url: str) -> _Pool:
    key = (os.getpid(), url)
    with _POOLS_LOCK:
        pool = _POOLS.get(key)
        if pool is None:
            pool = _POOLS[key] = _Pool(url)
        return pool


@contextmanager
def _connection(url: str, connect_timeout_s: float, *, fresh: bool = False) -> Iterator[Any]:
    pool = _pool(url)
    if fresh:
        with pool.lock:
            stale, pool.idle = pool.idle, []
        for conn in stale:
            conn.close()
    conn, _ = pool.take(connect_timeout_s)
    try:
        yield conn
    except BaseException:
        try:
            if not conn.closed:
                conn.rollback()
        except Exception:
            conn.close()
        pool.give(conn)
        raise
    pool.give(conn)


def transaction(url: str, work: Callable[[Any], _T], *, connect_timeout_s: float = 10.0) -> _T:
    """Run ``work(cursor)`` in one transaction on ``url``; commit and return its result.

    Any error rolls the transaction back. A pooled connection that the server closed meanwhile
    (a restart, an idle timeout) is replaced and the work run once more on a fresh one: it had
    not committed, so nothing was applied twice.

    Raises:
        StateUnavailableError: the server cannot be reached.
        StateStoreError: the URL is not a PostgreSQL URL.
    """
    import psycopg2

    for attempt in (0, 1):
        with _connection(url, connect_timeout_s, fresh=attempt == 1) as conn:
            try:
                with conn.cursor() as cur:
                    result = work(cur)
            except (psycopg2.OperationalError, psycopg2.InterfaceError) as exc:
                if attempt == 0 and conn.closed:
                    continue  # a dead pooled connection: retry on a fresh one
                raise StateUnavailableError(
                    f"the state database at {redact_url(url)} failed during a transaction "
                    f"({str(exc).strip() or type(exc).__name__}); {_RULE}; fix: check the server "
                    "and retry"
                ) from exc
            conn.commit()
            return result
    raise AssertionError("unreachable")  # pragma: no cover


@contextmanager
def advisory_lease(url: str, name: str, *, connect_timeout_s: float = 10.0) -> Iterator[bool]:
    """Try to hold the advisory lock ``name`` for the ``with`` block; yield whether it is held.

    Never waits: a lock another session holds yields False. The lock lives on a connection of
    its own, so it ends with the block, or with the process or its connection if either dies:
    a crashed holder never blocks the others. Work done under it that must not be repeated by a
    holder whose connection died meanwhile should still be claimed by compare-and-swap.
    """
    pool = _pool(url)
    conn, _ = pool.take(connect_timeout_s, fresh=True)
    try:
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute("SELECT pg_try_advisory_lock(hashtextextended(%s, 0))", (name,))
            row = cur.fetchone()
        held = bool(row and row[0])
        yield held
    finally:
        conn.close()  # ends the session: the lock (if held) is released with it


_SCHEMAS_DONE: set[tuple[str, str]] = set()


def ensure_schema(url: str, name: str, ddl: str, *, connect_timeout_s: float = 10.0) -> None:
    """Run idempotent ``ddl`` (``CREATE ... IF NOT EXISTS``) once per process for ``name``.

    Serialized across processes by a transaction-level advisory lock, so two first users at
    once cannot trip over each other's ``CREATE TABLE``.
    """
    key = (url, name)
    if key in _SCHEMAS_DONE:
        return

    def create(cur: Any) -> None:
        cur.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"lockgate-ddl:{name}",))
        cur.execute(ddl)

    transaction(url, create, connect_timeout_s=connect_timeout_s)
    _SCHEMAS_DONE.add(key)


_SWAP_DDL = """
CREATE TABLE IF NOT EXISTS lockgate_swap (
    namespace text NOT NULL,
    key text NOT NULL,
    value bytea NOT NULL,
    version bigint NOT NULL DEFAULT 1,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (namespace, key)
)
"""


class PostgresSwapStore(BaseModel):
    """A :class:`~lockgate.state.swap.SwapStore` in PostgreSQL (table ``lockgate_swap``).

    Each key is a row ``(namespace, key, value)``; :meth:`swap` is one statement in one
    transaction (``INSERT ... ON CONFLICT DO NOTHING`` when the key must be absent,
    ``UPDATE ... WHERE value = expected`` otherwise), so of two writers that read the same value
    exactly one succeeds: PostgreSQL re-checks the ``WHERE`` on the row the first one committed.

    Attributes:
        url: ``postgresql://user:password@host:port/database`` (production: ``$LOCKGATE_STATE_DB_URL``).
        namespace: Separates users of one table (``registry``: an artifact registry's aliases).
        connect_timeout_s: How long to wait for the server before failing.
    """

    model_config = ConfigDict(frozen=True)

    url: str
    namespace: str = Field(default="registry", min_length=1)
    connect_timeout_s: float = Field(default=10.0, gt=0)

    def _run(self, work: Callable[[Any], _T]) -> _T:
        ensure_schema(
            self.url, "lockgate_swap", _SWAP_DDL, connect_timeout_s=self.connect_timeout_s
        )
        return transaction(self.url, work, connect_timeout_s=self.connect_timeout_s)

    def uri(self, key: str) -> str:
        """Where ``key`` lives, for people (password redacted)."""
        return f"{redact_url(self.url)}#lockgate_swap/{self.namespace}/{key}"

    def get(self, key: str) -> bytes | None:
        """The value at ``key``, or None."""

        def read(cur: Any) -> bytes | None:
            cur.execute(
                "SELECT value FROM lockgate_swap WHERE namespace = %s AND key = %s",
                (self.namespace, key),
            )
            row = cur.fetchone()
            return None if row is None else bytes(row[0])

        return self._run(read)

    def swap(self, key: str, expected: bytes | None, data: bytes) -> bool:
        """Store ``data`` at ``key`` only if it holds ``expected`` (None: absent); True if stored."""
        import psycopg2

        def write(cur: Any) -> bool:
            if expected is None:
                cur.execute(
                    "INSERT INTO lockgate_swap (namespace, key, value) VALUES (%s, %s, %s) "
                    "ON CONFLICT (namespace, key) DO NOTHING RETURNING 1",
                    (self.namespace, key, psycopg2.Binary(data)),
                )
            else:
                cur.execute(
                    "UPDATE lockgate_swap SET value = %s, version = version + 1, "
                    "updated_at = now() WHERE namespace = %s AND key = %s AND value = %s "
                    "RETURNING 1",
                    (psycopg2.Binary(data), self.namespace, key, psycopg2.Binary(expected)),
                )
            return cur.fetchone() is not None

        return self._run(write)

    def keys(self, prefix: str) -> list[str]:
        """Every key of this namespace that starts with ``prefix``, sorted."""

        def read(cur: Any) -> list[str]:
            cur.execute(
                "SELECT key FROM lockgate_swap WHERE namespace = %s AND starts_with(key, %s) "
                'ORDER BY key COLLATE "C"',
                (self.namespace, prefix),
            )
            return [str(row[0]) for row in cur.fetchall()]

        return self._run(read)
