"""Partition reconstruction on the real sample partitions (built from the real Binance captures).

Fidelity is checked against two independent references: the captures' ``bookTicker`` stream
(parsed here straight from the gzip files) and the vendor-format ``book`` rows. Synthetic rows
appear only in the edge-case tests at the end (corrupted, unsorted or oddly scaled inputs).

Measured on the sample partitions (``chunk_rows`` small, so windows are exercised):

* bookTicker agreement of the best bid/ask (price and size) after each diff, over the diffs
  after which the book is known: spot 2024-08-08 (cold) 3435/3437, spot 2024-08-09 (seeded
  from 08-08's end book) 3054/3056, futures 2024-08-08 (cold) 6543/6543 (4 diffs precede the
  seed). The two spot 08-09 misses are in the ticker stream itself (the captures' PROVENANCE
  counts them too); the two spot 08-08 ones are levels hidden below a top-20 seed.
* vendor book rows equal on all 20 levels: spot 08-09 warm 3056/3056; cold days 2709/3436
  (spot 08-08) and 6406/6542 (futures): every differing row reaches past the known depth of a
  top-20 seed, and all rows agree within it.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import shutil
from decimal import Decimal
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from rlx_assets.book.reconstruct import (
    CHECKPOINTS_FILE,
    END_BOOK_FILE,
    SNAPSHOTS_1S_FILE,
    SNAPSHOTS_VENDOR_FILE,
    STREAM_FILE,
    ReconstructionError,
    checkpoint_schema,
    end_book_schema,
    snapshot_schema,
    stream_schema,
)
from rlx_assets.book.reference import ReferenceBook
from rlx_assets_tests.book.reconstruct.conftest import (
    OUTPUTS,
    Run,
    run,
)
from rlx_assets_tests.conftest import SAMPLE_CAPTURES


# --- independent reference: the captures' bookTicker stream -------------------------------------
def book_tickers(*files: str) -> list[tuple[int, Decimal, Decimal, Decimal, Decimal]]:
    """(update id u, bid, bid qty, ask, ask qty) of every bookTicker message, sorted by u."""
    rows = []
    for name in files:
        with gzip.open(SAMPLE_CAPTURES / name, "rt") as handle:
            for line in handle:
                payload = line.partition(" ")[2]
                if "@bookTicker" not in payload[:80]:
                    continue
                d = json.loads(payload)["data"]
                rows.append((d["u"], *(Decimal(d[k]) for k in ("b", "B", "a", "A"))))
    rows.sort(key=lambda r: r[0])
    return rows


CAPTURES = {
    "spot08": ("spot_btcusdt_20240808.gz", "spot_btcusdt_20240809.gz"),
    "spot09": ("spot_btcusdt_20240808.gz", "spot_btcusdt_20240809.gz"),
    "futures08": ("usdm_btcusdt_20240808.gz",),
}


def best_after_each_diff(stream: pa.Table) -> dict[str, list]:
    """The last row of every diff (the exchange's consistent state)."""
    is_book = pc.equal(stream.column("event_type"), "book")
    last = stream.filter(pc.and_(is_book, stream.column("update_complete")))
    names = ["sequence_number", "best_bid_price", "best_bid_size", "best_ask_price",
             "best_ask_size"]  # fmt: skip
    return {n: last.column(n).to_pylist() for n in names}


@pytest.mark.parametrize(
    ("name", "least"), [("spot08", 3435), ("spot09", 3054), ("futures08", 6543)]
)
def test_best_bid_ask_matches_the_capture_book_ticker(runs, name, least):
    tickers = book_tickers(*CAPTURES[name])
    ids = np.array([t[0] for t in tickers])
    diffs = best_after_each_diff(runs[name].table(STREAM_FILE))
    known = equal = 0
    for k, seq in enumerate(diffs["sequence_number"]):
        if diffs["best_bid_price"][k] is None:  # cold start: before the seed
            continue
        i = int(np.searchsorted(ids, seq, side="right")) - 1  # latest ticker with u <= seq
        if i < 0:
            continue
        ours = tuple(diffs[c][k] for c in ("best_bid_price", "best_bid_size",
                                            "best_ask_price", "best_ask_size"))  # fmt: skip
        known += 1
        equal += ours == tickers[i][1:]
    assert equal / known >= 0.999, (equal, known)
    assert equal >= least, (equal, known)


def test_next_day_seeded_from_end_book_agrees_from_its_first_event(runs):
    spot09 = runs["spot09"]
    r = spot09.result
    assert (r.started_cold, r.seeded_from) == (False, "previous_day")
    end08 = pq.read_metadata(runs["spot08"].out / END_BOOK_FILE).metadata
    assert r.seed_sequence == int(end08[b"rlx.last_sequence_number"])
    assert r.anomalies["deltas_before_seed"] == 0
    stream = spot09.table(STREAM_FILE)
    first = stream.slice(0, 1).to_pylist()[0]
    assert first["best_bid_price"] is not None and first["best_ask_price"] is not None
    # the first diff already matches the independent ticker stream ...
    tickers = book_tickers(*CAPTURES["spot09"])
    diffs = best_after_each_diff(stream)
    seq = diffs["sequence_number"][0]
    ticker = [t for t in tickers if t[0] <= seq][-1]
    assert tuple(diffs[c][0] for c in ("best_bid_price", "best_bid_size", "best_ask_price",
                                       "best_ask_size")) == ticker[1:]  # fmt: skip
    # ... and every vendor book row (all 20 levels) from the first one on
    snaps = spot09.table(SNAPSHOTS_VENDOR_FILE)
    assert snaps.column("matches_vendor").to_pylist()[0] is True
    assert r.vendor_book_rows_compared == snaps.num_rows == 3056
    assert r.vendor_book_rows_equal == r.vendor_book_rows_compared
    assert r.level_agreement == [1.0] * 20 and r.first_mismatches == []


@pytest.mark.parametrize("name", ["spot08", "futures08"])
def test_cold_days_agree_within_the_known_depth(runs, name):
    r = runs[name].result
    assert (r.started_cold, r.seeded_from) == (True, "vendor_book_first_row")
    first_book_row = pq.read_table(runs[name].paths["book"]).slice(0, 1)
    assert r.seed_sequence == first_book_row.column("sequence_number")[0].as_py()
    # every vendor row is compared except the seed row itself
    assert r.vendor_book_rows_compared == pq.read_metadata(runs[name].paths["book"]).num_rows - 1
    # Deeper levels of a top-20 seed are unknown: rows can differ only where our top 20
    # reaches past the known depth, never inside it.
    assert r.vendor_book_rows_equal_within_known_depth == r.vendor_book_rows_compared
    snaps = runs[name].table(SNAPSHOTS_VENDOR_FILE)
    matches = snaps.column("matches_vendor").to_pylist()
    depth_known = snaps.column("depth_known").to_pylist()
    assert matches[0] is None and None not in matches[1:]
    assert all(known is False for m, known in zip(matches, depth_known, strict=True) if m is False)
    assert r.vendor_book_rows_equal == matches.count(True)
    assert r.vendor_book_rows_equal / r.vendor_book_rows_compared > 0.75
    assert r.level_agreement[0] >= 0.999
    assert all(not m["within_known_depth"] for m in r.first_mismatches)


def test_result_counts_scales_and_anomalies(runs):
    for name, scales in (("spot08", (2, 6)), ("spot09", (2, 6)), ("futures08", (1, 3))):
        r, paths = runs[name].result, runs[name].paths
        trades = pq.read_metadata(paths["trades"]).num_rows
        deltas = pq.read_metadata(paths["book_delta_v2"]).num_rows
        assert (r.trades, r.book_updates, r.events) == (trades, deltas, trades + deltas)
        assert (r.price_scale, r.size_scale) == scales
        assert r.market == f"{paths['book'].parts[-4][9:]}.{paths['book'].parts[-3][7:]}"
        for key in ("crossed_after_event", "out_of_range", "sequence_regressions",
                    "trades_invalid_side", "input_rows_out_of_time_order"):  # fmt: skip
            assert r.anomalies[key] == 0, (name, key)
        assert r.anomalies["delete_unknown_level"] > 0  # levels deeper than a top-20 seed
        assert r.plan.startswith("first batches")
    seed_seq = runs["spot08"].result.seed_sequence
    seqs = pq.read_table(runs["spot08"].paths["book_delta_v2"]).column("sequence_number")
    before = int(pc.sum(pc.less_equal(seqs, seed_seq)).as_py())
    assert runs["spot08"].result.anomalies["deltas_before_seed"] == before == 33


def test_schemas_are_exact_decimals_at_the_market_scale(runs):
    for name in runs:
        r, out = runs[name].result, runs[name].out
        ps, ss = r.price_scale, r.size_scale
        assert pq.read_schema(out / STREAM_FILE).remove_metadata() == stream_schema(ps, ss)
        assert pq.read_schema(out / SNAPSHOTS_VENDOR_FILE).remove_metadata() == snapshot_schema(
            ps, ss, vendor=True
        )
        assert pq.read_schema(out / SNAPSHOTS_1S_FILE).remove_metadata() == snapshot_schema(
            ps, ss, vendor=False
        )
        assert pq.read_schema(out / END_BOOK_FILE).remove_metadata() == end_book_schema(ps, ss)
        price = pq.ParquetFile(out / STREAM_FILE).schema.column(4)
        assert (price.name, price.physical_type) == ("price", "INT64")
        assert (price.logical_type.type, price.precision, price.scale) == ("DECIMAL", 18, ps)
        meta = pq.read_metadata(out / STREAM_FILE).metadata
        assert meta[b"rlx.price_scale"] == str(ps).encode()
        assert meta[b"rlx.market"] == r.market.encode()


def assert_decimals_equal_inputs(ours: pa.ChunkedArray, floats: np.ndarray) -> None:
    """``ours`` (decimal) equals ``Decimal(repr(x))`` of every input float, value for value."""
    scale = ours.type.scale
    unique, inverse = np.unique(floats, return_inverse=True)
    text = np.array([f"{Decimal(repr(float(x))):.{scale}f}" for x in unique])
    # the formatting above must not round: no input has more decimals than the scale
    assert all(Decimal(repr(float(x))).as_tuple().exponent >= -scale for x in unique)
    expected = pa.array(text[inverse])
    assert pc.all(pc.equal(ours.cast(pa.string()), expected)).as_py()


def test_every_price_and_size_round_trips_to_the_input_decimal(runs):
    for name in runs:
        stream = runs[name].table(STREAM_FILE)
        paths = runs[name].paths
        kind = stream.column("event_type").to_numpy(zero_copy_only=False)
        # inputs are time-ordered, so each kind's rows keep the file order in the stream
        book = stream.filter(kind == "book")
        deltas = pq.read_table(paths["book_delta_v2"])
        assert_decimals_equal_inputs(book.column("price"), deltas.column("price").to_numpy())
        assert_decimals_equal_inputs(book.column("size"), deltas.column("size").to_numpy())
        trades = pq.read_table(paths["trades"])
        traded = stream.filter(kind == "trade")
        assert_decimals_equal_inputs(traded.column("price"), trades.column("price").to_numpy())
        assert_decimals_equal_inputs(traded.column("size"), trades.column("amount").to_numpy())
        assert traded.column("trade_id").equals(trades.column("id"))
        assert traded.column("side").to_pylist() == trades.column("side").to_pylist()
        assert book.column("side").to_pylist() == [
            "bid" if b else "ask" for b in deltas.column("side_is_bid").to_pylist()
        ]
        # our top 20 in the rows equal to the vendor's: decimal for decimal
        snaps = runs[name].table(SNAPSHOTS_VENDOR_FILE)
        vendor = pq.read_table(paths["book"])
        equal = pc.fill_null(snaps.column("matches_vendor"), False)
        for column in ("bid_0_price", "bid_7_size", "ask_0_size", "ask_19_price"):
            ours = snaps.column(column).filter(equal)
            theirs = vendor.column(column).filter(equal).to_numpy()
            present = ~np.isnan(theirs)
            assert ours.is_valid().to_numpy(zero_copy_only=False).tolist() == present.tolist()
            assert_decimals_equal_inputs(ours.filter(pa.array(present)), theirs[present])


def test_end_book_decimals_equal_its_integer_units(runs):
    end = runs["spot08"].table(END_BOOK_FILE)
    ps, ss = runs["spot08"].result.price_scale, runs["spot08"].result.size_scale
    prices, ticks = end.column("price").to_pylist(), end.column("price_ticks").to_pylist()
    sizes, lots = end.column("size").to_pylist(), end.column("size_lots").to_pylist()
    assert all(p == Decimal(t).scaleb(-ps) for p, t in zip(prices, ticks, strict=True))
    assert all(s == Decimal(q).scaleb(-ss) for s, q in zip(sizes, lots, strict=True))
    side = np.array(end.column("side").to_pylist())
    t = np.array(ticks)
    bids, asks = t[side == "bid"], t[side == "ask"]
    assert (np.diff(bids) < 0).all() and (np.diff(asks) > 0).all() and bids[0] < asks[0]
    meta = pq.read_metadata(runs["spot08"].out / END_BOOK_FILE).metadata
    assert meta[b"rlx.known_bid_floor"] and meta[b"rlx.known_ask_ceiling"]  # cold: top 20 only
    assert int(meta[b"rlx.last_event_time_ns"]) == runs["spot08"].result.last_event_ns
    # the final 1 s snapshot is the end book's top 20
    snaps = runs["spot08"].table(SNAPSHOTS_1S_FILE)
    last = snaps.slice(snaps.num_rows - 1).to_pylist()[0]
    assert [last[f"bid_{i}_price"] for i in range(20)] == prices[:20]


def test_stream_is_strictly_chronological_with_deterministic_ties(runs):
    for name in runs:
        stream = runs[name].table(STREAM_FILE)
        is_trade = pc.equal(stream.column("event_type"), "trade").to_numpy(zero_copy_only=False)
        tie = np.where(
            is_trade,
            stream.column("trade_id").fill_null(0).to_numpy(),
            stream.column("sequence_number").fill_null(0).to_numpy(),
        )
        time = stream.column("event_time").cast(pa.int64()).to_numpy()
        recv = stream.column("received_time").cast(pa.int64()).to_numpy()
        order = np.lexsort((tie, is_trade, recv, time))
        assert (order == np.arange(order.size)).all(), name
        assert (np.diff(time) >= 0).all()
        assert runs[name].result.first_event_ns == time[0]
        assert runs[name].result.last_event_ns == time[-1]


def test_one_second_snapshots_are_the_stream_state_at_each_boundary(runs):
    r = runs["spot09"]
    snaps = r.table(SNAPSHOTS_1S_FILE)
    bounds = snaps.column("timestamp").cast(pa.int64()).to_numpy()
    assert (bounds % 1_000_000_000 == 0).all() and (np.diff(bounds) == 1_000_000_000).all()
    assert bounds[-1] > r.result.last_event_ns and r.result.snapshots_1s == snaps.num_rows
    stream = r.table(STREAM_FILE)
    time = stream.column("event_time").cast(pa.int64()).to_numpy()
    before = np.searchsorted(time, bounds, side="left") - 1  # last event with time < boundary
    bid = stream.column("best_bid_price").to_pylist()
    ask_size = stream.column("best_ask_size").to_pylist()
    seq = stream.column("sequence_number").to_pylist()
    snap_bid = snaps.column("bid_0_price").to_pylist()
    snap_ask_size = snaps.column("ask_0_size").to_pylist()
    for k, row in enumerate(before):
        assert (snap_bid[k], snap_ask_size[k]) == (bid[row], ask_size[row]), k
        last_seq = next(s for s in reversed(seq[: row + 1]) if s is not None)
        assert snaps.column("sequence_number")[k].as_py() == last_seq


def seed_levels(runs, name: str) -> list[tuple[bool, int, int]]:
    """The book a sample day starts from, as (is bid, ticks, lots): spot 08-09 the end book of
    08-08, spot 08-08 (cold) the vendor's first book row (top 20, floats as their decimals)."""
    r = runs[name].result
    if name == "spot09":
        end = runs["spot08"].table(END_BOOK_FILE).to_pylist()
        return [(x["side"] == "bid", x["price_ticks"], x["size_lots"]) for x in end]
    first = pq.read_table(runs[name].paths["book"]).slice(0, 1).to_pylist()[0]
    levels = []
    for side in ("bid", "ask"):
        for i in range(20):
            price, size = first[f"{side}_{i}_price"], first[f"{side}_{i}_size"]
            if price == price:  # NaN: no level
                levels.append((side == "bid", int(Decimal(repr(price)).scaleb(r.price_scale)),
                               int(Decimal(repr(size)).scaleb(r.size_scale))))  # fmt: skip
    return levels


def book_rows(run: Run):
    """(event time ns, is bid, ticks, lots, sequence number) of the stream's book rows."""
    stream = run.table(STREAM_FILE)
    stream = stream.filter(pc.equal(stream.column("event_type"), "book"))
    ps, ss = run.result.price_scale, run.result.size_scale
    times = stream.column("event_time").cast(pa.int64()).to_pylist()
    columns = [stream.column(c).to_pylist() for c in ("side", "price", "size", "sequence_number")]
    for time, side, price, size, seq in zip(times, *columns, strict=True):
        yield time, side == "bid", int(price.scaleb(ps)), int(size.scaleb(ss)), seq


@pytest.mark.parametrize("name", ["spot08", "spot09"])
def test_checkpoints_are_the_whole_book_at_every_minute(runs, name):
    """``checkpoints.parquet`` holds the whole book before every minute boundary of exchange
    time once the book is known, and after the last event: each equal to a pure-Python
    reference book fed the day's seed and the stream's book rows (those the kernel applies:
    above the seed's sequence number, never below one applied) with an earlier event time."""
    r, out = runs[name].result, runs[name].out
    minute = 60_000_000_000
    table = pq.read_table(out / CHECKPOINTS_FILE)
    assert table.schema.remove_metadata() == checkpoint_schema(r.price_scale, r.size_scale)
    times = sorted(set(table.column("timestamp").cast(pa.int64()).to_pylist()))
    assert times == list(range(times[0], times[-1] + 1, minute)) and times[0] % minute == 0
    assert (r.checkpoints, r.checkpoint_every_ns, r.first_checkpoint_ns) == (
        len(times), minute, times[0])  # fmt: skip
    known_from = r.first_event_ns if name == "spot09" else first_vendor_row_time(runs[name])
    assert times[0] - minute <= known_from < times[0]
    assert times[-2] <= r.last_event_ns < times[-1]
    book = ReferenceBook()
    for level in seed_levels(runs, name):
        book.apply(*level)
    applied, rows = r.seed_sequence, book_rows(runs[name])
    row = next(rows, None)
    for t in times:
        while row is not None and row[0] < t:
            if row[4] > r.seed_sequence and row[4] >= applied:
                book.apply(*row[1:4])
                applied = row[4]
            row = next(rows, None)
        checkpoint = table.filter(pc.equal(table.column("timestamp").cast(pa.int64()), t))
        assert set(checkpoint.column("sequence_number").to_pylist()) == {applied}
        bids, asks = book.levels()
        assert checkpoint.column("side").to_pylist() == ["bid"] * len(bids) + ["ask"] * len(asks)
        prices, sizes = (checkpoint.column(c).to_pylist() for c in ("price", "size"))
        levels = [(int(p.scaleb(r.price_scale)), int(q.scaleb(r.size_scale)))
                  for p, q in zip(prices, sizes, strict=True)]  # fmt: skip
        assert levels == bids + asks, t
    assert row is None


def first_vendor_row_time(run: Run) -> int:
    return pq.read_table(run.paths["book"], columns=["timestamp"]).column(0)[0].as_py()


# windows of ~25 s: a checkpoint each; one window for the day: all but the last one (written
# once the inputs are done), in row groups of at most 16
@pytest.mark.parametrize(
    ("chunk_rows", "every_s", "most_in_a_group"),
    [(60_000, 60, 1), (2_000_000, 60, 5), (2_000_000, 5, 16)],
)
def test_a_checkpoint_is_found_by_the_statistics_of_its_row_group(
    runs, tmp_path, chunk_rows, every_s, most_in_a_group
):
    """Checkpoints are written in row groups of at most 16, a checkpoint never split: a reader
    filtering on a typed timestamp keeps the one row group holding it (pyarrow's own pruning
    on the statistics)."""
    out = tmp_path / "out"
    previous = runs["spot08"].out / END_BOOK_FILE
    run(runs["spot09"].paths, out, previous, chunk_rows=chunk_rows,
        checkpoint_every_ns=every_s * 1_000_000_000)  # fmt: skip
    path = out / CHECKPOINTS_FILE
    file = pq.ParquetFile(path)
    groups, per_group = [], []
    for i in range(file.metadata.num_row_groups):
        stats = file.metadata.row_group(i).column(0).statistics
        assert stats is not None and stats.has_min_max
        groups.append((stats.min, stats.max))
        per_group.append(len(file.read_row_group(i, columns=["timestamp"]).column(0).unique()))
    times = pq.read_table(path, columns=["timestamp"]).column(0).unique().to_pylist()
    assert sum(per_group) == len(times) >= 6 and max(per_group) == most_in_a_group
    (fragment,) = ds.dataset(path, format="parquet").get_fragments()
    for t in times:
        literal = pa.scalar(t, pa.timestamp("ns", "UTC"))
        (kept,) = fragment.split_by_row_group(ds.field("timestamp") == literal)
        assert [i for i, (lo, hi) in enumerate(groups) if lo <= t <= hi] == [kept.row_groups[0].id]


def sha256s(out: Path) -> dict[str, str]:
    return {n: hashlib.sha256((out / n).read_bytes()).hexdigest() for n in OUTPUTS}


def test_reconstruction_is_deterministic(runs, tmp_path):
    spot08 = runs["spot08"]
    again = run(spot08.paths, tmp_path / "again")
    assert again == spot08.result
    assert sha256s(tmp_path / "again") == sha256s(spot08.out)  # byte for byte
    run(spot08.paths, tmp_path / "one_window", chunk_rows=2_000_000)
    for name in OUTPUTS:
        assert pq.read_table(tmp_path / "one_window" / name).equals(spot08.table(name)), name


def corrupt_copy(src: Path, dst: Path, row: int, column: str, value: float) -> None:
    table = pq.read_table(src)
    values = table.column(column).to_numpy().copy()
    values[row] = value
    index = table.schema.get_field_index(column)
    table = table.set_column(index, table.schema.field(column), pa.array(values))
    dst.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, dst)


