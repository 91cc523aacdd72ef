"""Find a project's pipelines the way ``dagster`` finds its definitions.

The ``lockgate`` commands that need a pipeline's spec (``pipelines``, ``apply``, ``drift``) load
the user's code location, as ``dagster dev`` would:

1. ``-m/--module NAME``: that module;
2. ``-w/--workspace FILE``: every ``python_module`` (``module_name`` and ``working_directory``)
   and ``python_file`` entry of that ``workspace.yaml``;
3. neither: ``[tool.dagster] module_name`` of ``pyproject.toml`` in the current folder, else
   ``workspace.yaml`` there.

The module is imported with its working directory (default: the current folder) on
``sys.path``; each ``Definitions`` it holds (or builds, for a ``@dg.definitions`` function)
carries its pipelines' specs in its metadata (``lockgate/pipeline/<name>``), put there by
:func:`lockgate.build_definitions`.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lockgate.errors import SpecError

if TYPE_CHECKING:
    import dagster as dg

    from lockgate.spec import ModelPipeline

__all__ = [
    "METADATA_PREFIX",
    "CodeLocation",
    "find_pipeline",
    "load_code_locations",
    "pipeline_metadata",
]

METADATA_PREFIX = "lockgate/pipeline/"
"""Prefix of the Definitions metadata keys that hold a pipeline's spec as JSON."""


def pipeline_metadata(pipelines: list[ModelPipeline]) -> dict[str, Any]:
    """The Definitions metadata that lets the CLI find ``pipelines`` again."""
    import dagster as dg

    return {
        f"{METADATA_PREFIX}{p.name}": dg.MetadataValue.json(p.model_dump(mode="json"))
        for p in pipelines
    }


@dataclass
class CodeLocation:
    """One loaded code location: where it came from, its Definitions and their pipelines."""

    source: str
    definitions: list[dg.Definitions] = field(default_factory=list)
    pipelines: dict[str, ModelPipeline] = field(default_factory=dict)

    def resource(self, key: str) -> Any:
        """The resource bound under ``key`` in this location's Definitions (None: none)."""
        for defs in self.definitions:
            resources = defs.resources or {}
            if key in resources:
                return resources[key]
        return None


def load_code_locations(
    *, module: str | None = None, workspace: str | Path | None = None, cwd: str | Path = "."
) -> list[CodeLocation]:
    """Load the code locations named as ``dagster`` would find them (see the module docstring).

    Raises:
        SpecError: nothing names a code location, a module cannot be imported, or it defines no
            Definitions; each message says where lockgate looked and how to point it.
    """
    base = Path(cwd).resolve()
    if module is not None:
        return [_load_module(module, base)]
    if workspace is not None:
        return _load_workspace(Path(workspace), base)
    pyproject = base / "pyproject.toml"
    if pyproject.is_file():
        name = tomllib.loads(pyproject.read_text()).get("tool", {}).get("dagster", {})
        if name.get("module_name"):
            return [_load_module(str(name["module_name"]), base)]
    if (base / "workspace.yaml").is_file():
        return _load_workspace(base / "workspace.yaml", base)
    raise SpecError(
        f"no code location found from {base}: lockgate looks for -m/--module, -w/--workspace, "
        "[tool.dagster] module_name in pyproject.toml, then workspace.yaml (as dagster does). "
        "Fix: run in your project folder, or pass -m your_project.definitions"
    )


def _load_workspace(path: Path, base: Path) -> list[CodeLocation]:
    import yaml

    if not path.is_file():
        raise SpecError(f"workspace file {path} does not exist. Fix: pass the workspace.yaml path")
    document = yaml.safe_load(path.read_text()) or {}
    folder = path.resolve().parent
    locations = []
    for entry in document.get("load_from") or []:
        if "python_module" in entry:
            spec = entry["python_module"]
            spec = {"module_name": spec} if isinstance(spec, str) else spec
            where = folder / spec.get("working_directory", ".")
            locations.append(_load_module(spec["module_name"], where))
        elif "python_file" in entry:
            spec = entry["python_file"]
            spec = {"relative_path": spec} if isinstance(spec, str) else spec
            where = folder / spec.get("working_directory", ".")
            locations.append(_load_file(folder / spec["relative_path"], where))
    if not locations:
        raise SpecError(
            f"workspace {path} loads no python_module or python_file: lockgate reads those "
            "entries of load_from. Fix: add your code location there"
        )
    return locations


def _load_module(name: str, where: Path) -> CodeLocation:
    folder = str(where.resolve())
    if folder not in sys.path:
        sys.path.insert(0, folder)
    try:
        module = importlib.import_module(name)
    except Exception as exc:
        raise SpecError(
            f"module {name!r} cannot be imported from {folder} ({type(exc).__name__}: {exc}): "
            "it must be your code location's module. Fix: install the project or run from its "
            "folder, or pass -m with the right module"
        ) from exc
    return _collect(vars(module), f"module {name}")


def _load_file(path: Path, where: Path) -> CodeLocation:
    folder = str(where.resolve())
    if folder not in sys.path:
        sys.path.insert(0, folder)
    spec = importlib.util.spec_from_file_location(f"_lockgate_location_{path.stem}", path)
    if spec is None or spec.loader is None:
        raise SpecError(f"{path} is not a Python file lockgate can load. Fix: check the path")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return _collect(vars(module), f"file {path}")


def _collect(namespace: dict[str, Any], source: str) -> CodeLocation:
    import dagster as dg
    from dagster.components.definitions import LazyDefinitions

    from lockgate.spec import ModelPipeline

    location = CodeLocation(source=source)
    for value in list(namespace.values()):
        if isinstance(value, LazyDefinitions):
            value = value()
        if isinstance(value, dg.Definitions):
            location.definitions.append(value)
    if not location.definitions:
        raise SpecError(
            f"{source} defines no Dagster Definitions: lockgate reads the pipelines from them. "
            "Fix: define `defs = lockgate.build_definitions([...])` (or a @dg.definitions "
            "function returning it) there"
        )
    for defs in location.definitions:
        for key, value in (defs.metadata or {}).items():
            if key.startswith(METADATA_PREFIX):
                spec = ModelPipeline.model_validate(getattr(value, "data", value))
                location.pipelines[spec.name] = spec
    return location


def find_pipeline(locations: list[CodeLocation], name: str) -> tuple[ModelPipeline, CodeLocation]:
    """The pipeline called ``name`` and its code location.

    Raises:
        SpecError: no loaded code location has it; the message lists the known pipelines.
    """
    for location in locations:
        if name in location.pipelines:
            return location.pipelines[name], location
    known = sorted(n for location in locations for n in location.pipelines)
    sources = ", ".join(location.source for location in locations)
    raise SpecError(
        f"pipeline {name!r} is not defined in {sources}; known pipelines: {known or 'none'}. "
        "Fix: use one of them, or point -m/-w at the code location that defines it"
    )
