"""Verifying a version's model folders before every load, and loading it into Triton.

:func:`verify_model_folder` re-hashes the model files against the registry's lock record and
rebuilds every generated file and the manifest from the options the manifest records; any
missing, extra, symlinked or escaping path is refused. :func:`load_version` verifies, then loads.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from lockgate.errors import LockgateError
from lockgate.lineage.hashing import sha256_bytes
from lockgate.serving.model_folder_plan import (
    MANIFEST_FILE,
    MANIFEST_FORMAT,
    PREPROCESSING_FILE,
    ModelFolder,
    ServingError,
    VersionInputs,
    manifest_bytes,
    model_kind_of,
    planned_folders,
    rewrite_fix,
    scan_folder,
)
from lockgate.serving.triton_config import triton_model_name

if TYPE_CHECKING:
    from lockgate.lineage.registry import ArtifactRegistry
    from lockgate.serving.triton_server import TritonServer

__all__ = ["load_version", "verify_model_folder"]


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
            f"{rewrite_fix(pipeline, version)}"
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
    kind = model_kind_of(record, pipeline, version)
    lock_files: dict[str, str] = dict(record["artifact"]["files"])
    repo = Path(repo_dir)
    served = _existing_folder(repo, model_name, pipeline=pipeline, version=version)
    served_files = scan_folder(served, pipeline=pipeline, version=version)
    manifest = _read_manifest(served, served_files, pipeline=pipeline, version=version, kind=kind)
    options = manifest["options"]
    target = options.get("target")
    if target not in ("cpu", "gpu"):
        raise ServingError(f"{served / MANIFEST_FILE} has an unknown target {target!r}")
    if PREPROCESSING_FILE not in lock_files:
        raise ServingError(
            f"the lock record of {pipeline}/{version} lists no {PREPROCESSING_FILE}; rule: a "
            f"served version carries its preprocessing; fix: {rewrite_fix(pipeline, version)} after "
            "rebuilding the version"
        )
    preprocessing = _registry_file(registry, pipeline, version, PREPROCESSING_FILE, lock_files)
    inputs = VersionInputs.of(
        registry,
        preprocessing,
        pipeline=pipeline,
        version=version,
        model_name=model_name,
        kind=kind,
        lock_files=lock_files,
    )
    try:
        plan = planned_folders(inputs, options)
    except (LockgateError, KeyError, TypeError) as exc:
        raise ServingError(
            f"{served / MANIFEST_FILE} records options {options!r} that lockgate cannot "
            f"generate ({exc}); rule: the options are those of write_model_version; fix: "
            f"{rewrite_fix(pipeline, version)}"
        ) from exc
    for folder, expected_manifest in plan:
        if folder.name == model_name:
            path, actual = served, served_files
        else:
            path = _existing_folder(repo, folder.name, pipeline=pipeline, version=version)
            actual = scan_folder(path, pipeline=pipeline, version=version)
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
            f"inside the repository; fix: {rewrite_fix(pipeline, version)}"
        )
    if not folder.resolve().is_relative_to(repo.resolve()):
        raise ServingError(
            f"{folder} resolves to {folder.resolve()}, outside the repository {repo.resolve()}; "
            f"rule: models are served from inside the repository; fix: {rewrite_fix(pipeline, version)}"
        )
    return folder


def _read_manifest(
    folder: Path, actual: Mapping[str, Path], *, pipeline: str, version: str, kind: str
) -> dict[str, Any]:
    if MANIFEST_FILE not in actual:
        raise ServingError(
            f"{folder} has no {MANIFEST_FILE}: it is half-written or was not written by lockgate; "
            f"rule: every model folder carries its manifest; fix: {rewrite_fix(pipeline, version)}"
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
            f"the manifest lockgate wrote; fix: {rewrite_fix(pipeline, version)}"
        ) from exc
    if identity != (MANIFEST_FORMAT, pipeline, version, kind):
        raise ServingError(
            f"{folder / MANIFEST_FILE} describes {identity}, not ({MANIFEST_FORMAT!r}, "
            f"{pipeline!r}, {version!r}, {kind!r}); rule: the manifest belongs to this version "
            f"(folders written before the wire format have an older format); fix: "
            f"{rewrite_fix(pipeline, version)}"
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
    folder: ModelFolder,
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
                f"the lock record; fix: {rewrite_fix(pipeline, version)}"
            )
    if set(listed) != set(folder.layout):
        raise ServingError(
            f"{path / MANIFEST_FILE} lists {sorted(set(listed) - set(folder.layout))} beyond the "
            f"lock record's files; rule: only the version's files are served; fix: "
            f"{rewrite_fix(pipeline, version)}"
        )
    expected = {*folder.layout, *folder.generated, MANIFEST_FILE}
    extra = sorted(set(actual) - expected)
    if extra:
        raise ServingError(
            f"{path} holds extra files {extra}; rule: a model folder holds exactly "
            f"{sorted(expected)}; fix: {rewrite_fix(pipeline, version)}"
        )
    missing = sorted(expected - set(actual)) + [
        f"{rel}/" for rel in folder.dirs if not (path / rel).is_dir()
    ]
    if missing:
        raise ServingError(
            f"{path} misses {missing}: it is half-written or damaged; rule: every file of "
            f"the version is present; fix: {rewrite_fix(pipeline, version)}"
        )
    for rel, source in sorted(folder.layout.items()):
        digest = sha256_bytes(actual[rel].read_bytes())
        if digest != lock_files[source]:
            raise ServingError(
                f"{actual[rel]} has sha256 {digest[:16]}, the lock record of {pipeline}/{version} "
                f"says {lock_files[source][:16]} for {source!r}: the file was tampered with or "
                f"damaged; rule: served bytes equal the registry's; fix: "
                f"{rewrite_fix(pipeline, version)}"
            )
    for rel, data in folder.generated.items():
        if actual[rel].read_bytes() != data:
            raise ServingError(
                f"{actual[rel]} differs from what lockgate generates for the options that "
                f"{path / MANIFEST_FILE} records ({manifest['options']!r}) and the version's "
                f"wire schema: {rel} was edited, or the manifest's options were; rule: "
                f"generated files and manifests are not edited by hand; fix: "
                f"{rewrite_fix(pipeline, version)}"
            )
    if actual[MANIFEST_FILE].read_bytes() != manifest_bytes(expected_manifest):
        raise ServingError(
            f"{path / MANIFEST_FILE} differs from the manifest lockgate writes for this version "
            f"and options: it was edited; rule: manifests are not edited by hand; fix: "
            f"{rewrite_fix(pipeline, version)}"
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
