"""The ``rlx`` command."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import click

from rlx_assets.capture.commands import capture_command

EXIT_STATUS = "Exit status: 0 done; 1 failed (one line on stderr, no traceback); 2 usage error."


class Progress:
    """Progress lines on stderr: each message with the seconds since the start, and a
    "still working" line whenever a step has been silent for `heartbeat` seconds."""

    def __init__(self, heartbeat: float = 15.0):
        self.heartbeat = heartbeat
        self.started = self.last = time.monotonic()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._beats = threading.Thread(target=self._beat, name="rlx-progress", daemon=True)

    def __call__(self, message: str) -> None:
        with self._lock:
            self.last = time.monotonic()
            click.echo(f"[{self.last - self.started:7.1f} s] {message}", err=True)

    def _beat(self) -> None:
        while not self._stop.wait(min(1.0, self.heartbeat)):
            if time.monotonic() - self.last >= self.heartbeat:
                self("still working")

    def __enter__(self) -> Progress:
        self._beats.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._beats.join()


@click.group(epilog=EXIT_STATUS)
def main() -> None:
    """rlx-assets command line: Binance captures to the Crypto Lake layout, the bundled sample
    lake, live capture of golden samples, the reconstruction benchmark, and the valid partition
    keys.

    The Dagster pipeline itself runs with `dg` or `dagster` (see README.md); of these commands only
    `rlx partitions` reads the RLX_* settings of the assets. Progress and log lines go to stderr,
    results to the files named or to stdout. `rlx COMMAND --help` describes each command.
    """


@main.command("lake-from-capture", epilog=EXIT_STATUS)
@click.argument(
    "captures",
    nargs=-1,
    required=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
)
@click.option(
    "--out",
    "out_dir",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Lake root to write {table}/exchange=../symbol=../dt=../1.snappy.parquet below "
    "(created when missing; a day file already there is replaced atomically).",
)
@click.option(
    "--market",
    type=click.Choice(["auto", "spot", "usdm"]),
    default="auto",
    show_default=True,
    help="Binance market of the captures (spot, or usdm for USD-M futures); auto detects it "
    "per file from the messages.",
)
def lake_from_capture(captures: tuple[Path, ...], out_dir: Path, market: str) -> None:
    """Convert Binance capture files into Crypto Lake's raw layout.

    CAPTURES: one or more gzip files with one message per line, as `rlx capture` writes them
    (e.g. data/sample/captures/*.gz). Files of one market may be given in any order; they are
    merged by receive time, and one file may hold several symbols.

    Writes trades, book (top 20, rebuilt from the REST snapshot and the depth diffs),
    book_delta_v2 and level_1 (bookTicker) Parquet files with the vendor's columns, one per
    table, market and UTC day of exchange time; the files are read together, merged in receive
    order, in bounded memory. Progress on stderr: the files' sizes, lines read and lines/s every
    few seconds, each file's counts once read, each file written, and the count at the end.
    Reads no environment variables.
    """
    from rlx_assets.lake.from_capture import convert_captures

    with Progress() as log:
        try:
            written = convert_captures(list(captures), out_dir, market=market, log=log)
        except (ValueError, OSError) as exc:
            raise click.ClickException(str(exc)) from exc
        log(f"{len(written)} files written below {out_dir}")


@main.command("build-sample-lake", epilog=EXIT_STATUS)
def build_sample_lake() -> None:
    """Build the bundled sample lake data/sample/lake from the real captures in
    data/sample/captures (paths inside the checkout; no arguments or options).

    Does nothing when the lake is up to date with the captures and the converter (its BUILT
    stamp); otherwise rebuilds it beside its place and swaps it in. The raw assets read this
    lake when RLX_LAKE_URI is unset; the command itself reads no environment variables. Prints
    the lake's path on stderr.
    """
    from rlx_assets.lake.sources import LakeError, ensure_sample_lake

    try:
        lake = ensure_sample_lake()
    except (LakeError, ValueError, OSError) as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"sample lake ready: {lake}", err=True)


def range_options(command):
    """--market, --from and --to: a part of the configured partitions (see `selected_range`)."""
    for option in reversed([
        click.option(
            "--market",
            "markets",
            multiple=True,
            help="Only this market (EXCHANGE.SYMBOL, one of RLX_MARKETS); repeat for several "
            "(default: every configured market).",
        ),
        click.option(
            "--from",
            "first_day",
            type=click.DateTime(formats=["%Y-%m-%d"]),
            default=None,
            help="First date, YYYY-MM-DD (default: RLX_START_DATE).",
        ),
        click.option(
            "--to",
            "last_day",
            type=click.DateTime(formats=["%Y-%m-%d"]),
            default=None,
            help="Last date, YYYY-MM-DD (default: yesterday in UTC, the last complete day).",
        ),
    ]):  # fmt: skip
        command = option(command)
    return command


def selected_range(markets: tuple[str, ...], first_day, last_day):
    """The settings, and the configured partition dates and markets inside the options; a bad
    RLX_* variable, an unconfigured --market or --from after --to fails with one line."""
    from rlx_assets.config import SettingsError, load_settings

    try:
        settings = load_settings()
    except SettingsError as exc:
        raise click.ClickException(str(exc)) from exc
    from rlx_assets.defs.partitions import configured_days

    unknown = [m for m in markets if m not in settings.markets]
    if unknown:
        raise click.BadParameter(
            f"{', '.join(unknown)} not among the configured markets "
            f"(RLX_MARKETS={','.join(settings.markets)})",
            param_hint="--market",
        )
    if first_day and last_day and first_day > last_day:
        raise click.BadParameter(f"--from {first_day:%Y-%m-%d} is after --to {last_day:%Y-%m-%d}")
    days = [
        day
        for day in configured_days(settings)
        if (first_day is None or day >= first_day.date())
        and (last_day is None or day <= last_day.date())
    ]
    return settings, days, list(markets or settings.markets)


@main.command("partitions", epilog=EXIT_STATUS)
@range_options
def partitions(markets: tuple[str, ...], first_day, last_day) -> None:
    """List the valid partition keys, DATE|EXCHANGE.SYMBOL, one per line on stdout: the values
    `dagster asset materialize --partition`, `dg launch --partition` and backfills accept.

    The partitions are every UTC day from RLX_START_DATE to yesterday times every market of
    RLX_MARKETS (read from the environment, like the assets do); a key outside them is refused
    by Dagster with a long DagsterInvalidSubsetError. With the bundled sample lake (RLX_LAKE_URI
    unset) stderr also names the keys the sample has trades and books for (once `rlx
    build-sample-lake` or scripts/run_sample.sh built it). A bad RLX_* variable, an unconfigured
    --market or --from after --to fails with one line naming it.
    """
    settings, days, selected = selected_range(markets, first_day, last_day)
    keys = [f"{day}|{market}" for day in days for market in selected]
    click.echo("\n".join(keys) if keys else "", nl=bool(keys))
    click.echo(f"{len(keys)} partition keys", err=True)
    if settings.lake_uri is None:
        in_sample = sorted(set(keys) & set(_sample_lake_partitions()))
        click.echo(
            f"with data in the bundled sample lake: {', '.join(in_sample) or 'none'}", err=True
        )


@main.command("status", epilog=EXIT_STATUS)
@range_options
@click.option(
    "--data-dir",
    default=None,
    help="Data root to read (a directory or s3://BUCKET/PREFIX; default: RLX_DATA_DIR, else data).",
)
@click.option(
    "--plot",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Also write the calendar as a PNG picture here (replaced atomically when it exists).",
)
def status(markets: tuple[str, ...], first_day, last_day, data_dir: str | None, plot) -> None:
    """Print the coverage calendar: for each month, one row per market and one character per
    day, the state of the day (certified and reconstructed, certified, acquired, quarantined,
    failed gate, missing; the legend with each state's count at the end), read from the data
    root's zones, certificates and reconstructions. The days are those of the partitions
    (RLX_START_DATE to yesterday) within --from/--to; the markets those of RLX_MARKETS.

    Reads RLX_DATA_DIR, RLX_MARKETS and RLX_START_DATE (and, for an s3:// root, the
    RLX_DATA_S3_* and AWS_* variables). Writes nothing below the data root; the
    coverage_calendar asset writes the same table as status/coverage.parquet and .png there.
    """
    from rlx_assets.config import SettingsError
    from rlx_assets.read import data_layout
    from rlx_assets.staging import atomic_write_bytes
    from rlx_assets.stats.plots import png_bytes
    from rlx_assets.validation.coverage import calendar_figure, calendar_text, coverage_table

    _, days, selected = selected_range(markets, first_day, last_day)
    if not days:
        raise click.BadParameter("no partition date in the range", param_hint="--from/--to")
    try:
        table = coverage_table(data_layout(data_dir), days, selected)
        click.echo(calendar_text(table))
        if plot is not None:
            atomic_write_bytes(plot, png_bytes(calendar_figure(table)))
            click.echo(f"calendar written to {plot}", err=True)
    except (SettingsError, ValueError, OSError) as exc:
        raise click.ClickException(str(exc)) from exc


def _sample_lake_partitions() -> list[str]:
    """DATE|MARKET of the days the bundled sample lake has all three raw tables for (none before
    it is built)."""
    from rlx_assets.config import SAMPLE_LAKE_DIR

    def keys(table: str) -> set[str]:
        days = SAMPLE_LAKE_DIR.glob(f"{table}/exchange=*/symbol=*/dt=*")
        return {f"{d.name[3:]}|{d.parent.parent.name[9:]}.{d.parent.name[7:]}" for d in days}

    return sorted(keys("trades") & keys("book") & keys("book_delta_v2"))


main.add_command(capture_command)


@main.group(epilog=EXIT_STATUS)
def export() -> None:
    """Certified, current days in the formats of other tools."""


@export.command("hftbacktest", epilog=EXIT_STATUS)
@click.option("--market", required=True, help="EXCHANGE.SYMBOL, e.g. BINANCE.BTC-USDT.")
@click.option(
    "--date",
    "day",
    required=True,
    type=click.DateTime(formats=["%Y-%m-%d"]),
    help="The UTC day, YYYY-MM-DD.",
)
@click.option(
    "--out",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="The .npz file to write (replaced atomically when it exists).",
)
@click.option(
    "--data-dir",
    default=None,
    help="Data root to read (a directory or s3://BUCKET/PREFIX; default: RLX_DATA_DIR, else data).",
)
@click.option(
    "--base-latency-ns",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="Added to every local timestamp when the recorder's clock ran behind the exchange "
    "(as hftbacktest's correct_local_timestamp).",
)
def export_hftbacktest(
    market: str, day, out: Path, data_dir: str | None, base_latency_ns: int
) -> None:
    """Write one certified, current day of a market as hftbacktest's event array
    (np.savez_compressed with one array `data` of its event_dtype), starting with a snapshot of
    the whole starting book; see rlx_assets/export/hftbacktest.py for the flags and order.

    Refuses, with one line naming the day and the command that materialises it, a day that is not
    reconstructed from the certificate in force. Reads RLX_DATA_DIR (and, for an s3:// root, the
    RLX_DATA_S3_* and AWS_* variables) from the environment. Progress on stderr; on stdout one
    JSON object: events, bytes, seconds, tick_size and lot_size (10**-scale of the day's prices
    and sizes: pass them to hftbacktest), the local timestamp offset applied.
    """
    import json

    from rlx_assets.config import SettingsError
    from rlx_assets.export.hftbacktest import StreamOrderError, hftbacktest_events, write_npz
    from rlx_assets.read import BookNotKnownError, DataNotCurrentError

    started = time.monotonic()
    try:
        exported = hftbacktest_events(
            market, day.date(), data_dir=data_dir, base_latency_ns=base_latency_ns
        )
        click.echo(f"{market} {day:%Y-%m-%d}: {exported.events:,} events, writing {out}", err=True)
        size = write_npz(exported, out)
    except (
        DataNotCurrentError,
        BookNotKnownError,
        SettingsError,
        StreamOrderError,
        OSError,
    ) as exc:
        lines = [x.strip() for x in str(exc).splitlines() if "allow_missing" not in x]
        raise click.ClickException(" ".join(lines)) from exc
    click.echo(
        json.dumps({
            "market": market,
            "date": f"{day:%Y-%m-%d}",
            "out": str(out),
            "events": exported.events,
            "snapshot_levels": exported.snapshot_levels,
            "bytes": size,
            "seconds": round(time.monotonic() - started, 3),
            "tick_size": exported.tick_size,
            "lot_size": exported.lot_size,
            "local_ts_offset_ns": exported.local_ts_offset_ns,
        })
    )  # fmt: skip


@main.group(epilog=EXIT_STATUS)
def bench() -> None:
    """Benchmarks on synthetic scalings of the real sample data (never evidence of fidelity)."""


@bench.command("reconstruct", epilog=EXIT_STATUS)
@click.option(
    "--events",
    type=click.IntRange(min=1),
    default=30_000_000,
    show_default=True,
    help="Events (trades + book delta rows) in the tiled, day-sized input.",
)
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="Print one JSON object on stdout (events, kernel_events_per_s, "
    "end_to_end_events_per_s, peak_rss_mb, ...) instead of the text summary.",
)
@click.option(
    "--workdir",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    default=None,
    help="Existing directory for the temporary input and output files, removed at the end "
    "(default: the system temp dir, $TMPDIR or /tmp).",
)
@click.option(
    "--profile",
    is_flag=True,
    help="Also profile the end-to-end run's main thread (cProfile on thread CPU time): "
    "main_thread_cpu_seconds and its top functions (main_thread_top).",
)
def bench_reconstruct(events: int, as_json: bool, workdir: Path | None, profile: bool) -> None:
    """Throughput of the order-book reconstruction on a day built by tiling the real sample
    capture (data/sample; the sample lake is built first if missing).

    Measures the numba book kernel (book updates/s), the whole partition reconstruction as the
    reconstructed_stream asset runs it (events/s, wall and CPU seconds), the peak RSS, the
    Parquet I/O floor (pyarrow alone on one core reading the same inputs and writing the same
    stream rows: no reconstruction on one core can be faster), and the speed ratio to the
    pure-Python reference book. Progress on stderr (each phase with the
    seconds since the start, and a line every 15 s while a phase runs); the summary, or the
    JSON object, on stdout. Reads no environment variables besides TMPDIR.
    """
    import json

    from rlx_assets.bench import run_benchmark
    from rlx_assets.lake.sources import LakeError

    with Progress() as log:
        log(f"building a day of {events:,} events by tiling the sample capture")
        try:
            result = run_benchmark(events=events, workdir=workdir, log=log, profile=profile)
        except (LakeError, ValueError, OSError) as exc:
            raise click.ClickException(str(exc)) from exc
    if as_json:
        click.echo(json.dumps(result, sort_keys=True))
        return
    click.echo(
        f"events {result['events']:,} ({result['trades']:,} trades, "
        f"{result['book_updates']:,} book updates, {result['tiles']} tiles)\n"
        f"kernel:     {result['kernel_events_per_s'] / 1e6:8.1f} M book updates/s "
        f"(best after every row; {result['kernel_diff_events_per_s'] / 1e6:.1f} M/s "
        "with one event per diff)\n"
        f"end to end: {result['end_to_end_events_per_s'] / 1e6:8.2f} M events/s "
        f"({result['end_to_end_seconds']:.1f} s wall, "
        f"{result['end_to_end_cpu_seconds']:.1f} s CPU)\n"
        f"I/O floor:  {result['io_floor_events_per_s'] / 1e6:8.2f} M events/s on one core "
        f"(pyarrow alone: read {result['io_floor_read_ns_per_event']:.0f} + write "
        f"{result['io_floor_write_ns_per_event']:.0f} ns/event)\n"
        f"ratio:      {result['floor_ratio']:8.2f} of the floor per CPU second; "
        f"{result['all_io_ratio']:.2f} of all required I/O "
        f"({result['io_all_events_per_s'] / 1e6:.2f} M events/s: + the vendor book read and "
        "the snapshots written)\n"
        f"real day:   {result['real_day_end_to_end_events_per_s'] / 1e6:8.2f} M events/s "
        f"({result['real_day_result_events']:,} events of the real sample day; "
        f"{result['real_day_floor_ratio']:.2f} of its floor per CPU second)\n"
        f"peak RSS:   {result['peak_rss_mb']:8.0f} MB\n"
        + (
            f"main thread: {result['main_thread_cpu_seconds']:.2f} s CPU of "
            f"{result['end_to_end_cpu_seconds']:.2f}; top: {result['main_thread_top']}\n"
            if profile
            else ""
        )
        + f"reference:  {result['reference_events_per_s'] / 1e6:8.2f} M updates/s (pure Python); "
        f"kernel is {result['kernel_vs_reference']:.0f}x faster"
    )


