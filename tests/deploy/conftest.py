"""Shared settings for the Kubernetes builders' tests (no cluster: nothing here connects)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from lockgate.deploy.settings import DagsterSettings, K8sSettings, TritonSettings

IMAGE = "registry.example.com/team/fraud:1.4.0"
KUBECONFIG = """\
apiVersion: v1
kind: Config
clusters:
- name: none
  cluster: {server: "https://127.0.0.1:1"}
users:
- name: none
  user: {token: not-a-token}
contexts:
- name: none
  context: {cluster: none, user: none}
current-context: none
"""


def make_settings(**overrides: object) -> K8sSettings:
    """Valid settings with the required values filled in; ``overrides`` replace fields."""
    values: dict[str, object] = {
        "image": IMAGE,
        "namespace": "ml",
        "triton": TritonSettings(model_repository="s3://models/fraud"),
        "dagster": DagsterSettings(postgres_host="postgres.db.svc"),
    }
    values.update(overrides)
    return K8sSettings.model_validate(values)


@pytest.fixture
def settings() -> K8sSettings:
    """Valid settings: the default roles (training on one GPU), namespace ``ml``."""
    return make_settings()


@pytest.fixture
def kubeconfig(tmp_path: Path) -> str:
    """A kubeconfig naming an unreachable server: dagster-k8s objects that load one at
    construction can be built; nothing ever connects."""
    path = tmp_path / "kubeconfig"
    path.write_text(KUBECONFIG)
    return str(path)


@pytest.fixture(scope="module")
def chart_schema() -> dict[str, Any]:
    """The Dagster chart's values schema, from ``$LOCKGATE_DAGSTER_CHART_SCHEMA``."""
    path = os.environ.get("LOCKGATE_DAGSTER_CHART_SCHEMA")
    if not path:
        pytest.skip(
            "set LOCKGATE_DAGSTER_CHART_SCHEMA to the Dagster chart's values.schema.json to "
            "check the values against it"
        )
    schema: dict[str, Any] = json.loads(Path(path).read_text())
    return schema
