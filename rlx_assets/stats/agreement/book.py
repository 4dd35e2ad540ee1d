"""Book agreement: our top 20 (``snapshots_vendor.parquet``, read from the written files)
against the vendor's ``book`` rows with the same sequence number. May import ``base``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import polars as pl

from rlx_assets.stats.agreement.base import (
    ABSENT,
    NotComputable,
    at_least,
    decimal_scale,
    iso,
    key_windows,
    share_of,
    to_ns,
    units_expr,
)
from rlx_assets.vendor_schemas import BOOK_DEPTH


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


CHUNK_ROWS = 20_000  # rows of 80 levels compared at a time (~60 MB of arrays)
KEY_COLUMNS = 10  # key windows of ~250 k rows of both files together (see sequence_windows)


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
    chunk_rows: int | None = None,
    mismatch_rows: list[pl.DataFrame] | None = None,
) -> dict:
    """Our top 20 (``snapshots_vendor.parquet``) against the vendor ``book`` rows with the same
    sequence number (the n-th row of a repeated number with the n-th), window by window of
    sequence numbers (``key_windows``), their levels read in chunks of ``chunk_rows`` rows
    (default ``CHUNK_ROWS``): memory does not grow with the day.

    The independent cross-check of the replay's own comparison (``book.reconstruct``'s
    ``_compare_levels``, in the numba kernel): this one reads the written files, not the replay.

    Rows before the seed are not compared (a cold start copies the vendor row at the seed, so
    that row is not compared either). ``exact_share``: rows equal at all 40 levels.
    ``agreement``: rows where every level we hold is in the vendor's row with the same size
    and every level the vendor holds is in ours, except levels outside the known depth
    (bids below ``known_bid_floor``, asks above ``known_ask_ceiling``): a book seeded from a
    top-20 row cannot know deeper levels that no delta has touched since. Every level we hold
    came from the seed or a delta, so it is exact wherever it lies; a book known to full depth
    (no bounds) must agree exactly. Rows are listed in the vendor file's order.

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
    if v_lf.select(pl.len()).collect().item() == 0:
        raise NotComputable("the vendor book file has no rows")
    level_cols = [
        f"{side}_{i}_{what}" for side in ("bid", "ask") for i in range(BOOK_DEPTH)
        for what in ("price", "size")
    ]  # fmt: skip
    extra = [c for c in ("matches_vendor",) if c in o_schema.names()]
    has_book = pl.col("bid_0_price").is_not_null() | pl.col("ask_0_price").is_not_null()
    compare = _Comparison(
        [units_expr(c, ps if c.endswith("price") else ss) for c in level_cols], ps, ss,
        None if known_bid_floor is None else round(known_bid_floor * 10**ps),
        None if known_ask_ceiling is None else round(known_ask_ceiling * 10**ps),
        max_listed, mismatch_rows is not None, True if extra else None,
    )  # fmt: skip
    v_keys = v_lf.with_row_index("v_row").select(
        to_ns("timestamp", v_schema["timestamp"]), "sequence_number", "v_row"
    )
    o_keys = o_lf.with_row_index("o_row").select(
        "sequence_number", *extra, has_book.alias("_has_book"), "o_row"
    )
    for window in key_windows([v_lf, o_lf], "sequence_number", columns=KEY_COLUMNS):
        in_window = pl.col("sequence_number").is_between(*window)
        v_w = _with_occurrence(v_keys.filter(in_window)).collect()
        o_w = _with_occurrence(o_keys.filter(in_window)).collect()
        pairs = v_w.join(o_w, on=["sequence_number", "_occurrence"], how="inner")
        # A vendor row the reconstruction has no row for is a mismatch, not a row left out
        # (after the seed, where our book is known).
        unpaired = v_w.join(o_w, on=["sequence_number", "_occurrence"], how="anti")
        seq = pairs["sequence_number"]
        if seed_sequence is not None:
            keep = seq > seed_sequence if started_cold else seq >= seed_sequence
            known = pl.col("sequence_number")
            known = known > seed_sequence if started_cold else known >= seed_sequence
            unpaired = unpaired.filter(known)
        else:  # rows where our book was known
            keep = pairs["_has_book"]
        compare.vendor_rows += v_w.height
        compare.paired += keep.len()
        compare.unpaired(unpaired.sort("v_row"))
        pairs = pairs.filter(keep).sort("v_row")
        chunk = chunk_rows or CHUNK_ROWS
        for lo in range(0, pairs.height, chunk):
            compare.chunk(pairs.slice(lo, chunk), v_lf, o_lf)
    if mismatch_rows is not None and compare.mismatch_frames:
        mismatch_rows.append(
            pl.concat(compare.mismatch_frames).sort("_v_row", maintain_order=True).drop("_v_row")
        )
    return compare.figures(min_share, known_bid_floor, known_ask_ceiling)


