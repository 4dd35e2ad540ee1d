"""rlx_assets.read on the real sample days, certified and reconstructed by the chain itself."""

from __future__ import annotations

import bisect
import datetime as dt
import json
import random
import re
import shutil
import uuid
from decimal import Decimal
from pathlib import Path

import boto3
import dagster as dg
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from polars.testing import assert_frame_equal

from rlx_assets import read
from rlx_assets.bench import build_tiled_partition
from rlx_assets.book.reconstruct import CHECKPOINTS_FILE, reconstruct_partition
from rlx_assets.book.reference import ReferenceBook
from rlx_assets.defs.reconstruction.checks import vendor_book_agreement_check
from rlx_assets.defs.resources import RlxEnvironment
from rlx_assets.staging import lake_relative_path
from rlx_assets.validation.certificate import verified_certificate
from rlx_assets.validation.zones import ready_path
from rlx_assets_tests.conftest import TEST_SECRET, built_once_per_run, dagster_test_instance
from rlx_assets_tests.export.sample_chain import (
    CHAIN,
    SPOT,
    SPOT_DAYS,
    certified_sample_data,
    copy_of,
    run_chain,
)

DAY8, DAY9 = dt.date(2024, 8, 8), dt.date(2024, 8, 9)
MIDNIGHT = read.to_ns(DAY9)


@pytest.fixture(scope="session")
def certified(sample_lake, tmp_path_factory) -> Path:
    return certified_sample_data(sample_lake, tmp_path_factory)


def day_file(data: Path, day: dt.date, name: str) -> Path:
    return data / "reconstruction" / SPOT / day.isoformat() / name


# --- stream, trades, snapshots ------------------------------------------------------------------
def test_stream_across_two_days_equals_the_two_days_files_concatenated(certified):
    files = pl.concat(
        [pl.read_parquet(day_file(certified, d, "stream.parquet")) for d in (DAY8, DAY9)]
    )
    frame = read.stream(SPOT, "2024-08-08", "2024-08-09", data_dir=certified)
    assert isinstance(frame, pl.LazyFrame)
    got = frame.collect()
    assert got.height == files.height > 0
    assert got.equals(files)
    assert isinstance(got.schema["price"], pl.Decimal)  # exact decimals kept
    # dates as date objects and one day alone (end omitted) select the same rows
    assert (
        read.stream(SPOT, DAY9, data_dir=certified)
        .collect()
        .equals(pl.read_parquet(day_file(certified, DAY9, "stream.parquet")))
    )


def test_a_time_range_keeps_only_its_rows_across_midnight(certified):
    start, end = "2024-08-08T23:59:30", "2024-08-09T00:00:30"
    got = read.stream(SPOT, start, end, data_dir=certified, columns=["event_time", "price"])
    got = got.collect()
    assert got.columns == ["event_time", "price"]
    times = got["event_time"].dt.epoch("ns")
    assert times.min() >= read.to_ns(start) and times.max() < read.to_ns(end)
    assert (times < MIDNIGHT).any() and (times >= MIDNIGHT).any()
    whole = read.stream(SPOT, DAY8, DAY9, data_dir=certified).collect()
    inside = whole.filter(
        (pl.col("event_time").dt.epoch("ns") >= read.to_ns(start))
        & (pl.col("event_time").dt.epoch("ns") < read.to_ns(end))
    )
    assert got.height == inside.height


def test_trades_and_snapshots_are_the_days_rows(certified):
    trades = read.trades(SPOT, DAY8, DAY9, data_dir=certified).collect()
    streams = pl.concat(
        [pl.read_parquet(day_file(certified, d, "stream.parquet")) for d in (DAY8, DAY9)]
    )
    expected = streams.filter(pl.col("event_type") == "trade").select(read.TRADE_COLUMNS)
    assert trades.equals(expected) and trades.height > 0
    snaps = read.snapshots(SPOT, DAY9, data_dir=certified).collect()
    assert snaps.equals(pl.read_parquet(day_file(certified, DAY9, "snapshots_1s.parquet")))
    vendor = read.snapshots(SPOT, DAY9, data_dir=certified, every="vendor").collect()
    assert vendor["matches_vendor"].all()


