"""The wire format: one request matrix per pipeline, decoded by each version with its own
preprocessing; ``predict_proba(decode(encode(frame)))`` equals ``predict_proba(frame)``."""

from __future__ import annotations

import hashlib
import itertools
import json
import string
from typing import Any

import numpy as np
import pandas as pd
import pytest

from lockgate.errors import DataError, SchemaError
from lockgate.lineage.registry import LocalArtifactRegistry
from lockgate.serving.wire import (
    CODE_LIMIT,
    WireColumn,
    WireDecoder,
    WireSchema,
    code24,
    decode,
    encode,
    wire_schema_for_version,
)
from lockgate.training import LightGBMTrainer, TorchTrainer, TrainedModel

FEATURES = ["amount", "hour", "is_foreign", "channel", "country"]


def _frame(n: int = 600, seed: int = 4, *, float32_exact: bool = False) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    amount = rng.gamma(2.0, 40.0, n)
    if float32_exact:
        amount = np.round(amount * 64) / 64  # dyadic: float32 holds it exactly
    frame = pd.DataFrame(
        {
            "amount": amount,
            "hour": rng.integers(0, 24, n),  # int64
            "is_foreign": rng.random(n) < 0.2,  # bool
            "channel": rng.choice(["web", "pos", "atm", "moto"], n).astype(object),
            "country": rng.choice(["DE", "FR", "US", "NL", "BR"], n).astype(object),
        }
    )
    frame.loc[::17, "amount"] = np.nan
    frame.loc[::29, "channel"] = None
    risky = (frame["amount"].fillna(0) > 100) | (frame["channel"] == "moto")
    frame["y"] = (risky ^ (rng.random(n) < 0.1)).astype(int)
    return frame


def _unseen(frame: pd.DataFrame) -> pd.DataFrame:
    """Rows with categories no model saw, a missing category and a missing number."""
    rows = frame.head(6).copy()
    rows["channel"] = ["kiosk", None, "web", "", "pos", "ATM"]
    rows["country"] = ["XX", "DE", None, "FR", "zz", "US"]
    rows.loc[rows.index[2], "amount"] = np.nan
    return rows


def _schema(frame: pd.DataFrame) -> WireSchema:
    return WireSchema.from_frame(frame, FEATURES)


def _vocabularies(model: TrainedModel) -> dict[str, list[str]]:
    return {
        f["name"]: f["vocabulary"]
        for f in model.preprocessing["features"]
        if f["type"] == "categorical"
    }


@pytest.fixture(scope="module")
def models() -> dict[str, TrainedModel]:
    train = _frame(float32_exact=True)
    return {
        "lightgbm": LightGBMTrainer(seed=1, num_boost_round=25).fit(
            train, features=FEATURES, label="y"
        ),
        "torch": TorchTrainer(seed=1, epochs=3).fit(train, features=FEATURES, label="y"),
    }


# ---- code24 and the schema ------------------------------------------------------------------


def test_code24_is_the_first_three_bytes_of_sha256() -> None:
    for value in ["", "web", "DE", "ünïcode", "a" * 1000]:
        digest = hashlib.sha256(value.encode("utf-8")).digest()
        assert code24(value) == int.from_bytes(digest[:3], "big") < CODE_LIMIT
        assert float(np.float32(code24(value))) == code24(value)  # exact in float32
    with pytest.raises(SchemaError, match="str"):
        code24(3)  # type: ignore[arg-type]


def test_schema_from_manifest_classifies_dtypes_and_round_trips() -> None:
    manifest = {
        "features": ["amount", "hour", "flag", "nullable", "channel", "text", "cat"],
        "schema": {
            "amount": "float64",
            "hour": "int64",
            "flag": "bool",
            "nullable": "Int64",
            "channel": "object",
            "text": "string",
            "cat": "category",
            "ts": "datetime64[us]",  # not a feature: ignored
        },
    }
    schema = WireSchema.from_manifest(manifest)
    assert schema.names == tuple(manifest["features"])
    assert schema.width == 7
    assert [c.kind for c in schema.columns] == ["numeric"] * 4 + ["categorical"] * 3
    text = schema.to_json()
    assert text.endswith(b"\n")
    assert json.loads(text)["format"] == "lockgate.serving.wire/1"
    assert WireSchema.from_json(text) == schema
    assert WireSchema.from_dict(schema.to_dict()) == schema
    assert hash(schema) == hash(WireSchema.from_json(text))  # frozen, hashable