@dataclass
class _Comparison:
    """The figures of ``book_agreement`` summed over windows and chunks, with the first rows
    listed (each list in the vendor file's order: by ``v_row``)."""

    unit_exprs: list[pl.Expr]
    ps: int
    ss: int
    floor: int | None
    ceiling: int | None
    max_listed: int
    keep_mismatch_rows: bool
    agrees_with_reconstruction: bool | None
    vendor_rows: int = 0
    paired: int = 0
    n: int = 0
    equal: int = 0
    consistent_rows: int = 0
    without_reconstruction: int = 0
    level_equal: np.ndarray = field(default_factory=lambda: np.zeros(BOOK_DEPTH, np.int64))
    mismatches: list[tuple[int, dict]] = field(default_factory=list)
    outside: list[tuple[int, dict]] = field(default_factory=list)
    unpaired_rows: list[tuple[int, dict]] = field(default_factory=list)
    mismatch_frames: list[pl.DataFrame] = field(default_factory=list)

    def unpaired(self, rows: pl.DataFrame) -> None:
        self.without_reconstruction += rows.height
        for row in rows.head(self.max_listed).iter_rows(named=True):
            self.unpaired_rows.append((row["v_row"], {
                "sequence_number": int(row["sequence_number"]),
                "timestamp": iso(int(row["timestamp"])),
                "side": None, "problem": "no reconstruction row for this vendor row",
            }))  # fmt: skip

    def chunk(self, chunk: pl.DataFrame, v_lf: pl.LazyFrame, o_lf: pl.LazyFrame) -> None:
        ps, ss, max_listed = self.ps, self.ss, self.max_listed
        v = _rows(v_lf, chunk["v_row"], self.unit_exprs)
        o = _rows(o_lf, chunk["o_row"], self.unit_exprs)
        vbp, vbs, vap, vas = (_level_matrix(v, s_, w) for s_, w in _SIDES)
        obp, obs, oap, oas = (_level_matrix(o, s_, w) for s_, w in _SIDES)
        del v, o
        level_eq = (obp == vbp) & (obs == vbs) & (oap == vap) & (oas == vas)
        row_eq = level_eq.all(axis=1)
        bid_o, bid_v = _side_errors(obp, obs, vbp, vbs, True, self.floor)
        ask_o, ask_v = _side_errors(oap, oas, vap, vas, False, self.ceiling)
        consistent = ~(bid_o.any(1) | bid_v.any(1) | ask_o.any(1) | ask_v.any(1))
        self.n += row_eq.size
        self.equal += int(row_eq.sum())
        self.consistent_rows += int(consistent.sum())
        self.level_equal += level_eq.sum(axis=0)
        seqs, times = chunk["sequence_number"].to_numpy(), chunk["timestamp"].to_numpy()
        v_rows = chunk["v_row"].to_numpy()
        if self.keep_mismatch_rows and not consistent.all():
            bad = np.flatnonzero(~consistent)
            frame = _mismatch_frame(
                bad, seqs, times, bid_o | bid_v, ask_o | ask_v,
                (obp, obs, vbp, vbs), (oap, oas, vap, vas), ps, ss,
            )  # fmt: skip
            self.mismatch_frames.append(frame.with_columns(pl.Series("_v_row", v_rows[bad])))
        for r in np.flatnonzero(~consistent)[:max_listed]:
            where = {"sequence_number": int(seqs[r]), "timestamp": iso(int(times[r]))}
            for side, (eo, ev, op, os_, vp, vs) in (
                ("bid", (bid_o, bid_v, obp, obs, vbp, vbs)),
                ("ask", (ask_o, ask_v, oap, oas, vap, vas)),
            ):
                if eo[r].any() or ev[r].any():
                    self.mismatches.append((v_rows[r], {**where, "side": side, **_first_error(
                        r, eo, ev, op, os_, vp, vs, ps, ss
                    )}))  # fmt: skip
                    break
        for r in np.flatnonzero(consistent & ~row_eq)[: min(5, max_listed)]:
            self.outside.append((v_rows[r], {
                "sequence_number": int(seqs[r]), "timestamp": iso(int(times[r])),
                **_first_positional(r, (obp, obs, vbp, vbs), (oap, oas, vap, vas), ps, ss),
            }))  # fmt: skip
        if self.agrees_with_reconstruction is not None:
            theirs = chunk["matches_vendor"]
            known = theirs.is_not_null().to_numpy()
            same = theirs.to_numpy()[known].astype(bool) == row_eq[known]
            self.agrees_with_reconstruction = self.agrees_with_reconstruction and bool(same.all())

    def figures(
        self, min_share: float, known_bid_floor: float | None, known_ask_ceiling: float | None
    ) -> dict:
        mismatches = _first(self.mismatches, self.max_listed)
        mismatches += _first(self.unpaired_rows, max(self.max_listed - len(mismatches), 0))
        n = self.n + self.without_reconstruction
        agreement = share_of(self.consistent_rows, n)
        return {
            "vendor_rows": self.vendor_rows,
            "rows_without_reconstruction": self.without_reconstruction,
            "rows_paired": self.paired,
            "rows_not_compared": self.paired - n,
            "rows_compared": n,
            "rows_equal": self.equal,
            "exact_share": share_of(self.equal, n),
            "rows_consistent": self.consistent_rows,
            "rows_differing_only_outside_known_depth": self.consistent_rows - self.equal,
            "agreement": agreement,
            "known_depth": {"bid_floor": known_bid_floor, "ask_ceiling": known_ask_ceiling},
            "level_agreement": [float(x) / n for x in self.level_equal] if n else [],
            "first_mismatches": mismatches,
            "first_differences_outside_known_depth": _first(self.outside, min(5, self.max_listed)),
            "exact_rows_match_reconstruction": self.agrees_with_reconstruction,
            "threshold": min_share,
            "passed": at_least(agreement, min_share),
        }


def _first(rows: list[tuple[int, dict]], n: int) -> list[dict]:
    """The first ``n`` listed rows in the vendor file's order."""
    return [row for _, row in sorted(rows, key=lambda r: r[0])[:n]]


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
