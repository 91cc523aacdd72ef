"""Internal helpers shared by every subpackage: durable file writes, managed processes, Parquet reading.

Nothing here is public API; :func:`lockgate.read_parquet_dir` and :func:`lockgate.read_parquet_file`
are re-exported by the top-level package.
"""

__all__: list[str] = []
