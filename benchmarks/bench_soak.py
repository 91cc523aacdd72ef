"""Soak: bounded loopback load through a real serving stack while faults hit it on a schedule.

A lockgate home serves a LightGBM champion with a canary challenger (real tritonserver, real
gateway with ``fsync`` durability, started and kept up by ``lockgate serve supervise --interval
0.5``, a subprocess and the servers' parent, no Dagster daemon). The gateway's prediction log
lives on a small tmpfs this script mounts (root needed) and unmounts. While ``--clients``
closed-loop clients send ``--rate`` requests/s in all (JSON KServe v2, 1-8 wire rows, each with
its own ``x-lockgate-trace-id``; every answer, its status and every transport error are
counted), the canary controller (:func:`lockgate.sensors.canary.run_canary_tick`, what the
daemon's sensor runs) ticks every second and a canary rolled back is opened again. Over
``--duration`` seconds, in ``--cycles`` equal cycles (default one per 150 s), each cycle injects:

* **gateway SIGKILL** (the gateway process alone);
* **tritonserver SIGKILL** (the server alone; its python-backend stubs stay, as after the OOM
  killer);
* **disk full, then freed**: a filler file takes every free byte of the tmpfs; the gateway's
  active WAL segment is then closed at once (``POST /admin/log/roll``, what its 60 s age
  rotation does anyway), so the full disk bites now instead of within a minute: the segment's
  preallocated space would otherwise absorb the writes. After ``--full-s`` the filler is deleted.

A fault waits until the previous one has recovered. Recovery of a kill: seconds from the
SIGKILL to the champion answering through the gateway (a version-pinned request every 50 ms),
and to every routed version being loaded again (``full``); of a full disk: seconds from freeing
the space to the next answer. The controller does not tick from a kill until the supervisor has
reloaded every routed version (one restorer at a time: a tick's own ``ensure()`` would race the
supervisor's restart on the same kept ports).

At the end the load stops, the supervisor gets SIGTERM, the gateway rolls its log, and the
prediction log (:func:`lockgate.gateway.predlog.iter_prediction_log`) is compared with what clients
saw: every answered 2xx trace id must be logged (``lost`` must be 0). Also reported: errors by
kind, the 503s refused while the disk was full, answered non-2xx requests missing from the log,
logged requests no client saw answered (cut by a kill), canary ticks by action and the
supervisor's audited ``serving_restored`` entries. Exit status 0 only when nothing was lost and
every fault recovered; 77 when a tmpfs cannot be mounted.

Example:
    .venv/bin/python benchmarks/bench_soak.py --duration 600
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import http.client
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
PIPELINE = "soaklet"
NO_MOUNT = 77
LOCKGATE = [sys.executable, "-m", "lockgate.cli"]
RESTORE_KEYS = (
    "triton_restarted",
    "gateway_restarted",
    "reaped_stubs",
    "loaded",
    "recovery_s",
    "full_recovery_s",
    "answering",
)


# ---------------------------------------------------------------------------------------------
# clients


class Ledger:
    """Every request sent: trace id -> what came back (an HTTP status or a transport error)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.events: list[tuple[float, str, int | str, str]] = []  # (t, trace, status|kind, msg)
        self.versions: Counter[str] = Counter()

    def add(self, trace: str, outcome: int | str, message: str = "", version: str = "") -> None:
        with self.lock:
            self.events.append((time.monotonic(), trace, outcome, message))
            if version:
                self.versions[version] += 1


def _body(rows: np.ndarray) -> bytes:
    return json.dumps(
        {
            "inputs": [
                {
                    "name": "INPUT__0",
                    "shape": list(rows.shape),
                    "datatype": "FP32",
                    "data": rows.ravel().tolist(),
                }
            ]
        }
    ).encode()


