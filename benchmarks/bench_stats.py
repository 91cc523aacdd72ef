"""Timings of lockgate.evaluation.stats on a synthetic scored set (default: 100k rows, 1000 replicates).

Prints the best and median wall time of each call over ``--repeats`` runs; records nothing.

Example:
    .venv/bin/python benchmarks/bench_stats.py --rows 100000 --n-boot 1000 --prevalence 0.02
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from collections.abc import Callable

import numpy as np

from lockgate.evaluation import stats
from lockgate.evaluation.bootstrap import bootstrap_models
from lockgate.evaluation.metric_checks import HIGHER_IS_BETTER


def _data(rows: int, prevalence: float, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = (rng.random(rows) < prevalence).astype(np.int64)
    y[0], y[1] = 1, 0
    challenger = 1.0 / (1.0 + np.exp(-(rng.normal(size=rows) + 2.0 * y - 3.0)))
    champion = 1.0 / (1.0 + np.exp(-(rng.normal(size=rows) + 1.8 * y - 3.0)))
    return y, challenger, champion


def _time(
    label: str, repeats: int, call: Callable[..., object], *args: object, **kw: object
) -> None:
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        call(*args, **kw)
        seconds.append(time.perf_counter() - start)
    print(
        f"{label:<44} best {min(seconds):8.3f} s   median {statistics.median(seconds):8.3f} s"
        f"   ({repeats} runs)"
    )


def main() -> None:
    """Parses the options and prints the timings."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--n-boot", type=int, default=1000)
    parser.add_argument("--prevalence", type=float, nargs="+", default=[0.02, 0.5])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    print(
        f"python {platform.python_version()}, numpy {np.__version__}, {platform.machine()}, "
        f"rows={args.rows:,}, n_boot={args.n_boot}"
    )
    for prevalence in args.prevalence:
        y, challenger, champion = _data(args.rows, prevalence, seed=0)
        print(f"-- prevalence {prevalence} ({int(y.sum()):,} positives)")
        boot = {"metric": "roc_auc", "n_boot": args.n_boot}
        _time(
            "bootstrap_ci(metric='roc_auc')",
            args.repeats,
            stats.bootstrap_ci,
            y,
            challenger,
            **boot,
        )
        _time(
            "paired_bootstrap(metric='roc_auc')",
            args.repeats,
            stats.paired_bootstrap,
            y,
            challenger,
            champion,
            **boot,
        )
        _time("delong_test", args.repeats, stats.delong_test, y, challenger, champion)
        # what an evaluation report needs: both models' intervals and the paired comparison
        # of every metric; one call per result vs one set of replicates for all of them
        metrics = list(HIGHER_IS_BETTER)
        _time(
            f"report, one call per result ({3 * len(metrics)} calls)",
            args.repeats,
            _one_by_one,
            y,
            challenger,
            champion,
            metrics,
            args.n_boot,
        )
        _time(
            f"report, bootstrap_models ({len(metrics)} metrics)",
            args.repeats,
            bootstrap_models,
            y,
            challenger,
            champion,
            metrics=metrics,
            n_boot=args.n_boot,
        )


def _one_by_one(
    y: np.ndarray, challenger: np.ndarray, champion: np.ndarray, metrics: list[str], n_boot: int
) -> None:
    for metric in metrics:
        stats.bootstrap_ci(y, challenger, metric=metric, n_boot=n_boot)
        stats.bootstrap_ci(y, champion, metric=metric, n_boot=n_boot)
        stats.paired_bootstrap(y, challenger, champion, metric=metric, n_boot=n_boot)


if __name__ == "__main__":
    main()
