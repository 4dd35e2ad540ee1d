"""What one reconstruction did and measured (``ReconstructionResult``). Imports nothing of
``book.reconstruct``."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field


@dataclass(frozen=True)
class ReconstructionResult:
    """What ``reconstruct_partition`` did and measured.

    ``level_agreement[i]``: share of compared vendor rows whose level ``i`` is equal on *both*
    sides (price and size of bid_i and ask_i). ``first_mismatches``: the first vendor rows that
    differ (up to 10), each with its shallowest differing level, whether the difference lies
    inside the known depth (a genuine mismatch) and whether the row's depth was known.

    ``anomalies`` (counted, never raised): ``crossed_after_event`` complete updates (diffs)
    after which best bid >= best ask; ``delete_unknown_level`` size-0 rows for a level the book
    does not hold (expected after a top-20 seed: deeper levels); ``out_of_range`` rows outside
    the dense book (ignored); ``sequence_regressions`` rows whose sequence number is below one
    already applied (refused: never applied); ``deltas_before_seed`` rows at or below the
    seed's sequence number (not applied); ``trades_invalid_side`` trades whose side is neither
    buy nor sell; ``input_rows_out_of_time_order`` input rows older than an earlier row of
    their file (put in order); ``vendor_book_rows_before_seed`` vendor rows older than the seed
    (not compared).
    ``anomaly_first``: for the anomalies the replay can place (``sequence_regressions``,
    ``out_of_range``, ``deltas_before_seed``, ``crossed_after_event``) the first such row's
    ``event_time_ns`` and ``sequence_number`` (a regression also ``after_sequence_number``).
    """

    events: int
    trades: int
    book_updates: int
    price_scale: int
    size_scale: int
    started_cold: bool
    seeded_from: str
    seed_sequence: int | None
    anomalies: dict[str, int]
    first_event_ns: int | None
    last_event_ns: int | None
    vendor_book_rows_compared: int
    vendor_book_rows_equal: int
    level_agreement: list[float]
    first_mismatches: list[dict]
    vendor_book_rows_unknown_depth: int = 0
    vendor_book_rows_equal_within_known_depth: int = 0
    snapshots_1s: int = 0
    # full-book checkpoints: at first_checkpoint_ns and every checkpoint_every_ns after it
    checkpoints: int = 0
    checkpoint_every_ns: int | None = None
    first_checkpoint_ns: int | None = None
    market: str = ""
    plan: str = ""  # how scales, price range and time order were established
    anomaly_first: dict[str, dict] = field(default_factory=dict)

    @property
    def vendor_book_agreement(self) -> float | None:
        if not self.vendor_book_rows_compared:
            return None
        return self.vendor_book_rows_equal / self.vendor_book_rows_compared

    def to_dict(self) -> dict:
        return asdict(self)
