"""torch with your own ``nn.Module``: :class:`TorchModuleTrainer` and :class:`TorchModuleModel`.

The architecture is user code: ``module="my_pkg.nets:ChurnNet"`` names an ``nn.Module`` class
constructed as ``ChurnNet(input_dim=d, output_dim=w, **module_kwargs)``; it maps the float32
``(n, d)`` matrix of lockgate's preprocessing (categorical one-hot blocks, standardised
numeric columns) to raw outputs ``(n, w)``: one logit (binary), k logits (multiclass) or the
standardised label (regression). lockgate adds the head (sigmoid, softmax, or ``* scale +
mean``), the loss (binary cross-entropy, cross-entropy, MSE) and AdamW, as
:class:`lockgate.training.torch_trainer.TorchTrainer` does.

Files: ``weights.safetensors`` (the module's ``state_dict``, the weights of the triad),
``architecture.json`` (module path, kwargs, sizes, task, regression target), ``model.onnx``
(an ONNX export of the whole scoring graph, head included, for runtimes without the user code;
``export="none"`` skips it; it needs ``pip install 'lockgate[onnx]'``), ``preprocessing.json``
and ``lockgate_model.json``. Loading rebuilds the module from its class (the user's package must
be installed where the model is loaded, Triton's stub included) and the safetensors weights;
in-process and served (python backend) predictions both run that eager module.

Determinism on CPU: the module is constructed and trained inside ``torch.random.fork_rng``
seeded with ``seed`` (its initialisation and any dropout draw from that seeded stream; the
caller's global RNG is restored), batches are shuffled by a private generator, and
``torch.use_deterministic_algorithms(True)`` with ``num_threads`` threads holds during training.
The ONNX export (``torch.onnx.export(dynamo=False)``) is byte-identical for equal weights.
"""

from __future__ import annotations

import io
import json
import math
import warnings
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import numpy as np
import pandas as pd
from pydantic import Field, JsonValue, field_validator, model_validator

from lockgate.errors import ArtifactIntegrityError, SpecError, TrainingError
from lockgate.tasks.catalog import Task
from lockgate.training.import_paths import import_object
from lockgate.training.model_files import TORCH_ARCHITECTURE_FILE, TORCH_WEIGHTS_FILE
from lockgate.training.model_protocol import CustomModel
from lockgate.training.prepare import prepare_training
from lockgate.training.preprocessing import Preprocessing
from lockgate.training.torch_network import (
    adamw_optimizer,
    batch_loss,
    deterministic_torch,
    shuffled_batches,
    target_standardization,
)
from lockgate.training.trainer_protocol import CustomTrainer

if TYPE_CHECKING:
    import torch

__all__ = ["TORCH_ONNX_FILE", "TorchModuleModel", "TorchModuleTrainer"]

TORCH_ONNX_FILE = "model.onnx"
"""The ONNX export of a torch-module model's scoring graph."""
_FORMAT = "lockgate.torch-module/1"
_OPSET = 17


def _module_class(path: str) -> Any:
    import torch

    cls = import_object(path, what="torch module")
    if not (isinstance(cls, type) and issubclass(cls, torch.nn.Module)):
        raise SpecError(
            f"module {path!r} is a {type(cls).__name__}, not a torch.nn.Module subclass; rule: "
            f"TorchModuleTrainer.module names an nn.Module class; fix: point it at your "
            f"network class, e.g. 'my_pkg.nets:ChurnNet'"
        )
    return cls


def _build(architecture: Mapping[str, Any]) -> torch.nn.Module:
    """The user's module with the architecture's sizes and kwargs (global RNG untouched)."""
    import torch

    cls = _module_class(architecture["module"])
    kwargs = dict(architecture["module_kwargs"])
    with torch.random.fork_rng(devices=[]):
        try:
            return cls(
                input_dim=architecture["input_dim"],
                output_dim=architecture["output_dim"],
                **kwargs,
            )
        except TypeError as exc:
            raise SpecError(
                f"{architecture['module']}(input_dim=..., output_dim=..., **{kwargs!r}) failed: "
                f"{exc}; rule: the module takes input_dim and output_dim keyword arguments plus "
                f"module_kwargs; fix: add them to its __init__ or correct module_kwargs"
            ) from exc


