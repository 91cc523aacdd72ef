"""The prediction log: every answered inference request, durable before its answer is sent.

:mod:`~lockgate.gateway.predlog.records` encodes and decodes one WAL record (CRC-checked binary
frames); :mod:`~lockgate.gateway.predlog.wal` is the write-ahead log with group commit
(:class:`PredictionLog`); :mod:`~lockgate.gateway.predlog.parquet` rolls closed segments into
Parquet parts per model and day and reads the log back (:func:`read_prediction_log`,
:func:`iter_prediction_log`).
"""

from lockgate.gateway.predlog.parquet import (
    LOG_ROW_GROUP_ROWS,
    iter_prediction_log,
    read_prediction_log,
)
from lockgate.gateway.predlog.records import prediction_log_schema
from lockgate.gateway.predlog.wal import Durability, PredictionLog

__all__ = [
    "LOG_ROW_GROUP_ROWS",
    "Durability",
    "PredictionLog",
    "iter_prediction_log",
    "prediction_log_schema",
    "read_prediction_log",
]
