"""What lockgate writes into a Triton model repository for one version: the expected folders
(:class:`ModelFolder`: the lock record's files and the generated ``config.pbtxt``, ``model.py``,
``wire.json``), the manifest ``lockgate.json``, and the scan of a folder on disk. Both the writer
(:mod:`lockgate.serving.model_folder_writer`) and the verifier
(:mod:`lockgate.serving.model_folder_verify`) build on this plan, so they agree byte for byte.
"""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lockgate.errors import LockgateError, SpecError
from lockgate.lineage.hashing import canonical_json, sha256_bytes
from lockgate.serving.triton_config import (
    TRITON_VERSION,
    check_model_kind,
    cpu_config,
    gpu_component_names,
    gpu_config,
    python_model_source,
)
from lockgate.serving.wire import WIRE_FILE, WireDecoder, WireSchema, wire_schema_for_version
from lockgate.training import ModelOutput, model_output

if TYPE_CHECKING:
    from lockgate.lineage.registry import ArtifactRegistry


__all__ = [
    "LIGHTGBM_FILE",
    "MANIFEST_FILE",
    "MANIFEST_FORMAT",
    "PREPROCESSING_FILE",
    "TORCHSCRIPT_FILE",
    "ModelFolder",
    "ServingError",
    "VersionInputs",
    "folder_options",
    "manifest_bytes",
    "model_kind_of",
    "model_output_of",
    "n_features_of",
    "planned_folders",
    "rewrite_fix",
    "scan_folder",
    "wire_schema_of",
]

MANIFEST_FILE = "lockgate.json"
"""Name of the manifest in each model folder."""
MANIFEST_FORMAT = "lockgate.triton-model/2"
"""Format tag of the manifest (2: wire-format input, ``wire.json``, GPU ensembles)."""

_CONFIG_FILE = "config.pbtxt"
_MODEL_PY = f"{TRITON_VERSION}/model.py"
_WIRE_JSON = f"{TRITON_VERSION}/{WIRE_FILE}"
# An empty *file* named __pycache__: the stub ignores PYTHONDONTWRITEBYTECODE (it ignores the
# environment), and a bytecode cache written into the folder would break verification, or, if
# planted, run instead of model.py. Python silently skips caching when it cannot mkdir.
_PYCACHE_BLOCKER = f"{TRITON_VERSION}/__pycache__"
TORCHSCRIPT_FILE = "model.torchscript.pt"
LIGHTGBM_FILE = "model.txt"
_LIBTORCH_FILE = "model.pt"
PREPROCESSING_FILE = "preprocessing.json"


class ServingError(LockgateError):
    """Serving refused an operation: a model folder is invalid, or Triton failed a request."""


def rewrite_fix(pipeline: str, version: str) -> str:
    return (
        f"remove the folder and write it again with lockgate.serving.model_repository.write_model_version("
        f"pipeline={pipeline!r}, version={version!r})"
    )


# --------------------------------------------------------------------------------------------
# expected content
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ModelFolder:
    """One Triton model folder lockgate writes for a version."""

    name: str
    role: str  # "served" (CPU), "wire", "model" (GPU components), "ensemble" (GPU served)
    layout: dict[str, str]  # relative posix path -> lock-record file name
    generated: dict[str, bytes]  # relative posix path -> exact bytes
    dirs: tuple[str, ...] = field(default=())  # folders that must exist (possibly empty)


def folder_options(
    *,
    target: str,
    fault: str | None,
    max_batch_size: int,
    instances: int,
    gpus: Sequence[int],
    warmup: bool,
) -> dict[str, Any]:
    return {
        "target": target,
        "fault": fault or None,
        "max_batch_size": max_batch_size,
        "instances": instances,
        "gpus": [int(g) for g in gpus],
        "warmup": bool(warmup),
    }


def _all_files(lock_files: Mapping[str, str]) -> dict[str, str]:
    return {f"{TRITON_VERSION}/{name}": name for name in sorted(lock_files)}


