"""Origin-time validity of one day's file: nulls, exchange times outside the UTC day, receive
times implausibly long before the exchange time. May import ``base``, ``stats.pieces`` and
``stats.quantiles``.
"""

from __future__ import annotations

import datetime as dt

import polars as pl

from rlx_assets.stats.agreement.base import NS_PER_S, day_bounds, iso, share_of, to_ns
from rlx_assets.stats.pieces import pieces
from rlx_assets.stats.quantiles import linear_quantiles

QUANTILES = (0.0, 0.01, 0.5, 0.99, 1.0)  # min, p01, p50, p99, max


def origin_time_validity(
    frame: pl.DataFrame | pl.LazyFrame,
    day: dt.date,
    *,
    negative_latency_bound_s: float,
    max_invalid_share: float,
    max_listed: int = 20,
) -> dict:
    """Exchange times (``timestamp``) and receive times (``receipt_timestamp``) of one day's
    file: nulls, exchange times outside the UTC day, and latencies ``receipt_timestamp -
    timestamp`` below ``-negative_latency_bound_s`` (the receiver cannot get a message seconds
    before it was sent, beyond clock skew). A frame or a lazy scan, read piece by piece
    (``stats.pieces``; the latency quantiles exact from ``stats.quantiles``): nothing of the day
    is held."""
    start, end = day_bounds(day)
    schema = frame.lazy().collect_schema()
    times = [to_ns(c, schema[c]) for c in ("timestamp", "receipt_timestamp")]
    ts, rt = pl.col("timestamp"), pl.col("receipt_timestamp")
    latency = rt - ts
    bound = -int(negative_latency_bound_s * NS_PER_S)
    null_t = ts.is_null()
    null_r = rt.is_null()
    outside = ts.is_not_null() & ((ts < start) | (ts >= end))
    negative = latency.is_not_null() & (latency < bound)
    counts = dict.fromkeys(("rows", "null_t", "null_r", "outside", "negative", "invalid"), 0)
    out_rows: list[dict] = []
    for offset, piece in pieces(frame):
        f = piece.select(times).collect()
        piece_counts = f.select(
            pl.len().alias("rows"), null_t.sum().alias("null_t"), null_r.sum().alias("null_r"),
            outside.sum().alias("outside"), negative.sum().alias("negative"),
            pl.any_horizontal(null_t, null_r, outside, negative).sum().alias("invalid"),
        ).row(0, named=True)  # fmt: skip
        counts = {k: v + int(piece_counts[k]) for k, v in counts.items()}
        first = f.with_row_index("row", offset=offset).filter(outside)
        out_rows += first.head(max_listed - len(out_rows)).to_dicts()
    n = counts["rows"]
    bad_rows = counts["invalid"]
    # exact, in bounded memory: a day's file has up to ~40 M latencies
    q = linear_quantiles(frame, times[1] - times[0], QUANTILES, divisor=NS_PER_S) or [None] * len(
        QUANTILES
    )
    share = share_of(bad_rows, n)
    return {
        "rows": n,
        "null_timestamp": int(counts["null_t"]),
        "null_receipt_timestamp": int(counts["null_r"]),
        "outside_day": int(counts["outside"]),
        "first_outside_day": [
            {"row": r["row"], "timestamp": iso(r["timestamp"])} for r in out_rows
        ],
        "negative_latency_beyond_bound": int(counts["negative"]),
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
