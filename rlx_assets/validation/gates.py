"""Integrity gates over one vendor file: file, schema, quality, temporal, volume.

Each gate measures, compares with its thresholds and returns a `GateResult` carrying the
measurements, the thresholds that applied and example offending rows, so a failure explains
itself. Pure code: polars and pyarrow only.
"""

from __future__ import annotations

import datetime as dt
import math
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow.parquet as pq

from rlx_assets.lake.schemas import BOOK_DEPTH, VENDOR_SCHEMAS, schema_mismatches
from rlx_assets.staging import sha256_file
from rlx_assets.validation.profiles import GateThresholds

GATES = ("file_integrity", "schema", "quality", "temporal", "volume")
MAX_EXAMPLES = 5
NS_PER_DAY = 86_400 * 10**9

# Columns that must not be entirely null: without them a table is useless.
CRITICAL_COLUMNS = {
    "trades": ("side", "amount", "price", "id", "timestamp"),
    "book": ("timestamp", "sequence_number", "bid_0_price", "ask_0_price"),
    "book_delta_v2": ("timestamp", "sequence_number", "side_is_bid", "price", "size"),
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
        return {
            "gate": self.gate,
            "passed": self.passed,
            "summary": self.summary,
            "measured": self.measured,
            "thresholds": self.thresholds,
            "examples": self.examples,
        }


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
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value


def run_gates(spec: GateInput) -> list[GateResult]:
    """All five gates; a file that cannot be read fails every gate with the reason."""
    integrity = file_integrity_gate(spec)
    try:
        frame = pl.read_parquet(spec.path)
        schema = pq.read_schema(spec.path)
    except Exception as error:  # noqa: BLE001 - any reader failure means the same to a user
        reason = f"file unreadable, gate not evaluated: {error}"
        return [integrity] + [GateResult(g, False, reason) for g in GATES[1:]]
    return [
        integrity,
        schema_gate(spec.table, schema, frame),
        quality_gate(spec.table, frame, spec.thresholds),
        temporal_gate(spec.table, frame, spec.day, spec.thresholds),
        volume_gate(frame.height, spec.trailing_rows, spec.thresholds),
    ]


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


def schema_gate(table: str, schema: Any, frame: pl.DataFrame) -> GateResult:
    mismatches = schema_mismatches(table, schema)
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
    if table == "trades" and has("price", "amount", "side"):
        checks["bad_price"] = _bad_number("price", allow_zero=False)
        checks["bad_amount"] = _bad_number("amount", allow_zero=False)
        checks["bad_side"] = ~pl.col("side").cast(pl.String).is_in(["buy", "sell"]).fill_null(False)
    elif table == "book_delta_v2" and has("price", "size"):
        checks["bad_price"] = _bad_number("price", allow_zero=False)
        checks["bad_size"] = _bad_number("size", allow_zero=True)
    elif table == "book" and has("bid_0_price", "ask_0_price"):
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


def quality_gate(table: str, frame: pl.DataFrame, thresholds: GateThresholds) -> GateResult:
    checks = quality_problems(table, frame)
    counts = {name: int(frame.select(expr.sum()).item() or 0) for name, expr in checks.items()}
    duplicates = frame.height - frame.unique().height if frame.height else 0
    duplicate_fraction = duplicates / frame.height if frame.height else 0.0
    measured = {**counts, "duplicate_rows": duplicates, "duplicate_fraction": duplicate_fraction}
    problems = [f"{n} rows with {name.replace('_', ' ')}" for name, n in counts.items() if n]
    if duplicate_fraction > thresholds.max_duplicate_fraction:
        problems.append(f"{duplicates} duplicate rows ({duplicate_fraction:.4%})")
    examples = []
    for name, expr in checks.items():
        if counts[name]:
            examples += [{"problem": name, **row} for row in examples_of(frame, expr)]
    if duplicate_fraction > thresholds.max_duplicate_fraction:
        examples += [
            {"problem": "duplicate", **r} for r in examples_of(frame, frame.is_duplicated())
        ]
    return GateResult(
        "quality",
        not problems,
        "; ".join(problems) or "no NaN/inf/negative values, no crossed book, no duplicates",
        measured,
        {"max_duplicate_fraction": thresholds.max_duplicate_fraction},
        examples[: 3 * MAX_EXAMPLES],
    )


def temporal_gate(
    table: str, frame: pl.DataFrame, day: dt.date, thresholds: GateThresholds
) -> GateResult:
    limits = {"min_coverage": thresholds.min_coverage, "max_silence_s": thresholds.max_silence_s}
    if "timestamp" not in frame.columns or frame.height == 0:
        return GateResult("temporal", False, "no timestamps to evaluate", {}, limits)
    start = int(dt.datetime.combine(day, dt.time(), tzinfo=dt.UTC).timestamp()) * 10**9
    outside = (pl.col("timestamp") < start) | (pl.col("timestamp") >= start + NS_PER_DAY)
    out_of_day = int(frame.select(outside.sum()).item())
    stamps = frame["timestamp"].sort()
    gaps = stamps.diff().drop_nulls()
    longest_ns = int(gaps.max()) if gaps.len() else 0
    longest_at = int(stamps[int(gaps.arg_max()) if gaps.len() else 0])
    coverage = (int(stamps[-1]) - int(stamps[0])) / NS_PER_DAY
    measured: dict[str, Any] = {
        "rows_outside_day": out_of_day,
        "first_timestamp": int(stamps[0]),
        "last_timestamp": int(stamps[-1]),
        "coverage": coverage,
        "longest_silence_s": longest_ns / 1e9,
        "longest_silence_starts_at": _iso(longest_at),
    }
    problems, examples = [], []
    if out_of_day:
        problems.append(f"{out_of_day} rows outside {day.isoformat()} UTC")
        examples += [{"problem": "outside_day", **r} for r in examples_of(frame, outside)]
    if table == "book_delta_v2" and "sequence_number" in frame.columns:
        decreasing = pl.col("sequence_number").diff().fill_null(0) < 0
        count = int(frame.select(decreasing.sum()).item())
        measured["sequence_decreases"] = count
        if count:
            problems.append(f"sequence_number decreases {count} times")
            examples += [
                {"problem": "sequence_decrease", **r} for r in examples_of(frame, decreasing)
            ]
    if coverage < thresholds.min_coverage:
        problems.append(f"covers {coverage:.2%} of the day (< {thresholds.min_coverage:.2%})")
    if longest_ns / 1e9 > thresholds.max_silence_s:
        problems.append(
            f"longest silence {longest_ns / 1e9:.1f}s from {_iso(longest_at)} "
            f"(> {thresholds.max_silence_s}s)"
        )
    summary = "; ".join(problems) or (
        f"all rows in the day; coverage {coverage:.2%}; longest silence {longest_ns / 1e9:.1f}s"
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
