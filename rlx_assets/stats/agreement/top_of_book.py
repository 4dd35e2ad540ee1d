"""Top-of-book agreement: each reconstructed book update's best bid/ask against the golden
``bookTicker`` stream (two independent exchange streams). May import ``base``.
"""

from __future__ import annotations

import polars as pl

from rlx_assets.stats.agreement.base import (
    ABSENT,
    NS_PER_MINUTE,
    NotComputable,
    at_least,
    decimal_scale,
    iso,
    share_of,
    to_ns,
    units_expr,
)

BEST_COLUMNS = ("best_bid_price", "best_bid_size", "best_ask_price", "best_ask_size")
LEVEL_1_COLUMNS = ("bid_0_price", "bid_0_size", "ask_0_price", "ask_0_size")


def book_updates(stream: pl.LazyFrame | pl.DataFrame) -> pl.DataFrame:
    """The consistent state after each book update of a reconstructed stream: its rows with
    ``update_complete`` (else the last row of each sequence number), as ``event_time`` (ns),
    ``sequence_number`` and the best bid/ask columns."""
    lf = stream.lazy()
    schema = lf.collect_schema()
    lf = lf.filter(pl.col("event_type").cast(pl.String) == "book")
    if "update_complete" in schema.names():
        lf = lf.filter(pl.col("update_complete"))
    else:
        lf = lf.unique(subset="sequence_number", keep="last", maintain_order=True)
    return lf.select(
        to_ns("event_time", schema["event_time"]), "sequence_number", *BEST_COLUMNS
    ).collect(engine="streaming")  # a day's stream is ~40 M rows: only the updates are held


def top_of_book_agreement(
    updates: pl.DataFrame,
    level_1: pl.DataFrame,
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
    """
    if level_1.height == 0:
        raise NotComputable("the golden level_1 (bookTicker) file has no rows")
    ps = price_scale if price_scale is not None else decimal_scale(updates.schema["best_bid_price"])
    ss = size_scale if size_scale is not None else decimal_scale(updates.schema["best_bid_size"])
    total = updates.height
    ours = updates.filter(
        pl.col("best_bid_price").is_not_null() | pl.col("best_ask_price").is_not_null()
    ).select(
        "event_time", "sequence_number",
        *[units_expr(c, ps if c.endswith("price") else ss) for c in BEST_COLUMNS],
    )  # fmt: skip
    book_unknown = total - ours.height
    ticker = level_1.select(
        pl.col("sequence_number").alias("ticker_u"),
        *[
            units_expr(c, ps if c.endswith("price") else ss).alias(f"golden_{b}")
            for c, b in zip(LEVEL_1_COLUMNS, BEST_COLUMNS, strict=True)
        ],
    )
    if ticker["ticker_u"].is_sorted():  # a recording's tickers come in order: no copy
        ticker = ticker.with_columns(pl.col("ticker_u").set_sorted())
    else:
        ticker = ticker.sort("ticker_u")
    aligned = ours.sort("sequence_number").join_asof(
        ticker, left_on="sequence_number", right_on="ticker_u", strategy="backward"
    )
    before_first = int(aligned["ticker_u"].is_null().sum())
    aligned = aligned.filter(pl.col("ticker_u").is_not_null())
    field_eq = {c: pl.col(c) == pl.col(f"golden_{c}") for c in BEST_COLUMNS}
    aligned = aligned.with_columns(
        *[e.alias(f"eq_{c}") for c, e in field_eq.items()],
        pl.all_horizontal(list(field_eq.values())).alias("equal"),
        (pl.col("event_time") // NS_PER_MINUTE * NS_PER_MINUTE).alias("minute"),
    )
    n = aligned.height
    equal = int(aligned["equal"].sum())
    outside_known = None
    out = pl.lit(False)
    if ps is not None and (known_bid_floor is not None or known_ask_ceiling is not None):
        floor = -1 if known_bid_floor is None else round(known_bid_floor * 10**ps)
        ceiling = None if known_ask_ceiling is None else round(known_ask_ceiling * 10**ps)
        for col in ("best_bid_price", "golden_best_bid_price"):
            out = out | ((pl.col(col) != ABSENT) & (pl.col(col) < floor))
        if ceiling is not None:
            for col in ("best_ask_price", "golden_best_ask_price"):
                out = out | (pl.col(col) > ceiling)
        outside_known = int(aligned.filter(~pl.col("equal") & out).height)
    # where the book first went wrong: differences a top-20 seed could not know excepted
    unexplained = aligned.filter(~pl.col("equal") & ~out)["minute"]
    per_minute = (
        aligned.group_by("minute")
        .agg(pl.len().alias("compared"), pl.col("equal").sum().alias("equal"))
        .sort("minute")
    )
    worst = per_minute.with_columns((pl.col("equal") / pl.col("compared")).alias("share")).sort(
        "share", "minute"
    )
    mismatches = aligned.filter(~pl.col("equal")).sort("event_time").head(max_listed)

    def side(row: dict, prefix: str) -> dict:
        def val(c: str, scale: int | None):
            x = row[f"{prefix}{c}"]
            if scale is None:
                return None if x != x else x
            return None if x == ABSENT else round(x / 10**scale, scale)

        return {c.removeprefix("best_"): val(c, ps if "price" in c else ss) for c in BEST_COLUMNS}

    agreement = share_of(equal, n)
    figures = {
        "updates": total,
        "compared": n,
        "equal": equal,
        "agreement": agreement,
        "field_agreement": {
            c.removeprefix("best_"): share_of(int(aligned[f"eq_{c}"].sum()), n)
            for c in BEST_COLUMNS
        },
        "not_compared": {"book_unknown": book_unknown, "before_first_ticker": before_first},
        "mismatches_with_best_outside_known_depth": outside_known,
        "first_unexplained_mismatch_minute": iso(unexplained.min()) if unexplained.len() else None,
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
