"""The trainer protocol: :class:`Trainer`, :class:`CustomTrainer` and trainer configs.

A trainer is a frozen pydantic model with a ``kind``, a ``seed`` and ``fit``; its
:meth:`Trainer.config` is what the lock record stores, :func:`trainer_from_config` rebuilds
it (``reproduce``), :func:`check_trainer` accepts one for a pipeline spec and
:func:`trainer_code_differences` names what changed in its code since it was locked. The
trainers lockgate ships are known by kind (:data:`TRAINER_KINDS`) and imported on use.
"""

from __future__ import annotations

import functools
import importlib
from collections.abc import Mapping, Sequence
from importlib import metadata as importlib_metadata
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, cast

import pandas as pd
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PlainSerializer,
    PlainValidator,
    ValidationError,
)

from lockgate.errors import SpecError, TrainingError
from lockgate.tasks.catalog import Task
from lockgate.training.import_paths import import_object, import_path, source_sha256
from lockgate.training.model_files import KIND_PATTERN
from lockgate.training.model_protocol import CustomModel, TrainedModel, builtin_model_class

__all__ = [
    "CONFIG_CLASS_KEY",
    "CONFIG_CODE_KEY",
    "CONFIG_LIBRARIES_KEY",
    "MAX_SEED",
    "TRAINER_KINDS",
    "CustomTrainer",
    "Trainer",
    "TrainerSpec",
    "check_trainer",
    "trainer_code_differences",
    "trainer_from_config",
]

MAX_SEED = 2**31 - 1
"""The largest ``seed`` a trainer accepts."""


CONFIG_CLASS_KEY = "class"
"""Key of a trainer config naming the trainer class as ``"module:Class"``."""
CONFIG_CODE_KEY = "code_sha256"
"""Key of a trainer config mapping each of its code modules to the sha256 of its source file."""
CONFIG_LIBRARIES_KEY = "libraries"
"""Key of a trainer config mapping the libraries a trainer declares to their versions."""
_IDENTITY_KEYS = (CONFIG_CLASS_KEY, CONFIG_CODE_KEY, CONFIG_LIBRARIES_KEY)

_BUILTIN_TRAINER_PATHS: dict[str, str] = {
    "lightgbm": "lockgate.training.lightgbm_trainer:LightGBMTrainer",
    "torch": "lockgate.training.torch_trainer:TorchTrainer",
}
"""The built-in trainers (no ``class`` in their config), by the module that defines them."""
_SHIPPED_TRAINERS: dict[str, str] = {
    "sklearn": "lockgate.training.sklearn_trainer:SklearnTrainer",
    "torch_module": "lockgate.training.torch_module_trainer:TorchModuleTrainer",
}
TRAINER_KINDS: tuple[str, ...] = tuple(sorted([*_BUILTIN_TRAINER_PATHS, *_SHIPPED_TRAINERS]))
"""The trainer kinds lockgate ships (any other kind comes with its ``class``)."""


def _is_builtin_trainer(cls: type) -> bool:
    """Whether ``cls`` is :class:`LightGBMTrainer` or :class:`TorchTrainer` itself."""
    for path in _BUILTIN_TRAINER_PATHS.values():
        module_name, _, name = path.partition(":")
        if cls is getattr(importlib.import_module(module_name), name):
            return True
    return False


def _library_version(name: str) -> str | None:
    try:
        return importlib_metadata.version(name)
    except importlib_metadata.PackageNotFoundError:
        return None


def _check_trainer_class(cls: type[Trainer]) -> None:
    """Checks a Trainer subclass's ``kind`` and field names at class definition."""
    field = cls.model_fields.get("kind")
    if field is None:
        return  # an abstract base such as CustomTrainer: instances need a kind (check_trainer)
    kind = field.default
    if not isinstance(kind, str) or not KIND_PATTERN.match(kind):
        raise TypeError(
            f"trainer class {cls.__qualname__} has kind={kind!r}; rule: a trainer declares "
            f"`kind: Literal['my_kind'] = 'my_kind'` (lowercase letters, digits, '_'); fix: "
            f"add that field"
        )
    path = f"{cls.__module__}:{cls.__qualname__}"
    if path in _BUILTIN_TRAINER_PATHS.values():
        return
    owner_path = _BUILTIN_TRAINER_PATHS.get(kind) or _SHIPPED_TRAINERS.get(kind)
    if owner_path is not None and path != owner_path:
        owner = import_object(owner_path, what="trainer class")
        if not issubclass(cls, owner):
            raise TypeError(
                f"trainer class {cls.__qualname__} uses kind {kind!r} of lockgate's "
                f"{owner_path}; rule: a kind names one family of models (only that class and "
                f"its subclasses use it); fix: give it a kind of its own"
            )
    reserved = [name for name in cls.model_fields if name in _IDENTITY_KEYS]
    if reserved:
        raise TypeError(
            f"trainer class {cls.__qualname__} has field(s) {reserved}; rule: "
            f"{list(_IDENTITY_KEYS)} are written by Trainer.config(); fix: rename them"
        )


