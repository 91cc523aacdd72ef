"""The snapshot step alone, streamed vs in memory, at a data size: time, peak RSS, same bytes.

``take_snapshot`` builds one snapshot two ways (lockgate/lineage/snapshot_stream.py): DuckDB
joins and sorts on disk and Arrow writes row groups ("stream"), or pandas builds the frame
("memory"). Each run is a fresh process (its peak RSS is its own) on the data of
``bench_scale.py`` (generate it there first: ``bench_scale.py --scales 100`` keeps it under
``--data-root``). Runs are interleaved (stream, memory, stream, ...) so the machine's load
falls on both alike; the result records the frame and file hashes of each, which must agree.

Example (recorded in ``benchmarks/results/snapshot.json``, summarised in
``benchmarks/results/scale.md``)::

    .venv/bin/python benchmarks/bench_snapshot.py --scale 100 --modes stream memory
    .venv/bin/python benchmarks/bench_snapshot.py --scale 10 --modes stream stream:2GB memory
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from _common import document_head, write_json  # noqa: E402

DEFAULT_OUT = ROOT / "benchmarks" / "results" / "snapshot.json"


def _worker(data_dir: Path, home: Path, mode: str, result: Path) -> None:
    """One snapshot in this process; writes its numbers to ``result``."""
    from lockgate import Environment
    from lockgate.lineage.registry import LocalArtifactRegistry
    from lockgate.lineage.steps import take_snapshot
    from pipelines.feature_repo import fraud_feast_store
    from pipelines.fraud import fraud_lgbm

    env = Environment.local(home)
    env.home.mkdir(parents=True, exist_ok=True)
    env.data_dir.symlink_to(data_dir, target_is_directory=True)
    feast = fraud_feast_store(env)
    feast.apply()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    registry = LocalArtifactRegistry(root=str(home / "artifacts"))
    started = time.perf_counter()
    ref = take_snapshot(fraud_lgbm, feast, registry, stream=mode == "stream")
    seconds = time.perf_counter() - started
    result.write_text(
        json.dumps(
            {
                "seconds": round(seconds, 2),
                "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
                "peak_rss_mb_before_snapshot": round(before),
                "rows": ref["rows"],
                "frame_sha256": ref["frame_sha256"],
                "file_sha256": ref["file_sha256"],
            }
        )
    )


def _tree_bytes(folder: Path) -> int:
    total = 0
    for dirpath, _, names in os.walk(folder):
        for name in names:
            with contextlib.suppress(OSError):  # removed meanwhile
                total += os.stat(os.path.join(dirpath, name)).st_size
    return total


def _run(data_dir: Path, mode: str, work: Path, timeout_s: float) -> dict[str, Any]:
    """One worker; also samples the size of its TMPDIR (DuckDB's spill and the sorted copy)."""
    kind, _, limit = mode.partition(":")
    home = work / mode.replace(":", "_")
    scratch = work / f"tmp-{mode.replace(':', '_')}"
    for folder in (home, scratch):
        shutil.rmtree(folder, ignore_errors=True)
    scratch.mkdir()
    result = work / f"{mode.replace(':', '_')}.json"
    env = dict(os.environ, TMPDIR=str(scratch))
    if limit:
        env["LOCKGATE_SNAPSHOT_MEMORY_LIMIT"] = limit
    argv = [sys.executable, __file__, "--worker", str(data_dir), str(home), kind, str(result)]
    started = time.perf_counter()
    peak_disk = 0
    with subprocess.Popen(
        argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    ) as proc:
        while proc.poll() is None:
            peak_disk = max(peak_disk, _tree_bytes(scratch))
            if time.perf_counter() - started > timeout_s:
                proc.kill()
            time.sleep(1.0)
        output = proc.stdout.read() if proc.stdout else ""
    wall = time.perf_counter() - started
    for folder in (home, scratch):
        shutil.rmtree(folder, ignore_errors=True)
    if proc.returncode != 0:
        return {"mode": mode, "error": output[-2000:], "wall_seconds": round(wall, 1)}
    row: dict[str, Any] = json.loads(result.read_text())
    return {
        "mode": mode,
        **row,
        "peak_tmp_disk_mb": round(peak_disk / 2**20),
        "load_1min": round(os.getloadavg()[0], 1),
    }


def _one_snapshot_per_scale(runs: list[dict[str, Any]]) -> bool:
    seen: dict[int, set[tuple[str, str]]] = {}
    for run in runs:
        if "frame_sha256" in run:
            seen.setdefault(run["scale"], set()).add((run["frame_sha256"], run["file_sha256"]))
    return all(len(hashes) == 1 for hashes in seen.values())


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        _worker(Path(sys.argv[2]), Path(sys.argv[3]), sys.argv[4], Path(sys.argv[5]))
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scale", type=int, default=10)
    parser.add_argument(
        "--modes",
        nargs="+",
        default=["stream", "memory"],
        help="stream, memory, or stream:<DuckDB memory limit> such as stream:2GB",
    )
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--data-root", default=str(Path(tempfile.gettempdir()) / "bench_scale"))
    parser.add_argument("--out", default=str(DEFAULT_OUT))
    parser.add_argument("--append", action="store_true", help="keep the file's earlier rows")
    parser.add_argument("--timeout-s", type=float, default=3600.0)
    args = parser.parse_args()
    data_dir = Path(args.data_root) / f"x{args.scale}"
    if not (data_dir / "labels").is_dir():
        raise SystemExit(f"no data at {data_dir}: run bench_scale.py --scales {args.scale} first")
    load_before = os.getloadavg()
    runs = []
    with tempfile.TemporaryDirectory(prefix="bench-snapshot-") as work:
        for _ in range(args.rounds):
            for mode in args.modes:
                row = _run(data_dir, mode, Path(work), args.timeout_s)
                print(json.dumps(row))
                runs.append({"scale": args.scale, **row})
    out = Path(args.out)
    previous = json.loads(out.read_text())["runs"] if args.append and out.exists() else []
    document = {
        **document_head("snapshot step, streamed vs in memory", load_before),
        "command": " ".join(["benchmarks/bench_snapshot.py", *sys.argv[1:]]),
        "runs": [*previous, *runs],
        "same_snapshot_every_run": _one_snapshot_per_scale([*previous, *runs]),
    }
    write_json(out, document)
    print(f"wrote {out}; one snapshot per scale: {document['same_snapshot_every_run']}")


if __name__ == "__main__":
    main()
