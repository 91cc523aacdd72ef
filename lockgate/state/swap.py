"""The compare-and-swap store that shared mutable state is written through.

A :class:`SwapStore` holds small byte values under string keys and changes one only when it
still holds what the writer read: two writers that read the same value cannot both replace it.
The alias documents of an artifact registry, canary state and routes are written this way, so a
store that implements these three methods (PostgreSQL, :mod:`lockgate.state.postgres`) makes
them safe to share between machines.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

__all__ = ["SwapStore"]


@runtime_checkable
class SwapStore(Protocol):
    """Keys to byte values, changed only by compare-and-swap."""

    def get(self, key: str) -> bytes | None:
        """The value stored at ``key``, or None when there is none."""
        ...

    def swap(self, key: str, expected: bytes | None, data: bytes) -> bool:
        """Store ``data`` at ``key`` only if it still holds ``expected`` (None: absent).

        Returns:
            True when ``data`` was stored; False when ``key`` held something else, and then
            nothing changed.
        """
        ...

    def keys(self, prefix: str) -> list[str]:
        """Every key that starts with ``prefix``, sorted."""
        ...
