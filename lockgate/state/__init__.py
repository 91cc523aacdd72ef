"""Shared state with transactions: what several processes change at once, in PostgreSQL.

- :mod:`~lockgate.state.swap`: :class:`SwapStore`, the compare-and-swap interface.
- :mod:`~lockgate.state.postgres`: :class:`PostgresSwapStore` and the connection plumbing.
- :mod:`~lockgate.state.registry`: an artifact registry whose aliases live in a swap store.

The embedded default keeps the same state in local files; production binds these classes.
"""

from __future__ import annotations

from typing import Any

from lockgate._util.lazy_exports import lazy_attribute

_EXPORTS = {
    "PostgresSwapStore": "lockgate.state.postgres",
    "SharedAliasesLocalRegistry": "lockgate.state.registry",
    "StateStoreError": "lockgate.state.postgres",
    "StateUnavailableError": "lockgate.state.postgres",
    "SwapStore": "lockgate.state.swap",
    "SwapStoreKeys": "lockgate.state.registry",
}

__all__ = [
    "PostgresSwapStore",
    "SharedAliasesLocalRegistry",
    "StateStoreError",
    "StateUnavailableError",
    "SwapStore",
    "SwapStoreKeys",
]


def __getattr__(name: str) -> Any:
    return lazy_attribute(__name__, _EXPORTS, name)


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
