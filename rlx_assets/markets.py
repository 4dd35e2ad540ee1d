"""Mapping between Binance symbols and Crypto Lake markets.

Crypto Lake names a Binance spot market ``exchange=BINANCE / symbol=BTC-USDT`` and a USD-M
perpetual ``exchange=BINANCE_FUTURES / symbol=BTC-USDT-PERP``. Binance itself writes
``BTCUSDT`` (REST) or ``btcusdt`` (WebSocket stream names) for both, so the base/quote split
has to come from the list of quote assets Binance lists against.

Partition keys and asset metadata use ``market_key`` (``"BINANCE.BTC-USDT"``).
"""

from __future__ import annotations

import re
from typing import Literal, NamedTuple

BinanceMarket = Literal["spot", "usdm"]

SPOT_EXCHANGE = "BINANCE"
USDM_EXCHANGE = "BINANCE_FUTURES"
PERP_SUFFIX = "-PERP"

EXCHANGE_BY_MARKET: dict[str, str] = {"spot": SPOT_EXCHANGE, "usdm": USDM_EXCHANGE}
MARKET_BY_EXCHANGE: dict[str, str] = {v: k for k, v in EXCHANGE_BY_MARKET.items()}

# Quote assets Binance lists spot and USD-M pairs against. Matched longest first, so that
# e.g. BTCFDUSD is FDUSD (not ...USD) and BTCAEUR is AEUR (not EUR).
QUOTE_ASSETS: tuple[str, ...] = tuple(
    sorted(
        {
            "USDT", "USDC", "FDUSD", "TUSD", "BUSD", "USDP", "USDS", "DAI", "PAX", "UST", "VAI",
            "BTC", "ETH", "BNB", "XRP", "TRX", "DOGE", "DOT", "SOL",
            "EUR", "AEUR", "EURI", "TRY", "BRL", "JPY", "GBP", "AUD", "RUB", "UAH", "ZAR",
            "NGN", "PLN", "RON", "ARS", "MXN", "COP", "CZK", "IDRT", "BIDR", "BKRW", "IDR",
        },
        key=lambda q: (-len(q), q),
    )
)  # fmt: skip

_SYMBOL_RE = re.compile(r"^[A-Z0-9]+$")
_LAKE_PART_RE = re.compile(r"^[A-Z0-9]+(?:-[A-Z0-9]+)*$")
_EXCHANGE_RE = re.compile(r"^[A-Z][A-Z0-9_]*$")


class LakeMarket(NamedTuple):
    exchange: str  # "BINANCE" | "BINANCE_FUTURES"
    symbol: str  # "BTC-USDT" | "BTC-USDT-PERP"

    @property
    def key(self) -> str:
        return market_key(self.exchange, self.symbol)


class BinanceInstrument(NamedTuple):
    symbol: str  # lower case, as in stream names: "btcusdt"
    market: BinanceMarket


def split_symbol(binance_symbol: str) -> tuple[str, str]:
    """``"BTCUSDT"`` (any case) -> ``("BTC", "USDT")``; ValueError naming the symbol otherwise."""
    sym = binance_symbol.strip().upper()
    if not _SYMBOL_RE.match(sym):
        raise ValueError(f"not a Binance symbol: {binance_symbol!r}")
    for quote in QUOTE_ASSETS:
        if sym.endswith(quote) and len(sym) > len(quote):
            return sym[: -len(quote)], quote
    raise ValueError(
        f"cannot split Binance symbol {binance_symbol!r} into base and quote asset "
        f"(known quote assets: {', '.join(sorted(QUOTE_ASSETS))})"
    )


def lake_market(binance_symbol: str, market: BinanceMarket) -> LakeMarket:
    """``("btcusdt", "spot")`` -> ``LakeMarket("BINANCE", "BTC-USDT")``;
    ``("BTCUSDT", "usdm")`` -> ``LakeMarket("BINANCE_FUTURES", "BTC-USDT-PERP")``."""
    if market not in EXCHANGE_BY_MARKET:
        raise ValueError(f"unknown Binance market {market!r}; expected 'spot' or 'usdm'")
    base, quote = split_symbol(binance_symbol)
    symbol = f"{base}-{quote}" + (PERP_SUFFIX if market == "usdm" else "")
    return LakeMarket(EXCHANGE_BY_MARKET[market], symbol)


def binance_instrument(exchange: str, symbol: str) -> BinanceInstrument:
    """Inverse of ``lake_market``: ``("BINANCE_FUTURES", "BTC-USDT-PERP")`` ->
    ``BinanceInstrument("btcusdt", "usdm")``."""
    market = MARKET_BY_EXCHANGE.get(exchange)
    if market is None:
        raise ValueError(
            f"unknown exchange {exchange!r}: the supported exchanges are {SPOT_EXCHANGE} (Binance "
            f"spot, e.g. {SPOT_EXCHANGE}.BTC-USDT) and {USDM_EXCHANGE} (Binance USD-M perpetuals, "
            f"e.g. {USDM_EXCHANGE}.BTC-USDT{PERP_SUFFIX})"
        )
    if not _LAKE_PART_RE.match(symbol):
        raise ValueError(f"not a Crypto Lake symbol: {symbol!r}")
    parts = symbol.split("-")
    if market == "usdm":
        if not symbol.endswith(PERP_SUFFIX):
            raise ValueError(
                f"{exchange} symbol {symbol!r} must end in {PERP_SUFFIX!r} (USD-M perpetual)"
            )
        parts = parts[:-1]
    if len(parts) != 2:
        raise ValueError(f"{exchange} symbol {symbol!r} is not of the form BASE-QUOTE")
    joined = "".join(parts)
    if split_symbol(joined) != (parts[0], parts[1]):
        raise ValueError(
            f"{exchange} symbol {symbol!r} does not round-trip through Binance's quote assets"
        )
    return BinanceInstrument(joined.lower(), market)  # type: ignore[arg-type]


def market_key(exchange: str, symbol: str) -> str:
    """``("BINANCE", "BTC-USDT")`` -> ``"BINANCE.BTC-USDT"`` (the partition key of a market)."""
    if not _EXCHANGE_RE.match(exchange):
        raise ValueError(f"invalid exchange name {exchange!r} (expected e.g. 'BINANCE')")
    if not _LAKE_PART_RE.match(symbol):
        raise ValueError(f"invalid symbol {symbol!r} (expected e.g. 'BTC-USDT')")
    return f"{exchange}.{symbol}"


def parse_market_key(key: str) -> tuple[str, str]:
    """``"BINANCE_FUTURES.BTC-USDT-PERP"`` -> ``("BINANCE_FUTURES", "BTC-USDT-PERP")``."""
    exchange, sep, symbol = key.partition(".")
    if not sep or "." in symbol:
        raise ValueError(
            f"invalid market key {key!r}: expected 'EXCHANGE.SYMBOL', e.g. 'BINANCE.BTC-USDT'"
        )
    try:
        market_key(exchange, symbol)
    except ValueError as exc:
        raise ValueError(f"invalid market key {key!r}: {exc}") from None
    return exchange, symbol
