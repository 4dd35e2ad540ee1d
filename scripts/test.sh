#!/usr/bin/env bash
# The whole test suite: set-up, lint and format check, then every test (slow ones included).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/install_system_deps.sh  # Debian chromium + PostgreSQL for the slow UI tests
python3 -m ruff check .
python3 -m ruff format --check .
python3 -m pytest "$@"
