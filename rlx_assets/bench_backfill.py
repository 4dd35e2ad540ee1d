"""`rlx bench backfill`: what the control plane costs over a backfill on an S3 data root.

A backfill's cost must not grow with the history it leaves behind. This runs the acquisition and
validation of many small partitions one after another, as a backfill does, on a data root in a
bucket of a local S3 server (moto's, the one the tests use; a dev dependency), and times every
request of each run. The control plane is every request on an object that is not one of the
vendor's Parquet files (manifest, status, gate reports, certificates, logs, listings); the data
plane is the rest. The partitions are the bundled spot sample day (real data, converted by the
project's converter) moved on by whole days: for scale only, never evidence.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import importlib
import os
import shutil
import socket
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from rlx_assets.config import SAMPLE_CAPTURES_DIR
from rlx_assets.lake.from_capture.writing import convert_captures
from rlx_assets.markets import parse_market_key
from rlx_assets.remote import RemoteRoot
from rlx_assets.staging import lake_relative_path

MARKET = "BINANCE.BTC-USDT"
SAMPLE_DAY = dt.date(2024, 8, 8)
FIRST_DAY = dt.date(2024, 1, 1)  # RLX_START_DATE's default: the first partition
TABLES = ("trades", "book", "book_delta_v2")
REGION = "eu-west-1"
NS_PER_DAY = 86_400 * 10**9


def run_backfill_bench(
    partitions: int = 100,
    workdir: Path | None = None,
    log: Callable[[str], None] = lambda _msg: None,
) -> dict:
    """Run ``partitions`` days of acquisition + validation on an S3 data root, one after the
    other; per run its wall seconds and the seconds and requests of its control plane."""
    root = Path(tempfile.mkdtemp(prefix="rlx-bench-backfill-", dir=workdir))
    try:
        days = [FIRST_DAY + dt.timedelta(days=n) for n in range(partitions)]
        lake = tiled_lake(root / "lake", days, log)
        window = window_of(partitions)
        first_probes: list[dict[str, float]] = []  # at both ends of the first window
        last_probes: list[dict[str, float]] = []  # and of the last one
        with local_s3() as endpoint, data_root_in_bucket(root, endpoint) as bucket:
            runs = []
            for n, day in enumerate(days):
                if n == 0:
                    first_probes.append(server_ms(endpoint, bucket))
                if n == partitions - window:
                    last_probes.append(server_ms(endpoint, bucket))
                runs.append(run_partition(day, lake, log))
                if n + 1 == window:
                    first_probes.append(server_ms(endpoint, bucket))
                if n + 1 == partitions:
                    last_probes.append(server_ms(endpoint, bucket))
    finally:
        shutil.rmtree(root, ignore_errors=True)
    server = {"first": _mean_probe(first_probes), "last": _mean_probe(last_probes)}
    return {**summary(runs), **server_normalised(runs[:window], runs[-window:], server)}


# The server's own time per request of each kind, probed on objects of the bench's own; the
# control plane's other kinds ("append to", "upload to") read and write: counted as writes.
PROBED_KINDS = ("list", "read", "write")


def server_ms(endpoint: str, bucket: str, probes: int = 30) -> dict[str, float]:
    """The server's own milliseconds per request, now: a LIST of a prefix that holds nothing, a
    GET and a PUT of a small object. moto's grow with the objects in the bucket (a LIST scans
    them all); S3 lists by prefix from an index."""
    import boto3

    client = boto3.client("s3", endpoint_url=endpoint, region_name=REGION)
    requests = {
        "list": lambda n: client.list_objects_v2(Bucket=bucket, Prefix="probe/nothing/"),
        "write": lambda n: client.put_object(Bucket=bucket, Key=f"probe/{n}", Body=b"x" * 512),
        "read": lambda n: client.get_object(Bucket=bucket, Key=f"probe/{n}")["Body"].read(),
    }
    found = {}
    for kind, request in requests.items():
        start = time.perf_counter()
        for n in range(probes):
            request(n)
        found[kind] = (time.perf_counter() - start) / probes * 1000
    return found


def _mean_probe(probes: list[dict[str, float]]) -> dict[str, float]:
    return {k: round(statistics.fmean(p[k] for p in probes), 2) for k in PROBED_KINDS}


def server_normalised(first: list[dict], last: list[dict], server: dict) -> dict:
    """How much the server alone makes the control plane grow: the last runs' requests at the
    server's last per-request times over the first runs' at its first, kind by kind; and the
    control plane's growth net of it (the part that is ours)."""

    def at_server_ms(runs: list[dict], ms: dict[str, float]) -> float:
        total = 0.0
        for run in runs:
            for what, kind in run["control_by_kind"].items():
                total += kind["requests"] * ms[what if what in ms else "write"]
        return total / len(runs)

    growth = at_server_ms(last, server["last"]) / at_server_ms(first, server["first"])
    control = statistics.fmean(r["control_s"] for r in last) / statistics.fmean(
        r["control_s"] for r in first
    )
    return {
        "server_ms": server,
        "server_growth": round(growth, 3),
        "last_over_first_net_of_server": round(control / growth, 3),
    }


