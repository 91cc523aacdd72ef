"""Online features at serving time: requests that carry entity keys instead of feature values.

A pipeline's public model may be served with its Feast feature service's **online store**
(SQLite locally, Redis in production). A client then sends only the service's entity join keys,
one KServe v2 input each (for the fraud example ``transaction_id``, ``customer_id`` and
``merchant_id``); the gateway looks the service's features up in the online store, encodes them
with the wire schema of the version it routed the request to (exactly as
:func:`lockgate.serving.wire.encode` would), and proceeds as for a named-feature request
(:mod:`lockgate.gateway.named_inputs`). The prediction log records the full wire rows served and
the entity keys (column ``entity_keys``: JSON ``{key: [value per row]}``; a failed lookup is
logged with its error and the keys it was for).

Configuration (``GatewayConfig.online_features``, ``--online-features FILE``): a JSON object
mapping a public model name to its Feast source::

    {"fraud_lgbm": {"feast_repo": "/srv/feast/fraud",      # required
                    "feature_service": "fraud_v1",         # required
                    "project": "",                         # a store built in code: its project
                    "data_dir": "",                        # FeastStore.data_dir (optional)
                    "timeout_s": 1.0,                      # one lookup at most (default 1 s)
                    "max_rows": 1024}}                     # entity rows per request at most

``feast_repo`` is the folder of a Feast repository (``feature_store.yaml``: its online store,
e.g. ``type: redis``, is used) or of a store built in code (a ``registry.db`` and the SQLite
``online_store.db``, :class:`lockgate.features.store.FeastStore`); a relative path is read
against the JSON file's folder. The file is read and checked when the app is built (unknown
keys, missing folders; not by :class:`~lockgate.gateway.config.GatewayConfig`, which may be
rendered for another machine); Feast itself is opened when the gateway starts, which fails
naming the known services when ``feature_service`` is not one of them. Feast is imported only
then, and only when online features are configured. The service's definition (join keys,
features) is read at start: restart or roll the gateway after changing it.

The request contract
    * the inputs are **exactly** the service's join keys, one input each. No feature values
      ride along to override looked-up ones: a request sends either every feature or only the
      keys, anything else is refused, and the contract error names both forms (a client that
      knows some values better than the store sends every feature by name);
    * a key of type ``Int64``/``Int32`` is sent as an integer datatype (JSON integers, or binary
      ``INT8``..``INT64``, ``UINT8``..``UINT64``); a ``String`` key as ``BYTES`` (JSON strings
      or binary); no ``null`` (every row names its entity);
    * shape ``[n]`` or ``[n, 1]``, the same ``n`` for every key, ``1 <= n <=`` the model's
      ``max_rows`` (1,024 by default; at most
      :data:`~lockgate.gateway.named_inputs.MAX_ROWS`). A lookup cannot be stopped once it
      runs: without this bound one request of 65,536 keys would hold a lookup thread for many
      times ``timeout_s`` after its 504, and a few such requests every lookup.

Lookups
    Feast's ``get_online_features`` is blocking (about 1 ms for one row, 10 ms for 32 on SQLite
    or Redis, ``benchmarks/bench_online_features.py``), so it runs in a small thread pool
    (:data:`MAX_WORKERS` threads shared by all models), never on the event loop. A lookup that
    takes longer than the model's ``timeout_s`` (queueing included) is answered 504; a failing
    online store 503 when it cannot be reached, else 502, naming the store and the repository,
    never with a stack trace (redis-py retries a refused connection for about 4 s, so a Redis
    that is down shows as 504 under a shorter ``timeout_s``). An entity the store does not
    hold, and a value Feast returns as ``None``, is a **missing** value (NaN on the wire, as a
    JSON ``null`` feature would be): the model imputes it, and the prediction log shows it as
    missing.

Keeping the store fresh and honest
    A pipeline whose spec sets ``online_features=OnlineFeatures()`` gets the
    ``[name, online_features]`` asset (Feast's ``materialize_incremental`` of the service's
    views, :mod:`lockgate.features.materialize`) and the ``[name, skew_report]`` asset: the
    vectors logged here for entity-key requests against Feast's point-in-time historical
    retrieval for the same keys at the request time (:mod:`lockgate.monitoring.skew`, also
    ``lockgate skew PIPELINE``).
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import struct
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import rapidjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from lockgate.errors import DataError, SchemaError
from lockgate.gateway.coalesce import FIXED_DTYPES
from lockgate.gateway.errors import GatewayError, ReplyError
from lockgate.gateway.named_inputs import (
    MAX_ROWS,
    MAX_VALUE_BYTES,
    FeatureInputError,
    input_rows,
)
from lockgate.serving.wire import WireSchema, code24, encode

__all__ = [
    "MAX_WORKERS",
    "EntityKeys",
    "OnlineFeatureSource",
    "OnlineFeatures",
    "OnlineService",
    "entity_header",
    "load_online_features",
]

MAX_WORKERS = 4
"""Threads that run online-store lookups, shared by every model of one gateway."""

logger = logging.getLogger("lockgate.gateway")

_MAX_CONFIG_BYTES = 1 << 20
_LENGTH = struct.Struct("<I")
_INTEGER_DATATYPES = frozenset(k for k in FIXED_DTYPES if k.startswith(("INT", "UINT")))
_FLOAT32_MAX = float(np.finfo(np.float32).max)
_NAN = float("nan")
_INF = float("inf")


class OnlineFeatureSource(BaseModel):
    """Where one public model's online features come from.

    Attributes:
        feast_repo: Folder of a Feast repository (``feature_store.yaml``) or of a store built
            in code (absolute once loaded).
        feature_service: The Feast feature service the pipeline was trained on.
        project: The Feast project of a store built in code (empty: ``lockgate``; a repository
            names its own).
        data_dir: ``FeastStore.data_dir`` (empty: the repository folder).
        timeout_s: Longest one lookup may take, waiting for a thread included (504 after).
        max_rows: Most entity rows one request may look up (about 0.3 ms a row on SQLite or
            Redis, so the default 1,024 fits the default ``timeout_s``); more is a 400 that
            says to split the request.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    feast_repo: str = Field(min_length=1)
    feature_service: str = Field(min_length=1)
    project: str = ""
    data_dir: str = ""
    timeout_s: float = Field(default=1.0, gt=0, le=60)
    max_rows: int = Field(default=1024, ge=1, le=MAX_ROWS)


