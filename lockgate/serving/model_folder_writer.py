"""Writing a version into a Triton model repository: every folder appears at once (temp folder,
fsync, rename; the served model last) and is immutable: writing the same version again is a no-op
when the content is identical and is refused otherwise.
"""

from __future__ import annotations

import os
import secrets
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from lockgate._util.fs import fsync_path
from lockgate.lineage.hashing import sha256_bytes
from lockgate.serving.model_folder_plan import (
    LIGHTGBM_FILE,
    MANIFEST_FILE,
    PREPROCESSING_FILE,
    TORCHSCRIPT_FILE,
    ModelFolder,
    ServingError,
    VersionInputs,
    folder_options,
    manifest_bytes,
    model_kind_of,
    planned_folders,
    rewrite_fix,
    scan_folder,
)
from lockgate.serving.triton_config import (
    gpu_component_names,
    parse_fault,
    split_triton_model_name,
    triton_model_name,
)

if TYPE_CHECKING:
    from lockgate.lineage.registry import ArtifactRegistry

__all__ = ["model_folders", "write_model_version"]


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
    kind = model_kind_of(record, pipeline, version)
    files = registry.model_files(pipeline, version)
    lock_files: dict[str, str] = dict(record["artifact"]["files"])
    weights = {"torch": TORCHSCRIPT_FILE, "lightgbm": LIGHTGBM_FILE}.get(
        kind, record["artifact"]["weights_file"]
    )
    required = [PREPROCESSING_FILE, weights]
    missing = [name for name in required if name not in files]
    if missing:
        raise ServingError(
            f"{pipeline}/{version} lacks {missing} (it has {sorted(files)}); rule: a {kind} "
            f"version needs {required} to be served; fix: rebuild it with a lockgate that "
            "exports them (`lockgate reproduce`)"
        )
    inputs = VersionInputs.of(
        registry,
        files[PREPROCESSING_FILE],
        pipeline=pipeline,
        version=version,
        model_name=model_name,
        kind=kind,
        lock_files=lock_files,
    )
    options = folder_options(
        target=target,
        fault=fault,
        max_batch_size=max_batch_size,
        instances=instances,
        gpus=gpus,
        warmup=warmup,
    )
    plan = planned_folders(inputs, options)
    repo = Path(repo_dir)
    repo.mkdir(parents=True, exist_ok=True)
    for folder, manifest in plan:
        content: dict[str, bytes] = {path: files[source] for path, source in folder.layout.items()}
        content.update(folder.generated)
        content[MANIFEST_FILE] = manifest_bytes(manifest)
        _write_folder(repo, folder, content, pipeline=pipeline, version=version)
    return repo / model_name


def _write_folder(
    repo: Path, folder: ModelFolder, content: Mapping[str, bytes], *, pipeline: str, version: str
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
    final: Path, folder: ModelFolder, content: Mapping[str, bytes], *, pipeline: str, version: str
) -> None:
    if final.is_symlink() or not final.is_dir():
        raise ServingError(
            f"{final} exists but is a symlink or not a folder; rule: a model folder is a real "
            f"folder inside the repository; fix: {rewrite_fix(pipeline, version)}"
        )
    actual = scan_folder(final, pipeline=pipeline, version=version)
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
            f"targets need their own repository); fix: {rewrite_fix(pipeline, version)} if it is "
            "damaged, or write into another repository"
        )


# --------------------------------------------------------------------------------------------
# verifying
# --------------------------------------------------------------------------------------------
