"""Routing tables: which lockgate version of a public model answers a request.

:class:`Route` is the table of one public model (canary, shadow, bluegreen or single), checked
by a pydantic model when it arrives (``PUT /admin/routes/{name}``, ``routes.json``) with the
error messages clients see; :class:`RouteTable` keeps the tables in ``state_dir/routes.json``
(atomic, durable writes); :func:`traffic_fraction` places a trace id in [0, 1) with a keyed
hash (the secret ``state_dir/routing.key``, :func:`load_routing_key`), so a trace always lands on
the same version and a client cannot choose its version.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
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

__all__ = [
    "MODES",
    "NAME_RE",
    "ROUTED_BY",
    "ROUTING_KEY_FILE",
    "VERSION_RE",
    "Route",
    "RouteTable",
    "load_routing_key",
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


def load_routing_key(state_dir: Path) -> bytes:
    """The gateway's secret routing key from ``state_dir/routing.key``, made on first use.

    Kept with the routes, so a trace id lands on the same version across restarts; readable by
    the gateway's user only. Clients never see it.
    """
    path = state_dir / ROUTING_KEY_FILE
    if not path.exists():  # made once: a second gateway starting meanwhile keeps the first key
        atomic_write(path, os.urandom(32).hex() + "\n", mode=0o600, replace=False)
    text = path.read_text().strip()
    try:
        key = bytes.fromhex(text)
    except ValueError:
        key = b""
    if not 16 <= len(key) <= 64:
        raise GatewayError(
            f"{path} does not hold a routing key; rule: 16-64 random bytes as hex on one line; "
            "fix: delete the file (the gateway makes a new key; canary traces may then change "
            "version once)"
        )
    return key


class RouteTable:
    """Routes by public model, persisted atomically to ``state_dir/routes.json``."""

    def __init__(self, state_dir: Path) -> None:
        self.path = state_dir / "routes.json"
        self.routes: dict[str, Route] = {}
        if self.path.exists():
            try:
                raw = json.loads(self.path.read_text())
                items = raw["routes"]
                self.routes = {n: Route.parse(r, name=n) for n, r in items.items()}
            except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
                raise RouteError(
                    f"{self.path} cannot be loaded ({exc}); fix or delete the file (routes are "
                    "set again with PUT /admin/routes/<name>)"
                ) from exc

    def set(self, name: str, route: Route) -> None:
        routes = dict(self.routes)
        routes[name] = route
        self._persist(routes)
        self.routes = routes

    def delete(self, name: str) -> bool:
        if name not in self.routes:
            return False
        routes = dict(self.routes)
        del routes[name]
        self._persist(routes)
        self.routes = routes
        return True

    def to_json(self) -> dict[str, Any]:
        return {n: r.to_json() for n, r in sorted(self.routes.items())}

    def _persist(self, routes: Mapping[str, Route]) -> None:
        payload = {"format": 1, "routes": {n: r.to_json() for n, r in sorted(routes.items())}}
        atomic_write(self.path, (json.dumps(payload, indent=2) + "\n").encode())