def load_online_features(path: Path) -> dict[str, OnlineFeatureSource]:
    """Reads and checks the online-features file (see the module docstring for its shape).

    Args:
        path: The JSON file.

    Returns:
        Public model name -> its source, with ``feast_repo`` and ``data_dir`` made absolute
        (relative paths are read against the file's folder).

    Raises:
        GatewayError: The file cannot be read, is not such a JSON object, names a model that is
            no valid model name, has an unknown or missing key, or a folder that does not exist.
    """
    from lockgate.gateway.routing import NAME_RE

    shape = (
        '{"<model>": {"feast_repo": "<folder>", "feature_service": "<name>", "project": "", '
        '"data_dir": "", "timeout_s": 1.0, "max_rows": 1024}}'
    )
    try:
        with open(path, "rb") as handle:
            raw = handle.read(_MAX_CONFIG_BYTES + 1)
    except OSError as exc:
        raise GatewayError(
            f"online_features={str(path)!r} cannot be read ({exc.strerror or exc}); rule: a JSON "
            f"file {shape}; fix: write it, or leave online_features unset"
        ) from None
    try:
        data = json.loads(raw) if len(raw) <= _MAX_CONFIG_BYTES else None
    except ValueError as exc:
        raise GatewayError(
            f"online_features file {path} is not JSON ({exc}); rule: {shape}; fix: correct it"
        ) from None
    if not isinstance(data, dict) or not data:
        raise GatewayError(
            f"online_features file {path} holds {type(data).__name__ if data else 'nothing'}; "
            f"rule: a non-empty JSON object {shape} (at most 1 MiB); fix: map each public model "
            "name to its Feast repository and feature service"
        )
    base = Path(path).resolve().parent
    sources: dict[str, OnlineFeatureSource] = {}
    for model, entry in data.items():
        if not NAME_RE.match(model):
            raise GatewayError(
                f"online_features file {path}: {model[:80]!r} is not a model name; rule: the "
                "public model name (letters, digits, '_' and '.'), as clients call it; fix: "
                "rename the key"
            )
        try:
            source = OnlineFeatureSource.model_validate(entry)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in err['loc']) or 'entry'}: "
                + ("unknown key" if err["type"] == "extra_forbidden" else err["msg"])
                for err in exc.errors()
            )
            raise GatewayError(
                f"online_features file {path}, model {model!r}: {problems}; rule: {shape} "
                "(feast_repo and feature_service required); fix: correct the entry"
            ) from None
        repo = (base / source.feast_repo).resolve()
        if not repo.is_dir():
            raise GatewayError(
                f"online_features file {path}, model {model!r}: feast_repo {str(repo)!r} is no "
                "folder; rule: the folder of a Feast repository (feature_store.yaml) or of a "
                "store built in code (registry.db); fix: correct the path (relative paths are "
                "read against the file's folder)"
            )
        data_dir = str((base / source.data_dir).resolve()) if source.data_dir else ""
        sources[model] = source.model_copy(update={"feast_repo": str(repo), "data_dir": data_dir})
    return sources


