"""Tests of lockgate.training: learning, bit-identical determinism, safe files, errors."""

from __future__ import annotations

import hashlib
import io
import json
import os
import pickle
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError

from lockgate.errors import (
    ArtifactIntegrityError,
    DataError,
    EmptyDataError,
    SchemaError,
    SpecError,
    TrainingError,
)
from lockgate.tasks.metrics import roc_auc
from lockgate.training import (
    DEFAULT_LIGHTGBM_PARAMS,
    MAX_CLASSES,
    LightGBMModel,
    LightGBMTrainer,
    ModelOutput,
    TorchModel,
    TorchTrainer,
    TrainedModel,
    Trainer,
    check_labels,
    model_output,
    trainer_from_config,
)

ROOT = Path(__file__).resolve().parents[2]

# Builds the synthetic frame; shared verbatim with the subprocesses of the determinism test.
FRAME_CODE = textwrap.dedent(
    """
    import numpy as np
    import pandas as pd

    def make_frame(n=3000, seed=0):
        rng = np.random.default_rng(seed)
        num = rng.normal(size=n)
        num_nan = num.copy()
        num_nan[rng.random(n) < 0.15] = np.nan
        count = rng.poisson(3.0, size=n)
        flag = rng.random(n) < 0.3
        city = rng.choice(np.array(["berlin", "paris", "rome", "oslo"], dtype=object), size=n)
        city[rng.random(n) < 0.05] = None
        tier = pd.Categorical(rng.choice(["gold", "silver", "bronze"], size=n))
        noise = rng.normal(size=n)
        logit = (
            1.6 * np.nan_to_num(num_nan)
            + 0.4 * count
            + 1.0 * flag
            + 1.5 * (city == "paris")
            - 1.0 * (np.asarray(tier) == "bronze")
            - 2.5
        )
        y = (rng.random(n) < 1.0 / (1.0 + np.exp(-logit))).astype(np.int64)
        return pd.DataFrame(
            {
                "num_nan": num_nan,
                "count": count,
                "flag": flag,
                "city": city,
                "tier": tier,
                "noise": noise,
                "empty": np.full(n, np.nan),
                "label": y,
            }
        )
    """
)
_namespace: dict[str, Any] = {}
exec(FRAME_CODE, _namespace)
make_frame = _namespace["make_frame"]

FEATURES = ["num_nan", "count", "flag", "city", "tier", "noise", "empty"]
FAST_TRAINERS: dict[str, Trainer] = {
    "lightgbm": LightGBMTrainer(num_boost_round=60),
    "torch": TorchTrainer(epochs=4, batch_size=256, learning_rate=3e-3),
}
KINDS = sorted(FAST_TRAINERS)


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    return make_frame()


@pytest.fixture(scope="module")
def split(frame: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    return frame.iloc[:2200].reset_index(drop=True), frame.iloc[2200:].reset_index(drop=True)


@pytest.fixture(scope="module")
def models(split: tuple[pd.DataFrame, pd.DataFrame]) -> dict[str, TrainedModel]:
    train, _ = split
    return {
        kind: trainer.fit(train, features=FEATURES, label="label")
        for kind, trainer in FAST_TRAINERS.items()
    }


@pytest.fixture(scope="module")
def train_rows(split: tuple[pd.DataFrame, pd.DataFrame]) -> pd.DataFrame:
    return split[0]


@pytest.fixture(scope="module")
def held_out(split: tuple[pd.DataFrame, pd.DataFrame]) -> pd.DataFrame:
    return split[1]


@pytest.fixture(params=KINDS)
def kind(request: pytest.FixtureRequest) -> str:
    """Each fast trainer's kind: a test that takes it (or ``trainer``, ``model``) runs per kind."""
    return str(request.param)


@pytest.fixture
def trainer(kind: str) -> Trainer:
    return FAST_TRAINERS[kind]


@pytest.fixture
def model(kind: str, models: dict[str, TrainedModel]) -> TrainedModel:
    return models[kind]


@pytest.fixture(scope="module")
def task_held_out(task_split: tuple[pd.DataFrame, pd.DataFrame]) -> pd.DataFrame:
    return task_split[1]


def _digests(files: dict[str, bytes]) -> dict[str, str]:
    return {name: hashlib.sha256(data).hexdigest() for name, data in files.items()}


# ---------------------------------------------------------------------------------- learning


def test_learns_signal_on_held_out_rows(
    kind: str, model: TrainedModel, held_out: pd.DataFrame
) -> None:
    p = model.predict_proba(held_out)
    assert p.dtype == np.float64
    assert p.shape == (len(held_out),)
    assert np.all((p >= 0) & (p <= 1))
    assert roc_auc(held_out["label"], p) > 0.8
    assert model.kind == kind
    assert model.features == tuple(FEATURES)


def test_preprocess_is_float32_and_imputes(
    kind: str, model: TrainedModel, held_out: pd.DataFrame
) -> None:
    x = model.preprocess(held_out)
    assert x.dtype == np.float32
    assert x.flags.c_contiguous
    assert np.isfinite(x).all()
    spec = model.preprocessing
    assert x.shape == (len(held_out), spec["input_dim"])
    columns = {c["name"]: c for c in spec["features"]}
    assert columns["empty"]["all_missing"] is True
    assert columns["empty"]["fill_value"] == 0.0
    assert columns["flag"]["type"] == "numeric"
    assert columns["count"]["type"] == "numeric"
    assert columns["city"]["vocabulary"] == ["berlin", "oslo", "paris", "rome"]
    assert columns["city"]["unknown_code"] == 4
    assert columns["tier"]["vocabulary"] == ["bronze", "gold", "silver"]
    if kind == "torch":
        assert spec["categorical_encoding"] == "one_hot"
        assert spec["input_dim"] == 5 + 5 + 4  # 5 numeric, city 4+1, tier 3+1
        assert "city=<unknown>" in spec["output_columns"]
    else:
        assert spec["categorical_encoding"] == "codes"
        assert spec["input_dim"] == len(FEATURES)


def test_torch_standardises_numeric_columns(train_rows: pd.DataFrame) -> None:
    model = TorchTrainer(epochs=1).fit(train_rows, features=["noise", "count"], label="label")
    x = model.preprocess(train_rows).astype(np.float64)
    assert np.abs(x.mean(axis=0)).max() < 1e-6
    assert np.abs(x.std(axis=0) - 1.0).max() < 1e-5


# ------------------------------------------------------------------------------- determinism


def test_fit_twice_gives_identical_bytes(
    trainer: Trainer, model: TrainedModel, train_rows: pd.DataFrame
) -> None:
    again = trainer.fit(train_rows, features=FEATURES, label="label")
    assert again.files() == model.files()
    assert again.weights_sha256 == model.weights_sha256


def test_seed_changes_the_weights(trainer: Trainer, train_rows: pd.DataFrame) -> None:
    a = trainer.fit(train_rows, features=FEATURES, label="label")
    b = trainer.model_copy(update={"seed": 1}).fit(train_rows, features=FEATURES, label="label")
    assert a.weights_sha256 != b.weights_sha256


def test_identical_bytes_across_processes(models: dict[str, TrainedModel]) -> None:
    script = FRAME_CODE + textwrap.dedent(
        """
        import hashlib, json, sys
        from lockgate.training import trainer_from_config

        configs = json.loads(sys.argv[1])
        frame = make_frame().iloc[:2200].reset_index(drop=True)
        out = {}
        for kind, cfg in configs.items():
            model = trainer_from_config(cfg).fit(frame, features=json.loads(sys.argv[2]), label="label")
            out[kind] = {n: hashlib.sha256(b).hexdigest() for n, b in model.files().items()}
        print(json.dumps(out))
        """
    )
    configs = json.dumps({kind: trainer.config() for kind, trainer in FAST_TRAINERS.items()})
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", script, configs, json.dumps(FEATURES)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
            text=True,
        )
        for _ in range(2)
    ]
    results = []
    for proc in procs:
        stdout, stderr = proc.communicate(timeout=300)
        assert proc.returncode == 0, stderr
        results.append(json.loads(stdout.strip().splitlines()[-1]))
    assert results[0] == results[1]
    assert results[0] == {kind: _digests(model.files()) for kind, model in models.items()}


