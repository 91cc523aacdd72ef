"""The production environment on one machine: every engine ``LOCKGATE_ENV=production`` binds,
as real servers, and the example's closed loop run on them.

:class:`ProductionServices` starts, each bound to 127.0.0.1 and stopped by PID:

- **PostgreSQL** (a private cluster): Dagster's storage (runs, event log, schedules, the queued
  run coordinator and its pools), the **state database** (champion/challenger aliases,
  canary state and its lease, gateway routes and routing key, the audit chains) and
  **Feast's SQL registry**, one database each;
- **Redis**: Feast's online store;
- **SeaweedFS** (an S3 API): one bucket with the artifact registry (``artifacts/``), Triton's
  model repository (``triton/``) and the gateways' exported prediction log (``predictions/``);
- **tritonserver** reading its model repository straight from ``s3://`` (model control
  restricted to lockgate's secret);
- **two gateway replicas** sharing routes, routing key and their admin audit chain through the
  state database, each exporting its rolled prediction log to the bucket.

It sets, in this process's environment (inherited by the Dagster daemon, its code server and run
workers), exactly the variables a production deployment sets (README, "Production"), so the
example's code location loads the production bindings. :func:`run_production_loop` then trains
and serves the champion, and runs :func:`pipelines.closed_loop.run_closed_loop` with live
clients spread over both replicas: drift -> retrain -> gate -> validation -> canary ->
promotion, with no file of shared state on the way.

    python -m pipelines production-loop --home /tmp/lockgate-production
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from lockgate import (
    Environment,
    GatewayServer,
    LocalPostgres,
    LocalRedis,
    LocalS3,
    LocalTritonServer,
    LockgateError,
    write_instance_yaml,
)

__all__ = ["FEATURE_STORE_YAML", "ProductionServices", "run_production_loop"]

FEATURE_STORE_YAML = """\
project: lockgate
provider: local
registry:
  registry_type: sql
  path: ${LOCKGATE_FEAST_REGISTRY_URL}
  cache_ttl_seconds: 0
online_store:
  type: redis
  connection_string: ${LOCKGATE_FEAST_REDIS}
offline_store:
  type: duckdb
