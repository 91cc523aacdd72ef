"""The Triton model repository on object storage (S3), which Triton reads natively.

:class:`ObjectModelRepository` writes a model version's folders under ``s3://bucket/prefix`` and
verifies them exactly as the local repository does: the folders are first written and verified
in a private temporary folder by :func:`lockgate.serving.model_repository.write_model_version`
and :func:`~lockgate.serving.model_repository.verify_model_folder` (the registry's files re-hashed
against the lock record, every generated file rebuilt), then uploaded; before every load the
folders are downloaded again and the same verification runs on what is in the bucket.

How a folder appears at once: an object store has no rename, so each folder's files are put
first and its manifest ``lockgate.json`` last, and the served model's folder after its
composing models. A folder without its manifest is half-written: the verification refuses it,
so Triton (explicit model control: it loads only what lockgate asks for, after verifying) never
sees it, and writing the version again completes it. A folder with its manifest is immutable:
writing the same version again is a no-op when the content is identical and is refused
otherwise.

Between the verification and Triton's own download the objects could change: :func:`load_version`
compares each object's ETag after the load with the ones it verified, and unloads the model and
refuses when any differs.

Triton's repository path is ``s3://<bucket>/<prefix>`` on AWS, and
``s3://http://host:port/<bucket>/<prefix>`` on an S3-compatible server
(:meth:`ObjectModelRepository.triton_repository`); its credentials come from the AWS variables
(:meth:`ObjectModelRepository.environment`).

Example:
    >>> repo = ObjectModelRepository(url="s3://models/triton", endpoint_url="http://127.0.0.1:8333")
    >>> repo.triton_repository()
    's3://http://127.0.0.1:8333/models/triton'
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import ConfigDict

from lockgate._util.objectstore import ObjectStoreLocation, conditional_put
from lockgate.serving.model_folder_plan import MANIFEST_FILE, ServingError, rewrite_fix
from lockgate.serving.model_folder_verify import verify_model_folder as verify_local_folder
from lockgate.serving.model_folder_writer import model_folders
from lockgate.serving.model_folder_writer import write_model_version as write_local_version
from lockgate.serving.triton_config import gpu_component_names, triton_model_name

if TYPE_CHECKING:
    from lockgate.lineage.registry import ArtifactRegistry
    from lockgate.serving.triton_server import TritonServer

__all__ = ["ObjectModelRepository", "is_object_url", "load_version"]


def is_object_url(location: str | os.PathLike[str] | None) -> bool:
    """Whether a model repository location is an object-store URL (``s3://...``), not a path.

    Example:
        >>> is_object_url("s3://models/triton"), is_object_url("/srv/models")
        (True, False)
    """
    return isinstance(location, str) and "://" in location


class ObjectModelRepository(ObjectStoreLocation):
    """A Triton model repository under ``s3://bucket/prefix``; see the module doc.

    Attributes:
        url: ``s3://<bucket>/<prefix>``.
        endpoint_url: The S3 endpoint of an S3-compatible server (``http://host:8333``); None:
            ``$AWS_ENDPOINT_URL``, else AWS.
        key: Access key id; None: the AWS SDK's chain (``$AWS_ACCESS_KEY_ID``, roles).
        secret: Secret access key; None: the AWS SDK's chain.
        region: Region; None: the AWS SDK's chain (``$AWS_DEFAULT_REGION``).
    """

    model_config = ConfigDict(frozen=True)

    # ---- addresses --------------------------------------------------------------------------

    def filesystem(self) -> tuple[Any, str]:
        """The s3fs filesystem and the repository's ``bucket/prefix`` in it (one per process)."""
        fs, root = super().filesystem()
        protocol = fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0]
        if protocol not in ("s3", "s3a"):
            raise ServingError(
                f"model repository {self.url!r} is on {protocol}://; rule: lockgate writes "
                "object-store model repositories on S3 (what Triton reads as s3://); fix: "
                "use an s3:// URL or a local folder"
            )
        return fs, root

    def _endpoint(self) -> str | None:
        return (self.endpoint_url or os.environ.get("AWS_ENDPOINT_URL") or "").strip() or None

    def triton_repository(self) -> str:
        """The ``--model-repository`` value Triton understands for this location."""
        path = self.url.split("://", 1)[1].strip("/")
        endpoint = self._endpoint()
        return f"s3://{endpoint.rstrip('/')}/{path}" if endpoint else f"s3://{path}"

    def environment(self) -> dict[str, str]:
        """The AWS variables Triton needs to read the repository (only the configured ones)."""
        env = {
            "AWS_ACCESS_KEY_ID": self.key,
            "AWS_SECRET_ACCESS_KEY": self.secret,
            "AWS_DEFAULT_REGION": self.region,
        }
        return {name: value for name, value in env.items() if value}

    def uri(self, name: str) -> str:
        """``<url>/<name>``: where a model folder lives."""
        return f"{self.url.rstrip('/')}/{name}"

    def ensure(self) -> None:
        """Makes the repository a folder Triton accepts: a folder marker ``<prefix>/`` when the
        prefix holds nothing yet (Triton refuses a repository path that lists no object)."""
        _, root = self.filesystem()
        bucket, _, base = root.partition("/")
        if not base:
            return
        page = self._call("list_objects_v2", Bucket=bucket, Prefix=f"{base}/", MaxKeys=1)
        if not page.get("Contents"):
            self._call("put_object", Bucket=bucket, Key=f"{base}/", Body=b"")

    # ---- objects ----------------------------------------------------------------------------

    def _call(self, method: str, **kwargs: Any) -> Any:
        from fsspec.asyn import sync

        fs, _ = self.filesystem()
        return sync(fs.loop, fs._call_s3, method, **kwargs)

    def _objects(self, folder: str) -> dict[str, str]:
        """``{relative key: ETag}`` of every object in a model folder (``1/``: a folder marker)."""
        _, root = self.filesystem()
        bucket, _, base = root.partition("/")
        prefix = f"{base}/{folder}/" if base else f"{folder}/"
        found: dict[str, str] = {}
        token: str | None = None
        while True:
            more = {"ContinuationToken": token} if token else {}
            page = self._call("list_objects_v2", Bucket=bucket, Prefix=prefix, **more)
            for item in page.get("Contents", []):
                found[item["Key"][len(prefix) :]] = str(item.get("ETag", ""))
            token = page.get("NextContinuationToken")
            if not page.get("IsTruncated") or not token:
                return found

    def _put_marker(self, folder: str, rel_dir: str) -> None:
        _, root = self.filesystem()
        bucket, _, base = root.partition("/")
        key = f"{base}/{folder}/{rel_dir}/" if base else f"{folder}/{rel_dir}/"
        self._call("put_object", Bucket=bucket, Key=key, Body=b"")

    def _download(self, folder: str, objects: dict[str, str], into: Path) -> None:
        fs, root = self.filesystem()
        target = into / folder
        target.mkdir(parents=True, exist_ok=True)
        for rel in sorted(objects):
            local = target / rel
            if not local.resolve().is_relative_to(target.resolve()) or rel.startswith("/"):
                raise ServingError(
                    f"{self.uri(folder)} holds the object {rel!r}, which leaves the folder; "
                    f"rule: a model folder holds plain files inside it; fix: delete the object"
                )
            if rel.endswith("/"):
                local.mkdir(parents=True, exist_ok=True)
                continue
            local.parent.mkdir(parents=True, exist_ok=True)
            local.write_bytes(fs.cat_file(f"{root}/{folder}/{rel}"))

    @staticmethod
    def _local_tree(folder: Path) -> tuple[dict[str, bytes], list[str]]:
        files: dict[str, bytes] = {}
        empty: list[str] = []
        for current, dirs, names in os.walk(folder):
            here = Path(current)
            for name in names:
                files[(here / name).relative_to(folder).as_posix()] = (here / name).read_bytes()
            if here != folder and not dirs and not names:
                empty.append(here.relative_to(folder).as_posix())
        return files, sorted(empty)

    def _candidates(self, model_name: str) -> list[str]:
        return [model_name, *gpu_component_names(model_name)]

    # ---- writing and verifying ----------------------------------------------------------------

    def write_model_version(
        self,
        registry: ArtifactRegistry,
        *,
        pipeline: str,
        version: str,
        target: str = "cpu",
        fault: str | None = None,
        max_batch_size: int = 1024,
        instances: int = 1,
        gpus: Sequence[int] = (0,),
        warmup: bool = True,
    ) -> str:
        """Writes one model version into the repository, once (see the module doc).

        The options are those of :func:`lockgate.serving.model_repository.write_model_version`.

        Returns:
            The served model's folder, ``<url>/<pipeline>-<version>``.

        Raises:
            ServingError: A folder exists with other content (folders are immutable), or the
                version cannot be served.
            ArtifactError: The registry refuses the version (missing, tampered).
        """
        model_name = triton_model_name(pipeline, version)
        with tempfile.TemporaryDirectory(prefix="lockgate-repo-") as tmp:
            write_local_version(
                registry,
                tmp,
                pipeline=pipeline,
                version=version,
                target=target,
                fault=fault,
                max_batch_size=max_batch_size,
                instances=instances,
                gpus=gpus,
                warmup=warmup,
            )
            verify_local_folder(registry, tmp, pipeline=pipeline, version=version)
            for folder in model_folders(model_name, target=target):  # the served model last
                self._upload(Path(tmp) / folder, folder, pipeline=pipeline, version=version)
        return self.uri(model_name)

    def _upload(self, local: Path, folder: str, *, pipeline: str, version: str) -> None:
        fs, root = self.filesystem()
        files, empty = self._local_tree(local)
        existing = self._objects(folder)
        wanted = {*files, *(f"{d}/" for d in empty)}
        if MANIFEST_FILE in existing:
            self._check_identical(folder, files, wanted, existing, pipeline, version)
            return
        for rel in sorted(set(existing) - wanted):  # left by another half-written attempt
            fs.rm_file(f"{root}/{folder}/{rel}")
        for rel in sorted(files):
            if rel != MANIFEST_FILE:
                fs.pipe_file(f"{root}/{folder}/{rel}", files[rel])
        for rel_dir in empty:
            self._put_marker(folder, rel_dir)
        path = f"{root}/{folder}/{MANIFEST_FILE}"
        if not conditional_put(fs, path, files[MANIFEST_FILE], expected=None):
            # another writer committed the folder meanwhile: accept it only if identical
            self._check_identical(folder, files, wanted, self._objects(folder), pipeline, version)

    def _check_identical(
        self,
        folder: str,
        files: dict[str, bytes],
        wanted: set[str],
        existing: dict[str, str],
        pipeline: str,
        version: str,
    ) -> None:
        fs, root = self.filesystem()
        differing = sorted(set(existing) ^ wanted)
        differing += sorted(
            rel
            for rel in set(files) & set(existing)
            if fs.cat_file(f"{root}/{folder}/{rel}") != files[rel]
        )
        if differing:
            raise ServingError(
                f"model folder {self.uri(folder)} already exists with different content "
                f"({differing}); rule: a model folder is immutable, one per model version and "
                f"options (fault drills and targets need their own repository); fix: "
                f"{rewrite_fix(pipeline, version)} if it is damaged, or write into another "
                "repository"
            )

    def verify_model_folder(
        self, registry: ArtifactRegistry, *, pipeline: str, version: str
    ) -> dict[str, str]:
        """Downloads a version's model folders and verifies them like a local repository's.

        The checks are :func:`lockgate.serving.model_repository.verify_model_folder`'s, on the
        bytes in the bucket; errors name the objects by their ``s3://`` URL.

        Returns:
            ``{object key under the repository: ETag}`` of every object verified (what
            :func:`load_version` compares after Triton's load).

        Raises:
            ServingError: Naming the offending object, the rule and the fix.
            ArtifactError: The registry has no (valid) lock record for the version.
        """
        model_name = triton_model_name(pipeline, version)
        seen: dict[str, str] = {}
        with tempfile.TemporaryDirectory(prefix="lockgate-verify-") as tmp:
            for folder in self._candidates(model_name):
                objects = self._objects(folder)
                if objects:
                    self._download(folder, objects, Path(tmp))
                    seen.update({f"{folder}/{rel}": etag for rel, etag in objects.items()})
            try:
                verify_local_folder(registry, tmp, pipeline=pipeline, version=version)
            except ServingError as exc:
                message = str(exc).replace(str(Path(tmp).resolve()), self.url.rstrip("/"))
                raise ServingError(message.replace(tmp, self.url.rstrip("/"))) from exc
        return seen

    def etags(self, model_name: str) -> dict[str, str]:
        """``{object key under the repository: ETag}`` of a model's folders now."""
        found: dict[str, str] = {}
        for folder in self._candidates(model_name):
            found.update({f"{folder}/{rel}": e for rel, e in self._objects(folder).items()})
        return found


def load_version(
    *, triton: TritonServer, registry: ArtifactRegistry, pipeline: str, version: str
) -> str:
    """Verifies a version's folders in the server's object-store repository, then loads it.

    The object-store twin of :func:`lockgate.serving.model_repository.load_version`: the
    folders are downloaded and verified before Triton is asked to load the model, and their
    ETags are compared after the load, so an object replaced meanwhile is never served.

    Returns:
        The Triton model name clients call.

    Raises:
        ServingError: The server's repository is not on object storage, a folder fails the
            verification, an object changed during the load (the model is unloaded again), or
            Triton cannot load it.
    """
    repository = triton.object_repository()
    if repository is None:
        raise ServingError(
            f"{type(triton).__name__} serves from {triton.repo_dir!r}, not an object store; "
            "rule: this load verifies an s3:// repository; fix: use "
            "lockgate.serving.model_repository.load_version for a local folder"
        )
    name = triton_model_name(pipeline, version)
    verified: dict[str, str] = {}

    def verify() -> None:
        verified.update(
            repository.verify_model_folder(registry, pipeline=pipeline, version=version)
        )

    triton.load(name, verify=verify)
    now = repository.etags(name)
    if now != verified:
        changed = sorted(k for k in set(now) | set(verified) if now.get(k) != verified.get(k))
        triton.unload(name, wait=True)
        raise ServingError(
            f"objects {changed} of {repository.uri(name)} changed while Triton loaded the model; "
            "rule: Triton serves only the bytes lockgate verified; the model was unloaded; fix: "
            f"find who writes to the repository, then {rewrite_fix(pipeline, version)}"
        )
    return name
