"""Reconstruct one partition (UTC day x market) from Crypto Lake's vendor files.

Input: the day's ``trades``, ``book_delta_v2`` and ``book`` Parquet files in the vendor's raw
columns (``rlx_assets.vendor_schemas``; prices and sizes float64, times int64 ns), and optionally
the previous day's ``end_book.parquet``. Output, in ``out_dir`` (each file written atomically):

``stream.parquet``
    Every trade and every ``book_delta_v2`` row of the day in one strictly chronological stream.
    Order: ``event_time`` (the vendor's ``timestamp``, exchange time), then ``received_time``,
    then book rows before trades, then ``sequence_number`` (book) / ``trade_id`` (trades), then
    the vendor file's row order (so the rows of one diff keep the vendor's order). Columns:
    ``event_time``, ``received_time`` (timestamp[ns, UTC]); ``event_type`` ("book" | "trade");
    ``side`` ("bid" | "ask" for book rows, the taker side "buy" | "sell" for trades; null for a
    trade side the vendor did not give as buy/sell); ``price``, ``size`` (DECIMAL(18, scale),
    read back as ``decimal128``; a book row's size is the level's new absolute size, 0 removes
    it); ``trade_id`` (int64, null for book rows); ``sequence_number`` (int64, null for trades);
    ``best_bid_price``, ``best_bid_size``, ``best_ask_price``, ``best_ask_size`` (decimal, the
    book *after* the row; null when that side is empty or the book is not known yet);
    ``update_complete`` (bool). A diff spans several rows with one sequence number and every row
    carries the book after that row, so rows inside a diff can show a transiently crossed book
    (Binance lists a diff's bids before its asks). ``update_complete`` is true for trades and
    for the last row of each diff: the exchange's consistent state.
``snapshots_vendor.parquet``
    Our top 20 at every vendor ``book`` row (the state after every delta with a sequence number
    <= the row's), with the vendor row's ``timestamp`` and ``sequence_number``; columns
    ``bid_{i}_price``, ``bid_{i}_size``, then ``ask_...`` (decimal, null = no level),
    ``matches_vendor`` (all 20 levels x price, size x both sides equal; null when the row is not
    compared) and ``depth_known`` (every level we report lies in the known part of the book).
``snapshots_1s.parquet``
    Our top 20 at every multiple of ``snapshot_every_ns`` since the epoch (UTC-aligned) once the
    book is known, up to the first boundary after the last event: the state after all events
    with ``event_time < timestamp``; ``sequence_number`` = the last applied delta's.
``checkpoints.parquet``
    The whole book at every multiple of ``checkpoint_every_ns`` (a minute) since the epoch once
    the book is known, up to the first one after the last event: the state after all events
    with ``event_time < timestamp``, one row per level (``timestamp``, ``sequence_number`` =
    the last applied delta's, ``side``, ``price``, ``size``; bids best first, then asks best
    first; an empty book is one row with null side, price and size), in row groups of up to
    16 checkpoints with statistics on ``timestamp``. The result (and ``summary.json``) records
    their number, step and first time: ``rlx_assets.read.book_at`` starts from the last one
    at or before an instant.
``end_book.parquet``
    The whole book after the last event (``side``, ``price``, ``size`` decimals, ``price_ticks``,
    ``size_lots`` int64; bids best first, then asks best first). File metadata ``rlx.*``: scales,
    last sequence number and event time, market, seeding and the known depth (below). It seeds
    the next day.

Exactness. The scales are the smallest numbers of decimals at which every float of the inputs
(and of the seed) is an exact decimal (``Decimal(repr(x))``). Prices become integer ticks and
sizes integer lots at those scales, and every output decimal equals the input's decimal string;
a seed written at a coarser scale is rescaled exactly. The scales (and the price range of the
dense book and the inputs' time order) are first taken from the first record batch of each file
plus the Parquet statistics, and every row is checked against them while it is read; should a
later row need a finer scale, fall outside the range or arrive out of time order, the partition
is redone from a full scan of the files. Outputs are only ever written with the final scales.

Seeding. With ``previous_end_book`` the book starts from it and only deltas with a sequence
number above its last one are applied. Without it the book starts from the day's first vendor
``book`` row (top 20) and deltas above that row's sequence number are applied; rows before the
book is known carry null best prices (the last row of the seed's own diff carries the seed, the
state after that diff). A top-20 seed leaves deeper levels unknown: when the price
moves, levels that existed before the seed but were never updated are missing. The book is
*complete* only for bids >= the seed's 20th bid and asks <= its 20th ask (the "known depth",
carried across days in ``end_book``'s metadata; no empty tick outside it can be proven empty).
Comparisons with the vendor therefore count, besides exact equality, the rows whose top 20
reaches past the known depth (``vendor_book_rows_unknown_depth``) and the rows equal within it
(``vendor_book_rows_equal_within_known_depth``): a difference inside the known depth is always
a genuine mismatch.

Memory and speed. Inputs are read in record batches of ``chunk_rows // 4`` rows into reused
buffers and merged in windows (about ``chunk_rows // 4`` rows each) of rows older than every
input's lower bound of future timestamps. The book is ``rlx_assets.book.kernel.apply_levels``
over a dense tick array spanning the day's price range (at most ``MAX_DENSE_TICKS`` per side;
a wider range gets a window around the seed, and levels outside it count as ``out_of_range``)
whose untouched pages never become resident, plus an occupancy bitmap for fast top-20 walks.
Peak RSS is about 0.6 GB at the default ``chunk_rows`` plus up to 16 bytes per tick of the
day's price range, whatever the number of rows (0.8-0.9 GB measured for 30M- and 60M-event
BTC-USDT days). Hot loops are compiled; Parquet pages are encoded by a background thread while
the next window is replayed (two sets of output buffers alternate). The stream's ``price`` and
``size`` pages are DELTA_BINARY_PACKED (smaller than plain, and unlike BYTE_STREAM_SPLIT on
integers, readable by every Parquet 2 reader).

The package's modules, each importing only modules listed before it: ``result``, ``decimals``,
``reading``, ``seed``, ``plan``, ``bitmaps``, ``replay``, ``output``, ``inputs``, ``vendor`` and
``partition`` (the entry point). This ``__init__`` only re-exports the public names.
"""

