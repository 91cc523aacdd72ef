"""Test layers, by marker: every test is ``unit`` or ``integration``, and long runs are ``slow``.

- ``integration``: against real servers and stores (tritonserver, gateway processes, Feast, a
  Dagster instance, daemon or webserver). Everything under ``tests/integration/``, and a module
  elsewhere that declares ``pytestmark = pytest.mark.integration``.
- ``unit``: everything else; lockgate's own logic in one process, no server started.
- ``slow``: the long soak/stress variants; a short version of each runs in every layer's default.

``pytest -m unit``, ``pytest -m integration`` and ``pytest -m slow`` each run one layer alone; the
default run (``scripts/test.sh``, CI) is the full suite.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from lockgate._util.services import LocalPostgres, LocalRedis, LocalS3

TESTS = Path(__file__).resolve().parent


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if item.get_closest_marker("integration") is not None:
            continue
        parts = Path(str(item.path)).resolve().relative_to(TESTS).parts
        item.add_marker(pytest.mark.integration if parts[0] == "integration" else pytest.mark.unit)


# ---- real PostgreSQL, Redis and S3 servers (lockgate._util.services), one each per session ----


@pytest.fixture(scope="session")
def postgres_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalPostgres]:
    """A private PostgreSQL cluster on 127.0.0.1 for the session (fsync off: test speed)."""
    # not under pytest's 0700 tmp folder: PostgreSQL runs as the postgres system user when the
    # tests run as root, and that user must reach its data folder
    root = Path(tempfile.mkdtemp(prefix="lockgate-test-pg-"))
    os.chmod(root, 0o755)
    try:
        with LocalPostgres(root=str(root / "cluster"), durable=False) as server:
            yield server
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def postgres_url(postgres_server: LocalPostgres, request: pytest.FixtureRequest) -> str:
    """A fresh database of the session's PostgreSQL for one test; its URL."""
    name = "t_" + hashlib.sha256(request.node.nodeid.encode()).hexdigest()[:16]
    _drop_database(postgres_server, name)
    return postgres_server.create_database(name)


def _drop_database(server: LocalPostgres, name: str) -> None:
    import psycopg2

    conn = psycopg2.connect(server.url("postgres"))
    try:
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        conn.close()


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalRedis]:
    """redis-server on 127.0.0.1 with a password, for the session."""
    with LocalRedis(root=str(tmp_path_factory.mktemp("redis"))) as server:
        yield server


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalS3]:
    """An S3-compatible server (SeaweedFS) on 127.0.0.1 with a signed access key."""
    with LocalS3(root=str(tmp_path_factory.mktemp("s3"))) as server:
        yield server


@pytest.fixture
def s3_bucket(s3_server: LocalS3, request: pytest.FixtureRequest) -> str:
    """A fresh bucket for one test; its name."""
    name = "t-" + hashlib.sha256(request.node.nodeid.encode()).hexdigest()[:16]
    fs = s3_server.filesystem()
    if fs.exists(name):
        fs.rm(name, recursive=True)
    s3_server.create_bucket(name)
    return name
