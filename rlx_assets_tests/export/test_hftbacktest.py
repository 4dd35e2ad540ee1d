# ruff: noqa: E501 - the released digests below are one per line
"""`rlx export hftbacktest` on the real sample days: the documented format, the day's book, the
released bytes at any batch size; synthetic receive times for the event order, a tiled day for
the memory."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from rlx_assets.cli import main
from rlx_assets.export import hftbacktest
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


def export(data: Path, day: str, out: Path, *options: str):
    result = CliRunner().invoke(
        main,
        ["export", "hftbacktest", "--market", SPOT, "--date", day, "--out", str(out),
         "--data-dir", str(data), *options],
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


# SHA-256 of the files the export wrote on the sample before it streamed (commit 7162c66: the
# whole array in memory, then np.savez_compressed; this machine's zlib), per day and
# --base-latency-ns: the streamed writer must not change a byte.
RELEASED_NPZ = {
    ("2024-08-08", 0): "aef9729da0fdb80539662b96eeafcd1ea3da0090182aabf99f0249bede17a427",
    ("2024-08-08", 1_234_567): "26414707fc39b256c77b433ea3d025fe40a3c1d50a6cd6dde4321d5221152d40",
    ("2024-08-09", 0): "5da95b4cc3de3b58e89aa22e8ac245b49fb3f459cd40fe7df9e513cda3001530",
    ("2024-08-09", 1_234_567): "059be703636d4ea60d2788b8c4388fd9de83365186d1c60e537699c3d6d96c65",
}  # fmt: skip


@pytest.mark.parametrize("small", [False, True], ids=["default-sizes", "997-rows-a-batch"])
def test_the_file_is_byte_identical_to_the_released_export_at_any_batch_size(
    certified, tmp_path, monkeypatch, small
):
    if small:  # rows wait for their local turn across ~190 batch ends, chunks end mid-day
        monkeypatch.setattr(hftbacktest, "BATCH_ROWS", 997)
        monkeypatch.setattr(hftbacktest, "CHUNK_EVENTS", 1009)
    found = {}
    for day, latency in RELEASED_NPZ:
        out = tmp_path / f"{day}-{latency}.npz"
        result = export(certified, day, out, "--base-latency-ns", str(latency))
        assert result.exit_code == 0, result.output
        found[day, latency] = hashlib.sha256(out.read_bytes()).hexdigest()
    assert found == RELEASED_NPZ


def correct_event_order(events: np.ndarray) -> np.ndarray:
    """hftbacktest's correct_event_order (hftbacktest.data.validation), written out plainly over
    the whole array: the rows by exch_ts and by local_ts (stable), merged; a row at the head of
    both orders once, with both flags (hftbacktest tells it by equal times, here by row)."""
    by_exch = np.argsort(events["exch_ts"], kind="stable").tolist()
    by_local = np.argsort(events["local_ts"], kind="stable").tolist()
    exch, local = events["exch_ts"].tolist(), events["local_ts"].tolist()
    rows, flags, e, lo, n = [], [], 0, 0, len(events)
    while e < n or lo < n:
        x, y = by_exch[e] if e < n else None, by_local[lo] if lo < n else None
        if x is not None and x == y:
            rows.append(x), flags.append(EXCH | LOCAL)
            e, lo = e + 1, lo + 1
        elif y is None or (
            x is not None and (exch[x] < exch[y] or (exch[x] == exch[y] and local[x] <= local[y]))
        ):
            rows.append(x), flags.append(EXCH)
            e += 1
        else:
            rows.append(y), flags.append(LOCAL)
            lo += 1
    out = events[rows]
    out["ev"] |= np.array(flags, np.uint64)
    return out


def set_column(path: Path, name: str, values: np.ndarray) -> None:
    table = pq.read_table(path)
    column = pa.array(values).cast(table.schema.field(name).type)
    pq.write_table(table.set_column(table.schema.get_field_index(name), name, column), path)


def test_receive_times_in_any_disorder_are_merged_as_correct_event_order(
    certified, tmp_path, monkeypatch
):
    """Synthetic edge case: the sample day's receive times replaced by ones 0.3 s early to 2 s
    late on the millisecond (ties in both times), 40 rows a minute late and one, mid-day, 5 s
    early (the first pass assumed 0.3 s at most and counts again): exported 997 rows a batch,
    the array is hftbacktest's correct_event_order over the whole day at once."""
    data = copy_of(certified, tmp_path / "data")
    path = data / "reconstruction" / SPOT / "2024-08-09" / "stream.parquet"
    stream = pl.read_parquet(path)
    exch = stream["event_time"].dt.epoch("ns").to_numpy()
    rng = np.random.default_rng(25)
    latency = rng.integers(-300, 2_000, exch.size) * 1_000_000
    latency[rng.choice(exch.size, 40, replace=False)] += 60_000_000_000
    latency[exch.size // 2] = -5_000_000_000
    received = (exch // 1_000_000) * 1_000_000 + latency
    set_column(path, "received_time", received)
    monkeypatch.setattr(hftbacktest, "BATCH_ROWS", 997)
    monkeypatch.setattr(hftbacktest, "CHUNK_EVENTS", 1009)
    result = export(data, "2024-08-09", tmp_path / "day.npz")
    assert result.exit_code == 0, result.output
    with np.load(tmp_path / "day.npz") as npz:
        events = npz["data"]
    # the reference's input: the starting book without its flags, then every stream row (a
    # warm day), local times moved as correct_local_timestamp does
    n_snapshot = json.loads(result.stdout)["snapshot_levels"]
    rows = np.zeros(stream.height, events.dtype)
    rows["ev"] = np.where(stream["event_type"].to_numpy() == "book", DEPTH, TRADE) | np.where(
        stream["side"].is_in(["bid", "buy"]).to_numpy(), BUY, SELL
    )
    rows["exch_ts"], rows["local_ts"] = exch, received + (-(received - exch).min())
    rows["px"] = stream["price"].cast(pl.Float64).to_numpy()
    rows["qty"] = stream["size"].cast(pl.Float64).to_numpy()
    snapshot = events[:n_snapshot].copy()
    snapshot["ev"] &= ~np.uint64(EXCH | LOCAL)
    expected = correct_event_order(np.concatenate([snapshot, rows]))
    assert events.size == expected.size > stream.height + n_snapshot  # rows were split
    assert (events == expected).all()


def test_a_stream_out_of_exchange_time_order_is_refused_and_the_previous_file_kept(
    certified, tmp_path
):
    data = copy_of(certified, tmp_path / "data")
    path = data / "reconstruction" / SPOT / "2024-08-09" / "stream.parquet"
    times = pl.read_parquet(path, columns=["event_time"])["event_time"].dt.epoch("ns").to_numpy()
    times[100_000] = times[99_999] - 1
    set_column(path, "event_time", times)
    out = tmp_path / "day.npz"
    out.write_bytes(b"previous export")
    result = export(data, "2024-08-09", out)
    assert result.exit_code == 1
    assert f"{path}: row 100000 is earlier in event_time than row 99999" in result.output
    assert "Traceback" not in result.output
    assert out.read_bytes() == b"previous export"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "day.npz"]  # nothing partial


def test_a_stream_replaced_between_the_passes_leaves_the_previous_file(certified, tmp_path):
    """The array's length is counted before its events are written: a stream replaced in
    between (a re-reconstruction, here the last 10 rows dropped) is refused, not written."""
    data = copy_of(certified, tmp_path / "data")
    path = data / "reconstruction" / SPOT / "2024-08-09" / "stream.parquet"
    measured = hftbacktest.hftbacktest_events(SPOT, "2024-08-09", data_dir=data)
    table = pq.read_table(path)
    pq.write_table(table.slice(0, table.num_rows - 10), path)
    out = tmp_path / "day.npz"
    out.write_bytes(b"previous export")
    with pytest.raises(hftbacktest.StreamOrderError, match="changed while it was exported"):
        hftbacktest.write_npz(measured, out)
    assert out.read_bytes() == b"previous export"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "day.npz"]  # nothing partial


