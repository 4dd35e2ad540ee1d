"""Integrity gates over one vendor file: file, schema, quality, temporal, volume.

Each gate measures, compares with its thresholds and returns a `GateResult` carrying the
measurements, the thresholds that applied and example offending rows, so a failure explains
itself. A gate never raises: a column whose dtype drifted is a schema failure and is skipped
(and named) by the gates that would read it, and a gate that hits an unexpected error fails with
the error's text, so every file gets a report. The file is streamed (`scans.py`): memory does
not grow with its rows beyond 16 bytes a row of hashes. Pure code: polars and pyarrow only.
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
import pyarrow as pa
import pyarrow.parquet as pq

from rlx_assets.staging import sha256_file
from rlx_assets.validation.profiles import PROFILES, GateThresholds
from rlx_assets.validation.scans import (
    MAX_EXAMPLES,
    Examples,
    OrderScan,
    RowHashes,
    Silences,
    batch_rows_for,
    frames,
    rows_with_repeated_hashes,
)
from rlx_assets.vendor_schemas import BOOK_DEPTH, VENDOR_SCHEMAS, schema_mismatches

GATES = ("file_integrity", "schema", "quality", "temporal", "volume")
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
        return json_safe(
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
    # How the file's SHA-256 is taken: the data root's `sha256_of` reads it only if it changed
    # since it was last hashed (by the download, in flight).
    sha256_of: Callable[[Path], str] = sha256_file


def json_safe(value: Any) -> Any:
    """Values a JSON report and Dagster metadata can hold; anything else becomes its text."""
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)


def vendor_dtypes(table: str) -> dict[str, pl.DataType]:
    """The vendor's columns as polars reads them."""
    return dict(pl.from_arrow(VENDOR_SCHEMAS[table].empty_table()).schema)


def drifted_columns(table: str, columns: dict[str, pl.DataType]) -> dict[str, str]:
    """The vendor columns whose dtype drifted, with "found X, expected Y": the gates after the
    schema gate only read what they can trust."""
    expected = vendor_dtypes(table)
    return {
        name: f"found {dtype}, expected {expected[name]}"
        for name, dtype in columns.items()
        if name in expected and dtype != expected[name]
    }


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


def run_gates(spec: GateInput, batch_rows: int | None = None) -> list[GateResult]:
    """All five gates, always: a file that cannot be read fails every gate it stops with the
    reason, and an error inside one gate fails only that gate. The file is read once for all of
    them, in batches of ``batch_rows`` (default: ~64 MB of values), plus once more for the rows
    whose hash repeats."""
    integrity = guarded("file_integrity", lambda: file_integrity_gate(spec))
    try:
        schema = pq.read_schema(spec.path)
        rows = pq.read_metadata(spec.path).num_rows
    except Exception as error:  # noqa: BLE001 - any reader failure means the same to a user
        reason = f"file unreadable, gate not evaluated: {error}"
        return [integrity] + [GateResult(g, False, reason) for g in GATES[1:]]
    batch_rows = batch_rows or batch_rows_for(schema)
    try:
        scans, broken = scan_file(spec, schema, rows, batch_rows)
    except Exception as error:  # noqa: BLE001
        reason = f"file unreadable, gate not evaluated: {error}"
        schema_only = guarded("schema", lambda: schema_gate(spec.table, schema, None, rows))
        return [integrity, schema_only] + [GateResult(g, False, reason) for g in GATES[2:]]

    def evaluated(gate: str, evaluate: Callable[[Any], GateResult]) -> GateResult:
        def from_scan() -> GateResult:
            if gate in broken:
                raise broken[gate]
            return evaluate(scans[gate])

        return guarded(gate, from_scan)

    return [
        integrity,
        evaluated("schema", lambda nulls: schema_gate(spec.table, schema, nulls, rows)),
        evaluated("quality", lambda scan: quality_gate(scan, spec.thresholds, batch_rows)),
        evaluated("temporal", lambda scan: temporal_gate(scan, spec.thresholds)),
        guarded("volume", lambda: volume_gate(rows, spec.trailing_rows, spec.thresholds)),
    ]


