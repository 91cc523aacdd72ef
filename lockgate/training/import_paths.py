"""Classes named by ``"module:Class"``: the path recorded for one, importing one, hashing its code.

Lock records and model manifests name trainers and models by import path; ``reproduce`` and
the Triton stub import them again from it. :func:`import_path` gives the path recorded for a
class, :func:`import_object` imports one (old lockgate module paths included, through
:mod:`lockgate._util.legacy_modules`), and :func:`source_sha256` hashes the source file of a
module: the identity of a trainer's code.

A class may pin the path recorded for it, whatever module defines it today, with a
``__lockgate_path__`` attribute of its own (subclasses do not inherit it): lockgate's shipped
trainers record their public path (``lockgate.training:SklearnTrainer``), so a later move of
the module does not change the lock records they write; lockgate's shipped models record the
path their manifest has always named (``lockgate.trainers_sklearn:SklearnModel``), because the
manifest is a model file whose sha256 enters the version id and ``reproduce`` compares it.
"""

from __future__ import annotations

import hashlib
import importlib
import inspect
import re
from typing import Any

from lockgate._util.legacy_modules import resolve_module_name
from lockgate.errors import SpecError

__all__ = ["PINNED_PATH_ATTRIBUTE", "import_object", "import_path", "source_sha256"]

PINNED_PATH_ATTRIBUTE = "__lockgate_path__"
"""The class attribute that pins the ``"module:Class"`` recorded for a class (see above)."""


def import_path(obj: Any) -> str:
    """``"module:QualName"`` of a class or function, refusing what cannot be imported again.

    Args:
        obj: A class or function.

    Returns:
        The import path, e.g. ``"lockgate.training:LightGBMTrainer"``: the class's own
        ``__lockgate_path__`` when it pins one, else its module and qualified name.

    Raises:
        SpecError: When ``obj`` lives in ``__main__`` or inside a function (``<locals>``).
    """
    module = getattr(obj, "__module__", None)
    qualname = getattr(obj, "__qualname__", None)
    if not isinstance(module, str) or not isinstance(qualname, str):
        raise SpecError(
            f"{obj!r} has no module and qualified name; rule: trainers and models are classes "
            f"importable as 'module:Class'; fix: define it as a class in a module"
        )
    if module == "__main__" or "<locals>" in qualname:
        where = "the __main__ script" if module == "__main__" else "a function body"
        raise SpecError(
            f"{qualname!r} is defined in {where} ({module}:{qualname}); rule: reproduce and "
            f"the Triton stub re-import trainers and models by 'module:Class'; fix: move it "
            f"into a module of your project (e.g. my_project/trainers.py)"
        )
    pinned = vars(obj).get(PINNED_PATH_ATTRIBUTE) if isinstance(obj, type) else None
    if isinstance(pinned, str):
        return pinned
    return f"{module}:{qualname}"


def import_object(path: str, *, what: str = "object") -> Any:
    """Imports ``"module:QualName"`` (e.g. ``"sklearn.linear_model:LogisticRegression"``).

    Old lockgate module paths resolve to where the code lives now
    (:func:`lockgate._util.legacy_modules.resolve_module_name`): ``"lockgate.trainers:
    LightGBMTrainer"`` imports the class lockgate defines today.

    Args:
        path: The import path.
        what: What the object is, for messages (``"trainer class"``, ...).

    Returns:
        The object.

    Raises:
        SpecError: When the path is malformed, the module cannot be imported or lacks the name.
    """
    if not isinstance(path, str) or not re.fullmatch(
        r"[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*:[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*", path
    ):
        raise SpecError(
            f"{what} {path!r} is not an import path; rule: 'package.module:Name'; fix: write "
            f"e.g. 'my_project.trainers:MyTrainer'"
        )
    module_name, _, qualname = path.partition(":")
    try:
        obj: Any = importlib.import_module(module_name)
    except Exception as exc:
        raise SpecError(
            f"{what} {path!r} cannot be imported: module {module_name!r} fails with "
            f"{type(exc).__name__}: {exc}; rule: the module must be importable where the model "
            f"is trained, reproduced and served (the Triton stub uses the virtualenv's "
            f"site-packages); fix: install the package that provides {module_name!r} (e.g. "
            f"`pip install -e .` in your project) or correct the path"
        ) from exc
    first = qualname.split(".", 1)[0]
    moved = resolve_module_name(module_name)
    if not hasattr(obj, first) and moved != module_name:
        # an old module whose name is a package now: its contents live in another module
        obj = importlib.import_module(moved)
    for part in qualname.split("."):
        if not hasattr(obj, part):
            raise SpecError(
                f"{what} {path!r} cannot be imported: module {module_name!r} has no "
                f"{qualname!r}; rule: 'module:Name' names an attribute of the module; fix: "
                f"correct the name (the module defines "
                f"{sorted(n for n in dir(obj) if not n.startswith('_'))[:12]})"
            )
        obj = getattr(obj, part)
    return obj


def source_sha256(module_name: str) -> str:
    """Hex sha256 of the source file of a module: the identity of a trainer's code.

    Args:
        module_name: An importable module name.

    Returns:
        The sha256 of the bytes of its ``.py`` file.

    Raises:
        SpecError: When the module cannot be imported or has no source file.
    """
    try:
        module = importlib.import_module(module_name)
        path = inspect.getsourcefile(module)
    except Exception as exc:
        raise SpecError(
            f"module {module_name!r} of a trainer cannot be imported ({type(exc).__name__}: "
            f"{exc}); rule: trainer code is importable; fix: install it"
        ) from exc
    if path is None:
        raise SpecError(
            f"module {module_name!r} has no Python source file; rule: the lock record stores "
            f"the sha256 of each trainer module's source; fix: define the trainer in a .py module"
        )
    with open(path, "rb") as handle:
        return hashlib.sha256(handle.read()).hexdigest()
