import gzip
import shutil
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from rlx_assets.cli import main

CAPTURES = Path(__file__).parents[1] / "data" / "sample" / "captures"


@pytest.fixture(scope="module")
def small_capture(tmp_path_factory) -> Path:
    """The first 3,000 messages of the real futures capture (its snapshot is line 55)."""
    dst = tmp_path_factory.mktemp("capture") / "usdm_head.gz"
    with gzip.open(CAPTURES / "usdm_btcusdt_20240808.gz", "rt") as src, gzip.open(dst, "wt") as out:
        for i, line in enumerate(src):
            if i == 3_000:
                break
            out.write(line)
    return dst


def book_dir(out: Path) -> Path:
    return out / "book" / "exchange=BINANCE_FUTURES" / "symbol=BTC-USDT-PERP"


def test_lake_from_capture_with_click_runner(small_capture, tmp_path):
    out = tmp_path / "new" / "lake"  # created when missing
    result = CliRunner().invoke(main, ["lake-from-capture", str(small_capture), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "read usdm_head.gz: usdm BINANCE_FUTURES.BTC-USDT-PERP: 3000 lines" in result.stderr
    assert "wrote book BINANCE_FUTURES.BTC-USDT-PERP 2024-08-08: " in result.stderr
    assert "4 files written" in result.stderr
    files = sorted(out.rglob("*.parquet"))
    assert len(files) == 4
    assert pq.read_table(book_dir(out) / "dt=2024-08-08" / "1.snappy.parquet").num_rows > 0


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["missing.gz"], 2, "does not exist"),
        (["{corrupt}"], 1, "corrupt.gz: corrupt or truncated"),
        (["{unknown}"], 1, "cannot split Binance symbol 'foobarx'"),
        (["{capture}", "--market", "spot"], 1, "--market spot given, but the messages are usdm"),
        (["{capture}", "--market", "coinm"], 2, "Invalid value for '--market'"),
    ],
)
def test_errors_are_clear_and_without_traceback(small_capture, tmp_path, args, code, message):
    corrupt = tmp_path / "corrupt.gz"
    corrupt.write_bytes(small_capture.read_bytes()[:5_000])
    unknown = tmp_path / "unknown.gz"
    with gzip.open(unknown, "wt") as fh:
        fh.write('{"capture_ns": 1, "stream": "foobarx@trade", "data": {}}\n')
    names = {"corrupt": corrupt, "unknown": unknown, "capture": small_capture}
    argv = [a.format(**names) for a in args]
    argv = [str(tmp_path / a) if a == "missing.gz" else a for a in argv]
    result = CliRunner().invoke(main, ["lake-from-capture", *argv, "--out", str(tmp_path / "out")])
    assert result.exit_code == code
    assert message in result.output
    assert "Traceback" not in result.output
    assert not isinstance(result.exception, Exception) or isinstance(result.exception, SystemExit)


@pytest.mark.slow
def test_rlx_console_script(small_capture, tmp_path):
    rlx = shutil.which("rlx") or str(Path(sys.executable).with_name("rlx"))
    out = tmp_path / "lake"
    proc = subprocess.run(
        [rlx, "lake-from-capture", str(small_capture), "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == ""
    assert "4 files written" in proc.stderr
    assert (book_dir(out) / "dt=2024-08-08" / "1.snappy.parquet").is_file()
    proc = subprocess.run([rlx, "lake-from-capture", "--out", str(out), str(tmp_path / "x.gz")],
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert proc.returncode == 2 and "does not exist" in proc.stderr