# --- refusals ------------------------------------------------------------------------------------
def test_a_day_whose_certificate_changed_after_its_reconstruction_is_refused_as_stale(
    certified, tmp_path
):
    data = copy_of(certified, tmp_path / "data")
    certificate = data / "certificates" / SPOT / "2024-08-08.json"
    content = json.loads(certificate.read_text())
    content["issued_at"] = "2030-01-01T00:00:00+00:00"  # re-issued after the reconstruction
    certificate.write_text(json.dumps(content, indent=2))
    with pytest.raises(read.DataNotCurrentError) as refused:
        read.stream(SPOT, DAY8, DAY9, data_dir=data)
    message = str(refused.value)
    assert refused.value.days == [DAY8]
    assert "2024-08-08: the reconstruction was built from certificate" in message
    assert "stale" in message
    assert "--job daily_chain --partition '2024-08-08|BINANCE.BTC-USDT'" in message
    with pytest.raises(read.DataNotCurrentError, match="stale"):
        read.book_at(SPOT, "2024-08-08T23:58:00", data_dir=data)
    # the current day is still served, alone
    kept = read.stream(SPOT, DAY8, DAY9, data_dir=data, allow_missing=True).collect()
    assert kept.equals(pl.read_parquet(day_file(data, DAY9, "stream.parquet")))


def test_missing_days_raise_one_error_naming_every_one_and_how_to_materialise_it(certified):
    with pytest.raises(read.DataNotCurrentError) as refused:
        read.stream(SPOT, "2024-08-06", "2024-08-10", data_dir=certified)
    assert refused.value.days == [dt.date(2024, 8, 6), dt.date(2024, 8, 7), dt.date(2024, 8, 10)]
    message = str(refused.value)
    for day in ("2024-08-06", "2024-08-07", "2024-08-10"):
        assert f"{day}: not reconstructed" in message
        assert (
            f"dg launch -m rlx_assets.definitions --job daily_chain --partition '{day}|{SPOT}'"
            in message
        )
    assert "2024-08-08" not in message and "2024-08-09" not in message
    skipped = read.stream(SPOT, "2024-08-06", "2024-08-10", data_dir=certified, allow_missing=True)
    assert skipped.collect().equals(read.stream(SPOT, DAY8, DAY9, data_dir=certified).collect())
    with pytest.raises(read.DataNotCurrentError, match="2024-08-01: not reconstructed"):
        read.stream(SPOT, "2024-08-01", data_dir=certified, allow_missing=True)  # nothing left


def test_a_reconstruction_that_does_not_name_its_certificate_is_refused(certified, tmp_path):
    data = copy_of(certified, tmp_path / "data")
    summary_path = day_file(data, DAY9, "summary.json")
    summary = json.loads(summary_path.read_text())
    del summary["certificate_sha256"]  # e.g. built by hand, outside the pipeline
    summary_path.write_text(json.dumps(summary))
    with pytest.raises(read.DataNotCurrentError, match="does not record the certificate"):
        read.trades(SPOT, DAY9, data_dir=data)


def test_verify_refuses_a_day_whose_certified_file_changed(certified, tmp_path):
    data = copy_of(certified, tmp_path / "data")
    ready = ready_path(read.data_layout(data), "trades", SPOT, DAY9)
    ready.write_bytes(ready.read_bytes() + b"x")
    assert read.stream(SPOT, DAY9, data_dir=data).collect().height > 0  # the cheap check only
    with pytest.raises(read.DataNotCurrentError, match="changed after certification"):
        read.stream(SPOT, DAY9, data_dir=data, verify=True)
    assert read.stream(SPOT, DAY8, data_dir=data, verify=True).collect().height > 0


# --- the book at an instant ----------------------------------------------------------------------
def _ticks(value: Decimal, scale: int) -> int:
    return int(value.scaleb(scale))


