"""Every error lockgate raises on purpose, in one hierarchy.

Each message names the value, the rule it broke and the fix.

    LockgateError
    ├── SpecError                 a pipeline spec is invalid (unknown trainer kind, bad split, ...)
    ├── DataError                 input data is unusable
    │   ├── SchemaError           a column is missing or has the wrong dtype
    │   ├── EmptyDataError        a frame has no rows where rows are required
    │   └── CorruptDataError      a file cannot be read (corrupt Parquet, truncated file)
    ├── FeatureStoreError         Feast refused or cannot answer (unknown feature service, ...)
    ├── ValidationFailedError     the data-quality suite failed; training must not run
    ├── TrainingError             a trainer could not fit a model (non-finite loss, one class, ...)
    ├── ArtifactError             the artifact registry refused an operation
    │   ├── ArtifactNotFoundError a blob, snapshot or model version does not exist
    │   ├── ArtifactIntegrityError a stored file does not match its recorded sha256 (tampering)
    │   ├── ImmutableArtifactError a write would change an existing immutable artifact
    │   └── AliasConflictError    an alias moved meanwhile (compare-and-swap lost)
    ├── GateFailedError           the gate did not pass; the model may not be promoted
    └── ReproductionError         a model version could not be rebuilt bit-identically
"""

from __future__ import annotations

__all__ = [
    "AliasConflictError",
    "ArtifactError",
    "ArtifactIntegrityError",
    "ArtifactNotFoundError",
    "CorruptDataError",
    "DataError",
    "EmptyDataError",
    "FeatureStoreError",
    "GateFailedError",
    "ImmutableArtifactError",
    "LockgateError",
    "ReproductionError",
    "SchemaError",
    "SpecError",
    "TrainingError",
    "ValidationFailedError",
]


class LockgateError(Exception):
    """Base class of every error lockgate raises on purpose."""


class SpecError(LockgateError, ValueError):
    """A pipeline spec is invalid."""


class DataError(LockgateError, ValueError):
    """Input data is unusable."""


class SchemaError(DataError):
    """A column is missing or has the wrong dtype."""


class EmptyDataError(DataError):
    """A frame has no rows where rows are required."""


class CorruptDataError(DataError):
    """A file cannot be read."""


class FeatureStoreError(LockgateError):
    """The feature store refused a request or cannot answer it."""


class ValidationFailedError(LockgateError):
    """The data-quality suite failed, so nothing may be trained on the data."""


class TrainingError(LockgateError):
    """A trainer could not fit a model."""


class ArtifactError(LockgateError):
    """The artifact registry refused an operation."""


class ArtifactNotFoundError(ArtifactError, KeyError):
    """A blob, snapshot or model version does not exist."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class ArtifactIntegrityError(ArtifactError):
    """A stored file does not match its recorded sha256."""


class ImmutableArtifactError(ArtifactError):
    """A write would change an existing immutable artifact."""


class ReproductionError(LockgateError):
    """A model version could not be rebuilt bit-identically."""


class AliasConflictError(ArtifactError):
    """An alias was moved by someone else between read and write."""


class GateFailedError(LockgateError):
    """The gate did not pass, so the model may not be promoted."""
