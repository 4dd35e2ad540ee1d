"""capture -> Crypto Lake layout, checked against the real sample captures.

Expected values come from reading the gzip files here with plain ``json``, never from the
converter's own code.
"""

from __future__ import annotations

import datetime as dt
import functools
import gzip
import hashlib
import heapq
import json
import math
import pickle
import subprocess
import sys
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow.parquet as pq
import pytest

from rlx_assets.lake import from_capture
from rlx_assets.lake.from_capture import ConversionError, convert_captures, writing
from rlx_assets.vendor_schemas import LAKE_TABLES, VENDOR_SCHEMAS, schema_mismatches
from rlx_assets_tests.conftest import built_once_per_run

CAPTURES = Path(__file__).parents[3] / "data" / "sample" / "captures"
SPOT = (CAPTURES / "spot_btcusdt_20240808.gz", CAPTURES / "spot_btcusdt_20240809.gz")
USDM = (CAPTURES / "usdm_btcusdt_20240808.gz",)
MARKETS = {  # lake market -> its capture files
    ("BINANCE", "BTC-USDT"): SPOT,
    ("BINANCE_FUTURES", "BTC-USDT-PERP"): USDM,
}
MIDNIGHT_NS = int(dt.datetime(2024, 8, 9, tzinfo=dt.UTC).timestamp()) * 10**9
DAY1, DAY2 = dt.date(2024, 8, 8), dt.date(2024, 8, 9)


@functools.cache
def raw_messages(paths: tuple[Path, ...]) -> list[tuple[int, str, dict]]:
    """(receive ns, channel, data) of the files, concatenated in the given order."""
    out = []
    for path in paths:
        with gzip.open(path, "rt") as fh:
            for line in fh:
                ns, payload = line.split(" ", 1)
                msg = json.loads(payload)
                if "stream" in msg:
                    out.append((int(ns), msg["stream"].split("@")[1], msg["data"]))
                else:
                    out.append((int(ns), "snapshot", msg))
    return out


