"""docs/your-own-pipeline.md runs as written, outside this repository, and does what it says.

The page's code blocks are taken from the file and run in order in a temporary folder, as a
newcomer would type them into one terminal: each ``bash`` block in one bash session whose
environment and folder carry over to the next (``export``, ``cd``); each ``python`` block that
names a file in its first line (``# churn/trainers.py``, ``# at the end of
churn/pipelines.py``) is written there; every other ``python`` block is executed in this process
from the project folder with the session's environment, as ``python`` in that terminal would
run it. Only the block the page marks as not run (``dagster dev``, which serves until stopped) is
skipped.

Then the test checks the page's claims: a regression, a multiclass and a custom-trainer
pipeline (besides the scaffold's binary one) train in real Dagster runs, pass the gate as the
first model and are served by a real tritonserver behind the real gateway, which answers named
features with the in-process predictions; a worse challenger fails the gate; a second version of
each goes through the canary to promotion (advance, promote, champion alias moved); and
``lockgate reproduce`` verifies each champion bit for bit. One tritonserver and one gateway
serve every pipeline.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]
DOC = REPO / "docs" / "your-own-pipeline.md"
BIN = Path(sys.executable).parent
TASKS = {"spend": "regression", "segment": "multiclass", "churn_logreg": "binary"}
CLASSES = ("at_risk", "loyal", "steady")

_BLOCK = re.compile(r"(<!-- not run[^>]*-->\n)?```(bash|python)\n(.*?)```", re.S)
_FILE = re.compile(r"# (at the end of )?([\w/]+\.py)\n")


@dataclass(frozen=True)
class Block:
    """One fenced code block of the page."""

    lang: str
    code: str
    line: int
    skip: bool

    @property
    def target(self) -> tuple[str, bool] | None:
        """``(path, append)`` for a python block that is a file of the project, else None."""
        match = _FILE.match(self.code) if self.lang == "python" else None
        return (match.group(2), bool(match.group(1))) if match else None


def blocks(text: str) -> list[Block]:
    """The page's ``bash`` and ``python`` blocks, in order."""
    return [
        Block(m.group(2), m.group(3), text.count("\n", 0, m.start(2)) + 1, bool(m.group(1)))
        for m in _BLOCK.finditer(text)
    ]


class Terminal:
    """One shell session: each block runs in bash, its environment and folder carry over."""

    def __init__(self, cwd: Path, env: dict[str, str], state: Path) -> None:
        self.cwd, self.env, self.state = cwd, env, state
        state.mkdir(parents=True)

    def run(self, block: Block) -> str:
        env_file, pwd_file = self.state / "env", self.state / "pwd"
        script = f"set -eo pipefail\n{block.code}\npwd > '{pwd_file}'\nenv -0 > '{env_file}'\n"
        done = subprocess.run(
            ["bash", "-c", script],
            cwd=self.cwd,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert done.returncode == 0, (
            f"{DOC.name} line {block.line}: exit {done.returncode}\n{block.code}\n"
            f"stdout: {done.stdout[-3000:]}\nstderr: {done.stderr[-5000:]}"
        )
        self.cwd = Path(pwd_file.read_text().strip())
        pairs = (item.split("=", 1) for item in env_file.read_text().split("\0") if "=" in item)
        self.env = dict(pairs)
        return done.stdout


def _session_env(tmp_path: Path) -> dict[str, str]:
    """A newcomer's terminal: lockgate's virtualenv on PATH, git configured, no lockgate state."""
    git_config = tmp_path / "gitconfig"
    git_config.write_text(
        "[user]\n  name = Newcomer\n  email = newcomer@example.invalid\n"
        "[commit]\n  gpgsign = false\n[init]\n  defaultBranch = main\n"
    )
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("LOCKGATE_", "DAGSTER_", "GIT_")) and k not in ("PYTHONPATH",)
    }
    env.update(
        PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}",
        VIRTUAL_ENV=str(BIN.parent),
        GIT_CONFIG_GLOBAL=str(git_config),
        GIT_CONFIG_NOSYSTEM="1",
        DAGSTER_DISABLE_TELEMETRY="1",
        FEAST_USAGE="False",
    )
    return env


