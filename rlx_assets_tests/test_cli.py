import datetime as dt
import gzip
import json
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import click
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

import rlx_assets.lake.sources as sources
from rlx_assets.cli import Progress, main
from rlx_assets.lake.from_capture import writing as capture_writing
from rlx_assets.stats.plots import PNG_SIGNATURE
from rlx_assets_tests.export.sample_chain import certified_sample_data

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


# --- progress and help -------------------------------------------------------------------------
STAMPED = re.compile(r"^\[\s*(\d+\.\d) s\] (.*)$")


def stamped_messages(stderr: str) -> list[str]:
    """The messages of progress lines, after checking each has a non-decreasing time stamp."""
    matches = [STAMPED.match(line) for line in stderr.splitlines()]
    assert all(matches), stderr
    stamps = [float(m.group(1)) for m in matches]
    assert stamps == sorted(stamps)
    return [m.group(2) for m in matches]


def test_lake_from_capture_shows_progress_on_the_real_captures(tmp_path, monkeypatch):
    monkeypatch.setattr(capture_writing, "PROGRESS_SECONDS", 0.0)  # a line every 8,192 messages
    captures = sorted(CAPTURES.glob("*.gz"))
    out = tmp_path / "lake"
    result = CliRunner().invoke(main, ["lake-from-capture", *map(str, captures), "--out", str(out)])
    assert result.exit_code == 0, result.output
    messages = stamped_messages(result.stderr)
    # The three files are read at once, merged in receive order.
    assert [m for m in messages if m.startswith("reading ")] == [
        "reading 3 file(s), 6.7 MB, in receive order"
    ]
    periodic = [re.fullmatch(r"([\d,]+) lines read \(([\d,]+) lines/s\)", m) for m in messages]
    periodic = [m for m in periodic if m]
    total = 41_249 + 58_325 + 93_954  # the files' lines
    assert len(periodic) == total // 8_192  # one every 8,192 messages
    lines = [int(m.group(1).replace(",", "")) for m in periodic]
    assert lines == sorted(lines) and lines[-1] <= total
    assert all(int(m.group(2).replace(",", "")) > 0 for m in periodic)
    done = next(m for m in messages if m.startswith("read usdm_btcusdt_20240808.gz: "))
    assert re.search(r": 93954 lines, 93954 messages \(", done)  # zcat | wc -l: 93954
    summary = next(m for m in messages if m.startswith("all files read: "))
    assert re.fullmatch(
        rf"all files read: {total:,} lines in \d+\.\d s \([\d,]+ lines/s\)", summary
    )
    assert messages[-1] == f"15 files written below {out}"
    assert len(list(out.rglob("*.parquet"))) == 15


def test_progress_says_it_is_still_working_during_a_silent_step(capsys):
    with Progress(heartbeat=0.2) as log:
        log("step one")
        time.sleep(1.5)
    messages = stamped_messages(capsys.readouterr().err)
    assert messages[0] == "step one"
    assert messages[1:] and set(messages[1:]) == {"still working"}


def test_bench_reconstruct_shows_progress_on_stderr_and_json_on_stdout(
    sample_lake, tmp_path, monkeypatch
):
    # the run's sample lake, not a build of its own in the working directory
    monkeypatch.setattr(sources, "ensure_sample_lake", lambda: sample_lake)
    args = ["bench", "reconstruct", "--events", "100000", "--json", "--workdir", str(tmp_path)]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    messages = stamped_messages(result.stderr)
    assert messages[0] == "building a day of 100,000 events by tiling the sample capture"
    assert any(m.startswith("kernel: ") for m in messages)
    assert any(m.startswith("end to end: ") for m in messages)
    assert json.loads(result.stdout)["events"] >= 100_000
    assert list(tmp_path.iterdir()) == []  # its temporary files are gone


def test_bench_workdir_must_exist(tmp_path):
    result = CliRunner().invoke(
        main, ["bench", "reconstruct", "--workdir", str(tmp_path / "missing")]
    )
    assert result.exit_code == 2 and "does not exist" in result.output


COMMANDS = [
    [],
    ["lake-from-capture"],
    ["build-sample-lake"],
    ["partitions"],
    ["capture"],
    ["bench"],
    ["bench", "reconstruct"],
    ["bench", "day"],
    ["export"],
    ["export", "hftbacktest"],
]


@pytest.mark.parametrize("path", COMMANDS, ids=lambda p: " ".join(["rlx", *p]))
def test_help_describes_every_argument_option_default_and_the_exit_status(path):
    command: click.Command = main
    for name in path:
        command = command.commands[name]
    result = CliRunner().invoke(main, [*path, "--help"], prog_name="rlx")
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())  # unwrapped
    assert f"Usage: rlx {' '.join(path)}".rstrip() in text
    assert "Exit status: 0" in text and "2 usage error" in text
    for param in command.params:
        if isinstance(param, click.Argument):  # click lists no help for arguments
            assert f"{param.human_readable_name}:" in command.help
            continue
        assert param.help, f"{param.opts[0]} has no help"
        assert param.opts[0] in text
        if not (param.is_flag or param.required or param.default is None):
            assert param.show_default or "default" in param.help, param.opts[0]
    if isinstance(command, click.Group):
        for name, sub in command.commands.items():
            assert name in text and sub.help
    else:
        assert "environment" in command.help  # which variables it reads, if any
        assert "stderr" in command.help  # where its progress or log lines go


