"""The ``tritonserver`` binary of the ``nvidia-pytriton`` wheel: where it is, what it needs to run,
free ports on 127.0.0.1, and the python-backend stubs a crashed server leaves behind.

What the local binary needs (all set by
:meth:`lockgate.serving.triton_server.LocalTritonServer.start`):

* a backends folder holding ``python/`` = the wheel's ``backends/python`` plus the stub of the
  running Python (``python_backend_stubs/3.11/triton_python_backend_stub``) copied next to it:
  built under ``<work_dir>/backends``;
* ``LD_LIBRARY_PATH`` = Python's ``LIBDIR`` (``libpython3.11.so`` for the stub) + the wheel's
  ``nvidia_pytriton.libs`` (``libtritonserver`` and its dependencies);
* ``PYTHONPATH`` = the virtualenv's site-packages: the stub runs the base interpreter, and
  ``model.py`` imports lightgbm and torch from there. The stub's embedded interpreter ignores
  the environment (``PYTHONPATH``, ``PYTHONDONTWRITEBYTECODE``, ...), so the generated
  ``model.py`` puts ``PYTHONPATH``'s entries in front of ``sys.path`` itself (with their
  ``.pth`` files). numpy is already imported by then (``triton_python_backend_utils`` imports
  it), so it comes from the base interpreter's site-packages when that has one.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import shutil
import signal
import socket
import sys
import sysconfig
from pathlib import Path

from lockgate._util.process import cmdline_contains, group_members, wait_until
from lockgate.serving.model_repository import ServingError

__all__ = [
    "check_fixed_ports",
    "check_shared_libpython",
    "free_port",
    "is_tritonserver",
    "port_is_free",
    "python_backends",
    "reap_stubs",
    "server_command",
    "server_environment",
    "wheel_tritonserver",
]


def wheel_tritonserver() -> dict[str, Path]:
    """Where the ``nvidia-pytriton`` wheel keeps the server, without importing ``pytriton``.

    Returns:
        ``binary``, ``backends`` (the wheel's backends folder), ``stub`` (the python-backend
        stub for the running Python) and ``libs`` (``nvidia_pytriton.libs``).

    Raises:
        ServingError: When the wheel or one of the files is missing.
    """
    spec = importlib.util.find_spec("pytriton")
    locations = list(spec.submodule_search_locations or []) if spec else []
    if not locations:
        raise ServingError(
            "the nvidia-pytriton wheel is not installed; rule: the local Triton server is the "
            "binary it ships; fix: `pip install --no-deps nvidia-pytriton==0.7.0`"
        )
    root = Path(locations[0]) / "tritonserver"
    python = f"{sys.version_info.major}.{sys.version_info.minor}"
    paths = {
        "binary": root / "bin" / "tritonserver",
        "backends": root / "backends",
        "stub": root / "python_backend_stubs" / python / "triton_python_backend_stub",
        "libs": Path(locations[0]).parent / "nvidia_pytriton.libs",
    }
    for what, path in paths.items():
        if not path.exists():
            raise ServingError(
                f"the nvidia-pytriton wheel lacks its {what} at {path}; rule: version 0.7.0 "
                f"ships tritonserver 2.51 with stubs for Python {python}; fix: reinstall it "
                "(`pip install --no-deps --force-reinstall nvidia-pytriton==0.7.0`)"
            )
    return paths


def port_is_free(port: int) -> bool:
    """Whether a server could listen on ``127.0.0.1:port`` now (``SO_REUSEADDR``, as servers
    bind: connections of a server that just died do not count)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def reap_stubs(pgid: int, *, timeout_s: float = 10.0) -> int:
    """SIGKILLs the python-backend stubs left in process group ``pgid`` (a dead server's)."""
    stubs = [p for p in group_members(pgid) if cmdline_contains(p, "triton_python_backend_stub")]
    for pid in stubs:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
    wait_until(lambda: not set(stubs) & set(group_members(pgid)), timeout_s, 0.02)
    return len(stubs)


