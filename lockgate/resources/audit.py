"""The audit trail resource: every gate verdict, validation, traffic step, rollback and promotion."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import dagster as dg

from lockgate.audit.log import AuditLog

__all__ = ["AuditTrail"]


class AuditTrail(dg.ConfigurableResource):
    """A hash-chained audit log file (:class:`lockgate.audit.log.AuditLog`) as a Dagster resource.

    Attributes:
        path: The log file; its signed head is ``<path>.head``.
        signing_key: The key that signs the head (production: the secret
            ``dg.EnvVar("LOCKGATE_SIGNING_KEY")``); None reads ``$LOCKGATE_SIGNING_KEY``, then
            ``<log folder>/../keys/signing.key``.
    """

    path: str
    signing_key: str | None = None

    def log(self) -> AuditLog:
        """The underlying audit log."""
        return AuditLog(self.path, signing_key=self.signing_key or None)

    def record(
        self, kind: str, *, pipeline: str, actor: str, payload: Mapping[str, Any]
    ) -> dict[str, Any]:
        """Append one entry and return it (with its seq and hash); the witness moves with it."""
        return self.log().append(kind, pipeline=pipeline, actor=actor, payload=payload)
