"""Every disagreement located: one row per difference, with its exchange time, its kind, the
trade id or sequence number, and both sides' values as text.

Two comparisons, told apart by ``comparison``:

* ``lake_vs_golden``: the lake's files against the golden recording's, by trade id
  (``trade_missing``, ``trade_extra``, ``trade_mismatch``: price, size, side or exchange time),
  by update (``sequence_gap``: a range of updates one side lacks; ``book_mismatch``: an update
  both hold with different rows; ``time_gap``: a silence of the lake longer than the bound
  while the golden recording has updates) and by book row (``top_of_book_mismatch``,
  ``book_mismatch``: the vendor's top 20 against the golden book at the same sequence number).
* ``reconstruction_vs_vendor_book``: our top 20 against the vendor's book rows
  (``book_mismatch``, first differing level; ``lake`` holds the vendor's value,
  ``reconstruction`` ours).

Vectorised polars joins; no per-row Python. Rows are in time order.
"""

from __future__ import annotations

import polars as pl

from rlx_assets.stats.agreement import (
    NS_PER_MINUTE,
    NS_PER_S,
    in_window,
    iso,
    key_windows,
    to_ns,
)
from rlx_assets.stats.pieces import read_pieces, span
from rlx_assets.vendor_schemas import BOOK_DEPTH

FILE_NAME = "discrepancies.parquet"
KINDS = (
    "trade_missing",
    "trade_extra",
    "trade_mismatch",
    "top_of_book_mismatch",
    "book_mismatch",
    "sequence_gap",
    "time_gap",
)
LAKE_VS_GOLDEN = "lake_vs_golden"
RECONSTRUCTION_VS_VENDOR_BOOK = "reconstruction_vs_vendor_book"
SCHEMA = {
    "time": pl.Datetime("ns", "UTC"),
    "kind": pl.String,
    "id": pl.Int64,
    "lake": pl.String,
    "golden": pl.String,
    "reconstruction": pl.String,
    "comparison": pl.String,
}
TRADE_COLUMNS = ("id", "price", "amount", "side", "timestamp")


def empty() -> pl.DataFrame:
    return pl.DataFrame(schema=SCHEMA)


def _rows(frame: pl.DataFrame, kind: str | pl.Expr, comparison: str, **text: pl.Expr):
    """Discrepancy rows from ``frame``: ``time`` (ns) and ``id`` columns plus text columns."""
    kind_expr = pl.lit(kind) if isinstance(kind, str) else kind
    cols = {c: text.get(c, pl.lit(None, pl.String)) for c in ("lake", "golden", "reconstruction")}
    return frame.select(
        pl.col("time").cast(pl.Int64).cast(pl.Datetime("ns", "UTC")).alias("time"),
        kind_expr.alias("kind"),
        pl.col("id").cast(pl.Int64),
        *(e.cast(pl.String).alias(c) for c, e in cols.items()),
        pl.lit(comparison).alias("comparison"),
    )


def _time_text(column: str) -> pl.Expr:
    return pl.col(column).cast(pl.Datetime("ns", "UTC")).dt.to_string("%Y-%m-%dT%H:%M:%S%.3f")


# --- trades ---------------------------------------------------------------------------------------
def _trades(frame: pl.DataFrame) -> pl.DataFrame:
    return frame.select(
        pl.col("id").cast(pl.Int64), pl.col("price").cast(pl.Float64),
        pl.col("amount").cast(pl.Float64), pl.col("side").cast(pl.String),
        to_ns("timestamp", frame.schema["timestamp"]),
    ).unique("id", keep="first", maintain_order=True)  # fmt: skip


def trade_discrepancies(
    lake: pl.DataFrame | pl.LazyFrame, golden: pl.DataFrame | pl.LazyFrame
) -> pl.DataFrame:
    """Lake trades against golden trades by id, inside the golden id range (outside it the
    golden recording cannot tell). Frames or lazy scans (a day's files are read window by
    window of trade ids)."""
    lake, golden = lake.lazy(), golden.lazy()
    ids = golden.select(pl.col("id").min().alias("lo"), pl.col("id").max().alias("hi"))
    lo, hi = ids.collect(engine="streaming").row(0)
    if lo is None:
        return empty()
    parts = []
    for window in key_windows([lake, golden], "id", columns=len(TRADE_COLUMNS)):
        ids = pl.col("id").is_between(*window)
        g, lk = _trades(golden.filter(ids).collect()), _trades(lake.filter(ids).collect())
        parts.append(_window_trades(lk.filter(pl.col("id").is_between(lo, hi)), g))
    return pl.concat(parts)