class Client:
    """One keep-alive HTTP connection to the gateway; reconnects after a transport error."""

    def __init__(self, host_port: str, ledger: Ledger) -> None:
        self.host, port = host_port.removeprefix("http://").rsplit(":", 1)
        self.port = int(port)
        self.ledger = ledger
        self.conn: http.client.HTTPConnection | None = None

    def send(self, path: str, trace: str, rows: np.ndarray) -> int | str:
        headers = {"content-type": "application/json", "x-lockgate-trace-id": trace}
        try:
            if self.conn is None:
                self.conn = http.client.HTTPConnection(self.host, self.port, timeout=15)
            self.conn.request("POST", path, body=_body(rows), headers=headers)
            response = self.conn.getresponse()
            data = response.read()
        except Exception as exc:  # a transport error: not answered
            self.close()
            kind = type(exc).__name__
            if isinstance(exc, OSError) and exc.errno == errno.ECONNREFUSED:
                kind = "ConnectionRefused"
            self.ledger.add(trace, kind, str(exc)[:160])
            return kind
        status = response.status
        message, version = "", ""
        try:
            answer = json.loads(data)
        except ValueError:
            answer = {}
        if 200 <= status < 300:
            echoed = (answer.get("parameters") or {}).get("lockgate_trace_id")
            version = str(answer.get("model_version"))
            if echoed != trace:
                message = f"trace id echoed as {echoed!r}"
        else:
            message = str(answer.get("error", data[:160]))
            tag = "[disk full] " if "free disk space" in message else ""
            message = tag + message[:200]
        self.ledger.add(trace, status, message, version)
        if response.will_close:
            self.close()
        return status

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None


class Load:
    """``clients`` closed-loop clients at ``rate`` requests/s in all (never more, never bursts)."""

    def __init__(
        self, url: str, matrix: np.ndarray, ledger: Ledger, *, clients: int, rate: float
    ) -> None:
        self.url, self.matrix, self.ledger = url, matrix, ledger
        self.clients, self.interval = clients, clients / rate
        self.stop_event = threading.Event()
        self.threads: list[threading.Thread] = []

    def _run(self, n: int) -> None:
        client = Client(self.url, self.ledger)
        rng = np.random.default_rng(n)
        path = f"/v2/models/{PIPELINE}/infer"
        i = 0
        next_at = time.monotonic()
        while not self.stop_event.is_set():
            rows = int(rng.integers(1, 9))
            start = int(rng.integers(0, len(self.matrix) - rows))
            outcome = client.send(path, f"c{n}-{i}", self.matrix[start : start + rows])
            i += 1
            if isinstance(outcome, str):  # transport error: back off a little
                next_at = max(next_at, time.monotonic() + 0.05)
            next_at = max(next_at + self.interval, time.monotonic())
            self.stop_event.wait(max(0.0, next_at - time.monotonic()))
        client.close()

    def start(self) -> Load:
        for n in range(self.clients):
            thread = threading.Thread(target=self._run, args=(n,), daemon=True)
            thread.start()
            self.threads.append(thread)
        return self

    def stop(self) -> None:
        self.stop_event.set()
        for thread in self.threads:
            thread.join(timeout=60)


class Prober:
    """Version-pinned requests to the champion, one every 50 ms, until one is answered."""

    def __init__(self, url: str, matrix: np.ndarray, ledger: Ledger, champion: str) -> None:
        self.client = Client(url, ledger)
        self.rows = matrix[:1]
        self.path = f"/v2/models/{PIPELINE}/versions/{champion}/infer"
        self.n = 0

    def answered_at(self, timeout_s: float = 180.0) -> float | None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            self.n += 1
            outcome = self.client.send(self.path, f"probe-{self.n}", self.rows)
            if isinstance(outcome, int) and 200 <= outcome < 300:
                return time.monotonic()
            time.sleep(0.05)
        return None


# ---------------------------------------------------------------------------------------------
# the canary controller


