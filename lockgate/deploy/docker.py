"""The project image: lockgate and the team's project, served by Dagster's code server.

One image runs the code server (``dagster api grpc``), every run and step pod the Dagster chart
launches from it, and the gateway (``python -m lockgate.gateway``). The git commit is baked in
as ``LOCKGATE_CODE_COMMIT`` (an image carries no ``.git``), so lock records name the code that
trained a model version.

Example:
    >>> text = dockerfile(module="pipelines.definitions")
    >>> text.splitlines()[1]
    'FROM python:3.11-slim'
"""

from __future__ import annotations

import re

from lockgate.errors import SpecError

__all__ = ["APP_DIR", "DOCKERIGNORE", "dockerfile"]

APP_DIR = "/opt/dagster/app"
"""Where the project is copied in the image (the code server's working directory)."""

DOCKERIGNORE = """\
# what never goes into the image: environments, local state, version control, caches
.git
.venv
.lockgate
**/__pycache__
**/*.pyc
.mypy_cache
.ruff_cache
.pytest_cache
*.egg-info
"""
"""``Dockerfile.dockerignore``: BuildKit reads it beside the Dockerfile (``docker build -f``)."""

_MODULE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")
_PYTHON = re.compile(r"^3\.(1[1-2])$")
_RELATIVE_FILE = re.compile(r"\A(?!/)(?!.*\.\.)[A-Za-z0-9_./-]+\Z")
_REQUIREMENT = re.compile(
    r"^[A-Za-z0-9][A-Za-z0-9._\-\[\],]*(\s*(==|>=|<=|~=|!=|<|>)\s*[A-Za-z0-9.*+!]+)*$"
)


def dockerfile(
    *,
    module: str,
    python: str = "3.11",
    lockgate_requirement: str | None = "lockgate",
    grpc_port: int = 3030,
    settings_file: str | None = None,
) -> str:
    """The project image's Dockerfile (build it from the project folder).

    Args:
        module: the code location's module, loaded by the code server.
        python: the Python minor version of the base image (lockgate supports 3.11 and 3.12).
        lockgate_requirement: what ``pip install`` takes for lockgate (``"lockgate==0.1.0"``);
            None when the project folder is lockgate's own checkout (installing the project
            installs lockgate).
        grpc_port: the code server's port.
        settings_file: the cluster settings file, relative to the project folder; the image
            names it in ``LOCKGATE_K8S_SETTINGS`` so the code location can build
            :func:`~lockgate.deploy.launcher.k8s_definitions` from it (None: not set).

    Raises:
        SpecError: a value that would make a broken image; the message names the rule and the fix.
    """
    if not _MODULE.match(module):
        raise SpecError(
            f"module {module!r} is not a Python module path; rule: dotted identifiers, as "
            "`dagster dev -m` takes them; fix: e.g. 'my_project.definitions'"
        )
    if not _PYTHON.match(python):
        raise SpecError(
            f"python {python!r} is not a version lockgate supports; rule: '3.11' or '3.12' "
            "(pyproject's requires-python); fix: python='3.11'"
        )
    if lockgate_requirement is not None and not _REQUIREMENT.match(lockgate_requirement):
        raise SpecError(
            f"lockgate_requirement {lockgate_requirement!r} is not a pip requirement; rule: a "
            "name with optional extras and version specifiers, nothing else; fix: e.g. "
            "'lockgate==0.1.0'"
        )
    if settings_file is not None and not _RELATIVE_FILE.match(settings_file):
        raise SpecError(
            f"settings_file {settings_file!r} is not a plain relative path; rule: a path inside "
            "the project folder, without '..', spaces or quotes; fix: e.g. 'deploy/settings.yaml'"
        )
    settings_env = (
        f" \\\n    LOCKGATE_K8S_SETTINGS={APP_DIR}/{settings_file}" if settings_file else ""
    )
    install_lockgate = (
        f'RUN pip install "{lockgate_requirement}"\n'
        if lockgate_requirement is not None
        else "# the project is lockgate's own checkout: installing it installs lockgate\n"
    )
    return f"""# syntax=docker/dockerfile:1
FROM python:{python}-slim

# libgomp: LightGBM's OpenMP runtime
RUN apt-get update \\
    && apt-get install -y --no-install-recommends libgomp1 \\
    && rm -rf /var/lib/apt/lists/*

ENV PYTHONDONTWRITEBYTECODE=1 \\
    PYTHONUNBUFFERED=1 \\
    PIP_NO_CACHE_DIR=1 \\
    PIP_DISABLE_PIP_VERSION_CHECK=1 \\
    DAGSTER_HOME=/opt/dagster/dagster_home \\
    LOCKGATE_ENV=production{settings_env}

WORKDIR {APP_DIR}
{install_lockgate}COPY . {APP_DIR}
RUN pip install {APP_DIR} && mkdir -p /opt/dagster/dagster_home

# lock records name the code of every model version; an image has no .git, so the commit is
# passed at build time: docker build --build-arg LOCKGATE_CODE_COMMIT=$(git rev-parse HEAD) .
ARG LOCKGATE_CODE_COMMIT=unknown
ENV LOCKGATE_CODE_COMMIT=$LOCKGATE_CODE_COMMIT

EXPOSE {grpc_port}
# the code server; the Dagster chart runs the same with its dagsterApiGrpcArgs, and run and
# step pods run `dagster api execute_run` / `execute_step` from this image
CMD ["dagster", "api", "grpc", "--host", "0.0.0.0", "--port", "{grpc_port}", \\
     "--module-name", "{module}", "--working-directory", "{APP_DIR}"]
"""
