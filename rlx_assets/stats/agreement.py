"""Agreement between the reconstruction, the vendor's files and the golden recording, and the
integrity of sequence numbers and origin times.

Pure functions over polars frames; each returns a JSON-ready dict with its figures, the
threshold it was judged against and ``passed``. A metric whose inputs cannot support it raises
``NotComputable`` with the reason, which the report lists.

Prices and sizes are compared exactly, as integers at the reconstruction's decimal scale (a
float from the vendor file is the nearest double of its decimal, so rounding ``x * 10**scale``
recovers the decimal's units).
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import polars as pl

from rlx_assets.lake.schemas import BOOK_DEPTH

NS_PER_S = 1_000_000_000
NS_PER_MINUTE = 60 * NS_PER_S
NS_PER_DAY = 86_400 * NS_PER_S
ABSENT = -1  # units of a missing level (prices and book sizes are positive)
BEST_COLUMNS = ("best_bid_price", "best_bid_size", "best_ask_price", "best_ask_size")
LEVEL_1_COLUMNS = ("bid_0_price", "bid_0_size", "ask_0_price", "ask_0_size")


class NotComputable(Exception):
    """The inputs cannot support this metric; the message says why."""


# --- helpers --------------------------------------------------------------------------------------
def decimal_scale(dtype: pl.DataType) -> int | None:
    return dtype.scale if isinstance(dtype, pl.Decimal) else None


def units_expr(column: str, scale: int | None) -> pl.Expr:
    """Decimal or float column -> int64 units at ``scale`` (null/NaN -> ``ABSENT``); with no
    scale the float itself (null -> NaN), compared exactly."""
    value = pl.col(column).cast(pl.Float64).fill_nan(None)
    if scale is None:
        return value.fill_null(float("nan")).alias(column)
    return (value * 10.0**scale).round().cast(pl.Int64).fill_null(ABSENT).alias(column)


def to_ns(column: str, dtype: pl.DataType) -> pl.Expr:
    """int64 ns or a timestamp column -> int64 ns since the epoch."""
    if isinstance(dtype, pl.Datetime):
        return pl.col(column).dt.cast_time_unit("ns").dt.epoch("ns").alias(column)
    return pl.col(column).cast(pl.Int64).alias(column)


def iso(ns: int | None) -> str | None:
    if ns is None:
        return None
    return dt.datetime.fromtimestamp(ns / NS_PER_S, dt.UTC).isoformat(timespec="milliseconds")


def day_bounds(day: dt.date) -> tuple[int, int]:
    start = int(dt.datetime.combine(day, dt.time(), tzinfo=dt.UTC).timestamp()) * NS_PER_S
    return start, start + NS_PER_DAY


def _share(num: int, den: int) -> float | None:
    return num / den if den else None


def _at_least(value: float | None, threshold: float) -> bool | None:
    return None if value is None else bool(value >= threshold)


# --- book: our top 20 vs the vendor's book rows ---------------------------------------------------
def _level_matrix(frame: pl.DataFrame, side: str, what: str) -> np.ndarray:
    cols = [f"{side}_{i}_{what}" for i in range(BOOK_DEPTH)]
    return frame.select(cols).to_numpy().astype(np.int64, copy=False).reshape(-1, BOOK_DEPTH)


def _with_occurrence(frame: pl.LazyFrame) -> pl.LazyFrame:
    # repeated sequence numbers pair up in file order
    return frame.with_columns(pl.int_range(pl.len()).over("sequence_number").alias("_occurrence"))


_I64_MIN, _I64_MAX = np.iinfo(np.int64).min, np.iinfo(np.int64).max


def _side_errors(
    op: np.ndarray, os_: np.ndarray, vp: np.ndarray, vs: np.ndarray, bid: bool, bound: int | None
) -> tuple[np.ndarray, np.ndarray]:
    """Per level: (a level we hold that the vendor lacks or sizes differently, a level the
    vendor holds inside the known depth that we lack), both restricted to the price window
    the two top-20 lists share (a full list is cut at its 20th level)."""
    present_o, present_v = op != ABSENT, vp != ABSENT
    same_price = op[:, :, None] == vp[:, None, :]
    same_level = same_price & (os_[:, :, None] == vs[:, None, :]) & present_o[:, :, None]
    o_same = same_level.any(axis=2)
    v_found = (same_price & present_v[:, None, :]).any(axis=1)
    if bid:
        edge = np.maximum(
            np.where(present_o[:, -1], op[:, -1], _I64_MIN),
            np.where(present_v[:, -1], vp[:, -1], _I64_MIN),
        )[:, None]
        in_o, in_v = present_o & (op >= edge), present_v & (vp >= edge)
        unknown_v = vp < bound if bound is not None else np.zeros(vp.shape, bool)
    else:
        edge = np.minimum(
            np.where(present_o[:, -1], op[:, -1], _I64_MAX),
            np.where(present_v[:, -1], vp[:, -1], _I64_MAX),
        )[:, None]
        in_o, in_v = present_o & (op <= edge), present_v & (vp <= edge)
        unknown_v = vp > bound if bound is not None else np.zeros(vp.shape, bool)
    return in_o & ~o_same, in_v & ~v_found & ~unknown_v


def book_agreement(
    ours: pl.LazyFrame | pl.DataFrame,
    vendor: pl.LazyFrame | pl.DataFrame,
    *,
    min_share: float,
    seed_sequence: int | None = None,
    started_cold: bool = True,
    known_bid_floor: float | None = None,
    known_ask_ceiling: float | None = None,
    price_scale: int | None = None,
    size_scale: int | None = None,
    max_listed: int = 20,
    chunk_rows: int = 50_000,
    mismatch_rows: list[pl.DataFrame] | None = None,
) -> dict:
    """Our top 20 (``snapshots_vendor.parquet``) against the vendor ``book`` rows with the same
    sequence number, in chunks of ``chunk_rows`` rows.

    Rows before the seed are not compared (a cold start copies the vendor row at the seed, so
    that row is not compared either). ``exact_share``: rows equal at all 40 levels.
    ``agreement``: rows where every level we hold is in the vendor's row with the same size
    and every level the vendor holds is in ours, except levels outside the known depth
    (bids below ``known_bid_floor``, asks above ``known_ask_ceiling``): a book seeded from a
    top-20 row cannot know deeper levels that no delta has touched since. Every level we hold
    came from the seed or a delta, so it is exact wherever it lies; a book known to full depth
    (no bounds) must agree exactly.

    ``mismatch_rows``, when given, receives every disagreeing row (not only the first
    ``max_listed``) as frames: ``timestamp`` (ns), ``sequence_number``, ``side``, ``level`` (the
    first differing one), our and the vendor's price and size there (NaN: no level).
    """
    o_lf, v_lf = ours.lazy(), vendor.lazy()
    o_schema, v_schema = o_lf.collect_schema(), v_lf.collect_schema()
    ps = price_scale if price_scale is not None else decimal_scale(o_schema["bid_0_price"])
    ss = size_scale if size_scale is not None else decimal_scale(o_schema["bid_0_size"])
    if ps is None or ss is None:
        raise ValueError("book_agreement: give price_scale/size_scale for float snapshots")
    level_cols = [
        f"{side}_{i}_{what}" for side in ("bid", "ask") for i in range(BOOK_DEPTH)
        for what in ("price", "size")
    ]  # fmt: skip
    unit_exprs = [units_expr(c, ps if c.endswith("price") else ss) for c in level_cols]
    extra = [c for c in ("matches_vendor",) if c in o_schema.names()]
    v_keys = _with_occurrence(
        v_lf.select(to_ns("timestamp", v_schema["timestamp"]), "sequence_number").with_row_index(
            "v_row"
        )
    ).collect()
    if v_keys.height == 0:
        raise NotComputable("the vendor book file has no rows")
    o_keys = _with_occurrence(o_lf.select("sequence_number", *extra).with_row_index("o_row"))
    pairs = v_keys.join(o_keys.collect(), on=["sequence_number", "_occurrence"], how="inner")
    seq = pairs["sequence_number"]
    if seed_sequence is not None:
        keep = seq > seed_sequence if started_cold else seq >= seed_sequence
    else:  # rows where our book was known
        has_book = pl.col("bid_0_price").is_not_null() | pl.col("ask_0_price").is_not_null()
        keep = o_lf.select(has_book).collect().to_series().gather(pairs["o_row"])
    pairs = pairs.filter(keep).sort("v_row")
    floor = None if known_bid_floor is None else round(known_bid_floor * 10**ps)
    ceiling = None if known_ask_ceiling is None else round(known_ask_ceiling * 10**ps)

    n = equal = consistent_rows = 0
    level_equal = np.zeros(BOOK_DEPTH, dtype=np.int64)
    mismatches: list[dict] = []
    outside: list[dict] = []
    agrees_with_reconstruction = True if extra else None
    for lo in range(0, pairs.height, chunk_rows):
        chunk = pairs.slice(lo, chunk_rows)
        v = _rows(v_lf, chunk["v_row"], unit_exprs)
        o = _rows(o_lf, chunk["o_row"], unit_exprs)
        vbp, vbs, vap, vas = (_level_matrix(v, s_, w) for s_, w in _SIDES)
        obp, obs, oap, oas = (_level_matrix(o, s_, w) for s_, w in _SIDES)
        level_eq = (obp == vbp) & (obs == vbs) & (oap == vap) & (oas == vas)
        row_eq = level_eq.all(axis=1)
        bid_o, bid_v = _side_errors(obp, obs, vbp, vbs, True, floor)
        ask_o, ask_v = _side_errors(oap, oas, vap, vas, False, ceiling)
        consistent = ~(bid_o.any(1) | bid_v.any(1) | ask_o.any(1) | ask_v.any(1))
        n += row_eq.size
        equal += int(row_eq.sum())
        consistent_rows += int(consistent.sum())
        level_equal += level_eq.sum(axis=0)
        seqs, times = chunk["sequence_number"].to_numpy(), chunk["timestamp"].to_numpy()
        if mismatch_rows is not None and not consistent.all():
            mismatch_rows.append(_mismatch_frame(
                np.flatnonzero(~consistent), seqs, times, bid_o | bid_v, ask_o | ask_v,
                (obp, obs, vbp, vbs), (oap, oas, vap, vas), ps, ss,
            ))  # fmt: skip
        for r in np.flatnonzero(~consistent)[: max_listed - len(mismatches)]:
            where = {"sequence_number": int(seqs[r]), "timestamp": iso(int(times[r]))}
            for side, (eo, ev, op, os_, vp, vs) in (
                ("bid", (bid_o, bid_v, obp, obs, vbp, vbs)),
                ("ask", (ask_o, ask_v, oap, oas, vap, vas)),
            ):
                if eo[r].any() or ev[r].any():
                    mismatches.append({**where, "side": side, **_first_error(
                        r, eo, ev, op, os_, vp, vs, ps, ss
                    )})  # fmt: skip
                    break
        for r in np.flatnonzero(consistent & ~row_eq)[: min(5, max_listed) - len(outside)]:
            outside.append({
                "sequence_number": int(seqs[r]), "timestamp": iso(int(times[r])),
                **_first_positional(r, (obp, obs, vbp, vbs), (oap, oas, vap, vas), ps, ss),
            })  # fmt: skip
        if extra:
            theirs = chunk["matches_vendor"]
            known = theirs.is_not_null().to_numpy()
            same = theirs.to_numpy()[known].astype(bool) == row_eq[known]
            agrees_with_reconstruction = agrees_with_reconstruction and bool(same.all())
    agreement = _share(consistent_rows, n)
    return {
        "vendor_rows": v_keys.height,
        "rows_paired": int(keep.len()),
        "rows_not_compared": int(keep.len() - n),
        "rows_compared": n,
        "rows_equal": equal,
        "exact_share": _share(equal, n),
        "rows_consistent": consistent_rows,
        "rows_differing_only_outside_known_depth": consistent_rows - equal,
        "agreement": agreement,
        "known_depth": {"bid_floor": known_bid_floor, "ask_ceiling": known_ask_ceiling},
        "level_agreement": [float(x) / n for x in level_equal] if n else [],
        "first_mismatches": mismatches,
        "first_differences_outside_known_depth": outside,
        "exact_rows_match_reconstruction": agrees_with_reconstruction,
        "threshold": min_share,
        "passed": _at_least(agreement, min_share),
    }


_SIDES = (("bid", "price"), ("bid", "size"), ("ask", "price"), ("ask", "size"))


def _mismatch_frame(bad, seqs, times, bid_err, ask_err, bid, ask, ps, ss) -> pl.DataFrame:
    """The first differing level of each disagreeing row, vectorised over the rows."""
    use_bid = bid_err[bad].any(axis=1)
    level = np.where(use_bid, bid_err[bad].argmax(axis=1), ask_err[bad].argmax(axis=1))

    def at(bid_m: np.ndarray, ask_m: np.ndarray, scale: int) -> np.ndarray:
        units = np.where(use_bid, bid_m[bad, level], ask_m[bad, level])
        return np.where(units == ABSENT, np.nan, units / 10.0**scale)

    return pl.DataFrame({
        "timestamp": times[bad], "sequence_number": seqs[bad],
        "side": np.where(use_bid, "bid", "ask"), "level": level.astype(np.int64),
        "ours_price": at(bid[0], ask[0], ps), "ours_size": at(bid[1], ask[1], ss),
        "vendor_price": at(bid[2], ask[2], ps), "vendor_size": at(bid[3], ask[3], ss),
    })  # fmt: skip


def _rows(lf: pl.LazyFrame, rows: pl.Series, exprs: list[pl.Expr]) -> pl.DataFrame:
    """The given rows of a lazy frame, in that order, read as one contiguous slice."""
    lo, hi = int(rows.min()), int(rows.max())
    block = lf.slice(lo, hi - lo + 1).select(exprs).collect()
    return block[(rows - lo).to_numpy()]


def _first_error(r, eo, ev, op, os_, vp, vs, ps, ss) -> dict:
    if eo[r].any():
        i = int(np.argmax(eo[r]))
        price = op[r, i]
        k = np.flatnonzero(vp[r] == price)
        vendor = _size(vs[r, k[0]], ss) if k.size else None
        return {
            "price": _price(price, ps),
            "ours_size": _size(os_[r, i], ss),
            "vendor_size": vendor,
        }
    i = int(np.argmax(ev[r]))
    return {"price": _price(vp[r, i], ps), "ours_size": None, "vendor_size": _size(vs[r, i], ss)}


def _first_positional(r, bid, ask, ps, ss) -> dict:
    for level in range(BOOK_DEPTH):
        for side, (op, os_, vp, vs) in (("bid", bid), ("ask", ask)):
            if op[r, level] != vp[r, level] or os_[r, level] != vs[r, level]:
                return {
                    "side": side,
                    "level": level,
                    "ours": _level(op[r, level], os_[r, level], ps, ss),
                    "vendor": _level(vp[r, level], vs[r, level], ps, ss),
                }
    raise AssertionError("row differs but no level does")


def _price(units: int, ps: int) -> float:
    return round(int(units) / 10**ps, ps)


def _size(units: int, ss: int) -> float:
    return round(int(units) / 10**ss, ss)


def _level(price: int, size: int, ps: int, ss: int) -> dict | None:
    if price == ABSENT:
        return None
    return {"price": _price(price, ps), "size": _size(size, ss)}


# --- top of book vs the golden bookTicker ---------------------------------------------------------
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
    ).collect()


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
    ).sort("ticker_u")
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

    agreement = _share(equal, n)
    figures = {
        "updates": total,
        "compared": n,
        "equal": equal,
        "agreement": agreement,
        "field_agreement": {
            c.removeprefix("best_"): _share(int(aligned[f"eq_{c}"].sum()), n) for c in BEST_COLUMNS
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
        "passed": _at_least(agreement, min_share),
    }
    return figures, per_minute


# --- trades: lake vs golden by trade id -----------------------------------------------------------
def trade_agreement(
    lake: pl.DataFrame,
    golden: pl.DataFrame,
    *,
    min_share: float,
    lake_source: str | None = None,
    golden_source: str | None = None,
    max_listed: int = 20,
) -> dict:
    """Trades of the lake against the golden recording's by id (vendor raw columns ``id``,
    ``price``, ``amount``, ``side``).

    Both must be the same kind of Binance trade (``trade``: id ``t``, ``aggTrade``: id ``a``);
    with different kinds the ids are unrelated and ``NotComputable`` is raised. The golden
    recording covers the id range [its first id, its last id]: lake ids outside it are counted,
    not judged. ``agreement`` = trades present on both sides with equal price, size and side /
    all ids of either side inside the range.
    """
    if lake_source and golden_source and lake_source != golden_source:
        raise NotComputable(
            f"the lake's trades are Binance {lake_source} records and the golden recording's are "
            f"{golden_source} records: their ids are unrelated"
        )
    if golden.height == 0:
        raise NotComputable("the golden trades file has no rows")
    cols = ["id", "price", "amount", "side"]
    g = golden.select(cols)
    lk = lake.select(cols)
    dup = {"lake": lk.height - lk["id"].n_unique(), "golden": g.height - g["id"].n_unique()}
    g = g.unique("id", keep="first", maintain_order=True)
    lk = lk.unique("id", keep="first", maintain_order=True)
    lo, hi = int(g["id"].min()), int(g["id"].max())
    inside = lk.filter(pl.col("id").is_between(lo, hi))
    outside = lk.height - inside.height
    both = inside.join(g, on="id", how="full", suffix="_golden", coalesce=True)
    in_lake = pl.col("price").is_not_null()
    in_golden = pl.col("price_golden").is_not_null()
    missing = both.filter(~in_lake & in_golden)["id"].sort()
    extra = both.filter(in_lake & ~in_golden)["id"].sort()
    common = both.filter(in_lake & in_golden).with_columns(
        (pl.col("price") != pl.col("price_golden")).alias("price_differs"),
        (pl.col("amount") != pl.col("amount_golden")).alias("size_differs"),
        (pl.col("side") != pl.col("side_golden")).alias("side_differs"),
    )
    differs = common.filter(
        pl.col("price_differs") | pl.col("size_differs") | pl.col("side_differs")
    )
    differs = differs.sort("id")
    union = both.height
    agreement = _share(common.height - differs.height, union)
    return {
        "lake_source": lake_source,
        "golden_source": golden_source,
        "golden_trades": g.height,
        "golden_id_range": [lo, hi],
        "lake_trades": lk.height,
        "lake_trades_outside_golden_range": outside,
        "duplicate_ids": dup,
        "matched": common.height,
        "equal": common.height - differs.height,
        "missing": missing.len(),
        "missing_ids": missing.head(max_listed).to_list(),
        "extra": extra.len(),
        "extra_ids": extra.head(max_listed).to_list(),
        "mismatched": differs.height,
        "mismatched_by_field": {
            f: int(common[f"{f}_differs"].sum()) for f in ("price", "size", "side")
        },
        "mismatched_trades": [
            {
                "id": r["id"],
                "lake": {"price": r["price"], "size": r["amount"], "side": r["side"]},
                "golden": {
                    "price": r["price_golden"],
                    "size": r["amount_golden"],
                    "side": r["side_golden"],
                },
            }  # fmt: skip
            for r in differs.head(max_listed).iter_rows(named=True)
        ],
        "agreement": agreement,
        "threshold": min_share,
        "passed": _at_least(agreement, min_share),
    }


def aggtrade_consistency(
    aggtrades: pl.DataFrame, trades: pl.DataFrame, *, min_share: float, max_listed: int = 20
) -> dict:
    """Each aggTrade's quantity against the sum of its raw trades ``f..l``.

    ``aggtrades``: ``a``, ``f``, ``l``, ``quantity`` (int units); ``trades``: ``t``,
    ``quantity`` (int units at the same scale). aggTrades whose raw trades are not all
    recorded are counted as incomplete, not judged.
    """
    if aggtrades.height == 0 or trades.height == 0:
        raise NotComputable("no aggTrade or no raw trade records to compare")
    t = trades.unique("t").sort("t")
    ids = t["t"].to_numpy()
    cum = np.concatenate([[0], np.cumsum(t["quantity"].to_numpy())])
    f = aggtrades["f"].to_numpy()
    last = aggtrades["l"].to_numpy()
    lo = np.searchsorted(ids, f, side="left")
    hi = np.searchsorted(ids, last, side="right")
    complete = (hi - lo) == (last - f + 1)
    sums = cum[hi] - cum[lo]
    q = aggtrades["quantity"].to_numpy()
    bad = complete & (sums != q)
    a = aggtrades["a"].to_numpy()
    checked = int(complete.sum())
    share = _share(checked - int(bad.sum()), checked)
    return {
        "aggtrades": aggtrades.height,
        "checked": checked,
        "incomplete": int((~complete).sum()),
        "mismatched": int(bad.sum()),
        "mismatched_ids": [int(x) for x in a[bad][:max_listed]],
        "agreement": share,
        "threshold": min_share,
        "passed": _at_least(share, min_share),
    }


# --- sequence gaps --------------------------------------------------------------------------------
def lake_sequence_gaps(
    deltas: pl.DataFrame,
    *,
    max_ratio: float,
    time_gap_bound_s: float,
    max_time_gap_ratio: float,
    max_listed: int = 20,
) -> dict:
    """What ``book_delta_v2`` rows let us check: they carry only each diff's final update id
    ``u``, so continuity (``U == previous u + 1``, ``pu == previous u``) cannot be checked.
    Checked: sequence numbers that decrease (per update), and silences longer than
    ``time_gap_bound_s`` between consecutive updates (a busy market never pauses that long:
    a likely collection outage), as a share of the updates' time span."""
    if deltas.height == 0:
        raise NotComputable("the book_delta_v2 file has no rows")
    frame = deltas.select(to_ns("timestamp", deltas.schema["timestamp"]), "sequence_number")
    seq = frame["sequence_number"].to_numpy()
    starts = np.concatenate([[True], seq[1:] != seq[:-1]])
    useq = seq[starts]
    ut = frame["timestamp"].to_numpy()[starts]
    decreases = np.flatnonzero(useq[1:] < useq[:-1]) + 1
    order = np.sort(ut)
    steps = np.diff(order)
    bound = int(time_gap_bound_s * NS_PER_S)
    long = np.flatnonzero(steps > bound)
    span = int(order[-1] - order[0]) if order.size else 0
    gap_ns = int(steps[long].sum())
    ratio = _share(int(decreases.size), int(useq.size - 1)) if useq.size > 1 else 0.0
    time_ratio = gap_ns / span if span else 0.0
    return {
        "rows": deltas.height,
        "updates": int(useq.size),
        "sequence_decreases": int(decreases.size),
        "first_decreases": [
            {"after": int(useq[i - 1]), "came": int(useq[i]), "timestamp": iso(int(ut[i]))}
            for i in decreases[:max_listed]
        ],
        "sequence_gap_ratio": ratio,
        "continuity_checkable": False,
        "note": "rows carry only each diff's final update id u: U/pu continuity is not checkable",
        "time_gap_bound_s": time_gap_bound_s,
        "time_gaps": int(long.size),
        "time_gap_seconds": gap_ns / NS_PER_S,
        "span_seconds": span / NS_PER_S,
        "time_gap_ratio": time_ratio,
        "longest_time_gaps": [
            {"start": iso(int(order[i])), "seconds": float(steps[i] / NS_PER_S)}
            for i in long[np.argsort(-steps[long], kind="stable")][:max_listed]
        ],
        "threshold": max_ratio,
        "time_gap_ratio_threshold": max_time_gap_ratio,
        "passed": bool(ratio <= max_ratio and time_ratio <= max_time_gap_ratio),
    }