@dataclass(frozen=True)
class EntityKeys:
    """The entity keys of one request, decoded and typed.

    Attributes:
        rows: One ``{join key: value}`` dict per row, in the service's key order.
    """

    rows: list[dict[str, Any]]

    def to_json(self) -> str:
        """The keys as the prediction log records them: ``{key: [value per row]}``."""
        names = list(self.rows[0]) if self.rows else []
        return json.dumps(
            {k: [r[k] for r in self.rows] for k in names}, separators=(",", ":"), ensure_ascii=False
        )


class OnlineService:
    """One model's opened feature service: its join keys, features and online store.

    Built by :meth:`OnlineFeatures.open`; :meth:`fetch` looks features up in the gateway's
    lookup threads (:meth:`lookup` is the blocking call it runs there).

    Attributes:
        model: The public model name.
        source: Its configuration.
        join_keys: The service's join keys in service order, with their Feast type names.
        features: The service's feature names in service order.
        store_text: How messages name the online store (type and repository).
    """

    def __init__(
        self,
        model: str,
        source: OnlineFeatureSource,
        store: Any,
        service: Any,
        pool: Callable[[], ThreadPoolExecutor | None],
    ) -> None:
        self.model = model
        self._pool = pool
        self.source = source
        self._store = store
        self._service = service
        keys: dict[str, str] = {}
        from lockgate.features.views import entity_projections

        for view, join_key_map in entity_projections(store, service):
            for column in view.entity_columns:
                name = join_key_map.get(column.name, column.name)
                keys.setdefault(name, str(column.dtype))
        self.join_keys: dict[str, str] = keys
        self.features: tuple[str, ...] = tuple(
            f.name for p in service.feature_view_projections for f in p.features
        )
        online = getattr(store.config, "online_store", None)
        kind = getattr(online, "type", None) or type(online).__name__
        self.store_text = (
            f"Feast online store {kind!r} of repository {source.feast_repo} "
            f"(feature service {source.feature_service!r})"
        )

    def keys_text(self) -> str:
        """The join keys and their datatypes, for messages."""
        return ", ".join(f"{k} ({_key_datatype(t)})" for k, t in self.join_keys.items())

    def is_entity_request(self, inputs: object) -> bool:
        """Whether a request's ``inputs`` are exactly the join keys (by name)."""
        if type(inputs) is not list or len(inputs) != len(self.join_keys):
            return False
        names = {spec.get("name") if type(spec) is dict else None for spec in inputs}
        return names == set(self.join_keys)

    def decode_keys(self, inputs: list[Any], body: bytes, offset: int) -> EntityKeys:
        """Decodes the join keys of an entity request (see the module's contract).

        Args:
            inputs: The request's inputs (:meth:`is_entity_request` holds).
            body: The whole request body (binary data follows the JSON header).
            offset: Where binary data begins.

        Raises:
            FeatureInputError: A wrong datatype, shape or value, a null key, or binary data
                that does not fit.
        """
        columns: dict[str, list[Any]] = {}
        rows = 0
        first = ""
        off = offset
        for spec in inputs:
            name = spec["name"]
            kind = self.join_keys[name]
            integer = kind.startswith(("Int", "UInt"))
            string = kind == "String"
            datatype = spec.get("datatype")
            expected = "an integer datatype (INT64, INT32, ...)" if integer else "BYTES"
            if (integer and datatype not in _INTEGER_DATATYPES) or (string and datatype != "BYTES"):
                raise FeatureInputError(
                    f"entity key {name!r} of {self.model} has datatype {str(datatype)[:40]!r}; "
                    f"rule: a {kind} key is sent as {expected}; fix: set datatype "
                    f"{'INT64' if integer else 'BYTES'} and send the key itself"
                )
            n = input_rows(name, spec.get("shape"), self.model, kind="entity key")
            if n > self.source.max_rows:
                raise FeatureInputError(
                    f"entity key {name!r} has {n} rows; rule: one request of {self.model} looks "
                    f"up at most max_rows={self.source.max_rows} entities in the online store "
                    "(a lookup cannot be stopped once it runs); fix: split the request, or "
                    "raise max_rows in the online-features file"
                )
            if not rows:
                rows, first = n, name
            elif n != rows:
                raise FeatureInputError(
                    f"entity key {name!r} has {n} rows but {first!r} has {rows}; rule: every key "
                    "of a request has the same number of rows; fix: send one key per row"
                )
            params = spec.get("parameters")
            size = params.get("binary_data_size") if type(params) is dict else None
            if size is not None:
                if type(size) is not int or size < 0 or off + size > len(body):
                    raise FeatureInputError(
                        f"entity key {name!r} has binary_data_size={size!r}; rule: a byte count "
                        f"that fits the body ({len(body) - off} bytes left); fix: send the "
                        "tensor's bytes after the JSON header, inputs in order"
                    )
                if string:
                    values: list[Any] = _binary_strings(name, body, off, size, n)
                else:
                    values = _binary_integers(name, datatype, body, off, size, n)
                off += size
            else:
                data = spec.get("data")
                if type(data) is not list:
                    raise FeatureInputError(
                        f"entity key {name!r} has no 'data' list and no binary_data_size; rule: "
                        'keys in JSON "data" or as binary tensor data; fix: send '
                        f'"data": [...] with {n} key(s)'
                    )
                values = _json_keys(name, data, n, integer=integer, string=string)
            columns[name] = values
        ordered = list(self.join_keys)  # service key order
        return EntityKeys([{k: columns[k][i] for k in ordered} for i in range(rows)])

    def encode(
        self, values: Mapping[str, list[Any]], schema: WireSchema, *, version: str
    ) -> np.ndarray:
        """The looked-up features as the wire matrix of the routed version.

        Exactly what :func:`lockgate.serving.wire.encode` builds from the same values in a
        DataFrame (None is missing), without building one for the usual value types: numbers
        and booleans in numeric columns, strings in categorical ones.

        Args:
            values: What :meth:`lookup` returned.
            schema: The routed version's wire schema.
            version: The routed version (for messages).

        Raises:
            ReplyError: 502 when the service lacks a feature of the version's wire schema (the
                online-features file names another service than the pipeline was trained on)
                or the store returned a value the wire cannot carry.
        """
        missing = [name for name in schema.names if name not in values]
        if missing:
            raise ReplyError(
                502,
                f"feature service {self.source.feature_service!r} has no feature(s) "
                f"{missing[:12]} that version {version} of {self.model} is served with (its "
                "wire schema); rule: the online features of a model are those of the feature "
                "service it was trained on; fix: name that service in the online-features file",
            )
        try:
            matrix = _fast_encode(values, schema)
            if matrix is None:  # other value types: as the wire encodes a DataFrame
                import pandas as pd

                matrix = encode(pd.DataFrame({n: values[n] for n in schema.names}), schema)
        except (DataError, SchemaError) as exc:
            raise ReplyError(
                502,
                f"the {self.store_text} returned values version {version} of {self.model} "
                f"cannot take ({exc}); fix: check the feature values materialized in the store",
            ) from None
        return matrix

    def lookup(self, keys: EntityKeys) -> dict[str, list[Any]]:
        """The service's features for the entity rows (blocking: run it in a thread).

        Returns:
            Feature (and join key) name -> one value per entity row; a value the store does not
            hold is None (missing).
        """
        online = self._store.get_online_features(features=self._service, entity_rows=keys.rows)
        values: dict[str, list[Any]] = online.to_dict()
        return values

    async def fetch(self, keys: EntityKeys) -> dict[str, list[Any]]:
        """Looks the features up in a lookup thread, within the model's ``timeout_s``.

        Raises:
            ReplyError: 504 after ``timeout_s``; 503 when the online store cannot be reached;
                502 when it fails otherwise (the message names the store).
        """
        pool = self._pool()
        if pool is None:
            raise ReplyError(503, "the gateway's online features are closed; start the gateway")
        timeout = self.source.timeout_s
        future = asyncio.get_running_loop().run_in_executor(pool, self.lookup, keys)
        try:
            return await asyncio.wait_for(future, timeout)
        except TimeoutError:
            raise ReplyError(
                504,
                f"the online feature lookup of {len(keys.rows)} row(s) for {self.model} took "
                f"longer than {timeout} s ({self.store_text}); rule: a lookup answers within "
                "timeout_s; fix: check that the online store is up (a Redis client retries a "
                "refused connection for seconds) and its load and latency, send fewer rows per "
                "request, or raise timeout_s in the online-features file",
            ) from None
        except Exception as exc:
            unreachable = isinstance(exc, OSError) or "Connection" in type(exc).__name__
            logger.warning("online feature lookup for %s failed: %r", self.model, exc)
            raise ReplyError(
                503 if unreachable else 502,
                f"the {self.store_text} "
                + ("cannot be reached" if unreachable else "failed")
                + f" ({type(exc).__name__}: {str(exc)[:300]}); rule: the online store answers "
                "lookups of the service's entity keys; fix: check that the store is up and "
                "materialized (the pipeline's `<name>_online_features` job with "
                "online_features=OnlineFeatures() in its spec, or `feast materialize-incremental` "
                "in the repository)",
            ) from None