def _window_trades(lk: pl.DataFrame, g: pl.DataFrame) -> pl.DataFrame:
    both = lk.join(g, on="id", how="full", coalesce=True, suffix="_golden")
    in_lake, in_golden = pl.col("price").is_not_null(), pl.col("price_golden").is_not_null()

    def whole(suffix: str) -> pl.Expr:
        return pl.format(
            "price={} size={} side={} time={}", pl.col(f"price{suffix}"),
            pl.col(f"amount{suffix}"), pl.col(f"side{suffix}"), _time_text(f"timestamp{suffix}"),
        )  # fmt: skip

    def differing(suffix: str) -> pl.Expr:
        parts = []
        for name, column in (("price", "price"), ("size", "amount"), ("side", "side")):
            differs = pl.col(column) != pl.col(f"{column}_golden")
            parts.append(pl.when(differs).then(pl.format(f"{name}={{}}", pl.col(column + suffix))))
        differs = pl.col("timestamp") != pl.col("timestamp_golden")
        parts.append(pl.when(differs).then(pl.format("time={}", _time_text("timestamp" + suffix))))
        return pl.concat_str(parts, separator=" ", ignore_nulls=True)

    mismatch = (
        (pl.col("price") != pl.col("price_golden"))
        | (pl.col("amount") != pl.col("amount_golden"))
        | (pl.col("side") != pl.col("side_golden"))
        | (pl.col("timestamp") != pl.col("timestamp_golden"))
    )
    missing = both.filter(~in_lake & in_golden).with_columns(time=pl.col("timestamp_golden"))
    extra = both.filter(in_lake & ~in_golden).with_columns(time=pl.col("timestamp"))
    # a mismatched trade sits at the golden (true) time: a shifted time points to where it was
    differs = both.filter(in_lake & in_golden & mismatch).with_columns(
        time=pl.col("timestamp_golden")
    )
    return pl.concat([
        _rows(missing, "trade_missing", LAKE_VS_GOLDEN, golden=whole("_golden")),
        _rows(extra, "trade_extra", LAKE_VS_GOLDEN, lake=whole("")),
        _rows(differs, "trade_mismatch", LAKE_VS_GOLDEN, lake=differing(""),
              golden=differing("_golden")),
    ])  # fmt: skip


# --- book_delta_v2: updates, their rows, silences -------------------------------------------------
def _deltas(frame: pl.LazyFrame) -> pl.LazyFrame:
    schema = frame.collect_schema()
    return frame.select(
        to_ns("timestamp", schema["timestamp"]), pl.col("sequence_number").cast(pl.Int64),
        pl.col("side_is_bid"), pl.col("price").cast(pl.Float64), pl.col("size").cast(pl.Float64),
    )  # fmt: skip


def _updates(deltas: pl.DataFrame) -> pl.DataFrame:
    """One row per update (sequence number) of a window's rows, with a fingerprint of its rows
    (the sum of their hashes, in any order) and its rows whose price or size is null or NaN
    (which no fingerprint can vouch for)."""
    odd = (
        pl.any_horizontal(pl.col(c).is_null() | pl.col(c).is_nan() for c in ("price", "size"))
        | pl.col("side_is_bid").is_null()
    )
    if deltas["sequence_number"].is_sorted():  # a file's updates come in order: 2x faster
        deltas = deltas.with_columns(pl.col("sequence_number").set_sorted())
    return (
        deltas.with_columns(
            pl.struct("side_is_bid", "price", "size").hash(seed=0).alias("_hash"),
            odd.alias("_odd"),
        )
        .group_by("sequence_number")
        .agg(
            pl.col("timestamp").min().alias("time"),
            pl.len().alias("rows"),
            pl.col("_hash").sum().alias("_fingerprint"),
            pl.col("_odd").sum(),
        )  # fmt: skip
        .sort("sequence_number")
    )


def _ranges(only: pl.DataFrame, order: pl.DataFrame) -> pl.DataFrame:
    """Runs of consecutive updates (in ``order``'s sequence order) that ``only`` holds, with
    the ranks in ``order`` of their first and last update."""
    ranked = only.join(
        order.select("sequence_number", pl.int_range(pl.len()).alias("_rank")),
        on="sequence_number",
    ).sort("_rank")
    return (
        ranked.with_columns((pl.col("_rank") - pl.int_range(pl.len())).alias("_run"))
        .group_by("_run")
        .agg(
            pl.col("sequence_number").first().alias("id"),
            pl.col("sequence_number").last().alias("last"),
            pl.col("time").first().alias("time"),
            pl.len().alias("n"),
            pl.col("_rank").first().alias("_first"),
            pl.col("_rank").last().alias("_last"),
        )
        .sort("_first")
    )


