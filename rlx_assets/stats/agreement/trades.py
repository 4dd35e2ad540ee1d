"""Trade agreement: the lake's trades against the golden recording's by trade id, and each
aggTrade's quantity against the sum of its raw trades. May import ``base``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import polars as pl

from rlx_assets.stats.agreement.base import NotComputable, at_least, key_windows, share_of


def trade_agreement(
    lake: pl.DataFrame | pl.LazyFrame,
    golden: pl.DataFrame | pl.LazyFrame,
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
    all ids of either side inside the range. Frames or lazy scans: a day is compared window
    by window of trade ids (``key_windows``; every row of an id in one window).
    """
    if lake_source and golden_source and lake_source != golden_source:
        raise NotComputable(
            f"the lake's trades are Binance {lake_source} records and the golden recording's are "
            f"{golden_source} records: their ids are unrelated"
        )
    cols = ["id", "price", "amount", "side"]
    lake, golden = lake.lazy().select(cols), golden.lazy().select(cols)
    ids = golden.select(pl.col("id").min().alias("lo"), pl.col("id").max().alias("hi"))
    lo, hi = ids.collect(engine="streaming").row(0)
    if lo is None:
        raise NotComputable("the golden trades file has no rows")
    total = _TradeCounts()
    for window in key_windows([lake, golden], "id", columns=len(cols)):
        in_window = pl.col("id").is_between(*window)
        _compare_window(
            lake.filter(in_window).collect(), golden.filter(in_window).collect(),
            (int(lo), int(hi)), total, max_listed,
        )  # fmt: skip
    missing, extra = total.listed("missing", max_listed), total.listed("extra", max_listed)
    differs = total.listed("differs", max_listed)
    agreement = share_of(total.equal, total.union)
    return {
        "lake_source": lake_source,
        "golden_source": golden_source,
        "golden_trades": total.golden,
        "golden_id_range": [int(lo), int(hi)],
        "lake_trades": total.lake,
        "lake_trades_outside_golden_range": total.outside,
        "duplicate_ids": total.duplicates,
        "matched": total.matched,
        "equal": total.equal,
        "missing": total.missing,
        "missing_ids": missing["id"].to_list(),
        "extra": total.extra,
        "extra_ids": extra["id"].to_list(),
        "mismatched": total.matched - total.equal,
        "mismatched_by_field": total.by_field,
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
            for r in differs.iter_rows(named=True)
        ],
        "agreement": agreement,
        "threshold": min_share,
        "passed": at_least(agreement, min_share),
    }


@dataclass
class _TradeCounts:
    """Trade agreement summed over the windows, with the first ids of each list."""

    golden: int = 0
    lake: int = 0
    outside: int = 0
    matched: int = 0
    equal: int = 0
    missing: int = 0
    extra: int = 0
    union: int = 0
    duplicates: dict[str, int] = field(default_factory=lambda: {"lake": 0, "golden": 0})
    by_field: dict[str, int] = field(default_factory=lambda: dict.fromkeys(_FIELDS, 0))
    first: dict[str, list[pl.DataFrame]] = field(default_factory=dict)

    def listed(self, kind: str, max_listed: int) -> pl.DataFrame:
        """The first ``max_listed`` rows of a list (windows come in id order)."""
        return pl.concat(self.first[kind]).head(max_listed)


_FIELDS = ("price", "size", "side")


def _compare_window(
    lake: pl.DataFrame, golden: pl.DataFrame, golden_ids: tuple[int, int], total: _TradeCounts,
    max_listed: int,
) -> None:  # fmt: skip
    """One window of trade ids of both sides compared, its figures added to ``total``."""
    total.duplicates["lake"] += lake.height - lake["id"].n_unique()
    total.duplicates["golden"] += golden.height - golden["id"].n_unique()
    g = golden.unique("id", keep="first", maintain_order=True)
    lk = lake.unique("id", keep="first", maintain_order=True)
    total.golden += g.height
    total.lake += lk.height
    inside = lk.filter(pl.col("id").is_between(*golden_ids))
    total.outside += lk.height - inside.height
    both = inside.join(g, on="id", how="full", suffix="_golden", coalesce=True)
    in_lake = pl.col("price").is_not_null()
    in_golden = pl.col("price_golden").is_not_null()
    missing = both.filter(~in_lake & in_golden).select("id").sort("id")
    extra = both.filter(in_lake & ~in_golden).select("id").sort("id")
    common = both.filter(in_lake & in_golden).with_columns(
        (pl.col("price") != pl.col("price_golden")).alias("price_differs"),
        (pl.col("amount") != pl.col("amount_golden")).alias("size_differs"),
        (pl.col("side") != pl.col("side_golden")).alias("side_differs"),
    )
    differs = common.filter(
        pl.col("price_differs") | pl.col("size_differs") | pl.col("side_differs")
    ).sort("id")
    total.union += both.height
    total.matched += common.height
    total.equal += common.height - differs.height
    total.missing += missing.height
    total.extra += extra.height
    for f in _FIELDS:
        total.by_field[f] += int(common[f"{f}_differs"].sum())
    for kind, frame in (("missing", missing), ("extra", extra), ("differs", differs)):
        total.first.setdefault(kind, []).append(frame.head(max_listed))


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
    share = share_of(checked - int(bad.sum()), checked)
    return {
        "aggtrades": aggtrades.height,
        "checked": checked,
        "incomplete": int((~complete).sum()),
        "mismatched": int(bad.sum()),
        "mismatched_ids": [int(x) for x in a[bad][:max_listed]],
        "agreement": share,
        "threshold": min_share,
        "passed": at_least(share, min_share),
    }
