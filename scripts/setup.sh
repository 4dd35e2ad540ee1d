#!/usr/bin/env bash
# Installs the project (editable) and its pinned dependencies into the project's own virtual
# environment .venv; the system interpreter is never touched. uv (pinned, bootstrapped inside
# .venv from PyPI) does the install: on this 2-core machine it took 77 s from cold caches where
# pip took 476 s. A second run is a no-op in well under a second: the stamp .venv/.rlx-installed
# holds the hash of pyproject.toml and the uv pin, so only a changed pyproject reinstalls.
# The other scripts call this first and then put .venv/bin first on PATH.
# Bytecode is compiled at install: uv does not by default, and where PYTHONDONTWRITEBYTECODE is
# set (as on this machine) every Python start (each run, step, server) compiled dagster and its
# dependencies from source again: `import rlx_assets.definitions` took 4.8 s of CPU, 1.8 s with
# the .pyc files. (An older .venv: `.venv/bin/python -m compileall -q .venv/lib`, once.)
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=.venv
UV_PIN="uv==0.13.8"
BASE_PYTHON="${RLX_BASE_PYTHON:-python3}"  # the interpreter .venv is made from (3.11 or 3.12)
stamp="${VENV}/.rlx-installed"
wanted="$(sha256sum pyproject.toml | cut -d' ' -f1) ${UV_PIN}"

if [[ -x "${VENV}/bin/python" && -f "${stamp}" && "$(cat "${stamp}")" == "${wanted}" ]]; then
  exit 0  # up to date
fi

log="${VENV}/setup.log"
fail() {
  echo "setup: $1 failed; the last lines of ${log}:" >&2
  tail -n 30 "${log}" >&2
  exit 1
}

if [[ ! -x "${VENV}/bin/python" ]]; then
  echo "setup: creating ${VENV} from $(command -v "${BASE_PYTHON}") ($("${BASE_PYTHON}" --version))"
  "${BASE_PYTHON}" -m venv "${VENV}"
fi
: >"${log}"
if [[ "$("${VENV}/bin/uv" --version 2>/dev/null)" != "uv ${UV_PIN#uv==}" ]]; then
  echo "setup: installing ${UV_PIN} into ${VENV}"
  "${VENV}/bin/python" -m pip install --disable-pip-version-check -q "${UV_PIN}" >>"${log}" 2>&1 ||
    fail "pip install ${UV_PIN}"
fi
echo "setup: installing the project and its pinned dependencies into ${VENV} (about a minute" \
  "the first time)"
VIRTUAL_ENV="${PWD}/${VENV}" "${VENV}/bin/uv" pip install --python "${VENV}/bin/python" \
  --quiet --compile-bytecode -e '.[dev]' >>"${log}" 2>&1 || fail "uv pip install -e '.[dev]'"
echo "${wanted}" >"${stamp}"
echo "setup: ready (${VENV}; commands in ${VENV}/bin, e.g. source ${VENV}/bin/activate)"