def test_torch_fit_restores_global_state(train_rows: pd.DataFrame) -> None:
    import torch

    threads = torch.get_num_threads()
    deterministic = torch.are_deterministic_algorithms_enabled()
    torch.manual_seed(1234)
    expected_next = torch.rand(3)
    torch.manual_seed(1234)
    TorchTrainer(epochs=1, num_threads=1).fit(train_rows, features=FEATURES, label="label")
    assert torch.equal(torch.rand(3), expected_next)  # the global RNG was not consumed
    assert torch.get_num_threads() == threads
    assert torch.are_deterministic_algorithms_enabled() == deterministic


# ------------------------------------------------------------------------------ safe files


def test_load_round_trip_predicts_identically(
    kind: str, model: TrainedModel, held_out: pd.DataFrame
) -> None:
    files = model.files()
    expected_names = {
        "lightgbm": {"model.txt", "preprocessing.json"},
        "torch": {
            "weights.safetensors",
            "model.torchscript.pt",
            "preprocessing.json",
            "architecture.json",
        },
    }[kind]
    assert set(files) == expected_names
    assert model.weights_file in files
    assert model.weights_sha256 == hashlib.sha256(files[model.weights_file]).hexdigest()
    loaded = TrainedModel.load(kind, {**files, "README.txt": b"ignored"})
    assert type(loaded) is type(model)
    assert np.array_equal(loaded.predict_proba(held_out), model.predict_proba(held_out))
    assert loaded.files() == files
    for name in ("preprocessing.json", "architecture.json"):
        if name in files:
            text = files[name].decode("ascii")
            assert json.loads(text) == json.loads(text)  # valid JSON
            assert text == json.dumps(json.loads(text), sort_keys=True, indent=2) + "\n"


