#!/usr/bin/env bash
# What the slow end-to-end tests need beyond the Python project (idempotent; quick when present):
#   * Debian's `chromium` (+ fonts) for the browser test, driven by Playwright through
#     /usr/bin/chromium. Playwright never downloads a browser here: PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD
#     is set and `playwright install` is never called.
#   * Debian's PostgreSQL server binaries (/usr/lib/postgresql/*/bin/initdb, pg_ctl, postgres) and
#     psql; the tests start their own server in a temporary directory, none is left running.
#   * Debian's `redis-server` (/usr/bin/redis-server): the Celery broker and result backend of the
#     Celery backfill test, started by the test on 127.0.0.1 in a temporary directory. The
#     Debian package's own service is never used (there is no init system in CI).
#   * From PyPI, pinned, into the project's .venv (scripts/setup.sh installs them already with
#     pyproject's dev extras; keep these pins equal): the playwright package, dagster-postgres
#     (0.29.x is the release paired with dagster 1.13.x) and psycopg2-binary. The system
#     interpreter is never installed into.
# Runs non-interactively as root (CI); as another user it uses sudo for apt-get when it can.
set -euo pipefail
cd "$(dirname "$0")/.."

export DEBIAN_FRONTEND=noninteractive
export PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1

VENV_PYTHON=.venv/bin/python
# The interpreter whose packages are checked: the project's .venv, else (tests run outside the
# scripts) the python3 on PATH, which is only checked, never installed into.
if [[ -z "${PYTHON:-}" ]]; then
  if [[ -x "${VENV_PYTHON}" ]]; then PYTHON="${VENV_PYTHON}"; else PYTHON=python3; fi
fi
PY_PINS=(
  "playwright==1.65.2"
  "dagster-postgres==0.29.27"
  "psycopg2-binary==2.9.13"
)
DEB_PACKAGES=(chromium fonts-liberation postgresql postgresql-client redis-server)

if [[ "$(id -u)" -eq 0 ]]; then
  as_root=()
elif command -v sudo >/dev/null 2>&1; then
  as_root=(sudo -n)
else
  as_root=()
fi

deb_installed() {
  dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"
}

missing_debs=()
for package in "${DEB_PACKAGES[@]}"; do
  deb_installed "${package}" || missing_debs+=("${package}")
done
if ((${#missing_debs[@]})); then
  echo "install_system_deps: apt-get install ${missing_debs[*]}"
  "${as_root[@]}" apt-get update -q
  "${as_root[@]}" apt-get install -y -q --no-install-recommends "${missing_debs[@]}"
fi
# The Debian postgresql package may start a cluster of its own through its service scripts in
# environments that have an init system; the tests never use it (they run their own server).

# The binaries the tests use, found the way the tests find them.
test -x /usr/bin/chromium || { echo "install_system_deps: /usr/bin/chromium missing" >&2; exit 1; }
compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null ||
  { echo "install_system_deps: no /usr/lib/postgresql/*/bin/initdb" >&2; exit 1; }
test -x /usr/bin/redis-server ||
  { echo "install_system_deps: /usr/bin/redis-server missing" >&2; exit 1; }

missing_pins=()
for pin in "${PY_PINS[@]}"; do
  name="${pin%%==*}" version="${pin##*==}"
  installed="$("${PYTHON}" - "${name}" <<'EOF' 2>/dev/null || true
import importlib.metadata, sys
print(importlib.metadata.version(sys.argv[1]))
EOF
)"
  [[ "${installed}" == "${version}" ]] || missing_pins+=("${pin}")
done
if ((${#missing_pins[@]})); then
  if [[ "${PYTHON}" != "${VENV_PYTHON}" ]]; then
    echo "install_system_deps: ${PYTHON} lacks ${missing_pins[*]}; run bash scripts/setup.sh" \
      "(installs them into .venv) and run the tests with scripts/test.sh" >&2
    exit 1
  fi
  echo "install_system_deps: uv pip install ${missing_pins[*]} into .venv"
  .venv/bin/uv pip install --python "${VENV_PYTHON}" --quiet "${missing_pins[@]}"
fi

postgres_bin="$(compgen -G '/usr/lib/postgresql/*/bin/postgres' | sort -V | tail -1)"
echo "install_system_deps: ok ($(/usr/bin/chromium --version 2>/dev/null | head -1);" \
  "$("${postgres_bin}" --version); $(/usr/bin/redis-server --version | cut -d' ' -f1-3))"
