"""An artifact registry whose mutable keys live in a :class:`~lockgate.state.swap.SwapStore`.

A registry's artifacts are immutable and content-addressed: any storage that writes a group at
once will do (a folder, an object store). Its mutable keys (``aliases/<pipeline>.json``, the
champion and challenger and their history) are changed by compare-and-swap, which a shared
folder or an object store without conditional writes cannot do safely for several machines.
:class:`SwapStoreKeys` routes those keys, reads and writes, to a swap store (PostgreSQL in
production) and leaves everything else to the registry's own storage::

    class S3ArtifactRegistry(SwapStoreKeys, ObjectStoreRegistry): ...

:class:`SharedAliasesLocalRegistry` is the local-folder registry with its aliases in PostgreSQL.
"""

from __future__ import annotations

from typing import ClassVar, cast

from pydantic import Field

from lockgate.errors import ArtifactNotFoundError
from lockgate.lineage.registry import ArtifactRegistry, LocalArtifactRegistry
from lockgate.state.postgres import PostgresSwapStore
from lockgate.state.swap import SwapStore

__all__ = ["SharedAliasesLocalRegistry", "SwapStoreKeys"]


class SwapStoreKeys(ArtifactRegistry):
    """Mixin: keys under :attr:`swap_prefixes` are read and swapped in :meth:`swap_store`.

    Put it before the storage class in the bases (``class R(SwapStoreKeys, Storage)``): its
    primitives answer the mutable keys and hand every other key to the storage class. With no
    ``state_url`` (and :meth:`swap_store` not overridden) every key stays in the storage.

    Attributes:
        state_url: The PostgreSQL URL of the shared state (production:
            ``$LOCKGATE_STATE_DB_URL``); None keeps the mutable keys in the registry's storage.
        state_namespace: The swap store's namespace for this registry's keys.
    """

    swap_prefixes: ClassVar[tuple[str, ...]] = ("aliases/",)

    state_url: str | None = None
    state_namespace: str = Field(default="registry", min_length=1)

    def swap_store(self) -> SwapStore | None:
        """The store of the mutable keys; None keeps them in the registry's own storage."""
        if not self.state_url:
            return None
        return PostgresSwapStore(url=self.state_url, namespace=self.state_namespace)

    def _storage(self) -> ArtifactRegistry:
        # the storage class after this mixin in the MRO answers every other key (mypy cannot
        # see that the abstract primitives are implemented there)
        return cast(ArtifactRegistry, super())

    def _swapped(self, key: str) -> SwapStore | None:
        if not any(key.startswith(p) for p in self.swap_prefixes):
            return None
        return self.swap_store()

    def read_bytes(self, key: str) -> bytes:
        store = self._swapped(key)
        if store is None:
            return self._storage().read_bytes(key)
        value = store.get(key)
        if value is None:
            raise ArtifactNotFoundError(f"{self.uri(key)} does not exist in the shared state")
        return value

    def exists(self, key: str) -> bool:
        store = self._swapped(key)
        if store is None:
            return self._storage().exists(key)
        return store.get(key) is not None

    def swap_bytes(self, key: str, expected: bytes | None, data: bytes) -> bool:
        store = self._swapped(key)
        if store is None:
            return self._storage().swap_bytes(key, expected, data)
        return store.swap(key, expected, data)

    def list_prefix(self, prefix: str) -> list[str]:
        store = self._swapped(prefix.rstrip("/") + "/")
        if store is None:
            return self._storage().list_prefix(prefix)
        base = prefix.rstrip("/") + "/"
        return sorted({key[len(base) :].split("/", 1)[0] for key in store.keys(base)})

    def uri(self, key: str) -> str:
        store = self._swapped(key)
        if isinstance(store, PostgresSwapStore):
            return store.uri(key)
        return self._storage().uri(key)


class SharedAliasesLocalRegistry(SwapStoreKeys, LocalArtifactRegistry):
    """:class:`~lockgate.lineage.registry.LocalArtifactRegistry` with its aliases in PostgreSQL.

    Artifacts stay in the folder ``root`` (a shared volume); champion/challenger moves are
    compare-and-swap transactions in the database at ``state_url``, so two processes that move
    an alias from the same version at once cannot both succeed.
    """