class Controller:
    """Ticks the canary every ``tick_s`` (unless paused); opens the canary again once ended."""

    def __init__(self, spec: Any, stack: Any, registry: Any, audit: Any, versions: Any) -> None:
        self.spec, self.stack, self.registry, self.audit = spec, stack, registry, audit
        self.champion, self.challenger = versions
        self.lock = threading.Lock()
        self.paused = threading.Event()
        self.stop_event = threading.Event()
        self.actions: Counter[str] = Counter()
        self.reasons: Counter[str] = Counter()
        self.errors: Counter[str] = Counter()
        self.opened = 0
        self.thread = threading.Thread(target=self._run, daemon=True)

    def open_canary(self) -> None:
        from lockgate.assets.serving import apply_route, ensure_loaded
        from lockgate.serving.canary import start

        ensure_loaded(self.stack, self.registry, PIPELINE, self.challenger)
        state = start(
            self.spec.canary,
            pipeline=PIPELINE,
            champion=self.champion,
            challenger=self.challenger,
            now=time.time(),
        )
        apply_route(self.stack, PIPELINE, state.to_dict())
        self.stack.save_canary_state(PIPELINE, state.to_dict())
        self.opened += 1

    def _run(self) -> None:
        from lockgate.sensors.canary import run_canary_tick

        while not self.stop_event.wait(1.0):
            with self.lock:
                if self.paused.is_set():
                    continue
                try:
                    outcome = run_canary_tick(
                        self.spec,
                        stack=self.stack,
                        artifacts=self.registry,
                        audit=self.audit,
                        actor="bench_soak controller",
                    )
                    self.actions[outcome.action] += 1
                    if outcome.action not in ("hold", "idle"):
                        self.reasons[f"{outcome.action}: {outcome.reason}"[:160]] += 1
                    if outcome.action in ("rollback", "promote", "restored", "idle"):
                        self.open_canary()
                except Exception as exc:  # counted: the soak goes on, as the daemon would
                    self.errors[f"{type(exc).__name__}: {exc}"[:160]] += 1

    def start(self) -> Controller:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.stop_event.set()
        self.thread.join(timeout=120)


# ---------------------------------------------------------------------------------------------
# faults


def _gone(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] in ("Z", "X")


def _sigkill(pid: int) -> None:
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while not _gone(pid) and time.monotonic() < deadline:
        time.sleep(0.005)


def _all_routed_loaded(stack: Any) -> bool:
    from lockgate.serving.triton_config import triton_model_name

    try:
        triton, gateway = stack.triton(), stack.gateway()
        if not (triton.health() and gateway.health()):
            return False
        for name, route in gateway.routes().items():
            for version in (route.get("champion"), route.get("challenger")):
                if version and not triton.is_ready(triton_model_name(name, str(version))):
                    return False
    except Exception:
        return False
    return True


def _fill(mount: Path) -> int:
    """Writes a filler file until the tmpfs is full; returns its size."""
    written = 0
    chunk = b"\1" * (1 << 20)
    with open(mount / "filler", "wb", buffering=0) as out:
        while True:
            try:
                n = out.write(chunk)
            except OSError as exc:
                if exc.errno != errno.ENOSPC:
                    raise
                chunk = chunk[: len(chunk) // 2]
                if len(chunk) < 512:
                    break
                continue
            written += n or 0
    return written


def _mount(path: Path, size_mb: int) -> None:
    path.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size_mb}m,mode=0755", "tmpfs", str(path)],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        print(f"cannot mount a tmpfs at {path}: {done.stderr.strip()} (needs root)")
        sys.exit(NO_MOUNT)


def _umount(path: Path) -> None:
    for _ in range(20):
        if not os.path.ismount(path):
            return
        if subprocess.run(["umount", str(path)], capture_output=True).returncode == 0:
            return
        time.sleep(0.5)
    subprocess.run(["umount", "-l", str(path)], capture_output=True, check=False)


