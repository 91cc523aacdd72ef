#!/usr/bin/env python
"""Screenshots of the Dagster UI on the demo's own runs, for docs/ui.md.

Runs the quick start's main job (``python -m pipelines demo``) in a lockgate home of its own (or
reuses one with ``--reuse``), starts ``dagster-webserver`` on 127.0.0.1 (a free port) on that
home's DAGSTER_HOME and the repository's ``workspace.yaml``, opens the key pages in headless
Chromium and saves one PNG per page under ``docs/screenshots/``. The webserver and the browser
are stopped when it ends, whatever happens.

Needs Debian's Chromium and Playwright for Python (development tools, not test dependencies)::

    apt-get install -y chromium          # /usr/bin/chromium
    .venv/bin/pip install playwright     # the Python driver only: no `playwright install`

Usage::

    .venv/bin/python scripts/ui_screenshots.py                       # demo + screenshots
    .venv/bin/python scripts/ui_screenshots.py --reuse --home /tmp/ui  # screenshots only
"""

from __future__ import annotations

import argparse
import io
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

try:
    from playwright.sync_api import Error as PlaywrightError
except ImportError:  # main() says how to install it
    PlaywrightError = Exception  # type: ignore[assignment,misc]

__all__ = ["Shot", "main"]

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
LOCATION = "lockgate"  # the location name workspace.yaml pins
VIEWPORT = {"width": 1600, "height": 1000}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _graphql(url: str, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
    body = json.dumps({"query": query, "variables": variables or {}}).encode()
    request = urllib.request.Request(url, body, {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as response:
        answer = json.loads(response.read())
    if answer.get("errors"):
        raise RuntimeError(f"GraphQL error from {url}: {answer['errors']}")
    return dict(answer["data"])


def run_demo(home: Path, *, days: int, pipeline: str) -> None:
    """The quick start's main job in ``home``; raises if it fails."""
    command = [sys.executable, "-m", "pipelines", "demo", "--home", str(home), "--days", str(days)]
    command += ["--pipeline", pipeline]
    print("$", " ".join(command), flush=True)
    env = {**os.environ, "DAGSTER_DISABLE_TELEMETRY": "1"}
    done = subprocess.run(command, cwd=REPO, env=env, check=False)
    if done.returncode != 0:
        # a demo that fails half-way leaves its tritonserver and gateway up: stop them
        stop = [sys.executable, "-m", "lockgate.cli", "serve", "stop", "--home", str(home)]
        subprocess.run(stop, cwd=REPO, env=env, check=False)
        raise SystemExit(
            f"the demo failed (exit {done.returncode}); its output is above. Rerun this script, "
            f"or fix the demo first: `python -m pipelines demo --home {home}`"
        )


@contextmanager
def webserver(home: Path, log: Path) -> Iterator[str]:
    """``dagster-webserver`` on ``workspace.yaml`` and the home's DAGSTER_HOME; yields its URL and
    stops its process group at the end."""
    port = _free_port()
    env = {
        **os.environ,
        "DAGSTER_HOME": str(home / "dagster"),
        "LOCKGATE_HOME": str(home),
        "DAGSTER_DISABLE_TELEMETRY": "1",
    }
    command = [sys.executable, "-m", "dagster_webserver", "-w", "workspace.yaml"]
    command += ["-h", "127.0.0.1", "-p", str(port)]
    with log.open("wb") as out:
        process = subprocess.Popen(
            command, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_for_location(url, process, log)
        yield url
    finally:
        _stop_group(process)


def _wait_for_location(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    query = """{ workspaceOrError { ... on Workspace { locationEntries {
        name loadStatus locationOrLoadError { __typename ... on PythonError { message } } } } } }"""
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"dagster-webserver exited:\n{log.read_text()[-3000:]}")
        try:
            entries = _graphql(f"{url}/graphql", query)["workspaceOrError"]["locationEntries"]
        except OSError:
            time.sleep(0.5)
            continue
        entry = next((e for e in entries if e["name"] == LOCATION), None)
        if entry and entry["loadStatus"] == "LOADED":
            loaded = entry["locationOrLoadError"] or {}
            if loaded.get("__typename") == "PythonError":
                raise SystemExit(f"code location {LOCATION} failed to load: {loaded['message']}")
            return
        time.sleep(0.5)
    raise SystemExit(f"dagster-webserver not ready in 180 s:\n{log.read_text()[-3000:]}")


def _stop_group(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)
    except ProcessLookupError:
        pass


# ---------------------------------------------------------------------------------------------
# what to open


@dataclass
class Shot:
    """One screenshot: the page, the texts to wait for, what to click (a menu, a tab) and what
    to bring to the top of its pane; a text ``re:<pattern>`` is a regular expression."""

    name: str
    path: str
    wait_for: list[str]
    scroll_to: str | None = None
    click: list[str] = field(default_factory=list)
    full_height: int | None = None  # a taller page (pixels) when the content needs it


_MATERIALIZATIONS = """
query ($path: [String!]!) { assetOrError(assetKey: {path: $path}) { ... on Asset {
  assetMaterializations(limit: 200) { runId timestamp
    metadataEntries { label ... on TextMetadataEntry { text } } } } } }
"""


def _ids(url: str, pipeline: str) -> dict[str, str]:
    """Run ids, a tick id and event times the pages need, read through GraphQL."""
    graphql = f"{url}/graphql"
    runs = _graphql(
        graphql,
        """query ($tags: [ExecutionTag!]) { runsOrError(filter: {tags: $tags}, limit: 50) {
            ... on Runs { results { runId status tags { key value } } } } }""",
        {"tags": [{"key": "lockgate/pipeline", "value": pipeline}]},
    )["runsOrError"]["results"]
    blocked = [
        r
        for r in runs
        if {"key": "lockgate/verdict", "value": "blocked"} in r["tags"] and r["status"] == "FAILURE"
    ]
    if not blocked:
        raise SystemExit(f"no blocked run of {pipeline} in this instance: run the demo first")
    ticks = _graphql(
        graphql,
        """query ($s: SensorSelector!) { sensorOrError(sensorSelector: $s) {
            ... on Sensor { sensorState { ticks(limit: 500) { tickId status runIds } } } } }""",
        {
            "s": {
                "repositoryLocationName": LOCATION,
                "repositoryName": "__repository__",
                "sensorName": f"{pipeline}_on_drift",
            }
        },
    )["sensorOrError"]["sensorState"]["ticks"]
    triggered = [t for t in ticks if t["runIds"]]
    if not triggered:
        raise SystemExit(f"no tick of {pipeline}_on_drift requested a run: the loop did not run")

    def events(asset: str) -> list[dict[str, Any]]:
        data = _graphql(graphql, _MATERIALIZATIONS, {"path": [pipeline, asset]})
        return list(data["assetOrError"]["assetMaterializations"])

    # the blocked challenger's evaluation: its plots and its comparison with the champion
    evaluation = [e for e in events("evaluation_report") if e["runId"] == blocked[0]["runId"]]
    # the newest critical drift report (the newest event may be a run-link observation)
    critical = [
        e
        for e in events("drift_report")
        if {"label": "level", "text": "critical"} in e["metadataEntries"]
    ]
    if not evaluation or not critical:
        raise SystemExit("the demo's runs lack the blocked evaluation or a critical drift report")
    return {
        "blocked_run": blocked[0]["runId"],
        "blocked_evaluation_time": evaluation[0]["timestamp"],
        "critical_drift_time": critical[0]["timestamp"],
        "drift_tick": str(triggered[0]["tickId"]),
        "retrain_run": triggered[0]["runIds"][0],
    }


def shots(pipeline: str, ids: dict[str, str]) -> list[Shot]:
    """The pages, in the order docs/ui.md tells them."""
    asset = f"/assets/{pipeline}"
    location = f"/locations/{LOCATION}"
    blocked_evaluation = (
        f"{asset}/evaluation_report?view=events&time={ids['blocked_evaluation_time']}"
    )
    drift = f"{asset}/drift_report?view=events&time={ids['critical_drift_time']}"
    return [
        Shot("01-asset-graph", f"{location}/asset-groups/{pipeline}", ["evaluation_report"]),
        Shot("02-evaluation-plots", blocked_evaluation, ["plot_roc"], scroll_to="plot_roc"),
        Shot(
            "03-evaluation-comparison",
            blocked_evaluation,
            ["vs_champion"],
            scroll_to="features_dropped_vs_champion",
        ),
        Shot("04-model-registry", f"{asset}/model_registry?view=events", ["versions"]),
        Shot("05-runs", "/runs", ["lockgate/verdict"]),
        Shot(
            "06-blocked-run",
            f"/runs/{ids['blocked_run']}?logs=step:{pipeline}_gate",
            ["BLOCKED by"],
        ),
        Shot(
            "07-blocked-run-error",
            f"/runs/{ids['blocked_run']}?logs=type:STEP_FAILURE",
            ["BLOCKED by"],
            click=["View full message"],
        ),
        Shot(
            "08-gate-check",
            f"{asset}/evaluation_report?view=checks&checkDetail=gate_vs_champion",
            ["gate_vs_champion"],
            click=["Execution history"],
        ),
        Shot("09-drift-report", drift, ["severity"], scroll_to="severity"),
        Shot("10-drift-histograms", drift, ["severity"], scroll_to="re:^plot_"),
        Shot(
            "11-drift-sensor-tick",
            f"{location}/sensors/{pipeline}_on_drift?tickId={ids['drift_tick']}",
            ["Requested runs"],
        ),
        Shot("12-retrain-run", f"/runs/{ids['retrain_run']}", ["Launched by"]),
        Shot("13-rollout", f"{asset}/rollout?view=events", ["previous_champion"]),
        Shot(
            "14-rollout-automation",
            f"{asset}/rollout",
            ["Automation details"],
            click=["re:^\\d+ sensors$"],
        ),
    ]


def _optimise(png: bytes) -> bytes:
    """A palette PNG (256 colours: a UI screenshot loses nothing readable), optimised."""
    from PIL import Image

    image = Image.open(io.BytesIO(png)).convert("RGB")
    out = io.BytesIO()
    image.quantize(colors=256, method=Image.Quantize.MEDIANCUT).save(out, "PNG", optimize=True)
    return out.getvalue()


def take(url: str, pages: list[Shot], out_dir: Path, *, say: Callable[[str], None]) -> list[str]:
    """Opens each page in headless Chromium and saves ``out_dir/<name>.png``; returns the names
    of the pages that did not show their content (saved as ``<name>.failed.png``)."""
    from playwright.sync_api import sync_playwright

    out_dir.mkdir(parents=True, exist_ok=True)
    failed: list[str] = []
    profile = Path(tempfile.mkdtemp(prefix="lockgate-ui-chromium-"))
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch_persistent_context(
                str(profile),
                executable_path=CHROMIUM,
                headless=True,
                args=CHROMIUM_ARGS,
                viewport=VIEWPORT,  # type: ignore[arg-type]
                device_scale_factor=1,
            )
            try:
                page = browser.new_page()
                page.set_default_timeout(60_000)
                _prepare(page, url)
                for shot in pages:
                    try:
                        _open(page, url, shot)
                    except PlaywrightError as exc:
                        failed.append(shot.name)
                        target = out_dir / f"{shot.name}.failed.png"
                        target.write_bytes(page.screenshot())
                        say(f"  {shot.name} FAILED ({str(exc).splitlines()[0]}); see {target}")
                        continue
                    target = out_dir / f"{shot.name}.png"
                    target.write_bytes(_optimise(page.screenshot()))
                    say(f"  {target}  ({target.stat().st_size // 1024} KB)")
            finally:
                browser.close()
    finally:
        shutil.rmtree(profile, ignore_errors=True)
    return failed


def _prepare(page: Any, url: str) -> None:
    """Skips the "Join the Dagster community" dialog that a fresh browser profile gets once, and
    hides the navigation (more room for metadata tables; the UI remembers it)."""
    page.goto(url + "/overview")
    skip = page.get_by_role("button", name="Skip")
    try:
        skip.wait_for(state="visible", timeout=15_000)
    except PlaywrightError:
        pass  # this Dagster version did not ask
    else:
        skip.click()
        skip.wait_for(state="hidden")
    page.get_by_text("Hide navigation", exact=True).click()


def _text(page: Any, text: str) -> Any:
    """The elements with exactly this text, or matching ``re:<pattern>``."""
    if text.startswith("re:"):
        return page.get_by_text(re.compile(text[3:]))
    return page.get_by_text(text, exact=True)


def _open(page: Any, url: str, shot: Shot) -> None:
    """Opens the shot's page and waits until its content shows."""
    height = shot.full_height or VIEWPORT["height"]
    page.set_viewport_size({"width": VIEWPORT["width"], "height": height})
    page.goto(url + shot.path)
    for text in shot.wait_for:
        page.get_by_text(text, exact=False).first.wait_for(state="visible")
    for text in shot.click:
        _text(page, text).first.click()
    if shot.scroll_to:  # to the top of its scrolling pane
        anchor = _text(page, shot.scroll_to).first
        anchor.evaluate("e => e.scrollIntoView({block: 'start'})")
    # no spinner left: the page has its data
    page.wait_for_function(
        "() => !document.querySelector('[role=progressbar], .bp5-spinner')", timeout=30_000
    )
    page.wait_for_timeout(500)  # fonts and inline charts settle


def main(argv: list[str] | None = None) -> None:
    """Entry point: demo (unless ``--reuse``), webserver, screenshots."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--home", type=Path, default=None, help="lockgate home (default: a new temporary folder)"
    )
    parser.add_argument(
        "--reuse", action="store_true", help="reuse the demo runs already in --home"
    )
    parser.add_argument("--days", type=int, default=30, help="days of example data (demo)")
    parser.add_argument("--pipeline", default="fraud_lgbm", help="the pipeline to run and show")
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "screenshots")
    parser.add_argument("--only", nargs="*", default=None, help="screenshot names to take")
    args = parser.parse_args(argv)

    if not Path(CHROMIUM).exists():
        raise SystemExit(f"{CHROMIUM} is missing: apt-get install -y chromium")
    try:
        import playwright  # noqa: F401
    except ImportError:
        raise SystemExit("Playwright is missing: .venv/bin/pip install playwright") from None
    if args.reuse and args.home is None:
        raise SystemExit("--reuse needs --home: the lockgate home the demo ran in")
    home = (args.home or Path(tempfile.mkdtemp(prefix="lockgate-ui-"))).resolve()
    if not args.reuse:
        run_demo(home, days=args.days, pipeline=args.pipeline)
    elif not (home / "dagster").is_dir():
        raise SystemExit(f"{home} has no dagster/ folder: run without --reuse first")
    with webserver(home, home / "ui-webserver.log") as url:
        print(f"dagster-webserver at {url} (DAGSTER_HOME={home / 'dagster'})", flush=True)
        pages = shots(args.pipeline, _ids(url, args.pipeline))
        if args.only:
            pages = [p for p in pages if p.name in args.only]
        failed = take(url, pages, args.out.resolve(), say=lambda m: print(m, flush=True))
    print(f"webserver stopped; screenshots in {args.out}")
    if failed:
        raise SystemExit(f"pages that did not show their content: {', '.join(failed)}")


if __name__ == "__main__":
    main()