def _checked_fit(fit: Any) -> Any:
    """Wraps a trainer's ``fit`` so that its model is checked against the protocol."""

    @functools.wraps(fit)
    def checked(self: Trainer, *args: Any, **kwargs: Any) -> TrainedModel:
        model = fit(self, *args, **kwargs)
        _check_fitted(self, model)
        return model

    checked._lockgate_checked = True  # type: ignore[attr-defined]
    return checked


def _check_fitted(trainer: Trainer, model: Any) -> None:
    name = type(trainer).__qualname__
    if not isinstance(model, TrainedModel):
        raise TrainingError(
            f"{name}.fit returned a {type(model).__name__}; rule: fit returns a TrainedModel "
            f"(a CustomModel for a custom trainer); fix: return one"
        )
    if model.kind != trainer.kind:
        raise TrainingError(
            f"{name}.fit returned a {type(model).__qualname__} of kind {model.kind!r} but the "
            f"trainer's kind is {trainer.kind!r}; rule: the lock record stores the trainer's "
            f"kind and TrainedModel.load(kind, files) rebuilds the model from it; fix: give "
            f"trainer and model the same kind"
        )
    builtin = builtin_model_class(model.kind)
    if builtin is not None:
        if type(model) is not builtin:
            raise TrainingError(
                f"{name}.fit returned a {type(model).__qualname__}; rule: models of kind "
                f"{model.kind!r} load as {builtin.__name__} exactly, so a subclass would be "
                f"evaluated and served as the stock class; fix: return a {builtin.__name__}, or "
                f"a CustomModel with a kind of its own"
            )
    elif not isinstance(model, CustomModel):
        raise TrainingError(
            f"{name}.fit returned a {type(model).__qualname__}, not a CustomModel; rule: "
            f"models of custom kinds subclass CustomModel (it writes the manifest that "
            f"TrainedModel.load needs); fix: derive the model class from CustomModel"
        )
    else:
        import_path(type(model))


class Trainer(BaseModel):
    """Base of every trainer spec: the protocol a trainer satisfies (see "Trainer protocol").

    A trainer is a frozen pydantic model with a ``kind`` (a ``Literal`` default: lowercase
    letters, digits and ``_``), a ``seed`` and :meth:`fit`. :meth:`config` is what the lock
    record stores and :func:`trainer_from_config` rebuilds it from. Built-in trainers
    (:class:`LightGBMTrainer`, :class:`TorchTrainer`) keep the config they always had; any other
    class (a :class:`CustomTrainer`, or a subclass of a built-in one) adds its identity:
    ``class`` (``"module:Class"``) and ``code_sha256`` (the sha256 of the source file of each
    module its code lives in), so ``reproduce`` re-imports the same class and names the module
    whose code changed (:func:`trainer_code_differences`).

    Every ``fit`` of a subclass is checked on return: it must give a :class:`TrainedModel` of the
    trainer's own ``kind`` that :meth:`TrainedModel.load` rebuilds as the same class, so what is
    trained is what is evaluated, reproduced and served.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    if TYPE_CHECKING:
        kind: str
        seed: int

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        """Checks the subclass's kind and wraps its ``fit`` with the return-value check."""
        super().__pydantic_init_subclass__(**kwargs)
        _check_trainer_class(cls)
        fit = cls.__dict__.get("fit")
        if fit is not None and not getattr(fit, "_lockgate_checked", False):
            type.__setattr__(cls, "fit", _checked_fit(fit))

    def fit(
        self,
        frame: pd.DataFrame,
        *,
        features: Sequence[str],
        label: str,
        task: Task = "binary",
    ) -> TrainedModel:
        """Fits a model on ``frame`` (every trainer implements it).

        Args:
            frame: Training rows.
            features: Feature columns, in the order the model uses them.
            label: Label column: values 0 and 1 for ``"binary"`` (both must occur), integer or
                string classes for ``"multiclass"``, finite numbers for ``"regression"``
                (see :func:`check_labels`).
            task: One of :data:`TASKS`.

        Returns:
            The trained model, of this trainer's ``kind``.
        """
        raise NotImplementedError(f"{type(self).__name__} does not implement fit()")

    def code_modules(self) -> tuple[str, ...]:
        """The modules whose source is this trainer's code (their sha256 go into :meth:`config`).

        Returns:
            The module of the trainer's class; trainers that import more user code (e.g. a
            network class named in a field) add those modules.
        """
        return (type(self).__module__,)

    def config(self) -> dict[str, Any]:
        """The complete spec as a JSON-able dict; :func:`trainer_from_config` rebuilds it.

        Returns:
            Every field, ``kind`` included, with tuples as lists; for a class other than the
            built-in :class:`LightGBMTrainer` and :class:`TorchTrainer` also ``class``
            (``"module:Class"``), ``code_sha256`` (module name -> sha256 of its source file)
            and, when the class lists them in ``libraries``, ``libraries`` (distribution name ->
            installed version).
        """
        cfg = self.model_dump(mode="json")
        if _is_builtin_trainer(type(self)):
            return cfg
        cfg[CONFIG_CLASS_KEY] = import_path(type(self))
        cfg[CONFIG_CODE_KEY] = {name: source_sha256(name) for name in self.code_modules()}
        libraries = getattr(type(self), "libraries", ())
        if libraries:
            cfg[CONFIG_LIBRARIES_KEY] = {name: _library_version(name) for name in libraries}
        return cfg