def test_load_uses_no_pickle(
    models: dict[str, TrainedModel],
    held_out: pd.DataFrame,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import torch

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("pickle-based loading was used")

    monkeypatch.setattr(torch, "load", refuse)
    monkeypatch.setattr(torch.jit, "load", refuse)
    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(pickle, "loads", refuse)
    for kind, model in models.items():
        loaded = TrainedModel.load(kind, model.files())
        assert np.array_equal(loaded.predict_proba(held_out), model.predict_proba(held_out))


def test_safetensors_header_is_fixed(models: dict[str, TrainedModel]) -> None:
    data = models["torch"].files()["weights.safetensors"]
    header_len = int.from_bytes(data[:8], "little")
    header = json.loads(data[8 : 8 + header_len])
    assert header["__metadata__"] == {"format": "pt"}
    assert {k for k in header if k != "__metadata__"} == {
        "0.weight",
        "0.bias",
        "2.weight",
        "2.bias",
        "4.weight",
        "4.bias",
    }
    assert header["0.weight"]["dtype"] == "F32"


def test_lightgbm_model_is_text(models: dict[str, TrainedModel]) -> None:
    text = models["lightgbm"].files()["model.txt"].decode("utf-8")
    assert text.startswith("tree\n")
    assert "[deterministic: 1]" in text
    assert "[force_row_wise: 1]" in text
    assert "[seed: 0]" in text
    assert "categorical_feature: 3,4" in text.replace("[", "").replace("]", "")


def test_torchscript_scores_preprocessed_matrix(
    models: dict[str, TrainedModel], held_out: pd.DataFrame
) -> None:
    import torch

    model = models["torch"]
    assert isinstance(model, TorchModel)
    data = model.files()["model.torchscript.pt"]
    assert b".debug_pkl" not in data
    assert str(ROOT).encode() not in data
    assert b"site-packages" not in data
    with pytest.warns(
        DeprecationWarning, match="deprecated"
    ):  # torch.jit.load is deprecated in torch 2.13
        scripted = torch.jit.load(io.BytesIO(data))
    with torch.inference_mode():
        out = scripted(torch.from_numpy(model.preprocess(held_out)))
    assert out.dtype == torch.float32
    assert tuple(out.shape) == (len(held_out), 1)
    assert np.array_equal(out.numpy().reshape(-1).astype(np.float64), model.predict_proba(held_out))
    arch = model.architecture
    assert arch["torchscript"]["input"]["shape"] == [-1, model.preprocessing["input_dim"]]


def test_torchscript_regenerated_when_absent(
    models: dict[str, TrainedModel], frame: pd.DataFrame
) -> None:
    files = models["torch"].files()
    # Compile other TorchScript types first: nn.Sequential/nn.Linear exports would now get
    # mangled type names (___torch_mangle_N) and different bytes; lockgate's must not.
    import torch

    with pytest.warns(DeprecationWarning, match="deprecated"):
        torch.jit.script(torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.ReLU()))
    other = TorchTrainer(hidden_sizes=(5, 4, 3), epochs=1).fit(
        frame.iloc[:300], features=["noise"], label="label"
    )
    assert other.files()["model.torchscript.pt"] != files["model.torchscript.pt"]
    partial = {k: v for k, v in files.items() if k != "model.torchscript.pt"}
    assert TrainedModel.load("torch", partial).files() == files


# ------------------------------------------------------------------------------ categories


def test_unseen_and_missing_categories_map_to_unknown(
    kind: str, model: TrainedModel, held_out: pd.DataFrame
) -> None:
    rows = held_out.iloc[:20].copy()
    unseen = rows.copy()
    unseen["city"] = "madrid"  # never seen in training
    unseen["tier"] = pd.Categorical(["platinum"] * len(rows))
    missing = rows.copy()
    missing["city"] = None
    missing["tier"] = pd.Categorical([None] * len(rows), categories=["gold"])
    p_unseen = model.predict_proba(unseen)
    assert np.isfinite(p_unseen).all()
    assert np.array_equal(p_unseen, model.predict_proba(missing))
    x = model.preprocess(unseen)
    if kind == "torch":
        names = model.preprocessing["output_columns"]
        assert (x[:, names.index("city=<unknown>")] == 1.0).all()
        assert (x[:, names.index("city=paris")] == 0.0).all()
    else:
        assert (x[:, FEATURES.index("city")] == 4.0).all()


def test_serving_frames_with_other_dtypes(model: TrainedModel, held_out: pd.DataFrame) -> None:
    reshaped = held_out[FEATURES[::-1]].copy()  # other column order, no label
    reshaped["tier"] = reshaped["tier"].astype(str)  # category -> plain strings
    reshaped["city"] = reshaped["city"].astype("string")
    reshaped["count"] = reshaped["count"].astype(object)
    reshaped["extra"] = 1
    assert np.array_equal(model.predict_proba(reshaped), model.predict_proba(held_out))
    assert model.predict_proba(held_out.iloc[:0]).shape == (0,)


# ------------------------------------------------------------------------------------ errors


def test_missing_feature_columns(
    trainer: Trainer, frame: pd.DataFrame, model: TrainedModel
) -> None:
    with pytest.raises(SchemaError, match=r"\['ghost', 'phantom'\] are missing"):
        trainer.fit(frame, features=[*FEATURES, "ghost", "phantom"], label="label")
    with pytest.raises(SchemaError, match=r"\['nolabel'\] are missing"):
        trainer.fit(frame, features=FEATURES, label="nolabel")
    with pytest.raises(SchemaError, match=r"\['city'\] are missing"):
        model.predict_proba(frame.drop(columns=["city"]))


def test_label_errors(kind: str, trainer: Trainer, frame: pd.DataFrame) -> None:
    small = frame.iloc[:200].copy()
    bad = small.copy()
    bad.loc[:4, "label"] = 2
    with pytest.raises(TrainingError, match=r"other than 0 and 1.*2: 5"):
        trainer.fit(bad, features=FEATURES, label="label")
    nan = small.copy()
    nan["label"] = nan["label"].astype(float)
    nan.loc[:2, "label"] = np.nan
    with pytest.raises(TrainingError, match=r"other than 0 and 1.*nan: 3"):
        trainer.fit(nan, features=FEATURES, label="label")
    single = small.copy()
    single["label"] = 0
    with pytest.raises(TrainingError, match=r"single class \(0: 200, 1: 0\)"):
        trainer.fit(single, features=FEATURES, label="label")
    text = small.copy()
    text["label"] = text["label"].astype(str)
    with pytest.raises(TrainingError, match="other than 0 and 1"):
        trainer.fit(text, features=FEATURES, label="label")
    boolean = small.copy()
    boolean["label"] = boolean["label"].astype(bool)
    assert trainer.fit(boolean, features=["noise"], label="label").kind == kind


