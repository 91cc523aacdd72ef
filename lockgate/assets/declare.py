"""Declaring a pipeline's assets and blocking checks: the Dagster options every factory shares.

:func:`pipeline_asset` is ``dg.asset`` for the asset ``[pipeline, name]`` in the pipeline's
group, its inputs named by the pipeline's own asset names and stored through the lockgate IO
manager; :func:`deployed_version_key` names the asset that says which version is live
(``rollout`` with serving, ``champion`` with a gate only); :func:`blocking_checks` is
``dg.multi_asset_check`` for one blocking check per name on one asset.
"""
# no `from __future__ import annotations`: Dagster reads these annotations at definition time

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import dagster as dg

from lockgate.spec import ModelPipeline

__all__ = ["blocking_checks", "deployed_version_key", "pipeline_asset"]


def pipeline_asset(
    spec: ModelPipeline,
    name: str,
    *,
    description: str,
    kinds: set[str],
    ins: Mapping[str, str] | None = None,
    deps: Sequence[dg.AssetKey] | None = None,
    stored: bool = True,
    **options: Any,
) -> Callable[..., dg.AssetsDefinition]:
    """``dg.asset`` of ``[spec.name, name]`` in the group ``spec.name``.

    Args:
        spec: The pipeline.
        name: The asset's name within the pipeline.
        description: The asset's description.
        kinds: The asset's kinds.
        ins: Parameter name -> name of the pipeline's asset it reads (loaded by the IO manager).
        deps: Asset keys it depends on without loading them.
        stored: Whether its output goes through the ``lockgate_io`` IO manager.
        **options: Further ``dg.asset`` options (e.g. ``metadata``).
    """
    if ins is not None:
        options["ins"] = {param: dg.AssetIn(key=spec.asset_key(a)) for param, a in ins.items()}
    if deps is not None:
        options["deps"] = deps
    if stored:
        options["io_manager_key"] = "lockgate_io"
    return dg.asset(
        key=spec.asset_key(name),
        group_name=spec.name,
        description=description,
        kinds=kinds,
        **options,
    )


def deployed_version_key(spec: ModelPipeline) -> dg.AssetKey | None:
    """``rollout`` with serving, else ``champion`` with a gate, else None (nothing is deployed)."""
    if spec.serving is not None:
        return spec.asset_key("rollout")
    if spec.gate is not None:
        return spec.asset_key("champion")
    return None


def blocking_checks(
    spec: ModelPipeline,
    asset: str,
    checks: Iterable[str],
    *,
    name: str,
    param: str,
    label: str,
    compute_kind: str,
) -> Callable[..., dg.AssetChecksDefinition]:
    """``dg.multi_asset_check`` of one blocking check per name in ``checks`` on ``[spec.name, asset]``.

    Args:
        spec: The pipeline.
        asset: The checked asset's name within the pipeline.
        checks: The check names.
        name: The name of the checks definition.
        param: The parameter the checked asset's value is loaded into.
        label: What the checks are about (each check's description is ``"{label}: {check}"``).
        compute_kind: The compute kind shown in the UI.
    """
    key = spec.asset_key(asset)
    return dg.multi_asset_check(
        specs=[
            dg.AssetCheckSpec(check, asset=key, blocking=True, description=f"{label}: {check}")
            for check in checks
        ],
        name=name,
        ins={param: dg.AssetIn(key=key)},
        compute_kind=compute_kind,
    )