class OnlineFeatures:
    """The gateway's online features: one :class:`OnlineService` per configured model.

    Args:
        sources: Public model name -> its source (:func:`load_online_features`).
        max_workers: Threads running lookups (shared by every model).
    """

    def __init__(
        self, sources: Mapping[str, OnlineFeatureSource], *, max_workers: int = MAX_WORKERS
    ) -> None:
        self.sources = dict(sources)
        self.max_workers = max_workers
        self.services: dict[str, OnlineService] = {}
        self._pool: ThreadPoolExecutor | None = None

    async def open(self) -> None:
        """Opens each model's Feast store and feature service (in a thread: Feast imports
        take seconds).

        Raises:
            GatewayError: A store cannot be opened or a feature service does not exist (the
                message names the known ones).
        """
        if self._pool is None:
            self._pool = ThreadPoolExecutor(
                max_workers=self.max_workers, thread_name_prefix="lockgate-online"
            )
        try:
            self.services = await asyncio.get_running_loop().run_in_executor(self._pool, self._open)
        except BaseException:
            self.close()
            raise

    def _open(self) -> dict[str, OnlineService]:
        from lockgate.errors import FeatureStoreError
        from lockgate.features.store import FeastStore

        services: dict[str, OnlineService] = {}
        for model, source in self.sources.items():
            feast = FeastStore(
                repo_dir=source.feast_repo, data_dir=source.data_dir, project=source.project
            )
            try:
                store = feast.store()
                service = feast.feature_service(source.feature_service)  # names known ones
                services[model] = OnlineService(model, source, store, service, lambda: self._pool)
            except FeatureStoreError as exc:
                raise GatewayError(f"online features of model {model!r}: {exc}") from None
            except Exception as exc:
                raise GatewayError(
                    f"online features of model {model!r}: the Feast store in "
                    f"{source.feast_repo} cannot be opened ({type(exc).__name__}: {exc}); rule: "
                    "a Feast repository or a store built in code with the feature service "
                    "applied; fix: check feature_store.yaml and run `feast apply` there"
                ) from None
        return services

    def close(self) -> None:
        """Stops the lookup threads (a lookup still running finishes on its own)."""
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None

    def get(self, model: str) -> OnlineService | None:
        """The opened service of a model, or None when it has no online features."""
        return self.services.get(model)


