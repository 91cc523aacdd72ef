"""The trainer protocol: shipped trainers (scikit-learn through ONNX, your own torch module),
custom trainers and subclasses of the built-in ones are honoured when they train, load,
reproduce from the lock record's config and serve, or refused at spec time with the fix."""

from __future__ import annotations

import json
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pydantic
import pytest
import torch

from lockgate import (
    CustomTrainer,
    LabelSource,
    LightGBMTrainer,
    ModelPipeline,
    SklearnTrainer,
    TorchModuleTrainer,
    TorchTrainer,
)
from lockgate.errors import SpecError, TrainingError
from lockgate.lineage.steps import train_version
from lockgate.serving.triton_config import python_model_source
from lockgate.training import (
    LightGBMModel,
    TrainedModel,
    Trainer,
    import_object,
    trainer_code_differences,
    trainer_from_config,
)
from tests.trainer_plugins import BiasTrainer, ShallowLightGBMTrainer, WrongKindTrainer

FEATURES = ["num", "count", "city"]
TASK_LABELS = {"binary": "y", "multiclass": "band", "regression": "amount"}
HGB = "sklearn.ensemble:HistGradientBoosting"


def _frame(n: int = 800, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    num = rng.normal(size=n)
    num[rng.random(n) < 0.1] = np.nan
    count = rng.poisson(3.0, size=n)
    city = rng.choice(np.array(["berlin", "paris", "rome"], dtype=object), size=n)
    signal = np.nan_to_num(num) + 0.3 * count + 1.0 * (city == "paris")
    return pd.DataFrame(
        {
            "ts": pd.date_range("2026-01-01", periods=n, freq="h"),
            "num": num,
            "count": count,
            "city": city,
            "y": (signal + rng.normal(0, 0.5, n) > 1.2).astype(np.int64),
            "band": np.where(signal > 1.8, "high", np.where(signal > 0.6, "mid", "low")),
            "amount": 10.0 + 3.0 * signal + rng.normal(0, 0.2, n),
        }
    )


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    return _frame()


def _sklearn(task: str) -> SklearnTrainer:
    kind = "Regressor" if task == "regression" else "Classifier"
    return SklearnTrainer(estimator=f"{HGB}{kind}", params={"max_iter": 15}, seed=3)


def _torch_module(**over: Any) -> TorchModuleTrainer:
    fields: dict[str, Any] = {
        "module": "tests.trainer_plugins:TinyNet",
        "module_kwargs": {"hidden": 6},
        "epochs": 12,
        "batch_size": 64,
        "learning_rate": 0.01,
        "seed": 5,
        **over,
    }
    return TorchModuleTrainer(**fields)


def _trainer(name: str, task: str) -> Trainer:
    return _sklearn(task) if name == "sklearn" else _torch_module()


def _spec(trainer: Any) -> ModelPipeline:
    return ModelPipeline(
        name="churn",
        feature_service="churn_v1",
        label="y",
        labels=LabelSource(entity_columns=("customer_id",)),
        trainer=trainer,
    )


def _refuse_pickle(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("pickle-based loading was used")

    monkeypatch.setattr(pickle, "loads", refuse)
    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(torch, "load", refuse)
    monkeypatch.setattr(torch.jit, "load", refuse)


@pytest.mark.parametrize("task", ["binary", "multiclass", "regression"])
@pytest.mark.parametrize("name", ["sklearn", "torch_module"])
def test_each_new_trainer_trains_every_task_round_trips_and_repeats_bytes(
    frame: pd.DataFrame, name: str, task: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    trainer = _trainer(name, task)
    label = TASK_LABELS[task]
    model = trainer.fit(frame, features=FEATURES, label=label, task=task)
    files = model.files()
    again = trainer.fit(frame, features=FEATURES, label=label, task=task).files()
    assert again == files  # byte-identical, every file
    assert model.kind == trainer.kind
    assert model.task == task
    assert "lockgate_model.json" in files
    assert model.weights_file in files
    _refuse_pickle(monkeypatch)
    loaded = TrainedModel.load(trainer.kind, files)
    assert type(loaded) is type(model)
    predicted = model.predict(frame)
    np.testing.assert_array_equal(loaded.predict(frame), predicted)
    expected_shape = (len(frame), 3) if task == "multiclass" else (len(frame),)
    assert predicted.shape == expected_shape
    if task == "multiclass":
        assert loaded.classes == ("high", "low", "mid")
        np.testing.assert_allclose(predicted.sum(axis=1), 1.0, atol=1e-5)
    elif task == "binary":
        assert predicted.min() > 0.0
        assert predicted.max() < 1.0
        truth = frame["y"].to_numpy()
        assert predicted[truth == 1].mean() > predicted[truth == 0].mean() + 0.1
    else:
        assert np.corrcoef(predicted, frame["amount"])[0, 1] > 0.5


@pytest.mark.parametrize("task", ["binary", "multiclass", "regression"])
def test_sklearn_predictions_are_the_onnx_graph(frame: pd.DataFrame, task: str) -> None:
    import onnxruntime as ort

    model = _sklearn(task).fit(frame, features=FEATURES, label=TASK_LABELS[task], task=task)
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1  # as the model scores it (thread count changes the bits)
    session = ort.InferenceSession(
        model.files()["model.onnx"], options, providers=["CPUExecutionProvider"]
    )
    output = "variable" if task == "regression" else "probabilities"
    (raw,) = session.run([output], {session.get_inputs()[0].name: model.preprocess(frame)})
    graph = np.asarray(raw, dtype=np.float64)
    graph = graph[:, 1] if task == "binary" else graph if task == "multiclass" else graph[:, 0]
    np.testing.assert_array_equal(model.predict(frame), graph)


@pytest.mark.parametrize("task", ["binary", "multiclass", "regression"])
def test_torch_module_is_seeded_leaves_the_global_rng_and_exports_onnx(
    frame: pd.DataFrame, task: str
) -> None:
    import onnxruntime as ort

    torch.manual_seed(123)
    before = torch.random.get_rng_state()
    trainer = _torch_module()
    model = trainer.fit(frame, features=FEATURES, label=TASK_LABELS[task], task=task)
    assert torch.equal(torch.random.get_rng_state(), before)
    other = _torch_module(seed=6).fit(frame, features=FEATURES, label=TASK_LABELS[task], task=task)
    assert other.files()["weights.safetensors"] != model.files()["weights.safetensors"]
    onnx_bytes = model.files()["model.onnx"]
    session = ort.InferenceSession(onnx_bytes, providers=["CPUExecutionProvider"])
    (raw,) = session.run(["output"], {"input": model.preprocess(frame)})
    exported = np.asarray(raw, dtype=np.float64)
    np.testing.assert_allclose(
        exported if task == "multiclass" else exported[:, 0], model.predict(frame), rtol=1e-5,
        atol=1e-5,
    )  # fmt: skip
    assert (
        "model.onnx"
        not in _torch_module(export="none")
        .fit(frame, features=FEATURES, label=TASK_LABELS[task], task=task)
        .files()
    )


@pytest.mark.parametrize(
    "trainer",
    [
        _sklearn("binary"),
        _torch_module(),
        BiasTrainer(prior_rows=10),
        ShallowLightGBMTrainer(seed=2, num_boost_round=40),
    ],
    ids=["sklearn", "torch_module", "custom", "lightgbm_subclass"],
)
def test_a_version_reproduces_from_the_config_its_lock_record_stores(
    frame: pd.DataFrame, trainer: Trainer
) -> None:
    spec = _spec(trainer)
    assert type(spec.trainer) is type(trainer)
    assert spec.trainer == trainer
    args: dict[str, Any] = {
        "pipeline": "churn",
        "snapshot": {"frame_sha256": "f" * 64},
        "frame": frame,
        "features": FEATURES,
        "label": "y",
        "timestamp_column": "ts",
        "holdout_fraction": 0.2,
    }
    lock, files, model = train_version(trainer_config=spec.trainer.config(), **args)
    stored = json.loads(json.dumps(lock["trainer"]))  # as the lock record holds it
    assert import_object(stored["class"]) is type(trainer)  # the recorded path (import_path)
    assert type(trainer).__module__ in stored["code_sha256"]
    assert trainer_code_differences(stored) == []
    rebuilt, rebuilt_files, rebuilt_model = train_version(trainer_config=stored, **args)
    assert rebuilt["version"] == lock["version"]
    assert rebuilt["artifact"]["files"] == lock["artifact"]["files"]
    assert rebuilt_files == files
    assert type(rebuilt_model) is type(model)
    assert trainer_from_config(stored) == trainer


def test_a_lightgbm_subclass_is_honoured_not_replaced_by_the_stock_trainer(
    frame: pd.DataFrame,
) -> None:
    subclass = ShallowLightGBMTrainer(seed=2, num_boost_round=40)
    stock = LightGBMTrainer(seed=2, num_boost_round=40)
    assert "class" not in stock.config()  # built-in configs keep their exact shape
    config = _spec(subclass).trainer.config()
    assert config["class"] == "tests.trainer_plugins:ShallowLightGBMTrainer"
    rebuilt = trainer_from_config(json.loads(json.dumps(config)))
    assert type(rebuilt) is ShallowLightGBMTrainer
    text = rebuilt.fit(frame, features=FEATURES, label="y").files()["model.txt"]
    assert b"Tree=2\n" in text
    assert b"Tree=3\n" not in text
    stock_text = stock.fit(frame, features=FEATURES, label="y").files()["model.txt"]
    assert b"Tree=39\n" in stock_text


def test_classes_that_cannot_be_reimported_are_refused_at_spec_time() -> None:
    class LocalTrainer(LightGBMTrainer):
        pass

    with pytest.raises(pydantic.ValidationError, match=r"function body.*fix: move it into a"):
        _spec(LocalTrainer(seed=1))
    with pytest.raises(pydantic.ValidationError, match="is a str; rule: a Trainer"):
        _spec("lightgbm")


def test_a_subclass_of_a_builtin_model_class_is_refused_when_defined() -> None:
    with pytest.raises(TypeError, match=r"subclasses LightGBMModel.*fix: derive it from Custom"):

        class Calibrated(LightGBMModel):
            pass


def test_custom_trainers_declare_a_kind_of_their_own() -> None:
    with pytest.raises(TypeError, match=r"kind 'lightgbm' of lockgate's"):

        class Fake(CustomTrainer):
            kind: str = "lightgbm"

    with pytest.raises(TypeError, match="kind='Not A Kind'"):

        class Bad(CustomTrainer):
            kind: str = "Not A Kind"

    with pytest.raises(TypeError, match=r"field\(s\) \['libraries'\]|\['code_sha256'\]"):

        class Reserved(CustomTrainer):
            kind: str = "reserved"
            code_sha256: str = ""


def test_a_model_of_another_kind_is_refused_when_fit_returns(frame: pd.DataFrame) -> None:
    with pytest.raises(TrainingError, match=r"kind 'bias' but the trainer's kind is 'wrong'"):
        WrongKindTrainer().fit(frame, features=FEATURES, label="y")


def test_unknown_import_paths_fail_with_the_rule_and_the_fix() -> None:
    with pytest.raises(
        SpecError, match=r"'no_such_pkg.trainers' fails with ModuleNotFoundError.*fix: "
    ):
        trainer_from_config({"kind": "bias", "class": "no_such_pkg.trainers:Bias"})
    with pytest.raises(SpecError, match=r"has no 'Missing'"):
        trainer_from_config({"kind": "bias", "class": "tests.trainer_plugins:Missing"})
    with pytest.raises(SpecError, match="not a Trainer subclass"):
        trainer_from_config({"kind": "bias", "class": "json:dumps"})
    with pytest.raises(SpecError, match="kind 'bias' but the config says 'other'"):
        trainer_from_config({"kind": "other", "class": "tests.trainer_plugins:BiasTrainer"})
    with pytest.raises(SpecError, match="is not an import path"):
        trainer_from_config({"kind": "bias", "class": "tests/trainer_plugins.py"})
    with pytest.raises(pydantic.ValidationError, match="has no 'NoSuchClassifier'"):
        SklearnTrainer(estimator="sklearn.ensemble:NoSuchClassifier")
    with pytest.raises(pydantic.ValidationError, match="not parameters of"):
        SklearnTrainer(estimator=f"{HGB}Classifier", params={"max_depth_typo": 3})
    with pytest.raises(pydantic.ValidationError, match=r"random_state.*`seed` field"):
        SklearnTrainer(estimator=f"{HGB}Classifier", params={"random_state": 3})
    with pytest.raises(pydantic.ValidationError, match=r"not a torch\.nn\.Module subclass"):
        TorchModuleTrainer(module="tests.trainer_plugins:BiasTrainer")


def test_an_estimator_must_fit_the_task(frame: pd.DataFrame) -> None:
    with pytest.raises(SpecError, match=r"is a classifier but the pipeline's task is 'regre"):
        _sklearn("binary").fit(frame, features=FEATURES, label="amount", task="regression")


def test_a_changed_trainer_module_is_named(frame: pd.DataFrame) -> None:
    config = BiasTrainer().config()
    assert trainer_code_differences(config) == []
    changed = {**config, "code_sha256": {"tests.trainer_plugins": "0" * 64}}
    (line,) = trainer_code_differences(changed)
    assert "'tests.trainer_plugins' sha256 000000000000 locked" in line
    assert trainer_from_config(changed) == BiasTrainer()  # the rebuild still runs
    libraries = _sklearn("binary").config()["libraries"]
    assert set(libraries) == {"scikit-learn", "skl2onnx", "onnx", "onnxruntime"}
    old = {**_sklearn("binary").config(), "libraries": {**libraries, "skl2onnx": "0.1"}}
    assert any("skl2onnx 0.1 locked" in d for d in trainer_code_differences(old))


def test_specs_take_configs_and_dump_them_with_their_identity() -> None:
    spec = _spec({"kind": "sklearn", "estimator": f"{HGB}Classifier", "seed": 4})
    assert isinstance(spec.trainer, SklearnTrainer)
    assert spec.trainer.seed == 4
    again = ModelPipeline(**spec.model_dump())
    assert again.trainer == spec.trainer
    custom = ModelPipeline(**_spec(BiasTrainer(prior_rows=2)).model_dump())
    assert custom.trainer == BiasTrainer(prior_rows=2)
    assert _spec(TorchTrainer(seed=1)).model_dump()["trainer"] == TorchTrainer(seed=1).config()


def test_builtin_kinds_keep_their_model_source_and_custom_kinds_are_added() -> None:
    shared = python_model_source()
    assert python_model_source("lightgbm") == shared == python_model_source("torch")
    assert "MODEL_KINDS = ('lightgbm', 'torch')\n" in shared
    assert "MODEL_KINDS = ('lightgbm', 'torch', 'sklearn')\n" in python_model_source("sklearn")
    with pytest.raises(SpecError, match="unknown"):
        python_model_source("Not-A-Kind")


def test_loading_imports_only_a_custom_model_class(frame: pd.DataFrame) -> None:
    files = BiasTrainer().fit(frame, features=FEATURES, label="y").files()
    manifest = json.loads(files["lockgate_model.json"])
    assert manifest == {
        "format": "lockgate.model/1",
        "kind": "bias",
        "model": "tests.trainer_plugins:BiasModel",
    }
    assert TrainedModel.load("bias", files).predict(frame).shape == (len(frame),)
    evil = {**files, "lockgate_model.json": json.dumps({**manifest, "model": "os:system"}).encode()}
    with pytest.raises(SpecError, match="not a CustomModel subclass"):
        TrainedModel.load("bias", evil)
    with pytest.raises(SpecError, match="unknown"):
        TrainedModel.load("bias", {k: v for k, v in files.items() if k != "lockgate_model.json"})


def test_the_readme_custom_trainer_example_trains_loads_and_passes_the_spec(
    frame: pd.DataFrame, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import importlib
    import sys

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    section = readme.split("## Bring your own trainer\n", 1)[1].split("\n## ", 1)[0]
    block = section.split("# my_pkg/trainers.py\n", 1)[1].split("```", 1)[0]
    (tmp_path / "readme_example.py").write_text(block)
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        module = importlib.import_module("readme_example")
        trainer = _spec(module.BiasTrainer(seed=1)).trainer
        model = trainer.fit(frame, features=FEATURES, label="y")
        assert model.kind == "bias"
        files = model.files()
        assert set(files) == {"bias.json", "preprocessing.json", "lockgate_model.json"}
        loaded = TrainedModel.load("bias", files)
        np.testing.assert_allclose(loaded.predict(frame), frame["y"].mean())
    finally:
        sys.modules.pop("readme_example", None)
