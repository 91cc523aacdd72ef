"""IO managers for lockgate's assets and the user's frames: JSON and Parquet, never pickles.

lockgate's assets hand each other references (a snapshot hash, a model version), while the data
itself lives in the content-addressed artifact registry. :class:`JsonReferenceIOManager` stores
those references as JSON files under ``base_dir/<asset key path>.json``, written atomically.

:class:`ParquetFrameIOManager` (resource key ``lockgate_frames``) stores a user's DataFrame
asset, such as the label frame of ``LabelSource(asset=...)``, as Parquet under
``base_dir/frames/<asset key path>.parquet``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import dagster as dg

from lockgate._util.fs import atomic_write
from lockgate.errors import ArtifactNotFoundError

__all__ = ["JsonReferenceIOManager", "ParquetFrameIOManager"]


def _materialized(path: Path, context: dg.InputContext, how: str) -> Path:
    """``path`` when the asset's file exists; else :class:`ArtifactNotFoundError` (``how`` ends
    its message: how to materialize the asset)."""
    if not path.exists():
        raise ArtifactNotFoundError(
            f"asset {context.asset_key.to_user_string()} has not been materialized yet "
            f"(no {path}); materialize it first{how}"
        )
    return path


class JsonReferenceIOManager(dg.ConfigurableIOManager):
    """Stores each asset's output (a JSON-able reference) as one JSON file."""

    base_dir: str

    def _path(self, key: dg.AssetKey) -> Path:
        return Path(self.base_dir, *key.path).with_suffix(".json")

    def handle_output(self, context: dg.OutputContext, obj: Any) -> None:
        if obj is None:
            return
        path = self._path(context.asset_key)
        try:
            data = json.dumps(obj, sort_keys=True, indent=1, allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise TypeError(
                f"asset {context.asset_key.to_user_string()} returned {type(obj).__name__}, "
                f"which is not plain JSON ({exc}); lockgate assets return references (dicts of "
                "str/int/float) and keep data in the artifact registry"
            ) from exc
        atomic_write(path, data, durable=False, mode=0o600)

    def load_input(self, context: dg.InputContext) -> Any:
        path = _materialized(
            self._path(context.asset_key), context, ", e.g. run the pipeline's train job"
        )
        return json.loads(path.read_text())


class ParquetFrameIOManager(dg.ConfigurableIOManager):
    """Stores a pandas DataFrame asset as one Parquet file (atomically), loads it back."""

    base_dir: str
    subdir: str = "frames"

    def _path(self, key: dg.AssetKey) -> Path:
        return Path(self.base_dir, self.subdir, *key.path).with_suffix(".parquet")

    def handle_output(self, context: dg.OutputContext, obj: Any) -> None:
        import pandas as pd

        if not isinstance(obj, pd.DataFrame):
            raise TypeError(
                f"asset {context.asset_key.to_user_string()} returned {type(obj).__name__}, "
                "but io_manager_key='lockgate_frames' stores pandas DataFrames as Parquet. Fix: "
                "return a DataFrame, or use another IO manager"
            )
        path = self._path(context.asset_key)
        atomic_write(path, obj.to_parquet(None, index=False), durable=False, mode=0o600)
        context.add_output_metadata({"rows": len(obj), "path": dg.MetadataValue.path(str(path))})

    def load_input(self, context: dg.InputContext) -> Any:
        import pandas as pd

        path = _materialized(
            self._path(context.asset_key), context, " (the pipeline's train job does)"
        )
        return pd.read_parquet(path)
