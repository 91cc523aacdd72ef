"""Object storage through fsspec: one way to open a URL, its S3 error codes, conditional puts.

What the registry (:mod:`lockgate.lineage.object_registry`), the Triton model repository on S3
(:mod:`lockgate.serving.object_repository`) and the prediction-log export
(:mod:`lockgate.gateway.predlog.export`) share: :class:`ObjectStoreLocation` (a URL and the
optional S3 endpoint and credentials, the filesystem opened once per process),
:func:`object_filesystem`, :func:`object_store_error` and :func:`conditional_put`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from pydantic import BaseModel, PrivateAttr

from lockgate.errors import ArtifactError

__all__ = ["ObjectStoreLocation", "conditional_put", "object_filesystem", "object_store_error"]

_LOST = {"PreconditionFailed", "412", "ConditionalRequestConflict", "409"}


def _blank(value: str | None) -> str | None:
    return value.strip() or None if value is not None else None


def object_filesystem(
    url: str,
    *,
    endpoint_url: str | None = None,
    key: str | None = None,
    secret: str | None = None,
    region: str | None = None,
) -> tuple[Any, str]:
    """An fsspec filesystem and the root path inside it for ``url`` (no listing cache).

    For ``s3://`` URLs the options left None come from the AWS SDK's own chain
    (``AWS_ENDPOINT_URL``, ``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``,
    ``AWS_DEFAULT_REGION``, instance roles), as they are at this call. Listings are never
    cached (other writers change the bucket), nor are filesystems (each call opens its own:
    keep it, as :class:`ObjectStoreLocation` does).

    Args:
        url: ``s3://bucket/prefix`` (or any fsspec URL, e.g. ``memory://x`` in examples).
        endpoint_url: The S3 endpoint (``http://127.0.0.1:8333``); None: the SDK's default.
        key: Access key id; None: the SDK's chain.
        secret: Secret access key; None: the SDK's chain.
        region: Region name; None: the SDK's chain.

    Returns:
        ``(filesystem, root)``; ``root`` has no trailing ``/``.

    Raises:
        ArtifactError: the URL names no protocol or its protocol is not installed.
    """
    import fsspec

    protocol = urlsplit(url).scheme
    if not protocol or "://" not in url:
        raise ArtifactError(
            f"object store URL {url!r} names no protocol; rule: give a URL such as "
            "'s3://bucket/prefix'; fix: prefix the bucket path with s3://"
        )
    # never fsspec's instance cache: with the endpoint and credentials left to the SDK's chain
    # the arguments are the same whatever the AWS_* variables name, and the cache would hand
    # back a filesystem on the first server this process opened
    options: dict[str, Any] = {"skip_instance_cache": True}
    if protocol in ("s3", "s3a"):
        options["use_listings_cache"] = False
        if _blank(key):
            options["key"] = _blank(key)
        if _blank(secret):
            options["secret"] = _blank(secret)
        client: dict[str, Any] = {}
        if _blank(endpoint_url):
            client["endpoint_url"] = _blank(endpoint_url)
        if _blank(region):
            client["region_name"] = _blank(region)
        if client:
            options["client_kwargs"] = client
    try:
        fs, root = fsspec.core.url_to_fs(url, **options)
    except (ImportError, ValueError) as exc:
        raise ArtifactError(
            f"cannot open object store URL {url!r} ({exc}); rule: the protocol's fsspec "
            "implementation is installed (s3fs for s3://); fix: install lockgate[production]"
        ) from exc
    return fs, str(root).rstrip("/")


def object_store_error(exc: BaseException) -> str | None:
    """The S3 error code behind an fsspec exception (``PreconditionFailed``, ...), or None."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        response = getattr(current, "response", None)
        if isinstance(response, Mapping):
            error = response.get("Error") or {}
            code = error.get("Code")
            if code:
                return str(code)
            status = (response.get("ResponseMetadata") or {}).get("HTTPStatusCode")
            if status:
                return str(status)
        current = current.__cause__ or current.__context__
    return None


_LOST = {"PreconditionFailed", "412", "ConditionalRequestConflict", "409"}


def conditional_put(fs: Any, path: str, data: bytes, *, expected: bytes | None) -> bool:
    """Put ``data`` at ``path`` only if it holds ``expected`` now (None: only if absent).

    S3 conditional writes: ``If-None-Match: *`` for a new object, ``If-Match: <ETag>`` for a
    replacement, the ETag read before the bytes are compared (so a change in between makes the
    put fail, never succeed wrongly).

    Returns:
        Whether ``data`` was written; False when the object was not ``expected`` or changed
        meanwhile (the caller re-reads and decides again).

    Raises:
        ArtifactError: the filesystem has no conditional writes (only s3 does here).
    """
    protocol = fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0]
    if protocol not in ("s3", "s3a"):
        raise ArtifactError(
            f"{protocol}:// has no conditional writes; rule: a compare-and-swap on an object "
            "store needs S3's If-Match / If-None-Match; fix: use an s3:// URL, or keep the "
            "mutable keys in PostgreSQL (state_url)"
        )
    try:
        if expected is None:
            fs.pipe_file(path, data, mode="create")
            return True
        try:
            etag = fs.info(path)["ETag"]
        except FileNotFoundError:
            return False
        if fs.cat_file(path) != expected:
            return False
        fs.pipe_file(path, data, IfMatch=etag)
        return True
    except FileExistsError:
        return False
    except OSError as exc:
        if object_store_error(exc) in _LOST:
            return False
        raise


class ObjectStoreLocation(BaseModel):
    """A place on object storage: an fsspec URL and, for S3, the optional endpoint and
    credentials (None: the AWS SDK's own chain, ``$AWS_ENDPOINT_URL``, ``$AWS_ACCESS_KEY_ID``,
    ...). Plain strings, so a Dagster resource can bind each to an environment variable.

    Attributes:
        url: ``s3://bucket/prefix`` (any fsspec URL).
        endpoint_url: The S3 endpoint of an S3-compatible server.
        key: Access key id.
        secret: Secret access key.
        region: Region name.
    """

    url: str
    endpoint_url: str | None = None
    key: str | None = None
    secret: str | None = None
    region: str | None = None

    _fs: tuple[int, Any, str] | None = PrivateAttr(default=None)

    def filesystem(self) -> tuple[Any, str]:
        """The fsspec filesystem and the root path in it (opened once per process)."""
        if self._fs is None or self._fs[0] != os.getpid():
            fs, root = object_filesystem(
                self.url,
                endpoint_url=self.endpoint_url,
                key=self.key,
                secret=self.secret,
                region=self.region,
            )
            self._fs = (os.getpid(), fs, root)
        return self._fs[1], self._fs[2]
