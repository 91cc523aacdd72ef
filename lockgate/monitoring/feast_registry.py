"""Reading a Feast registry without opening a FeatureStore: the file registry and the SQL one.

:func:`read_registry` parses ``registry.db`` (a serialized ``feast.core.Registry``, as Feast's
``FileRegistryStore`` writes it), retrying a torn read; :func:`read_sql_registry` reads one
project of Feast's SQL registry straight from its tables into the same message. Neither imports
feast (which takes seconds): the protobuf descriptors are loaded from feast's generated files
into a private pool (:func:`registry_message_class`). The feature-change fingerprints
(:mod:`lockgate.monitoring.mutations`) are built on them.
"""

from __future__ import annotations

import ast
import functools
import importlib
import importlib.util
import os
import re
import sys
import time
from pathlib import Path
from typing import Any

from lockgate.errors import FeatureStoreError

__all__ = ["read_registry", "read_sql_registry", "registry_message_class"]

_REGISTRY_READS = 3  # Feast truncates and rewrites registry.db in place: retry a torn read
_SERIALIZED_FILE = re.compile(r"AddSerializedFile\((b'(?:[^'\\]|\\.)*')\)")


def read_registry(path: str | os.PathLike[str]) -> Any:
    """Parses a Feast file registry into its ``feast.core.Registry`` protobuf.

    Feast rewrites ``registry.db`` in place (truncate, then one write), so a reader can catch an
    empty or partial file: such a read is retried a few times before it counts as corrupt.

    Args:
        path: The ``registry.db`` file.

    Returns:
        The parsed ``RegistryProto``.

    Raises:
        FileNotFoundError: The registry does not exist (nothing was applied yet).
        FeatureStoreError: The file cannot be read or does not parse as a Feast registry.
    """
    from google.protobuf.message import DecodeError

    registry_class = registry_message_class()
    registry_path = Path(path)
    problem = ""
    for attempt in range(_REGISTRY_READS):
        if attempt:
            time.sleep(0.05 * attempt)
        try:
            data = registry_path.read_bytes()
        except FileNotFoundError:
            raise
        except OSError as exc:
            raise FeatureStoreError(
                f"Feast registry {registry_path} cannot be read ({type(exc).__name__}: {exc}): "
                f"the sensor needs read access to it. Fix: check the path and its permissions."
            ) from exc
        proto = registry_class()
        try:
            proto.ParseFromString(data)
        except DecodeError as exc:
            problem = f"it does not parse as a Feast registry ({exc})"
            continue
        if not data or not proto.HasField("last_updated"):
            problem = f"it holds {len(data)} bytes without a registry timestamp (torn write?)"
            continue
        return proto
    raise FeatureStoreError(
        f"Feast registry {registry_path} is unusable: {problem}, {_REGISTRY_READS} reads in a "
        f"row. Fix: run the apply again (FeastStore.apply() or `feast apply`) to rewrite it."
    )


def registry_message_class() -> type[Any]:
    """The protobuf class of Feast's registry, without importing feast when possible.

    Importing ``feast`` takes seconds; parsing the registry needs only its generated protobuf
    descriptors. They are read from feast's ``*_pb2.py`` files (the serialized descriptors
    protoc embeds there) into a private descriptor pool, so feast's own classes and the default
    pool are left alone. When feast is already imported, or its files do not look as expected,
    feast's own ``Registry`` class is used: both parse the same bytes into the same messages.

    Example:
        >>> registry_message_class().DESCRIPTOR.full_name
        'feast.core.Registry'
    """
    if "feast" in sys.modules:
        return _feast_registry_class()
    try:
        return _standalone_registry_class()
    except Exception:  # a layout this reader does not know: pay for the import instead
        return _feast_registry_class()


def _feast_registry_class() -> type[Any]:
    from feast.protos.feast.core.Registry_pb2 import Registry

    return Registry


