"""Where a partition's reconstruction lives, and how a new one replaces the old atomically."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import shutil
from pathlib import Path
from typing import Any

from rlx_assets.staging import DataLayout, atomic_write_bytes, fetch

SUMMARY_NAME = "summary.json"
END_BOOK_NAME = "end_book.parquet"


def reconstruction_dir(layout: DataLayout, market: str, day: dt.date) -> Path:
    return layout.root / "reconstruction" / market / day.isoformat()


def previous_end_book(layout: DataLayout, market: str, day: dt.date) -> Path | None:
    """The end-of-day book of the previous date of the same market, if it was reconstructed."""
    path = reconstruction_dir(layout, market, day - dt.timedelta(days=1)) / END_BOOK_NAME
    return path if fetch(path) else None


def building_dir(layout: DataLayout, market: str, day: dt.date, run_id: str) -> Path:
    final = reconstruction_dir(layout, market, day)
    building = final.with_name(f".{final.name}.building-{run_id}")
    shutil.rmtree(building, ignore_errors=True)
    building.mkdir(parents=True)
    return building


def write_summary(directory: Path, summary: dict[str, Any]) -> Path:
    path = directory / SUMMARY_NAME
    atomic_write_bytes(path, (json.dumps(summary, indent=2, default=str) + "\n").encode())
    return path


def read_summary(layout: DataLayout, market: str, day: dt.date) -> dict[str, Any] | None:
    path = reconstruction_dir(layout, market, day) / SUMMARY_NAME
    return json.loads(path.read_text()) if fetch(path) else None


def result_as_dict(result: Any) -> dict[str, Any]:
    return dataclasses.asdict(result)
