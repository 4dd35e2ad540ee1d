"""``rlx bench day``: every golden, converter and daily_chain step measured on a full-size day.

The day is synthetic: the real bundled spot capture tiled into hourly recorder files
(``rlx_assets.capture.synthetic_day``; for scale only, never evidence of fidelity). On it, each
step runs in a child process of its own, and for each the harness reports wall seconds, CPU
seconds (user + system, the child's and its waited-for descendants') and peak RSS (``ru_maxrss``
of ``os.wait4``, the whole process: interpreter and imports included), and whether it succeeded
(a failed step is reported with the tail of its stderr, the benchmark goes on):

* ``convert``: ``rlx lake-from-capture`` of the day's files into a local lake, which then serves
  the chain (``RLX_LAKE_URI``);
* ``golden_job``: ``golden_samples`` and its gap-ratio check (``dg launch --job golden_job``);
* every daily_chain asset (with its checks), one ``dg launch --assets`` each, in dependency
  order, the fidelity report last. Runs use the in-process executor (one process per run, as
  scripts/run_sample.sh), a fresh ``DAGSTER_HOME`` (the project's dagster.yaml) and
  ``RLX_DATA_DIR``.

Floors, in the same run on the same files: ``capture_read`` (gunzip and JSON-parse every line of
the day with msgspec, the fastest parser measured), ``parquet_read`` (every column of
the day's lake files with pyarrow) and ``process_start`` (a Python importing the definitions:
what every ``dg launch`` step pays before any work). Ratios: ``golden_cpu_over_capture_floor``
and ``fidelity_cpu_over_reconstruction``.

The harness itself stays small and does all heavy work (generation, floors) in children: on
Linux a child's ``ru_maxrss`` starts at its parent's peak RSS (``harness_peak_rss_mb``, the
figure below which a step's peak says nothing).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import importlib
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

MARKET = "BINANCE.BTC-USDT"
IN_PROCESS = '{"execution": {"config": {"in_process": {}}}}'
CHAIN_ASSETS = (
    "raw_trades", "raw_book", "raw_book_delta_v2", "validated_partition",
    "readiness_certificate", "reconstructed_stream", "fidelity_report",
)  # fmt: skip
READ_STEPS = ("stream_read", "book_at", "export", "compress")
STEPS = (
    "capture_read", "convert", "parquet_read", "process_start", "gates", "golden_job",
    *CHAIN_ASSETS, *READ_STEPS, "daily_chain",
)  # fmt: skip
BOOK_AT_INSTANTS = 50
GIB = 1024  # MB
DEFAULT_MAX_RSS_MB = 8_000  # a step above this is killed: the machine is shared
ERROR_TAIL_LINES = 25
_FAILURE_MARKERS = ("STEP_FAILURE", "RUN_FAILURE", "blocking asset check failed")


# --- measuring one child process ----------------------------------------------------------------
@dataclass
class Measured:
    name: str
    ok: bool
    wall_s: float
    cpu_s: float
    user_s: float
    sys_s: float
    peak_rss_mb: float
    returncode: int | None
    error: str | None = None  # why it failed: the stderr tail, or what killed it
    result: dict = field(default_factory=dict)  # a child task's own JSON figures

    def summary(self) -> str:
        verdict = "ok" if self.ok else "FAILED"
        return (
            f"{self.name}: {verdict}, {self.wall_s:.1f} s wall, {self.cpu_s:.1f} s CPU, "
            f"peak RSS {self.peak_rss_mb:,.0f} MB"
        )


def skipped(name: str, reason: str) -> Measured:
    return Measured(name, False, 0.0, 0.0, 0.0, 0.0, 0.0, None, f"skipped: {reason}")


class _RssWatchdog(threading.Thread):
    """Kills the child's process group once its resident memory passes ``limit_mb``: a step
    that would take the shared machine's memory is reported as killed instead."""

    def __init__(self, pgid: int, limit_mb: float, every_s: float = 0.5):
        super().__init__(name="rlx-rss-watchdog", daemon=True)
        self.pgid, self.limit_mb, self.every_s = pgid, limit_mb, every_s
        self.killed_at_mb: float | None = None
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.wait(self.every_s):
            rss = group_rss_mb(self.pgid)
            if rss > self.limit_mb:
                self.killed_at_mb = rss
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.pgid, signal.SIGKILL)
                return

    def stop(self) -> None:
        self._stop_event.set()
        self.join()


