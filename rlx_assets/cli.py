"""The ``rlx`` command."""

from __future__ import annotations

from pathlib import Path

import click

from rlx_assets.capture.commands import capture_command


@click.group()
def main() -> None:
    """rlx-assets: Crypto Lake data, Binance captures and order-book reconstruction."""


@main.command("lake-from-capture")
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
    help="Lake root to write {table}/exchange=../symbol=../dt=../1.snappy.parquet below.",
)
@click.option(
    "--market",
    type=click.Choice(["auto", "spot", "usdm"]),
    default="auto",
    show_default=True,
    help="Binance market of the captures; auto detects it from the messages.",
)
def lake_from_capture(captures: tuple[Path, ...], out_dir: Path, market: str) -> None:
    """Convert Binance capture files (gzip, one message per line) into Crypto Lake's raw
    layout: trades, book (top 20), book_delta_v2 and level_1, split into UTC days by exchange
    time. Files of one market may be given in any order; they are merged by receive time."""
    from rlx_assets.lake.from_capture import convert_captures

    def log(message: str) -> None:
        click.echo(message, err=True)

    try:
        written = convert_captures(list(captures), out_dir, market=market, log=log)
    except (ValueError, OSError) as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"{len(written)} files written below {out_dir}", err=True)


@main.command("build-sample-lake")
def build_sample_lake() -> None:
    """Build the bundled sample lake (data/sample/lake) from the real captures in
    data/sample/captures, once; the raw assets read it when RLX_LAKE_URI is unset."""
    from rlx_assets.lake.sources import LakeError, ensure_sample_lake

    try:
        lake = ensure_sample_lake()
    except (LakeError, ValueError, OSError) as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"sample lake ready: {lake}", err=True)


main.add_command(capture_command)


@main.group()
def bench() -> None:
    """Benchmarks (synthetic scaling of real data; never evidence of fidelity)."""


@bench.command("reconstruct")
@click.option(
    "--events",
    type=click.IntRange(min=1),
    default=30_000_000,
    show_default=True,
    help="Events (trades + book delta rows) in the tiled day.",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object on stdout.")
@click.option(
    "--workdir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Where to put the temporary input and output files (default: the system temp dir).",
)
def bench_reconstruct(events: int, as_json: bool, workdir: Path | None) -> None:
    """Throughput of the book kernel and of the partition reconstruction on a day built by
    tiling the real sample capture, peak RSS, and the speed ratio to the pure-Python book."""
    import json

    from rlx_assets.book.bench import run_benchmark

    def log(message: str) -> None:
        click.echo(message, err=True)

    result = run_benchmark(events=events, workdir=workdir, log=log)
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
        f"peak RSS:   {result['peak_rss_mb']:8.0f} MB\n"
        f"reference:  {result['reference_events_per_s'] / 1e6:8.2f} M updates/s (pure Python); "
        f"kernel is {result['kernel_vs_reference']:.0f}x faster"
    )


if __name__ == "__main__":
    main()
