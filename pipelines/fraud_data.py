"""A seeded generator of card transactions for a fraud model, written day by day as Parquet.

The world: customers (age, home country, account open date, credit limit, usual device, a latent
spending level, activity and travel habits) pay merchants (category, latent risk). Each day has
a few thousand transactions: amounts are lognormal per customer and merchant category, hours
follow a daily rhythm, a few are abroad or from a new device. Fraud comes from two mechanisms:

* a label model with interactions: abroad AND new device AND at night; an amount far above the
  customer's usual; young accounts (worse with a large amount); risky merchant categories and
  merchants; elderly customers on a new device (remote scams); a large share of the credit limit;
* account takeovers: a compromised card is first *tested* with a burst of tiny online payments,
  then emptied the next day with large payments abroad from a new device, so yesterday's
  velocity (``tx_count_1d``) spikes before the big fraud.

The base fraud rate is about 2 %. Labels arrive late: ``label_timestamp`` is 1 to
``max_label_delay_days`` days after the transaction.

Layout under ``data_dir`` (one file per day, ``YYYY-MM-DD.parquet``; timestamps are
``timestamp[us, tz=UTC]``; Feast ``FileSource(path=<folder>)`` reads each folder as one source):

* ``transactions/``: transaction_id, customer_id, merchant_id, event_timestamp, amount,
  tx_country, device_type, hour_of_day, is_foreign, is_new_device (one row per transaction).
* ``customer_profile/``: customer_id, event_timestamp (00:00 of the day), age, account_age_days,
  home_country, credit_limit (one row per customer whose account is open that day).
* ``customer_velocity/``: customer_id, event_timestamp (23:59:59.999999 of the day), tx_count_1d,
  amount_sum_1d, tx_count_7d, amount_mean_7d (0.0 without transactions), distinct_countries_7d:
  windows end with the day (transactions never fall on the last microsecond of a day, so a
  day's aggregates never join that day's transactions).
* ``merchant_risk/``: merchant_id, event_timestamp (end of day), merchant_category,
  merchant_fraud_rate_30d: the smoothed fraud rate over the last 30 days of transactions, using
  only labels whose ``label_timestamp`` is not after the row's timestamp.
* ``labels/``: transaction_id, customer_id, merchant_id, event_timestamp, is_fraud,
  label_timestamp: the entity rows of a training set (filter on ``label_timestamp`` to see only
  labels known at a given time).
* ``_generator.json``: the manifest (config and the drift knobs of every written day).

Determinism: a day's content depends only on the config (seed included), the day, and the drift
knobs of that day and the days before it, so writing 10 days at once gives byte-identical files
to writing 6 and appending 4 with the same knobs (with the same numpy and pyarrow versions:
numpy does not promise identical random streams across releases). Appending reads the last 30
days of ``transactions``/``labels`` back (velocity and merchant-rate windows) and rebuilds the
customers from the manifest. The first day has no earlier velocity or merchant rows to join
(a warm-up day); windows are truncated at ``start_date``.

Drift knobs apply to every day a call writes:

* ``covariate_drift`` (0..1): a marketing campaign brings new young customers (18-26, app
  users, very active) who join and transact from that day on; at 1.0 about 4 % of the base
  customer count joins per day. The label model is unchanged.
* ``concept_drift`` (0..1): the label's dependence on the features moves: fraud leaves gift
  cards, crypto and electronics for fuel, travel, pharmacy and restaurants, and the
  abroad-new-device pattern moves from night to daytime. The transactions themselves (every
  feature) are identical to those written without concept drift; only labels change (and
  ``merchant_fraud_rate_30d``, which is computed from labels).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, fields
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from lockgate import CorruptDataError, DataError, SpecError, read_parquet_file

__all__ = [
    "CATEGORIES",
    "COUNTRIES",
    "DEVICE_TYPES",
    "MANIFEST_NAME",
    "TABLES",
    "FraudDataConfig",
    "GenerationSummary",
    "day_file",
    "generate_fraud_data",
    "read_manifest",
]

MANIFEST_NAME = "_generator.json"
"""File name of the manifest written into ``data_dir``."""

TABLES = ("transactions", "customer_profile", "customer_velocity", "merchant_risk", "labels")
"""The sub-folders of ``data_dir``, one Parquet file per day in each."""

COUNTRIES = ("US", "CA", "GB", "DE", "FR", "ES", "IT", "NL", "MX", "BR", "IN", "JP")
"""ISO country codes used for home and transaction countries."""

DEVICE_TYPES = ("pos_terminal", "web_browser", "ios_app", "android_app")
"""Values of ``device_type``."""

# name, share of merchants, typical amount, label-model risk (logit), risk after concept drift
_CATEGORY_TABLE: tuple[tuple[str, float, float, float, float], ...] = (
    ("grocery", 0.20, 45.0, -0.8, -0.8),
    ("restaurant", 0.16, 32.0, -0.6, 0.8),
    ("fuel", 0.09, 48.0, -0.4, 1.8),
    ("pharmacy", 0.06, 28.0, -0.7, 1.4),
    ("utilities", 0.05, 85.0, -1.0, -1.0),
    ("retail", 0.14, 65.0, 0.0, -0.4),
    ("travel", 0.05, 380.0, 0.3, 1.4),
    ("electronics", 0.07, 240.0, 1.0, -0.8),
    ("online_gaming", 0.06, 22.0, 0.9, -0.8),
    ("gift_cards", 0.04, 90.0, 1.4, -0.6),
    ("jewelry", 0.02, 520.0, 0.8, -0.4),
    ("crypto", 0.03, 300.0, 1.3, -0.6),
)
CATEGORIES = tuple(row[0] for row in _CATEGORY_TABLE)
"""Merchant categories."""

_CAT_SHARE = np.array([r[1] for r in _CATEGORY_TABLE])
_CAT_LOG_SCALE = np.log([r[2] for r in _CATEGORY_TABLE])
_CAT_RISK = np.array([r[3] for r in _CATEGORY_TABLE])
_CAT_RISK_DRIFTED = np.array([r[4] for r in _CATEGORY_TABLE])
_CAT = {name: i for i, name in enumerate(CATEGORIES)}
# How much each age group (<30, 30-64, 65+) prefers a category, relative to its merchant share.
_CAT_PREF = np.ones((3, len(CATEGORIES)))
for _group, _prefs in (
    (0, {"online_gaming": 2.5, "crypto": 2.0, "electronics": 1.5, "restaurant": 1.3}),
    (0, {"pharmacy": 0.5, "utilities": 0.6}),
    (2, {"pharmacy": 2.5, "grocery": 1.3, "utilities": 1.5}),
    (2, {"online_gaming": 0.2, "crypto": 0.2, "electronics": 0.6}),
):
    for _name, _factor in _prefs.items():
        _CAT_PREF[_group, _CAT[_name]] = _factor
_CAT_CDF = np.cumsum(_CAT_PREF * _CAT_SHARE, axis=1)
_CAT_CDF /= _CAT_CDF[:, -1:]
_TESTING_CATS = np.array([_CAT["online_gaming"], _CAT["gift_cards"], _CAT["retail"]])
_CASHOUT_CATS = np.array([_CAT[c] for c in ("electronics", "jewelry", "gift_cards", "crypto")])

_HOME_WEIGHTS = np.array([0.55, 0.08, 0.08, 0.06, 0.05, 0.04, 0.03, 0.02, 0.04, 0.02, 0.02, 0.01])
_TRAVEL_WEIGHTS = np.array([0.15, 0.05, 0.12, 0.08, 0.14, 0.14, 0.12, 0.05, 0.10, 0.04, 0.04, 0.07])
_COUNTRY = {c: i for i, c in enumerate(COUNTRIES)}
# usual device by age group
_DEVICE_P = np.array([[0.15, 0.10, 0.40, 0.35], [0.35, 0.25, 0.20, 0.20], [0.60, 0.30, 0.05, 0.05]])
_HOUR_W = np.array(
    [10, 6, 4, 3, 3, 6, 15, 30, 45, 55, 60, 65, 72, 68, 62, 60, 62, 68, 70, 65, 55, 45, 35, 20],
    dtype=np.float64,
)
_HOUR_CDF = np.cumsum(_HOUR_W) / _HOUR_W.sum()
_WEEKDAY_FACTOR = np.array([0.95, 0.95, 0.97, 1.0, 1.08, 1.1, 0.95])
_WEEKDAY_FACTOR /= _WEEKDAY_FACTOR.mean()

_US_PER_HOUR = 3_600_000_000
_US_PER_DAY = 24 * _US_PER_HOUR
_EPOCH = date(1970, 1, 1)
_AMOUNT_SIGMA = 0.75
_VELOCITY_DAYS = 7
_MERCHANT_DAYS = 30
_PRIOR_RATE = 0.02
_PRIOR_WEIGHT = 20.0
_LOGIT_BASE = -5.3
_MANIFEST_FORMAT = 1

# independent random streams (SeedSequence entropy: seed, stream, day)
_S_MERCHANTS, _S_CUSTOMERS, _S_COHORT, _S_CAMPAIGN, _S_TX = 1, 2, 3, 4, 5
_S_COMPROMISE, _S_TESTING, _S_CASHOUT, _S_LABEL = 6, 7, 8, 9


@dataclass(frozen=True)
class FraudDataConfig:
    """Sizes and seed of the synthetic fraud world.

    Attributes:
        seed: Seed of every random draw.
        n_customers: Customers at the start (new ones join over time).
        n_merchants: Merchants (at least one per category).
        tx_per_day: Mean ordinary transactions per day for the starting customers (weekends
            a little busier; new customers add their own).
        start_date: The first day written.
        max_label_delay_days: Labels become known 1 to this many days after the transaction.
    """

    seed: int = 42
    n_customers: int = 3000
    n_merchants: int = 300
    tx_per_day: int = 4000
    start_date: date = date(2024, 1, 1)
    max_label_delay_days: int = 7

    def __post_init__(self) -> None:
        """Refuses sizes that cannot make a sensible world."""
        checks = (
            ("seed", self.seed, 0, "a non-negative int"),
            ("n_customers", self.n_customers, 10, "an int >= 10"),
            ("n_merchants", self.n_merchants, len(CATEGORIES), f"an int >= {len(CATEGORIES)}"),
            ("tx_per_day", self.tx_per_day, 1, "an int >= 1"),
            ("max_label_delay_days", self.max_label_delay_days, 1, "an int >= 1"),
        )
        for name, value, low, rule in checks:
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise SpecError(
                    f"FraudDataConfig.{name}={value!r} is invalid: it must be {rule}. "
                    f"Fix: pass {name}={low} or larger."
                )
        if not isinstance(self.start_date, date) or isinstance(self.start_date, datetime):
            raise SpecError(
                f"FraudDataConfig.start_date={self.start_date!r} is invalid: it must be a "
                f"datetime.date (not a datetime or string). Fix: pass e.g. date(2024, 1, 1)."
            )

    def to_json(self) -> dict[str, Any]:
        """Returns the config as a JSON-able dict (``start_date`` as ISO text)."""
        out = asdict(self)
        out["start_date"] = self.start_date.isoformat()
        return out

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> FraudDataConfig:
        """Builds a config from :meth:`to_json` output."""
        known = {f.name for f in fields(cls)}
        kwargs = {k: v for k, v in data.items() if k in known}
        kwargs["start_date"] = date.fromisoformat(str(kwargs["start_date"]))
        return cls(**kwargs)


@dataclass(frozen=True)
class GenerationSummary:
    """What one :func:`generate_fraud_data` call wrote.

    Attributes:
        data_dir: The data folder.
        days_written: The days this call wrote, in order.
        first_day: The first day in the folder.
        last_day: The last day in the folder.
        total_days: Days in the folder after this call.
        n_transactions: Transactions written by this call.
        n_fraud: Fraudulent transactions written by this call.
        n_customers: Customers with an open account on the last day.
        seconds: Wall-clock time of the call.
    """

    data_dir: Path
    days_written: tuple[date, ...]
    first_day: date
    last_day: date
    total_days: int
    n_transactions: int
    n_fraud: int
    n_customers: int
    seconds: float = field(compare=False)

    @property
    def fraud_rate(self) -> float:
        """Share of fraudulent transactions among those written by this call."""
        return self.n_fraud / self.n_transactions if self.n_transactions else 0.0

    def to_dict(self) -> dict[str, Any]:
        """Returns the summary as a JSON-able dict."""
        return {
            "data_dir": str(self.data_dir),
            "days_written": [d.isoformat() for d in self.days_written],
            "first_day": self.first_day.isoformat(),
            "last_day": self.last_day.isoformat(),
            "total_days": self.total_days,
            "n_transactions": self.n_transactions,
            "n_fraud": self.n_fraud,
            "fraud_rate": self.fraud_rate,
            "n_customers": self.n_customers,
            "seconds": self.seconds,
        }


def day_file(data_dir: str | Path, table: str, day: date) -> Path:
    """Returns the path of one table's file for one day.

    Args:
        data_dir: The data folder.
        table: One of :data:`TABLES`.
        day: The day.

    Returns:
        ``data_dir/table/YYYY-MM-DD.parquet``.
    """
    if table not in TABLES:
        raise SpecError(
            f"table={table!r} is unknown: it must be one of {list(TABLES)}. Fix: use one of them."
        )
    return Path(data_dir) / table / f"{day.isoformat()}.parquet"


def read_manifest(data_dir: str | Path) -> dict[str, Any] | None:
    """Reads the generator manifest of a data folder.

    Args:
        data_dir: The data folder.

    Returns:
        The manifest (``config``, ``days`` with one entry per written day), or None when the
        folder has none.

    Raises:
        CorruptDataError: The manifest exists but is not valid JSON of the expected shape.
    """
    path = Path(data_dir) / MANIFEST_NAME
    if not path.exists():
        return None
    try:
        data = json.loads(path.read_text())
        if not isinstance(data, dict) or not isinstance(data.get("days"), list):
            raise ValueError("no 'days' list")
        FraudDataConfig.from_json(data["config"])
    except (ValueError, KeyError, TypeError) as exc:
        raise CorruptDataError(
            f"Generator manifest {path} is unreadable ({exc}): it must be the JSON written by "
            f"generate_fraud_data. Fix: restore it, or regenerate the folder from scratch."
        ) from exc
    return data


def generate_fraud_data(
    data_dir: str | Path,
    *,
    days: int,
    config: FraudDataConfig | None = None,
    append: bool = False,
    covariate_drift: float = 0.0,
    concept_drift: float = 0.0,
    progress: Callable[[str], None] | None = None,
) -> GenerationSummary:
    """Writes ``days`` days of synthetic fraud data into ``data_dir`` (see the module docstring).

    Args:
        data_dir: The data folder; created when missing.
        days: How many days to write (> 0).
        config: Sizes and seed. None means the folder's stored config when appending to an
            existing folder, else ``FraudDataConfig()``.
        append: Add ``days`` days after the last day in the folder. Without it the folder must
            not hold generated data yet. Appending to a folder without data starts at
            ``config.start_date``.
        covariate_drift: Strength in [0, 1] of the young-customer campaign on the written days.
        concept_drift: Strength in [0, 1] of the label-model change on the written days.
        progress: Called with one line per written day.

    Returns:
        A :class:`GenerationSummary` of this call.

    Raises:
        SpecError: ``days`` or a drift knob is out of range, the folder already has data and
            ``append`` is False, or ``config`` differs from the folder's stored config.
        DataError: The folder holds data files but no manifest, or a needed day file is
            missing or does not match the manifest.
        CorruptDataError: The manifest or a needed earlier day file cannot be read.
    """
    started = time.perf_counter()
    _check_knobs(days=days, covariate_drift=covariate_drift, concept_drift=concept_drift)
    root = Path(data_dir)
    manifest = read_manifest(root)
    cfg = _resolve_config(root, manifest, config=config, append=append)
    history = list(manifest["days"]) if manifest else []
    world = _World(cfg, [(float(h["covariate_drift"])) for h in history])
    state = _load_state(root, cfg, history)
    written: list[date] = []
    n_tx = n_fraud = 0
    for _ in range(days):
        d = len(history)
        out = world.simulate_day(d, state, covariate_drift, concept_drift)
        day = cfg.start_date + timedelta(days=d)
        for table in TABLES:
            _write_atomic(out.tables[table], day_file(root, table, day))
        history.append(
            {
                "date": day.isoformat(),
                "covariate_drift": float(covariate_drift),
                "concept_drift": float(concept_drift),
                "transactions": out.n_tx,
                "fraud": out.n_fraud,
            }
        )
        _write_manifest(root, cfg, history)
        written.append(day)
        n_tx += out.n_tx
        n_fraud += out.n_fraud
        if progress is not None:
            progress(
                f"{day.isoformat()}: {out.n_tx:,} transactions, {out.n_fraud:,} fraud "
                f"({100.0 * out.n_fraud / max(out.n_tx, 1):.1f} %), {out.n_customers:,} customers"
            )
    return GenerationSummary(
        data_dir=root,
        days_written=tuple(written),
        first_day=cfg.start_date,
        last_day=written[-1],
        total_days=len(history),
        n_transactions=n_tx,
        n_fraud=n_fraud,
        n_customers=out.n_customers,
        seconds=time.perf_counter() - started,
    )


# --------------------------------------------------------------------------------------------
# input checks and the manifest


def _check_knobs(*, days: int, covariate_drift: float, concept_drift: float) -> None:
    if isinstance(days, bool) or not isinstance(days, int) or days <= 0:
        raise SpecError(
            f"days={days!r} is invalid: it must be a positive int (the number of days to "
            f"write). Fix: pass days=1 or more."
        )
    for name, value in (("covariate_drift", covariate_drift), ("concept_drift", concept_drift)):
        if not isinstance(value, int | float) or not (0.0 <= float(value) <= 1.0):
            raise SpecError(
                f"{name}={value!r} is invalid: it must be a number in [0, 1] (0 = no drift, "
                f"1 = full strength). Fix: pass e.g. {name}=0.5."
            )


def _resolve_config(
    root: Path, manifest: dict[str, Any] | None, *, config: FraudDataConfig | None, append: bool
) -> FraudDataConfig:
    if manifest is None:
        stray = [t for t in TABLES if any((root / t).glob("*.parquet"))]
        if stray:
            raise DataError(
                f"data_dir {root} holds Parquet files in {stray} but no {MANIFEST_NAME}: the "
                f"generator only writes into folders it manages. Fix: use an empty folder or "
                f"delete those files."
            )
        return config if config is not None else FraudDataConfig()
    stored = FraudDataConfig.from_json(manifest["config"])
    if not append:
        raise SpecError(
            f"data_dir {root} already holds {len(manifest['days'])} generated day(s) and "
            f"append=False: the generator never overwrites data. Fix: pass append=True to add "
            f"days after them, or use an empty folder."
        )
    if config is not None and config != stored:
        diffs = [
            f"{f.name}: stored {getattr(stored, f.name)!r}, requested {getattr(config, f.name)!r}"
            for f in fields(FraudDataConfig)
            if getattr(stored, f.name) != getattr(config, f.name)
        ]
        raise SpecError(
            f"config differs from the one data_dir {root} was generated with "
            f"({'; '.join(diffs)}): appended days must come from the same world. Fix: pass "
            f"config=None (use the stored one) or generate into a new folder."
        )
    return stored


def _write_manifest(root: Path, cfg: FraudDataConfig, history: list[dict[str, Any]]) -> None:
    body = {
        "generator": "pipelines.fraud_data",
        "format": _MANIFEST_FORMAT,
        "config": cfg.to_json(),
        "days": history,
    }
    tmp = root / f".{MANIFEST_NAME}.tmp"
    tmp.write_text(json.dumps(body, indent=1, sort_keys=True) + "\n")
    os.replace(tmp, root / MANIFEST_NAME)


def _write_atomic(table: pa.Table, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")  # not *.parquet: readers never see it
    pq.write_table(table, tmp)
    os.replace(tmp, path)


# --------------------------------------------------------------------------------------------
# the simulation


def _rng(seed: int, stream: int, day: int = 0) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([seed, stream, day]))


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _pick(cdf: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Inverse-CDF sampling: the index of the first cdf entry above each u."""
    return np.minimum(np.searchsorted(cdf, u, side="right"), len(cdf) - 1)


