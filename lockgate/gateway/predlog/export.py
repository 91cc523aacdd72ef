"""The prediction log's Parquet parts on object storage (S3 through fsspec/s3fs).

The write-ahead log stays on the gateway's local disk: it is what makes an answer durable before
it is sent. Once a closed segment is rolled into Parquet parts, :class:`PredictionLogExport`
uploads each part to ``<url>/<model>/date=YYYY-MM-DD/replica=<id>/part-<seq>.parquet``, where
readers on other machines (drift, label feedback) find the log of every gateway replica.

Each upload is verified and idempotent:

- the object is read back and must have the part's size and sha256 (which also travels as the
  object's ``sha256`` metadata); only then is the part recorded as exported to that URL, in
  ``<log_dir>/_export/<url id>/<model>/date=.../part-<seq>.parquet.json``;
- a part already recorded is skipped; a part whose object already holds the same bytes (a
  crash after the upload, before the record) is recorded without uploading again; an object
  that holds *other* bytes under the part's name is never overwritten: that part is refused
  (:class:`~lockgate.gateway.errors.PredictionLogError` in the report) and the rest go on.

``<id>`` tells the replicas' sequence numbers apart: a random id kept in
``<log_dir>/_export/replica`` (one per log folder, so per gateway), or the ``replica`` field.

:func:`lockgate.gateway.predlog.iter_prediction_log` and
:func:`~lockgate.gateway.predlog.read_prediction_log` read the exported log when given a
:class:`PredictionLogExport` (or its ``s3://`` URL, credentials from the AWS variables).

Example:
    >>> export = PredictionLogExport(url="s3://lockgate/predictions", replica="gw-0")
    >>> export.part_key("fraud", "2026-12-02", 7)
    'fraud/date=2026-12-02/replica=gw-0/part-00000000000000000007.parquet'
"""

from __future__ import annotations

import json
import logging
import os
import re
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from lockgate._util.fs import atomic_write
from lockgate._util.objectstore import ObjectStoreLocation
from lockgate.gateway.errors import PredictionLogError
from lockgate.lineage.hashing import sha256_bytes

__all__ = ["PredictionLogExport", "RemotePart"]

logger = logging.getLogger("lockgate.gateway")

_EXPORT_DIR = "_export"
_LOCAL_PART = re.compile(r"^([^/]+)/date=(\d{4}-\d{2}-\d{2})/part-(\d{20})\.parquet$")
_REMOTE_PART = re.compile(
    r"^([^/]+)/date=(\d{4}-\d{2}-\d{2})/replica=([A-Za-z0-9_.-]+)/part-(\d{20})\.parquet$"
)
_REPLICA = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def _recorded_size(record: Path) -> int | None:
    try:
        size = json.loads(record.read_text()).get("size")
    except (OSError, ValueError, AttributeError):
        return None
    return size if isinstance(size, int) else None


class RemotePart(BaseModel):
    """One exported Parquet part: model, UTC day, replica, segment number and object path."""

    model_config = ConfigDict(frozen=True)

    model: str
    day: str
    replica: str
    seq: int
    path: str