def test_empty_frame(trainer: Trainer, frame: pd.DataFrame) -> None:
    with pytest.raises(EmptyDataError, match="0 rows"):
        trainer.fit(frame.iloc[:0], features=FEATURES, label="label")


def test_feature_list_errors(trainer: Trainer, frame: pd.DataFrame) -> None:
    with pytest.raises(SpecError, match="not a sequence"):
        trainer.fit(frame, features="noise", label="label")
    with pytest.raises(SpecError, match="empty"):
        trainer.fit(frame, features=[], label="label")
    with pytest.raises(SpecError, match="more than once"):
        trainer.fit(frame, features=["noise", "noise"], label="label")
    with pytest.raises(SpecError, match="also a feature"):
        trainer.fit(frame, features=["noise", "label"], label="label")


def test_bad_feature_values(trainer: Trainer, frame: pd.DataFrame) -> None:
    small = frame.iloc[:300].copy()
    inf = small.copy()
    inf.loc[:1, "noise"] = np.inf
    with pytest.raises(DataError, match=r"'noise' holds 2 infinite"):
        trainer.fit(inf, features=FEATURES, label="label")
    dates = small.copy()
    dates["when"] = pd.Timestamp("2026-01-01")
    with pytest.raises(SchemaError, match="'when' has dtype datetime64"):
        trainer.fit(dates, features=["when"], label="label")


def test_all_nan_feature_is_imputed(frame: pd.DataFrame) -> None:
    model = LightGBMTrainer(num_boost_round=5).fit(
        frame.iloc[:500], features=["empty", "noise"], label="label"
    )
    column = model.preprocessing["features"][0]
    assert column["name"] == "empty"
    assert column["all_missing"] is True
    assert column["fill_value"] == 0.0
    assert (model.preprocess(frame.iloc[:10])[:, 0] == 0.0).all()


def test_non_finite_loss_names_epoch_and_fix(frame: pd.DataFrame) -> None:
    with pytest.raises(TrainingError, match=r"loss is nan at epoch 1/3.*lower learning_rate"):
        TorchTrainer(learning_rate=1e10, epochs=3, batch_size=100).fit(
            frame.iloc[:1000], features=FEATURES, label="label"
        )
    with pytest.raises(TrainingError, match=r"epoch 1/3.*lower learning_rate"):
        TorchTrainer(learning_rate=1e38, epochs=3, batch_size=100).fit(
            frame.iloc[:1000], features=FEATURES, label="label"
        )


def test_artifact_errors(models: dict[str, TrainedModel]) -> None:
    torch_files = models["torch"].files()
    lgb_files = models["lightgbm"].files()
    with pytest.raises(SpecError, match=r"'xgboost' is unknown.*\['lightgbm', 'torch'\]"):
        TrainedModel.load("xgboost", lgb_files)
    with pytest.raises(ArtifactIntegrityError, match=r"\['model.txt'\] are missing"):
        TrainedModel.load("lightgbm", {"preprocessing.json": lgb_files["preprocessing.json"]})
    with pytest.raises(ArtifactIntegrityError, match="not a readable LightGBM model"):
        TrainedModel.load("lightgbm", {**lgb_files, "model.txt": b"garbage"})
    with pytest.raises(ArtifactIntegrityError, match="not a readable safetensors"):
        TrainedModel.load("torch", {**torch_files, "weights.safetensors": b"\x00" * 20})
    with pytest.raises(ArtifactIntegrityError, match="not valid JSON"):
        TrainedModel.load("torch", {**torch_files, "preprocessing.json": b"{"})
    with pytest.raises(ArtifactIntegrityError, match="written for a 'lightgbm' model"):
        TrainedModel.load(
            "torch", {**torch_files, "preprocessing.json": lgb_files["preprocessing.json"]}
        )
    arch = json.loads(torch_files["architecture.json"])
    arch["hidden_sizes"] = [8]
    with pytest.raises(ArtifactIntegrityError, match=r"architecture\.json is malformed"):
        TrainedModel.load("torch", {**torch_files, "architecture.json": json.dumps(arch).encode()})
    other = TorchTrainer(hidden_sizes=(8,), epochs=1).fit(
        make_frame(300), features=FEATURES, label="label"
    )
    with pytest.raises(ArtifactIntegrityError, match=r"does not fit architecture\.json"):
        TrainedModel.load(
            "torch", {**torch_files, "weights.safetensors": other.files()["weights.safetensors"]}
        )
    assert isinstance(TrainedModel.load("lightgbm", lgb_files), LightGBMModel)


# ------------------------------------------------------------------------------------- specs


@pytest.mark.parametrize(
    "trainer",
    [
        LightGBMTrainer(),
        LightGBMTrainer(params={"eta": 0.1, "is_unbalance": True}, num_boost_round=7, seed=3),
        TorchTrainer(),
        TorchTrainer(hidden_sizes=(), pos_weight=20.0, seed=9, learning_rate=0.01),
    ],
)
def test_config_round_trip(trainer: Trainer) -> None:
    cfg = trainer.config()
    assert json.loads(json.dumps(cfg)) == cfg
    rebuilt = trainer_from_config(json.loads(json.dumps(cfg)))
    assert rebuilt == trainer
    assert type(rebuilt) is type(trainer)
    assert rebuilt.config() == cfg


