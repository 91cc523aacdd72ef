"""The gateway's error types, and how a refused request becomes an HTTP answer.

:class:`GatewayError` and its kinds (:class:`RouteError`, :class:`UpstreamError` with the status
the gateway answers, 502 or 504; :class:`PredictionLogError`) are what callers catch;
:class:`ReplyError` short-circuits a request handler with a KServe error response of a given
status, and :class:`ViolationError` marks a request that broke the input contract (a 400 that
may count as a schema violation of the version).
"""

from __future__ import annotations

from lockgate.errors import LockgateError

__all__ = [
    "GatewayError",
    "PredictionLogError",
    "ReplyError",
    "RouteError",
    "UpstreamError",
    "ViolationError",
    "not_started",
]


class GatewayError(LockgateError):
    """The gateway refused a request or cannot do its work."""


class RouteError(GatewayError, ValueError):
    """A routing table is invalid."""


class UpstreamError(GatewayError):
    """The upstream model server could not be reached or did not answer in time.

    Attributes:
        status: the HTTP status the gateway answers with (502 unreachable, 504 timeout).
    """

    def __init__(self, message: str, *, status: int = 502, retryable: bool = False) -> None:
        super().__init__(message)
        self.status = status
        self.retryable = retryable


class PredictionLogError(GatewayError):
    """The prediction log cannot be written, read or locked."""


class ViolationError(Exception):
    """A request broke the input contract (a 400 and a schema violation)."""


class ReplyError(Exception):
    """Short-circuit a handler with a KServe error response."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def not_started() -> ReplyError:
    return ReplyError(503, "gateway is not started; run it under an ASGI server with lifespan")