def test_a_corrupted_delta_is_caught_at_its_sequence_number(runs, tmp_path):
    spot09 = runs["spot09"]
    deltas = pq.read_table(spot09.paths["book_delta_v2"])
    vendor = pq.read_table(spot09.paths["book"])
    # a level at the top of the vendor's book, in a diff in the middle of the day
    seq = deltas.column("sequence_number").to_numpy()
    price = deltas.column("price").to_numpy()
    size = deltas.column("size").to_numpy()
    v_seq = vendor.column("sequence_number").to_numpy()
    v_bid = vendor.column("bid_0_price").to_numpy()
    row = next(
        j
        for j in range(seq.size // 2, seq.size)
        if size[j] > 0
        and (k := np.searchsorted(v_seq, seq[j])) < v_seq.size
        and v_seq[k] == seq[j]
        and v_bid[k] == price[j]
    )
    paths = dict(spot09.paths)
    paths["book_delta_v2"] = tmp_path / "lake" / "book_delta_v2.parquet"
    corrupt_copy(spot09.paths["book_delta_v2"], paths["book_delta_v2"], row, "size", size[row] * 2)
    previous = runs["spot08"].out / END_BOOK_FILE
    r = run(paths, tmp_path / "out", previous)
    assert r.vendor_book_rows_compared == spot09.result.vendor_book_rows_compared
    assert r.vendor_book_rows_equal < r.vendor_book_rows_compared
    first = r.first_mismatches[0]
    assert first["sequence_number"] == seq[row]
    assert (first["level"], first["side"]) == (0, "bid")
    assert Decimal(first["ours"]["size"]) == 2 * Decimal(first["vendor"]["size"])
    assert r.level_agreement[0] < 1.0


def test_a_price_shifted_across_the_spread_is_counted_as_crossed(runs, tmp_path):
    spot09 = runs["spot09"]
    deltas = pq.read_table(spot09.paths["book_delta_v2"])
    is_bid = deltas.column("side_is_bid").to_numpy(zero_copy_only=False)
    size = deltas.column("size").to_numpy()
    row = int(np.flatnonzero(is_bid & (size > 0))[1000])
    paths = dict(spot09.paths)
    paths["book_delta_v2"] = tmp_path / "book_delta_v2.parquet"
    price = deltas.column("price").to_numpy()[row]
    corrupt_copy(spot09.paths["book_delta_v2"], paths["book_delta_v2"], row, "price", price + 500)
    r = run(paths, tmp_path / "out", runs["spot08"].out / END_BOOK_FILE)
    assert r.anomalies["crossed_after_event"] > 0  # counted, not raised
    assert r.vendor_book_rows_equal < r.vendor_book_rows_compared


# --- edge cases (synthetic changes to real files) -----------------------------------------------
def with_trades(spot08: Run, tmp_path: Path, **columns: np.ndarray) -> dict[str, Path]:
    """The partition's files with some trade columns replaced."""
    trades = pq.read_table(spot08.paths["trades"])
    for name, values in columns.items():
        index = trades.schema.get_field_index(name)
        trades = trades.set_column(index, trades.schema.field(name), pa.array(values))
    paths = dict(spot08.paths)
    paths["trades"] = tmp_path / "trades.parquet"
    pq.write_table(trades, paths["trades"])
    return paths


def test_a_late_finer_scale_falls_back_to_a_full_scan(runs, tmp_path):
    spot08 = runs["spot08"]
    amount = pq.read_table(spot08.paths["trades"]).column("amount").to_numpy().copy()
    amount[-10] = 0.1234567  # 7 decimals, long after the first batch
    paths = with_trades(spot08, tmp_path, amount=amount)
    r = run(paths, tmp_path / "out", chunk_rows=20_000)
    assert r.plan.startswith("full scan (trades.amount 0.1234567 needs more than 6 decimals")
    assert (r.price_scale, r.size_scale) == (2, 7)
    stream = pq.read_table(tmp_path / "out" / STREAM_FILE)
    sizes = stream.filter(pc.equal(stream.column("event_type"), "trade")).column("size")
    assert sizes.type.scale == 7 and Decimal("0.1234567") in sizes.to_pylist()
    assert r.vendor_book_rows_equal == spot08.result.vendor_book_rows_equal  # book unaffected


@pytest.mark.parametrize(("chunk_rows", "plan"), [(20_000, "full scan"), (40_000, "first")])
def test_rows_out_of_time_order_still_give_a_chronological_stream(runs, tmp_path, chunk_rows, plan):
    """A trade stamped far back: in a later batch than rows already in the stream it needs the
    full scan (its lag sizes the windows); within one batch, sorting the window is enough."""
    spot08 = runs["spot08"]
    timestamp = pq.read_table(spot08.paths["trades"]).column("timestamp").to_numpy().copy()
    timestamp[-5] = timestamp[100]
    r = run(
        with_trades(spot08, tmp_path, timestamp=timestamp), tmp_path / "out", chunk_rows=chunk_rows
    )
    assert r.plan.startswith(plan) and r.anomalies["input_rows_out_of_time_order"] == 1
    stream = pq.read_table(tmp_path / "out" / STREAM_FILE)
    assert (np.diff(stream.column("event_time").cast(pa.int64()).to_numpy()) >= 0).all()
    assert r.vendor_book_rows_equal == spot08.result.vendor_book_rows_equal


def test_previous_day_book_of_another_market_is_refused(runs, tmp_path):
    with pytest.raises(ReconstructionError, match="BINANCE_FUTURES.BTC-USDT-PERP"):
        run(runs["spot09"].paths, tmp_path / "out", runs["futures08"].out / END_BOOK_FILE)


def test_cold_start_without_book_rows_says_why(runs, tmp_path):
    paths = dict(runs["spot08"].paths)
    empty = pq.read_table(paths["book"]).slice(0, 0)
    paths["book"] = tmp_path / "book.parquet"
    pq.write_table(empty, paths["book"])
    with pytest.raises(ReconstructionError, match="cannot seed the book"):
        run(paths, tmp_path / "out")
    assert not (tmp_path / "out" / STREAM_FILE).exists()


def test_trades_may_be_missing(runs, tmp_path):
    paths = dict(runs["futures08"].paths)
    paths["trades"] = None
    r = run(paths, tmp_path / "out")
    assert r.trades == 0 and r.book_updates == runs["futures08"].result.book_updates
    assert r.vendor_book_rows_equal == runs["futures08"].result.vendor_book_rows_equal
    shutil.rmtree(tmp_path / "out")


# --- the price-range plans and the gated anomalies -----------------------------------------------
def rewrite(src: Path, dst: Path, statistics: bool = True, **columns: np.ndarray) -> Path:
    """A copy of a real file with some columns replaced, with or without Parquet statistics."""
    table = pq.read_table(src)
    for name, values in columns.items():
        index = table.schema.get_field_index(name)
        table = table.set_column(index, table.schema.field(name), pa.array(values))
    dst.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, dst, write_statistics=statistics)
    return dst


