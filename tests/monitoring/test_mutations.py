"""Fingerprints and diffs of a feature service on a real Feast store (file registry)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from lockgate import FeatureChangePolicy, mutations
from lockgate.errors import FeatureStoreError
from lockgate.features.store import FeastStore
from lockgate.monitoring import feast_registry
from pipelines.feature_repo import FRAUD_DEFINITIONS
from pipelines.fraud_data import FraudDataConfig, generate_fraud_data

TINY = FraudDataConfig(seed=3, n_customers=50, n_merchants=20, tx_per_day=60)
VIEWS = ["customer_profile", "customer_velocity", "merchant_risk", "transaction_features"]


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("tiny") / "data"
    generate_fraud_data(root, days=3, config=TINY)
    return root


@pytest.fixture
def feast(tmp_path: Path, tiny_data: Path) -> FeastStore:
    data = tmp_path / "data"
    shutil.copytree(tiny_data, data)
    store = FeastStore(
        repo_dir=str(tmp_path / "feast"), data_dir=str(data), definitions=FRAUD_DEFINITIONS
    )
    store.apply()
    return store


def fp(feast: FeastStore, service: str = "fraud_v1") -> dict[str, Any]:
    return mutations.fingerprint(
        registry_path=feast.registry_path,
        project=feast.project_name,
        feature_service=service,
        data_dir=feast.data_dir,
        labels_dataset="labels",
    )


def raw_apply(feast: FeastStore, objects: list[Any] | None = None) -> None:
    """Applies through Feast itself, which rewrites the registry even when nothing changed."""
    feast.store().apply(objects if objects is not None else feast.definition_objects())


def view(objects: list[Any], name: str) -> Any:
    return next(o for o in objects if getattr(o, "name", None) == name and hasattr(o, "ttl"))


def labels_file(feast: FeastStore) -> Path:
    return sorted((Path(feast.data_dir) / "labels").glob("*.parquet"))[0]


# ---- what a fingerprint holds


def test_fingerprint_covers_service_views_entities_sources_and_labels(feast: FeastStore) -> None:
    got = fp(feast)
    assert got["feature_service"] == "fraud_v1"
    assert sorted(got["views"]) == VIEWS
    assert sorted(got["entities"]) == ["customer", "merchant", "transaction"]
    assert list(got["sources"]) == [
        "customer_profile",
        "customer_velocity",
        "merchant_risk",
        "transactions",
    ]
    assert got["labels_dataset"] == "labels"
    assert got["labels"]["files"] == 3
    assert sorted(got["labels"]["detail"]) == [f"2024-01-0{d}.parquet" for d in (1, 2, 3)]
    assert all(s["files"] == 3 for s in got["sources"].values())
    assert all("folders" not in s and "missing" not in s for s in got["sources"].values())
    assert got["materialized"] == {}
    json.dumps(got)  # the fingerprint is a cursor: it must be JSON


def test_describe_says_what_was_checked(feast: FeastStore) -> None:
    text = mutations.describe(fp(feast), FeatureChangePolicy())
    assert text == (
        "checked 4 feature views, 15 source files in 5 folders, "
        "materializations: none yet (not a trigger)"
    )


# ---- what is not a change


def test_noop_apply_changes_registry_metadata_but_not_the_fingerprint(feast: FeastStore) -> None:
    before = fp(feast)
    stamp = feast.registry_path.stat().st_mtime_ns
    raw_apply(feast)
    raw_apply(feast)
    assert feast.registry_path.stat().st_mtime_ns != stamp  # Feast did rewrite the registry
    after = fp(feast)
    assert mutations.diff(before, after) == []
    assert mutations.digest(before) == mutations.digest(after)
    assert after == before


def test_unrelated_service_change_is_not_a_mutation_of_this_service(feast: FeastStore) -> None:
    objects = feast.definition_objects()
    service = next(o for o in objects if getattr(o, "name", None) == "fraud_v2")
    service.description = "changed"
    before = fp(feast)
    raw_apply(feast, objects)
    assert mutations.diff(before, fp(feast)) == []
    assert mutations.diff(fp(feast, "fraud_v2"), fp(feast, "fraud_v2")) == []


# ---- definitions


def test_view_definition_change_is_named(feast: FeastStore) -> None:
    before = fp(feast)
    objects = feast.definition_objects()
    view(objects, "customer_profile").ttl = timedelta(days=8)
    raw_apply(feast, objects)
    after = fp(feast)
    assert mutations.diff(before, after) == ["feature view customer_profile definition changed"]
    assert mutations.digest(before) != mutations.digest(after)


def test_service_and_entity_definition_changes_are_named(feast: FeastStore) -> None:
    before = fp(feast)
    objects = feast.definition_objects()
    next(o for o in objects if getattr(o, "name", None) == "fraud_v1").description = "v1 edited"
    next(o for o in objects if getattr(o, "name", None) == "merchant").description = "edited"
    raw_apply(feast, objects)
    assert mutations.diff(before, fp(feast)) == [
        "feature service fraud_v1 definition changed",
        "entity merchant definition changed",
    ]


def test_definition_changes_are_ignored_when_the_policy_does_not_watch_them(
    feast: FeastStore,
) -> None:
    policy = FeatureChangePolicy(definitions=False)
    before = fp(feast)
    objects = feast.definition_objects()
    view(objects, "merchant_risk").description = "edited"
    raw_apply(feast, objects)
    after = fp(feast)
    assert mutations.diff(before, after, policy) == []
    assert mutations.digest(before, policy) == mutations.digest(after, policy)
    assert mutations.diff(before, after) == ["feature view merchant_risk definition changed"]


# ---- source files


def test_a_new_day_is_one_new_file_per_source_and_labels(feast: FeastStore) -> None:
    before = fp(feast)
    generate_fraud_data(feast.data_dir, days=1, append=True)
    assert mutations.diff(before, fp(feast)) == [
        "customer_profile: 1 new file 2024-01-04.parquet",
        "customer_velocity: 1 new file 2024-01-04.parquet",
        "merchant_risk: 1 new file 2024-01-04.parquet",
        "transactions: 1 new file 2024-01-04.parquet",
        "labels: 1 new file 2024-01-04.parquet",
    ]


def test_grown_removed_and_renamed_files_are_named(feast: FeastStore) -> None:
    target = labels_file(feast)
    size = target.stat().st_size
    before = fp(feast)
    with open(target, "ab") as handle:
        handle.write(b"x" * 10)
    assert mutations.diff(before, fp(feast)) == [
        f"labels: {target.name} grew {size} -> {size + 10} bytes"
    ]
    before = fp(feast)
    tmp = target.with_suffix(".tmp")
    shutil.copyfile(target, tmp)
    os.replace(tmp, target)  # atomic rewrite: same name, same size, new inode
    assert mutations.diff(before, fp(feast)) == [
        f"labels: {target.name} replaced (same size, new inode: rewritten by rename)"
    ]
    before = fp(feast)
    target.unlink()
    assert mutations.diff(before, fp(feast)) == [f"labels: 1 file removed {target.name}"]


def test_an_in_place_rewrite_with_the_same_size_is_seen(feast: FeastStore) -> None:
    target = labels_file(feast)
    data = target.read_bytes()
    before = fp(feast)
    stat = target.stat()
    os.utime(target, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1))  # one nanosecond later
    assert target.read_bytes() == data
    assert mutations.diff(before, fp(feast)) == [
        f"labels: {target.name} rewritten in place (same size, new mtime)"
    ]


def test_two_changes_within_one_second_give_three_distinct_fingerprints(
    feast: FeastStore,
) -> None:
    target = labels_file(feast)
    first = fp(feast)
    with open(target, "ab") as handle:
        handle.write(b"a")
    second = fp(feast)
    with open(target, "ab") as handle:
        handle.write(b"b")
    third = fp(feast)
    mtimes = [f["labels"]["detail"][target.name][1] for f in (second, third)]
    assert 0 <= mtimes[1] - mtimes[0] < 1_000_000_000  # both writes within one second
    assert len({mutations.digest(f) for f in (first, second, third)}) == 3
    assert mutations.diff(second, third) == [
        f"labels: {target.name} grew {target.stat().st_size - 1} -> {target.stat().st_size} bytes"
    ]


def test_files_that_do_not_feed_the_source_are_ignored(feast: FeastStore) -> None:
    before = fp(feast)
    folder = Path(feast.data_dir) / "transactions"
    (folder / ".2024-01-09.parquet.tmp").write_bytes(b"partial")
    (folder / "README.txt").write_text("notes")
    assert mutations.diff(before, fp(feast)) == []


def test_a_vanished_source_folder_is_named(feast: FeastStore) -> None:
    before = fp(feast)
    shutil.rmtree(Path(feast.data_dir) / "merchant_risk")
    assert mutations.diff(before, fp(feast)) == [
        f"merchant_risk: {Path(feast.data_dir, 'merchant_risk').resolve()} is gone (had 3 files)"
    ]


def test_without_per_file_detail_diffs_use_counts_and_folders(
    feast: FeastStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(mutations, "DETAIL_FILES", 2)
    folder = Path(feast.data_dir) / "transactions"
    nested = folder / "2024" / "01"
    nested.mkdir(parents=True)
    for day in sorted(folder.glob("*.parquet")):
        day.rename(nested / day.name)
    (folder / "2024" / "02").mkdir()
    shutil.copyfile(nested / "2024-01-01.parquet", folder / "2024" / "02" / "2024-02-01.parquet")
    before = fp(feast)
    entry = before["sources"]["transactions"]
    assert "detail" not in entry
    assert entry["latest"] == "2024/02/2024-02-01.parquet"
    assert entry["folders"] == 2
    assert sorted(entry["by_folder"]) == ["2024/01", "2024/02"]
    shutil.copyfile(nested / "2024-01-01.parquet", nested / "2024-01-31.parquet")
    size = (nested / "2024-01-31.parquet").stat().st_size
    lines = mutations.diff(before, fp(feast))
    total = entry["bytes"]
    assert lines == [
        f"transactions: files changed in 1 folder 2024/01 (4 -> 5 files, {total} -> "
        f"{total + size} bytes; newest 2024/01/2024-01-31.parquet)"
    ]
    before = fp(feast)
    profile = Path(feast.data_dir) / "customer_profile"
    shutil.copyfile(profile / "2024-01-01.parquet", profile / "2024-01-04.parquet")
    old = before["sources"]["customer_profile"]
    grown = old["bytes"] + (profile / "2024-01-04.parquet").stat().st_size
    assert mutations.diff(before, fp(feast)) == [
        f"customer_profile: 1 new file (3 -> 4 files, {old['bytes']} -> {grown} bytes; "
        f"newest 2024-01-04.parquet)"
    ]


def test_cursor_stays_compact_without_detail(
    feast: FeastStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = Path(feast.data_dir) / "labels"
    source = labels_file(feast)
    for i in range(400):
        os.link(source, folder / f"copy-{i:04d}.parquet")
    with_detail = len(json.dumps(fp(feast)))
    monkeypatch.setattr(mutations, "DETAIL_FILES", 100)
    without = fp(feast)
    assert without["labels"]["files"] == 403
    assert "detail" not in without["labels"]
    assert len(json.dumps(without)) < 3000 < with_detail


# ---- materializations


def test_materialization_moves_only_count_when_the_policy_watches_them(feast: FeastStore) -> None:
    before = fp(feast)
    feast.materialize(datetime(2024, 1, 3, tzinfo=UTC), feature_views=["merchant_risk"])
    after = fp(feast)
    assert mutations.diff(before, after, FeatureChangePolicy()) == []
    assert mutations.diff(before, after, FeatureChangePolicy(materializations=True)) == [
        "materialization of merchant_risk moved to 2024-01-03T00:00:00+00:00 (was never)"
    ]
    assert after["materialized"] == {"merchant_risk": "2024-01-03T00:00:00+00:00"}


# ---- errors


def test_unknown_service_names_the_known_ones(feast: FeastStore) -> None:
    with pytest.raises(FeatureStoreError, match=r"'fraud_v9'.*\['fraud_v1', 'fraud_v2'\]"):
        fp(feast, "fraud_v9")


def test_missing_registry_is_file_not_found(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        mutations.fingerprint(
            registry_path=tmp_path / "registry.db",
            project="lockgate",
            feature_service="fraud_v1",
            data_dir=tmp_path,
        )


@pytest.mark.parametrize("content", [b"", b"\xff\xff\xff\xff not a registry"])
def test_corrupt_registry_names_the_path_and_the_fix(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "registry.db"
    path.write_bytes(content)
    with pytest.raises(FeatureStoreError, match=rf"{path}.*Fix: run the apply again"):
        mutations.read_registry(path)


def test_unlistable_source_names_the_path(feast: FeastStore) -> None:
    folder = Path(feast.data_dir) / "labels"
    (folder / "loop").symlink_to(folder)  # a folder that contains itself
    with pytest.raises(FeatureStoreError, match=f"source {folder} cannot be listed.*symlinks"):
        fp(feast)


def test_a_different_format_version_is_a_change() -> None:
    old = {"version": 0, "views": {}}
    assert mutations.diff(old, {"version": 1, "views": {}}) == [
        "fingerprint format changed (0 -> 1): everything counts as changed"
    ]


# ---- reading the registry without importing feast


def test_standalone_registry_class_parses_like_feasts_own(feast: FeastStore) -> None:
    data = feast.registry_path.read_bytes()
    standalone = feast_registry._standalone_registry_class().FromString(data)
    own = feast_registry._feast_registry_class().FromString(data)
    assert type(standalone) is not type(own)
    assert standalone.SerializeToString(deterministic=True) == own.SerializeToString(
        deterministic=True
    )
    kwargs: dict[str, Any] = dict(
        registry_path=feast.registry_path,
        project=feast.project_name,
        feature_service="fraud_v2",
        data_dir=feast.data_dir,
    )
    assert mutations.fingerprint(registry=standalone, **kwargs) == mutations.fingerprint(
        registry=own, **kwargs
    )


def test_fingerprinting_does_not_import_feast(feast: FeastStore) -> None:
    code = (
        "import sys\n"
        "from lockgate.monitoring.mutations import fingerprint\n"
        f"fp = fingerprint(registry_path={str(feast.registry_path)!r}, project='lockgate', "
        f"feature_service='fraud_v1', data_dir={feast.data_dir!r}, labels_dataset='labels')\n"
        "assert sorted(fp['views'])[0] == 'customer_profile'\n"
        "print('feast' in sys.modules)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    assert out.stdout.strip() == "False"
