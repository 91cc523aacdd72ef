"""Online features without Feast: the configuration file, the entity-key contract, the log record.

The lookups themselves run against real SQLite and Redis online stores in
``tests/integration/test_online_features_stores.py``.
"""

from __future__ import annotations

import json
import struct
import zlib
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pandas as pd
import pytest

from lockgate.gateway.cli import _config, _server_limits, build_parser, main
from lockgate.gateway.config import GatewayConfig
from lockgate.gateway.errors import GatewayError, ReplyError
from lockgate.gateway.factory import app_from_config
from lockgate.gateway.named_inputs import MAX_ROWS, FeatureInputError
from lockgate.gateway.online_features import (
    EntityKeys,
    OnlineService,
    entity_header,
    load_online_features,
)
from lockgate.gateway.predlog.records import encode_record, read_segment
from lockgate.serving.wire import WireSchema, encode

# ---------------------------------------------------------------------------------------------
# the online-features file


def write(path: Path, data: Any) -> Path:
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    return path


def test_the_file_maps_models_to_sources_with_paths_read_against_its_folder(
    tmp_path: Path,
) -> None:
    (tmp_path / "feast" / "fraud").mkdir(parents=True)
    path = write(
        tmp_path / "online.json",
        {
            "fraud_lgbm": {"feast_repo": "feast/fraud", "feature_service": "fraud_v1"},
            "churn": {
                "feast_repo": str(tmp_path / "feast"),
                "feature_service": "churn_v2",
                "project": "churn",
                "data_dir": "data",
                "timeout_s": 0.25,
                "max_rows": 64,
            },
        },
    )
    sources = load_online_features(path)
    assert sorted(sources) == ["churn", "fraud_lgbm"]
    assert sources["fraud_lgbm"].feast_repo == str(tmp_path / "feast" / "fraud")
    assert sources["fraud_lgbm"].timeout_s == 1.0
    assert sources["fraud_lgbm"].data_dir == ""
    assert sources["churn"].data_dir == str(tmp_path / "data")
    assert sources["churn"].project == "churn"
    assert sources["churn"].timeout_s == 0.25
    assert (sources["fraud_lgbm"].max_rows, sources["churn"].max_rows) == (1024, 64)


@pytest.mark.parametrize(
    ("data", "fragments"),
    [
        ("{not json", ["is not JSON", "rule: {"]),
        ({}, ["holds nothing", "non-empty JSON object"]),
        ([1], ["holds list"]),
        ({"bad name!": {}}, ["'bad name!' is not a model name", "public model name"]),
        (
            {"m": {"feast_repo": ".", "feature_service": "s", "featureservice": "x"}},
            ["model 'm': featureservice: unknown key", "feast_repo and feature_service required"],
        ),
        ({"m": {"feast_repo": "."}}, ["model 'm': feature_service: Field required"]),
        (
            {"m": {"feast_repo": ".", "feature_service": "s", "timeout_s": 0}},
            ["timeout_s: Input should be greater than 0"],
        ),
        (
            {"m": {"feast_repo": ".", "feature_service": "s", "max_rows": 65537}},
            ["max_rows: Input should be less than or equal to 65536"],
        ),
        (
            {"m": {"feast_repo": "nowhere", "feature_service": "s"}},
            ["feast_repo", "nowhere' is no folder", "relative paths are read against"],
        ),
    ],
)
def test_a_bad_file_is_refused_naming_the_entry_and_the_rule(
    tmp_path: Path, data: Any, fragments: list[str]
) -> None:
    path = write(tmp_path / "online.json", data)
    with pytest.raises(GatewayError) as caught:
        load_online_features(path)
    for fragment in fragments:
        assert fragment in str(caught.value)


def test_a_missing_file_fails_when_the_app_is_built_not_when_the_config_is(
    tmp_path: Path,
) -> None:
    config = GatewayConfig(
        state_dir=tmp_path / "gw",
        log_dir=tmp_path / "log",
        upstream_url="http://127.0.0.1:8000",
        online_features=tmp_path / "absent.json",  # may be a path on another machine (k8s)
    )
    with pytest.raises(GatewayError, match=r"absent\.json' cannot be read"):
        app_from_config(config)


