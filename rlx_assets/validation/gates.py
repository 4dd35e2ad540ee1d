"""Integrity gates over one vendor file: file, schema, quality, temporal, volume.

Each gate measures, compares with its thresholds and returns a `GateResult` carrying the
measurements, the thresholds that applied and example offending rows, so a failure explains
itself. A gate never raises: a column whose dtype drifted is a schema failure and is skipped
(and named) by the gates that would read it, and a gate that hits an unexpected error fails with
the error's text, so every file gets a report. Pure code: polars and pyarrow only.
"""

from __future__ import annotations

import datetime as dt
import math
import statistics
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow.parquet as pq

from rlx_assets.staging import sha256_file
from rlx_assets.validation.profiles import GateThresholds
from rlx_assets.vendor_schemas import BOOK_DEPTH, VENDOR_SCHEMAS, schema_mismatches

GATES = ("file_integrity", "schema", "quality", "temporal", "volume")
MAX_EXAMPLES = 5
NS_PER_DAY = 86_400 * 10**9

# Columns that must not be entirely null: without them a table is useless.
CRITICAL_COLUMNS = {
    "trades": ("side", "amount", "price", "id", "timestamp"),
    "book": ("timestamp", "sequence_number", "bid_0_price", "ask_0_price"),
    "book_delta_v2": ("timestamp", "sequence_number", "side_is_bid", "price", "size"),
}
# Rows with one key but different content: the same event told twice, two different ways.
CONFLICT_KEYS = {
    "trades": ("conflicting_trade_ids", ("id",), ("price", "amount", "side", "timestamp")),
    "book_delta_v2": (
        "conflicting_level_updates",
        ("sequence_number", "side_is_bid", "price"),
        ("size",),
    ),
}


@dataclass
class GateResult:
    gate: str
    passed: bool
    summary: str
    measured: dict[str, Any] = field(default_factory=dict)
    thresholds: dict[str, Any] = field(default_factory=dict)
    examples: list[dict[str, Any]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return _json_safe(
            {
                "gate": self.gate,
                "passed": self.passed,
                "summary": self.summary,
                "measured": self.measured,
                "thresholds": self.thresholds,
                "examples": self.examples,
            }
        )


@dataclass(frozen=True)
class GateInput:
    table: str
    path: Path
    day: dt.date
    expected_sha256: str | None
    expected_size: int | None
    thresholds: GateThresholds
    trailing_rows: tuple[int, ...] = ()  # rows of earlier certified days, most recent first


def examples_of(frame: pl.DataFrame, mask: pl.Expr) -> list[dict[str, Any]]:
    """Up to MAX_EXAMPLES offending rows (with their row number), JSON-ready."""
    rows = frame.with_row_index("row").filter(mask).head(MAX_EXAMPLES)
    return [{k: _json_safe(v) for k, v in row.items()} for row in rows.iter_rows(named=True)]


def _json_safe(value: Any) -> Any:
    """Values a JSON report and Dagster metadata can hold; anything else becomes its text."""
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)


def vendor_dtypes(table: str) -> dict[str, pl.DataType]:
    """The vendor's columns as polars reads them."""
    return dict(pl.from_arrow(VENDOR_SCHEMAS[table].empty_table()).schema)


def usable_columns(table: str, frame: pl.DataFrame) -> tuple[pl.DataFrame, dict[str, str]]:
    """`frame` without the vendor columns whose dtype drifted, and those columns with
    "found X, expected Y": the gates after the schema gate only read what they can trust."""
    expected = vendor_dtypes(table)
    drifted = {
        name: f"found {dtype}, expected {expected[name]}"
        for name, dtype in frame.schema.items()
        if name in expected and dtype != expected[name]
    }
    return frame.drop(list(drifted)), drifted


def skipped_problems(drifted: dict[str, str], needed: tuple[str, ...]) -> list[str]:
    """A gate that could not read a column it checks says so, and does not pass."""
    return [
        f"{name} not evaluated ({drifted[name]}; see the schema gate)"
        for name in needed
        if name in drifted
    ]


def gates_not_evaluated(reason: str) -> list[GateResult]:
    """Every gate failed with one reason: what a caller reports when the gates cannot run."""
    return [GateResult(g, False, f"gate not evaluated: {reason}") for g in GATES]


