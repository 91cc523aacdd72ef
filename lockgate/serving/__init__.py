"""Serving: Triton model configurations, the model repository, the wire format and the canary.

- :mod:`~lockgate.serving.triton_config`: ``config.pbtxt`` and the python-backend model per version
  (the ``config.pbtxt`` reader: :mod:`~lockgate.serving.pbtxt`; the ``model.py`` source:
  :mod:`~lockgate.serving.triton_model_template`).
- :mod:`~lockgate.serving.model_repository`: writing, verifying and sandbox-validating versions
  (:mod:`~lockgate.serving.model_folder_plan`, :mod:`~lockgate.serving.model_folder_writer`,
  :mod:`~lockgate.serving.model_folder_verify`, :mod:`~lockgate.serving.infra_validation`).
- :mod:`~lockgate.serving.wire`: the version-independent request matrix of a pipeline.
- :mod:`~lockgate.serving.canary`: the canary controller's pure state machine (its policy, the
  gateway's statistics, the state and the per-tick checks in ``canary_*`` modules; who may get
  live traffic in :mod:`~lockgate.serving.serving_permission`).
"""

from lockgate.serving.canary import (
    CanaryError,
    CanaryPolicy,
    CanaryState,
    Decision,
    VersionStats,
    decide,
    serving_refusal,
    start,
)
from lockgate.serving.model_repository import (
    ServingError,
    infra_validate,
    load_version,
    verify_model_folder,
    write_model_version,
)
from lockgate.serving.triton_config import triton_model_name
from lockgate.serving.wire import WireSchema, decode, encode, wire_schema_for_version

__all__ = [
    "CanaryError",
    "CanaryPolicy",
    "CanaryState",
    "Decision",
    "ServingError",
    "VersionStats",
    "WireSchema",
    "decide",
    "decode",
    "encode",
    "infra_validate",
    "load_version",
    "serving_refusal",
    "start",
    "triton_model_name",
    "verify_model_folder",
    "wire_schema_for_version",
    "write_model_version",
]
