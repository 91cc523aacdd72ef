"""The managed-process helpers: the polling loop (on a fake clock) and a real child process."""

from __future__ import annotations

import sys
import time
from pathlib import Path

from lockgate._util.process import (
    ManagedProcess,
    cmdline_contains,
    group_members,
    log_tail,
    wait_until,
)


class FakeClock:
    """A clock that only moves when someone sleeps."""

    def __init__(self) -> None:
        self.now = 100.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def test_wait_until_returns_true_at_once_without_sleeping() -> None:
    clock = FakeClock()
    assert wait_until(lambda: True, 5.0, 0.5, clock=clock, sleep=clock.sleep)
    assert clock.sleeps == []


def test_wait_until_polls_every_interval_until_the_predicate_holds() -> None:
    clock = FakeClock()
    calls: list[float] = []

    def predicate() -> bool:
        calls.append(clock.now)
        return len(calls) == 4

    assert wait_until(predicate, 10.0, 0.5, clock=clock, sleep=clock.sleep)
    assert calls == [100.0, 100.5, 101.0, 101.5]
    assert clock.sleeps == [0.5, 0.5, 0.5]


def test_wait_until_gives_up_after_the_timeout_with_one_last_try() -> None:
    clock = FakeClock()
    calls: list[float] = []

    def predicate() -> bool:
        calls.append(clock.now)
        return False

    assert not wait_until(predicate, 2.0, 0.5, clock=clock, sleep=clock.sleep)
    assert calls == [100.0, 100.5, 101.0, 101.5, 102.0]  # the last one at the deadline
    assert clock.now == 102.0


def test_wait_until_with_no_time_tries_once() -> None:
    clock = FakeClock()
    calls: list[float] = []

    def predicate() -> bool:
        calls.append(clock.now)
        return False

    assert not wait_until(predicate, 0.0, 1.0, clock=clock, sleep=clock.sleep)
    assert calls == [100.0]
    assert clock.sleeps == []


def test_log_tail_reads_after_the_offset(tmp_path: Path) -> None:
    log = tmp_path / "server.log"
    assert log_tail(log) == ""
    log.write_text("old 1\nold 2\n")
    offset = log.stat().st_size
    with log.open("a") as out:
        out.write("new 1\nnew 2\nnew 3\n")
    assert log_tail(log, offset=offset, lines=2) == "new 2\nnew 3"
    assert log_tail(log, lines=10).splitlines()[0] == "old 1"


def _sleeper(tmp_path: Path, marker: str) -> tuple[ManagedProcess, list[str]]:
    proc = ManagedProcess(
        log_file=tmp_path / "child.log", pid_file=tmp_path / "child.pid", identity=marker
    )
    command = [
        sys.executable,
        "-c",
        "import sys, time; print('up', flush=True); time.sleep(60)",
        marker,
    ]
    return proc, command


def test_managed_process_starts_is_recognised_and_stops(tmp_path: Path) -> None:
    proc, command = _sleeper(tmp_path, "lockgate-test-sleeper")
    process = proc.start(command, banner="==== start")
    try:
        assert proc.running
        assert proc.pid == process.pid
        assert proc.recorded_pid() == process.pid
        assert proc.is_server(process.pid)
        assert cmdline_contains(process.pid, "lockgate-test-sleeper")
        assert not cmdline_contains(process.pid, "lockgate-test-sleeper", argv0_only=True)
        assert group_members(process.pid) == [process.pid]  # it leads its own group
        assert proc.wait_ready(lambda: "up" in proc.log_tail(), timeout_s=30.0, interval_s=0.02)
        assert proc.log_tail().splitlines() == ["==== start", "up"]
    finally:
        started = time.monotonic()
        proc.stop(timeout_s=10.0)
    assert time.monotonic() - started < 10.0  # SIGTERM was enough
    assert not proc.running
    assert proc.process is None
    assert process.poll() is not None
    assert not proc.is_server(process.pid)


def test_a_recorded_pid_is_stopped_only_while_it_is_the_server(tmp_path: Path) -> None:
    proc, command = _sleeper(tmp_path, "lockgate-test-recorded")
    process = proc.start(command)
    other = ManagedProcess(
        log_file=tmp_path / "child.log", pid_file=proc.pid_file, identity="not-this-one"
    )
    other.stop(timeout_s=1.0)  # the PID file names a process that is not its server
    assert process.poll() is None
    attached = ManagedProcess(
        log_file=tmp_path / "child.log", pid_file=proc.pid_file, identity="lockgate-test-recorded"
    )
    attached.stop(timeout_s=10.0)  # started elsewhere: found by its PID file and cmdline
    assert process.wait(timeout=10) is not None
    proc.stop(timeout_s=1.0)  # already gone: nothing to do


def test_wait_ready_stops_waiting_when_the_process_exits(tmp_path: Path) -> None:
    proc = ManagedProcess(log_file=tmp_path / "child.log")
    proc.start([sys.executable, "-c", "raise SystemExit(3)"])
    started = time.monotonic()
    assert not proc.wait_ready(lambda: False, timeout_s=30.0, interval_s=0.02)
    assert time.monotonic() - started < 20.0
    assert proc.process is not None
    assert proc.process.returncode == 3
    proc.kill()
    assert proc.process is None


def test_a_child_stops_on_sigterm_even_when_the_parent_ignores_it(tmp_path: Path) -> None:
    """A parent started in the background ignores SIGINT, and Dagster maps SIGTERM to SIGINT's
    handler in-process: ignored dispositions survive exec, so children must get them back."""
    import signal

    saved = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        proc, command = _sleeper(tmp_path, "lockgate-test-ignoring-parent")
        proc.start(command)
        assert proc.wait_ready(lambda: "up" in proc.log_tail(), timeout_s=30.0, interval_s=0.02)
        started = time.monotonic()
        proc.stop(timeout_s=10.0)
        assert time.monotonic() - started < 5.0  # SIGTERM ended it, not the SIGKILL fallback
    finally:
        signal.signal(signal.SIGTERM, saved[0])
        signal.signal(signal.SIGINT, saved[1])
