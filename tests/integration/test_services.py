"""The local PostgreSQL, Redis and S3 servers: real, authenticated, loopback-only, restartable."""

from __future__ import annotations

from pathlib import Path

import psycopg2
import pytest
import redis
import s3fs

from lockgate._util.services import LocalPostgres, LocalRedis, LocalS3, ServiceUnavailableError


def test_postgres_needs_the_password_and_keeps_data_over_a_restart(
    postgres_server: LocalPostgres,
) -> None:
    root = Path(postgres_server.root).parent / "restart"
    server = LocalPostgres(root=str(root), durable=False)
    with server:
        conn = psycopg2.connect(server.url())
        with conn, conn.cursor() as cur:
            cur.execute("CREATE TABLE kept (v int); INSERT INTO kept VALUES (41)")
        conn.close()
        wrong = server.url().replace(server.password, "not-the-password")
        with pytest.raises(psycopg2.OperationalError, match="password authentication failed"):
            psycopg2.connect(wrong)
        pid = server.managed_process.recorded_pid()
    assert pid is not None
    assert not server.managed_process.is_server(pid)
    with LocalPostgres(root=str(root), durable=False) as again:
        conn = psycopg2.connect(again.url())
        with conn.cursor() as cur:
            cur.execute("SELECT v FROM kept")
            assert cur.fetchone() == (41,)
        conn.close()


def test_redis_refuses_clients_without_the_password(redis_server: LocalRedis) -> None:
    client = redis.Redis.from_url(redis_server.url())
    client.set("lockgate:probe", b"1")
    assert client.get("lockgate:probe") == b"1"
    anonymous = redis.Redis(host="127.0.0.1", port=redis_server.port)
    with pytest.raises(redis.AuthenticationError):
        anonymous.get("lockgate:probe")


def test_s3_refuses_a_wrong_secret(s3_server: LocalS3, s3_bucket: str) -> None:
    fs = s3_server.filesystem()
    fs.pipe(f"{s3_bucket}/a/b.bin", b"payload")
    assert fs.cat(f"{s3_bucket}/a/b.bin") == b"payload"
    options = s3_server.storage_options() | {"secret": "wrong-secret"}
    forged = s3fs.S3FileSystem(skip_instance_cache=True, **options)
    with pytest.raises(PermissionError):
        forged.cat(f"{s3_bucket}/a/b.bin")


def test_servers_bind_loopback_only(postgres_server: LocalPostgres, s3_server: LocalS3) -> None:
    import psutil

    for server in (postgres_server, s3_server):
        pid = server.managed_process.recorded_pid()
        assert pid is not None
        listening = [
            c.laddr
            for p in [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]
            for c in p.net_connections(kind="inet")
            if c.status == psutil.CONN_LISTEN
        ]
        assert listening, server
        assert {addr.ip for addr in listening} == {"127.0.0.1"}, listening


def test_postgres_under_an_unreachable_folder_says_how_to_fix_it(tmp_path: Path) -> None:
    import os

    if os.geteuid() != 0:
        pytest.skip("only root hands the cluster to the postgres system user")
    tmp_path.chmod(0o700)
    with pytest.raises(ServiceUnavailableError, match=r"not reachable by the 'postgres'.*o\+x"):
        LocalPostgres(root=str(tmp_path / "pg")).start()