class _Runs:
    """``_ranges`` over a day, window by window: a run that reaches the last update of a
    window (in the holding side's order) goes on with a run from the first update of the next
    window holding any."""

    def __init__(self):
        self.done: list[pl.DataFrame] = []
        self.open: pl.DataFrame | None = None  # the run reaching the last window's end

    def add(self, only: pl.DataFrame, order: pl.DataFrame) -> None:
        if order.height == 0:
            return
        runs = _ranges(only, order)
        if self.open is not None:
            if runs.height and runs["_first"][0] == 0:
                first = runs.head(1).with_columns(
                    id=self.open["id"], time=self.open["time"], n=pl.col("n") + self.open["n"]
                )
                runs = pl.concat([first, runs.slice(1)])
            else:
                self.done.append(self.open)
            self.open = None
        if runs.height and runs["_last"][-1] == order.height - 1:
            self.open, runs = runs.tail(1), runs.head(-1)
        self.done.append(runs)

    def frame(self) -> pl.DataFrame:
        runs = [*self.done, *([self.open] if self.open is not None else [])]
        return pl.concat(runs) if runs else _NO_RUNS


_NO_RUNS = pl.DataFrame(schema={"id": pl.Int64, "last": pl.Int64, "time": pl.Int64, "n": pl.UInt32})


def delta_discrepancies(
    lake: pl.DataFrame | pl.LazyFrame, golden: pl.DataFrame | pl.LazyFrame, *,
    time_gap_bound_s: float,
) -> pl.DataFrame:  # fmt: skip
    """Lake ``book_delta_v2`` against the golden recording's, over the sequence range both
    cover. Frames or lazy scans: a day's files are read window by window of sequence numbers
    (every row of an update in one window); only the updates' times are kept, for the
    silences."""
    lake, golden = lake.lazy(), golden.lazy()
    seq = "sequence_number"
    ends = [span(read_pieces(f, lambda p: p.select(seq)), seq) for f in (lake, golden)]
    if any(first is None for first, _ in ends):
        return empty()
    common = pl.col("sequence_number").is_between(
        max(first for first, _ in ends), min(last for _, last in ends)
    )
    ld, gd = _deltas(lake), _deltas(golden)
    missing, extra = _Runs(), _Runs()
    parts, lake_times, golden_times = [], [], []
    for window in key_windows([lake, golden], "sequence_number"):
        inside = pl.col("sequence_number").is_between(*window)
        lake_rows, golden_rows = ld.filter(inside).collect(), gd.filter(inside).collect()
        lu, gu = _updates(lake_rows), _updates(golden_rows)
        lake_times.append(lu.select("time", "sequence_number"))
        golden_times.append(gu.select("time"))
        lu_w, gu_w = lu.filter(common), gu.filter(common)
        missing.add(gu_w.join(lu_w, on="sequence_number", how="anti"), gu_w)
        extra.add(lu_w.join(gu_w, on="sequence_number", how="anti"), lu_w)
        parts.append(_update_row_mismatches(lake_rows, golden_rows, lu_w, gu_w))
    run = pl.format("u {}..{}: {} updates", pl.col("id"), pl.col("last"), pl.col("n"))
    absent = pl.lit("absent")
    return pl.concat([
        _rows(missing.frame(), "sequence_gap", LAKE_VS_GOLDEN, lake=absent, golden=run),
        _rows(extra.frame(), "sequence_gap", LAKE_VS_GOLDEN, lake=run, golden=absent),
        *parts,
        _silences(pl.concat(lake_times), pl.concat(golden_times), time_gap_bound_s),
    ])  # fmt: skip


def _update_row_mismatches(lake_rows, golden_rows, lu_w, gu_w) -> pl.DataFrame:
    # Rows are compared only for the updates both sides hold whose rows may differ: another
    # row count or fingerprint, or a null/NaN value (a day of agreeing updates compares none).
    both = lu_w.join(gu_w, on="sequence_number", suffix="_golden")
    common = both.filter(
        (pl.col("rows") != pl.col("rows_golden"))
        | (pl.col("_fingerprint") != pl.col("_fingerprint_golden"))
        | (pl.col("_odd") > 0) | (pl.col("_odd_golden") > 0)
    ).select("sequence_number", "rows")  # fmt: skip
    if common.height == 0:
        return empty()
    return _window_row_mismatches(lake_rows, golden_rows, common)


