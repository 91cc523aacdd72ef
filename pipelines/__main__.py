"""The fraud example's own commands: ``python -m pipelines generate-data | demo |
production-loop``.

The example is a project on lockgate's public API like any team's: its data generator and its
main job (the quick start's ``scripts/demo.sh``) live here, not in the ``lockgate`` command.
Every other command (``lockgate versions``, ``reproduce``, ``drift``, ``serve``...) works on
the example as on any project.
"""

from __future__ import annotations

import os
import sys

import click

from lockgate import Environment, LockgateError

__all__ = ["cli", "main"]


def _say(message: str) -> None:
    click.echo(message, err=False)


def _env(home: str | None) -> Environment:
    return Environment.local(home) if home else Environment.from_env()


_home_option = click.option(
    "--home",
    type=click.Path(file_okay=False),
    default=None,
    help="lockgate home folder (default: $LOCKGATE_HOME or ./.lockgate).",
)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def cli() -> None:
    """The fraud example: synthetic card transactions, two pipelines, the closed loop."""


@cli.command("generate-data")
@_home_option
@click.option("--days", type=int, default=30, show_default=True, help="Days to write.")
@click.option("--append", is_flag=True, help="Append days after the last day written.")
@click.option("--seed", type=int, default=None, help="Generator seed (default: the config's).")
@click.option(
    "--covariate-drift",
    type=float,
    default=0.0,
    show_default=True,
    help="Strength of the customer-age shift in the new days (0 = none, 1 = strong).",
)
@click.option(
    "--concept-drift",
    type=float,
    default=0.0,
    show_default=True,
    help="Strength of the change in what makes a transaction fraud (0 = none).",
)
def generate_data(
    home: str | None,
    days: int,
    append: bool,
    seed: int | None,
    covariate_drift: float,
    concept_drift: float,
) -> None:
    """Write (or append) days of synthetic card transactions, day by day as Parquet."""
    from pipelines.fraud_data import FraudDataConfig, generate_fraud_data

    env = _env(home)
    config = None if seed is None else FraudDataConfig(seed=seed)
    summary = generate_fraud_data(
        env.data_dir,
        days=days,
        config=config,
        append=append,
        covariate_drift=covariate_drift,
        concept_drift=concept_drift,
        progress=_say,
    )
    _say(f"data written to {env.data_dir}: {summary}")


@cli.command("demo")
@_home_option
@click.option("--days", type=int, default=30, show_default=True, help="Days of data.")
@click.option(
    "--pipeline",
    "only",
    multiple=True,
    help="Run only these pipelines (default: all example pipelines).",
)
@click.option(
    "--keep-serving", is_flag=True, help="Leave tritonserver and the gateway running afterwards."
)
def demo_cmd(home: str | None, days: int, only: tuple[str, ...], keep_serving: bool) -> None:
    """The main job: data, Feast, Dagster runs, the gate, Triton, then the closed loop.

    The loop runs on a real dagster-daemon: drift is injected into live traffic, and the
    sensors detect it, retrain, gate, validate in Triton, canary to 100 % and promote.
    """
    from pipelines.demo import run_demo

    run_demo(_env(home), days=days, only=only, say=_say, keep_serving=keep_serving)


@cli.command("production-loop")
@click.option(
    "--home",
    type=click.Path(file_okay=False),
    default="/tmp/lockgate-production",
    show_default=True,
    help="Folder of the servers' files, the data and DAGSTER_HOME (emptied first).",
)
@click.option("--days", type=int, default=30, show_default=True, help="Days of data.")
def production_loop_cmd(home: str, days: int) -> None:
    """The closed loop with LOCKGATE_ENV=production, on real engines started here.

    PostgreSQL (Dagster, shared state, Feast registry), Redis (Feast online store), an S3
    server (artifacts, Triton's repository, the prediction log), tritonserver reading s3://
    and two gateway replicas; all stopped at the end.
    """
    from pipelines.production import run_production_loop

    loop = run_production_loop(home, say=_say, days=days)
    _say(
        f"closed loop on the production engines: {loop['outcome']}; champion "
        f"{loop['champion_before']} -> {loop['champion_after']}; {loop['requests']} requests "
        f"over {len(loop['gateways'])} gateway replicas, {loop['errors']} errors"
    )


def main(argv: list[str] | None = None) -> None:
    """Entry point of ``python -m pipelines``."""
    os.environ.setdefault("DAGSTER_DISABLE_TELEMETRY", "1")
    try:
        cli.main(args=argv, prog_name="python -m pipelines", standalone_mode=False)
    except click.exceptions.Abort:
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except LockgateError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)


if __name__ == "__main__":
    main()