def test_schema_errors_are_named() -> None:
    with pytest.raises(SchemaError, match="dtype"):
        WireSchema.from_manifest({"features": ["ts"], "schema": {"ts": "datetime64[ns]"}})
    with pytest.raises(SchemaError, match="without a dtype"):
        WireSchema.from_manifest({"features": ["a"], "schema": {}})
    with pytest.raises(SchemaError, match="'features' and 'schema'"):
        WireSchema.from_manifest({"rows": 3})
    with pytest.raises(SchemaError, match="twice"):
        WireSchema.of([("a", "numeric"), ("a", "numeric")])
    with pytest.raises(SchemaError, match="kind"):
        WireSchema.of([("a", "text")])
    with pytest.raises(SchemaError, match="non-empty"):
        WireSchema(())
    with pytest.raises(SchemaError, match="format"):
        WireSchema.from_json(b'{"format": "other/1", "columns": []}')
    with pytest.raises(SchemaError, match="not JSON"):
        WireSchema.from_json(b"{")
    with pytest.raises(SchemaError, match="no column 'x'"):
        WireSchema.of([("a", "numeric")]).kind("x")


# ---- encode ------------------------------------------------------------------------------------


def test_encode_layout() -> None:
    frame = pd.DataFrame(
        {
            "channel": ["web", None, "pos"],
            "amount": [1.5, np.nan, -2.0],
            "flag": [True, False, True],
            "other": ["ignored", "x", "y"],
        }
    )
    schema = WireSchema.of([("amount", "numeric"), ("flag", "numeric"), ("channel", "categorical")])
    x = encode(frame, schema)
    assert x.dtype == np.float32
    assert x.shape == (3, 3)
    assert x.flags.c_contiguous
    np.testing.assert_array_equal(x[:, 0], [1.5, np.nan, -2.0])
    np.testing.assert_array_equal(x[:, 1], [1.0, 0.0, 1.0])
    assert x[0, 2] == code24("web")
    assert np.isnan(x[1, 2])
    assert x[2, 2] == code24("pos")
    # numbers in a categorical column become their strings, as the model's preprocessing does
    numbers = encode(pd.DataFrame({"c": [7, 8]}), WireSchema.of([("c", "categorical")]))
    assert list(numbers[:, 0]) == [code24("7"), code24("8")]


def test_encode_errors_are_named() -> None:
    schema = WireSchema.of([("amount", "numeric"), ("channel", "categorical")])
    with pytest.raises(SchemaError, match=r"lacks wire columns \['channel'\]"):
        encode(pd.DataFrame({"amount": [1.0]}), schema)
    with pytest.raises(SchemaError, match="cannot be read as numeric"):
        encode(pd.DataFrame({"amount": ["cheap"], "channel": ["web"]}), schema)
    with pytest.raises(DataError, match="infinite or beyond float32"):
        encode(pd.DataFrame({"amount": [np.inf], "channel": ["web"]}), schema)
    with pytest.raises(DataError, match="beyond float32"):
        encode(pd.DataFrame({"amount": [1e300], "channel": ["web"]}), schema)
    with pytest.raises(SchemaError, match="DataFrame"):
        encode(np.zeros((1, 2)), schema)  # type: ignore[arg-type]
    with pytest.raises(SchemaError, match="WireSchema"):
        encode(pd.DataFrame({"amount": [1.0]}), ["amount"])  # type: ignore[arg-type]
    duplicated = pd.DataFrame([[1.0, 2.0, "web"]], columns=["amount", "amount", "channel"])
    with pytest.raises(SchemaError, match="occurs 2 times"):
        encode(duplicated, schema)


# ---- decode and the round trip -----------------------------------------------------------------


