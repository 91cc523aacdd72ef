"""The lockgate gateway: the only door to the served models.

Modules: :mod:`~lockgate.gateway.app` (the ASGI app; :func:`~lockgate.gateway.factory.create_app` builds it),
:mod:`~lockgate.gateway.config`, :mod:`~lockgate.gateway.routing`, :mod:`~lockgate.gateway.models`,
:mod:`~lockgate.gateway.kserve`, :mod:`~lockgate.gateway.named_inputs`,
:mod:`~lockgate.gateway.coalesce` and :mod:`~lockgate.gateway.merge_queue`,
:mod:`~lockgate.gateway.shadow`, :mod:`~lockgate.gateway.upstream`, :mod:`~lockgate.gateway.stats`,
:mod:`~lockgate.gateway.metrics`, :mod:`~lockgate.gateway.predlog`, :mod:`~lockgate.gateway.admin`,
:mod:`~lockgate.gateway.server`, :mod:`~lockgate.gateway.cli`, :mod:`~lockgate.gateway.process`.

A raw ASGI application (no framework on the hot path) that speaks the KServe v2 HTTP protocol to
clients and to the upstream model server (Triton). Each lockgate model version is its own upstream
model named ``<pipeline>-<version>``; clients see the pipeline name (``fraud_lgbm``) and the gateway
routes each request to the champion's or the challenger's upstream model, so an unchanged
``tritonclient.http.InferenceServerClient`` pointed at the gateway just works.

Endpoints::

    GET  /v2/health/live | /v2/health/ready | /v2            health and server metadata
    GET  /v2/models/{name}[/versions/{v}]                   metadata of the routed model
    GET  /v2/models/{name}[/versions/{v}]/ready             readiness of the routed model
    GET  /v2/models/{name}[/versions/{v}]/config            upstream config, public name
    POST /v2/models/{name}[/versions/{v}]/infer             inference (v pins a lockgate version)
    GET  /metrics                                           Prometheus text exposition

Admin endpoints, served only on the **admin listener** (its own port, 127.0.0.1 by default; the
inference port answers 404 naming it), each with ``Authorization: Bearer <admin token>``
(compared in constant time; a missing header is 401, a wrong token 403)::

    GET  /admin/routes | /admin/routes/{name}               routing tables
    PUT  /admin/routes/{name}    DELETE /admin/routes/{name}
    GET  /admin/stats/{name}     POST /admin/stats/{name}/reset
    POST /admin/log/roll                                    close the WAL segment, roll to Parquet

The state-changing calls (PUT/DELETE routes, stats reset, log roll) must state who acts in an
``x-lockgate-actor`` header; each one that succeeds is appended to the audit log
(:class:`lockgate.audit.log.AuditLog`, kind ``gateway_admin``) with that actor and the token's
identity (``sha256:<first 12 hex digits>`` of the token). ``python -m lockgate.gateway`` refuses
to start without a non-empty token (``--admin-token-env`` or ``--admin-token-file``) or without
an audit log (``--audit-log``).

Routing table per public model (``PUT /admin/routes/{name}``, persisted to
``state_dir/routes.json``)::

    {"mode": "canary" | "shadow" | "bluegreen" | "single",
     "champion": "<version>", "challenger": "<version>" | null,
     "weight": 0..1,            # canary: share of traffic sent to the challenger
     "shadow_fraction": 0..1,   # shadow: share of champion traffic mirrored to the challenger
     "active": "champion" | "challenger"}   # bluegreen: who gets all traffic

Weighted choices hash the trace id (BLAKE2b, salted per purpose and model, keyed with the
gateway's secret ``state_dir/routing.key``), so a trace always lands on the same version of one
gateway (across restarts), raising a canary weight never moves a challenger trace back, and a
client that chooses its trace id still cannot choose its version. The
trace id is the client's ``x-lockgate-trace-id`` (else ``x-request-id``, else the W3C
``traceparent`` trace id, else 128 random bits in hex); it comes back in the
``x-lockgate-trace-id`` header and in the response's ``parameters.lockgate_trace_id``; the KServe
``id`` is echoed, ``model_name``/``model_version`` are the public name and the lockgate version.
JSON bodies and the binary tensor extension (``Inference-Header-Content-Length``, what
``tritonclient`` sends by default) pass through unchanged; gzip/deflate request bodies are
decompressed.

Inputs: clients send the pipeline's **features by name**, one input per feature (numeric FP32 and
other numeric types, categorical BYTES, shape ``[n]`` or ``[n, 1]``, JSON ``null`` for missing;
:mod:`lockgate.gateway.named_inputs`), and the gateway encodes them into the wire matrix with the wire
schema of the version it routes to (read once per version from the Triton model repository,
``create_app(model_repository=...)``); model metadata lists those inputs. A request that breaks
that contract is a 400 naming the feature and the fix, and is the client's fault: it never counts
as an error or schema violation of the version. Requests may still send the wire tensor itself
(one input ``INPUT__0``, FP32, ``[n, d]`` with ``d`` from the upstream metadata, finite values,
categorical columns holding wire codes when the wire schema is known): a violation of that is a
400, and a schema violation of the version it went to only if the request fits another version
of the route (the version's schema differs); a request no version takes is the client's fault
and never counts against a version.

Coalescing (:mod:`lockgate.gateway.coalesce`): once ``coalesce_inflight`` calls (default 2) are in flight
to one upstream model, further requests for it wait at the gateway and go upstream as one merged
call (rows concatenated, up to the model's ``max_batch_size``) as soon as a call returns; each
client gets its own rows back in the form it asked for, and its own log record. At light load
nothing waits. Only models with ``max_batch_size > 0`` and fixed-size outputs are merged, and
only requests whose answer the gateway rebuilds exactly; a merged call the model refuses is
retried request by request, so one bad row fails only its own request.

Crash safety (:mod:`lockgate.gateway.predlog`): every answered inference request (errors
included) is a record in a write-ahead log
(``log_dir/_wal/wal-<seq>.log``: CRC-checked frames of a binary header, the strings and the raw
FP32 rows) that is made durable before the response is sent: ``fsync`` durability (default) waits
for ``fdatasync``, group-committed across concurrent requests (under load a commit waits up to
``commit_delay_s`` until half of the requests in flight have a record waiting) and run by a
helper process (no GIL contention with the event loop); ``flush`` only waits for ``write``
(survives a crash of the gateway, not of the machine). A commit that fails (a full disk:
``ENOSPC`` from the preallocation, a short ``pwrite`` or ``fdatasync``) is undone, the segment
cut back to its last whole record, and its requests answered 503; the next commit writes after
that record, so a full disk costs the requests it refused and no answered one. A background
roller turns closed segments into Parquet files
(``log_dir/<model>/date=YYYY-MM-DD/part-<seq>.parquet``, temp name + fsync + rename; a failed
part's temp file is removed) and deletes a segment only once its parts are durable; at startup
leftover segments are converted first. ``POST /admin/log/roll`` closes the active segment and rolls it
now (before reading a log that must be complete in Parquet). Read both with
:func:`lockgate.gateway.predlog.read_prediction_log`.

Run it with ``python -m lockgate.gateway --state-dir S --log-dir L --upstream-url URL --port 0
--ready-file F --admin-token-env LOCKGATE_GATEWAY_ADMIN_TOKEN --audit-log A`` (uvicorn with
httptools on uvloop, bounded by :class:`lockgate.gateway.server.ServerLimits`: URL 414, head 431,
slow head or body 408,
a connection cap that closes the oldest idle connection first; the body limit holds after
decompression), or through :class:`lockgate.gateway.process.GatewayServer`. The app itself is
plain ASGI 3 and runs under any ASGI server (serve ``app.admin`` on a listener of its own for
the admin endpoints).
"""

from __future__ import annotations

import importlib
from typing import Any

# the public names, imported on first use: importing one module of the subpackage does not
# import its heavy neighbours (Feast, torch)
_EXPORTS = {
    "GatewayApp": "lockgate.gateway.app",
    "GatewayConfig": "lockgate.gateway.config",
    "HttpUpstream": "lockgate.gateway.upstream",
    "ServerLimits": "lockgate.gateway.server",
    "create_app": "lockgate.gateway.factory",
}

__all__ = ["GatewayApp", "GatewayConfig", "HttpUpstream", "ServerLimits", "create_app"]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
