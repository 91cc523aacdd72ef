"""The JSON references the pipeline's Dagster assets store and pass to each other, as TypedDicts.

Each ``*Ref`` names the keys of one asset's stored output (written by the ``lockgate_io`` IO
manager as JSON): ``feature_snapshot`` -> :class:`SnapshotRef`, ``model_weights`` ->
:class:`VersionRef`, ``evaluation_report`` -> :class:`EvaluationRef` (ungated) or
:class:`GatedEvaluationRef` (behind a gate), ``gold_set`` -> :class:`GoldSetRef`, ``champion``
-> :class:`ChampionRef`. They are annotations only (plain dicts at runtime). Dagster checks an
asset's annotated input and output types with ``isinstance``, which a TypedDict refuses, so the
asset functions keep ``dict[str, Any]`` and the helpers that read a reference use these types.
"""

from __future__ import annotations

from typing import TypedDict

__all__ = [
    "ChampionRef",
    "EvaluationRef",
    "GatedEvaluationRef",
    "GoldSetRef",
    "SnapshotRef",
    "VersionRef",
]


class SnapshotRef(TypedDict):
    """``feature_snapshot``: a stored point-in-time frame (``lineage.steps.SnapshotBuild``)."""

    frame_sha256: str
    file_sha256: str
    rows: int
    features: list[str]
    label: str
    timestamp_column: str
    entity_columns: list[str]
    feature_service: str
    created: bool
    uri: str


class VersionRef(TypedDict):
    """``model_weights``: a stored model version and its triad."""

    pipeline: str
    version: str
    weights_sha256: str
    snapshot_sha256: str
    code_commit: str


class EvaluationRef(TypedDict):
    """``evaluation_report`` without a gate: held-out metrics of a model version."""

    pipeline: str
    version: str
    metrics: dict[str, float]


class GatedEvaluationRef(TypedDict):
    """``evaluation_report`` behind a gate: the gold-set report the gate verdicts refer to."""

    pipeline: str
    version: str
    champion: str | None
    report_id: str
    gold_sha256: str


class GoldSetRef(TypedDict):
    """``gold_set``: the content-addressed gold rows of a snapshot."""

    gold_sha256: str
    rows: int
    positives: int | None


class ChampionRef(TypedDict):
    """``champion`` (gate without serving): the champion alias after the run."""

    pipeline: str
    champion: str
    previous: str | None
