"""What the gateway's request limits cost: uvicorn's httptools protocol with and without them.

One run, two server processes side by side, each a trivial ASGI app (reads the body, answers
``ok``) under uvicorn on uvloop: ``plain`` is uvicorn's ``HttpToolsProtocol`` with the gateway's
coalescing transport only, ``limited`` is the protocol the gateway serves with
(``lockgate.gateway.server.http_protocol(ServerLimits())``: URL, head and connection caps, head, body
and keep-alive timers). A closed loop of ``--clients`` connections (lockgate's ``HttpUpstream`` on
uvloop, 200-byte POST bodies) loads them in turn, ``--rounds`` times; the number is the server
process's CPU (user + system) per request, median over rounds. The app does nothing, so the
difference is the limits' own cost per request (the gateway itself uses several hundred
microseconds per request: ``bench_gateway.py``).

Example:
    .venv/bin/python benchmarks/bench_server_limits.py --seconds 3 --rounds 3 --clients 1 8
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from _common import document_head, write_json


async def _app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            await send({"type": message["type"] + ".complete"})
            if message["type"] == "lifespan.shutdown":
                return
    while (await receive()).get("more_body"):
        pass
    await send(
        {"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]}
    )
    await send({"type": "http.response.body", "body": b"ok"})


def _serve(kind: str, port: int) -> None:
    import uvicorn
    import uvloop
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    from lockgate.gateway.server import ServerLimits, _CoalescingTransport
    from lockgate.gateway.server import http_protocol as _http_protocol

    class Plain(HttpToolsProtocol):
        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(_CoalescingTransport(transport, self.loop))  # type: ignore[arg-type]

    protocol = _http_protocol(ServerLimits()) if kind == "limited" else Plain
    config = uvicorn.Config(
        _app,
        host="127.0.0.1",
        port=port,
        loop="none",
        http=protocol,  # type: ignore[arg-type]
        lifespan="on",
        access_log=False,
        log_level="error",
        server_header=False,
        date_header=False,
    )
    uvloop.run(uvicorn.Server(config).serve())


def _cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def _load(port: int, pid: int, clients: int, seconds: float) -> tuple[float, float]:
    from lockgate.gateway.upstream import HttpUpstream

    up = HttpUpstream(f"127.0.0.1:{port}", max_connections=clients, timeout_s=30)
    state = {"n": 0, "stop": False, "record": False}

    async def client() -> None:
        while not state["stop"]:
            r = await up.request("POST", "/x", body=b"x" * 200, headers={"content-type": "a/b"})
            if r.status != 200:
                raise RuntimeError(f"status {r.status}")
            if state["record"]:
                state["n"] += 1

    tasks = [asyncio.create_task(client()) for _ in range(clients)]
    await asyncio.sleep(0.5)
    cpu0, state["record"] = _cpu_s(pid), True
    await asyncio.sleep(seconds)
    state["record"], cpu1 = False, _cpu_s(pid)
    state["stop"] = True
    await asyncio.gather(*tasks)
    await up.aclose()
    return (cpu1 - cpu0) / max(state["n"], 1) * 1e6, state["n"] / seconds


def main() -> None:
    """Start both servers, load them in turn, print the table and write the JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 8])
    parser.add_argument(
        "--out", type=Path, default=Path(__file__).parent / "results" / "server_limits.json"
    )
    args = parser.parse_args()
    import uvloop

    load_before = os.getloadavg()
    servers: dict[str, tuple[subprocess.Popen[bytes], int]] = {}
    for kind in ("plain", "limited"):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        servers[kind] = (
            subprocess.Popen([sys.executable, __file__, "--serve", kind, str(port)]),
            port,
        )
    raw: dict[str, dict[str, list[float]]] = {}
    try:
        for kind, (_, port) in servers.items():
            deadline = time.monotonic() + 30
            while True:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"the {kind} server did not start") from None
                    time.sleep(0.1)
        for clients in args.clients:
            for rnd in range(args.rounds):
                for kind, (proc, port) in servers.items():
                    us, rps = uvloop.run(_load(port, proc.pid, clients, args.seconds))
                    raw.setdefault(str(clients), {}).setdefault(kind, []).append(us)
                    print(
                        f"  clients={clients} round={rnd} {kind:<8} {us:6.1f} us/req  {rps:7.0f} req/s"
                    )
    finally:
        for proc, _ in servers.values():
            proc.terminate()
            proc.wait(10)
    results = {
        clients: {kind: statistics.median(v) for kind, v in by_kind.items()}
        for clients, by_kind in raw.items()
    }
    for clients, by_kind in results.items():
        print(
            f"clients={clients}: plain {by_kind['plain']:.1f} us/req, limited "
            f"{by_kind['limited']:.1f} us/req (+{by_kind['limited'] - by_kind['plain']:.1f})"
        )
    document = {
        **document_head("server_limits", load_before, with_platform=False),
        "settings": {"seconds": args.seconds, "rounds": args.rounds, "clients": args.clients},
        "server_cpu_us_per_request_median": results,
        "raw": raw,
    }
    write_json(args.out, document)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    if sys.argv[1:2] == ["--serve"]:
        _serve(sys.argv[2], int(sys.argv[3]))
    else:
        main()
