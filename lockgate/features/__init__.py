"""Feature data: the Feast store a pipeline reads (:mod:`~lockgate.features.store`, a plain class
that the ``feast`` resource hands out; its point-in-time join of DuckDB stores is one ASOF join
per view, :mod:`~lockgate.features.asof_join`) and the data-quality suite a snapshot must pass
(:mod:`~lockgate.features.validation`, Great Expectations)."""

from __future__ import annotations

from typing import Any

from lockgate._util.lazy_exports import lazy_attribute

# the public names, imported on first use: importing one module of the subpackage does not
# import its heavy neighbours (Feast, torch)
_EXPORTS = {
    "FeastStore": "lockgate.features.store",
    "run_suite": "lockgate.features.validation",
}

__all__ = ["FeastStore", "run_suite"]


def __getattr__(name: str) -> Any:
    return lazy_attribute(__name__, _EXPORTS, name)


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
