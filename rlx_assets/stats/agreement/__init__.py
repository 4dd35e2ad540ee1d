"""Agreement between the reconstruction, the vendor's files and the golden recording, and the
integrity of sequence numbers and origin times: one module per comparison (``book``,
``top_of_book``, ``trades``, ``sequence_gaps``, ``origin_time``) over what they share
(``base``). Imports flow one way: the comparisons import ``base``, never each other.

Pure functions over polars frames; each returns a JSON-ready dict with its figures, the
threshold it was judged against and ``passed``. A metric whose inputs cannot support it raises
``NotComputable`` with the reason, which the report lists.
"""

from rlx_assets.stats.agreement.base import (
    NS_PER_DAY,
    NS_PER_MINUTE,
    NS_PER_S,
    NotComputable,
    day_bounds,
    in_window,
    iso,
    key_windows,
    to_ns,
)
from rlx_assets.stats.agreement.book import book_agreement
from rlx_assets.stats.agreement.origin_time import origin_time_validity
from rlx_assets.stats.agreement.sequence_gaps import golden_sequence_gaps, lake_sequence_gaps
from rlx_assets.stats.agreement.top_of_book import (
    LEVEL_1_COLUMNS,
    book_updates,
    read_book_updates,
    top_of_book_agreement,
)
from rlx_assets.stats.agreement.trades import aggtrade_consistency, trade_agreement

__all__ = [
    "LEVEL_1_COLUMNS",
    "NS_PER_DAY",
    "NS_PER_MINUTE",
    "NS_PER_S",
    "NotComputable",
    "aggtrade_consistency",
    "book_agreement",
    "book_updates",
    "day_bounds",
    "golden_sequence_gaps",
    "in_window",
    "iso",
    "key_windows",
    "lake_sequence_gaps",
    "origin_time_validity",
    "read_book_updates",
    "to_ns",
    "top_of_book_agreement",
    "trade_agreement",
]