def scan_file(
    spec: GateInput, schema: pa.Schema, rows: int, batch_rows: int
) -> tuple[dict[str, Any], dict[str, Exception]]:
    """One pass over the file feeding the schema, quality and temporal scans. A scan that raises
    is dropped and its error kept (that gate alone fails); a reader error raises."""
    columns = dict(pl.from_arrow(schema.empty_table()).schema)
    drifted = drifted_columns(spec.table, columns)
    makers = {
        "schema": lambda: CriticalNulls(spec.table, columns),
        "quality": lambda: QualityScan(spec.table, spec.path, columns, drifted, rows),
        "temporal": lambda: TemporalScan(spec, columns, drifted),
    }
    scans: dict[str, Any] = {}
    broken: dict[str, Exception] = {}
    for gate, make in makers.items():
        try:
            scans[gate] = make()
        except Exception as error:  # noqa: BLE001 - that gate fails with the error's text
            broken[gate] = error
    offset = 0
    for frame in frames(spec.path, batch_rows):
        for gate, scan in list(scans.items()):
            try:
                scan.feed(frame, offset)
            except Exception as error:  # noqa: BLE001
                broken[gate] = error
                del scans[gate]
        offset += frame.height
    if offset != rows:
        raise ValueError(f"{offset} rows read, the file's footer says {rows}")
    return scans, broken


def run_gates_safely(make_input: Callable[[], GateInput]) -> list[GateResult]:
    """`run_gates` on the input `make_input` builds; if even that fails, every gate fails with
    the error, so the caller can still write a report and quarantine the file."""
    try:
        return run_gates(make_input())
    except Exception as error:  # noqa: BLE001
        return gates_not_evaluated(f"{type(error).__name__}: {error}")


def file_integrity_gate(spec: GateInput) -> GateResult:
    size = spec.path.stat().st_size if spec.path.is_file() else None
    digest = spec.sha256_of(spec.path) if size is not None else None
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


class CriticalNulls:
    """Null counts of the table's critical columns."""

    def __init__(self, table: str, columns: dict[str, pl.DataType]) -> None:
        self.counts = {c: 0 for c in CRITICAL_COLUMNS[table] if c in columns}

    def feed(self, frame: pl.DataFrame, offset: int) -> None:
        for column in self.counts:
            self.counts[column] += frame[column].null_count()


def schema_gate(table: str, schema: Any, nulls: CriticalNulls | None, rows: int) -> GateResult:
    """Names, order and dtypes against the vendor's; a drifted dtype is reported as
    "table.column: dtype <found>, expected <vendor's>"."""
    mismatches = schema_mismatches(table, schema)
    all_null = [c for c, n in nulls.counts.items() if n == rows] if nulls else []
    if rows and all_null:
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


def quality_problems(table: str, readable: list[str]) -> dict[str, pl.Expr]:
    """Named row predicates that are true for offending rows of this table."""
    columns = set(readable)

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


def conflict_examples(problem: str, rows: pl.DataFrame, key: tuple[str, ...]) -> list[dict]:
    """One example per key (the first few keys), holding the rows that claim it."""
    first_keys = rows.select(key).unique(maintain_order=True).head(MAX_EXAMPLES)
    chosen = rows.join(first_keys, on=list(key), how="semi", nulls_equal=True)
    return [
        {"problem": problem, "rows": json_safe(group.head(MAX_EXAMPLES).to_dicts())}
        for _, group in chosen.group_by(key, maintain_order=True)
    ]


def conflicting_rows(numbered: pl.DataFrame, key: tuple[str, ...], content: tuple[str, ...]):
    """Rows (numbered) whose key repeats, and those of them whose key repeats on rows of
    different content."""
    repeated = numbered.filter(pl.len().over(key) > 1)
    differing = repeated.filter(pl.struct(content).n_unique().over(key) > 1)
    return repeated, differing.sort([*key, "row"])


class QualityScan:
    """Per-row checks counted batch by batch with their first offending rows, and one 64-bit
    hash per row: of the conflict key where the table has one (rows equal in every column share
    their key, so the same rows also find the whole-row duplicates), else of every column."""

    def __init__(
        self, table: str, path: Path, columns: dict[str, pl.DataType],
        drifted: dict[str, str], rows: int,
    ) -> None:  # fmt: skip
        self.table, self.path, self.drifted, self.rows = table, path, drifted, rows
        self.usable = [c for c in columns if c not in drifted]
        self.checks = quality_problems(table, self.usable)
        self.counts = dict.fromkeys(self.checks, 0)
        self.examples = {name: Examples() for name in self.checks}
        self.conflict = CONFLICT_KEYS.get(table)
        self.keyed = False  # conflicts evaluated (the key and content columns are readable)
        if self.conflict:
            _, key, content = self.conflict
            self.keyed = bool(rows) and set(key) | set(content) <= set(self.usable)
        self.hashes = RowHashes(rows, list(self.conflict[1]) if self.keyed else None)

    def feed(self, frame: pl.DataFrame, offset: int) -> None:
        self.hashes.feed(frame, offset)
        usable = frame.select(self.usable)
        if self.checks:
            sums = usable.select(expr.sum().alias(name) for name, expr in self.checks.items())
            for name, count in sums.row(0, named=True).items():
                if count:
                    self.counts[name] += int(count)
                    self.examples[name].feed(usable, offset, self.checks[name])

    def rows_to_compare(self, batch_rows: int) -> pl.DataFrame | None:
        """Every column of the rows whose hash repeats, numbered; None when none repeats."""
        return rows_with_repeated_hashes(self.path, batch_rows, self.hashes)


