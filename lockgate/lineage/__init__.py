"""Lineage: what locks a model version to its triad, and what rebuilds it.

- :mod:`~lockgate.lineage.hashing`: canonical JSON and sha256 of files, folders and frames.
- :mod:`~lockgate.lineage.project`: the team's code commit and dirty flag (git).
- :mod:`~lockgate.lineage.lock`: the lock record (commit, data hash, weights hash, params, files).
- :mod:`~lockgate.lineage.signing`: HMAC signing of lock records and of the audit head.
- :mod:`~lockgate.lineage.steps`: a model's life as plain functions (snapshot, train, evaluate).
- :mod:`~lockgate.lineage.reproduce`: ``lockgate reproduce``: rebuild a version, verify its bytes.
"""
