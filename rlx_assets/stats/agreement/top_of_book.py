"""Top-of-book agreement: each reconstructed book update's best bid/ask against the golden
``bookTicker`` stream (two independent exchange streams). May import ``base`` and
``stats.pieces``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import polars as pl

from rlx_assets.stats.agreement.base import (
    ABSENT,
    NS_PER_MINUTE,
    NotComputable,
    at_least,
    decimal_scale,
    iso,
    key_windows,
    share_of,
    to_ns,
    units_expr,
)
from rlx_assets.stats.pieces import read_pieces

BEST_COLUMNS = ("best_bid_price", "best_bid_size", "best_ask_price", "best_ask_size")
LEVEL_1_COLUMNS = ("bid_0_price", "bid_0_size", "ask_0_price", "ask_0_size")


def book_updates(stream: pl.LazyFrame | pl.DataFrame) -> pl.LazyFrame:
    """The consistent state after each book update of a reconstructed stream: its rows with
    ``update_complete`` (else the last row of each sequence number), as ``event_time`` (ns),
    ``sequence_number`` and the best bid/ask columns. Lazy: a day's stream is ~40 M rows, read
    by whoever collects it (window by window)."""
    lf = stream.lazy()
    schema = lf.collect_schema()
    lf = lf.filter(pl.col("event_type").cast(pl.String) == "book")
    if "update_complete" in schema.names():
        lf = lf.filter(pl.col("update_complete"))
    else:
        lf = lf.unique(subset="sequence_number", keep="last", maintain_order=True)
    return lf.select(to_ns("event_time", schema["event_time"]), "sequence_number", *BEST_COLUMNS)


def read_book_updates(
    stream: pl.LazyFrame, query: Callable[[pl.LazyFrame], pl.LazyFrame]
) -> Iterator[pl.DataFrame]:
    """``query`` of a stream's ``book_updates``, read in bounded parts: pieces of rows when
    each update's last row is flagged (``update_complete``), else windows of sequence numbers
    (the last row of a number is told only with all its rows)."""
    if "update_complete" in stream.collect_schema().names():
        yield from read_pieces(stream, lambda piece: query(book_updates(piece)))
        return
    updates = book_updates(stream)
    for window in key_windows([stream], "sequence_number"):
        yield query(updates.filter(pl.col("sequence_number").is_between(*window))).collect()


def top_of_book_agreement(
    updates: pl.LazyFrame | pl.DataFrame,
    level_1: pl.LazyFrame | pl.DataFrame,
    *,
    min_share: float,
    price_scale: int | None = None,
    size_scale: int | None = None,
    known_bid_floor: float | None = None,
    known_ask_ceiling: float | None = None,
    max_listed: int = 20,
) -> tuple[dict, pl.DataFrame]:
    """Each book update's best bid/ask (``book_updates``) against the golden bookTicker with
    the largest update id ``u`` <= the update's sequence number (bookTicker ``u`` and depth
    ``u`` count the same order-book updates, and every change of the top emits a ticker).

    Returns the figures and a per-minute frame (``minute`` ns, ``compared``, ``equal``) for
    the plot. Updates before the book is known and before the first ticker are not compared.
    With the known depth of a top-20 seed given, differences where either best price lies
    outside it are counted apart (possibly a level the seed could not know, though the
    exchange's two streams also disagree now and then); all count in the verdict.

    Frames or lazy scans: a day is compared window by window of update ids (``key_windows``
    of the tickers), each window's last ticker carried into the next.
    """
    updates, level_1 = updates.lazy(), level_1.lazy()
    schema = updates.collect_schema()
    ps = price_scale if price_scale is not None else decimal_scale(schema["best_bid_price"])
    ss = size_scale if size_scale is not None else decimal_scale(schema["best_bid_size"])
    windows = key_windows([level_1], "sequence_number")
    if not windows:
        raise NotComputable("the golden level_1 (bookTicker) file has no rows")
    golden = [
        pl.col("sequence_number").alias("ticker_u"),
        *[
            units_expr(c, ps if c.endswith("price") else ss).alias(f"golden_{b}")
            for c, b in zip(LEVEL_1_COLUMNS, BEST_COLUMNS, strict=True)
        ],
    ]
    known = pl.col("best_bid_price").is_not_null() | pl.col("best_ask_price").is_not_null()
    ours = updates.select(
        "event_time", "sequence_number", known.alias("_known"),
        *[units_expr(c, ps if c.endswith("price") else ss) for c in BEST_COLUMNS],
    )  # fmt: skip
    outside = _outside_known_depth(ps, known_bid_floor, known_ask_ceiling)
    count = _Counts()
    minutes, mismatch_parts, carry = [], [], None
    for lo, hi in windows:
        in_window = pl.col("sequence_number").is_between(lo, hi)
        ours_w = ours.filter(in_window).collect()
        count.updates += ours_w.height
        ours_w = ours_w.filter("_known").drop("_known")
        tickers = level_1.filter(in_window).select(golden).collect()
        tickers = tickers if carry is None else pl.concat([carry, tickers])
        if tickers["ticker_u"].is_sorted():  # a recording's tickers come in order: no copy
            tickers = tickers.with_columns(pl.col("ticker_u").set_sorted())
        else:
            tickers = tickers.sort("ticker_u", maintain_order=True)
        if tickers.height:
            carry = tickers.tail(1)
        aligned = _aligned(ours_w, tickers, outside, count)
        minutes.append(
            aligned.group_by("minute").agg(
                pl.len().alias("compared"), pl.col("equal").sum().alias("equal")
            )
        )
        mismatch_parts.append(
            aligned.filter(~pl.col("equal")).sort("event_time", maintain_order=True)
            .head(max_listed)
        )  # fmt: skip
    per_minute = (
        pl.concat(minutes)
        .group_by("minute")
        .agg(
            pl.col("compared").sum().cast(pl.UInt32),
            pl.col("equal").sum().cast(pl.UInt32),
        )
        .sort("minute")
    )
    worst = per_minute.with_columns((pl.col("equal") / pl.col("compared")).alias("share")).sort(
        "share", "minute"
    )
    mismatches = pl.concat(mismatch_parts).sort("event_time", maintain_order=True).head(max_listed)

    def side(row: dict, prefix: str) -> dict:
        def val(c: str, scale: int | None):
            x = row[f"{prefix}{c}"]
            if scale is None:
                return None if x != x else x
            return None if x == ABSENT else round(x / 10**scale, scale)

        return {c.removeprefix("best_"): val(c, ps if "price" in c else ss) for c in BEST_COLUMNS}

    n, equal = count.compared, count.equal
    agreement = share_of(equal, n)
    figures = {
        "updates": count.updates,
        "compared": n,
        "equal": equal,
        "agreement": agreement,
        "field_agreement": {
            c.removeprefix("best_"): share_of(count.field_equal[c], n) for c in BEST_COLUMNS
        },
        "not_compared": {
            "book_unknown": count.updates - count.known,
            "before_first_ticker": count.before_first,
        },
        "mismatches_with_best_outside_known_depth": (
            count.outside_known if outside is not None else None
        ),
        "first_unexplained_mismatch_minute": iso(count.first_unexplained),
        "first_mismatches": [
            {
                "sequence_number": r["sequence_number"],
                "event_time": iso(r["event_time"]),
                "ticker_u": r["ticker_u"],
                "ours": side(r, ""),
                "golden": side(r, "golden_"),
            }
            for r in mismatches.iter_rows(named=True)
        ],
        "worst_minutes": [
            {"minute": iso(r["minute"]), "compared": r["compared"], "share": r["share"]}
            for r in worst.filter(pl.col("share") < 1).head(5).iter_rows(named=True)
        ],
        "threshold": min_share,
        "passed": at_least(agreement, min_share),
    }
    return figures, per_minute


@dataclass
class _Counts:
    """The figures summed over the windows."""

    updates: int = 0
    known: int = 0
    before_first: int = 0
    compared: int = 0
    equal: int = 0
    outside_known: int = 0
    first_unexplained: int | None = None
    field_equal: dict[str, int] = field(default_factory=lambda: dict.fromkeys(BEST_COLUMNS, 0))


def _outside_known_depth(
    ps: int | None, known_bid_floor: float | None, known_ask_ceiling: float | None
) -> pl.Expr | None:
    """Either best price outside the known depth of a top-20 seed (None: no known depth)."""
    if ps is None or (known_bid_floor is None and known_ask_ceiling is None):
        return None
    floor = -1 if known_bid_floor is None else round(known_bid_floor * 10**ps)
    ceiling = None if known_ask_ceiling is None else round(known_ask_ceiling * 10**ps)
    out = pl.lit(False)
    for col in ("best_bid_price", "golden_best_bid_price"):
        out = out | ((pl.col(col) != ABSENT) & (pl.col(col) < floor))
    if ceiling is not None:
        for col in ("best_ask_price", "golden_best_ask_price"):
            out = out | (pl.col(col) > ceiling)
    return out


def _aligned(
    ours: pl.DataFrame, tickers: pl.DataFrame, outside: pl.Expr | None, count: _Counts
) -> pl.DataFrame:
    """One window's updates (book known) with the ticker each is compared with, ``equal``
    and ``minute``; adds its figures to ``count``."""
    count.known += ours.height
    aligned = ours.sort("sequence_number").join_asof(
        tickers, left_on="sequence_number", right_on="ticker_u", strategy="backward"
    )
    count.before_first += int(aligned["ticker_u"].is_null().sum())
    aligned = aligned.filter(pl.col("ticker_u").is_not_null())
    field_eq = {c: pl.col(c) == pl.col(f"golden_{c}") for c in BEST_COLUMNS}
    aligned = aligned.with_columns(
        *[e.alias(f"eq_{c}") for c, e in field_eq.items()],
        pl.all_horizontal(list(field_eq.values())).alias("equal"),
        (pl.col("event_time") // NS_PER_MINUTE * NS_PER_MINUTE).alias("minute"),
    )
    count.compared += aligned.height
    count.equal += int(aligned["equal"].sum())
    for c in BEST_COLUMNS:
        count.field_equal[c] += int(aligned[f"eq_{c}"].sum())
    differs = ~pl.col("equal")
    if outside is not None:
        count.outside_known += aligned.filter(differs & outside).height
    # where the book first went wrong: differences a top-20 seed could not know excepted
    unexplained = aligned.filter(differs & ~outside if outside is not None else differs)
    first = unexplained["minute"].min()
    if first is not None and (count.first_unexplained is None or first < count.first_unexplained):
        count.first_unexplained = first
    return aligned