def test_the_online_features_file_survives_the_command_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    config = GatewayConfig(
        state_dir=tmp_path / "gw",
        log_dir=tmp_path / "log",
        upstream_url="http://127.0.0.1:8000",
        online_features=tmp_path / "online.json",
    )
    argv = config.to_argv()
    assert argv[argv.index("--online-features") + 1] == str(tmp_path / "online.json")
    parser = build_parser()
    args = parser.parse_args([*argv, "--audit-log", str(tmp_path / "audit.jsonl")])
    assert _config(args, _server_limits(args, parser)) == config
    # the gateway refuses to start on a bad file with the reason, not a traceback
    write(tmp_path / "online.json", {"m": {"feast_repo": "."}})
    monkeypatch.setenv("LG_TEST_TOKEN", "x" * 32)
    with pytest.raises(SystemExit) as caught:
        main([*argv, "--audit-log", str(tmp_path / "audit.jsonl"), "--admin-token-env",
              "LG_TEST_TOKEN"])  # fmt: skip
    assert caught.value.code == 2
    assert "model 'm': feature_service: Field required" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------
# the entity-key contract (a Feast service's shape without Feast)


def service() -> OnlineService:
    """fraud_v1's shape: a string transaction key, integer customer and merchant keys."""

    def view(name: str, key: str, dtype: str, features: list[str]) -> SimpleNamespace:
        return SimpleNamespace(
            name=name,
            entity_columns=[SimpleNamespace(name=key, dtype=dtype)],
            projection=SimpleNamespace(
                name=name, join_key_map={}, features=[SimpleNamespace(name=f) for f in features]
            ),
        )

    views = {
        v.name: v
        for v in (
            view("tx", "transaction_id", "String", ["amount"]),
            view("customer", "customer_id", "Int64", ["age"]),
            view("velocity", "customer_id", "Int64", ["tx_count_1d"]),
            view("merchant", "merchant_id", "Int64", ["merchant_category"]),
        )
    }
    store = SimpleNamespace(
        get_feature_view=views.__getitem__,
        config=SimpleNamespace(online_store=SimpleNamespace(type="sqlite")),
    )
    fs = SimpleNamespace(feature_view_projections=[v.projection for v in views.values()])
    source = SimpleNamespace(
        feast_repo="/repo", feature_service="fraud_v1", timeout_s=1.0, max_rows=1024
    )
    return OnlineService("fraud", source, store, fs, lambda: None)  # type: ignore[arg-type]


def keys(n: int = 2, **changes: dict[str, Any]) -> list[dict[str, Any]]:
    inputs = [
        {"name": "merchant_id", "datatype": "INT64", "shape": [n], "data": [7] * n},
        {"name": "transaction_id", "datatype": "BYTES", "shape": [n, 1],
         "data": [[f"t{i}"] for i in range(n)]},
        {"name": "customer_id", "datatype": "INT32", "shape": [n], "data": list(range(n))},
    ]  # fmt: skip
    for spec in inputs:
        spec.update(changes.get(spec["name"], {}))
    return inputs


def test_the_service_gives_its_join_keys_once_in_order_and_its_features() -> None:
    svc = service()
    assert svc.join_keys == {
        "transaction_id": "String",
        "customer_id": "Int64",
        "merchant_id": "Int64",
    }
    assert svc.features == ("amount", "age", "tx_count_1d", "merchant_category")
    assert svc.keys_text() == "transaction_id (BYTES), customer_id (INT64), merchant_id (INT64)"
    assert "Feast online store 'sqlite' of repository /repo" in svc.store_text


def test_entity_keys_decode_from_json_and_binary_in_service_order() -> None:
    svc = service()
    decoded = svc.decode_keys(keys(), b"", 0)
    assert decoded.rows == [
        {"transaction_id": "t0", "customer_id": 0, "merchant_id": 7},
        {"transaction_id": "t1", "customer_id": 1, "merchant_id": 7},
    ]
    assert json.loads(decoded.to_json()) == {
        "transaction_id": ["t0", "t1"],
        "customer_id": [0, 1],
        "merchant_id": [7, 7],
    }
    strings = b"".join(struct.pack("<I", len(s)) + s for s in (b"t0", "caf\u00e9".encode()))
    ints = np.array([5, 2**40], "<i8").tobytes()
    body = strings + ints
    binary = keys(
        transaction_id={"parameters": {"binary_data_size": len(strings)}, "shape": [2]},
        customer_id={"datatype": "INT64", "parameters": {"binary_data_size": len(ints)}},
    )
    for spec in binary[1:]:
        spec.pop("data")
    got = svc.decode_keys(binary, body, 0)
    assert [r["transaction_id"] for r in got.rows] == ["t0", "caf\u00e9"]
    assert [r["customer_id"] for r in got.rows] == [5, 2**40]