def guarded(gate: str, evaluate: Callable[[], GateResult]) -> GateResult:
    """Run one gate; an unexpected error fails that gate with the error's text."""
    try:
        return evaluate()
    except Exception as error:  # noqa: BLE001 - a crash would leave the file without a report
        return GateResult(
            gate, False, f"gate raised {type(error).__name__}: {error}", {"error": str(error)}
        )


def run_gates(spec: GateInput) -> list[GateResult]:
    """All five gates, always: a file that cannot be read fails every gate it stops with the
    reason, and an error inside one gate fails only that gate."""
    integrity = guarded("file_integrity", lambda: file_integrity_gate(spec))
    try:
        schema = pq.read_schema(spec.path)
    except Exception as error:  # noqa: BLE001 - any reader failure means the same to a user
        reason = f"file unreadable, gate not evaluated: {error}"
        return [integrity] + [GateResult(g, False, reason) for g in GATES[1:]]
    try:
        frame = pl.read_parquet(spec.path)
    except Exception as error:  # noqa: BLE001
        reason = f"file unreadable, gate not evaluated: {error}"
        schema_only = guarded("schema", lambda: schema_gate(spec.table, schema, None))
        return [integrity, schema_only] + [GateResult(g, False, reason) for g in GATES[2:]]
    return [
        integrity,
        guarded("schema", lambda: schema_gate(spec.table, schema, frame)),
        guarded("quality", lambda: quality_gate(spec.table, frame, spec.thresholds)),
        guarded("temporal", lambda: temporal_gate(spec.table, frame, spec.day, spec.thresholds)),
        guarded("volume", lambda: volume_gate(frame.height, spec.trailing_rows, spec.thresholds)),
    ]


def run_gates_safely(make_input: Callable[[], GateInput]) -> list[GateResult]:
    """`run_gates` on the input `make_input` builds; if even that fails, every gate fails with
    the error, so the caller can still write a report and quarantine the file."""
    try:
        return run_gates(make_input())
    except Exception as error:  # noqa: BLE001
        return gates_not_evaluated(f"{type(error).__name__}: {error}")


def file_integrity_gate(spec: GateInput) -> GateResult:
    size = spec.path.stat().st_size if spec.path.is_file() else None
    digest = sha256_file(spec.path) if size is not None else None
    measured: dict[str, Any] = {"sha256": digest, "size_bytes": size}
    expected = {"sha256": spec.expected_sha256, "size_bytes": spec.expected_size}
    problems = []
    if size is None:
        problems.append(f"{spec.path} is missing")
    elif spec.expected_sha256 is None:
        problems.append("no manifest entry to compare with")
    else:
        if digest != spec.expected_sha256:
            problems.append("SHA-256 differs from the manifest")
        if size != spec.expected_size:
            problems.append(f"size {size} differs from the manifest's {spec.expected_size}")
    if size is not None:
        try:
            metadata = pq.read_metadata(spec.path)
            measured["parquet_rows"] = metadata.num_rows
            measured["parquet_row_groups"] = metadata.num_row_groups
        except Exception as error:  # noqa: BLE001
            problems.append(f"not valid Parquet: {error}")
    summary = "; ".join(problems) or "checksum and size match the manifest; valid Parquet"
    return GateResult("file_integrity", not problems, summary, measured, expected)


def schema_gate(table: str, schema: Any, frame: pl.DataFrame | None) -> GateResult:
    """Names, order and dtypes against the vendor's; a drifted dtype is reported as
    "table.column: dtype <found>, expected <vendor's>"."""
    mismatches = schema_mismatches(table, schema)
    frame = frame if frame is not None else pl.DataFrame()
    all_null = [
        c
        for c in CRITICAL_COLUMNS[table]
        if c in frame.columns and frame[c].null_count() == frame.height
    ]
    if frame.height and all_null:
        mismatches.append(f"critical columns entirely null: {all_null}")
    expected = {f.name: str(f.type) for f in VENDOR_SCHEMAS[table]}
    return GateResult(
        "schema",
        not mismatches,
        "; ".join(mismatches) or f"exactly the {len(expected)} vendor columns with their types",
        {"columns": {f.name: str(f.type) for f in schema}, "problems": mismatches},
        {"expected_columns": expected, "critical_columns": list(CRITICAL_COLUMNS[table])},
    )


