"""The audit trail resource: every gate verdict, validation, traffic step, rollback and promotion."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import dagster as dg

from lockgate.audit import AuditLog

__all__ = ["AuditTrail"]


class AuditTrail(dg.ConfigurableResource):
    """A hash-chained audit log file (:class:`lockgate.audit.AuditLog`) as a Dagster resource."""

    path: str

    def log(self) -> AuditLog:
        """The underlying audit log."""
        return AuditLog(self.path)

    def record(
        self, kind: str, *, pipeline: str, actor: str, payload: Mapping[str, Any]
    ) -> dict[str, Any]:
        """Append one entry and return it (with its seq and hash)."""
        return self.log().append(kind, pipeline=pipeline, actor=actor, payload=payload)