@pytest.mark.parametrize(
    ("changes", "fragment"),
    [
        ({"customer_id": {"datatype": "FP32"}}, "a Int64 key is sent as an integer datatype"),
        ({"transaction_id": {"datatype": "INT64"}}, "a String key is sent as BYTES"),
        ({"customer_id": {"data": [1.5, 2]}}, "'customer_id' got '1.5' (float) in row 0"),
        ({"customer_id": {"data": [True, 2]}}, "got 'True' (bool) in row 0"),
        ({"merchant_id": {"data": [7, None]}}, "'merchant_id' got 'None' (NoneType) in row 1"),
        ({"transaction_id": {"data": [["t"], [3]]}}, "got '3' (int) in row 1"),
        ({"transaction_id": {"data": ["x" * 1025, "y"]}}, "of at most 1024 bytes"),
        ({"customer_id": {"shape": [3], "data": [1, 2, 3]}}, "has 3 rows but 'merchant_id' has 2"),
        ({"merchant_id": {"data": [7]}}, "has 1 value(s) for 2 row(s)"),
        ({"merchant_id": {"shape": [MAX_ROWS + 1]}}, f"1 <= n <= {MAX_ROWS}"),
        (  # more entities than one lookup may take: split the request
            {k: {"shape": [1025], "data": [7] * 1025} for k in ("merchant_id", "customer_id")},
            "'merchant_id' has 1025 rows; rule: one request of fraud looks up at most "
            "max_rows=1024 entities",
        ),
        ({"merchant_id": {"shape": [2, 2]}}, "has shape [2, 2]"),
        ({"merchant_id": {"data": None}}, "no 'data' list and no binary_data_size"),
        (
            {"merchant_id": {"data": None, "parameters": {"binary_data_size": 8}}},
            "'merchant_id' has binary_data_size=8; rule: a byte count that fits the body",
        ),
    ],
)
def test_bad_entity_keys_are_refused_naming_the_key_and_the_rule(
    changes: dict[str, dict[str, Any]], fragment: str
) -> None:
    with pytest.raises(FeatureInputError) as caught:
        service().decode_keys(keys(**changes), b"", 0)
    assert fragment in str(caught.value)


def test_binary_keys_that_do_not_fit_are_refused() -> None:
    svc = service()
    inputs = keys(transaction_id={"parameters": {"binary_data_size": 6}, "shape": [2]})
    inputs[1].pop("data")
    with pytest.raises(FeatureInputError, match="ends inside row 1 of 2"):
        svc.decode_keys(inputs, struct.pack("<I", 2) + b"t0", 0)
    inputs = keys(customer_id={"parameters": {"binary_data_size": 4}, "datatype": "INT32"})
    inputs[2].pop("data")
    with pytest.raises(FeatureInputError, match="2 row\\(s\\) of INT32 take 8 bytes"):
        svc.decode_keys(inputs, b"\0" * 4, 0)


def test_only_requests_with_exactly_the_join_keys_are_entity_requests() -> None:
    svc = service()
    body = json.dumps({"id": "r", "inputs": keys()}).encode()
    header, hlen, rid = entity_header(svc, body, None) or ({}, 0, None)
    assert header["inputs"] == keys()
    assert (hlen, rid) == (len(body), "r")
    extra = json.dumps({"inputs": [*keys(), {"name": "amount"}]}).encode()
    fewer = json.dumps({"inputs": keys()[:2]}).encode()
    for other in (extra, fewer, b"not json transaction_id customer_id merchant_id", b"{}"):
        assert entity_header(svc, other, None) is None
    assert entity_header(svc, body, "x12") is None  # a bad header length: parse_request says why
    assert entity_header(svc, body + b"\0\0", str(len(body))) is not None


SCHEMA = WireSchema.of(
    [("amount", "numeric"), ("merchant_category", "categorical"), ("age", "numeric")]
)


@pytest.mark.parametrize(
    "values",
    [
        {"amount": [1.5, None, 3], "merchant_category": ["a", None, "caf\u00e9"], "age": [1, 2, 3]},
        {"amount": [True, False, None], "merchant_category": [None, None, None],
         "age": [None, None, 2**40]},
        {"amount": [1.5, float("nan"), -0.0], "merchant_category": ["x", float("nan"), "y"],
         "age": [0, -1, 7]},
        # other types take the DataFrame path: the same result as the wire's own encoding
        {"amount": ["1.5", "2", None], "merchant_category": [3, None, "3"], "age": [1, 2, 3]},
    ],
)  # fmt: skip
def test_looked_up_values_encode_exactly_like_wire_encode(values: dict[str, list[Any]]) -> None:
    got = service().encode({**values, "unused": [0, 0, 0]}, SCHEMA, version="v1")
    np.testing.assert_array_equal(got, encode(pd.DataFrame(values), SCHEMA))
    assert got.dtype == np.float32