def quality_gate(scan: QualityScan, thresholds: GateThresholds, batch_rows: int) -> GateResult:
    table, rows = scan.table, scan.rows
    problems = skipped_problems(scan.drifted, quality_columns(table))
    same_hash = scan.rows_to_compare(batch_rows)
    # Whole-row duplicates compare every column, whatever its dtype.
    duplicates = 0
    if same_hash is not None:
        duplicates = same_hash.height - same_hash.drop("row").unique().height
    duplicate_fraction = duplicates / rows if rows else 0.0
    measured: dict[str, Any] = {
        **scan.counts,
        "duplicate_rows": duplicates,
        "duplicate_fraction": duplicate_fraction,
    }
    if scan.drifted:
        measured["skipped_columns"] = scan.drifted
    limits: dict[str, Any] = {"max_duplicate_fraction": thresholds.max_duplicate_fraction}
    problems += [f"{n} rows with {name.replace('_', ' ')}" for name, n in scan.counts.items() if n]
    if duplicate_fraction > thresholds.max_duplicate_fraction:
        problems.append(f"{duplicates} duplicate rows ({duplicate_fraction:.4%})")
    examples = []
    for name, found in scan.examples.items():
        examples += [{"problem": name, **row} for row in found.rows]
    if duplicate_fraction > thresholds.max_duplicate_fraction and same_hash is not None:
        duplicated = same_hash.filter(same_hash.drop("row").is_duplicated()).head(MAX_EXAMPLES)
        examples += [{"problem": "duplicate", **row} for row in duplicated.to_dicts()]
    conflict_examples_ = []
    if scan.conflict:
        name, key, content = scan.conflict
        limit = getattr(thresholds, f"max_{name}")
        limits[f"max_{name}"] = limit
        if scan.keyed:
            numbered = (
                same_hash.select("row", *scan.usable) if same_hash is not None else pl.DataFrame()
            )
            repeated, differing = (
                conflicting_rows(numbered, key, content) if numbered.height else (numbered,) * 2
            )
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
        json_safe(conflict_examples_ + examples[: 3 * MAX_EXAMPLES]),
    )


class TemporalScan:
    """Order of sequence numbers and timestamps across batches, rows outside the day, null
    timestamps, first/last timestamp and the longest silence."""

    def __init__(
        self, spec: GateInput, columns: dict[str, pl.DataType], drifted: dict[str, str]
    ) -> None:
        self.table, self.day, self.path, self.drifted = spec.table, spec.day, spec.path, drifted
        self.usable = [c for c in columns if c not in drifted]
        thresholds = spec.thresholds
        self.tolerance_s = (
            thresholds.max_trades_time_regression_s
            if spec.table == "trades"
            else thresholds.max_book_time_regression_s
        )
        self.sequence = None
        if "sequence_number" in self.usable:
            self.sequence = OrderScan("sequence_number", 0, "sequence_decrease")
        self.timed = "timestamp" in self.usable
        start = int(dt.datetime.combine(spec.day, dt.time(), tzinfo=dt.UTC).timestamp()) * 10**9
        self.outside = (pl.col("timestamp") < start) | (pl.col("timestamp") >= start + NS_PER_DAY)
        self.out_of_day, self.null_stamps = 0, 0
        self.outside_examples = Examples()
        self.time = OrderScan("timestamp", round(self.tolerance_s * 1e9), "time_regression")
        self.silence_limit_ns = round(coverage_silence_s(thresholds) * 1e9)
        self.silences = Silences(self.silence_limit_ns)

    def feed(self, frame: pl.DataFrame, offset: int) -> None:
        usable = frame.select(self.usable)
        if self.sequence is not None:
            self.sequence.feed(usable, offset)
        if not self.timed:
            return
        outside = int(usable.select(self.outside.sum()).item())
        if outside:
            self.out_of_day += outside
            self.outside_examples.feed(usable, offset, self.outside)
        self.null_stamps += usable["timestamp"].null_count()
        self.silences.feed(usable["timestamp"].drop_nulls())
        self.time.feed(usable, offset)


