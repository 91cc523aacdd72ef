"""The views behind a Feast feature service: feature views, stream feature views and
on-demand feature views, with the entities and join keys their projections map.

Feast's ``FeatureStore.get_feature_view`` knows batch feature views only; a service that also
names an on-demand view (or reads a stream view) needs each kind looked up, and an on-demand
view's entities are those of its source views.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from lockgate.errors import FeatureStoreError

if TYPE_CHECKING:
    from feast import FeatureStore

__all__ = ["entity_projections", "service_views"]


def service_views(store: FeatureStore, service: Any) -> dict[str, Any]:
    """The views a feature service reads, by name: each projection's feature view (batch or
    stream) or on-demand view, and an on-demand view's source views too (their entities and
    data are what it transforms)."""
    views: dict[str, Any] = {}
    for projection in service.feature_view_projections:
        view = _view_named(store, projection.name)
        views.setdefault(projection.name, view)
        for source in getattr(view, "source_feature_view_projections", {}).values():
            views.setdefault(source.name, _view_named(store, source.name))
    return views


def entity_projections(store: FeatureStore, service: Any) -> list[tuple[Any, dict[str, str]]]:
    """``(view, join_key_map)`` of every view with entities behind a feature service's
    projections, in service order: a feature view itself; for an on-demand view, its source
    views with their own projections' join-key maps."""
    out: list[tuple[Any, dict[str, str]]] = []
    for projection in service.feature_view_projections:
        view = _view_named(store, projection.name)
        sources = getattr(view, "source_feature_view_projections", None)
        if sources is None:
            out.append((view, dict(projection.join_key_map)))
            continue
        for source in sources.values():
            out.append((_view_named(store, source.name), dict(source.join_key_map)))
    return out


def _view_named(store: FeatureStore, name: str) -> Any:
    """The feature view, stream feature view or on-demand feature view called ``name``."""
    from feast.errors import FeatureViewNotFoundException

    for method in ("get_feature_view", "get_stream_feature_view", "get_on_demand_feature_view"):
        get = getattr(store, method, None)  # looked up one at a time: the first usually answers
        if get is None:
            continue
        try:
            return get(name)
        except FeatureViewNotFoundException:
            continue
    raise FeatureStoreError(
        f"feature view {name!r} is named by a feature service but is not in the registry of "
        f"project {store.project!r}; fix: apply the feature repository again"
    )


def _service_join_keys(store: FeatureStore, service: Any) -> list[str]:
    """Join-key columns the entity rows need, in service order (after join-key mapping)."""
    keys: list[str] = []
    for view, join_key_map in entity_projections(store, service):
        for col in view.entity_columns:
            name = join_key_map.get(col.name, col.name)
            if name not in keys:
                keys.append(name)
    return keys