class PredictionLogExport(ObjectStoreLocation):
    """Where a gateway's rolled Parquet parts go (see the module doc).

    Attributes:
        url: ``s3://<bucket>/<prefix>`` of the exported log (production:
            ``$LOCKGATE_PREDICTION_LOG_URL``).
        endpoint_url: The S3 endpoint of an S3-compatible server; None: ``$AWS_ENDPOINT_URL``,
            else AWS.
        key: Access key id; None: the AWS SDK's chain (``$AWS_ACCESS_KEY_ID``, roles).
        secret: Secret access key; None: the AWS SDK's chain.
        region: Region; None: the AWS SDK's chain (``$AWS_DEFAULT_REGION``).
        replica: This gateway's name in the exported log; None: a random id kept in the log
            folder (``_export/replica``).
    """

    model_config = ConfigDict(frozen=True)

    replica: str | None = Field(default=None, pattern=_REPLICA.pattern)

    def part_key(self, model: str, day: str, seq: int, *, replica: str | None = None) -> str:
        """The object key of a part, relative to ``url``."""
        who = replica or self.replica
        if who is None:
            raise PredictionLogError("part_key(): give replica= or configure the replica field")
        return f"{model}/date={day}/replica={who}/part-{seq:020d}.parquet"

    def uri(self, key: str) -> str:
        """``<url>/<key>``."""
        return f"{self.url.rstrip('/')}/{key}"

    def replica_id(self, log_dir: str | os.PathLike[str]) -> str:
        """``replica``, else the id kept in ``<log_dir>/_export/replica`` (made on first use)."""
        if self.replica:
            return self.replica
        path = Path(log_dir) / _EXPORT_DIR / "replica"
        try:
            kept = path.read_text().strip()
        except FileNotFoundError:
            kept = ""
        if not kept:
            atomic_write(path, f"gw-{secrets.token_hex(6)}\n", replace=False)
            kept = path.read_text().strip()
        if not _REPLICA.match(kept):
            raise PredictionLogError(
                f"{path} holds {kept!r}, not a replica id; rule: letters, digits, '_', '.', '-'; "
                "fix: delete the file (a new id is made) or set the export's replica field"
            )
        return kept

    def records_dir(self, log_dir: str | os.PathLike[str]) -> Path:
        """Where the parts exported to this ``url`` are recorded: ``<log_dir>/_export/<id>``,
        ``<id>`` 16 hex digits of the URL's sha256 (another URL exports everything again)."""
        return Path(log_dir) / _EXPORT_DIR / sha256_bytes(self.url.rstrip("/").encode())[:16]

    # ---- export ---------------------------------------------------------------------------------

    def export(self, log_dir: str | os.PathLike[str]) -> dict[str, Any]:
        """Upload every rolled part of ``log_dir`` not exported yet; verified and idempotent.

        Returns:
            ``{"uploaded": [keys], "present": [keys already there with the same bytes],
            "skipped": count of parts recorded as exported before, "refused": {key: why}}``.
        """
        root = Path(log_dir)
        replica = self.replica_id(root)
        report: dict[str, Any] = {"uploaded": [], "present": [], "skipped": 0, "refused": {}}
        for part in sorted(root.glob("*/date=*/part-*.parquet")):
            rel = part.relative_to(root).as_posix()
            match = _LOCAL_PART.match(rel)
            if match is None or rel.startswith(("_", ".")):
                continue
            record = self.records_dir(root) / f"{rel}.json"
            if _recorded_size(record) == part.stat().st_size:  # parts are written once
                report["skipped"] += 1
                continue
            data = part.read_bytes()
            model, day, seq = match.group(1), match.group(2), int(match.group(3))
            key = self.part_key(model, day, seq, replica=replica)
            try:
                uploaded = self._upload(key, data)
            except PredictionLogError as exc:
                report["refused"][key] = str(exc)
                logger.error("prediction log export: %s", exc)
                continue
            report["uploaded" if uploaded else "present"].append(key)
            atomic_write(
                record,
                json.dumps(
                    {"uri": self.uri(key), "size": len(data), "sha256": sha256_bytes(data)},
                    sort_keys=True,
                )
                + "\n",
            )
        return report

    def _upload(self, key: str, data: bytes) -> bool:
        fs, root = self.filesystem()
        path = f"{root}/{key}"
        digest = sha256_bytes(data)
        try:
            existing = fs.cat_file(path)
        except FileNotFoundError:
            existing = None
        if existing is not None:
            if sha256_bytes(existing) == digest:
                return False
            raise PredictionLogError(
                f"{self.uri(key)} already holds {len(existing)} bytes with sha256 "
                f"{sha256_bytes(existing)[:16]}, not this part's {len(data)} bytes "
                f"({digest[:16]}); rule: an exported part is never overwritten; fix: give each "
                "gateway its own log folder (its replica id) and find who wrote that object"
            )
        fs.pipe_file(path, data, Metadata={"sha256": digest})
        back = fs.cat_file(path)
        if len(back) != len(data) or sha256_bytes(back) != digest:
            raise PredictionLogError(
                f"{self.uri(key)} reads back {len(back)} bytes with sha256 "
                f"{sha256_bytes(back)[:16]} after uploading {len(data)} bytes ({digest[:16]}); "
                "rule: a part counts as exported only once it reads back intact; the next roll "
                "retries it; fix: check the object store"
            )
        return True

    # ---- reading ----------------------------------------------------------------------------

    def parts(self, model: str | None = None, *, first_day: str | None = None) -> list[RemotePart]:
        """The exported parts, by day, then replica, then segment number."""
        fs, root = self.filesystem()
        try:
            found = fs.find(root)
        except FileNotFoundError:
            return []
        parts = []
        for path in found:
            match = _REMOTE_PART.match(str(path)[len(root) + 1 :])
            if match is None:
                continue
            part = RemotePart(
                model=match.group(1),
                day=match.group(2),
                replica=match.group(3),
                seq=int(match.group(4)),
                path=str(path),
            )
            if (model is None or part.model == model) and (
                first_day is None or part.day >= first_day
            ):
                parts.append(part)
        return sorted(parts, key=lambda p: (p.day, p.replica, p.seq, p.model))

    def open_parts(
        self, model: str | None = None, *, first_day: str | None = None
    ) -> Iterator[Any]:
        """Each exported part opened as a binary file, in :meth:`parts` order (closed after)."""
        fs, _ = self.filesystem()
        for part in self.parts(model, first_day=first_day):
            with fs.open(part.path, "rb") as handle:
                yield handle