def reference_books(certified: Path, lake: Path, day: dt.date, instants: list[int]):
    """Per instant, the whole book after every event with event_time <= instant, rebuilt with
    the pure-Python reference book from the day's start: the previous day's end book, or (a cold
    day) the vendor's first book row of the lake; the stream's book rows applied when their
    sequence number is above the seed's and not below one applied (the kernel's rule)."""
    summary = json.loads(day_file(certified, day, "summary.json").read_text())
    ps, ss = summary["price_scale"], summary["size_scale"]
    book = ReferenceBook()
    if summary["seeded_from"] == "previous_day":
        seed = pq.read_table(certified / summary["seed_book"]).to_pylist()
        for level in seed:
            book.apply(
                level["side"] == "bid", _ticks(level["price"], ps), _ticks(level["size"], ss)
            )
        known_from = None
    else:
        vendor = pq.read_table(lake / lake_relative_path("book", "BINANCE", "BTC-USDT", day))
        first = vendor.slice(0, 1).to_pylist()[0]
        for side in ("bid", "ask"):
            for i in range(20):
                price, size = first[f"{side}_{i}_price"], first[f"{side}_{i}_size"]
                if price == price and size == size:  # NaN: no level
                    book.apply(
                        side == "bid",
                        _ticks(Decimal(repr(price)), ps),
                        _ticks(Decimal(repr(size)), ss),
                    )
        known_from = first["timestamp"]
    seed_seq, applied_max = summary["seed_sequence"], -1
    rows = (
        pl.scan_parquet(day_file(certified, day, "stream.parquet"))
        .filter(pl.col("event_type") == "book")
        .select(  # decimals as integer ticks and lots at the day's scales (their physical ints)
            pl.col("event_time").dt.epoch("ns"),
            pl.col("side") == "bid",
            *(
                pl.col(c).cast(pl.Decimal(38, s)).to_physical().cast(pl.Int64)
                for c, s in (("price", ps), ("size", ss))
            ),
            "sequence_number",
        )  # fmt: skip
        .collect()
    )
    times, is_bid, ticks, lots, seqs = (rows[c].to_list() for c in rows.columns)
    books, r = {}, 0
    for instant in sorted(instants):
        while r < len(times) and times[r] <= instant:
            if seqs[r] > seed_seq and seqs[r] >= applied_max:
                book.apply(is_bid[r], ticks[r], lots[r])
                applied_max = seqs[r]
            r += 1
        books[instant] = book.levels()
    return books, known_from, (ps, ss)


def as_levels(frame: pl.DataFrame, scales) -> tuple[list, list]:
    ps, ss = scales
    out = {"bid": [], "ask": []}
    for side, level, price, size in frame.iter_rows():
        assert level == len(out[side])
        out[side].append((_ticks(price, ps), _ticks(size, ss)))
    return out["bid"], out["ask"]


