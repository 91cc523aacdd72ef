"""A team's own project, outside this repository: `lockgate init`, its own Feast repo and data.

Nothing of the fraud example is used: the project is scaffolded by the CLI into a temporary
folder, its Feast repository is applied by Feast's own CLI, and another team's objects share the
registry file. The pipeline trains through a real Dagster run; its lock record names the
project's git commit, a commit to the project's code changes the triad, and ``reproduce`` says so.
"""

from __future__ import annotations

import importlib
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dagster as dg
import pytest

from lockgate import Environment, build_definitions
from lockgate.errors import FeatureStoreError, SpecError
from lockgate.features.store import FeastStore
from lockgate.lineage.registry import LocalArtifactRegistry
from lockgate.lineage.reproduce import reproduce

BIN = Path(sys.executable).parent
GIT = [
    "git",
    "-c",
    "user.name=t",
    "-c",
    "user.email=t@example.invalid",
    "-c",
    "commit.gpgsign=false",
]


def _run(args: list[str], cwd: Path) -> str:
    done = subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"{args}: {done.stdout}\n{done.stderr}"
    return done.stdout


def _other_team(registry: Path) -> FeastStore:
    """Another team's Feast objects, in their own project of the same registry file."""
    from feast import Entity, FeatureService, FeatureView, Field, FileSource, ValueType
    from feast.types import Int64

    repo = registry.parent / "other_team"
    repo.mkdir()
    (repo / "feature_store.yaml").write_text(
        f"project: inventory\nprovider: local\nregistry:\n  path: {registry}\n"
        "  cache_ttl_seconds: 0\nonline_store:\n  type: sqlite\n  path: online.db\n"
        "offline_store:\n  type: duckdb\nentity_key_serialization_version: 3\n"
    )
    store = FeastStore(repo_dir=str(repo))
    item = Entity(name="item", join_keys=["item_id"], value_type=ValueType.INT64)
    view = FeatureView(
        name="stock",
        entities=[item],
        schema=[Field(name="on_hand", dtype=Int64)],
        source=FileSource(name="stock_src", path="stock.parquet", timestamp_field="ts"),
    )
    store.store().apply([item, view, FeatureService(name="inventory_v1", features=[view])])
    return store


@pytest.fixture
def project(tmp_path: Path) -> Iterator[Path]:
    """`lockgate init` -> data -> `feast apply` -> git commit, outside this repository."""
    root = tmp_path / "work" / "churn"
    out = _run([str(BIN / "lockgate"), "init", str(root)], tmp_path)
    assert "created lockgate project" in out
    _run([sys.executable, "-m", "churn.generate_data"], root)
    _run([str(BIN / "feast"), "apply"], root / "feature_repo")
    _run([*GIT, "init", "-q"], root)
    _run([*GIT, "add", "-A"], root)
    _run([*GIT, "commit", "-q", "-m", "churn project"], root)
    sys.path.insert(0, str(root))
    try:
        yield root
    finally:
        sys.path.remove(str(root))
        for name in [m for m in sys.modules if m == "churn" or m.startswith("churn.")]:
            del sys.modules[name]


def _spec(root: Path) -> Any:
    module = importlib.import_module("churn.pipelines")
    importlib.reload(module)
    # served models are covered elsewhere; this test is about the project, Feast and the triad
    return module.churn.model_copy(update={"serving": None})


def _train(spec: Any, env: Environment, instance: dg.DagsterInstance) -> dict[str, Any]:
    job = build_definitions([spec], environment=env).resolve_job_def(spec.train_job_name)
    result = job.execute_in_process(instance=instance, raise_on_error=False)
    assert result.success, [e.message for e in result.all_events if e.is_failure]
    registry = LocalArtifactRegistry(root=str(env.artifacts_dir))
    version = registry.alias(spec.name, "champion")
    return registry.lock_record(spec.name, version)


