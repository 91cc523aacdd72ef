"""The console command end to end: the example's demo through a real Dagster instance, then
lockgate's commands on what it built (reproduce, verify, aliases, promote)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from lockgate.audit.log import AuditLog
from lockgate.lineage.registry import LocalArtifactRegistry

REPO = Path(__file__).resolve().parents[2]
LOCKGATE = [sys.executable, "-m", "lockgate.cli"]
EXAMPLE = [sys.executable, "-m", "pipelines"]  # the fraud example's own commands
EXAMPLE_COMMANDS = ["demo", "generate-data"]
COMMANDS = [
    "init",
    "apply",
    "versions",
    "show",
    "verify",
    "sign",
    "reproduce",
    "aliases",
    "promote",
    "drift",
    "pipelines",
]


def run(
    *args: str, home: Path | None = None, check: bool = True, prog: list[str] = LOCKGATE
) -> subprocess.CompletedProcess:
    env = dict(os.environ, DAGSTER_DISABLE_TELEMETRY="1")
    cmd = [*prog, *args] + (["--home", str(home)] if home else [])
    # from the repository root, where the example's package `pipelines` imports from
    result = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900, cwd=REPO)
    if check and result.returncode != 0:
        raise AssertionError(f"{cmd} exited {result.returncode}:\n{result.stdout}\n{result.stderr}")
    return result


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help(command: str) -> None:
    out = run(command, "--help").stdout
    assert "Usage:" in out
    assert "--home" in out or command == "init"


@pytest.mark.parametrize("command", EXAMPLE_COMMANDS)
def test_the_examples_commands_are_its_own(command: str) -> None:
    """The example's data generator and main job belong to the example, not to `lockgate`."""
    out = run(command, "--help", prog=EXAMPLE).stdout
    assert "Usage: python -m pipelines" in out
    assert "--home" in out
    refused = run(command, "--help", check=False)
    assert refused.returncode != 0
    assert f"No such command '{command}'" in refused.stderr


@pytest.fixture(scope="module")
def demo_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    home = tmp_path_factory.mktemp("demo") / "home"
    out = run("demo", "--days", "10", home=home, prog=EXAMPLE).stdout
    assert "fraud_lgbm_train: run" in out
    assert "fraud_torch_train: run" in out
    assert "dagster dev -w workspace.yaml" in out
    assert "closed loop: promoted" in out
    assert "retrain requested by the drift sensor" in out
    assert "GATED (stays a challenger)" in out
    assert "gate gate_vs_champion FAILED" in out
    return home


def test_demo_runs_are_in_the_persistent_instance(demo_home: Path) -> None:
    from dagster import DagsterInstance

    os.environ["DAGSTER_HOME"] = str(demo_home / "dagster")
    try:
        with DagsterInstance.get() as instance:
            runs = instance.get_runs()
            assert {r.job_name for r in runs} >= {"fraud_lgbm_train", "fraud_torch_train"}
            outcomes = sorted((r.job_name, r.is_success) for r in runs)
            # first models become champions; the weakened challenger is gated; the daemon
            # retrains after the injected drift and the new model goes through the canary
            assert outcomes == [
                ("fraud_lgbm_train", False),
                ("fraud_lgbm_train", True),
                ("fraud_lgbm_train", True),
                ("fraud_torch_train", True),
            ]
            (looped,) = [r for r in runs if r.tags.get("lockgate/trigger") == "drift"]
            assert looped.is_success
            assert looped.tags["dagster/run_key"].startswith("drift:")
            assert "age" in looped.tags["lockgate/drift_features"].split(",")
    finally:
        del os.environ["DAGSTER_HOME"]
    registry = LocalArtifactRegistry(root=str(demo_home / "artifacts"))
    aliases = registry.aliases("fraud_lgbm")
    assert aliases["aliases"]["champion"] == aliases["aliases"]["challenger"]  # promoted
    assert [h["alias"] for h in aliases["history"]] == [
        "challenger",
        "champion",
        "challenger",
        "challenger",
        "champion",
    ]
    assert "canary completed" in aliases["history"][-1]["reason"]
    (request,) = AuditLog(demo_home / "audit" / "audit.jsonl").entries(kind="retrain_requested")
    assert request["payload"]["trigger"] == "drift"
    assert Path(request["payload"]["drift_report"]).exists()


@pytest.mark.parametrize("pipeline", ["fraud_lgbm", "fraud_torch"])
def test_reproduce_verifies_bit_identity_from_the_cli(demo_home: Path, pipeline: str) -> None:
    versions = run("versions", pipeline, home=demo_home).stdout.split()
    version = versions[0]
    out = run("reproduce", pipeline, version, home=demo_home).stdout
    assert "VERIFIED" in out
    assert run("verify", pipeline, version, home=demo_home).returncode == 0


def test_tampered_weights_fail_verify_with_a_clear_message(demo_home: Path) -> None:
    registry = LocalArtifactRegistry(root=str(demo_home / "artifacts"))
    version = registry.model_versions("fraud_torch")[0]
    path = Path(
        registry.uri(f"{registry.model_prefix('fraud_torch', version)}/weights.safetensors")
    )
    original = path.read_bytes()
    try:
        path.write_bytes(original[:-1] + bytes([original[-1] ^ 1]))
        result = run("verify", "fraud_torch", version, home=demo_home, check=False)
        assert result.returncode == 2
        assert "tampered" in result.stderr
        assert f"lockgate reproduce fraud_torch {version}" in result.stderr
    finally:
        path.write_bytes(original)