def golden_sequence_gaps(golden_day, *, max_ratio: float, max_listed: int = 20) -> dict:
    """Sequence breaks of the golden captures (``rlx_assets.capture.golden.GoldenDay``): depth
    diffs whose ``U`` (spot) / ``pu`` (futures) does not follow the previous ``u``, trade-id
    breaks and the recorder's own gap markers, per depth diff and as a share of the day's span."""
    depth = sum(n for s, n in golden_day.messages_by_stream.items() if "@depth" in s)
    by_source: dict[str, int] = {}
    for gap in golden_day.gaps:
        by_source[gap.source] = by_source.get(gap.source, 0) + 1
    if depth == 0:
        raise NotComputable("the golden captures hold no depth diff of the day")
    ratio = by_source.get("depth_sequence", 0) / depth
    return {
        "depth_diffs": depth,
        "messages_by_stream": dict(golden_day.messages_by_stream),
        "gaps_by_source": by_source,
        "sequence_gap_ratio": ratio,
        "gap_seconds": golden_day.gap_ns / NS_PER_S,
        "span_seconds": golden_day.span_ns / NS_PER_S,
        "time_gap_ratio": golden_day.gap_ratio,
        "gaps": [g.to_json() for g in golden_day.gaps[:max_listed]],
        "threshold": max_ratio,
        "passed": bool(ratio <= max_ratio),
    }