def _window_row_mismatches(ld, gd, common) -> pl.DataFrame:
    keys = ["sequence_number", "side_is_bid", "price"]
    lr = ld.join(common.select("sequence_number"), on="sequence_number", how="semi")
    gr = gd.join(common.select("sequence_number"), on="sequence_number", how="semi")
    both = lr.join(gr, on=keys, how="full", coalesce=True, suffix="_golden")
    differs = both.filter(
        pl.col("size").is_null()
        | pl.col("size_golden").is_null()
        | (pl.col("size") != pl.col("size_golden"))
    )
    first = (
        differs.with_columns(pl.coalesce("timestamp", "timestamp_golden").alias("time"))
        .sort("sequence_number", "side_is_bid", "price", descending=[False, True, False])
        .unique("sequence_number", keep="first", maintain_order=True)
        .rename({"sequence_number": "id"})
    )

    def level(suffix: str) -> pl.Expr:
        side = pl.when(pl.col("side_is_bid")).then(pl.lit("bid")).otherwise(pl.lit("ask"))
        return (
            pl.when(pl.col(f"size{suffix}").is_null())
            .then(pl.format("{} {}: no row", side, pl.col("price")))
            .otherwise(pl.format("{} {} size {}", side, pl.col("price"), pl.col(f"size{suffix}")))
        )

    return _rows(first, "book_mismatch", LAKE_VS_GOLDEN, lake=level(""), golden=level("_golden"))


def _silences(lu: pl.DataFrame, gu: pl.DataFrame, bound_s: float) -> pl.DataFrame:
    """Lake silences longer than the bound during which the golden recording has updates;
    located at the first golden update the lake missed."""
    bound = int(bound_s * NS_PER_S)
    times = lu.select("time", "sequence_number").sort("time")
    gaps = times.with_columns(
        pl.col("time").shift(-1).alias("until"),
    ).filter((pl.col("until") - pl.col("time")) > bound)
    if gaps.height == 0:
        return empty()
    golden = gu.select(pl.col("time").alias("g_time")).sort("g_time")
    located = gaps.sort("time").join_asof(
        golden, left_on="time", right_on="g_time", strategy="forward", allow_exact_matches=False
    )
    located = located.filter(pl.col("g_time") < pl.col("until"))
    counts = located.select(
        pl.col("g_time").alias("time"),
        pl.col("sequence_number").alias("id"),
        ((pl.col("until") - pl.col("time")) / NS_PER_S).round(3).alias("seconds"),
        pl.col("time").alias("from"),
        pl.col("until"),
    )
    # golden updates inside each silence, vectorised with a sorted search
    g = golden["g_time"]
    inside = g.search_sorted(counts["until"], side="left") - g.search_sorted(
        counts["from"], side="right"
    )
    counts = counts.with_columns(inside.alias("inside"))
    return _rows(
        counts, "time_gap", LAKE_VS_GOLDEN,
        lake=pl.format("no update for {} s", pl.col("seconds")),
        golden=pl.format("{} updates", pl.col("inside")),
    )  # fmt: skip


# --- vendor book rows: lake vs golden ------------------------------------------------------------
_LEVEL_COLUMNS = [
    f"{side}_{i}_{what}" for side in ("bid", "ask") for i in range(BOOK_DEPTH)
    for what in ("price", "size")
]  # fmt: skip
_TOP = ["bid_0_price", "bid_0_size", "ask_0_price", "ask_0_size"]


def book_row_discrepancies(
    lake: pl.DataFrame | pl.LazyFrame, golden: pl.DataFrame | pl.LazyFrame
) -> pl.DataFrame:
    """The vendor's book rows against the golden book's with the same sequence number (the
    n-th row of a repeated number pairs with the n-th): a different best bid/ask is a
    ``top_of_book_mismatch``, a difference deeper down a ``book_mismatch``. Frames or lazy
    scans (a day's files are read window by window)."""
    lake, golden = lake.lazy(), golden.lazy()
    windows = key_windows([lake], "sequence_number", columns=2 + len(_LEVEL_COLUMNS))
    parts = [
        _window_book_rows(in_window(lake, lo, hi), in_window(golden, lo, hi)) for lo, hi in windows
    ]
    return pl.concat(parts) if parts else empty()


