"""A real ``dagster-daemon`` on a test code location, and waiting on what it does."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from lockgate import DagsterDaemon, Environment

REPO = Path(__file__).resolve().parents[2]
"""The repository root: the locations' working directory and ``PYTHONPATH``."""


def module_daemon(
    env: Environment,
    module: str,
    location: str,
    extra_env: dict[str, str] | None = None,
    **options: Any,
) -> DagsterDaemon:
    """A daemon (not started) of ``env``'s Dagster home, whose workspace is the one code
    location ``module`` named ``location``, run from the repository root. A home without a
    ``dagster.yaml`` gets the default instance (telemetry off); ``options`` go to
    :class:`DagsterDaemon` (``postgres_url``, ``instance_options``)."""
    env.dagster_home.mkdir(parents=True, exist_ok=True)
    config = env.dagster_home / "dagster.yaml"
    if not config.exists():
        config.write_text("telemetry:\n  enabled: false\n")
    workspace = env.home / "workspace.yaml"
    workspace.write_text(
        "load_from:\n"
        "  - python_module:\n"
        f"      module_name: {module}\n"
        f"      location_name: {location}\n"
        f"      working_directory: {REPO}\n"
    )
    return DagsterDaemon(
        env,
        workspace,
        extra_env={
            "LOCKGATE_ENV": "local",
            "PYTHONPATH": str(REPO),
            "PYTHONWARNINGS": "ignore::FutureWarning",
            **(extra_env or {}),
        },
        cwd=REPO,
        **options,
    )


def wait_for(
    what: str, probe: Callable[[], Any], daemon: DagsterDaemon, timeout: float = 30.0
) -> Any:
    """``probe()``'s first truthy value, polled every 0.1 s; on timeout an AssertionError with
    the daemon's log."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = probe()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(
        f"timed out after {timeout} s waiting for {what}; daemon log:\n{daemon.log_tail(60)}"
    )
