"""Golden-format copies of the real sample captures, optionally with messages removed."""

from __future__ import annotations

import functools
import gzip
import hashlib
import json
from collections.abc import Callable
from pathlib import Path

from rlx_assets_tests.conftest import SAMPLE_CAPTURES


@functools.cache
def sample_messages(name: str) -> list[tuple[int, str, dict]]:
    """(capture_ns, stream, data) of a bundled capture, read with plain json (cached: do not
    mutate)."""
    out = []
    with gzip.open(SAMPLE_CAPTURES / name, "rt") as handle:
        for line in handle:
            stamp, _, payload = line.strip().partition(" ")
            frame = json.loads(payload)
            if "stream" in frame:
                out.append((int(stamp), frame["stream"], frame["data"]))
            else:
                out.append((int(stamp), "btcusdt@depthSnapshot", frame))
    return out


def write_golden(
    path: Path, messages: list[tuple[int, str, dict]], extra: Callable[[], list[dict]] = list
) -> Path:
    """Write golden-format lines (plus `extra` raw line objects) and the `.sha256` sidecar."""
    lines = [{"capture_ns": ns, "stream": s, "data": d} for ns, s, d in messages] + extra()
    lines.sort(key=lambda obj: obj["capture_ns"])
    # The fastest gzip level: the readers take any level, and level 9 spent 3.2 of the 3.9 s
    # a copy of a spot capture took.
    with gzip.open(path, "wt", compresslevel=1) as handle:
        for obj in lines:
            handle.write(json.dumps(obj) + "\n")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    path.with_name(path.name + ".sha256").write_text(f"{digest}  {path.name}\n")
    return path