def _window_book_rows(lake: pl.DataFrame, golden: pl.DataFrame) -> pl.DataFrame:
    if lake.height == 0 or golden.height == 0:
        return empty()

    def prepare(frame: pl.DataFrame) -> pl.DataFrame:
        return frame.select(
            to_ns("timestamp", frame.schema["timestamp"]), "sequence_number",
            *(pl.col(c).cast(pl.Float64).fill_nan(None) for c in _LEVEL_COLUMNS),
        ).with_columns(pl.int_range(pl.len()).over("sequence_number").alias("_n"))  # fmt: skip

    both = prepare(lake).join(prepare(golden), on=["sequence_number", "_n"], suffix="_golden")
    if both.height == 0:
        return empty()

    def same(c: str) -> pl.Expr:
        return pl.col(c).eq_missing(pl.col(f"{c}_golden"))

    top_same = pl.all_horizontal([same(c) for c in _TOP])
    all_same = pl.all_horizontal([same(c) for c in _LEVEL_COLUMNS])
    differs = both.filter(~all_same).with_columns(
        pl.when(top_same).then(pl.lit("book_mismatch")).otherwise(pl.lit("top_of_book_mismatch"))
        .alias("kind"),
        pl.col("timestamp").alias("time"), pl.col("sequence_number").alias("id"),
    )  # fmt: skip
    # the first differing level, named with both sides' values
    first = pl.coalesce([
        pl.when(~same(c)).then(pl.lit(c)) for c in _LEVEL_COLUMNS
    ])  # fmt: skip
    differs = differs.with_columns(first.alias("_first"))

    def value(suffix: str) -> pl.Expr:
        return pl.coalesce([
            pl.when(pl.col("_first") == c).then(
                pl.format("{}={}", pl.lit(c), pl.col(c + suffix).cast(pl.String).fill_null("none"))
            ) for c in _LEVEL_COLUMNS
        ])  # fmt: skip

    return _rows(differs, pl.col("kind"), LAKE_VS_GOLDEN, lake=value(""), golden=value("_golden"))


# --- our top 20 vs the vendor's book rows --------------------------------------------------------
def reconstruction_discrepancies(rows: list[pl.DataFrame]) -> pl.DataFrame:
    """``book_agreement``'s disagreeing rows (its ``mismatch_rows``) as discrepancy rows."""
    if not rows:
        return empty()
    frame = pl.concat(rows).rename({"timestamp": "time", "sequence_number": "id"})

    def level(prefix: str) -> pl.Expr:
        return (
            pl.when(pl.col(f"{prefix}_price").is_nan())
            .then(pl.format("{} {}: no level", pl.col("side"), pl.col("level")))
            .otherwise(pl.format(
                "{} {}: {} size {}", pl.col("side"), pl.col("level"),
                pl.col(f"{prefix}_price"), pl.col(f"{prefix}_size"),
            ))
        )  # fmt: skip

    return _rows(
        frame, "book_mismatch", RECONSTRUCTION_VS_VENDOR_BOOK,
        lake=level("vendor"), reconstruction=level("ours"),
    )  # fmt: skip


# --- summaries ------------------------------------------------------------------------------------
def by_minute(frame: pl.DataFrame) -> dict[str, dict[str, int]]:
    """minute (ISO, UTC) -> kind -> count."""
    if frame.height == 0:
        return {}
    counts = (
        frame.with_columns(
            (pl.col("time").dt.epoch("ns") // NS_PER_MINUTE * NS_PER_MINUTE).alias("minute")
        )
        .group_by("minute", "kind")
        .agg(pl.len().alias("n"))
        .sort("minute", "kind")
    )
    out: dict[str, dict[str, int]] = {}
    for minute, kind, n in counts.iter_rows():
        out.setdefault(iso(minute)[:16] + "Z", {})[kind] = n
    return out


def worst_minutes(minutes: dict[str, dict[str, int]], n: int) -> list[dict]:
    ranked = sorted(minutes.items(), key=lambda kv: (-sum(kv[1].values()), kv[0]))
    return [{"minute": m, "total": sum(k.values()), "by_kind": k} for m, k in ranked[:n]]


def summary(frame: pl.DataFrame, *, worst: int) -> dict:
    minutes = by_minute(frame)
    kinds = frame.group_by("kind").agg(pl.len().alias("n")).sort("kind") if frame.height else None
    first = frame.head(1).to_dicts()
    return {
        "rows": frame.height,
        "by_kind": {} if kinds is None else dict(kinds.iter_rows()),
        "first": {**first[0], "time": first[0]["time"].isoformat()} if first else None,
        "worst_minutes": worst_minutes(minutes, worst),
        "by_minute": minutes,
    }