def free_port() -> int:
    """A port on 127.0.0.1 that is free now (the kernel's choice)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def is_tritonserver(pid: int) -> bool:
    """Whether ``pid`` is a live tritonserver (its argv[0] says so)."""
    return cmdline_contains(pid, "tritonserver", argv0_only=True)


def server_environment() -> dict[str, str]:
    """The environment the server runs with (``LD_LIBRARY_PATH``, ``PYTHONPATH`` set)."""
    paths = wheel_tritonserver()
    libdir = sysconfig.get_config_var("LIBDIR") or ""
    env = dict(os.environ)
    lib_paths = [libdir, str(paths["libs"])]
    if env.get("LD_LIBRARY_PATH"):
        lib_paths.append(env["LD_LIBRARY_PATH"])
    env["LD_LIBRARY_PATH"] = os.pathsep.join(lib_paths)
    site = [sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]]
    python_path = list(dict.fromkeys(site))
    if env.get("PYTHONPATH"):
        python_path.append(env["PYTHONPATH"])
    env["PYTHONPATH"] = os.pathsep.join(python_path)
    return env


def python_backends(work_dir: Path) -> Path:
    """``<work_dir>/backends/python`` = the wheel's python backend + this Python's stub.

    Returns:
        ``<work_dir>/backends``, the folder for ``--backend-directory``.
    """
    paths = wheel_tritonserver()
    target = work_dir / "backends" / "python"
    target.mkdir(parents=True, exist_ok=True)
    sources = [p for p in (paths["backends"] / "python").iterdir() if p.is_file()]
    for source in [*sources, paths["stub"]]:
        dest = target / source.name
        if not dest.exists() or dest.stat().st_size != source.stat().st_size:
            tmp = dest.with_name(f".{dest.name}.tmp")
            shutil.copy2(source, tmp)
            os.replace(tmp, dest)
    return target.parent


def check_shared_libpython() -> None:
    """Refuses a Python without a shared ``libpython`` (the python-backend stub links it)."""
    libdir = Path(sysconfig.get_config_var("LIBDIR") or "")
    if not any(libdir.glob("libpython3*.so*")):
        raise ServingError(
            f"no shared libpython in {libdir}; rule: the python-backend stub links "
            "libpython3.x.so; fix: use a Python built with --enable-shared (pyenv: "
            "PYTHON_CONFIGURE_OPTS=--enable-shared)"
        )


def check_fixed_ports(fixed: tuple[int, int, int]) -> None:
    """Refuses fixed ports (http, grpc, metrics; 0: a free one) that repeat or are in use."""
    named = [p for p in fixed if p]
    if len(set(named)) < len(named):
        raise ServingError(
            f"the fixed ports (http, grpc, metrics) {fixed} repeat a port; rule: three "
            "different ports (0: a free one); fix: configure distinct ports"
        )
    for what, port in zip(("http", "grpc", "metrics"), fixed, strict=True):
        if port and not port_is_free(port):
            raise ServingError(
                f"{what} port {port} on 127.0.0.1 is in use; rule: a fixed port is kept "
                f"across restarts, so it must be free when tritonserver starts; fix: stop "
                f"what listens there (`ss -ltnp 'sport = :{port}'`) or configure another "
                "port"
            )


def server_command(
    binary: Path,
    *,
    repo_dir: Path | str,
    backends: Path,
    control: str,
    ports: tuple[int, int, int],
    exit_timeout_s: int,
    log_verbose: int,
) -> list[str]:
    """The ``tritonserver`` command line: explicit model control, the model-repository API
    restricted to ``control`` (``model-repository:<header>=<secret>``), 127.0.0.1 on ``ports``
    (http, grpc, metrics). ``repo_dir`` is a folder or a Triton repository URL
    (``s3://http://host:port/bucket/prefix``)."""
    return [
        str(binary),
        f"--model-repository={repo_dir}",
        f"--backend-directory={backends}",
        "--model-control-mode=explicit",
        f"--http-restricted-api={control}",
        f"--grpc-restricted-protocol={control}",
        "--strict-readiness=false",
        "--disable-auto-complete-config",
        "--http-address=127.0.0.1",
        f"--http-port={ports[0]}",
        "--grpc-address=127.0.0.1",
        f"--grpc-port={ports[1]}",
        "--allow-metrics=true",
        "--metrics-address=127.0.0.1",
        f"--metrics-port={ports[2]}",
        f"--exit-timeout-secs={exit_timeout_s}",
        f"--log-verbose={log_verbose}",
    ]