def _stats(values: list[float]) -> dict[str, float | int | None]:
    return {
        "n": len(values),
        "median_s": round(statistics.median(values), 3) if values else None,
        "max_s": round(max(values), 3) if values else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--duration", type=float, default=600.0, help="seconds of load")
    parser.add_argument("--cycles", type=int, default=0, help="fault cycles (0: one per 150 s)")
    parser.add_argument("--full-s", type=float, default=0.0, help="disk-full seconds (0: auto)")
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--rate", type=float, default=100.0, help="requests/s, all clients")
    parser.add_argument("--disk-mb", type=int, default=64, help="tmpfs size of the log")
    parser.add_argument("--out", default=str(ROOT / "benchmarks/results/soak.json"))
    args = parser.parse_args()
    if shutil.which("mount") is None:
        print("no mount command: the soak needs a small tmpfs")
        sys.exit(NO_MOUNT)

    from lockgate import Environment
    from lockgate.audit.log import AuditLog
    from lockgate.gateway.predlog import iter_prediction_log
    from lockgate.serving.canary import CanaryPolicy
    from lockgate.serving.stack import LocalServingStack
    from lockgate.serving.wire import encode, wire_schema_for_version
    from lockgate.spec import LabelSource, ModelPipeline
    from lockgate.training import LightGBMTrainer

    policy = CanaryPolicy(  # holds at 10 % all along: the canary runs through every fault
        steps=(10, 100),
        hold_seconds=24 * 3600,
        min_requests=15,
        max_p99_ms=10_000.0,
        max_error_rate=1.0,
        max_p99_ratio=None,
        max_error_rate_delta=None,
        max_prediction_psi=None,
    )
    spec = ModelPipeline(
        name=PIPELINE,
        feature_service="soak_v1",
        label="is_fraud",
        labels=LabelSource(entity_columns=("transaction_id",)),
        trainer=LightGBMTrainer(),
        canary=policy,
    )
    cycles = args.cycles or max(1, round(args.duration / 150))
    period = args.duration / cycles
    full_s = args.full_s or min(30.0, 0.15 * period)
    from _versions import champion_and_challenger

    world = champion_and_challenger("bench-soak-", PIPELINE)
    work, home, env, registry, audit, frame, champion, challenger = world
    stack = Environment.resources(env)["serving_stack"]
    assert isinstance(stack, LocalServingStack)
    matrix = encode(frame, wire_schema_for_version(registry, PIPELINE, champion))
    assert np.isfinite(matrix).all(), "JSON clients need finite wire values"
    mount = stack.prediction_log_dir
    _mount(mount, args.disk_mb)
    ledger = Ledger()
    faults: list[dict[str, Any]] = []
    supervisor: subprocess.Popen[bytes] | None = None
    supervisor_log = work / "supervise.log"
    load: Load | None = None
    controller: Controller | None = None
    load_avg_start = os.getloadavg()
    try:
        with open(supervisor_log, "wb") as out:
            supervisor = subprocess.Popen(
                [*LOCKGATE, "serve", "supervise", "--interval", "0.5", "--home", str(home)],
                stdout=out,
                stderr=subprocess.STDOUT,
                env=dict(os.environ, DAGSTER_DISABLE_TELEMETRY="1", PYTHONUNBUFFERED="1"),
                start_new_session=True,
            )
        deadline = time.monotonic() + 180
        while not _all_routed_loaded(stack):
            if supervisor.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"the supervisor did not start the stack: {supervisor_log}")
            time.sleep(0.2)
        gateway_url = stack.gateway().url
        prober = Prober(gateway_url, matrix, ledger, champion)
        if prober.answered_at(60) is None:
            raise SystemExit("the champion does not answer")
        controller = Controller(spec, stack, registry, audit, (champion, challenger))
        controller.open_canary()
        controller.start()
        load = Load(gateway_url, matrix, ledger, clients=args.clients, rate=args.rate).start()
        t_start = time.monotonic()
        schedule = []
        for c in range(cycles):
            base = c * period
            schedule += [
                (base + 0.12 * period, "gateway_sigkill"),
                (base + 0.40 * period, "tritonserver_sigkill"),
                (base + 0.68 * period, "disk_full"),
            ]
        for at, kind in schedule:
            wait = t_start + at - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            fault: dict[str, Any] = {"kind": kind, "at_s": round(time.monotonic() - t_start, 3)}
            if kind in ("gateway_sigkill", "tritonserver_sigkill"):
                with controller.lock:  # no tick in flight; none until the supervisor is done
                    controller.paused.set()
                server = stack.gateway() if kind == "gateway_sigkill" else stack.triton()
                pid = server.pid
                assert pid is not None, f"{kind}: nothing to kill"
                _sigkill(pid)
                t0 = time.monotonic()
                answered = prober.answered_at()
                fault["killed_pid"] = pid
                fault["recovery_s"] = None if answered is None else round(answered - t0, 3)
                deadline = time.monotonic() + 180
                while not _all_routed_loaded(stack) and time.monotonic() < deadline:
                    time.sleep(0.05)
                full = _all_routed_loaded(stack)
                fault["full_recovery_s"] = round(time.monotonic() - t0, 3) if full else None
                fault["recovered"] = answered is not None and full
                controller.paused.clear()
            else:
                t_fill = time.monotonic()
                fault["filler_bytes"] = _fill(mount)
                try:
                    fault["roll"] = stack.gateway().roll_log()
                except Exception as exc:  # the roll to Parquet needs space too
                    fault["roll"] = f"{type(exc).__name__}: {exc}"[:200]
                time.sleep(max(0.0, t_fill + full_s - time.monotonic()))
                (mount / "filler").unlink()
                t0 = time.monotonic()
                answered = prober.answered_at()
                fault["full_s"] = round(t0 - t_fill, 3)
                fault["recovery_s"] = None if answered is None else round(answered - t0, 3)
                fault["recovered"] = answered is not None
                fault["window"] = (t_fill, answered or time.monotonic())
            faults.append(fault)
            print(json.dumps({k: v for k, v in fault.items() if k != "window"}), flush=True)
        time.sleep(max(0.0, t_start + args.duration - time.monotonic()))
        load.stop()
        load_s = time.monotonic() - t_start
        controller.stop()
        supervisor.send_signal(signal.SIGTERM)
        supervisor.wait(timeout=120)
        rolled = stack.gateway().roll_log()
        logged: Counter[str] = Counter()
        log_status: dict[str, int] = {}
        for batch in iter_prediction_log(mount, PIPELINE, columns=["trace_id", "status"]):
            for trace, status in zip(
                batch.column("trace_id").to_pylist(),
                batch.column("status").to_pylist(),
                strict=True,
            ):
                logged[trace] += 1
                log_status[trace] = status
    finally:
        if load is not None:
            load.stop()
        if controller is not None:
            controller.stop()
        if supervisor is not None and supervisor.poll() is None:
            supervisor.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                supervisor.wait(timeout=60)
            if supervisor.poll() is None:
                supervisor.kill()
        subprocess.run(
            [*LOCKGATE, "serve", "stop", "--home", str(home)],
            capture_output=True,
            check=False,
            timeout=120,
        )
        _umount(mount)
    load_avg_end = os.getloadavg()

    windows = [f["window"] for f in faults if "window" in f]
    answered = {t for _, t, s, _ in ledger.events if isinstance(s, int) and 200 <= s < 300}
    answered_errors = {t for _, t, s, _ in ledger.events if isinstance(s, int) and s >= 300}
    disk_refused = {t for _, t, s, m in ledger.events if s == 503 and m.startswith("[disk full]")}
    refused_in_window = sum(
        1 for when, _, s, m in ledger.events if s == 503 and any(a <= when <= b for a, b in windows)
    )
    kinds: Counter[str] = Counter()
    examples: dict[str, str] = {}
    for _, _, outcome, message in ledger.events:
        if isinstance(outcome, str):
            kind = outcome
        elif outcome >= 300:
            kind = f"http {outcome}" + (" (disk full)" if message.startswith("[disk full]") else "")
        else:
            continue
        kinds[kind] += 1
        examples.setdefault(kind, message)
    lost = sorted(answered - set(logged))
    restores = [
        e["payload"]
        for e in AuditLog(audit.path).entries(pipeline=PIPELINE, kind="serving_restored")
        if "serve supervise" in e["actor"]
    ]
    recovery = {
        kind: {
            "recovery": _stats(
                [f["recovery_s"] for f in faults if f["kind"] == kind and f["recovered"]]
            ),
            "full_recovery": _stats(
                [
                    f["full_recovery_s"]
                    for f in faults
                    if f["kind"] == kind and f.get("full_recovery_s")
                ]
            ),
        }
        for kind in ("gateway_sigkill", "tritonserver_sigkill", "disk_full")
    }
    summary = {
        "load_s": round(load_s, 1),
        "sent": len(ledger.events),
        "answered_2xx": len(answered),
        "logged_rows": sum(logged.values()),
        "logged_traces": len(logged),
        "lost": len(lost),
        "lost_examples": lost[:10],
        "duplicate_log_rows": sum(n - 1 for n in logged.values() if n > 1),
        "answered_non_2xx": len(answered_errors),
        "answered_non_2xx_not_logged": len(answered_errors - disk_refused - set(logged)),
        "refused_503_disk_full": len(disk_refused),
        "refused_503_disk_full_logged": len(disk_refused & set(logged)),
        "503_in_disk_full_windows": refused_in_window,
        "logged_not_seen_answered": len(set(logged) - answered - answered_errors),
        "errors_by_kind": dict(kinds.most_common()),
        "error_examples": examples,
        "answered_by_version": dict(ledger.versions),
        "faults": len(faults),
        "all_recovered": all(f["recovered"] for f in faults),
        "recovery_by_fault": recovery,
    }
    passed = summary["lost"] == 0 and summary["all_recovered"] and len(faults) == 3 * cycles
    command = f".venv/bin/python benchmarks/bench_soak.py --duration {args.duration:g}"
    for flag, value, default in (
        ("--cycles", args.cycles, 0),
        ("--full-s", args.full_s, 0.0),
        ("--clients", args.clients, 4),
        ("--rate", args.rate, 100.0),
        ("--disk-mb", args.disk_mb, 64),
    ):
        if value != default:
            command += f" {flag} {value:g}"
    record = {
        "benchmark": "soak",
        "command": command,
        "what": (
            f"{args.duration:g} s of bounded loopback load ({args.clients} clients, "
            f"{args.rate:g} req/s) through gateway + tritonserver under `lockgate serve "
            f"supervise`, a canary at 10 % ticked every second; {cycles} cycle(s) of gateway "
            f"SIGKILL, tritonserver SIGKILL, log tmpfs ({args.disk_mb} MiB) full for "
            f"{full_s:g} s then freed; every answered trace id checked against the prediction log"
        ),
        "passed": passed,
        "summary": summary,
        "faults": [{k: v for k, v in f.items() if k != "window"} for f in faults],
        "canary": {
            "ticks_by_action": dict(controller.actions) if controller else {},
            "transitions": dict(controller.reasons) if controller else {},
            "tick_errors": dict(controller.errors) if controller else {},
            "opened": controller.opened if controller else 0,
        },
        "supervisor_restores": [{k: r.get(k) for k in RESTORE_KEYS} for r in restores],
        "final_roll": rolled,
        "machine": {
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "processor": platform.processor() or platform.machine(),
            "load_average_1m_before": round(load_avg_start[0], 2),
            "load_average_1m_after": round(load_avg_end[0], 2),
        },
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    Path(args.out).write_text(json.dumps(record, indent=2) + "\n")
    print(json.dumps({"passed": passed, **summary}, indent=2))
    shutil.rmtree(work, ignore_errors=True)
    sys.exit(0 if passed else 1)


if __name__ == "__main__":
    main()