def multi_row_diff_times(certified: Path, day: dt.date, n: int) -> list[int]:
    rows = pl.read_parquet(day_file(certified, day, "stream.parquet")).filter(
        pl.col("event_type") == "book"
    )
    diffs = rows.group_by("sequence_number").agg(pl.len(), pl.col("event_time").first())
    times = diffs.filter(pl.col("len") > 3)["event_time"].dt.epoch("ns").sort().to_list()
    return times[:: max(1, len(times) // n)][:n]


def test_book_at_equals_the_reference_book_at_50_instants(certified, sample_lake):
    rng = random.Random(15)
    instants: dict[dt.date, list[int]] = {}
    for day in (DAY8, DAY9):
        stream = pl.read_parquet(day_file(certified, day, "stream.parquet"), columns=["event_time"])
        first, last = (
            stream["event_time"].dt.epoch("ns").min(),
            stream["event_time"].dt.epoch("ns").max(),
        )
        diffs = multi_row_diff_times(certified, day, 4)
        picks = [rng.randrange(first, last + 1) for _ in range(17)]
        picks += diffs + [t - 1 for t in diffs]  # with a whole multi-row diff, and just before it
        instants[day] = picks
    instants[DAY8] = [t for t in instants[DAY8] if t > read.to_ns("2024-08-08T23:54:16")]
    # right after midnight: the previous day's end book, then its first rows
    first9 = (
        pl.read_parquet(day_file(certified, DAY9, "stream.parquet"))["event_time"]
        .dt.epoch("ns")
        .min()
    )
    instants[DAY9] += [MIDNIGHT, MIDNIGHT + 1, first9, first9 + 1_000_000]
    assert sum(len(v) for v in instants.values()) >= 50
    checked = 0
    for day, times in instants.items():
        books, _, scales = reference_books(certified, sample_lake, day, times)
        for t in times:
            bids, asks = books[t]
            top = as_levels(read.book_at(SPOT, t, data_dir=certified), scales)
            assert top == (bids[:20], asks[:20]), f"top 20 at {t}"
            assert as_levels(read.book_at(SPOT, t, depth=3, data_dir=certified), scales) == (
                bids[:3],
                asks[:3],
            )
            checked += 1
        for t in times[::6]:  # the whole book too
            full = read.book_at(SPOT, t, depth=None, data_dir=certified)
            assert as_levels(full, scales) == books[t], f"full book at {t}"
    assert checked >= 50


def test_book_at_agrees_with_the_best_prices_the_stream_carries(certified):
    stream = read.stream(SPOT, DAY9, data_dir=certified).collect()
    last = stream.filter(pl.col("update_complete")).tail(1).row(0, named=True)
    book = read.book_at(SPOT, last["event_time"], data_dir=certified)
    best = {side: book.filter((pl.col("side") == side) & (pl.col("level") == 0)).row(0, named=True)
            for side in ("bid", "ask")}  # fmt: skip
    assert (best["bid"]["price"], best["bid"]["size"]) == (
        last["best_bid_price"],
        last["best_bid_size"],
    )
    assert (best["ask"]["price"], best["ask"]["size"]) == (
        last["best_ask_price"],
        last["best_ask_size"],
    )
    end_book = pl.read_parquet(
        day_file(certified, DAY9, "end_book.parquet"), columns=["side", "price", "size"]
    )
    full = read.book_at(SPOT, "2024-08-09T23:59:59.999999", depth=None, data_dir=certified)
    assert full.select("side", "price", "size").equals(end_book)


def test_book_at_before_a_cold_days_seed_says_the_book_is_not_known(certified):
    with pytest.raises(read.BookNotKnownError, match="not known before 2024-08-08T23:54:1"):
        read.book_at(SPOT, "2024-08-08T23:54:00", data_dir=certified)
    with pytest.raises(ValueError, match="depth=0"):
        read.book_at(SPOT, "2024-08-09T00:01:00", depth=0, data_dir=certified)


# --- from full-book checkpoints -----------------------------------------------------------------
CHECKPOINT_FIELDS = ("checkpoints", "checkpoint_every_ns", "first_checkpoint_ns")


def summary_of(data: Path, day: dt.date) -> dict:
    return json.loads(day_file(data, day, "summary.json").read_text())


def without_checkpoints(certified: Path, target: Path) -> Path:
    """A copy of the data root as the reconstruction wrote it before checkpoints existed: no
    checkpoints file, no checkpoint fields in the summaries."""
    data = copy_of(certified, target)
    for day in (DAY8, DAY9):
        day_file(data, day, CHECKPOINTS_FILE).unlink()
        summary = summary_of(data, day)
        for key in CHECKPOINT_FIELDS:
            del summary[key]
        day_file(data, day, "summary.json").write_text(json.dumps(summary))
    return data


def book_or_refusal(data: Path, t: int, depth: int | None):
    try:
        return read.book_at(SPOT, t, depth=depth, data_dir=data)
    except read.BookNotKnownError as refused:
        return str(refused)


def test_book_at_from_checkpoints_equals_the_full_replay_of_a_day_without_them(certified, tmp_path):
    """At every checkpoint, 1 ns before and after it, random instants, the first and last
    second of each day, before the cold day's seed and after the last event, the book from the
    checkpoints equals (values and types) the book of the same days reconstructed before
    checkpoints existed: read, with a warning, by replaying every book row of the day."""
    legacy = without_checkpoints(certified, tmp_path / "legacy")
    rng = random.Random(25)
    instants = []
    for day in (DAY8, DAY9):
        summary = summary_of(certified, day)
        first, step = summary["first_checkpoint_ns"], summary["checkpoint_every_ns"]
        for k in range(summary["checkpoints"]):
            instants += [first + k * step + d for d in (-1, 0, 1)]
        start, end = summary["first_event_ns"], summary["last_event_ns"]
        instants += [rng.randrange(start, end + 1) for _ in range(12)] + [start, end, end + 1]
        midnight = read.to_ns(day)
        instants += [midnight, midnight + 999_999_999]  # the first second of the day
        instants += [midnight + read.NS_PER_DAY - 10**9, midnight + read.NS_PER_DAY - 1]
    instants.append(read.to_ns("2024-08-08T23:54:00"))  # before the cold day's seed
    refused = compared = 0
    for t in instants:
        for depth in (None, 20):
            ours = book_or_refusal(certified, t, depth)
            with pytest.warns(UserWarning, match="reconstructed without full-book checkpoints"):
                theirs = book_or_refusal(legacy, t, depth)
            if isinstance(theirs, str):
                assert ours == theirs and "not known before" in theirs, t
                refused += 1
            else:
                assert_frame_equal(ours, theirs)
                compared += 1
    assert refused == 8 and compared >= 140  # 4 instants before the cold day's seed


def test_a_missing_checkpoint_falls_back_to_the_full_replay_with_a_warning(certified, tmp_path):
    """A checkpoint gone from the file, or the whole file gone: the book is still right (the
    whole day's rows), and the warning says what is missing."""
    data = copy_of(certified, tmp_path / "data")
    path = day_file(data, DAY9, CHECKPOINTS_FILE)
    table = pq.read_table(path)
    at = summary_of(data, DAY9)["first_checkpoint_ns"] + 60_000_000_000
    times = table.column("timestamp").cast(pa.int64())
    pq.write_table(table.filter(pc.not_equal(times, at)), path)
    expected = read.book_at(SPOT, at + 10**9, depth=None, data_dir=certified)
    with pytest.warns(UserWarning, match=re.escape(f"has no checkpoint at {read._iso(at)}")):
        assert_frame_equal(read.book_at(SPOT, at + 10**9, depth=None, data_dir=data), expected)
    path.unlink()
    with pytest.warns(UserWarning, match="its checkpoints are missing"):
        assert_frame_equal(read.book_at(SPOT, at + 10**9, depth=None, data_dir=data), expected)


def zero_row_groups(path: Path, keep) -> int:
    """Overwrite with zeros the pages of every row group of ``path`` for which ``keep(its
    min, max timestamp)`` is false (a reader that decoded them would fail); how many."""
    meta = pq.read_metadata(path)
    zeroed = 0
    with open(path, "r+b") as handle:
        for i in range(meta.num_row_groups):
            group = meta.row_group(i)
            stats = group.column(0).statistics
            if keep(read.to_ns(stats.min), read.to_ns(stats.max)):
                continue
            for j in range(group.num_columns):
                chunk = group.column(j)
                start = chunk.dictionary_page_offset or chunk.data_page_offset
                handle.seek(start)
                handle.write(bytes(chunk.total_compressed_size))
            zeroed += 1
    return zeroed


def test_book_at_reads_only_the_row_groups_of_its_checkpoint_and_the_rows_since(
    certified, tmp_path
):
    """The day reconstructed again in small windows (many row groups); every row group of the
    stream and the checkpoints outside [checkpoint, instant] overwritten with zeros: the book
    is still the same (the scans skip them on their statistics)."""
    data = copy_of(certified, tmp_path / "data")
    layout = read.data_layout(data)
    inputs = verified_certificate(layout, SPOT, DAY9).inputs
    redone = tmp_path / "redone"
    seed = day_file(data, DAY8, "end_book.parquet")
    reconstruct_partition(
        inputs["trades"], inputs["book_delta_v2"], inputs["book"], redone, seed,
        chunk_rows=60_000,
    )  # fmt: skip
    for name in ("stream.parquet", CHECKPOINTS_FILE):
        shutil.copy(redone / name, day_file(data, DAY9, name))
    at = summary_of(data, DAY9)["first_checkpoint_ns"] + 2 * 60_000_000_000
    t = at + 30 * 10**9
    expected = {d: read.book_at(SPOT, t, depth=d, data_dir=certified) for d in (None, 20)}
    stream_groups = pq.read_metadata(day_file(data, DAY9, "stream.parquet")).num_row_groups
    zeroed = zero_row_groups(
        day_file(data, DAY9, "stream.parquet"), lambda lo, hi: hi >= at and lo <= t
    )
    assert stream_groups >= 8 and zeroed >= stream_groups - 4
    checkpoints = day_file(data, DAY9, CHECKPOINTS_FILE)
    groups = pq.read_metadata(checkpoints).num_row_groups
    zeroed = zero_row_groups(checkpoints, lambda lo, hi: lo <= at <= hi)
    assert zeroed == groups - 1 >= 4
    for depth, book in expected.items():
        assert_frame_equal(read.book_at(SPOT, t, depth=depth, data_dir=data), book)


# --- an s3:// data root -------------------------------------------------------------------------
# --- a multi-hour generated day ------------------------------------------------------------------
TILED_EVENTS = 2_900_000  # the sample's 6 spot minutes tiled 21 times: two hours
TILED_START_NS = 20_472_000_000  # puts 5 book rows' times right on a minute (asserted)


@pytest.fixture(scope="session")
def tiled_day(sample_lake, tmp_path_factory) -> tuple[Path, Path]:
    """(data root, lake) of a generated two-hour spot day, certified and reconstructed by the
    chain: the real sample partition tiled in time, sequence numbers, trade ids and drifting
    prices by ``rlx bench reconstruct``'s generator (synthetic, for scale only)."""
    root = built_once_per_run(
        tmp_path_factory, "tiled_day", lambda root: _build_tiled_day(sample_lake, root)
    )
    return root / "data", root / "lake"


def _build_tiled_day(sample_lake: Path, root: Path) -> None:
    build_tiled_partition(sample_lake, root / "lake", TILED_EVENTS, start_ns=TILED_START_NS)
    rlx = RlxEnvironment(
        data_dir=str(root / "data"), lake_uri=str(root / "lake"), gate_profile="sample"
    )
    # The tiles' vendor `book` rows do not pass the vendor-book gate (the generator is made for
    # throughput); agreement with the vendor is not what this day is for.
    selection = CHAIN - dg.AssetSelection.checks(vendor_book_agreement_check)
    with dagster_test_instance() as instance:
        assert run_chain(rlx, DAY8.isoformat(), instance, selection), "the tiled day's chain failed"


def book_event_times(data: Path, day: dt.date) -> list[int]:
    """The distinct exchange times of the day's book rows, in order."""
    rows = pl.scan_parquet(day_file(data, day, "stream.parquet"))
    times = rows.filter(pl.col("event_type") == "book").select(pl.col("event_time").dt.epoch("ns"))
    return times.unique().sort("event_time").collect()["event_time"].to_list()


def test_book_at_equals_the_reference_book_at_random_instants_of_a_two_hour_day(tiled_day):
    """On a generated two-hour day, at random instants, at checkpoint minutes, 1 ns before and
    after them, at the book rows just before and after them, in the first minute (before any
    checkpoint, from the cold day's seed) and after the last event, the whole book and its top
    20 equal the pure-Python reference book replaying every book row of the day up to the
    instant; before the seed the book is refused as not known."""
    data, lake = tiled_day
    summary = summary_of(data, DAY8)
    start, end = summary["first_event_ns"], summary["last_event_ns"]
    assert end - start >= 2 * 3_600 * 10**9, "not a two-hour day"
    first, step = summary["first_checkpoint_ns"], summary["checkpoint_every_ns"]
    checkpoints = [first + k * step for k in range(summary["checkpoints"])]
    assert len(checkpoints) >= 120
    times = book_event_times(data, DAY8)
    rng = random.Random(2025)
    instants = [rng.randrange(start, end + 1) for _ in range(30)]
    for at in [checkpoints[0], checkpoints[-1], *rng.sample(checkpoints[1:-1], 12)]:
        i = bisect.bisect_left(times, at)  # the book rows right before and from the checkpoint
        instants += [t + d for t in (at, *times[i - 1 : i + 1]) for d in (-1, 0, 1)]
    on_checkpoints = [t for t in times if t % step == 0 and t >= first]
    assert len(on_checkpoints) >= 3, "no book rows right at a checkpoint time"
    instants += [t + d for t in on_checkpoints for d in (-1, 0, 1)]
    midnight = read.to_ns(DAY8)
    instants += [times[0], times[1], end, end + 1, midnight + read.NS_PER_DAY - 1]
    instants += [rng.randrange(start, first) for _ in range(6)] + [first - 1]  # the first minute
    books, known_from, scales = reference_books(data, lake, DAY8, instants)
    instants += [midnight, known_from - 1]  # before the cold day's seed
    assert start <= known_from < first

    compared = 0
    for t in sorted(set(instants)):
        if t < known_from:
            with pytest.raises(read.BookNotKnownError, match="not known before"):
                read.book_at(SPOT, t, depth=None, data_dir=data)
            continue
        bids, asks = books[t]
        whole = read.book_at(SPOT, t, depth=None, data_dir=data)
        assert as_levels(whole, scales) == (bids, asks), f"whole book at {t}"
        top = read.book_at(SPOT, t, depth=20, data_dir=data)
        assert as_levels(top, scales) == (bids[:20], asks[:20]), f"top 20 at {t}"
        compared += 1
    assert compared >= 120


def test_the_same_calls_read_a_data_root_on_s3(
    certified, s3_server, sample_lake, tmp_path, monkeypatch
):
    """The chain writes the two days into a bucket (local S3 server); a reader with an empty
    working copy of its own gets the same stream and book as from the local data root."""
    monkeypatch.setenv("RLX_DATA_S3_ENDPOINT_URL", s3_server.endpoint_url)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIARLXTESTKEY000001")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", TEST_SECRET)
    bucket = f"rlx-read-{uuid.uuid4().hex[:12]}"
    boto3.client("s3", endpoint_url=s3_server.endpoint_url, region_name="eu-west-1").create_bucket(
        Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": "eu-west-1"}
    )
    s3_server.app.faults.clear()
    uri = f"s3://{bucket}/rlx"
    monkeypatch.setenv("RLX_WORK_DIR", str(tmp_path / "writer"))
    rlx = RlxEnvironment(data_dir=uri, lake_uri=str(sample_lake), gate_profile="sample")
    with dagster_test_instance() as instance:
        for day in SPOT_DAYS:
            assert run_chain(rlx, day, instance), day

    monkeypatch.setenv("RLX_WORK_DIR", str(tmp_path / "reader"))  # nothing local yet
    from_s3 = read.stream(SPOT, DAY8, DAY9, data_dir=uri).collect()
    local = read.stream(SPOT, DAY8, DAY9, data_dir=certified).collect()
    assert from_s3.height == local.height > 0
    assert from_s3.equals(local)
    instant = "2024-08-09T00:03:07.250"
    assert read.book_at(SPOT, instant, data_dir=uri).equals(
        read.book_at(SPOT, instant, data_dir=certified)
    )
    with pytest.raises(read.DataNotCurrentError):
        read.stream(SPOT, "2024-08-10", data_dir=uri).collect()