class CustomTrainer(Trainer):
    """Base class of a trainer outside the two built-in ones ("bring your own trainer").

    Subclass it in an importable module of your project (not ``__main__``, not inside a
    function: ``reproduce`` and the Triton stub re-import it by ``"module:Class"``), give it
    ``kind: Literal["my_kind"] = "my_kind"`` (lowercase letters, digits and ``_``; not a kind
    lockgate ships), fields with defaults for every setting (a ``seed`` field is inherited), and
    a ``fit`` that returns a :class:`CustomModel` of the same ``kind``. Optionally list the
    distributions whose versions matter in ``libraries`` (a ``ClassVar``): :meth:`config`
    records them and :func:`trainer_code_differences` reports changes.

    Example:
        >>> class MeanTrainer(CustomTrainer):  # doctest: +SKIP
        ...     kind: Literal["mean"] = "mean"
        ...
        ...     def fit(self, frame, *, features, label, task="binary"):
        ...         data = prepare_training(frame, features=features, label=label,
        ...                                 task=task, kind=self.kind)
        ...         return MeanModel(mean=float(data.y.mean()), preprocessing=data.preprocessing)

    Attributes:
        seed: Seed of every random choice of the trainer.
        libraries: Distribution names recorded with their versions in :meth:`config`.
    """

    seed: int = Field(default=0, ge=0, le=MAX_SEED)
    libraries: ClassVar[tuple[str, ...]] = ()


TrainerSpec = Annotated[
    Trainer,
    PlainValidator(lambda value: check_trainer(value)),
    PlainSerializer(lambda trainer: trainer.config(), return_type=dict),
]
"""A trainer field in a pydantic model: any :class:`Trainer` (or its config dict), checked by
:func:`check_trainer`; it serializes as :meth:`Trainer.config`."""


def check_trainer(value: Any) -> Trainer:
    """Accepts a trainer for a pipeline spec, or refuses it with the rule and the fix.

    A built-in trainer passes as is. Any other :class:`Trainer` subclass (a
    :class:`CustomTrainer`, or a subclass of :class:`LightGBMTrainer` / :class:`TorchTrainer`)
    must be importable by ``"module:Class"`` and round-trip through :meth:`Trainer.config` and
    :func:`trainer_from_config` to an equal trainer of the same class: that is what ``reproduce``
    and the model's lock record rely on. A config dict is rebuilt with
    :func:`trainer_from_config`.

    Args:
        value: A trainer, or a trainer config dict.

    Returns:
        The trainer.

    Raises:
        SpecError: When the value is not a trainer, its class cannot be re-imported, or its
            config does not rebuild it.
    """
    if isinstance(value, Mapping):
        return trainer_from_config(value)
    if not isinstance(value, Trainer):
        raise SpecError(
            f"trainer {value!r} is a {type(value).__name__}; rule: a Trainer (LightGBMTrainer, "
            f"TorchTrainer, SklearnTrainer, TorchModuleTrainer or a CustomTrainer subclass) or "
            f"its config dict; fix: pass e.g. LightGBMTrainer(seed=7)"
        )
    if _is_builtin_trainer(type(value)):
        return value
    if "kind" not in type(value).model_fields:
        raise SpecError(
            f"trainer {type(value).__qualname__} has no kind; rule: a trainer declares "
            f"`kind: Literal['my_kind'] = 'my_kind'`; fix: add that field"
        )
    path = import_path(type(value))
    rebuilt = trainer_from_config(value.config())
    if type(rebuilt) is not type(value) or rebuilt != value:
        raise SpecError(
            f"trainer {path} does not rebuild from its config (rebuilt: "
            f"{type(rebuilt).__qualname__} {rebuilt!r}); rule: reproduce rebuilds the trainer "
            f"from the config in the lock record, so every setting must be a field; fix: turn "
            f"attributes set outside the fields into pydantic fields"
        )
    return value


