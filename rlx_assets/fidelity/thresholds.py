"""Every number the fidelity report compares against, with its default.

Each field can be overridden by the environment variable ``RLX_FIDELITY_<FIELD NAME>`` (upper
case), e.g. ``RLX_FIDELITY_TOP_OF_BOOK_AGREEMENT_MIN=0.995``. The values used are written into
``fidelity.json`` next to the figures they judge.
"""

from __future__ import annotations

from pydantic import Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from rlx_assets.config import settings_error


class FidelityThresholds(BaseSettings):
    """Thresholds and tuning of the fidelity metrics (``RLX_FIDELITY_*``)."""

    model_config = SettingsConfigDict(env_prefix="RLX_FIDELITY_", extra="ignore", frozen=True)

    # --- agreement (blocking: a failure means the stream must not be used) ---------------------
    book_agreement_min: float = Field(
        0.999,
        ge=0,
        le=1,
        description="Share of vendor book rows whose top 20 equals ours at every level inside "
        "the known depth (exact equality once the book is known to full depth).",
    )
    top_of_book_agreement_min: float = Field(
        0.999,
        ge=0,
        le=1,
        description="Share of book updates whose best bid/ask price and size equal the golden "
        "bookTicker with the largest update id <= the update's sequence number.",
    )
    trade_agreement_min: float = Field(
        0.9999,
        ge=0,
        le=1,
        description="Share of trade ids (union of both sources inside the golden id range) that "
        "are present on both sides with equal price, size and side.",
    )
    aggtrade_consistency_min: float = Field(
        1.0,
        ge=0,
        le=1,
        description="Share of golden aggTrades whose quantity equals the sum of raw trades f..l.",
    )

    # --- distributions (warnings: drift, not corruption) ----------------------------------------
    ks_min_pvalue: float = Field(
        0.01,
        ge=0,
        le=1,
        description="A K-S test passes when its p-value is at least this ...",
    )
    ks_max_statistic: float = Field(
        0.02,
        ge=0,
        le=1,
        description="... or when its statistic is at most this: with a day's millions of trades "
        "p-values flag differences too small to matter, the statistic bounds the effect size.",
    )
    ks_sample_interval_s: float = Field(
        1.0,
        gt=0,
        description="Grid on which the quoted spread and the mid price are sampled (state at "
        "each grid time), and the horizon of the mid-price returns.",
    )
    tail_bootstrap_resamples: int = Field(200, ge=0, description="Bootstrap resamples per source.")
    tail_bootstrap_seed: int = Field(20090602, description="Seed of the bootstrap generator.")
    tail_ci_level: float = Field(0.95, gt=0, lt=1, description="Confidence level of the CIs.")
    tail_min_size: int = Field(
        50, ge=10, description="Fewest observations above xmin a candidate xmin may leave."
    )
    tail_max_xmin_candidates: int = Field(
        200,
        ge=1,
        description="Candidate xmin values scanned (all distinct values when fewer, else this "
        "many spread evenly over the ranks): bounds the work of each fit.",
    )
    tail_alpha_tolerance: float = Field(
        0.2,
        ge=0,
        description="The tail exponents agree when they differ by at most this, or when their "
        "confidence intervals overlap.",
    )

    # --- stream integrity -----------------------------------------------------------------------
    sequence_gap_ratio_max: float = Field(
        1e-4,
        ge=0,
        description="Most sequence breaks per depth update: golden diffs whose U/pu does not "
        "follow the previous u, and lake rows whose sequence number decreases.",
    )
    time_gap_bound_s: float = Field(
        5.0,
        gt=0,
        description="A silence longer than this between consecutive lake deltas counts as a gap.",
    )
    time_gap_ratio_max: float = Field(
        1e-3, ge=0, description="Most share of the deltas' time span inside such silences."
    )
    negative_latency_bound_s: float = Field(
        5.0,
        ge=0,
        description="receipt_timestamp - timestamp below minus this is invalid (the golden "
        "recorder's clock ran ~1.27 s behind the exchange, so small negatives are real).",
    )
    origin_time_invalid_share_max: float = Field(
        0.0,
        ge=0,
        le=1,
        description="Most share of rows with a null timestamp, a timestamp outside the UTC day "
        "or a latency below the bound.",
    )

    # --- report ---------------------------------------------------------------------------------
    max_listed: int = Field(20, ge=0, description="Ids/rows listed per kind of difference.")
    worst_minutes_listed: int = Field(
        10, ge=0, description="Minutes with the most discrepancies listed in the report."
    )


def load_thresholds(**overrides: object) -> FidelityThresholds:
    """Defaults, then ``RLX_FIDELITY_*`` from the environment, then ``overrides``; a bad value
    raises ``SettingsError`` naming the variable and a valid example, in one line."""
    try:
        return FidelityThresholds(**overrides)
    except ValidationError as exc:
        raise settings_error(exc, FidelityThresholds) from None
