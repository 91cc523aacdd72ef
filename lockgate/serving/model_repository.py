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

A repository on object storage (``s3://bucket/prefix``, which Triton reads natively) is
written, verified and loaded the same way by :mod:`lockgate.serving.object_repository`;
:func:`load_version` takes either kind of server repository.

This module is the public face; the code lives in :mod:`~lockgate.serving.model_folder_plan`
(the expected folders and manifest), :mod:`~lockgate.serving.model_folder_writer`,
:mod:`~lockgate.serving.model_folder_verify`, :mod:`~lockgate.serving.object_repository` and
:mod:`~lockgate.serving.infra_validation`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from lockgate.serving import model_folder_verify, object_repository
from lockgate.serving.infra_validation import infra_validate
from lockgate.serving.model_folder_plan import MANIFEST_FILE, MANIFEST_FORMAT, ServingError
from lockgate.serving.model_folder_verify import verify_model_folder
from lockgate.serving.model_folder_writer import model_folders, write_model_version

if TYPE_CHECKING:
    from lockgate.lineage.registry import ArtifactRegistry
    from lockgate.serving.triton_server import TritonServer

__all__ = [
    "MANIFEST_FILE",
    "MANIFEST_FORMAT",
    "ServingError",
    "infra_validate",
    "load_version",
    "model_folders",
    "verify_model_folder",
    "version_written",
    "write_model_version",
    "write_served_version",
]


def load_version(
    *, triton: TritonServer, registry: ArtifactRegistry, pipeline: str, version: str
) -> str:
    """Verifies a version's written model folders, then loads the served model into Triton.

    A server whose ``repo_dir`` is a folder: :func:`lockgate.serving.model_folder_verify.load_version`;
    one whose ``repo_dir`` is ``s3://...``: :func:`lockgate.serving.object_repository.load_version`
    (the folders downloaded and verified, their ETags checked again after the load).

    Returns:
        The Triton model name clients call (``INPUT__0``: the pipeline's wire matrix).

    Raises:
        ServingError: When the folder fails verification (Triton never sees it) or Triton
            cannot load it.
    """
    if triton.object_repository() is not None:
        return object_repository.load_version(
            triton=triton, registry=registry, pipeline=pipeline, version=version
        )
    return model_folder_verify.load_version(
        triton=triton, registry=registry, pipeline=pipeline, version=version
    )


def write_served_version(
    registry: ArtifactRegistry,
    triton: TritonServer,
    *,
    pipeline: str,
    version: str,
    target: str = "cpu",
    max_batch_size: int = 1024,
    instances: int = 1,
) -> str:
    """Write a version into the repository ``triton`` serves from: its folder, or ``s3://``.

    The same folders either way (:func:`write_model_version` for a folder,
    :meth:`~lockgate.serving.object_repository.ObjectModelRepository.write_model_version` for
    object storage, which verifies them before uploading, the manifest last).

    Returns:
        Where the served model's folder is (a path or an ``s3://`` URI).
    """
    repo = triton.object_repository()
    if repo is not None:
        return repo.write_model_version(
            registry,
            pipeline=pipeline,
            version=version,
            target=target,
            max_batch_size=max_batch_size,
            instances=instances,
        )
    if triton.repo_dir is None:
        raise ServingError(
            f"cannot write {pipeline} {version}: the Triton server has no model repository "
            "(repo_dir); fix: give the server its repository folder or s3:// URL"
        )
    return str(
        write_model_version(
            registry,
            triton.repo_dir,
            pipeline=pipeline,
            version=version,
            target=target,
            max_batch_size=max_batch_size,
            instances=instances,
        )
    )


def version_written(triton: TritonServer, model_name: str) -> bool:
    """Whether the repository ``triton`` serves from holds the model folder ``model_name``
    (complete: on object storage, its manifest is there)."""
    from pathlib import Path

    repo = triton.object_repository()
    if repo is not None:
        return f"{model_name}/{MANIFEST_FILE}" in repo.etags(model_name)
    return triton.repo_dir is not None and (Path(triton.repo_dir) / model_name).is_dir()
