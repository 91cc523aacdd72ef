"""A Dagster resource around a local Feast store: file registry, SQLite online, DuckDB offline.

The Feast config is built in code (no ``feature_store.yaml``) and the definitions are applied
from code (no ``feast apply``): ``definitions`` names a function returning the Feast objects,
called with ``Path(data_dir)``.

Change detection does not trust Feast's own metadata: every apply rewrites ``last_updated``,
``version_id`` and the registry file's mtime, even when nothing changed, and appending source
rows changes nothing in the registry. :meth:`FeastStore.fingerprints` therefore hashes the specs
with metadata and timestamps removed, and describes each source folder by file sizes and mtimes
(without reading the data).

Feast is imported inside methods only: importing it takes about 4 s.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import json
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import dagster as dg
import pandas as pd
from pydantic import Field

from lockgate.errors import EmptyDataError, FeatureStoreError, SchemaError

if TYPE_CHECKING:
    from feast import FeatureService, FeatureStore, RepoConfig

__all__ = [
    "DEFAULT_DEFINITIONS",
    "FeastStore",
    "canonical_spec",
    "source_fingerprint",
    "spec_sha256",
]

DEFAULT_DEFINITIONS = "lockgate.pipelines.feature_repo.fraud:fraud_feature_objects"
"""Import path of the function returning the example's Feast objects."""

_ROW = "__lockgate_row__"
_DROP_KEYS = frozenset({"meta", "created_timestamp", "last_updated_timestamp"})


