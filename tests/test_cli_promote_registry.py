"""``lockgate promote`` keeps the UI's registry view current: after the alias moves it records a
runless ``[pipeline, model_registry]`` materialization in the Dagster instance (a real SQLite
instance in a temporary folder); without an instance the promotion still stands."""

from __future__ import annotations

import shutil
from pathlib import Path

import dagster as dg
import pytest
from click.testing import CliRunner

from lockgate import Environment
from lockgate.cli import cli
from lockgate.lineage.registry import LocalArtifactRegistry
from pipelines.demo import _prepare_dagster_home
from pipelines.feature_repo import fraud_feast_store
from pipelines.fraud_data import generate_fraud_data
from tests.integration.conftest import DAYS, SMALL
from tests.integration.test_gate import KEY_FEATURES, spec, train

pytestmark = pytest.mark.integration

KEY = dg.AssetKey(["fraud", "model_registry"])


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str, str]:
    """A lockgate home with its Dagster instance: champion A, challenger B blocked by the gate."""
    env = Environment.local(tmp_path_factory.mktemp("promote") / "home")
    generate_fraud_data(env.data_dir, days=DAYS, config=SMALL)
    fraud_feast_store(env).apply()
    _prepare_dagster_home(env.dagster_home)
    with dg.DagsterInstance.from_config(str(env.dagster_home)) as instance:
        assert train(spec(), env, instance).success
        blocked = train(spec(exclude=KEY_FEATURES), env, instance)
        assert not blocked.success
    registry = LocalArtifactRegistry(root=str(env.artifacts_dir))
    champion = registry.alias("fraud", "champion")
    (challenger,) = [v for v in registry.model_versions("fraud") if v != champion]
    return env.home, champion, challenger


def _copy(home: Path, tmp_path: Path) -> Path:
    target = tmp_path / "home"
    shutil.copytree(home, target)
    return target


def _promote(home: Path, version: str) -> str:
    args = ["promote", "fraud", version, "--reason", "rollback drill", "--override-gate"]
    result = CliRunner().invoke(cli, [*args, "--home", str(home)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def test_a_manual_promotion_records_the_registry_view(
    trained: tuple[Path, str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("DAGSTER_HOME", raising=False)  # the home's own instance
    home, champion, challenger = trained
    home = _copy(home, tmp_path)
    env = Environment.local(home)
    with dg.DagsterInstance.from_config(str(env.dagster_home)) as instance:
        before = instance.get_latest_materialization_event(KEY)
        assert before is not None
        assert before.run_id  # the blocked run's view

    out = _promote(home, challenger)

    assert f"fraud champion: {champion} -> {challenger}" in out
    assert "registry view recorded: fraud/model_registry" in out
    with dg.DagsterInstance.from_config(str(env.dagster_home)) as instance:
        latest = instance.get_latest_materialization_event(KEY)
        assert latest is not None
        assert latest.run_id == ""  # runless: reported by the command, not a run
        materialization = latest.asset_materialization
        assert materialization is not None
        assert materialization.description.startswith(f"promoted {challenger} by hand")
        meta = {k: v.value for k, v in materialization.metadata.items()}
        assert meta["champion"] == challenger
        assert meta["challenger"] == "none"
        assert "rollback drill" in meta["changed_because"]
        rows = {r.data["version"]: r.data for r in meta["versions"].records}
        assert rows[challenger]["role"] == "champion"
        assert rows[challenger]["verdict"] == "blocked"  # an override: the verdict stays
        assert rows[champion]["role"] == "previous champion"
        assert rows[champion]["verdict"] == "passed"
        assert rows[challenger]["traffic_pct"] is None  # this pipeline does not serve


def test_without_an_instance_the_promotion_stands_with_a_note(
    trained: tuple[Path, str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    home, champion, challenger = trained
    home = _copy(home, tmp_path)
    shutil.rmtree(home / "dagster")

    out = _promote(home, challenger)

    assert f"fraud champion: {champion} -> {challenger}" in out
    assert "note: registry view not recorded: no Dagster instance at" in out
    assert LocalArtifactRegistry(root=str(home / "artifacts")).alias("fraud", "champion") == (
        challenger
    )
    assert not (home / "dagster").exists()  # no instance made up on the way