def trainer_from_config(cfg: Mapping[str, Any]) -> Trainer:
    """Rebuilds a trainer from :meth:`Trainer.config` (e.g. the ``trainer`` of a lock record).

    Resolution: a ``class`` key (``"module:Class"``) is imported; otherwise ``kind`` names a
    trainer lockgate ships (:data:`TRAINER_KINDS`). The identity keys (``class``,
    ``code_sha256``, ``libraries``) are not fields; a changed ``code_sha256`` does not stop the
    rebuild (:func:`trainer_code_differences` reports it).

    Args:
        cfg: A config dict with a ``kind`` key.

    Returns:
        The trainer spec, equal to the one that produced ``cfg``.

    Raises:
        SpecError: For an unknown kind, an import path that cannot be imported or names no
            trainer of that kind, or invalid fields.
    """
    if not isinstance(cfg, Mapping):
        raise SpecError(
            f"trainer config is a {type(cfg).__name__}; rule: it must be a mapping with a "
            f"'kind' key; fix: pass the dict returned by trainer.config()"
        )
    kind = cfg.get("kind")
    path = cfg.get(CONFIG_CLASS_KEY)
    trainer_cls: Any
    if path is not None:
        trainer_cls = import_object(path, what="trainer class")
        if not (isinstance(trainer_cls, type) and issubclass(trainer_cls, Trainer)):
            raise SpecError(
                f"trainer class {path!r} is a {type(trainer_cls).__name__}, not a Trainer "
                f"subclass; rule: 'class' names a lockgate Trainer (e.g. a CustomTrainer "
                f"subclass); fix: point it at your trainer class"
            )
        declared = trainer_cls.model_fields["kind"].default
        if declared != kind:
            raise SpecError(
                f"trainer class {path!r} has kind {declared!r} but the config says {kind!r}; "
                f"rule: the config's kind is the class's; fix: correct 'kind' or 'class'"
            )
    elif isinstance(kind, str) and kind in _BUILTIN_TRAINER_PATHS:
        trainer_cls = import_object(_BUILTIN_TRAINER_PATHS[kind], what="trainer class")
    elif isinstance(kind, str) and kind in _SHIPPED_TRAINERS:
        trainer_cls = import_object(_SHIPPED_TRAINERS[kind], what="trainer class")
    else:
        raise SpecError(
            f"trainer kind {kind!r} is unknown; rule: kind must be one of "
            f"{list(TRAINER_KINDS)}, or the config names its trainer class with "
            f"'{CONFIG_CLASS_KEY}': 'module:Class'; fix: set 'kind' to one of them or add "
            f"'{CONFIG_CLASS_KEY}'"
        )
    fields = {key: value for key, value in cfg.items() if key not in _IDENTITY_KEYS}
    try:
        return cast(Trainer, trainer_cls.model_validate(fields))
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in error['loc']) or '<root>'}: {error['msg']}"
            for error in exc.errors()
        )
        raise SpecError(
            f"trainer config of kind {kind!r} is invalid: {problems}; rule: fields must match "
            f"{trainer_cls.__name__}; fix: correct or remove those fields"
        ) from exc


def trainer_code_differences(cfg: Mapping[str, Any]) -> list[str]:
    """What differs between a locked trainer config's code identity and the code now (pure read).

    Args:
        cfg: The ``trainer`` of a lock record.

    Returns:
        One line per trainer module whose source sha256 changed (or that cannot be imported
        now) and per declared library whose version changed; empty for built-in trainers.
    """
    diffs: list[str] = []
    code = cfg.get(CONFIG_CODE_KEY) if isinstance(cfg, Mapping) else None
    for module_name, locked in sorted((code or {}).items()):
        try:
            now = source_sha256(module_name)
        except SpecError as exc:
            diffs.append(f"trainer code module {module_name!r} cannot be read now: {exc}")
            continue
        if now != locked:
            diffs.append(
                f"trainer code module {module_name!r} sha256 {str(locked)[:12]} locked, "
                f"{now[:12]} now (its source file changed)"
            )
    libraries = cfg.get(CONFIG_LIBRARIES_KEY) if isinstance(cfg, Mapping) else None
    for name, locked in sorted((libraries or {}).items()):
        now_version = _library_version(name)
        if now_version != locked:
            diffs.append(f"trainer library {name} {locked} locked, {now_version} now")
    return diffs