@functools.cache
def _standalone_registry_class() -> type[Any]:
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

    spec = importlib.util.find_spec("feast")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("feast is not installed")
    root = Path(next(iter(spec.submodule_search_locations))) / "protos"
    pool = descriptor_pool.DescriptorPool()
    added: set[str] = set()

    def add(name: str) -> None:
        if name in added:
            return
        if name.startswith("google/protobuf/"):
            module = importlib.import_module(
                "google.protobuf." + name.removeprefix("google/protobuf/").replace(".proto", "_pb2")
            )
            data = module.DESCRIPTOR.serialized_pb
        else:
            source = (root / name.replace(".proto", "_pb2.py")).read_text()
            found = _SERIALIZED_FILE.search(source)
            if found is None:
                raise ImportError(f"no serialized descriptor in the module of {name}")
            data = ast.literal_eval(found.group(1))
        proto = descriptor_pb2.FileDescriptorProto.FromString(data)
        for dependency in proto.dependency:
            add(dependency)
        pool.Add(proto)
        added.add(name)

    add("feast/core/Registry.proto")
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("feast.core.Registry"))


# Feast's SQL registry (feast.infra.registry.sql): one table per kind of object, each row the
# object's serialized protobuf; materialization intervals live inside the view's protobuf.
_SQL_REGISTRY_TABLES = (
    ("entities", "entity_proto", "entities"),
    ("data_sources", "data_source_proto", "data_sources"),
    ("feature_views", "feature_view_proto", "feature_views"),
    ("stream_feature_views", "feature_view_proto", "stream_feature_views"),
    ("on_demand_feature_views", "feature_view_proto", "on_demand_feature_views"),
    ("feature_services", "feature_service_proto", "feature_services"),
)


@functools.cache
def _sql_engine(url: str) -> Any:
    """One SQLAlchemy engine per registry URL (a sensor reads it every tick), no pool kept."""
    import sqlalchemy as sa
    from sqlalchemy.pool import NullPool

    return sa.create_engine(url, poolclass=NullPool)


def read_sql_registry(url: str, project: str) -> Any:
    """Reads one project of a Feast SQL registry into a ``feast.core.Registry`` protobuf.

    The same messages :func:`read_registry` parses from ``registry.db``, read straight from the
    registry's tables in one transaction (a consistent snapshot), without importing feast.

    Args:
        url: The registry's SQLAlchemy URL (``registry.path`` in ``feature_store.yaml``).
        project: The Feast project whose objects are read.

    Returns:
        The ``RegistryProto`` holding the project's objects.

    Raises:
        FileNotFoundError: Nothing was applied to the registry yet (no tables, or no objects of
            the project).
        FeatureStoreError: The database cannot be reached or a row does not parse.
    """
    import sqlalchemy as sa
    from google.protobuf.message import DecodeError

    from lockgate._util.urls import redact_url

    proto = registry_message_class()()
    found = 0
    try:
        with _sql_engine(url).connect() as conn:
            present = set(sa.inspect(conn).get_table_names())
            for table, column, field_name in _SQL_REGISTRY_TABLES:
                if table not in present:
                    continue
                rows = conn.execute(
                    sa.text(f"SELECT {column} FROM {table} WHERE project_id = :project"),
                    {"project": project},
                )
                for (data,) in rows:
                    message = getattr(proto, field_name).add()
                    try:
                        message.ParseFromString(bytes(data))
                    except DecodeError as exc:
                        raise FeatureStoreError(
                            f"Feast SQL registry {redact_url(url)}: a row of {table} does not "
                            f"parse ({exc}). Fix: run `feast apply` again to rewrite it."
                        ) from exc
                    # the SQL registry keeps the project in a column, not in the stored spec
                    # (the file registry has it in both): put it back where readers look
                    owner = message.spec if _has_field(message, "spec") else message
                    if _has_field(owner, "project") and not owner.project:
                        owner.project = project
                    found += 1
    except sa.exc.SQLAlchemyError as exc:
        raise FeatureStoreError(
            f"Feast SQL registry {redact_url(url)} cannot be read ({type(exc).__name__}: "
            f"{str(exc).splitlines()[0]}): the sensor needs read access to its tables. Fix: "
            "check the URL, the server and the credentials in feature_store.yaml."
        ) from exc
    if not found:
        raise FileNotFoundError(
            f"Feast SQL registry {redact_url(url)} holds nothing of project {project!r}"
        )
    return proto


def _has_field(message: Any, name: str) -> bool:
    return any(f.name == name for f in message.DESCRIPTOR.fields)