from rlx_assets.book.reconstruct.bitmaps import end_book_levels
from rlx_assets.book.reconstruct.decimals import (
    DECIMAL_PRECISION,
    MAX_SCALE,
    ReconstructionError,
    decimal_string,
    units,
)
from rlx_assets.book.reconstruct.output import (
    CHECKPOINT_EVERY_NS,
    CHECKPOINTS_FILE,
    END_BOOK_FILE,
    EVENT_TYPES,
    SIDES,
    SNAPSHOT_WRITE_OPTIONS,
    SNAPSHOTS_1S_FILE,
    SNAPSHOTS_VENDOR_FILE,
    STREAM_FILE,
    STREAM_ORDER,
    STREAM_WRITE_OPTIONS,
    checkpoint_schema,
    decimal_array,
    end_book_schema,
    snapshot_schema,
    stream_schema,
)
from rlx_assets.book.reconstruct.partition import MAX_DENSE_TICKS, reconstruct_partition
from rlx_assets.book.reconstruct.reading import (
    BOOK_COLUMNS,
    DEFAULT_CHUNK_ROWS,
    DELTA_COLUMNS,
    TRADE_COLUMNS,
    input_batch_rows,
    input_batches,
)
from rlx_assets.book.reconstruct.result import ReconstructionResult

__all__ = [
    "BOOK_COLUMNS",
    "CHECKPOINT_EVERY_NS",
    "CHECKPOINTS_FILE",
    "DECIMAL_PRECISION",
    "DEFAULT_CHUNK_ROWS",
    "DELTA_COLUMNS",
    "END_BOOK_FILE",
    "EVENT_TYPES",
    "MAX_DENSE_TICKS",
    "MAX_SCALE",
    "ReconstructionError",
    "ReconstructionResult",
    "SIDES",
    "SNAPSHOT_WRITE_OPTIONS",
    "SNAPSHOTS_1S_FILE",
    "SNAPSHOTS_VENDOR_FILE",
    "STREAM_FILE",
    "STREAM_ORDER",
    "STREAM_WRITE_OPTIONS",
    "TRADE_COLUMNS",
    "checkpoint_schema",
    "decimal_array",
    "decimal_string",
    "end_book_levels",
    "end_book_schema",
    "input_batch_rows",
    "input_batches",
    "reconstruct_partition",
    "snapshot_schema",
    "stream_schema",
    "units",
]
