"""The files of a model version: their names, the kind pattern, canonical JSON and reading them.

Every file lockgate writes for a model is JSON, text or a safe binary format (safetensors,
TorchScript, ONNX); JSON is written canonically (sorted keys, shortest round-trip floats, a
trailing newline) so that equal content gives equal bytes. :func:`require_files` and
:func:`parse_json` read the files back with the error a damaged model version gets.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

from lockgate.errors import ArtifactIntegrityError

__all__ = [
    "KIND_PATTERN",
    "LIGHTGBM_MODEL_FILE",
    "PREPROCESSING_FILE",
    "TORCH_ARCHITECTURE_FILE",
    "TORCH_SCRIPT_FILE",
    "TORCH_WEIGHTS_FILE",
    "json_bytes",
    "parse_json",
    "require_files",
]

PREPROCESSING_FILE = "preprocessing.json"
LIGHTGBM_MODEL_FILE = "model.txt"
TORCH_WEIGHTS_FILE = "weights.safetensors"
TORCH_SCRIPT_FILE = "model.torchscript.pt"
TORCH_ARCHITECTURE_FILE = "architecture.json"

KIND_PATTERN = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
"""A trainer and model kind: lowercase letters, digits and ``_``, starting with a letter."""


def json_bytes(value: Any) -> bytes:
    """Canonical JSON: sorted keys, shortest round-trip floats, no NaN, trailing newline."""
    text = json.dumps(value, sort_keys=True, indent=2, ensure_ascii=True, allow_nan=False)
    return (text + "\n").encode("ascii")


def parse_json(data: bytes, *, name: str) -> dict[str, Any]:
    try:
        value = json.loads(bytes(data).decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise ArtifactIntegrityError(
            f"{name} ({len(data)} bytes) is not valid JSON: {exc}; rule: lockgate writes it as "
            f"UTF-8 JSON; fix: restore it from the registry"
        ) from exc
    if not isinstance(value, dict):
        raise ArtifactIntegrityError(
            f"{name} holds a JSON {type(value).__name__}, not an object; rule: it must be the "
            f"file lockgate wrote; fix: restore it from the registry"
        )
    return value


def require_files(
    files: Mapping[str, bytes], names: Sequence[str], *, kind: str
) -> dict[str, bytes]:
    if not isinstance(files, Mapping):
        raise ArtifactIntegrityError(
            f"files is a {type(files).__name__}; rule: a mapping of file name to bytes; fix: "
            f"pass the dict returned by model.files()"
        )
    missing = [name for name in names if name not in files]
    if missing:
        raise ArtifactIntegrityError(
            f"a {kind} model needs files {list(names)} but {missing} are missing (given: "
            f"{sorted(files)}); rule: load needs every file model.files() returned; fix: pass "
            f"all files of the model version"
        )
    found: dict[str, bytes] = {}
    for name in names:
        data = files[name]
        if not isinstance(data, bytes | bytearray | memoryview):
            raise ArtifactIntegrityError(
                f"file {name!r} is a {type(data).__name__}, not bytes; rule: files are raw "
                f"bytes; fix: read them in binary mode"
            )
        found[name] = bytes(data)
    return found