def entity_header(
    service: OnlineService, body: bytes, ihcl: str | None
) -> tuple[dict[str, Any], int, str | None] | None:
    """The JSON header of a request whose inputs are exactly the service's join keys.

    Args:
        service: The model's online service.
        body: The request body.
        ihcl: Its ``Inference-Header-Content-Length``, if any.

    Returns:
        ``(header, header length, request id)``, or None for any other request (also an
        unreadable one: :func:`lockgate.gateway.kserve.parse_request` then says why).
    """
    if ihcl is None:
        hlen = len(body)
    elif ihcl.isdigit() and len(ihcl) <= 10 and 0 < int(ihcl) <= len(body):
        hlen = int(ihcl)
    else:
        return None
    head = body[:hlen] if hlen < len(body) else body
    if not all(key.encode() in head for key in service.join_keys):  # cheap: no JSON parse
        return None
    try:
        header = rapidjson.loads(head)
    except (ValueError, TypeError):
        return None
    if not isinstance(header, dict) or not service.is_entity_request(header.get("inputs")):
        return None
    rid = header.get("id")
    return header, hlen, rid if isinstance(rid, str) else None


def _fast_encode(values: Mapping[str, list[Any]], schema: WireSchema) -> np.ndarray | None:
    """:func:`lockgate.serving.wire.encode` for plain values, or None for any other type."""
    n = len(values[schema.names[0]]) if schema.width else 0
    out = np.empty((n, schema.width), dtype=np.float32)
    for j, column in enumerate(schema.columns):
        column_values = values[column.name]
        if column.kind == "categorical":
            codes: list[float] = []
            for v in column_values:
                if type(v) is str:
                    codes.append(_code(v))
                elif v is None or (type(v) is float and v != v):
                    codes.append(_NAN)
                else:
                    return None
            out[:, j] = codes
            continue
        numbers: list[float] = []
        for v in column_values:
            kind = type(v)
            if kind is float or kind is int or kind is bool:
                numbers.append(float(v) if kind is not int or abs(v) < 2**1023 else _INF)
            elif v is None:
                numbers.append(_NAN)
            else:
                return None
        array = np.array(numbers, dtype=np.float64)
        if (np.abs(array) > _FLOAT32_MAX).any():  # NaN compares False
            return None  # the wire's own check says which value
        out[:, j] = array
    return out