def group_rss_mb(pgid: int) -> float:
    """Resident memory of every process in group ``pgid`` (Linux /proc), MB."""
    pages = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            fields = stat.read_text().rpartition(")")[2].split()
            if int(fields[2]) == pgid:  # fields after the command: state, ppid, pgrp, ...
                pages += int(fields[21])  # rss
    return pages * os.sysconf("SC_PAGE_SIZE") / 1e6


def measure(
    name: str,
    argv: list[str],
    *,
    log_path: Path,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    success_marker: str | None = None,
    max_rss_mb: float = DEFAULT_MAX_RSS_MB,
    stderr_to_log: bool = True,
) -> Measured:
    """Run ``argv`` in a new process group and measure it. Its stdout's last line, when JSON,
    is the step's ``result``; its stderr goes to ``log_path`` (or, ``stderr_to_log=False``, to
    ours, e.g. for live progress). Succeeds on exit status 0 and, if given, ``success_marker``
    in the stderr."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "wb") as err, tempfile.TemporaryFile() as out:
        started = time.perf_counter()
        proc = subprocess.Popen(
            argv, env=env, cwd=cwd, stdout=out, stderr=err if stderr_to_log else None,
            start_new_session=True,  # its own group: the watchdog kills it and its children only
        )  # fmt: skip
        watchdog = _RssWatchdog(proc.pid, max_rss_mb)
        watchdog.start()
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - started
        watchdog.stop()
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        result = _last_json_line(out.read().decode(errors="replace"))
    stderr_text = log_path.read_text(errors="replace") if stderr_to_log else ""
    ok = proc.returncode == 0 and (success_marker is None or success_marker in stderr_text)
    error = None
    if watchdog.killed_at_mb is not None:
        error = f"killed at {watchdog.killed_at_mb:,.0f} MB resident (limit {max_rss_mb:,.0f} MB)"
    elif not ok:
        error = error_tail(stderr_text, proc.returncode)
    return Measured(
        name=name,
        ok=ok and watchdog.killed_at_mb is None,
        wall_s=round(wall, 3),
        cpu_s=round(usage.ru_utime + usage.ru_stime, 3),
        user_s=round(usage.ru_utime, 3),
        sys_s=round(usage.ru_stime, 3),
        peak_rss_mb=round(usage.ru_maxrss / 1024, 1),  # Linux: KiB
        returncode=proc.returncode,
        error=error,
        result=result,
    )


def error_tail(stderr_text: str, returncode: int) -> str:
    """Why a step failed, briefly: Dagster's failure events, then the last lines that are not
    tracebacks (indented frames) or debug events."""
    lines = stderr_text.splitlines()
    events = [x for x in lines if any(m in x for m in _FAILURE_MARKERS)]
    tail = [
        x
        for x in lines[-4 * ERROR_TAIL_LINES :]
        if x.strip() and not x.startswith((" ", "\t")) and " - DEBUG - " not in x
    ]
    kept = list(dict.fromkeys(events[:5] + tail))[-ERROR_TAIL_LINES:]
    text = "\n".join(x[:400] for x in kept)
    return f"exit status {returncode}" + (f":\n{text}" if text else "")


def _last_json_line(text: str) -> dict:
    lines = text.strip().splitlines()
    with contextlib.suppress(ValueError, IndexError):
        parsed = json.loads(lines[-1])
        return parsed if isinstance(parsed, dict) else {}
    return {}


# --- child tasks (run as `python -c ...child_main()` with one JSON argument) --------------------
def child_argv(task: str, **args) -> list[str]:
    code = "from rlx_assets.bench_day import child_main; child_main()"
    return [sys.executable, "-c", code, json.dumps({"task": task, **args})]


def child_main() -> None:
    args = json.loads(sys.argv[1])
    task = {
        "generate": _generate_task,
        "capture_read": capture_read_floor,
        "parquet_read": parquet_read_floor,
        "process_start": _process_start_task,
        "stream_read": stream_read_floor,
        "gates": gates_task,
        "compress": compress_floor,
        "book_at": book_at_task,
    }[args.pop("task")]
    print(json.dumps(task(**args)))


def _generate_task(out: str, date: str, hours: int, **options) -> dict:
    from rlx_assets.capture.synthetic_day import generate_day

    def log(message: str) -> None:
        print(f"  generate: {message}", file=sys.stderr, flush=True)

    day = generate_day(Path(out), dt.date.fromisoformat(date), hours, log=log, **options)
    return {
        "files": [str(f) for f in day.files],
        "lines": day.lines,
        "bytes": day.bytes,
        "tiles": day.tiles,
    }


def capture_read_floor(files: list[str]) -> dict:
    """Read, gunzip and JSON-parse every line of ``files`` in this process: CPU of the loop."""
    import gzip

    import msgspec

    # The fastest parser measured (capture/reader.py), the one the golden steps use.
    parse, parser = msgspec.json.Decoder().decode, "msgspec"
    lines = raw_bytes = 0
    cpu0, wall0 = time.process_time(), time.perf_counter()
    for path in files:
        with gzip.open(path, "rb") as handle:
            for line in handle:
                parse(line)
                lines += 1
                raw_bytes += len(line)
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    return {
        "parser": parser,
        "lines": lines,
        "uncompressed_bytes": raw_bytes,
        "cpu_s": round(cpu, 3),
        "wall_s": round(wall, 3),
        "lines_per_cpu_s": round(lines / cpu) if cpu else None,
    }


def parquet_read_floor(lake: str, date: str) -> dict:
    """Every column of the lake's files of ``date`` read with pyarrow: CPU of the reads."""
    import pyarrow.parquet as pq

    files = sorted(Path(lake).glob(f"*/exchange=*/symbol=*/dt={date}/*.parquet"))
    rows = 0
    cpu0, wall0 = time.process_time(), time.perf_counter()
    for path in files:
        rows += pq.read_table(path).num_rows
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    return {
        "files": len(files),
        "rows": rows,
        "bytes": sum(f.stat().st_size for f in files),
        "cpu_s": round(cpu, 3),
        "wall_s": round(wall, 3),
    }


