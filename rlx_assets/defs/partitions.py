"""Every partitioned asset is split by UTC `date` x `market`: `2024-08-08|BINANCE.BTC-USDT`."""

from __future__ import annotations

import datetime as dt
from typing import Any, NamedTuple

import dagster as dg

from rlx_assets.config import RlxSettings, load_settings
from rlx_assets.markets import parse_market_key
from rlx_assets.structured_log import log_event, partition_fields


def build_partitions(settings: RlxSettings) -> dg.MultiPartitionsDefinition:
    for market in settings.markets:
        parse_market_key(market)  # fails at load time, naming the bad RLX_MARKETS entry
    return dg.MultiPartitionsDefinition(
        {
            "date": dg.DailyPartitionsDefinition(
                start_date=settings.start_date.isoformat(), timezone="UTC"
            ),
            "market": dg.StaticPartitionsDefinition(list(settings.markets)),
        }
    )


DATE_MARKET_PARTITIONS = build_partitions(load_settings())


def configured_days(settings: RlxSettings) -> list[dt.date]:
    """Every date of the partitions: RLX_START_DATE to yesterday (the last complete UTC day)."""
    dates = build_partitions(settings).get_partitions_def_for_dimension("date")
    return [dt.date.fromisoformat(key) for key in dates.get_partition_keys()]


class Partition(NamedTuple):
    day: dt.date
    exchange: str
    symbol: str
    market: str  # "BINANCE.BTC-USDT"


def partition_of(context: dg.AssetExecutionContext | dg.AssetCheckExecutionContext) -> Partition:
    """The date x market partition being materialised or checked."""
    key = context.partition_key
    # A run launched with only the `dagster/partition` tag carries the key as a plain string.
    keys = key.keys_by_dimension if isinstance(key, dg.MultiPartitionKey) else _split_key(key)
    exchange, symbol = parse_market_key(keys["market"])
    return Partition(dt.date.fromisoformat(keys["date"]), exchange, symbol, keys["market"])


def log_partition_event(
    context: dg.AssetExecutionContext | dg.AssetCheckExecutionContext, event: str, **fields: Any
) -> None:
    """`structured_log.log_event`, correlated with the run and the partition of `context`."""
    day, _, _, market = partition_of(context)
    log_event(event, **{"run_id": context.run.run_id, **partition_fields(market, day), **fields})


def _split_key(key: str) -> dict[str, str]:
    date, sep, market = key.partition("|")
    if not sep:
        raise ValueError(f"partition key {key!r} is not of the form DATE|EXCHANGE.SYMBOL")
    return {"date": date, "market": market}


def missing_evidence(summary: str) -> dg.AssetCheckResult:
    """A blocking check whose evidence (report, certificate, reconstruction) is absent fails."""
    return dg.AssetCheckResult(
        passed=False,
        severity=dg.AssetCheckSeverity.ERROR,
        metadata={"summary": dg.MetadataValue.text(summary)},
    )
