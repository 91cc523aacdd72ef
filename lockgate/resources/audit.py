"""The audit trail resource: every gate verdict, validation, traffic step, rollback and promotion."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import dagster as dg

from lockgate.audit.chain import AuditError
from lockgate.audit.log import AuditLog
from lockgate.state.audit import PostgresAuditLog

__all__ = ["AuditTrail"]


class AuditTrail(dg.ConfigurableResource):
    """The hash-chained audit log as a Dagster resource: a file by default
    (:class:`lockgate.audit.log.AuditLog`), a PostgreSQL table when ``url`` is set
    (:class:`lockgate.state.audit.PostgresAuditLog`, production: writers on several machines).

    Attributes:
        path: The log file; its signed head is ``<path>.head``. Unused when ``url`` is set.
        signing_key: The key that signs the head (production: the secret
            ``dg.EnvVar("LOCKGATE_SIGNING_KEY")``); None reads ``$LOCKGATE_SIGNING_KEY``, then
            ``<log folder>/../keys/signing.key`` (the file log only).
        url: The PostgreSQL state database (production: ``dg.EnvVar("LOCKGATE_STATE_DB_URL")``);
            None or empty keeps the log in the file at ``path``.
        log_name: The log's name in that database.
    """

    path: str = ""
    signing_key: str | None = None
    url: str | None = None
    log_name: str = "main"

    def log(self) -> AuditLog | PostgresAuditLog:
        """The underlying audit log."""
        if self.url:
            return PostgresAuditLog(
                self.url, log=self.log_name, signing_key=self.signing_key or None
            )
        if not self.path:
            raise AuditError(
                "the audit resource has neither a path nor a url; rule: the audit log lives in a "
                "file (local) or in the PostgreSQL state database (production); fix: set path, "
                "or url (LOCKGATE_STATE_DB_URL)"
            )
        return AuditLog(self.path, signing_key=self.signing_key or None)

    def record(
        self, kind: str, *, pipeline: str, actor: str, payload: Mapping[str, Any]
    ) -> dict[str, Any]:
        """Append one entry and return it (with its seq and hash); the witness moves with it."""
        return self.log().append(kind, pipeline=pipeline, actor=actor, payload=payload)
