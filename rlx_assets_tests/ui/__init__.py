"""End-to-end tests of what an operator uses: the web UI in a real browser, a PostgreSQL instance.

They install what they need through the project's own script (quick when it is all there).
"""

from __future__ import annotations

import functools
import importlib
import subprocess
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]


@functools.cache
def require_system_deps() -> None:
    """Run scripts/install_system_deps.sh once per session: Chromium, PostgreSQL, their clients."""
    result = subprocess.run(
        ["bash", str(REPO_ROOT / "scripts" / "install_system_deps.sh")],
        capture_output=True,
        text=True,
        timeout=1800,
    )
    if result.returncode != 0:
        raise RuntimeError(
            f"scripts/install_system_deps.sh failed ({result.returncode}):\n"
            f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
        )
    importlib.invalidate_caches()  # packages it installed become importable in this process
