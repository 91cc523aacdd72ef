"""The Dagster instance of a deployment: ``dagster.yaml`` on PostgreSQL with the queued run
coordinator and its limits.

:func:`instance_config` builds the ``dagster.yaml`` of the production instance (a pure builder,
checked by Dagster's own schema in the tests): run, event-log and schedule storage in PostgreSQL
(``dagster-postgres``) whose connection is read from environment variables (``env:`` values: no
secret is written into the file), the :class:`dagster.QueuedRunCoordinator` with a cap on runs in
progress and on GPU training runs (the train job's tag ``lockgate/resource: gpu``,
:func:`lockgate.assets.weights.training_run_tags`), a default limit for concurrency pools (the
sandbox-Triton validation steps share the pool ``lockgate-triton-validation``), telemetry off.
:func:`write_instance_yaml` writes it into a ``DAGSTER_HOME``; :func:`open_instance` opens an
instance whose file names the URL by environment variable without that variable being set in
this process; :func:`apply_pool_limits` records per-pool limits in the instance's storage (the
file holds only the default).

The local environment keeps SQLite under ``LOCKGATE_HOME/dagster`` unless a PostgreSQL URL is
given (:class:`lockgate.daemon.DagsterDaemon`'s ``postgres_url``, or ``LOCKGATE_DAGSTER_PG_URL``).

Example:
    >>> config = instance_config()
    >>> config["storage"]
    {'postgres': {'postgres_url': {'env': 'LOCKGATE_DAGSTER_PG_URL'}}}
    >>> config["concurrency"]["runs"]["tag_concurrency_limits"]
    [{'key': 'lockgate/resource', 'value': 'gpu', 'limit': 1}]
    >>> instance_config(sensor_threads=4)["sensors"]
    {'use_threads': True, 'num_workers': 4}
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from lockgate.assets.serving import TRITON_VALIDATION_POOL
from lockgate.assets.weights import RESOURCE_TAG
from lockgate.errors import SpecError

if TYPE_CHECKING:
    import dagster as dg

__all__ = [
    "DAGSTER_PG_URL_ENV",
    "POSTGRES_DB_ENV",
    "PSYCOPG2_SCHEME",
    "apply_pool_limits",
    "instance_config",
    "open_instance",
    "psycopg2_url",
    "write_instance_yaml",
]

DAGSTER_PG_URL_ENV = "LOCKGATE_DAGSTER_PG_URL"
"""The environment variable holding the PostgreSQL URL of Dagster's storage
(``postgresql+psycopg2://user:password@host:5432/dagster``: see :data:`PSYCOPG2_SCHEME`)."""

PSYCOPG2_SCHEME = "postgresql+psycopg2"
"""The URL scheme Dagster's storage needs. SQLAlchemy 2.1 reads a plain ``postgresql://`` URL
with psycopg 3, and dagster-postgres 0.29 then fails on every event it stores (``NOTIFY
run_events, $1``: psycopg 3 binds parameters on the server, where NOTIFY takes none); with
``postgresql+psycopg2://`` it uses psycopg2, as it was written for."""

POSTGRES_DB_ENV: Mapping[str, str] = {
    "username": "LOCKGATE_DAGSTER_PG_USER",
    "password": "LOCKGATE_DAGSTER_PG_PASSWORD",
    "hostname": "LOCKGATE_DAGSTER_PG_HOST",
    "db_name": "LOCKGATE_DAGSTER_PG_DB",
    "port": "LOCKGATE_DAGSTER_PG_PORT",
}
"""``postgres_db`` field -> environment variable, for :func:`instance_config`'s
``postgres_db_env`` (the connection in parts instead of one URL)."""

_REQUIRED_DB_FIELDS = ("username", "hostname", "db_name")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def _env_name(value: str, what: str) -> str:
    if not _ENV_NAME.fullmatch(value):
        raise SpecError(
            f"{what}={value!r} is not an environment variable name; rule: letters, digits and "
            f"'_', not starting with a digit (the variable's value is read at run time, never "
            f"written into dagster.yaml); fix: e.g. {DAGSTER_PG_URL_ENV!r}"
        )
    return value


def _storage(postgres_url_env: str | None, postgres_db_env: Mapping[str, str] | None) -> Any:
    if postgres_url_env is not None and postgres_db_env is not None:
        raise SpecError(
            f"postgres_url_env={postgres_url_env!r} and postgres_db_env are both given; rule: "
            f"Dagster connects by one URL or by its parts, not both; fix: pass one of them"
        )
    if postgres_db_env is None:
        url = _env_name(postgres_url_env or DAGSTER_PG_URL_ENV, "postgres_url_env")
        return {"postgres": {"postgres_url": {"env": url}}}
    unknown = sorted(set(postgres_db_env) - set(POSTGRES_DB_ENV))
    missing = [f for f in _REQUIRED_DB_FIELDS if f not in postgres_db_env]
    if unknown or missing:
        raise SpecError(
            f"postgres_db_env has unknown fields {unknown} and lacks {missing}; rule: it maps "
            f"the fields {sorted(POSTGRES_DB_ENV)} (username, hostname and db_name required) to "
            f"environment variable names; fix: start from lockgate.dagster_instance.POSTGRES_DB_ENV"
        )
    db: dict[str, Any] = {
        field: {"env": _env_name(name, f"postgres_db_env[{field!r}]")}
        for field, name in postgres_db_env.items()
    }
    return {"postgres": {"postgres_db": {**db, "scheme": PSYCOPG2_SCHEME}}}


def psycopg2_url(url: str) -> str:
    """``url`` with the scheme Dagster's storage needs (:data:`PSYCOPG2_SCHEME`).

    ``postgresql://`` and ``postgres://`` become ``postgresql+psycopg2://``; a URL that names
    psycopg2 already is returned as it is.

    Raises:
        SpecError: Another scheme or driver (psycopg 3 included).

    Example:
        >>> psycopg2_url("postgresql://dagster@db:5432/dagster")
        'postgresql+psycopg2://dagster@db:5432/dagster'
    """
    scheme, sep, rest = url.partition("://")
    if sep and scheme in ("postgresql", "postgres"):
        return f"{PSYCOPG2_SCHEME}://{rest}"
    if sep and scheme == PSYCOPG2_SCHEME:
        return url
    raise SpecError(
        f"Dagster storage URL scheme {scheme if sep else url!r} is not allowed; rule: "
        f"dagster-postgres needs psycopg2 ({PSYCOPG2_SCHEME}://; SQLAlchemy 2.1 reads "
        f"postgresql:// with psycopg 3, which fails on its NOTIFY); fix: "
        f"{PSYCOPG2_SCHEME}://user:password@host:5432/dagster"
    )


def _limit(value: int, what: str, *, lowest: int, meaning: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < lowest:
        raise SpecError(
            f"{what}={value!r} is not allowed; rule: an integer >= {lowest} ({meaning})"
        )
    return value


def instance_config(
    *,
    postgres_url_env: str | None = None,
    postgres_db_env: Mapping[str, str] | None = None,
    max_concurrent_runs: int = 10,
    gpu_training_runs: int = 1,
    tag_concurrency_limits: Sequence[Mapping[str, Any]] = (),
    pool_limit: int = 1,
    pool_granularity: Literal["op", "run"] = "op",
    dequeue_interval_seconds: int = 5,
    run_launcher: Mapping[str, Any] | None = None,
    sensor_threads: int | None = None,
) -> dict[str, Any]:
    """The ``dagster.yaml`` of a production instance, as a dict.

    Dagster 1.13 takes the run limits and the pool settings together under ``concurrency``
    (``runs`` and ``pools``); it refuses ``max_concurrent_runs`` and ``tag_concurrency_limits``
    in the ``run_coordinator`` block once ``concurrency`` is configured, so the coordinator block
    only names :class:`dagster.QueuedRunCoordinator` and its dequeue interval.

    Args:
        postgres_url_env: The environment variable with Dagster's PostgreSQL URL (default
            ``LOCKGATE_DAGSTER_PG_URL``), a ``postgresql+psycopg2://`` URL
            (:data:`PSYCOPG2_SCHEME` says why).
        postgres_db_env: Instead of a URL, ``postgres_db`` field -> environment variable
            (:data:`POSTGRES_DB_ENV` names them all).
        max_concurrent_runs: Runs in progress at most (-1: no limit; 0: none start).
        gpu_training_runs: Runs tagged ``lockgate/resource: gpu`` in progress at most; the others
            wait in the queue (QUEUED).
        tag_concurrency_limits: Further limits, as Dagster writes them
            (``{"key": ..., "value": ..., "limit": ...}``).
        pool_limit: Slots of every concurrency pool without a limit of its own, the
            ``lockgate-triton-validation`` pool of the infra-validation steps included
            (:func:`apply_pool_limits` sets one pool's limit in the storage).
        pool_granularity: ``"op"``: a step waits for a slot of its pool; ``"run"``: the queue
            holds a run until its pools have room.
        dequeue_interval_seconds: How often the daemon looks at the queue.
        run_launcher: A ``run_launcher`` block (e.g. ``lockgate.deploy``'s ``K8sRunLauncher``);
            None keeps Dagster's default launcher.
        sensor_threads: Threads the daemon evaluates sensors on at once (Dagster's
            ``sensors: {use_threads: true, num_workers: N}``); None keeps Dagster's default,
            one sensor at a time. Worth it from about a hundred pipelines' sensors on
            (``docs/scale.md``); each thread holds a connection to PostgreSQL while it ticks.

    Returns:
        The configuration, ready for ``yaml.safe_dump``.

    Raises:
        SpecError: On both connection forms, an invalid variable name or a negative limit.
    """
    limits = [
        {"key": RESOURCE_TAG, "value": "gpu", "limit": _gpu_limit(gpu_training_runs)},
        *(dict(limit) for limit in tag_concurrency_limits),
    ]
    if pool_granularity not in ("op", "run"):
        raise SpecError(
            f"pool_granularity={pool_granularity!r} is unknown; rule: 'op' (a step waits for its "
            f"pool's slot) or 'run' (the queue holds the run); fix: pass 'op' or 'run'"
        )
    config: dict[str, Any] = {
        "telemetry": {"enabled": False},
        "storage": _storage(postgres_url_env, postgres_db_env),
        "run_coordinator": {
            "module": "dagster",
            "class": "QueuedRunCoordinator",
            "config": {
                "dequeue_interval_seconds": _limit(
                    dequeue_interval_seconds,
                    "dequeue_interval_seconds",
                    lowest=1,
                    meaning="seconds between two looks at the queue",
                )
            },
        },
        "concurrency": {
            "runs": {
                "max_concurrent_runs": _limit(
                    max_concurrent_runs,
                    "max_concurrent_runs",
                    lowest=-1,
                    meaning="-1 for no limit, 0 to start none",
                ),
                "tag_concurrency_limits": limits,
            },
            "pools": {
                "default_limit": _limit(
                    pool_limit, "pool_limit", lowest=0, meaning="slots per concurrency pool"
                ),
                "granularity": pool_granularity,
            },
        },
    }
    if run_launcher is not None:
        config["run_launcher"] = dict(run_launcher)
    if sensor_threads is not None:
        workers = _limit(
            sensor_threads, "sensor_threads", lowest=1, meaning="threads evaluating sensors"
        )
        config["sensors"] = {"use_threads": True, "num_workers": workers}
    return config


def _gpu_limit(value: int) -> int:
    return _limit(
        value, "gpu_training_runs", lowest=0, meaning="GPU training runs in progress at once"
    )


def write_instance_yaml(dagster_home: str | Path, **options: Any) -> Path:
    """Write :func:`instance_config` (``options`` are its arguments) as
    ``<dagster_home>/dagster.yaml``, atomically; returns the file.

    Example:
        >>> write_instance_yaml("/srv/dagster", gpu_training_runs=2)  # doctest: +SKIP
        PosixPath('/srv/dagster/dagster.yaml')
    """
    import yaml

    from lockgate._util.fs import atomic_write

    path = Path(dagster_home) / "dagster.yaml"
    text = yaml.safe_dump(instance_config(**options), sort_keys=False)
    atomic_write(path, text)
    return path


def open_instance(
    dagster_home: str | Path, *, postgres_url: str | None = None
) -> dg.DagsterInstance:
    """The instance of ``dagster_home`` (use it as a context manager).

    With ``postgres_url`` (made a psycopg2 URL by :func:`psycopg2_url`), its PostgreSQL storage
    connects there whatever environment variable the file names, so a process that launches a
    daemon with the URL in the daemon's environment only reads the same instance (the URL stays
    out of the file and of this process's environment).
    """
    import dagster as dg
    from dagster._core.instance.ref import InstanceRef

    if postgres_url is None:
        return dg.DagsterInstance.from_config(str(dagster_home))
    overrides = {"storage": {"postgres": {"postgres_url": psycopg2_url(postgres_url)}}}
    return dg.DagsterInstance.from_ref(InstanceRef.from_dir(str(dagster_home), overrides=overrides))


def apply_pool_limits(
    instance: dg.DagsterInstance, limits: Mapping[str, int] | None = None
) -> dict[str, int]:
    """Record each pool's limit in the instance's storage (``dagster instance concurrency
    set``); the default is ``{"lockgate-triton-validation": 1}``. Returns what was set.

    Raises:
        SpecError: A negative limit, or storage without concurrency pools (the in-memory one).
    """
    wanted = dict(limits if limits is not None else {TRITON_VALIDATION_POOL: 1})
    storage = instance.event_log_storage
    if not storage.supports_global_concurrency_limits:
        raise SpecError(
            f"{type(storage).__name__} keeps no concurrency pools; rule: pool limits need "
            f"SQLite or PostgreSQL event storage; fix: open the deployment's DAGSTER_HOME"
        )
    for pool, limit in wanted.items():
        storage.set_concurrency_slots(
            pool, _limit(limit, f"limits[{pool!r}]", lowest=0, meaning="slots of the pool")
        )
    return wanted
