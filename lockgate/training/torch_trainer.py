"""A ReLU multilayer perceptron with PyTorch: :class:`TorchTrainer` and :class:`TorchModel`.

Weights file ``weights.safetensors``, the network in ``architecture.json``, plus a TorchScript
export ``model.torchscript.pt`` of the whole scoring graph for Triton
(:mod:`lockgate.training.scorers`). Determinism: torch trains under
``torch.use_deterministic_algorithms(True)`` and ``torch.set_num_threads(num_threads)``, both
restored afterwards; the weights are initialised and the batches shuffled with a private
``torch.Generator`` seeded from ``seed``, so the global RNG is neither used nor changed.
torch is imported inside functions only.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from typing import Annotated, Any, ClassVar, Literal

import numpy as np
import pandas as pd
from pydantic import Field

from lockgate.errors import ArtifactIntegrityError, SpecError, TrainingError
from lockgate.tasks.catalog import Task
from lockgate.training.arrays import Float32Matrix, Float64Array
from lockgate.training.labels import check_task
from lockgate.training.model_files import (
    PREPROCESSING_FILE,
    TORCH_ARCHITECTURE_FILE,
    TORCH_SCRIPT_FILE,
    TORCH_WEIGHTS_FILE,
    json_bytes,
    parse_json,
    require_files,
)
from lockgate.training.model_protocol import TrainedModel, check_preprocessing_kind
from lockgate.training.prepare import prepare_fit
from lockgate.training.preprocessing import Preprocessing
from lockgate.training.scorers import torchscript_bytes
from lockgate.training.torch_network import (
    adamw_optimizer,
    batch_loss,
    build_network,
    check_architecture,
    deterministic_torch,
    mlp_architecture,
    safetensors_bytes,
    shuffled_batches,
    target_standardization,
)
from lockgate.training.trainer_protocol import MAX_SEED, Trainer

__all__ = ["TorchModel", "TorchTrainer"]


class TorchTrainer(Trainer):
    """A ReLU multilayer perceptron trained with AdamW, with a head per task.

    Numeric features are median-imputed and standardised; categorical features are one-hot
    encoded with an extra bucket for unseen or missing values. Heads: ``"binary"`` one logit,
    sigmoid, binary cross-entropy; ``"multiclass"`` k logits, softmax, cross-entropy;
    ``"regression"`` one linear output trained with MSE on the standardised label, scaled
    back to label units by the network.

    Example:
        >>> trainer = TorchTrainer(hidden_sizes=(32,), epochs=5)
        >>> model = trainer.fit(frame, features=["x"], label="y", task="regression")  # doctest: +SKIP
        >>> model.predict(frame).shape  # doctest: +SKIP
        (1000,)

    Attributes:
        kind: Always ``"torch"``.
        hidden_sizes: Widths of the hidden layers (empty: logistic regression).
        epochs: Passes over the training rows.
        batch_size: Rows per optimiser step.
        learning_rate: AdamW learning rate.
        weight_decay: AdamW (decoupled) weight decay.
        seed: Seed of the weight initialisation and of the batch shuffling.
        num_threads: torch intra-op threads while training (restored afterwards).
        pos_weight: Weight of the positive class in the loss; None means 1 (calibrated
            probabilities). ``task="binary"`` only.
    """

    __lockgate_path__ = "lockgate.training:TorchTrainer"  # recorded path (import_paths)

    kind: Literal["torch"] = "torch"
    hidden_sizes: tuple[Annotated[int, Field(ge=1, le=65_536)], ...] = (64, 32)
    epochs: int = Field(default=10, ge=1, le=100_000)
    batch_size: int = Field(default=512, ge=1, le=10_000_000)
    learning_rate: float = Field(default=1e-3, gt=0.0, allow_inf_nan=False)
    weight_decay: float = Field(default=1e-5, ge=0.0, allow_inf_nan=False)
    seed: int = Field(default=0, ge=0, le=MAX_SEED)
    num_threads: int = Field(default=1, ge=1, le=1024)
    pos_weight: float | None = Field(default=None, gt=0.0, allow_inf_nan=False)

    def fit(
        self,
        frame: pd.DataFrame,
        *,
        features: Sequence[str],
        label: str,
        task: Task = "binary",
    ) -> TorchModel:
        """Trains the network on ``frame`` (arguments and result: :meth:`Trainer.fit`).

        Raises:
            SpecError: On an invalid feature list, an unknown task, or ``pos_weight`` with a
                task other than ``"binary"``.
            SchemaError: When columns are missing or have an unusable dtype.
            EmptyDataError: When ``frame`` has no rows.
            DataError: When a numeric feature holds infinite values.
            TrainingError: On labels that do not fit the task, or a non-finite loss.
        """
        import torch

        check_task(task)
        if self.pos_weight is not None and task != "binary":
            raise SpecError(
                f"TorchTrainer.pos_weight={self.pos_weight!r} with task={task!r}; rule: "
                f"pos_weight weighs the positive class of a binary label only; fix: remove "
                f"pos_weight from the trainer spec or declare task='binary'"
            )
        preprocessor, x, y = prepare_fit(
            frame, features=features, label=label, model_kind="torch", task=task
        )
        target = target_standardization(y) if task == "regression" else None
        architecture = mlp_architecture(
            preprocessor.input_dim,
            self.hidden_sizes,
            task=task,
            output_dim=preprocessor.output_width,
            target=target,
        )
        n = x.shape[0]
        steps_per_epoch = math.ceil(n / self.batch_size)
        with deterministic_torch(num_threads=self.num_threads):
            generator = torch.Generator(device="cpu")
            generator.manual_seed(self.seed)
            net = build_network(architecture, generator=generator)
            x_all = torch.from_numpy(x)
            loss_fn: torch.nn.Module
            if task == "binary":
                logits_net = net[:-1]  # the same layers without the final sigmoid
                y_all = torch.from_numpy(y.astype(np.float32))
                pos_weight = None if self.pos_weight is None else torch.tensor([self.pos_weight])
                loss_fn = torch.nn.BCEWithLogitsLoss(pos_weight=pos_weight)
            elif task == "multiclass":
                logits_net = net[:-1]  # the same layers without the final softmax
                y_all = torch.from_numpy(y.astype(np.int64))
                loss_fn = torch.nn.CrossEntropyLoss()
            else:
                assert target is not None
                logits_net = net  # no output activation: the standardised label
                standardised = (y - target["mean"]) / target["scale"]
                y_all = torch.from_numpy(standardised.astype(np.float32))
                loss_fn = torch.nn.MSELoss()
            optimizer = adamw_optimizer(
                net, learning_rate=self.learning_rate, weight_decay=self.weight_decay
            )
            net.train()
            for epoch, step, rows in shuffled_batches(
                n, batch_size=self.batch_size, epochs=self.epochs, generator=generator
            ):
                loss, value = batch_loss(loss_fn, logits_net(x_all[rows]), y_all[rows], task=task)
                if not math.isfinite(value):
                    raise TrainingError(
                        f"torch training diverged: the loss is {value} at epoch "
                        f"{epoch + 1}/{self.epochs}, step {step + 1}/{steps_per_epoch} with "
                        f"learning_rate={self.learning_rate!r}; rule: the training loss "
                        f"must stay finite; fix: lower learning_rate (e.g. "
                        f"{self.learning_rate / 10:g}) or check the features for extreme "
                        f"values"
                    )
                optimizer.zero_grad(set_to_none=True)
                try:
                    loss.backward()
                    optimizer.step()
                except RuntimeError as exc:  # e.g. an update overflowing float32
                    raise TrainingError(
                        f"torch training failed at epoch {epoch + 1}/{self.epochs}, step "
                        f"{step + 1}/{steps_per_epoch} with learning_rate="
                        f"{self.learning_rate!r}: {exc}; rule: optimiser steps must stay "
                        f"representable in float32; fix: lower learning_rate"
                    ) from exc
            net.eval()
            for name, tensor in net.state_dict().items():
                if not bool(torch.isfinite(tensor).all()):
                    raise TrainingError(
                        f"torch training produced non-finite weights in {name!r} after "
                        f"{self.epochs} epochs with learning_rate={self.learning_rate!r}; rule: "
                        f"weights must be finite; fix: lower learning_rate"
                    )
        weights = safetensors_bytes(net)
        return TorchModel(weights=weights, architecture=architecture, preprocessor=preprocessor)


class TorchModel(TrainedModel):
    """A torch multilayer perceptron with its preprocessing.

    The network maps the float32 matrix of :meth:`preprocess` to float32 ``(n, width)``: the
    probability of label 1 (binary), the class probabilities (multiclass) or the predicted
    value in label units (regression); :meth:`predict` returns it as float64, flattened
    unless multiclass.
    """

    kind: ClassVar[str] = "torch"
    weights_file: ClassVar[str] = TORCH_WEIGHTS_FILE

    def __init__(
        self,
        *,
        weights: bytes,
        architecture: Mapping[str, Any],
        preprocessor: Preprocessing,
        torchscript: bytes | None = None,
    ) -> None:
        """Builds the network and loads its weights with safetensors.

        Args:
            weights: Content of ``weights.safetensors``.
            architecture: Content of ``architecture.json``, parsed.
            preprocessor: The preprocessing fitted with it.
            torchscript: Content of ``model.torchscript.pt`` when known; generated on demand
                otherwise.

        Raises:
            ArtifactIntegrityError: When the files do not describe one consistent network.
        """
        import torch
        from safetensors.torch import load as load_safetensors

        super().__init__(preprocessor=preprocessor)
        check_preprocessing_kind(preprocessor, self.kind)
        arch = check_architecture(
            architecture,
            input_dim=preprocessor.input_dim,
            task=preprocessor.task,
            output_dim=preprocessor.output_width,
        )
        try:
            state = load_safetensors(weights)
        except Exception as exc:  # safetensors raises its own SafetensorError
            raise ArtifactIntegrityError(
                f"{TORCH_WEIGHTS_FILE} ({len(weights)} bytes) is not a readable safetensors "
                f"file: {exc}; rule: weights are stored as safetensors; fix: restore the file "
                f"from the registry"
            ) from exc
        net = build_network(arch, generator=None)
        try:
            net.load_state_dict(state, strict=True)
        except RuntimeError as exc:
            raise ArtifactIntegrityError(
                f"{TORCH_WEIGHTS_FILE} does not fit {TORCH_ARCHITECTURE_FILE} "
                f"(hidden_sizes={arch['hidden_sizes']}): {exc}; rule: both files come from one "
                f"fit; fix: load the files of one model version together"
            ) from exc
        for name, tensor in state.items():
            if tensor.dtype != torch.float32 or not bool(torch.isfinite(tensor).all()):
                raise ArtifactIntegrityError(
                    f"{TORCH_WEIGHTS_FILE} tensor {name!r} is {tensor.dtype} or non-finite; "
                    f"rule: weights are finite float32; fix: restore the file from the registry"
                )
        net.eval()
        net.requires_grad_(False)
        self._net = net
        self._weights = bytes(weights)
        self._architecture = arch
        self._torchscript = torchscript

    def _weights_bytes(self) -> bytes:
        return self._weights

    def _predict_matrix(self, x: Float32Matrix) -> Float64Array:
        import torch

        with torch.inference_mode():
            out = self._net(torch.from_numpy(x))
            target = self._architecture.get("target")
            if target is not None:  # regression: back to label units, as the TorchScript does
                out = out * float(target["scale"]) + float(target["mean"])
        if self.task == "multiclass":
            return out.numpy().astype(np.float64)
        return out.numpy().astype(np.float64).reshape(-1)

    @property
    def architecture(self) -> dict[str, Any]:
        """A copy of the network description (the content of ``architecture.json``)."""
        return json.loads(json_bytes(self._architecture))

    def torchscript(self) -> bytes:
        """The TorchScript export of the scoring graph (float32 ``(n, d)`` -> ``(n, width)``).

        Generated on first use with ``torch.jit.script`` (deprecated in torch 2.13, its
        warnings are silenced here) and stripped of debug records, so the bytes depend on the
        weights and the torch version only.

        Returns:
            Content of ``model.torchscript.pt``.

        Raises:
            TrainingError: When this torch build cannot export TorchScript.
        """
        if self._torchscript is None:
            self._torchscript = torchscript_bytes(self._net, self._architecture)
        return self._torchscript

    def files(self) -> dict[str, bytes]:
        """``weights.safetensors``, ``model.torchscript.pt``, ``preprocessing.json`` and
        ``architecture.json``.

        Returns:
            A new dict of file name to bytes.
        """
        return {
            TORCH_WEIGHTS_FILE: self._weights,
            TORCH_SCRIPT_FILE: self.torchscript(),
            PREPROCESSING_FILE: self._preprocessor.to_bytes(),
            TORCH_ARCHITECTURE_FILE: json_bytes(self._architecture),
        }

    @classmethod
    def _from_files(cls, files: Mapping[str, bytes]) -> TorchModel:
        found = require_files(
            files, [TORCH_WEIGHTS_FILE, PREPROCESSING_FILE, TORCH_ARCHITECTURE_FILE], kind=cls.kind
        )
        preprocessor = Preprocessing.from_bytes(found[PREPROCESSING_FILE])
        architecture = parse_json(found[TORCH_ARCHITECTURE_FILE], name=TORCH_ARCHITECTURE_FILE)
        torchscript = files.get(TORCH_SCRIPT_FILE)
        return cls(
            weights=found[TORCH_WEIGHTS_FILE],
            architecture=architecture,
            preprocessor=preprocessor,
            torchscript=None if torchscript is None else bytes(torchscript),
        )
