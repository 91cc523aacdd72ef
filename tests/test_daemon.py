"""Stopping a :class:`~lockgate.daemon.DagsterDaemon` leaves nothing of its process group running.

The daemon starts code servers (and they run workers) in its own process group. A code server
that outlived a stopped daemon once ran on, its parent gone, for hours; the stop now sweeps the
group after a grace period.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from lockgate import Environment
from lockgate._util.process import group_members
from lockgate.daemon import DagsterDaemon

# the leader exits on SIGTERM; its child ignores SIGTERM, as the leaked code server did
_CHILD = (
    "import signal, time, pathlib, sys; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
    "pathlib.Path(sys.argv[1]).write_text('up'); time.sleep(600)"
)


def _start_group(daemon: DagsterDaemon, tmp_path: Path) -> int:
    ready = tmp_path / "child-up"
    leader = f'"{sys.executable}" -c "{_CHILD}" "{ready}" & wait'
    process = daemon._proc.start(["/bin/sh", "-c", leader])
    deadline = time.monotonic() + 30
    while not ready.exists():
        assert time.monotonic() < deadline, "the child never started"
        time.sleep(0.02)
    return process.pid


def test_stop_ends_a_group_member_that_ignores_sigterm(tmp_path: Path) -> None:
    daemon = DagsterDaemon(Environment.local(tmp_path / "home"), tmp_path / "workspace.yaml")
    daemon.log_path.parent.mkdir(parents=True)
    pgid = _start_group(daemon, tmp_path)
    assert len(group_members(pgid)) == 2

    started = time.monotonic()
    daemon.stop(timeout_s=5.0, grace_s=0.5)

    assert group_members(pgid) == []
    assert daemon.process is None
    assert time.monotonic() - started < 15.0


def test_stop_lets_the_group_exit_on_its_own_within_the_grace(tmp_path: Path) -> None:
    # a member that exits on SIGTERM is not SIGKILLed: the grace gives it the time it needs
    daemon = DagsterDaemon(Environment.local(tmp_path / "home"), tmp_path / "workspace.yaml")
    daemon.log_path.parent.mkdir(parents=True)
    done = tmp_path / "cleaned-up"
    child = (
        "import signal, time, pathlib, sys\n"
        "def bye(*_):\n"
        "    time.sleep(0.5); pathlib.Path(sys.argv[2]).write_text('clean'); sys.exit(0)\n"
        "signal.signal(signal.SIGTERM, bye)\n"
        "pathlib.Path(sys.argv[1]).write_text('up'); time.sleep(600)"
    )
    ready = tmp_path / "child-up"
    script = tmp_path / "child.py"
    script.write_text(child)
    process = daemon._proc.start(
        ["/bin/sh", "-c", f'"{sys.executable}" "{script}" "{ready}" "{done}" & wait']
    )
    deadline = time.monotonic() + 30
    while not ready.exists():
        assert time.monotonic() < deadline, "the child never started"
        time.sleep(0.02)

    daemon.stop(timeout_s=5.0, grace_s=10.0)

    assert group_members(process.pid) == []
    assert done.read_text() == "clean"  # it finished its cleanup: no SIGKILL cut it short
