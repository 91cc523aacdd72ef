"""What one upstream request costs the client: lockgate's ``HttpUpstream`` vs httpx vs aiohttp.

The gateway sends every request to Triton with ``HttpUpstream`` (asyncio protocol + httptools
parser, HTTP/1.1 keep-alive pool). This benchmark puts it next to ``httpx.AsyncClient`` (HTTP/1.1,
a keep-alive pool of the same size) and ``aiohttp.ClientSession`` (``TCPConnector`` with the same
limit) under the same load, in this one process on uvloop as in the gateway: a closed loop of
``--clients`` concurrent senders, each sending the next request as soon as the previous answer
arrived, for ``--duration`` seconds after a short warm-up, with a fresh pool per window. The
clients alternate (their order rotates each round) over ``--rounds``; the table shows the median
over rounds. Every request is what ``tritonclient.http`` sends by default (JSON header + binary
FP32 row, the body built by ``_common.py``) plus ``Accept-Encoding: identity`` (so that no
client's default asks the server to compress); every client reads the whole answer.

Server (``--server``): ``triton`` (default) is the wheel's tritonserver on 127.0.0.1 with the
python-backend row-mean model of ``_common.py``; ``fixed`` is a uvicorn (httptools, uvloop)
app in a child process that reads the request and answers a fixed KServe v2 binary response, for
a machine without the Triton wheel or to take the model's time out of the latency.
A client that is not installed is skipped and named in the JSON. httpx is not a lockgate
dependency: ``.venv/bin/pip install --no-deps --target /tmp/x httpx httpcore sniffio`` and
``PYTHONPATH=/tmp/x`` add it without touching the project's environment (anyio and h11 are
there already). Keep sniffio: without it httpcore retries a failed ``import sniffio`` on every
request, which raised httpx's CPU per request by about 70 % in a trial run.

How to read it: ``client CPU us/req`` is this process's CPU time (``time.process_time``: user +
system, all threads) over the window divided by the requests answered in it: what the client
library costs per request, event loop and the loop's bookkeeping included (the same for every
client). ``x HttpUpstream`` divides it by HttpUpstream's. Latency and throughput are
end-to-end: at 1 sender the round trip (mostly the server) sets them; at 16 the server and the
client share the machine's cores, so a cheaper client leaves more CPU to the server. On a small
shared machine the absolute numbers are noisy; the ratios within one run are what count.
``server CPU us/req`` (the server process and its children) shows how the client's share
compares with the work it waits for; it differs between clients only through how they send
(httpcore writes the head and the body in two sends) and through contention on a loaded machine. Writes a table to
stdout and JSON to ``benchmarks/results/upstream.json``.

Example (about 80 s):
    PYTHONPATH=/tmp/x .venv/bin/python benchmarks/bench_upstream.py --duration 3 --rounds 3
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Mapping
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import psutil
import uvloop
from _common import (
    MODEL,
    VERSION,
    closed_loop,
    document_head,
    merge_rounds,
    row_mean_triton,
    serve_row_mean,
    tritonclient_request,
    wait_for_port_file,
    window_stats,
    write_json,
)

from lockgate.gateway.upstream import HttpUpstream
from lockgate.serving.triton_server import LocalTritonServer

CLIENTS = ("HttpUpstream", "httpx", "aiohttp")
PATH = f"/v2/models/{MODEL}-{VERSION}/infer"

# The answer of the `fixed` server: what Triton answers for the row-mean model (binary output).
_FIXED_HEAD = json.dumps(
    {
        "model_name": f"{MODEL}-{VERSION}",
        "model_version": "1",
        "outputs": [
            {
                "name": "OUTPUT__0",
                "datatype": "FP32",
                "shape": [1, 1],
                "parameters": {"binary_data_size": 4},
            }
        ],
    },
    separators=(",", ":"),
).encode()
_FIXED_BODY = _FIXED_HEAD + np.float32(0.5).tobytes()

Send = Callable[[str, bytes, Mapping[str, str]], Awaitable[tuple[int, bytes]]]


def _installed(name: str) -> bool:
    try:
        __import__(name)
    except ImportError:
        return False
    return True


async def _open(name: str, base: str, pool: int) -> tuple[Send, Callable[[], Awaitable[None]]]:
    """A client's send function (status, whole body) and its close, pool of ``pool``."""
    if name == "HttpUpstream":
        up = HttpUpstream(base, max_connections=pool, timeout_s=30)

        async def send_up(path: str, body: bytes, headers: Mapping[str, str]) -> tuple[int, bytes]:
            r = await up.request("POST", path, body=body, headers=headers)
            return r.status, r.body

        return send_up, up.aclose
    if name == "httpx":
        import httpx

        client = httpx.AsyncClient(
            base_url=base,
            http1=True,
            http2=False,
            limits=httpx.Limits(max_connections=pool, max_keepalive_connections=pool),
            timeout=30,
            trust_env=False,
        )

        async def send_httpx(
            path: str, body: bytes, headers: Mapping[str, str]
        ) -> tuple[int, bytes]:
            r = await client.post(path, content=body, headers=headers)
            return r.status_code, r.content

        return send_httpx, client.aclose
    if name == "aiohttp":
        import aiohttp

        session = aiohttp.ClientSession(
            base_url=base,
            connector=aiohttp.TCPConnector(limit=pool),
            timeout=aiohttp.ClientTimeout(total=30),
        )

        async def send_aiohttp(
            path: str, body: bytes, headers: Mapping[str, str]
        ) -> tuple[int, bytes]:
            async with session.post(path, data=body, headers=headers) as r:
                return r.status, await r.read()

        return send_aiohttp, session.close
    raise ValueError(f"unknown client {name!r}; use one of {', '.join(CLIENTS)}")


