"""A mergeable, subtractable sketch of real-valued predictions (regression outputs).

The gateway cannot bin regression outputs on fixed edges the way it bins probabilities (10 bins
over [0, 1]): their scale is the label's. It counts every finite value ``v`` of a one-value
output in the bin

    key(v) = floor(asinh(v * SCALE) / STEP)        (SCALE = 1000, STEP = 0.01)

``asinh`` is odd and monotone: linear near 0 (bins of width ``STEP / SCALE`` = 1e-5 there) and
logarithmic for ``|v| >> 1 / SCALE`` (each bin is about 1 % of ``|v|`` wide). So the sketch has a
relative resolution of ~1 % for any scale above 0.001, needs no configuration, and is a plain
``{key: count}`` map: two windows add, and a step's counts are the difference of two snapshots
(what the canary's baseline does). A distribution whose whole spread is under ~1 % of its
location falls into a few bins; PSI on it then sees little.

The canary compares a challenger with the champion on **decile bins of the champion's sketch**
(:func:`quantile_keys`, :func:`rebin`): the usual PSI construction (quantile bins of the
reference), at the sketch's resolution.

Example:
    >>> s = sketch([1.0, 1.0, 2.0, -3.0])
    >>> sorted(s.values())
    [1, 1, 2]
    >>> lower, upper = key_bounds(key(2.0))
    >>> lower <= 2.0 < upper
    True
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence

import numpy as np

__all__ = [
    "SCALE",
    "STEP",
    "add",
    "key",
    "key_bounds",
    "keys",
    "quantile_keys",
    "rebin",
    "sketch",
    "subtract",
]

SCALE = 1000.0
"""Values are multiplied by this before ``asinh`` (linear below ~1 / SCALE)."""
STEP = 0.01
"""Width of a bin on the ``asinh`` scale (about 1 % of ``|v|`` above 1 / SCALE)."""


def key(value: float) -> int:
    """The bin of one finite value."""
    return math.floor(math.asinh(value * SCALE) / STEP)


def keys(values: np.ndarray) -> np.ndarray:
    """The bins of an array of finite values (int64), equal to :func:`key` per value."""
    scaled = np.arcsinh(np.asarray(values, dtype=np.float64) * SCALE) / STEP
    return np.floor(scaled).astype(np.int64)


def key_bounds(k: int) -> tuple[float, float]:
    """The half-open value range ``[lower, upper)`` of bin ``k``."""
    return math.sinh(k * STEP) / SCALE, math.sinh((k + 1) * STEP) / SCALE


def sketch(values: Iterable[float]) -> dict[int, int]:
    """Counts per bin of the finite values (non-finite ones are left out)."""
    arr = np.asarray(list(values), dtype=np.float64)
    arr = arr[np.isfinite(arr)]
    found, counts = np.unique(keys(arr), return_counts=True)
    return dict(zip(found.tolist(), counts.tolist(), strict=True))


def add(total: dict[int, int], more: Mapping[int, int]) -> dict[int, int]:
    """``total`` with the counts of ``more`` added (in place; returned for chaining)."""
    for k, c in more.items():
        total[k] = total.get(k, 0) + c
    return total


def subtract(after: Mapping[int, int], before: Mapping[int, int]) -> dict[int, int] | None:
    """The counts added between two snapshots of one window, or None when ``after`` is not
    ``before`` plus something (a bin fell: the window was reset)."""
    out = dict(after)
    for k, c in before.items():
        left = out.get(k, 0) - c
        if left < 0:
            return None
        if left:
            out[k] = left
        else:
            out.pop(k, None)
    return out


def quantile_keys(reference: Mapping[int, int], bins: int = 10) -> list[int]:
    """Inner bin edges (sketch keys) at the ``bins``-quantiles of ``reference``.

    A key ``e`` in the result starts a new bin: bins are ``[.., e_0), [e_0, e_1), .., [e_m, ..)``
    in key order. Keys repeat when one sketch bin holds more than a quantile's share; repeats are
    dropped, so fewer bins can come back (one bin when the reference holds one key).

    Example:
        >>> quantile_keys({1: 50, 2: 50}, bins=2)
        [2]
    """
    if bins < 1:
        raise ValueError(f"bins={bins} must be at least 1")
    ordered = sorted((k, c) for k, c in reference.items() if c > 0)
    total = sum(c for _, c in ordered)
    if total == 0:
        return []
    edges: list[int] = []
    cumulative = 0
    targets = [total * i / bins for i in range(1, bins)]
    t = 0
    for i, (_k, c) in enumerate(ordered):
        cumulative += c
        while t < len(targets) and cumulative >= targets[t]:
            if i + 1 < len(ordered) and (not edges or edges[-1] != ordered[i + 1][0]):
                edges.append(ordered[i + 1][0])
            t += 1
    return edges


def rebin(counts: Mapping[int, int], edges: Sequence[int]) -> list[int]:
    """Counts of a sketch in the bins that ``edges`` (sorted inner keys) delimit: ``len(edges)
    + 1`` counts.

    Example:
        >>> rebin({0: 3, 5: 1, 9: 2}, [5])
        [3, 3]
    """
    out = [0] * (len(edges) + 1)
    if not counts:
        return out
    found = np.fromiter(counts.keys(), dtype=np.int64, count=len(counts))
    weights = np.fromiter(counts.values(), dtype=np.int64, count=len(counts))
    where = np.searchsorted(np.asarray(edges, dtype=np.int64), found, side="right")
    for i, c in enumerate(np.bincount(where, weights=weights, minlength=len(out)).tolist()):
        out[i] = int(c)
    return out
