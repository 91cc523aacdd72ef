"""The main job's terminal output: progress and verdicts, real errors in full, no noise."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import dagster as dg

from pipelines.demo import progress_logger

ROOT = Path(__file__).resolve().parents[1]


@dg.asset
def report() -> int:
    return 1


@dg.asset_check(asset=report, blocking=True)
def gate_vs_champion() -> dg.AssetCheckResult:
    return dg.AssetCheckResult(
        passed=False,
        description="BLOCKED by gate_vs_champion: roc_auc change -0.0562 breaks change >= 0.0",
    )


@dg.asset(deps=[report])
def champion() -> None:
    pass


@dg.asset
def broken() -> None:
    raise ValueError("the weights file is missing: retrain the version")


@dg.resource
def store(_context: dg.InitResourceContext) -> None:
    raise ConnectionError("the artifact store at s3://models is unreachable: check the endpoint")


@dg.asset(required_resource_keys={"store"})
def needs_store() -> None:
    pass


def _run(
    *assets: dg.AssetsDefinition, checks: tuple = (), resources: dict | None = None
) -> tuple[bool, list[str]]:
    lines: list[str] = []
    job = dg.Definitions(
        assets=list(assets),
        resources=resources or {},
        asset_checks=list(checks),
        jobs=[dg.define_asset_job("train")],
    ).resolve_job_def("train")
    with dg.instance_for_test() as instance:
        result = job.with_logger_defs(
            {"progress": progress_logger(lines.append)}
        ).execute_in_process(
            instance=instance, raise_on_error=False, run_config={"loggers": {"progress": {}}}
        )
    return result.success, lines


def test_an_expected_gate_stop_prints_as_a_verdict_without_a_stack_trace() -> None:
    success, lines = _run(report, champion, checks=(gate_vs_champion,))
    text = "\n".join(lines)
    assert not success
    assert "report ..." in text
    assert "report done in" in text
    assert "check gate_vs_champion: BLOCKED by gate_vs_champion: roc_auc change -0.0562" in text
    assert "stopped by the gate, a verdict and not a crash (gate_vs_champion)" in text
    assert "champion not run: a step it depends on stopped" in text
    assert "Traceback" not in text
    assert "Stack Trace" not in text
    assert 'File "' not in text
    assert "DEBUG" not in text
    assert "RESOURCE_INIT" not in text


def test_a_real_error_still_prints_in_full() -> None:
    success, lines = _run(broken)
    text = "\n".join(lines)
    assert not success
    assert "broken FAILED:" in text
    assert "ValueError: the weights file is missing: retrain the version" in text
    assert 'File "' in text  # the stack, where the error was raised
    assert text.count("ValueError: the weights") == 1  # not repeated by the run failure


def test_no_duckdb_leak_noise_at_exit_after_a_feast_query(tmp_path: Path) -> None:
    """Feast's offline store leaves ibis' default DuckDB connection open; FeastStore closes it
    at exit in any process that queried (without that, nanobind prints ~100 "leaked" lines when
    the interpreter exits): the main job, a test run, a Dagster run worker."""
    script = textwrap.dedent(
        f"""
        import pandas as pd
        from pathlib import Path
        from lockgate import Environment
        from pipelines.feature_repo import fraud_feast_store
        from pipelines.fraud_data import FraudDataConfig, generate_fraud_data

        env = Environment.local(Path({str(tmp_path)!r}) / "home")
        config = FraudDataConfig(seed=11, n_customers=200, n_merchants=20, tx_per_day=300)
        generate_fraud_data(env.data_dir, days=2, config=config)
        store = fraud_feast_store(env)
        store.apply()
        tx = pd.concat(pd.read_parquet(p) for p in (env.data_dir / "transactions").glob("*.parquet"))
        keys = ["transaction_id", "customer_id", "merchant_id", "event_timestamp"]
        entities = tx[keys].head(50)
        frame = store.historical_features(feature_service="fraud_v1", entity_df=entities)
        print("rows", len(frame))
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "rows 50" in done.stdout
    assert "leaked" not in done.stderr, done.stderr[:2000]


def test_a_resource_that_fails_to_start_prints_its_error_in_full() -> None:
    success, lines = _run(needs_store, resources={"store": store})
    text = "\n".join(lines)
    assert not success
    assert "ConnectionError: the artifact store at s3://models is unreachable" in text
    assert 'File "' in text


@dg.multi_asset_check(specs=[dg.AssetCheckSpec("gate_vs_champion", asset=report, blocking=True)])
def gate_stops_with_a_verdict() -> Iterator[dg.AssetCheckResult]:
    """As lockgate.assets.gate's checks do: every result yielded, then the verdict raised."""
    yield dg.AssetCheckResult(
        asset_key=report.key,
        check_name="gate_vs_champion",
        passed=False,
        description="BLOCKED by gate_vs_champion: roc_auc change -0.0562 breaks change >= 0.0",
    )
    raise dg.Failure(
        description="BLOCKED by gate_vs_champion: roc_auc change -0.0562 breaks change >= 0.0",
        metadata={"decision": "blocked", "failed_rules": "gate_vs_champion"},
        allow_retries=False,
    )


def test_the_gates_own_stop_prints_as_a_verdict_without_a_stack_trace() -> None:
    success, lines = _run(report, champion, checks=(gate_stops_with_a_verdict,))
    text = "\n".join(lines)
    assert not success
    assert "check gate_vs_champion: BLOCKED by gate_vs_champion: roc_auc change -0.0562" in text
    assert "stopped by the gate, a verdict and not a crash (gate_vs_champion)" in text
    assert "champion not run: a step it depends on stopped" in text
    assert "Traceback" not in text
    assert "Stack Trace" not in text
    assert 'File "' not in text
