"""The project image's Dockerfile."""

from __future__ import annotations

import pytest

from lockgate.deploy.docker import APP_DIR, DOCKERIGNORE, dockerfile
from lockgate.errors import SpecError


def _instructions(text: str) -> list[str]:
    """The Dockerfile's instructions, continuation lines joined, comments dropped."""
    joined = text.replace("\\\n", " ")
    return [
        line.strip() for line in joined.splitlines() if line.strip() and not line.startswith("#")
    ]


def test_the_image_installs_lockgate_then_the_project_and_serves_the_code_location() -> None:
    lines = _instructions(
        dockerfile(module="fraud_project.definitions", lockgate_requirement="lockgate==0.1.0")
    )
    assert lines[0] == "FROM python:3.11-slim"
    install = lines.index('RUN pip install "lockgate==0.1.0"')
    copy = lines.index(f"COPY . {APP_DIR}")
    project = next(
        i for i, line in enumerate(lines) if line.startswith(f"RUN pip install {APP_DIR}")
    )
    assert install < copy < project  # the dependency layer is cached across code changes
    assert f"WORKDIR {APP_DIR}" in lines
    assert "ARG LOCKGATE_CODE_COMMIT=unknown" in lines
    assert "ENV LOCKGATE_CODE_COMMIT=$LOCKGATE_CODE_COMMIT" in lines
    cmd = next(line for line in lines if line.startswith("CMD"))
    assert '"dagster", "api", "grpc"' in cmd
    assert '"--module-name", "fraud_project.definitions"' in cmd
    assert f'"--working-directory", "{APP_DIR}"' in cmd
    assert '"--port", "3030"' in cmd
    assert "EXPOSE 3030" in lines


def test_lockgates_own_checkout_installs_lockgate_with_the_project() -> None:
    text = dockerfile(module="pipelines.definitions", lockgate_requirement=None)
    assert 'pip install "lockgate' not in text
    assert f"RUN pip install {APP_DIR}" in text


def test_the_dockerignore_keeps_environments_and_state_out() -> None:
    ignored = {line for line in DOCKERIGNORE.splitlines() if line and not line.startswith("#")}
    assert {".git", ".venv", ".lockgate"} <= ignored


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"module": "fraud-project.definitions"}, "is not a Python module path"),
        ({"module": "p.d", "python": "3.9"}, "python '3.9' is not a version lockgate supports"),
        (
            {"module": "p.d", "lockgate_requirement": "lockgate; rm -rf /"},
            "is not a pip requirement",
        ),
    ],
)
def test_values_that_would_build_a_broken_image_are_refused(
    kwargs: dict[str, str], message: str
) -> None:
    with pytest.raises(SpecError, match="fix: ") as info:
        dockerfile(**kwargs)  # type: ignore[arg-type]
    assert message in str(info.value)


def test_the_cmd_parses_with_dagsters_own_grpc_command() -> None:
    import json

    from dagster._cli.api import api_cli

    text = dockerfile(module="fraud_project.definitions", grpc_port=4040)
    cmd = json.loads(next(line for line in _instructions(text) if line.startswith("CMD"))[4:])
    assert cmd[:3] == ["dagster", "api", "grpc"]
    params = api_cli.commands["grpc"].make_context("grpc", cmd[3:]).params
    assert (params["host"], params["port"]) == ("0.0.0.0", 4040)
    assert params["module_name"] == "fraud_project.definitions"
    assert params["working_directory"] == APP_DIR


def test_the_image_names_its_cluster_settings_for_the_code_location() -> None:
    text = dockerfile(module="pipelines.definitions", settings_file="deploy/settings.yaml")
    assert "LOCKGATE_K8S_SETTINGS=/opt/dagster/app/deploy/settings.yaml" in text
    assert "LOCKGATE_K8S_SETTINGS" not in dockerfile(module="pipelines.definitions")
    for bad in ("../settings.yaml", "/etc/settings.yaml", "deploy/my settings.yaml"):
        with pytest.raises(SpecError, match=r"settings_file .* is not a plain relative path"):
            dockerfile(module="pipelines.definitions", settings_file=bad)