def _run_python(block: Block, terminal: Terminal, monkeypatch: pytest.MonkeyPatch) -> dict:
    """Run a python block as `python` in that terminal would: its folder, its environment."""
    for key in ("LOCKGATE_HOME", "DAGSTER_HOME", "PYTHONPATH"):
        monkeypatch.setenv(key, terminal.env[key])
    monkeypatch.chdir(terminal.cwd)
    for entry in reversed(terminal.env["PYTHONPATH"].split(os.pathsep)):
        if entry not in sys.path:
            monkeypatch.syspath_prepend(entry)
    namespace: dict[str, Any] = {"__name__": "__main__"}
    exec(compile(block.code, f"{DOC.name}:{block.line}", "exec"), namespace)
    return namespace


def _champion_moves(registry: Any, pipeline: str) -> list[dict[str, Any]]:
    return [m for m in registry.aliases(pipeline)["history"] if m["alias"] == "champion"]


def test_the_page_has_the_walkthroughs_blocks() -> None:
    found = blocks(DOC.read_text())
    (skipped,) = [b.code for b in found if b.skip]
    assert skipped.startswith("dagster dev -w workspace.yaml")
    assert [b.target for b in found if b.target] == [
        ("churn/trainers.py", False),
        ("churn/pipelines.py", True),
    ]
    shell = "".join(b.code for b in found if b.lang == "bash" and not b.skip)
    for command in (
        "lockgate init churn",
        "feast apply",
        "git commit",
        "dagster job execute -m churn.definitions -j churn_train",
        "dagster asset materialize -m churn.definitions",
        "lockgate reproduce",
    ):
        assert command in shell


