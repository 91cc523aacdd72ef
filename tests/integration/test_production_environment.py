"""``LOCKGATE_ENV=production`` binds the shared-state engines the variables name: the registry
on object storage with its aliases in PostgreSQL, the audit chain and the canary state in
PostgreSQL; all configured by ``dg.EnvVar`` and resolved by Dagster when a run starts."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import dagster as dg
import pytest

from lockgate import Environment
from lockgate._util.services import LocalS3
from lockgate.lineage.object_registry import ObjectStoreArtifactRegistry
from lockgate.lineage.registry import LocalArtifactRegistry
from lockgate.resources.audit import AuditTrail
from lockgate.state.audit import PostgresAuditLog
from lockgate.state.registry import SharedAliasesLocalRegistry

KEY = "k" * 64


def _production(tmp_path: Path, **extra: str) -> dict[str, str]:
    base = {
        "LOCKGATE_ENV": "production",
        "LOCKGATE_DATA_DIR": str(tmp_path / "data"),
        "LOCKGATE_FEAST_DIR": str(tmp_path / "feast"),
        "LOCKGATE_ARTIFACTS_ROOT": str(tmp_path / "artifacts"),
        "LOCKGATE_REFS_DIR": str(tmp_path / "refs"),
        "LOCKGATE_AUDIT_PATH": str(tmp_path / "audit" / "audit.jsonl"),
        "LOCKGATE_SIGNING_KEY": KEY,
        "LOCKGATE_TRITON_URL": "127.0.0.1:1",
        "LOCKGATE_GATEWAY_URL": "http://127.0.0.1:1",
        "LOCKGATE_GATEWAY_ADMIN_URL": "http://127.0.0.1:2",
        "LOCKGATE_GATEWAY_ADMIN_TOKEN": "t" * 32,
        "LOCKGATE_MODEL_REPOSITORY": str(tmp_path / "repo"),
        "LOCKGATE_CANARY_STATE_DIR": str(tmp_path / "canary"),
        "LOCKGATE_PREDICTIONS_DIR": str(tmp_path / "predictions"),
    }
    return base | extra


def _resolved(tmp_path: Path, environ: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Any:
    """The plain objects a run gets: a real Dagster run of one asset that writes through them."""
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    resources = Environment.from_env(environ).resources(environ)
    seen: dict[str, Any] = {}

    @dg.asset(required_resource_keys={"artifacts", "audit", "serving_stack"})
    def touch(context) -> None:  # type: ignore[no-untyped-def]
        seen["artifacts"] = context.resources.artifacts
        seen["audit"] = context.resources.audit
        seen["stack"] = context.resources.serving_stack
        seen["artifacts"].put_snapshot(
            "a" * 64, b"PAR1-not-read", {"rows": 1, "frame_sha256": "a" * 64}
        )
        seen["audit"].record("probe", pipeline="p", actor="test", payload={"n": 1})

    keep = {k: resources[k] for k in ("artifacts", "audit", "serving_stack")}
    assert dg.materialize([touch], resources=keep).success
    return seen


def test_without_engines_production_keeps_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen = _resolved(tmp_path, _production(tmp_path), monkeypatch)
    assert type(seen["artifacts"]) is LocalArtifactRegistry
    assert (tmp_path / "artifacts" / "snapshots").is_dir()
    assert isinstance(seen["audit"], AuditTrail)
    assert (tmp_path / "audit" / "audit.jsonl").is_file()
    assert seen["stack"].state_url is None


def test_a_state_database_holds_aliases_audit_and_canary_state(
    tmp_path: Path, postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    environ = _production(tmp_path, LOCKGATE_STATE_DB_URL=postgres_url)
    seen = _resolved(tmp_path, environ, monkeypatch)
    assert isinstance(seen["artifacts"], SharedAliasesLocalRegistry)
    assert seen["artifacts"].state_url == postgres_url
    assert not (tmp_path / "audit").exists()  # the chain is in PostgreSQL, not in a file
    log = PostgresAuditLog(postgres_url, signing_key=KEY)
    (entry,) = list(log.entries())
    assert entry["kind"] == "probe"
    verified = log.verify()
    assert verified.ok, verified.problem
    assert verified.entries == 1
    assert seen["stack"].state_url == postgres_url


def test_an_artifacts_url_puts_the_registry_on_object_storage(
    tmp_path: Path,
    postgres_url: str,
    s3_server: LocalS3,
    s3_bucket: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    environ = _production(
        tmp_path,
        LOCKGATE_STATE_DB_URL=postgres_url,
        LOCKGATE_ARTIFACTS_URL=f"s3://{s3_bucket}/artifacts",
        **s3_server.environment(),
    )
    seen = _resolved(tmp_path, environ, monkeypatch)
    registry = seen["artifacts"]
    assert isinstance(registry, ObjectStoreArtifactRegistry)
    assert not (tmp_path / "artifacts").exists()
    stored = s3_server.filesystem().find(f"{s3_bucket}/artifacts")
    assert any("/snapshots/" in key for key in stored), stored
    manifest = registry.snapshot_manifest("a" * 64)
    assert json.loads(json.dumps(manifest))["rows"] == 1


def test_the_audit_commands_read_the_shared_chain(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from click.testing import CliRunner

    from lockgate.cli import cli

    monkeypatch.setenv("LOCKGATE_STATE_DB_URL", postgres_url)
    monkeypatch.setenv("LOCKGATE_SIGNING_KEY", KEY)
    log = PostgresAuditLog(postgres_url, signing_key=KEY)
    for n in range(3):
        log.append("probe", pipeline="p", actor="test", payload={"n": n})
    runner = CliRunner()
    verified = runner.invoke(cli, ["audit", "verify", "--home", str(tmp_path / "home")])
    assert verified.exit_code == 0, verified.output
    assert "3 entries verified" in verified.output
    assert "***" in verified.output  # the URL is shown without its password
    shown = runner.invoke(cli, ["audit", "show", "--home", str(tmp_path / "home")])
    assert shown.output.count(" probe ") == 3, shown.output
