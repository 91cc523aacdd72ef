"""The Feast store a pipeline reads: the user's Feast repository, or a local store in code.

Two ways to point it at Feast:

* **A Feast repository** (the usual case): ``repo_dir`` is the folder holding
  ``feature_store.yaml``. Its registry, project, offline and online stores are used exactly as
  Feast uses them (``${VAR}`` expanded, relative paths resolved against the repository folder, as
  ``feast`` itself resolves them). lockgate reads it and never writes it: applying the
  definitions is the user's choice (``feast apply`` in the repository, or
  ``lockgate apply``, which runs Feast's own plan/apply there).
* **A local store built in code**: ``repo_dir`` holds no ``feature_store.yaml``; a file registry
  (``registry.db``) and a SQLite online store live in it, DuckDB reads the sources, and
  :meth:`FeastStore.apply` applies the objects that ``definitions`` (``"module:function"``,
  called with ``Path(data_dir)``) returns. It creates and updates only those objects and never
  deletes one it was not given, so a registry shared with other teams keeps their objects.

Change detection does not trust Feast's own metadata: every apply rewrites ``last_updated``,
``version_id`` and the registry file's mtime, even when nothing changed, and appending source
rows changes nothing in the registry. :meth:`FeastStore.fingerprints` therefore hashes the specs
with metadata and timestamps removed, and describes each source folder by file sizes and mtimes
(without reading the data). Source paths are resolved once, by :meth:`FeastStore.source_path`,
the way Feast resolves them.

Feast is imported inside methods only: importing it takes about 4 s.

:class:`FeastStore` is a plain class (a frozen pydantic model, no Dagster): the Dagster resource
:class:`lockgate.resources.feast_store.FeastStoreResource` holds the same fields as configuration
and hands assets and sensors a :class:`FeastStore`.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import json
import os
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from lockgate._util.urls import redact_url
from lockgate.errors import EmptyDataError, FeatureStoreError, SchemaError
from lockgate.features.asof_join import (
    asof_historical_features,
    asof_plan,
    entity_arrow,
    feature_series,
    finish_asof_frame,
)
from lockgate.features.query_engine import close_query_engines, offline_query
from lockgate.features.views import _service_join_keys, service_views

if TYPE_CHECKING:
    from feast import FeatureService, FeatureStore, RepoConfig

__all__ = [
    "FEATURE_STORE_YAML",
    "FeastStore",
    "canonical_spec",
    "close_query_engines",
    "source_fingerprint",
    "spec_sha256",
]

FEATURE_STORE_YAML = "feature_store.yaml"
"""The file that makes a folder a Feast repository."""

_DEFAULT_PROJECT = "lockgate"
_CHDIR_LOCK = threading.Lock()
_ROW = "__lockgate_row__"
_DROP_KEYS = frozenset({"meta", "created_timestamp", "last_updated_timestamp"})


class FeastStore(BaseModel):
    """A Feast feature store for lockgate pipelines.

    Attributes:
        repo_dir: The Feast repository (folder with ``feature_store.yaml``), or, without that
            file, the folder of a local file registry and SQLite online store built in code.
        data_dir: Folder of the source data: passed to ``definitions`` and holding label
            datasets named by ``LabelSource.dataset``; empty: ``repo_dir``.
        project: Feast project name of a store built in code; empty: ``lockgate``. A Feast
            repository names its project in ``feature_store.yaml``, and this must be empty or
            equal to it.
        definitions: ``"module:function"`` returning the Feast objects for ``Path(data_dir)``
            that :meth:`apply` applies to a store built in code; empty: nothing to apply.
    """

    model_config = ConfigDict(frozen=True)

    repo_dir: str = Field(
        description="The Feast repository (folder with feature_store.yaml) or a local store folder."
    )
    data_dir: str = Field(default="", description="Folder of the source data; empty: repo_dir.")
    project: str = Field(default="", description="Feast project of a store built in code.")
    definitions: str = Field(
        default="",
        description="'module:function' returning the Feast objects that apply() applies.",
    )

    def for_pipeline(self, spec: Any) -> FeastStore:
        """The store a pipeline reads: its own ``feature_repo``, else this one.

        Args:
            spec: a :class:`~lockgate.spec.ModelPipeline`.
        """
        repo = spec.feature_repo_path
        return self if repo is None else FeastStore(repo_dir=str(repo))

    # ---- config and objects

    @property
    def repo_path(self) -> Path:
        """The repository folder, absolute."""
        return Path(self.repo_dir).expanduser().resolve()

    @property
    def data_path(self) -> Path:
        """The source data folder, absolute (``repo_dir`` when ``data_dir`` is empty)."""
        return Path(self.data_dir).expanduser().resolve() if self.data_dir else self.repo_path

    @property
    def is_feast_repo(self) -> bool:
        """True when ``repo_dir`` is a Feast repository (holds ``feature_store.yaml``)."""
        return (self.repo_path / FEATURE_STORE_YAML).is_file()

    @property
    def project_name(self) -> str:
        """The Feast project: from ``feature_store.yaml``, else ``project`` or ``lockgate``.

        Read without importing Feast (seconds): sensors ask for it on every tick.
        """
        if not self.is_feast_repo:
            return self.project or _DEFAULT_PROJECT
        project = str(self._yaml().get("project", ""))
        if self.project and self.project != project:
            self._yaml_config()  # raises the mismatch with its fix
        return project

    @property
    def registry_type(self) -> str:
        """``file`` (``registry.db``) or ``sql`` (Feast's SQL registry, e.g. on PostgreSQL).

        Read without importing Feast, like :attr:`project_name`.
        """
        if not self.is_feast_repo:
            return "file"
        registry = self._yaml().get("registry", "")
        kind = registry.get("registry_type", "file") if isinstance(registry, dict) else "file"
        return str(kind or "file")

    @property
    def registry_url(self) -> str:
        """The SQL registry's SQLAlchemy URL (``registry.path`` of a ``sql`` registry).

        Raises:
            FeatureStoreError: The registry is not a SQL registry.
        """
        registry = self._yaml().get("registry", "") if self.is_feast_repo else ""
        if self.registry_type != "sql" or not isinstance(registry, dict):
            raise FeatureStoreError(
                f"the Feast registry of {self.repo_path} is a {self.registry_type} registry, "
                "not a SQL one: it has no URL. Fix: read registry_path instead."
            )
        return str(registry.get("path", ""))

    @property
    def registry_location(self) -> str:
        """Where the registry is, for messages: its file, or its SQL URL without the password."""
        if self.registry_type == "sql":
            return redact_url(self.registry_url)
        return str(self.registry_path)

    @property
    def registry_path(self) -> Path:
        """The file registry, resolved as Feast resolves it (relative to the repository).

        Read without importing Feast, like :attr:`project_name`. A SQL registry has no file:
        use :attr:`registry_url`.
        """
        if not self.is_feast_repo:
            return self.repo_path / "registry.db"
        registry = self._yaml().get("registry", "")
        path = str(registry.get("path", "") if isinstance(registry, dict) else registry)
        if "://" in path and not path.startswith("file://"):
            return Path(redact_url(path))
        path = path.removeprefix("file://")
        return Path(path) if os.path.isabs(path) else self.repo_path / path

    def _yaml(self) -> dict[str, Any]:
        """``feature_store.yaml`` as Feast reads it (``${VAR}`` expanded), as plain data."""
        import yaml

        path = self.repo_path / FEATURE_STORE_YAML
        try:
            data = yaml.safe_load(os.path.expandvars(path.read_text()))
        except (OSError, yaml.YAMLError) as exc:
            raise FeatureStoreError(
                f"{path} cannot be read as YAML ({type(exc).__name__}: {exc}): it must be valid "
                f"feature_store.yaml. Fix: correct it; `feast plan` in {self.repo_path} shows "
                f"what Feast reads."
            ) from exc
        return data if isinstance(data, dict) else {}

    def source_path(self, uri: str) -> str:
        """A source's path or URI resolved as Feast resolves it (relative to the repository)."""
        from feast.infra.offline_stores.file_source import FileSource

        if "://" in uri and not uri.startswith("file://"):
            return uri
        resolved = FileSource.get_uri_for_file_path(self.repo_path, uri.removeprefix("file://"))
        return os.path.abspath(resolved)

    def repo_config(self) -> RepoConfig:
        """The Feast config: ``feature_store.yaml`` as Feast reads it, or the local one in code.

        Raises:
            FeatureStoreError: ``feature_store.yaml`` cannot be read, or names another project
                than ``project``.
        """
        if self.is_feast_repo:
            return self._yaml_config()
        from feast import RepoConfig
        from feast.infra.offline_stores.duckdb import DuckDBOfflineStoreConfig
        from feast.infra.online_stores.sqlite import SqliteOnlineStoreConfig
        from feast.repo_config import RegistryConfig

        repo = self.repo_path
        return RepoConfig(
            project=self.project or _DEFAULT_PROJECT,
            provider="local",
            registry=RegistryConfig(
                registry_type="file", path=str(repo / "registry.db"), cache_ttl_seconds=0
            ),
            online_store=SqliteOnlineStoreConfig(path=str(repo / "online_store.db")),
            offline_store=DuckDBOfflineStoreConfig(),
            entity_key_serialization_version=3,
            repo_path=repo,
        )

    def _yaml_config(self) -> RepoConfig:
        from feast.repo_config import load_repo_config

        path = self.repo_path / FEATURE_STORE_YAML
        try:
            config = load_repo_config(self.repo_path, path)
        except Exception as exc:
            raise FeatureStoreError(
                f"{path} cannot be read as a Feast config ({type(exc).__name__}: {exc}): it must "
                f"be valid feature_store.yaml (project, provider, registry, online_store). Fix: "
                f"correct it; `feast plan` in {self.repo_path} shows what Feast reads."
            ) from exc
        if self.project and self.project != config.project:
            raise FeatureStoreError(
                f"FeastStore.project is {self.project!r} but {path} names project "
                f"{config.project!r}: a Feast repository's project is the one in its "
                f"feature_store.yaml. Fix: leave project empty or set it to {config.project!r}."
            )
        return config

    @contextlib.contextmanager
    def in_repo(self) -> Iterator[None]:
        """Runs a Feast read inside the repository folder, as the ``feast`` CLI does.

        Feast 0.67 writes file sources relative to the repository but its DuckDB offline store
        reads a relative ``FileSource`` path against the working directory; running the call
        from the repository folder gives both the same meaning. The lock keeps two threads of
        one process from changing the working directory under each other.
        """
        if not self.is_feast_repo:
            yield
            return
        with _CHDIR_LOCK, contextlib.chdir(self.repo_path):
            yield

    def store(self) -> FeatureStore:
        """Opens the Feast store (a fresh instance, so it always sees the current registry)."""
        from feast import FeatureStore

        if self.is_feast_repo:
            return FeatureStore(config=self.repo_config(), repo_path=str(self.repo_path))
        self.repo_path.mkdir(parents=True, exist_ok=True)
        return FeatureStore(config=self.repo_config())

    def definition_objects(self) -> list[Any]:
        """Imports the definitions function and returns its Feast objects.

        Raises:
            FeatureStoreError: No definitions are configured, or the import path is malformed,
                cannot be imported, or the function fails.
        """
        if not self.definitions:
            raise FeatureStoreError(
                f"FeastStore at {self.repo_dir} has no definitions to apply: lockgate applies "
                f"only objects it is given. Fix: set definitions='module:function' for a store "
                f"built in code, or apply a Feast repository with `feast apply` in it."
            )
        func = _import_callable(self.definitions)
        try:
            return list(func(self.data_path))
        except Exception as exc:
            raise FeatureStoreError(
                f"definitions {self.definitions!r} failed for data_dir {self.data_path} "
                f"({type(exc).__name__}: {exc}): it must return the Feast objects. Fix: correct "
                f"the definitions function."
            ) from exc

    # ---- apply

    def apply(self) -> dict[str, Any]:
        """Creates or updates the objects of ``definitions`` (idempotent, never deletes).

        Objects whose canonical spec already matches are left alone; when nothing differs the
        registry file is not written at all. Objects in the registry that the definitions do
        not name (another team's, or ones dropped from the definitions) are never touched:
        they are listed under ``not_managed``.

        Returns:
            JSON-able dict: ``project``, ``registry_path``, ``changed`` (bool), and lists of
            ``"kind:name"`` keys ``created``, ``updated``, ``unchanged``, ``not_managed``.

        Raises:
            FeatureStoreError: The definitions cannot be loaded, this is a Feast repository
                (apply it with Feast), or Feast refuses them.
        """
        if self.is_feast_repo:
            raise FeatureStoreError(
                f"{self.repo_path} is a Feast repository: lockgate never applies to it. Fix: run "
                f"`feast apply` there (or `lockgate apply --repo {self.repo_path}`)."
            )
        objects = self.definition_objects()
        store = self.store()
        desired = {_object_key(o): spec_sha256(o) for o in objects}
        current = {key: spec_sha256(o) for key, o in _registry_objects(store).items()}
        report = _diff(desired, current)
        changed = bool(report["created"] or report["updated"])
        if changed:
            todo = [
                o for o in objects if _object_key(o) in {*report["created"], *report["updated"]}
            ]
            try:
                store.apply(todo, partial=True)
            except Exception as exc:
                raise FeatureStoreError(
                    f"Feast refused to apply {self.definitions!r} to project "
                    f"{self.project_name!r} in {self.repo_dir} ({type(exc).__name__}: {exc}): "
                    f"the definitions must be valid Feast objects. Fix: correct the "
                    f"definitions, then apply again."
                ) from exc
        return {
            "project": self.project_name,
            "registry_path": self.registry_location,
            "changed": changed,
            **report,
        }

    # ---- services

    def feature_service_names(self) -> list[str]:
        """Names of the feature services in the registry, sorted."""
        return sorted(s.name for s in self.store().list_feature_services())

    def feature_service(self, feature_service: str) -> FeatureService:
        """Returns a feature service from the registry.

        Raises:
            FeatureStoreError: The service does not exist; the message lists the known ones.
        """
        return _get_service(self.store(), feature_service, self)

    def join_keys(self, feature_service: str) -> list[str]:
        """The join-key columns a feature service's entity rows carry, in service order.

        Raises:
            FeatureStoreError: Unknown service.
        """
        store = self.store()
        return _service_join_keys(store, _get_service(store, feature_service, self))

    def feature_refs(self, feature_service: str) -> list[str]:
        """Returns the ``"view:feature"`` references of a feature service, in service order.

        Raises:
            FeatureStoreError: The service does not exist; the message lists the known ones.
        """
        return service_refs(self.feature_service(feature_service))

    def historical_features(self, *, feature_service: str, entity_df: pd.DataFrame) -> pd.DataFrame:
        """Point-in-time correct join of a feature service onto entity rows.

        For each entity row and feature view, the newest feature row with the same join keys,
        ``timestamp <= event_timestamp`` and within the view's TTL is joined (else missing).
        A DuckDB offline store over Parquet ``FileSource`` views is joined with
        :func:`~lockgate.features.asof_join.asof_historical_features` (Feast's answer, memory
        per row instead of per row and TTL window); anything else (on-demand views, other
        sources or offline stores, entity rows without an event time) with Feast's own
        ``get_historical_features``.

        Args:
            feature_service: Name of the feature service.
            entity_df: Join keys of every view of the service and ``event_timestamp``
                (tz-aware, or naive meaning UTC); other columns pass through.

        Returns:
            The entity rows in their input order (fresh ``RangeIndex``), entity columns with
            their input dtypes (``event_timestamp`` as ``datetime64[us, UTC]``), then the
            features in service order. Feature dtypes depend only on the service: integers
            ``Int64`` (nullable), floats ``float64`` (NaN when missing), strings ``object``
            (None when missing).

        Raises:
            FeatureStoreError: Unknown service, or Feast failed (the message has the context).
            SchemaError: A required column is missing or ``event_timestamp`` is not datetime.
            EmptyDataError: ``entity_df`` has no rows.
        """
        store = self.store()
        service = _get_service(store, feature_service, self)
        join_keys = _service_join_keys(store, service)
        frame = _prepare_entity_df(entity_df, join_keys, feature_service)
        plan = asof_plan(store, service)
        if isinstance(plan, str) or frame["event_timestamp"].isna().any():
            return self._feast_historical(store, service, frame, entity_df, feature_service)
        try:
            with offline_query(), self.in_repo():  # DuckDB's memory is released after it
                features = asof_historical_features(
                    plan,
                    entity_arrow(frame, [*join_keys, "event_timestamp", _ROW]),
                    repo_path=str(store.config.repo_path or self.repo_path),
                    row_column=_ROW,
                )
        except Exception as exc:
            raise FeatureStoreError(
                f"the point-in-time join of feature service {feature_service!r} onto "
                f"{len(frame)} entity rows failed (repo {self.repo_dir}, data {self.data_path}; "
                f"{type(exc).__name__}: {exc}): the sources must be readable Parquet with "
                f"microsecond UTC timestamps. Fix: check the source folders, then re-run apply."
            ) from exc
        return finish_asof_frame(frame, features, list(entity_df.columns), service)

    def _feast_historical(
        self,
        store: FeatureStore,
        service: FeatureService,
        frame: pd.DataFrame,
        entity_df: pd.DataFrame,
        feature_service: str,
    ) -> pd.DataFrame:
        """Feast's own ``get_historical_features`` (what the ASOF join does not support)."""
        try:
            with offline_query(), self.in_repo():  # DuckDB's memory is released after it
                job = store.get_historical_features(entity_df=frame, features=service)
                table = job.to_arrow()
                del job
        except Exception as exc:
            raise FeatureStoreError(
                f"Feast could not join feature service {feature_service!r} onto {len(frame)} "
                f"entity rows (repo {self.repo_dir}, data {self.data_path}; "
                f"{type(exc).__name__}: {exc}): the sources must be readable Parquet with "
                f"microsecond UTC timestamps. Fix: check the source folders, then re-run apply."
            ) from exc
        del frame  # the result carries the entity rows
        return _finish_frame(table, entity_df, service)

    # ---- fingerprints and materialization

    def fingerprints(self, feature_service: str) -> dict[str, Any]:
        """Cheap change signals for a feature service (never reads the data).

        Returns:
            JSON-able dict with ``feature_service``, ``registry`` (sha256 over the canonical
            specs of the service, its feature views and their entities), ``feature_views``
            ({name: sha256 of its canonical spec}) and ``sources`` ({view name:
            :func:`source_fingerprint` of its batch source path}).

        Raises:
            FeatureStoreError: The service does not exist; the message lists the known ones.
        """
        store = self.store()
        service = _get_service(store, feature_service, self)
        views = service_views(store, service)
        entities = {
            e: store.get_entity(e) for v in views.values() for e in getattr(v, "entities", [])
        }
        specs = {
            "feature_service": canonical_spec(service),
            "feature_views": {n: canonical_spec(v) for n, v in sorted(views.items())},
            "entities": {n: canonical_spec(e) for n, e in sorted(entities.items())},
        }
        return {
            "feature_service": feature_service,
            "registry": _sha256_json(specs),
            "feature_views": {n: spec_sha256(v) for n, v in sorted(views.items())},
            "sources": {  # on-demand views have none: their source views' are here
                n: source_fingerprint(self.source_path(_source_uri(v)))
                for n, v in views.items()
                if getattr(v, "batch_source", None) is not None
            },
        }

    def materialize(
        self,
        end: datetime,
        *,
        start: datetime | None = None,
        feature_views: list[str] | None = None,
    ) -> dict[str, Any]:
        """Loads the newest feature values of ``[start, end]`` into the online store.

        An explicit window (not ``materialize_incremental``) so late rows with older
        timestamps are picked up again.

        Args:
            end: End of the window (tz-aware, or naive meaning UTC).
            start: Start of the window; default ``end - 7 days``.
            feature_views: Views to load; default all.

        Returns:
            JSON-able dict with ``start``, ``end`` (ISO, UTC) and ``feature_views``.

        Raises:
            FeatureStoreError: Feast failed.
        """
        end_utc = _utc(end)
        start_utc = _utc(start) if start is not None else end_utc - timedelta(days=7)
        store = self.store()
        names = feature_views or sorted(v.name for v in store.list_feature_views())
        try:
            with offline_query(), self.in_repo():
                store.materialize(start_date=start_utc, end_date=end_utc, feature_views=names)
        except Exception as exc:
            raise FeatureStoreError(
                f"Feast could not materialize {names} over [{start_utc}, {end_utc}] "
                f"({type(exc).__name__}: {exc}): views must exist and sources be readable. "
                f"Fix: run apply first and check the source folders."
            ) from exc
        return {"start": start_utc.isoformat(), "end": end_utc.isoformat(), "feature_views": names}


# --------------------------------------------------------------------------------------------
# pure helpers


def canonical_spec(obj: Any) -> dict[str, Any]:
    """The canonical, timestamp-free spec of a Feast object as a plain dict.

    Uses the proto ``spec`` (or the whole proto for data sources), drops every ``meta``,
    ``created_timestamp`` and ``last_updated_timestamp`` key at any depth (so batch sources
    embedded in views and services lose their apply-time metadata).

    Args:
        obj: A Feast object with ``to_proto()`` (entity, data source, view, service).

    Returns:
        A JSON-able dict that is equal for equal definitions, whenever they were applied.
    """
    from google.protobuf.json_format import MessageToDict

    proto = obj.to_proto()
    message = proto.spec if _has_field(proto, "spec") else proto
    return _strip(MessageToDict(message, preserving_proto_field_name=True))


def spec_sha256(obj: Any) -> str:
    """sha256 (hex) of :func:`canonical_spec`."""
    return _sha256_json(canonical_spec(obj))


def source_fingerprint(path: str | Path) -> dict[str, Any]:
    """Describes the files behind a source path from their metadata only.

    A folder counts every ``*.parquet`` below it (as DuckDB reads it), a glob its matches, a
    file itself.

    Args:
        path: The source path (folder, glob or file).

    Returns:
        ``files`` (count), ``bytes`` (total size), ``max_mtime_ns`` (0 when empty) and
        ``sha256`` over the sorted ``relative path, size, mtime_ns`` lines.
    """
    files, base = _source_files(Path(path))
    lines = []
    total = max_mtime = 0
    for file in files:
        st = file.stat()
        lines.append(f"{file.relative_to(base).as_posix()}\t{st.st_size}\t{st.st_mtime_ns}\n")
        total += st.st_size
        max_mtime = max(max_mtime, st.st_mtime_ns)
    digest = hashlib.sha256("".join(sorted(lines)).encode()).hexdigest()
    return {"files": len(files), "bytes": total, "max_mtime_ns": max_mtime, "sha256": digest}


def service_refs(service: Any) -> list[str]:
    """``"view:feature"`` references of a feature service object, in service order."""
    return [
        f"{p.name_to_use()}:{f.name}" for p in service.feature_view_projections for f in p.features
    ]


def _source_uri(view: Any) -> str:
    path = getattr(view.batch_source, "path", None)
    if not isinstance(path, str) or not path:
        raise FeatureStoreError(
            f"feature view {view.name!r} has batch source {view.batch_source!r} without a file "
            f"path: fingerprints describe file sources only. Fix: use a FileSource."
        )
    return path


def _source_files(path: Path) -> tuple[list[Path], Path]:
    """The files behind a source path and the folder their names are relative to."""
    parts = path.parts
    wild = next((i for i, part in enumerate(parts) if any(ch in part for ch in "*?[")), None)
    if wild is not None:
        base = Path(*parts[:wild]) if wild else Path(".")
        pattern = "/".join(parts[wild:])
        return sorted(p for p in base.glob(pattern) if p.is_file()), base
    if path.is_dir():
        return sorted(p for p in path.rglob("*.parquet") if p.is_file()), path
    return ([path] if path.is_file() else []), path.parent


def _strip(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _strip(v) for k, v in value.items() if k not in _DROP_KEYS}
    if isinstance(value, list):
        return [_strip(v) for v in value]
    return value


def _has_field(proto: Any, name: str) -> bool:
    return name in {f.name for f in proto.DESCRIPTOR.fields}


def _sha256_json(value: Any) -> str:
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(text.encode()).hexdigest()


def _import_callable(path: str) -> Callable[[Path], Iterable[Any]]:
    module_name, sep, attr = path.partition(":")
    if not sep or not module_name or not attr:
        raise FeatureStoreError(
            f"definitions={path!r} is malformed: it must be 'package.module:function'. Fix: "
            f"e.g. 'my_project.features:feast_objects'."
        )
    try:
        func = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise FeatureStoreError(
            f"definitions={path!r} cannot be imported ({type(exc).__name__}: {exc}): the module "
            f"must be importable and define the function. Fix: check the path and PYTHONPATH."
        ) from exc
    if not callable(func):
        raise FeatureStoreError(
            f"definitions={path!r} is a {type(func).__name__}, not a function: it must name a "
            f"callable taking the data folder. Fix: point it at the function."
        )
    return func


def _object_key(obj: Any) -> str:
    from feast import Entity, FeatureService, FeatureView
    from feast.data_source import DataSource

    kinds = (
        (Entity, "entity"),
        (DataSource, "data_source"),
        (FeatureView, "feature_view"),
        (FeatureService, "feature_service"),
    )
    for cls, kind in kinds:
        if isinstance(obj, cls):
            return f"{kind}:{obj.name}"
    raise FeatureStoreError(
        f"definition object {obj!r} is a {type(obj).__name__}: FeastStore applies entities, "
        f"data sources, feature views and feature services only. Fix: remove it from the "
        f"definitions."
    )


def _registry_objects(store: FeatureStore) -> dict[str, Any]:
    listed: Iterable[Any] = (
        *store.list_entities(),
        *store.list_data_sources(),
        *store.list_feature_views(),
        *store.list_feature_services(),
    )
    return {_object_key(o): o for o in listed if not o.name.startswith("__")}


def _diff(desired: Mapping[str, str], current: Mapping[str, str]) -> dict[str, list[str]]:
    return {
        "created": sorted(k for k in desired if k not in current),
        "updated": sorted(k for k in desired if k in current and current[k] != desired[k]),
        "unchanged": sorted(k for k in desired if current.get(k) == desired[k]),
        "not_managed": sorted(k for k in current if k not in desired),
    }


def _get_service(store: FeatureStore, name: str, owner: FeastStore) -> FeatureService:
    from feast.errors import FeatureServiceNotFoundException

    try:
        return store.get_feature_service(name)
    except FeatureServiceNotFoundException:
        known = sorted(s.name for s in store.list_feature_services())
        if owner.is_feast_repo:
            how = f"declare it in the repository and run `feast apply` in {owner.repo_path}"
        elif owner.definitions:
            how = f"add it to the definitions ({owner.definitions}) and run apply()"
        else:
            how = "apply the Feast objects that declare it (FeastStore(definitions=...).apply())"
        raise FeatureStoreError(
            f"feature service {name!r} does not exist in Feast project {owner.project_name!r} "
            f"(registry {owner.registry_path}); known services: {known or 'none'}. Fix: use one "
            f"of them, or {how}."
        ) from None


def _prepare_entity_df(entity_df: pd.DataFrame, join_keys: list[str], name: str) -> pd.DataFrame:
    if not isinstance(entity_df, pd.DataFrame):
        raise SchemaError(
            f"entity_df is a {type(entity_df).__name__}: it must be a pandas DataFrame. Fix: "
            f"pass a DataFrame with the join keys and event_timestamp."
        )
    if entity_df.empty:
        raise EmptyDataError(
            f"entity_df for feature service {name!r} has no rows: at least one entity row is "
            f"required. Fix: check the filter that built it."
        )
    required = ["event_timestamp", *join_keys]
    missing = [c for c in required if c not in entity_df.columns]
    if missing:
        raise SchemaError(
            f"entity_df lacks column(s) {missing} needed by feature service {name!r}: it must "
            f"have {required} (it has {list(entity_df.columns)}). Fix: add those columns."
        )
    if _ROW in entity_df.columns:
        raise SchemaError(
            f"entity_df has a column {_ROW!r}, which FeastStore reserves for row order. Fix: "
            f"rename it."
        )
    frame = entity_df.copy()
    frame["event_timestamp"] = _utc_us(frame["event_timestamp"], "entity_df.event_timestamp")
    frame[_ROW] = range(len(frame))
    return frame.reset_index(drop=True)


def _finish_frame(table: Any, entity_df: pd.DataFrame, service: Any) -> pd.DataFrame:
    import pyarrow as pa

    table = table.sort_by(_ROW)
    out = table.to_pandas(types_mapper={pa.int64(): pd.Int64Dtype()}.get)
    entity_cols = list(entity_df.columns)
    features = [f.name for p in service.feature_view_projections for f in p.features]
    out = out[[*entity_cols, *features]].reset_index(drop=True)
    for col in entity_cols:
        if col == "event_timestamp":
            out[col] = _utc_us(out[col], col)
        elif out[col].dtype != entity_df[col].dtype:
            out[col] = out[col].astype(entity_df[col].dtype)
    for p in service.feature_view_projections:
        for f in p.features:
            out[f.name] = feature_series(out[f.name], str(f.dtype))
    return out


def _utc_us(series: pd.Series, what: str) -> pd.Series:
    if not pd.api.types.is_datetime64_any_dtype(series):
        raise SchemaError(
            f"{what} has dtype {series.dtype}: it must be datetime64 (tz-aware, or naive "
            f"meaning UTC). Fix: convert it with pd.to_datetime(..., utc=True)."
        )
    if getattr(series.dt, "tz", None) is None:
        series = series.dt.tz_localize("UTC")
    return series.dt.tz_convert("UTC").astype("datetime64[us, UTC]")


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
