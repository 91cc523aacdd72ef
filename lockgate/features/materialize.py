"""Incremental materialization of a feature service's views into Feast's online store.

:func:`materialize_incremental` runs Feast's own ``materialize_incremental`` for the feature
views of one feature service (each view resumes where its last materialization ended; a view
never materialized starts ``ttl`` before now, as Feast starts it) and reports what happened per
view: the interval Feast recorded in the registry (the interval the feature-change sensor's
fingerprint reads) and, for file sources, the source rows in that interval and the entities
they update (the rows written to the online store).

Two Feast traps are refused or named rather than hidden: an ``end`` in the future would make
every later incremental run a no-op until the clock catches up (refused), and rows arriving
late with event timestamps before the previous end are never loaded by an incremental run (the
result says so; an explicit window, ``FeastStore.materialize(end, start=...)``, reloads them).
"""

from __future__ import annotations

import atexit
import datetime as dt
import threading
import warnings
from typing import TYPE_CHECKING, Any

from lockgate.errors import FeatureStoreError

if TYPE_CHECKING:
    from lockgate.features.store import FeastStore

__all__ = ["FUTURE_SLACK", "materialize_incremental"]

FUTURE_SLACK = dt.timedelta(minutes=5)
"""How far past the clock an ``end`` may lie (clock skew between machines)."""

_EXIT_HOOK = threading.Event()


def _utc(moment: dt.datetime) -> dt.datetime:
    return moment.replace(tzinfo=dt.UTC) if moment.tzinfo is None else moment.astimezone(dt.UTC)


def materialize_incremental(
    feast: FeastStore,
    feature_service: str,
    *,
    end: dt.datetime | None = None,
    now: dt.datetime | None = None,
) -> dict[str, Any]:
    """Runs Feast's ``materialize_incremental`` up to ``end`` for a feature service's views.

    Args:
        feast: The pipeline's Feast store.
        feature_service: The service whose feature views are materialized.
        end: End of the load (tz-aware, or naive meaning UTC); default: now.
        now: The clock (tests); default: the current time.

    Returns:
        JSON-able dict: ``feature_service``, ``end`` (ISO), ``online_store`` (its type),
        ``views`` ({view: {``start``, ``end`` of the interval Feast recorded, ``source_rows``
        and ``entities`` in it, None for a source that is not a file}}), ``rows`` (entities
        written, summed over the views with file sources) and ``feature_views`` (names).

    Raises:
        FeatureStoreError: ``end`` lies in the future, the service does not exist, or Feast
            failed (the message names the views and the interval).
    """
    clock = _utc(now) if now is not None else dt.datetime.now(dt.UTC)
    stop = _utc(end) if end is not None else clock
    if stop > clock + FUTURE_SLACK:
        raise FeatureStoreError(
            f"materialize end {stop.isoformat()} lies after now ({clock.isoformat()}); rule: an "
            "incremental load ends at or before the present, else every later incremental run "
            "resumes after it and loads nothing until the clock catches up; fix: leave end unset "
            "(now) or pass a past time"
        )
    service = feast.feature_service(feature_service)  # names the known services
    names = list(dict.fromkeys(p.name for p in service.feature_view_projections))
    store = feast.store()
    if not _EXIT_HOOK.is_set():  # the offline store's DuckDB, closed before the interpreter
        from lockgate.features.store import close_query_engines

        _EXIT_HOOK.set()
        atexit.register(close_query_engines)
    try:
        with warnings.catch_warnings(), feast.in_repo():
            warnings.filterwarnings(
                "ignore", message=".*fetch_arrow_table", category=DeprecationWarning
            )
            store.materialize_incremental(end_date=stop, feature_views=names)
    except Exception as exc:
        raise FeatureStoreError(
            f"Feast could not materialize {names} of feature service {feature_service!r} "
            f"incrementally up to {stop.isoformat()} (repo {feast.repo_dir}; "
            f"{type(exc).__name__}: {exc}); rule: the views exist with a TTL, their sources are "
            "readable and the online store is reachable; fix: apply the definitions, check the "
            "sources and the online store"
        ) from exc
    fresh = feast.store()
    views: dict[str, Any] = {}
    total = 0
    for name in names:
        view = fresh.get_feature_view(name)
        intervals = list(view.materialization_intervals)
        interval = max(intervals, key=lambda i: _utc(i[1])) if intervals else None
        entry: dict[str, Any] = {"start": None, "end": None, "source_rows": None, "entities": None}
        if interval is not None:
            start, finish = _utc(interval[0]), _utc(interval[1])
            entry["start"], entry["end"] = start.isoformat(), finish.isoformat()
            counted = _count_rows(feast, view, start, finish)
            if counted is not None:
                entry["source_rows"], entry["entities"] = counted
                total += counted[1]
        views[name] = entry
    online = getattr(store.config, "online_store", None)
    return {
        "feature_service": feature_service,
        "end": stop.isoformat(),
        "online_store": str(getattr(online, "type", None) or type(online).__name__),
        "feature_views": names,
        "views": views,
        "rows": total,
    }


def _count_rows(
    feast: FeastStore, view: Any, start: dt.datetime, end: dt.datetime
) -> tuple[int, int] | None:
    """Source rows of a file-backed view with ``start <= timestamp <= end`` and their entities."""
    import pyarrow as pa
    import pyarrow.dataset as ds

    source = view.batch_source
    path = getattr(source, "path", None)
    field = getattr(source, "timestamp_field", None)
    if not isinstance(path, str) or not path or not field:
        return None
    keys = [c.name for c in view.entity_columns]
    try:
        data = ds.dataset(feast.source_path(path), format="parquet")
        kind = data.schema.field(field).type
        lo = pa.scalar(start, type=pa.timestamp("us", tz="UTC")).cast(kind)
        hi = pa.scalar(end, type=pa.timestamp("us", tz="UTC")).cast(kind)
        table = data.to_table(
            columns=keys, filter=(ds.field(field) >= lo) & (ds.field(field) <= hi)
        )
    except (OSError, KeyError, pa.ArrowException):
        return None  # not a local Parquet source: Feast read it, lockgate does not count it
    entities = table.group_by(keys).aggregate([]).num_rows if table.num_rows else 0
    return table.num_rows, entities
