"""Which versions may get live traffic: :func:`serving_refusal` says why a version may not serve
(no passing gate verdict, an alias moved by hand, an unaudited gate override).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import Any

__all__ = ["OVERRIDE_MARK", "serving_refusal"]


OVERRIDE_MARK = "[gate overridden]"
"""Suffix ``lockgate promote --override-gate`` gives the reason of its alias history entry."""


def serving_refusal(
    pipeline: str,
    version: str,
    *,
    verdicts: Sequence[Mapping[str, Any]],
    history: Sequence[Mapping[str, Any]] | None = None,
    alias: str = "champion",
    audited_overrides: Collection[str] | None = None,
) -> str | None:
    """Why ``version`` may not get live traffic as ``alias`` of ``pipeline`` (None: it may).

    The controller serves a version only when

    1. (with ``history``) the newest move of ``alias`` in the registry's alias history points at
       it: an alias value without its history entry was written by hand, and
    2. it has a passing gate verdict, or that history entry is an audited gate override
       (``lockgate promote --override-gate``: its reason ends with :data:`OVERRIDE_MARK`).

    Args:
        pipeline: the pipeline.
        version: the version the alias (or a canary state) names.
        verdicts: every gate verdict on ``version`` (``ArtifactRegistry.verdicts``).
        history: the alias history (``ArtifactRegistry.aliases(pipeline)["history"]``); None
            skips rule 1 (a canary challenger is checked by its verdicts alone).
        alias: the alias checked against ``history``.
        audited_overrides: the versions whose override promotion is in the audit log (the
            hash-chained log, whose head is signed: an alias history edited by hand cannot add
            one); None accepts an override marker in the history alone.

    Example:
        >>> moves = [{"alias": "champion", "from": None, "to": "v1", "reason": "first"}]
        >>> serving_refusal("fraud", "v1", verdicts=[{"passed": True}], history=moves) is None
        True
        >>> print(serving_refusal("fraud", "v2", verdicts=[{"passed": True}], history=moves))
        ... # doctest: +ELLIPSIS
        fraud:champion names v2 but the newest champion move in the alias history is to 'v1'...
    """
    problems: list[str] = []
    entry: Mapping[str, Any] | None = None
    if history is not None:
        moves = [h for h in history if h.get("alias") == alias]
        entry = moves[-1] if moves else None
        last = entry.get("to") if entry is not None else None
        if last != version:
            entry = None  # an override on another version's move does not count
            problems.append(
                f"{pipeline}:{alias} names {version} but the newest {alias} move in the alias "
                f"history is to {last!r}: the alias file was written without moving the alias "
                f"(a hand edit); rule: only versions moved there with a history entry serve; "
                f"fix: `lockgate promote {pipeline} {version} --reason ...` (or restore the "
                "alias file)"
            )
    overridden = entry is not None and str(entry.get("reason", "")).endswith(OVERRIDE_MARK)
    passed = any(v.get("passed") is True for v in verdicts)
    unaudited = audited_overrides is not None and version not in audited_overrides
    if overridden and unaudited and not passed:
        overridden = False
        problems.append(
            f"the alias history says {version} was promoted with --override-gate, but the audit "
            "log has no such promotion: an override is honoured only when `lockgate promote "
            "--override-gate` recorded it there"
        )
    if not overridden and not passed:
        if verdicts:
            rules = verdicts[-1].get("rules", [])
            failed = [str(r.get("rule")) for r in rules if not r.get("passed")]
            why = f"its gate FAILED ({', '.join(failed) or 'no rule passed'})"
        else:
            why = "it has no gate verdict at all"
        problems.insert(  # the gate first: it is what the rule protects
            0,
            f"{pipeline} {version} has no passing gate verdict: {why}; rule: only versions "
            f"whose gate passed get live traffic; fix: retrain and pass the gate, or override "
            f"it on record with `lockgate promote {pipeline} {version} --override-gate "
            "--reason ...`",
        )
    return "; also ".join(problems) or None
