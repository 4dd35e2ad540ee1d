"""Raw Crypto Lake partitions: the vendor's daily files, byte-for-byte, with their evidence."""

import logging

import dagster as dg

from rlx_assets.defs.partitions import DATE_MARKET_PARTITIONS, log_partition_event, partition_of
from rlx_assets.defs.resources import RlxEnvironment
from rlx_assets.lake.acquire import RawFile, acquire_raw_file
from rlx_assets.lake.sources import CorruptObjectError, LakeError, QuarantinedObjectError
from rlx_assets.lake.transfer_stats import TransferStats
from rlx_assets.validation.status import TABLE_STEP_ZONES, refresh_status

RAW_TABLES = ("trades", "book", "book_delta_v2")
# Bounds parallel downloads across all runs (a year's backfill must not open hundreds);
# the limit (4) is the instance's: `dagster instance concurrency set crypto_lake_download 4`,
# else dagster.yaml `concurrency.pools.default_limit`.
DOWNLOAD_POOL = "crypto_lake_download"


def raw_file_metadata(raw: RawFile) -> dict[str, dg.MetadataValue]:
    metadata = {
        "path": dg.MetadataValue.path(raw.path),
        "sha256": dg.MetadataValue.text(raw.sha256),
        "size_bytes": dg.MetadataValue.int(raw.size),
        "rows": dg.MetadataValue.int(raw.rows),
        "first_timestamp": dg.MetadataValue.int(raw.first_timestamp or 0),
        "last_timestamp": dg.MetadataValue.int(raw.last_timestamp or 0),
        "source_uri": dg.MetadataValue.text(raw.source_uri),
        "source_version": dg.MetadataValue.text(raw.source_version),
        "action": dg.MetadataValue.text(raw.action),
        "verified_by": dg.MetadataValue.text(raw.verified_by),
    }
    if raw.previous_sha256 is not None:
        metadata["previous_sha256"] = dg.MetadataValue.text(raw.previous_sha256)
        metadata["previous_source_version"] = dg.MetadataValue.text(
            raw.previous_source_version or ""
        )
    return metadata


def numeric_metadata(figures: dict[str, int | float]) -> dict[str, dg.MetadataValue]:
    """Ints and floats as Dagster's numeric metadata, which the asset page plots by partition."""
    return {
        name: dg.MetadataValue.int(value)
        if isinstance(value, int)
        else dg.MetadataValue.float(float(value))
        for name, value in figures.items()
    }


def build_raw_asset(table: str) -> dg.AssetsDefinition:
    @dg.asset(
        name=f"raw_{table}",
        group_name="acquisition",
        partitions_def=DATE_MARKET_PARTITIONS,
        pool=DOWNLOAD_POOL,
        kinds={"parquet"},
        description=(
            f"The vendor's `{table}` file for one UTC day and market, stored byte-for-byte under "
            f"`$RLX_DATA_DIR/staging/raw/{table}/...` with its SHA-256 in the manifest."
        ),
    )
    def raw_asset(context: dg.AssetExecutionContext, rlx: RlxEnvironment) -> dg.MaterializeResult:
        day, exchange, symbol, market = partition_of(context)
        stats = TransferStats()

        def log_failure(error: LakeError) -> None:
            log_partition_event(
                context, "raw_file.failed", level=logging.ERROR, table=table,
                error_type=type(error).__name__, error=str(error), **stats.figures(),
            )  # fmt: skip

        try:
            raw = acquire_raw_file(
                rlx.lake_source(),
                rlx.layout(),
                table,
                exchange,
                symbol,
                day,
                run_id=context.run.run_id,
                policy=rlx.retry_policy(),
                allow_unverified=rlx.settings().allow_unverified_downloads,
                log=context.log.info,
                stats=stats,
            )
        except QuarantinedObjectError as error:
            log_failure(error)
            status = refresh_status(rlx.layout(), market, day, (table,), TABLE_STEP_ZONES)
            status = status["partitions"][f"{day.isoformat()}|{market}"]
            raise dg.Failure(
                description=f"{error}. The raw zone keeps its previous good file, if any; "
                f"the partition is {status['summary']}.",
                metadata={
                    "quarantine": dg.MetadataValue.path(str(error.quarantine_path)),
                    "partition_status": dg.MetadataValue.text(status["summary"]),
                },
            ) from None
        except CorruptObjectError as error:
            log_failure(error)
            raise dg.Failure(
                description=f"{error}. The raw zone keeps its previous good file, if any.",
            ) from None
        except LakeError as error:
            log_failure(error)
            raise dg.Failure(description=str(error)) from None
        refresh_status(rlx.layout(), market, day, (table,), TABLE_STEP_ZONES)
        log_partition_event(
            context, "raw_file.stored", table=table, action=raw.action, rows=raw.rows,
            bytes=raw.size, sha256=raw.sha256, path=raw.path, verified_by=raw.verified_by,
            source_version=raw.source_version, first_timestamp=raw.first_timestamp,
            last_timestamp=raw.last_timestamp, **stats.figures(),
        )  # fmt: skip
        return dg.MaterializeResult(
            metadata=raw_file_metadata(raw) | numeric_metadata(stats.figures())
        )

    return raw_asset


raw_trades, raw_book, raw_book_delta_v2 = (build_raw_asset(t) for t in RAW_TABLES)
