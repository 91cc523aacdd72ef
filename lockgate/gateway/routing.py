"""Routing tables: which lockgate version of a public model answers a request.

:class:`Route` is the table of one public model (canary, shadow, bluegreen or single), checked
by a pydantic model when it arrives (``PUT /admin/routes/{name}``, ``routes.json``) with the
error messages clients see; :class:`RouteTable` keeps the tables in ``state_dir/routes.json``
(atomic, durable writes); :func:`traffic_fraction` places a trace id in [0, 1) with a keyed
hash (the secret ``state_dir/routing.key``, :func:`load_routing_key`), so a trace always lands on
the same version and a client cannot choose its version.

Several gateway replicas share one set of routes when ``$LOCKGATE_STATE_DB_URL`` names the
PostgreSQL state database (:data:`SHARED_STATE_ENV`; or a :class:`~lockgate.state.swap.SwapStore`
given to :class:`RouteTable`): the tables are one document changed by compare-and-swap, each
replica polls its version every ``poll_s`` seconds (a change made through one replica's admin
API reaches the others within that time), and the routing key is shared too, so a trace lands on
the same version whichever replica answers it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import re
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import EllipsisType
from typing import Any

from pydantic import (
    BaseModel,
    ConfigDict,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from lockgate._util.fs import atomic_write
from lockgate.gateway.errors import GatewayError, RouteError
from lockgate.state.swap import SwapStore

__all__ = [
    "MODES",
    "NAME_RE",
    "ROUTED_BY",
    "ROUTING_KEY_FILE",
    "SHARED_STATE_ENV",
    "VERSION_RE",
    "Route",
    "RouteTable",
    "load_routing_key",
    "shared_route_store",
    "traffic_fraction",
]

MODES = ("bluegreen", "canary", "shadow", "single")
ROUTED_BY = ("bluegreen", "canary", "pinned", "retry", "shadow", "single")


# \Z, not $: "$" also matches before a final newline, which would let "name\n" through
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.]{0,127}\Z")
VERSION_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}\Z")


_ROUTE_KEYS = ("mode", "champion", "challenger", "weight", "shadow_fraction", "active")
_REQUIRED = {"canary": "weight", "shadow": "shadow_fraction", "bluegreen": "active"}


def _name(info: ValidationInfo) -> str:
    return str((info.context or {}).get("name", "<model>"))


def _version(value: object, *, field: str, info: ValidationInfo) -> str:
    if not isinstance(value, str) or not VERSION_RE.match(value):
        raise ValueError(
            f"route for {_name(info)!r}: {field}={value!r} is not a version id; use 1-128 "
            "characters from letters, digits, '.', '_' and '-', starting with a letter or digit"
        )
    return value


def _fraction(value: object, *, field: str, info: ValidationInfo) -> float:
    if value is None:
        return 0.0
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or not 0.0 <= value <= 1.0
    ):
        raise ValueError(
            f"route for {_name(info)!r}: {field}={value!r} must be a number between 0 and 1 "
            "inclusive"
        )
    return float(value)


class _RouteSpec(BaseModel):
    """A routing table as sent (``PUT /admin/routes/{name}``, ``routes.json``), checked.

    Fields are checked in order and the first broken rule is reported (:meth:`Route.parse`);
    the validation context carries the public model name (``name``) and the raw mapping
    (``raw``: which keys were sent decides what a mode still requires).
    """

    model_config = ConfigDict(extra="forbid", validate_default=True)

    mode: Any = None
    champion: Any = None
    challenger: Any = None
    weight: Any = None
    shadow_fraction: Any = None
    active: Any = None

    @model_validator(mode="before")
    @classmethod
    def _mapping(cls, raw: object, info: ValidationInfo) -> object:
        name = _name(info)
        if not isinstance(raw, Mapping):
            raise ValueError(
                f"route for {name!r} is {type(raw).__name__}, not a JSON object; send e.g. "
                '{"mode": "canary", "champion": "v1", "challenger": "v2", "weight": 0.1}'
            )
        unknown = sorted(set(raw) - set(_ROUTE_KEYS))
        if unknown:
            raise ValueError(
                f"route for {name!r} has unknown key(s) {unknown}; allowed keys are "
                f"{list(_ROUTE_KEYS)}"
            )
        return dict(raw)

    @field_validator("mode")
    @classmethod
    def _mode(cls, mode: object, info: ValidationInfo) -> str:
        if mode not in MODES:
            raise ValueError(
                f"route for {_name(info)!r}: mode={mode!r} is not one of {list(MODES)}"
            )
        return str(mode)

    @field_validator("champion")
    @classmethod
    def _champion(cls, value: object, info: ValidationInfo) -> str:
        return _version(value, field="champion", info=info)

    @field_validator("challenger")
    @classmethod
    def _challenger(cls, value: object, info: ValidationInfo) -> str | None:
        """The challenger, then what the mode requires (before the values of those keys)."""
        name = _name(info)
        mode = info.data.get("mode")
        if mode == "single":
            if value is not None:
                raise ValueError(
                    f"route for {name!r}: mode 'single' takes no challenger (got {value!r}); set "
                    "challenger to null or use mode canary/shadow/bluegreen"
                )
            challenger = None
        else:
            challenger = _version(value, field="challenger", info=info)
            if challenger == info.data.get("champion"):
                raise ValueError(
                    f"route for {name!r}: challenger {challenger!r} equals the champion; "
                    "use two different versions or mode 'single'"
                )
        need = _REQUIRED.get(str(mode))
        raw = (info.context or {}).get("raw", {})
        if need is not None and raw.get(need) is None:
            raise ValueError(f"route for {name!r}: mode {mode!r} requires {need!r}")
        return challenger

    @field_validator("weight", "shadow_fraction")
    @classmethod
    def _fraction(cls, value: object, info: ValidationInfo) -> float:
        return _fraction(value, field=str(info.field_name), info=info)

    @field_validator("active")
    @classmethod
    def _active(cls, value: object, info: ValidationInfo) -> str:
        active = "champion" if value is None else value
        if active not in ("champion", "challenger"):
            raise ValueError(
                f"route for {_name(info)!r}: active={active!r} must be 'champion' or 'challenger'"
            )
        if info.data.get("mode") == "single" and active != "champion":
            raise ValueError(
                f"route for {_name(info)!r}: mode 'single' has no challenger to activate"
            )
        return str(active)


@dataclass(frozen=True)
class Route:
    """The routing table of one public model.

    Attributes:
        mode: ``canary`` (weighted split), ``shadow`` (champion answers, challenger mirrored),
            ``bluegreen`` (all traffic to ``active``) or ``single`` (champion only).
        champion: lockgate version id of the champion.
        challenger: lockgate version id of the challenger (None only in ``single`` mode).
        weight: canary share of traffic sent to the challenger, 0..1.
        shadow_fraction: shadow share of requests mirrored to the challenger, 0..1.
        active: bluegreen side that gets all traffic, ``champion`` or ``challenger``.
    """

    mode: str
    champion: str
    challenger: str | None = None
    weight: float = 0.0
    shadow_fraction: float = 0.0
    active: str = "champion"

    @classmethod
    def parse(cls, raw: object, *, name: str = "<model>") -> Route:
        """Validate a route given as JSON-like data.

        Args:
            raw: a mapping with the keys of the routing table.
            name: the public model name, for error messages.

        Returns:
            The normalised route.

        Raises:
            RouteError: a key is unknown or missing, or a value breaks its rule.
        """
        try:
            spec = _RouteSpec.model_validate(raw, context={"name": name, "raw": raw})
        except ValidationError as exc:
            first = exc.errors()[0]
            error = first.get("ctx", {}).get("error")
            raise RouteError(str(error) if error is not None else first["msg"]) from None
        return cls(
            mode=spec.mode,
            champion=spec.champion,
            challenger=spec.challenger,
            weight=spec.weight,
            shadow_fraction=spec.shadow_fraction,
            active=spec.active,
        )

    def to_json(self) -> dict[str, Any]:
        """The route as a JSON-ready dict with every key."""
        return {
            "mode": self.mode,
            "champion": self.champion,
            "challenger": self.challenger,
            "weight": self.weight,
            "shadow_fraction": self.shadow_fraction,
            "active": self.active,
        }

    @property
    def versions(self) -> list[str]:
        """Versions this route can send traffic to, champion first."""
        return [self.champion] if self.challenger is None else [self.champion, self.challenger]

    @property
    def primary(self) -> str:
        """The version that answers metadata and readiness queries."""
        if self.mode == "bluegreen" and self.active == "challenger" and self.challenger:
            return self.challenger
        return self.champion


def traffic_fraction(
    *, model: str, trace_id: str, purpose: str = "canary", key: bytes = b""
) -> float:
    """The deterministic position in [0, 1) of a trace for one routing decision.

    A canary request goes to the challenger when this is below ``weight``; a shadow request is
    mirrored when it is below ``shadow_fraction``. The purpose salts the hash so the two
    decisions are independent. The gateway keys the hash with its secret routing key
    (``state_dir/routing.key``), so a client that picks its trace id cannot pick its version.

    Args:
        model: the public model name.
        trace_id: the request's trace id.
        purpose: ``canary`` or ``shadow``.
        key: the gateway's routing key (BLAKE2b key, at most 64 bytes; empty: unkeyed).

    Returns:
        A float in [0, 1), uniform over trace ids.
    """
    digest = hashlib.blake2b(
        f"{model}\x00{trace_id}".encode(), digest_size=8, person=purpose.encode()[:16], key=key
    ).digest()
    return int.from_bytes(digest, "big") / 18446744073709551616.0


ROUTING_KEY_FILE = "routing.key"

SHARED_STATE_ENV = "LOCKGATE_STATE_DB_URL"
"""The PostgreSQL state database that gateway replicas share their routes and routing key in."""

_ROUTES_KEY = "routes.json"


def shared_route_store(environ: Mapping[str, str] | None = None) -> SwapStore | None:
    """The replicas' shared store (namespace ``gateway`` of ``$LOCKGATE_STATE_DB_URL``), or
    None when the variable is unset: routes stay in ``state_dir``."""
    url = (os.environ if environ is None else environ).get(SHARED_STATE_ENV, "").strip()
    if not url:
        return None
    from lockgate.state.postgres import PostgresSwapStore

    return PostgresSwapStore(url=url, namespace="gateway")


def _parse_key(text: str, where: object) -> bytes:
    try:
        key = bytes.fromhex(text.strip())
    except ValueError:
        key = b""
    if not 16 <= len(key) <= 64:
        raise GatewayError(
            f"{where} does not hold a routing key; rule: 16-64 random bytes as hex on one line; "
            "fix: delete it (the gateway makes a new key; canary traces may then change "
            "version once)"
        )
    return key


def load_routing_key(state_dir: Path, *, store: SwapStore | None = None) -> bytes:
    """The gateway's secret routing key from ``state_dir/routing.key``, made on first use.

    Kept with the routes, so a trace id lands on the same version across restarts; readable by
    the gateway's user only. Clients never see it. With a shared store (``store``, default
    :func:`shared_route_store`) the key lives there, made once by the first replica, so every
    replica routes a trace id the same way.
    """
    shared = store if store is not None else shared_route_store()
    if shared is not None:
        shared.swap(ROUTING_KEY_FILE, None, (os.urandom(32).hex() + "\n").encode())
        raw = shared.get(ROUTING_KEY_FILE) or b""
        return _parse_key(raw.decode(errors="replace"), f"the shared {ROUTING_KEY_FILE}")
    path = state_dir / ROUTING_KEY_FILE
    if not path.exists():  # made once: a second gateway starting meanwhile keeps the first key
        atomic_write(path, os.urandom(32).hex() + "\n", mode=0o600, replace=False)
    return _parse_key(path.read_text(), path)


def _routes_document(routes: Mapping[str, Route]) -> bytes:
    payload = {"format": 1, "routes": {n: r.to_json() for n, r in sorted(routes.items())}}
    return (json.dumps(payload, indent=2) + "\n").encode()


def _parse_routes(raw: bytes, where: object) -> dict[str, Route]:
    try:
        items = json.loads(raw)["routes"]
        return {n: Route.parse(r, name=n) for n, r in items.items()}
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise RouteError(
            f"{where} cannot be loaded ({exc}); fix or delete it (routes are set again with "
            "PUT /admin/routes/<name>)"
        ) from exc


class RouteTable:
    """Routes by public model, persisted atomically to ``state_dir/routes.json``, or shared by
    every replica in a swap store (``store``; default :func:`shared_route_store`, None: the
    file whatever the environment says).

    With a store, :attr:`routes` is the document as last read: this replica's own changes at
    once, another replica's within ``poll_s`` seconds (a daemon thread polls; a failed poll
    keeps the last routes and is retried). A store with no routes yet is seeded from
    ``state_dir/routes.json`` when that file exists.
    """

    def __init__(
        self,
        state_dir: Path,
        *,
        store: SwapStore | EllipsisType | None = ...,
        poll_s: float = 1.0,
        on_poll_error: Callable[[Exception], None] | None = None,
    ) -> None:
        self.path = state_dir / "routes.json"
        self.routes: dict[str, Route] = {}
        self.store = shared_route_store() if isinstance(store, EllipsisType) else store
        self.poll_s = poll_s
        self._raw: bytes | None = None
        self._on_poll_error = on_poll_error
        self._stop = threading.Event()
        self._lock = threading.Lock()
        if self.path.exists() and (self.store is None or self.store.get(_ROUTES_KEY) is None):
            try:
                local = self.path.read_bytes()
            except OSError as exc:
                raise RouteError(
                    f"{self.path} cannot be loaded ({exc}); fix or delete the file (routes are "
                    "set again with PUT /admin/routes/<name>)"
                ) from exc
            self.routes = _parse_routes(local, self.path)
            if self.store is not None:
                self.store.swap(_ROUTES_KEY, None, local)  # the first replica seeds the store
        if self.store is not None:
            self.refresh()
            threading.Thread(target=self._poll, name="lockgate-routes-poll", daemon=True).start()

    def refresh(self) -> bool:
        """Read the shared routes now; True when they changed (no-op without a store)."""
        if self.store is None:
            return False
        raw = self.store.get(_ROUTES_KEY)
        with self._lock:
            if raw == self._raw:
                return False
            self.routes = {} if raw is None else _parse_routes(raw, self._where())
            self._raw = raw
            return True

    def close(self) -> None:
        """Stop polling the shared store."""
        self._stop.set()

    def _where(self) -> str:
        uri = getattr(self.store, "uri", None)
        return str(uri(_ROUTES_KEY)) if callable(uri) else f"the shared {_ROUTES_KEY}"

    def _poll(self) -> None:
        while not self._stop.wait(self.poll_s):
            try:
                self.refresh()
            except Exception as exc:  # keep serving the last routes; say why, retry
                if self._on_poll_error is not None:
                    self._on_poll_error(exc)
                else:
                    logging.getLogger("lockgate.gateway").warning(
                        "cannot read the shared routes from %s (%s); serving the last routes "
                        "read, retrying every %g s",
                        self._where(),
                        exc,
                        self.poll_s,
                    )

    def _change(self, change: Callable[[dict[str, Route]], bool]) -> bool:
        if self.store is None:
            routes = dict(self.routes)
            if not change(routes):
                return False
            atomic_write(self.path, _routes_document(routes))
            self.routes = routes
            return True
        for _ in range(50):
            raw = self.store.get(_ROUTES_KEY)
            routes = {} if raw is None else _parse_routes(raw, self._where())
            if not change(routes):
                with self._lock:
                    self.routes, self._raw = routes, raw
                return False
            document = _routes_document(routes)
            if self.store.swap(_ROUTES_KEY, raw, document):
                with self._lock:
                    self.routes, self._raw = routes, document
                return True
        raise RouteError(
            f"{self._where()} kept changing under 50 attempts; rule: route changes are "
            "compare-and-swap; fix: retry the change"
        )

    def set(self, name: str, route: Route) -> None:
        def put(routes: dict[str, Route]) -> bool:
            routes[name] = route
            return True

        self._change(put)

    def delete(self, name: str) -> bool:
        def remove(routes: dict[str, Route]) -> bool:
            return routes.pop(name, None) is not None

        return self._change(remove)

    def to_json(self) -> dict[str, Any]:
        return {n: r.to_json() for n, r in sorted(self.routes.items())}
