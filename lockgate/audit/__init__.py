"""The audit log: a hash-chained, append-only JSON-lines file with a signed, witnessed head.

- :mod:`~lockgate.audit.log`: :class:`AuditLog`, the file (appends, locking, reading, repair).
- :mod:`~lockgate.audit.chain`: the entry format, its hash and the verification of a chain.
- :mod:`~lockgate.audit.witness`: the signed head ``<log>.head`` and what it says of a chain.
"""

from lockgate.audit.chain import (
    AuditEntryError,
    AuditError,
    AuditHead,
    AuditIntegrityError,
    AuditVerification,
)
from lockgate.audit.log import AuditLog

__all__ = [
    "AuditEntryError",
    "AuditError",
    "AuditHead",
    "AuditIntegrityError",
    "AuditLog",
    "AuditVerification",
]