def gates_task(lake: str, date: str, profile: str) -> dict:
    """``run_gates`` on each of the day's lake files under ``profile``: CPU seconds per table
    (the gates alone, without the download, manifest and report around them in the step)."""
    from rlx_assets.validation.gates import GateInput, run_gates
    from rlx_assets.validation.profiles import PROFILES

    cpu: dict[str, float] = {}
    for path in sorted(Path(lake).glob(f"*/exchange=*/symbol=*/dt={date}/*.parquet")):
        table = path.parts[-5]
        if table not in ("trades", "book", "book_delta_v2"):
            continue
        spec = GateInput(table, path, dt.date.fromisoformat(date), None, None, PROFILES[profile])
        cpu0 = time.process_time()
        run_gates(spec)
        cpu[table] = round(time.process_time() - cpu0, 3)
    return {"cpu_s_by_table": cpu, "cpu_s": round(sum(cpu.values()), 3)}


def _stream_file(data: str, date: str) -> Path:
    from rlx_assets.book.reconstruct.output import STREAM_FILE

    return Path(data) / "reconstruction" / MARKET / date / STREAM_FILE


def stream_read_floor(data: str, date: str) -> dict:
    """Every column of the day's reconstructed stream read with pyarrow: CPU of the read."""
    import pyarrow.parquet as pq

    path = _stream_file(data, date)
    cpu0, wall0 = time.process_time(), time.perf_counter()
    rows = pq.read_table(path).num_rows
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    return {"rows": rows, "bytes": path.stat().st_size, "cpu_s": round(cpu, 3),
            "wall_s": round(wall, 3)}  # fmt: skip


