"""Latency and throughput of Triton called directly vs through the lockgate gateway.

One run, the same load for each target: a small python-backend model (row mean, FP32 [1, d]) on
the wheel's tritonserver, the gateway in front of it (``GatewayServer``: uvicorn with
httptools on uvloop, one process), and a closed-loop load generator: ``--clients`` concurrent
connections, each sending the next request as soon as the previous answer arrived, for
``--duration`` seconds after a warm-up. Requests are what ``tritonclient.http`` sends by default
(JSON header + binary tensor, binary output). The targets alternate (direct, gateway, direct,
...) over ``--rounds``.

The load generator is lockgate's own asyncio + httptools client (``HttpUpstream``) on uvloop in
this process: a few tens of microseconds of CPU per request, so on a small machine the CPU goes
to the servers, not the client (a thread pool of ``tritonclient`` clients would use several times
more CPU per request than the gateway itself and measure the client).

Gateway targets: ``gateway`` (fsync group commit and coalescing, the defaults), ``gateway-solo``
(the same with coalescing off, ``coalesce_inflight=0``: every request goes upstream on its own),
``gateway-c<N>`` (``coalesce_inflight=N``), ``gateway-flush`` (WAL written to the OS before
answering, no fdatasync). Each gateway rotates its WAL every ``--segment-age``
seconds (default 2): a window then pays for rolling its own records to Parquet, as a steady
state would (the warm-up's records roll inside the window, about as many as the window's last
segment that rolls after it); before each window every gateway rolls what it holds
(``POST /admin/log/roll``), so no earlier target's roll lands in it. Reference target
``floor``: ``floor_proxy.py``, a proxy with no logic at all (httptools in, ``HttpUpstream`` out):
what one more Python process and two more loopback hops cost before lockgate does anything.
Writes a table to stdout and JSON to ``benchmarks/results/gateway.json``.

How to read it: with one client a closed loop's throughput is 1 / latency, so at 1 client the
added p50 is the number (the throughput share there only restates it, and no proxy process can
keep 80 % of a 0.3 ms round trip: see the floor row); with 16 clients the servers are saturated
and the throughput share is the capacity the gateway leaves. Both are printed for every level.

Example:
    .venv/bin/python benchmarks/bench_gateway.py --duration 20 --clients 1 16
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

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
from prometheus_client.parser import text_string_to_metric_families

from lockgate.gateway.process import GatewayServer
from lockgate.gateway.upstream import HttpUpstream


def _group_cpu_s(leaders: dict[str, int]) -> dict[str, float]:
    """CPU seconds (user + system) used so far by each process group (server + its children)."""
    tick = os.sysconf("SC_CLK_TCK")
    totals = dict.fromkeys(leaders, 0.0)
    by_group = {pgid: name for name, pgid in leaders.items()}
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            fields = (proc / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        # field 5 of stat: the process group (a server and the children it started)
        name = by_group.get(int(fields[2])) or by_group.get(int(proc.name))
        if name is not None:
            totals[name] += (int(fields[11]) + int(fields[12])) / tick
    totals["client"] = sum(os.times()[:2])
    return totals


async def _load(
    url: str,
    path: str,
    body: bytes,
    headers: dict[str, str],
    clients: int,
    seconds: float,
    groups: dict[str, int],
) -> dict[str, Any]:
    up = HttpUpstream(url, max_connections=clients, timeout_s=30)

    async def attempt() -> bool:
        r = await up.request("POST", path, body=body, headers=headers)
        return r.status == 200

    latencies, errors, elapsed, cpu0, cpu1 = await closed_loop(
        attempt, clients, min(2.0, seconds / 4), seconds, lambda: _group_cpu_s(groups)
    )
    await up.aclose()
    return {
        **window_stats(latencies, errors, elapsed, (50, 90, 99)),
        **{
            f"cpu_us_per_request_{name}": (cpu1[name] - cpu0[name]) / max(len(latencies), 1) * 1e6
            for name in cpu0
        },
    }


def main() -> None:
    """Parse the options, run the benchmark, print the table and write the JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=20.0, help="seconds per measurement")
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 16])
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--width", type=int, default=16, help="features per row")
    parser.add_argument(
        "--targets",
        nargs="+",
        default=["direct", "gateway", "gateway-solo", "gateway-flush", "floor"],
        help="what to load",
    )
    parser.add_argument(
        "--dynamic-batching-us",
        type=int,
        default=None,
        help="give the model Triton's dynamic batcher with this queue delay (lockgate's "
        "cpu_config uses 100); default: none, one request per execute",
    )
    parser.add_argument(
        "--segment-age",
        type=float,
        default=2.0,
        help="the gateways' WAL segment_max_age_s: short, so each window rolls its own records",
    )
    parser.add_argument(
        "--out", type=Path, default=Path(__file__).parent / "results" / "gateway.json"
    )
    args = parser.parse_args()

    load_before = os.getloadavg()
    root = Path(tempfile.mkdtemp(prefix="lockgate-bench-gw-"))
    triton = row_mean_triton(root, args.width, args.dynamic_batching_us)
    gateways: dict[str, GatewayServer] = {}
    floor: subprocess.Popen[bytes] | None = None
    floor_url = ""
    body, headers = tritonclient_request(args.width)
    results: dict[str, dict[str, list[dict[str, Any]]]] = {}
    try:
        serve_row_mean(triton)
        for target in args.targets:
            if target == "direct":
                continue
            if target == "floor":
                ready = root / "floor.port"
                floor = subprocess.Popen(
                    [
                        sys.executable,
                        str(Path(__file__).with_name("floor_proxy.py")),
                        triton.url,
                        str(ready),
                    ],
                    start_new_session=True,
                )
                port = wait_for_port_file(floor, ready, "floor_proxy.py")
                floor_url = f"http://127.0.0.1:{port}"
                continue
            durability = "flush" if target.endswith("-flush") else "fsync"
            gw = GatewayServer(
                state_dir=str(root / target / "state"),
                log_dir=str(root / target / "log"),
                upstream_url=triton.url,
                durability=durability,
                segment_max_age_s=args.segment_age,
                coalesce_inflight=_coalesce_inflight(target),
            )
            gw.start()
            gw.set_route(MODEL, {"mode": "single", "champion": VERSION})
            gateways[target] = gw
        for clients in args.clients:
            for rnd in range(args.rounds):
                for target in args.targets:
                    if target == "direct":
                        url, path = f"http://{triton.url}", f"/v2/models/{MODEL}-{VERSION}/infer"
                    elif target == "floor":
                        url, path = floor_url, f"/v2/models/{MODEL}-{VERSION}/infer"
                    else:
                        url, path = gateways[target].url, f"/v2/models/{MODEL}/infer"
                    groups = {"triton": int(triton.pid or 0)}
                    groups.update({t: int(g.pid or 0) for t, g in gateways.items()})
                    if floor is not None:
                        groups["floor"] = floor.pid
                    for gw in gateways.values():  # no earlier target's roll lands in this window
                        gw.roll_log()
                    run = uvloop.run(
                        _load(url, path, body, headers, clients, args.duration, groups)
                    )
                    results.setdefault(str(clients), {}).setdefault(target, []).append(run)
                    print(
                        f"  clients={clients:<3} round={rnd} {target:<14} "
                        f"{run['throughput_rps']:8.0f} req/s  p50 {run['p50_ms']:.3f} ms  "
                        f"p99 {run['p99_ms']:.3f} ms  errors {run['errors']}  CPU us/req: "
                        + " ".join(
                            f"{k.rsplit('_', 1)[1]}={v:.0f}"
                            for k, v in run.items()
                            if k.startswith("cpu_us") and v > 0
                        ),
                        flush=True,
                    )
        wal = {}
        for target, gw in gateways.items():
            text = gw.metrics()
            commits = _metric(text, "lockgate_gateway_wal_commits_total")
            records = _metric(text, "lockgate_gateway_wal_records_total")
            merged_calls = _metric(text, "lockgate_gateway_coalesced_calls_total")
            merged_reqs = _metric(text, "lockgate_gateway_coalesced_requests_total")
            wal[target] = {
                "commits": commits,
                "records": records,
                "records_per_commit": records / commits if commits else None,
                "coalesced_calls": merged_calls,
                "coalesced_requests": merged_reqs,
                "requests_per_coalesced_call": merged_reqs / merged_calls if merged_calls else None,
            }
    finally:
        for gw in gateways.values():
            gw.stop()
        if floor is not None:
            floor.terminate()
            floor.wait(10)
        triton.stop()

    summary: dict[str, Any] = {}
    print()
    print(
        f"{'clients':>7} {'target':<14} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} "
        f"{'+p50 ms':>8} {'tput %':>7} {'gw CPU us/req':>14}"
    )
    for clients, by_target in results.items():
        merged = {t: merge_rounds(runs) for t, runs in by_target.items()}
        direct = merged.get("direct")
        for target, m in merged.items():
            if direct is not None and target != "direct":
                m["added_p50_ms"] = m["p50_ms"] - direct["p50_ms"]
                m["added_p99_ms"] = m["p99_ms"] - direct["p99_ms"]
                m["throughput_vs_direct"] = m["throughput_rps"] / direct["throughput_rps"]
            added = f"{m['added_p50_ms']:8.3f}" if "added_p50_ms" in m else f"{'':>8}"
            share = f"{100 * m['throughput_vs_direct']:6.1f}%" if "added_p50_ms" in m else ""
            cpu = m.get(f"cpu_us_per_request_{target}")
            cpu_text = f"{cpu:14.0f}" if cpu is not None and target != "direct" else ""
            print(
                f"{clients:>7} {target:<14} {m['throughput_rps']:9.0f} {m['p50_ms']:8.3f} "
                f"{m['p99_ms']:8.3f} {added} {share:>7} {cpu_text}"
            )
        summary[clients] = merged
    document = {
        **document_head("gateway", load_before),
        "settings": {
            "duration_s": args.duration,
            "rounds": args.rounds,
            "width": args.width,
            "clients": args.clients,
            "request": "1 x FP32 row, binary tensor extension (tritonclient default)",
            "load_generator": "closed loop, lockgate HttpUpstream (asyncio+httptools) on uvloop",
            "gateway_segment_max_age_s": args.segment_age,
            "dynamic_batching_queue_delay_us": args.dynamic_batching_us,
            "before_each_window": "every gateway rolls its WAL to Parquet (POST /admin/log/roll)",
        },
        "targets_goal": {"added_p50_ms_max": 0.5, "throughput_vs_direct_min": 0.8},
        "results": summary,
        "raw": results,
        "wal": wal,
    }
    write_json(args.out, document)
    print(f"load average (1 min) before {load_before[0]:.2f}, after {os.getloadavg()[0]:.2f}")
    print(f"\nwrote {args.out}")


def _coalesce_inflight(target: str) -> int:
    """``gateway-solo``: 0 (never merge); ``gateway-c<N>``: N; otherwise the default, 2."""
    if target.endswith("-solo"):
        return 0
    last = target.rsplit("-", 1)[-1]
    return int(last[1:]) if last[:1] == "c" and last[1:].isdigit() else 2


def _metric(text: str, name: str) -> float:
    """A Prometheus sample's value summed over its label sets (0 if absent)."""
    families = text_string_to_metric_families(text)
    return sum(x.value for f in families for x in f.samples if x.name == name)


if __name__ == "__main__":
    main()
