"""`rlx export hftbacktest` on the real sample days: the documented format, the day's book."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from click.testing import CliRunner

from rlx_assets.cli import main
from rlx_assets_tests.export.sample_chain import SPOT, certified_sample_data, copy_of

# hftbacktest's documentation ("Data" page; hftbacktest.types), written out independently
DOCUMENTED_FIELDS = [
    ("ev", "<u8"),
    ("exch_ts", "<i8"),
    ("local_ts", "<i8"),
    ("px", "<f8"),
    ("qty", "<f8"),
    ("order_id", "<u8"),
    ("ival", "<i8"),
    ("fval", "<f8"),
]
EXCH, LOCAL, BUY, SELL = 1 << 31, 1 << 30, 1 << 29, 1 << 28
DEPTH, TRADE, CLEAR, SNAPSHOT = 1, 2, 3, 4


@pytest.fixture(scope="session")
def certified(sample_lake, tmp_path_factory) -> Path:
    return certified_sample_data(sample_lake, tmp_path_factory)


def export(data: Path, day: str, out: Path):
    result = CliRunner().invoke(
        main,
        ["export", "hftbacktest", "--market", SPOT, "--date", day, "--out", str(out),
         "--data-dir", str(data)],
    )  # fmt: skip
    return result


@pytest.fixture(scope="session")
def exported(certified, tmp_path_factory):
    out_dir = tmp_path_factory.mktemp("hftbacktest")
    days = {}
    for day in ("2024-08-08", "2024-08-09"):
        out = out_dir / f"{day}.npz"
        result = export(certified, day, out)
        assert result.exit_code == 0, result.output
        with np.load(out) as npz:
            days[day] = (list(npz.keys()), npz["data"], json.loads(result.stdout))
    return days


def summary(data: Path, day: str) -> dict:
    return json.loads((data / "reconstruction" / SPOT / day / "summary.json").read_text())


@pytest.mark.parametrize("day", ["2024-08-08", "2024-08-09"])
def test_the_array_is_hftbacktests_documented_event_format(exported, certified, day):
    keys, data, report = exported[day]
    assert keys == ["data"]  # what hftbacktest's readers load (np.load(f)["data"], data.npy)
    assert data.dtype.descr == DOCUMENTED_FIELDS and data.dtype.itemsize == 64
    ev = data["ev"]
    kind = ev & 0xFF
    assert set(np.unique(kind).tolist()) <= {DEPTH, TRADE, CLEAR, SNAPSHOT}
    assert not (ev & ~np.uint64(0xFF | EXCH | LOCAL | BUY | SELL)).any()  # no other bit
    assert ((ev & EXCH) | (ev & LOCAL) > 0).all()
    book_side = (ev & BUY > 0).astype(int) + (ev & SELL > 0).astype(int)
    assert (book_side[kind != TRADE] == 1).all()  # every book event names one side
    # the whole starting book comes first: a clear and the levels of each side
    start = summary(certified, day)
    n_snapshot = report["snapshot_levels"]
    head = kind[:n_snapshot]
    assert set(head.tolist()) == {CLEAR, SNAPSHOT} and (kind[n_snapshot:] <= TRADE).all()
    if start["seeded_from"] == "previous_day":  # the previous day's whole end book
        previous = pl.read_parquet(certified / start["seed_book"])
        assert (head == SNAPSHOT).sum() == previous.height
    # as validate_event_order demands: exchange rows by exch_ts, local rows by local_ts
    assert (np.diff(data["exch_ts"][ev & EXCH > 0]) >= 0).all()
    assert (np.diff(data["local_ts"][ev & LOCAL > 0]) >= 0).all()
    # correct_local_timestamp: no local row before its exchange time
    assert (data["local_ts"] >= data["exch_ts"]).all()
    assert report["tick_size"] == 10.0 ** -start["price_scale"]
    assert report["lot_size"] == 10.0 ** -start["size_scale"]


def replay(data: np.ndarray, processor: int) -> dict[str, dict[float, float]]:
    """A plain dict book fed the rows one processor handles (clears as hftbacktest's: up to px)."""
    book: dict[str, dict[float, float]] = {"bid": {}, "ask": {}}
    for ev, px, qty in zip(data["ev"].tolist(), data["px"].tolist(), data["qty"].tolist(),
                           strict=True):  # fmt: skip
        if not ev & processor or ev & 0xFF == TRADE:
            continue
        side = "bid" if ev & BUY else "ask"
        levels = book[side]
        if ev & 0xFF == CLEAR:
            for price in [p for p in levels if (p >= px if side == "bid" else p <= px)]:
                del levels[price]
        elif qty == 0:
            levels.pop(px, None)
        else:
            levels[px] = qty
    return book


@pytest.mark.parametrize("day", ["2024-08-08", "2024-08-09"])
def test_replaying_the_export_ends_on_the_days_end_book(exported, certified, day):
    data = exported[day][1]
    end_book = pl.read_parquet(certified / "reconstruction" / SPOT / day / "end_book.parquet")
    expected = {
        side: {float(p): float(s) for p, s in end_book.filter(pl.col("side") == side)
               .select("price", "size").iter_rows()}
        for side in ("bid", "ask")
    }  # fmt: skip
    assert sum(len(v) for v in expected.values()) > 40
    assert replay(data, EXCH) == expected
    assert replay(data, LOCAL) == expected


def test_the_exported_events_are_the_streams_rows(exported, certified):
    data = exported["2024-08-09"][1]
    stream = pl.read_parquet(certified / "reconstruction" / SPOT / "2024-08-09" / "stream.parquet")
    rows = data[(data["ev"] & EXCH > 0) & ((data["ev"] & 0xFF) <= TRADE)]
    assert rows.size == stream.height  # a warm day: every row applied, in the stream's order
    assert (rows["exch_ts"] == stream["event_time"].dt.epoch("ns").to_numpy()).all()
    assert (rows["px"] == stream["price"].cast(pl.Float64).to_numpy()).all()
    assert (rows["qty"] == stream["size"].cast(pl.Float64).to_numpy()).all()
    is_trade = stream["event_type"].to_numpy() == "trade"
    assert ((rows["ev"] & 0xFF == TRADE) == is_trade).all()
    buyer = stream["side"].is_in(["bid", "buy"]).to_numpy()
    assert ((rows["ev"] & BUY > 0) == buyer).all()
    latency = rows["local_ts"] - stream["received_time"].dt.epoch("ns").to_numpy()
    assert len(set(latency.tolist())) == 1  # one offset for every row (the clock correction)


def test_a_stale_day_is_refused_and_the_previous_file_kept(certified, tmp_path):
    data = copy_of(certified, tmp_path / "data")
    certificate = data / "certificates" / SPOT / "2024-08-09.json"
    content = json.loads(certificate.read_text())
    content["issued_at"] = "2030-01-01T00:00:00+00:00"
    certificate.write_text(json.dumps(content))
    out = tmp_path / "day.npz"
    out.write_bytes(b"previous export")
    result = export(data, "2024-08-09", out)
    assert result.exit_code == 1
    assert "2024-08-09: the reconstruction was built from certificate" in result.output
    assert f"--partition '2024-08-09|{SPOT}'" in result.output
    assert "Traceback" not in result.output
    assert out.read_bytes() == b"previous export"
