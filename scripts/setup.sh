#!/usr/bin/env bash
# Installs the project and its pinned dependencies (idempotent). Used by the README commands.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m pip install --disable-pip-version-check -q -e '.[dev]'
