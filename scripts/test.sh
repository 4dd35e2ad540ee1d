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
python -m ruff check .
python -m ruff format --check .
lint-imports  # the import contracts in pyproject.toml: layers, no cycles
# Four pytest-xdist workers on two cores: the daemon-driven tests mostly wait (for queued runs,
# a Celery visibility timeout), so with two workers the run used one core on average (pytest
# 430 s for 468 s of CPU). worksteal lets an idle worker take queued tests from another, and
# rlx_assets_tests/conftest.py starts each worker on its share of the slow ones.
python -m pytest -n 4 --dist worksteal "$@"