def test_lightgbm_params_merge_over_defaults() -> None:
    trainer = LightGBMTrainer(params={"eta": 0.1, "is_unbalance": True})
    assert trainer.params["learning_rate"] == 0.1
    assert "eta" not in trainer.params
    assert trainer.params["is_unbalance"] is True
    assert trainer.params["num_leaves"] == DEFAULT_LIGHTGBM_PARAMS["num_leaves"]
    assert LightGBMTrainer().params == DEFAULT_LIGHTGBM_PARAMS


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"seed": 1}, "`seed` field"),
        ({"random_state": 1}, "`seed` field"),
        ({"n_jobs": 4}, "`num_threads` field"),
        ({"n_estimators": 10}, "`num_boost_round` field"),
        ({"deterministic": False}, "always true"),
        ({"device": "gpu"}, "CPU only"),
        ({"objective": "regression"}, "not a binary-probability objective"),
        ({"eta": 0.1, "learning_rate": 0.2}, "twice"),
        ({"lambda_l2": float("nan")}, "not finite"),
    ],
)
def test_lightgbm_reserved_params(params: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        LightGBMTrainer(params=params)
    with pytest.raises(SpecError, match=message):
        trainer_from_config({"kind": "lightgbm", "params": params})


def test_trainer_from_config_errors() -> None:
    with pytest.raises(
        SpecError, match=r"'xgboost' is unknown.*\['lightgbm', 'sklearn', 'torch', 'torch_module'\]"
    ):
        trainer_from_config({"kind": "xgboost"})
    with pytest.raises(SpecError, match="kind None is unknown"):
        trainer_from_config({})
    with pytest.raises(SpecError, match="epochs"):
        trainer_from_config({"kind": "torch", "epochs": 0})
    with pytest.raises(SpecError, match="dropout: Extra inputs are not permitted"):
        trainer_from_config({"kind": "torch", "dropout": 0.1})
    with pytest.raises(SpecError, match="learning_rate"):
        trainer_from_config({"kind": "torch", "learning_rate": float("inf")})


def test_specs_are_frozen() -> None:
    trainer = TorchTrainer()
    with pytest.raises(ValidationError):
        trainer.epochs = 3  # type: ignore[misc]


def test_module_import_is_cheap() -> None:
    code = (
        "import sys, lockgate.training; "
        "bad = [m for m in ('torch', 'lightgbm', 'safetensors') if m in sys.modules]; "
        "assert not bad, bad"
    )
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    subprocess.run([sys.executable, "-c", code], check=True, env=env)


# ------------------------------------------------------------------------------------- tasks

TASK_FEATURES = ["x1", "x2", "city", "noise"]
TASK_TRAINERS: dict[str, Trainer] = {
    "lightgbm": LightGBMTrainer(num_boost_round=150, params={"min_data_in_leaf": 20}),
    "torch": TorchTrainer(hidden_sizes=(32,), epochs=15, batch_size=64, learning_rate=1e-2),
}
TASK_LABELS = {"multiclass": "species", "regression": "amount"}
NEW_TASKS = sorted(TASK_LABELS)


def make_task_frame(n: int = 1500, seed: int = 11) -> pd.DataFrame:
    """Separable classes (from x1) and a linear target, with a categorical feature."""
    rng = np.random.default_rng(seed)
    x1 = rng.normal(size=n)
    x2 = rng.normal(size=n)
    city = rng.choice(np.array(["a", "b", "c"], dtype=object), size=n)
    species = np.where(x1 > 0.6, "setosa", np.where(x1 < -0.6, "virginica", "versicolor"))
    amount = 3.0 * x1 - 2.0 * x2 + 1.5 * (city == "b") + rng.normal(scale=0.2, size=n) + 50.0
    return pd.DataFrame(
        {
            "x1": x1,
            "x2": x2,
            "city": city,
            "noise": rng.normal(size=n),
            "species": species,
            "grade": np.select([x1 > 0.6, x1 < -0.6], [7, 1], default=3),
            "amount": amount,
        }
    )


@pytest.fixture(scope="module")
def task_split() -> tuple[pd.DataFrame, pd.DataFrame]:
    frame = make_task_frame()
    return frame.iloc[:1100].reset_index(drop=True), frame.iloc[1100:].reset_index(drop=True)


@pytest.fixture(scope="module")
def task_models(task_split: tuple[pd.DataFrame, pd.DataFrame]) -> dict[str, TrainedModel]:
    train, _ = task_split
    return {
        f"{kind}/{task}": trainer.fit(
            train, features=TASK_FEATURES, label=TASK_LABELS[task], task=task
        )
        for kind, trainer in TASK_TRAINERS.items()
        for task in NEW_TASKS
    }


def test_multiclass_predicts_probabilities_in_class_order(
    kind: str, task_models: dict[str, TrainedModel], task_held_out: pd.DataFrame
) -> None:
    model = task_models[f"{kind}/multiclass"]
    classes = ("setosa", "versicolor", "virginica")  # sorted
    assert (model.task, model.classes, model.output_width) == ("multiclass", classes, 3)
    p = model.predict(task_held_out)
    assert p.dtype == np.float64
    assert p.shape == (len(task_held_out), 3)
    assert np.all((p >= 0) & (p <= 1))
    np.testing.assert_allclose(p.sum(axis=1), 1.0, rtol=0, atol=1e-6)
    predicted = np.asarray(model.classes, dtype=object)[p.argmax(axis=1)]
    assert (predicted == task_held_out["species"].to_numpy()).mean() > 0.9  # chance: ~1/3
    assert np.array_equal(model.predict_proba(task_held_out), p)
    assert model.predict(task_held_out.iloc[:0]).shape == (0, 3)
    assert model.preprocessing["task"] == "multiclass"
    assert model.preprocessing["classes"] == ["setosa", "versicolor", "virginica"]


def test_multiclass_integer_labels_keep_their_values(
    kind: str, task_split: tuple[pd.DataFrame, pd.DataFrame]
) -> None:
    train, test = task_split
    trainer = TASK_TRAINERS[kind].model_copy(
        update={"num_boost_round": 40} if kind == "lightgbm" else {"epochs": 5}
    )
    as_float = train.assign(grade=train["grade"].astype(float))  # e.g. after a join with NaN
    model = trainer.fit(as_float, features=TASK_FEATURES, label="grade", task="multiclass")
    assert model.classes == (1, 3, 7)
    assert all(type(c) is int for c in model.classes)
    p = model.predict(test)
    assert p.shape == (len(test), 3)
    predicted = np.asarray(model.classes)[p.argmax(axis=1)]
    assert (predicted == test["grade"].to_numpy()).mean() > 0.85
    category = train.assign(
        species=pd.Categorical(
            train["species"], categories=["virginica", "unused", "setosa", "versicolor"]
        )
    )  # classes are the values that occur, sorted
    assert trainer.fit(category, features=["x1"], label="species", task="multiclass").classes == (
        "setosa",
        "versicolor",
        "virginica",
    )


def test_regression_predicts_label_units(
    kind: str, task_models: dict[str, TrainedModel], task_held_out: pd.DataFrame
) -> None:
    model = task_models[f"{kind}/regression"]
    assert (model.task, model.classes, model.output_width) == ("regression", (), 1)
    p = model.predict(task_held_out)
    assert p.dtype == np.float64
    assert p.shape == (len(task_held_out),)
    y = task_held_out["amount"].to_numpy()
    r2 = 1.0 - float(np.sum((y - p) ** 2)) / float(np.sum((y - y.mean()) ** 2))
    assert r2 > 0.8
    assert abs(p.mean() - y.mean()) < 1.0  # label units (mean ~50), not standardised
    assert model.predict(task_held_out.iloc[:0]).shape == (0,)
    with pytest.raises(SpecError, match=r"predict_proba\(\).*task='regression'.*call predict"):
        model.predict_proba(task_held_out)


@pytest.mark.parametrize("task", NEW_TASKS)
def test_task_models_round_trip_and_train_bit_identically(
    kind: str,
    task: str,
    task_models: dict[str, TrainedModel],
    task_split: tuple[pd.DataFrame, pd.DataFrame],
) -> None:
    train, test = task_split
    model = task_models[f"{kind}/{task}"]
    files = model.files()
    loaded = TrainedModel.load(kind, files)
    assert (loaded.task, loaded.classes, loaded.output_width) == (
        model.task,
        model.classes,
        model.output_width,
    )
    assert np.array_equal(loaded.predict(test), model.predict(test))
    assert loaded.files() == files
    again = TASK_TRAINERS[kind].fit(
        train, features=TASK_FEATURES, label=TASK_LABELS[task], task=task
    )
    assert again.files() == files
    assert model_output(json.loads(files["preprocessing.json"])) == ModelOutput(
        task,
        model.output_width,
        model.classes,  # type: ignore[arg-type]
    )


def test_lightgbm_objective_follows_the_task(task_models: dict[str, TrainedModel]) -> None:
    multiclass = task_models["lightgbm/multiclass"].files()["model.txt"].decode()
    assert "objective=multiclass num_class:3" in multiclass
    assert "num_class=3" in multiclass
    regression = task_models["lightgbm/regression"].files()["model.txt"].decode()
    assert "\nobjective=regression" in regression
    assert "[deterministic: 1]" in regression


@pytest.mark.parametrize("task", NEW_TASKS)
def test_torchscript_export_per_task(
    task: str, task_models: dict[str, TrainedModel], task_split: tuple[pd.DataFrame, pd.DataFrame]
) -> None:
    import torch

    _, test = task_split
    model = task_models[f"torch/{task}"]
    assert isinstance(model, TorchModel)
    data = model.files()["model.torchscript.pt"]
    assert b".debug_pkl" not in data
    with pytest.warns(DeprecationWarning, match="deprecated"):
        scripted = torch.jit.load(io.BytesIO(data))
    with torch.inference_mode():
        out = scripted(torch.from_numpy(model.preprocess(test))).numpy()
    assert out.dtype == np.float32
    assert out.shape == (len(test), model.output_width)
    expected = model.predict(test).reshape(len(test), model.output_width)
    assert np.array_equal(out.astype(np.float64), expected)
    arch = model.architecture
    assert arch["task"] == task
    assert arch["torchscript"]["output"]["shape"] == [-1, model.output_width]
    if task == "regression":
        assert arch["output_activation"] == "affine"
        assert abs(arch["target"]["mean"] - 50.0) < 1.0
        assert arch["target"]["scale"] > 1.0
    else:
        assert arch["output_activation"] == "softmax"
    # the regenerated export (load without it) has the same bytes
    partial = {k: v for k, v in model.files().items() if k != "model.torchscript.pt"}
    assert TrainedModel.load("torch", partial).files()["model.torchscript.pt"] == data


def test_binary_models_keep_their_files_and_gain_the_task_api(
    kind: str,
    trainer: Trainer,
    model: TrainedModel,
    train_rows: pd.DataFrame,
    held_out: pd.DataFrame,
) -> None:
    assert (model.task, model.classes, model.output_width) == ("binary", (0, 1), 1)
    assert np.array_equal(model.predict(held_out), model.predict_proba(held_out))
    files = model.files()
    preprocessing = json.loads(files["preprocessing.json"])
    assert "task" not in preprocessing  # binary bytes as before tasks existed
    assert "classes" not in preprocessing
    if kind == "torch":
        arch = json.loads(files["architecture.json"])
        assert "task" not in arch
        assert "target" not in arch
        assert arch["output_activation"] == "sigmoid"
    explicit = trainer.fit(train_rows, features=FEATURES, label="label", task="binary")
    assert explicit.files() == files
    assert model_output(preprocessing) == ModelOutput("binary", 1, (0, 1))


def _many_classes(n: int) -> pd.Series:
    return pd.Series([f"c{i}" for i in range(n)])


@pytest.mark.parametrize(
    ("task", "values", "error", "message"),
    [
        ("binary", [0, 1, 2, 2], TrainingError, r"task='binary'.*2: 2.*declare task='multiclass'"),
        (
            "binary",
            [0.5, 1.7, 0.0, 1.0],
            TrainingError,
            r"task='binary'.*declare task='regression'",
        ),
        ("binary", ["cat", "dog"], TrainingError, r"task='binary'.*declare task='multiclass'"),
        ("binary", [0, 0, 0], TrainingError, r"single class \(0: 3, 1: 0\) for task='binary'"),
        ("multiclass", ["a", None, "b"], TrainingError, r"1 missing value\(s\) for task='multic"),
        ("multiclass", [0.5, 1.0, 2.0], TrainingError, r"\[0\.5\] for task='multiclass'.*regres"),
        ("multiclass", [1, "a", 2], TrainingError, "mixes integer and string classes"),
        ("multiclass", ["a", "a"], TrainingError, r"single class 'a' .*task='multiclass'"),
        ("multiclass", [True, False], TrainingError, r"is bool for task='multiclass'.*'binary'"),
        ("regression", [1.0, np.nan, np.inf], TrainingError, r"1 missing and 1 infinite.*regres"),
        ("regression", ["1.5", "x"], TrainingError, r"non-numeric values \['x'\].*'multiclass'"),
        ("regression", [True, False], TrainingError, r"is bool for task='regression'.*'binary'"),
        ("regression", [2.5, 2.5], TrainingError, r"single value 2\.5 in all 2 rows"),
        ("regression", [], EmptyDataError, r"no rows for task='regression'"),
        ("ranking", [0, 1], SpecError, r"task='ranking' is unknown"),
    ],
)
def test_check_labels_names_the_task_value_and_fix(
    task: str, values: list[Any], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        check_labels(pd.Series(values, dtype=None if values else float), task=task, label="y")  # type: ignore[arg-type]


def test_check_labels_accepts_what_each_task_trains_on() -> None:
    check_labels(pd.Series([0, 1, 1]), task="binary", label="y")
    check_labels(pd.Series([True, False]), task="binary", label="y")
    check_labels(pd.Series(["b", "a", "c"]), task="multiclass", label="y")
    check_labels(pd.Series([3.0, 1.0, 2.0]), task="multiclass", label="y")
    check_labels(pd.Series(pd.Categorical(["x", "y"])), task="multiclass", label="y")
    check_labels(pd.Series([0.1, 2.0, -3.0]), task="regression", label="y")
    check_labels(pd.Series(["1.5", "2"], dtype=object), task="regression", label="y")
    check_labels(_many_classes(MAX_CLASSES), task="multiclass", label="y")
    with pytest.raises(TrainingError, match=rf"{MAX_CLASSES + 1} distinct.*at most {MAX_CLASSES}"):
        check_labels(_many_classes(MAX_CLASSES + 1), task="multiclass", label="y")
    with pytest.raises(SchemaError, match="takes a pandas Series"):
        check_labels([0, 1], task="binary", label="y")  # type: ignore[arg-type]


def test_fit_refuses_labels_that_do_not_fit_the_task(
    kind: str, task_split: tuple[pd.DataFrame, pd.DataFrame]
) -> None:
    train, _ = task_split
    small = train.iloc[:200]
    trainer = TASK_TRAINERS[kind]
    with pytest.raises(TrainingError, match=r"task='binary'.*declare task='multiclass'"):
        trainer.fit(small, features=["x1"], label="species")  # default task: binary
    with pytest.raises(TrainingError, match=r"task='binary'.*declare task='regression'"):
        trainer.fit(small, features=["x1"], label="amount")
    with pytest.raises(TrainingError, match=r"non-numeric.*task='regression'"):
        trainer.fit(small, features=["x1"], label="species", task="regression")
    with pytest.raises(TrainingError, match=r"for task='multiclass'.*task='regression'"):
        trainer.fit(small, features=["x1"], label="amount", task="multiclass")
    with pytest.raises(SpecError, match="task='ordinal' is unknown"):
        trainer.fit(small, features=["x1"], label="grade", task="ordinal")  # type: ignore[arg-type]


def test_task_spec_errors(task_split: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    train, _ = task_split
    with pytest.raises(SpecError, match=r"pos_weight=2\.0 with task='multiclass'"):
        TorchTrainer(pos_weight=2.0, epochs=1).fit(
            train, features=["x1"], label="species", task="multiclass"
        )
    with pytest.raises(ValidationError, match=r"num_class.*counts the label's classes"):
        LightGBMTrainer(params={"num_classes": 3})


def test_load_refuses_files_of_different_tasks(task_models: dict[str, TrainedModel]) -> None:
    lgb_multi = task_models["lightgbm/multiclass"].files()
    lgb_reg = task_models["lightgbm/regression"].files()
    with pytest.raises(ArtifactIntegrityError, match=r"objective 'multiclass'.*task='regression'"):
        TrainedModel.load(
            "lightgbm", {**lgb_multi, "preprocessing.json": lgb_reg["preprocessing.json"]}
        )
    torch_multi = task_models["torch/multiclass"].files()
    torch_reg = task_models["torch/regression"].files()
    with pytest.raises(ArtifactIntegrityError, match=r"architecture\.json is malformed.*task"):
        TrainedModel.load(
            "torch", {**torch_reg, "preprocessing.json": torch_multi["preprocessing.json"]}
        )
    arch = json.loads(torch_reg["architecture.json"])
    arch["target"]["scale"] = 0.0
    with pytest.raises(ArtifactIntegrityError, match=r"target scale 0\.0"):
        TrainedModel.load("torch", {**torch_reg, "architecture.json": json.dumps(arch).encode()})
    spec = json.loads(lgb_multi["preprocessing.json"])
    spec["classes"] = ["versicolor", "setosa", "virginica"]
    with pytest.raises(ArtifactIntegrityError, match="not sorted and distinct"):
        TrainedModel.load(
            "lightgbm", {**lgb_multi, "preprocessing.json": json.dumps(spec).encode()}
        )
    with pytest.raises(ArtifactIntegrityError, match="malformed task"):
        model_output({"task": "ranking"})


# ------------------------------------------------------------- stable names across module moves

SCORER_NAMES = {
    "binary": "_Scorer",
    "multiclass": "_SoftmaxScorer",
    "regression": "_AffineScorer",
}


@pytest.mark.parametrize("task", sorted(SCORER_NAMES))
def test_torchscript_archives_name_the_scorers_as_lockgate_always_did(
    task: str,
    models: dict[str, TrainedModel],
    task_models: dict[str, TrainedModel],
) -> None:
    """The scoring class's TorchScript name is in the archive bytes (its code path and pickle).

    It was ``__torch__.lockgate.trainers.<Scorer>`` when lockgate first wrote torch models; a
    module move must not change it, or every torch model's files and version id would change.
    """
    import zipfile

    model = models["torch"] if task == "binary" else task_models[f"torch/{task}"]
    archive = model.files()["model.torchscript.pt"]
    with zipfile.ZipFile(io.BytesIO(archive)) as zf:
        names = zf.namelist()
        code = [n for n in names if "/code/" in n]
        assert code == ["archive/code/__torch__/lockgate/trainers.py"], names
        source = zf.read(code[0]).decode()
        data = zf.read("archive/data.pkl")
    scorer = SCORER_NAMES[task]
    assert f"class {scorer}(Module):" in source
    assert f"self: __torch__.lockgate.trainers.{scorer}," in source
    assert f"c__torch__.lockgate.trainers\n{scorer}\n".encode() in data


@pytest.mark.parametrize(
    ("old_path", "new_path"),
    [
        ("lockgate.trainers:LightGBMTrainer", "lockgate.training:LightGBMTrainer"),
        ("lockgate.trainers:TorchTrainer", "lockgate.training:TorchTrainer"),
        ("lockgate.trainers:TrainedModel", "lockgate.training:TrainedModel"),
        ("lockgate.trainers:CustomTrainer", "lockgate.training:CustomTrainer"),
        ("lockgate.trainers_sklearn:SklearnTrainer", "lockgate.training:SklearnTrainer"),
        ("lockgate.trainers_sklearn:SklearnModel", "lockgate.training:SklearnModel"),
        (
            "lockgate.trainers_torch_module:TorchModuleTrainer",
            "lockgate.training:TorchModuleTrainer",
        ),
        ("lockgate.trainers_torch_module:TorchModuleModel", "lockgate.training:TorchModuleModel"),
        ("lockgate.training.trainers:LightGBMTrainer", "lockgate.training:LightGBMTrainer"),
    ],
)
def test_old_module_paths_of_lock_records_still_import(old_path: str, new_path: str) -> None:
    from lockgate.training import import_object

    assert import_object(old_path) is import_object(new_path)


def test_recorded_paths_of_shipped_classes_do_not_follow_their_module() -> None:
    """Trainers record their public path; models the manifest path they always had."""
    from lockgate.training import (
        SklearnModel,
        SklearnTrainer,
        TorchModuleModel,
        TorchModuleTrainer,
        import_object,
        import_path,
    )

    recorded = {
        LightGBMTrainer: "lockgate.training:LightGBMTrainer",
        TorchTrainer: "lockgate.training:TorchTrainer",
        SklearnTrainer: "lockgate.training:SklearnTrainer",
        TorchModuleTrainer: "lockgate.training:TorchModuleTrainer",
        # lockgate_model.json is a model file: its sha256 enters the version id
        SklearnModel: "lockgate.trainers_sklearn:SklearnModel",
        TorchModuleModel: "lockgate.trainers_torch_module:TorchModuleModel",
    }
    for cls, path in recorded.items():
        assert import_path(cls) == path
        assert import_object(path) is cls
    assert SklearnTrainer(estimator="sklearn.linear_model:Ridge").config()["class"] == (
        "lockgate.training:SklearnTrainer"
    )

    from tests.trainer_plugins import ShallowLightGBMTrainer  # the pin is not inherited

    own = f"{ShallowLightGBMTrainer.__module__}:{ShallowLightGBMTrainer.__qualname__}"
    assert import_path(ShallowLightGBMTrainer) == own