@pytest.mark.parametrize("kind", ["lightgbm", "torch"])
def test_round_trip_predicts_exactly_like_the_raw_frame(
    models: dict[str, TrainedModel], kind: str
) -> None:
    model = models[kind]
    frame = pd.concat(
        [_frame(300, seed=9, float32_exact=True), _unseen(_frame(10, float32_exact=True))]
    )
    schema = _schema(frame)
    decoded = decode(encode(frame, schema), schema, vocabularies=_vocabularies(model))
    np.testing.assert_array_equal(model.predict_proba(decoded), model.predict_proba(frame))
    np.testing.assert_array_equal(model.preprocess(decoded), model.preprocess(frame))


def test_lightgbm_round_trip_is_exact_for_any_float64(models: dict[str, TrainedModel]) -> None:
    model = models["lightgbm"]
    frame = _frame(300, seed=11)  # amounts not float32-representable
    schema = _schema(frame)
    decoded = decode(encode(frame, schema), schema, vocabularies=_vocabularies(model))
    np.testing.assert_array_equal(model.predict_proba(decoded), model.predict_proba(frame))


def test_torch_round_trip_is_float32_close_for_any_float64(
    models: dict[str, TrainedModel],
) -> None:
    model = models["torch"]
    frame = _frame(300, seed=11)
    schema = _schema(frame)
    decoded = decode(encode(frame, schema), schema, vocabularies=_vocabularies(model))
    np.testing.assert_allclose(
        model.predict_proba(decoded), model.predict_proba(frame), rtol=0, atol=1e-6
    )


def test_versions_with_other_vocabularies_and_features_share_one_wire_matrix() -> None:
    wide = _frame(500, seed=21, float32_exact=True)
    narrow = wide[wide["country"] != "BR"].copy()  # another vocabulary for country
    narrow.loc[narrow["channel"] == "atm", "channel"] = "ATM"  # and for channel
    champion = LightGBMTrainer(seed=2, num_boost_round=15).fit(wide, features=FEATURES, label="y")
    challenger = TorchTrainer(seed=3, epochs=2).fit(
        narrow,
        features=["country", "amount", "channel"],
        label="y",  # a subset, reordered
    )
    assert _vocabularies(champion)["country"] != _vocabularies(challenger)["country"]
    assert _vocabularies(champion)["channel"] != _vocabularies(challenger)["channel"]
    requests = pd.concat([_frame(200, seed=22, float32_exact=True), _unseen(wide)])
    requests.loc[requests.index[:5], "channel"] = "ATM"
    schema = _schema(wide)
    matrix = encode(requests, schema)  # what the client sends, to whichever version
    for model in (champion, challenger):
        decoder = WireDecoder.for_model(schema, model.preprocessing)
        decoded = decoder.decode(matrix)
        np.testing.assert_array_equal(model.predict_proba(decoded), model.predict_proba(requests))
    only_used = WireDecoder.for_model(schema, challenger.preprocessing).decode(matrix)
    assert list(only_used.columns) == ["amount", "hour", "is_foreign", "channel", "country"]
    assert only_used["channel"].iloc[0] == "ATM"  # the challenger's own vocabulary
    champion_view = WireDecoder.for_model(schema, champion.preprocessing).decode(matrix)
    assert champion_view["channel"].iloc[0] is None  # unknown to the champion


def test_zero_matrix_decodes_to_zeros_and_unknown_categories(
    models: dict[str, TrainedModel],
) -> None:
    schema = _schema(_frame(5))
    for model in models.values():
        decoded = WireDecoder.for_model(schema, model.preprocessing).decode(
            np.zeros((1, schema.width), dtype=np.float32)
        )
        assert decoded["amount"].iloc[0] == 0.0
        assert decoded["channel"].iloc[0] is None
        assert np.isfinite(model.predict_proba(decoded)).all()  # Triton's warmup sample


def _collision() -> tuple[str, str]:
    """Two short strings with the same code24 (birthday bound ~2**12 strings)."""
    seen: dict[int, str] = {}
    alphabet = string.ascii_lowercase + string.digits
    for length in range(1, 5):
        for letters in itertools.product(alphabet, repeat=length):
            value = "".join(letters)
            code = code24(value)
            if code in seen:
                return seen[code], value
            seen[code] = value
    raise AssertionError("no collision among short strings")


