"""Pure builders of Triton model configurations and of the python-backend ``model.py``.

Nothing here touches the disk or the network: every function returns text that
:mod:`lockgate.serving.model_repository` writes into a model repository and verifies before each load.

The serving interface (one per lockgate model version, Triton model ``<pipeline>-<version>``
with the single Triton version ``1``), the same on every target::

    input   INPUT__0   TYPE_FP32  dims [F]   the pipeline's wire matrix, batch implicit
    output  OUTPUT__0  TYPE_FP32  dims [W]   TrainedModel.predict, one row per input row

The output width ``W`` follows the model's task (:attr:`lockgate.training.TrainedModel.task`,
``output_width``): ``[1]`` for ``"binary"`` (the probability of label 1) and ``"regression"``
(the predicted value in label units), ``[k]`` for ``"multiclass"`` (the class probabilities in
the order of ``TrainedModel.classes``). The builders take ``task`` and ``output_width``
(binary and ``1`` by default, so binary configs are what they were before tasks existed);
:func:`lockgate.training.model_output` reads both from a version's ``preprocessing.json``.

Clients send **raw** feature values in the pipeline's wire format (:mod:`lockgate.serving.wire`: one
column per feature of the feature service, numeric values as they are, categorical values as
``code24`` of their string, NaN for missing; build it with :func:`lockgate.serving.wire.encode`). The
matrix is the same for every version of the pipeline, so a canary gateway can route a request
to the champion or the challenger. Each served version decodes it with its own vocabulary
(``1/wire.json`` next to the model files) and scores it with
:meth:`lockgate.training.TrainedModel.predict`, the single source of truth for
preprocessing. The output is FP32 on every target: compare it with ``predict`` (float64,
reshaped to ``(n, W)``) with a tolerance (1e-5 is ample for probabilities, whose float32
rounding is below 6e-8; a regression value needs a tolerance relative to its magnitude).

Targets:

* ``cpu`` (:func:`cpu_config`): the python backend, the only backend in the
  ``nvidia-pytriton`` wheel. ``1/model.py`` (:func:`python_model_source`, one file for both
  kinds) imports lockgate in the stub, loads ``TrainedModel.load(kind, files)`` from the
  version folder plus ``wire.json``, and decodes and scores the whole dynamic batch.
* ``gpu`` (:func:`gpu_config`) for the NGC Triton image: FIL (LightGBM) and
  ``pytorch_libtorch`` (torch) take the model's own **preprocessed** matrix and cannot decode
  the wire, so the served model is an **ensemble** of three Triton models:

  - ``<name>-wire``: python backend, ``KIND_CPU``; the same ``model.py`` with the config
    parameter ``lockgate_output: preprocessed``: wire ``INPUT__0 [F]`` ->
    ``TrainedModel.preprocess(decoded)`` as ``PREPROCESSED [d]``.
  - ``<name>-model``: FIL or libtorch on ``KIND_GPU``, ``[d]`` -> ``[W]``. **FIL hard-codes its
    tensor names** to ``input__0`` / ``output__0`` (lower case; ``src/model.h`` of
    triton-inference-server/fil_backend calls ``get_input(batch, "input__0")``):
    :data:`FIL_INPUT_NAME` / :data:`FIL_OUTPUT_NAME`; they are internal to the ensemble.
  - ``<name>``: ``platform: "ensemble"``, ``INPUT__0 [F]`` -> ``OUTPUT__0 [W]``; its
    ``ensemble_scheduling`` maps ``INPUT__0`` -> wire step -> ``preprocessed`` -> model step
    -> ``OUTPUT__0``. Loading ``<name>`` in explicit mode loads the two composing models.

  The NGC image's python needs lockgate and its model libraries installed (and on
  ``PYTHONPATH``) for the ``-wire`` step. Not run in CI here (no FIL / libtorch backend in the
  wheel); the configs are validated against Triton's ``ModelConfig`` schema in the unit tests.

Fault drills: :func:`cpu_config` accepts ``fault`` (``"sleep_ms=80"``, ``"error_rate=0.5"``,
combinable as ``"sleep_ms=20,error_rate=0.1,seed=3"``); it becomes the config parameter
``lockgate_fault`` that ``model.py`` reads in ``initialize``. ``sleep_ms`` delays every
``execute`` call (one dynamic batch); ``error_rate`` answers each request with a
``TritonError`` with that probability (a seeded ``random.Random``, seed 0 unless given). It
exists for canary tests and chaos drills only; production folders are written without it.
Faults start after the warmup samples (Triton runs them through ``execute`` before the model is
ready; a failed warmup would fail the load). The warmup sample is a zero matrix of width ``F``:
it decodes to numeric 0 and categorical code 0, which no vocabulary string is expected to have
(unknown category).

The ``config.pbtxt`` reader is :mod:`~lockgate.serving.pbtxt` and the ``model.py`` source
:mod:`~lockgate.serving.triton_model_template`; :func:`parse_config` is re-exported here.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from lockgate.errors import SpecError
from lockgate.serving.pbtxt import parse_config
from lockgate.serving.triton_model_template import PYTHON_MODEL_TEMPLATE
from lockgate.training import TASKS

__all__ = [
    "FAULT_KEYS",
    "FIL_INPUT_NAME",
    "FIL_OUTPUT_NAME",
    "INPUT_NAME",
    "MODEL_KINDS",
    "OUTPUT_NAME",
    "PREPROCESSED_NAME",
    "TASKS",
    "TRITON_VERSION",
    "check_model_kind",
    "cpu_config",
    "gpu_component_names",
    "gpu_config",
    "model_io_names",
    "parse_config",
    "parse_fault",
    "python_model_source",
    "split_triton_model_name",
    "triton_model_name",
]

INPUT_NAME = "INPUT__0"
"""Name of the single input tensor (float32 wire matrix, ``[batch, F]``)."""
OUTPUT_NAME = "OUTPUT__0"
"""Name of the single output tensor (float32 ``[batch, W]``: ``TrainedModel.predict``)."""
FIL_INPUT_NAME = "input__0"
"""The input name the FIL backend requires (it is not configurable)."""
FIL_OUTPUT_NAME = "output__0"
"""The output name the FIL backend requires (it is not configurable)."""
PREPROCESSED_NAME = "PREPROCESSED"
"""Output of the GPU ensemble's ``-wire`` step: the model's float32 input ``[batch, d]``."""
TRITON_VERSION = "1"
"""The single Triton version directory of every lockgate model."""
MODEL_KINDS = ("lightgbm", "torch")
"""The built-in model kinds (GPU ensembles exist for these; any other valid kind, e.g. a
:class:`lockgate.training.CustomModel`'s ``"sklearn"``, is served on CPU by the python backend)."""
FAULT_KEYS = ("error_rate", "seed", "sleep_ms")
"""Keys allowed in a fault-drill spec."""

_PIPELINE = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
_KIND = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
_VERSION = re.compile(r"^[A-Za-z0-9_]{1,64}$")
_MAX_SLEEP_MS = 60_000
_QUEUE_DELAY_US = 100
_LIBTORCH_FILE = "model.pt"
_WIRE_SUFFIX = "-wire"
_MODEL_SUFFIX = "-model"
_ENSEMBLE_TENSOR = "preprocessed"


def triton_model_name(pipeline: str, version: str) -> str:
    """The Triton model name of one lockgate model version: ``<pipeline>-<version>``.

    Args:
        pipeline: Pipeline name (``[a-z][a-z0-9_]*``, as in the pipeline spec).
        version: Model version id (letters, digits, ``_``).

    Returns:
        For example ``"fraud_lgbm-1df59d62da45"``.

    Raises:
        SpecError: When a part has characters that would make the name ambiguous or unsafe as
            a folder name.

    Example:
        >>> triton_model_name("fraud_lgbm", "1df59d62da45")
        'fraud_lgbm-1df59d62da45'
    """
    if not isinstance(pipeline, str) or not _PIPELINE.match(pipeline):
        raise SpecError(
            f"pipeline name {pipeline!r} cannot name a Triton model; rule: "
            f"{_PIPELINE.pattern} (no '-', which separates pipeline and version); fix: use the "
            "pipeline name from its spec"
        )
    if not isinstance(version, str) or not _VERSION.match(version):
        raise SpecError(
            f"model version {version!r} cannot name a Triton model; rule: {_VERSION.pattern}; "
            "fix: pass a version id from the registry (`lockgate versions <pipeline>`)"
        )
    return f"{pipeline}-{version}"


def split_triton_model_name(model_name: str) -> tuple[str, str]:
    """Inverse of :func:`triton_model_name`.

    Args:
        model_name: A name built by :func:`triton_model_name`.

    Returns:
        ``(pipeline, version)``.

    Raises:
        SpecError: When the name was not built by :func:`triton_model_name`.

    Example:
        >>> split_triton_model_name("fraud_lgbm-1df59d62da45")
        ('fraud_lgbm', '1df59d62da45')
    """
    pipeline, sep, version = str(model_name).partition("-")
    if not sep:
        raise SpecError(
            f"Triton model name {model_name!r} has no '-'; rule: lockgate names models "
            "'<pipeline>-<version>'; fix: build the name with triton_model_name()"
        )
    if triton_model_name(pipeline, version) != model_name:  # validates both parts
        raise SpecError(f"Triton model name {model_name!r} is not '<pipeline>-<version>'")
    return pipeline, version


def model_io_names(*, kind: str, target: str) -> tuple[str, str]:
    """The (input, output) tensor names a generated model uses.

    Args:
        kind: ``"lightgbm"`` or ``"torch"``.
        target: ``"cpu"`` or ``"gpu"``.

    Returns:
        ``(INPUT_NAME, OUTPUT_NAME)`` on every target: on GPU the served model is the
        ensemble, and FIL's fixed lower-case names stay inside it.
    """
    check_model_kind(kind, target=target)
    return INPUT_NAME, OUTPUT_NAME


def parse_fault(text: str | None) -> dict[str, float | int]:
    """Parses a fault-drill spec such as ``"sleep_ms=80"`` or ``"error_rate=0.5,seed=1"``.

    Args:
        text: Comma-separated ``key=value`` pairs with keys from :data:`FAULT_KEYS`;
            None or ``""`` for no fault.

    Returns:
        The parsed values (``sleep_ms`` and ``seed`` as int, ``error_rate`` as float).

    Raises:
        SpecError: For an unknown key, a malformed pair or a value out of range.

    Example:
        >>> parse_fault("sleep_ms=80,error_rate=0.25")
        {'sleep_ms': 80, 'error_rate': 0.25}
    """
    if text is None or text == "":
        return {}
    if not isinstance(text, str):
        raise SpecError(
            f"fault {text!r} is a {type(text).__name__}; rule: a string like 'sleep_ms=80'; "
            "fix: pass the drill as text"
        )
    parsed: dict[str, float | int] = {}
    for part in text.split(","):
        key, sep, raw = part.strip().partition("=")
        if not sep or key not in FAULT_KEYS or key in parsed:
            raise SpecError(
                f"fault {text!r} has the part {part!r}; rule: comma-separated key=value pairs, "
                f"each key once, keys {list(FAULT_KEYS)}; fix: write e.g. 'sleep_ms=80' or "
                "'error_rate=0.5,seed=1'"
            )
        try:
            value: float | int = float(raw) if key == "error_rate" else int(raw)
        except ValueError:
            raise SpecError(
                f"fault value {key}={raw!r} is not a number; rule: sleep_ms and seed are "
                "integers, error_rate a float; fix: write e.g. 'sleep_ms=80'"
            ) from None
        if key == "sleep_ms" and not 0 <= value <= _MAX_SLEEP_MS:
            raise SpecError(
                f"fault sleep_ms={value} is out of range; rule: 0 <= sleep_ms <= "
                f"{_MAX_SLEEP_MS}; fix: choose a delay within a minute"
            )
        if key == "error_rate" and not 0.0 <= value <= 1.0:
            raise SpecError(
                f"fault error_rate={value} is out of range; rule: 0 <= error_rate <= 1; fix: "
                "give a probability"
            )
        parsed[key] = value
    return parsed


def cpu_config(
    *,
    model_name: str,
    kind: str,
    wire_width: int,
    task: str = "binary",
    output_width: int = 1,
    max_batch_size: int = 1024,
    instances: int = 1,
    warmup: bool = True,
    fault: str | None = None,
) -> str:
    """The ``config.pbtxt`` of a python-backend model on CPU: wire ``[F]`` -> prediction ``[W]``.

    ``model.py`` checks at load time that ``W`` is the loaded model's ``output_width``.

    Args:
        model_name: The Triton model name (:func:`triton_model_name`).
        kind: The model kind (the parameter ``lockgate_kind`` ``model.py`` reads): built-in
            ``"lightgbm"`` / ``"torch"`` or a custom kind.
        wire_width: ``F``, the width of the pipeline's wire matrix
            (:attr:`lockgate.serving.wire.WireSchema.width`).
        task: The model's task, one of :data:`TASKS`.
        output_width: ``W``: 1 for ``"binary"`` and ``"regression"``, the number of classes
            (>= 2) for ``"multiclass"`` (:attr:`lockgate.training.TrainedModel.output_width`).
        max_batch_size: Largest batch Triton hands one ``execute`` call (> 0).
        instances: Model instances (``KIND_CPU`` stub processes).
        warmup: Add a one-row zero-data warmup sample, so the first real request is not slow.
        fault: A fault-drill spec (:func:`parse_fault`), for tests and chaos drills only.

    Returns:
        Protobuf text of a Triton ``ModelConfig``.

    Raises:
        SpecError: For an invalid argument.
    """
    _check_common(model_name, kind, wire_width, max_batch_size, instances, width_name="wire_width")
    _check_task_output(task, output_width)
    parse_fault(fault)
    parameters = {"lockgate_kind": kind}
    if fault:
        parameters["lockgate_fault"] = fault
    return _wire_model_config(
        model_name,
        wire_width=wire_width,
        output=(OUTPUT_NAME, output_width),
        max_batch_size=max_batch_size,
        instances=instances,
        warmup=warmup,
        parameters=parameters,
    )


def _wire_model_config(
    name: str,
    *,
    wire_width: int,
    output: tuple[str, int],
    max_batch_size: int,
    instances: int,
    warmup: bool,
    parameters: dict[str, str],
) -> str:
    """The config of a python-backend model on CPU that takes the wire matrix (``INPUT__0``,
    ``wire_width`` wide) and answers ``output`` (name, width)."""
    return _config_text(
        header=[f"name: {_quote(name)}", 'backend: "python"'],
        input_name=INPUT_NAME,
        input_width=wire_width,
        output_name=output[0],
        output_width=output[1],
        max_batch_size=max_batch_size,
        instance_group=[f"count: {instances}", "kind: KIND_CPU"],
        warmup=warmup,
        parameters=parameters,
    )


def gpu_component_names(model_name: str) -> tuple[str, str]:
    """The composing models of a GPU ensemble: ``(<name>-wire, <name>-model)``.

    Args:
        model_name: The served (ensemble) model name (:func:`triton_model_name`).

    Returns:
        The names of the python decode step and of the FIL / libtorch model.

    Raises:
        SpecError: When ``model_name`` was not built by :func:`triton_model_name`.

    Example:
        >>> gpu_component_names("fraud_lgbm-1df59d62da45")
        ('fraud_lgbm-1df59d62da45-wire', 'fraud_lgbm-1df59d62da45-model')
    """
    split_triton_model_name(model_name)
    return f"{model_name}{_WIRE_SUFFIX}", f"{model_name}{_MODEL_SUFFIX}"


def gpu_config(
    *,
    model_name: str,
    kind: str,
    wire_width: int,
    n_features: int,
    task: str = "binary",
    output_width: int = 1,
    max_batch_size: int = 1024,
    instances: int = 1,
    gpus: Sequence[int] = (0,),
    warmup: bool = True,
) -> dict[str, str]:
    """The three ``config.pbtxt`` of a model version for the NGC Triton image on GPU.

    ``<name>-wire`` (python backend, ``KIND_CPU``, ``instances * len(gpus)`` instances, the
    parameter ``lockgate_output: preprocessed``) decodes the wire and preprocesses: ``INPUT__0
    [F]`` -> ``PREPROCESSED [d]``. ``<name>-model`` runs the weights on ``KIND_GPU``:

    * LightGBM in the FIL backend: ``1/model.txt`` (LightGBM's text format under the file name
      FIL looks for, which is also the registry's name), ``model_type: lightgbm``,
      ``output_class: false`` and ``predict_proba: false``, so the output is the model's
      sigmoid-transformed score, one probability per row (``predict_proba: true`` would return
      two columns for a binary model, ``output_class: true`` class labels 0/1); ``threshold`` is
      only read for classifiers and kept at 0.5; ``storage_type: AUTO``. These are the parameter
      names of FIL up to Triton 25.08 (``output_class`` and ``storage_type`` still load in 25.09+
      with a deprecation warning). Tensor names are FIL's fixed ``input__0`` / ``output__0``.
      By task: ``"binary"`` as above, output ``[1]``; ``"multiclass"`` ``predict_proba: true``,
      output ``[k]``: FIL applies the model's softmax and returns one probability per class in
      LightGBM's class order (the order of ``TrainedModel.classes``); ``"regression"``
      ``output_class: false``, ``predict_proba: false``, output ``[1]``: the raw (identity
      transformed) prediction.
    * torch on the ``pytorch_libtorch`` platform from ``1/model.pt``: the registry's
      ``model.torchscript.pt`` under the file name libtorch loads by default. Its output is
      ``[1]`` (sigmoid, or the regression value in label units) or ``[k]`` (softmax).

    ``<name>`` is the ensemble clients call: ``INPUT__0 [F]`` -> ``OUTPUT__0 [W]`` on every
    kind, both steps pinned to version 1. Ensembles take no instance group, dynamic batching or
    warmup of their own; the composing models have them.

    Args:
        model_name: The served (ensemble) model name (:func:`triton_model_name`).
        kind: ``"lightgbm"`` or ``"torch"``.
        wire_width: ``F``, the width of the pipeline's wire matrix.
        n_features: ``d``, the width of the version's preprocessed matrix (``input_dim`` of
            ``preprocessing.json``).
        task: The model's task, one of :data:`TASKS`.
        output_width: ``W``: 1 for ``"binary"`` and ``"regression"``, the number of classes
            (>= 2) for ``"multiclass"``.
        max_batch_size: Largest batch per execution (> 0), the same for all three models.
        instances: Model instances per listed GPU.
        gpus: GPU indices for the ``KIND_GPU`` instance group (non-empty, distinct, >= 0).
        warmup: Add a one-row zero-data warmup sample to the composing models.

    Returns:
        Triton model name -> protobuf text of its ``ModelConfig``, in load order: ``-wire``,
        ``-model``, then the ensemble.

    Raises:
        SpecError: For an invalid argument.
    """
    _check_common(model_name, kind, wire_width, max_batch_size, instances, width_name="wire_width")
    check_model_kind(kind, target="gpu")
    _check_positive("n_features", n_features)
    _check_task_output(task, output_width)
    gpu_list = list(gpus) if not isinstance(gpus, str | bytes) else []
    if (
        not gpu_list
        or len(set(gpu_list)) != len(gpu_list)
        or not all(isinstance(g, int) and not isinstance(g, bool) and g >= 0 for g in gpu_list)
    ):
        raise SpecError(
            f"gpus {gpus!r} is invalid; rule: a non-empty sequence of distinct GPU indices >= 0; "
            "fix: pass e.g. gpus=(0,) or gpus=(0, 1)"
        )
    wire_name, inner_name = gpu_component_names(model_name)
    wire = _wire_model_config(
        wire_name,
        wire_width=wire_width,
        output=(PREPROCESSED_NAME, n_features),
        max_batch_size=max_batch_size,
        instances=instances * len(gpu_list),
        warmup=warmup,
        parameters={"lockgate_kind": kind, "lockgate_output": "preprocessed"},
    )
    if kind == "lightgbm":
        inner_input, inner_output = FIL_INPUT_NAME, FIL_OUTPUT_NAME
        header = [f"name: {_quote(inner_name)}", 'backend: "fil"']
        parameters = {
            "model_type": "lightgbm",
            "output_class": "false",
            "predict_proba": "true" if task == "multiclass" else "false",
            "threshold": "0.5",
            "storage_type": "AUTO",
            "lockgate_kind": kind,
        }
    else:
        inner_input, inner_output = INPUT_NAME, OUTPUT_NAME
        header = [
            f"name: {_quote(inner_name)}",
            'platform: "pytorch_libtorch"',
            f"default_model_filename: {_quote(_LIBTORCH_FILE)}",
        ]
        parameters = {"INFERENCE_MODE": "true", "lockgate_kind": kind}
    gpu_text = ", ".join(str(g) for g in gpu_list)
    inner = _config_text(
        header=header,
        input_name=inner_input,
        input_width=n_features,
        output_name=inner_output,
        output_width=output_width,
        max_batch_size=max_batch_size,
        instance_group=[f"count: {instances}", "kind: KIND_GPU", f"gpus: [ {gpu_text} ]"],
        warmup=warmup,
        parameters=parameters,
    )
    ensemble = _config_text(
        header=[f"name: {_quote(model_name)}", 'platform: "ensemble"'],
        input_name=INPUT_NAME,
        input_width=wire_width,
        output_name=OUTPUT_NAME,
        output_width=output_width,
        max_batch_size=max_batch_size,
        instance_group=None,
        warmup=False,
        parameters={"lockgate_kind": kind},
        ensemble=[
            (wire_name, {INPUT_NAME: INPUT_NAME}, {PREPROCESSED_NAME: _ENSEMBLE_TENSOR}),
            (inner_name, {inner_input: _ENSEMBLE_TENSOR}, {inner_output: OUTPUT_NAME}),
        ],
    )
    return {wire_name: wire, inner_name: inner, model_name: ensemble}


def python_model_source(kind: str | None = None) -> str:
    """Source of ``1/model.py`` for the python backend (both kinds, CPU and GPU ``-wire``).

    ``initialize`` puts ``PYTHONPATH``'s entries (with their ``.pth`` files, so an editable
    lockgate install resolves) on ``sys.path``, imports lockgate, loads
    ``TrainedModel.load(kind, files)`` from the files next to it (``kind`` is the config
    parameter ``lockgate_kind``) and ``wire.json``, and builds a
    :class:`lockgate.serving.wire.WireDecoder` from the model's own vocabularies (a vocabulary with a
    code24 collision fails the load). ``execute`` reads each request's ``INPUT__0`` through
    DLPack (``np.from_dlpack``: the stub's numpy bridge ``as_numpy()`` returns garbage under
    numpy 2), checks its shape and codes, decodes all valid requests of the dynamic batch at
    once and scores them with ``predict`` as ``[n, output_width]`` (or, with the parameter
    ``lockgate_output: preprocessed``, returns ``preprocess``), splits the result back and
    returns it as float32
    through ``pb_utils.Tensor.from_dlpack`` (``pb_utils.Tensor(name, ndarray)`` yields an empty
    tensor under numpy 2). A request that fails its checks, or a batch whose prediction raises,
    gets ``TritonError`` responses; the stub keeps serving. ``OMP_NUM_THREADS`` defaults to 1
    and torch runs one thread: one core per instance (OpenMP's default team makes single-row
    p99 ~10x worse); scale with instances.

    A custom kind (a :class:`lockgate.training.CustomModel`, e.g. ``"sklearn"``) is added to
    the file's ``MODEL_KINDS``; ``TrainedModel.load`` then imports the model class its
    ``lockgate_model.json`` names, so that class's package must be installed in the
    environment on the stub's ``PYTHONPATH``. Built-in kinds (and ``None``) give the bytes
    lockgate always wrote, so model folders written before custom kinds existed still verify.

    Args:
        kind: The version's model kind; None or a built-in kind for the shared source.

    Returns:
        Python source text; the same bytes for the same kind.

    Raises:
        SpecError: For an invalid kind.
    """
    kinds: tuple[str, ...] = MODEL_KINDS
    if kind is not None and check_model_kind(kind) not in MODEL_KINDS:
        kinds = (*MODEL_KINDS, kind)
    return (
        PYTHON_MODEL_TEMPLATE.replace("@INPUT@", INPUT_NAME)
        .replace("@FAULT_KEYS@", repr(FAULT_KEYS))
        .replace("@MODEL_KINDS@", repr(kinds))
    )


def check_model_kind(kind: str, *, target: str = "cpu") -> str:
    """Checks that a model kind can be served on ``target``.

    Args:
        kind: The lock record's trainer kind.
        target: ``"cpu"`` (python backend: every kind) or ``"gpu"`` (FIL / libtorch
            ensembles: the built-in kinds only).

    Returns:
        ``kind``.

    Raises:
        SpecError: For a malformed kind, or a custom kind on ``"gpu"``.

    Example:
        >>> check_model_kind("sklearn")
        'sklearn'
    """
    _check_kind(kind)
    _check_target(target)
    if target == "gpu" and kind not in MODEL_KINDS:
        raise SpecError(
            f"model kind {kind!r} has no GPU serving path; rule: GPU ensembles run FIL "
            f"(lightgbm) or libtorch (torch); custom kinds are served by the python backend on "
            f"CPU; fix: serve the pipeline with TritonTarget(device='cpu')"
        )
    return kind


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------


def _check_kind(kind: str) -> None:
    if not isinstance(kind, str) or not _KIND.match(kind):
        raise SpecError(
            f"model kind {kind!r} is unknown; rule: one of {list(MODEL_KINDS)} or a custom kind "
            "(lowercase letters, digits and '_', as a CustomTrainer declares it); fix: pass "
            "the lock record's trainer kind"
        )


def _check_target(target: str) -> None:
    if target not in ("cpu", "gpu"):
        raise SpecError(
            f"serving target {target!r} is unknown; rule: 'cpu' (python backend) or 'gpu' "
            "(FIL / libtorch in the NGC Triton image); fix: pass one of them"
        )


def _check_task_output(task: str, output_width: int) -> None:
    if task not in TASKS:
        raise SpecError(
            f"task {task!r} is unknown; rule: one of {list(TASKS)}; fix: pass the model's "
            "TrainedModel.task (lockgate.training.model_output reads it from preprocessing.json)"
        )
    _check_positive("output_width", output_width)
    if task == "multiclass" and output_width < 2:
        raise SpecError(
            f"output_width={output_width} for task='multiclass'; rule: one column per class, at "
            "least 2; fix: pass the model's output_width (len(TrainedModel.classes))"
        )
    if task != "multiclass" and output_width != 1:
        raise SpecError(
            f"output_width={output_width} for task={task!r}; rule: binary and regression models "
            "predict one value per row; fix: pass output_width=1"
        )


def _check_positive(name: str, value: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise SpecError(f"{name}={value!r} is invalid; rule: an integer > 0; fix: pass e.g. 1")


def _check_common(
    model_name: str,
    kind: str,
    width: int,
    max_batch_size: int,
    instances: int,
    *,
    width_name: str,
) -> None:
    split_triton_model_name(model_name)
    _check_kind(kind)
    _check_positive(width_name, width)
    _check_positive("max_batch_size", max_batch_size)
    _check_positive("instances", instances)


def _quote(value: str) -> str:
    escaped = value.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'


def _config_text(
    *,
    header: list[str],
    input_name: str,
    input_width: int,
    output_name: str,
    output_width: int,
    max_batch_size: int,
    instance_group: list[str] | None,
    warmup: bool,
    parameters: dict[str, str],
    ensemble: Sequence[tuple[str, dict[str, str], dict[str, str]]] = (),
) -> str:
    lines = [
        "# Generated by lockgate; verified before every load: do not edit.",
        *header,
        f"max_batch_size: {max_batch_size}",
        "version_policy { specific { versions: [ 1 ] } }",
        "input [",
        "  {",
        f"    name: {_quote(input_name)}",
        "    data_type: TYPE_FP32",
        f"    dims: [ {input_width} ]",
        "  }",
        "]",
        "output [",
        "  {",
        f"    name: {_quote(output_name)}",
        "    data_type: TYPE_FP32",
        f"    dims: [ {output_width} ]",
        "  }",
        "]",
    ]
    if instance_group is not None:
        lines += [
            "instance_group [",
            "  {",
            *(f"    {line}" for line in instance_group),
            "  }",
            "]",
            "dynamic_batching {",
            f"  max_queue_delay_microseconds: {_QUEUE_DELAY_US}",
            "}",
        ]
    if ensemble:
        steps: list[str] = []
        for i, (step_model, input_map, output_map) in enumerate(ensemble):
            steps += [
                "    {",
                f"      model_name: {_quote(step_model)}",
                f"      model_version: {TRITON_VERSION}",
                *(
                    f"      input_map {{ key: {_quote(k)} value: {_quote(v)} }}"
                    for k, v in input_map.items()
                ),
                *(
                    f"      output_map {{ key: {_quote(k)} value: {_quote(v)} }}"
                    for k, v in output_map.items()
                ),
                "    }," if i < len(ensemble) - 1 else "    }",
            ]
        lines += ["ensemble_scheduling {", "  step [", *steps, "  ]", "}"]
    if warmup:
        lines += [
            "model_warmup [",
            "  {",
            '    name: "zeros"',
            "    batch_size: 1",
            "    inputs {",
            f"      key: {_quote(input_name)}",
            "      value {",
            "        data_type: TYPE_FP32",
            f"        dims: [ {input_width} ]",
            "        zero_data: true",
            "      }",
            "    }",
            "  }",
            "]",
        ]
    for key, value in parameters.items():
        lines.append(
            f"parameters {{ key: {_quote(key)} value {{ string_value: {_quote(value)} }} }}"
        )
    return "\n".join(lines) + "\n"