@functools.lru_cache(maxsize=8192)
def _code(value: str) -> float:
    return float(code24(value))


def _key_datatype(kind: str) -> str:
    return "BYTES" if kind == "String" else "INT64" if kind.startswith(("Int", "UInt")) else kind


def _json_keys(name: str, data: list[Any], n: int, *, integer: bool, string: bool) -> list[Any]:
    flat = data
    if data and isinstance(data[0], list):
        if not all(isinstance(row, list) and len(row) == 1 for row in data):
            raise FeatureInputError(
                f"entity key {name!r} has nested data that is not one key per row; rule: "
                f"[k1, k2, ...] or [[k1], [k2], ...]; fix: send {n} key(s), one per row"
            )
        flat = [row[0] for row in data]
    if len(flat) != n:
        raise FeatureInputError(
            f"entity key {name!r} has {len(flat)} value(s) for {n} row(s); rule: one key per "
            "row as its shape says; fix: send as many keys as rows"
        )
    for i, v in enumerate(flat):
        ok = (
            (type(v) is int)
            if integer
            else (type(v) is str and len(v.encode("utf-8")) <= MAX_VALUE_BYTES)
            if string
            else v is not None
        )
        if not ok:
            what = "an integer" if integer else "a string" if string else "a value"
            raise FeatureInputError(
                f"entity key {name!r} got {str(v)[:40]!r} ({type(v).__name__}) in row {i}; rule: "
                f"every row names its entity with {what}"
                + (f" of at most {MAX_VALUE_BYTES} bytes" if string else "")
                + "; fix: send the key itself (rows without a key cannot be looked up)"
            )
    return list(flat)


