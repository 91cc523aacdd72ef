"""Process bodies for the shared-state concurrency tests (run in child processes)."""

from __future__ import annotations

from typing import Any


def swap_once(url: str, key: str, expected: bytes | None, data: bytes, barrier: Any) -> bool:
    """One compare-and-swap of ``key`` after every worker is ready."""
    from lockgate.state.postgres import PostgresSwapStore

    store = PostgresSwapStore(url=url, namespace="race")
    store.get(key)  # connect (and create the table) before the race, not during it
    barrier.wait(timeout=60)
    return store.swap(key, expected, data)


def move_alias_once(
    root: str, url: str, alias: str, version: str, expected: str | None, barrier: Any
) -> str:
    """Move ``alias`` to ``version`` expecting ``expected``; ``moved`` or the error's class name."""
    from lockgate.errors import AliasConflictError
    from lockgate.state.registry import SharedAliasesLocalRegistry

    registry = SharedAliasesLocalRegistry(root=root, state_url=url)
    registry.alias("fraud", alias)  # connect before the race
    barrier.wait(timeout=60)
    try:
        registry.move_alias(
            "fraud", alias, version, actor=f"writer-{version}", reason="race", expected=expected
        )
    except AliasConflictError:
        return "AliasConflictError"
    return "moved"


def report(target: Any, index: int, args: tuple[Any, ...], barrier: Any, results: Any) -> None:
    """Run ``target(*args, barrier)`` and put ``(index, result or repr(error))`` on ``results``."""
    try:
        results.put((index, target(*args, barrier)))
    except BaseException as exc:  # the parent names it
        results.put((index, f"error: {exc!r}"))
        raise


def race(target: Any, arguments: list[tuple[Any, ...]], timeout_s: float = 120.0) -> list[Any]:
    """``target(*args, barrier)`` in one forked process per ``args``, all released together.

    Forked, not spawned: a child starts with lockgate already imported (seconds saved each);
    the state pools are per process id, so no child uses a connection of its parent.
    """
    import multiprocessing

    ctx = multiprocessing.get_context("fork")
    barrier = ctx.Barrier(len(arguments))
    results = ctx.Queue()
    procs = [
        ctx.Process(target=report, args=(target, i, args, barrier, results))
        for i, args in enumerate(arguments)
    ]
    for proc in procs:
        proc.start()
    try:
        found = dict(results.get(timeout=timeout_s) for _ in procs)
    finally:
        for proc in procs:
            proc.join(timeout=30)
            if proc.is_alive():
                proc.kill()
    return [found[i] for i in range(len(arguments))]


def append_many(url: str, writer: int, count: int, barrier: Any) -> int:
    """Append ``count`` entries as ``writer`` to the PostgreSQL audit log; return the count."""
    from lockgate.state.audit import PostgresAuditLog

    log = PostgresAuditLog(url)
    log.head()  # connect (and create the tables) before the race
    barrier.wait(timeout=60)
    for i in range(count):
        log.append("canary_step", pipeline="fraud", actor=f"w{writer}", payload={"i": i})
    return count


PROMOTE_SHAPE = (5, 10, 15, 20, 15, 12, 10, 7, 4, 2)


def controller_tick(stack_fields: dict[str, Any], pipeline: str, now: float, barrier: Any) -> str:
    """One canary controller step on the persisted state: read, decide, then claim the
    transition by compare-and-swap; the action, or ``lost`` when another controller's claim won.
    """
    from lockgate.serving.canary import CanaryPolicy, CanaryState, VersionStats, decide
    from lockgate.serving.stack import RemoteServingStack

    stack = RemoteServingStack(**stack_fields)
    raw = stack.canary_state(pipeline)
    assert raw is not None
    state = CanaryState.from_dict(raw)
    served = int(now // 3600) * 1000  # the gateway's cumulative counters grow with time
    champion = VersionStats(
        requests=100_000,
        errors=200,
        p50_ms=6.0,
        p99_ms=20.0,
        mean_prediction=0.31,
        prediction_histogram=tuple(c * 1000 for c in PROMOTE_SHAPE),
    )
    challenger = VersionStats(
        **{
            **champion.to_dict(),
            "requests": served,
            "errors": served // 500,
            "prediction_histogram": tuple(c * served // 100 for c in PROMOTE_SHAPE),
        }
    )
    decision = decide(
        CanaryPolicy(hold_seconds="1h", min_requests=200),
        state,
        challenger=challenger,
        champion=champion,
        now=now,
    )
    barrier.wait(timeout=60)  # every controller has read the same state and decided
    if stack.save_canary_state(pipeline, decision.state.to_dict(), expected=raw):
        return decision.action
    return "lost"


def lease_and_claim(
    stack_fields: dict[str, Any], pipeline: str, hold_s: float, barrier: Any
) -> str:
    """Take the canary lease after every worker is ready; ``held`` (kept ``hold_s``) or ``busy``."""
    import time

    from lockgate.serving.stack import RemoteServingStack

    stack = RemoteServingStack(**stack_fields)
    stack.canary_state(pipeline)  # connect before the race
    barrier.wait(timeout=60)
    with stack.canary_lease(pipeline) as held:
        if held:
            time.sleep(hold_s)
        return "held" if held else "busy"