def temporal_gate(scan: TemporalScan, thresholds: GateThresholds) -> GateResult:
    tolerance_s = scan.tolerance_s
    limits = {
        "min_coverage": thresholds.min_coverage,
        "max_silence_s": thresholds.max_silence_s,
        "max_time_regression_s": tolerance_s,
        "max_time_regressions": thresholds.max_time_regressions,
        "max_sequence_decreases": thresholds.max_sequence_decreases,
    }
    problems = skipped_problems(scan.drifted, ("timestamp", "sequence_number"))
    measured: dict[str, Any] = {"skipped_columns": scan.drifted} if scan.drifted else {}
    examples: list[dict[str, Any]] = []
    if scan.sequence is not None:
        count = scan.sequence.count
        measured["sequence_decreases"] = count
        if count > thresholds.max_sequence_decreases:
            problems.append(
                f"sequence_number decreases {count} times (> {thresholds.max_sequence_decreases})"
            )
            examples += scan.sequence.example_rows()
    silences = (
        scan.silences
        if scan.silences.in_order
        else Silences.sorted_from(scan.path, scan.silence_limit_ns)
    )
    if not scan.timed or silences.first is None:
        if "timestamp" not in scan.drifted:
            problems.append("no timestamps to evaluate")
        return GateResult(
            "temporal", False, "; ".join(problems), measured, limits, json_safe(examples)
        )
    first, last, longest_ns = silences.first, silences.last, silences.longest_ns
    coverage = (last - first) / NS_PER_DAY
    regressions, largest_ns = scan.time.count, max(scan.time.largest, 0)
    measured |= {
        "rows_outside_day": scan.out_of_day,
        "null_timestamps": scan.null_stamps,
        "time_regressions": regressions,
        "largest_time_regression_s": largest_ns / 1e9,
        "first_timestamp": first,
        "last_timestamp": last,
        "coverage": coverage,
        "longest_silence_s": longest_ns / 1e9,
        "longest_silence_starts_at": _iso(silences.longest_at),
        "seconds_covered": seconds_covered(silences, scan.day, scan.silence_limit_ns),
    }
    day = scan.day
    if scan.out_of_day:
        problems.append(f"{scan.out_of_day} rows outside {day.isoformat()} UTC")
        examples += [{"problem": "outside_day", **r} for r in scan.outside_examples.rows]
    if scan.null_stamps:
        problems.append(f"{scan.null_stamps} rows without a timestamp")
    if regressions > thresholds.max_time_regressions:
        problems.append(
            f"vendor order broken: timestamp goes back more than {tolerance_s}s {regressions} "
            f"times (largest {largest_ns / 1e9:.3f}s; > {thresholds.max_time_regressions})"
        )
        examples += scan.time.example_rows()
    if coverage < thresholds.min_coverage:
        problems.append(f"covers {coverage:.2%} of the day (< {thresholds.min_coverage:.2%})")
    if longest_ns / 1e9 > thresholds.max_silence_s:
        problems.append(
            f"longest silence {longest_ns / 1e9:.1f}s from {_iso(silences.longest_at)} "
            f"(> {thresholds.max_silence_s}s)"
        )
    summary = "; ".join(problems) or (
        f"all rows in the day and in order; coverage {coverage:.2%}; "
        f"longest silence {longest_ns / 1e9:.1f}s"
    )
    return GateResult("temporal", not problems, summary, measured, limits, json_safe(examples))


def coverage_silence_s(thresholds: GateThresholds) -> float:
    """A silence longer than this takes its seconds off `seconds_covered`: the profile's
    max_silence_s, at most production's, so a tolerant profile (the sample's accepts any
    silence) never counts minutes of data as a whole day."""
    return min(thresholds.max_silence_s, PROFILES["production"].max_silence_s)


def seconds_covered(silences: Silences, day: dt.date, limit_ns: int) -> float:
    """Seconds of the UTC day outside every silence longer than `limit_ns`
    (`coverage_silence_s`); midnight to the first row and the last row to midnight are
    silences too."""
    start = int(dt.datetime.combine(day, dt.time(), tzinfo=dt.UTC).timestamp()) * 10**9
    edges = (max(0, silences.first - start), max(0, start + NS_PER_DAY - silences.last))
    silent = silences.long_total_ns + sum(gap for gap in edges if gap > limit_ns)
    return min(max(NS_PER_DAY - silent, 0), NS_PER_DAY) / 1e9


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
