"""Pieces the benchmarks share: the row-mean Triton model and the request tritonclient sends for
it, a closed-loop load window and its latency numbers, the median over rounds, waiting for a
helper process's port file, and the machine records and JSON writing of the results.

Imported by the ``bench_*.py`` scripts (run as scripts, this folder is first on ``sys.path``) and,
as ``benchmarks._common``, by ``tests/integration/test_gateway_triton.py`` (``CONFIG``).
"""

from __future__ import annotations

import asyncio
import json
import os
import platform
import subprocess
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # lockgate is imported where used: bench_drift.py's evidently worker lacks it
    from lockgate.serving.triton_server import LocalTritonServer

MODEL = "bench"
VERSION = "v1"

CONFIG = """\
backend: "python"
max_batch_size: 64
input [ {{ name: "INPUT__0" data_type: TYPE_FP32 dims: [ {width} ] }} ]
output [ {{ name: "OUTPUT__0" data_type: TYPE_FP32 dims: [ 1 ] }} ]
instance_group [ {{ kind: KIND_CPU count: 1 }} ]
"""

MODEL_PY = """\
import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        responses = []
        for request in requests:
            x = np.from_dlpack(pb_utils.get_input_tensor_by_name(request, "INPUT__0"))
            y = np.ascontiguousarray(x.mean(axis=1, keepdims=True), dtype=np.float32)
            out = pb_utils.Tensor.from_dlpack("OUTPUT__0", y)
            responses.append(pb_utils.InferenceResponse(output_tensors=[out]))
        return responses
"""


def tritonclient_request(width: int) -> tuple[bytes, dict[str, str]]:
    """The body and headers tritonclient.http sends by default for one FP32 row."""
    raw = np.random.default_rng(0).random((1, width), dtype=np.float32).tobytes()
    head = json.dumps(
        {
            "inputs": [
                {
                    "name": "INPUT__0",
                    "shape": [1, width],
                    "datatype": "FP32",
                    "parameters": {"binary_data_size": len(raw)},
                }
            ],
            "parameters": {"binary_data_output": True},
        }
    ).encode()
    return head + raw, {"Inference-Header-Content-Length": str(len(head))}


def row_mean_triton(
    root: Path, width: int, dynamic_batching_us: int | None = None
) -> LocalTritonServer:
    """A tritonserver (not started yet) whose repository under ``root`` holds the row-mean model."""
    from lockgate.serving.triton_server import LocalTritonServer

    repo = root / "repo"
    (repo / f"{MODEL}-{VERSION}" / "1").mkdir(parents=True)
    config = CONFIG.format(width=width)
    if dynamic_batching_us is not None:
        config += f"dynamic_batching {{ max_queue_delay_microseconds: {dynamic_batching_us} }}\n"
    (repo / f"{MODEL}-{VERSION}" / "config.pbtxt").write_text(config)
    (repo / f"{MODEL}-{VERSION}" / "1" / "model.py").write_text(MODEL_PY)
    return LocalTritonServer(repo_dir=str(repo), work_dir=str(root / "triton"))


def serve_row_mean(triton: LocalTritonServer) -> None:
    """Start the server, load the model, and close the client's own connections."""
    triton.start()
    triton.load(f"{MODEL}-{VERSION}")
    triton.close()  # the benchmark's own connections only


def wait_for_port_file(proc: subprocess.Popen[bytes], ready: Path, what: str) -> str:
    """The port a child process writes to ``ready`` once it listens (30 s at most)."""
    deadline = time.monotonic() + 30
    while not (ready.exists() and ready.read_text()):
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not start")
        time.sleep(0.05)
    return ready.read_text()


async def closed_loop(
    attempt: Callable[[], Awaitable[bool]],
    clients: int,
    warmup_s: float,
    seconds: float,
    measure: Callable[[], Any],
) -> tuple[list[float], int, float, Any, Any]:
    """``clients`` senders calling ``attempt`` back to back; after ``warmup_s`` a window of
    ``seconds`` records each answered request's latency (s) or counts an error.

    Returns the latencies, the errors, the window's length and ``measure()`` at its start and end.
    """
    latencies: list[float] = []
    errors = 0
    record = False
    stop = False

    async def sender() -> None:
        nonlocal errors
        while not stop:
            t0 = time.perf_counter()
            try:
                ok = await attempt()
            except Exception:
                ok = False
            if record:
                if ok:
                    latencies.append(time.perf_counter() - t0)
                else:
                    errors += 1

    tasks = [asyncio.create_task(sender()) for _ in range(clients)]
    await asyncio.sleep(warmup_s)  # connections open, caches warm
    record = True
    before = measure()
    start = time.perf_counter()
    await asyncio.sleep(seconds)
    record = False
    elapsed = time.perf_counter() - start
    after = measure()
    stop = True
    await asyncio.gather(*tasks)
    return latencies, errors, elapsed, before, after


def window_stats(
    latencies: list[float], errors: int, elapsed: float, percentiles: tuple[int, ...]
) -> dict[str, Any]:
    """Requests, errors, throughput, the given latency percentiles and the mean (ms)."""
    lat = np.asarray(latencies) * 1000.0
    return {
        "requests": len(latencies),
        "errors": errors,
        "seconds": elapsed,
        "throughput_rps": len(latencies) / elapsed,
        **{f"p{p}_ms": float(np.percentile(lat, p)) if lat.size else None for p in percentiles},
        "mean_ms": float(lat.mean()) if lat.size else None,
    }


def merge_rounds(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Median over rounds of each number."""
    out: dict[str, Any] = {}
    for key in runs[0]:
        values = [r[key] for r in runs if r[key] is not None]
        out[key] = float(np.median(values)) if values else None
    out["rounds"] = len(runs)
    return out


def load_machine(load_before: tuple[float, ...], *, with_platform: bool = True) -> dict[str, Any]:
    """Python, CPUs (and platform) with the 1-minute load average before and after a run."""
    return {
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        **({"platform": platform.platform()} if with_platform else {}),
        "loadavg_1m_before": load_before[0],
        "loadavg_1m_after": os.getloadavg()[0],
    }


def document_head(
    benchmark: str, load_before: tuple[float, ...], *, with_platform: bool = True
) -> dict[str, Any]:
    """The first fields of a results document: the benchmark's name, when (UTC) and the machine."""
    return {
        "benchmark": benchmark,
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": load_machine(load_before, with_platform=with_platform),
    }


def numpy_machine() -> dict[str, Any]:
    """Python, numpy, CPUs, processor and the load averages at the end of a run."""
    return {
        "python": platform.python_version(),
        "numpy": np.__version__,
        "cpus": os.cpu_count(),
        "processor": platform.processor() or platform.machine(),
        "load_average_1_5_15_min_at_end": list(os.getloadavg()),
        "note": "2 cores shared with other jobs: timings vary with the load",
    }


def write_json(out: str | Path, document: dict[str, Any]) -> None:
    """Write ``document`` as indented JSON to ``out``, creating its folder."""
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Path(out).write_text(json.dumps(document, indent=2) + "\n")
