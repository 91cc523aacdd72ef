"""The multilayer perceptron of :class:`~lockgate.training.torch_trainer.TorchTrainer`.

``architecture.json`` (:func:`mlp_architecture`, checked on load by
:func:`check_architecture`), the network built from it with a seeded generator
(:func:`build_network`), its weights as safetensors with fixed metadata
(:func:`safetensors_bytes`), and what both torch trainers (this one and the torch-module
trainer) train with: the deterministic torch settings (:func:`deterministic_torch`), the
optimiser (:func:`adamw_optimizer`), the seeded minibatch order (:func:`shuffled_batches`) and
the loss of a batch (:func:`batch_loss`). torch is imported inside functions only.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from lockgate.errors import ArtifactIntegrityError
from lockgate.tasks.catalog import Task
from lockgate.training.arrays import Float64Array
from lockgate.training.model_files import (
    PREPROCESSING_FILE,
    TORCH_ARCHITECTURE_FILE,
    TORCH_SCRIPT_FILE,
)

if TYPE_CHECKING:
    import torch

__all__ = [
    "adamw_optimizer",
    "batch_loss",
    "build_network",
    "check_architecture",
    "deterministic_torch",
    "mlp_architecture",
    "safetensors_bytes",
    "shuffled_batches",
    "target_standardization",
]

_ARCHITECTURE_FORMAT = "lockgate.torch-mlp/1"


@contextmanager
def deterministic_torch(*, num_threads: int) -> Iterator[None]:
    """Deterministic algorithms and a fixed thread count, both restored on exit.

    These are process-wide torch settings: other threads using torch meanwhile see them too.
    """
    import torch

    previous_threads = torch.get_num_threads()
    previous_deterministic = torch.are_deterministic_algorithms_enabled()
    previous_warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    torch.set_num_threads(num_threads)
    torch.use_deterministic_algorithms(True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(previous_deterministic, warn_only=previous_warn_only)
        torch.set_num_threads(previous_threads)


_OUTPUT_ACTIVATIONS: dict[str, str] = {
    "binary": "sigmoid",
    "multiclass": "softmax",
    "regression": "affine",
}


def adamw_optimizer(
    net: torch.nn.Module, *, learning_rate: float, weight_decay: float
) -> torch.optim.Optimizer:
    """AdamW over ``net``'s parameters with the per-tensor update (``foreach=False``)."""
    import torch

    return torch.optim.AdamW(
        net.parameters(),
        lr=learning_rate,
        weight_decay=weight_decay,
        foreach=False,
    )


def shuffled_batches(
    n: int, *, batch_size: int, epochs: int, generator: torch.Generator
) -> Iterator[tuple[int, int, torch.Tensor]]:
    """The minibatches of ``epochs`` passes over ``n`` rows, in a seeded order.

    Each epoch draws a new ``torch.randperm(n)`` from ``generator`` and cuts it into
    ``ceil(n / batch_size)`` batches.

    Yields:
        ``(epoch, step, rows)``: epoch and step counted from 0, and the row indices of the batch.
    """
    import torch

    steps = math.ceil(n / batch_size)
    for epoch in range(epochs):
        order = torch.randperm(n, generator=generator)
        for step in range(steps):
            yield epoch, step, order[step * batch_size : (step + 1) * batch_size]


def batch_loss(
    loss_fn: torch.nn.Module, raw: torch.Tensor, target: torch.Tensor, *, task: Task
) -> tuple[torch.Tensor, float]:
    """The loss of a batch's raw outputs ``(n, width)`` (squeezed to ``(n,)`` unless multiclass).

    Returns:
        The loss tensor (to back-propagate) and its value as a float.
    """
    if task != "multiclass":
        raw = raw.squeeze(1)
    loss = loss_fn(raw, target)
    return loss, float(loss.detach())


def mlp_architecture(
    input_dim: int,
    hidden_sizes: Sequence[int],
    *,
    task: Task = "binary",
    output_dim: int = 1,
    target: Mapping[str, float] | None = None,
) -> dict[str, Any]:
    """The ``architecture.json`` content for an MLP with the head of ``task``.

    A binary architecture has exactly the keys it had before tasks existed (its bytes, and so
    the lock records of binary models, are unchanged); the other tasks add ``task`` and, for
    regression, ``target`` (``mean`` and ``scale`` of the training label: the network's output
    is ``linear * scale + mean``).
    """
    sizes = [input_dim, *hidden_sizes, output_dim]
    layers = [
        {
            "weight": f"{2 * i}.weight",
            "bias": f"{2 * i}.bias",
            "in_features": sizes[i],
            "out_features": sizes[i + 1],
        }
        for i in range(len(sizes) - 1)
    ]
    meaning = {
        "binary": "probability of label 1",
        "multiclass": f"probability of each class, in the order of {PREPROCESSING_FILE}'s classes",
        "regression": "predicted label value (linear output * target.scale + target.mean)",
    }[task]
    architecture: dict[str, Any] = {
        "format": _ARCHITECTURE_FORMAT,
        "input_dim": input_dim,
        "hidden_sizes": list(hidden_sizes),
        "activation": "relu",
        "output_activation": _OUTPUT_ACTIVATIONS[task],
        "dtype": "float32",
        "layers": layers,
        "torchscript": {
            "file": TORCH_SCRIPT_FILE,
            "input": {"name": "INPUT__0", "dtype": "float32", "shape": [-1, input_dim]},
            "output": {"name": "OUTPUT__0", "dtype": "float32", "shape": [-1, output_dim]},
            "output_meaning": meaning,
        },
    }
    if task != "binary":
        architecture["task"] = task
    if task == "regression":
        if target is None:
            raise ValueError("a regression architecture needs the target mean and scale")
        architecture["target"] = {"mean": float(target["mean"]), "scale": float(target["scale"])}
    return architecture


