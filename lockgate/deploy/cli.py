"""``lockgate deploy``: Kubernetes files from the code location's pipelines and K8sSettings."""

from __future__ import annotations

import os
import tomllib
from pathlib import Path

import click

from lockgate.errors import SpecError

__all__ = ["deploy_group"]


def _lockgate_requirement(cwd: Path) -> str | None:
    """None when the project is lockgate's own checkout (installing it installs lockgate)."""
    pyproject = cwd / "pyproject.toml"
    if pyproject.is_file():
        name = tomllib.loads(pyproject.read_text()).get("project", {}).get("name")
        if name == "lockgate":
            return None
    from importlib.metadata import PackageNotFoundError, version

    try:
        return f"lockgate=={version('lockgate')}"
    except PackageNotFoundError:  # pragma: no cover - lockgate runs this command
        return "lockgate"


@click.group("deploy")
def deploy_group() -> None:
    """Kubernetes: the project image, Dagster Helm values, dagster-k8s config, Triton and the
    gateway (rendered here; applied by you)."""


def _inside(path: Path, project: Path) -> str | None:
    """``path`` relative to the project folder, or None when it lies outside (not in the image)."""
    try:
        return path.resolve().relative_to(project.resolve()).as_posix()
    except ValueError:
        return None


@deploy_group.command("render")
@click.option(
    "--settings",
    "settings_path",
    type=click.Path(dir_okay=False),
    required=True,
    help="K8sSettings as YAML (image, namespace, resources, Triton, gateway, Dagster chart).",
)
@click.option(
    "-m",
    "--module",
    default=None,
    help="Code location module to load (default: [tool.dagster] of ./pyproject.toml).",
)
@click.option(
    "-w",
    "--workspace",
    type=click.Path(dir_okay=False),
    default=None,
    help="workspace.yaml to load (as `dagster dev -w`).",
)
@click.option(
    "--out",
    type=click.Path(file_okay=False),
    default=None,
    help="Write the files into this folder instead of printing them.",
)
def render_cmd(
    settings_path: str, module: str | None, workspace: str | None, out: str | None
) -> None:
    """Render the deployment of a code location: Dockerfile, values.yaml (the official Dagster
    chart), dagster-k8s.yaml (run launcher, executor, GPU training) and serving.yaml (Triton,
    gateway, PDB, HPA); printed as YAML documents, or written to --out."""
    from lockgate.deploy.render import code_location_module, load_settings, render
    from lockgate.discover import load_code_locations

    settings = load_settings(settings_path)
    cwd = Path.cwd()
    found = code_location_module(module=module, workspace=workspace, cwd=cwd)
    locations = load_code_locations(module=module, workspace=workspace, cwd=cwd)
    pipelines = [spec for location in locations for spec in location.pipelines.values()]
    if not pipelines:
        raise SpecError(
            f"the code location {found.module} defines no lockgate pipelines; rule: render "
            "deploys a code location built with lockgate.build_definitions; fix: point -m at it"
        )
    files = render(
        sorted(pipelines, key=lambda p: p.name),
        settings,
        module=found.module,
        location_name=found.location_name,
        lockgate_requirement=_lockgate_requirement(cwd),
        settings_file=_inside(Path(settings_path), cwd),
    )
    if out is None:
        for name, text in files.items():
            click.echo(f"# ---- {name}")
            click.echo(text, nl=False)
        return
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        target = folder / name
        tmp = target.with_name(f".{name}.tmp")
        tmp.write_text(text)
        os.replace(tmp, target)
        click.echo(f"wrote {target}")
