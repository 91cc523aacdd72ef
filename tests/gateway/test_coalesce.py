"""The pure parts of request coalescing: who may merge, the merged request, the split answer."""

from __future__ import annotations

import functools
import json
from typing import Any

import numpy as np
import pytest

from lockgate.gateway.coalesce import answer, merged_request, plan_of, split_response

OUTS = ("OUTPUT__0", "LABEL")


def header(**extra: Any) -> dict[str, Any]:
    spec = {"name": "INPUT__0", "datatype": "FP32", "shape": [1, 3], "data": [1, 2, 3]}
    return {"inputs": [spec], **extra}


def test_plan_follows_the_kserve_defaults_for_output_form() -> None:
    assert plan_of(header(), OUTS) == (("OUTPUT__0", False), ("LABEL", False))
    bdo = {"binary_data_output": True}
    assert plan_of(header(parameters=bdo), OUTS) == (("OUTPUT__0", True), ("LABEL", True))
    asked = [{"name": "LABEL"}, {"name": "OUTPUT__0", "parameters": {"binary_data": False}}]
    assert plan_of(header(parameters=bdo, outputs=asked, id="x"), OUTS) == (
        ("LABEL", True),
        ("OUTPUT__0", False),
    )


@pytest.mark.parametrize(
    "extra",
    [
        {"parameters": {"priority": 1}},
        {"parameters": {"binary_data_output": 1}},
        {"parameters": "yes"},
        {"sequence_id": 4},
        {"id": 7},
        {"outputs": []},
        {"outputs": [{"name": "NOPE"}]},
        {"outputs": [{"name": "LABEL"}, {"name": "LABEL"}]},
        {"outputs": [{"name": "LABEL", "parameters": {"classification": 2}}]},
        {"outputs": [{"name": "LABEL", "parameters": {"binary_data": "true"}}]},
        {"outputs": [{"name": "LABEL", "shape": [1]}]},
        {"outputs": "LABEL"},
    ],
)
def test_requests_with_options_the_gateway_does_not_rebuild_go_alone(extra: dict[str, Any]) -> None:
    assert plan_of(header(**extra), OUTS) is None


def test_input_options_other_than_binary_size_go_alone() -> None:
    h = header()
    h["inputs"][0]["parameters"] = {"shared_memory_region": "r"}
    assert plan_of(h, OUTS) is None
    h["inputs"][0]["parameters"] = {"binary_data_size": 12}
    assert plan_of(h, OUTS) is not None
    h["inputs"][0]["extra"] = 1
    assert plan_of(h, OUTS) is None


def test_merged_request_carries_all_rows_in_order_as_binary() -> None:
    a = np.arange(6, dtype=np.float32).reshape(2, 3)
    b = np.full((1, 3), 9.0, np.float32)
    body, hlen = merged_request("INPUT__0", [a, b])
    head = json.loads(body[:hlen])
    assert head["inputs"][0]["shape"] == [3, 3]
    assert head["inputs"][0]["parameters"]["binary_data_size"] == 36
    assert head["parameters"] == {"binary_data_output": True}
    got = np.frombuffer(body, "<f4", offset=hlen).reshape(3, 3)
    np.testing.assert_array_equal(got, np.concatenate([a, b]))


def _merged_answer(rows: list[int]) -> tuple[dict[str, Any], bytes, int]:
    total = sum(rows)
    prob = np.arange(total, dtype="<f4").reshape(total, 1) / 10
    label = np.arange(total * 2, dtype="<i8").reshape(total, 2)
    head = {
        "model_name": "m-v1",
        "model_version": "1",
        "outputs": [
            {
                "name": "OUTPUT__0",
                "datatype": "FP32",
                "shape": [total, 1],
                "parameters": {"binary_data_size": prob.nbytes},
            },
            {
                "name": "LABEL",
                "datatype": "INT64",
                "shape": [total, 2],
                "parameters": {"binary_data_size": label.nbytes},
            },
        ],
    }
    encoded = json.dumps(head).encode()
    return head, encoded + prob.tobytes() + label.tobytes(), len(encoded)


def test_split_gives_each_client_its_rows_of_every_output() -> None:
    head, body, off = _merged_answer([2, 1, 3])
    parts = split_response(head, body, off, [2, 1, 3])
    assert len(parts) == 3
    assert parts[1]["OUTPUT__0"].shape == (1, 1)
    assert np.frombuffer(parts[1]["OUTPUT__0"].data, "<f4").tolist() == [pytest.approx(0.2)]
    assert parts[2]["LABEL"].shape == (3, 2)
    assert np.frombuffer(parts[2]["LABEL"].data, "<i8").tolist() == [6, 7, 8, 9, 10, 11]
    assert np.frombuffer(parts[0]["LABEL"].data, "<i8").tolist() == [0, 1, 2, 3]


@pytest.mark.parametrize(
    ("change", "fragment"),
    [
        (lambda h: h["outputs"][0].update(shape=[5, 1]), "batch of 6 rows"),
        (lambda h: h["outputs"][1].update(datatype="BYTES"), "not one of fixed size"),
        (lambda h: h["outputs"][0].pop("parameters"), "not in binary form"),
        (lambda h: h["outputs"][1]["parameters"].update(binary_data_size=8), "needs 96 bytes"),
    ],
)
def test_an_answer_that_does_not_fit_the_merged_request_is_refused(
    change: Any, fragment: str
) -> None:
    head, body, off = _merged_answer([2, 1, 3])
    change(head)
    with pytest.raises(ValueError, match=fragment):
        split_response(head, body, off, [2, 1, 3])


def test_a_truncated_answer_is_refused() -> None:
    head, body, off = _merged_answer([2, 1])
    with pytest.raises(ValueError, match="binary_data_size"):
        split_response(head, body[:-1], off, [2, 1])


def test_each_client_gets_the_form_it_asked_for() -> None:
    head, body, off = _merged_answer([2, 1])
    parts = split_response(head, body, off, [2, 1])
    plan = (("LABEL", False), ("OUTPUT__0", True))
    out, hlen = answer(
        plan,
        parts[0],
        model_name="m",
        model_version="v1",
        request_id="r-1",
        parameters={"lockgate_trace_id": "t"},
    )
    assert hlen is not None
    meta = json.loads(out[:hlen])
    assert meta["id"] == "r-1"
    assert (meta["model_name"], meta["model_version"]) == ("m", "v1")
    assert meta["parameters"] == {"lockgate_trace_id": "t"}
    assert meta["outputs"][0] == {
        "name": "LABEL",
        "datatype": "INT64",
        "shape": [2, 2],
        "data": [0, 1, 2, 3],
    }
    assert meta["outputs"][1]["parameters"] == {"binary_data_size": 8}
    assert np.frombuffer(out, "<f4", offset=hlen).tolist() == [0.0, pytest.approx(0.1)]
    anonymous = functools.partial(answer, model_name="m", model_version="v1", request_id=None)
    json_only, none = anonymous((("OUTPUT__0", False),), parts[1], parameters={})
    assert none is None
    meta = json.loads(json_only)
    assert "id" not in meta
    assert meta["outputs"] == [
        {"name": "OUTPUT__0", "datatype": "FP32", "shape": [1, 1], "data": [pytest.approx(0.2)]}
    ]
    with pytest.raises(ValueError, match="no output 'OTHER'"):
        anonymous((("OTHER", True),), parts[1], parameters={})
