"""``lockgate init``: scaffold a working project of the user's own, as ``feast init`` does for Feast.

The project is the unit lockgate works on: its own ``pyproject.toml`` (lockgate installed like
any dependency), its own Feast repository (``feature_repo/feature_store.yaml``), its own
pipelines module that builds the Dagster ``Definitions``, and a ``workspace.yaml`` for
``dagster dev``. A tiny data generator fills the Feast source and the labels with synthetic
customer-churn rows, so the project trains before any real data is wired in; replace it with
your own tables (the README written into the project says how).

Layout of ``lockgate init DIR`` (package name ``NAME``, default the folder's name)::

    DIR/pyproject.toml             lockgate as a dependency; [tool.dagster] names the module
    DIR/workspace.yaml             `dagster dev -w workspace.yaml` loads NAME.definitions
    DIR/README.md                  the next commands
    DIR/feature_repo/feature_store.yaml   Feast: file registry, SQLite online, DuckDB offline
    DIR/feature_repo/features.py   entity, source, feature view, feature service NAME_v1
    DIR/NAME/pipelines.py          the ModelPipeline spec
    DIR/NAME/definitions.py        Definitions for Dagster
    DIR/NAME/generate_data.py      synthetic rows: feature_repo/data/*.parquet, data/labels.parquet
                                   (labels for binary, regression and multiclass models)
"""

from __future__ import annotations

import keyword
import re
from pathlib import Path

from lockgate.errors import SpecError

__all__ = ["init_project"]

_NAME = re.compile(r"^[a-z][a-z0-9_]{0,40}$")

_PYPROJECT = """\
[build-system]
requires = ["setuptools>=68"]
build-backend = "setuptools.build_meta"

[project]
name = "{name}"
version = "0.1.0"
requires-python = ">=3.11"
dependencies = ["lockgate"]

[tool.setuptools]
packages = ["{name}"]

[tool.dagster]
module_name = "{name}.definitions"
code_location_name = "{name}"
"""

_WORKSPACE = """\
load_from:
  - python_module:
      module_name: {name}.definitions
      location_name: {name}
"""

_GITIGNORE = """\
data/
feature_repo/data/
.lockgate/
__pycache__/
"""

_FEATURE_STORE_YAML = """\
# Feast reads this file; lockgate uses it as Feast does (relative paths: this folder).
project: {name}
provider: local
registry:
  registry_type: file
  path: data/registry.db
  cache_ttl_seconds: 0
online_store:
  type: sqlite
  path: data/online_store.db
offline_store:
  type: duckdb
entity_key_serialization_version: 3
"""

_FEATURES = '''\
"""Feast definitions of {name}: `feast apply` in this folder registers them."""

from datetime import timedelta

from feast import Entity, FeatureService, FeatureView, Field, FileSource, ValueType
from feast.types import Float64, Int64, String

customer = Entity(name="customer", join_keys=["customer_id"], value_type=ValueType.INT64)

customer_source = FileSource(
    name="customer_activity_source",
    path="data/customer_activity.parquet",  # relative to this folder, as Feast resolves it
    timestamp_field="event_timestamp",
)

customer_activity = FeatureView(
    name="customer_activity",
    entities=[customer],
    ttl=timedelta(days=30),
    schema=[
        Field(name="tenure_months", dtype=Int64),
        Field(name="monthly_spend", dtype=Float64),
        Field(name="support_calls_30d", dtype=Int64),
        Field(name="plan", dtype=String),
    ],
    source=customer_source,
)

{name}_v1 = FeatureService(name="{name}_v1", features=[customer_activity])
'''

_PIPELINES = '''\
"""The model pipelines of {name}."""

from lockgate import (
    DataValidation,
    Gate,
    GoldSet,
    LabelSource,
    LightGBMTrainer,
    ModelPipeline,
    TritonTarget,
)

{name} = ModelPipeline(
    name="{name}",
    feature_repo="feature_repo",  # the folder with feature_store.yaml, relative to the project
    feature_service="{name}_v1",  # the Feast feature service is the model's input contract
    label="churned",
    labels=LabelSource(path="data/labels.parquet", entity_columns=("customer_id",)),
    trainer=LightGBMTrainer(seed=7, num_boost_round=100),
    validation=DataValidation(min_rows=500, label_rate=(0.01, 0.9)),
    gate=Gate(
        gold=GoldSet(key="customer_id", fraction=0.2),
        absolute={{"roc_auc": 0.6}},
        min_gold_rows=100,
        min_gold_positives=10,
    ),
    serving=TritonTarget(device="cpu", max_batch_size=256),
)

PIPELINES = [{name}]
'''

_DEFINITIONS = '''\
"""The code location Dagster loads (`dagster dev -w workspace.yaml`)."""

import dagster as dg

from lockgate import build_definitions

from {name}.pipelines import PIPELINES


@dg.definitions
def defs() -> dg.Definitions:
    """Built when Dagster loads the code location."""
    return build_definitions(PIPELINES)
'''

