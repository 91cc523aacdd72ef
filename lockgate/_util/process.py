"""Small process helpers shared by the local servers (Triton, the gateway, the Dagster daemon)."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

__all__ = ["cmdline_contains", "log_tail", "stop_process_group"]


def cmdline_contains(pid: int, needle: bytes, *, argv0_only: bool = False) -> bool:
    """Whether process ``pid`` is alive and its command line (or argv[0]) contains ``needle``.

    Guards against signalling an unrelated process that reused a stale PID.
    """
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return needle in (cmdline.split(b"\0")[0] if argv0_only else cmdline)


def log_tail(path: Path, *, offset: int = 0, lines: int = 40) -> str:
    """The last ``lines`` lines of ``path`` after byte ``offset`` ("" when there is no log)."""
    try:
        with open(path, "rb") as handle:
            handle.seek(offset)
            text = handle.read().decode("utf-8", errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def stop_process_group(pid: int, *, timeout_s: float = 15.0) -> None:
    """SIGTERM the process group led by ``pid`` (servers start in their own session), then
    SIGKILL what is left after ``timeout_s``; works on servers another process started.

    Returns once the leader is gone or a zombie (a child of the caller: reap it with
    ``wait``)."""
    for sig, wait in ((signal.SIGTERM, timeout_s), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
                if Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
                    return
            except (ProcessLookupError, FileNotFoundError):
                return
            time.sleep(0.05)