def compress_floor(npz: str) -> dict:
    """The exported array's bytes deflated at zlib's default level, as ``np.savez_compressed``
    does (read back from the export, 1 MiB at a time): CPU of the compression alone."""
    import zipfile
    import zlib

    from rlx_assets.export.hftbacktest import NPY_MEMBER

    raw_bytes = compressed = 0
    cpu = 0.0
    with zipfile.ZipFile(npz) as archive, archive.open(NPY_MEMBER) as member:
        deflate = zlib.compressobj(zlib.Z_DEFAULT_COMPRESSION, zlib.DEFLATED, -15)
        while block := member.read(1 << 20):
            cpu0 = time.process_time()
            compressed += len(deflate.compress(block))
            cpu += time.process_time() - cpu0
            raw_bytes += len(block)
        compressed += len(deflate.flush())
    return {"bytes": raw_bytes, "compressed_bytes": compressed, "cpu_s": round(cpu, 3)}


def book_at_task(data: str, date: str, instants: int = BOOK_AT_INSTANTS, seed: int = 0) -> dict:
    """``read.book_at`` at ``instants`` seeded random instants of the stream's span, at depth 20
    and for the whole book: milliseconds per call (median and max)."""
    import random
    import statistics

    import pyarrow.parquet as pq

    from rlx_assets.read import book_at

    meta = pq.ParquetFile(_stream_file(data, date)).metadata
    spans = [meta.row_group(i).column(0).statistics for i in range(meta.num_row_groups)]
    first = min(s.min_raw for s in spans)  # event_time, ns since the epoch
    last = max(s.max_raw for s in spans)
    rng = random.Random(seed)
    when = sorted(rng.randint(first, last) for _ in range(instants))
    timings: dict[str, dict] = {}
    for depth in (20, None):
        ms = []
        for t in when:
            started = time.perf_counter()
            book_at(MARKET, t, depth=depth, data_dir=data)
            ms.append((time.perf_counter() - started) * 1e3)
        timings["whole_book" if depth is None else f"depth_{depth}"] = {
            "median_ms": round(statistics.median(ms), 1), "max_ms": round(max(ms), 1)
        }  # fmt: skip
    return {"instants": instants, **timings}


def _process_start_task() -> dict:
    # What every `dg launch` step imports first. By name: the benchmark sits below the
    # definitions in the import layers (pyproject.toml) and only measures their import.
    importlib.import_module("rlx_assets.definitions")

    return {}


