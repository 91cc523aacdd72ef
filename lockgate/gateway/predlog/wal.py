"""The prediction log's write-ahead log: records durable before the answer, group-committed.

:class:`PredictionLog` buffers encoded records; one committer writes everything buffered with
one ``pwrite`` into preallocated space and, with ``fsync`` durability, waits for one
``fdatasync`` run by a helper process (:class:`_Syncer`, no GIL contention with the event loop)
before resolving the whole group (held up to ``commit_delay_s`` under load so that one fsync
covers more requests). A failed commit (a full disk) is cut back to its last whole record and
its requests answered 503. Segments rotate by size and age; a roller thread turns closed ones
into Parquet (:mod:`lockgate.gateway.predlog.parquet`).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import errno
import fcntl
import logging
import os
import queue
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from lockgate._util.fs import fsync_path, mkdirs_durable
from lockgate.gateway.errors import GatewayError, PredictionLogError
from lockgate.gateway.predlog.parquet import list_segments, roll_segment, segment_seq
from lockgate.gateway.stats import Stats

if TYPE_CHECKING:
    from lockgate.gateway.predlog.export import PredictionLogExport

__all__ = ["Durability", "PredictionLog"]

logger = logging.getLogger("lockgate.gateway")

_PREALLOC_STEP = 8 << 20
_NO_SPACE = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)


Durability = Literal["fsync", "flush"]


class PredictionLog:
    """Write-ahead prediction log with group commit and a Parquet roller.

    ``append`` buffers an encoded record and returns a future that resolves once the record is
    durable. One committer task takes everything buffered since its last round and writes it
    with one ``pwrite`` (on the event loop: a page-cache copy of a few kB into preallocated
    space); with ``fsync`` durability it then waits for one ``fdatasync``, run by a helper
    process (see :class:`_Syncer`) so the event loop keeps serving, and resolves the futures of
    the whole group when it returns: concurrent requests share one fsync, and the next group
    is collected while the disk works. Segments rotate by size and age (on an I/O thread); the
    roller converts closed segments to Parquet on its own thread.

    Args:
        log_dir: root folder of the log (``_wal/`` holds the segments).
        durability: ``fsync`` (fdatasync before answering; survives power loss) or ``flush``
            (``write`` to the OS before answering; survives a crash of the process only).
        segment_max_bytes: rotate the active segment beyond this size.
        segment_max_age_s: rotate a non-empty segment older than this.
        commit_interval_s: minimum time between group commits (0: commit as soon as the previous
            commit is done: lowest latency, still batched under load).
        commit_delay_s: with ``fsync``, hold a commit up to this long while at least
            ``commit_siblings`` requests in flight have no record yet, releasing it as soon as
            at least as many records wait as requests remain in flight (PostgreSQL's
            ``commit_delay`` / ``commit_siblings``, released at half). Under load one fdatasync
            then covers several requests instead of one or two, while the other half keep the
            upstream busy: on the 2-core benchmark machine this halved the gateway's CPU per
            request at 16 clients. A lone request is never held. 0 turns it off.
        commit_siblings: see ``commit_delay_s``.
        stats: where commit metrics are counted.
        export: where rolled Parquet parts are uploaded (object storage; see
            :class:`~lockgate.gateway.predlog.export.PredictionLogExport`), after every roll on
            the roller thread; a failed upload is logged and retried by the next roll, never
            blocking the log. None: the parts stay local only.
    """

    def __init__(
        self,
        log_dir: str | os.PathLike[str],
        *,
        durability: Durability = "fsync",
        segment_max_bytes: int = 64 << 20,
        segment_max_age_s: float = 60.0,
        commit_interval_s: float = 0.0,
        commit_delay_s: float = 0.001,
        commit_siblings: int = 2,
        stats: Stats | None = None,
        export: PredictionLogExport | None = None,
    ) -> None:
        if durability not in ("fsync", "flush"):
            raise GatewayError(f"durability={durability!r} must be 'fsync' or 'flush'")
        self.log_dir = Path(log_dir)
        self.wal_dir = self.log_dir / "_wal"
        self.durability = durability
        self.segment_max_bytes = segment_max_bytes
        self.segment_max_age_s = segment_max_age_s
        self.commit_interval_s = commit_interval_s
        self.commit_delay_s = commit_delay_s
        self.commit_siblings = commit_siblings
        self.stats = stats or Stats()
        self.export = export
        self._gather: asyncio.Future[None] | None = None
        self._chunks: list[bytes] = []
        self._waiters: list[asyncio.Future[None]] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None
        self._roll_wake: asyncio.Event | None = None
        self._io_lock: asyncio.Lock | None = None
        self._io_queue: queue.SimpleQueue[tuple[Callable[[], Any], asyncio.Future[Any]] | None]
        self._io_queue = queue.SimpleQueue()
        self._io_thread: threading.Thread | None = None
        self._syncer: _Syncer | None = None
        self._done: asyncio.Future[None] | None = None
        self._roller: ThreadPoolExecutor | None = None
        self._active_seq = 1 << 62  # segments below this number are closed
        self._fd = -1
        self._seg_path: Path | None = None
        self._seg_size = 0
        self._seg_alloc = 0
        self._tail_dirty = False  # a failed write may have left bytes after _seg_size
        self._seg_started = 0.0
        self._last_seq = 0
        self._lock_fd = -1
        self._tasks: list[asyncio.Task[None]] = []
        self._closing = False

    # -- lifecycle ------------------------------------------------------------------------

    def recover(self) -> int:
        """Lock the log folder and convert segments left by an earlier process.

        Returns:
            Records recovered.

        Raises:
            PredictionLogError: another gateway holds the log folder.
        """
        mkdirs_durable(self.wal_dir)
        if self._lock_fd < 0:
            fd = os.open(self.wal_dir / "LOCK", os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                raise PredictionLogError(
                    f"prediction log {self.log_dir} is in use by another gateway (lock "
                    f"{self.wal_dir / 'LOCK'}); give each gateway its own log_dir"
                ) from None
            self._lock_fd = fd
        total = 0
        for seg in list_segments(self.wal_dir):
            self._last_seq = max(self._last_seq, segment_seq(seg))
            n = roll_segment(seg, self.log_dir)
            self.stats.segments_rolled += 1
            total += n
            logger.info("recovered %d records from %s", n, seg)
        self.export_parts()
        return total

    def export_parts(self) -> dict[str, Any] | None:
        """Upload the rolled parts not exported yet (:attr:`export`); None without an export.

        Never raises: a failure is logged and the next roll retries (the parts stay local).
        """
        if self.export is None:
            return None
        try:
            report = self.export.export(self.log_dir)
        except Exception as exc:
            logger.error("exporting the prediction log to %s failed: %s", self.export.url, exc)
            return None
        if report["uploaded"]:
            logger.info("exported %d prediction log parts", len(report["uploaded"]))
        return report

    async def start(self) -> None:
        """Recover leftovers, open a fresh segment and start the committer and roller."""
        loop = self._loop = asyncio.get_running_loop()
        self._done = loop.create_future()
        self._done.set_result(None)
        self._roller = ThreadPoolExecutor(1, thread_name_prefix="lockgate-roll")
        self._io_queue = queue.SimpleQueue()
        self._io_thread = threading.Thread(
            target=_io_worker, args=(self._io_queue, loop), name="lockgate-wal-io", daemon=True
        )
        self._io_thread.start()
        await loop.run_in_executor(self._roller, self.recover)
        await self._io(self._open_segment)
        if self.durability == "fsync":
            self._syncer = _Syncer(loop)
            self._syncer.start()
        self._wake = asyncio.Event()
        self._roll_wake = asyncio.Event()
        self._io_lock = asyncio.Lock()
        self._closing = False
        self._tasks = [
            asyncio.create_task(self._commit_loop(), name="lockgate-wal-commit"),
            asyncio.create_task(self._roll_loop(), name="lockgate-wal-roll"),
        ]

    async def close(self) -> None:
        """Commit what is buffered, close the segment, roll everything and unlock."""
        if not self._tasks:
            return
        self._closing = True
        assert self._wake is not None
        assert self._roll_wake is not None
        assert self._roller is not None
        self._wake.set()
        self._roll_wake.set()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        await self._io(self._close_segment)
        if self._syncer is not None:
            self._syncer.close()
            self._syncer = None
        self._io_queue.put(None)
        if self._io_thread is not None:
            self._io_thread.join()
        self._active_seq = 1 << 62
        await asyncio.get_running_loop().run_in_executor(self._roller, self._roll_closed)
        self._roller.shutdown(wait=True)
        if self._lock_fd >= 0:
            os.close(self._lock_fd)
            self._lock_fd = -1

    # -- hot path -------------------------------------------------------------------------

    def append(self, record: bytes) -> asyncio.Future[None]:
        """Buffer an encoded record; the future resolves when it is durable."""
        if self._wake is None or self._closing or self._loop is None:
            fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            fut.set_exception(PredictionLogError("prediction log is not running"))
            return fut
        if (
            not self._chunks
            and self._io_lock is not None
            and not self._io_lock.locked()
            and self._fd >= 0
            and self._seg_size < self.segment_max_bytes
            and (self._syncer is None or self.stats.inflight <= 1)
        ):
            # Fast path, no hop through the committer: with flush durability the OS has the
            # record once pwrite returns; with fsync and no other request in flight, blocking
            # the event loop for one fdatasync (~0.1-0.2 ms) delays nobody and saves the
            # round trip to the fsync helper.
            start = self._seg_size
            try:
                self._write((record,))
                if self._syncer is not None:
                    os.fdatasync(self._fd)
            except OSError as exc:
                if self._seg_size != start:  # written but not confirmed durable: not logged
                    self._undo(start)
                fut = self._loop.create_future()
                fut.set_exception(self._commit_error(exc))
                return fut
            self.stats.wal_commits += 1
            self.stats.wal_records += 1
            if self._seg_size >= self.segment_max_bytes:
                self._wake.set()  # the committer rotates
            assert self._done is not None
            return self._done
        fut = self._loop.create_future()
        self._chunks.append(record)
        self._waiters.append(fut)
        self._wake.set()
        gather = self._gather
        if gather is not None and not gather.done() and not self._should_hold():
            gather.set_result(None)

        return fut

    def _should_hold(self) -> bool:
        """Whether a commit is worth holding: at least ``commit_siblings`` requests in flight
        have no record yet, and more of them than there are records waiting. Releasing once
        half have arrived keeps the other half at the upstream while the disk works."""
        waiting = len(self._waiters)
        others = self.stats.inflight - waiting
        return others >= self.commit_siblings and others > waiting

    def _commit_error(self, exc: BaseException) -> PredictionLogError:
        self.stats.wal_errors += 1
        logger.error("prediction log commit failed: %s", exc)
        return PredictionLogError(
            f"prediction log {self.wal_dir} cannot be written ({exc}); the request was not "
            "answered because it could not be logged; free disk space or fix permissions"
        )

    def append_nowait(self, record: bytes) -> None:
        """Buffer a record nobody waits for (shadow results); committed with the next group."""
        if self._wake is None or self._closing:
            return
        self._chunks.append(record)
        self._wake.set()

    def _io(self, fn: Callable[[], Any]) -> asyncio.Future[Any]:
        """Run ``fn`` on the I/O thread; the future settles on the event loop."""
        assert self._loop is not None
        fut: asyncio.Future[Any] = self._loop.create_future()
        self._io_queue.put((fn, fut))
        return fut

    async def _commit_loop(self) -> None:
        assert self._wake is not None
        assert self._io_lock is not None
        while True:
            if not self._chunks:
                if self._fd >= 0 and self._seg_size >= self.segment_max_bytes:
                    try:
                        async with self._io_lock:
                            if self._seg_size >= self.segment_max_bytes:
                                await self._io(self._rotate)
                        if self._roll_wake is not None:
                            self._roll_wake.set()
                    except Exception as exc:
                        logger.error("rotating the prediction log failed: %s", exc)
                        await asyncio.sleep(1.0)
                    continue
                if self._closing:
                    return
                await self._wake.wait()
                self._wake.clear()
                continue
            if self.commit_interval_s > 0 and not self._closing:
                await asyncio.sleep(self.commit_interval_s)
            elif (
                self._syncer is not None
                and self.commit_delay_s > 0
                and not self._closing
                and self._should_hold()
            ):
                await self._gather_group()
            chunks, waiters = self._chunks, self._waiters
            self._chunks, self._waiters = [], []
            t0 = time.perf_counter()
            rotated = False
            try:
                async with self._io_lock:
                    if self._fd < 0:  # opening the next segment failed before (full disk)
                        await self._io(self._open_segment)
                    start = self._seg_size
                    self._write(chunks)
                    try:
                        if self._seg_size >= self.segment_max_bytes:
                            # syncs the full segment before closing it
                            await self._io(self._close_segment)
                            rotated = True
                        elif self._syncer is not None:
                            assert self._seg_path is not None
                            await self._syncer.sync(self._seg_path)
                    except BaseException:
                        if self._fd >= 0:  # not confirmed durable: these records are not logged
                            self._undo(start)
                        raise
                    if rotated:  # the records are durable in the closed segment
                        try:
                            await self._io(self._open_segment)
                        except OSError as exc:  # the next commit tries again
                            logger.error("opening a new WAL segment failed: %s", exc)
            except Exception as exc:
                err = self._commit_error(exc)
                for w in waiters:
                    if not w.done():
                        w.set_exception(err)
                continue
            self.stats.wal_commit.observe(time.perf_counter() - t0)
            self.stats.wal_commits += 1
            self.stats.wal_records += len(chunks)
            for w in waiters:
                if not w.done():
                    w.set_result(None)
            if rotated and self._roll_wake is not None:
                self._roll_wake.set()

    async def _gather_group(self) -> None:
        """Hold a commit until :meth:`_should_hold` says no (checked at each append) or
        ``commit_delay_s`` has passed (PostgreSQL's commit_delay/commit_siblings)."""
        assert self._loop is not None
        gather = self._gather = self._loop.create_future()
        timer = self._loop.call_later(self.commit_delay_s, _settle, gather, None, None)
        try:
            await gather
        finally:
            timer.cancel()
            self._gather = None

    async def _roll_loop(self) -> None:
        assert self._roll_wake is not None
        assert self._io_lock is not None
        assert self._roller is not None
        loop = asyncio.get_running_loop()
        while not self._closing:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(self.segment_max_age_s / 2, 0.05)):
                    await self._roll_wake.wait()
            self._roll_wake.clear()
            if self._closing:
                return
            try:
                if (
                    self._seg_size > 0
                    and time.monotonic() - self._seg_started >= self.segment_max_age_s
                ):
                    async with self._io_lock:
                        await self._io(self._rotate)
                await loop.run_in_executor(self._roller, self._roll_closed)
            except Exception as exc:  # keep serving; the segment stays and is retried
                logger.error("rolling the prediction log failed: %s", exc)

    async def rotate_now(self) -> tuple[int, int]:
        """Close the active segment and roll every closed segment to Parquet now.

        Returns:
            Segments and records rolled.
        """
        assert self._io_lock is not None
        assert self._roller is not None
        async with self._io_lock:
            await self._io(self._rotate)
        return await asyncio.get_running_loop().run_in_executor(self._roller, self._roll_closed)

    # -- file operations (event loop for write; I/O thread for the rest) ------------------

    def _write(self, chunks: list[bytes] | tuple[bytes, ...]) -> None:
        """Append records at the end of the segment, all or nothing.

        A write that fails part way (``ENOSPC`` after some bytes reached the file) is undone:
        the file is cut back to where the write began, so the next records follow the last
        whole one and no torn bytes ever sit between records. ``_seg_size`` moves only once
        every byte is written.
        """
        data = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        start = self._seg_size
        end = start + len(data)
        if self._fd < 0:
            raise OSError(errno.EBADF, "no open WAL segment (opening one failed before)")
        try:
            if self._tail_dirty:
                os.ftruncate(self._fd, start)  # what a failed write left after the last record
                self._tail_dirty = False
                self._seg_alloc = start
            if end > self._seg_alloc:
                self._preallocate(end)
            view = memoryview(data)
            pos = start
            while view:
                n = os.pwrite(self._fd, view, pos)
                view = view[n:]
                pos += n
        except OSError:
            self._undo(start)
            raise
        self._seg_size = end

    def _undo(self, start: int) -> None:
        """Forget everything after ``start``: a failed write or an unconfirmed ``fdatasync``.

        The segment is cut back to ``start`` (giving the space back); if even that fails, the
        next write cuts it first. Records before ``start`` were made durable by earlier commits.
        """
        self._seg_size = start
        self._tail_dirty = True
        try:
            os.ftruncate(self._fd, start)
        except OSError as exc:
            logger.error(
                "cannot cut WAL segment %s back to %d bytes: %s", self._seg_path, start, exc
            )
            return
        self._tail_dirty = False
        self._seg_alloc = start

    def _preallocate(self, end: int) -> None:
        """Reserve the next blocks: fdatasync then need not journal a size change per commit
        (about 100 us instead of 170 us per fsync on ext4 here). Zeros past the last record
        read as the end of the segment.

        On a nearly full disk the step is cut to what this write needs; when even that does not
        fit, ``ENOSPC`` is raised (the commit fails, its requests get 503) and the next write
        tries again. Only a file system without ``fallocate`` turns preallocation off.
        """
        step = self._seg_alloc + min(_PREALLOC_STEP, self.segment_max_bytes)
        for target in (max(end, step), end):
            try:
                os.posix_fallocate(self._fd, self._seg_alloc, target - self._seg_alloc)
            except OSError as exc:
                if exc.errno in _NO_SPACE:
                    if target > end:
                        continue
                    raise
                self._seg_alloc = 1 << 62  # not supported here: plain appends
                return
            self._seg_alloc = target
            return

    def _open_segment(self) -> None:
        seq = max(time.time_ns() // 1000, self._last_seq + 1)
        self._last_seq = seq
        self._active_seq = seq  # before the file exists: the roller must never touch it
        path = self.wal_dir / f"wal-{seq:020d}.log"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            self._fd = fd
            self._seg_size = 0
            self._seg_alloc = 0
            self._tail_dirty = False
            with contextlib.suppress(OSError):  # a full disk: the first write tries again
                self._preallocate(1)
            os.fdatasync(fd)  # the preallocated size is durable
            fsync_path(self.wal_dir)  # the segment's name is durable before any record is acked
        except BaseException:
            self._fd = -1
            os.close(fd)
            with contextlib.suppress(OSError):
                path.unlink()
            raise
        self._seg_path = path
        self._seg_started = time.monotonic()

    def _close_segment(self) -> None:
        if self._fd >= 0:
            os.fdatasync(self._fd)
            os.close(self._fd)
            self._fd = -1
            self._seg_path = None

    def _rotate(self) -> None:
        self._close_segment()
        self._open_segment()

    def _roll_closed(self) -> tuple[int, int]:
        active = self._active_seq
        segments = records = 0
        for seg in list_segments(self.wal_dir):
            if segment_seq(seg) >= active:
                continue
            records += roll_segment(seg, self.log_dir)
            segments += 1
            self.stats.segments_rolled += 1
        self.export_parts()  # also retries what a failed export left
        return segments, records


_SYNCER_CODE = r"""
import os
fd, current, buf = -1, b"", b""
while True:
    data = os.read(0, 65536)
    if not data:
        break
    buf += data
    while b"\n" in buf:
        path, buf = buf.split(b"\n", 1)
        try:
            if path != current:
                if fd >= 0:
                    os.close(fd)
                fd, current = -1, b""
                fd, current = os.open(path, os.O_RDONLY), path
            os.fdatasync(fd)
            os.write(1, b"K\n")
        except OSError as exc:
            os.write(1, b"E " + str(exc).encode().replace(b"\n", b" ") + b"\n")
"""


class _Syncer:
    """fdatasync in a helper process: no GIL between it and the event loop.

    A thread would need the GIL twice per commit; while the event loop is busy that wait runs
    into the interpreter's switch interval (5 ms), a convoy that made the group commit take 1-5 ms
    under load. The helper gets one line per commit (the segment path) on a pipe, runs
    ``fdatasync`` on its own descriptor of that file (fsync acts on the file, whichever
    descriptor), and answers ``K`` or ``E <error>``; the reply pipe is an event-loop reader. If
    the helper dies, the commits in flight fail (their requests get 503) and the next commit
    starts a new helper.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.proc: subprocess.Popen[bytes] | None = None
        self.pending: collections.deque[asyncio.Future[None]] = collections.deque()
        self.buf = b""

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-I", "-c", _SYNCER_CODE],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            bufsize=0,
        )
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        os.set_blocking(fd, False)
        self.loop.add_reader(fd, self._readable)

    def sync(self, path: Path) -> asyncio.Future[None]:
        fut: asyncio.Future[None] = self.loop.create_future()
        line = os.fsencode(path) + b"\n"
        for attempt in (0, 1):
            if self.proc is None:  # not started or found dead: no waitpid per commit
                self.start()
            assert self.proc is not None
            assert self.proc.stdin is not None
            try:
                os.write(self.proc.stdin.fileno(), line)
            except OSError as exc:  # died before the event loop saw its pipe close
                self._fail(f"the fsync helper exited ({exc})")  # commits it did not answer
                self._stop()
                if attempt:
                    fut.set_exception(OSError(f"cannot reach the fsync helper ({exc})"))
                    return fut
                continue
            self.pending.append(fut)
            return fut
        raise AssertionError("unreachable")  # pragma: no cover

    def _readable(self) -> None:
        assert self.proc is not None
        assert self.proc.stdout is not None
        try:
            data = os.read(self.proc.stdout.fileno(), 65536)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self._fail("the fsync helper exited")
            self._stop()
            return
        self.buf += data
        while b"\n" in self.buf:
            line, self.buf = self.buf.split(b"\n", 1)
            if not self.pending:
                continue
            fut = self.pending.popleft()
            if fut.done():
                continue
            if line == b"K":
                fut.set_result(None)
            else:
                fut.set_exception(OSError(line[2:].decode("utf-8", "replace")))

    def _fail(self, why: str) -> None:
        while self.pending:
            fut = self.pending.popleft()
            if not fut.done():
                fut.set_exception(OSError(why))

    def _stop(self) -> None:
        proc, self.proc = self.proc, None
        self.buf = b""
        if proc is None:
            return
        if proc.stdout is not None:
            with contextlib.suppress(Exception):
                self.loop.remove_reader(proc.stdout.fileno())
            proc.stdout.close()
        if proc.stdin is not None:
            with contextlib.suppress(OSError):
                proc.stdin.close()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def close(self) -> None:
        self._fail("the prediction log is closing")
        self._stop()


def _io_worker(
    jobs: queue.SimpleQueue[tuple[Callable[[], Any], asyncio.Future[Any]] | None],
    loop: asyncio.AbstractEventLoop,
) -> None:
    """The WAL's I/O thread: run each job, settle its future on the event loop."""
    while True:
        job = jobs.get()
        if job is None:
            return
        fn, fut = job
        try:
            result, error = fn(), None
        except BaseException as exc:
            result, error = None, exc
        with contextlib.suppress(RuntimeError):  # the loop is gone: nobody is waiting
            loop.call_soon_threadsafe(_settle, fut, result, error)


def _settle(fut: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    if fut.done():
        return
    if error is not None:
        fut.set_exception(error)
    else:
        fut.set_result(result)