def _binary_integers(
    name: str, datatype: str, body: bytes, off: int, size: int, n: int
) -> list[Any]:
    dtype = FIXED_DTYPES[datatype]
    if size != n * dtype.itemsize:
        raise FeatureInputError(
            f"entity key {name!r} has binary_data_size={size}; rule: {n} row(s) of {datatype} "
            f"take {n * dtype.itemsize} bytes; fix: send the tensor's raw little-endian bytes"
        )
    values: list[Any] = np.frombuffer(body, dtype=dtype, count=n, offset=off).tolist()
    return values


def _binary_strings(name: str, body: bytes, off: int, size: int, n: int) -> list[Any]:
    values: list[Any] = []
    end = off + size
    at = off
    for i in range(n):
        if at + 4 > end or at + 4 + _LENGTH.unpack_from(body, at)[0] > end:
            raise FeatureInputError(
                f"entity key {name!r} has binary_data_size={size}, which ends inside row {i} of "
                f"{n}; rule: BYTES elements are a 4-byte little-endian length and that many "
                "bytes; fix: send one element per row"
            )
        (length,) = _LENGTH.unpack_from(body, at)
        at += 4
        if length > MAX_VALUE_BYTES:
            raise FeatureInputError(
                f"entity key {name!r} is longer than {MAX_VALUE_BYTES} bytes in row {i}; rule: "
                f"keys of at most {MAX_VALUE_BYTES} UTF-8 bytes; fix: send the entity's key"
            )
        try:
            values.append(body[at : at + length].decode("utf-8"))
        except UnicodeDecodeError:
            raise FeatureInputError(
                f"entity key {name!r} is not UTF-8 in row {i}; rule: BYTES keys are UTF-8 "
                "strings; fix: encode them as UTF-8"
            ) from None
        at += length
    if at != end:
        raise FeatureInputError(
            f"entity key {name!r} has binary_data_size={size} but its {n} string(s) take "
            f"{at - off} bytes; rule: exactly n elements; fix: send as many keys as the shape says"
        )
    return values