# --- rlx partitions ----------------------------------------------------------------------------
def days(first: str, last: str) -> list[str]:
    start, end = dt.date.fromisoformat(first), dt.date.fromisoformat(last)
    return [(start + dt.timedelta(n)).isoformat() for n in range((end - start).days + 1)]


def test_partitions_lists_every_configured_market_for_every_day_in_range(monkeypatch):
    monkeypatch.setenv("RLX_MARKETS", "BINANCE.ETH-USDT,BINANCE_FUTURES.BTC-USDT-PERP")
    args = ["partitions", "--from", "2024-02-27", "--to", "2024-03-01"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == [
        f"{day}|{market}"
        for day in days("2024-02-27", "2024-03-01")  # a leap day inside
        for market in ("BINANCE.ETH-USDT", "BINANCE_FUTURES.BTC-USDT-PERP")
    ]
    assert "8 partition keys" in result.stderr


def test_partitions_start_at_rlx_start_date_and_end_yesterday(monkeypatch):
    yesterday = dt.datetime.now(dt.UTC).date() - dt.timedelta(1)
    monkeypatch.setenv("RLX_START_DATE", (yesterday - dt.timedelta(2)).isoformat())
    result = CliRunner().invoke(main, ["partitions", "--market", "BINANCE.BTC-USDT"])
    assert result.exit_code == 0, result.output
    first = yesterday - dt.timedelta(2)
    assert result.stdout.splitlines() == [
        f"{day}|BINANCE.BTC-USDT" for day in days(first.isoformat(), yesterday.isoformat())
    ]


def test_partitions_name_the_keys_the_bundled_sample_lake_has(monkeypatch, sample_lake):
    monkeypatch.setattr("rlx_assets.config.SAMPLE_LAKE_DIR", sample_lake)
    result = CliRunner().invoke(main, ["partitions", "--from", "2024-08-08", "--to", "2024-08-09"])
    assert result.exit_code == 0, result.output
    sample_line = next(
        line for line in result.stderr.splitlines() if line.startswith("with data in the bundled")
    )
    # The captures: spot 2024-08-08 23:54 to 2024-08-09 00:05, futures on 2024-08-08.
    for key in ("2024-08-08|BINANCE.BTC-USDT", "2024-08-09|BINANCE.BTC-USDT",
                "2024-08-08|BINANCE_FUTURES.BTC-USDT-PERP"):  # fmt: skip
        assert key in sample_line
    # The futures capture reaches one second into 2024-08-09: book rows, no trade, no partition.
    assert "2024-08-09|BINANCE_FUTURES.BTC-USDT-PERP" not in sample_line
    monkeypatch.setattr("rlx_assets.config.SAMPLE_LAKE_DIR", sample_lake.parent / "unbuilt")
    result = CliRunner().invoke(main, ["partitions", "--from", "2024-08-08", "--to", "2024-08-09"])
    assert "with data in the bundled sample lake: none" in result.stderr


@pytest.mark.parametrize(
    ("env", "args", "code", "message"),
    [
        ({}, ["--market", "KRAKEN.XBT-USD"], 2, "KRAKEN.XBT-USD not among the configured markets "
         "(RLX_MARKETS=BINANCE.BTC-USDT,BINANCE_FUTURES.BTC-USDT-PERP)"),
        ({}, ["--from", "2024-08-09", "--to", "2024-08-08"], 2, "--from 2024-08-09 is after --to"),
        ({}, ["--from", "08/08/2024"], 2, "'08/08/2024' does not match the format '%Y-%m-%d'"),
        ({"RLX_START_DATE": "2024-99-01"}, [], 1, "Error: RLX_START_DATE='2024-99-01': "),
        ({"RLX_MARKETS": "KRAKEN.XBT-USD"}, [], 1, "unknown exchange 'KRAKEN': the supported "
         "exchanges are BINANCE (Binance spot, e.g. BINANCE.BTC-USDT) and BINANCE_FUTURES"),
    ],
)  # fmt: skip
def test_partitions_errors_are_one_line_naming_what_to_change(
    monkeypatch, env, args, code, message
):
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    result = CliRunner().invoke(main, ["partitions", *args])
    assert result.exit_code == code
    assert message in " ".join(result.output.split())
    assert "Traceback" not in result.output and "ValidationError" not in result.output
    if code == 1:
        assert len(result.output.strip().splitlines()) == 1


# --- rlx status --------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def certified(sample_lake, tmp_path_factory) -> Path:
    return certified_sample_data(sample_lake, tmp_path_factory)


def test_status_prints_the_calendar_and_writes_the_picture(certified, tmp_path):
    plot = tmp_path / "pictures" / "calendar.png"
    args = ["status", "--data-dir", str(certified), "--from", "2024-08-07", "--to", "2024-08-10"]
    result = CliRunner().invoke(main, [*args, "--plot", str(plot)])
    assert result.exit_code == 0, result.output
    rows = [line.split() for line in result.stdout.splitlines()]
    assert rows[1] == ["BINANCE.BTC-USDT", ".RR."]
    assert rows[2] == ["BINANCE_FUTURES.BTC-USDT-PERP", "...."]
    assert "R certified and reconstructed (2)" in result.stdout
    assert plot.read_bytes().startswith(PNG_SIGNATURE)
    assert f"calendar written to {plot}" in result.stderr


def test_status_refuses_a_range_without_partition_dates(tmp_path):
    args = ["status", "--data-dir", str(tmp_path), "--from", "2023-01-01", "--to", "2023-01-31"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2
    assert "no partition date in the range" in result.stderr
