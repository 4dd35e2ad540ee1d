"""The raw zone's manifest: one JSON line per vendor file stored, reused or restored, newest
last, in one log per partition file (``logs/manifest/raw/<table>/exchange=/symbol=/dt=.jsonl``) so
that reading a partition's entries costs the same in the first and the thousandth day of a
backfill (on S3: a LIST of that partition's records, not of the whole history). Logs written
before release 3 (``logs/manifest/raw.jsonl``, every file in one) are still read, never
written. Owns the names, the path it records for a file, and its one reader. Imports
``staging`` and ``markets`` only.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

from rlx_assets.markets import parse_market_key
from rlx_assets.staging import DataLayout, append_json_line, lake_relative_path, read_json_lines

LEGACY_MANIFEST_NAME = "raw.jsonl"  # before release 3: one log for every file (read only)


def vendor_file_path(table: str, market: str, day: dt.date) -> Path:
    """One table day of a market in the vendor's layout, relative to a lake or zone root."""
    exchange, symbol = parse_market_key(market)
    return lake_relative_path(table, exchange, symbol, day)


def manifest_path_of(table: str, market: str, day: dt.date) -> str:
    """The ``path`` the manifest records for the raw file (relative to the data root)."""
    return str(Path("staging", "raw", vendor_file_path(table, market, day)))


def manifest_log(layout: DataLayout, table: str, market: str, day: dt.date) -> Path:
    """The log of one raw file's manifest entries."""
    partition = vendor_file_path(table, market, day).parent
    return layout.manifest_dir / "raw" / partition.with_name(partition.name + ".jsonl")


def manifest_entries(layout: DataLayout, table: str, market: str, day: dt.date) -> list[dict]:
    """Every manifest entry of the raw file, oldest first."""
    path = manifest_path_of(table, market, day)
    legacy = read_json_lines(layout.manifest_dir / LEGACY_MANIFEST_NAME)
    return [e for e in legacy if e["path"] == path] + read_json_lines(
        manifest_log(layout, table, market, day)
    )


def manifest_entry(layout: DataLayout, table: str, market: str, day: dt.date) -> dict | None:
    """The latest manifest entry of the raw file: the checksum the gates hold it to."""
    entries = manifest_entries(layout, table, market, day)
    return entries[-1] if entries else None


def manifest_entry_of(
    layout: DataLayout, table: str, market: str, day: dt.date, sha256: str
) -> dict | None:
    """The latest manifest entry that recorded these exact bytes (their source version)."""
    matching = [e for e in manifest_entries(layout, table, market, day) if e["sha256"] == sha256]
    return matching[-1] if matching else None


def append_manifest_entry(
    layout: DataLayout, table: str, market: str, day: dt.date, entry: dict[str, Any]
) -> None:
    if entry["path"] != manifest_path_of(table, market, day):
        raise ValueError(f"manifest entry for {entry['path']} filed under {table} {market} {day}")
    append_json_line(manifest_log(layout, table, market, day), entry)
