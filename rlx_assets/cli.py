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

if __name__ == "__main__":
    main()
