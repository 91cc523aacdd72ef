"""The local serving stack keeps its ports: chosen once, written to ports.json, reused."""

from __future__ import annotations

import json
import socket
from pathlib import Path

from lockgate.serving.stack import LocalServingStack


def test_ports_are_chosen_once_and_kept(tmp_path: Path) -> None:
    stack = LocalServingStack(root=str(tmp_path / "serving"))
    first = stack.ports()
    assert set(first) == {
        "triton_http",
        "triton_grpc",
        "triton_metrics",
        "gateway",
        "gateway_admin",
    }
    assert len(set(first.values())) == 5
    again = LocalServingStack(root=str(tmp_path / "serving"))  # another process, later
    assert again.ports() == first
    assert json.loads(stack.ports_file.read_text()) == first
    triton = again.triton()
    assert (triton.fixed_http_port, triton.fixed_grpc_port, triton.fixed_metrics_port) == (
        first["triton_http"],
        first["triton_grpc"],
        first["triton_metrics"],
    )
    assert again.gateway().port == first["gateway"]


def test_configured_ports_win_over_kept_ones(tmp_path: Path) -> None:
    root = str(tmp_path / "serving")
    kept = LocalServingStack(root=root).ports()
    stack = LocalServingStack(root=root, triton_http_port=18000, gateway_port=18080)
    ports = stack.ports()
    assert (ports["triton_http"], ports["gateway"]) == (18000, 18080)
    assert ports["triton_grpc"] == kept["triton_grpc"]


def test_a_kept_port_taken_meanwhile_is_chosen_again(tmp_path: Path) -> None:
    stack = LocalServingStack(root=str(tmp_path / "serving"))
    kept = stack.ports()
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as other:
        other.bind(("127.0.0.1", kept["gateway"]))
        other.listen()
        stack._repick_busy_ports("gateway", "triton_http")
        ports = stack.ports()
    assert ports["gateway"] != kept["gateway"]
    assert ports["triton_http"] == kept["triton_http"]  # free: kept