def window_of(partitions: int) -> int:
    """Runs averaged at each end: ten, or half the runs if fewer than 20."""
    return min(10, partitions // 2) or 1


def tiled_lake(lake: Path, days: list[dt.date], log: Callable[[str], None]) -> Path:
    """The spot sample day converted once, then written for each day with its times moved."""
    log(f"converting the sample day and tiling it over {len(days)} days")
    sample = lake.parent / "sample-lake"
    convert_captures([SAMPLE_CAPTURES_DIR / "spot_btcusdt_20240808.gz"], sample, days={SAMPLE_DAY})
    exchange, symbol = parse_market_key(MARKET)
    for table in TABLES:
        source = pq.read_table(sample / lake_relative_path(table, exchange, symbol, SAMPLE_DAY))
        for day in days:
            shift = (day - SAMPLE_DAY).days * NS_PER_DAY
            moved = source
            for name in ("timestamp", "receipt_timestamp"):
                index = moved.schema.get_field_index(name)
                moved = moved.set_column(index, name, pc.add(moved[name], pa.scalar(shift)))
            target = lake / lake_relative_path(table, exchange, symbol, day)
            target.parent.mkdir(parents=True, exist_ok=True)
            pq.write_table(moved, target)
    return lake


@contextlib.contextmanager
def local_s3() -> Iterator[str]:
    """moto's S3 server on a free port of 127.0.0.1; its endpoint URL."""
    try:
        from moto.server import ThreadedMotoServer
    except ImportError as error:  # a dev dependency, as for the tests
        raise RuntimeError(
            "the backfill benchmark needs the local S3 server of the tests (moto): "
            "run `bash scripts/setup.sh`"
        ) from error
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


@contextlib.contextmanager
def data_root_in_bucket(root: Path, endpoint: str) -> Iterator[str]:
    """RLX_DATA_DIR in a fresh bucket of the local server, a working copy under ``root``; yields
    the bucket's name."""
    import boto3

    bucket = f"rlx-bench-{uuid.uuid4().hex[:12]}"
    env = {
        "RLX_DATA_DIR": f"s3://{bucket}/data",
        "RLX_DATA_S3_ENDPOINT_URL": endpoint,
        "RLX_WORK_DIR": str(root / "work"),
        "AWS_ACCESS_KEY_ID": "bench",
        "AWS_SECRET_ACCESS_KEY": "bench",
        "AWS_DEFAULT_REGION": REGION,
    }
    saved = {name: os.environ.get(name) for name in env}
    os.environ.update(env)
    try:
        boto3.client("s3", endpoint_url=endpoint, region_name=REGION).create_bucket(
            Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": REGION}
        )
        yield bucket
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


class RequestClock:
    """Seconds and count of the S3 requests made while active, control and data plane apart."""

    def __init__(self) -> None:
        self.seconds = {"control": 0.0, "data": 0.0}
        self.requests = {"control": 0, "data": 0}
        self.control_by_kind: dict[str, list[float]] = {}  # "list", "read", ... -> [n, seconds]

    @contextlib.contextmanager
    def timing(self) -> Iterator[RequestClock]:
        original = RemoteRoot._call
        clock = self

        def timed(remote, what, key, call, *args, **kwargs):
            plane = "data" if key.endswith(".parquet") else "control"
            start = time.perf_counter()
            try:
                return original(remote, what, key, call, *args, **kwargs)
            finally:
                spent = time.perf_counter() - start
                clock.seconds[plane] += spent
                clock.requests[plane] += 1
                if plane == "control":
                    kind = clock.control_by_kind.setdefault(what, [0, 0.0])
                    kind[0] += 1
                    kind[1] += spent

        RemoteRoot._call = timed
        try:
            yield self
        finally:
            RemoteRoot._call = original


def run_partition(day: dt.date, lake: Path, log: Callable[[str], None]) -> dict:
    """Acquisition and validation of one partition in process, as one run of a backfill."""
    import dagster as dg

    from rlx_assets.defs.resources import RlxEnvironment

    # What a backfill runs: the definitions, above this module in the import layers.
    defs = importlib.import_module("rlx_assets.definitions").defs

    partition = f"{day.isoformat()}|{MARKET}"
    clock = RequestClock()
    start = time.perf_counter()
    with clock.timing(), dg.DagsterInstance.ephemeral() as instance:
        result = dg.materialize(
            [*defs.assets, *defs.asset_checks],
            selection=dg.AssetSelection.groups("acquisition", "validation"),
            partition_key=partition,
            instance=instance,
            resources={"rlx": RlxEnvironment(lake_uri=str(lake), gate_profile="sample")},
            raise_on_error=False,
        )
    wall = time.perf_counter() - start
    if not result.success:
        raise RuntimeError(f"{partition}: the run failed")
    log(
        f"{partition}: {wall:.1f} s, control plane {clock.seconds['control']:.2f} s "
        f"({clock.requests['control']} requests)"
    )
    return {
        "partition": partition,
        "wall_s": round(wall, 3),
        "control_s": round(clock.seconds["control"], 3),
        "control_requests": clock.requests["control"],
        "data_s": round(clock.seconds["data"], 3),
        "data_requests": clock.requests["data"],
        "control_by_kind": {
            what: {"requests": n, "s": round(seconds, 3)}
            for what, (n, seconds) in sorted(clock.control_by_kind.items())
        },
    }


def summary(runs: list[dict]) -> dict:
    """The runs, and the control plane of the first and the last ten compared."""
    window = window_of(len(runs))
    first, last = runs[:window], runs[-window:]

    def mean(rows: list[dict], name: str) -> float:
        return round(statistics.fmean(r[name] for r in rows), 3)

    return {
        "partitions": len(runs),
        "window": window,
        "first_control_s": mean(first, "control_s"),
        "last_control_s": mean(last, "control_s"),
        "last_over_first": round(mean(last, "control_s") / mean(first, "control_s"), 3),
        "first_control_requests": mean(first, "control_requests"),
        "last_control_requests": mean(last, "control_requests"),
        "runs": runs,
    }
