"""Rebuild a model version from its lock record and verify every file is bit-identical.

A rebuild is verified when the weights and every other file the lock record lists (preprocessing,
exports) hash as locked, and it produces no file the record lacks; any mismatch fails it. With
``restore=True`` a verified rebuild writes back the version's missing or damaged files.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lockgate.errors import ArtifactNotFoundError, ReproductionError
from lockgate.lineage.lock import environment_versions
from lockgate.lineage.project import code_version, lockgate_code
from lockgate.training import trainer_code_differences

if TYPE_CHECKING:
    from lockgate.lineage.registry import ArtifactRegistry

__all__ = ["ReproductionReport", "code_differences", "environment_differences", "reproduce"]


@dataclass
class ReproductionReport:
    """What a rebuild found: whether the weights hash matched, and what differs from the lock."""

    pipeline: str
    version: str
    expected_weights_sha256: str
    rebuilt_weights_sha256: str | None = None
    differences: list[str] = field(default_factory=list)
    file_mismatches: dict[str, tuple[str | None, str | None]] = field(default_factory=dict)
    restored: list[str] | None = None

    @property
    def verified(self) -> bool:
        """True when the rebuilt weights and every other file hash as locked."""
        return (
            self.rebuilt_weights_sha256 == self.expected_weights_sha256 and not self.file_mismatches
        )

    def render(self) -> str:
        """A human-readable summary."""
        lines = [f"model {self.pipeline}/{self.version}"]
        lines.append(f"  locked weights sha256:  {self.expected_weights_sha256}")
        lines.append(f"  rebuilt weights sha256: {self.rebuilt_weights_sha256}")
        for diff in self.differences:
            lines.append(f"  differs: {diff}")
        for name, (want, got) in sorted(self.file_mismatches.items()):
            locked = want[:12] if want else "(not in the lock record)"
            rebuilt = got[:12] if got else "(not rebuilt)"
            lines.append(f"  file {name} differs: locked {locked}, rebuilt {rebuilt}")
        if self.verified:
            lines.append(
                "VERIFIED: the rebuilt weights and every other file are bit-identical to the "
                "locked version"
            )
        else:
            what = sorted(self.file_mismatches)
            if self.rebuilt_weights_sha256 != self.expected_weights_sha256:
                what = ["the weights", *what]
            lines.append(
                f"NOT REPRODUCED: {', '.join(what)} differ; the differences above are the "
                "likely cause (check out the locked commit and install the locked versions)"
            )
        if self.restored is not None:
            if not self.verified:
                lines.append("nothing restored: only a verified rebuild is written back")
            elif self.restored:
                lines.append(f"restored into the registry: {', '.join(self.restored)}")
            else:
                lines.append("nothing to restore: every stored file matches its lock record")
        return "\n".join(lines)


def environment_differences(locked: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """Human-readable differences between two environment records (pure)."""
    diffs = []
    if locked.get("python") != current.get("python"):
        diffs.append(f"python {locked.get('python')} locked, {current.get('python')} now")
    old, new = locked.get("packages", {}), current.get("packages", {})
    for name in sorted(set(old) | set(new)):
        if old.get(name) != new.get(name):
            diffs.append(f"library {name} {old.get(name)} locked, {new.get(name)} now")
    return diffs


def code_differences(
    locked: dict[str, Any], now: dict[str, Any], locked_lockgate: dict[str, Any] | None
) -> list[str]:
    """What differs between the locked code and the code now: the project's, then lockgate's."""
    diffs = []
    if now["commit"] != locked["commit"]:
        where = locked.get("project_dir") or "the project"
        diffs.append(
            f"project code commit {locked['commit'][:12]} locked, {now['commit'][:12]} now "
            f"({where}); check out the locked commit to rebuild from the same code"
        )
    if now.get("dirty") and not locked.get("dirty"):
        diffs.append("project working tree has uncommitted changes now (clean when locked)")
    if locked_lockgate is not None:
        current = lockgate_code()
        if current["version"] != locked_lockgate.get("version"):
            diffs.append(
                f"lockgate {locked_lockgate.get('version')} locked, {current['version']} now"
            )
        old, new = locked_lockgate.get("commit"), current["commit"]
        if old is not None and new is not None and old != new:
            diffs.append(f"lockgate commit {old[:12]} locked, {new[:12]} now")
    return diffs


def reproduce(
    artifacts: ArtifactRegistry,
    pipeline: str,
    version: str,
    *,
    code_path: str | Path | None = None,
    restore: bool = False,
) -> ReproductionReport:
    """Rebuild ``pipeline``/``version`` from its lock record and stored snapshot.

    The user's code is compared with the locked commit of the project it was built from
    (``code_path``, default the project folder recorded in the lock record), and lockgate's own
    version and commit with the locked ones; each difference is reported by name. Every file
    the rebuild writes is compared with the lock record (see :attr:`ReproductionReport.verified`).

    With ``restore``, a verified rebuild writes the version's missing or damaged files back into
    the registry (:meth:`ArtifactRegistry.restore_model_files`); ``report.restored`` names them.

    Raises:
        ReproductionError: the rebuild cannot even start (the snapshot is gone or damaged).
    """
    from lockgate.lineage.steps import load_snapshot_frame, train_version

    record = artifacts.lock_record(pipeline, version)
    report = ReproductionReport(
        pipeline=pipeline,
        version=version,
        expected_weights_sha256=record["triad"]["weights_sha256"],
    )
    locked_code = record["code"]
    if code_path is None:
        code_path = locked_code.get("project_dir")
    now = code_version(code_path)
    report.differences += code_differences(locked_code, now.as_dict(), record.get("lockgate"))
    report.differences += environment_differences(record["environment"], environment_versions())
    report.differences += trainer_code_differences(record["trainer"])

    snapshot_sha = record["triad"]["data_snapshot_sha256"]
    try:
        frame = load_snapshot_frame(artifacts, snapshot_sha)
    except ArtifactNotFoundError as exc:
        raise ReproductionError(
            f"cannot rebuild {pipeline}/{version}: its data snapshot {snapshot_sha[:12]} is "
            f"missing ({exc}); restore the snapshot file into the registry"
        ) from exc
    lock, files, _ = train_version(
        pipeline=pipeline,
        snapshot=record["data"],
        frame=frame,
        trainer_config=record["trainer"],
        features=record["features"],
        label=record["label"],
        timestamp_column=record["split"]["timestamp_column"],
        holdout_fraction=record["split"]["holdout_fraction"],
        gold=record["split"].get("gold"),
        code_path=code_path,
        task=record.get("task", "binary"),
    )
    report.rebuilt_weights_sha256 = lock["triad"]["weights_sha256"]
    locked_files: dict[str, str] = record["artifact"]["files"]
    rebuilt_files: dict[str, str] = lock["artifact"]["files"]
    for name in sorted(set(locked_files) | set(rebuilt_files)):
        want, got = locked_files.get(name), rebuilt_files.get(name)
        if want != got:
            report.file_mismatches[name] = (want, got)
    if restore:
        report.restored = (
            artifacts.restore_model_files(pipeline, version, files) if report.verified else []
        )
    del files
    return report