def _bad_number(column: str, allow_zero: bool) -> pl.Expr:
    value = pl.col(column)
    too_small = value < 0 if allow_zero else value <= 0
    return value.is_null() | value.is_nan() | value.is_infinite() | too_small


def quality_problems(table: str, frame: pl.DataFrame) -> dict[str, pl.Expr]:
    """Named row predicates that are true for offending rows of this table."""
    columns = set(frame.columns)

    def has(*names: str) -> bool:
        return set(names) <= columns

    checks: dict[str, pl.Expr] = {}
    # Each check only needs its own column: one drifted column does not hide the others.
    if table in ("trades", "book_delta_v2") and has("price"):
        checks["bad_price"] = _bad_number("price", allow_zero=False)
    if table == "trades" and has("amount"):
        checks["bad_amount"] = _bad_number("amount", allow_zero=False)
    if table == "trades" and has("side"):
        checks["bad_side"] = ~pl.col("side").cast(pl.String).is_in(["buy", "sell"]).fill_null(False)
    if table == "book_delta_v2" and has("size"):
        checks["bad_size"] = _bad_number("size", allow_zero=True)
    if table == "book" and has("bid_0_price", "ask_0_price"):
        levels = []
        for side in ("bid", "ask"):
            for i in range(BOOK_DEPTH):
                price, size = f"{side}_{i}_price", f"{side}_{i}_size"
                if not has(price, size):
                    continue
                absent = pl.col(price).is_nan() & pl.col(size).is_nan()
                present_ok = ~_bad_number(price, allow_zero=False) & ~_bad_number(
                    size, allow_zero=False
                )
                # Level 0 must exist; deeper levels may be absent (NaN price and size together).
                levels.append(~present_ok if i == 0 else ~(present_ok | absent.fill_null(False)))
        checks["bad_level"] = pl.any_horizontal(levels)
        checks["crossed_book"] = (pl.col("bid_0_price") >= pl.col("ask_0_price")).fill_null(False)
    return checks


def quality_columns(table: str) -> tuple[str, ...]:
    """The columns the quality gate reads."""
    if table == "book":
        return tuple(f.name for f in VENDOR_SCHEMAS["book"] if f.name.startswith(("bid_", "ask_")))
    return {
        "trades": ("side", "amount", "price", "id", "timestamp"),
        "book_delta_v2": ("sequence_number", "side_is_bid", "price", "size"),
    }.get(table, ())


def conflicting_rows(frame: pl.DataFrame, key: tuple[str, ...], content: tuple[str, ...]):
    """Rows (with their row number) whose key repeats on rows of different content."""
    if not set(key) | set(content) <= set(frame.columns) or frame.height == 0:
        return None
    repeated = frame.with_row_index("row").filter(pl.len().over(key) > 1)
    differing = repeated.filter(pl.struct(content).n_unique().over(key) > 1)
    return repeated, differing.sort([*key, "row"])


def conflict_examples(problem: str, rows: pl.DataFrame, key: tuple[str, ...]) -> list[dict]:
    """One example per key (the first few keys), holding the rows that claim it."""
    first_keys = rows.select(key).unique(maintain_order=True).head(MAX_EXAMPLES)
    chosen = rows.join(first_keys, on=list(key), how="semi", nulls_equal=True)
    return [
        {"problem": problem, "rows": _json_safe(group.head(MAX_EXAMPLES).to_dicts())}
        for _, group in chosen.group_by(key, maintain_order=True)
    ]


