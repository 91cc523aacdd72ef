"""A reader of Triton's ``config.pbtxt`` (protobuf text format) into plain dicts and lists.

:func:`parse_config` is what lockgate uses to read back the configurations it generates
(:mod:`lockgate.serving.triton_config`) and those it verifies before a load.
"""

from __future__ import annotations

import re
from typing import Any

from lockgate.errors import SpecError

__all__ = ["parse_config"]


def parse_config(text: str) -> dict[str, Any]:
    """Parses Triton's protobuf text format into plain dicts and lists (for tests and tools).

    Scalars become str (quoted), int, float, bool or the enum name (``KIND_CPU``); a field seen
    once is a value, a field repeated (or written ``[ ... ]``) is a list. This is a structural
    reader, not a validator: ``google.protobuf.text_format.Parse(text, ModelConfig())`` with
    ``tritonclient.grpc.model_config_pb2.ModelConfig`` validates against Triton's schema.

    Args:
        text: Protobuf text such as :func:`cpu_config` returns.

    Returns:
        The message as a dict.

    Raises:
        SpecError: When the text is not well-formed protobuf text.

    Example:
        >>> parse_config('name: "m" max_batch_size: 8 input [ { dims: [ 3 ] } ]')
        {'name': 'm', 'max_batch_size': 8, 'input': [{'dims': [3]}]}
    """
    tokens = _tokenize(text)
    message, end = _parse_message(tokens, 0, closing=None)
    if end != len(tokens):
        raise SpecError(f"config text has trailing tokens after position {end}: {tokens[end]!r}")
    return message


_TOKEN = re.compile(
    r'\s+|#[^\n]*|"(?:[^"\\]|\\.)*"|[{}\[\]:,;<>]|[A-Za-z0-9_.+\-]+',
)


def _tokenize(text: str) -> list[str]:
    tokens: list[str] = []
    pos = 0
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if match is None:
            raise SpecError(
                f"config text has an unexpected character {text[pos]!r} at offset {pos}; rule: "
                "protobuf text format; fix: correct the config"
            )
        token = match.group(0)
        if not token.isspace() and not token.startswith("#"):
            tokens.append(token)
        pos = match.end()
    return tokens


def _scalar(token: str) -> Any:
    if token.startswith('"'):
        return re.sub(r"\\(.)", r"\1", token[1:-1])
    if token in ("true", "false"):
        return token == "true"
    try:
        return int(token)
    except ValueError:
        pass
    try:
        return float(token)
    except ValueError:
        return token  # an enum name


def _add(message: dict[str, Any], key: str, value: Any, *, as_list: bool) -> None:
    if key in message:
        current = message[key]
        if not isinstance(current, list):
            current = [current]
        message[key] = current + (value if as_list else [value])
    else:
        message[key] = value


def _parse_value(tokens: list[str], pos: int) -> tuple[Any, int]:
    token = tokens[pos]
    if token in ("{", "<"):
        return _parse_message(tokens, pos + 1, closing="}" if token == "{" else ">")
    return _scalar(token), pos + 1


def _parse_message(tokens: list[str], pos: int, *, closing: str | None) -> tuple[Any, int]:
    message: dict[str, Any] = {}
    try:
        while pos < len(tokens) and tokens[pos] != closing:
            key = tokens[pos]
            pos += 1
            if tokens[pos] == ":":
                pos += 1
            if tokens[pos] == "[":
                pos += 1
                items: list[Any] = []
                while tokens[pos] != "]":
                    value, pos = _parse_value(tokens, pos)
                    items.append(value)
                    if tokens[pos] == ",":
                        pos += 1
                _add(message, key, items, as_list=True)
                pos += 1
            else:
                value, pos = _parse_value(tokens, pos)
                _add(message, key, value, as_list=False)
            if pos < len(tokens) and tokens[pos] in (",", ";"):
                pos += 1
    except IndexError:
        raise SpecError(
            "config text ends inside a message or list; rule: balanced braces and brackets; "
            "fix: correct the config"
        ) from None
    if closing is not None:
        if pos >= len(tokens):
            raise SpecError(f"config text misses a closing {closing!r}")
        pos += 1
    return message, pos
