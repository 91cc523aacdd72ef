"""Durations as people write them: ``"6h"``, ``"1h30m"``, ``"250ms"`` to seconds, and back.

:func:`parse_duration` reads the ``hold_seconds`` / ``cooldown`` style strings of the canary and
retrain policies; :func:`format_duration` writes seconds as the two largest units for reasons
shown to people (``"2h 13m"``).
"""

from __future__ import annotations

import math
import re

__all__ = ["format_duration", "parse_duration"]

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_DURATION = re.compile(r"(?:\d+(?:\.\d+)?(?:ms|s|m|h|d))+")
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")


def parse_duration(value: str) -> float:
    """Seconds in ``"6h"``, ``"30s"``, ``"10m"``, ``"1h30m"``, ``"1.5d"``, ``"250ms"``, ``"90"``."""
    text = value.strip().lower().replace(" ", "")
    try:
        return float(text) if text and not text[-1].isalpha() else _sum_units(text)
    except ValueError:
        raise ValueError(
            f"hold_seconds {value!r} is not a duration; use seconds (21600) or a number with a "
            "unit: ms, s, m, h, d, e.g. '6h', '30s', '10m' or '1h30m'"
        ) from None


def _sum_units(text: str) -> float:
    if not _DURATION.fullmatch(text):
        raise ValueError(text)
    return sum(float(n) * _UNITS[unit] for n, unit in _DURATION_PART.findall(text))


def format_duration(seconds: float) -> str:
    """Two largest units, e.g. ``"2h 13m"``, ``"6h"``, ``"45s"``."""
    total = max(0, math.ceil(seconds))
    parts: list[str] = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        count, total = divmod(total, size)
        if count or (parts and len(parts) < 2):
            parts.append(f"{count}{unit}")
        if len(parts) == 2:
            break
    while len(parts) > 1 and parts[-1].startswith("0"):
        parts.pop()
    return " ".join(parts) or "0s"