def _server_cpu_s(pid: int) -> float:
    """CPU seconds (user + system) used so far by the server process and its children."""
    try:
        proc = psutil.Process(pid)
        procs = [proc, *proc.children(recursive=True)]
    except psutil.Error:
        return 0.0
    total = 0.0
    for p in procs:
        try:
            t = p.cpu_times()
        except psutil.Error:
            continue
        total += t.user + t.system
    return total


async def _load(
    name: str,
    base: str,
    body: bytes,
    headers: Mapping[str, str],
    clients: int,
    seconds: float,
    warmup: float,
    server_pid: int,
) -> tuple[dict[str, Any], bytes]:
    """One window of closed-loop load through one client; its numbers and the first answer."""
    send, close = await _open(name, base, clients)
    status, first = await send(PATH, body, headers)
    if status != 200:
        await close()
        raise RuntimeError(f"{name}: the server answered {status}: {first[:200]!r}")

    async def attempt() -> bool:
        status, answer = await send(PATH, body, headers)
        return status == 200 and len(answer) == len(first)

    def measure() -> tuple[float, float]:
        return time.process_time(), _server_cpu_s(server_pid)

    latencies, errors, elapsed, (cpu0, srv0), (cpu1, srv1) = await closed_loop(
        attempt, clients, warmup, seconds, measure
    )
    await close()
    n = len(latencies)
    return {
        **window_stats(latencies, errors, elapsed, (50, 99)),
        "client_cpu_us_per_request": (cpu1 - cpu0) / max(n, 1) * 1e6,
        "client_cpu_share": (cpu1 - cpu0) / elapsed,
        "server_cpu_us_per_request": (srv1 - srv0) / max(n, 1) * 1e6,
    }, first


def _serve_fixed(ready: Path) -> None:
    """The ``fixed`` server: uvicorn (httptools, uvloop) answering ``_FIXED_BODY`` to any POST."""
    import uvicorn

    headers = [
        (b"content-type", b"application/octet-stream"),
        (b"inference-header-content-length", str(len(_FIXED_HEAD)).encode()),
        (b"content-length", str(len(_FIXED_BODY)).encode()),
    ]

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        more = True
        while more:
            more = (await receive()).get("more_body", False)
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": _FIXED_BODY})

    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    config = uvicorn.Config(
        app, loop="uvloop", http="httptools", lifespan="off", access_log=False, log_level="warning"
    )
    server = uvicorn.Server(config)
    ready.write_text(str(sock.getsockname()[1]))  # uvicorn listens on it before the first accept
    uvloop.run(server.serve(sockets=[sock]))