# --- the benchmark ------------------------------------------------------------------------------
@dataclass
class DayBench:
    """The directories of one benchmark run below ``root``."""

    root: Path
    date: dt.date
    gate_profile: str

    captures = property(lambda self: self.root / "captures")
    lake = property(lambda self: self.root / "lake")
    data = property(lambda self: self.root / "data")
    home = property(lambda self: self.root / "dagster_home")
    logs = property(lambda self: self.root / "logs")
    npz = property(lambda self: self.root / "day.npz")

    @property
    def partition(self) -> str:
        return f"{self.date.isoformat()}|{MARKET}"

    def dagster_env(self, instance: str = "") -> dict[str, str]:
        """This process's environment without any RLX_*/DAGSTER_* setting, plus the bench's
        (``instance``: a suffix naming a Dagster home and data dir of their own)."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(("RLX_", "DAGSTER_"))}
        return {
            **env,
            "DAGSTER_HOME": str(self.home) + instance,
            "RLX_DATA_DIR": str(self.data) + instance,
            "RLX_LAKE_URI": str(self.lake),
            "RLX_CAPTURE_DIR": str(self.captures),
            "RLX_MARKETS": MARKET,
            "RLX_GATE_PROFILE": self.gate_profile,
            "PYTHONUNBUFFERED": "1",
        }

    def dagster_home(self, instance: str = "") -> Path:
        from rlx_assets.config import PROJECT_ROOT

        home = Path(str(self.home) + instance)
        home.mkdir(parents=True, exist_ok=True)
        shutil.copy(PROJECT_ROOT / "dagster.yaml", home / "dagster.yaml")
        return home

    def launch(
        self, name: str, target: list[str], max_rss_mb: float, instance: str = ""
    ) -> Measured:
        """One ``dg launch`` run (``target``: ``--job X`` or ``--assets X``), in process."""
        argv = [_venv_tool("dg"), "launch", *target, "--partition", self.partition,
                "-m", "rlx_assets.definitions", "--config-json", IN_PROCESS]  # fmt: skip
        return measure(
            name, argv, log_path=self.logs / f"{name}.log", env=self.dagster_env(instance),
            cwd=self.dagster_home(instance), success_marker="RUN_SUCCESS", max_rss_mb=max_rss_mb,
        )  # fmt: skip

    def with_golden_samples(self, instance: str) -> str:
        """``instance``, its data dir holding a copy of the golden samples recorded so far."""
        golden = self.data / "golden"
        if golden.is_dir():
            shutil.copytree(golden, Path(str(self.data) + instance) / "golden", dirs_exist_ok=True)
        return instance

    def export(self, max_rss_mb: float) -> Measured:
        argv = [_venv_tool("rlx"), "export", "hftbacktest", "--market", MARKET, "--date",
                self.date.isoformat(), "--out", str(self.npz),
                "--data-dir", str(self.data)]  # fmt: skip
        return measure("export", argv, log_path=self.logs / "export.log", max_rss_mb=max_rss_mb)


def _venv_tool(name: str) -> str:
    """The console script beside this interpreter (the project's virtualenv), else on PATH."""
    beside = Path(sys.executable).with_name(name)
    return str(beside) if beside.is_file() else shutil.which(name) or name


def default_gate_profile(hours: float) -> tuple[str, str]:
    """Production for a whole day; fewer hours cannot reach its 99% coverage of the day."""
    if hours >= 24:
        return "production", "a whole day: the production thresholds"
    return "sample", (
        f"{hours:g} h cover {hours / 24:.0%} of the day, below production's min_coverage 0.99: "
        "the sample profile (same schema, order, quality and anomaly rules)"
    )


def run_day_bench(
    hours: int = 24,
    date: dt.date | None = None,
    workdir: Path | None = None,
    keep: bool = False,
    steps: tuple[str, ...] = STEPS,
    gate_profile: str | None = None,
    max_rss_mb: float = DEFAULT_MAX_RSS_MB,
    generate_options: dict | None = None,
    log: Callable[[str], None] = lambda _m: None,
) -> dict:
    """Generate the day, run and measure ``steps`` in order; one JSON-ready dict."""
    from rlx_assets.capture.synthetic_day import DEFAULT_DATE

    date = date or DEFAULT_DATE
    duration_s = (generate_options or {}).get("duration_s") or hours * 3600
    profile, why = (gate_profile, "chosen with --gate-profile") if gate_profile else (
        default_gate_profile(min(hours, duration_s / 3600))
    )  # fmt: skip
    root = Path(tempfile.mkdtemp(prefix="rlx-bench-day-", dir=workdir))
    bench = DayBench(root, date, profile)
    try:
        log(f"generating {duration_s / 3600:g} h of {date} in {bench.captures} (synthetic)")
        generated = measure(
            "generate",
            child_argv("generate", out=str(bench.captures), date=date.isoformat(), hours=hours,
                       **(generate_options or {})),
            log_path=bench.logs / "generate.log", stderr_to_log=False, max_rss_mb=max_rss_mb,
        )  # fmt: skip
        if not generated.ok:
            raise RuntimeError(f"generating the day failed: {generated.error}")
        day = generated.result
        log(f"{generated.summary()}: {day['lines']:,} lines, {day['bytes'] / 1e6:,.0f} MB gzip")
        measured = _run_steps(bench, day["files"], steps, max_rss_mb, log)
        by_name = {m.name: m for m in measured}
        ratio = ratios(by_name)
    finally:
        if not keep:
            shutil.rmtree(root, ignore_errors=True)
    return {
        "synthetic": "the real sample capture tiled in time and ids: for scale, not fidelity",
        "date": date.isoformat(),
        "market": MARKET,
        "hours": hours,
        "gate_profile": profile,
        "gate_profile_reason": why,
        "input": {k: day[k] for k in ("lines", "bytes", "tiles")} | {"files": len(day["files"])},
        "generation": asdict(generated) | {"result": None},
        "steps": [asdict(m) for m in measured if m.name in _MEASURED_STEPS],
        "floors": {m.name: asdict(m) for m in measured if m.name not in _MEASURED_STEPS},
        "ratios": ratio,
        "targets": targets(by_name, ratio),
        "harness_peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "cpus": os.cpu_count(),
        "workdir": str(root) if keep else None,
    }


_MEASURED_STEPS = ("convert", "golden_job", *CHAIN_ASSETS, "book_at", "export", "daily_chain")


def _run_steps(
    bench: DayBench, files: list[str], steps: tuple[str, ...], max_rss_mb: float, log
) -> list[Measured]:
    def task(name: str, argv: list[str]) -> Measured:
        return measure(name, argv, log_path=bench.logs / f"{name}.log", max_rss_mb=max_rss_mb)

    day_of_data = {"data": str(bench.data), "date": bench.date.isoformat()}

    runs: dict[str, Callable[[], Measured]] = {
        "capture_read": lambda: task("capture_read", child_argv("capture_read", files=files)),
        "convert": lambda: task(
            "convert", [_venv_tool("rlx"), "lake-from-capture", *files, "--out", str(bench.lake)]
        ),
        "parquet_read": lambda: task(
            "parquet_read",
            child_argv("parquet_read", lake=str(bench.lake), date=bench.date.isoformat()),
        ),
        "process_start": lambda: task("process_start", child_argv("process_start")),
        "gates": lambda: task(
            "gates",
            child_argv(
                "gates",
                lake=str(bench.lake),
                date=bench.date.isoformat(),
                profile=bench.gate_profile,
            ),
        ),  # fmt: skip
        "golden_job": lambda: bench.launch("golden_job", ["--job", "golden_job"], max_rss_mb),
        **{
            asset: (lambda a=asset: bench.launch(a, ["--assets", a], max_rss_mb))
            for asset in CHAIN_ASSETS
        },
        "stream_read": lambda: task("stream_read", child_argv("stream_read", **day_of_data)),
        "book_at": lambda: task("book_at", child_argv("book_at", **day_of_data)),
        "export": lambda: bench.export(max_rss_mb),
        "compress": lambda: task("compress", child_argv("compress", npz=str(bench.npz))),
        # The whole job in one process, on a data dir and instance of its own (with the golden
        # samples golden_job recorded, if it ran: the fidelity report compares with them).
        "daily_chain": lambda: bench.launch(
            "daily_chain",
            ["--job", "daily_chain"],
            max_rss_mb,
            instance=bench.with_golden_samples("_whole_chain"),
        ),  # fmt: skip
    }
    needs_lake = {"parquet_read", "gates", *CHAIN_ASSETS, *READ_STEPS, "daily_chain"}
    measured: list[Measured] = []
    lake_ok, stream_ok = True, False  # the read steps read this run's reconstruction
    for name in (s for s in STEPS if s in steps):
        if name in needs_lake and not lake_ok:
            measured.append(skipped(name, "the lake was not converted"))
            log(f"{name}: skipped (no lake)")
            continue
        if name in READ_STEPS and not stream_ok:
            measured.append(skipped(name, "the day was not reconstructed in this run"))
            log(f"{name}: skipped (no reconstruction)")
            continue
        log(f"{name}: running")
        result = runs[name]()
        measured.append(result)
        lake_ok = lake_ok and (result.ok or name != "convert")
        stream_ok = stream_ok or (result.ok and name == "reconstructed_stream")
        log(result.summary() + (f"\n{result.error}" if result.error else ""))
    return measured


def succeeded(by_name: dict[str, Measured], name: str) -> Measured | None:
    """The step or floor ``name`` if it ran and succeeded: only then do its figures count."""
    measured = by_name.get(name)
    return measured if measured is not None and measured.ok else None


def ratios(by_name: dict[str, Measured]) -> dict[str, float | None]:
    def over(numerator: float | None, denominator: float | None) -> float | None:
        return round(numerator / denominator, 3) if numerator and denominator else None

    def step(name: str, figure: str = "cpu_s") -> float | None:
        measured = succeeded(by_name, name)
        return getattr(measured, figure) if measured else None

    def floor(name: str, figure: str = "cpu_s") -> float | None:
        measured = succeeded(by_name, name)
        return measured.result.get(figure) if measured else None

    return {
        "golden_cpu_over_capture_floor": over(step("golden_job"), floor("capture_read")),
        "fidelity_cpu_over_reconstruction": over(
            step("fidelity_report"), step("reconstructed_stream")
        ),
        "gates_cpu_over_reconstruction": over(floor("gates"), step("reconstructed_stream")),
        "daily_chain_wall_over_reconstruction": over(
            step("daily_chain", "wall_s"), step("reconstructed_stream", "wall_s")
        ),
        "export_cpu_over_stream_read": over(step("export"), floor("stream_read")),
        # Restated target: deflating the array (needed for today's bytes) alone costs more
        # than 2 reads; the export (which deflates on a thread of its own) should take no
        # longer than one read plus that compression.
        "export_wall_over_read_plus_compression": over(
            step("export", "wall_s"),
            floor("stream_read", "wall_s") + floor("compress")
            if floor("stream_read", "wall_s") and floor("compress")
            else None,
        ),
    }


def targets(by_name: dict[str, Measured], ratio: dict[str, float | None]) -> list[dict]:
    """The full-day targets (issues 24 and 25) next to what was measured; a target whose step
    was not run or failed is not met."""

    def target(name: str, measured: float | None, limit: float) -> dict:
        met = measured is not None and measured <= limit
        return {"target": name, "measured": measured, "limit": limit, "met": met}

    def rss(name: str) -> float | None:
        measured = succeeded(by_name, name)
        return measured.peak_rss_mb if measured else None

    book_at = succeeded(by_name, "book_at")
    book_at_ms = (
        max(book_at.result[k]["median_ms"] for k in ("depth_20", "whole_book")) if book_at else None
    )
    chain = [s for s in (*CHAIN_ASSETS, "daily_chain") if s in by_name]
    return [
        *(target(f"{s} peak RSS MB", rss(s), 2 * GIB) for s in chain),
        target("gates CPU / reconstruction CPU", ratio["gates_cpu_over_reconstruction"], 1.0),
        target(
            "daily_chain wall / reconstruction wall",
            ratio["daily_chain_wall_over_reconstruction"],
            2.5,
        ),  # fmt: skip
        target("fidelity CPU / reconstruction CPU", ratio["fidelity_cpu_over_reconstruction"], 2.0),
        target(
            "golden_job CPU / capture floor (restated from 3)",
            ratio["golden_cpu_over_capture_floor"],
            10.0,
        ),
        target("book_at median ms (worse of depth 20 and whole book)", book_at_ms, 100.0),
        target("book_at peak RSS MB", rss("book_at"), 500.0),
        target("export peak RSS MB", rss("export"), 2 * GIB),
        target("export CPU / stream read CPU", ratio["export_cpu_over_stream_read"], 2.0),
        target(
            "export wall / (stream read wall + deflate CPU) (restated from 2 reads)",
            ratio["export_wall_over_read_plus_compression"],
            1.0,
        ),
    ]