def test_reproduce_reports_what_differs(demo_home: Path) -> None:
    version = LocalArtifactRegistry(root=str(demo_home / "artifacts")).model_versions("fraud_lgbm")[
        0
    ]
    env = dict(os.environ, LOCKGATE_CODE_COMMIT="0123456789ab-dirty")
    result = subprocess.run(
        [*LOCKGATE, "reproduce", "fraud_lgbm", version, "--home", str(demo_home)],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr  # same data and params: still bit-identical
    assert "differs: project code commit" in result.stdout
    assert "0123456789ab now" in result.stdout


def test_unknown_version_is_named(demo_home: Path) -> None:
    result = run("reproduce", "fraud_lgbm", "nope", home=demo_home, check=False)
    assert result.returncode == 2
    assert "known versions" in result.stderr


def test_reproduce_without_the_snapshot_says_so(demo_home: Path) -> None:
    registry = LocalArtifactRegistry(root=str(demo_home / "artifacts"))
    version = registry.model_versions("fraud_lgbm")[0]
    snapshot = registry.lock_record("fraud_lgbm", version)["triad"]["data_snapshot_sha256"]
    manifest = Path(registry.uri(f"snapshots/{snapshot}.json"))
    moved = manifest.with_name("moved-away")
    manifest.rename(moved)
    try:
        result = run("reproduce", "fraud_lgbm", version, home=demo_home, check=False)
        assert result.returncode == 2
        assert f"data snapshot {snapshot[:12]} is missing" in result.stderr
    finally:
        moved.rename(manifest)


def test_aliases_and_an_audited_manual_promotion(demo_home: Path) -> None:
    registry = LocalArtifactRegistry(root=str(demo_home / "artifacts"))
    champion = registry.alias("fraud_lgbm", "champion")
    gated = next(
        v
        for v in registry.model_versions("fraud_lgbm")
        if registry.verdicts("fraud_lgbm", v)
        and not registry.verdicts("fraud_lgbm", v)[-1]["passed"]
    )
    out = run("aliases", "fraud_lgbm", home=demo_home).stdout
    assert f"champion    {champion}" in out
    assert "first model of the pipeline" in out
    refused = run(
        "promote", "fraud_lgbm", gated, "--reason", "why not", home=demo_home, check=False
    )
    assert refused.returncode == 2
    assert "gate_vs_champion" in refused.stderr
    assert registry.alias("fraud_lgbm", "champion") == champion
    shown = json.loads(run("show", "fraud_lgbm", gated, home=demo_home).stdout)
    assert shown["gate_verdicts"][-1]["passed"] is False
    run("promote", "fraud_lgbm", gated, "--reason", "drill", "--override-gate", home=demo_home)
    try:
        last = registry.aliases("fraud_lgbm")["history"][-1]
        assert (last["from"], last["to"]) == (champion, gated)
        assert last["reason"] == "drill [gate overridden]"
        # a person's promotion is audited like the controller's, the override named
        (entry,) = [
            e
            for e in AuditLog(demo_home / "audit" / "audit.jsonl").entries(kind="promotion")
            if e["payload"].get("to") == gated
        ]
        assert entry["payload"]["override"] is True
        assert entry["payload"]["from"] == champion
        assert entry["actor"].endswith("(lockgate promote)")
    finally:
        run("promote", "fraud_lgbm", champion, "--reason", "restore", home=demo_home)


def test_audit_verify_catches_tampering(demo_home: Path) -> None:
    out = run("audit", "verify", home=demo_home).stdout
    assert "entries verified" in out
    kinds = run("audit", "show", home=demo_home).stdout
    assert "gate_verdict" in kinds
    assert "promotion" in kinds
    path = demo_home / "audit" / "audit.jsonl"
    original = path.read_text()
    lines = original.splitlines(keepends=True)
    try:
        swapped = [lines[1], lines[0], *lines[2:]]  # two entries reordered
        path.write_text("".join(swapped))
        result = run("audit", "verify", home=demo_home, check=False)
        assert result.returncode == 1
        assert "FAILED verification" in result.stderr
    finally:
        path.write_text(original)
    assert run("audit", "verify", home=demo_home).returncode == 0


def test_drift_command_reports_the_demo_traffic(demo_home: Path) -> None:
    out = run("drift", "fraud_lgbm", "--rows", "2000", home=demo_home).stdout
    level = out.split(":", 2)[1].strip()
    assert level in ("ok", "warn", "critical"), out
    assert "  age " in out
    assert "prediction" in out
    assert "report: " in out
    report = json.loads(run("drift", "fraud_lgbm", "--json", home=demo_home).stdout)
    assert report["champion"] == LocalArtifactRegistry(root=str(demo_home / "artifacts")).alias(
        "fraud_lgbm", "champion"
    )
    assert {f["feature"] for f in report["features"]} >= {"age", "amount", "device_type"}
    missing = run("drift", "nope", home=demo_home, check=False)
    assert missing.returncode != 0
    assert "pipeline 'nope' is not defined in module pipelines.definitions" in (missing.stderr)
    assert "known pipelines: ['fraud_lgbm', 'fraud_torch']" in missing.stderr
