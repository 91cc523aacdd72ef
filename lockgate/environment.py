"""Where lockgate keeps its state and which resource implementations it binds.

The environment is chosen once, in :meth:`Environment.from_env`, when definitions are built,
never at import time. ``local`` (the embedded default) keeps everything under one folder,
``LOCKGATE_HOME`` (default ``./.lockgate``)::

    data/       example source data (Parquet, day by day)
    feast/      Feast file registry and SQLite online store
    artifacts/  content-addressed registry: snapshots, model versions, reports
    refs/       asset outputs (JSON references between assets)
    audit/      the hash-chained audit log and its signed head
    keys/       signing.key: signs lock records and the audit head (0600, created on first use)
    serving/    Triton model repository, tritonserver and gateway state, prediction log
    dagster/    DAGSTER_HOME of the local Dagster instance

``production`` binds the same resource keys, configured from environment variables read by
Dagster at run time (``dg.EnvVar``): ``LOCKGATE_DATA_DIR``, ``LOCKGATE_FEAST_DIR``,
``LOCKGATE_REFS_DIR``, the serving services ``LOCKGATE_TRITON_URL``, ``LOCKGATE_GATEWAY_URL``,
``LOCKGATE_GATEWAY_ADMIN_URL``, ``LOCKGATE_MODEL_REPOSITORY``, ``LOCKGATE_CANARY_STATE_DIR``,
``LOCKGATE_PREDICTIONS_DIR``, and the signing key ``LOCKGATE_SIGNING_KEY`` (a secret; required:
no key file is created there). Which engines hold the shared state is chosen by what is set
when the definitions load:

- ``LOCKGATE_STATE_DB_URL`` (a PostgreSQL URL): champion/challenger aliases (compare-and-swap),
  canary state and the controller's lease, and the audit chain live in PostgreSQL
  (:mod:`lockgate.state`); unset, they are files under the paths below (one writer at a time);
- ``LOCKGATE_ARTIFACTS_URL`` (``s3://bucket/prefix``, any fsspec URL): the artifact registry
  on object storage (:class:`~lockgate.lineage.object_registry.ObjectStoreArtifactRegistry`,
  credentials from the standard ``AWS_*`` variables); unset, ``LOCKGATE_ARTIFACTS_ROOT`` (a
  shared volume);
- without a state database, ``LOCKGATE_AUDIT_PATH`` names the audit log file.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from lockgate.errors import SpecError

__all__ = ["Environment"]

EnvKind = Literal["local", "production"]


@dataclass(frozen=True)
class Environment:
    """A deployment environment: its kind and, for ``local``, its home folder."""

    kind: EnvKind
    home: Path

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Environment:
        """Read ``LOCKGATE_ENV`` (local | production) and ``LOCKGATE_HOME``."""
        env = os.environ if environ is None else environ
        kind = env.get("LOCKGATE_ENV", "local")
        if kind not in ("local", "production"):
            raise SpecError(
                f"LOCKGATE_ENV={kind!r} is not an environment; use 'local' or 'production'"
            )
        home = Path(env.get("LOCKGATE_HOME", ".lockgate")).expanduser().resolve()
        return cls(kind=kind, home=home)  # type: ignore[arg-type]

    @classmethod
    def local(cls, home: str | Path) -> Environment:
        """A local environment rooted at ``home``."""
        return cls(kind="local", home=Path(home).expanduser().resolve())

    @property
    def data_dir(self) -> Path:
        """Source data of the example domain."""
        return self.home / "data"

    @property
    def feast_dir(self) -> Path:
        """Feast registry and online store."""
        return self.home / "feast"

    @property
    def artifacts_dir(self) -> Path:
        """The artifact registry's root."""
        return self.home / "artifacts"

    @property
    def refs_dir(self) -> Path:
        """JSON references between assets."""
        return self.home / "refs"

    @property
    def audit_path(self) -> Path:
        """The hash-chained audit log."""
        return self.home / "audit" / "audit.jsonl"

    @property
    def serving_dir(self) -> Path:
        """Local serving stack: Triton repository and state, gateway state, prediction log."""
        return self.home / "serving"

    @property
    def dagster_home(self) -> Path:
        """DAGSTER_HOME of the local instance."""
        return self.home / "dagster"

    def resources(self, environ: Mapping[str, str] | None = None) -> dict[str, Any]:
        """Resource key -> implementation; the same keys in every environment.

        ``local`` binds the plain registry, Feast store and serving stack (usable as they are,
        outside Dagster too); ``production`` binds their Dagster resources, whose configuration
        Dagster reads from environment variables at run time and which hand assets and sensors
        the same plain objects, on the engines the variables set in ``environ`` (default
        ``os.environ``) choose (see the module docstring).
        """
        import dagster as dg

        from lockgate.features.store import FeastStore
        from lockgate.lineage.registry import LocalArtifactRegistry
        from lockgate.resources.artifacts import (
            LocalArtifactRegistryResource,
            ObjectStoreArtifactRegistryResource,
            SharedAliasesLocalRegistryResource,
        )
        from lockgate.resources.audit import AuditTrail
        from lockgate.resources.feast_store import FeastStoreResource
        from lockgate.resources.io_manager import JsonReferenceIOManager, ParquetFrameIOManager
        from lockgate.resources.serving import RemoteServingStackResource
        from lockgate.serving.stack import LocalServingStack

        if self.kind == "local":
            return {
                "feast": FeastStore(repo_dir=str(self.feast_dir), data_dir=str(self.data_dir)),
                "artifacts": LocalArtifactRegistry(root=str(self.artifacts_dir)),
                "lockgate_io": JsonReferenceIOManager(base_dir=str(self.refs_dir)),
                "lockgate_frames": ParquetFrameIOManager(base_dir=str(self.refs_dir)),
                "audit": AuditTrail(path=str(self.audit_path)),
                # the gateway's admin changes go to their own witnessed log beside the home's
                "serving_stack": LocalServingStack(
                    root=str(self.serving_dir),
                    audit_path=str(self.audit_path.parent / "gateway.jsonl"),
                ),
            }
        env = os.environ if environ is None else environ
        signing_key = dg.EnvVar("LOCKGATE_SIGNING_KEY")
        state: dict[str, Any] = (
            {"state_url": dg.EnvVar("LOCKGATE_STATE_DB_URL")}
            if env.get("LOCKGATE_STATE_DB_URL")
            else {}
        )
        artifacts: Any
        if env.get("LOCKGATE_ARTIFACTS_URL"):
            artifacts = ObjectStoreArtifactRegistryResource(
                url=dg.EnvVar("LOCKGATE_ARTIFACTS_URL"), signing_key=signing_key, **state
            )
        elif state:
            artifacts = SharedAliasesLocalRegistryResource(
                root=dg.EnvVar("LOCKGATE_ARTIFACTS_ROOT"), signing_key=signing_key, **state
            )
        else:
            artifacts = LocalArtifactRegistryResource(
                root=dg.EnvVar("LOCKGATE_ARTIFACTS_ROOT"), signing_key=signing_key
            )
        audit = (
            AuditTrail(url=dg.EnvVar("LOCKGATE_STATE_DB_URL"), signing_key=signing_key)
            if state
            else AuditTrail(path=dg.EnvVar("LOCKGATE_AUDIT_PATH"), signing_key=signing_key)
        )
        return {
            "feast": FeastStoreResource(
                repo_dir=dg.EnvVar("LOCKGATE_FEAST_DIR"), data_dir=dg.EnvVar("LOCKGATE_DATA_DIR")
            ),
            "artifacts": artifacts,
            "lockgate_io": JsonReferenceIOManager(base_dir=dg.EnvVar("LOCKGATE_REFS_DIR")),
            "lockgate_frames": ParquetFrameIOManager(base_dir=dg.EnvVar("LOCKGATE_REFS_DIR")),
            "audit": audit,
            "serving_stack": RemoteServingStackResource(
                triton_url=dg.EnvVar("LOCKGATE_TRITON_URL"),
                gateway_url=dg.EnvVar("LOCKGATE_GATEWAY_URL"),
                model_repository=dg.EnvVar("LOCKGATE_MODEL_REPOSITORY"),
                gateway_admin_url=dg.EnvVar("LOCKGATE_GATEWAY_ADMIN_URL"),
                gateway_admin_token=dg.EnvVar("LOCKGATE_GATEWAY_ADMIN_TOKEN"),
                canary_state_dir=dg.EnvVar("LOCKGATE_CANARY_STATE_DIR"),
                predictions_dir=dg.EnvVar("LOCKGATE_PREDICTIONS_DIR"),
                **state,
            ),
        }
