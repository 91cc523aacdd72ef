"""The in-process query engine of Feast's offline store: quiet while it runs, released after.

Feast's DuckDB offline store runs its queries on ibis' default DuckDB backend. DuckDB keeps the
memory of a query's joins in its buffer pool after the result was handed over (about 1 GB per
million entity rows of the fraud example's point-in-time join), and that memory stays in the
process for every step that follows. :func:`offline_query` therefore closes the backend once the
last query running in the process has returned its result: the next query opens a new one,
which takes milliseconds.
"""

from __future__ import annotations

import contextlib
import threading
import warnings
from collections.abc import Iterator

__all__ = ["close_query_engines", "offline_query"]

_EXIT_HOOK = threading.Event()
_ACTIVE_LOCK = threading.Lock()
_active = 0


def close_query_engines() -> None:
    """Disconnect ibis' default DuckDB backend, which Feast's offline store leaves open.

    A DuckDB connection still open when the interpreter exits makes DuckDB's nanobind bindings
    print ~100 "nanobind: leaked instance/type/function" lines (nanobind's leak check runs after
    Python has torn the module down). Registered at exit after the first offline query; safe
    to call any time no query runs (the next query opens a new connection).
    """
    import sys

    ibis = sys.modules.get("ibis")
    if ibis is None:
        return
    backend = getattr(ibis.options, "default_backend", None)
    if backend is not None:
        with contextlib.suppress(Exception):
            backend.disconnect()
        ibis.options.default_backend = None


@contextlib.contextmanager
def offline_query(*, release: bool = True) -> Iterator[None]:
    """Runs one offline-store query: ibis' DeprecationWarning about duckdb's
    ``fetch_arrow_table`` hidden (noise on every query), the engine closed at interpreter exit,
    and, with ``release``, closed as soon as no other query of the process runs, so DuckDB's
    buffer pool goes back to the system (see the module docstring).

    Example:
        >>> with offline_query():
        ...     pass  # store.get_historical_features(...).to_arrow()
    """
    global _active
    if not _EXIT_HOOK.is_set():
        import atexit

        _EXIT_HOOK.set()
        atexit.register(close_query_engines)
    with _ACTIVE_LOCK:
        _active += 1
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings(
                "ignore", message=".*fetch_arrow_table", category=DeprecationWarning
            )
            yield
    finally:
        with _ACTIVE_LOCK:
            _active -= 1
            if release and _active == 0:
                close_query_engines()
