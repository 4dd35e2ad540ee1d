#!/usr/bin/env bash
# The whole test suite: set-up, lint and format check, then every test (slow ones included),
# all with the project's .venv (tests that start `dagster`, `rlx` or `python` find its binaries
# first on PATH).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/install_system_deps.sh  # Debian chromium + PostgreSQL for the slow UI tests
export VIRTUAL_ENV="${PWD}/.venv"
export PATH="${VIRTUAL_ENV}/bin:${PATH}"
unset PYTHONDONTWRITEBYTECODE  # Python caches the bytecode of what it imports (setup.sh)
python -m ruff check .
python -m ruff format --check .
lint-imports  # the import contracts in pyproject.toml: layers, no cycles
# Three pytest-xdist workers on the two cores: the daemon-driven tests spend much of their time
# waiting (for the daemon's 30 s backfill ticks, a dead Celery worker's redelivery), which a
# third worker fills. Fresh clones of one commit, quiet: pytest 386-423 s, two workers 423-443 s.
# worksteal lets an idle worker take queued tests from another, and rlx_assets_tests/conftest.py
# starts each worker on its share of the slow ones.
python -m pytest -n 3 --dist worksteal "$@"
