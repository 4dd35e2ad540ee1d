"""Origin-time validity of one day's file: nulls, exchange times outside the UTC day, receive
times implausibly long before the exchange time. May import ``base``.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import polars as pl

from rlx_assets.stats.agreement.base import NS_PER_S, day_bounds, iso, share_of, to_ns


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
    share = share_of(bad_rows, n)
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