def _start_fixed(root: Path) -> tuple[subprocess.Popen[bytes], str]:
    ready = root / "fixed.port"
    proc = subprocess.Popen(
        [sys.executable, __file__, "--serve-fixed", str(ready)], start_new_session=True
    )
    port = wait_for_port_file(proc, ready, "the fixed server")
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:  # listening: a connection is accepted
        try:
            socket.create_connection(("127.0.0.1", int(port)), timeout=1).close()
            break
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)
    return proc, base


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def main() -> None:
    """Parse the options, run the benchmark, print the table and write the JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=3.0, help="seconds per window")
    parser.add_argument("--warmup", type=float, default=0.5, help="seconds before each window")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 16], help="concurrency")
    parser.add_argument("--targets", nargs="+", default=list(CLIENTS), choices=CLIENTS)
    parser.add_argument("--server", choices=("triton", "fixed"), default="triton")
    parser.add_argument("--width", type=int, default=16, help="features per row")
    parser.add_argument(
        "--out", type=Path, default=Path(__file__).parent / "results" / "upstream.json"
    )
    parser.add_argument("--serve-fixed", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_fixed is not None:
        _serve_fixed(args.serve_fixed)
        return

    targets = [t for t in args.targets if _installed(t) or t == "HttpUpstream"]
    skipped = [t for t in args.targets if t not in targets]
    for t in skipped:
        print(f"  {t} is not installed: skipped", flush=True)
    load_before = os.getloadavg()
    root = Path(tempfile.mkdtemp(prefix="lockgate-bench-upstream-"))
    body, headers = tritonclient_request(args.width)
    headers = {**headers, "Accept-Encoding": "identity"}
    triton: LocalTritonServer | None = None
    fixed: subprocess.Popen[bytes] | None = None
    results: dict[str, dict[str, list[dict[str, Any]]]] = {}
    answers: dict[str, bytes] = {}
    started = time.perf_counter()
    try:
        if args.server == "triton":
            triton = row_mean_triton(root, args.width)
            serve_row_mean(triton)
            base, server_pid = f"http://{triton.url}", int(triton.pid or 0)
        else:
            fixed, base = _start_fixed(root)
            server_pid = fixed.pid
        print(f"  server {args.server} at {base} ready in {time.perf_counter() - started:.1f} s")
        for clients in args.clients:
            for rnd in range(args.rounds):
                shift = rnd % len(targets)
                for name in targets[shift:] + targets[:shift]:
                    run, answer = uvloop.run(
                        _load(
                            name,
                            base,
                            body,
                            headers,
                            clients,
                            args.duration,
                            args.warmup,
                            server_pid,
                        )
                    )
                    answers.setdefault(name, answer)
                    results.setdefault(str(clients), {}).setdefault(name, []).append(run)
                    print(
                        f"  clients={clients:<3} round={rnd} {name:<13}"
                        f"{run['throughput_rps']:8.0f} req/s  p50 {run['p50_ms']:.3f} ms  "
                        f"p99 {run['p99_ms']:.3f} ms  errors {run['errors']}  "
                        f"client CPU {run['client_cpu_us_per_request']:.0f} us/req  "
                        f"server CPU {run['server_cpu_us_per_request']:.0f} us/req",
                        flush=True,
                    )
    finally:
        if triton is not None:
            triton.stop()
        if fixed is not None:
            fixed.terminate()
            fixed.wait(10)
    same_answer = len(set(answers.values())) == 1

    summary: dict[str, Any] = {}
    print()
    print(
        f"{'clients':>7} {'client':<13} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} "
        f"{'client CPU us/req':>18} {'x HttpUpstream':>15} {'server CPU us/req':>18}"
    )
    for clients, by_name in results.items():
        merged = {n: merge_rounds(runs) for n, runs in by_name.items()}
        ours = merged["HttpUpstream"]["client_cpu_us_per_request"]
        for name, m in merged.items():
            m["client_cpu_vs_httpupstream"] = m["client_cpu_us_per_request"] / ours
            print(
                f"{clients:>7} {name:<13} {m['throughput_rps']:8.0f} {m['p50_ms']:8.3f} "
                f"{m['p99_ms']:8.3f} {m['client_cpu_us_per_request']:18.1f} "
                f"{m['client_cpu_vs_httpupstream']:15.2f} {m['server_cpu_us_per_request']:18.1f}"
            )
        summary[clients] = merged
    document = {
        **document_head("upstream", load_before),
        "settings": {
            "duration_s": args.duration,
            "warmup_s": args.warmup,
            "rounds": args.rounds,
            "width": args.width,
            "clients": args.clients,
            "server": (
                "tritonserver (wheel), python-backend row mean"
                if args.server == "triton"
                else "uvicorn (httptools, uvloop) app answering a fixed KServe v2 response"
            ),
            "request": "1 x FP32 row, binary tensor extension (tritonclient default), "
            "Accept-Encoding: identity",
            "load": "closed loop on uvloop in one process, a fresh pool of `clients` "
            "connections per window, client order rotating each round",
            "client_cpu": "time.process_time delta over the window / requests answered in it",
            "measured": targets,
            "skipped_not_installed": skipped,
            "versions": {
                "httptools": _version("httptools"),
                "uvloop": _version("uvloop"),
                "httpx": _version("httpx") if "httpx" in targets else None,
                "httpcore": _version("httpcore") if "httpx" in targets else None,
                "aiohttp": _version("aiohttp") if "aiohttp" in targets else None,
                # httpcore imports sniffio on every request; a failed import costs much more
                "sniffio": _version("sniffio") if "httpx" in targets else None,
            },
            "same_answer_from_every_client": same_answer,
        },
        "results": summary,
        "raw": results,
    }
    write_json(args.out, document)
    print(f"same answer from every client: {same_answer}")
    print(f"load average (1 min) before {load_before[0]:.2f}, after {os.getloadavg()[0]:.2f}")
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