def day_of(ns: int) -> dt.date:
    return dt.date(1970, 1, 1) + dt.timedelta(days=ns // (86_400 * 10**9))


def lake_file(root: Path, table: str, market: tuple[str, str], day: dt.date) -> Path:
    ex, sym = market
    return root / table / f"exchange={ex}" / f"symbol={sym}" / f"dt={day}" / "1.snappy.parquet"


def read(root: Path, table: str, market: tuple[str, str], day: dt.date) -> pl.DataFrame:
    return pl.read_parquet(lake_file(root, table, market, day))


def read_all(root: Path, table: str, market: tuple[str, str]) -> pl.DataFrame:
    return pl.concat([read(root, table, market, d) for d in (DAY1, DAY2)])


@pytest.fixture(scope="module")
def lake(tmp_path_factory) -> tuple[Path, list[Path], list[str]]:
    """The converter's output, returned list and log, once per test run (pytest-xdist workers
    share them; tests only read them)."""

    def convert(root):
        logged: list[str] = []
        # Any order on the command line: later spot file first, futures in between.
        written = convert_captures([SPOT[1], USDM[0], SPOT[0]], root / "lake", log=logged.append)
        (root / "returned.pickle").write_bytes(pickle.dumps((written, logged)))

    root = built_once_per_run(tmp_path_factory, "converted_captures", convert)
    written, logged = pickle.loads((root / "returned.pickle").read_bytes())
    return root / "lake", written, logged


def test_layout_and_log(lake):
    root, written, logged = lake
    expected = {
        lake_file(root, table, market, day)
        for table in LAKE_TABLES
        for market in MARKETS
        for day in (DAY1, DAY2)
    }
    # No futures trade has a trade time after midnight, so that one day file does not exist.
    expected.remove(lake_file(root, "trades", ("BINANCE_FUTURES", "BTC-USDT-PERP"), DAY2))
    assert set(written) == expected
    assert {p for p in root.rglob("*") if p.is_file()} == expected  # no temp files left
    assert sum(line.startswith("read ") for line in logged) == 3
    assert "wrote book BINANCE.BTC-USDT 2024-08-08: 3437 rows" in logged


def test_dtypes_equal_the_schema_module(lake):
    _, written, _ = lake
    for path in written:
        table = path.parts[-5]
        schema = pq.read_schema(path)
        assert schema_mismatches(table, schema) == []
        assert [(f.name, f.type) for f in schema] == [
            (f.name, f.type) for f in VENDOR_SCHEMAS[table]
        ]
        assert pq.ParquetFile(path).metadata.row_group(0).column(0).compression == "SNAPPY"


def test_trade_rows_equal_trade_messages_per_exchange_day(lake):
    root = lake[0]
    for market, paths in MARKETS.items():
        trades = [d for _, ch, d in raw_messages(paths) if ch == "trade"]
        per_day = Counter(day_of(d["T"] * 10**6) for d in trades)
        for day in (DAY1, DAY2):
            if per_day[day] == 0:
                assert not lake_file(root, "trades", market, day).exists()
                continue
            df = read(root, "trades", market, day)
            assert df.height == per_day[day]
            want = [d for d in trades if day_of(d["T"] * 10**6) == day]
            assert df["id"].to_list() == [d["t"] for d in want]
            assert df["side"].to_list() == ["sell" if d["m"] else "buy" for d in want]
            assert df["price"].to_list() == [float(d["p"]) for d in want]
            assert df["amount"].to_list() == [float(d["q"]) for d in want]
            assert df["timestamp"].to_list() == [d["T"] * 10**6 for d in want]
    # PROVENANCE: 9,757 + 10,147 spot and 21,313 futures trade messages.
    assert sum(read_all(root, "trades", ("BINANCE", "BTC-USDT"))["id"].is_unique()) == 19_904
    assert read(root, "trades", ("BINANCE_FUTURES", "BTC-USDT-PERP"), DAY1).height == 21_313


def test_book_delta_rows_trace_to_diff_levels(lake):
    root = lake[0]
    for market, paths in MARKETS.items():
        expected = defaultdict(list)
        for ns, ch, d in raw_messages(paths):
            if ch != "depth":
                continue
            for side_is_bid, levels in ((True, d["b"]), (False, d["a"])):
                for price, size in levels:
                    row = (d["E"] * 10**6, ns, d["u"], side_is_bid, float(price), float(size))
                    expected[day_of(d["E"] * 10**6)].append(row)
        for day in (DAY1, DAY2):
            df = read(root, "book_delta_v2", market, day)
            assert df.rows() == expected[day], (market, day)
    spot = [read(root, "book_delta_v2", ("BINANCE", "BTC-USDT"), d).height for d in (DAY1, DAY2)]
    assert spot == [123_840, 174_271]


def book_ticker_reference(paths):
    """bookTicker quotes ordered by update id u."""
    quotes = sorted(
        (d["u"], float(d["b"]), float(d["B"]), float(d["a"]), float(d["A"]))
        for _, ch, d in raw_messages(paths)
        if ch == "bookTicker"
    )
    return np.array(quotes)


def test_book_top_agrees_with_the_independent_book_ticker_stream(lake):
    """Best bid/ask (price and size) after each diff vs the latest bookTicker with u <= the
    diff's u. PROVENANCE reports 3449/3449, 3041/3043 and 6547/6547 per file; per exchange day
    (the second spot file continuing the first) the figures are below. The two spot
    disagreements are in the data: a bid the bookTicker shows on both sides of the diff's final
    update id never appears in the depth stream except in its later delete."""
    root = lake[0]
    figures = {}
    mismatched = []
    for market, paths in MARKETS.items():
        ref = book_ticker_reference(paths)
        for day in (DAY1, DAY2):
            df = read(root, "book", market, day)
            seq = df["sequence_number"].to_numpy()
            k = np.searchsorted(ref[:, 0], seq, side="right") - 1
            assert (k >= 0).all()
            top = df.select("bid_0_price", "bid_0_size", "ask_0_price", "ask_0_size").to_numpy()
            agree = (top == ref[k, 1:]).all(axis=1)
            figures[(market[0], day)] = (int(agree.sum()), len(df))
            mismatched += seq[~agree].tolist()
    assert figures == {
        ("BINANCE", DAY1): (3437, 3437),
        ("BINANCE", DAY2): (3054, 3056),
        ("BINANCE_FUTURES", DAY1): (6543, 6543),
        ("BINANCE_FUTURES", DAY2): (4, 4),
    }
    assert mismatched == [50_093_478_174, 50_093_480_542]


def naive_books(paths, n_rows):
    """Top 20 after the first n_rows synced diffs, from a dict book (no numba, no ticks)."""
    messages = raw_messages(paths)
    snapshot = next(d for _, ch, d in messages if ch == "snapshot")
    book = {
        True: {float(p): float(s) for p, s in snapshot["bids"]},
        False: {float(p): float(s) for p, s in snapshot["asks"]},
    }
    lid = snapshot["lastUpdateId"]
    rows = []
    for _, ch, d in messages:
        if ch != "depth" or d["u"] <= lid:
            continue
        for side_is_bid, levels in ((True, d["b"]), (False, d["a"])):
            for price, size in levels:
                if float(size) == 0:
                    book[side_is_bid].pop(float(price), None)
                else:
                    book[side_is_bid][float(price)] = float(size)
        bids = heapq.nlargest(20, book[True])
        asks = heapq.nsmallest(20, book[False])
        row = [d["E"] * 10**6, d["u"]]
        for prices, side in ((bids, True), (asks, False)):
            for p in prices:
                row += [p, book[side][p]]
        rows.append(row)
        if len(rows) == n_rows:
            return rows
    return rows


def test_book_rows_follow_the_sync_rule_and_match_a_naive_book(lake):
    root = lake[0]
    for market, paths in MARKETS.items():
        df = read_all(root, "book", market)
        messages = raw_messages(paths)
        lid = next(d for _, ch, d in messages if ch == "snapshot")["lastUpdateId"]
        kept = [d["u"] for _, ch, d in messages if ch == "depth" and d["u"] > lid]
        assert df["sequence_number"].to_list() == kept
        meta = pq.read_schema(lake_file(root, "book", market, DAY1)).metadata
        assert meta[b"rlx.book_gaps"] == b"0"
        naive = naive_books(paths, 300)
        got = df.drop("receipt_timestamp").head(300).rows()
        assert [list(r) for r in got] == naive
        bids = df.select(f"bid_{i}_price" for i in range(20)).to_numpy()
        asks = df.select(f"ask_{i}_price" for i in range(20)).to_numpy()
        assert not np.isnan(bids).any() and not np.isnan(asks).any()  # 1000-level snapshots
        assert (np.diff(bids, axis=1) < 0).all() and (np.diff(asks, axis=1) > 0).all()
        assert (bids[:, 0] < asks[:, 0]).all()
    assert [read(root, "book", ("BINANCE", "BTC-USDT"), d).height for d in (DAY1, DAY2)] == [
        3437,
        3056,
    ]  # 3449 + 3044 diffs after the snapshot


def test_midnight_split_follows_exchange_time(lake):
    root = lake[0]
    spot = ("BINANCE", "BTC-USDT")
    first_file = raw_messages(SPOT[:1])  # every message received before midnight
    assert max(ns for ns, _, _ in first_file) < MIDNIGHT_NS
    late_trades = [
        d["t"] for _, ch, d in first_file if ch == "trade" and d["T"] * 10**6 >= MIDNIGHT_NS
    ]
    late_diffs = [
        d["u"] for _, ch, d in first_file if ch == "depth" and d["E"] * 10**6 >= MIDNIGHT_NS
    ]
    assert len(late_trades) == 19 and len(late_diffs) == 12  # the recorder ran ~1.27 s late

    trades = read(root, "trades", spot, DAY2)
    early = trades.filter(pl.col("receipt_timestamp") < MIDNIGHT_NS)
    assert early["id"].to_list() == late_trades
    book = read(root, "book", spot, DAY2)
    assert book.filter(pl.col("receipt_timestamp") < MIDNIGHT_NS)["sequence_number"].to_list() == (
        late_diffs
    )
    deltas = read(root, "book_delta_v2", spot, DAY2)
    assert (
        deltas.filter(pl.col("receipt_timestamp") < MIDNIGHT_NS)["sequence_number"]
        .unique(maintain_order=True)
        .to_list()
        == late_diffs
    )

    for path in lake[1]:
        day = dt.date.fromisoformat(path.parts[-2].removeprefix("dt="))
        ts = pl.read_parquet(path, columns=["timestamp"])["timestamp"]
        assert day_of(ts.min()) == day == day_of(ts.max()), path


def test_level_1_from_book_ticker(lake):
    root = lake[0]
    for market, paths in MARKETS.items():
        quotes = [(ns, d) for ns, ch, d in raw_messages(paths) if ch == "bookTicker"]
        df = read_all(root, "level_1", market)
        assert df.height == len(quotes)
        assert df["sequence_number"].to_list() == [d["u"] for _, d in quotes]
        assert df["receipt_timestamp"].to_list() == [ns for ns, _ in quotes]
        assert df["bid_0_price"].to_list() == [float(d["b"]) for _, d in quotes]
        assert df["ask_0_size"].to_list() == [float(d["A"]) for _, d in quotes]
        meta = pq.read_schema(lake_file(root, "level_1", market, DAY1)).metadata
        if market[0] == "BINANCE":  # spot bookTicker frames carry no event time
            assert meta[b"rlx.level_1_timestamp_source"] == b"receive_time"
            assert df["timestamp"].to_list() == [ns for ns, _ in quotes]
            sizes = [read(root, "level_1", market, d).height for d in (DAY1, DAY2)]
            assert sizes == [28_040, 45_134]  # split by receive time = per file
        else:
            assert meta[b"rlx.level_1_timestamp_source"] == b"exchange_time"
            assert df["timestamp"].to_list() == [d["E"] * 10**6 for _, d in quotes]


def test_file_metadata_records_sources(lake):
    root = lake[0]
    meta = pq.read_schema(lake_file(root, "trades", ("BINANCE", "BTC-USDT"), DAY1)).metadata
    assert meta[b"rlx.trade_source"] == b"trade"  # the captures have no aggTrade stream
    assert meta[b"rlx.converter_version"] == from_capture.CONVERTER_VERSION.encode()
    assert meta[b"rlx.market_key"] == b"BINANCE.BTC-USDT"
    sources = json.loads(meta[b"rlx.source_files"])
    assert sources == [
        {"name": p.name, "sha256": hashlib.sha256(p.read_bytes()).hexdigest()} for p in SPOT
    ]
    assert sources[0]["sha256"].startswith("5d263f4c")  # PROVENANCE.md


def to_golden(src: Path, dst: Path) -> Path:
    """Rewrite a sample-format capture in our golden-sample line format, with a gap marker and
    a malformed line thrown in."""
    with gzip.open(src, "rt") as fh, gzip.open(dst, "wt") as out:
        for i, line in enumerate(fh):
            ns, payload = line.split(" ", 1)
            msg = json.loads(payload)
            if "stream" not in msg:
                msg = {"stream": "btcusdt@depthSnapshot", "data": msg}
            out.write(json.dumps({"capture_ns": int(ns), **msg}) + "\n")
            if i == 100:
                out.write(json.dumps({"capture_ns": int(ns), "stream": "rlx.gap", "data": {}}))
                out.write("\n" + json.dumps({"capture_ns": int(ns), "malformed": True}) + "\n")
    return dst


def test_golden_format_gives_the_same_output(tmp_path):
    golden = to_golden(SPOT[0], tmp_path / "golden_btcusdt.gz")
    sample_out = convert_captures([SPOT[0]], tmp_path / "sample")
    golden_out = convert_captures([golden], tmp_path / "golden")
    rel = [p.relative_to(tmp_path / "sample") for p in sample_out]
    assert rel == [p.relative_to(tmp_path / "golden") for p in golden_out]
    assert len(rel) == 7  # spot level_1 is split by receive time: all on 2024-08-08
    for r in rel:
        assert pl.read_parquet(tmp_path / "sample" / r).equals(
            pl.read_parquet(tmp_path / "golden" / r)
        ), r


def test_second_spot_file_alone_has_no_snapshot_so_no_book(tmp_path):
    logged: list[str] = []
    written = convert_captures([SPOT[1]], tmp_path, log=logged.append)
    assert not any(p.parts[-5] == "book" for p in written)
    assert any("0 book rows" in line for line in logged)
    deltas = pl.read_parquet(lake_file(tmp_path, "book_delta_v2", ("BINANCE", "BTC-USDT"), DAY2))
    assert deltas["sequence_number"].n_unique() == 3_044


# --- narrow edge cases (synthetic) -------------------------------------------------------------
def write_golden(path: Path, records: list[tuple[int, str, dict]]) -> Path:
    with gzip.open(path, "wt") as fh:
        for ns, stream, data in records:
            fh.write(json.dumps({"capture_ns": ns, "stream": stream, "data": data}) + "\n")
    return path


T0 = 1_723_161_500_000  # ms


def thin_spot_capture(path: Path) -> Path:
    return write_golden(
        path,
        [
            (1, "ethbtc@depthSnapshot", {"lastUpdateId": 10, "bids": [["0.05", "1.5"],
                                         ["0.049", "2"]], "asks": [["0.0501", "3"]]}),
            (2, "ethbtc@depth@100ms", {"e": "depthUpdate", "E": T0, "s": "ETHBTC", "U": 11,
                                       "u": 12, "b": [["0.0499", "0.25"]], "a": []}),
            (3, "ethbtc@trade", {"e": "trade", "E": T0, "T": T0, "t": 7, "p": "0.05",
                                 "q": "0.1", "m": True, "M": True}),
            (4, "ethbtc@aggTrade", {"e": "aggTrade", "E": T0, "T": T0, "a": 3, "f": 7,
                                    "l": 7, "p": "0.05", "q": "0.1", "m": False, "M": True}),
        ],
    )  # fmt: skip


def test_thin_book_is_nan_filled_and_aggtrade_preferred(tmp_path):
    capture = thin_spot_capture(tmp_path / "thin.gz")
    convert_captures([capture], tmp_path / "out")
    market = ("BINANCE", "ETH-BTC")
    day = day_of(T0 * 10**6)
    book = read(tmp_path / "out", "book", market, day)
    row = book.row(0, named=True)
    assert (row["bid_0_price"], row["bid_1_price"], row["bid_2_price"]) == (0.05, 0.0499, 0.049)
    assert (row["bid_1_size"], row["ask_0_price"], row["ask_0_size"]) == (0.25, 0.0501, 3.0)
    assert all(math.isnan(row[f"bid_{i}_{c}"]) for i in range(3, 20) for c in ("price", "size"))
    assert all(math.isnan(row[f"ask_{i}_{c}"]) for i in range(1, 20) for c in ("price", "size"))
    trades = read(tmp_path / "out", "trades", market, day)
    assert trades.rows() == [("buy", 0.1, 0.05, 3, T0 * 10**6, 4)]
    meta = pq.read_schema(lake_file(tmp_path / "out", "trades", market, day)).metadata
    assert meta[b"rlx.trade_source"] == b"aggTrade"


def test_existing_output_is_replaced_only_after_a_complete_write(tmp_path, monkeypatch):
    capture = thin_spot_capture(tmp_path / "thin.gz")
    out = tmp_path / "out"
    target = lake_file(out, "book", ("BINANCE", "ETH-BTC"), day_of(T0 * 10**6))
    target.parent.mkdir(parents=True)
    target.write_bytes(b"previous")

    def broken_close(self):
        self.writer.close()  # some bytes reached the temp file
        raise OSError("disk full")

    monkeypatch.setattr(writing._DayFile, "close", broken_close)
    with pytest.raises(OSError, match="disk full"):
        convert_captures([capture], out)
    assert target.read_bytes() == b"previous"
    assert sorted(p.name for p in target.parent.iterdir()) == ["1.snappy.parquet"]
    monkeypatch.undo()
    convert_captures([capture], out)
    assert pq.read_table(target).num_rows == 1


def test_market_detection_and_override(tmp_path):
    capture = thin_spot_capture(tmp_path / "thin.gz")
    with pytest.raises(ConversionError, match="--market usdm given, but the messages are spot"):
        convert_captures([capture], tmp_path / "out", market="usdm")
    with pytest.raises(ConversionError, match="unknown market"):
        convert_captures([capture], tmp_path / "out", market="coinm")
    mixed = write_golden(
        tmp_path / "mixed.gz",
        [
            (1, "btcusdt@trade", {"t": 1, "T": T0, "p": "1", "q": "1", "m": True, "M": True}),
            (2, "btcusdt@trade", {"t": 2, "T": T0, "p": "1", "q": "1", "m": True, "X": "MARKET"}),
        ],
    )
    with pytest.raises(ConversionError, match="mixes spot and USD-M"):
        convert_captures([mixed], tmp_path / "out")
    unknown = write_golden(tmp_path / "unknown.gz", [(1, "foobar@trade", {"t": 1})])
    with pytest.raises(ValueError, match="cannot split Binance symbol 'foobar'"):
        convert_captures([unknown], tmp_path / "out")
    with pytest.raises(FileNotFoundError, match="nope.gz"):
        convert_captures([tmp_path / "nope.gz"], tmp_path / "out")


def test_book_table_is_built_without_the_reconstruction_kernel(tmp_path):
    """The vendor book must not come from the code it is used to check: the conversion runs
    with the kernel module unimportable, and the file says what built it."""
    capture = thin_spot_capture(tmp_path / "thin.gz")
    script = (
        "import sys; sys.modules['rlx_assets.book.kernel'] = None\n"
        "from rlx_assets.lake.from_capture import convert_captures\n"
        f"convert_captures([{str(capture)!r}], {str(tmp_path / 'out')!r})\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    path = lake_file(tmp_path / "out", "book", ("BINANCE", "ETH-BTC"), day_of(T0 * 10**6))
    assert pl.read_parquet(path)["bid_1_price"].to_list() == [0.0499]
    meta = pq.read_schema(path).metadata
    assert meta[b"rlx.book_builder"] == b"rlx_assets.book.reference"
    assert meta[b"rlx.converter_version"] == b"2"