PEAK_SCRIPT = """
import sys
from pathlib import Path
from rlx_assets.export import hftbacktest
from rlx_assets.cli import main

hftbacktest.BATCH_ROWS = hftbacktest.CHUNK_EVENTS = 1 << 13  # many batches in either day
main(sys.argv[1:], standalone_mode=False)
status = Path("/proc/self/status").read_text()
print(next(l for l in status.splitlines() if l.startswith("VmHWM")).split()[1])
"""


def tiled_day(certified: Path, target: Path, tiles: int) -> Path:
    """A copy of the certified data whose 2024-08-09 stream is the real one ``tiles`` times over,
    each tile later in time and sequence numbers (synthetic, for scale only)."""
    data = copy_of(certified, target)
    path = data / "reconstruction" / SPOT / "2024-08-09" / "stream.parquet"
    table = pq.read_table(path)
    times = {n: table[n].cast(pa.int64()).to_numpy() for n in ("event_time", "received_time")}
    span = int(times["event_time"].max() - times["event_time"].min()) + 1
    seq = pc.min_max(table["sequence_number"])
    seq_span = seq["max"].as_py() - seq["min"].as_py() + 1
    parts = []
    for k in range(tiles):
        part = table
        for name, values in times.items():
            shifted = pa.array(values + k * span).cast(table.schema.field(name).type)
            part = part.set_column(part.schema.get_field_index(name), name, shifted)
        shifted = pc.add(table["sequence_number"], k * seq_span)
        part = part.set_column(
            part.schema.get_field_index("sequence_number"), "sequence_number", shifted
        )
        parts.append(part)
    pq.write_table(pa.concat_tables(parts), path, row_group_size=1 << 14)
    return data


def peak_rss_kib(data: Path, out: Path) -> int:
    done = subprocess.run(
        [sys.executable, "-c", PEAK_SCRIPT, "export", "hftbacktest", "--market", SPOT,
         "--date", "2024-08-09", "--out", str(out), "--data-dir", str(data)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    return int(done.stdout.split()[-1])


@pytest.mark.slow
def test_peak_memory_does_not_grow_with_the_day(certified, tmp_path):
    """The sample day once (188 k events) and three times over (560 k): holding the whole array,
    as the released export did, the longer one peaks ~100 MB higher."""
    short = peak_rss_kib(tiled_day(certified, tmp_path / "x1", 1), tmp_path / "x1.npz")
    long = peak_rss_kib(tiled_day(certified, tmp_path / "x3", 3), tmp_path / "x3.npz")
    assert long / short <= 1.10, (short, long)
