"""Serving: Triton model configurations, the model repository, the wire format and the canary.

- :mod:`~lockgate.serving.triton_config`: ``config.pbtxt`` and the python-backend model per version.
- :mod:`~lockgate.serving.model_repository`: writing, verifying and sandbox-validating versions.
- :mod:`~lockgate.serving.wire`: the version-independent request matrix of a pipeline.
- :mod:`~lockgate.serving.canary`: the canary controller's pure state machine.
"""