class _Head:
    """The output head applied to the module's raw output, for one task."""

    @staticmethod
    def apply(raw: torch.Tensor, architecture: Mapping[str, Any]) -> torch.Tensor:
        import torch

        task = architecture["task"]
        if task == "binary":
            return torch.sigmoid(raw)
        if task == "multiclass":
            return torch.softmax(raw, dim=1)
        target = architecture["target"]
        return raw * float(target["scale"]) + float(target["mean"])


class TorchModuleTrainer(CustomTrainer):
    """Trains your own ``nn.Module`` deterministically on CPU; safetensors weights, ONNX export.

    Example:
        >>> trainer = TorchModuleTrainer(
        ...     module="my_pkg.nets:ChurnNet", module_kwargs={"hidden": 32}, epochs=5, seed=7
        ... )  # doctest: +SKIP

    Attributes:
        kind: Always ``"torch_module"``.
        module: The ``nn.Module`` class as ``"module:Class"``; constructed as
            ``Class(input_dim=d, output_dim=w, **module_kwargs)``.
        module_kwargs: Extra constructor arguments (JSON values).
        epochs: Passes over the training rows.
        batch_size: Rows per optimiser step.
        learning_rate: AdamW learning rate.
        weight_decay: AdamW (decoupled) weight decay.
        seed: Seed of the module's initialisation, dropout and batch shuffling.
        num_threads: torch intra-op threads while training (restored afterwards).
        export: ``"onnx"`` writes ``model.onnx``; ``"none"`` skips the export.
    """

    __lockgate_path__ = "lockgate.training:TorchModuleTrainer"  # recorded path (import_paths)

    kind: Literal["torch_module"] = "torch_module"
    module: str
    module_kwargs: dict[str, JsonValue] = Field(default_factory=dict)
    epochs: int = Field(default=10, ge=1, le=100_000)
    batch_size: int = Field(default=512, ge=1, le=10_000_000)
    learning_rate: float = Field(default=1e-3, gt=0.0, allow_inf_nan=False)
    weight_decay: float = Field(default=1e-5, ge=0.0, allow_inf_nan=False)
    num_threads: int = Field(default=1, ge=1, le=1024)
    export: Literal["onnx", "none"] = "onnx"
    libraries: ClassVar[tuple[str, ...]] = ("torch", "safetensors", "onnx")

    @field_validator("module_kwargs")
    @classmethod
    def _no_sizes(cls, value: dict[str, JsonValue]) -> dict[str, JsonValue]:
        clash = sorted({"input_dim", "output_dim"} & set(value))
        if clash:
            raise ValueError(
                f"module_kwargs sets {clash}; rule: lockgate passes input_dim and output_dim "
                f"from the preprocessing and the task; fix: remove them"
            )
        return value

    @model_validator(mode="after")
    def _module_exists(self) -> TorchModuleTrainer:
        """Imports the module class at spec time."""
        _module_class(self.module)
        return self

    def code_modules(self) -> tuple[str, ...]:
        """The trainer's module and the module of the network class.

        Returns:
            Module names whose source sha256 go into the lock record.
        """
        return (type(self).__module__, self.module.partition(":")[0])

    def fit(
        self,
        frame: pd.DataFrame,
        *,
        features: Sequence[str],
        label: str,
        task: Task = "binary",
    ) -> TorchModuleModel:
        """Trains the module on ``frame`` (arguments and result: :meth:`Trainer.fit`).

        Raises:
            SpecError: When the module cannot be built.
            TrainingError: On a wrong output shape, a non-finite loss or a failed export.
        """
        import torch

        data = prepare_training(
            frame,
            features=features,
            label=label,
            task=task,
            kind=self.kind,
            one_hot=True,
            standardize=True,
        )
        pre = data.preprocessing
        architecture: dict[str, Any] = {
            "format": _FORMAT,
            "module": self.module,
            "module_kwargs": dict(self.module_kwargs),
            "input_dim": pre.input_dim,
            "output_dim": pre.output_width,
            "task": task,
            "dtype": "float32",
        }
        y = data.y
        if task == "regression":
            target = target_standardization(y)
            architecture["target"] = target
            y = (y - target["mean"]) / target["scale"]
        n = data.x.shape[0]
        steps = math.ceil(n / self.batch_size)
        with deterministic_torch(num_threads=self.num_threads), torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            net = _build(architecture)
            net.train()
            x_all = torch.from_numpy(data.x)
            if task == "multiclass":
                y_all = torch.from_numpy(y.astype(np.int64))
                loss_fn: torch.nn.Module = torch.nn.CrossEntropyLoss()
            else:
                y_all = torch.from_numpy(y.astype(np.float32))
                loss_fn = torch.nn.BCEWithLogitsLoss() if task == "binary" else torch.nn.MSELoss()
            generator = torch.Generator(device="cpu")
            generator.manual_seed(self.seed)
            optimizer = adamw_optimizer(
                net, learning_rate=self.learning_rate, weight_decay=self.weight_decay
            )
            for epoch, step, rows in shuffled_batches(
                n, batch_size=self.batch_size, epochs=self.epochs, generator=generator
            ):
                raw = net(x_all[rows])
                if tuple(raw.shape) != (len(rows), pre.output_width):
                    raise TrainingError(
                        f"{self.module} returned shape {list(raw.shape)} for a batch of "
                        f"{len(rows)} rows; rule: the module maps (n, input_dim) to (n, "
                        f"output_dim) = (n, {pre.output_width}) raw outputs for task "
                        f"{task!r}; fix: end the network with a Linear(..., output_dim)"
                    )
                loss, value = batch_loss(loss_fn, raw, y_all[rows], task=task)
                if not math.isfinite(value):
                    raise TrainingError(
                        f"{self.module} training diverged: the loss is {value} at epoch "
                        f"{epoch + 1}/{self.epochs}, step {step + 1}/{steps} with "
                        f"learning_rate={self.learning_rate!r}; rule: the training loss "
                        f"must stay finite; fix: lower learning_rate"
                    )
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
            net.eval()
        weights = _state_bytes(net)
        model = TorchModuleModel(
            weights=weights, architecture=architecture, preprocessing=pre, net=net
        )
        if self.export == "onnx":
            model._onnx = _onnx_bytes(net, architecture)
        return model