def test_project_trains_from_its_own_feast_repo_and_locks_its_own_commit(
    project: Path, tmp_path: Path
) -> None:
    spec = _spec(project)
    assert spec.project_dir == str(project)  # found from the module that built the spec
    assert spec.feature_repo_path == project / "feature_repo"
    feast = FeastStore(repo_dir=str(project / "feature_repo"))
    other = _other_team(feast.registry_path)
    other_before = other.fingerprints("inventory_v1")
    ours_before = feast.fingerprints("churn_v1")
    env = Environment.local(tmp_path / "home")
    head = _run(["git", "rev-parse", "HEAD"], project).strip()

    with dg.instance_for_test() as instance:
        lock = _train(spec, env, instance)
        assert lock["code"]["commit"] == head
        assert lock["code"]["dirty"] is False
        assert lock["code"]["project_dir"] == str(project)
        assert lock["triad"]["code_commit"] == head
        assert lock["lockgate"]["version"] == "0.1.0"
        assert lock["data"]["feature_service"] == "churn_v1"
        # the Feast sources were resolved against the repo, as Feast resolves them
        sources = lock["data"]["feast"]["sources"]
        assert sources["customer_activity"]["files"] == 1

        # Neither our objects nor the other team's changed: lockgate never applied anything.
        assert other.fingerprints("inventory_v1") == other_before
        assert feast.fingerprints("churn_v1")["registry"] == ours_before["registry"]
        assert other.feature_service_names() == ["inventory_v1"]

        # A commit to the pipeline's code changes the triad, and reproduce names the change.
        pipelines = project / "churn" / "pipelines.py"
        pipelines.write_text(pipelines.read_text() + "\n# tuned later\n")
        _run([*GIT, "commit", "-q", "-am", "comment"], project)
        new_head = _run(["git", "rev-parse", "HEAD"], project).strip()
        relock = _train(_spec(project), env, instance)
        assert relock["code"]["commit"] == new_head != head
        assert relock["version"] != lock["version"]
        assert relock["triad"]["weights_sha256"] == lock["triad"]["weights_sha256"]

    registry = LocalArtifactRegistry(root=str(env.artifacts_dir))
    report = reproduce(registry, "churn", lock["version"])
    assert report.verified  # same data and params: still bit-identical
    assert any(
        d.startswith(f"project code commit {head[:12]} locked, {new_head[:12]} now")
        for d in report.differences
    ), report.differences


def test_a_missing_feature_repo_is_refused_at_spec_time(project: Path) -> None:
    spec = _spec(project)
    with pytest.raises(ValueError, match=r"holds no feature_store\.yaml") as info:
        type(spec)(**{**spec.model_dump(), "feature_repo": "features"})
    assert "Fix:" in str(info.value)


def test_lockgate_never_applies_to_a_feast_repo(project: Path) -> None:
    store = FeastStore(repo_dir=str(project / "feature_repo"))
    with pytest.raises(FeatureStoreError, match="never applies to it"):
        store.apply()


def test_cli_finds_the_projects_pipelines_as_dagster_does(project: Path) -> None:
    lockgate = str(BIN / "lockgate")
    listed = _run([lockgate, "pipelines"], project)  # [tool.dagster] of its pyproject.toml
    assert "module churn.definitions:" in listed
    assert "churn  task=binary  trainer=lightgbm  feature_service=churn_v1" in listed
    assert f"feature_repo={project / 'feature_repo'}" in listed
    by_workspace = _run(
        [lockgate, "pipelines", "-w", str(project / "workspace.yaml")], project.parent
    )
    assert "churn  task=binary" in by_workspace
    applied = _run([lockgate, "apply"], project)
    assert "is a Feast repository: run `feast apply` there" in applied
    drift = subprocess.run(
        [lockgate, "drift", "churn"], cwd=project, capture_output=True, text=True, timeout=300
    )
    assert drift.returncode == 2
    assert "pipeline 'churn' has no drift policy" in drift.stderr
    unknown = subprocess.run(
        [lockgate, "drift", "nope"], cwd=project, capture_output=True, text=True, timeout=300
    )
    assert unknown.returncode == 2
    assert "known pipelines: ['churn']" in unknown.stderr
    nowhere = subprocess.run(
        [lockgate, "pipelines"], cwd=project.parent, capture_output=True, text=True, timeout=300
    )
    assert nowhere.returncode == 2
    assert "no code location found" in nowhere.stderr


def test_init_refuses_a_folder_with_files(tmp_path: Path) -> None:
    from lockgate.scaffold import init_project

    (tmp_path / "keep.txt").write_text("mine")
    with pytest.raises(SpecError, match="is not empty"):
        init_project(tmp_path, name="churn")
    assert (tmp_path / "keep.txt").read_text() == "mine"
    with pytest.raises(SpecError, match="not usable"):
        init_project(tmp_path / "new", name="Class")


def _labels(project: Path) -> None:
    """Regression and multiclass labels over the same customers, as a team would add them."""
    import numpy as np
    import pandas as pd

    features = pd.read_parquet(project / "feature_repo" / "data" / "customer_activity.parquet")
    rng = np.random.default_rng(3)
    rows = features[features["event_timestamp"] > features["event_timestamp"].min()]
    rows = rows.sample(n=6000, random_state=3).reset_index(drop=True)
    keys = pd.DataFrame(
        {
            "customer_id": rows["customer_id"],
            "event_timestamp": rows["event_timestamp"] + pd.Timedelta(hours=6),
        }
    )
    spend = 20 + 1.5 * rows["monthly_spend"] + 4 * rows["support_calls_30d"]
    keys.assign(spend_next=spend + rng.normal(0, 5, len(rows))).to_parquet(
        project / "data" / "spend.parquet"
    )
    score = rows["support_calls_30d"] - rows["tenure_months"] / 12 + rng.normal(0, 0.7, len(rows))
    segment = np.where(score > 1.5, "at_risk", np.where(score > -2.0, "steady", "loyal"))
    keys.assign(segment=segment).to_parquet(project / "data" / "segment.parquet")