def test_inputs_without_statistics_use_a_window_around_the_seed_and_give_the_same_book(
    runs, tmp_path
):
    spot09 = runs["spot09"]
    paths = dict(spot09.paths)
    for table in ("book_delta_v2", "book"):
        paths[table] = rewrite(spot09.paths[table], tmp_path / f"{table}.parquet", False)
    assert pq.read_metadata(paths["book_delta_v2"]).row_group(0).column(4).statistics is None
    r = run(paths, tmp_path / "out", runs["spot08"].out / END_BOOK_FILE)
    assert r.plan.startswith("first batches")  # no full scan: the seed's window held every price
    assert r.anomalies == spot09.result.anomalies
    assert (
        r.vendor_book_rows_equal
        == r.vendor_book_rows_compared
        == (spot09.result.vendor_book_rows_compared)
    )
    assert pq.read_table(tmp_path / "out" / STREAM_FILE).equals(spot09.table(STREAM_FILE))


def far_prices(spot09: Run, rows: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """The deltas' prices with a few mid-day rows moved twenty times higher: the day's price range
    is then wider than the dense book (MAX_DENSE_TICKS per side). Returns (prices, rows moved)."""
    price = pq.read_table(spot09.paths["book_delta_v2"]).column("price").to_numpy().copy()
    moved = np.arange(price.size // 2, price.size // 2 + rows)
    price[moved] *= 20
    return price, moved


@pytest.mark.parametrize(
    ("statistics", "plan"), [(True, "first batches"), (False, "full scan (book_delta_v2 prices")]
)
def test_levels_outside_a_wide_price_range_are_counted_and_placed(runs, tmp_path, statistics, plan):
    """A range too wide for the dense book gets a window around the seed; the moved levels fall
    outside it. With statistics the quick plan knows the range; without, the first price outside
    the seed's window sends it to a full scan, which finds the same wide range."""
    spot09 = runs["spot09"]
    price, moved = far_prices(spot09)
    paths = dict(spot09.paths)
    paths["book_delta_v2"] = rewrite(
        spot09.paths["book_delta_v2"], tmp_path / "book_delta_v2.parquet", statistics, price=price
    )
    r = run(paths, tmp_path / "out", runs["spot08"].out / END_BOOK_FILE)
    assert r.plan.startswith(plan)
    assert r.anomalies["out_of_range"] == moved.size
    deltas = pq.read_table(spot09.paths["book_delta_v2"])
    first = r.anomaly_first["out_of_range"]
    assert first["sequence_number"] == deltas.column("sequence_number")[int(moved[0])].as_py()
    assert first["event_time_ns"] == deltas.column("timestamp")[int(moved[0])].as_py()
    assert r.events == spot09.result.events  # the rows stay in the stream


def test_a_sequence_regression_is_refused_counted_and_placed(runs, tmp_path):
    """A diff stamped with an older sequence number than one already applied is never applied:
    its rows carry the book as it was before them, and the first one is named."""
    spot09 = runs["spot09"]
    deltas = pq.read_table(spot09.paths["book_delta_v2"])
    seq = deltas.column("sequence_number").to_numpy().copy()
    time = deltas.column("timestamp").to_numpy()
    # a mid-day diff strictly later than the diff before it, made older than that diff
    starts = np.flatnonzero(np.diff(seq) != 0) + 1
    start = int(next(s for s in starts[starts.size // 2 :] if time[s] > time[s - 1]))
    end = int(starts[np.searchsorted(starts, start) + 1])
    previous = int(seq[start - 1])
    seq[start:end] = previous - 1
    paths = dict(spot09.paths)
    paths["book_delta_v2"] = rewrite(
        spot09.paths["book_delta_v2"], tmp_path / "book_delta_v2.parquet", sequence_number=seq
    )
    r = run(paths, tmp_path / "out", runs["spot08"].out / END_BOOK_FILE)
    assert r.anomalies["sequence_regressions"] == end - start
    assert r.anomaly_first["sequence_regressions"] == {
        "event_time_ns": int(time[start]),
        "sequence_number": previous - 1,
        "after_sequence_number": previous,
    }
    stream = pq.read_table(tmp_path / "out" / STREAM_FILE)
    book = stream.filter(pc.equal(stream.column("event_type"), "book"))
    refused = np.flatnonzero(book.column("sequence_number").to_numpy() == previous - 1)
    assert refused.size == end - start
    best = ("best_bid_price", "best_bid_size", "best_ask_price", "best_ask_size")
    before = {c: book.column(c)[int(refused[0]) - 1].as_py() for c in best}
    for row in refused:  # the book did not move on any refused row
        assert {c: book.column(c)[int(row)].as_py() for c in best} == before
