"""Convert Binance captures into Crypto Lake's raw layout (``rlx lake-from-capture``).

Output: ``{out}/{table}/exchange={EX}/symbol={SYM}/dt={YYYY-MM-DD}/1.snappy.parquet`` with the
vendor's raw columns (``rlx_assets.vendor_schemas.VENDOR_SCHEMAS``), so that a capture can stand in
for (or be compared with) the vendor's files.

How the tables are derived:

* ``trades``: ``aggTrade`` frames when the capture has them (cryptofeed's source), else
  ``trade`` frames; ``side`` is the taker side (``m`` true -> the buyer made, the taker sold).
* ``book_delta_v2``: one row per level of every depth diff, ``sequence_number`` = the diff's
  ``u``.
* ``book``: top 20 after every depth diff applied to a book rebuilt from the REST snapshot under
  Binance's sync rule, in integer ticks, by the pure-Python reference book
  (``rlx_assets.book.reference``): nothing shared with the reconstruction's compiled kernel.
* ``level_1``: ``bookTicker`` frames; spot frames carry no event time, so the receive time
  stands in (recorded in the file metadata).

Files of the same market are merged by receive time and processed as one stream; rows go to
UTC days by exchange time (``timestamp``). Depth prices and sizes are parsed to integers with a
scale detected from the data, and converted to float64 only when written.

The package: ``reading`` (capture files -> raw columns), ``decimals`` (exact decimal parsing),
``tables`` (the vendor's tables) and ``writing`` (``convert_captures``); this module names what
callers use and imports its own modules only.
"""

from rlx_assets.lake.from_capture.decimals import ConversionError, parse_decimals
from rlx_assets.lake.from_capture.tables import BOOK_BUILDER, BookSyncReport
from rlx_assets.lake.from_capture.writing import (
    CONVERTER,
    CONVERTER_VERSION,
    MARKETS,
    TRADE_PARTS,
    convert_captures,
)

__all__ = [
    "BOOK_BUILDER",
    "CONVERTER",
    "CONVERTER_VERSION",
    "MARKETS",
    "TRADE_PARTS",
    "BookSyncReport",
    "ConversionError",
    "convert_captures",
    "parse_decimals",
]