@dataclass
class _Customers:
    """Customer attributes as parallel arrays; customer_id == position + 1."""

    birth_day: np.ndarray  # day index of birth (relative to start_date)
    open_day: np.ndarray  # day index the account opened
    home: np.ndarray  # country code
    device: np.ndarray  # usual device code
    spend_mu: np.ndarray  # log-amount offset
    activity: np.ndarray  # relative transaction rate
    travel_p: np.ndarray  # probability a payment is abroad
    credit_limit: np.ndarray

    def __len__(self) -> int:
        return len(self.open_day)

    def extend(self, other: _Customers) -> None:
        for f in fields(self):
            setattr(self, f.name, np.concatenate([getattr(self, f.name), getattr(other, f.name)]))

    def age(self, day: int) -> np.ndarray:
        return np.floor((day - self.birth_day) / 365.25).astype(np.int64)


def _age_group(age: np.ndarray) -> np.ndarray:
    return (age >= 30).astype(np.int64) + (age >= 65).astype(np.int64)


def _draw_customers(
    rng: np.random.Generator,
    n: int,
    *,
    ages: np.ndarray,
    ref_day: int,
    open_day: np.ndarray,
    young: bool,
) -> _Customers:
    """Draws ``n`` customers whose ages (in years, fractional) are measured on ``ref_day``."""
    birth_day = ref_day - np.floor(ages * 365.25).astype(np.int64)
    group = _age_group(ages.astype(np.int64))
    device_cdf = np.cumsum(_DEVICE_P, axis=1)[group]
    device = np.minimum((rng.random(n)[:, None] >= device_cdf).sum(axis=1), len(DEVICE_TYPES) - 1)
    home = _pick(np.cumsum(_HOME_WEIGHTS) / _HOME_WEIGHTS.sum(), rng.random(n))
    spend_mu = rng.normal(0.0, 0.45, n) - (0.25 if young else 0.0)
    activity = rng.gamma(2.0, 0.5, n) * np.where(group == 0, 1.3, 1.0) * (1.8 if young else 1.0)
    traveller = rng.random(n) < 0.1
    travel_p = np.where(traveller, rng.beta(2, 12, n), rng.beta(1, 60, n))
    peak = np.exp(-(((ages - 50.0) / 25.0) ** 2))
    limit = np.exp(rng.normal(np.log(2500.0 + 7500.0 * peak), 0.5, n))
    limit = np.clip(np.round(limit / 100.0) * 100.0, 500.0, 50_000.0)
    if young:
        limit = np.minimum(limit, 3000.0)
    return _Customers(
        birth_day=birth_day.astype(np.int64),
        open_day=open_day.astype(np.int64),
        home=home.astype(np.int64),
        device=device.astype(np.int64),
        spend_mu=spend_mu,
        activity=activity,
        travel_p=travel_p,
        credit_limit=limit,
    )


