"""The prediction log's Parquet parts exported to a real S3 server (SeaweedFS) by a running
PredictionLog, verified and idempotent, and read back from ``s3://`` by the log's readers."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from lockgate._util.services import LocalS3
from lockgate.gateway.predlog import PredictionLog, iter_prediction_log, read_prediction_log
from lockgate.gateway.predlog.export import PredictionLogExport
from lockgate.lineage.hashing import sha256_bytes
from tests.gateway.test_prediction_log_stream import START, _append, _record


def _export(s3_server: LocalS3, bucket: str, **fields: str) -> PredictionLogExport:
    return PredictionLogExport(
        url=f"s3://{bucket}/predictions",
        endpoint_url=s3_server.endpoint_url,
        key=s3_server.access_key,
        secret=s3_server.secret_key,
        region="us-east-1",
        **fields,
    )


def _log(log_dir: Path, export: PredictionLogExport, groups: list[range]) -> None:
    """A gateway's log: each group appended, then rotated (rolled and exported); closed."""

    async def scenario() -> None:
        log = PredictionLog(log_dir, durability="flush", segment_max_age_s=3600.0, export=export)
        await log.start()
        try:
            for group in groups:
                await _append(log, [_record(i) for i in group])
                await log.rotate_now()
        finally:
            await log.close()

    asyncio.run(scenario())


def _rows(cells: pd.Series) -> np.ndarray:
    return np.vstack([np.stack(c) for c in cells])


def test_rolled_parts_are_exported_verified_and_read_back_from_s3(
    tmp_path: Path, s3_server: LocalS3, s3_bucket: str
) -> None:
    export = _export(s3_server, s3_bucket)
    log_dir = tmp_path / "log"
    _log(log_dir, export, [range(0, 40), range(40, 80)])
    local = read_prediction_log(log_dir)
    assert len(local) == 80
    remote = read_prediction_log(export)
    pd.testing.assert_frame_equal(
        remote.drop(columns=["inputs", "outputs"]), local.drop(columns=["inputs", "outputs"])
    )
    np.testing.assert_array_equal(_rows(remote["inputs"]), _rows(local["inputs"]))
    # every local part is in the bucket with the same bytes and its sha256 as metadata
    fs = s3_server.filesystem()
    replica = (log_dir / "_export" / "replica").read_text().strip()
    parts = sorted(p for p in log_dir.glob("*/date=*/part-*.parquet"))
    assert len(parts) == 6  # two segments; two models; the second spans midnight UTC
    for part in parts:
        model, day, name = part.relative_to(log_dir).parts
        key = f"{s3_bucket}/predictions/{model}/{day}/replica={replica}/{name}"
        assert fs.cat_file(key) == part.read_bytes()
        assert fs.metadata(key)["sha256"] == sha256_bytes(part.read_bytes())
        record = json.loads(
            (export.records_dir(log_dir) / model / day / f"{name}.json").read_text()
        )
        assert record["sha256"] == sha256_bytes(part.read_bytes())
    # the readers' filters work on the exported log too
    since = dt.datetime.fromtimestamp((START + 60) / 1e6, tz=dt.UTC)
    batches = list(iter_prediction_log(export, "fraud", since=since, columns=["trace_id", "ts"]))
    got = sorted(t for b in batches for t in b.column("trace_id").to_pylist())
    assert got == sorted(f"t{i:04d}" for i in range(60, 80) if i % 2 == 0)


def test_export_is_idempotent_and_never_overwrites_other_bytes(
    tmp_path: Path, s3_server: LocalS3, s3_bucket: str
) -> None:
    export = _export(s3_server, s3_bucket, replica="gw-a")
    log_dir = tmp_path / "log"
    _log(log_dir, export, [range(0, 40)])
    again = export.export(log_dir)
    assert again["uploaded"] == []
    assert again["refused"] == {}
    assert again["skipped"] == 2
    # a crash after the upload, before the local record: the object is found, not re-sent
    records = sorted(export.records_dir(log_dir).glob("*/date=*/part-*.parquet.json"))
    records[0].unlink()
    found = export.export(log_dir)
    assert len(found["present"]) == 1
    assert found["uploaded"] == []
    # another gateway's log under its own replica id, in the same bucket
    _log(tmp_path / "other", _export(s3_server, s3_bucket, replica="gw-b"), [range(1000, 1040)])
    # someone else's bytes under a part's name: that part is refused, never overwritten
    fs = s3_server.filesystem()
    clash = PredictionLogExport(**(export.model_dump() | {"url": f"s3://{s3_bucket}/clash"}))
    model, day, name = sorted(log_dir.glob("*/date=*/part-*.parquet"))[0].relative_to(log_dir).parts
    squatted = f"{model}/{day}/replica=gw-a/{name}"
    fs.pipe_file(f"{s3_bucket}/clash/{squatted}", b"not this part")
    refused = clash.export(log_dir)
    assert list(refused["refused"]) == [squatted]
    assert "never overwritten" in refused["refused"][squatted]
    assert fs.cat_file(f"{s3_bucket}/clash/{squatted}") == b"not this part"
    assert len(refused["uploaded"]) == 1  # the other part: records are per destination URL
    # both gateways' logs read back from the bucket's URL (credentials from the AWS
    # variables), each row once
    with pytest.MonkeyPatch.context() as patch:
        for name, value in s3_server.environment().items():
            patch.setenv(name, value)
        remote = read_prediction_log(f"s3://{s3_bucket}/predictions")
    assert sorted(remote["trace_id"]) == sorted(
        [f"t{i:04d}" for i in range(0, 40)] + [f"t{i:04d}" for i in range(1000, 1040)]
    )


def test_a_failed_export_never_stops_the_log_and_the_next_roll_retries(
    tmp_path: Path, s3_server: LocalS3, s3_bucket: str
) -> None:
    log_dir = tmp_path / "log"
    unreachable = PredictionLogExport(
        url=f"s3://{s3_bucket}/predictions",
        endpoint_url="http://127.0.0.1:9",  # nothing listens there
        key=s3_server.access_key,
        secret=s3_server.secret_key,
        region="us-east-1",
        replica="gw-a",
    )
    _log(log_dir, unreachable, [range(0, 40)])
    assert len(read_prediction_log(log_dir)) == 40  # the log itself is whole
    assert not list(unreachable.records_dir(log_dir).glob("*/date=*/*.json"))
    export = _export(s3_server, s3_bucket, replica="gw-a")
    _log(log_dir, export, [range(40, 80)])  # the next gateway run's roll exports everything
    assert sorted(read_prediction_log(export)["trace_id"]) == [f"t{i:04d}" for i in range(80)]