def test_a_vocabulary_with_a_code24_collision_is_refused() -> None:
    first, second = _collision()
    assert first != second
    assert code24(first) == code24(second)
    schema = WireSchema.of([("channel", "categorical")])
    with pytest.raises(SchemaError, match=f"{first!r} and {second!r}.*code24"):
        WireDecoder(schema, {"channel": ["web", first, second]})
    WireDecoder(schema, {"channel": ["web", first, first]})  # a repeat is no collision


def test_decode_errors_are_named(models: dict[str, TrainedModel]) -> None:
    schema = _schema(_frame(5))
    decoder = WireDecoder.for_model(schema, models["lightgbm"].preprocessing)
    with pytest.raises(SchemaError, match=r"shape \[2, 3\].*\[n, 5\]"):
        decoder.decode(np.zeros((2, 3), dtype=np.float32))
    with pytest.raises(SchemaError, match=r"shape \[5\]"):
        decoder.decode(np.zeros(5, dtype=np.float32))
    with pytest.raises(SchemaError, match="dtype int64"):
        decoder.decode(np.zeros((1, 5), dtype=np.int64))
    bad = np.zeros((2, 5), dtype=np.float32)
    bad[1, 0] = np.inf
    with pytest.raises(DataError, match="'amount' \\(index 0\\) holds infinite"):
        decoder.decode(bad)
    for value in (-1.0, 0.5, float(CODE_LIMIT), np.inf):
        bad = np.zeros((1, 5), dtype=np.float32)
        bad[0, 3] = value
        with pytest.raises(DataError, match=r"'channel' \(index 3\) is categorical.*no code24"):
            decoder.check(bad)
    with pytest.raises(SchemaError, match="declares numeric"):
        WireDecoder(schema, {"amount": ["1"]})
    with pytest.raises(SchemaError, match="no column 'color'"):
        WireDecoder(schema, {"color": ["red"]})
    other = WireSchema.of([(c.name, "numeric") for c in schema.columns])
    with pytest.raises(SchemaError, match="'channel' is categorical but the wire"):
        WireDecoder.for_model(other, models["lightgbm"].preprocessing)
    narrow = WireSchema.of([("amount", "numeric")])
    with pytest.raises(SchemaError, match="no column 'hour'"):
        WireDecoder.for_model(narrow, models["lightgbm"].preprocessing)


def test_wire_schema_for_version_reads_the_snapshot_manifest(tmp_path: Any) -> None:
    from lockgate.lineage.hashing import sha256_bytes
    from lockgate.lineage.lock import CodeVersion, build_lock_record

    registry = LocalArtifactRegistry(root=str(tmp_path / "artifacts"))
    frame = _frame(200)
    frame_sha = "b" * 64
    registry.put_snapshot(
        frame_sha,
        b"parquet",
        {"features": FEATURES, "schema": {c: str(t) for c, t in frame.dtypes.items()}},
    )

    def store(features: list[str]) -> str:
        model = LightGBMTrainer(seed=1, num_boost_round=5).fit(frame, features=features, label="y")
        files = model.files()
        lock = build_lock_record(
            pipeline="fraud",
            code=CodeVersion("c0ffee", False, "test"),
            snapshot={"frame_sha256": frame_sha},
            trainer={"kind": "lightgbm"},
            features=features,
            label="y",
            split={},
            weights_file=model.weights_file,
            files={name: sha256_bytes(data) for name, data in files.items()},
            environment={},
        )
        registry.put_model_version("fraud", lock["version"], files, lock)
        return str(lock["version"])

    full, subset = store(FEATURES), store(["channel", "amount"])
    assert wire_schema_for_version(registry, "fraud", full) == _schema(frame)
    assert wire_schema_for_version(registry, "fraud", subset) == _schema(frame)  # same wire
    assert _schema(frame).columns[3] == WireColumn("channel", "categorical")