def test_the_walkthrough_runs_outside_the_repository(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import dagster as dg

    from lockgate.lineage.registry import LocalArtifactRegistry
    from lockgate.lineage.steps import load_trained_model
    from lockgate.serving.stack import LocalServingStack

    started = time.monotonic()
    work = tmp_path / "work"
    work.mkdir()
    assert not work.resolve().is_relative_to(REPO)
    terminal = Terminal(work, _session_env(tmp_path), tmp_path / "terminal")
    project = work / "churn"
    shell_out: list[tuple[Block, str]] = []
    spaces: list[tuple[Block, dict[str, Any]]] = []
    timings: list[tuple[int, float]] = []
    try:
        for block in blocks(DOC.read_text()):
            if block.skip:
                continue
            begun = time.monotonic()
            if block.lang == "bash":
                shell_out.append((block, terminal.run(block)))
            elif block.target is not None:
                path, append = block.target
                with (terminal.cwd / path).open("a" if append else "x") as out:
                    out.write(("\n" if append else "") + block.code)
            else:
                spaces.append((block, _run_python(block, terminal, monkeypatch)))
            timings.append((block.line, time.monotonic() - begun))

        assert terminal.cwd == project
        home = Path(terminal.env["LOCKGATE_HOME"])
        assert home == project / ".lockgate"
        registry = LocalArtifactRegistry(root=str(home / "artifacts"))
        stack = LocalServingStack(root=str(home / "serving"))
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=project, capture_output=True, text=True, check=True
        ).stdout.strip()

        def out(marker: str) -> str:
            (text,) = [o for b, o in shell_out if marker in b.code]
            return text

        def space(marker: str) -> dict[str, Any]:
            (namespace,) = [n for b, n in spaces if marker in b.code]
            return namespace

        listed = out("lockgate pipelines")
        for name, task in {"churn": "binary", **TASKS}.items():
            assert f"{name}  task={task}" in listed

        # every pipeline's champion moves: the first model at once, then the canary's promotion
        first: dict[str, str] = {}
        with monkeypatch.context() as m:
            m.setenv("DAGSTER_HOME", terminal.env["DAGSTER_HOME"])
            with dg.DagsterInstance.get() as instance:
                for name in ("churn", *TASKS):
                    moves = _champion_moves(registry, name)
                    assert moves[0]["from"] is None
                    assert moves[0]["reason"] == (
                        "first model of the pipeline: gate and infra validation passed"
                    )
                    first[name] = moves[0]["to"]
                    run_id = moves[0]["actor"].removeprefix("dagster run ")
                    run = instance.get_run_by_id(run_id)  # a real run of the Dagster instance
                    assert run is not None
                    assert run.status == dg.DagsterRunStatus.SUCCESS
                    lock = registry.lock_record(name, first[name])
                    assert lock["code"]["commit"] == head
                    assert lock["code"]["dirty"] is False
                    assert lock["task"] == TASKS.get(name, "binary")
                    assert registry.verdicts(name, first[name])[-1]["passed"]
        assert registry.lock_record("churn_logreg", first["churn_logreg"])["trainer"]["class"] == (
            "churn.trainers:LogisticTrainer"
        )

        # named features in, through the gateway to Triton: the in-process predictions
        called = space("client.infer(model, inputs)")
        rows = called["rows"]
        for name, answer in called["answers"].items():
            model = load_trained_model(registry, name, first[name])
            expected = model.predict(rows)
            width = 3 if name == "segment" else 1
            assert answer.shape == (len(rows), width), name
            np.testing.assert_allclose(
                answer.reshape(len(rows), -1),
                expected.reshape(len(rows), -1).astype(np.float32),
                rtol=0,
                atol=1e-6,
                err_msg=name,
            )
            if name == "segment":
                assert tuple(model.classes) == CLASSES
            if name == "spend":
                assert float(answer.mean()) > 10.0  # on the label's scale

        # the worse challenger: blocked by the gate, and the champion did not move
        blocked = space("exclude_features")
        assert blocked["result"].success is False
        assert blocked["failed"] == ["gate_absolute", "gate_vs_champion"]
        (worse,) = [
            v
            for v in registry.model_versions("spend")
            if "monthly_spend" not in registry.lock_record("spend", v)["features"]
        ]
        assert not registry.verdicts("spend", worse)[-1]["passed"]
        assert worse not in {move["to"] for move in _champion_moves(registry, "spend")}

        # the second versions: gated, served beside the champion, canaried to promotion
        status = out("--days 24")
        canaried = space("drive_canary")["outcomes"]
        for name, task in TASKS.items():
            assert f"canary {name}: running" in status
            assert "at 50%" in status
            assert [t.action for t in canaried[name]] == ["advance", "promote"], [
                (t.action, t.reason) for t in canaried[name]
            ]
            moves = _champion_moves(registry, name)
            assert len(moves) == 2, moves
            second = moves[1]["to"]
            assert moves[1]["from"] == first[name] != second
            assert moves[1]["reason"].startswith("canary completed")
            assert moves[1]["actor"] == "lockgate drive_canary"
            assert registry.alias(name, "champion") == second
            lock = registry.lock_record(name, second)
            old = registry.lock_record(name, first[name])
            assert lock["task"] == task
            assert lock["code"]["commit"] == head
            assert lock["triad"]["data_snapshot_sha256"] != old["triad"]["data_snapshot_sha256"]
            assert registry.verdicts(name, second)[-1]["passed"]
            assert f"model {name}/{second}" in out("lockgate reproduce")
        assert out("lockgate reproduce").count("VERIFIED: the rebuilt weights") == len(TASKS)
        assert not stack.gateway().running  # `lockgate serve stop`, the page's last block
    finally:
        LocalServingStack(root=str(project / ".lockgate" / "serving")).stop()
        for name in [m for m in sys.modules if m == "churn" or m.startswith("churn.")]:
            del sys.modules[name]
        total = time.monotonic() - started
        slow = ", ".join(f"line {line}: {s:.0f}s" for line, s in timings if s >= 5)
        print(f"walkthrough: {total:.0f}s ({slow})")
