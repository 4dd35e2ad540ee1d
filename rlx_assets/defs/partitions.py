"""Every partitioned asset is split by UTC `date` x `market` (keys like `2024-08-08|BINANCE.BTC-USDT`)."""

from __future__ import annotations

import datetime as dt

import dagster as dg

from rlx_assets.config import RlxSettings, load_settings
from rlx_assets.lake.markets import parse_market_key


def build_partitions(settings: RlxSettings) -> dg.MultiPartitionsDefinition:
    for market in settings.markets:
        parse_market_key(market)  # fails at load time, naming the bad RLX_MARKETS entry
    return dg.MultiPartitionsDefinition(
        {
            "date": dg.DailyPartitionsDefinition(start_date=settings.start_date.isoformat(), timezone="UTC"),
            "market": dg.StaticPartitionsDefinition(list(settings.markets)),
        }
    )


DATE_MARKET_PARTITIONS = build_partitions(load_settings())


def partition_date_market(context: dg.AssetExecutionContext) -> tuple[dt.date, str, str]:
    """(day, exchange, symbol) of the partition being materialised."""
    keys = context.partition_key.keys_by_dimension
    exchange, symbol = parse_market_key(keys["market"])
    return dt.date.fromisoformat(keys["date"]), exchange, symbol
