"""Every deployment file of a code location, rendered from its pipelines and :class:`K8sSettings`.

:func:`render` returns file name -> text (what ``lockgate deploy render`` prints or writes):

- ``Dockerfile`` and ``Dockerfile.dockerignore``: the project image (:mod:`lockgate.deploy.docker`);
- ``values.yaml``: the Dagster Helm chart's values (:mod:`lockgate.deploy.helm`);
- ``dagster-k8s.yaml``: the ``K8sRunLauncher`` block of ``dagster.yaml`` and the
  ``k8s_job_executor`` run config with each pipeline's training step on its GPU
  (:mod:`lockgate.deploy.launcher`), what :func:`~lockgate.deploy.launcher.k8s_definitions`
  applies in code;
- ``serving.yaml``: the shared volume claim, the ConfigMap, Triton and the gateway
  (:mod:`lockgate.deploy.manifests`).

:func:`code_location_module` finds the code location's module and pinned name the way
:mod:`lockgate.discover` finds the code location.
"""

from __future__ import annotations

import tomllib
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

import yaml

from lockgate.deploy.docker import DOCKERIGNORE, dockerfile
from lockgate.deploy.helm import helm_values
from lockgate.deploy.launcher import executor_config, run_launcher_config
from lockgate.deploy.manifests import serving_manifests, to_yaml
from lockgate.deploy.settings import K8sSettings
from lockgate.errors import SpecError

if TYPE_CHECKING:
    from lockgate.spec import ModelPipeline

__all__ = ["HEADER", "CodeLocationName", "code_location_module", "load_settings", "render"]

HEADER = (
    "# Rendered by `lockgate deploy render` from the code location's pipelines and its\n"
    "# K8sSettings: do not edit; change the settings (or a pipeline's deployment) and render again.\n"
)
"""The first lines of every rendered file."""


class CodeLocationName(NamedTuple):
    """A code location's module and the location name its project pins (None: none)."""

    module: str
    location_name: str | None


def code_location_module(
    *, module: str | None = None, workspace: str | Path | None = None, cwd: str | Path = "."
) -> CodeLocationName:
    """The module and pinned location name, found as :func:`lockgate.discover.load_code_locations`
    finds the code location: ``module``; else the workspace's one ``python_module``; else
    ``[tool.dagster]`` of ``pyproject.toml``; else ``workspace.yaml``.

    Raises:
        SpecError: nothing names one module (a workspace with several, or a ``python_file``).
    """
    base = Path(cwd).resolve()
    pinned = None
    pyproject = base / "pyproject.toml"
    tool = {}
    if pyproject.is_file():
        tool = tomllib.loads(pyproject.read_text()).get("tool", {}).get("dagster", {})
        pinned = tool.get("code_location_name")
    if module is not None:
        return CodeLocationName(module, pinned)
    if workspace is None and tool.get("module_name"):
        return CodeLocationName(str(tool["module_name"]), pinned)
    path = Path(workspace) if workspace is not None else base / "workspace.yaml"
    if not path.is_file():
        raise SpecError(
            f"no code location module found from {base}: lockgate looks for -m/--module, "
            "-w/--workspace, [tool.dagster] module_name in pyproject.toml, then workspace.yaml. "
            "Fix: run in your project folder, or pass -m your_project.definitions"
        )
    entries = (yaml.safe_load(path.read_text()) or {}).get("load_from") or []
    modules = [e["python_module"] for e in entries if "python_module" in e]
    if len(modules) != 1 or len(entries) != 1:
        raise SpecError(
            f"workspace {path} loads {len(entries)} code location(s), {len(modules)} of them "
            "python_module; rule: one image serves one code location, named by its module; "
            "fix: pass -m with the module to deploy"
        )
    entry = modules[0]
    entry = {"module_name": entry} if isinstance(entry, str) else entry
    return CodeLocationName(entry["module_name"], entry.get("location_name") or pinned)


def load_settings(path: str | Path) -> K8sSettings:
    """:class:`K8sSettings` from a YAML file.

    Raises:
        SpecError: the file cannot be read or its settings are invalid (every problem named).
    """
    from pydantic import ValidationError

    try:
        document = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise SpecError(f"settings file {path} cannot be read: {exc}") from exc
    try:
        return K8sSettings.model_validate(document)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in error['loc']) or '<file>'}: {error['msg']}"
            for error in exc.errors()
        )
        raise SpecError(f"settings file {path} is invalid: {problems}") from exc


def _after_directives(text: str) -> str:
    """:data:`HEADER` after the Dockerfile's parser directives (``# syntax=``), which count only
    on the first lines."""
    lines = text.splitlines(keepends=True)
    first = 0
    while first < len(lines) and lines[first].startswith("# syntax="):
        first += 1
    return "".join(lines[:first]) + HEADER + "".join(lines[first:])


def render(
    pipelines: Sequence[ModelPipeline],
    settings: K8sSettings,
    *,
    module: str,
    location_name: str | None = None,
    lockgate_requirement: str | None = "lockgate",
    settings_file: str | None = None,
) -> dict[str, str]:
    """File name -> text of every deployment file (see the module docstring).

    Args:
        pipelines: the code location's pipelines.
        settings: the cluster's settings.
        module: the code location's module.
        location_name: the location name the project pins; it must be the chart's
            user-deployment name (``settings.dagster.code_location``).
        lockgate_requirement: ``pip install``'s lockgate requirement in the image (None: the
            project is lockgate's own checkout).
        settings_file: the settings file relative to the project (the image's
            ``LOCKGATE_K8S_SETTINGS``).

    Raises:
        SpecError: the pinned location name and ``settings.dagster.code_location`` differ.
    """
    if location_name is not None and location_name != settings.dagster.code_location:
        raise SpecError(
            f"the project pins the code location name {location_name!r} but the settings "
            f"deploy it as dagster.code_location={settings.dagster.code_location!r}; rule: one "
            "name everywhere (sensor run keys and cursors are scoped to it); fix: set "
            f"dagster.code_location: {location_name}"
        )
    names = ", ".join(sorted(p.name for p in pipelines)) or "none"
    k8s = {
        "run_launcher": run_launcher_config(settings),
        "execution": {"config": executor_config(pipelines, settings)},
    }
    return {
        "Dockerfile": _after_directives(
            dockerfile(
                module=module,
                lockgate_requirement=lockgate_requirement,
                grpc_port=settings.dagster.grpc_port,
                settings_file=settings_file,
            )
        ),
        "Dockerfile.dockerignore": HEADER + DOCKERIGNORE,
        "values.yaml": HEADER
        + f"# helm install {settings.dagster.release} dagster/dagster -n {settings.namespace} "
        "-f values.yaml\n" + to_yaml([helm_values(settings, module=module)]),
        "dagster-k8s.yaml": HEADER
        + f"# pipelines: {names}\n"
        + "# run_launcher: the dagster.yaml block (the chart writes it from values.yaml);\n"
        + "# execution: the k8s_job_executor's run config (k8s_definitions applies it in code)\n"
        + to_yaml([k8s]),
        "serving.yaml": HEADER
        + f"# kubectl apply -n {settings.namespace} -f serving.yaml\n"
        + to_yaml(serving_manifests(settings)),
    }
