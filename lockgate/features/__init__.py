"""Feature data: the Feast store a pipeline reads (:mod:`~lockgate.features.store`, a plain class
that the ``feast`` resource hands out) and the data-quality suite a snapshot must pass
(:mod:`~lockgate.features.validation`, Great Expectations)."""

from __future__ import annotations

import importlib
from typing import Any

# the public names, imported on first use: importing one module of the subpackage does not
# import its heavy neighbours (Feast, torch)
_EXPORTS = {
    "FeastStore": "lockgate.features.store",
    "run_suite": "lockgate.features.validation",
}

__all__ = ["FeastStore", "run_suite"]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
