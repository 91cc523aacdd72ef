"""One way to make a Dagster resource factory over a plain core class, from the class itself.

:func:`plain_resource_factory` builds a ``ConfigurableResourceFactory`` whose configuration
fields are the plain class's pydantic fields (same names, types, defaults, bounds and
descriptions), so production can bind any of them to ``dg.EnvVar`` values read at run time, and
whose ``create_resource`` builds the plain object from them for each run. The factory never
repeats the plain class's fields, so the two cannot drift apart. :func:`register_resource_param`
lets a parameter annotated with the plain class take either.
"""

from __future__ import annotations

from typing import Any, ClassVar

import dagster as dg

# neither is re-exported at dagster's top level in 1.13; these are their homes
from dagster._config.pythonic_config import ConfigurableResourceFactory
from dagster._core.definitions.resource_annotation import TreatAsResourceParam
from pydantic import BaseModel, create_model

__all__ = ["PlainResourceFactory", "plain_resource_factory", "register_resource_param"]


def register_resource_param(plain_class: type[Any]) -> None:
    """Make a parameter annotated with ``plain_class`` (``gateway: Gateway``, as when the class
    was a ConfigurableResource) a resource parameter, whether a plain object or a factory is
    bound: Dagster then treats the class as ``dg.ResourceParam[plain_class]`` (a virtual
    subclass; the core class never imports Dagster)."""
    TreatAsResourceParam.register(plain_class)


class PlainResourceFactory(ConfigurableResourceFactory[Any]):
    """Base of the factories :func:`plain_resource_factory` makes: builds ``plain_class`` from
    this resource's configuration fields."""

    plain_class: ClassVar[type[BaseModel]]

    def __init__(self, **config: Any) -> None:
        """The fields of ``plain_class``, as keywords (plain values or ``dg.EnvVar``)."""
        # spelled out for type checkers: the fields are made at run time from the plain class
        super().__init__(**config)

    def create_resource(self, context: dg.InitResourceContext) -> Any:
        """The plain object, configured like this resource (a server is not started)."""
        return self.plain_class(**{name: getattr(self, name) for name in type(self).model_fields})


def plain_resource_factory(
    plain_class: type[BaseModel], *, module: str
) -> type[PlainResourceFactory]:
    """A Dagster resource factory named ``<plain class>Resource`` configured by the fields of
    ``plain_class`` and creating it.

    Args:
        plain_class: the core class (a pydantic model) the resource hands to assets and sensors.
        module: the module the factory is defined in (its ``__module__``).
    """
    fields: dict[str, Any] = {
        name: (info.annotation, info) for name, info in plain_class.model_fields.items()
    }
    factory = create_model(
        f"{plain_class.__name__}Resource",
        __base__=PlainResourceFactory,
        __module__=module,
        __doc__=(
            f"Dagster configuration of a :class:`~{plain_class.__module__}."
            f"{plain_class.__name__}` (the same fields; see that class)."
        ),
        **fields,
    )
    factory.plain_class = plain_class
    result: type[PlainResourceFactory] = factory
    return result