def _state_bytes(net: torch.nn.Module) -> bytes:
    from safetensors.torch import save as save_safetensors

    state = {name: t.detach().contiguous() for name, t in net.state_dict().items()}
    for name, tensor in state.items():
        if tensor.is_floating_point() and not bool(tensor.isfinite().all()):
            raise TrainingError(
                f"training produced non-finite values in {name!r}; rule: weights are finite; "
                f"fix: lower learning_rate"
            )
    return bytes(save_safetensors(state, metadata={"format": "pt"}))


def _scoring_module(net: torch.nn.Module, architecture: Mapping[str, Any]) -> torch.nn.Module:
    import torch

    class Scoring(torch.nn.Module):
        def __init__(self, inner: torch.nn.Module) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return _Head.apply(self.inner(x), architecture)

    return Scoring(net).eval()


def _onnx_bytes(net: torch.nn.Module, architecture: Mapping[str, Any]) -> bytes:
    """The ONNX export of ``Scoring(net)``: float32 ``input (n, d)`` -> ``output (n, w)``."""
    import torch

    buffer = io.BytesIO()
    try:
        with warnings.catch_warnings(), torch.random.fork_rng(devices=[]):
            warnings.simplefilter("ignore")
            torch.onnx.export(
                _scoring_module(net, architecture),
                (torch.zeros(2, architecture["input_dim"]),),
                buffer,  # type: ignore[arg-type]  # file-like objects are accepted
                dynamo=False,
                input_names=["input"],
                output_names=["output"],
                dynamic_axes={"input": {0: "n"}, "output": {0: "n"}},
                opset_version=_OPSET,
            )
    except Exception as exc:
        raise TrainingError(
            f"the ONNX export of {architecture['module']} failed ({type(exc).__name__}: {exc}); "
            f"rule: export='onnx' needs a traceable module and the onnx package; fix: pip "
            f"install 'lockgate[onnx]', or set export='none'"
        ) from exc
    return buffer.getvalue()