def _python_generated(config: str, schema: WireSchema, kind: str) -> dict[str, bytes]:
    return {
        _CONFIG_FILE: config.encode("utf-8"),
        _MODEL_PY: python_model_source(kind).encode("utf-8"),
        _PYCACHE_BLOCKER: b"",
        _WIRE_JSON: schema.to_json(),
    }


def _plan(version: VersionInputs, options: Mapping[str, Any]) -> list[ModelFolder]:
    """Every folder of a version for the recorded options, composing models first.

    ``version.output`` (the task and output width, read from the version's own
    ``preprocessing.json``) sets the output dims of every config: ``[1]`` for binary and
    regression, ``[k]`` for a multiclass model of k classes.
    """
    model_name, kind, lock_files = version.model_name, version.kind, version.lock_files
    schema, output = version.schema, version.output
    common = {
        "model_name": model_name,
        "kind": kind,
        "max_batch_size": options["max_batch_size"],
        "instances": options["instances"],
        "warmup": options["warmup"],
        "task": output.task,
        "output_width": output.width,
    }
    if options["target"] == "cpu":
        config = cpu_config(**common, wire_width=schema.width, fault=options["fault"])
        return [
            ModelFolder(
                model_name,
                "served",
                _all_files(lock_files),
                _python_generated(config, schema, kind),
            )
        ]
    if options["target"] != "gpu" or options["fault"]:
        raise ServingError(f"options {dict(options)!r} name no known target without faults")
    configs = gpu_config(
        **common,
        wire_width=schema.width,
        n_features=version.n_features,
        gpus=tuple(options["gpus"]),
    )
    wire_name, inner_name = gpu_component_names(model_name)
    weights = TORCHSCRIPT_FILE if kind == "torch" else LIGHTGBM_FILE
    served_as = _LIBTORCH_FILE if kind == "torch" else LIGHTGBM_FILE
    return [
        ModelFolder(
            wire_name,
            "wire",
            _all_files(lock_files),
            _python_generated(configs[wire_name], schema, kind),
        ),
        ModelFolder(
            inner_name,
            "model",
            {f"{TRITON_VERSION}/{served_as}": weights},
            {_CONFIG_FILE: configs[inner_name].encode("utf-8")},
        ),
        ModelFolder(
            model_name,
            "ensemble",
            {},
            {_CONFIG_FILE: configs[model_name].encode("utf-8")},
            dirs=(TRITON_VERSION,),
        ),
    ]


def n_features_of(preprocessing: bytes, *, where: str) -> int:
    try:
        value = json.loads(preprocessing)["input_dim"]
    except (ValueError, KeyError, TypeError) as exc:
        raise ServingError(
            f"{where} has no readable input_dim ({exc}); rule: the model's preprocessing.json "
            "states its input width; fix: restore the model version in the registry"
        ) from exc
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise ServingError(f"{where} input_dim {value!r} is not a positive integer")
    return value


def model_output_of(preprocessing: bytes, *, where: str) -> ModelOutput:
    """The version's task and output width from its ``preprocessing.json``."""
    try:
        return model_output(json.loads(preprocessing))
    except (LockgateError, ValueError) as exc:
        raise ServingError(
            f"{where} has no readable task in its preprocessing.json ({exc}); rule: the model's "
            "preprocessing.json states its task and classes; fix: restore the model version in "
            "the registry"
        ) from exc


def wire_schema_of(
    registry: ArtifactRegistry, preprocessing: bytes, *, pipeline: str, version: str
) -> WireSchema:
    """The version's wire schema, checked against its preprocessing (kinds, collisions)."""
    try:
        schema = wire_schema_for_version(registry, pipeline, version)
        WireDecoder.for_model(schema, json.loads(preprocessing))
    except (LockgateError, ValueError) as exc:
        raise ServingError(
            f"{pipeline}/{version} cannot be served in the pipeline's wire format: {exc}"
        ) from exc
    return schema


