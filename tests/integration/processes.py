"""Process helpers for the integration tests that kill servers: the live members of a process
group, read from ``/proc``."""

from __future__ import annotations

from pathlib import Path


def group_members(pgid: int) -> list[int]:
    """The pids of the live (not zombie) processes in process group ``pgid``."""
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":  # state, ppid, pgrp; zombies are dead
            members.append(int(stat.parent.name))
    return members
