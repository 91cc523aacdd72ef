"""Managed local server processes: one class starts, finds, waits for and stops them.

:class:`ManagedProcess` is what the local servers (tritonserver, the gateway, ``dagster-daemon``)
share: a child started in its own process group with its output appended to a log file, its PID
recorded in a PID file, a recorded PID trusted only while that process's command line still
says what it is (a stale PID may have been reused), a wait until the server is ready, a stop of
the whole group with a timeout, and the tail of the log; :class:`ManagedServer` is the base of
the pydantic server classes that own one (the handle, its copy, the log tail, ``with server:``).
:func:`wait_until` is the one polling loop (with an injectable clock, so tests need not
sleep). Process inspection goes through ``psutil``.
"""

from __future__ import annotations

import contextlib
import copy
import os
import signal
import subprocess
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import ClassVar, Self

import psutil
from pydantic import BaseModel, PrivateAttr

from lockgate._util.fs import atomic_write

__all__ = [
    "ManagedProcess",
    "ManagedServer",
    "cmdline_contains",
    "group_members",
    "log_tail",
    "stop_process_group",
    "wait_until",
]


def wait_until(
    predicate: Callable[[], bool],
    timeout_s: float,
    interval_s: float,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> bool:
    """Calls ``predicate`` every ``interval_s`` until it returns true or ``timeout_s`` passed.

    ``predicate`` runs at least once, and once more when the deadline has passed during a sleep.

    Args:
        predicate: what to wait for.
        timeout_s: longest wait, in seconds of ``clock``.
        interval_s: pause between two calls.
        clock: the time source (seconds; injectable for tests).
        sleep: how to pause (injectable for tests).

    Returns:
        True when ``predicate`` returned true in time; False after the timeout.
    """
    deadline = clock() + timeout_s
    while True:
        if predicate():
            return True
        if clock() >= deadline:
            return False
        sleep(interval_s)


def _default_stop_signals() -> None:
    """In a child between fork and exec: SIGTERM and SIGINT back to their defaults."""
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def cmdline_contains(pid: int, needle: str, *, argv0_only: bool = False) -> bool:
    """Whether process ``pid`` is alive (not a zombie) and its command line (or argv[0]) contains
    ``needle``.

    Guards against signalling an unrelated process that reused a stale PID.
    """
    try:
        cmdline = psutil.Process(pid).cmdline()
    except (psutil.Error, OSError):  # gone, a zombie, or not ours to read
        return False
    if not cmdline:
        return False
    return needle in (cmdline[0] if argv0_only else "\0".join(cmdline))


def log_tail(path: Path, *, offset: int = 0, lines: int = 40) -> str:
    """The last ``lines`` lines of ``path`` after byte ``offset`` ("" when there is no log)."""
    try:
        with open(path, "rb") as handle:
            handle.seek(offset)
            text = handle.read().decode("utf-8", errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie does not: it only waits for its parent's ``wait``)."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except (psutil.Error, OSError):
        return False


def group_members(pgid: int) -> list[int]:
    """PIDs in process group ``pgid`` that are not zombies."""
    members = []
    for pid in psutil.pids():
        try:
            if os.getpgid(pid) != pgid:
                continue
        except OSError:
            continue
        if _alive(pid):
            members.append(pid)
    return members


def _signal(pid: int, sig: signal.Signals, *, group: bool) -> bool:
    """Sends ``sig`` to ``pid`` (or its group); False when there is nothing left to signal."""
    try:
        if group:
            os.killpg(pid, sig)
        else:
            os.kill(pid, sig)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def stop_process_group(pid: int, *, timeout_s: float = 15.0) -> None:
    """SIGTERM the process group led by ``pid`` (servers start in their own session), then
    SIGKILL what is left after ``timeout_s``; works on servers another process started.

    Returns once the leader is gone or a zombie (a child of the caller: reap it with
    ``wait``)."""
    for sig, wait in ((signal.SIGTERM, timeout_s), (signal.SIGKILL, 5.0)):
        if not _signal(pid, sig, group=True):
            return
        if wait_until(lambda: not _alive(pid), wait, 0.05):
            return


class ManagedProcess:
    """A server process in its own process group, logging to a file, its PID in a PID file.

    The object starts the process (:meth:`start`) or describes one another process started (its
    PID file, checked by :meth:`recorded_pid`). Whoever started it, :meth:`stop` ends it.

    Attributes:
        log_file: where the process's stdout and stderr are appended.
        pid_file: where its PID is written at start (None: not recorded).
        identity: what the command line of a recorded PID must contain to be this server.
        argv0_only: match ``identity`` against argv[0] alone.
    """

    def __init__(
        self,
        *,
        log_file: Path,
        pid_file: Path | None = None,
        identity: str | None = None,
        argv0_only: bool = False,
    ) -> None:
        self.log_file = log_file
        self.pid_file = pid_file
        self.identity = identity
        self.argv0_only = argv0_only
        self.process: subprocess.Popen[bytes] | None = None
        self.log_offset = 0

    # ---- identity --------------------------------------------------------------------------

    def is_server(self, pid: int) -> bool:
        """Whether ``pid`` is alive and its command line says it is this server (``identity``)."""
        if self.identity is None:
            return _alive(pid)
        return cmdline_contains(pid, self.identity, argv0_only=self.argv0_only)

    def recorded_pid(self) -> int | None:
        """The PID in the PID file, whatever runs there now (None: no readable PID file)."""
        if self.pid_file is None:
            return None
        try:
            return int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            return None

    @property
    def running(self) -> bool:
        """Whether the process this object started is alive."""
        return self.process is not None and self.process.poll() is None

    @property
    def pid(self) -> int | None:
        """PID of the process this object started while it runs, else None."""
        return self.process.pid if self.process is not None and self.running else None

    # ---- start -----------------------------------------------------------------------------

    def start(
        self,
        command: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        cwd: Path | str | None = None,
        banner: str | None = None,
        record_pid: bool = True,
        user: str | None = None,
    ) -> subprocess.Popen[bytes]:
        """Starts ``command`` in a new session (its own process group), output appended to the
        log (after ``banner``, a line), and writes the PID file atomically (with ``record_pid``;
        else the caller calls :meth:`write_pid_file` when it is ready to). ``user``: run as
        that system user (the caller must be allowed to switch to it, i.e. root).

        Returns:
            The child process.
        """
        with open(self.log_file, "ab") as log:
            self.log_offset = log.tell()
            if banner is not None:
                log.write(f"{banner}\n".encode())
                log.flush()
            # an ignored signal stays ignored across exec: a parent started in the background
            # (SIGINT ignored) where Dagster then maps SIGTERM to the SIGINT handler would start
            # children that SIGTERM cannot stop; give them the default dispositions back
            inherited_ignore = any(
                signal.getsignal(sig) == signal.SIG_IGN for sig in (signal.SIGTERM, signal.SIGINT)
            )
            self.process = subprocess.Popen(
                list(command),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=dict(env) if env is not None else None,
                cwd=cwd,
                start_new_session=True,
                user=user,
                preexec_fn=_default_stop_signals if inherited_ignore else None,
            )
        if record_pid:
            self.write_pid_file()
        return self.process

    def write_pid_file(self) -> None:
        """Writes the started process's PID to the PID file (atomically)."""
        if self.pid_file is None or self.process is None:
            return
        atomic_write(self.pid_file, f"{self.process.pid}\n", durable=False)

    def wait_ready(
        self,
        ready: Callable[[], bool],
        *,
        timeout_s: float,
        interval_s: float,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> bool:
        """Polls ``ready`` until it says yes, the process exits, or ``timeout_s`` passes.

        Returns:
            True when ready; False when the process exited or the time ran out.
        """
        outcome = [False]

        def check() -> bool:
            if not self.running:
                return True
            outcome[0] = bool(ready())
            return outcome[0]

        wait_until(check, timeout_s, interval_s, clock=clock, sleep=sleep)
        return outcome[0]

    # ---- stop ------------------------------------------------------------------------------

    def stop(
        self,
        *,
        timeout_s: float,
        force: bool = False,
        term_group: bool = False,
        sweep_s: float | None = 10.0,
        group_grace_s: float = 0.0,
        pid: int | None = None,
    ) -> None:
        """Ends the process this object started, or else the live server ``pid`` (default: the
        PID file's) names.

        SIGTERM (the leader, or the whole group with ``term_group``) and a wait of ``timeout_s``
        for the leader to exit; SIGKILL to the group when it did not; then, unless ``sweep_s``
        is None, SIGKILL to what is left of the group until nothing of it runs any more (for at
        most ``sweep_s``), after letting the rest of the group exit on its own for up to
        ``group_grace_s`` (children that got the SIGTERM too and clean up: code servers, run
        workers). ``force``: SIGKILL at once. A recorded PID is signalled only while
        :meth:`is_server` says it is this server.
        """
        process = self.process
        if process is not None:
            pid = process.pid
            if process.poll() is None and not force:
                _signal(pid, signal.SIGTERM, group=term_group)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    process.wait(timeout=timeout_s)
            if process.poll() is None:
                _signal(pid, signal.SIGKILL, group=True)
                process.wait(timeout=30)
            self.process = None
            if sweep_s is not None:
                self._kill_group(pid, sweep_s, grace_s=0.0 if force else group_grace_s)
            return
        pid = self.recorded_pid() if pid is None else pid
        if pid is None or not self.is_server(pid):
            return
        if not force:
            _signal(pid, signal.SIGTERM, group=term_group)
            wait_until(lambda: not self.is_server(pid), timeout_s, 0.05)
        if self.is_server(pid):
            _signal(pid, signal.SIGKILL, group=True)
        if sweep_s is not None:
            self._kill_group(pid, sweep_s, grace_s=0.0 if force else group_grace_s)

    @staticmethod
    def _kill_group(pgid: int, timeout_s: float, *, grace_s: float = 0.0) -> None:
        """SIGKILLs what is left in the group (python-backend stubs, code servers) until none
        runs any more, for at most ``timeout_s``, once ``grace_s`` has passed with some left."""
        if grace_s > 0 and wait_until(lambda: not group_members(pgid), grace_s, 0.1):
            return

        def gone() -> bool:
            if not group_members(pgid):
                return True
            _signal(pgid, signal.SIGKILL, group=True)
            return False

        wait_until(gone, timeout_s, 0.02)

    def kill(self) -> None:
        """SIGKILLs the whole group at once (a crash, for tests and drills); files stay."""
        self.stop(timeout_s=0.0, force=True)

    def log_tail(self, lines: int = 40, *, since_start: bool = True) -> str:
        """The last ``lines`` lines of the log (since this object's start, with ``since_start``)."""
        return log_tail(self.log_file, offset=self.log_offset if since_start else 0, lines=lines)


class ManagedServer(BaseModel, ABC):
    """Base of a server class (a pydantic model) that runs one :class:`ManagedProcess`.

    It holds the process handle (made on first use, pointed at ``log_file`` and ``pid_file``;
    a copy of the object gets its own handle on the same child), the log tail and the context
    manager (``with server:`` starts it and stops it). Subclasses name their server
    (``process_name``: ``<files_dir>/<name>.pid`` and ``.log``), what its command line contains
    (``process_identity``) and the folder of its files (:attr:`files_dir`), and define
    :meth:`start` and :meth:`stop`.
    """

    process_name: ClassVar[str]
    """The stem of the server's PID and log files (``gateway``, ``tritonserver``)."""
    process_identity: ClassVar[str]
    """What the command line of a recorded PID must contain to be this server."""
    process_identity_argv0_only: ClassVar[bool] = False
    """Match ``process_identity`` against argv[0] alone."""

    _managed: ManagedProcess | None = PrivateAttr(default=None)

    @property
    @abstractmethod
    def files_dir(self) -> Path:
        """The folder of the server's PID and log files."""

    @property
    def pid_file(self) -> Path:
        """``<files_dir>/<process_name>.pid``: the PID of the server started from here."""
        return self.files_dir / f"{self.process_name}.pid"

    @property
    def log_file(self) -> Path:
        """``<files_dir>/<process_name>.log``: its output, appended to by every start."""
        return self.files_dir / f"{self.process_name}.log"

    @property
    def managed_process(self) -> ManagedProcess:
        """The server process of this object's files (started here or not)."""
        if self._managed is None:
            self._managed = ManagedProcess(
                log_file=self.log_file,
                identity=self.process_identity,
                argv0_only=self.process_identity_argv0_only,
            )
        self._managed.log_file, self._managed.pid_file = self.log_file, self.pid_file
        return self._managed

    @property
    def started_process(self) -> subprocess.Popen[bytes] | None:
        """The child process this object started (None: none, or another process started it)."""
        return None if self._managed is None else self._managed.process

    def __copy__(self) -> Self:
        """A copy with its own handle on the process this object started (if any)."""
        copied = super().__copy__()
        if self._managed is not None:
            copied._managed = copy.copy(self._managed)
        return copied

    def log_tail(self, lines: int = 40) -> str:
        """The last ``lines`` lines of the log (since this object's start, if it started it;
        empty when there is no log)."""
        return self.managed_process.log_tail(lines)

    @abstractmethod
    def start(self) -> Self:
        """Start the server (or find it running) and return ``self``."""

    @abstractmethod
    def stop(self) -> None:
        """Stop the server."""

    def __enter__(self) -> Self:
        """Start the server."""
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Stop the server."""
        self.stop()
