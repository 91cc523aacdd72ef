"""ASGI plumbing of the gateway: the scope and message types, request bodies, responses.

:func:`read_body` reads a request body up to a limit (413 beyond), :func:`inflate_body`
decompresses a gzip or deflate body in steps, still bounded (the limit holds after
decompression), and :func:`respond` / :func:`respond_error` send a whole response (KServe error
bodies for errors).
"""

from __future__ import annotations

import asyncio
import zlib
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from lockgate.gateway.errors import ReplyError
from lockgate.gateway.kserve import error_body

__all__ = [
    "Message",
    "Receive",
    "Scope",
    "Send",
    "inflate_body",
    "read_body",
    "respond",
    "respond_error",
]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


async def read_body(receive: Receive, limit: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while True:
        msg = await receive()
        if msg["type"] == "http.disconnect":
            raise ReplyError(499, "client disconnected")
        chunk: bytes = msg.get("body", b"")
        size += len(chunk)
        if size > limit:  # whether the server sends the body whole or in parts
            raise ReplyError(413, f"request body exceeds {limit} bytes; send smaller batches")
        if not msg.get("more_body"):
            return b"".join(chunks) + chunk if chunks else chunk
        chunks.append(chunk)


_INFLATE_STEP = 1 << 20


async def inflate_body(body: bytes, encoding: str, limit: int) -> bytes:
    """Decompress a ``gzip`` or ``deflate`` (zlib) request body, at most ``limit`` bytes out.

    Inflates in steps of at most 1 MiB of output, stops as soon as the output passes ``limit``
    (413: a small body that inflates to gigabytes costs at most ``limit`` bytes of memory) and
    lets other requests run between steps.
    """
    wbits = 31 if encoding == "gzip" else 15
    inflater = zlib.decompressobj(wbits)
    out = bytearray()
    data = body
    try:
        while True:
            chunk = inflater.decompress(data, min(_INFLATE_STEP, limit + 1 - len(out)))
            out += chunk
            if len(out) > limit:
                raise ReplyError(
                    413,
                    f"request body inflates ({encoding}) to more than {limit} bytes; rule: "
                    "max_body_bytes holds after decompression; fix: send smaller batches",
                )
            data = inflater.unconsumed_tail
            if inflater.eof:
                data = inflater.unused_data
                if not data:
                    return bytes(out)
                if encoding != "gzip":
                    raise ReplyError(400, "request body has data after its deflate stream")
                inflater = zlib.decompressobj(wbits)  # gzip: the next member
            elif not data and not chunk:
                raise ReplyError(400, f"request body is not valid {encoding} (truncated)")
            if len(out) >= _INFLATE_STEP:
                await asyncio.sleep(0)
    except zlib.error as exc:
        raise ReplyError(400, f"request body is not valid {encoding} ({exc})") from None


async def respond(
    send: Send,
    status: int,
    body: bytes,
    *,
    headers: list[tuple[bytes, bytes]] | None = None,
    content_type: bytes = b"application/json",
) -> None:
    hdrs = [(b"content-type", content_type), (b"content-length", str(len(body)).encode())]
    if headers:
        hdrs.extend(headers)
    await send({"type": "http.response.start", "status": status, "headers": hdrs})
    await send({"type": "http.response.body", "body": body})


async def respond_error(send: Send, status: int, message: str) -> None:
    await respond(send, status, error_body(message))
