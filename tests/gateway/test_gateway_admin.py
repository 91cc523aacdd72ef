"""The gateway's admin API behind its own listener, a required token and the audit log (issue 13,
item 2), against real gateway processes (``python -m lockgate.gateway`` through
:class:`GatewayServer`, or started by hand to see it refuse).

No upstream is needed: routes are set with ``verify_routes=False`` and the upstream address is a
closed port.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from lockgate.audit.log import AuditLog
from lockgate.gateway.process import GatewayServer
from lockgate.serving.stack import LocalServingStack

# real servers on loopback (uvicorn, gateway processes, a Feast store): the integration layer
pytestmark = pytest.mark.integration

MODEL = "fraud_lgbm"
ROUTE = {"mode": "single", "champion": "v1"}
OTHER = {"mode": "single", "champion": "v2"}
_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _request(
    url: str, method: str, body: object = None, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, object]]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    try:
        with _NO_PROXY.open(request, timeout=30) as reply:
            raw = reply.read()
            return reply.status, json.loads(raw) if raw else {}
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


@pytest.fixture
def gateway(tmp_path: Path) -> Iterator[GatewayServer]:
    server = GatewayServer(
        state_dir=str(tmp_path / "gw"),
        log_dir=str(tmp_path / "log"),
        upstream_url="127.0.0.1:1",
        verify_routes=False,
        audit_path=str(tmp_path / "home" / "audit" / "audit.jsonl"),
        actor="test-suite",
    )
    with server:
        server.set_route(MODEL, ROUTE)
        yield server


def test_admin_listens_on_its_own_loopback_port_with_a_private_token(
    gateway: GatewayServer,
) -> None:
    assert gateway.admin_url.startswith("http://127.0.0.1:")
    assert gateway.admin_url != gateway.url
    mode = stat.S_IMODE(gateway.token_file.stat().st_mode)
    assert mode == 0o600, oct(mode)
    assert len(gateway.token()) >= 32


def test_admin_calls_on_the_inference_port_change_nothing(gateway: GatewayServer) -> None:
    token = {"Authorization": f"Bearer {gateway.token()}", "x-lockgate-actor": "mallory"}
    for headers in ({}, token):  # not even with the token: admin is not served there
        status, body = _request(f"{gateway.url}/admin/routes/{MODEL}", "PUT", OTHER, headers)
        assert status == 404, body
        assert gateway.admin_url in str(body["error"])
        status, body = _request(f"{gateway.url}/admin/routes/{MODEL}", "DELETE", None, headers)
        assert status == 404, body
        status, _ = _request(f"{gateway.url}/admin/stats/{MODEL}/reset", "POST", {}, headers)
        assert status == 404
    assert gateway.routes()[MODEL]["champion"] == "v1"


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({}, 401),
        ({"Authorization": "Bearer wrong-token-wrong-token-wrong"}, 403),
        ({"Authorization": "Basic dXNlcjpwYXNz"}, 403),
        ({"Authorization": "Bearer "}, 403),
    ],
)
def test_admin_port_refuses_a_missing_or_wrong_token_and_changes_nothing(
    gateway: GatewayServer, headers: dict[str, str], expected: int
) -> None:
    headers = {**headers, "x-lockgate-actor": "mallory"}
    url = f"{gateway.admin_url}/admin/routes/{MODEL}"
    assert _request(url, "PUT", OTHER, headers)[0] == expected
    assert _request(url, "DELETE", None, headers)[0] == expected
    assert _request(f"{gateway.admin_url}/admin/routes", "GET", None, headers)[0] == expected
    assert gateway.routes()[MODEL]["champion"] == "v1"
    actions = [e["payload"]["action"] for e in AuditLog(gateway.audit_file).entries()]
    assert actions == ["route_put"]  # the fixture's own route only


def test_admin_changes_are_audited_with_their_actor_and_token(gateway: GatewayServer) -> None:
    token = gateway.token()
    url = f"{gateway.admin_url}/admin/routes/{MODEL}"
    auth = {"Authorization": f"Bearer {token}"}
    status, body = _request(url, "PUT", OTHER, auth)  # no actor: refused before any change
    assert status == 400
    assert "x-lockgate-actor" in str(body["error"])
    assert gateway.routes()[MODEL]["champion"] == "v1"

    status, _ = _request(url, "PUT", OTHER, {**auth, "x-lockgate-actor": "alice"})
    assert status == 200
    gateway.model_copy(update={"actor": "bob"}).reset_stats(MODEL)
    gateway.roll_log()
    gateway.delete_route(MODEL)

    log = AuditLog(gateway.audit_file)
    assert log.verify().ok
    entries = [e for e in log.entries() if e["kind"] == "gateway_admin"]
    got = [(e["actor"], e["pipeline"], e["payload"]["action"]) for e in entries]
    assert got == [
        ("test-suite", MODEL, "route_put"),
        ("alice", MODEL, "route_put"),
        ("bob", MODEL, "stats_reset"),
        ("test-suite", "*", "log_roll"),
        ("test-suite", MODEL, "route_delete"),
    ]
    token_id = "sha256:" + hashlib.sha256(token.encode()).hexdigest()[:12]
    assert {e["payload"]["token_id"] for e in entries} == {token_id}
    assert entries[1]["payload"]["previous"]["champion"] == "v1"
    assert entries[1]["payload"]["route"]["champion"] == "v2"
    assert entries[4]["payload"]["previous"]["champion"] == "v2"
    assert token not in gateway.audit_file.read_text()


def _gateway_command(tmp_path: Path, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "lockgate.gateway.app",
        "--state-dir",
        str(tmp_path / "s"),
        "--log-dir",
        str(tmp_path / "l"),
        "--upstream-url",
        "http://127.0.0.1:1",
        "--port",
        "0",
        *extra,
    ]


@pytest.mark.parametrize(
    ("extra", "env_token", "fragment"),
    [
        ((), None, "needs a token"),
        (("--admin-token-env", "LOCKGATE_TEST_ADMIN_TOKEN"), None, "holds no admin token"),
        (("--admin-token-env", "LOCKGATE_TEST_ADMIN_TOKEN"), "", "holds no admin token"),
        (("--admin-token-env", "LOCKGATE_TEST_ADMIN_TOKEN"), "short", "too short"),
        (("--admin-token-file", "{tmp}/missing.token"), None, "cannot be read"),
    ],
)
def test_the_gateway_refuses_to_start_without_a_token(
    tmp_path: Path, extra: tuple[str, ...], env_token: str | None, fragment: str
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOCKGATE_")}
    if env_token is not None:
        env["LOCKGATE_TEST_ADMIN_TOKEN"] = env_token
    args = [a.replace("{tmp}", str(tmp_path)) for a in extra]
    audit = ("--audit-log", str(tmp_path / "audit" / "audit.jsonl"))
    done = subprocess.run(
        _gateway_command(tmp_path, *args, *audit),
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2, done.stderr
    assert fragment in done.stderr, done.stderr
    assert not (tmp_path / "s" / "routes.json").exists()


def test_the_gateway_refuses_to_start_without_an_audit_log(tmp_path: Path) -> None:
    env = dict(os.environ, LOCKGATE_TEST_ADMIN_TOKEN="x" * 32)
    done = subprocess.run(
        _gateway_command(tmp_path, "--admin-token-env", "LOCKGATE_TEST_ADMIN_TOKEN"),
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2, done.stderr
    assert "--audit-log" in done.stderr


def test_the_local_stack_gives_its_token_to_every_client(tmp_path: Path) -> None:
    """The serving stack's gateway() objects (what the canary controller, ``lockgate serve`` and
    the sensors use) find the token the gateway was started with; a restart keeps it."""
    stack = LocalServingStack(root=str(tmp_path / "serving"))
    started = stack._gateway("127.0.0.1:1").model_copy(update={"verify_routes": False}).start()
    try:
        token_file = tmp_path / "serving" / "gateway" / "admin.token"
        assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
        client = stack.gateway()  # a fresh object, as another process would build it
        assert client.admin_url == started.admin_url
        assert client.admin_url.endswith(f":{stack.ports()['gateway_admin']}")
        client.set_route(MODEL, ROUTE)
        assert client.routes()[MODEL]["champion"] == "v1"
        assert stack.gateway().stats(MODEL)["model"] == MODEL
        stack.gateway(actor="canary controller").reset_stats(MODEL)
        log = AuditLog(tmp_path / "serving" / "audit" / "gateway.jsonl")
        assert log.verify().ok
        actors = [(e["actor"], e["payload"]["action"]) for e in log.entries()]
        assert actors[-1] == ("canary controller", "stats_reset")
        assert "@" in actors[0][0]  # the default: user@host (program)
    finally:
        started.stop()