def quality_gate(table: str, frame: pl.DataFrame, thresholds: GateThresholds) -> GateResult:
    # Whole-row duplicates compare every column, whatever its dtype.
    duplicates = frame.height - frame.unique().height if frame.height else 0
    all_columns = frame
    frame, drifted = usable_columns(table, frame)
    problems = skipped_problems(drifted, quality_columns(table))
    checks = quality_problems(table, frame)
    counts = {name: int(frame.select(expr.sum()).item() or 0) for name, expr in checks.items()}
    duplicate_fraction = duplicates / frame.height if frame.height else 0.0
    measured: dict[str, Any] = {
        **counts,
        "duplicate_rows": duplicates,
        "duplicate_fraction": duplicate_fraction,
    }
    if drifted:
        measured["skipped_columns"] = drifted
    limits: dict[str, Any] = {"max_duplicate_fraction": thresholds.max_duplicate_fraction}
    problems += [f"{n} rows with {name.replace('_', ' ')}" for name, n in counts.items() if n]
    if duplicate_fraction > thresholds.max_duplicate_fraction:
        problems.append(f"{duplicates} duplicate rows ({duplicate_fraction:.4%})")
    examples = []
    for name, expr in checks.items():
        if counts[name]:
            examples += [{"problem": name, **row} for row in examples_of(frame, expr)]
    if duplicate_fraction > thresholds.max_duplicate_fraction:
        examples += [
            {"problem": "duplicate", **r}
            for r in examples_of(all_columns, all_columns.is_duplicated())
        ]
    conflict_examples_ = []
    if table in CONFLICT_KEYS:
        name, key, content = CONFLICT_KEYS[table]
        limit = getattr(thresholds, f"max_{name}")
        limits[f"max_{name}"] = limit
        found = conflicting_rows(frame, key, content)
        if found is not None:
            repeated, differing = found
            conflicts = differing.select(key).n_unique() if differing.height else 0
            measured[f"repeated_{'trade_ids' if table == 'trades' else 'level_keys'}"] = (
                repeated.select(key).n_unique() if repeated.height else 0
            )
            measured[name] = conflicts
            if conflicts > limit:
                what = "trade ids" if table == "trades" else "(sequence_number, side, price)"
                problems.append(
                    f"{conflicts} {what} on rows that differ in {'/'.join(content)} (> {limit})"
                )
                conflict_examples_ = conflict_examples(name.rstrip("s"), differing, key)
    return GateResult(
        "quality",
        not problems,
        "; ".join(problems)
        or "no NaN/inf/negative values, no crossed book, no duplicates, no conflicting ids",
        measured,
        limits,
        conflict_examples_ + examples[: 3 * MAX_EXAMPLES],
    )


def order_violations(
    frame: pl.DataFrame, column: str, tolerance: int, problem: str
) -> tuple[int, float, list[dict[str, Any]]]:
    """Rows whose `column` is more than `tolerance` below the previous row's: how many, the
    largest step back, and examples carrying the step and the previous value."""
    step_back = -pl.col(column).diff().fill_null(0)
    flagged = frame.with_columns(
        step_back.alias("step_back"), pl.col(column).shift(1).alias(f"previous_{column}")
    )
    mask = pl.col("step_back") > tolerance
    count = int(flagged.select(mask.sum()).item() or 0)
    largest = flagged["step_back"].max() if frame.height else 0
    examples = [{"problem": problem, **r} for r in examples_of(flagged, mask)] if count else []
    return count, max(float(largest or 0), 0.0), examples