class TorchModuleModel(CustomModel):
    """A user ``nn.Module`` with lockgate's head, preprocessing and safetensors weights."""

    # the manifest's model path since lockgate wrote it first (it enters the version id)
    __lockgate_path__ = "lockgate.trainers_torch_module:TorchModuleModel"

    kind: ClassVar[str] = "torch_module"
    weights_file: ClassVar[str] = TORCH_WEIGHTS_FILE

    def __init__(
        self,
        *,
        weights: bytes,
        architecture: Mapping[str, Any],
        preprocessing: Preprocessing,
        net: torch.nn.Module | None = None,
        onnx_export: bytes | None = None,
    ) -> None:
        """Builds the module from its class and loads the weights with safetensors.

        Args:
            weights: Content of ``weights.safetensors``.
            architecture: Parsed ``architecture.json``.
            preprocessing: The preprocessing fitted with it.
            net: The trained module (fit passes it; loading builds it).
            onnx_export: Content of ``model.onnx`` when there is one.

        Raises:
            ArtifactIntegrityError: When the files do not describe one consistent network.
        """
        from safetensors.torch import load as load_safetensors

        super().__init__(preprocessing=preprocessing)
        arch = dict(architecture)
        if (
            arch.get("format") != _FORMAT
            or arch.get("task") != preprocessing.task
            or arch.get("input_dim") != preprocessing.input_dim
            or arch.get("output_dim") != preprocessing.output_width
        ):
            raise ArtifactIntegrityError(
                f"{TORCH_ARCHITECTURE_FILE} {arch!r} does not match {preprocessing.task!r} "
                f"with {preprocessing.input_dim} inputs and {preprocessing.output_width} outputs; "
                f"rule: both files come from one fit; fix: load the files of one model version"
            )
        if net is None:
            try:
                state = load_safetensors(bytes(weights))
            except Exception as exc:
                raise ArtifactIntegrityError(
                    f"{TORCH_WEIGHTS_FILE} ({len(weights)} bytes) is not readable safetensors: "
                    f"{exc}; rule: weights are safetensors; fix: restore it from the registry"
                ) from exc
            net = _build(arch)
            try:
                net.load_state_dict(state, strict=True)
            except RuntimeError as exc:
                raise ArtifactIntegrityError(
                    f"{TORCH_WEIGHTS_FILE} does not fit {arch['module']} with kwargs "
                    f"{arch['module_kwargs']!r}: {exc}; rule: the weights come from this module "
                    f"(check whether its code changed); fix: load the files of one version"
                ) from exc
        net.eval()
        net.requires_grad_(False)
        self._net = net
        self._weights = bytes(weights)
        self._architecture = arch
        self._onnx = onnx_export

    @property
    def architecture(self) -> dict[str, Any]:
        """A copy of ``architecture.json``."""
        return json.loads(json.dumps(self._architecture))

    def model_files(self) -> dict[str, bytes]:
        """``weights.safetensors``, ``architecture.json`` and (when exported) ``model.onnx``.

        Returns:
            A new dict of file name to bytes.
        """
        text = json.dumps(self._architecture, sort_keys=True, indent=2, allow_nan=False)
        files = {
            TORCH_WEIGHTS_FILE: self._weights,
            TORCH_ARCHITECTURE_FILE: (text + "\n").encode("ascii"),
        }
        if self._onnx is not None:
            files[TORCH_ONNX_FILE] = self._onnx
        return files

    @classmethod
    def from_model_files(
        cls, files: Mapping[str, bytes], *, preprocessing: Preprocessing
    ) -> TorchModuleModel:
        """Rebuilds the model from its files (see :meth:`CustomModel.from_model_files`).

        The module class is imported by path.

        Raises:
            ArtifactIntegrityError: When a file is missing or malformed.
        """
        if TORCH_ARCHITECTURE_FILE not in files:
            raise ArtifactIntegrityError(
                f"a torch_module model needs {TORCH_ARCHITECTURE_FILE} (given {sorted(files)}); "
                f"rule: load needs every file model.files() returned; fix: pass them all"
            )
        try:
            architecture = json.loads(bytes(files[TORCH_ARCHITECTURE_FILE]))
        except ValueError as exc:
            raise ArtifactIntegrityError(
                f"{TORCH_ARCHITECTURE_FILE} is not JSON ({exc}); rule: lockgate wrote it; fix: "
                f"restore it from the registry"
            ) from exc
        onnx_export = files.get(TORCH_ONNX_FILE)
        return cls(
            weights=bytes(files[TORCH_WEIGHTS_FILE]),
            architecture=architecture,
            preprocessing=preprocessing,
            onnx_export=None if onnx_export is None else bytes(onnx_export),
        )

    def predict_matrix(self, x: np.ndarray) -> np.ndarray:
        """Runs the module and the head eagerly.

        Args:
            x: float32 ``(n, d)``.

        Returns:
            float64 ``(n,)`` or ``(n, k)`` by task.
        """
        import torch

        with torch.inference_mode():
            out = _Head.apply(self._net(torch.from_numpy(x)), self._architecture)
        result = out.numpy().astype(np.float64)
        return result if self.task == "multiclass" else result.reshape(-1)
