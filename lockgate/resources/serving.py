"""The serving stack as Dagster resources: thin wrappers that hold the configuration and hand
assets and sensors a plain :class:`~lockgate.serving.stack.ServingStack`.

The stacks themselves (Triton + gateway, local processes or remote services) live in
:mod:`lockgate.serving.stack`; these factories only exist so Dagster can configure them
(``dg.EnvVar`` in production). Assets and sensors annotate the parameter
``serving_stack: dg.ResourceParam[ServingStack]``, so a plain stack bound directly (the local
environment, tests) works the same.
"""

from __future__ import annotations

from lockgate.resources.factory import plain_resource_factory, register_resource_param
from lockgate.serving.stack import LocalServingStack, RemoteServingStack, ServingStack

__all__ = [
    "LocalServingStack",
    "LocalServingStackResource",
    "RemoteServingStack",
    "RemoteServingStackResource",
    "ServingStack",
]


LocalServingStackResource = plain_resource_factory(LocalServingStack, module=__name__)
# give the URLs, the admin token and the folders from the environment with ``dg.EnvVar``
RemoteServingStackResource = plain_resource_factory(RemoteServingStack, module=__name__)
register_resource_param(ServingStack)