def model_kind_of(record: Mapping[str, Any], pipeline: str, version: str) -> str:
    kind = str(record.get("trainer", {}).get("kind"))
    try:
        return check_model_kind(kind)
    except SpecError as exc:
        raise ServingError(f"{pipeline}/{version} cannot be served: {exc}") from exc


def _manifest(
    version: VersionInputs, options: Mapping[str, Any], folder: ModelFolder
) -> dict[str, Any]:
    return {
        "format": MANIFEST_FORMAT,
        "pipeline": version.pipeline,
        "version": version.version,
        "model_name": version.model_name,
        "folder": folder.name,
        "role": folder.role,
        "kind": version.kind,
        "n_features": version.n_features,
        "wire": version.schema.to_dict(),
        "options": dict(options),
        "files": {
            path: {"source": source, "sha256": version.lock_files[source]}
            for path, source in sorted(folder.layout.items())
        },
        "generated": {path: sha256_bytes(data) for path, data in sorted(folder.generated.items())},
    }


@dataclass(frozen=True)
class VersionInputs:
    """What a version's model folders are planned from: its names and kind, its lock record's
    files (name -> sha256), and what its ``preprocessing.json`` and snapshot say (input width,
    wire schema, task and output width). Build it with :meth:`of`."""

    pipeline: str
    version: str
    model_name: str
    kind: str
    lock_files: Mapping[str, str]
    n_features: int
    schema: WireSchema
    output: ModelOutput

    @classmethod
    def of(
        cls,
        registry: ArtifactRegistry,
        preprocessing: bytes,
        *,
        pipeline: str,
        version: str,
        model_name: str,
        kind: str,
        lock_files: Mapping[str, str],
    ) -> VersionInputs:
        """The inputs of ``pipeline/version``, read from its ``preprocessing.json`` bytes and
        the registry (:class:`ServingError` naming what is unreadable)."""
        where = f"{pipeline}/{version}"
        return cls(
            pipeline=pipeline,
            version=version,
            model_name=model_name,
            kind=kind,
            lock_files=lock_files,
            n_features=n_features_of(preprocessing, where=where),
            schema=wire_schema_of(registry, preprocessing, pipeline=pipeline, version=version),
            output=model_output_of(preprocessing, where=where),
        )


def planned_folders(
    version: VersionInputs, options: Mapping[str, Any]
) -> list[tuple[ModelFolder, dict[str, Any]]]:
    """Every folder of a version with the manifest it must carry (the writer writes these, the
    verifier expects them)."""
    return [(folder, _manifest(version, options, folder)) for folder in _plan(version, options)]


def manifest_bytes(manifest: Mapping[str, Any]) -> bytes:
    return canonical_json(dict(manifest)) + b"\n"


def scan_folder(folder: Path, *, pipeline: str, version: str) -> dict[str, Path]:
    """Every regular file under ``folder`` by relative posix path; refuses anything else."""
    found: dict[str, Path] = {}
    pending = [folder]
    while pending:
        current = pending.pop()
        with os.scandir(current) as entries:
            for entry in entries:
                path = Path(entry.path)
                rel = path.relative_to(folder).as_posix()
                info = entry.stat(follow_symlinks=False)
                if stat.S_ISLNK(info.st_mode):
                    raise ServingError(
                        f"{path} is a symlink (to {os.readlink(path)!r}); rule: a model folder "
                        "holds plain files only, so nothing outside it can be served; fix: "
                        f"{rewrite_fix(pipeline, version)}"
                    )
                if entry.name.startswith(".tmp-"):
                    raise ServingError(
                        f"{path} is a temporary entry: the folder is half-written; rule: model "
                        "folders appear complete, by rename; fix: "
                        f"{rewrite_fix(pipeline, version)}"
                    )
                if stat.S_ISDIR(info.st_mode):
                    pending.append(path)
                elif stat.S_ISREG(info.st_mode):
                    found[rel] = path
                else:
                    raise ServingError(
                        f"{path} is not a regular file or folder; rule: a model folder holds "
                        f"plain files only; fix: {rewrite_fix(pipeline, version)}"
                    )
    return found
