"""Training: deterministic trainers (binary, multiclass, regression) whose models are safe files.

The public face of training; import from here (``from lockgate.training import TrainedModel``),
not from the modules, which may move. Trainers are frozen pydantic specs that round-trip
through :meth:`Trainer.config` and :func:`trainer_from_config`:

- :class:`LightGBMTrainer` (:mod:`~lockgate.training.lightgbm_trainer`): gradient-boosted
  trees; weights file ``model.txt`` (LightGBM's text model format).
- :class:`TorchTrainer` (:mod:`~lockgate.training.torch_trainer`): a ReLU multilayer
  perceptron; weights file ``weights.safetensors``, plus a TorchScript export
  ``model.torchscript.pt`` of the whole scoring graph for Triton
  (:mod:`~lockgate.training.scorers`).
- :class:`SklearnTrainer` (scikit-learn through ONNX) and :class:`TorchModuleTrainer` (your own
  ``nn.Module``), built on the trainer protocol (:mod:`~lockgate.training.trainer_protocol`,
  :mod:`~lockgate.training.model_protocol`) that a :class:`CustomTrainer` of yours follows too.

Tasks: ``fit(frame, features=..., label=..., task=...)`` with ``task`` one of :data:`TASKS`:
``"binary"`` (P(label 1), shape ``(n,)``), ``"multiclass"`` (probabilities ``(n, k)`` over the
sorted :attr:`TrainedModel.classes`) or ``"regression"`` (values in label units, ``(n,)``).
:func:`check_labels` runs the label checks without training. The task is recorded in
``preprocessing.json`` (keys ``task`` and ``classes``, written only for non-binary models, so
binary files are byte-identical to those of lockgate before tasks existed).

``fit`` returns a :class:`TrainedModel`; its :meth:`TrainedModel.files` hold everything needed
to load it again (no pickle anywhere) and :meth:`TrainedModel.load` rebuilds a model whose
predictions equal the original's bit for bit. Fitting the same spec on the same frame gives
byte-identical files, in one process or in two, on the same hardware and library versions.
torch and lightgbm are imported inside functions only, so importing this package stays cheap.
"""

from __future__ import annotations

from lockgate.tasks.catalog import TASKS, Task
from lockgate.training.import_paths import import_object, import_path, source_sha256
from lockgate.training.labels import MAX_CLASSES, ClassLabel, check_labels
from lockgate.training.lightgbm_trainer import (
    DEFAULT_LIGHTGBM_PARAMS,
    JsonScalar,
    LightGBMModel,
    LightGBMTrainer,
)
from lockgate.training.model_files import (
    LIGHTGBM_MODEL_FILE,
    PREPROCESSING_FILE,
    TORCH_ARCHITECTURE_FILE,
    TORCH_SCRIPT_FILE,
    TORCH_WEIGHTS_FILE,
)
from lockgate.training.model_protocol import (
    MODEL_MANIFEST_FILE,
    CustomModel,
    ModelOutput,
    TrainedModel,
    model_output,
)
from lockgate.training.prepare import PreparedData, prepare_training
from lockgate.training.preprocessing import Preprocessing
from lockgate.training.sklearn_trainer import SklearnModel, SklearnTrainer
from lockgate.training.torch_module_trainer import TorchModuleModel, TorchModuleTrainer
from lockgate.training.torch_trainer import TorchModel, TorchTrainer
from lockgate.training.trainer_protocol import (
    CONFIG_CLASS_KEY,
    CONFIG_CODE_KEY,
    CONFIG_LIBRARIES_KEY,
    TRAINER_KINDS,
    CustomTrainer,
    Trainer,
    TrainerSpec,
    check_trainer,
    trainer_code_differences,
    trainer_from_config,
)

__all__ = [
    "CONFIG_CLASS_KEY",
    "CONFIG_CODE_KEY",
    "CONFIG_LIBRARIES_KEY",
    "DEFAULT_LIGHTGBM_PARAMS",
    "LIGHTGBM_MODEL_FILE",
    "MAX_CLASSES",
    "MODEL_MANIFEST_FILE",
    "PREPROCESSING_FILE",
    "TASKS",
    "TORCH_ARCHITECTURE_FILE",
    "TORCH_SCRIPT_FILE",
    "TORCH_WEIGHTS_FILE",
    "TRAINER_KINDS",
    "ClassLabel",
    "CustomModel",
    "CustomTrainer",
    "JsonScalar",
    "LightGBMModel",
    "LightGBMTrainer",
    "ModelOutput",
    "PreparedData",
    "Preprocessing",
    "SklearnModel",
    "SklearnTrainer",
    "Task",
    "TorchModel",
    "TorchModuleModel",
    "TorchModuleTrainer",
    "TorchTrainer",
    "TrainedModel",
    "Trainer",
    "TrainerSpec",
    "check_labels",
    "check_trainer",
    "import_object",
    "import_path",
    "model_output",
    "prepare_training",
    "source_sha256",
    "trainer_code_differences",
    "trainer_from_config",
]
