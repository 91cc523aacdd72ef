"""The gateway's settings as one model: what :func:`create_app` and the command line build from.

:class:`GatewayConfig` holds every option of the gateway that is a plain value (folders, the
upstream URL, timeouts, WAL and coalescing settings, the HTTP server's :class:`ServerLimits`);
its checks raise :class:`GatewayError` with the messages the gateway always gave.
:meth:`GatewayConfig.to_argv` turns it into the options of ``python -m lockgate.gateway`` (what a
launcher such as :class:`lockgate.gateway.process.GatewayServer` runs). Secrets (the admin
token, the routing key), the audit log and an in-process upstream object are not settings: they
are passed beside the config.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from lockgate.gateway.errors import GatewayError
from lockgate.gateway.server import ServerLimits
from lockgate.gateway.upstream import HttpUpstream

__all__ = ["ADMIN_TOKEN_ENV", "GatewayConfig"]

ADMIN_TOKEN_ENV = "LOCKGATE_GATEWAY_ADMIN_TOKEN"
"""The environment variable lockgate's clients and the local stack pass the admin token in."""


class GatewayConfig(BaseModel):
    """The settings of one gateway (see :func:`lockgate.gateway.factory.create_app` for each).

    Attributes:
        state_dir: folder of ``routes.json`` and ``routing.key``.
        log_dir: folder of the prediction log.
        upstream_url: base URL of the KServe v2 model server (None with an upstream object).
        upstream_timeout_s: timeout of one upstream inference call.
        retry_challenger_on_champion: answer a failed canary challenger request from the champion.
        durability: ``fsync`` or ``flush``.
        segment_max_bytes: WAL segment size that triggers rotation.
        segment_max_age_s: WAL segment age that triggers rotation.
        commit_interval_s: minimum time between group commits.
        commit_delay_s: how long a group commit may be held for more records.
        commit_siblings: requests in flight that make a commit worth holding.
        max_shadow_inflight: concurrent shadow calls at most.
        max_body_bytes: largest accepted request body (also after decompression).
        verify_routes: ``PUT /admin/routes`` checks every version is served upstream.
        coalesce_inflight: upstream calls in flight per version before requests are merged.
        model_repository: the Triton model repository (each version's ``wire.json``): a folder,
            or the object-store URL Triton reads (``s3://bucket/prefix``).
        prediction_log_url: object storage (``s3://bucket/prefix``) the rolled Parquet parts of
            the prediction log are exported to (credentials from the ``AWS_*`` variables); None:
            the log stays in ``log_dir`` only.
        online_features: a JSON file mapping public model names to their Feast repository and
            feature service (:mod:`lockgate.gateway.online_features`): requests to those models
            may carry entity keys instead of feature values. Read and checked when the app is
            built, not here: a config may be rendered for another machine (Kubernetes).
        limits: the HTTP server's limits (command line only; ASGI servers bring their own).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    state_dir: Path
    log_dir: Path
    upstream_url: str | None = None
    # int | float: a number keeps the type it was given, as the error messages quote it
    upstream_timeout_s: int | float = 30.0
    retry_challenger_on_champion: bool = True
    durability: str = "fsync"
    segment_max_bytes: int = 64 << 20
    segment_max_age_s: int | float = 60.0
    commit_interval_s: int | float = 0.0
    commit_delay_s: int | float = 0.001
    commit_siblings: int = 2
    max_shadow_inflight: int = 64
    max_body_bytes: int = 64 << 20
    verify_routes: bool = True
    coalesce_inflight: int = 2
    model_repository: Path | str | None = None
    prediction_log_url: str | None = None
    online_features: Path | None = None
    limits: ServerLimits = Field(default_factory=ServerLimits)

    @model_validator(mode="after")
    def _check(self) -> GatewayConfig:
        if self.upstream_url is not None:
            HttpUpstream(self.upstream_url)  # validate early
        for label, value in (
            ("upstream_timeout_s", self.upstream_timeout_s),
            ("segment_max_age_s", self.segment_max_age_s),
        ):
            if not value > 0:
                raise GatewayError(f"{label}={value!r} must be > 0 seconds")
        if self.segment_max_bytes < 1024:
            raise GatewayError(f"segment_max_bytes={self.segment_max_bytes} must be at least 1024")
        if self.commit_interval_s < 0:
            raise GatewayError(f"commit_interval_s={self.commit_interval_s} must be >= 0")
        if not 0 <= self.commit_delay_s <= 0.1:
            raise GatewayError(
                f"commit_delay_s={self.commit_delay_s!r} must be between 0 and 0.1 seconds; it is "
                "added to the latency of every held request"
            )
        if self.commit_siblings < 1:
            raise GatewayError(f"commit_siblings={self.commit_siblings!r} must be at least 1")
        if self.coalesce_inflight < 0:
            raise GatewayError(
                f"coalesce_inflight={self.coalesce_inflight!r} must be >= 0 (0 never merges "
                "requests)"
            )
        if self.durability not in ("fsync", "flush"):
            raise GatewayError(f"durability={self.durability!r} must be 'fsync' or 'flush'")
        return self

    def to_argv(self) -> list[str]:
        """These settings as options of ``python -m lockgate.gateway``.

        The listener options (``--host``, ``--port``, ``--ready-file``, the admin listener, the
        admin token, ``--audit-log``) are not settings of the config: add them.

        Raises:
            GatewayError: there is no ``upstream_url`` (the command line needs one).
        """
        if self.upstream_url is None:
            raise GatewayError(
                "the gateway command line needs an upstream URL; rule: only in-process apps take "
                "an upstream object; fix: set upstream_url, e.g. 'http://127.0.0.1:8000'"
            )
        limits = self.limits
        values: list[tuple[str, Any]] = [
            ("--state-dir", self.state_dir),
            ("--log-dir", self.log_dir),
            ("--upstream-url", self.upstream_url),
            ("--durability", self.durability),
            ("--upstream-timeout-s", self.upstream_timeout_s),
            ("--segment-max-bytes", self.segment_max_bytes),
            ("--segment-max-age-s", self.segment_max_age_s),
            ("--commit-interval-s", self.commit_interval_s),
            ("--commit-delay-s", self.commit_delay_s),
            ("--commit-siblings", self.commit_siblings),
            ("--max-shadow-inflight", self.max_shadow_inflight),
            ("--max-body-bytes", self.max_body_bytes),
            ("--coalesce-inflight", self.coalesce_inflight),
            ("--max-connections", limits.max_connections),
            ("--max-admin-connections", limits.max_admin_connections),
            ("--max-url-bytes", limits.max_url_bytes),
            ("--max-header-bytes", limits.max_header_bytes),
            ("--header-timeout-s", limits.header_timeout_s),
            ("--body-timeout-s", limits.body_timeout_s),
            ("--keepalive-timeout-s", limits.keepalive_timeout_s),
        ]
        argv = [item for flag, value in values for item in (flag, str(value))]
        if self.model_repository is not None:
            argv += ["--model-repository", str(self.model_repository)]
        if self.prediction_log_url is not None:
            argv += ["--prediction-log-url", self.prediction_log_url]
        if self.online_features is not None:
            argv += ["--online-features", str(self.online_features)]
        if not self.retry_challenger_on_champion:
            argv.append("--no-retry-challenger")
        if not self.verify_routes:
            argv.append("--no-verify-routes")
        return argv