class FeastStore(dg.ConfigurableResource):
    """A local Feast feature store for lockgate pipelines.

    Attributes:
        repo_dir: Folder of the file registry (``registry.db``) and SQLite online store
            (``online_store.db``); created by :meth:`apply`.
        data_dir: Folder of the source data, passed to the definitions function.
        project: Feast project name.
        definitions: ``"module:function"`` returning the Feast objects for ``Path(data_dir)``.
    """

    repo_dir: str = Field(description="Folder of the Feast file registry and SQLite online store.")
    data_dir: str = Field(description="Folder of the source Parquet data.")
    project: str = Field(default="lockgate", description="Feast project name.")
    definitions: str = Field(
        default=DEFAULT_DEFINITIONS,
        description="'module:function' returning the Feast objects; called with Path(data_dir).",
    )

    # ---- config and objects

    @property
    def registry_path(self) -> Path:
        """The file registry."""
        return Path(self.repo_dir) / "registry.db"

    def repo_config(self) -> RepoConfig:
        """Builds the Feast config in code (local provider, file registry, SQLite, DuckDB)."""
        from feast import RepoConfig
        from feast.infra.offline_stores.duckdb import DuckDBOfflineStoreConfig
        from feast.infra.online_stores.sqlite import SqliteOnlineStoreConfig
        from feast.repo_config import RegistryConfig

        repo = Path(self.repo_dir).resolve()
        return RepoConfig(
            project=self.project,
            provider="local",
            registry=RegistryConfig(
                registry_type="file", path=str(repo / "registry.db"), cache_ttl_seconds=0
            ),
            online_store=SqliteOnlineStoreConfig(path=str(repo / "online_store.db")),
            offline_store=DuckDBOfflineStoreConfig(),
            entity_key_serialization_version=3,
            repo_path=repo,
        )

    def store(self) -> FeatureStore:
        """Opens the Feast store (a fresh instance, so it always sees the current registry)."""
        from feast import FeatureStore

        Path(self.repo_dir).mkdir(parents=True, exist_ok=True)
        return FeatureStore(config=self.repo_config())

    def definition_objects(self) -> list[Any]:
        """Imports the definitions function and returns its Feast objects.

        Raises:
            FeatureStoreError: The import path is malformed, cannot be imported, or the function
                fails.
        """
        func = _import_callable(self.definitions)
        try:
            return list(func(Path(self.data_dir)))
        except Exception as exc:
            raise FeatureStoreError(
                f"definitions {self.definitions!r} failed for data_dir {self.data_dir} "
                f"({type(exc).__name__}: {exc}): it must return the Feast objects. Fix: correct "
                f"the definitions function."
            ) from exc

    # ---- apply

    def apply(self) -> dict[str, Any]:
        """Makes the registry hold exactly the definitions (idempotent).

        Objects whose canonical spec already matches are left alone; when nothing differs the
        registry file is not written at all. Objects in the project but not in the definitions
        are deleted.

        Returns:
            JSON-able dict: ``project``, ``registry_path``, ``changed`` (bool), and lists of
            ``"kind:name"`` keys ``created``, ``updated``, ``deleted``, ``unchanged``.

        Raises:
            FeatureStoreError: The definitions cannot be loaded or Feast refuses them.
        """
        objects = self.definition_objects()
        store = self.store()
        desired = {_object_key(o): spec_sha256(o) for o in objects}
        current_objects = _registry_objects(store)
        current = {key: spec_sha256(o) for key, o in current_objects.items()}
        stale = [o for key, o in current_objects.items() if key not in desired]
        report = _diff(desired, current)
        if report["created"] or report["updated"] or report["deleted"]:
            try:
                store.apply(objects, objects_to_delete=stale, partial=not stale)
            except Exception as exc:
                raise FeatureStoreError(
                    f"Feast refused to apply {self.definitions!r} to project {self.project!r} "
                    f"in {self.repo_dir} ({type(exc).__name__}: {exc}): the definitions must "
                    f"be valid Feast objects. Fix: correct the definitions, then apply again."
                ) from exc
        changed = bool(report["created"] or report["updated"] or report["deleted"])
        return {
            "project": self.project,
            "registry_path": str(self.registry_path),
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
        try:
            with _quiet_ibis():
                job = store.get_historical_features(entity_df=frame, features=service)
                table = job.to_arrow()
        except Exception as exc:
            raise FeatureStoreError(
                f"Feast could not join feature service {feature_service!r} onto {len(frame)} "
                f"entity rows (repo {self.repo_dir}, data {self.data_dir}; "
                f"{type(exc).__name__}: {exc}): the sources must be readable Parquet with "
                f"microsecond UTC timestamps. Fix: check the source folders, then re-run apply."
            ) from exc
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
        views = {p.name: store.get_feature_view(p.name) for p in service.feature_view_projections}
        entities = {e: store.get_entity(e) for v in views.values() for e in v.entities}
        specs = {
            "feature_service": canonical_spec(service),
            "feature_views": {n: canonical_spec(v) for n, v in sorted(views.items())},
            "entities": {n: canonical_spec(e) for n, e in sorted(entities.items())},
        }
        return {
            "feature_service": feature_service,
            "registry": _sha256_json(specs),
            "feature_views": {n: spec_sha256(v) for n, v in sorted(views.items())},
            "sources": {n: source_fingerprint(_source_path(v)) for n, v in views.items()},
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
            with _quiet_ibis():
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


def _source_path(view: Any) -> str:
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
            f"e.g. {DEFAULT_DEFINITIONS!r}."
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
        "deleted": sorted(k for k in current if k not in desired),
        "unchanged": sorted(k for k in desired if current.get(k) == desired[k]),
    }


def _get_service(store: FeatureStore, name: str, owner: FeastStore) -> FeatureService:
    from feast.errors import FeatureServiceNotFoundException

    try:
        return store.get_feature_service(name)
    except FeatureServiceNotFoundException:
        known = sorted(s.name for s in store.list_feature_services())
        raise FeatureStoreError(
            f"feature service {name!r} does not exist in Feast project {owner.project!r} "
            f"(registry {owner.registry_path}); known services: {known or 'none'}. Fix: use one "
            f"of them, or add it to the definitions ({owner.definitions}) and run apply()."
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


def _service_join_keys(store: FeatureStore, service: Any) -> list[str]:
    """Join-key columns the entity rows need, in service order (after join-key mapping)."""
    keys: list[str] = []
    for projection in service.feature_view_projections:
        view = store.get_feature_view(projection.name)
        for col in view.entity_columns:
            name = projection.join_key_map.get(col.name, col.name)
            if name not in keys:
                keys.append(name)
    return keys


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
            out[f.name] = _feature_series(out[f.name], str(f.dtype))
    return out


def _feature_series(series: pd.Series, feast_type: str) -> pd.Series:
    if feast_type.startswith("Int"):
        return series.astype(pd.Int64Dtype())
    if feast_type.startswith("Float"):
        return series.astype("float64")
    if feast_type.startswith("String"):
        return series.astype(object).where(series.notna(), None)
    return series


def _utc_us(series: pd.Series, what: str) -> pd.Series:
    if not pd.api.types.is_datetime64_any_dtype(series):
        raise SchemaError(
            f"{what} has dtype {series.dtype}: it must be datetime64 (tz-aware, or naive "
            f"meaning UTC). Fix: convert it with pd.to_datetime(..., utc=True)."
        )
    if getattr(series.dt, "tz", None) is None:
        series = series.dt.tz_localize("UTC")
    return series.dt.tz_convert("UTC").astype("datetime64[us, UTC]")


@contextlib.contextmanager
def _quiet_ibis() -> Iterator[None]:
    """Hides ibis' DeprecationWarning about duckdb's fetch_arrow_table (noise on every query)."""
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", message=".*fetch_arrow_table", category=DeprecationWarning
        )
        yield


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
