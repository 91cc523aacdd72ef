"""Lineage: what locks a model version to its triad, and what rebuilds it.

- :mod:`~lockgate.lineage.hashing`: canonical JSON and sha256 of files, folders and frames.
- :mod:`~lockgate.lineage.project`: the team's code commit and dirty flag (git).
- :mod:`~lockgate.lineage.lock`: the lock record (commit, data hash, weights hash, params, files).
- :mod:`~lockgate.lineage.signing`: HMAC signing of lock records and of the audit head.
- :mod:`~lockgate.lineage.registry`: the content-addressed artifact registry (snapshots, versions,
  reports, aliases), a plain class that the ``artifacts`` resource hands out.
- :mod:`~lockgate.lineage.steps`: a model's life as plain functions (snapshot, train, evaluate).
- :mod:`~lockgate.lineage.reproduce`: ``lockgate reproduce``: rebuild a version, verify its bytes.
"""

from __future__ import annotations

from typing import Any

from lockgate._util.lazy_exports import lazy_attribute

# the public names, imported on first use: importing one module of the subpackage does not
# import its heavy neighbours (Feast, torch)
_EXPORTS = {
    "ArtifactRegistry": "lockgate.lineage.registry",
    "LocalArtifactRegistry": "lockgate.lineage.registry",
    "build_lock_record": "lockgate.lineage.lock",
    "verify_lock_record": "lockgate.lineage.lock",
    "ReproductionReport": "lockgate.lineage.reproduce",
    "reproduce": "lockgate.lineage.reproduce",
}

__all__ = [
    "ArtifactRegistry",
    "LocalArtifactRegistry",
    "ReproductionReport",
    "build_lock_record",
    "reproduce",
    "verify_lock_record",
]


def __getattr__(name: str) -> Any:
    return lazy_attribute(__name__, _EXPORTS, name)


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