_GENERATE = '''\
"""Synthetic churn data: Feast source rows and labels. Replace with your own tables.

Run from the project folder: `python -m {name}.generate_data [--days N]`. The labels file holds
one label per task, each following the features: `churned` (binary), `spend_next` (next
month's spend, regression) and `segment` (`loyal`, `steady` or `at_risk`, multiclass). The same
seed with more days writes the same first days and appends the new ones: new data arriving.
"""

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

PROJECT = Path(__file__).resolve().parent.parent


def generate(customers: int = 3000, days: int = 20, seed: int = 0) -> None:
    """Writes feature_repo/data/customer_activity.parquet and data/labels.parquet."""
    rng = np.random.default_rng(seed)
    noise = np.random.default_rng([seed, 1])  # the regression and multiclass labels' noise
    start = pd.Timestamp("2026-01-01", tz="UTC")
    ids = np.arange(customers, dtype=np.int64)
    tenure = rng.integers(1, 72, customers)
    plans = rng.choice(["basic", "plus", "pro"], customers, p=[0.5, 0.3, 0.2])
    rows, labels = [], []
    for day in range(days):
        ts = start + pd.Timedelta(days=day)
        spend = np.round(rng.gamma(2.0, 30.0, customers), 2)
        calls = rng.poisson(1.0 + 2.0 * (plans == "basic"), customers)
        rows.append(
            pd.DataFrame(
                {{
                    "customer_id": ids,
                    "event_timestamp": ts,
                    "tenure_months": tenure + day // 30,
                    "monthly_spend": spend,
                    "support_calls_30d": calls,
                    "plan": plans,
                }}
            )
        )
        if day >= 2:
            picked = rng.choice(ids, customers // 10, replace=False)
            logit = -1.5 + 0.45 * calls[picked] - 0.04 * tenure[picked] - 0.01 * spend[picked]
            churned = rng.random(len(picked)) < 1.0 / (1.0 + np.exp(-logit))
            pro = plans[picked] == "pro"
            spend_next = 15 + 1.2 * spend[picked] + 6 * calls[picked] + 10 * pro
            spend_next = np.round(spend_next + noise.normal(0, 8, len(picked)), 2)
            score = calls[picked] - tenure[picked] / 12 + noise.normal(0, 0.7, len(picked))
            segment = np.where(score > 1.0, "at_risk", np.where(score > -1.5, "steady", "loyal"))
            labels.append(
                pd.DataFrame(
                    {{
                        "customer_id": picked,
                        "event_timestamp": ts + pd.Timedelta(hours=12),
                        "churned": churned.astype(np.int64),
                        "spend_next": spend_next,
                        "segment": segment,
                    }}
                )
            )
    features = pd.concat(rows, ignore_index=True)
    features["event_timestamp"] = features["event_timestamp"].astype("datetime64[us, UTC]")
    label_frame = pd.concat(labels, ignore_index=True)
    label_frame["event_timestamp"] = label_frame["event_timestamp"].astype("datetime64[us, UTC]")
    (PROJECT / "feature_repo" / "data").mkdir(parents=True, exist_ok=True)
    (PROJECT / "data").mkdir(parents=True, exist_ok=True)
    features.to_parquet(PROJECT / "feature_repo" / "data" / "customer_activity.parquet")
    label_frame.to_parquet(PROJECT / "data" / "labels.parquet")
    print(f"wrote {{len(features)}} feature rows and {{len(label_frame)}} labels ({{days}} days)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="Write synthetic churn data.")
    parser.add_argument("--customers", type=int, default=3000)
    parser.add_argument("--days", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    generate(customers=args.customers, days=args.days, seed=args.seed)
'''

_README = """\
# {name}

A lockgate project: Feast features -> locked model versions -> gate -> Triton.

```bash
python -m {name}.generate_data            # synthetic rows; replace with your own data
(cd feature_repo && feast apply)          # register the Feast definitions (your choice, always)
dagster dev -w workspace.yaml             # open the UI, materialize {name}_train
```

- Features: `feature_repo/` is a plain Feast repository. Point its sources at your tables.
- Labels: `data/labels.parquet` with `customer_id`, `event_timestamp` and one column per label:
  `churned` (binary), `spend_next` (regression), `segment` (multiclass). `LabelSource(path=...)`
  takes a Parquet file or folder, relative to this project.
- Each model version's lock record names this project's git commit: commit your code.
"""

_FILES = {
    "pyproject.toml": _PYPROJECT,
    "workspace.yaml": _WORKSPACE,
    ".gitignore": _GITIGNORE,
    "README.md": _README,
    "feature_repo/feature_store.yaml": _FEATURE_STORE_YAML,
    "feature_repo/features.py": _FEATURES,
    "{name}/__init__.py": '"""{name}: a lockgate project."""\n',
    "{name}/pipelines.py": _PIPELINES,
    "{name}/definitions.py": _DEFINITIONS,
    "{name}/generate_data.py": _GENERATE,
}


def init_project(directory: str | Path, *, name: str | None = None) -> list[Path]:
    """Write a new lockgate project into ``directory``.

    Args:
        directory: the project folder; created when missing, and it must be empty.
        name: the Python package and pipeline name (lowercase letters, digits and ``_``);
            default the folder's name with ``-`` turned into ``_``.

    Returns:
        The files written, in order.

    Raises:
        SpecError: the name is not a valid package name, or the folder is not empty.
    """
    root = Path(directory).expanduser().resolve()
    name = name or root.name.replace("-", "_").lower()
    if not _NAME.match(name) or keyword.iskeyword(name):
        raise SpecError(
            f"project name {name!r} is not usable: it becomes the Python package and the "
            "pipeline name, so it must be lowercase letters, digits and '_' starting with a "
            "letter. Fix: pass --name, e.g. --name churn"
        )
    if root.exists() and any(root.iterdir()):
        raise SpecError(
            f"{root} is not empty: lockgate init writes a new project and never overwrites "
            "files. Fix: pick a new or empty folder"
        )
    written = []
    for relative, template in _FILES.items():
        path = root / relative.format(name=name)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(template.format(name=name))
        written.append(path)
    return written
