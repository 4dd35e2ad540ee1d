"""Sequence integrity: what the lake's ``book_delta_v2`` rows let us check (decreasing update
ids, long silences) and the golden captures' sequence breaks. May import ``base`` and
``stats.pieces``.
"""

from __future__ import annotations

import numpy as np
import polars as pl

from rlx_assets.stats.agreement.base import NS_PER_S, NotComputable, iso, share_of, to_ns
from rlx_assets.stats.pieces import read_pieces


def _update_starts(deltas: pl.LazyFrame) -> tuple[int, np.ndarray, np.ndarray]:
    """(rows, sequence number, timestamp) of each update's first row (rows of one update are
    consecutive), piece by piece: a day's 40 M rows become ~1 M updates without being held."""
    schema = deltas.collect_schema()
    columns = [to_ns("timestamp", schema["timestamp"]), pl.col("sequence_number")]
    rows, seqs, times, last = 0, [], [], None
    for batch in read_pieces(deltas, lambda piece: piece.select(columns)):
        seq = batch["sequence_number"].to_numpy()
        if seq.size == 0:
            continue
        starts = np.concatenate([[seq[0] != last], seq[1:] != seq[:-1]])
        seqs.append(seq[starts])
        times.append(batch["timestamp"].to_numpy()[starts])
        rows, last = rows + seq.size, seq[-1]
    if not seqs:
        return 0, np.zeros(0, np.int64), np.zeros(0, np.int64)
    return rows, np.concatenate(seqs), np.concatenate(times)


def lake_sequence_gaps(
    deltas: pl.DataFrame | pl.LazyFrame,
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
    rows, useq, ut = _update_starts(deltas.lazy())
    if rows == 0:
        raise NotComputable("the book_delta_v2 file has no rows")
    decreases = np.flatnonzero(useq[1:] < useq[:-1]) + 1
    order = np.sort(ut)
    steps = np.diff(order)
    bound = int(time_gap_bound_s * NS_PER_S)
    long = np.flatnonzero(steps > bound)
    span = int(order[-1] - order[0]) if order.size else 0
    gap_ns = int(steps[long].sum())
    ratio = share_of(int(decreases.size), int(useq.size - 1)) if useq.size > 1 else 0.0
    time_ratio = gap_ns / span if span else 0.0
    return {
        "rows": rows,
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
