"""The Triton model repository: writing model versions into it, verifying them, and the
sandbox infra validation of a candidate.

Every served version takes the pipeline's **wire matrix** (:mod:`lockgate.serving.wire`: raw feature
values, one column per feature of the feature service, the same for all versions) and does its
own preprocessing inside Triton. Clients build requests with :func:`lockgate.serving.wire.encode`
and the schema from :func:`lockgate.serving.wire.wire_schema_for_version` (or ``1/wire.json`` of any
served folder of the pipeline).

Layout of one model version on the CPU target (the Triton model ``<pipeline>-<version>``)::

    <repo>/<pipeline>-<version>/
        config.pbtxt          generated (lockgate.serving.triton_config.cpu_config): INPUT__0 [F]
        lockgate.json         manifest: every file with its sha256 and where it comes from
        1/model.py            generated (python backend; decodes the wire, predict_proba)
        1/wire.json           generated: the wire schema of the version's snapshot
        1/__pycache__         an empty file: keeps Python from caching bytecode in the folder
                              (a cache would break verification or shadow model.py)
        1/<file>              every file of the version's lock record, bytes as in the registry

On the GPU target a version is three Triton models (see :func:`lockgate.serving.triton_config.gpu_config`)::

    <repo>/<pipeline>-<version>-wire/    like the CPU folder; model.py returns PREPROCESSED [d]
    <repo>/<pipeline>-<version>-model/   config.pbtxt, lockgate.json, 1/model.txt (FIL) or
                                         1/model.pt (libtorch: the registry's model.torchscript.pt)
    <repo>/<pipeline>-<version>/         the ensemble clients call: config.pbtxt, lockgate.json,
                                         and an empty version folder 1/

Each folder appears at once (written under ``<repo>/.tmp-<name>-<random>/``, fsynced, renamed;
composing models first, the served model last) and is immutable: writing the same version again
is a no-op when the content is identical and is refused otherwise. :func:`verify_model_folder`
runs before every load and checks every folder of the version: the model files must hash to
the sha256 in the registry's lock record (not merely to the manifest), and the generated files
(``wire.json`` included, rebuilt from the registry's snapshot manifest) and the manifest must be
exactly what lockgate generates for the options the manifest records; any missing, extra,
symlinked or escaping path is refused.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import stat
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

import numpy as np

from lockgate._util.fs import fsync_path
from lockgate.errors import DataError, EmptyDataError, LockgateError, SpecError
from lockgate.lineage.hashing import canonical_json, sha256_bytes
from lockgate.serving.triton_config import (
    INPUT_NAME,
    OUTPUT_NAME,
    TRITON_VERSION,
    check_model_kind,
    cpu_config,
    gpu_component_names,
    gpu_config,
    parse_fault,
    python_model_source,
    split_triton_model_name,
    triton_model_name,
)
from lockgate.serving.wire import (
    WIRE_FILE,
    WireDecoder,
    WireSchema,
    encode,
    wire_schema_for_version,
)
from lockgate.training.trainers import ModelOutput, model_output

if TYPE_CHECKING:
    import numpy.typing as npt
    import pandas as pd

    from lockgate.resources.artifacts import ArtifactRegistry
    from lockgate.resources.triton import TritonServer

__all__ = [
    "MANIFEST_FILE",
    "MANIFEST_FORMAT",
    "ServingError",
    "infra_validate",
    "load_version",
    "model_folders",
    "verify_model_folder",
    "write_model_version",
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
_TORCHSCRIPT_FILE = "model.torchscript.pt"
_LIGHTGBM_FILE = "model.txt"
_LIBTORCH_FILE = "model.pt"
_PREPROCESSING_FILE = "preprocessing.json"


class ServingError(LockgateError):
    """Serving refused an operation: a model folder is invalid, or Triton failed a request."""


def _fix(pipeline: str, version: str) -> str:
    return (
        f"remove the folder and write it again with lockgate.serving.model_repository.write_model_version("
        f"pipeline={pipeline!r}, version={version!r})"
    )


# --------------------------------------------------------------------------------------------
# expected content
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Folder:
    """One Triton model folder lockgate writes for a version."""

    name: str
    role: str  # "served" (CPU), "wire", "model" (GPU components), "ensemble" (GPU served)
    layout: dict[str, str]  # relative posix path -> lock-record file name
    generated: dict[str, bytes]  # relative posix path -> exact bytes
    dirs: tuple[str, ...] = field(default=())  # folders that must exist (possibly empty)


def _options(
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


def _plan(
    *,
    model_name: str,
    kind: str,
    lock_files: Mapping[str, str],
    n_features: int,
    schema: WireSchema,
    options: Mapping[str, Any],
    output: ModelOutput,
) -> list[_Folder]:
    """Every folder of a version for the recorded options, composing models first.

    ``output`` (the task and output width, read from the version's own ``preprocessing.json``)
    sets the output dims of every config: ``[1]`` for binary and regression, ``[k]`` for a
    multiclass model of k classes.
    """
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
            _Folder(
                model_name,
                "served",
                _all_files(lock_files),
                _python_generated(config, schema, kind),
            )
        ]
    if options["target"] != "gpu" or options["fault"]:
        raise ServingError(f"options {dict(options)!r} name no known target without faults")
    configs = gpu_config(
        **common, wire_width=schema.width, n_features=n_features, gpus=tuple(options["gpus"])
    )
    wire_name, inner_name = gpu_component_names(model_name)
    weights = _TORCHSCRIPT_FILE if kind == "torch" else _LIGHTGBM_FILE
    served_as = _LIBTORCH_FILE if kind == "torch" else _LIGHTGBM_FILE
    return [
        _Folder(
            wire_name,
            "wire",
            _all_files(lock_files),
            _python_generated(configs[wire_name], schema, kind),
        ),
        _Folder(
            inner_name,
            "model",
            {f"{TRITON_VERSION}/{served_as}": weights},
            {_CONFIG_FILE: configs[inner_name].encode("utf-8")},
        ),
        _Folder(
            model_name,
            "ensemble",
            {},
            {_CONFIG_FILE: configs[model_name].encode("utf-8")},
            dirs=(TRITON_VERSION,),
        ),
    ]


def _n_features(preprocessing: bytes, *, where: str) -> int:
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


def _output(preprocessing: bytes, *, where: str) -> ModelOutput:
    """The version's task and output width from its ``preprocessing.json``."""
    try:
        return model_output(json.loads(preprocessing))
    except (LockgateError, ValueError) as exc:
        raise ServingError(
            f"{where} has no readable task in its preprocessing.json ({exc}); rule: the model's "
            "preprocessing.json states its task and classes; fix: restore the model version in "
            "the registry"
        ) from exc


def _wire_schema(
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


def _kind(record: Mapping[str, Any], pipeline: str, version: str) -> str:
    kind = str(record.get("trainer", {}).get("kind"))
    try:
        return check_model_kind(kind)
    except SpecError as exc:
        raise ServingError(f"{pipeline}/{version} cannot be served: {exc}") from exc


def _manifest(
    *,
    pipeline: str,
    version: str,
    model_name: str,
    kind: str,
    n_features: int,
    schema: WireSchema,
    options: Mapping[str, Any],
    folder: _Folder,
    lock_files: Mapping[str, str],
) -> dict[str, Any]:
    return {
        "format": MANIFEST_FORMAT,
        "pipeline": pipeline,
        "version": version,
        "model_name": model_name,
        "folder": folder.name,
        "role": folder.role,
        "kind": kind,
        "n_features": n_features,
        "wire": schema.to_dict(),
        "options": dict(options),
        "files": {
            path: {"source": source, "sha256": lock_files[source]}
            for path, source in sorted(folder.layout.items())
        },
        "generated": {path: sha256_bytes(data) for path, data in sorted(folder.generated.items())},
    }


def _planned(
    *,
    pipeline: str,
    version: str,
    model_name: str,
    kind: str,
    lock_files: Mapping[str, str],
    n_features: int,
    schema: WireSchema,
    options: Mapping[str, Any],
    output: ModelOutput,
) -> list[tuple[_Folder, dict[str, Any]]]:
    """Every folder of a version with the manifest it must carry (the writer writes these, the
    verifier expects them)."""
    plan = _plan(
        model_name=model_name,
        kind=kind,
        lock_files=lock_files,
        n_features=n_features,
        schema=schema,
        options=options,
        output=output,
    )
    return [
        (
            folder,
            _manifest(
                pipeline=pipeline,
                version=version,
                model_name=model_name,
                kind=kind,
                n_features=n_features,
                schema=schema,
                options=options,
                folder=folder,
                lock_files=lock_files,
            ),
        )
        for folder in plan
    ]


def _manifest_bytes(manifest: Mapping[str, Any]) -> bytes:
    return canonical_json(dict(manifest)) + b"\n"


def model_folders(model_name: str, *, target: str) -> list[str]:
    """The Triton model folders one version occupies in a repository, served model last.

    Args:
        model_name: The served model name (:func:`lockgate.serving.triton_config.triton_model_name`).
        target: ``"cpu"`` or ``"gpu"``.

    Returns:
        ``[model_name]`` on CPU; ``[<name>-wire, <name>-model, model_name]`` on GPU.

    Raises:
        ServingError: For an unknown target.
        SpecError: For a name not built by ``triton_model_name``.

    Example:
        >>> model_folders("fraud_lgbm-1df59d62da45", target="gpu")
        ['fraud_lgbm-1df59d62da45-wire', 'fraud_lgbm-1df59d62da45-model', 'fraud_lgbm-1df59d62da45']
    """
    if target == "cpu":
        split_triton_model_name(model_name)
        return [model_name]
    if target == "gpu":
        return [*gpu_component_names(model_name), model_name]
    raise ServingError(
        f"target {target!r} is unknown; rule: 'cpu' (python backend) or 'gpu' (ensemble of "
        "the python wire step and FIL / libtorch); fix: pass one of them"
    )


# --------------------------------------------------------------------------------------------
# writing
# --------------------------------------------------------------------------------------------


def write_model_version(
    registry: ArtifactRegistry,
    repo_dir: str | Path,
    *,
    pipeline: str,
    version: str,
    target: str = "cpu",
    fault: str | None = None,
    max_batch_size: int = 1024,
    instances: int = 1,
    gpus: Sequence[int] = (0,),
    warmup: bool = True,
) -> Path:
    """Writes one model version into a Triton model repository, atomically and once.

    The files come from ``registry.model_files`` (each verified against the lock record); the
    wire schema (``wire.json``) from the manifest of the version's snapshot
    (:func:`lockgate.serving.wire.wire_schema_for_version`), checked against the version's
    preprocessing (feature kinds, no code24 collision in a vocabulary). Each folder is
    assembled under ``<repo>/.tmp-<name>-<random>/``, every file and folder is fsynced, and the
    whole folder is renamed into place, so Triton never sees half a model; on GPU the composing
    models are written before the ensemble.

    Args:
        registry: The artifact registry holding the version and its snapshot manifest.
        repo_dir: The model repository folder (created when missing).
        pipeline: Pipeline name.
        version: Model version id.
        target: ``"cpu"`` (python backend) or ``"gpu"`` (ensemble: python wire step, then FIL /
            libtorch; NGC image).
        fault: Fault-drill spec such as ``"sleep_ms=80"`` (CPU target only; tests and drills).
        max_batch_size: Triton ``max_batch_size``.
        instances: Model instances (per GPU on the GPU target).
        gpus: GPU indices (GPU target only).
        warmup: Whether the configs carry a zero-data warmup sample.

    Returns:
        The served model's folder ``<repo>/<pipeline>-<version>``.

    Raises:
        ServingError: When a folder exists with different content (model folders are
            immutable), or the version cannot be served (unsupported trainer, missing files, no
            wire schema, a vocabulary collision).
        ArtifactError: When the registry refuses the version (missing, tampered).
        SpecError: For an invalid option.
    """
    if target not in ("cpu", "gpu"):
        raise ServingError(
            f"target {target!r} is unknown; rule: 'cpu' (python backend) or 'gpu' (FIL / "
            "libtorch); fix: pass one of them"
        )
    if fault and target != "cpu":
        raise ServingError(
            f"fault {fault!r} was given for target {target!r}; rule: fault drills run in the "
            "python backend (target='cpu') only; fix: drop fault= or use target='cpu'"
        )
    parse_fault(fault)
    model_name = triton_model_name(pipeline, version)
    record = registry.lock_record(pipeline, version)
    kind = _kind(record, pipeline, version)
    files = registry.model_files(pipeline, version)
    lock_files: dict[str, str] = dict(record["artifact"]["files"])
    weights = {"torch": _TORCHSCRIPT_FILE, "lightgbm": _LIGHTGBM_FILE}.get(
        kind, record["artifact"]["weights_file"]
    )
    required = [_PREPROCESSING_FILE, weights]
    missing = [name for name in required if name not in files]
    if missing:
        raise ServingError(
            f"{pipeline}/{version} lacks {missing} (it has {sorted(files)}); rule: a {kind} "
            f"version needs {required} to be served; fix: rebuild it with a lockgate that "
            "exports them (`lockgate reproduce`)"
        )
    where = f"{pipeline}/{version}"
    n_features = _n_features(files[_PREPROCESSING_FILE], where=where)
    schema = _wire_schema(registry, files[_PREPROCESSING_FILE], pipeline=pipeline, version=version)
    output = _output(files[_PREPROCESSING_FILE], where=where)
    options = _options(
        target=target,
        fault=fault,
        max_batch_size=max_batch_size,
        instances=instances,
        gpus=gpus,
        warmup=warmup,
    )
    plan = _planned(
        pipeline=pipeline,
        version=version,
        model_name=model_name,
        kind=kind,
        lock_files=lock_files,
        n_features=n_features,
        schema=schema,
        options=options,
        output=output,
    )
    repo = Path(repo_dir)
    repo.mkdir(parents=True, exist_ok=True)
    for folder, manifest in plan:
        content: dict[str, bytes] = {path: files[source] for path, source in folder.layout.items()}
        content.update(folder.generated)
        content[MANIFEST_FILE] = _manifest_bytes(manifest)
        _write_folder(repo, folder, content, pipeline=pipeline, version=version)
    return repo / model_name


def _write_folder(
    repo: Path, folder: _Folder, content: Mapping[str, bytes], *, pipeline: str, version: str
) -> None:
    final = repo / folder.name
    if os.path.lexists(final):
        _check_identical(final, folder, content, pipeline=pipeline, version=version)
        return
    staging = repo / f".tmp-{folder.name}-{secrets.token_hex(6)}"
    staging.mkdir()
    try:
        for rel in folder.dirs:
            (staging / rel).mkdir(parents=True, exist_ok=True)
        for rel, data in sorted(content.items()):
            path = staging / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(path, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
        subfolders = sorted({p.parent for p in (staging / rel for rel in content)} - {staging})
        for sub in [*subfolders, *(staging / rel for rel in folder.dirs), staging]:
            fsync_path(sub)
        try:
            os.rename(staging, final)
        except OSError:
            if not os.path.lexists(final):
                raise
            # another writer won the race: accept its folder only if it is identical
            _check_identical(final, folder, content, pipeline=pipeline, version=version)
            return
        fsync_path(repo)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _check_identical(
    final: Path, folder: _Folder, content: Mapping[str, bytes], *, pipeline: str, version: str
) -> None:
    if final.is_symlink() or not final.is_dir():
        raise ServingError(
            f"{final} exists but is a symlink or not a folder; rule: a model folder is a real "
            f"folder inside the repository; fix: {_fix(pipeline, version)}"
        )
    actual = _scan(final, pipeline=pipeline, version=version)
    differing = sorted(
        rel
        for rel in set(actual) | set(content)
        if rel not in actual
        or rel not in content
        or sha256_bytes(actual[rel].read_bytes()) != sha256_bytes(content[rel])
    )
    differing += [f"{rel}/" for rel in folder.dirs if not (final / rel).is_dir()]
    if differing:
        raise ServingError(
            f"model folder {final} already exists with different content ({differing}); rule: "
            "a model folder is immutable, one per model version and options (fault drills and "
            f"targets need their own repository); fix: {_fix(pipeline, version)} if it is "
            "damaged, or write into another repository"
        )


# --------------------------------------------------------------------------------------------
# verifying
# --------------------------------------------------------------------------------------------


def _scan(folder: Path, *, pipeline: str, version: str) -> dict[str, Path]:
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
                        f"{_fix(pipeline, version)}"
                    )
                if entry.name.startswith(".tmp-"):
                    raise ServingError(
                        f"{path} is a temporary entry: the folder is half-written; rule: model "
                        "folders appear complete, by rename; fix: "
                        f"{_fix(pipeline, version)}"
                    )
                if stat.S_ISDIR(info.st_mode):
                    pending.append(path)
                elif stat.S_ISREG(info.st_mode):
                    found[rel] = path
                else:
                    raise ServingError(
                        f"{path} is not a regular file or folder; rule: a model folder holds "
                        f"plain files only; fix: {_fix(pipeline, version)}"
                    )
    return found


def _safe_rel(rel: Any, *, folder: Path, pipeline: str, version: str) -> str:
    parts = PurePosixPath(str(rel)).parts
    if (
        not isinstance(rel, str)
        or not parts
        or PurePosixPath(rel).is_absolute()
        or any(p in ("..", ".", "") for p in parts)
        or "\\" in rel
        or not (folder / rel).resolve().is_relative_to(folder.resolve())
    ):
        raise ServingError(
            f"{folder / MANIFEST_FILE} lists the path {rel!r}, which leaves the model folder; "
            "rule: manifest paths are relative, without '..', inside the folder; fix: "
            f"{_fix(pipeline, version)}"
        )
    return rel


def verify_model_folder(
    registry: ArtifactRegistry, repo_dir: str | Path, *, pipeline: str, version: str
) -> None:
    """Checks a version's model folders against the registry before Triton loads them.

    The served folder's manifest names the target; every folder of that target is checked
    (CPU: one; GPU: ``-wire``, ``-model`` and the ensemble). Refused: a missing folder or
    manifest (half-written), a ``.tmp-*`` entry, a symlink anywhere (the folder itself
    included), a path resolving outside the repository, a special file, a missing or extra file,
    a model file whose sha256 differs from the lock record, a manifest that disagrees with the
    lock record or is not exactly what lockgate writes, and a generated file (``config.pbtxt``,
    ``1/model.py``, ``1/wire.json``, ``1/__pycache__``) that is not exactly what lockgate
    generates for the recorded options and the registry's snapshot manifest.

    Args:
        registry: The artifact registry holding the version's lock record and snapshot manifest.
        repo_dir: The model repository folder.
        pipeline: Pipeline name.
        version: Model version id.

    Raises:
        ServingError: Naming the offending file, the rule and the fix.
        ArtifactError: When the registry has no (valid) lock record for the version.
    """
    model_name = triton_model_name(pipeline, version)
    record = registry.lock_record(pipeline, version)
    kind = _kind(record, pipeline, version)
    lock_files: dict[str, str] = dict(record["artifact"]["files"])
    repo = Path(repo_dir)
    served = _existing_folder(repo, model_name, pipeline=pipeline, version=version)
    served_files = _scan(served, pipeline=pipeline, version=version)
    manifest = _read_manifest(served, served_files, pipeline=pipeline, version=version, kind=kind)
    options = manifest["options"]
    target = options.get("target")
    if target not in ("cpu", "gpu"):
        raise ServingError(f"{served / MANIFEST_FILE} has an unknown target {target!r}")
    if _PREPROCESSING_FILE not in lock_files:
        raise ServingError(
            f"the lock record of {pipeline}/{version} lists no {_PREPROCESSING_FILE}; rule: a "
            f"served version carries its preprocessing; fix: {_fix(pipeline, version)} after "
            "rebuilding the version"
        )
    preprocessing = _registry_file(registry, pipeline, version, _PREPROCESSING_FILE, lock_files)
    n_features = _n_features(preprocessing, where=f"{pipeline}/{version}")
    output = _output(preprocessing, where=f"{pipeline}/{version}")
    schema = _wire_schema(registry, preprocessing, pipeline=pipeline, version=version)
    try:
        plan = _planned(
            pipeline=pipeline,
            version=version,
            model_name=model_name,
            kind=kind,
            lock_files=lock_files,
            n_features=n_features,
            schema=schema,
            options=options,
            output=output,
        )
    except (LockgateError, KeyError, TypeError) as exc:
        raise ServingError(
            f"{served / MANIFEST_FILE} records options {options!r} that lockgate cannot "
            f"generate ({exc}); rule: the options are those of write_model_version; fix: "
            f"{_fix(pipeline, version)}"
        ) from exc
    for folder, expected_manifest in plan:
        if folder.name == model_name:
            path, actual = served, served_files
        else:
            path = _existing_folder(repo, folder.name, pipeline=pipeline, version=version)
            actual = _scan(path, pipeline=pipeline, version=version)
        _verify_folder(
            path,
            folder,
            actual,
            expected_manifest=expected_manifest,
            lock_files=lock_files,
            pipeline=pipeline,
            version=version,
            kind=kind,
        )


def _existing_folder(repo: Path, name: str, *, pipeline: str, version: str) -> Path:
    folder = repo / name
    if not os.path.lexists(folder):
        stale = sorted(p.name for p in repo.glob(f".tmp-{name}-*")) if repo.is_dir() else []
        hint = f" (an interrupted write left {stale}: remove it)" if stale else ""
        raise ServingError(
            f"model folder {folder} does not exist{hint}; rule: a version is written to the "
            "repository before it is loaded; fix: call lockgate.serving.model_repository.write_model_version("
            f"pipeline={pipeline!r}, version={version!r})"
        )
    if folder.is_symlink() or not folder.is_dir():
        raise ServingError(
            f"{folder} is a symlink or not a folder; rule: a model folder is a real folder "
            f"inside the repository; fix: {_fix(pipeline, version)}"
        )
    if not folder.resolve().is_relative_to(repo.resolve()):
        raise ServingError(
            f"{folder} resolves to {folder.resolve()}, outside the repository {repo.resolve()}; "
            f"rule: models are served from inside the repository; fix: {_fix(pipeline, version)}"
        )
    return folder


def _read_manifest(
    folder: Path, actual: Mapping[str, Path], *, pipeline: str, version: str, kind: str
) -> dict[str, Any]:
    if MANIFEST_FILE not in actual:
        raise ServingError(
            f"{folder} has no {MANIFEST_FILE}: it is half-written or was not written by lockgate; "
            f"rule: every model folder carries its manifest; fix: {_fix(pipeline, version)}"
        )
    try:
        manifest = json.loads(actual[MANIFEST_FILE].read_bytes())
        options = manifest["options"]
        listed = manifest["files"]
        identity = (manifest["format"], manifest["pipeline"], manifest["version"], manifest["kind"])
        if not isinstance(listed, dict) or not isinstance(options, dict):
            raise TypeError("files and options must be objects")
    except (ValueError, KeyError, TypeError) as exc:
        raise ServingError(
            f"{folder / MANIFEST_FILE} is unreadable ({type(exc).__name__}: {exc}); rule: it is "
            f"the manifest lockgate wrote; fix: {_fix(pipeline, version)}"
        ) from exc
    if identity != (MANIFEST_FORMAT, pipeline, version, kind):
        raise ServingError(
            f"{folder / MANIFEST_FILE} describes {identity}, not ({MANIFEST_FORMAT!r}, "
            f"{pipeline!r}, {version!r}, {kind!r}); rule: the manifest belongs to this version "
            f"(folders written before the wire format have an older format); fix: "
            f"{_fix(pipeline, version)}"
        )
    return dict(manifest)


def _registry_file(
    registry: ArtifactRegistry,
    pipeline: str,
    version: str,
    name: str,
    lock_files: Mapping[str, str],
) -> bytes:
    data = registry.read_bytes(f"{registry.model_prefix(pipeline, version)}/{name}")
    if sha256_bytes(data) != lock_files[name]:
        raise ServingError(
            f"the registry's {name} of {pipeline}/{version} does not hash to its lock record; "
            "rule: served files equal the locked ones; fix: restore the version in the registry "
            f"(`lockgate reproduce {pipeline} {version}`)"
        )
    return data


def _verify_folder(
    path: Path,
    folder: _Folder,
    actual: Mapping[str, Path],
    *,
    expected_manifest: Mapping[str, Any],
    lock_files: Mapping[str, str],
    pipeline: str,
    version: str,
    kind: str,
) -> None:
    manifest = _read_manifest(path, actual, pipeline=pipeline, version=version, kind=kind)
    listed = manifest["files"]
    for rel in listed:
        _safe_rel(rel, folder=path, pipeline=pipeline, version=version)
    for rel, source in folder.layout.items():
        entry = listed.get(rel)
        if not isinstance(entry, dict) or (entry.get("source"), entry.get("sha256")) != (
            source,
            lock_files[source],
        ):
            raise ServingError(
                f"{path / MANIFEST_FILE} lists {rel!r} as {entry!r}, the lock record says "
                f"{source!r} with sha256 {lock_files[source][:16]}; rule: the manifest repeats "
                f"the lock record; fix: {_fix(pipeline, version)}"
            )
    if set(listed) != set(folder.layout):
        raise ServingError(
            f"{path / MANIFEST_FILE} lists {sorted(set(listed) - set(folder.layout))} beyond the "
            f"lock record's files; rule: only the version's files are served; fix: "
            f"{_fix(pipeline, version)}"
        )
    expected = {*folder.layout, *folder.generated, MANIFEST_FILE}
    extra = sorted(set(actual) - expected)
    if extra:
        raise ServingError(
            f"{path} holds extra files {extra}; rule: a model folder holds exactly "
            f"{sorted(expected)}; fix: {_fix(pipeline, version)}"
        )
    missing = sorted(expected - set(actual)) + [
        f"{rel}/" for rel in folder.dirs if not (path / rel).is_dir()
    ]
    if missing:
        raise ServingError(
            f"{path} misses {missing}: it is half-written or damaged; rule: every file of "
            f"the version is present; fix: {_fix(pipeline, version)}"
        )
    for rel, source in sorted(folder.layout.items()):
        digest = sha256_bytes(actual[rel].read_bytes())
        if digest != lock_files[source]:
            raise ServingError(
                f"{actual[rel]} has sha256 {digest[:16]}, the lock record of {pipeline}/{version} "
                f"says {lock_files[source][:16]} for {source!r}: the file was tampered with or "
                f"damaged; rule: served bytes equal the registry's; fix: "
                f"{_fix(pipeline, version)}"
            )
    for rel, data in folder.generated.items():
        if actual[rel].read_bytes() != data:
            raise ServingError(
                f"{actual[rel]} differs from what lockgate generates for the options that "
                f"{path / MANIFEST_FILE} records ({manifest['options']!r}) and the version's "
                f"wire schema: {rel} was edited, or the manifest's options were; rule: "
                f"generated files and manifests are not edited by hand; fix: "
                f"{_fix(pipeline, version)}"
            )
    if actual[MANIFEST_FILE].read_bytes() != _manifest_bytes(expected_manifest):
        raise ServingError(
            f"{path / MANIFEST_FILE} differs from the manifest lockgate writes for this version "
            f"and options: it was edited; rule: manifests are not edited by hand; fix: "
            f"{_fix(pipeline, version)}"
        )


def load_version(
    *, triton: TritonServer, registry: ArtifactRegistry, pipeline: str, version: str
) -> str:
    """Verifies a version's written model folders, then loads the served model into Triton.

    On GPU the served model is the ensemble; Triton loads its composing models with it.

    Args:
        triton: The server; its ``repo_dir`` must be the repository it serves from.
        registry: The artifact registry holding the version's lock record.
        pipeline: Pipeline name.
        version: Model version id.

    Returns:
        The Triton model name clients call (``INPUT__0``: the pipeline's wire matrix).

    Raises:
        ServingError: When the server has no local repository, the folder fails
            :func:`verify_model_folder` (Triton never sees it) or Triton cannot load it.
    """
    repo_dir = triton.repo_dir
    if repo_dir is None:
        raise ServingError(
            f"{type(triton).__name__} at {triton.url} has no repo_dir; rule: a model folder is "
            "verified against the lock record before each load; fix: set repo_dir to the "
            "(mounted) model repository the server reads"
        )
    name = triton_model_name(pipeline, version)
    triton.load(
        name,
        verify=lambda: verify_model_folder(registry, repo_dir, pipeline=pipeline, version=version),
    )
    return name


# --------------------------------------------------------------------------------------------
# infra validation
# --------------------------------------------------------------------------------------------


class _WireClient:
    """Sends wire matrices to one model over HTTP, NaN (missing values) included.

    ``TritonServer.infer`` checks for the old preprocessed interface and refuses non-finite
    values, but NaN marks a missing value on the wire: infra validation talks to the server
    through its own ``tritonclient`` connection (the server's ``url`` and ``ssl``).
    """

    def __init__(self, triton: TritonServer, model_name: str) -> None:
        import tritonclient.http as httpclient

        self.model_name = model_name
        self.url = triton.url
        self._http = httpclient
        self._client = httpclient.InferenceServerClient(
            url=triton.url,
            ssl=bool(triton.ssl),
            connection_timeout=float(triton.timeout_s),
            network_timeout=float(triton.timeout_s),
        )
        self.max_batch_size = 0

    def start(self) -> None:
        config = self._call("describe", lambda: self._client.get_model_config(self.model_name))
        self.max_batch_size = int(config.get("max_batch_size", 0))

    def _call(self, what: str, fn: Any) -> Any:
        from tritonclient.utils import InferenceServerException

        try:
            return fn()
        except InferenceServerException as exc:
            raise ServingError(
                f"Triton at {self.url} refused to {what} {self.model_name!r}: {exc.message()}; "
                "fix: read the server log and the model's config.pbtxt"
            ) from exc
        except (OSError, ConnectionError) as exc:
            raise ServingError(
                f"Triton at {self.url} is unreachable while trying to {what} "
                f"{self.model_name!r} ({exc}); rule: the server must be running; fix: restart it"
            ) from exc

    def infer(self, x: npt.NDArray[np.float32], *, step: int) -> npt.NDArray[np.float32]:
        """The model's outputs for the rows of ``x``, shape ``(n, width)``."""
        width = 0
        if self.max_batch_size > 0:
            step = min(step, self.max_batch_size)
        parts: list[npt.NDArray[np.float32]] = []
        for start in range(0, x.shape[0], step):
            chunk = np.ascontiguousarray(x[start : start + step], dtype=np.float32)
            tensor = self._http.InferInput(INPUT_NAME, list(chunk.shape), "FP32")
            tensor.set_data_from_numpy(chunk, binary_data=True)
            wanted = self._http.InferRequestedOutput(OUTPUT_NAME, binary_data=True)
            result = self._call(
                "infer with",
                lambda t=tensor, w=wanted: self._client.infer(
                    self.model_name, inputs=[t], outputs=[w]
                ),
            )
            out = result.as_numpy(OUTPUT_NAME)
            n = chunk.shape[0]
            if out is None or out.size == 0 or out.size % n or (parts and out.size // n != width):
                raise ServingError(
                    f"{self.model_name!r} returned {None if out is None else out.shape} for "
                    f"{n} rows; rule: the same number of values (the output width: 1, or k "
                    "class probabilities) for every row; fix: check the model's config.pbtxt "
                    "and model.py"
                )
            width = out.size // n
            parts.append(np.asarray(out, dtype=np.float32).reshape(n, width))
        return np.concatenate(parts) if parts else np.empty((0, 1), dtype=np.float32)

    def close(self) -> None:
        self._client.close()


def infra_validate(
    *,
    triton: TritonServer,
    registry: ArtifactRegistry,
    pipeline: str,
    version: str,
    frame: pd.DataFrame,
    n_rows: int = 500,
    tolerance: float = 1e-5,
    p99_budget_ms: float = 50.0,
    requests: int = 200,
    batch_size: int = 256,
    fault: str | None = None,
) -> dict[str, Any]:
    """Serves a candidate in a sandbox Triton and checks integrity, outputs and latency.

    Steps: write the version's CPU folder into the sandbox repository (a no-op when present),
    verify it, load it; send the first ``n_rows`` rows of ``frame`` **wire-encoded**
    (:func:`lockgate.serving.wire.encode` with the version's wire schema, as clients send them) in
    batches of ``batch_size`` and compare with ``predict(frame)`` in-process, reshaped to
    ``(n, output_width)`` (``[k]`` class probabilities for a multiclass model, ``[1]``
    otherwise); time
    ``requests`` single-row requests (after a few untimed ones); unload. Model problems become
    failures in the result; nothing is raised for them.

    Args:
        triton: A started server dedicated to validation (its ``repo_dir`` is the sandbox
            repository).
        registry: The artifact registry holding the version.
        pipeline: Pipeline name.
        version: Model version id.
        frame: Rows with the pipeline's wire columns (e.g. the held-out split of its snapshot).
        n_rows: Rows compared (the first ``n_rows`` of ``frame``).
        tolerance: Largest allowed ``|served - predict|``; for a regression model relative to
            ``max(1, |predict|)`` (float32 rounding grows with the value).
        p99_budget_ms: Largest allowed p99 latency of a single-row request, in ms.
        requests: Single-row requests timed.
        batch_size: Rows per request in the comparison.
        fault: Fault drill written into the sandbox folder (tests and drills only).

    Returns:
        A JSON-able dict: ``passed``, ``model``, ``pipeline``, ``version``, ``rows``,
        ``max_abs_diff``, ``p50_ms``, ``p99_ms``, ``requests``, ``load_s``, ``budget``
        (``tolerance``, ``p99_ms``) and ``failures`` (``[{"check", "message"}]``; checks:
        ``integrity``, ``load``, ``outputs``, ``inference``, ``latency``, ``unload``).

    Raises:
        ServingError: When the sandbox server is not running or has no repository.
        EmptyDataError: When ``frame`` has no rows.
        DataError: For a non-positive ``n_rows``, ``requests`` or ``batch_size``.
    """
    from lockgate.lineage.steps import load_trained_model

    for name, value in (("n_rows", n_rows), ("requests", requests), ("batch_size", batch_size)):
        if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
            raise DataError(f"{name}={value!r} is invalid; rule: an integer > 0; fix: pass e.g. 1")
    if len(frame) == 0:
        raise EmptyDataError(
            f"infra validation of {pipeline}/{version} got a frame with no rows; rule: outputs "
            "are compared on real rows; fix: pass the held-out split"
        )
    if triton.repo_dir is None or not triton.health():
        raise ServingError(
            f"sandbox Triton at {triton.url} is not healthy or has no repo_dir; rule: infra "
            "validation needs a started local server dedicated to it; fix: start a "
            "LocalTritonServer and pass it as triton="
        )
    model_name = triton_model_name(pipeline, version)
    failures: list[dict[str, str]] = []
    report: dict[str, Any] = {
        "passed": False,
        "model": model_name,
        "pipeline": pipeline,
        "version": version,
        "rows": 0,
        "max_abs_diff": None,
        "p50_ms": None,
        "p99_ms": None,
        "requests": 0,
        "load_s": None,
        "budget": {"tolerance": float(tolerance), "p99_ms": float(p99_budget_ms)},
        "failures": failures,
    }
    try:
        model = load_trained_model(registry, pipeline, version)
        schema = wire_schema_for_version(registry, pipeline, version)
        write_model_version(
            registry, triton.repo_dir, pipeline=pipeline, version=version, fault=fault
        )
        verify_model_folder(registry, triton.repo_dir, pipeline=pipeline, version=version)
    except LockgateError as exc:
        failures.append({"check": "integrity", "message": str(exc)})
        return report
    started = time.perf_counter()
    try:
        load_version(triton=triton, registry=registry, pipeline=pipeline, version=version)
    except LockgateError as exc:
        failures.append({"check": "load", "message": str(exc)})
        return report
    report["load_s"] = round(time.perf_counter() - started, 4)
    client: _WireClient | None = None
    try:
        rows = frame.iloc[:n_rows]
        x = encode(rows, schema)
        width = model.output_width
        expected = model.predict(rows).reshape(len(rows), width)
        client = _WireClient(triton, model_name)
        client.start()
        served = np.asarray(client.infer(x, step=batch_size), dtype=np.float64)
        report["rows"] = len(x)
        if served.size == expected.size:  # the client may hand the outputs back flattened
            served = served.reshape(expected.shape)
        if served.shape != expected.shape or not np.isfinite(served).all():
            failures.append(
                {
                    "check": "outputs",
                    "message": (
                        f"{model_name} returned shape {served.shape} (finite: "
                        f"{bool(np.isfinite(served).all())}) for {len(x)} rows of a "
                        f"{model.task} model; rule: {width} finite value(s) per row "
                        f"(TrainedModel.predict); fix: check the served files, config.pbtxt "
                        "and model.py"
                    ),
                }
            )
        else:
            diff = np.abs(served - expected)
            allowed = np.full(diff.shape, float(tolerance))
            if model.task == "regression":
                allowed *= np.maximum(1.0, np.abs(expected))
            worst = np.unravel_index(np.argmax(diff - allowed), diff.shape)
            bad_row, bad_col = int(worst[0]), int(worst[1])
            report["max_abs_diff"] = float(diff.max())
            if diff[bad_row, bad_col] > allowed[bad_row, bad_col]:
                column = f", column {bad_col} ({model.classes[bad_col]!r})" if width > 1 else ""
                failures.append(
                    {
                        "check": "outputs",
                        "message": (
                            f"{model_name} differs from predict by {diff[bad_row, bad_col]:.3g} "
                            f"> tolerance {allowed[bad_row, bad_col]:.3g} (row {bad_row}{column}: "
                            f"served {served[bad_row, bad_col]:.6f}, in-process "
                            f"{expected[bad_row, bad_col]:.6f}); "
                            "rule: the served model scores wire-encoded rows like the "
                            "registry's model scores the raw rows; fix: rewrite the model "
                            "folder from the registry, or check the serving runtime's versions"
                        ),
                    }
                )
        for i in range(min(5, requests)):  # untimed: connection set-up, caches
            client.infer(x[i % len(x) : i % len(x) + 1], step=1)
        latencies: list[float] = []
        for i in range(requests):
            row = x[i % len(x) : i % len(x) + 1]
            t0 = time.perf_counter()
            client.infer(row, step=1)
            latencies.append((time.perf_counter() - t0) * 1000.0)
        report["requests"] = len(latencies)
        report["p50_ms"] = round(float(np.percentile(latencies, 50)), 3)
        report["p99_ms"] = round(float(np.percentile(latencies, 99)), 3)
        if report["p99_ms"] > p99_budget_ms:
            failures.append(
                {
                    "check": "latency",
                    "message": (
                        f"{model_name} p99 latency {report['p99_ms']:.1f} ms over {requests} "
                        f"single-row requests exceeds the budget of {p99_budget_ms:g} ms (p50 "
                        f"{report['p50_ms']:.1f} ms); rule: a candidate answers within "
                        "p99_budget_ms in the sandbox; fix: make the model cheaper (fewer trees, "
                        "smaller network) or raise the budget deliberately"
                    ),
                }
            )
    except LockgateError as exc:
        failures.append({"check": "inference", "message": str(exc)})
    finally:
        if client is not None:
            client.close()
        try:
            triton.unload(model_name, wait=True)
        except LockgateError as exc:
            failures.append({"check": "unload", "message": str(exc)})
    report["passed"] = not failures
    return report