@pytest.mark.parametrize(
    ("task", "label", "weak"),
    [
        ("regression", "spend_next", ("monthly_spend", "support_calls_30d")),
        ("multiclass", "segment", ("support_calls_30d", "tenure_months")),
    ],
)
def test_each_task_trains_is_gated_and_reproduces(
    project: Path, tmp_path: Path, task: str, label: str, weak: tuple[str, ...]
) -> None:
    from lockgate import Gate, GoldSet, LabelSource, LightGBMTrainer, ModelPipeline

    _labels(project)
    spec = ModelPipeline(
        name=f"churn_{task}",
        feature_repo="feature_repo",
        feature_service="churn_v1",
        label=label,
        task=task,  # type: ignore[arg-type]
        labels=LabelSource(
            path=f"data/{label.split('_')[0]}.parquet", entity_columns=("customer_id",)
        ),
        trainer=LightGBMTrainer(seed=3, num_boost_round=40),
        gate=Gate(gold=GoldSet(key="customer_id", fraction=0.25), min_gold_rows=200),
        project_dir=str(project),
    )
    assert spec.gate is not None
    assert spec.gate.primary == ("rmse" if task == "regression" else "log_loss")
    env = Environment.local(tmp_path / "home")
    registry = LocalArtifactRegistry(root=str(env.artifacts_dir))
    with dg.instance_for_test() as instance:
        lock = _train(spec, env, instance)  # the first model: champion on the absolute rules
        assert lock["task"] == task
        weaker = spec.model_copy(update={"exclude_features": weak})
        job = build_definitions([weaker], environment=env).resolve_job_def(spec.train_job_name)
        result = job.execute_in_process(instance=instance, raise_on_error=False)
        assert not result.success  # a worse challenger is blocked by the gate
        failed = {
            e.asset_check_evaluation_data.check_name
            for e in result.all_events
            if e.event_type_value == "ASSET_CHECK_EVALUATION"
            and not e.asset_check_evaluation_data.passed
        }
        assert "gate_vs_champion" in failed
    assert registry.alias(spec.name, "champion") == lock["version"]
    report = reproduce(registry, spec.name, lock["version"])
    assert report.verified, report.render()


def test_a_label_that_does_not_fit_the_task_fails_at_snapshot(
    project: Path, tmp_path: Path
) -> None:
    from lockgate import LabelSource, LightGBMTrainer, ModelPipeline

    _labels(project)
    spec = ModelPipeline(
        name="churn_wrong",
        feature_repo="feature_repo",
        feature_service="churn_v1",
        label="spend_next",  # continuous, declared binary
        labels=LabelSource(path="data/spend.parquet", entity_columns=("customer_id",)),
        trainer=LightGBMTrainer(seed=3),
        project_dir=str(project),
    )
    env = Environment.local(tmp_path / "home")
    with dg.instance_for_test() as instance:
        job = build_definitions([spec], environment=env).resolve_job_def(spec.train_job_name)
        result = job.execute_in_process(instance=instance, raise_on_error=False)
    assert not result.success
    (failure,) = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    assert failure.step_key == "churn_wrong__feature_snapshot"
    message = failure.step_failure_data.error.to_string()
    assert "task='regression'" in message
    assert not (env.artifacts_dir / "snapshots").exists() or not any(
        (env.artifacts_dir / "snapshots").iterdir()
    )


