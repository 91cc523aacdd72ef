"""``[name, online_features]``: the feature service's views materialized into Feast's online store."""

from typing import Any

import dagster as dg

from lockgate.assets.declare import pipeline_asset
from lockgate.features.store import FeastStore
from lockgate.spec import ModelPipeline

__all__ = ["OnlineFeaturesConfig", "build_online_features"]


class OnlineFeaturesConfig(dg.Config):
    """Run configuration of the ``online_features`` asset.

    Attributes:
        end: ISO time the load ends at (tz-aware, or naive meaning UTC); empty: now. A time
            after now is refused (later incremental runs would load nothing).
    """

    end: str = ""


def build_online_features(spec: ModelPipeline) -> dg.AssetsDefinition:
    """The online-store materialization asset (its own job ``<name>_online_features``)."""

    @pipeline_asset(
        spec,
        "online_features",
        kinds={"feast"},
        description=(
            f"Feast's online store for feature service {spec.feature_service!r}: "
            "materialize_incremental of its feature views up to now (or the configured end)."
        ),
        stored=False,
    )
    def online_features(
        context: dg.AssetExecutionContext,
        config: OnlineFeaturesConfig,
        feast: dg.ResourceParam[FeastStore],
    ) -> dg.MaterializeResult[Any]:
        import datetime as dt

        from lockgate.errors import SpecError
        from lockgate.features.materialize import materialize_incremental

        end = None
        if config.end:
            try:
                end = dt.datetime.fromisoformat(config.end)
            except ValueError:
                raise SpecError(
                    f"online_features end={config.end!r} is not an ISO time; rule: e.g. "
                    "'2024-01-03T23:59:59+00:00' (naive means UTC); fix: correct it, or leave "
                    "it empty for now"
                ) from None
        store = feast.for_pipeline(spec)
        result = materialize_incremental(store, spec.feature_service, end=end)
        views = result["views"]
        context.log.info(
            f"{spec.name}: materialized {result['rows']} entities of {len(views)} views of "
            f"{spec.feature_service} into the {result['online_store']} online store up to "
            f"{result['end']}"
        )
        starts = [v["start"] for v in views.values() if v["start"]]
        return dg.MaterializeResult(
            metadata={
                "feature_service": spec.feature_service,
                "online_store": result["online_store"],
                "end": result["end"],
                "interval_start": min(starts) if starts else "none",
                "rows": dg.MetadataValue.int(int(result["rows"])),
                "feature_views": len(views),
                "views": dg.MetadataValue.table(
                    records=[
                        dg.TableRecord(
                            {
                                "view": name,
                                "start": str(v["start"]),
                                "end": str(v["end"]),
                                "source_rows": v["source_rows"],
                                "entities": v["entities"],
                            }
                        )
                        for name, v in views.items()
                    ],
                    schema=dg.TableSchema(
                        columns=[
                            dg.TableColumn("view"),
                            dg.TableColumn("start"),
                            dg.TableColumn("end"),
                            dg.TableColumn("source_rows", "int"),
                            dg.TableColumn("entities", "int"),
                        ]
                    ),
                ),
                "registry": store.registry_location,
            }
        )

    return online_features
