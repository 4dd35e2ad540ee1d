"""The raw zone's manifest, ``staging/manifest/raw.jsonl``: one JSON line per vendor file
stored, reused or restored, newest last. Owns its name, the path it records for a file, and its
one reader. Imports ``staging`` and ``markets`` only.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

from rlx_assets.markets import parse_market_key
from rlx_assets.staging import DataLayout, append_json_line, lake_relative_path, read_json_lines

MANIFEST_NAME = "raw.jsonl"


def vendor_file_path(table: str, market: str, day: dt.date) -> Path:
    """One table day of a market in the vendor's layout, relative to a lake or zone root."""
    exchange, symbol = parse_market_key(market)
    return lake_relative_path(table, exchange, symbol, day)


def manifest_path_of(table: str, market: str, day: dt.date) -> str:
    """The ``path`` the manifest records for the raw file (relative to the data root)."""
    return str(Path("staging", "raw", vendor_file_path(table, market, day)))


def manifest_entries(layout: DataLayout, table: str, market: str, day: dt.date) -> list[dict]:
    """Every manifest entry of the raw file, oldest first."""
    path = manifest_path_of(table, market, day)
    return [e for e in read_json_lines(layout.manifest_dir / MANIFEST_NAME) if e["path"] == path]


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


def append_manifest_entry(layout: DataLayout, entry: dict[str, Any]) -> None:
    append_json_line(layout.manifest_dir / MANIFEST_NAME, entry)