entity_key_serialization_version: 3
"""
"""The example's Feast repository in production: SQL registry, Redis online store (the
secrets come from the environment, never from the file)."""

BUCKET = "lockgate"


class ProductionServices:
    """The production engines on this machine, and the ``LOCKGATE_*`` variables naming them.

    Use it as a context manager: on entry every server starts and the variables are set; on
    exit every server stops (by PID) and the environment is restored.

    Attributes:
        home: ``LOCKGATE_HOME``: the servers' files under ``home/services``, the data, the
            Feast repository, the asset references and ``DAGSTER_HOME`` (its ``dagster.yaml``
            names PostgreSQL, the URL read from ``LOCKGATE_DAGSTER_PG_URL``).
        replicas: gateway replicas to start (2 or more: routes are shared, statistics merged).
        segment_max_age_s: how often each replica rolls its log and exports it (the drift
            sensor reads the exported parts).
    """

    def __init__(
        self,
        home: str | os.PathLike[str],
        *,
        replicas: int = 2,
        segment_max_age_s: float = 2.0,
        say: Callable[[str], None] = print,
    ) -> None:
        if replicas < 1:
            raise LockgateError(f"replicas={replicas}; fix: 1 or more (2 shows shared routes)")
        self.home = Path(home).expanduser().resolve()
        self.replicas = replicas
        self.segment_max_age_s = segment_max_age_s
        self.say = say
        services = self.home / "services"
        self.postgres = LocalPostgres(root=str(services / "postgres"))
        self.redis = LocalRedis(root=str(services / "redis"))
        self.s3 = LocalS3(root=str(services / "s3"))
        self.triton: LocalTritonServer | None = None
        self.gateways: list[GatewayServer] = []
        self.environ: dict[str, str] = {}
        self._saved: dict[str, str | None] = {}
        self._stack = contextlib.ExitStack()

    @property
    def env(self) -> Environment:
        """The production environment (``LOCKGATE_ENV=production``) rooted at :attr:`home`."""
        return Environment(kind="production", home=self.home)

    @property
    def gateway_urls(self) -> list[str]:
        """Every replica's inference URL."""
        return [g.url for g in self.gateways]

    def _set(self, values: dict[str, str]) -> None:
        for key, value in values.items():
            self._saved.setdefault(key, os.environ.get(key))
            os.environ[key] = value
        self.environ.update(values)

    def _restore(self) -> None:
        for key, value in self._saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        self._saved.clear()

    def start(self) -> ProductionServices:
        """Start every server and set the variables (see the class doc)."""
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self) -> None:
        stack = self._stack
        self.home.mkdir(parents=True, exist_ok=True)
        # PostgreSQL runs as the postgres system user when this is root: it must reach its root
        for folder in [self.home / "services", *self.home.parents]:
            if folder.exists() and os.geteuid() == 0:
                os.chmod(folder, os.stat(folder).st_mode | 0o001)
        (self.home / "services").mkdir(exist_ok=True)
        os.chmod(self.home / "services", 0o755)
        stack.enter_context(self.postgres)
        self.say(f"      PostgreSQL on 127.0.0.1:{self.postgres.port}")
        stack.enter_context(self.redis)
        self.say(f"      Redis on 127.0.0.1:{self.redis.port}")
        stack.enter_context(self.s3)
        self.s3.create_bucket(BUCKET)
        self.say(f"      S3 (SeaweedFS) on {self.s3.endpoint_url}, bucket {BUCKET}")
        state = self.home / "state"
        self._set(
            {
                "LOCKGATE_ENV": "production",
                "LOCKGATE_HOME": str(self.home),
                "DAGSTER_HOME": str(self.home / "dagster"),
                "LOCKGATE_DAGSTER_PG_URL": self.postgres.create_database("dagster"),
                "LOCKGATE_STATE_DB_URL": self.postgres.create_database("lockgate_state"),
                # Feast's SQL registry on psycopg 3, named explicitly (SQLAlchemy's default)
                "LOCKGATE_FEAST_REGISTRY_URL": self.postgres.create_database(
                    "feast_registry"
                ).replace("postgresql://", "postgresql+psycopg://", 1),
                "LOCKGATE_FEAST_REDIS": self.redis.connection_string,
                **self.s3.environment(),
                "LOCKGATE_ARTIFACTS_URL": f"s3://{BUCKET}/artifacts",
                "LOCKGATE_MODEL_REPOSITORY": f"s3://{BUCKET}/triton",
                "LOCKGATE_PREDICTIONS_DIR": f"s3://{BUCKET}/predictions",
                "LOCKGATE_SIGNING_KEY": secrets.token_hex(32),
                "LOCKGATE_DATA_DIR": str(self.home / "data"),
                "LOCKGATE_FEAST_DIR": str(self.home / "feast"),
                "LOCKGATE_REFS_DIR": str(self.home / "refs"),
                # unused with a state database (PostgreSQL holds both); set as a cluster would
                "LOCKGATE_CANARY_STATE_DIR": str(state / "canary"),
                "LOCKGATE_AUDIT_PATH": str(state / "audit.jsonl"),
                "LOCKGATE_ARTIFACTS_ROOT": str(state / "artifacts"),
            }
        )
        # Dagster on PostgreSQL: the URL is read from LOCKGATE_DAGSTER_PG_URL, never in the file
        write_instance_yaml(self.home / "dagster")
        feast = self.home / "feast"
        feast.mkdir(parents=True, exist_ok=True)
        (feast / "feature_store.yaml").write_text(FEATURE_STORE_YAML)
        triton = LocalTritonServer(
            repo_dir=f"s3://{BUCKET}/triton",
            repo_endpoint_url=self.s3.endpoint_url,
            repo_key=self.s3.access_key,
            repo_secret=self.s3.secret_key,
            repo_region="us-east-1",
            work_dir=str(self.home / "services" / "triton"),
        )
        stack.enter_context(triton)
        self.triton = triton
        self.say(f"      tritonserver on {triton.url}, model repository s3://{BUCKET}/triton")
        token = secrets.token_urlsafe(32)
        for n in range(self.replicas):
            gateway = GatewayServer(
                state_dir=str(self.home / "services" / f"gateway-{n}"),
                log_dir=str(self.home / "services" / f"gateway-{n}" / "log"),
                upstream_url=triton.url,
                model_repository=f"s3://{BUCKET}/triton",
                state_url=os.environ["LOCKGATE_STATE_DB_URL"],
                prediction_log_url=f"s3://{BUCKET}/predictions",
                segment_max_age_s=self.segment_max_age_s,
                admin_token=token,
                actor="lockgate production drill",
            )
            stack.enter_context(gateway)
            self.gateways.append(gateway)
            self.say(f"      gateway replica {n} on {gateway.url} (admin {gateway.admin_url})")
        self._set(
            {
                "LOCKGATE_TRITON_URL": triton.url,
                "LOCKGATE_TRITON_CONTROL_SECRET": triton.control_file.read_text().strip(),
                "LOCKGATE_GATEWAY_URL": self.gateways[0].url,
                "LOCKGATE_GATEWAY_ADMIN_URL": ",".join(g.admin_url for g in self.gateways),
                "LOCKGATE_GATEWAY_ADMIN_TOKEN": token,
            }
        )

    def stop(self) -> None:
        """Stop every server (by PID) and restore the environment."""
        try:
            self._stack.close()
        finally:
            self.gateways.clear()
            self.triton = None
            self._restore()

    def __enter__(self) -> ProductionServices:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def train_and_serve(
    services: ProductionServices,
    pipeline: str = "fraud_lgbm",
    *,
    days: int = 30,
    say: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Generate the example data, apply Feast to the SQL registry, and run the pipeline's train
    job on the production instance (Dagster on PostgreSQL): its champion ends up served by
    Triton from ``s3://`` behind both replicas. Returns the champion and its run."""
    from lockgate import build_definitions, open_instance
    from pipelines.closed_loop import data_dir
    from pipelines.demo import _quiet_main_job, progress_logger
    from pipelines.feature_repo import fraud_feast_store, fraud_feature_objects
    from pipelines.fraud import PIPELINES
    from pipelines.fraud_data import generate_fraud_data

    env = services.env
    (spec,) = [p for p in PIPELINES if p.name == pipeline]
    data = data_dir(env)
    if not (data / "labels").exists():
        generate_fraud_data(data, days=days)
    feast = fraud_feast_store(env)
    objects: Any = fraud_feature_objects(data)
    feast.store().apply(objects)
    say(f"      Feast objects applied to the SQL registry ({feast.registry_location})")
    defs = build_definitions([spec], environment=env, resources={"feast": feast})
    # the quick start's terminal output: steps and verdicts, Dagster's engine chatter stays out
    job = defs.resolve_job_def(spec.train_job_name).with_logger_defs(
        {"lockgate_progress": progress_logger(say)}
    )
    pg_url = os.environ["LOCKGATE_DAGSTER_PG_URL"]
    with _quiet_main_job(), open_instance(env.dagster_home, postgres_url=pg_url) as instance:
        result = job.execute_in_process(
            instance=instance,
            raise_on_error=False,
            run_config={"loggers": {"lockgate_progress": {}}},
            tags={"lockgate/source": "production-loop"},
        )
    if not result.success:
        failed: list[str] = []
        for event in result.all_events:
            error: Any = getattr(event.event_specific_data, "error", None)
            if event.is_step_failure:
                failed.append(error.to_string() if error is not None else str(event.message))
        failed = failed or [str(e.message) for e in result.all_events if e.is_failure]
        raise LockgateError(f"{spec.train_job_name} failed on the production engines: {failed[:3]}")
    from pipelines.closed_loop import plain_resources

    with plain_resources(env) as resources:
        registry = resources["artifacts"]
        champion = registry.alias(spec.name, "champion")
        triad = dict(registry.lock_record(spec.name, champion)["triad"])
    say(f"      {spec.train_job_name}: run {result.run_id[:8]} succeeded; champion {champion}")
    online = _materialize_online(feast, spec, data)
    say(
        f"      online store (Redis) materialized over the data's days: {online['answered']} "
        f"of {online['asked']} sampled entities answer"
    )
    return {
        "pipeline": spec.name,
        "champion": champion,
        "run_id": result.run_id,
        "triad": triad,
        "online_rows": online["answered"],
    }


def _materialize_online(feast: Any, spec: Any, data: Path) -> dict[str, int]:
    """Materialize the feature service into the online store (Redis) and read a sample back."""
    import datetime as dt

    from lockgate import read_parquet_dir

    labels = read_parquet_dir(data / spec.labels.dataset)
    # the example's days are in the past (from 2024-01-01), and Feast starts a view's first
    # incremental load at now - TTL: an explicit window over the data's days instead
    times = labels[spec.labels.timestamp_column]
    first, last = times.min().to_pydatetime(), times.max().to_pydatetime()
    feast.materialize(last + dt.timedelta(seconds=1), start=first - dt.timedelta(days=1))
    join_keys = feast.join_keys(spec.feature_service)
    keys = labels[join_keys].drop_duplicates().tail(20)
    store = feast.store()
    answer = store.get_online_features(
        features=store.get_feature_service(spec.feature_service),
        entity_rows=keys.to_dict("records"),
    ).to_dict()
    values = [v for k, v in answer.items() if k not in join_keys]
    answered = sum(any(col[i] is not None for col in values) for i in range(len(keys)))
    return {"asked": len(keys), "answered": answered}


def run_production_loop(
    home: str | os.PathLike[str],
    *,
    say: Callable[[str], None] = print,
    settings: Any = None,
    days: int = 30,
    fresh: bool = True,
    timeout_s: float = 600.0,
) -> dict[str, Any]:
    """Start the production engines, train and serve ``fraud_lgbm``, run the closed loop with
    clients on every replica, and stop everything. Returns the loop's outcome (as
    :func:`pipelines.closed_loop.run_closed_loop`) with ``champion_trained`` and the engines'
    addresses."""
    from pipelines.closed_loop import run_closed_loop

    root = Path(home).expanduser().resolve()
    if fresh and root.exists():
        shutil.rmtree(root)
    say("[1/3] production engines on this machine")
    with ProductionServices(root, say=say) as services:
        say("[2/3] train and serve the champion on them")
        trained = train_and_serve(services, days=days, say=say)
        say("[3/3] the closed loop, live clients on every gateway replica")
        loop = run_closed_loop(
            services.env,
            say=say,
            settings=settings,
            timeout_s=timeout_s,
            gateway_urls=services.gateway_urls,
        )
        return loop | {
            "champion_trained": trained["champion"],
            "gateways": services.gateway_urls,
            "engines": {
                "postgres": f"127.0.0.1:{services.postgres.port}",
                "redis": f"127.0.0.1:{services.redis.port}",
                "s3": services.s3.endpoint_url,
            },
        }
