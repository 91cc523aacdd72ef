"""Small process helpers shared by the local server resources (Triton, the gateway)."""

from __future__ import annotations

from pathlib import Path

__all__ = ["cmdline_contains", "log_tail"]


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
