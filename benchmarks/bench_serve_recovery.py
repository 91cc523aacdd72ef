"""Recovery after a tritonserver crash: SIGKILL -> recovery -> the champion answers again.

A lockgate home serves a LightGBM champion with a canary challenger at 1 % (real tritonserver,
real gateway, both started the way ``lockgate serve start`` starts them; the first Triton is a
child of this process, as of a Dagster daemon). Each round SIGKILLs the tritonserver process
alone, then recovers it one of two ways and times until an inference request sent through the
gateway (the pipeline's public name, one wire row) is answered:

* ``serve start``: ``lockgate serve start --home H`` as a subprocess (Python start-up and imports
  included), no Dagster daemon: Triton restarts on its kept ports, the stubs the dead server
  left are reaped, the champion is loaded (and answers), then the challenger, routed as before;
  requests are sent through the gateway every 50 ms from the kill on;
* ``controller tick``: one :func:`lockgate.sensors.canary.run_canary_tick` in this process (what
  the daemon's canary sensor runs): Triton restarts, the canary is rolled back, the champion
  reloaded.

Reported per mode: seconds from the kill to the first answer through the gateway (median and
max over the rounds); for ``serve start`` also the CLI's wall time, the ``recovery_s`` (command
start to champion answering) and ``full_recovery_s`` (challenger too) it audited, stubs reaped,
and whether Triton's and the gateway's addresses stayed the same.

Example:
    .venv/bin/python benchmarks/bench_serve_recovery.py --rounds 3
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
PIPELINE = "benchlet"


def _lockgate(home: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "lockgate.cli", *args, "--home", str(home)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=dict(os.environ, DAGSTER_DISABLE_TELEMETRY="1"),
    )


def _serve_start(home: Path) -> str:
    process = _lockgate(home, "serve", "start")
    out, err = process.communicate(timeout=300)
    if process.returncode != 0:
        raise SystemExit(f"serve start failed:\n{out}\n{err}")
    return out


def _answers(
    gateway_host_port: str,
    width: int,
    *,
    timeout_s: float = 120.0,
    cli: subprocess.Popen[str] | None = None,
) -> None:
    """Waits until one inference through the gateway is answered (stops when ``cli`` fails)."""
    import tritonclient.http as httpclient

    row = np.full((1, width), np.nan, dtype=np.float32)
    deadline = time.monotonic() + timeout_s
    while True:
        client = httpclient.InferenceServerClient(url=gateway_host_port, network_timeout=10.0)
        try:
            tensor = httpclient.InferInput("INPUT__0", [1, width], "FP32")
            tensor.set_data_from_numpy(row)
            client.infer(PIPELINE, inputs=[tensor])
            return
        except Exception:
            if cli is not None and cli.poll() not in (None, 0):
                out, err = cli.communicate()
                raise SystemExit(f"serve start failed:\n{out}\n{err}") from None
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)
        finally:
            client.close()


def _kill_triton(stack: Any) -> int:
    pid = stack.triton().pid
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            break
        if stat.rsplit(")", 1)[1].split()[0] == "Z":
            break
        time.sleep(0.005)
    return int(pid)


def _open_canary(stack: Any, registry: Any, audit: Any, champion: str, challenger: str) -> None:
    from lockgate.assets.serving import apply_route, ensure_loaded
    from lockgate.serving.canary import CanaryPolicy, start

    ensure_loaded(stack, registry, PIPELINE, champion)
    ensure_loaded(stack, registry, PIPELINE, challenger)
    policy = CanaryPolicy(hold_seconds=3600, min_requests=15)
    state = start(policy, pipeline=PIPELINE, champion=champion, challenger=challenger, now=0.0)
    apply_route(stack, PIPELINE, state.to_dict())
    stack.save_canary_state(PIPELINE, state.to_dict())


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", default=str(ROOT / "benchmarks/results/serve_recovery.json"))
    args = parser.parse_args()

    from lockgate.audit.log import AuditLog
    from lockgate.sensors.canary import run_canary_tick
    from lockgate.serving.stack import LocalServingStack
    from lockgate.serving.wire import wire_schema_for_version
    from lockgate.spec import LabelSource, ModelPipeline
    from lockgate.training import LightGBMTrainer

    spec = ModelPipeline(  # what the tick reads: name, canary policy, task
        name=PIPELINE,
        feature_service="bench_v1",
        label="is_fraud",
        labels=LabelSource(entity_columns=("transaction_id",)),
        trainer=LightGBMTrainer(),
    )
    from _versions import champion_and_challenger

    world = champion_and_challenger("bench-recovery-", PIPELINE)
    _, home, env, registry, audit, _, champion, challenger = world
    stack = LocalServingStack(root=str(env.serving_dir))
    width = wire_schema_for_version(registry, PIPELINE, champion).width
    starter = stack.triton()  # the first server is this process's child (as the daemon's)
    rounds: dict[str, list[dict[str, Any]]] = {"serve start": [], "controller tick": []}
    try:
        starter.start()
        _serve_start(home)
        addresses = (stack.triton().url, stack.gateway().url)
        gateway = stack.gateway().host_port
        for _ in range(args.rounds):
            _open_canary(stack, registry, audit, champion, challenger)
            _answers(gateway, width)
            killed = _kill_triton(stack)
            t0 = time.perf_counter()
            cli = _lockgate(home, "serve", "start")
            _answers(gateway, width, cli=cli)  # the champion answers before the challenger
            total = time.perf_counter() - t0
            out, err = cli.communicate(timeout=300)
            cli_s = time.perf_counter() - t0
            if cli.returncode != 0:
                raise SystemExit(f"serve start failed:\n{out}\n{err}")
            entry = AuditLog(audit.path).entries(kind="serving_restored")[-1]["payload"]
            rounds["serve start"].append(
                {
                    "kill_to_answer_s": round(total, 3),
                    "cli_wall_s": round(cli_s, 3),
                    "audited_full_recovery_s": entry["full_recovery_s"],
                    "audited_recovery_s": entry["recovery_s"],
                    "reaped_stubs": entry["reaped_stubs"],
                    "loaded": len(entry["loaded"]),
                    "same_addresses": (stack.triton().url, stack.gateway().url) == addresses,
                    "killed_pid": killed,
                    "output": out.strip().splitlines()[-1],
                }
            )
        for _ in range(args.rounds):
            _open_canary(stack, registry, audit, champion, challenger)
            _answers(gateway, width)
            _kill_triton(stack)
            t0 = time.perf_counter()
            outcome = run_canary_tick(
                spec, stack=stack, artifacts=registry, audit=audit, actor="bench"
            )
            _answers(gateway, width)
            total = time.perf_counter() - t0
            rounds["controller tick"].append(
                {
                    "kill_to_answer_s": round(total, 3),
                    "action": outcome.action,
                    "same_addresses": (stack.triton().url, stack.gateway().url) == addresses,
                }
            )
    finally:
        subprocess.run(
            [sys.executable, "-m", "lockgate.cli", "serve", "stop", "--home", str(home)],
            capture_output=True,
            check=False,
            timeout=120,
        )
        starter.kill()
    summary = {
        mode: {
            "median_kill_to_answer_s": statistics.median(r["kill_to_answer_s"] for r in rows),
            "max_kill_to_answer_s": max(r["kill_to_answer_s"] for r in rows),
        }
        for mode, rows in rounds.items()
    }
    record = {
        "benchmark": "serve_recovery",
        "command": f".venv/bin/python benchmarks/bench_serve_recovery.py --rounds {args.rounds}",
        "what": "SIGKILL tritonserver -> recovery -> first inference answered through the gateway",
        "summary": summary,
        "rounds": rounds,
        "machine": {
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "processor": platform.processor() or platform.machine(),
            "note": "2 cores shared with other work while measured",
        },
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    Path(args.out).write_text(json.dumps(record, indent=2) + "\n")
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
