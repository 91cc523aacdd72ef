"""Model versions for the serving benchmarks: a small fraud-like frame and a LightGBM version
stored with a passing gate verdict (only gated versions serve), without Dagster.

Imported by ``bench_serve_recovery.py`` and ``bench_soak.py`` (run as scripts, this folder is
first on ``sys.path``) and, as ``benchmarks._versions``, by ``tests/integration/test_canary.py``.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pandas as pd

FEATURES = ["amount", "hour", "device"]


def example_frame(n: int = 4000, seed: int = 3) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    amount = rng.lognormal(3, 1, n)
    hour = rng.integers(0, 24, n)
    device = rng.choice(["ios", "web", "pos"], n)
    logit = -4 + 0.02 * amount + (hour < 5) * 1.5 + (device == "web")
    return pd.DataFrame(
        {
            "transaction_id": [f"t{i}" for i in range(n)],
            "event_timestamp": pd.date_range("2024-01-01", periods=n, freq="min", tz="UTC"),
            "amount": amount,
            "hour": hour.astype("int64"),
            "device": device,
            "is_fraud": (rng.random(n) < 1 / (1 + np.exp(-logit))).astype("int64"),
        }
    )


def train_and_store(
    registry: Any, frame: pd.DataFrame, seed: int, *, pipeline: str, features: list[str] = FEATURES
) -> tuple[str, dict[str, Any]]:
    """Stores ``frame`` as a snapshot and a LightGBM version trained on it (no gate verdict);
    returns the version and its lock record."""
    from lockgate.lineage.hashing import frame_sha256
    from lockgate.lineage.steps import snapshot_parquet_bytes, train_version
    from lockgate.training import LightGBMTrainer

    sort_by = ["event_timestamp", "transaction_id"]
    sha = frame_sha256(frame, sort_by=sort_by)
    registry.put_snapshot(
        sha,
        snapshot_parquet_bytes(frame),
        {
            "rows": len(frame),
            "sort_by": sort_by,
            "features": features,
            "schema": {c: str(t) for c, t in frame.dtypes.items()},
        },
    )
    lock, files, _ = train_version(
        pipeline=pipeline,
        snapshot={"frame_sha256": sha},
        frame=frame,
        trainer_config=LightGBMTrainer(seed=seed, num_boost_round=30).config(),
        features=features,
        label="is_fraud",
        timestamp_column="event_timestamp",
        holdout_fraction=0.2,
    )
    version = str(lock["version"])
    registry.put_model_version(pipeline, version, files, lock)
    return version, lock


def store_version(registry: Any, frame: pd.DataFrame, seed: int, *, pipeline: str) -> str:
    """A LightGBM version with a passing gate verdict (only gated versions serve)."""
    version, lock = train_and_store(registry, frame, seed, pipeline=pipeline)
    registry.put_verdict(
        pipeline,
        version,
        {
            "pipeline": pipeline,
            "version": version,
            "lock_record_sha256": lock["record_sha256"],
            "report_id": f"{pipeline}-{version}",
            "passed": True,
            "rules": [],
            "evaluated_at": "2026-12-02T00:00:00+00:00",
            "run_id": pipeline,
        },
    )
    return version


class World(NamedTuple):
    """A fresh lockgate home in a temporary folder with a champion and a challenger."""

    work: Path  # the temporary folder
    home: Path  # the lockgate home in it
    env: Any  # lockgate.Environment.local(home)
    registry: Any  # its LocalArtifactRegistry
    audit: Any  # its AuditTrail
    frame: pd.DataFrame  # the example frame both versions were trained on
    champion: str  # seed 1, given the ``champion`` alias
    challenger: str  # seed 2


def champion_and_challenger(prefix: str, pipeline: str) -> World:
    """A new home under a temporary folder named ``prefix...`` and two versions of ``pipeline``
    trained on the example frame: the champion (seed 1, given the alias) and a challenger."""
    from lockgate import Environment
    from lockgate.lineage.registry import LocalArtifactRegistry
    from lockgate.resources.audit import AuditTrail

    work = Path(tempfile.mkdtemp(prefix=prefix))
    home = work / "home"
    env = Environment.local(home)
    registry = LocalArtifactRegistry(root=str(env.artifacts_dir))
    frame = example_frame()
    champion = store_version(registry, frame, seed=1, pipeline=pipeline)
    challenger = store_version(registry, frame, seed=2, pipeline=pipeline)
    registry.move_alias(pipeline, "champion", champion, actor="bench", reason="first model")
    audit = AuditTrail(path=str(env.audit_path))
    return World(work, home, env, registry, audit, frame, champion, challenger)
