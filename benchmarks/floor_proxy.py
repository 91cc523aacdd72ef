"""The least a Python reverse proxy can cost: the reference row of ``bench_gateway.py``.

Parses each request with httptools, forwards the body to the upstream over a kept-alive
connection (lockgate's ``HttpUpstream``) and writes the answer back, on uvloop: no routing,
no validation, no prediction log, no metrics. Whatever the gateway costs above this row is
lockgate's; this row itself is the price of one more process and two more loopback hops.

Usage: python benchmarks/floor_proxy.py UPSTREAM_HOST:PORT READY_FILE
"""

from __future__ import annotations

import asyncio
import socket
import sys
from pathlib import Path

import httptools
import uvloop

from lockgate.gateway.upstream import HttpUpstream


class _Proxy(asyncio.Protocol):
    def __init__(self, up: HttpUpstream) -> None:
        self.up = up
        self.parser = httptools.HttpRequestParser(self)
        self.url = b""
        self.body: list[bytes] = []
        self.ihcl = "0"
        self.transport: asyncio.Transport | None = None
        self.tasks: set[asyncio.Future[None]] = set()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.parser.feed_data(data)

    def on_url(self, url: bytes) -> None:
        self.url = url

    def on_header(self, name: bytes, value: bytes) -> None:
        if name.lower() == b"inference-header-content-length":
            self.ihcl = value.decode()

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        body, self.body = b"".join(self.body), []
        task = asyncio.ensure_future(self.forward(self.url.decode(), body, self.ihcl))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def forward(self, path: str, body: bytes, ihcl: str) -> None:
        headers = {"Content-Type": "application/json", "Inference-Header-Content-Length": ihcl}
        resp = await self.up.request("POST", path, body=body, headers=headers)
        out_ihcl = resp.headers.get("inference-header-content-length", "0")
        head = (
            b"HTTP/1.1 %d OK\r\ncontent-type: application/octet-stream\r\ncontent-length: %d\r\n"
            b"inference-header-content-length: %s\r\n\r\n"
            % (resp.status, len(resp.body), out_ihcl.encode())
        )
        assert self.transport is not None
        self.transport.write(head + resp.body)


async def _main(upstream: str, ready: Path) -> None:
    up = HttpUpstream(upstream)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(4096)
    await asyncio.get_running_loop().create_server(lambda: _Proxy(up), sock=sock)
    ready.write_text(str(sock.getsockname()[1]))
    await asyncio.Event().wait()


if __name__ == "__main__":
    uvloop.run(_main(sys.argv[1], Path(sys.argv[2])))
