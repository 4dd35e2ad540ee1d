import pytest

from rlx_assets.markets import (
    BinanceInstrument,
    LakeMarket,
    binance_instrument,
    lake_market,
    market_key,
    parse_market_key,
    split_symbol,
)


@pytest.mark.parametrize(
    ("symbol", "market", "expected"),
    [
        ("BTCUSDT", "spot", ("BINANCE", "BTC-USDT")),
        ("btcusdt", "spot", ("BINANCE", "BTC-USDT")),
        ("btcusdt", "usdm", ("BINANCE_FUTURES", "BTC-USDT-PERP")),
        ("ETHBTC", "spot", ("BINANCE", "ETH-BTC")),
        ("BTCFDUSD", "spot", ("BINANCE", "BTC-FDUSD")),  # longest quote first, not ...USD
        ("BTCTUSD", "spot", ("BINANCE", "BTC-TUSD")),
        ("BTCAEUR", "spot", ("BINANCE", "BTC-AEUR")),
        ("BNBEUR", "spot", ("BINANCE", "BNB-EUR")),
        ("1000PEPEUSDT", "usdm", ("BINANCE_FUTURES", "1000PEPE-USDT-PERP")),
        ("ETHUSDC", "usdm", ("BINANCE_FUTURES", "ETH-USDC-PERP")),
    ],
)
def test_lake_market_and_inverse(symbol, market, expected):
    lake = lake_market(symbol, market)
    assert lake == LakeMarket(*expected)
    assert binance_instrument(*lake) == BinanceInstrument(symbol.lower(), market)


def test_split_symbol_errors_name_the_symbol():
    with pytest.raises(ValueError, match="FOOBAR"):
        split_symbol("FOOBAR")
    with pytest.raises(ValueError, match="'USDT'"):
        split_symbol("USDT")  # a quote asset alone has no base
    with pytest.raises(ValueError, match="not a Binance symbol"):
        split_symbol("BTC-USDT")
    with pytest.raises(ValueError, match="unknown Binance market"):
        lake_market("BTCUSDT", "coinm")


def test_binance_instrument_errors():
    with pytest.raises(ValueError, match="-PERP"):
        binance_instrument("BINANCE_FUTURES", "BTC-USDT")
    with pytest.raises(ValueError, match="unknown exchange 'KRAKEN'"):
        binance_instrument("KRAKEN", "BTC-USD")
    with pytest.raises(ValueError, match="BASE-QUOTE"):
        binance_instrument("BINANCE", "BTCUSDT")
    with pytest.raises(ValueError, match="round-trip"):
        binance_instrument("BINANCE", "BT-CUSDT")


def test_market_key_round_trip():
    assert market_key("BINANCE", "BTC-USDT") == "BINANCE.BTC-USDT"
    assert LakeMarket("BINANCE_FUTURES", "BTC-USDT-PERP").key == "BINANCE_FUTURES.BTC-USDT-PERP"
    assert parse_market_key("BINANCE_FUTURES.BTC-USDT-PERP") == ("BINANCE_FUTURES", "BTC-USDT-PERP")


@pytest.mark.parametrize("key", ["BINANCE", "BINANCE.", ".BTC-USDT", "A.B.C", "binance.BTC-USDT",
                                 "BINANCE.btc-usdt", "BINANCE.BTC--USDT"])  # fmt: skip
def test_parse_market_key_errors(key):
    with pytest.raises(ValueError, match="invalid market key"):
        parse_market_key(key)