def target_standardization(y: Float64Array) -> dict[str, float]:
    """Mean and standard deviation of a regression label (order-independent sums)."""
    values = y.tolist()
    mean = math.fsum(values) / len(values)
    scale = math.sqrt(math.fsum((v - mean) ** 2 for v in values) / len(values))
    if not (math.isfinite(scale) and scale > 0.0):
        scale = 1.0
    return {"mean": float(mean), "scale": float(scale)}


def check_architecture(
    architecture: Mapping[str, Any], *, input_dim: int, task: Task, output_dim: int
) -> dict[str, Any]:
    try:
        if architecture["format"] != _ARCHITECTURE_FORMAT:
            raise ValueError(f"format {architecture['format']!r} is not {_ARCHITECTURE_FORMAT!r}")
        hidden = architecture["hidden_sizes"]
        if not all(isinstance(h, int) and not isinstance(h, bool) and h >= 1 for h in hidden):
            raise ValueError(f"hidden_sizes {hidden!r} are not positive ints")
        if architecture["input_dim"] != input_dim:
            raise ValueError(
                f"input_dim {architecture['input_dim']!r} differs from the {input_dim} columns "
                f"of {PREPROCESSING_FILE}"
            )
        if architecture.get("task", "binary") != task:
            raise ValueError(
                f"task {architecture.get('task', 'binary')!r} differs from task {task!r} of "
                f"{PREPROCESSING_FILE}"
            )
        target = None
        if task == "regression":
            target = architecture["target"]
            for key in ("mean", "scale"):
                value = target[key]
                if isinstance(value, bool) or not isinstance(value, int | float):
                    raise ValueError(f"target {key} {value!r} is not a number")
                if not math.isfinite(value) or (key == "scale" and value <= 0):
                    raise ValueError(f"target {key} {value!r} is not finite (and > 0 for scale)")
        expected = mlp_architecture(
            input_dim, hidden, task=task, output_dim=output_dim, target=target
        )
        if dict(architecture) != expected:
            raise ValueError("its fields differ from those of an MLP with these sizes")
    except (KeyError, TypeError, ValueError) as exc:
        raise ArtifactIntegrityError(
            f"{TORCH_ARCHITECTURE_FILE} is malformed ({type(exc).__name__}: {exc}); rule: it must "
            f"be the file lockgate wrote at fit time; fix: restore it from the registry"
        ) from exc
    return expected


def build_network(
    architecture: Mapping[str, Any], *, generator: torch.Generator | None
) -> torch.nn.Sequential:
    """``Linear -> ReLU -> ... -> Linear -> Sigmoid`` in float32 (binary).

    Multiclass ends in ``Softmax(dim=1)`` instead of the sigmoid, regression in the last
    ``Linear`` (its output is scaled back to label units by the caller and the TorchScript).

    With a generator the weights are initialised like ``torch.nn.Linear`` does by default
    (Kaiming-uniform), drawing from that generator only; the global RNG is left untouched.
    """
    import torch

    modules: list[torch.nn.Module] = []
    layers = architecture["layers"]
    with torch.random.fork_rng(devices=[]):  # Linear's own init draws from the global RNG
        for i, layer in enumerate(layers):
            linear = torch.nn.Linear(layer["in_features"], layer["out_features"])
            modules.append(linear)
            if i < len(layers) - 1:
                modules.append(torch.nn.ReLU())
    activation = architecture["output_activation"]
    if activation == "sigmoid":
        modules.append(torch.nn.Sigmoid())
    elif activation == "softmax":
        modules.append(torch.nn.Softmax(dim=1))
    net = torch.nn.Sequential(*modules)
    if generator is not None:
        with torch.no_grad():
            for module in net:
                if isinstance(module, torch.nn.Linear):
                    torch.nn.init.kaiming_uniform_(
                        module.weight, a=math.sqrt(5), generator=generator
                    )
                    bound = 1.0 / math.sqrt(module.in_features)
                    torch.nn.init.uniform_(module.bias, -bound, bound, generator=generator)
    return net


def safetensors_bytes(net: torch.nn.Module) -> bytes:
    """The network's state dict as safetensors bytes with fixed metadata."""
    from safetensors.torch import save as save_safetensors

    state = {name: t.detach().contiguous() for name, t in net.state_dict().items()}
    return bytes(save_safetensors(state, metadata={"format": "pt"}))