def test_values_the_version_cannot_take_are_502_naming_the_store() -> None:
    svc = service()
    with pytest.raises(ReplyError) as caught:
        svc.encode(
            {"amount": [1e300], "merchant_category": ["a"], "age": [1]}, SCHEMA, version="v1"
        )
    assert caught.value.status == 502
    assert "Feast online store 'sqlite' of repository /repo" in caught.value.message
    assert "beyond float32's range" in caught.value.message
    with pytest.raises(ReplyError) as caught:
        svc.encode({"amount": [1.0]}, SCHEMA, version="v1")
    assert caught.value.status == 502
    assert "has no feature(s) ['merchant_category', 'age'] that version v1" in caught.value.message


# ---------------------------------------------------------------------------------------------
# the prediction log record


def test_records_carry_the_entity_keys_and_records_without_them_read_as_before(
    tmp_path: Path,
) -> None:
    meta = {"t": "a", "ts": 1, "m": "fraud", "v": "v1", "rb": "single", "st": 200, "lat": 1.0}
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    y = np.ones((2, 1), np.float32)
    plain = encode_record(meta, x, y)
    ek = EntityKeys([{"customer_id": 1, "tx": "caf\u00e9"}, {"customer_id": 2, "tx": "b"}])
    with_keys = encode_record({**meta, "t": "b", "ek": ek.to_json()}, x, y)
    assert len(with_keys) == len(plain) + len(ek.to_json().encode()) + 4
    shadow = encode_record({**meta, "t": "c", "sh": True, "diff": [0.5, 0.25]}, x, y)
    segment = tmp_path / "seg.wal"
    segment.write_bytes(plain + with_keys + shadow + plain[:10])  # a torn last frame
    table, clean = read_segment(segment)
    assert not clean
    rows = table.to_pylist()
    assert [r["trace_id"] for r in rows] == ["a", "b", "c"]
    assert [r["entity_keys"] for r in rows] == [None, ek.to_json(), None]
    assert json.loads(rows[1]["entity_keys"]) == {"customer_id": [1, 2], "tx": ["caf\u00e9", "b"]}
    for r in rows:
        np.testing.assert_array_equal(np.array(r["inputs"]), x)
    assert rows[2]["shadow_abs_diff"] == [0.5, 0.25]


def test_a_record_whose_keys_do_not_add_up_ends_the_segment(tmp_path: Path) -> None:
    meta = {"t": "a", "ts": 1, "m": "fraud", "v": "v1", "rb": "single", "st": 200, "lat": 1.0}
    good = encode_record({**meta, "ek": '{"k":[1]}'}, None, None)
    payload = bytearray(good[12:])
    payload[-4:] = struct.pack("<I", 10_000)  # a length beyond the frame, with a valid CRC
    bad = struct.pack("<4sII", b"LGW2", len(payload), zlib.crc32(payload)) + bytes(payload)
    segment = tmp_path / "seg.wal"
    segment.write_bytes(good + bad + good)
    table, clean = read_segment(segment)
    assert table.num_rows == 1
    assert table.column("entity_keys").to_pylist() == ['{"k":[1]}']
    assert not clean


def test_parquet_parts_written_before_entity_keys_still_read(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from lockgate.gateway.predlog import read_prediction_log
    from lockgate.gateway.predlog.records import prediction_log_schema

    old = pa.schema([f for f in prediction_log_schema() if f.name != "entity_keys"])
    row = {"trace_id": "a", "ts": 1, "model": "fraud", "version": "v1", "routed_by": "single",
           "shadow": False, "status": 200, "latency_ms": 1.0, "inputs": [[1.0]]}  # fmt: skip
    part = tmp_path / "fraud" / "date=1970-01-01" / "part-00000000000000000001.parquet"
    part.parent.mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist([row], schema=old), part)
    log = read_prediction_log(tmp_path, "fraud")
    assert log.trace_id.tolist() == ["a"]
    assert log.entity_keys.tolist() == [None]