def _base_ages(rng: np.random.Generator, n: int) -> np.ndarray:
    elderly = rng.random(n) < 0.12
    ages = np.where(elderly, rng.normal(76.0, 6.0, n), rng.normal(44.0, 14.0, n))
    return np.clip(ages, 18.0, 95.0)


@dataclass
class _State:
    """What a day needs from the days before it (last 30 days of facts)."""

    tx: dict[int, dict[str, np.ndarray]] = field(default_factory=dict)  # velocity inputs
    labels: dict[int, dict[str, np.ndarray]] = field(default_factory=dict)  # merchant-rate inputs


@dataclass
class _DayOutput:
    tables: dict[str, pa.Table]
    n_tx: int
    n_fraud: int
    n_customers: int


class _World:
    """The merchants and customers of one config, and the day-by-day simulation."""

    def __init__(self, cfg: FraudDataConfig, covariate_history: list[float]) -> None:
        self.cfg = cfg
        self._build_merchants()
        rng = _rng(cfg.seed, _S_CUSTOMERS)
        n = cfg.n_customers
        account_age = np.where(
            rng.random(n) < 0.06, rng.integers(0, 60, n), rng.integers(60, 15 * 365, n)
        )
        ages = _base_ages(rng, n)
        self.customers = _draw_customers(
            rng, n, ages=ages, ref_day=0, open_day=-account_age, young=False
        )
        self.base_activity = float(self.customers.activity.sum())
        self.cohort_days = 0
        for d, drift in enumerate(covariate_history):
            self.add_cohorts(d, drift)

    def _build_merchants(self) -> None:
        rng = _rng(self.cfg.seed, _S_MERCHANTS)
        m = self.cfg.n_merchants
        share = _CAT_SHARE / _CAT_SHARE.sum()
        rest = _pick(np.cumsum(share), rng.random(m - len(CATEGORIES)))
        self.m_cat = np.concatenate([np.arange(len(CATEGORIES)), rest]).astype(np.int64)
        self.m_latent = rng.normal(0.0, 0.5, m)
        popularity = rng.lognormal(0.0, 1.0, m)
        self.m_by_cat: list[tuple[np.ndarray, np.ndarray]] = []
        for c in range(len(CATEGORIES)):
            members = np.flatnonzero(self.m_cat == c)
            cdf = np.cumsum(popularity[members])
            self.m_by_cat.append((members, cdf / cdf[-1]))
        self.m_cat_names = np.array(CATEGORIES, dtype=object)[self.m_cat]

    def add_cohorts(self, day: int, covariate_drift: float) -> None:
        """Adds the customers who open an account on ``day`` (organic, plus the campaign)."""
        cfg = self.cfg
        rng = _rng(cfg.seed, _S_COHORT, day)
        n_org = int(rng.poisson(cfg.n_customers * 0.0008))
        ages = _base_ages(rng, n_org)
        self.customers.extend(
            _draw_customers(
                rng, n_org, ages=ages, ref_day=day, open_day=np.full(n_org, day), young=False
            )
        )
        n_camp = round(covariate_drift * cfg.n_customers * 0.04)
        if n_camp:
            rng = _rng(cfg.seed, _S_CAMPAIGN, day)
            ages = rng.uniform(18.0, 27.0, n_camp)
            self.customers.extend(
                _draw_customers(
                    rng, n_camp, ages=ages, ref_day=day, open_day=np.full(n_camp, day), young=True
                )
            )
        self.cohort_days = day + 1

    def compromised(self, day: int) -> np.ndarray:
        """Customers whose card is stolen on ``day`` (tested that day, emptied the next)."""
        cust = self.customers
        active = np.flatnonzero(cust.open_day <= day)
        age = cust.age(day)[active]
        young_account = (day - cust.open_day[active]) < 60
        p = 0.0007 * np.where(age >= 70, 2.5, 1.0) * np.where(young_account, 2.0, 1.0)
        u = _rng(self.cfg.seed, _S_COMPROMISE, day).random(len(active))
        return active[u < p]

    # ---- one day

    def simulate_day(
        self, day: int, state: _State, covariate_drift: float, concept_drift: float
    ) -> _DayOutput:
        if self.cohort_days <= day:
            self.add_cohorts(day, covariate_drift)
        rows = self._ordinary(day)
        testing = self._bursts(day, self.compromised(day), cashout=False)
        cashout = self._bursts(day, self.compromised(day - 1), cashout=True) if day else None
        parts = [rows, testing] + ([cashout] if cashout is not None else [])
        tx = {k: np.concatenate([p[k] for p in parts]) for k in rows}
        order = np.argsort(tx["t_us"], kind="stable")
        tx = {k: v[order] for k, v in tx.items()}
        self._label(day, tx, concept_drift)
        stamp = (self.cfg.start_date + timedelta(days=day)).strftime("%Y%m%d")
        tx["id"] = np.array([f"tx-{stamp}-{i:06d}" for i in range(len(order))], dtype=object)
        state.tx[day] = {k: tx[k] for k in ("cust", "amount", "country")}
        state.labels[day] = {k: tx[k] for k in ("merchant", "is_fraud", "label_us")}
        _forget(state, day)
        tables = {
            "transactions": self._transactions_table(tx),
            "labels": self._labels_table(tx),
            "customer_profile": self._profile_table(day),
            "customer_velocity": self._velocity_table(day, state),
            "merchant_risk": self._merchant_table(day, state),
        }
        return _DayOutput(
            tables=tables,
            n_tx=len(order),
            n_fraud=int(tx["is_fraud"].sum()),
            n_customers=int((self.customers.open_day <= day).sum()),
        )

    def _ordinary(self, day: int) -> dict[str, np.ndarray]:
        cfg, cust = self.cfg, self.customers
        rng = _rng(cfg.seed, _S_TX, day)
        active = np.flatnonzero(cust.open_day <= day)
        act_cdf = np.cumsum(cust.activity[active])
        weekday = (cfg.start_date + timedelta(days=day)).weekday()
        lam = cfg.tx_per_day * _WEEKDAY_FACTOR[weekday] * act_cdf[-1] / self.base_activity
        n = int(rng.poisson(lam))
        c = active[_pick(act_cdf / act_cdf[-1], rng.random(n))]
        group = _age_group(cust.age(day)[c])
        cat = (rng.random(n)[:, None] >= _CAT_CDF[group]).sum(axis=1)
        cat = np.minimum(cat, len(CATEGORIES) - 1)
        merchant = self._merchants(rng, cat)
        hour = _pick(_HOUR_CDF, rng.random(n))
        z = rng.normal(0.0, 1.0, n)
        amount = np.exp(_CAT_LOG_SCALE[cat] + cust.spend_mu[c] + _AMOUNT_SIGMA * z)
        foreign = rng.random(n) < cust.travel_p[c]
        new_device = rng.random(n) < np.where(group == 0, 0.05, 0.03)
        return self._finish(rng, day, c, merchant, hour, amount, foreign, new_device, kind=0)

    def _merchants(self, rng: np.random.Generator, cat: np.ndarray) -> np.ndarray:
        u = rng.random(len(cat))
        merchant = np.zeros(len(cat), dtype=np.int64)
        for c, (members, cdf) in enumerate(self.m_by_cat):
            mask = cat == c
            merchant[mask] = members[_pick(cdf, u[mask])]
        return merchant

    def _bursts(self, day: int, who: np.ndarray, *, cashout: bool) -> dict[str, np.ndarray]:
        cust = self.customers
        rng = _rng(self.cfg.seed, _S_CASHOUT if cashout else _S_TESTING, day)
        k = (2 if cashout else 4) + rng.poisson(2.0 if cashout else 6.0, len(who))
        c = np.repeat(who, k)
        n = len(c)
        cats = _CASHOUT_CATS if cashout else _TESTING_CATS
        cat = cats[rng.integers(0, len(cats), n)]
        merchant = self._merchants(rng, cat)
        if cashout:
            night = rng.random(n) < 0.4
            hour = np.where(night, rng.integers(0, 6, n), rng.integers(0, 24, n))
            base = _CAT_LOG_SCALE[cat] + cust.spend_mu[c] + 1.0
            amount = np.exp(base + 0.5 * rng.normal(0.0, 1.0, n))
            foreign = rng.random(n) < 0.6
            new_device = rng.random(n) < 0.85
        else:
            hour = rng.integers(0, 24, n)
            amount = rng.uniform(0.5, 5.0, n)
            foreign = rng.random(n) < 0.5
            new_device = rng.random(n) < 0.9
        kind = 2 if cashout else 1
        return self._finish(rng, day, c, merchant, hour, amount, foreign, new_device, kind=kind)

    def _finish(
        self,
        rng: np.random.Generator,
        day: int,
        c: np.ndarray,
        merchant: np.ndarray,
        hour: np.ndarray,
        amount: np.ndarray,
        foreign: np.ndarray,
        new_device: np.ndarray,
        *,
        kind: int,
    ) -> dict[str, np.ndarray]:
        """Draws time, country and device; returns the rows as arrays."""
        cust = self.customers
        n = len(c)
        t_us = hour.astype(np.int64) * _US_PER_HOUR + rng.integers(0, _US_PER_HOUR, n)
        t_us = np.minimum(t_us, _US_PER_DAY - 2)  # the day's last microsecond is for aggregates
        travel = _pick(np.cumsum(_TRAVEL_WEIGHTS) / _TRAVEL_WEIGHTS.sum(), rng.random(n))
        bump = 1 + rng.integers(0, len(COUNTRIES) - 1, n)
        travel = np.where(travel == cust.home[c], (travel + bump) % len(COUNTRIES), travel)
        other_device = rng.integers(0, len(DEVICE_TYPES), n)
        return {
            "cust": c.astype(np.int64),
            "merchant": merchant,
            "t_us": t_us + _day_us(self.cfg, day),
            "hour": hour.astype(np.int64),
            "amount": np.maximum(np.round(amount, 2), 0.5),
            "country": np.where(foreign, travel, cust.home[c]).astype(np.int64),
            "foreign": foreign.astype(np.int64),
            "device": np.where(new_device, other_device, cust.device[c]).astype(np.int64),
            "new_device": new_device.astype(np.int64),
            "kind": np.full(n, kind, dtype=np.int64),
        }

    def _label(self, day: int, tx: dict[str, np.ndarray], concept_drift: float) -> None:
        """Adds ``is_fraud`` and ``label_us`` to the day's rows."""
        cust, cd = self.customers, concept_drift
        c, m, hour = tx["cust"], tx["merchant"], tx["hour"]
        cat = self.m_cat[m]
        foreign, new_dev = tx["foreign"] == 1, tx["new_device"] == 1
        night, daytime = hour < 6, (hour >= 9) & (hour < 17)
        z = (np.log(tx["amount"]) - _CAT_LOG_SCALE[cat] - cust.spend_mu[c]) / _AMOUNT_SIGMA
        young_acct = (day - cust.open_day[c]) < 30
        logit = (
            _LOGIT_BASE
            + (1.0 - cd) * _CAT_RISK[cat]
            + cd * _CAT_RISK_DRIFTED[cat]
            + self.m_latent[m]
            + 0.5 * foreign
            + 0.9 * new_dev
            + (1.0 - cd) * (0.8 * night + 2.2 * (foreign & new_dev & night))
            + cd * (0.8 * daytime + 2.2 * (foreign & new_dev & daytime))
            + 0.9 * np.maximum(z - 1.0, 0.0)
            + 1.0 * young_acct
            + 0.8 * (young_acct & (z > 1.0))
            + 1.2 * ((cust.age(day)[c] >= 70) & new_dev)
            + 0.7 * (tx["amount"] / cust.credit_limit[c] > 0.25)
        )
        p = _sigmoid(logit)
        p = np.where(tx["kind"] == 1, np.maximum(p, 0.8), p)
        p = np.where(tx["kind"] == 2, np.maximum(p, 0.95), p)
        rng = _rng(self.cfg.seed, _S_LABEL, day)
        u = rng.random(len(p))
        max_delay = self.cfg.max_label_delay_days * _US_PER_DAY
        delay = rng.integers(_US_PER_DAY, max_delay + 1, len(p))
        tx["is_fraud"] = (u < p).astype(np.int64)
        tx["label_us"] = tx["t_us"] + delay

    # ---- tables

    def _transactions_table(self, tx: dict[str, np.ndarray]) -> pa.Table:
        return pa.table(
            {
                **_entity_columns(tx),
                "amount": pa.array(tx["amount"], pa.float64()),
                "tx_country": _strings(COUNTRIES, tx["country"]),
                "device_type": _strings(DEVICE_TYPES, tx["device"]),
                "hour_of_day": pa.array(tx["hour"], pa.int64()),
                "is_foreign": pa.array(tx["foreign"], pa.int64()),
                "is_new_device": pa.array(tx["new_device"], pa.int64()),
            }
        )

    def _labels_table(self, tx: dict[str, np.ndarray]) -> pa.Table:
        return pa.table(
            {
                **_entity_columns(tx),
                "is_fraud": pa.array(tx["is_fraud"], pa.int64()),
                "label_timestamp": _ts(tx["label_us"]),
            }
        )

    def _profile_table(self, day: int) -> pa.Table:
        cust = self.customers
        active = np.flatnonzero(cust.open_day <= day)
        return pa.table(
            {
                "customer_id": pa.array(active + 1, pa.int64()),
                "event_timestamp": _ts(np.full(len(active), _day_us(self.cfg, day))),
                "age": pa.array(cust.age(day)[active], pa.int64()),
                "account_age_days": pa.array(day - cust.open_day[active], pa.int64()),
                "home_country": _strings(COUNTRIES, cust.home[active]),
                "credit_limit": pa.array(cust.credit_limit[active], pa.float64()),
            }
        )

    def _velocity_table(self, day: int, state: _State) -> pa.Table:
        n = len(self.customers)
        active = np.flatnonzero(self.customers.open_day <= day)
        today = state.tx[day]
        count_1d = np.bincount(today["cust"], minlength=n)
        sum_1d = np.bincount(today["cust"], weights=today["amount"], minlength=n)
        week = [state.tx[d] for d in range(day - _VELOCITY_DAYS + 1, day + 1) if d in state.tx]
        cust = np.concatenate([w["cust"] for w in week])
        amount = np.concatenate([w["amount"] for w in week])
        count_7d = np.bincount(cust, minlength=n)
        sum_7d = np.bincount(cust, weights=amount, minlength=n)
        mean_7d = np.divide(sum_7d, count_7d, out=np.zeros(n), where=count_7d > 0)
        pairs = np.unique(cust * len(COUNTRIES) + np.concatenate([w["country"] for w in week]))
        countries = np.bincount(pairs // len(COUNTRIES), minlength=n)
        end = _day_us(self.cfg, day) + _US_PER_DAY - 1
        return pa.table(
            {
                "customer_id": pa.array(active + 1, pa.int64()),
                "event_timestamp": _ts(np.full(len(active), end)),
                "tx_count_1d": pa.array(count_1d[active], pa.int64()),
                "amount_sum_1d": pa.array(np.round(sum_1d[active], 2), pa.float64()),
                "tx_count_7d": pa.array(count_7d[active], pa.int64()),
                "amount_mean_7d": pa.array(np.round(mean_7d[active], 4), pa.float64()),
                "distinct_countries_7d": pa.array(countries[active], pa.int64()),
            }
        )

    def _merchant_table(self, day: int, state: _State) -> pa.Table:
        m = self.cfg.n_merchants
        end = _day_us(self.cfg, day) + _US_PER_DAY - 1
        window = [state.labels[d] for d in sorted(state.labels) if d > day - _MERCHANT_DAYS]
        merchant = np.concatenate([w["merchant"] for w in window])
        fraud = np.concatenate([w["is_fraud"] for w in window])
        known = np.concatenate([w["label_us"] for w in window]) <= end
        n_known = np.bincount(merchant[known], minlength=m)
        n_fraud = np.bincount(merchant[known], weights=fraud[known], minlength=m)
        rate = (n_fraud + _PRIOR_WEIGHT * _PRIOR_RATE) / (n_known + _PRIOR_WEIGHT)
        return pa.table(
            {
                "merchant_id": pa.array(np.arange(1, m + 1), pa.int64()),
                "event_timestamp": _ts(np.full(m, end)),
                "merchant_category": pa.array(self.m_cat_names, pa.string()),
                "merchant_fraud_rate_30d": pa.array(np.round(rate, 6), pa.float64()),
            }
        )


def _forget(state: _State, day: int) -> None:
    for d in [d for d in state.tx if d <= day - _VELOCITY_DAYS]:
        del state.tx[d]
    for d in [d for d in state.labels if d <= day - _MERCHANT_DAYS]:
        del state.labels[d]


def _day_us(cfg: FraudDataConfig, day: int) -> int:
    return ((cfg.start_date - _EPOCH).days + day) * _US_PER_DAY


def _ts(us: np.ndarray) -> pa.Array:
    return pa.array(np.asarray(us, dtype=np.int64), pa.timestamp("us", tz="UTC"))


def _entity_columns(tx: dict[str, np.ndarray]) -> dict[str, pa.Array]:
    """The entity columns of the transactions and labels tables (ids 1-based), in order."""
    return {
        "transaction_id": pa.array(tx["id"], pa.string()),
        "customer_id": pa.array(tx["cust"] + 1, pa.int64()),
        "merchant_id": pa.array(tx["merchant"] + 1, pa.int64()),
        "event_timestamp": _ts(tx["t_us"]),
    }


def _strings(values: tuple[str, ...], codes: np.ndarray) -> pa.Array:
    return pa.array(np.array(values, dtype=object)[codes], pa.string())


# --------------------------------------------------------------------------------------------
# resuming: rebuild the state of the last 30 days from the files


def _load_state(root: Path, cfg: FraudDataConfig, history: list[dict[str, Any]]) -> _State:
    """Reads what the next day needs (customers are rebuilt from the manifest, not from files)."""
    state = _State()
    n_days = len(history)
    for d in range(max(0, n_days - _MERCHANT_DAYS), n_days):
        day = cfg.start_date + timedelta(days=d)
        expected = int(history[d]["transactions"])
        labels = _read_day(root, "labels", day, ["merchant_id", "is_fraud", "label_timestamp"])
        _check_rows(root, "labels", day, labels, expected)
        state.labels[d] = {
            "merchant": labels.column("merchant_id").to_numpy() - 1,
            "is_fraud": labels.column("is_fraud").to_numpy(),
            "label_us": labels.column("label_timestamp").cast(pa.int64()).to_numpy(),
        }
        if d > n_days - 1 - _VELOCITY_DAYS:
            tx = _read_day(root, "transactions", day, ["customer_id", "amount", "tx_country"])
            _check_rows(root, "transactions", day, tx, expected)
            countries = tx.column("tx_country").to_pylist()
            state.tx[d] = {
                "cust": tx.column("customer_id").to_numpy() - 1,
                "amount": tx.column("amount").to_numpy(),
                "country": np.array([_COUNTRY[c] for c in countries], dtype=np.int64),
            }
    return state


def _read_day(root: Path, table: str, day: date, columns: list[str]) -> pa.Table:
    path = day_file(root, table, day)
    if not path.exists():
        raise DataError(
            f"{path} is missing but {MANIFEST_NAME} lists {day.isoformat()} as written: "
            f"appending needs the last {_MERCHANT_DAYS} days of data. Fix: restore the file or "
            f"regenerate the folder from scratch."
        )
    return read_parquet_file(path, columns=columns)


def _check_rows(root: Path, table: str, day: date, data: pa.Table, expected: int) -> None:
    if data.num_rows != expected:
        raise DataError(
            f"{day_file(root, table, day)} has {data.num_rows} rows but {MANIFEST_NAME} "
            f"recorded {expected}: files must not change after they are written. Fix: restore "
            f"the file or regenerate the folder from scratch."
        )
