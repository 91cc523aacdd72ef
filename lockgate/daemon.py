"""``dagster-daemon run`` as a managed process: what runs the sensors of a code location.

:class:`DagsterDaemon` starts the daemon on a workspace file against an environment's Dagster
instance, in its own process group, waits for the sensor daemon's first heartbeat, and stops the
whole group (the daemon and its code servers) by PID. Drills, the example's closed loop and the
tests of every sensor run on it.

The instance is SQLite under ``DAGSTER_HOME`` by default (whatever ``dagster.yaml`` the home
holds). Given a PostgreSQL URL (``postgres_url``, or ``LOCKGATE_DAGSTER_PG_URL`` in the
launching process's environment), the daemon writes the production instance's ``dagster.yaml``
(:func:`lockgate.dagster_instance.instance_config`: PostgreSQL storage, the queued run
coordinator and its limits) and hands the URL to the daemon in ``LOCKGATE_DAGSTER_PG_URL``; the
file names only the variable.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lockgate._util.process import ManagedProcess, log_tail
from lockgate.environment import Environment
from lockgate.errors import LockgateError

if TYPE_CHECKING:
    from dagster import DagsterInstance

__all__ = ["DagsterDaemon"]

# lockgate.dagster_instance.DAGSTER_PG_URL_ENV, named here: that module loads dagster
_PG_URL_ENV = "LOCKGATE_DAGSTER_PG_URL"


class DagsterDaemon:
    """``dagster-daemon run`` on a workspace, in its own process group, logging to a file.

    Example:
        >>> # with DagsterDaemon(env, workspace) as daemon: ...  (stopped by PID on exit)
    """

    def __init__(
        self,
        env: Environment,
        workspace: Path,
        *,
        log_path: Path | None = None,
        extra_env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
        postgres_url: str | None = None,
        instance_options: Mapping[str, Any] | None = None,
    ) -> None:
        """Describes the daemon; nothing starts before :meth:`start`.

        Args:
            env: its ``DAGSTER_HOME`` is ``env.dagster_home``, its ``LOCKGATE_HOME`` ``env.home``.
            workspace: the workspace file of the code locations it serves.
            log_path: where its output goes (default ``<home>/logs/dagster-daemon.log``).
            extra_env: more environment variables for it and its code servers.
            cwd: its working directory (default ``env.home``).
            postgres_url: Dagster's storage in this PostgreSQL database instead of SQLite
                (default: ``LOCKGATE_DAGSTER_PG_URL`` of this process's environment, if set).
            instance_options: with PostgreSQL, further
                :func:`~lockgate.dagster_instance.instance_config` arguments (limits).
        """
        self.env, self.workspace = env, workspace
        self.postgres_url = postgres_url or os.environ.get(_PG_URL_ENV) or None
        self.instance_options = dict(instance_options or {})
        self.log_path = log_path or env.home / "logs" / "dagster-daemon.log"
        self.extra_env = dict(extra_env or {})
        self.cwd = cwd or env.home
        self._proc = ManagedProcess(log_file=self.log_path)

    @property
    def process(self) -> subprocess.Popen[bytes] | None:
        """The ``dagster-daemon`` child process while started (None before and after)."""
        return self._proc.process

    def instance(self) -> DagsterInstance:
        """The daemon's Dagster instance, opened in this process (use it as a context manager)."""
        from lockgate.dagster_instance import open_instance

        return open_instance(self.env.dagster_home, postgres_url=self.postgres_url)

    def start(self, *, timeout_s: float = 90.0) -> DagsterDaemon:
        """Start the daemon and wait until its sensor daemon has sent a heartbeat.

        With a PostgreSQL URL, ``dagster.yaml`` is (re)written first.

        Raises:
            LockgateError: it exited or sent no heartbeat in time (the message has its log).
        """
        exe = Path(sys.executable).with_name("dagster-daemon")
        if not exe.exists():
            raise LockgateError(
                f"{exe} does not exist: dagster is not installed beside {sys.executable}; "
                "run scripts/setup.sh"
            )
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        env = dict(
            os.environ,
            DAGSTER_HOME=str(self.env.dagster_home),
            LOCKGATE_HOME=str(self.env.home),
            DAGSTER_DISABLE_TELEMETRY="1",
            **self.extra_env,
        )
        if self.postgres_url is not None:
            from lockgate.dagster_instance import psycopg2_url, write_instance_yaml

            write_instance_yaml(
                self.env.dagster_home, **{"postgres_url_env": _PG_URL_ENV, **self.instance_options}
            )
            env[_PG_URL_ENV] = psycopg2_url(self.postgres_url)
        started = time.time()
        self._proc.log_file = self.log_path
        process = self._proc.start(
            [str(exe), "run", "-w", str(self.workspace)], env=env, cwd=self.cwd
        )
        with self.instance() as instance:

            def heartbeat() -> bool:
                sensor = instance.get_daemon_heartbeats().get("SENSOR")
                return sensor is not None and sensor.timestamp >= started

            ready = self._proc.wait_ready(
                heartbeat, timeout_s=timeout_s, interval_s=0.5, clock=time.time
            )
            if not ready and process.poll() is not None:
                raise LockgateError(
                    f"dagster-daemon exited with {process.returncode} at start; its "
                    f"log {self.log_path} ends with:\n{self.log_tail()}"
                )
            if ready:
                return self
        self.stop()
        raise LockgateError(
            f"dagster-daemon sent no sensor heartbeat within {timeout_s:.0f} s; its log "
            f"{self.log_path} ends with:\n{self.log_tail()}"
        )

    def log_tail(self, lines: int = 30) -> str:
        """The last lines of the daemon's log."""
        if not self.log_path.exists():
            return "(no log)"
        return log_tail(self.log_path, lines=lines)

    def stop(self, *, timeout_s: float = 30.0, grace_s: float = 10.0) -> None:
        """SIGTERM the daemon's process group (the daemon, its code servers and their run
        workers), SIGKILL the daemon if it lingers past ``timeout_s``; then SIGKILL whatever of
        the group still runs ``grace_s`` after the daemon exited (a code server that ignored
        the SIGTERM would otherwise outlive it, its parent gone, for good)."""
        self._proc.stop(timeout_s=timeout_s, term_group=True, sweep_s=10.0, group_grace_s=grace_s)

    def kill(self) -> None:
        """SIGKILL the whole process group at once (a crash, for tests)."""
        self._proc.stop(timeout_s=0.0, force=True, sweep_s=None)

    def __enter__(self) -> DagsterDaemon:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