@bench.command("backfill", epilog=EXIT_STATUS)
@click.option(
    "--partitions",
    type=click.IntRange(2, 1000),
    default=100,
    show_default=True,
    help="Days of one market, run one after another as a backfill does.",
)
@click.option(
    "--json", "as_json", is_flag=True, help="Print one JSON object on stdout instead of a table."
)
@click.option(
    "--workdir",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    default=None,
    help="Existing directory for the run's files, removed at the end (default: $TMPDIR or /tmp).",
)
def bench_backfill(partitions: int, as_json: bool, workdir: Path | None) -> None:
    """The control plane's cost over a backfill on an S3 data root.

    Acquisition and validation of PARTITIONS small days (the spot sample day, times moved on by
    whole days), one run after another, in process, on a data root in a bucket of a local S3
    server (moto, as in the tests). Every request of each run is timed: the control plane is
    every request on an object other than the vendor's Parquet files. Prints the control-plane
    seconds and requests of the first and the last ten runs; it must not grow with the history.
    The server's own time per LIST, GET and PUT is probed at both ends of each ten: the growth
    it alone explains is set apart (moto's LIST scans every object of the bucket).
    """
    import json

    from rlx_assets.bench_backfill import run_backfill_bench

    with Progress() as log:
        try:
            result = run_backfill_bench(partitions=partitions, workdir=workdir, log=log)
        except (RuntimeError, ValueError, OSError) as exc:
            raise click.ClickException(str(exc)) from exc
    if as_json:
        click.echo(json.dumps(result, sort_keys=True))
        return
    window = result["window"]
    click.echo(f"{result['partitions']} partitions, control plane per run (mean of {window}):")
    click.echo(
        f"  first {window}: {result['first_control_s']:.3f} s, "
        f"{result['first_control_requests']:.0f} requests"
    )
    click.echo(
        f"  last {window}:  {result['last_control_s']:.3f} s, "
        f"{result['last_control_requests']:.0f} requests"
    )
    click.echo(f"  last / first: {result['last_over_first']:.2f}")
    first, last = result["server_ms"]["first"], result["server_ms"]["last"]
    click.echo(
        f"  the server's own ms per request, first {window} -> last {window}: "
        + ", ".join(f"{k} {first[k]:.1f} -> {last[k]:.1f}" for k in first)
    )
    click.echo(
        f"  the server's own times alone scale the runs' requests by "
        f"{result['server_growth']:.2f}; last / first net of that: "
        f"{result['last_over_first_net_of_server']:.2f}"
    )


