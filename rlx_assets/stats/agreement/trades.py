"""Trade agreement: the lake's trades against the golden recording's by trade id, and each
aggTrade's quantity against the sum of its raw trades. May import ``base``.
"""

from __future__ import annotations

import numpy as np
import polars as pl

from rlx_assets.stats.agreement.base import NotComputable, at_least, share_of


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
    agreement = share_of(common.height - differs.height, union)
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
        "passed": at_least(agreement, min_share),
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