def temporal_gate(
    table: str, frame: pl.DataFrame, day: dt.date, thresholds: GateThresholds
) -> GateResult:
    tolerance_s = (
        thresholds.max_trades_time_regression_s
        if table == "trades"
        else thresholds.max_book_time_regression_s
    )
    limits = {
        "min_coverage": thresholds.min_coverage,
        "max_silence_s": thresholds.max_silence_s,
        "max_time_regression_s": tolerance_s,
        "max_time_regressions": thresholds.max_time_regressions,
        "max_sequence_decreases": thresholds.max_sequence_decreases,
    }
    frame, drifted = usable_columns(table, frame)
    problems = skipped_problems(drifted, ("timestamp", "sequence_number"))
    measured: dict[str, Any] = {"skipped_columns": drifted} if drifted else {}
    examples: list[dict[str, Any]] = []
    if "sequence_number" in frame.columns:
        count, _, found = order_violations(frame, "sequence_number", 0, "sequence_decrease")
        measured["sequence_decreases"] = count
        if count > thresholds.max_sequence_decreases:
            problems.append(
                f"sequence_number decreases {count} times (> {thresholds.max_sequence_decreases})"
            )
            examples += found
    if "timestamp" not in frame.columns or frame["timestamp"].drop_nulls().len() == 0:
        if "timestamp" not in drifted:
            problems.append("no timestamps to evaluate")
        return GateResult("temporal", False, "; ".join(problems), measured, limits, examples)
    start = int(dt.datetime.combine(day, dt.time(), tzinfo=dt.UTC).timestamp()) * 10**9
    outside = (pl.col("timestamp") < start) | (pl.col("timestamp") >= start + NS_PER_DAY)
    out_of_day = int(frame.select(outside.sum()).item())
    null_stamps = frame["timestamp"].null_count()
    stamps = frame["timestamp"].drop_nulls().sort()
    gaps = stamps.diff().drop_nulls()
    longest_ns = int(gaps.max()) if gaps.len() else 0
    longest_at = int(stamps[int(gaps.arg_max()) if gaps.len() else 0])
    coverage = (int(stamps[-1]) - int(stamps[0])) / NS_PER_DAY
    regressions, largest_ns, regression_examples = order_violations(
        frame, "timestamp", round(tolerance_s * 1e9), "time_regression"
    )
    measured |= {
        "rows_outside_day": out_of_day,
        "null_timestamps": null_stamps,
        "time_regressions": regressions,
        "largest_time_regression_s": largest_ns / 1e9,
        "first_timestamp": int(stamps[0]),
        "last_timestamp": int(stamps[-1]),
        "coverage": coverage,
        "longest_silence_s": longest_ns / 1e9,
        "longest_silence_starts_at": _iso(longest_at),
    }
    if out_of_day:
        problems.append(f"{out_of_day} rows outside {day.isoformat()} UTC")
        examples += [{"problem": "outside_day", **r} for r in examples_of(frame, outside)]
    if null_stamps:
        problems.append(f"{null_stamps} rows without a timestamp")
    if regressions > thresholds.max_time_regressions:
        problems.append(
            f"vendor order broken: timestamp goes back more than {tolerance_s}s {regressions} "
            f"times (largest {largest_ns / 1e9:.3f}s; > {thresholds.max_time_regressions})"
        )
        examples += regression_examples
    if coverage < thresholds.min_coverage:
        problems.append(f"covers {coverage:.2%} of the day (< {thresholds.min_coverage:.2%})")
    if longest_ns / 1e9 > thresholds.max_silence_s:
        problems.append(
            f"longest silence {longest_ns / 1e9:.1f}s from {_iso(longest_at)} "
            f"(> {thresholds.max_silence_s}s)"
        )
    summary = "; ".join(problems) or (
        f"all rows in the day and in order; coverage {coverage:.2%}; "
        f"longest silence {longest_ns / 1e9:.1f}s"
    )
    return GateResult("temporal", not problems, summary, measured, limits, examples)


def volume_gate(
    rows: int, trailing_rows: tuple[int, ...], thresholds: GateThresholds
) -> GateResult:
    limits = {
        "min_rows": thresholds.min_rows,
        "max_rows": thresholds.max_rows,
        "trailing_days": thresholds.trailing_days,
        "min_trailing_fraction": thresholds.min_trailing_fraction,
    }
    history = trailing_rows[: thresholds.trailing_days]
    median = statistics.median(history) if history else None
    measured: dict[str, Any] = {
        "rows": rows,
        "trailing_days_used": len(history),
        "trailing_median_rows": median,
        "fraction_of_trailing_median": rows / median if median else None,
    }
    problems = []
    if not thresholds.min_rows <= rows <= thresholds.max_rows:
        problems.append(f"{rows} rows outside [{thresholds.min_rows}, {thresholds.max_rows}]")
    if median and rows < thresholds.min_trailing_fraction * median:
        problems.append(
            f"{rows} rows is {rows / median:.1%} of the trailing median {median:.0f} "
            f"(< {thresholds.min_trailing_fraction:.0%})"
        )
    summary = "; ".join(problems) or f"{rows} rows" + (
        f" ({rows / median:.0%} of the trailing median)" if median else " (no trailing history yet)"
    )
    return GateResult("volume", not problems, summary, measured, limits)


def _iso(ns: int) -> str:
    return dt.datetime.fromtimestamp(ns / 1e9, dt.UTC).isoformat(timespec="milliseconds")
