"""User code for the trainer-protocol tests (importable by path, as user code must be).

Not a test module: a network for :class:`lockgate.TorchModuleTrainer`, a subclass of
:class:`lockgate.LightGBMTrainer` that changes behaviour, and a minimal custom trainer whose
model is stored as JSON.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, ClassVar, Literal

import numpy as np
import pandas as pd
import torch

from lockgate.training import (
    CustomModel,
    CustomTrainer,
    LightGBMModel,
    LightGBMTrainer,
    Preprocessing,
    prepare_training,
)


class TinyNet(torch.nn.Module):
    """``Linear -> ReLU -> Dropout -> Linear``: raw outputs ``(n, output_dim)``."""

    def __init__(self, input_dim: int, output_dim: int, hidden: int = 8, dropout: float = 0.1):
        super().__init__()
        self.body = torch.nn.Sequential(
            torch.nn.Linear(input_dim, hidden),
            torch.nn.ReLU(),
            torch.nn.Dropout(dropout),
            torch.nn.Linear(hidden, output_dim),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class ShallowLightGBMTrainer(LightGBMTrainer):
    """A LightGBM subclass that changes behaviour: it always trains 3 rounds, whatever the spec."""

    def fit(self, frame: pd.DataFrame, **kwargs: Any) -> LightGBMModel:
        """:meth:`LightGBMTrainer.fit` with ``num_boost_round=3``."""
        shallow = LightGBMTrainer(**{**self.model_dump(), "num_boost_round": 3})
        return shallow.fit(frame, **kwargs)


class BiasModel(CustomModel):
    """Predicts the training label rate for every row (binary only); stored as JSON."""

    kind: ClassVar[str] = "bias"
    weights_file: ClassVar[str] = "bias.json"

    def __init__(self, *, rate: float, preprocessing: Preprocessing) -> None:
        super().__init__(preprocessing=preprocessing)
        self.rate = rate

    def model_files(self) -> dict[str, bytes]:
        return {"bias.json": json.dumps({"rate": self.rate}).encode()}

    @classmethod
    def from_model_files(
        cls, files: Mapping[str, bytes], *, preprocessing: Preprocessing
    ) -> BiasModel:
        return cls(rate=float(json.loads(files["bias.json"])["rate"]), preprocessing=preprocessing)

    def predict_matrix(self, x: np.ndarray) -> np.ndarray:
        return np.full(x.shape[0], self.rate, dtype=np.float64)


class BiasTrainer(CustomTrainer):
    """A custom trainer: the label rate, shrunk towards 0.5 by ``prior_rows`` pseudo-rows."""

    kind: Literal["bias"] = "bias"
    prior_rows: int = 0

    def fit(self, frame: pd.DataFrame, **kwargs: Any) -> BiasModel:
        """``features``, ``label`` and ``task`` go to :func:`prepare_training` as given."""
        data = prepare_training(frame, kind=self.kind, **kwargs)
        rate = (float(data.y.sum()) + 0.5 * self.prior_rows) / (len(data.y) + self.prior_rows)
        return BiasModel(rate=rate, preprocessing=data.preprocessing)


class WrongKindTrainer(CustomTrainer):
    """Returns a model of another kind: refused when fit returns."""

    kind: Literal["wrong"] = "wrong"

    def fit(self, frame: pd.DataFrame, **kwargs: Any) -> BiasModel:
        """:meth:`BiasTrainer.fit`: its model is of kind ``bias``."""
        return BiasTrainer().fit(frame, **kwargs)
