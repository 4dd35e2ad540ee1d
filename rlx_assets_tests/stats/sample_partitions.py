"""The three sample partitions (real Binance captures), their lake files and their real
reconstruction, shared by the stats and fidelity tests.

The golden lake of the sample days is the same converter output as the sample lake (the
bundled captures are the golden recording), so "golden files" are the sample lake's files.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from rlx_assets.book.reconstruct import reconstruct_partition
from rlx_assets.book.store import result_as_dict, write_summary
from rlx_assets.config import SAMPLE_CAPTURES_DIR
from rlx_assets.staging import lake_relative_path
from rlx_assets_tests.conftest import built_once_per_run

VENDOR_TABLES = ("trades", "book", "book_delta_v2")
GOLDEN_TABLES = ("trades", "book_delta_v2", "level_1")
SPOT_CAPTURES = ("spot_btcusdt_20240808.gz", "spot_btcusdt_20240809.gz")


@dataclass(frozen=True)
class Partition:
    exchange: str
    symbol: str
    day: dt.date
    captures: tuple[str, ...]

    @property
    def market(self) -> str:
        return f"{self.exchange}.{self.symbol}"

    @property
    def key(self) -> str:
        return f"{self.market}/{self.day.isoformat()}"

    def file(self, lake: Path, table: str) -> Path:
        return lake / lake_relative_path(table, self.exchange, self.symbol, self.day)

    def files(self, lake: Path, tables: tuple[str, ...]) -> dict[str, Path]:
        return {t: self.file(lake, t) for t in tables}

    def capture_paths(self) -> list[Path]:
        return [SAMPLE_CAPTURES_DIR / name for name in self.captures]


SPOT_0808 = Partition("BINANCE", "BTC-USDT", dt.date(2024, 8, 8), SPOT_CAPTURES)
SPOT_0809 = Partition("BINANCE", "BTC-USDT", dt.date(2024, 8, 9), SPOT_CAPTURES)
FUTURES_0808 = Partition(
    "BINANCE_FUTURES", "BTC-USDT-PERP", dt.date(2024, 8, 8), ("usdm_btcusdt_20240808.gz",)
)
PARTITIONS = (SPOT_0808, SPOT_0809, FUTURES_0808)  # date order: 08-09 continues 08-08's book

_built: dict[Path, dict[str, Path]] = {}


def reconstruct(partition: Partition, lake: Path, out_dir: Path, seed: Path | None = None,
                book_delta_v2: Path | None = None) -> Path:  # fmt: skip
    """The project's reconstruction of one partition into ``out_dir`` (with the summary.json
    the reconstruction asset writes beside it)."""
    result = reconstruct_partition(
        partition.file(lake, "trades"),
        book_delta_v2 or partition.file(lake, "book_delta_v2"),
        partition.file(lake, "book"),
        out_dir,
        seed,
    )
    write_summary(out_dir, result_as_dict(result))
    return out_dir


def reconstructions(lake: Path, tmp_path_factory) -> dict[str, Path]:
    """Every sample partition reconstructed once per test run (pytest-xdist workers share
    them; tests read them, never change them); 2024-08-09 starts from 2024-08-08's end-of-day
    book, as the pipeline does."""
    if lake not in _built:
        root = built_once_per_run(
            tmp_path_factory, "sample_reconstructions", lambda root: _reconstruct_all(lake, root)
        )
        built_from = (root / "lake_path").read_text()
        assert built_from == str(lake), f"this run's reconstructions are of {built_from}"
        _built[lake] = {p.key: root / p.market / p.day.isoformat() for p in PARTITIONS}
    return _built[lake]


def _reconstruct_all(lake: Path, root: Path) -> None:
    out: dict[str, Path] = {}
    for p in PARTITIONS:
        previous = f"{p.market}/{(p.day - dt.timedelta(days=1)).isoformat()}"
        seed = out[previous] / "end_book.parquet" if previous in out else None
        out[p.key] = reconstruct(p, lake, root / p.market / p.day.isoformat(), seed)
    (root / "lake_path").write_text(str(lake))


def write_with_column(source: Path, target: Path, column: str, values) -> Path:
    """A copy of a Parquet file with one column replaced, keeping schema and metadata."""
    table = pq.read_table(source)
    index = table.schema.get_field_index(column)
    field = table.schema.field(column)
    table = table.set_column(index, field, pa.array(values, type=field.type))
    pq.write_table(table, target, compression="snappy")
    return target


def shift_best_bid_removal(partition: Partition, lake: Path, recon: Path, target: Path) -> dict:
    """Copy the partition's ``book_delta_v2`` with one real delta shifted by one tick: a row
    in the middle of the day that removes the best bid (size 0 at the best bid price) now
    removes the price one tick lower, so the old best bid stays in a book fed this copy."""
    stream = pl.read_parquet(recon / "stream.parquet")
    scale = stream.schema["price"].scale
    book = stream.filter(pl.col("event_type") == "book").with_columns(
        pl.col("best_bid_price").shift(1).alias("best_bid_before")
    )
    removals = book.filter(
        (pl.col("side") == "bid")
        & (pl.col("size") == 0)
        & (pl.col("price") == pl.col("best_bid_before"))
    )
    row = removals.row(removals.height // 2, named=True)
    deltas = pl.read_parquet(partition.file(lake, "book_delta_v2"))
    price = float(row["price"])
    hits = np.flatnonzero(
        (deltas["sequence_number"].to_numpy() == row["sequence_number"])
        & deltas["side_is_bid"].to_numpy()
        & (deltas["price"].to_numpy() == price)
        & (deltas["size"].to_numpy() == 0)
    )
    assert hits.size == 1, hits
    prices = deltas["price"].to_numpy().copy()
    prices[hits[0]] = round(price - 10.0**-scale, scale)
    write_with_column(partition.file(lake, "book_delta_v2"), target, "price", prices)
    return {"sequence_number": row["sequence_number"], "price": price, "row": int(hits[0])}
