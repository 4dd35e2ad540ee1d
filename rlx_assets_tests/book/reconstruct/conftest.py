"""The real sample partitions reconstructed once for the tests of ``book.reconstruct``."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from rlx_assets.book.reconstruct import (
    CHECKPOINTS_FILE,
    END_BOOK_FILE,
    SNAPSHOTS_1S_FILE,
    SNAPSHOTS_VENDOR_FILE,
    STREAM_FILE,
    ReconstructionResult,
    reconstruct_partition,
)
from rlx_assets.staging import lake_relative_path

SPOT = ("BINANCE", "BTC-USDT")
FUTURES = ("BINANCE_FUTURES", "BTC-USDT-PERP")
D8, D9 = dt.date(2024, 8, 8), dt.date(2024, 8, 9)
CHUNK = 60_000  # small windows: many merges, row groups and vendor-row hand-overs
OUTPUTS = (STREAM_FILE, SNAPSHOTS_VENDOR_FILE, SNAPSHOTS_1S_FILE, END_BOOK_FILE, CHECKPOINTS_FILE)


def partition(lake: Path, market: tuple[str, str], day: dt.date) -> dict[str, Path]:
    return {
        t: lake / lake_relative_path(t, market[0], market[1], day)
        for t in ("trades", "book_delta_v2", "book")
    }


def run(paths: dict[str, Path], out: Path, previous: Path | None = None, **kw):
    return reconstruct_partition(
        paths["trades"], paths["book_delta_v2"], paths["book"], out, previous,
        chunk_rows=kw.pop("chunk_rows", CHUNK), **kw,
    )  # fmt: skip


@dataclass
class Run:
    out: Path
    result: ReconstructionResult
    paths: dict[str, Path]

    def table(self, name: str) -> pa.Table:
        return pq.read_table(self.out / name)


@pytest.fixture(scope="package")
def runs(sample_lake, tmp_path_factory) -> dict[str, Run]:
    base = tmp_path_factory.mktemp("reconstruct")
    out: dict[str, Run] = {}
    for name, market, day, previous in (
        ("spot08", SPOT, D8, None),
        ("spot09", SPOT, D9, "spot08"),
        ("futures08", FUTURES, D8, None),
    ):
        paths = partition(sample_lake, market, day)
        prev = out[previous].out / END_BOOK_FILE if previous else None
        out[name] = Run(base / name, run(paths, base / name, prev), paths)
    return out