# --- origin times ---------------------------------------------------------------------------------
def origin_time_validity(
    frame: pl.DataFrame,
    day: dt.date,
    *,
    negative_latency_bound_s: float,
    max_invalid_share: float,
    max_listed: int = 20,
) -> dict:
    """Exchange times (``timestamp``) and receive times (``receipt_timestamp``) of one day's
    file: nulls, exchange times outside the UTC day, and latencies ``receipt_timestamp -
    timestamp`` below ``-negative_latency_bound_s`` (the receiver cannot get a message seconds
    before it was sent, beyond clock skew)."""
    start, end = day_bounds(day)
    f = frame.select(
        to_ns("timestamp", frame.schema["timestamp"]),
        to_ns("receipt_timestamp", frame.schema["receipt_timestamp"]),
    ).with_row_index("row")
    ts, rt = pl.col("timestamp"), pl.col("receipt_timestamp")
    latency = (rt - ts).alias("latency")
    f = f.with_columns(latency)
    bound = -int(negative_latency_bound_s * NS_PER_S)
    null_t = ts.is_null()
    null_r = rt.is_null()
    outside = ts.is_not_null() & ((ts < start) | (ts >= end))
    negative = pl.col("latency").is_not_null() & (pl.col("latency") < bound)
    flags = f.select(
        null_t.alias("null_t"), null_r.alias("null_r"), outside.alias("outside"),
        negative.alias("negative"),
    )  # fmt: skip
    invalid = flags.select(pl.any_horizontal(pl.all()).alias("x"))["x"]
    n = frame.height
    bad_rows = int(invalid.sum())
    lat = f["latency"].drop_nulls().to_numpy() / NS_PER_S
    q = np.quantile(lat, [0.0, 0.01, 0.5, 0.99, 1.0]) if lat.size else [None] * 5
    out_rows = f.filter(outside).head(max_listed)
    share = _share(bad_rows, n)
    return {
        "rows": n,
        "null_timestamp": int(flags["null_t"].sum()),
        "null_receipt_timestamp": int(flags["null_r"].sum()),
        "outside_day": int(flags["outside"].sum()),
        "first_outside_day": [
            {"row": r["row"], "timestamp": iso(r["timestamp"])}
            for r in out_rows.iter_rows(named=True)
        ],
        "negative_latency_beyond_bound": int(flags["negative"].sum()),
        "negative_latency_bound_s": negative_latency_bound_s,
        "latency_s": dict(
            zip(
                ("min", "p01", "p50", "p99", "max"),
                (None if x is None else float(x) for x in q),
                strict=True,
            )
        ),  # fmt: skip
        "invalid_rows": bad_rows,
        "invalid_share": share,
        "threshold": max_invalid_share,
        "passed": None if share is None else bool(share <= max_invalid_share),
    }
