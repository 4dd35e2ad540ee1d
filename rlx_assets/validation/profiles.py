"""Gate thresholds, grouped in named profiles and chosen by `RLX_GATE_PROFILE`."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from rlx_assets.config import RlxSettings


class GateThresholds(BaseModel):
    """Every number a gate compares against; recorded with each result."""

    model_config = ConfigDict(frozen=True)

    # temporal
    min_coverage: float  # (last - first timestamp) / 24 h
    max_silence_s: float  # longest gap between consecutive timestamps
    # A row whose timestamp is more than this below the previous row's breaks the vendor's order.
    max_trades_time_regression_s: float
    max_book_time_regression_s: float  # book and book_delta_v2
    max_time_regressions: int  # rows breaking the time order, more fails the gate
    max_sequence_decreases: int  # book and book_delta_v2: sequence_number going back
    # volume
    min_rows: int
    max_rows: int
    trailing_days: int  # how many earlier certified days form the trailing median
    min_trailing_fraction: float  # rows / trailing median below this is suspicious
    # quality
    max_duplicate_fraction: float
    max_conflicting_trade_ids: int  # one trade id on rows that differ in price/amount/side/time
    max_conflicting_level_updates: int  # book_delta_v2: one (sequence, side, price), two sizes
    # reconstruction anomalies (`reconstruction_anomalies` check; counts per partition)
    max_sequence_regressions: int  # deltas older than one already applied (refused)
    max_out_of_range_levels: int  # delta rows outside the dense book's price window
    max_deltas_before_seed: int  # delta rows at or below the seed's sequence number
    max_crossed_after_update: int  # complete diffs after which best bid >= best ask


PROFILES: dict[str, GateThresholds] = {
    # Real vendor days: the whole day covered, no long silences, realistic volumes.
    # Order and conflicts: measured 0 on every real recording we have (sample lake, 2024-08-08/09,
    # spot + futures, rows in arrival order): 41,217 trades, 13,040 book rows and 741,632
    # book_delta_v2 rows, no timestamp ever below the previous row's, no sequence_number going
    # back, no trade id repeated, no (sequence, side, price) given twice. Zero tolerance until a
    # real vendor day shows otherwise; the gate report names the rows if one does.
    "production": GateThresholds(
        min_coverage=0.99,
        max_silence_s=300.0,
        max_trades_time_regression_s=0.0,
        max_book_time_regression_s=0.0,
        max_time_regressions=0,
        max_sequence_decreases=0,
        min_rows=1_000,
        max_rows=2_000_000_000,
        trailing_days=7,
        min_trailing_fraction=0.25,
        max_duplicate_fraction=0.001,
        max_conflicting_trade_ids=0,
        max_conflicting_level_updates=0,
        # Measured on the real sample days (spot 08-08 cold, 08-09 seeded, futures 08-08 cold):
        # 0 regressions, 0 out-of-window levels, 0 crossed books after a complete diff, and
        # 33 / 0 / 288 deltas before the seed (a cold day's rows before its first vendor book
        # row). Regressions and out-of-window levels mean a wrong book: none tolerated; a
        # crossed book after a whole diff needs a lost or damaged delta: none either; deltas
        # before the seed get ~3x the largest measured (a cold start on a slow book feed).
        max_sequence_regressions=0,
        max_out_of_range_levels=0,
        max_deltas_before_seed=1_000,
        max_crossed_after_update=0,
    ),
    # The bundled captures cover minutes around midnight (one side of midnight may hold only
    # a second): coverage and volume are loose; schema, quality and sequence rules stay strict.
    "sample": GateThresholds(
        min_coverage=0.0,
        max_silence_s=86_400.0,
        max_trades_time_regression_s=0.0,
        max_book_time_regression_s=0.0,
        max_time_regressions=0,
        max_sequence_decreases=0,
        min_rows=1,
        max_rows=2_000_000_000,
        trailing_days=7,
        min_trailing_fraction=0.0,
        max_duplicate_fraction=0.0,
        max_conflicting_trade_ids=0,
        max_conflicting_level_updates=0,
        # the sample days are real captures: the same reconstruction thresholds as production
        max_sequence_regressions=0,
        max_out_of_range_levels=0,
        max_deltas_before_seed=1_000,
        max_crossed_after_update=0,
    ),
}


def active_profile(settings: RlxSettings) -> tuple[str, GateThresholds]:
    """`RLX_GATE_PROFILE`, else `sample` for the bundled sample lake and `production` otherwise."""
    name = settings.gate_profile or ("sample" if settings.lake_uri is None else "production")
    if name not in PROFILES:
        raise ValueError(f"RLX_GATE_PROFILE={name!r}: choose one of {', '.join(PROFILES)}")
    return name, PROFILES[name]
