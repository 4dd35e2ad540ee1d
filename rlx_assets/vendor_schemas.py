"""Crypto Lake's raw table schemas: the single source of truth for column names, order and dtypes.

These are the columns as they appear in the vendor's parquet files (before ``lakeapi`` renames
them). Files produced by ``rlx lake-from-capture`` are written with exactly these schemas, and the
integrity gates compare downloaded files against them.
"""

from __future__ import annotations

import pyarrow as pa

LAKE_TABLES: tuple[str, ...] = ("trades", "book", "book_delta_v2", "level_1")
BOOK_DEPTH = 20  # levels per side in the `book` table

_TIME_COLUMNS = [
    pa.field("timestamp", pa.int64()),  # exchange time, ns since epoch (UTC)
    pa.field("receipt_timestamp", pa.int64()),  # collector's receive time, ns
]


def _book_level_fields(side: str, depth: int) -> list[pa.Field]:
    fields = []
    for i in range(depth):
        fields.append(pa.field(f"{side}_{i}_price", pa.float64()))
        fields.append(pa.field(f"{side}_{i}_size", pa.float64()))
    return fields


VENDOR_SCHEMAS: dict[str, pa.Schema] = {
    "trades": pa.schema(
        [
            pa.field("side", pa.string()),  # taker side: "buy" | "sell"
            pa.field("amount", pa.float64()),
            pa.field("price", pa.float64()),
            pa.field("id", pa.int64()),
            *_TIME_COLUMNS,
        ]
    ),
    "book": pa.schema(
        [
            *_TIME_COLUMNS,
            pa.field("sequence_number", pa.int64()),
            *_book_level_fields("bid", BOOK_DEPTH),
            *_book_level_fields("ask", BOOK_DEPTH),
        ]
    ),
    "book_delta_v2": pa.schema(
        [
            *_TIME_COLUMNS,
            pa.field("sequence_number", pa.int64()),
            pa.field("side_is_bid", pa.bool_()),
            pa.field("price", pa.float64()),
            pa.field("size", pa.float64()),  # new absolute size of the level; 0 removes it
        ]
    ),
    "level_1": pa.schema(
        [
            *_TIME_COLUMNS,
            pa.field("sequence_number", pa.int64()),
            *_book_level_fields("bid", 1),
            *_book_level_fields("ask", 1),
        ]
    ),
}
assert tuple(VENDOR_SCHEMAS) == LAKE_TABLES


def schema_mismatches(table: str, schema: pa.Schema) -> list[str]:
    """Differences between ``schema`` and the vendor schema of ``table`` (names, order, dtypes),
    as human-readable lines; empty when they agree. Schema metadata is ignored."""
    expected = VENDOR_SCHEMAS[table]
    problems: list[str] = []
    got_names = list(schema.names)
    missing = [n for n in expected.names if n not in got_names]
    extra = [n for n in got_names if n not in expected.names]
    if missing:
        problems.append(f"{table}: missing columns {missing}")
    if extra:
        problems.append(f"{table}: unexpected columns {extra}")
    for field in expected:
        if field.name in got_names and schema.field(field.name).type != field.type:
            problems.append(
                f"{table}.{field.name}: dtype {schema.field(field.name).type}, "
                f"expected {field.type}"
            )
    common = [n for n in got_names if n in expected.names]
    if not missing and not extra and common != list(expected.names):
        problems.append(f"{table}: column order {common} differs from {list(expected.names)}")
    return problems
