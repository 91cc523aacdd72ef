"""Point-in-time retrieval as one ASOF join per feature view: Feast's answer, without its range join.

Feast 0.67's DuckDB offline store joins a feature view onto the entity rows with an inner range
join (same join keys, ``ttl``-window on the event time) and only then keeps the newest row per
entity row. Every feature row inside the TTL window of an entity row is materialized first:
about 17 rows per label row in the fraud example, the largest memory of a training run.

:func:`asof_historical_features` asks DuckDB for the same rows with ``ASOF LEFT JOIN``: per
entity row and view, the newest feature row with the same join keys and
``timestamp <= event_timestamp`` (DuckDB sorts both sides once and streams; memory grows with
the rows, not with rows times the window), kept only when ``timestamp + ttl >= event_timestamp``.
Feast's tie-break between feature rows of one event time (the newest created timestamp) is done
before the join, per join keys and event time, with Feast's own ``deduplicate``. Everything
else is Feast's own code, so the answer is Feast's: the feature views and projections of the
service (``feast.utils``), the source read (``_read_data_source`` of the DuckDB store, on the same
ibis backend), the field mapping, the UTC casts, the TTL expression. Two feature rows with the
same join keys, event time and created timestamp are a tie Feast itself breaks arbitrarily; so
does this join.

Not supported, so :func:`asof_plan` returns the reason and the caller uses Feast's own
``get_historical_features``: an offline store other than ``duckdb``, on-demand feature views,
a batch source that is not a Parquet ``FileSource``, Feast's ``filter_by_created_timestamp``
and ``full_feature_names`` (lockgate uses neither), entity rows with a missing event time.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa
    from feast import FeatureService, FeatureStore

__all__ = [
    "AsofPlan",
    "AsofView",
    "asof_historical_features",
    "asof_plan",
    "entity_arrow",
    "feature_series",
    "finish_asof_frame",
]

_ENTITIES = "__lockgate_asof_entities_"
_TS = "__lockgate_asof_ts__"
_EXPIRE = "__lockgate_asof_expire__"


@dataclass(frozen=True)
class AsofView:
    """One feature view of the join: its name, join keys and the features it gives."""

    name: str
    join_key_map: dict[str, str]
    """Feature-table column -> entity column."""
    features: list[str]
    has_ttl: bool


@dataclass(frozen=True)
class AsofPlan:
    """The views of a feature service in service order, ready to join (see :func:`asof_plan`)."""

    views: list[tuple[AsofView, Any]]
    """Each view with its feature view object (the projection of the service applied)."""

    @property
    def features(self) -> list[str]:
        """The feature columns in the order Feast returns them."""
        return [f for view, _ in self.views for f in view.features]


def asof_plan(store: FeatureStore, service: FeatureService) -> AsofPlan | str:
    """The views of ``service`` as :func:`asof_historical_features` joins them, or why it cannot.

    Returns:
        An :class:`AsofPlan`, or a sentence naming what is not supported (the caller then
        uses Feast's ``get_historical_features``).
    """
    from feast import FeatureView, utils
    from feast.data_format import ParquetFormat
    from feast.infra.offline_stores.file_source import FileSource

    kind = getattr(store.config.offline_store, "type", "")
    if kind != "duckdb":
        return f"offline store {kind!r} is not duckdb"
    try:
        refs = utils._get_features(store.registry, store.project, service, allow_cache=True)
        all_views, all_odfvs = utils._get_feature_views_to_use(
            store.registry, store.project, service, allow_cache=True
        )
        grouped, odfvs = utils._group_feature_refs(refs, all_views, all_odfvs)
    except (AttributeError, TypeError) as exc:  # Feast's helpers moved: use Feast's retrieval
        return f"Feast's feature-view helpers are not as in feast 0.67 ({exc})"
    if odfvs or all_odfvs:
        return "the service has on-demand feature views"
    views: list[tuple[AsofView, Any]] = []
    for view, _ in grouped:
        source = getattr(view, "batch_source", None)
        if not isinstance(view, FeatureView) or type(source) is not FileSource:
            return f"feature view {view.name!r} has no plain FileSource batch source"
        fmt = source.file_format
        if not (
            isinstance(fmt, ParquetFormat) or (fmt is None and source.path.endswith(".parquet"))
        ):
            return f"feature view {view.name!r} reads {type(fmt).__name__}, not Parquet"
        prefix = view.projection.name_to_use()
        names = [r.split(":")[1] for r in refs if r.startswith(f"{prefix}:")]
        keys = view.projection.join_key_map or {e.name: e.name for e in view.entity_columns}
        views.append((AsofView(view.name, dict(keys), names, bool(view.ttl)), view))
    return AsofPlan(views)


def _feature_table(view: Any, spec: AsofView, repo_path: str) -> Any:
    """The view's source as Feast reads it, deduplicated per join keys and event time."""
    import ibis
    from feast.infra.offline_stores.duckdb import _read_data_source
    from feast.infra.offline_stores.ibis import deduplicate
    from ibis.expr import datatypes as dt

    source = view.batch_source
    table = _read_data_source(source, repo_path)
    for old_name, new_name in source.field_mapping.items():  # as Feast's read_fv renames
        if old_name in table.columns:
            table = table.rename({new_name: old_name})
    ts = source.timestamp_field
    created = source.created_timestamp_column or None
    utc = [ts, *([created] if created else [])]
    table = table.mutate(**{c: table[c].cast(dt.Timestamp(timezone="UTC")) for c in utc})
    if created:  # Feast's tie-break: of one event time, the newest created timestamp
        table = deduplicate(
            table=table,
            group_by_cols=[*spec.join_key_map, ts],
            event_timestamp_col=ts,
            created_timestamp_col=created,
        )
    columns: dict[str, Any] = {k: table[k] for k in spec.join_key_map}
    columns[_TS] = table[ts]
    if view.ttl:  # Feast's expression: event_expire_timestamp = timestamp + ttl
        columns[_EXPIRE] = table[ts] + ibis.literal(view.ttl)
    columns.update({f: table[f] for f in spec.features})
    return table.select(**columns)


def asof_historical_features(
    plan: AsofPlan,
    entities: pa.Table,
    *,
    repo_path: str,
    event_timestamp: str = "event_timestamp",
    row_column: str,
    batch_rows: int = 1 << 20,
) -> pa.Table:
    """Joins the plan's features onto entity rows; returns the features in entity-row order.

    Runs on ibis' default DuckDB backend, the one Feast's offline store uses (wrap the call
    in :func:`lockgate.features.query_engine.offline_query` to release its memory after).

    Args:
        plan: From :func:`asof_plan`.
        entities: The join keys of every view, ``event_timestamp`` (``timestamp[us, UTC]``,
            no nulls) and ``row_column`` (int64 holding 0..n-1, the result's order); other
            columns are not read.
        repo_path: The Feast repository folder (Feast resolves relative sources against it).
        event_timestamp: The entity rows' event time column.
        row_column: The column that orders the result (its value is the output row).
        batch_rows: Rows per Arrow batch fetched from DuckDB.

    Returns:
        The plan's features (Feast's column names and Arrow types; null beyond the TTL, for
        unknown join keys and for null keys), row ``i`` for the entity row whose
        ``row_column`` is ``i``. Views are joined one at a time, so DuckDB holds one view's
        join at once.

    Raises:
        FeatureStoreError: A view's join did not give one row per entity row.
    """
    import ibis
    import numpy as np
    import pyarrow as pa

    from lockgate.errors import FeatureStoreError

    con = ibis.get_backend().con
    name = f"{_ENTITIES}{uuid.uuid4().hex}"  # two joins of one process never share a name
    expected = np.arange(entities.num_rows)
    columns: dict[str, pa.ChunkedArray] = {}
    for spec, view in plan.views:  # one view at a time: DuckDB holds one view's join only
        con.register(
            name, entities.select([*spec.join_key_map.values(), event_timestamp, row_column])
        )
        try:
            table = _run(
                con,
                _view_query(spec, view, name, repo_path, event_timestamp, row_column),
                batch_rows,
            )
        finally:
            con.unregister(name)
        if not np.array_equal(table.column(row_column).to_numpy(), expected):
            raise FeatureStoreError(
                f"the ASOF join of feature view {spec.name!r} returned {table.num_rows} rows "
                f"for {entities.num_rows} entity rows, not one per row ordered by {row_column!r} "
                f"(which must hold 0..n-1): a bug in lockgate's join. Fix: report it; meanwhile "
                f"use Feast's retrieval (a Feast offline store other than duckdb)."
            )
        columns.update({f: table.column(f) for f in spec.features})
        del table
    return pa.table(columns)


def _view_query(
    spec: AsofView, view: Any, entities: str, repo_path: str, event_timestamp: str, row_column: str
) -> str:
    import ibis

    sql = ibis.to_sql(_feature_table(view, spec, repo_path), dialect="duckdb")
    on = [f'e."{ent}" = f."{col}"' for col, ent in spec.join_key_map.items()]
    on.append(f'e."{event_timestamp}" >= f."{_TS}"')
    selects = [f'e."{row_column}"']
    for feature in spec.features:
        value = f'f."{feature}"'
        if spec.has_ttl:  # Feast's predicate: event_expire_timestamp >= event_timestamp
            value = f'CASE WHEN f."{_EXPIRE}" >= e."{event_timestamp}" THEN {value} END'
        selects.append(f'{value} AS "{feature}"')
    return (
        f"SELECT {', '.join(selects)} FROM {entities} AS e "
        f'ASOF LEFT JOIN ({sql}) AS f ON {" AND ".join(on)} ORDER BY e."{row_column}"'
    )


def _run(con: Any, query: str, batch_rows: int) -> pa.Table:
    import pyarrow as pa

    reader = con.sql(query).to_arrow_reader(batch_rows)
    batches = list(reader)
    schema = reader.schema
    del reader
    return pa.Table.from_batches(batches, schema=schema)


def entity_arrow(frame: Any, columns: Sequence[str]) -> pa.Table:
    """The ``columns`` of a pandas entity frame as an Arrow table (no index)."""
    import pyarrow as pa

    return pa.Table.from_pandas(frame[list(columns)], preserve_index=False)


def finish_asof_frame(
    frame: pd.DataFrame,
    features: pa.Table,
    entity_columns: Sequence[str],
    service: Any,
) -> pd.DataFrame:
    """The ``entity_columns`` of ``frame`` with the features of :func:`asof_historical_features`.

    Feature dtypes as :meth:`lockgate.features.store.FeastStore.historical_features` promises
    (:func:`feature_series`).
    """
    import pandas as pd
    import pyarrow as pa

    names = [f.name for p in service.feature_view_projections for f in p.features]
    columns = features.select(names)
    del features
    values = columns.to_pandas(types_mapper={pa.int64(): pd.Int64Dtype()}.get)
    del columns
    out = pd.concat([frame[list(entity_columns)], values], axis=1)
    for p in service.feature_view_projections:
        for f in p.features:
            out[f.name] = feature_series(out[f.name], str(f.dtype))
    return out


def feature_series(series: pd.Series, feast_type: str) -> pd.Series:
    """A feature column in the dtype of its Feast type: ``Int64``, ``float64`` or ``object``."""
    import pandas as pd

    if feast_type.startswith("Int"):
        return series.astype(pd.Int64Dtype())
    if feast_type.startswith("Float"):
        return series.astype("float64")
    if feast_type.startswith("String"):
        return series.astype(object).where(series.notna(), None)
    return series
