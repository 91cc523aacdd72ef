"""Object-store URLs opened from the AWS SDK's environment follow that environment.

fsspec caches filesystems by their arguments. A URL opened with its endpoint and credentials
left to the SDK's chain (``AWS_ENDPOINT_URL``, ``AWS_ACCESS_KEY_ID``, ...) has the same arguments
whatever those variables say, so the cache handed back the filesystem of the first server the
process had talked to: a model folder went to that server, not to the one Triton read.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from lockgate._util.objectstore import ObjectStoreLocation, object_filesystem
from lockgate._util.services import LocalS3


def test_a_url_opened_from_the_environment_reaches_the_server_it_names_now(
    s3_server: LocalS3, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    s3_server.create_bucket("follow")
    for name, value in s3_server.environment().items():
        monkeypatch.setenv(name, value)
    first, root = object_filesystem("s3://follow/models")
    first.pipe_file(f"{root}/first.txt", b"1")

    with LocalS3(root=str(tmp_path / "second")) as second:
        second.create_bucket("follow")
        for name, value in second.environment().items():
            monkeypatch.setenv(name, value)
        fs, root = object_filesystem("s3://follow/models")
        fs.pipe_file(f"{root}/second.txt", b"2")
        location = ObjectStoreLocation(url="s3://follow/models")
        other, other_root = location.filesystem()
        assert other.cat_file(f"{other_root}/second.txt") == b"2"

        on_second = second.filesystem().ls("follow/models")
    on_first = s3_server.filesystem().ls("follow/models")
    assert sorted(p.rsplit("/", 1)[-1] for p in on_second) == ["second.txt"]
    assert sorted(p.rsplit("/", 1)[-1] for p in on_first) == ["first.txt"]
