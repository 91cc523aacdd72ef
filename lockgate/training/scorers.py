"""The TorchScript export of a torch MLP: scoring classes whose type names never change.

:func:`torchscript_bytes` scripts the scoring graph (layers held in tensor lists, the head of
the model's task) and rewrites the archive without its ``*.debug_pkl`` records, which embed
absolute source paths of the installation, so its bytes depend on the weights and the torch
version only.

The archive names each scoring class by its TorchScript qualified name (its code is stored
as ``code/__torch__/lockgate/trainers.py``). That name is pinned with torch's
``_jit_override_qualname`` to the one lockgate has always written
(``__torch__.lockgate.trainers._Scorer``, ``..._SoftmaxScorer``, ``..._AffineScorer``), so
moving this module does not change the bytes (nor the version ids) of torch models.
torch is imported inside functions only.
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from lockgate.errors import TrainingError

if TYPE_CHECKING:
    import torch

__all__ = ["SCORER_QUALIFIED_NAMES", "torchscript_bytes"]

SCORER_QUALIFIED_NAMES: dict[str, str] = {
    "binary": "__torch__.lockgate.trainers._Scorer",
    "multiclass": "__torch__.lockgate.trainers._SoftmaxScorer",
    "regression": "__torch__.lockgate.trainers._AffineScorer",
}
"""TorchScript type name of the scoring class of each task: the archives' bytes depend on it."""


_SCORER_CLASS: Any = None
_TASK_SCORER_CLASSES: dict[str, Any] = {}


def _scorer_class() -> Any:
    """The TorchScript scoring module class of binary models, created once per process.

    Its TorchScript type (``__torch__.lockgate.trainers._Scorer``, pinned with
    ``_jit_override_qualname``: see the module docstring) is the same for every model:
    the layers are held in tensor lists, not as submodules whose types vary with their shapes.
    ``torch.jit.script`` therefore reuses one compiled type and never mangles its name
    (``___torch_mangle_N``), which for ``nn.Sequential``/``nn.Linear`` depends on what else the
    process compiled before and would make the bytes differ between processes.
    """
    global _SCORER_CLASS
    if _SCORER_CLASS is not None:
        return _SCORER_CLASS
    import torch

    class _Scorer(torch.nn.Module):
        """Float32 ``(n, d)`` -> probability ``(n, 1)``; the same ops as the eager network."""

        def __init__(self, weights: list[torch.Tensor], biases: list[torch.Tensor]) -> None:
            super().__init__()
            self.weights = weights
            self.biases = biases

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            h = x
            n = len(self.weights)
            for i in range(n):
                h = torch.nn.functional.linear(h, self.weights[i], self.biases[i])
                if i < n - 1:
                    h = torch.relu(h)
            return torch.sigmoid(h)

    _Scorer.__qualname__ = "_Scorer"
    _Scorer._jit_override_qualname = SCORER_QUALIFIED_NAMES["binary"]  # type: ignore[attr-defined]
    _SCORER_CLASS = _Scorer
    return _SCORER_CLASS


def _task_scorer_class(task: str) -> Any:
    """The TorchScript scoring module class of multiclass or regression models.

    Separate classes (``_SoftmaxScorer``, ``_AffineScorer``), created once per process like
    :func:`_scorer_class`, so the binary ``_Scorer`` and its archives stay exactly as they were.
    """
    if task in _TASK_SCORER_CLASSES:
        return _TASK_SCORER_CLASSES[task]
    import torch

    class _SoftmaxScorer(torch.nn.Module):
        """Float32 ``(n, d)`` -> class probabilities ``(n, k)``; the eager network's ops."""

        def __init__(self, weights: list[torch.Tensor], biases: list[torch.Tensor]) -> None:
            super().__init__()
            self.weights = weights
            self.biases = biases

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            h = x
            n = len(self.weights)
            for i in range(n):
                h = torch.nn.functional.linear(h, self.weights[i], self.biases[i])
                if i < n - 1:
                    h = torch.relu(h)
            return torch.softmax(h, dim=1)

    class _AffineScorer(torch.nn.Module):
        """Float32 ``(n, d)`` -> value in label units ``(n, 1)``: ``linear * scale + mean``."""

        def __init__(
            self,
            weights: list[torch.Tensor],
            biases: list[torch.Tensor],
            scale: float,
            mean: float,
        ) -> None:
            super().__init__()
            self.weights = weights
            self.biases = biases
            self.scale = scale
            self.mean = mean

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            h = x
            n = len(self.weights)
            for i in range(n):
                h = torch.nn.functional.linear(h, self.weights[i], self.biases[i])
                if i < n - 1:
                    h = torch.relu(h)
            return h * self.scale + self.mean

    _SoftmaxScorer.__qualname__ = "_SoftmaxScorer"
    _AffineScorer.__qualname__ = "_AffineScorer"
    _SoftmaxScorer._jit_override_qualname = SCORER_QUALIFIED_NAMES["multiclass"]  # type: ignore[attr-defined]
    _AffineScorer._jit_override_qualname = SCORER_QUALIFIED_NAMES["regression"]  # type: ignore[attr-defined]
    _TASK_SCORER_CLASSES["multiclass"] = _SoftmaxScorer
    _TASK_SCORER_CLASSES["regression"] = _AffineScorer
    return _TASK_SCORER_CLASSES[task]


def torchscript_bytes(net: torch.nn.Sequential, architecture: Mapping[str, Any]) -> bytes:
    """TorchScript archive of ``net``'s scoring graph, without debug records.

    The debug records (``*.debug_pkl``) hold absolute source paths of the installation; the
    archive is rewritten without them, so its bytes depend on the weights and the torch
    version only.
    """
    import torch

    linears = [module for module in net if isinstance(module, torch.nn.Linear)]
    weights = [layer.weight.detach().clone() for layer in linears]
    biases = [layer.bias.detach().clone() for layer in linears]
    task = architecture.get("task", "binary")
    if task == "binary":
        scorer = _scorer_class()(weights, biases)
    elif task == "multiclass":
        scorer = _task_scorer_class(task)(weights, biases)
    else:
        target = architecture["target"]
        scorer = _task_scorer_class(task)(
            weights, biases, float(target["scale"]), float(target["mean"])
        )
    scorer.eval()
    try:
        with warnings.catch_warnings():
            # torch.jit.script/save are deprecated in favour of torch.export (torch 2.13 warns);
            # Triton's PyTorch backend still loads TorchScript.
            warnings.simplefilter("ignore", DeprecationWarning)
            warnings.simplefilter("ignore", FutureWarning)
            scripted = torch.jit.script(scorer)
            buffer = io.BytesIO()
            torch.jit.save(scripted, buffer)
    except Exception as exc:
        raise TrainingError(
            f"TorchScript export failed with torch {torch.__version__}: {exc}; rule: torch "
            f"models ship a TorchScript file for Triton; fix: use a torch version with "
            f"torch.jit (lockgate pins 2.13.0)"
        ) from exc
    reader = torch._C.PyTorchFileReader(io.BytesIO(buffer.getvalue()))
    out = io.BytesIO()
    writer = torch._C.PyTorchFileWriter(out)
    version = int(bytes(reader.get_record("version")).decode().strip())
    writer.set_min_version(version)
    for name in reader.get_all_records():
        # The writer adds "version" and ".data/serialization_id" (a content hash) itself.
        if name.endswith(".debug_pkl") or name in {"version", ".data/version"}:
            continue
        if name == ".data/serialization_id":
            continue
        record = bytes(reader.get_record(name))
        writer.write_record(name, record, len(record))
    writer.write_end_of_file()
    return out.getvalue()
