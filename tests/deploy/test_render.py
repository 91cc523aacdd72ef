"""``lockgate deploy render``: the code location's files, and deploy/ kept equal to a render."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from lockgate import LabelSource, LightGBMTrainer, ModelPipeline
from lockgate.deploy.cli import deploy_group
from lockgate.deploy.helm import check_values
from lockgate.deploy.render import code_location_module, load_settings, render
from lockgate.deploy.settings import PipelineDeployment, PodResources
from lockgate.errors import SpecError
from tests.deploy.conftest import make_settings

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
RENDERED = (
    "Dockerfile",
    "Dockerfile.dockerignore",
    "values.yaml",
    "dagster-k8s.yaml",
    "serving.yaml",
)


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The example's code location loads with its lockgate home in a temporary folder."""
    monkeypatch.setenv("LOCKGATE_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("LOCKGATE_ENV", raising=False)
    monkeypatch.chdir(ROOT)
    return tmp_path


def test_the_committed_deploy_folder_equals_a_fresh_render(home: Path) -> None:
    out = home / "out"
    result = CliRunner().invoke(
        deploy_group, ["render", "--settings", "deploy/settings.yaml", "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    for name in RENDERED:
        fresh = (out / name).read_text()
        committed = (DEPLOY / name).read_text()
        assert committed == fresh, (
            f"deploy/{name} differs from a fresh render; fix: run `lockgate deploy render "
            "--settings deploy/settings.yaml --out deploy` from the repository root"
        )
    assert sorted(p.name for p in out.iterdir()) == sorted(RENDERED)
    # a parser directive counts only on the first line, before any comment
    assert (out / "Dockerfile").read_text().startswith("# syntax=docker/dockerfile:1\n# Rendered")


def test_the_rendered_values_pass_the_charts_schema(chart_schema: dict[str, Any]) -> None:
    values = yaml.safe_load((DEPLOY / "values.yaml").read_text())
    assert check_values(values, chart_schema) == []


def test_the_rendered_example_is_valid(home: Path) -> None:
    k8s = yaml.safe_load((DEPLOY / "dagster-k8s.yaml").read_text())
    steps = k8s["execution"]["config"]["per_step_k8s_config"]
    assert set(steps) == {"fraud_lgbm__model_weights", "fraud_torch__model_weights"}
    for config in steps.values():
        assert config["container_config"]["resources"]["limits"]["nvidia.com/gpu"] == "1"
    kinds = [d["kind"] for d in yaml.safe_load_all((DEPLOY / "serving.yaml").read_text())]
    assert kinds == [
        "PersistentVolumeClaim",
        "ConfigMap",
        "Deployment",
        "Service",
        "Deployment",
        "Service",
        "Service",
        "PodDisruptionBudget",
        "HorizontalPodAutoscaler",
    ]


def test_render_prints_every_file_without_out(home: Path) -> None:
    result = CliRunner().invoke(deploy_group, ["render", "--settings", "deploy/settings.yaml"])
    assert result.exit_code == 0, result.output
    for name in RENDERED:
        assert f"# ---- {name}\n" in result.output
    assert "kind: HorizontalPodAutoscaler" in result.output


def test_render_names_a_bad_settings_file(home: Path) -> None:
    bad = home / "settings.yaml"
    document = yaml.safe_load((DEPLOY / "settings.yaml").read_text())
    document["training"]["gpus"] = -1
    document["image"] = "fraud"
    bad.write_text(yaml.safe_dump(document))
    result = CliRunner().invoke(deploy_group, ["render", "--settings", str(bad)])
    assert result.exit_code != 0
    assert isinstance(result.exception, SpecError)
    text = str(result.exception)
    assert f"settings file {bad} is invalid" in text
    assert "training.gpus: Value error, gpus=-1 is below 0" in text
    assert "image: Value error, image 'fraud' has no tag or digest" in text


def _spec(name: str, tmp_path: Path, **extra: object) -> ModelPipeline:
    return ModelPipeline(
        name=name,
        feature_service=f"{name}_v1",
        label="y",
        labels=LabelSource(entity_columns=("id",)),
        trainer=LightGBMTrainer(seed=7),
        project_dir=str(tmp_path),
        **extra,  # type: ignore[arg-type]
    )


def test_a_pipelines_deployment_reaches_the_rendered_executor_config(tmp_path: Path) -> None:
    cpu = _spec("churn", tmp_path, deployment=PipelineDeployment(training=PodResources(cpu="8")))
    files = render([cpu, _spec("fraud", tmp_path)], make_settings(), module="team.definitions")
    steps = yaml.safe_load(files["dagster-k8s.yaml"])["execution"]["config"]["per_step_k8s_config"]
    assert (
        "nvidia.com/gpu"
        not in steps["churn__model_weights"]["container_config"]["resources"]["limits"]
    )
    assert (
        steps["fraud__model_weights"]["container_config"]["resources"]["limits"]["nvidia.com/gpu"]
        == "1"
    )
    assert '"--module-name", "team.definitions"' in files["Dockerfile"]


def test_a_pinned_location_name_must_match_the_chart_deployment(tmp_path: Path) -> None:
    with pytest.raises(SpecError) as info:
        render([_spec("fraud", tmp_path)], make_settings(), module="m", location_name="fraud_ml")
    text = str(info.value)
    assert "pins the code location name 'fraud_ml'" in text
    assert "fix: set dagster.code_location: fraud_ml" in text


def test_the_code_location_module_is_found_as_dagster_finds_it(tmp_path: Path) -> None:
    assert code_location_module(cwd=ROOT) == ("pipelines.definitions", "lockgate")
    assert code_location_module(module="x.y", cwd=tmp_path) == ("x.y", None)
    (tmp_path / "workspace.yaml").write_text(
        "load_from:\n  - python_module:\n      module_name: team.defs\n      location_name: team\n"
    )
    assert code_location_module(cwd=tmp_path) == ("team.defs", "team")
    (tmp_path / "workspace.yaml").write_text(
        "load_from:\n  - python_module: a.defs\n  - python_module: b.defs\n"
    )
    with pytest.raises(SpecError, match="loads 2 code location"):
        code_location_module(cwd=tmp_path)
    with pytest.raises(SpecError, match="no code location module found"):
        code_location_module(cwd=tmp_path / "nowhere")


def test_settings_load_from_yaml(tmp_path: Path) -> None:
    settings = load_settings(DEPLOY / "settings.yaml")
    assert settings.image == "registry.example.com/lockgate/fraud:0.1.0"
    with pytest.raises(SpecError, match="cannot be read"):
        load_settings(tmp_path / "missing.yaml")


def test_a_spec_without_deployment_is_unchanged_and_one_with_it_round_trips(tmp_path: Path) -> None:
    plain = _spec("fraud", tmp_path)
    assert plain.deployment is None
    assert ModelPipeline.model_validate(plain.model_dump(mode="json")) == plain
    gpu = PipelineDeployment(training=PodResources(gpus=2, memory="64Gi"))
    spec = _spec("fraud", tmp_path, deployment=gpu)
    again = ModelPipeline.model_validate(spec.model_dump(mode="json"))
    assert again.deployment == gpu


def test_the_example_runs_each_step_as_a_job_when_the_image_names_its_settings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pipelines.definitions import defs

    monkeypatch.setenv("LOCKGATE_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("LOCKGATE_K8S_SETTINGS", raising=False)
    local = defs()
    assert local.executor is None or local.executor.name != "k8s"
    monkeypatch.setenv("LOCKGATE_K8S_SETTINGS", str(DEPLOY / "settings.yaml"))
    on_k8s = defs()
    assert on_k8s.executor is not None
    assert on_k8s.executor.name == "k8s"
