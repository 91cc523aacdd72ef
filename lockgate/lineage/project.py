"""The user's project: where a pipeline is defined, and which code a model version was built from.

A :class:`~lockgate.spec.ModelPipeline` belongs to the project that defines it. When the spec is
built, lockgate finds the module that called ``ModelPipeline(...)`` and takes its **project
root**: the nearest folder above that module holding ``pyproject.toml``, ``setup.py``,
``setup.cfg``, ``workspace.yaml`` or ``.git``. Relative paths in the spec (the Feast repo, the
label files) are resolved against it, and the lock record's code commit is the commit of the git
repository holding it, so a change to the user's pipeline or feature code changes the triad.
lockgate's own version (and commit, when it runs from a checkout) is recorded beside it.
"""

from __future__ import annotations

import inspect
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "PROJECT_MARKERS",
    "CodeVersion",
    "caller_project_dir",
    "code_version",
    "find_project_root",
    "lockgate_code",
]

PROJECT_MARKERS = ("pyproject.toml", "setup.py", "setup.cfg", "workspace.yaml", ".git")
"""Files or folders whose presence marks a project root."""

_LOCKGATE_DIR = Path(__file__).resolve().parent
_SKIP_PACKAGES = ("pydantic", "pydantic_core", "typing_extensions", "importlib")
_GIT_TIMEOUT_S = 10


@dataclass(frozen=True)
class CodeVersion:
    """The code a model was built from: a git commit and whether the tree had changes.

    Attributes:
        commit: the full commit id, or ``"unknown"`` outside a git repository.
        dirty: True when the tree had uncommitted changes (None: not known).
        source: where the commit was read (``git:<folder>`` or ``LOCKGATE_CODE_COMMIT``).
    """

    commit: str
    dirty: bool | None
    source: str

    def as_dict(self) -> dict[str, Any]:
        """JSON-able form for the lock record."""
        return {"commit": self.commit, "dirty": self.dirty, "source": self.source}


def find_project_root(path: str | os.PathLike[str]) -> Path:
    """The nearest folder at or above ``path`` that holds a project marker.

    Args:
        path: a file or folder of the project (typically the module defining a pipeline).

    Returns:
        The project root, or the folder of ``path`` itself when no marker is found up to the
        file system root.
    """
    start = Path(path).resolve()
    folder = start if start.is_dir() else start.parent
    for candidate in (folder, *folder.parents):
        if any((candidate / marker).exists() for marker in PROJECT_MARKERS):
            return candidate
    return folder


def caller_project_dir() -> str:
    """The project root of the first caller outside lockgate and pydantic.

    Used as the default of :attr:`ModelPipeline.project_dir`: the frame that called
    ``ModelPipeline(...)`` is the user's module. Code typed at an interactive prompt or run with
    ``python -c`` has no file: the current directory is taken then.
    """
    frame = inspect.currentframe()
    try:
        while frame is not None:
            filename = frame.f_code.co_filename
            module = str(frame.f_globals.get("__name__", ""))
            frame = frame.f_back
            if _is_library_frame(filename, module):
                continue
            if filename.startswith("<") or not Path(filename).exists():
                return str(Path.cwd())
            return str(find_project_root(filename))
    finally:
        del frame
    return str(Path.cwd())


def _is_library_frame(filename: str, module: str) -> bool:
    if module.split(".", 1)[0] in _SKIP_PACKAGES or filename.startswith("<frozen"):
        return True
    try:
        return Path(filename).resolve().is_relative_to(_LOCKGATE_DIR)
    except (OSError, ValueError):
        return False


def _git(folder: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(folder), *args],
        capture_output=True,
        text=True,
        timeout=_GIT_TIMEOUT_S,
        check=True,
    ).stdout


def code_version(path: str | os.PathLike[str] | None = None) -> CodeVersion:
    """The git commit (and dirty flag) of the repository holding ``path``.

    ``LOCKGATE_CODE_COMMIT`` overrides it: images built in CI, which carry no ``.git``, bake the
    commit in (a ``-dirty`` suffix marks a dirty tree). Outside a git repository the commit is
    ``"unknown"``.

    Args:
        path: a file or folder of the user's project; None: the current directory.
    """
    override = os.environ.get("LOCKGATE_CODE_COMMIT")
    if override:
        dirty = override.endswith("-dirty")
        return CodeVersion(override.removesuffix("-dirty"), dirty, "LOCKGATE_CODE_COMMIT")
    where = Path(path) if path is not None else Path.cwd()
    if where.is_file():
        where = where.parent
    try:
        commit = _git(where, "rev-parse", "HEAD").strip()
        status = _git(where, "status", "--porcelain")
    except (OSError, subprocess.SubprocessError):
        return CodeVersion("unknown", None, f"no git repository at {where}")
    return CodeVersion(commit, bool(status.strip()), f"git:{where}")


def lockgate_code() -> dict[str, Any]:
    """lockgate's own version, and its commit when it runs from a git checkout.

    A checkout counts only when lockgate's ``__init__.py`` is tracked by that repository, so an
    installed copy inside a virtualenv that happens to sit in a git work tree is not mistaken for
    one.

    Returns:
        ``{"version": ..., "commit": str | None, "dirty": bool | None}``.
    """
    from importlib import metadata

    try:
        version = metadata.version("lockgate")
    except metadata.PackageNotFoundError:
        version = "unknown"
    commit: str | None = None
    dirty: bool | None = None
    try:
        _git(_LOCKGATE_DIR, "ls-files", "--error-unmatch", "__init__.py")
        commit = _git(_LOCKGATE_DIR, "rev-parse", "HEAD").strip()
        dirty = bool(_git(_LOCKGATE_DIR, "status", "--porcelain", "--", ".").strip())
    except (OSError, subprocess.SubprocessError):
        pass
    return {"version": version, "commit": commit, "dirty": dirty}
