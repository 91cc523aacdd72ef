"""Lazy package exports: a package's public names, imported from their modules on first use.

A subpackage ``__init__`` maps each public name to the module that defines it and answers its
module ``__getattr__`` with :func:`lazy_attribute`, so importing one module of the subpackage
does not import its heavy neighbours (Feast, torch).
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any

__all__ = ["lazy_attribute"]


def lazy_attribute(package: str, exports: Mapping[str, str], name: str) -> Any:
    """``name`` imported from its module in ``exports``; AttributeError for any other name."""
    if name in exports:
        return getattr(importlib.import_module(exports[name]), name)
    raise AttributeError(f"module {package!r} has no attribute {name!r}")