@bench.command("day", epilog=EXIT_STATUS)
@click.option(
    "--hours",
    type=click.IntRange(1, 24),
    default=24,
    show_default=True,
    help="Hourly capture files of the day, from 00:00 UTC (24: a full-size day, ~13 M lines).",
)
@click.option(
    "--minutes",
    type=click.FloatRange(min=0.5),
    default=None,
    help="Stop the recording after this many minutes instead (a quick look at the harness).",
)
@click.option(
    "--date",
    "day",
    type=click.DateTime(formats=["%Y-%m-%d"]),
    default=None,
    help="The UTC day to generate, YYYY-MM-DD (default: 2024-08-10, beside the sample days).",
)
@click.option(
    "--steps",
    default=None,
    help="Comma-separated subset of the steps and floors, in their order: "
    "capture_read,convert,parquet_read,process_start,golden_job,raw_trades,raw_book,"
    "raw_book_delta_v2,validated_partition,readiness_certificate,reconstructed_stream,"
    "fidelity_report (default: all).",
)
@click.option(
    "--gate-profile",
    type=click.Choice(["production", "sample"]),
    default=None,
    help="RLX_GATE_PROFILE of the chain (default: production for 24 hours, else sample: "
    "fewer hours cannot reach production's 99% coverage of the day).",
)
@click.option(
    "--max-rss-mb",
    type=click.FloatRange(min=100),
    default=8000,
    show_default=True,
    help="A step whose processes pass this resident memory is killed and reported as failed.",
)
@click.option(
    "--json", "as_json", is_flag=True, help="Print one JSON object on stdout instead of a table."
)
@click.option(
    "--workdir",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    default=None,
    help="Existing directory for the run's files (captures, lake, data, Dagster instance, one "
    "log per step), removed at the end unless --keep (default: $TMPDIR or /tmp).",
)
@click.option("--keep", is_flag=True, help="Keep the run's files (their directory is printed).")
def bench_day(
    hours: int,
    minutes: float | None,
    day,
    steps: str | None,
    gate_profile: str | None,
    max_rss_mb: float,
    as_json: bool,
    workdir: Path | None,
    keep: bool,
) -> None:
    """Every golden, converter and daily_chain step measured on a full-size day.

    The day is synthetic, for scale only: the real bundled spot capture (~11 minutes of
    BTCUSDT depth, trades, bookTicker) tiled into hourly recorder files with sha256 sidecars,
    ids and times moved on so that it reads as one continuous recording. Then, each in a child
    process of its own: `rlx lake-from-capture` (its lake serves the chain), `golden_job`, and
    every daily_chain asset with its checks (`dg launch`, in process, a fresh Dagster instance
    and data dir), the fidelity report last. Per step: wall and CPU seconds, peak RSS and
    success (a failed step shows its stderr tail; the rest still run). Floors on the same files:
    JSON-parsing the capture (msgspec), reading the lake's Parquet, and starting a process with
    the definitions imported; the ratios golden CPU / capture floor and fidelity report CPU /
    reconstruction CPU. Progress on stderr; the table or JSON on stdout. Reads no RLX_* environment
    variables (each step gets its own).
    """
    import json

    from rlx_assets.bench_day import STEPS, run_day_bench

    chosen = STEPS if steps is None else tuple(s.strip() for s in steps.split(",") if s.strip())
    unknown = sorted(set(chosen) - set(STEPS))
    if unknown:
        raise click.BadParameter(f"unknown steps {', '.join(unknown)}", param_hint="--steps")
    with Progress() as log:
        try:
            result = run_day_bench(
                hours=hours,
                date=day.date() if day else None,
                workdir=workdir,
                keep=keep,
                steps=chosen,
                gate_profile=gate_profile,
                max_rss_mb=max_rss_mb,
                generate_options={"duration_s": minutes * 60} if minutes else None,
                log=log,
            )
        except (RuntimeError, ValueError, OSError) as exc:
            raise click.ClickException(str(exc)) from exc
    if as_json:
        click.echo(json.dumps(result, sort_keys=True))
        return
    size = result["input"]
    click.echo(
        f"{result['date']}: {size['lines']:,} lines, {size['bytes'] / 1e6:,.0f} MB gzip, "
        f"{size['files']} files (synthetic); gate profile {result['gate_profile']}"
    )
    click.echo(f"{'step':28} {'ok':>6} {'wall s':>8} {'CPU s':>8} {'peak RSS MB':>12}")
    for step in [result["generation"], *result["steps"], *result["floors"].values()]:
        verdict = "ok" if step["ok"] else "FAILED"
        click.echo(
            f"{step['name']:28} {verdict:>6} {step['wall_s']:8.1f} {step['cpu_s']:8.1f} "
            f"{step['peak_rss_mb']:12,.0f}"
        )
    for name, value in result["ratios"].items():
        click.echo(f"{name}: {value if value is not None else '-'}")
    for target in result["targets"]:
        measured = "-" if target["measured"] is None else f"{target['measured']:,.3g}"
        verdict = "met" if target["met"] else "NOT MET"
        click.echo(f"target {target['target']} <= {target['limit']:g}: {measured} {verdict}")
    if result["workdir"]:
        click.echo(f"files kept in {result['workdir']}")


if __name__ == "__main__":
    main()