def test_labels_from_the_teams_own_asset_start_the_lineage_graph(
    project: Path, tmp_path: Path
) -> None:
    import pandas as pd

    from lockgate import LabelSource

    @dg.asset(key=["crm", "churn_labels"], io_manager_key="lockgate_frames")
    def churn_labels():  # type: ignore[no-untyped-def]  (a local pd: Dagster reads annotations)
        """The team's own label query."""
        return pd.read_parquet(project / "data" / "labels.parquet")

    spec = _spec(project).model_copy(
        update={
            "labels": LabelSource(asset="crm/churn_labels", entity_columns=("customer_id",)),
            "gate": None,
        }
    )
    env = Environment.local(tmp_path / "home")
    defs = dg.Definitions.merge(
        build_definitions([spec], environment=env), dg.Definitions(assets=[churn_labels])
    )
    snapshot_key = spec.asset_key("feature_snapshot")
    graph = defs.resolve_asset_graph()
    assert graph.get(snapshot_key).parent_keys == {dg.AssetKey(["crm", "churn_labels"])}
    job = defs.resolve_job_def(spec.train_job_name)
    with dg.instance_for_test() as instance:
        result = job.execute_in_process(instance=instance, raise_on_error=False)
        assert result.success, [e.message for e in result.all_events if e.is_failure]
        materialized = {
            e.asset_key for e in result.all_events if e.event_type_value == "ASSET_MATERIALIZATION"
        }
        assert dg.AssetKey(["crm", "churn_labels"]) in materialized  # the job starts at it
        snapshot = instance.get_latest_materialization_event(snapshot_key)
        assert snapshot is not None
        assert snapshot.asset_materialization is not None
        source = snapshot.asset_materialization.metadata["labels_source"].value
    frame = pd.read_parquet(project / "data" / "labels.parquet")
    assert source["asset"] == "crm/churn_labels"
    assert source["rows"] == len(frame)

    wrong = spec.model_copy(
        update={"labels": LabelSource(asset="crm/churn_labels", entity_columns=("account_id",))}
    )
    defs = dg.Definitions.merge(
        build_definitions([wrong], environment=env), dg.Definitions(assets=[churn_labels])
    )
    with dg.instance_for_test() as instance:
        result = defs.resolve_job_def(spec.train_job_name).execute_in_process(
            instance=instance, raise_on_error=False
        )
    assert not result.success
    (failure,) = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    message = failure.step_failure_data.error.to_string()
    assert (
        "label asset 'crm/churn_labels' of pipeline 'churn' lacks column(s) ['account_id']"
        in message
    )


def test_the_scaffolded_project_is_served_and_answers_named_features(
    project: Path, tmp_path: Path
) -> None:
    """The scaffold as written (gate, CPU serving): trained, validated in a sandbox Triton,
    served as champion, and called the way the README shows, with the features by name."""
    import numpy as np
    import pandas as pd
    import tritonclient.http as http
    import tritonclient.utils as tu

    from lockgate.lineage.steps import load_trained_model

    module = importlib.import_module("churn.pipelines")
    importlib.reload(module)
    spec = module.churn
    assert spec.serving is not None
    env = Environment.local(tmp_path / "home")
    stack = env.resources()["serving_stack"]
    try:
        with dg.instance_for_test() as instance:
            lock = _train(spec, env, instance)
        features = pd.read_parquet(project / "feature_repo" / "data" / "customer_activity.parquet")
        rows = features.sample(n=32, random_state=5).reset_index(drop=True)
        rows = rows[["tenure_months", "monthly_spend", "support_calls_30d", "plan"]]
        columns = {c: rows[c].to_numpy() for c in rows.columns}
        columns["plan"] = rows["plan"].to_numpy(dtype=object)
        client = http.InferenceServerClient(stack.gateway().host_port)
        inputs = []
        for name, values in columns.items():
            item = http.InferInput(name, [len(values)], tu.np_to_triton_dtype(values.dtype))
            item.set_data_from_numpy(values)
            inputs.append(item)
        scores = client.infer("churn", inputs).as_numpy("OUTPUT__0")
        client.close()
        registry = LocalArtifactRegistry(root=str(env.artifacts_dir))
        expected = load_trained_model(registry, "churn", lock["version"]).predict(rows)
        assert scores.shape == (32, 1)
        np.testing.assert_allclose(scores[:, 0], expected.astype(np.float32), rtol=0, atol=1e-6)
    finally:
        stack.stop()


def test_a_scikit_learn_trainer_in_the_teams_project_trains_and_reproduces(
    project: Path, tmp_path: Path
) -> None:
    from lockgate import SklearnTrainer

    spec = _spec(project).model_copy(
        update={
            "name": "churn_sklearn",
            "trainer": SklearnTrainer(
                estimator="sklearn.ensemble:HistGradientBoostingClassifier",
                params={"max_iter": 40},
                seed=3,
            ),
        }
    )
    env = Environment.local(tmp_path / "home")
    with dg.instance_for_test() as instance:
        lock = _train(spec, env, instance)  # the first model passes the gate and is champion
    assert lock["trainer"]["class"] == "lockgate.training:SklearnTrainer"
    assert "model.onnx" in lock["artifact"]["files"]
    registry = LocalArtifactRegistry(root=str(env.artifacts_dir))
    report = reproduce(registry, spec.name, lock["version"])
    assert report.verified, report.render()
